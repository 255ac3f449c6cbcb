"""The VLM interface (trusted_scene_graph.vlm): yes/no probability and NMLP arithmetic, the backend registry, the
'recorded' backend and the 'generative' backend on a tiny random LLaVA loaded through the real loading path.

Random weights make the generative answers meaningless, so its tests pin what must hold for any weights: the
probability is the renormalised yes/no mass of the next token after the prompt, the NMLP is at least ln k, the
prompt follows the processor's chat template, and missing or corrupt weights fail with the path and a hint.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_vlm import build_tiny_vlm

from trusted_scene_graph.config import Config
from trusted_scene_graph.vlm import (
    CONVERSE_PREDICATES,
    NMLP_TOP_K,
    RecordedVlm,
    VlmAnswer,
    VlmError,
    answer_from_logits,
    converse_relation,
    make_vlm,
    needs_relation_triple,
    nmlp,
    noised_image,
    relation_statement,
    yes_no_masses,
)

IMAGE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
HOW_TO_GET_WEIGHTS = r"hf download HuggingFaceTB/SmolVLM-256M-Instruct --local-dir DIR"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def generative(model_dir: Path):
    return make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(model_dir)}))


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- probability and NMLP on fixed logits ---------------------------------------------------------------------------


def test_each_words_mass_sums_the_softmax_over_its_spellings():
    logits = np.log(np.array([0.30, 0.10, 0.05, 0.15, 0.40])) + 7.0  # a softmax of these is the array itself
    # "yes" has two spellings (ids 1 and 2), "no" one (id 3); with id 0 as a second "no", P(no) = 0.45.
    assert yes_no_masses(logits, [1, 2], [3]) == (pytest.approx(0.15), pytest.approx(0.15))
    assert yes_no_masses(logits, [1, 2], [3, 0]) == (pytest.approx(0.15), pytest.approx(0.45))


def test_the_answer_is_the_likelier_word_and_its_probability_is_that_of_the_answer_given():
    logits = np.log(np.array([[0.0, 0.6, 0.4], [0.2, 0.3, 0.5]]) + 1e-300)
    # When "yes" and "no" hold all the mass, the probability is the answer word's own.
    assert answer_from_logits(logits, [1], [2])[:2] == (True, pytest.approx(0.6))
    assert answer_from_logits(logits, [2], [1])[:2] == (False, pytest.approx(0.6))
    assert answer_from_logits(logits, [1], [2])[3] == pytest.approx(1.0)
    # Only the first generated position decides; a tie is not an endorsement of the statement.
    assert answer_from_logits(np.zeros((2, 3)), [1], [2])[:2] == (False, 0.5)


def test_mass_on_neither_word_is_split_evenly_so_a_model_that_did_not_answer_is_near_even_odds():
    # The model opened with another word (id 0, 0.9): "yes" 0.08 against "no" 0.02 is 4:1 odds, but only 10 % of the
    # mass answered the question at all.
    logits = np.log(np.array([[0.9, 0.08, 0.02]]))
    answer, probability, _, answer_mass = answer_from_logits(logits, [1], [2])
    assert answer is True
    assert probability == pytest.approx(0.08 + 0.9 / 2)  # = 0.5 + (0.08 - 0.02) / 2, not 0.8
    assert answer_mass == pytest.approx(0.10)
    # The same odds with all the mass on the two words give the renormalised ratio.
    assert answer_from_logits(np.log(np.array([[1e-12, 0.8, 0.2]])), [1], [2])[1] == pytest.approx(0.8)
    # And a "no" answer the same way.
    assert answer_from_logits(np.log(np.array([[0.9, 0.02, 0.08]])), [1], [2])[:2] == (False, pytest.approx(0.53))


def test_nmlp_is_minus_the_mean_top_k_log_probability_averaged_over_generated_tokens():
    probabilities = np.array([[0.7, 0.2, 0.05, 0.05], [0.25, 0.25, 0.25, 0.25]])
    logits = np.log(probabilities) + np.array([[3.0], [-1.0]])  # per-row shifts do not change the softmax
    first = -(math.log(0.7) + math.log(0.2)) / 2
    second = math.log(4)
    assert nmlp(logits, top_k=2) == pytest.approx((first + second) / 2)
    assert answer_from_logits(logits, [0], [1], top_k=2)[2] == pytest.approx((first + second) / 2)


def test_nmlp_grows_with_the_peakedness_of_the_distribution_and_is_ln_v_when_uniform():
    vocabulary = 50
    uniform = np.zeros((1, vocabulary))
    peaked = np.zeros((1, vocabulary))
    peaked[0, 7] = 10.0
    assert nmlp(uniform) == pytest.approx(math.log(vocabulary))
    assert nmlp(peaked) > nmlp(uniform) + 1.0
    assert NMLP_TOP_K == 20
    # k above the vocabulary size averages over the whole vocabulary.
    assert nmlp(uniform[:, :5], top_k=20) == pytest.approx(math.log(5))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: yes_no_masses(np.zeros(4), [], [1]), r"no token ids given for 'yes'"),
    (lambda: yes_no_masses(np.zeros(4), [1], [9]), r"'no' token ids \[9\] are outside the vocabulary of 4"),
    (lambda: yes_no_masses(np.zeros(4), [1, 2], [2]), r"token ids \[2\] are both 'yes' and 'no'"),
    (lambda: nmlp(np.zeros((0, 4))), r"logits must be \(generated tokens, vocabulary\).*got shape \(0, 4\)"),
    (lambda: nmlp(np.full((1, 4), np.nan)), r"logits contain NaN"),
    (lambda: answer_from_logits(np.where(np.eye(2, 10, 1) > 0, np.inf, 0.0), [1], [2]),
     r"logits contain \+inf \(generated position 0, token 1\)"),
    (lambda: yes_no_masses(np.array([0.0, np.inf, 0.0]), [1], [2]), r"first-position logits contain \+inf"),
    (lambda: nmlp(np.array([[0.0, 1.0], [-np.inf, -np.inf]])), r"logits at generated position 1 are -inf for every"),
    (lambda: nmlp(np.zeros((1, 4)), top_k=0), r"NMLP top_k must be a positive integer, got 0"),
])
def test_malformed_logits_and_token_ids_are_refused_by_name(call, message):
    with pytest.raises(VlmError, match=message):
        call()


def test_masked_tokens_are_left_out_of_the_nmlp_and_a_token_id_given_twice_counts_once():
    logits = np.zeros((2, 30))
    logits[:, 5:] = -np.inf  # 5 tokens the model can emit, each at probability 1/5
    answer, probability, confidence, answer_mass = answer_from_logits(logits, [1], [2, 2])
    assert (answer, probability, answer_mass) == (False, 0.5, pytest.approx(0.4))
    assert confidence == pytest.approx(math.log(5))
    assert yes_no_masses(np.zeros(4), [1, 1], [2]) == pytest.approx((0.25, 0.25))


def test_an_answer_probability_outside_0_1_is_refused_and_p_true_follows_the_answer():
    with pytest.raises(VlmError, match=r"probability must be in \[0, 1\], got 1.5"):
        VlmAnswer(True, 1.5)
    # The answer is the likelier one: a "yes" at 0.3 would be a rejection to the trust step and a yes to tsg eval vsr.
    with pytest.raises(VlmError, match=r"at least 0.5; got 0.3 for yes"):
        VlmAnswer(True, 0.3)
    assert VlmAnswer(False, 0.5).p_true == 0.5 and VlmAnswer(True, 0.4999999999).probability == 0.4999999999
    assert VlmAnswer(True, 0.8).p_true == pytest.approx(0.8)
    assert VlmAnswer(False, 0.8).p_true == pytest.approx(0.2)


# --- registry ---------------------------------------------------------------------------------------------------------


def test_backend_none_builds_no_vlm_and_an_unknown_backend_lists_the_known_ones():
    assert make_vlm(Config({"vlm.backend": "none"})) is None
    with pytest.raises(VlmError, match=r"unknown VLM backend 'clip'; known backends: "
                                       r"\['none', 'contrastive', 'generative', 'recorded'\]"):
        make_vlm({"vlm.backend": "clip"})


def test_an_answer_margin_is_nan_by_default_and_otherwise_must_be_in_0_1():
    assert math.isnan(VlmAnswer(True, 0.8).margin)
    assert VlmAnswer(True, 0.8, margin=0.6).margin == 0.6
    for margin in (-0.1, 1.5, math.inf):
        with pytest.raises(VlmError, match=rf"margin must be NaN or in \[0, 1\], got {margin}"):
            VlmAnswer(True, 0.8, margin=margin)


# --- converse claims and noised images --------------------------------------------------------------------------------


def test_the_converse_of_a_claim_flips_a_paired_predicate_and_otherwise_swaps_subject_and_object():
    assert {CONVERSE_PREDICATES[CONVERSE_PREDICATES[p]] for p in CONVERSE_PREDICATES} == set(CONVERSE_PREDICATES)
    assert converse_relation("cat", "left_of", "dog") == ("cat", "right_of", "dog")
    assert converse_relation("cat", "In front of", "dog") == ("cat", "behind", "dog")  # VSR's spelling
    assert converse_relation("cup", "on_top_of", "table") == ("table", "on_top_of", "cup")
    assert converse_relation("cup", "bigger_than", "ball") == ("ball", "bigger_than", "cup")
    assert converse_relation("cup", "inside", "box") == ("box", "inside", "cup")


def test_a_noised_image_is_deterministic_per_seed_keeps_shape_and_dtype_and_sigma_0_changes_nothing():
    first = noised_image(IMAGE, 10.0, np.random.default_rng(3))
    assert first.shape == IMAGE.shape and first.dtype == np.uint8
    assert np.array_equal(first, noised_image(IMAGE, 10.0, np.random.default_rng(3)))
    assert not np.array_equal(first, noised_image(IMAGE, 10.0, np.random.default_rng(4)))
    difference = first.astype(float) - IMAGE
    unclipped = (IMAGE > 50) & (IMAGE < 205)  # more than 4 sigma from the clipping bounds
    assert np.std(difference[unclipped]) == pytest.approx(10.0, rel=0.1)
    assert np.array_equal(noised_image(IMAGE, 0.0, np.random.default_rng(0)), IMAGE)
    saturated = noised_image(np.full((4, 4, 3), 255, np.uint8), 50.0, np.random.default_rng(0))
    assert saturated.max() == 255 and saturated.min() < 255  # clipped, not wrapped around


@pytest.mark.parametrize(("image", "sigma", "message"), [
    (IMAGE, -1.0, r"image noise sigma must be a finite number >= 0 \(grey levels\), got -1.0"),
    (IMAGE, math.nan, r"image noise sigma must be a finite number >= 0 \(grey levels\), got nan"),
    (IMAGE, "5", r"image noise sigma must be a finite number >= 0 \(grey levels\), got '5'"),
    (IMAGE.astype(float), 1.0, r"needs a non-empty \(H, W, 3\) uint8 RGB image, got float64"),
])
def test_a_bad_noise_sigma_or_image_is_refused(image, sigma, message):
    with pytest.raises(VlmError, match=message):
        noised_image(image, sigma, np.random.default_rng(0))


# --- recorded ---------------------------------------------------------------------------------------------------------


def test_recorded_answers_are_looked_up_by_image_and_statement_in_any_of_the_accepted_spellings(tmp_path: Path):
    path = _write_jsonl(tmp_path / "answers.jsonl", [
        {"image": "000000451431.jpg", "statement": "The cat is left of the dog.", "answer": "yes",
         "probability": 0.83, "nmlp": 2.5, "raw_text": "Yes"},
        {"image": "images/000000451431.jpg", "caption": "The cat is above the dog.", "answer": 0, "probability": 0.6},
        "",
        {"image": "000000000007.jpg", "subject": "cup", "predicate": "on_top_of", "object": "table",
         "answer": True, "probability": 1},
    ])
    vlm = make_vlm(Config({"vlm.backend": "recorded", "vlm.recorded_path": str(path)}))
    assert isinstance(vlm, RecordedVlm) and len(vlm) == 3
    assert vlm.judge(IMAGE, "the cat is  LEFT of the dog", image_id="000000451431.jpg") == \
        VlmAnswer(True, 0.83, 2.5, "Yes")
    answer = vlm.judge(IMAGE, "The cat is above the dog.", image_id="000000451431")
    assert (answer.answer, answer.probability, math.isnan(answer.nmlp)) == (False, 0.6, True)
    assert relation_statement("cup", "on_top_of", "table") == "The cup is on top of the table."
    for spelling in ("far", "Far", " FAR "):  # one predicate, as the recorded answers' check takes it
        assert relation_statement("cup", spelling, "box") == "The cup is far from the box."
    assert vlm.judge(IMAGE, "The cup is on top of the table.", image_id="000000000007.jpg").answer is True
    # Without an image id, a statement recorded for exactly one image is found.
    assert vlm.judge(IMAGE, "The cup is on top of the table.").probability == 1.0


def test_a_claim_the_recording_does_not_hold_is_an_error_naming_image_and_statement(tmp_path: Path):
    path = _write_jsonl(tmp_path / "answers.jsonl", [
        {"image": "a.jpg", "statement": "The cat is left of the dog.", "answer": "no", "probability": 0.7},
        {"image": "b.jpg", "statement": "The cat is left of the dog.", "answer": "yes", "probability": 0.9},
    ])
    vlm = RecordedVlm.from_file(path)
    with pytest.raises(VlmError, match=r"has no answer for image 'c.jpg' and statement 'The cat is left of the "
                                       r"dog.' \(key \('c', 'the cat is left of the dog'\)\)"):
        vlm.judge(IMAGE, "The cat is left of the dog.", image_id="c.jpg")
    with pytest.raises(VlmError, match=r"was recorded for 2 images \(\['a', 'b'\]\); pass image_id"):
        vlm.judge(IMAGE, "The cat is left of the dog.")


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"answers.jsonl:2: not valid JSON"),
    ('["a list"]', r"answers.jsonl:2: expected a JSON object, got list"),
    ('{"statement": "x", "answer": true, "probability": 0.5}', r"answers.jsonl:2: 'image' must be a non-empty"),
    ('{"image": "a.jpg", "answer": true, "probability": 0.5}', r"answers.jsonl:2: needs 'statement'"),
    ('{"image": "a.jpg", "statement": "x", "answer": "maybe", "probability": 0.5}',
     r"answers.jsonl:2: 'answer' must be true/false, 'yes'/'no' or 1/0, got 'maybe'"),
    ('{"image": "a.jpg", "statement": "x", "answer": true, "probability": 1.2}',
     r"answers.jsonl:2: 'probability' must be a number in \[0, 1\], got 1.2"),
    ('{"image": "a.jpg", "statement": "x", "answer": "yes", "probability": 0.4999}',
     r"answers.jsonl:2: the probability is that of the answer given, the likelier one, so at least 0.5; got 0.4999 "
     r"for answer yes \(a yes at 0.3 is a no at 0.7\)"),
    ('{"image": "a.jpg", "statement": "x", "answer": true, "probability": 0.5, "nmlp": "high"}',
     r"answers.jsonl:2: 'nmlp' must be a number, got 'high'"),
    ('{"image": "a.jpg", "statement": "The cat.", "answer": true, "probability": 0.5}',
     r"answers.jsonl:2: a second answer for image 'a' and statement 'the cat' \(the first is on line 1\)"),
    ('{"image": "a.jpg", "statement": "x", "answer": true, "probability": 0.5, "nmlp": Infinity}',
     r"answers.jsonl:2: 'nmlp' must be a finite number >= 0 \(minus a mean log-probability\), got inf"),
    ('{"image": "a.jpg", "statement": "x", "answer": true, "probability": 0.5, "nmlp": -0.5}',
     r"answers.jsonl:2: 'nmlp' must be a finite number >= 0 .*got -0.5"),
    ('{"image": -5, "statement": "x", "answer": true, "probability": 0.5}',
     r"answers.jsonl:2: 'image' must be a non-empty string or a non-negative integer .*got -5"),
    ('{"image": "b.jpg", "statement": "The cat is left of the dog.", "caption": "The cat is right of the dog.", '
     '"answer": true, "probability": 0.5}',
     r"answers.jsonl:2: 'statement' 'The cat is left of the dog.' and its alias 'caption' 'The cat is right of the "
     r"dog.' differ"),
])
def test_a_malformed_recording_is_refused_naming_file_and_line(tmp_path: Path, line: str, message: str):
    path = _write_jsonl(tmp_path / "answers.jsonl",
                        [{"image": "a.jpg", "statement": "the cat", "answer": "yes", "probability": 0.9}, line])
    with pytest.raises(VlmError, match=message):
        RecordedVlm.from_file(path)


def test_recorded_answers_round_trip_through_json_dumps_with_unicode_line_separators_and_a_byte_order_mark(
        tmp_path: Path):
    # json.dumps(ensure_ascii=False) (dataset/lerobot.py's writer) leaves U+2028, U+2029 and U+0085 unescaped, and
    # str.splitlines would cut the record there.
    statement = "The cup\u2028is left of\u2029the \x85bowl."
    records = [{"image": "a.jpg", "statement": statement, "answer": "yes", "probability": 0.75,
                "raw_text": "Yes\u2028indeed"},
               {"image": "b.jpg", "statement": "The cup is near the bowl.", "answer": "no", "probability": 0.6}]
    path = tmp_path / "answers.jsonl"
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))  # a BOM and CRLF line ends
    vlm = RecordedVlm.from_file(path)
    assert len(vlm) == 2
    assert vlm.judge(IMAGE, statement, image_id="a.jpg") == VlmAnswer(True, 0.75, raw_text="Yes\u2028indeed")
    assert vlm.judge(IMAGE, "The cup is near the bowl.", image_id="b").probability == 0.6


def test_a_null_statement_defers_to_the_caption_an_integer_image_is_a_stamp_and_nmlp_may_be_nan(tmp_path: Path):
    stamp_ns = 1_700_000_000_123_456_789
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"image": stamp_ns, "statement": None, "caption": "The cat is left of the dog.",
                                "answer": "no", "probability": 0.8, "nmlp": math.nan}) + "\n")
    answer = RecordedVlm.from_file(path).judge(IMAGE, "The cat is left of the dog.", image_id=str(stamp_ns))
    assert (answer.answer, answer.probability, math.isnan(answer.nmlp)) == (False, 0.8, True)


@pytest.mark.parametrize("nulls", [{"probability": None, "confidence": 0.8}, {"confidence": None, "probability": 0.8},
                                   {"probability": 0.8, "raw_text": None}])
def test_a_null_probability_confidence_or_raw_text_counts_as_absent(tmp_path: Path, nulls: dict):
    path = _write_jsonl(tmp_path / "answers.jsonl", [
        {"image": "a.jpg", "subject": "cat", "predicate": "left_of", "object": "dog", "answer": "yes", **nulls}])
    answer = RecordedVlm.from_file(path).judge_relation(IMAGE, "cat", "left_of", "dog", image_id="a.jpg")
    assert (answer.answer, answer.probability, answer.raw_text) == (True, 0.8, "")


def test_recorded_confidence_is_an_alias_of_probability_and_a_margin_and_answer_mass_may_be_recorded(
        tmp_path: Path):
    path = _write_jsonl(tmp_path / "answers.jsonl", [
        {"image": "a.jpg", "subject": "cat", "predicate": "left_of", "object": "dog", "answer": "yes",
         "confidence": 0.7, "margin": 0.4},
        {"image": "a.jpg", "subject": "cat", "predicate": "near", "object": "dog", "answer": "yes",
         "probability": 0.6, "answer_mass": 0.25},
        {"image": "a.jpg", "subject": "cat", "predicate": "above", "object": "dog", "answer": "no",
         "probability": 0.9, "confidence": 0.9},
    ])
    vlm = RecordedVlm.from_file(path)
    assert vlm.judge_relation(IMAGE, "cat", "left_of", "dog", image_id="a.jpg") == \
        VlmAnswer(True, 0.7, margin=0.4)
    assert vlm.judge_relation(IMAGE, "cat", "above", "dog", image_id="a.jpg").probability == 0.9
    assert vlm.judge_relation(IMAGE, "cat", "near", "dog", image_id="a.jpg").answer_mass == 0.25
    assert not needs_relation_triple(vlm)


@pytest.mark.parametrize(("fields", "message"), [
    ({"probability": 0.9, "confidence": 0.8},
     r"answers.jsonl:1: 'probability' 0.9 and its alias 'confidence' 0.8 differ; give one of them"),
    ({"confidence": 1.5}, r"answers.jsonl:1: 'confidence' must be a number in \[0, 1\], got 1.5"),
    ({}, r"answers.jsonl:1: needs 'probability' \(or 'confidence'\)"),
    ({"probability": 0.9, "margin": 2}, r"answers.jsonl:1: 'margin' must be a number in \[0, 1\], got 2"),
    ({"probability": 0.9, "answer_mass": -0.1},
     r"answers.jsonl:1: 'answer_mass' must be a number in \[0, 1\], got -0.1"),
])
def test_conflicting_or_missing_probabilities_are_refused_naming_the_line(tmp_path: Path, fields, message):
    path = _write_jsonl(tmp_path / "answers.jsonl", [{"image": "a.jpg", "statement": "x", "answer": "yes", **fields}])
    with pytest.raises(VlmError, match=message):
        RecordedVlm.from_file(path)


def test_recorded_predicates_can_be_restricted_to_a_given_set(tmp_path: Path):
    path = _write_jsonl(tmp_path / "answers.jsonl", [
        {"image": "a.jpg", "subject": "cup", "predicate": "on top of", "object": "table", "answer": 1,
         "probability": 0.8},
        {"image": "a.jpg", "statement": "The cup is inside the box.", "answer": 1, "probability": 0.8},
        {"image": "b.jpg", "subject": "cup", "predicate": "inside", "object": "box", "answer": 1,
         "probability": 0.8},
    ])
    allowed = ("left_of", "on_top_of")
    with pytest.raises(VlmError, match=rf"{path}:3: predicate 'inside' is not one of the allowed predicates "
                                       r"\['left_of', 'on_top_of'\]"):
        RecordedVlm.from_file(path, predicates=allowed)
    with pytest.raises(VlmError, match=r"answers.jsonl:3: predicate 'inside'"):
        RecordedVlm.from_config(Config({"vlm.backend": "recorded", "vlm.recorded_path": str(path)}),
                                predicates=allowed)
    assert len(RecordedVlm.from_file(path)) == 3  # free predicates when none are given (VSR)
    path.write_text("\n".join(path.read_text().splitlines()[:2]))
    # "on top of" is on_top_of; a claim given as a sentence is not checked.
    assert len(RecordedVlm.from_file(path, predicates=allowed)) == 2


def test_a_missing_recording_or_an_empty_path_is_refused(tmp_path: Path):
    with pytest.raises(VlmError, match=r"vlm.recorded_path is empty"):
        make_vlm(Config({"vlm.backend": "recorded"}))
    with pytest.raises(VlmError, match=rf"vlm.recorded_path: cannot read '{tmp_path / 'none.jsonl'}'"):
        make_vlm(Config({"vlm.backend": "recorded", "vlm.recorded_path": str(tmp_path / "none.jsonl")}))


# --- generative -------------------------------------------------------------------------------------------------------


def test_the_generative_backend_loads_the_tiny_llava_and_finds_the_yes_and_no_tokens(generative):
    from trusted_scene_graph.vlm.generative import GenerativeVlm

    assert isinstance(generative, GenerativeVlm)
    tokenizer = generative.processor.tokenizer
    assert generative.yes_ids == (tokenizer.convert_tokens_to_ids("yes"),)
    assert generative.no_ids == (tokenizer.convert_tokens_to_ids("no"),)


def test_the_generative_backend_judges_a_relation_triple_as_its_statement(generative):
    assert generative.judge_relation(IMAGE, "cat", "left_of", "dog") == \
        generative.judge(IMAGE, "The cat is left of the dog.")
    assert math.isnan(generative.judge(IMAGE, "The cat is left of the dog.").margin)
    assert not needs_relation_triple(generative)


def test_the_prompt_asks_the_question_in_the_processors_chat_template(generative):
    assert generative.prompt("The cat is left of the dog.") == (
        "USER: <image>\nIs this statement true? The cat is left of the dog. Answer yes or no. ASSISTANT:")


def test_the_probability_comes_from_the_next_token_after_the_prompt_with_the_unanswered_mass_split_evenly(generative):
    import torch

    answer = generative.judge(IMAGE, "The cat is left of the dog.")
    inputs = generative.preprocess(IMAGE, "The cat is left of the dog.")
    with torch.inference_mode():
        next_token = torch.softmax(generative.model(**inputs).logits[0, -1].double(), dim=0)
    p_yes, p_no = next_token[generative.yes_ids].sum().item(), next_token[generative.no_ids].sum().item()
    assert answer.answer == (p_yes > p_no)
    assert answer.probability == pytest.approx(0.5 + abs(p_yes - p_no) / 2, abs=1e-5)
    assert answer.answer_mass == pytest.approx(p_yes + p_no, abs=1e-5)
    # A random model spreads its mass over the whole vocabulary: it gets near-even odds, not a confident answer.
    assert answer.answer_mass < 0.2
    assert 0.5 <= answer.probability < 0.6


def test_generative_answers_are_deterministic_with_nmlp_at_least_ln_k_and_the_generated_text(generative):
    first = generative.judge(IMAGE, "The ball is above the box.")
    assert generative.judge(IMAGE, "The ball is above the box.") == first
    vocabulary_size = generative.model.config.text_config.vocab_size
    assert first.nmlp >= math.log(min(NMLP_TOP_K, vocabulary_size)) - 1e-9
    assert first.raw_text and "<" not in first.raw_text  # special tokens are stripped


def test_a_checkpoint_asking_for_beam_search_is_still_answered_greedily(model_dir: Path, tmp_path: Path, generative):
    # Beam search returns per-step logits of beam 0, not of the sequence it returns: the NMLP and text would disagree.
    beams = tmp_path / "beams"
    shutil.copytree(model_dir, beams)
    generation = json.loads((beams / "generation_config.json").read_text())
    (beams / "generation_config.json").write_text(json.dumps({**generation, "num_beams": 3}))
    with_beams = make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(beams)}))
    for statement in ("The ball is above the box.", "The cat is near the dog."):
        assert with_beams.judge(IMAGE, statement) == generative.judge(IMAGE, statement)


def test_a_generative_answer_takes_well_under_a_second_on_cpu(generative):
    generative.judge(IMAGE, "The cat is near the dog.")  # warm-up
    start = time.perf_counter()
    for _ in range(3):
        generative.judge(IMAGE, "The cat is near the dog.")
    assert (time.perf_counter() - start) / 3 < 0.5


def test_without_a_chat_template_the_image_token_leads_the_question(tmp_path: Path):
    vlm = make_vlm(Config({"vlm.backend": "generative",
                           "vlm.model_path": str(build_tiny_vlm(tmp_path, chat_template=None))}))
    assert vlm.prompt("The cat is left of the dog.") == \
        "<image>\nIs this statement true? The cat is left of the dog. Answer yes or no."
    assert 0.5 <= vlm.judge(IMAGE, "The cat is left of the dog.").probability <= 1.0


@pytest.mark.parametrize(("template", "message"), [
    ("null", r"renders a prompt without the image token '<image>', so the image has no place in it: got 'null'"),
    ("{% for %}", r"cannot be rendered"),
])
def test_a_chat_template_without_the_image_token_is_refused_at_load_naming_folder_and_file(
        tmp_path: Path, model_dir: Path, template: str, message: str):
    broken = Path(shutil.copytree(model_dir, tmp_path / "broken_template"))
    (broken / "chat_template.jinja").write_text(template)
    with pytest.raises(VlmError, match=rf"chat template of the VLM '{broken}' \(file chat_template.jinja\) {message}"):
        make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(broken)}))


def test_processor_and_model_failures_are_vlm_errors_with_the_reason(generative, monkeypatch: pytest.MonkeyPatch):
    import torch

    def out_of_memory(**_inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(generative.model, "generate", out_of_memory)
    with pytest.raises(VlmError, match=r"VLM generating an answer on cpu failed on this image \(OutOfMemoryError"):
        generative.judge(IMAGE, "The cat is left of the dog.")
    monkeypatch.setattr(generative, "prompt", lambda statement: statement)  # no image token: the processor refuses
    with pytest.raises(VlmError, match=r"processor cannot prepare the question 'The cat.' with a 64x48 px image: "
                                       r".*image"):
        generative.judge(IMAGE, "The cat.")


def test_an_image_that_is_not_rgb_uint8_is_refused(generative):
    with pytest.raises(VlmError, match=r"needs a non-empty \(H, W, 3\) uint8 RGB image, got float64 \(4, 4, 3\)"):
        generative.judge(np.zeros((4, 4, 3)), "The cat is left of the dog.")


def test_a_tokenizer_without_a_single_yes_token_is_refused():
    from trusted_scene_graph.vlm.generative import answer_token_ids

    class SplittingTokenizer:  # spells every word letter by letter
        unk_token_id = 0

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [ord(c) for c in text]

    with pytest.raises(VlmError, match=r"tokenizer \(SplittingTokenizer\) has no single token for 'yes'"):
        answer_token_ids(SplittingTokenizer())


def test_a_missing_model_directory_is_named_with_how_to_get_the_weights(tmp_path: Path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(VlmError, match=rf"vlm.model_path: model directory '{missing}' does not exist; "
                                       rf".*{HOW_TO_GET_WEIGHTS}"):
        make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(missing)}))
    with pytest.raises(VlmError, match=r"vlm.model_path is empty: this backend needs model weights"):
        make_vlm(Config({"vlm.backend": "generative"}))


def test_a_corrupt_weights_file_is_a_vlm_error(tmp_path: Path, model_dir: Path):
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated download
    with pytest.raises(VlmError, match=rf"cannot load the VLM from '{tmp_path}' \(vlm.model_path\): corrupt"):
        make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(tmp_path)}))


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA")
def test_cuda_without_a_cuda_device_is_refused(model_dir: Path):
    with pytest.raises(VlmError, match=r"vlm.device is 'cuda' but torch sees no CUDA device"):
        make_vlm(Config({"vlm.backend": "generative", "vlm.model_path": str(model_dir), "vlm.device": "cuda"}))


def test_a_recorded_probability_a_float32_rounding_below_one_half_is_accepted_as_a_backends_is(tmp_path: Path):
    path = _write_jsonl(tmp_path / "answers.jsonl",
                        [{"image": "a.jpg", "statement": "the cat", "answer": "no", "probability": 0.49999997}])
    assert RecordedVlm.from_file(path).judge(IMAGE, "the cat", image_id="a.jpg").p_true == pytest.approx(0.5)
    assert VlmAnswer(False, 0.49999997).probability == 0.49999997
