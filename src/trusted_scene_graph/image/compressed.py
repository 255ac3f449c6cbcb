"""Decode and encode ``sensor_msgs/CompressedImage`` payloads as image_transport's plugins write them.

- ``compressed`` (colour): ``format`` is ``"jpeg"``/``"png"`` or, from image_transport,
  ``"rgb8; jpeg compressed bgr8"``; the payload is a plain JPEG or PNG file.
- ``compressedDepth`` (depth): ``format`` is ``"16UC1; compressedDepth png"`` or ``"32FC1; compressedDepth png"``
  (ROS 1 wrote ``"16UC1; compressedDepth"``). The payload is a 12-byte header (int32 codec, float32
  ``depthQuantA``, float32 ``depthQuantB``) followed by a 16-bit PNG: millimetres for 16UC1, and for 32FC1 the
  quantised inverse depth ``q = A / depth_m + B`` (0 = no depth), decoded as ``depth_m = A / (q - B)``.

The codecs themselves are OpenCV's (imported on first use); only the header is handled here.
"""

from __future__ import annotations

import re
import struct

import numpy as np

from trusted_scene_graph.image.decode import ImageError, millimetres_to_m

_DEPTH_HEADER = struct.Struct("<iff")  # compressed_depth_image_transport::ConfigHeader
_PNG_CODEC = 0  # compressionFormat::PNG in that header
_SUPPORTED_DEPTH = ("16UC1", "32FC1")


def _cv2():
    import cv2  # noqa: PLC0415 - OpenCV is only needed by the compressed transports

    return cv2


def _imdecode(payload: np.ndarray, what: str) -> np.ndarray | None:
    """OpenCV's decoder on ``payload`` (None when it cannot decode it). OpenCV raises its own ``cv2.error`` instead
    of returning None for some payloads (an empty one), and that error is not the core's: it is turned into an
    :class:`ImageError` here, so a node skips the frame instead of losing its executor."""
    if payload.size == 0:
        raise ImageError(f"the {what} payload is empty (0 bytes)")
    cv2 = _cv2()
    try:
        return cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"OpenCV cannot decode the {payload.size}-byte {what} payload: {exc}") from exc


def is_compressed_depth(image_format: str) -> bool:
    return "compresseddepth" in image_format.replace(" ", "").lower()


def decode_compressed_rgb(image_format: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """A JPEG/PNG ``CompressedImage`` as an (H, W, 3) uint8 RGB array."""
    if is_compressed_depth(image_format):
        raise ImageError(f"format {image_format!r} is a compressed depth image, not a colour image")
    image = _imdecode(np.frombuffer(data, dtype=np.uint8), f"CompressedImage (format {image_format!r})")
    if image is None:
        raise ImageError(f"cannot decode the {len(data)}-byte CompressedImage payload (format {image_format!r}) "
                         "as JPEG or PNG")
    if image.dtype != np.uint8:
        raise ImageError(f"compressed colour image has {image.dtype} pixels, expected 8-bit (format "
                         f"{image_format!r})")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[..., 2::-1])  # OpenCV decodes to BGRA
    return np.ascontiguousarray(image[..., ::-1])  # and to BGR


def _depth_encoding(image_format: str) -> str:
    encoding = image_format.split(";")[0].strip()
    if encoding not in _SUPPORTED_DEPTH:
        raise ImageError(f"compressedDepth format {image_format!r}: depth encoding {encoding!r} is not supported; "
                         f"expected one of {list(_SUPPORTED_DEPTH)}")
    # is_compressed_depth matches the word in any case, so the codec after it is found in any case too.
    parts = re.split("compresseddepth", image_format, maxsplit=1, flags=re.IGNORECASE)
    codec = parts[1].strip().lower() if len(parts) == 2 else ""
    if codec not in ("", "png"):
        raise ImageError(f"compressedDepth format {image_format!r}: codec {codec!r} is not supported; only png")
    return encoding


