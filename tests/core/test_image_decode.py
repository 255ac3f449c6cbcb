"""Specification of sensor_msgs/Image decoding and encoding (trusted_scene_graph.image.decode)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.image import (
    ENCODINGS,
    ImageError,
    decode,
    decode_depth_m,
    decode_image,
    depth_to_encoding,
    encode_image,
    has_depth_within,
    has_invalid_depth,
)
from trusted_scene_graph.image.decode import to_rgb


def sample_pixels(encoding: str, height: int = 3, width: int = 5) -> np.ndarray:
    """A deterministic image for ``encoding`` whose every value is distinct where the dtype allows."""
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    values = np.arange(int(np.prod(shape)))
    if spec.dtype == np.uint8:
        return (values * 7 % 256).astype(np.uint8).reshape(shape)
    if spec.dtype == np.uint16:
        return (values * 4099 + 258).astype(np.uint16).reshape(shape)  # both bytes differ, so byte order matters
    return (values * 0.25 - 1.5).astype(np.float32).reshape(shape)


def test_image_errors_are_tsg_errors():
    assert issubclass(ImageError, TsgError)


def test_the_supported_encodings_are_the_nine_documented_ones():
    assert sorted(ENCODINGS) == sorted(
        ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1", "32FC1"]
    )


# --- round trips -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encode_then_decode_returns_the_same_pixels_for_every_encoding(encoding):
    pixels = sample_pixels(encoding)
    height, width, step, data = encode_image(pixels, encoding)
    decoded = decode_image(encoding, height, width, step, False, data)
    assert decoded.dtype == ENCODINGS[encoding].dtype
    assert decoded.shape == pixels.shape
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encode_reports_the_unpadded_step_and_little_endian_bytes(encoding):
    spec = ENCODINGS[encoding]
    pixels = sample_pixels(encoding, height=2, width=4)
    height, width, step, data = encode_image(pixels, encoding)
    assert (height, width) == (2, 4)
    assert step == 4 * spec.channels * spec.dtype.itemsize
    assert len(data) == step * height
    assert data == pixels.astype(spec.dtype.newbyteorder("<")).tobytes()


def test_encode_casts_integers_the_encoding_can_hold_to_its_dtype():
    _, _, step, data = encode_image(np.array([[1, 65535]], np.int64), "16UC1")
    assert step == 4
    assert data == b"\x01\x00\xff\xff"
    _, _, _, data = encode_image(np.array([[True, False]]), "mono8")  # a mask
    assert data == b"\x01\x00"
    _, _, _, data = encode_image(np.array([[2, -1]], np.int32), "32FC1")  # any number fits a float encoding
    assert np.frombuffer(data, "<f4").tolist() == [2.0, -1.0]


@pytest.mark.parametrize(("pixels", "encoding", "message"), [
    (np.full((1, 1, 3), 0.7), "rgb8", r"^encoding 'rgb8' holds uint8 values; got a float64 array \(convert it"),
    (np.array([[300]]), "mono8", r"^encoding 'mono8' holds uint8 values in \[0, 255\]; the int64 array has values "
                                 r"in \[300, 300\]$"),
    (np.array([[70000, 1]], np.int32), "16UC1", r"^encoding '16UC1' holds uint16 values in \[0, 65535\]; the "
                                                r"int32 array has values in \[1, 70000\]$"),
    (np.array([[-1]], np.int16), "16UC1", r"values in \[-1, -1\]$"),
])
def test_encode_refuses_values_the_encoding_cannot_hold_instead_of_wrapping_them(pixels, encoding, message):
    with pytest.raises(ImageError, match=message):
        encode_image(pixels, encoding)


def test_encode_rejects_an_array_whose_shape_does_not_fit_the_encoding():
    with pytest.raises(ImageError, match=r"^array of shape \(2, 3\) does not fit encoding 'rgb8'$"):
        encode_image(np.zeros((2, 3), np.uint8), "rgb8")
    with pytest.raises(ImageError, match=r"^array of shape \(2, 3, 4\) does not fit encoding 'rgb8'$"):
        encode_image(np.zeros((2, 3, 4), np.uint8), "rgb8")
    with pytest.raises(ImageError, match=r"^array of shape \(2, 3, 1\) does not fit encoding 'mono8'$"):
        encode_image(np.zeros((2, 3, 1), np.uint8), "mono8")


def test_encode_rejects_an_unknown_encoding_listing_the_supported_ones():
    with pytest.raises(ImageError, match=r"^unsupported image encoding 'yuv422'; supported: \['16UC1', "):
        encode_image(np.zeros((2, 2), np.uint8), "yuv422")


# --- row padding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_row_padding_beyond_the_pixel_bytes_is_dropped(encoding):
    pixels = sample_pixels(encoding, height=4, width=3)
    height, width, step, data = encode_image(pixels, encoding)
    padding = 5  # odd on purpose: rows then start at addresses not aligned to the item size
    padded = b"".join(data[r * step:(r + 1) * step] + bytes([0xAB]) * padding for r in range(height))
    decoded = decode_image(encoding, height, width, step + padding, False, padded)
    np.testing.assert_array_equal(decoded, pixels)


def test_a_padded_image_decodes_to_a_contiguous_array():
    padded = bytes([1, 2, 9, 3, 4, 9])  # 2x2 mono8 with one padding byte per row
    decoded = decode_image("mono8", 2, 2, 3, False, padded)
    np.testing.assert_array_equal(decoded, [[1, 2], [3, 4]])
    assert decoded.flags.c_contiguous


# --- byte order ------------------------------------------------------------------------------------------------


def test_big_endian_16uc1_decodes_to_the_right_values():
    data = bytes([0x01, 0x02, 0xFF, 0x00])  # 0x0102 = 258, 0xFF00 = 65280
    decoded = decode_image("16UC1", 1, 2, 4, True, data)
    np.testing.assert_array_equal(decoded, [[258, 65280]])
    assert decoded.dtype == np.dtype(np.uint16)
    assert decoded.dtype.isnative


def test_little_endian_16uc1_reads_the_same_bytes_the_other_way_round():
    decoded = decode_image("16UC1", 1, 2, 4, False, bytes([0x01, 0x02, 0xFF, 0x00]))
    np.testing.assert_array_equal(decoded, [[0x0201, 0x00FF]])


def test_big_endian_32fc1_decodes_to_the_right_values():
    values = np.array([[1.5, -2.25, 1000.125]], dtype=">f4")
    decoded = decode_image("32FC1", 1, 3, 12, True, values.tobytes())
    np.testing.assert_array_equal(decoded, [[1.5, -2.25, 1000.125]])
    assert decoded.dtype == np.dtype(np.float32)
    assert decoded.dtype.isnative


def test_the_big_endian_flag_does_not_change_8_bit_images():
    data = bytes(range(6))
    np.testing.assert_array_equal(decode_image("rgb8", 1, 2, 6, True, data), decode_image("rgb8", 1, 2, 6, False, data))


def test_decode_accepts_bytearray_and_memoryview_data():
    data = bytes([10, 20, 30, 40])
    for buffer in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(decode_image("mono8", 2, 2, 2, False, buffer), [[10, 20], [30, 40]])


# --- inconsistent fields ---------------------------------------------------------------------------------------


def test_an_unknown_encoding_is_rejected_listing_the_supported_ones():
    with pytest.raises(ImageError, match=r"^unsupported image encoding 'bayer_rggb8'; supported: \['16UC1', '32FC1', "
                                         r"'8UC1', 'bgr8', 'bgra8', 'mono16', 'mono8', 'rgb8', 'rgba8'\]$"):
        decode_image("bayer_rggb8", 1, 1, 1, False, b"\x00")


def test_a_step_smaller_than_a_row_is_rejected_naming_step_width_channels_and_item_size():
    with pytest.raises(ImageError, match=r"^step 10 is smaller than width 4 x 3 channels x 1 bytes = 12 for 'rgb8'$"):
        decode_image("rgb8", 2, 4, 10, False, bytes(20))


def test_data_of_the_wrong_length_is_rejected_naming_both_lengths():
    with pytest.raises(ImageError, match=r"^data has 7 bytes, expected step 4 x height 2 = 8$"):
        decode_image("16UC1", 2, 2, 4, False, bytes(7))
    with pytest.raises(ImageError, match=r"^data has 9 bytes, expected step 4 x height 2 = 8$"):
        decode_image("16UC1", 2, 2, 4, False, bytes(9))


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0), (-1, 4)])
def test_an_empty_image_size_is_rejected(height, width):
    with pytest.raises(ImageError, match=rf"^image size {width}x{height} is empty$"):
        decode_image("mono8", height, width, 4, False, b"")


# --- depth -----------------------------------------------------------------------------------------------------


def test_16uc1_depth_is_millimetres_converted_to_metres():
    _, _, step, data = encode_image(np.array([[1000, 1500], [250, 65535]], np.uint16), "16UC1")
    depth = decode_depth_m("16UC1", 2, 2, step, False, data)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[1.0, 1.5], [0.25, 65.535]], rtol=1e-6)


def test_every_millimetre_value_becomes_the_float32_nearest_its_metres():
    # So 1500 mm is 1.5 m exactly, as depth.max_m 1.5 is: a frame wholly at that limit is within it.
    millimetres = np.arange(1, 65536, dtype=np.uint16).reshape(1, -1)
    _, _, step, data = encode_image(millimetres, "16UC1")
    depth = decode_depth_m("16UC1", 1, millimetres.size, step, False, data)
    np.testing.assert_array_equal(depth, (millimetres / 1000.0).astype(np.float32))
    assert depth[0, 1499] == np.float32(1.5)


def test_16uc1_depth_of_zero_is_invalid_and_becomes_nan():
    _, _, step, data = encode_image(np.array([[0, 2000]], np.uint16), "16UC1")
    depth = decode_depth_m("16UC1", 1, 2, step, False, data)
    assert math.isnan(depth[0, 0])
    assert depth[0, 1] == pytest.approx(2.0)


def test_mono16_depth_is_also_millimetres():
    _, _, step, data = encode_image(np.array([[500]], np.uint16), "mono16")
    assert decode_depth_m("mono16", 1, 1, step, False, data)[0, 0] == pytest.approx(0.5)


def test_big_endian_16uc1_depth_is_decoded_before_scaling():
    depth = decode_depth_m("16UC1", 1, 1, 2, True, bytes([0x03, 0xE8]))  # 1000 mm
    assert depth[0, 0] == pytest.approx(1.0)


def test_32fc1_depth_is_already_in_metres():
    _, _, step, data = encode_image(np.array([[0.75, 3.5]], np.float32), "32FC1")
    np.testing.assert_array_equal(decode_depth_m("32FC1", 1, 2, step, False, data), [[0.75, 3.5]])


def test_32fc1_nan_infinity_zero_and_negative_depth_become_nan():
    raw = np.array([[math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 2.0]], np.float32)
    _, _, step, data = encode_image(raw, "32FC1")
    depth = decode_depth_m("32FC1", 1, 7, step, False, data)
    assert np.isnan(depth[0, :6]).all()
    assert depth[0, 6] == 2.0


def test_valid_32fc1_depth_is_a_read_only_view_of_the_message_without_a_copy():
    raw = np.array([[0.75, 3.5]], np.float32)
    buffer = bytearray(raw.tobytes())
    depth = decode_depth_m("32FC1", 1, 2, 8, False, buffer)
    assert np.shares_memory(depth, np.frombuffer(buffer, np.uint8))
    assert not depth.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        depth[0, 0] = 9.0
    assert bytes(buffer) == raw.tobytes()


@pytest.mark.parametrize(("encoding", "data"), [
    ("32FC1", np.array([[0.75, 0.0]], np.float32).tobytes()),  # an invalid value: marked NaN in a copy
    ("16UC1", np.array([[750, 0]], np.uint16).tobytes()),  # millimetres: always converted into a new array
])
def test_depth_that_needs_converting_is_a_new_read_only_array_and_the_message_is_left_alone(encoding, data):
    buffer = bytearray(data)
    depth = decode_depth_m(encoding, 1, 2, len(data), False, buffer)
    assert not np.shares_memory(depth, np.frombuffer(buffer, np.uint8))
    assert not depth.flags.writeable
    np.testing.assert_allclose(depth, np.array([[0.75, np.nan]], np.float32), rtol=1e-6)
    assert bytes(buffer) == data


@pytest.mark.parametrize(("values", "expected"), [
    ([0.5, 2.0], False),
    ([0.5, math.nan], False),  # NaN already marks an invalid pixel
    ([math.nan, math.nan], False),
    ([0.5, 0.0], True),
    ([0.5, -0.0], True),
    ([0.5, -1.0], True),
    ([0.5, math.inf], True),
    ([0.5, -math.inf], True),
    ([math.nan, math.inf], True),
    ([], False),
])
def test_has_invalid_depth_finds_zero_negative_and_infinite_depths_but_not_nan(values, expected):
    assert has_invalid_depth(np.array(values, np.float32)) is expected


def test_decoding_depth_does_not_modify_the_message_buffer():
    raw = np.array([[0.0, 2.0]], np.float32)
    buffer = bytearray(raw.tobytes())
    decode_depth_m("32FC1", 1, 2, 8, False, buffer)
    assert bytes(buffer) == raw.tobytes()


def test_padded_depth_rows_are_dropped_before_conversion():
    data = np.array([1000, 2000], "<u2").tobytes() + b"\xff\xff" + np.array([3000, 0], "<u2").tobytes() + b"\xff\xff"
    depth = decode_depth_m("16UC1", 2, 2, 6, False, data)
    np.testing.assert_allclose(depth[0], [1.0, 2.0], rtol=1e-6)
    assert depth[1, 0] == pytest.approx(3.0)
    assert math.isnan(depth[1, 1])


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "8UC1", "bgra8"])
def test_a_non_depth_encoding_is_rejected_for_depth(encoding):
    with pytest.raises(ImageError, match=rf"^depth encoding '{encoding}' is not supported; expected one of "
                                         r"\['16UC1', '32FC1', 'mono16'\]$"):
        decode_depth_m(encoding, 1, 1, 4, False, bytes(4))


def test_depth_decoding_still_checks_the_fields():
    with pytest.raises(ImageError, match=r"^data has 3 bytes, expected step 2 x height 1 = 2$"):
        decode_depth_m("16UC1", 1, 1, 2, False, bytes(3))


# --- to_rgb ----------------------------------------------------------------------------------------------------

RGB = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint8)


def test_to_rgb_returns_rgb8_unchanged():
    np.testing.assert_array_equal(to_rgb("rgb8", RGB), RGB)


def test_to_rgb_swaps_bgr8_channels():
    np.testing.assert_array_equal(to_rgb("bgr8", RGB[..., ::-1]), RGB)


def test_to_rgb_drops_the_alpha_channel_of_rgba8():
    rgba = np.concatenate([RGB, np.full((1, 2, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb("rgba8", rgba), RGB)


def test_to_rgb_swaps_and_drops_alpha_of_bgra8():
    bgra = np.concatenate([RGB[..., ::-1], np.full((1, 2, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb("bgra8", bgra), RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_to_rgb_repeats_a_mono_image_into_three_equal_channels(encoding):
    mono = np.array([[0, 128], [200, 255]], np.uint8)
    rgb = to_rgb(encoding, mono)
    assert rgb.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], mono)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "mono16"])
def test_to_rgb_rejects_a_non_colour_encoding(encoding):
    with pytest.raises(ImageError, match=rf"^encoding '{encoding}' is not a colour image; expected one of rgb8, "):
        to_rgb(encoding, np.zeros((1, 1)))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_a_decoded_colour_image_becomes_an_h_w_3_uint8_rgb_image(encoding):
    pixels = sample_pixels(encoding, height=2, width=3)
    height, width, step, data = encode_image(pixels, encoding)
    rgb = to_rgb(encoding, decode_image(encoding, height, width, step, False, data))
    assert rgb.shape == (2, 3, 3)
    assert rgb.dtype == np.uint8


# --- depth_to_encoding -----------------------------------------------------------------------------------------


def test_depth_to_32fc1_keeps_metres_as_float32():
    depth = np.array([[1.25, np.nan]], np.float64)
    encoded = depth_to_encoding(depth, "32FC1")
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, [[1.25, np.nan]])


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_depth_to_16_bit_is_rounded_millimetres_with_zero_for_what_it_cannot_hold(encoding):
    # Beyond 65.535 m or infinite is no reading (0), as NaN is: clipped, it would read back as a valid 65.535 m.
    depth = np.array([[1.0, 1.2346, 0.0004, np.nan, -1.0, 65.535, 65.5356, 70.0, np.inf, -np.inf]])
    encoded = depth_to_encoding(depth, encoding)
    assert encoded.dtype == np.uint16
    np.testing.assert_array_equal(encoded, [[1000, 1235, 0, 0, 0, 65535, 0, 0, 0, 0]])


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_to_encoding_then_decode_depth_m_round_trips_valid_and_invalid_pixels(encoding):
    depth = np.array([[0.5, 2.0], [np.nan, 3.25]], np.float32)
    height, width, step, data = encode_image(depth_to_encoding(depth, encoding), encoding)
    np.testing.assert_allclose(decode_depth_m(encoding, height, width, step, False, data), depth, rtol=1e-6,
                               equal_nan=True)


def test_depth_to_a_non_depth_encoding_is_rejected():
    with pytest.raises(ImageError, match=r"^depth encoding 'rgb8' is not supported; expected one of "
                                         r"\['16UC1', '32FC1', 'mono16'\]$"):
        depth_to_encoding(np.zeros((1, 1)), "rgb8")


@pytest.mark.parametrize("values", [
    [0.5, 2.0],  # all in range
    [0.01, 0.5],  # the highest in range
    [0.5, 20.0],  # the lowest in range
    [0.01, 20.0],  # on both sides, none inside
    [0.01, 3.0, 20.0],  # on both sides, one inside
    [0.01, 0.02],  # all below
    [20.0, 30.0],  # all above
    [math.nan, math.nan],
    [math.nan, 3.0],
    [0.05, 10.0],  # the range's ends are inside it
    [-math.inf, math.inf],
    [-math.inf, 1.0, math.inf],
    [],
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_has_depth_within_answers_as_a_mask_of_the_range_would(values, dtype):
    depth_m = np.array(values, dtype)
    expected = bool(((depth_m >= 0.05) & (depth_m <= 10.0)).any())
    assert has_depth_within(depth_m, 0.05, 10.0) is expected


@pytest.mark.parametrize(("value", "low_m", "high_m"), [
    (0.7, 0.7, 10.0), (0.1, 0.05, 0.1), (0.1, np.float64(0.1), 1.0),
])
def test_a_float32_pixel_at_a_bound_is_within_the_range_as_the_mask_compares_it(value, low_m, high_m):
    depth_m = np.array([value], np.float32)
    assert bool(((depth_m >= low_m) & (depth_m <= high_m)).any()) is has_depth_within(depth_m, low_m, high_m)
    decoded = decode_depth_m("32FC1", 1, 1, 4, False, depth_m.tobytes())
    assert has_depth_within(decoded, low_m, high_m) is has_depth_within(depth_m, low_m, high_m)


def test_checks_of_a_decoded_depth_image_agree_with_those_of_a_copy_the_decoder_never_saw():
    values = np.array([[0.75, 3.5, math.nan]], np.float32)
    depth = decode_depth_m("32FC1", 1, 3, 12, False, values.tobytes())
    fresh = np.array(depth)  # the same pixels in an array the decoder never saw
    assert has_invalid_depth(depth) is has_invalid_depth(fresh) is False
    for low_m, high_m in ((0.05, 10.0), (1.0, 2.0), (4.0, 10.0), (0.8, 3.5)):
        assert has_depth_within(depth, low_m, high_m) is has_depth_within(fresh, low_m, high_m)


def test_a_depth_image_with_invalid_values_is_checked_after_they_became_nan():
    depth = decode_depth_m("16UC1", 1, 3, 6, False, np.array([[750, 0, 3500]], np.uint16).tobytes())
    assert not has_invalid_depth(depth)
    assert has_depth_within(depth, 0.05, 1.0) and not has_depth_within(depth, 0.0, 0.5)


def test_a_decoded_depth_image_made_writable_again_is_checked_afresh():
    buffer = bytearray(np.array([[0.75, 3.5]], np.float32).tobytes())
    depth = decode_depth_m("32FC1", 1, 2, 8, False, buffer)
    depth.flags.writeable = True  # possible on a view of a writable buffer, against the docstring's advice
    depth[0, 0] = 0.0
    assert has_invalid_depth(depth)


def test_decoded_depth_images_are_forgotten_when_they_are_gone_and_never_answer_for_another_array():
    remembered_before = len(decode._DECODED_RANGES)
    for value in (0.5, 2.0, 7.0):  # each array may take the id of the one before it
        depth = decode_depth_m("32FC1", 1, 1, 4, False, np.array([value], np.float32).tobytes())
        assert has_depth_within(depth, value - 0.1, value + 0.1) and not has_depth_within(depth, 0.05, value - 0.1)
        del depth
    assert len(decode._DECODED_RANGES) == remembered_before


def test_a_32fc1_image_with_row_padding_is_copied_without_it():
    rows = np.array([[0.75, 3.5, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]], np.float32)  # 8 bytes of padding per row
    buffer = rows.tobytes()
    depth = decode_depth_m("32FC1", 2, 2, 16, False, buffer)
    assert not np.shares_memory(depth, np.frombuffer(buffer, np.uint8))
    np.testing.assert_array_equal(depth, rows[:, :2])
