"""The 'contrastive' VLM backend (trusted_scene_graph.vlm.contrastive) on tiny random CLIP and SigLIP models loaded
through the real loading path.

Random weights make the verdicts meaningless, so the tests pin what must hold for any weights: the probabilities
are the softmax of the model's own image-caption logits over the claim and its converse, the answer, its probability
and the margin follow from them, SigLIP's captions are padded to the full text length, image embeddings are unit
vectors, and a free sentence, a missing model or corrupt weights fail with a message saying what to do.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_vlm import CONTRASTIVE_TEXT_TOKENS, build_tiny_contrastive

from trusted_scene_graph.config import Config
from trusted_scene_graph.evaluation.vsr import VsrSample, evaluate_sample
from trusted_scene_graph.perception.detector import PerceptionError
from trusted_scene_graph.vlm import VlmError, make_vlm, needs_relation_triple, noised_image

IMAGE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
OTHER_IMAGE = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
HOW_TO_GET_WEIGHTS = r"hf download google/siglip-base-patch16-224 --local-dir DIR"


@pytest.fixture(scope="module", params=["clip", "siglip"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Path:
    return build_tiny_contrastive(tmp_path_factory.mktemp(f"tiny_{kind}"), kind=kind)


@pytest.fixture(scope="module")
def vlm(model_dir: Path):
    return make_vlm(Config({"vlm.backend": "contrastive", "vlm.model_path": str(model_dir)}))


def _reference_probabilities(vlm, image: np.ndarray, captions: list[str]) -> np.ndarray:
    """The softmax of ``scale * cos(image, caption) (+ bias)`` computed from the model's two towers directly."""
    import torch
    from PIL import Image

    model, processor = vlm.model, vlm.processor
    padding = "max_length" if model.config.model_type == "siglip" else "longest"
    text = processor.tokenizer(captions, padding=padding, max_length=CONTRASTIVE_TEXT_TOKENS, return_tensors="pt")
    pixels = processor.image_processor(images=[Image.fromarray(image)], return_tensors="pt")
    with torch.inference_mode():
        text_embeds = model.get_text_features(**text).pooler_output.double()
        image_embeds = model.get_image_features(**pixels).pooler_output.double()
        cosine = torch.nn.functional.normalize(image_embeds, dim=-1) @ \
            torch.nn.functional.normalize(text_embeds, dim=-1).T
        logits = cosine * model.logit_scale.double().exp()  # SigLIP's bias is the same for every caption
    return torch.softmax(logits[0], dim=0).numpy()


def test_make_vlm_builds_the_contrastive_backend_from_a_local_directory(vlm, kind: str):
    from trusted_scene_graph.vlm.contrastive import ContrastiveVlm

    assert isinstance(vlm, ContrastiveVlm)
    assert vlm.model.config.model_type == kind
    assert vlm.pad_to_max_length == (kind == "siglip")
    assert needs_relation_triple(vlm)


def test_caption_probabilities_are_the_softmax_of_the_models_image_caption_logits(vlm):
    captions = ["The cat is left of the dog.", "The cat is right of the dog.", "The red ball is on the table."]
    probabilities = vlm.caption_probabilities(IMAGE, captions)
    assert probabilities.shape == (3,) and probabilities.dtype == np.float64
    assert probabilities.sum() == pytest.approx(1.0)
    assert probabilities == pytest.approx(_reference_probabilities(vlm, IMAGE, captions), abs=1e-5)
    assert np.ptp(probabilities) > 1e-4  # the tiny model does tell the captions apart


def test_siglip_captions_are_padded_to_the_full_text_length_and_clip_captions_to_the_longest(vlm, kind: str):
    inputs = vlm.preprocess(IMAGE, ["The cat is left of the dog.", "The cup is on top of the table."])
    expected = CONTRASTIVE_TEXT_TOKENS if kind == "siglip" else len("<s> the cup is on top of the table . </s>".split())
    assert inputs["input_ids"].shape == (2, expected)


