"""Decode and encode ``sensor_msgs/Image`` payloads given their fields.

The functions take message *fields* (not message objects) so that they are usable from ROS callbacks, bag
readers and tests alike. Hand-written because the ROS 2 ``cv_bridge`` is not installable from PyPI; it is a
few lines of numpy per encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.errors import TsgError


class ImageError(TsgError):
    """An image message whose fields are inconsistent or whose encoding is not supported."""


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(np.dtype(np.uint8), 3),
    "bgr8": _Encoding(np.dtype(np.uint8), 3),
    "rgba8": _Encoding(np.dtype(np.uint8), 4),
    "bgra8": _Encoding(np.dtype(np.uint8), 4),
    "mono8": _Encoding(np.dtype(np.uint8), 1),
    "8UC1": _Encoding(np.dtype(np.uint8), 1),
    "mono16": _Encoding(np.dtype(np.uint16), 1),
    "16UC1": _Encoding(np.dtype(np.uint16), 1),
    "32FC1": _Encoding(np.dtype(np.float32), 1),
}

# Depth encodings and the factor that turns their values into metres (REP-118: 16UC1 is millimetres).
_DEPTH_SCALE_M = {"16UC1": 1e-3, "mono16": 1e-3, "32FC1": 1.0}


def decode_image(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: bytes | bytearray | memoryview
) -> np.ndarray:
    """Return the image as an (H, W) or (H, W, C) array in native byte order; row padding (``step``) is dropped.

    Raises :class:`ImageError` naming the field that disagrees with the others.
    """
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise ImageError(f"image size {width}x{height} is empty")
    row_bytes = width * spec.channels * spec.dtype.itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is smaller than width {width} x {spec.channels} channels x "
                         f"{spec.dtype.itemsize} bytes = {row_bytes} for {encoding!r}")
    if len(data) != step * height:
        raise ImageError(f"data has {len(data)} bytes, expected step {step} x height {height} = {step * height}")
    dtype = spec.dtype.newbyteorder(">" if is_bigendian else "<") if spec.dtype.itemsize > 1 else spec.dtype
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(spec.dtype, copy=False)
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    return pixels.reshape(shape)


def to_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB view of a decoded colour or mono image."""
    if encoding in ("rgb8",):
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1]
    if encoding == "rgba8":
        return pixels[..., :3]
    if encoding == "bgra8":
        return pixels[..., 2::-1]
    if encoding in ("mono8", "8UC1"):
        return np.repeat(pixels[..., None], 3, axis=2)
    raise ImageError(f"encoding {encoding!r} is not a colour image; expected one of rgb8, bgr8, rgba8, bgra8, mono8")


def decode_depth_m(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: bytes | bytearray | memoryview
) -> np.ndarray:
    """Return depth in metres as float32 (H, W); invalid pixels (0 in 16UC1, NaN/inf/0 in 32FC1) become NaN.

    The unit comes from the encoding (REP-118), never from a configurable divisor.
    """
    if encoding not in _DEPTH_SCALE_M:
        raise ImageError(f"depth encoding {encoding!r} is not supported; expected one of {sorted(_DEPTH_SCALE_M)}")
    raw = decode_image(encoding, height, width, step, is_bigendian, data)
    depth_m = raw.astype(np.float32)  # always a new array: the message's buffer is never written
    if _DEPTH_SCALE_M[encoding] != 1.0:
        depth_m *= np.float32(_DEPTH_SCALE_M[encoding])
    if has_invalid_depth(depth_m):
        invalid_depth_to_nan(depth_m)
    return depth_m


def invalid_depth_to_nan(depth_m: np.ndarray) -> None:
    """Set the zero, negative and infinite values of the float array ``depth_m`` to NaN, in place."""
    # NaN, zero and negative depths fail "> 0"; +inf passes it and is caught by isinf.
    np.putmask(depth_m, ~(depth_m > 0) | np.isinf(depth_m), np.nan)


def has_invalid_depth(depth_m: np.ndarray) -> bool:
    """Whether ``depth_m`` holds a zero, negative or infinite value (NaN, already the mark of an invalid pixel, does
    not count).

    Two reductions that allocate nothing, where a mask of the invalid pixels costs an array and four passes: most
    frames of a simulated or filtered camera have none, and they are then left as they are."""
    if depth_m.size == 0:
        return False
    # fmin/fmax skip NaN (an all-NaN image gives NaN, which fails both comparisons: nothing to replace).
    return bool(np.fmin.reduce(depth_m, axis=None) <= 0 or np.fmax.reduce(depth_m, axis=None) == np.inf)


def encode_image(pixels: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """Encode an array as (height, width, step, data) little-endian, the inverse of :func:`decode_image`."""
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}")
    expected_ndim = 2 if spec.channels == 1 else 3
    if pixels.ndim != expected_ndim or (spec.channels > 1 and pixels.shape[2] != spec.channels):
        raise ImageError(f"array of shape {pixels.shape} does not fit encoding {encoding!r}")
    array = np.ascontiguousarray(pixels, dtype=spec.dtype.newbyteorder("<"))
    height, width = array.shape[:2]
    return height, width, width * spec.channels * spec.dtype.itemsize, array.tobytes()


def depth_to_encoding(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in metres (NaN = invalid) as a depth ``encoding`` carries it: 32FC1 metres, 16UC1 mm (0 = none)."""
    if encoding == "32FC1":
        return depth_m.astype(np.float32, copy=False)
    if encoding in ("16UC1", "mono16"):
        millimetres = np.nan_to_num(np.round(np.asarray(depth_m, dtype=np.float64) * 1000.0), nan=0.0)
        return millimetres.clip(0, np.iinfo(np.uint16).max).astype(np.uint16)
    raise ImageError(f"depth encoding {encoding!r} is not supported; expected one of {sorted(_DEPTH_SCALE_M)}")
