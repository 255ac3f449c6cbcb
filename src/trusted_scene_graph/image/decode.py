"""Decode and encode ``sensor_msgs/Image`` payloads given their fields.

The functions take message *fields* (not message objects) so that they are usable from ROS callbacks, bag
readers and tests alike. Hand-written because the ROS 2 ``cv_bridge`` is not installable from PyPI; it is a
few lines of numpy per encoding.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

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

# Depth encodings and how many of their units make a metre (REP-118: 16UC1 is millimetres).
_DEPTH_UNITS_PER_M = {"16UC1": 1000.0, "mono16": 1000.0, "32FC1": 1.0}


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


def millimetres_to_m(millimetres: np.ndarray) -> np.ndarray:
    """16-bit depth in millimetres as float32 metres, a new array. Divided, not multiplied by 1e-3 (itself rounded):
    each millimetre value becomes the float32 nearest its metres, so 1500 mm is depth.max_m 1.5 exactly, not
    1.5000001. Every decoder of millimetres (raw 16UC1 and mono16, compressedDepth) goes through it."""
    depth_m = millimetres.astype(np.float32)
    depth_m /= np.float32(1000.0)
    return depth_m


def decode_depth_m(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: bytes | bytearray | memoryview
) -> np.ndarray:
    """Return depth in metres as a read-only float32 (H, W) array; invalid pixels (0 in 16UC1, NaN/inf/0 in 32FC1)
    become NaN.

    The unit comes from the encoding (REP-118), never from a configurable divisor. A 32FC1 image in the machine's
    byte order, without row padding and without invalid values (a simulated or filtered camera's usual frame) is
    returned as a view of ``data``, without a copy (so ``data`` must not change while it is used); any other is a
    new array. Either way the message's buffer is never written. Do not make the result writable again: its value
    range is remembered for the checks that follow (:func:`has_invalid_depth`, :func:`has_depth_within`) only while
    it is read-only.
    """
    if encoding not in _DEPTH_UNITS_PER_M:
        raise ImageError(f"depth encoding {encoding!r} is not supported; expected one of {sorted(_DEPTH_UNITS_PER_M)}")
    raw = decode_image(encoding, height, width, step, is_bigendian, data)
    depth_m = raw if _DEPTH_UNITS_PER_M[encoding] == 1.0 else millimetres_to_m(raw)
    value_range = _value_range(depth_m)
    if _is_invalid_range(*value_range):
        if depth_m is raw:
            depth_m = depth_m.copy()
        invalid_depth_to_nan(depth_m)
        value_range = _value_range(depth_m)
    # Read-only whichever it is, so that no consumer comes to rely on writing into a frame's depth (the view would be
    # the message's buffer). Not copying matters at camera sizes: a 640x480 copy is 1.2 MB of new memory, paid for
    # in page faults as well as in the copying, on every frame.
    depth_m.flags.writeable = False
    _remember_range(depth_m, value_range)
    return depth_m


# The value range of each depth image decode_depth_m returned, by id, while the image lives and stays read-only (so
# the range stays true): the checks that follow decoding (the sensor backend's, the pipeline's) take it from here
# instead of passing over every pixel again, 2 passes per frame instead of 6.
_DECODED_RANGES: dict[int, tuple[weakref.ref[np.ndarray], Any, Any]] = {}


def _value_range(depth_m: np.ndarray) -> tuple[Any, Any]:
    """The lowest and highest value of ``depth_m``, NaN skipped (both NaN for an empty or all-NaN image)."""
    if depth_m.size == 0:
        return math.nan, math.nan
    remembered = _DECODED_RANGES.get(id(depth_m))
    if remembered is not None and remembered[0]() is depth_m and not depth_m.flags.writeable:
        return remembered[1], remembered[2]
    # Kept as arrays of the image's dtype (one element each), not scalars: compared with a Python float they then
    # compare as its pixels do, in its precision, under NumPy 1's promotion rules as under NumPy 2's (a float32 pixel
    # of 0.7 is within a range from 0.7; a float32 scalar compared with 0.7 is not, under NumPy 1).
    return np.fmin.reduce(depth_m, axis=None, keepdims=True), np.fmax.reduce(depth_m, axis=None, keepdims=True)


def _remember_range(depth_m: np.ndarray, value_range: tuple[Any, Any]) -> None:
    key = id(depth_m)
    # The dict is bound in the callback: at interpreter exit the module's globals may be gone before the image.
    _DECODED_RANGES[key] = (weakref.ref(depth_m, lambda _, ranges=_DECODED_RANGES: ranges.pop(key, None)),
                            *value_range)


def _is_invalid_range(lowest: Any, highest: Any) -> bool:
    # An all-NaN image has NaN for both, which fails both comparisons: nothing to replace.
    return bool(lowest <= 0) or bool(highest == math.inf)


def invalid_depth_to_nan(depth_m: np.ndarray) -> None:
    """Set the zero, negative and infinite values of the float array ``depth_m`` to NaN, in place."""
    # NaN, zero and negative depths fail "> 0"; +inf passes it and is caught by isinf.
    np.putmask(depth_m, ~(depth_m > 0) | np.isinf(depth_m), np.nan)


def has_invalid_depth(depth_m: np.ndarray) -> bool:
    """Whether ``depth_m`` holds a zero, negative or infinite value (NaN, already the mark of an invalid pixel, does
    not count).

    Two reductions that allocate no image-sized array (none for an image :func:`decode_depth_m` returned), where a
    mask of the invalid pixels costs an array and four passes: most frames of a simulated or filtered camera have
    none, and they are then left as they are."""
    return _is_invalid_range(*_value_range(depth_m))


def has_depth_within(depth_m: np.ndarray, low_m: float, high_m: float) -> bool:
    """Whether any pixel of ``depth_m`` lies in [``low_m``, ``high_m``] (NaN never does).

    The image's lowest and highest values answer it without a mask in all but one case: the values lie on both sides
    of the range, when only looking at each pixel tells whether one is inside."""
    lowest, highest = _value_range(depth_m)  # NaN only if every value is
    if not bool(lowest <= high_m) or not bool(highest >= low_m):
        return False
    if bool(lowest >= low_m) or bool(highest <= high_m):  # that value is itself in the range
        return True
    return bool(((depth_m >= low_m) & (depth_m <= high_m)).any())


def encode_image(pixels: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """Encode an array as (height, width, step, data) little-endian, the inverse of :func:`decode_image`."""
    spec = ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}")
    expected_ndim = 2 if spec.channels == 1 else 3
    if pixels.ndim != expected_ndim or (spec.channels > 1 and pixels.shape[2] != spec.channels):
        raise ImageError(f"array of shape {pixels.shape} does not fit encoding {encoding!r}")
    _check_encodable(pixels, spec.dtype, encoding)
    array = np.ascontiguousarray(pixels, dtype=spec.dtype.newbyteorder("<"))
    height, width = array.shape[:2]
    return height, width, width * spec.channels * spec.dtype.itemsize, array.tobytes()


def _check_encodable(pixels: np.ndarray, dtype: np.dtype, encoding: str) -> None:
    """Refuse values the encoding's type cannot hold, where numpy's cast would change them silently: floats for an
    integer encoding (an RGB image in [0, 1] would become black) and integers outside its range (they wrap)."""
    if pixels.dtype == dtype or dtype.kind == "f" or pixels.dtype == np.bool_:
        return
    if pixels.dtype.kind not in "iu":
        raise ImageError(f"encoding {encoding!r} holds {dtype} values; got a {pixels.dtype} array (convert it "
                         "first, e.g. an RGB image in [0, 1] to uint8 with (rgb * 255).round())")
    if pixels.size and not np.can_cast(pixels.dtype, dtype):
        info = np.iinfo(dtype)
        lowest, highest = int(pixels.min()), int(pixels.max())
        if lowest < info.min or highest > info.max:
            raise ImageError(f"encoding {encoding!r} holds {dtype} values in [{info.min}, {info.max}]; the "
                             f"{pixels.dtype} array has values in [{lowest}, {highest}]")


def depth_to_encoding(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in metres (NaN = invalid) as a depth ``encoding`` carries it: 32FC1 metres, 16UC1 mm (0 = none).

    16UC1 holds 1 mm to 65.535 m: depth it cannot hold (NaN, infinite, zero or negative, or beyond its range) is
    written as 0, none, as a camera driver writes it; clipped, a far or infinite reading would read back as 65.535 m."""
    if encoding == "32FC1":
        return depth_m.astype(np.float32, copy=False)
    if encoding in ("16UC1", "mono16"):
        with np.errstate(invalid="ignore", over="ignore"):
            millimetres = np.round(np.asarray(depth_m, dtype=np.float64) * 1000.0)
            holdable = (millimetres >= 0) & (millimetres <= np.iinfo(np.uint16).max)  # False for NaN and inf
        return np.where(holdable, millimetres, 0.0).astype(np.uint16)
    raise ImageError(f"depth encoding {encoding!r} is not supported; expected one of {sorted(_DEPTH_UNITS_PER_M)}")
