"""Cross-check of the hand-written Image decoder against the independent ``rosbags-image`` package.

``rosbags.image`` imports OpenCV at import time, so this needs the PyPI packages ``rosbags-image`` and
``opencv-python-headless`` (together: ``rosbags-image[opencv-headless]``); ``rosbags`` provides the message types.
The whole module is skipped when they are not installed.

rosbags-image ignores ``step`` (it reads ``height x width x channels`` items from the start of ``data``), so the
byte-for-byte comparison uses unpadded messages; padded messages are compared against rosbags-image's decoding of
the same pixels without padding.
"""

from __future__ import annotations

import numpy as np
import pytest

# exc_type=ImportError: rosbags.image raises a plain ImportError (not ModuleNotFoundError) when cv2 is missing.
rosbags_image = pytest.importorskip("rosbags.image", reason="needs rosbags-image[opencv-headless]",
                                    exc_type=ImportError)
typesys = pytest.importorskip("rosbags.typesys")

from trusted_scene_graph.image import ENCODINGS, decode_depth_m, decode_image, encode_image  # noqa: E402
from trusted_scene_graph.image.decode import to_rgb  # noqa: E402

TYPESTORE = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
Image = TYPESTORE.types["sensor_msgs/msg/Image"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]

# Every encoding of ours that rosbags-image decodes as well (all of them, at the time of writing).
SHARED_ENCODINGS = sorted(ENCODINGS)
COLOUR_ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]


def random_pixels(encoding: str, seed: int, height: int = 5, width: int = 7) -> np.ndarray:
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    rng = np.random.default_rng(seed)
    if spec.dtype == np.float32:
        return rng.uniform(-100.0, 100.0, size=shape).astype(np.float32)
    return rng.integers(0, np.iinfo(spec.dtype).max, size=shape, endpoint=True).astype(spec.dtype)


def image_message(encoding: str, pixels: np.ndarray, big_endian: bool, padding: int = 0):
    """A rosbags sensor_msgs/Image holding ``pixels`` in the given byte order, each row followed by ``padding``."""
    spec = ENCODINGS[encoding]
    array = np.ascontiguousarray(pixels, dtype=spec.dtype.newbyteorder(">" if big_endian else "<"))
    height, width = array.shape[:2]
    row_bytes = width * spec.channels * spec.dtype.itemsize
    rows = array.tobytes()
    data = b"".join(rows[r * row_bytes:(r + 1) * row_bytes] + b"\x5a" * padding for r in range(height))
    return Image(
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id="camera_color_optical_frame"),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=row_bytes + padding,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def ours(msg) -> np.ndarray:
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("encoding", SHARED_ENCODINGS)
def test_decode_image_agrees_with_rosbags_image_on_every_shared_encoding(encoding, big_endian):
    for seed in range(3):
        msg = image_message(encoding, random_pixels(encoding, seed), big_endian)
        theirs = np.asarray(rosbags_image.message_to_cvimage(msg))
        mine = ours(msg)
        assert mine.shape == theirs.shape
        assert mine.dtype == theirs.dtype.newbyteorder("=")
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("encoding", SHARED_ENCODINGS)
def test_a_padded_message_decodes_to_what_rosbags_image_gives_for_the_same_pixels_unpadded(encoding):
    pixels = random_pixels(encoding, seed=7)
    theirs = np.asarray(rosbags_image.message_to_cvimage(image_message(encoding, pixels, False)))
    np.testing.assert_array_equal(ours(image_message(encoding, pixels, False, padding=3)), theirs)


@pytest.mark.parametrize("encoding", COLOUR_ENCODINGS)
def test_to_rgb_agrees_with_rosbags_image_conversion_to_rgb8(encoding):
    msg = image_message(encoding, random_pixels(encoding, seed=11), False)
    theirs = np.asarray(rosbags_image.message_to_cvimage(msg, "rgb8"))
    np.testing.assert_array_equal(to_rgb(encoding, ours(msg)), theirs)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_millimetre_depth_agrees_with_rosbags_image_values_divided_by_1000(encoding):
    pixels = random_pixels(encoding, seed=3)
    pixels[0, :3] = 0  # invalid depth
    msg = image_message(encoding, pixels, True)
    theirs = np.asarray(rosbags_image.message_to_cvimage(msg)).astype(np.float64) / 1000.0
    theirs[theirs == 0] = np.nan
    mine = decode_depth_m(msg.encoding, msg.height, msg.width, msg.step, True, msg.data)
    np.testing.assert_allclose(mine, theirs, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("encoding", SHARED_ENCODINGS)
def test_encode_image_output_is_a_valid_message_that_rosbags_image_and_cdr_round_trip(encoding):
    pixels = random_pixels(encoding, seed=5)
    height, width, step, data = encode_image(pixels, encoding)
    msg = Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""), height=height, width=width,
                encoding=encoding, is_bigendian=0, step=step, data=np.frombuffer(data, dtype=np.uint8))
    received = TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
    np.testing.assert_array_equal(np.asarray(rosbags_image.message_to_cvimage(received)), pixels)
    np.testing.assert_array_equal(ours(received), pixels)