@pytest.mark.parametrize(("subject", "predicate", "object_", "converse"), [
    ("cat", "left_of", "dog", "The cat is right of the dog."),
    ("ball", "above", "box", "The ball is below the box."),
    ("cup", "in front of", "table", "The cup is behind the table."),  # VSR's spelling of the predicate
    ("cup", "on_top_of", "table", "The table is on top of the cup."),  # no paired predicate: swapped
])
def test_judge_relation_compares_the_claim_with_its_converse(vlm, subject, predicate, object_, converse):
    from trusted_scene_graph.vlm import relation_statement

    claim = relation_statement(subject, predicate, object_)
    p_claim, p_converse = vlm.caption_probabilities(IMAGE, [claim, converse])
    answer = vlm.judge_relation(IMAGE, subject, predicate, object_, image_id="ignored.jpg")
    assert p_claim + p_converse == pytest.approx(1.0)
    assert answer.answer == (p_claim > 0.5)
    assert answer.p_true == pytest.approx(p_claim)
    assert answer.probability == pytest.approx(max(p_claim, p_converse)) and answer.probability >= 0.5
    assert answer.margin == pytest.approx(abs(p_claim - p_converse))
    assert answer.raw_text == (claim if answer.answer else converse)
    assert math.isnan(answer.nmlp)
    # The swapped claim is judged against the original: the two verdicts are mirror images.
    swapped = vlm.caption_probabilities(IMAGE, [converse, claim])
    assert swapped == pytest.approx([p_converse, p_claim])


def test_a_noised_image_changes_the_contrastive_probability(vlm):
    clean = vlm.judge_relation(IMAGE, "cat", "left_of", "dog").p_true
    noisy = vlm.judge_relation(noised_image(IMAGE, 40.0, np.random.default_rng(0)), "cat", "left_of", "dog").p_true
    assert noisy != pytest.approx(clean, abs=1e-6)


def test_a_free_statement_is_refused_naming_it_and_judge_relation(vlm):
    with pytest.raises(VlmError, match=r"'contrastive' VLM backend cannot judge the free statement 'The cat is "
                                       r"left of the dog.': it compares a claim with its converse.*judge_relation"):
        vlm.judge(IMAGE, "The cat is left of the dog.")


@pytest.mark.parametrize(("image", "captions", "message"), [
    (IMAGE, ["The cat is left of the dog."], r"compares at least two captions, got \['The cat is left of the dog.'\]"),
    (IMAGE, "The cat.", r"compares at least two captions, got 'The cat.'"),
    (IMAGE, ["The cat.", " "], r"captions must be non-empty strings, got \[' '\]"),
    (np.zeros((4, 4)), ["a", "b"], r"needs a non-empty \(H, W, 3\) uint8 RGB image, got float64 \(4, 4\)"),
])
def test_bad_captions_or_images_are_refused(vlm, image, captions, message):
    with pytest.raises(VlmError, match=message):
        vlm.caption_probabilities(image, captions)


def test_captions_truncated_to_the_same_tokens_are_refused_not_scored_as_even_odds(vlm):
    long_subject, long_object = "red " * 20 + "cup", "blue " * 20 + "box"
    with pytest.raises(VlmError, match=rf"cannot tell the captions 'The {long_subject} is left of .*' and 'The "
                                       rf"{long_subject} is right of .*' apart: they tokenise the same \(truncated to "
                                       rf"the model's {CONTRASTIVE_TEXT_TOKENS} text tokens\); shorten the labels"):
        vlm.judge_relation(IMAGE, long_subject, "left_of", long_object)
    with pytest.raises(VlmError, match=r"cannot tell the captions 'The cat' and 'the CAT' apart"):
        vlm.caption_probabilities(IMAGE, ["The cat", "the dog", "the CAT"])  # the tokenizer lower-cases


