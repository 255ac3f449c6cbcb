"""Camera frames from sensor messages, for any message implementation with the ROS field names.

The live node passes rclpy messages and offline evaluation passes messages deserialised by ``rosbags``; both have
the same fields (``header.stamp.sec``, ``encoding``, ``data``, ...), so one set of pure functions decodes both and
the offline path runs exactly the code the node runs. Nothing here imports rclpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.image.compressed import decode_compressed_depth_m, decode_compressed_rgb
from trusted_scene_graph.image.decode import ImageError, decode_depth_m, decode_image, to_rgb
from trusted_scene_graph.perception.detector import CameraFrame

NS_PER_S = 1_000_000_000

# Encodings an instance-id image may have (integer ids per pixel).
INSTANCE_ENCODINGS = ("16UC1", "mono16", "mono8", "8UC1")


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (``sec``, ``nanosec``) as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def is_compressed(msg: Any) -> bool:
    """True for a ``sensor_msgs/CompressedImage`` (it has ``format`` where ``Image`` has ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def _bytes_of(data: Any) -> memoryview | bytes:
    """A message's image bytes, without a copy when they are in a buffer (rosbags: a numpy array; rclpy:
    ``array.array``); anything else (a list of ints) is copied."""
    try:
        return memoryview(data).cast("B")
    except TypeError:
        return bytes(data)


def _fields(msg: Any) -> tuple[str, int, int, int, bool, memoryview | bytes]:
    return msg.encoding, int(msg.height), int(msg.width), int(msg.step), bool(msg.is_bigendian), _bytes_of(msg.data)


def rgb_from_msg(msg: Any) -> np.ndarray:
    if is_compressed(msg):
        return decode_compressed_rgb(msg.format, bytes(msg.data))
    encoding, *rest = _fields(msg)
    return to_rgb(encoding, decode_image(encoding, *rest))


def depth_m_from_msg(msg: Any) -> np.ndarray:
    if is_compressed(msg):
        return decode_compressed_depth_m(msg.format, bytes(msg.data))
    return decode_depth_m(*_fields(msg))


def instances_from_msg(msg: Any) -> np.ndarray:
    if msg.encoding not in INSTANCE_ENCODINGS:
        raise ImageError(f"instance image encoding {msg.encoding!r} is not an integer id image "
                         f"({', '.join(INSTANCE_ENCODINGS)})")
    return decode_image(*_fields(msg)).astype(np.uint16, copy=False)


def intrinsics_from_msg(msg: Any) -> Intrinsics:
    return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


def frame_from_msgs(color: Any, depth: Any | None, info: Any, instances: Any | None = None) -> CameraFrame:
    """Decode one synchronised set of messages (no depth for RGB-only cameras); raises the core's errors on
    inconsistent input."""
    return CameraFrame(
        stamp_ns=stamp_to_ns(color.header.stamp),
        rgb=rgb_from_msg(color),
        depth_m=depth_m_from_msg(depth) if depth is not None else None,
        intrinsics=intrinsics_from_msg(info),
        instances=instances_from_msg(instances) if instances is not None else None,
    )