def decode_compressed_depth_m(image_format: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """A ``compressedDepth`` payload as float32 (H, W) metres, NaN where the sensor had no depth."""
    if not is_compressed_depth(image_format):
        raise ImageError(f"format {image_format!r} is not a compressedDepth image (expected e.g. "
                         "'16UC1; compressedDepth png')")
    encoding = _depth_encoding(image_format)
    payload = bytes(data)
    if len(payload) <= _DEPTH_HEADER.size:
        raise ImageError(f"compressedDepth payload has {len(payload)} bytes, shorter than its "
                         f"{_DEPTH_HEADER.size}-byte header")
    codec, quant_a, quant_b = _DEPTH_HEADER.unpack_from(payload)
    if codec != _PNG_CODEC:
        raise ImageError(f"compressedDepth header names codec {codec}; only PNG ({_PNG_CODEC}) is supported")
    image = _imdecode(np.frombuffer(payload, dtype=np.uint8, offset=_DEPTH_HEADER.size),
                      f"compressedDepth PNG (format {image_format!r})")
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise ImageError(f"cannot decode the compressedDepth payload (format {image_format!r}) as a 16-bit "
                         "single-channel PNG")
    if encoding == "16UC1":
        depth_m = millimetres_to_m(image)  # as raw 16UC1 decodes
        depth_m[image == 0] = np.nan
        return depth_m
    quantised = image.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_m = np.float32(quant_a) / (quantised - np.float32(quant_b))
    depth_m[(image == 0) | ~np.isfinite(depth_m) | (depth_m <= 0)] = np.nan
    return depth_m


def encode_compressed_rgb(rgb: np.ndarray, codec: str = "jpeg", jpeg_quality: int = 95) -> tuple[str, bytes]:
    """``(format, data)`` of a ``CompressedImage`` holding ``rgb``, as image_transport's publisher writes it."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    if codec not in ("jpeg", "png"):
        raise ImageError(f"codec {codec!r} is not supported; expected 'jpeg' or 'png'")
    cv2 = _cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == "jpeg" else []
    ok, encoded = cv2.imencode(f".{'jpg' if codec == 'jpeg' else 'png'}", rgb[..., ::-1], params)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {codec}")
    return f"rgb8; {codec} compressed bgr8", encoded.tobytes()


def encode_compressed_depth(
    depth_m: np.ndarray, encoding: str = "16UC1", depth_max_m: float = 10.0, depth_quantization: float = 100.0
) -> tuple[str, bytes]:
    """``(format, data)`` of a ``compressedDepth`` image, with compressed_depth_image_transport's quantisation.

    As its codec, depth beyond ``depth_max_m`` is written as none (0); so is depth the 16-bit image cannot hold: in
    16UC1 over 65.535 m, in 32FC1 (inverse depth) nearer than ``A / (65535 - B)`` (0.15 m with the defaults), where
    clipping would make it that depth."""
    if encoding not in _SUPPORTED_DEPTH:
        raise ImageError(f"depth encoding {encoding!r} is not supported; expected one of {list(_SUPPORTED_DEPTH)}")
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if encoding == "16UC1":
            quant_a = quant_b = 0.0
            quantised = np.round(depth * 1000.0)
            valid &= quantised <= min(65535.0, np.floor(depth_max_m * 1000.0))
        else:
            quant_a = depth_quantization * (depth_quantization + 1.0)
            quant_b = 1.0 - quant_a / depth_max_m
            valid &= depth < depth_max_m
            quantised = np.round(quant_a / depth + quant_b)
        valid &= (quantised >= 1) & (quantised <= 65535)
        image = np.where(valid, quantised, 0.0).astype(np.uint16)
    ok, encoded = _cv2().imencode(".png", image)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {image.shape[1]}x{image.shape[0]} depth image as png")
    return f"{encoding}; compressedDepth png", _DEPTH_HEADER.pack(_PNG_CODEC, quant_a, quant_b) + encoded.tobytes()
