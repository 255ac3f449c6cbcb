"""Conversion of raw ``sensor_msgs/Image`` fields to numpy arrays, independent of rclpy."""

from trusted_scene_graph.image.decode import (
    ENCODINGS,
    ImageError,
    decode_depth_m,
    decode_image,
    depth_to_encoding,
    encode_image,
    has_depth_within,
    has_invalid_depth,
)

__all__ = ["ENCODINGS", "ImageError", "decode_depth_m", "decode_image", "depth_to_encoding", "encode_image",
           "has_depth_within", "has_invalid_depth"]
