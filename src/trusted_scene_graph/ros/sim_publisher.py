"""Publish simulator frames as a camera driver would: colour, registered depth, camera_info and instance ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from trusted_scene_graph.config.nodes import subscribed_topic
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.image.compressed import encode_compressed_depth, encode_compressed_rgb
from trusted_scene_graph.image.decode import depth_to_encoding
from trusted_scene_graph.ros import convert

OPTICAL_FRAME = "camera_color_optical_frame"
DEPTH_ENCODINGS = ("32FC1", "16UC1")


class SimCameraPublisher:
    """Owns the camera publishers on ``node``; topics and image transports come from the same config as the
    subscriber's (a compressed transport publishes a ``CompressedImage`` on the transport's topic, as
    image_transport does; an empty ``topics.depth`` / ``topics.instances``, which a config without sensor depth or
    the ``sim`` detector may have, is not published)."""

    def __init__(self, node: Node, config: Mapping, depth_encoding: str = "32FC1",
                 qos: QoSProfile = qos_profile_sensor_data) -> None:
        if depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth encoding {depth_encoding!r} is not one of {DEPTH_ENCODINGS}")
        self.depth_encoding = depth_encoding
        self.compressed_color = config["topics.color_transport"] != "raw"
        self.compressed_depth = config["topics.depth_transport"] != "raw"
        self.color = node.create_publisher(CompressedImage if self.compressed_color else Image,
                                           subscribed_topic(config, "topics.color"), qos)
        self.depth = (node.create_publisher(CompressedImage if self.compressed_depth else Image,
                                            subscribed_topic(config, "topics.depth"), qos)
                      if config["topics.depth"] else None)
        self.info = node.create_publisher(CameraInfo, config["topics.camera_info"], qos)
        self.instances = (node.create_publisher(Image, config["topics.instances"], qos)
                          if config["topics.instances"] else None)
        self.published = 0

    def publish(self, frame, intrinsics: Intrinsics, stamp_ns: int) -> None:
        """Publish one ``SimFrame`` stamped ``stamp_ns`` (all its messages share the stamp)."""
        if self.compressed_color:
            self.color.publish(convert.compressed_image_msg(*encode_compressed_rgb(frame.rgb), stamp_ns, OPTICAL_FRAME))
        else:
            self.color.publish(convert.image_msg(frame.rgb, "rgb8", stamp_ns, OPTICAL_FRAME))
        if self.depth is not None and self.compressed_depth:
            self.depth.publish(convert.compressed_image_msg(
                *encode_compressed_depth(frame.depth_m, self.depth_encoding), stamp_ns, OPTICAL_FRAME))
        elif self.depth is not None:
            depth = depth_to_encoding(frame.depth_m, self.depth_encoding)
            self.depth.publish(convert.image_msg(depth, self.depth_encoding, stamp_ns, OPTICAL_FRAME))
        self.info.publish(convert.camera_info_msg(intrinsics, stamp_ns, OPTICAL_FRAME))
        if self.instances is not None:
            self.instances.publish(convert.image_msg(frame.instance_ids, "16UC1", stamp_ns, OPTICAL_FRAME))
        self.published += 1


def extrinsic_overrides(camera) -> dict[str, Any]:
    """Config overrides placing the simulator camera's optical frame in the graph (world) frame: a static extrinsic
    (its source included: a config reading the pose from tf, or fitting it to a plane, would not use it)."""
    from trusted_scene_graph.geometry.transform import RigidTransform

    transform = RigidTransform.from_matrix(camera.camera_to_world)
    return {"extrinsic.source": "static", "extrinsic.translation_m": [float(v) for v in transform.translation_m],
            "extrinsic.rotation_xyzw": transform.rotation_xyzw}
