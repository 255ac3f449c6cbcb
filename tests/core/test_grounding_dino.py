"""The 'grounding_dino' open-vocabulary detector backend (trusted_scene_graph.perception.grounding_dino).

Exercised through its real loading path on a tiny, randomly initialised Grounding DINO written to a temporary
directory (no network). Random weights make the boxes meaningless, so the end-to-end tests set the thresholds to 0
and check what must hold for any weights: labels from the vocabulary only, boxes inside the image, scores sorted.
The phrase matching and box conversion are pinned on hand-made model outputs.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_grounding_dino

from trusted_scene_graph.config import Config, ConfigError
from trusted_scene_graph.geometry import Intrinsics
from trusted_scene_graph.perception import CameraFrame, PerceptionError, make_detector
from trusted_scene_graph.perception.grounding_dino import (
    CachingTextBackbone,
    GroundingDinoDetector,
    forward_timing_inputs,
    forward_timing_model,
    non_max_suppression,
)

HEIGHT_PX, WIDTH_PX = 120, 160  # not square: catches swapped height and width
MAX_TEXT_LEN = 32  # the tiny model's text limit (the released models: 256)
HOW_TO_GET_WEIGHTS = r"hf download IDEA-Research/grounding-dino-tiny --local-dir DIR"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("grounding_dino"), max_text_len=MAX_TEXT_LEN)


def _config(model_dir: Path | str, **overrides) -> Config:
    values = {"detector.backend": "grounding_dino", "detector.model_path": str(model_dir),
              "detector.vocabulary": ["red cube", "table", "gripper"], "detector.box_threshold": 0.0,
              "detector.text_threshold": 0.0, "detector.min_pixels": 1}
    return Config({**values, **{f"detector.{name}": value for name, value in overrides.items()}})


def _frame(rgb: np.ndarray | None = None, seed: int = 0) -> CameraFrame:
    if rgb is None:
        rgb = np.random.default_rng(seed).integers(0, 256, (HEIGHT_PX, WIDTH_PX, 3), dtype=np.uint8)
    height, width = rgb.shape[:2]
    intrinsics = Intrinsics(width=width, height=height, fx=100.0, fy=100.0, cx=width / 2, cy=height / 2)
    return CameraFrame(1, rgb, np.ones((height, width), np.float32), intrinsics)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    overlap_w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    overlap_h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = overlap_w * overlap_h
    return intersection / (a[2] * a[3] + b[2] * b[3] - intersection)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# --- Loading ------------------------------------------------------------------------------------------------------


def test_the_backend_is_registered_and_loads_from_a_model_directory(model_dir: Path):
    detector = make_detector(_config(model_dir))
    assert isinstance(detector, GroundingDinoDetector)
    assert detector.needs_instances is False
    assert detector.every_detection_masked is False  # boxes only: silhouettes need every detection


def test_from_config_reads_every_detector_setting(model_dir: Path):
    detector = GroundingDinoDetector.from_config(_config(
        model_dir, vocabulary=["red cube", " table ", "red cube"], label_map=["red cube: cube"], box_threshold=0.2,
        text_threshold=0.3, nms_iou=0.4, min_pixels=5))
    assert detector.phrases == ("red cube", "table")  # stripped, duplicates dropped, order kept
    assert detector.labels == {"red cube": "cube", "table": "table"}
    assert (detector.box_threshold, detector.text_threshold, detector.nms_iou) == (0.2, 0.3, 0.4)
    assert detector.min_box_area_px == 5
    assert (detector.device, detector.dtype) == ("cpu", torch.float32)


def test_reconfigure_changes_the_thresholds_and_the_smallest_box_and_keeps_the_model(model_dir: Path):
    detector = GroundingDinoDetector.from_config(_config(model_dir))
    model = detector.model
    detector.reconfigure(_config(model_dir, box_threshold=0.2, text_threshold=0.3, nms_iou=0.4, min_pixels=5))
    assert (detector.box_threshold, detector.text_threshold, detector.nms_iou) == (0.2, 0.3, 0.4)
    assert detector.min_box_area_px == 5
    assert detector.model is model


def test_a_missing_model_directory_is_named_with_how_to_get_the_weights(tmp_path: Path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(PerceptionError, match=rf"detector.model_path: model directory '{missing}' does not exist; "
                                              rf"download the weights .*{HOW_TO_GET_WEIGHTS}"):
        make_detector(_config(missing))


def test_an_empty_model_path_says_how_to_get_the_weights():
    with pytest.raises(PerceptionError, match=rf"^detector.model_path is empty: this backend needs model weights; "
                                              rf"download the weights .*{HOW_TO_GET_WEIGHTS}"):
        make_detector(_config(""))


def test_a_corrupt_weights_file_is_a_perception_error(tmp_path: Path, model_dir: Path):
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated download
    with pytest.raises(PerceptionError, match=rf"cannot load the detector model from '{tmp_path}' "
                                              r"\(detector.model_path\): corrupt weights file"):
        make_detector(_config(tmp_path))


def test_a_directory_holding_another_kind_of_model_is_refused(tmp_path: Path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(PerceptionError, match=rf"detector.model_path: '{tmp_path}' is a 'bert' model; the "
                                              r"'grounding_dino' detector needs a Grounding DINO model"):
        make_detector(_config(tmp_path))



def test_a_checkpoint_missing_weights_is_refused_rather_than_randomly_initialised(tmp_path: Path, model_dir: Path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    state = load_file(tmp_path / "model.safetensors")
    del state["model.text_projection.weight"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PerceptionError, match=r"lacks weights for 1 parameters "
                                              r"\(e.g. \['model.text_projection.weight'\]\)"):
        make_detector(_config(tmp_path))

@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_refused(model_dir: Path):
    with pytest.raises(PerceptionError, match=r"detector.device is 'cuda' but torch sees no CUDA device"):
        make_detector(_config(model_dir, device="cuda"))


# --- Vocabulary ---------------------------------------------------------------------------------------------------


def test_an_empty_vocabulary_is_refused(model_dir: Path):
    with pytest.raises(PerceptionError, match=r"detector.vocabulary is empty \(\['', ' '\]\): the 'grounding_dino' "
                                              r"detector needs at least one phrase"):
        GroundingDinoDetector.from_pretrained(str(model_dir), ["", " "])


def test_a_model_folder_without_its_tokenizer_files_is_refused_not_run_on_unknown_tokens(tmp_path: Path,
                                                                                      model_dir: Path):
    # transformers then builds a stand-in tokenizer that reads every word as [UNK]: every box would get one label.
    broken = tmp_path / "no_tokenizer"
    shutil.copytree(model_dir, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(PerceptionError, match=r"the detector's tokenizer reads the phrase delimiter '.' as \[UNK\]: "
                                              r"its model folder lacks the tokenizer files"):
        make_detector(_config(broken))


@pytest.mark.parametrize("vocabulary", [["Cup", "cup"], ["red cube", "red  cube"], [" Red Cube", "red cube "]])
def test_vocabulary_entries_differing_only_in_case_or_spacing_are_refused_naming_both(model_dir: Path, vocabulary):
    # The prompt is read in lower case: the second entry could never win a box.
    first, second = (phrase.strip() for phrase in vocabulary)
    with pytest.raises(PerceptionError, match=rf"^detector.vocabulary: '{first}' and '{second}' are one phrase to "
                                              r"the detector \(it reads the prompt in lower case\); keep one$"):
        make_detector(_config(model_dir, vocabulary=vocabulary))


def test_the_labels_a_vocabulary_can_produce_are_those_of_its_stripped_phrases():
    from trusted_scene_graph.perception.detector import configured_labels

    config = Config({"detector.backend": "grounding_dino", "detector.vocabulary": [" mug ", "red cube"],
                     "detector.label_map": ["mug:cup"]})
    assert configured_labels(config) == ("cup", "red cube")


def test_a_phrase_containing_a_phrase_delimiter_is_refused(model_dir: Path):
    with pytest.raises(PerceptionError, match=r"phrase 'cube. table' contains '.', which Grounding DINO reads as "
                                              r"the end of a phrase"):
        make_detector(_config(model_dir, vocabulary=["cube. table"]))


def test_a_label_map_entry_for_a_phrase_not_in_the_vocabulary_is_refused(model_dir: Path):
    # By the config, naming the phrase (and the vocabulary's spelling of it), and by the detector built directly.
    with pytest.raises(ConfigError, match=r"detector.label_map: 'blue cube:cube' renames 'blue cube', which is not "
                                          r"in detector.vocabulary$"):
        _config(model_dir, label_map=["blue cube:cube"])
    with pytest.raises(ConfigError, match=r"renames 'Red Cube', which is not in detector.vocabulary \(it has 'red "
                                          r"cube'\)"):
        _config(model_dir, label_map=["Red Cube:cube"])
    with pytest.raises(PerceptionError, match=r"detector.label_map renames \['blue cube'\], which is not in "
                                              r"detector.vocabulary \['red cube', 'table', 'gripper'\]"):
        GroundingDinoDetector.from_pretrained(str(model_dir), ["red cube", "table", "gripper"],
                                              label_map={"blue cube": "cube"})


def test_a_vocabulary_longer_than_the_text_limit_is_split_into_batches_run_one_forward_pass_each(model_dir: Path):
    # Each two-word phrase is 3 tokens with its '.', plus [CLS] and [SEP]: 10 phrases fit in 32 tokens.
    colours, objects = ["red", "blue", "green", "yellow"], ["cube", "ball", "mug", "box", "cup", "bowl", "plate"]
    vocabulary = [f"{colour} {thing}" for colour, thing in itertools.product(colours, objects)][:25]
    detector = make_detector(_config(model_dir, vocabulary=vocabulary, nms_iou=1.0))
    assert [len(batch.phrases) for batch in detector.batches] == [10, 10, 5]
    assert [phrase for batch in detector.batches for phrase in batch.phrases] == vocabulary  # none lost, in order
    assert max(batch.num_tokens for batch in detector.batches) <= MAX_TEXT_LEN
    forward_passes = _count_calls(detector.model)

    labels = {detection.label for detection in detector.detect(_frame())}

    assert forward_passes == [3]
    assert labels <= set(vocabulary)
    assert all(labels & set(batch.phrases) for batch in detector.batches)  # every batch's detections are merged


def test_a_single_phrase_longer_than_the_text_limit_is_refused_by_name(model_dir: Path):
    too_long = " ".join(["red"] * 31)  # 31 tokens, its '.', [CLS] and [SEP]: 34 > 32
    with pytest.raises(PerceptionError, match=rf"detector.vocabulary: phrase '{too_long}' is 34 tokens long "
                                              r"\(special tokens included\), more than the model's text limit of 32"):
        make_detector(_config(model_dir, vocabulary=["table", too_long]))


# --- Detection end to end -----------------------------------------------------------------------------------------


def test_detections_have_vocabulary_labels_boxes_inside_the_image_and_sorted_scores(model_dir: Path):
    detector = make_detector(_config(model_dir, nms_iou=0.5))
    detections = detector.detect(_frame())
    assert detections, "with both thresholds at 0 every query yields a box"
    assert {d.label for d in detections} <= {"red cube", "table", "gripper"}
    for detection in detections:
        x, y, w, h = detection.box_xywh_px
        assert all(isinstance(v, int) for v in detection.box_xywh_px)
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= WIDTH_PX and y + h <= HEIGHT_PX
        assert 0.0 <= detection.score <= 1.0
        assert detection.mask is None
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    assert all(_iou(a.box_xywh_px, b.box_xywh_px) <= 0.5 for a, b in itertools.combinations(detections, 2))


def test_an_image_processor_that_does_not_pad_gives_the_detections_of_one_that_does(tmp_path: Path,
                                                                                    model_dir: Path):
    # do_pad false is a valid processor setting: it returns no pixel_mask, and a single image needs no padding.
    unpadded = tmp_path / "unpadded"
    shutil.copytree(model_dir, unpadded)
    processor_config = json.loads((unpadded / "processor_config.json").read_text())
    processor_config["image_processor"]["do_pad"] = False
    (unpadded / "processor_config.json").write_text(json.dumps(processor_config))
    expected = make_detector(_config(model_dir)).detect(_frame())
    found = make_detector(_config(unpadded)).detect(_frame())
    assert expected and [(d.label, d.box_xywh_px) for d in found] == [(d.label, d.box_xywh_px) for d in expected]
    np.testing.assert_allclose([d.score for d in found], [d.score for d in expected], rtol=1e-5)


def test_the_label_map_renames_a_phrases_detections(model_dir: Path):
    detector = make_detector(_config(model_dir, vocabulary=["red cube"], label_map=["red cube:cube"]))
    labels = [detection.label for detection in detector.detect(_frame())]
    assert labels and set(labels) == {"cube"}


@pytest.mark.parametrize("rgb", [np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.float32),
                                 np.zeros((HEIGHT_PX, WIDTH_PX, 4), np.uint8)], ids=["float", "rgba"])
def test_an_image_that_is_not_hxwx3_uint8_never_reaches_the_detector(rgb: np.ndarray):
    # The detector relies on CameraFrame for this: a frame with such an image cannot be built.
    with pytest.raises(PerceptionError, match=r"colour image must be \(H, W, 3\) uint8 RGB"):
        _frame(rgb)


@pytest.mark.parametrize(("height_px", "width_px", "message"), [
    (1, 1, r"at least 16 px on each side, got 1x1 px"), (2, 2, r"at least 16 px on each side, got 2x2 px"),
    (3, 3, r"at least 16 px on each side, got 3x3 px"),
    (1, 2000, r"at least 16 px on each side, got 2000x1 px"),
    (40, 2000, r"at most 10 times as wide as high or as high as wide, got 2000x40 px"),
    (2000, 40, r"at most 10 times as wide as high or as high as wide, got 40x2000 px")])
def test_an_image_too_small_or_too_thin_for_the_model_is_a_perception_error_naming_its_size(
        model_dir: Path, height_px: int, width_px: int, message: str):
    # Otherwise torch's GroupNorm or the processor's resize (to a 0 px side) raise a plain ValueError, which the
    # node's frame callback does not catch.
    detector = make_detector(_config(model_dir))
    with pytest.raises(PerceptionError, match=rf"^the Grounding DINO detector needs an image {message}"):
        detector.detect(_frame(np.zeros((height_px, width_px, 3), np.uint8)))


def test_an_image_the_model_cannot_take_is_a_perception_error_naming_the_reason(model_dir: Path):
    # The tiny test model's GroupNorm fails on square images (one channel per group at that size): a plain
    # ValueError from inside the model must still reach the node as a skipped frame, not escape its callback.
    detector = make_detector(_config(model_dir))
    with pytest.raises(PerceptionError, match=r"^the Grounding DINO detector failed on this image \(ValueError: "):
        detector.detect(_frame(np.zeros((64, 64, 3), np.uint8)))


def test_the_device_running_out_of_memory_is_a_perception_error(model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    detector = make_detector(_config(model_dir))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(detector, "model", out_of_memory)
    with pytest.raises(PerceptionError, match=r"failed on this image \(OutOfMemoryError: CUDA out of memory"):
        detector.detect(_frame())


# --- Post-processing on hand-made model outputs -------------------------------------------------------------------


def _logit(probability: float) -> float:
    return float(np.log(probability / (1 - probability)))


def test_postprocess_maps_partial_and_merged_phrase_matches_to_one_configured_phrase_and_clips_boxes(
    model_dir: Path,
):
    from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoObjectDetectionOutput

    detector = GroundingDinoDetector.from_pretrained(str(model_dir), ["red cube", "table"], box_threshold=0.3,
                                                     text_threshold=0.25)
    (batch,) = detector.batches
    # "[CLS] red cube . table . [SEP]": "red cube" is tokens 1-2, "table" token 4.
    assert batch.token_spans == ((1, 3), (4, 5))
    token_probs = np.full((5, MAX_TEXT_LEN), 0.01)
    token_probs[0, [1, 2, 4]] = [0.6, 0.6, 0.9]  # both phrases above text_threshold: the stronger one, "table"
    token_probs[1, 2] = 0.8  # only "cube": a partial match still means "red cube"
    token_probs[2, 3] = 0.7  # only the '.': passes box_threshold, but no phrase token passes text_threshold
    token_probs[3, 4] = 0.95  # "table", but the box lies right of the image
    token_probs[4, 1] = 0.2  # below box_threshold
    logits = torch.tensor(np.vectorize(_logit)(token_probs), dtype=torch.float32)
    logits[:, batch.num_tokens:] = -torch.inf  # as the model pads its text dimension
    boxes_cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.2], [1.0, 0.5, 0.4, 0.2], [0.5, 0.5, 0.2, 0.2],
                                 [1.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    outputs = GroundingDinoObjectDetectionOutput(logits=logits[None], pred_boxes=boxes_cxcywh[None])

    detections = detector.postprocess(outputs, batch, HEIGHT_PX, WIDTH_PX)

    assert [(d.label, d.box_xywh_px) for d in detections] == [
        ("table", (64, 48, 32, 24)),
        ("red cube", (128, 48, 32, 24)),  # x from 128 to 192 clipped to the 160 px wide image
    ]
    assert [d.score for d in detections] == pytest.approx([0.9, 0.8])


# --- Non-maximum suppression --------------------------------------------------------------------------------------


def test_nms_drops_a_box_overlapping_a_higher_scoring_one_by_more_than_the_threshold():
    boxes = [(0, 0, 10, 10), (1, 0, 11, 10), (20, 20, 30, 30)]  # the first two: IoU 90 / 110 = 0.82
    assert non_max_suppression(boxes, [0.9, 0.8, 0.7], 0.5).tolist() == [0, 2]
    assert non_max_suppression(boxes, [0.9, 0.8, 0.7], 0.9).tolist() == [0, 1, 2]
    assert non_max_suppression(boxes, [0.7, 0.8, 0.9], 0.5).tolist() == [2, 1]  # the higher score wins


def test_nms_keeps_a_box_whose_iou_equals_the_threshold():
    boxes = [(0, 0, 10, 10), (0, 0, 10, 5)]  # IoU exactly 0.5
    assert non_max_suppression(boxes, [0.9, 0.8], 0.5).tolist() == [0, 1]
    assert non_max_suppression(boxes, [0.9, 0.8], 0.49).tolist() == [0]


def test_nms_returns_boxes_by_descending_score_with_ties_in_input_order():
    boxes = [(0, 0, 1, 1), (2, 0, 3, 1), (4, 0, 5, 1), (6, 0, 7, 1)]
    assert non_max_suppression(boxes, [0.2, 0.9, 0.5, 0.9], 0.5).tolist() == [1, 3, 2, 0]


def test_nms_of_no_boxes_is_empty():
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# --- Text feature cache -------------------------------------------------------------------------------------------


def test_the_text_encoder_runs_once_per_vocabulary_batch_not_once_per_frame(model_dir: Path):
    vocabulary = [f"{colour} {thing}" for colour in ("red", "blue", "green") for thing in ("cube", "ball", "mug",
                                                                                           "box", "cup")]
    detector = make_detector(_config(model_dir, vocabulary=vocabulary))
    assert len(detector.batches) == 2
    text_encoder = detector.model.model.text_backbone
    assert isinstance(text_encoder, CachingTextBackbone)
    text_encoder_calls, forward_passes = _count_calls(text_encoder.inner), _count_calls(detector.model)

    for seed in range(3):
        detector.detect(_frame(seed=seed))

    assert forward_passes == [6]
    assert text_encoder_calls == [2]


def test_cached_text_features_give_the_same_detections_as_running_the_text_encoder_every_frame(model_dir: Path):
    cached = make_detector(_config(model_dir))
    uncached = GroundingDinoDetector.from_pretrained(str(model_dir), ["red cube", "table", "gripper"],
                                                     box_threshold=0.0, text_threshold=0.0, cache_text_features=False)
    assert not isinstance(uncached.model.model.text_backbone, CachingTextBackbone)
    uncached_text_encoder_calls = _count_calls(uncached.model.model.text_backbone)
    for seed in range(2):
        detections = cached.detect(_frame(seed=seed))
        assert detections and detections == uncached.detect(_frame(seed=seed))
    assert uncached_text_encoder_calls == [2]


class _Doubler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, return_dict=True):
        self.calls += 1
        return input_ids * 2


def test_the_text_cache_recomputes_for_different_inputs_and_evicts_the_least_recently_used():
    inner = _Doubler()
    cache = CachingTextBackbone(inner, max_entries=2)
    first, second, third = torch.tensor([[1, 2]]), torch.tensor([[1, 3]]), torch.tensor([[4]])
    with torch.inference_mode():
        assert cache(first).tolist() == [[2, 4]]
        assert cache(second).tolist() == [[2, 6]]
        assert cache(first).tolist() == [[2, 4]]  # hit; first is now the most recently used
        assert inner.calls == 2
        cache(third)  # evicts second
        cache(first)
        assert inner.calls == 3
        cache(second)
        assert inner.calls == 4
        cache(first, position_ids=torch.tensor([[0, 1]]))  # same ids, other position ids: not the same input
        assert inner.calls == 5


def test_the_text_cache_is_bypassed_when_gradients_are_recorded():
    inner = _Doubler()
    cache = CachingTextBackbone(inner)
    ids = torch.tensor([[1, 2]])
    cache(ids)
    cache(ids)
    assert inner.calls == 2


# --- Timing helpers -----------------------------------------------------------------------------------------------


def test_forward_timing_inputs_are_a_well_formed_prompt_of_the_requested_size(model_dir: Path):
    detector = make_detector(_config(model_dir))
    inputs = forward_timing_inputs(detector.model, 64, 96, text_len=20)
    input_ids = inputs["input_ids"][0].tolist()
    assert len(input_ids) == 20
    assert (input_ids[0], input_ids[-2], input_ids[-1]) == (101, 1012, 102)  # [CLS] ... '.' [SEP]
    assert inputs["pixel_values"].shape == (1, 3, 64, 96)
    with torch.inference_mode():
        outputs = detector.model(**inputs)
    assert outputs.logits.shape == (1, 10, MAX_TEXT_LEN)


def test_forward_timing_inputs_refuse_a_prompt_longer_than_the_text_limit(model_dir: Path):
    detector = make_detector(_config(model_dir))
    with pytest.raises(PerceptionError, match=r"text_len 33 is outside \[3, 32\]"):
        forward_timing_inputs(detector.model, 64, 96, text_len=33)


def test_the_tiny_timing_model_runs_one_forward_pass_on_its_inputs():
    model, inputs, description = forward_timing_model("tiny")
    with torch.inference_mode():
        outputs = model(**inputs)
    assert outputs.pred_boxes.shape == (1, 10, 4)
    assert description == "GroundingDINO tiny test model, random weights, 64x96 image, 16 text tokens"


def test_an_unknown_timing_model_size_is_refused():
    with pytest.raises(PerceptionError, match=r"unknown timing model size 'huge'; known sizes: \['full', 'tiny'\]"):
        forward_timing_model("huge")