def test_processor_and_model_failures_are_vlm_errors_with_the_reason(vlm, monkeypatch: pytest.MonkeyPatch):
    import torch

    def out_of_memory(*_args, **_inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(vlm.model, "forward", out_of_memory)
    monkeypatch.setattr(vlm.model, "get_image_features", out_of_memory)
    with pytest.raises(VlmError, match=r"scoring the captions on cpu failed on this image \(OutOfMemoryError"):
        vlm.judge_relation(IMAGE, "cat", "left_of", "dog")
    with pytest.raises(VlmError, match=r"embedding the images on cpu failed on this image \(OutOfMemoryError"):
        vlm.embed_images([IMAGE])

    class Refusing:
        tokenizer = image_processor = property(lambda self: self)

        def __call__(self, **_kwargs):
            raise ValueError("unsupported number of image dimensions")

    monkeypatch.setattr(vlm, "processor", Refusing())
    with pytest.raises(VlmError, match=r"processor cannot prepare captions .* with a 64x48 px image: unsupported"):
        vlm.judge_relation(IMAGE, "cat", "left_of", "dog")
    with pytest.raises(VlmError, match=r"image processor cannot prepare images of \['30x40', '64x48'\] px: "
                                       r"unsupported"):
        vlm.embed_images([IMAGE, OTHER_IMAGE])


def test_image_embeddings_are_unit_vectors_one_per_image_matching_the_models_own(vlm):
    import torch

    embeddings = vlm.embed_images([IMAGE, OTHER_IMAGE, IMAGE])
    dimension = vlm.model.config.projection_dim if vlm.model.config.model_type == "clip" \
        else vlm.model.config.vision_config.hidden_size
    assert embeddings.shape == (3, dimension) and embeddings.dtype == np.float64
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(np.ones(3))
    assert embeddings[0] == pytest.approx(embeddings[2], abs=1e-6)
    assert float(embeddings[0] @ embeddings[1]) < 1.0 - 1e-4
    inputs = vlm.preprocess(IMAGE, ["The cat.", "The dog."])
    with torch.inference_mode():
        model_embedding = vlm.model(**inputs).image_embeds[0].double().numpy()
    assert embeddings[0] == pytest.approx(model_embedding, abs=1e-5)
    with pytest.raises(VlmError, match=r"embed_images needs at least one image"):
        vlm.embed_images([])


def test_vsr_evaluation_asks_a_contrastive_vlm_about_the_relation_triple(vlm):
    class FailingDetector:  # leaves the sample unverifiable: only the VLM's answer matters here
        def detect(self, image_rgb, subject, object_):
            raise PerceptionError("no detector in this test")

    sample = VsrSample(line=1, image="000000000001.jpg", caption="The cat is at the left side of the dog.",
                       label=True, relation="left of", subj="cat", obj="dog")
    outcome = evaluate_sample(sample, IMAGE, vlm, FailingDetector())
    assert outcome.answer == vlm.judge_relation(IMAGE, "cat", "left of", "dog")
    assert outcome.unverifiable_reason == "detector_error"


def test_a_model_that_is_not_a_dual_encoder_is_refused(vlm):
    from trusted_scene_graph.vlm.contrastive import ContrastiveVlm

    class TextOnly:
        def get_text_features(self): ...

    with pytest.raises(VlmError, match=r"needs a dual image-text encoder such as CLIP or SigLIP; TextOnly has no "
                                       r"get_image_features\(\)"):
        ContrastiveVlm(TextOnly(), vlm.processor)
    with pytest.raises(VlmError, match=r"needs a processor with a tokenizer, got object"):
        ContrastiveVlm(vlm.model, object())


def test_a_missing_model_directory_is_named_with_how_to_get_the_weights(tmp_path: Path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(VlmError, match=rf"vlm.model_path: model directory '{missing}' does not exist; "
                                       rf".*{HOW_TO_GET_WEIGHTS}"):
        make_vlm(Config({"vlm.backend": "contrastive", "vlm.model_path": str(missing)}))
    with pytest.raises(VlmError, match=r"vlm.model_path is empty: this backend needs model weights"):
        make_vlm(Config({"vlm.backend": "contrastive"}))


def test_a_corrupt_weights_file_is_a_vlm_error(tmp_path: Path, model_dir: Path):
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated download
    with pytest.raises(VlmError, match=rf"cannot load the contrastive VLM from '{tmp_path}' \(vlm.model_path\): "
                                       r"corrupt weights file.*hf download"):
        make_vlm(Config({"vlm.backend": "contrastive", "vlm.model_path": str(tmp_path)}))


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_refused(model_dir: Path):
    with pytest.raises(VlmError, match=r"vlm.device is 'cuda' but torch sees no CUDA device"):
        make_vlm(Config({"vlm.backend": "contrastive", "vlm.model_path": str(model_dir), "vlm.device": "cuda"}))


def test_a_model_folder_without_its_tokenizer_files_is_refused_at_startup(tmp_path: Path):
    # transformers then builds a CLIP tokenizer that knows only its special tokens: every caption would read alike.
    model_dir = build_tiny_contrastive(tmp_path / "clip", kind="clip")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).unlink()
    with pytest.raises(VlmError, match=r"tokenizer reads every word of a caption as an unknown or special token: its "
                                       r"model folder lacks the tokenizer files"):
        make_vlm(Config({"vlm.backend": "contrastive", "vlm.model_path": str(model_dir)}))
