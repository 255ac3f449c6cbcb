"""Camera frames from sensor messages, for any message implementation with the ROS field names.

The live node passes rclpy messages and offline evaluation passes messages deserialised by ``rosbags``; both have
the same fields (``header.stamp.sec``, ``encoding``, ``data``, ...), so one set of pure functions decodes both and
the offline path runs exactly the code the node runs. Nothing here imports rclpy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics
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


def intrinsics_from_msg(msg: Any, rectified: bool = False) -> Intrinsics:
    """The intrinsics of the images a ``sensor_msgs/CameraInfo`` describes, as image_geometry reads it: for raw
    (distorted) images ``K`` with the distortion ``distortion_model``/``d``; for rectified images
    (``rectified``, config ``topics.rectified``: image_proc's ``image_rect``) the left 3x3 of ``P``, without
    distortion.

    Binning and a region of interest (a camera that sends a part or a downsampled image of what it was calibrated
    for) are not supported and raise :class:`GeometryError`, as does skew; none is ignored.
    """
    roi = msg.roi
    # Every frame brings the same camera_info: the checked Intrinsics are remembered by the fields they come from
    # (a few microseconds to gather, where checking them again costs over ten per frame).
    return _intrinsics_from_fields(
        int(msg.width), int(msg.height), int(msg.binning_x), int(msg.binning_y),
        (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)), rectified,
        _floats(msg.k), str(msg.distortion_model), _floats(msg.d), _floats(msg.p))


def _floats(values: Any) -> tuple[float, ...]:
    """A message's float array (numpy's in rosbags, numpy's or array.array in rclpy, or a sequence) as floats."""
    # tolist() turns a whole float array into Python floats at once, where float() of each numpy scalar costs ten times
    # more.
    return tuple(values.tolist()) if hasattr(values, "tolist") else tuple(map(float, values))


@functools.lru_cache(maxsize=16)
def _intrinsics_from_fields(width: int, height: int, binning_x: int, binning_y: int,
                            roi_xywh: tuple[int, int, int, int], rectified: bool, k: tuple[float, ...],
                            distortion_model: str, d: tuple[float, ...], p: tuple[float, ...]) -> Intrinsics:
    for field, binning in (("binning_x", binning_x), ("binning_y", binning_y)):
        if binning > 1:  # 0 and 1 both mean no binning
            raise GeometryError(f"camera_info.{field} is {binning}: binned images are not "
                                "supported (publish full-resolution images, or camera_info for the binned image)")
    if roi_xywh not in ((0, 0, 0, 0), (0, 0, width, height)):  # all zeros: the full image
        raise GeometryError(f"camera_info.roi is x_offset {roi_xywh[0]}, y_offset {roi_xywh[1]}, width {roi_xywh[2]}, "
                            f"height {roi_xywh[3]} of the {width}x{height} image: images of a region of interest "
                            "are not supported")
    if rectified:
        if not any(p):
            raise GeometryError("topics.rectified is true but camera_info.p is all zeros (an uncalibrated camera has "
                                "no rectified images): set topics.rectified to false for raw images, which use K "
                                "and D")
        return Intrinsics.from_p(list(p), width, height)
    return Intrinsics.from_k(list(k), width, height, distortion_model, list(d))


def frame_from_msgs(color: Any, depth: Any | None, info: Any, instances: Any | None = None, *,
                    rectified: bool = False) -> CameraFrame:
    """Decode one synchronised set of messages (no depth for RGB-only cameras); raises the core's errors on
    inconsistent input. ``rectified`` (config ``topics.rectified``) says the images are rectified, which decides
    how ``info`` is read (:func:`intrinsics_from_msg`)."""
    return CameraFrame(
        stamp_ns=stamp_to_ns(color.header.stamp),
        rgb=rgb_from_msg(color),
        depth_m=depth_m_from_msg(depth) if depth is not None else None,
        intrinsics=intrinsics_from_msg(info, rectified),
        instances=instances_from_msg(instances) if instances is not None else None,
    )
