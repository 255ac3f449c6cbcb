"""CompressedImage payloads: image_transport's 'compressed' (JPEG/PNG) and 'compressedDepth' (PNG) transports."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from trusted_scene_graph.image import ImageError
from trusted_scene_graph.image.compressed import (
    decode_compressed_depth_m,
    decode_compressed_rgb,
    encode_compressed_depth,
    encode_compressed_rgb,
)

rosbags_image = pytest.importorskip("rosbags.image", reason="needs rosbags-image[opencv-headless]",
                                    exc_type=ImportError)
typesys = pytest.importorskip("rosbags.typesys")
CompressedImage = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE).types["sensor_msgs/msg/CompressedImage"]
Header = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE).types["std_msgs/msg/Header"]
Time = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE).types["builtin_interfaces/msg/Time"]


def gradient_rgb(height: int = 24, width: int = 32) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols * 8, rows * 10, (rows + cols) * 4], axis=-1).astype(np.uint8)


def test_png_colour_round_trips_exactly():
    image_format, data = encode_compressed_rgb(gradient_rgb(), "png")
    assert image_format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed_rgb(image_format, data), gradient_rgb())


def test_jpeg_colour_round_trips_within_compression_noise_and_keeps_channel_order():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: a swapped channel order would show up as blue
    decoded = decode_compressed_rgb(*encode_compressed_rgb(rgb, "jpeg"))
    assert decoded.shape == (16, 16, 3)
    assert np.abs(decoded.astype(int) - rgb).max() <= 3


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_colour_decoding_agrees_with_rosbags_image(codec):
    image_format, data = encode_compressed_rgb(gradient_rgb(), codec)
    message = CompressedImage(Header(Time(0, 0), "camera"), image_format, np.frombuffer(data, np.uint8))
    theirs = rosbags_image.compressed_image_to_cvimage(message, "rgb8")
    np.testing.assert_array_equal(decode_compressed_rgb(image_format, data), theirs)


def test_a_grey_png_becomes_three_equal_channels():
    import cv2

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    decoded = decode_compressed_rgb("png", cv2.imencode(".png", grey)[1].tobytes())
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))


def test_16uc1_compressed_depth_round_trips_in_millimetres_with_holes_as_nan():
    depth_m = np.full((6, 8), 1.234, np.float32)
    depth_m[2, 3] = np.nan
    image_format, data = encode_compressed_depth(depth_m, "16UC1")
    assert image_format == "16UC1; compressedDepth png"
    decoded = decode_compressed_depth_m(image_format, data)
    assert decoded.dtype == np.float32
    assert np.isnan(decoded[2, 3])
    np.testing.assert_allclose(decoded[~np.isnan(depth_m)], 1.234, atol=1e-6)


def test_16uc1_compressed_depth_decodes_each_millimetre_as_raw_16uc1_does():
    # The float32 nearest each value's metres: 1500 mm is depth.max_m 1.5 exactly, whichever transport carries it.
    millimetres = np.arange(1, 65536, dtype=np.uint16).reshape(1, -1)
    image_format, data = encode_compressed_depth(millimetres / 1000.0, "16UC1", depth_max_m=65.535)
    decoded = decode_compressed_depth_m(image_format, data)
    np.testing.assert_array_equal(decoded, (millimetres / 1000.0).astype(np.float32))
    assert decoded[0, 1499] == np.float32(1.5)


def test_32fc1_compressed_depth_uses_inverse_depth_quantisation():
    depth_m = np.linspace(0.3, 4.0, 48, dtype=np.float32).reshape(6, 8)
    depth_m[0, 0] = np.nan
    depth_m[0, 1] = 12.0  # beyond depth_max_m: no depth
    decoded = decode_compressed_depth_m(*encode_compressed_depth(depth_m, "32FC1", depth_max_m=10.0))
    assert np.isnan(decoded[0, 0]) and np.isnan(decoded[0, 1])
    # One quantisation step is depth^2 / A with A = 100 * 101: 1.6 mm at 4 m; rounding costs half of it.
    valid = np.isfinite(depth_m) & (depth_m < 10.0)
    error = np.abs(decoded[valid] - depth_m[valid])
    assert np.all(error <= 0.5 * depth_m[valid] ** 2 / 10100 + 1e-5)


def test_depth_a_compressed_depth_image_cannot_hold_is_written_as_none_not_clipped_to_a_valid_reading():
    # As compressed_depth_image_transport's codec: beyond depth_max_m is none, in 16UC1 too; and what the 16-bit
    # image cannot hold (32FC1 nearer than A / (65535 - B), 0.15 m here; 16UC1 beyond 65.535 m) is none as well.
    depth_m = np.array([[0.05, 0.1, 0.3, 9.0, 12.0, 70.0, np.inf]])
    near_32fc1 = decode_compressed_depth_m(*encode_compressed_depth(depth_m, "32FC1", depth_max_m=10.0))
    assert np.isnan(near_32fc1[0, [0, 1, 4, 5, 6]]).all()
    np.testing.assert_allclose(near_32fc1[0, [2, 3]], [0.3, 9.0], rtol=1e-3)
    far_16uc1 = decode_compressed_depth_m(*encode_compressed_depth(depth_m, "16UC1", depth_max_m=10.0))
    assert np.isnan(far_16uc1[0, 4:]).all()
    np.testing.assert_allclose(far_16uc1[0, :4], [0.05, 0.1, 0.3, 9.0], rtol=1e-6)
    unlimited = decode_compressed_depth_m(*encode_compressed_depth(depth_m, "16UC1", depth_max_m=100.0))
    assert unlimited[0, 4] == np.float32(12.0) and np.isnan(unlimited[0, 5:]).all()


def test_the_codec_after_compressed_depth_is_read_in_any_letter_case():
    _, data = encode_compressed_depth(np.ones((2, 2), np.float32), "16UC1")
    np.testing.assert_allclose(decode_compressed_depth_m("16UC1; compresseddepth PNG", data), 1.0)
    with pytest.raises(ImageError, match=r"codec 'rvl' is not supported; only png"):
        decode_compressed_depth_m("16UC1; CompressedDepth rvl", data)


def test_the_ros1_format_without_a_codec_name_is_accepted():
    _, data = encode_compressed_depth(np.ones((2, 2), np.float32), "16UC1")
    np.testing.assert_allclose(decode_compressed_depth_m("16UC1; compressedDepth", data), 1.0)


def test_a_corrupt_colour_payload_is_rejected_naming_its_size_and_format():
    with pytest.raises(ImageError, match=r"cannot decode the 12-byte CompressedImage payload \(format 'jpeg'\)"):
        decode_compressed_rgb("jpeg", b"not an image")


def test_an_empty_colour_payload_is_an_image_error_not_an_opencv_one():
    # OpenCV raises its own cv2.error for an empty buffer instead of returning None; a node must see the core's error.
    with pytest.raises(ImageError, match=r"the CompressedImage \(format 'jpeg'\) payload is empty \(0 bytes\)"):
        decode_compressed_rgb("jpeg", b"")


def test_any_opencv_decoding_error_becomes_an_image_error(monkeypatch):
    cv2 = pytest.importorskip("cv2")

    def failing_imdecode(buffer, flags):
        raise cv2.error("imdecode failed in this test")

    monkeypatch.setattr(cv2, "imdecode", failing_imdecode)
    with pytest.raises(ImageError, match=r"OpenCV cannot decode the 12-byte CompressedImage \(format 'png'\) "
                                         r"payload: .*imdecode failed in this test"):
        decode_compressed_rgb("png", b"not an image")
    with pytest.raises(ImageError, match="OpenCV cannot decode the 8-byte compressedDepth PNG"):
        decode_compressed_depth_m("16UC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + b"x" * 8)


@pytest.mark.parametrize(("image_format", "data", "message"), [
    ("16UC1; compressedDepth png", b"png", "compressedDepth payload has 3 bytes, shorter than its 12-byte header"),
    ("8UC3; compressedDepth png", b"x" * 20, "depth encoding '8UC3' is not supported"),
    ("16UC1; compressedDepth rvl", b"x" * 20, "codec 'rvl' is not supported; only png"),
    ("16UC1; compressedDepth png", struct.pack("<iff", 1, 0, 0) + b"x" * 8, "names codec 1; only PNG"),
    ("16UC1; compressedDepth png", struct.pack("<iff", 0, 0, 0) + b"x" * 8, "cannot decode the compressedDepth"),
    ("jpeg", b"x" * 20, "is not a compressedDepth image"),
])
def test_bad_compressed_depth_payloads_are_rejected_naming_the_problem(image_format, data, message):
    with pytest.raises(ImageError, match=message):
        decode_compressed_depth_m(image_format, data)


def test_a_depth_payload_on_the_colour_decoder_is_rejected():
    with pytest.raises(ImageError, match="is a compressed depth image, not a colour image"):
        decode_compressed_rgb("16UC1; compressedDepth png", b"x" * 20)
