"""Depth backends: sensor passthrough and monocular metric depth, each registered to the colour image.

The monocular backend is exercised through its real loading path on a tiny, randomly initialised Depth Anything
written to a temporary directory (no network).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_depth_anything

from trusted_scene_graph.config import Config
from trusted_scene_graph.perception.depth import (
    DEPTH_BACKENDS,
    MonocularDepth,
    SensorDepth,
    make_depth_backend,
)
from trusted_scene_graph.perception.detector import PerceptionError

HEIGHT_PX, WIDTH_PX = 48, 64  # deliberately not square: catches swapped height and width


def _rgb(height_px: int = HEIGHT_PX, width_px: int = WIDTH_PX, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height_px, width_px, 3), dtype=np.uint8)


def _monocular_config(model_dir: Path | str) -> Config:
    return Config({"depth.backend": "monocular", "depth.model_path": str(model_dir)})


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny_depth_anything"))


@pytest.fixture(scope="module")
def monocular(tiny_model_dir: Path) -> MonocularDepth:
    backend = make_depth_backend(_monocular_config(tiny_model_dir))
    assert isinstance(backend, MonocularDepth)
    return backend


# --- selection ------------------------------------------------------------------------------------------------------


def test_backends_are_selected_by_name_and_say_whether_they_need_the_depth_topic(monocular: MonocularDepth) -> None:
    assert sorted(DEPTH_BACKENDS) == ["monocular", "sensor"]
    sensor = make_depth_backend(Config({"depth.backend": "sensor"}))
    assert isinstance(sensor, SensorDepth)
    assert sensor.needs_depth_topic is True
    assert monocular.needs_depth_topic is False


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(PerceptionError,
                       match=r"unknown depth backend 'lidar'; known backends: \['monocular', 'sensor'\]"):
        make_depth_backend({"depth.backend": "lidar"})


# --- sensor ---------------------------------------------------------------------------------------------------------


def test_sensor_depth_passes_valid_registered_depth_through_without_copying() -> None:
    depth_m = np.full((HEIGHT_PX, WIDTH_PX), 1.5, dtype=np.float32)
    depth_m[0, 0] = np.nan
    assert SensorDepth().depth_m(_rgb(), depth_m) is depth_m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sensor_depth_marks_non_finite_and_non_positive_values_invalid_without_touching_the_input(dtype) -> None:
    depth_m = np.full((HEIGHT_PX, WIDTH_PX), 2.0, dtype=dtype)
    depth_m[0, :4] = [0.0, -1.0, np.inf, -np.inf]
    result = SensorDepth().depth_m(_rgb(), depth_m)
    assert result.dtype == np.float32
    assert np.isnan(result[0, :4]).all()
    assert np.all(result[1:] == 2.0)
    assert depth_m[0, 0] == 0.0  # the caller's array is unchanged


def test_sensor_depth_of_another_size_than_the_colour_image_is_rejected_naming_both_sizes() -> None:
    depth_m = np.ones((HEIGHT_PX, WIDTH_PX + 16), dtype=np.float32)
    with pytest.raises(PerceptionError, match=r"depth image is 80x48 but colour is 64x48; depth must be registered"):
        SensorDepth().depth_m(_rgb(), depth_m)


def test_sensor_depth_with_a_channel_axis_is_rejected_naming_its_shape() -> None:
    with pytest.raises(PerceptionError, match=r"depth image must be a 2-D \(H, W\) array, got shape \(48, 64, 1\)"):
        SensorDepth().depth_m(_rgb(), np.ones((HEIGHT_PX, WIDTH_PX, 1), dtype=np.float32))


def test_sensor_depth_without_a_depth_image_is_rejected() -> None:
    with pytest.raises(PerceptionError, match=r"'sensor' depth backend needs a depth image \(topics.depth\)"):
        SensorDepth().depth_m(_rgb(), None)


def test_sensor_depth_in_raw_millimetres_is_rejected() -> None:
    with pytest.raises(PerceptionError, match=r"dtype uint16, expected float metres"):
        SensorDepth().depth_m(_rgb(), np.full((HEIGHT_PX, WIDTH_PX), 1500, dtype=np.uint16))


# --- monocular ------------------------------------------------------------------------------------------------------


def test_monocular_depth_is_float32_metres_at_the_colour_image_size(monocular: MonocularDepth) -> None:
    depth_m = monocular.depth_m(_rgb(), None)
    assert depth_m.shape == (HEIGHT_PX, WIDTH_PX)
    assert depth_m.dtype == np.float32
    valid = depth_m[~np.isnan(depth_m)]
    assert valid.size > 0.5 * depth_m.size
    assert np.all(np.isfinite(valid)) and np.all(valid > 0)
    assert float(valid.std()) > 0  # a depth map, not a constant


def test_monocular_depth_is_deterministic_and_ignores_sensor_depth(monocular: MonocularDepth) -> None:
    rgb = _rgb(seed=1)
    first = monocular.depth_m(rgb, None)
    second = monocular.depth_m(rgb, np.ones((HEIGHT_PX, WIDTH_PX), dtype=np.float32))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(("height_px", "width_px", "message"), [
    (2, 2, r"at least 16 px on each side, got 2x2 px"), (1, 2000, r"at least 16 px on each side, got 2000x1 px"),
    (40, 2000, r"at most 10 times as wide as high or as high as wide, got 2000x40 px")])
def test_an_image_too_small_or_too_thin_for_the_model_is_a_perception_error_naming_its_size(
        monocular: MonocularDepth, height_px: int, width_px: int, message: str) -> None:
    # Otherwise the processor's resize to a 0 px side raises a plain ValueError, which the node does not catch.
    with pytest.raises(PerceptionError, match=rf"^the 'monocular' depth backend needs an image {message}"):
        monocular.depth_m(np.zeros((height_px, width_px, 3), np.uint8))


def test_the_device_running_out_of_memory_is_a_perception_error(tiny_model_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain RuntimeError from the model would escape the node's frame callback instead of skipping the frame.
    import torch

    depth = make_depth_backend(_monocular_config(tiny_model_dir))  # its own: the shared fixture stays unpatched

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(depth, "model", out_of_memory)
    with pytest.raises(PerceptionError, match=r"^the 'monocular' depth backend failed on this image "
                                              r"\(OutOfMemoryError: CUDA out of memory"):
        depth.depth_m(_rgb())


def test_monocular_depth_handles_a_portrait_image(monocular: MonocularDepth) -> None:
    assert monocular.depth_m(_rgb(height_px=70, width_px=30), None).shape == (70, 30)


def test_monocular_depth_rejects_a_non_rgb_image(monocular: MonocularDepth) -> None:
    with pytest.raises(PerceptionError, match=r"needs an \(H, W, 3\) colour image, got shape \(48, 64\)"):
        monocular.depth_m(np.zeros((HEIGHT_PX, WIDTH_PX), dtype=np.uint8), None)
    # The processor rescales by 1/255: a float image in [0, 1] would be seen as black, and its depth made up.
    with pytest.raises(PerceptionError, match=r"needs a uint8 colour image, got float32"):
        monocular.depth_m(_rgb().astype(np.float32) / 255.0, None)


# --- monocular: loading failures ------------------------------------------------------------------------------------


def test_a_missing_model_directory_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(PerceptionError, match=rf"depth.model_path: model directory '{missing}' does not exist"):
        make_depth_backend(_monocular_config(missing))


def test_an_empty_model_path_says_weights_are_needed() -> None:
    with pytest.raises(PerceptionError, match=r"depth.model_path is empty: this backend needs model weights"):
        make_depth_backend(Config({"depth.backend": "monocular"}))


def test_a_relative_depth_model_is_refused(tmp_path: Path) -> None:
    model_dir = build_tiny_depth_anything(tmp_path / "relative", depth_estimation_type="relative")
    with pytest.raises(PerceptionError, match=r"predicts 'relative' depth, not metres"):
        make_depth_backend(_monocular_config(model_dir))


def test_a_model_type_without_known_metric_output_is_refused(tmp_path: Path) -> None:
    from transformers import DPTConfig

    DPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(PerceptionError, match=r"is a 'dpt' model; the 'monocular' depth backend supports metric "
                                              r"Depth Anything models only"):
        make_depth_backend(_monocular_config(tmp_path))


def test_a_padding_image_processor_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    processor_file = tmp_path / "preprocessor_config.json"
    processor_config = json.loads(processor_file.read_text())
    processor_config.update(do_pad=True, size_divisor=32)
    processor_file.write_text(json.dumps(processor_config))
    with pytest.raises(PerceptionError, match=r"pads its input \(do_pad: true\)"):
        make_depth_backend(_monocular_config(tmp_path))


@pytest.mark.parametrize(("change", "message"), [
    ({"size": {"shortest_edge": 518}}, r"cannot process an image \(AttributeError: "),
    ({"ensure_multiple_of": None}, r"cannot process an image \(TypeError: "),
    ({"ensure_multiple_of": 0}, r"cannot process an image \(ZeroDivisionError: "),
    ({"do_resize": False}, r"does not resize its input \(do_resize: false\), which breaks registration"),
    ({"do_resize": 0}, r"does not resize its input \(do_resize: false\)"),
    ({"ensure_multiple_of": 1}, r"resizes an 83x64 image to \d+x\d+, not a whole number of the model's \d+ px "
                                r"patches"),
])
def test_an_image_processor_config_that_loads_but_cannot_serve_fails_at_load_naming_the_folder(
        tmp_path: Path, tiny_model_dir: Path, change: dict, message: str) -> None:
    # transformers loads these configs; without the check every frame would fail instead (and not as a TsgError).
    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    processor_file = tmp_path / "preprocessor_config.json"
    processor_file.write_text(json.dumps({**json.loads(processor_file.read_text()), **change}))
    with pytest.raises(PerceptionError, match=rf"^depth\.model_path: the image processor in '{tmp_path}' {message}"):
        make_depth_backend(_monocular_config(tmp_path))


def test_a_corrupt_weights_file_is_a_perception_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated download
    with pytest.raises(PerceptionError, match=rf"cannot load the depth model from '{tmp_path}' "
                                              r"\(depth.model_path\): corrupt weights file"):
        make_depth_backend(_monocular_config(tmp_path))


def test_a_checkpoint_missing_weights_is_refused_rather_than_randomly_initialised(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    state = load_file(tmp_path / "model.safetensors")
    del state["backbone.embeddings.cls_token"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PerceptionError,
                       match=r"lacks weights for 1 parameters \(e.g. \['backbone.embeddings.cls_token'\]\)"):
        make_depth_backend(_monocular_config(tmp_path))


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_refused(tiny_model_dir: Path) -> None:
    config = Config({"depth.backend": "monocular", "depth.model_path": str(tiny_model_dir), "depth.device": "cuda"})
    with pytest.raises(PerceptionError, match=r"depth.device is 'cuda' but torch sees no CUDA device"):
        make_depth_backend(config)
