"""The VSR trust evaluation (trusted_scene_graph.evaluation.vsr), after Imran & Lee (2026).

The parts are pinned on deterministic inputs: annotation parsing and its errors, the 2D verification margins on
hand-made boxes, the alignment score, the grouped out-of-fold fusion, and the metrics of recorded VLM answers.
The whole command then runs end to end on a five-image fixture drawn here (a red box and a blue ball per image,
captions using VSR's relation phrases), with a tiny random LLaVA and a tiny random Grounding DINO built to a
temporary directory: random weights make its numbers meaningless, so those tests check the files, the keys, the
value ranges and that the counts add up.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from tiny_models import build_tiny_grounding_dino
from tiny_vlm import build_tiny_vlm

from trusted_scene_graph.config import Config
from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation.vsr import (
    FUSION_FEATURES,
    SCORE_NAMES,
    alignment,
    fuse_logistic,
    geometric_trust,
    image_predicate,
    load_vsr_annotations,
    read_vsr_annotations,
    run_vsr_eval,
    verify_relation,
)

HEIGHT_PX, WIDTH_PX = 96, 128
NOUNS = ("box", "ball")

# Per image: the red box's and the blue ball's centres (x, y) in pixels, and captions true or false of the drawing.
FIXTURE = {
    "000000000001.jpg": ((30, 30), (95, 70), [("The box is left of the ball.", 1, "left of"),
                                              ("The box is below the ball.", 0, "below")]),
    "000000000002.jpg": ((95, 50), (30, 50), [
        ("The box is right of the ball.", 1, "right of"),
        ("The ball is at the right side of the box.", 0, "at the right side of")]),
    "000000000003.jpg": ((64, 20), (64, 75), [("The box is above the ball.", 1, "above"),
                                              ("The ball is on top of the box.", 0, "on top of"),
                                              ("The box is in front of the ball.", 1, "in front of")]),
    "000000000004.jpg": ((64, 75), (64, 25), [("The ball is on top of the box.", 1, "on top of"),
                                              ("The box is beneath the ball.", 1, "beneath"),
                                              ("The ball is under the box.", 0, "under")]),
    "000000000005.jpg": ((40, 48), (88, 48), [("The ball is near the box.", 1, "near"),
                                              ("The box is behind the ball.", 0, "behind"),
                                              ("The box is left of the ball.", 1, "left of")]),
}
MISSING_IMAGE = "000000000099.jpg"


def _draw(box_centre: tuple[int, int], ball_centre: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), (225, 220, 205))
    draw = ImageDraw.Draw(image)
    (bx, by), (cx, cy) = box_centre, ball_centre
    draw.rectangle((bx - 14, by - 14, bx + 14, by + 14), fill=(200, 30, 30))
    draw.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=(30, 60, 200))
    return image


def _write_fixture(root: Path) -> tuple[Path, Path, list[dict]]:
    """Five images, one JSONL line per caption (subj/obj given on some lines, read from the caption on the others)
    and a last line naming an image that does not exist."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    records = []
    for name, (box_centre, ball_centre, captions) in FIXTURE.items():
        _draw(box_centre, ball_centre).save(images_dir / name)
        for caption, label, relation in captions:
            record = {"image": name, "image_link": f"http://example.invalid/{name}", "caption": caption,
                      "label": label, "relation": relation}
            if len(records) % 2 == 0:
                subj, obj = caption.removeprefix("The ").split(" ")[0], caption.rstrip(".").split(" ")[-1]
                record |= {"subj": subj, "obj": obj}
            records.append(record)
    records.append({"image": MISSING_IMAGE, "caption": "The box is left of the ball.", "label": 1,
                    "relation": "left of"})
    annotations = root / "vsr.jsonl"
    annotations.write_text("".join(json.dumps(record) + "\n" for record in records))
    return images_dir, annotations, records


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vsr_models")
    return {"vlm": build_tiny_vlm(root / "vlm"),
            "detector": build_tiny_grounding_dino(root / "detector", words=NOUNS)}


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    return _write_fixture(tmp_path_factory.mktemp("vsr_fixture"))


def _config(models: dict[str, Path], **overrides) -> Config:
    # Thresholds 0: random weights give low scores, and every box should reach the geometry.
    values = {"vlm.backend": "generative", "vlm.model_path": str(models["vlm"]),
              "detector.backend": "grounding_dino", "detector.model_path": str(models["detector"]),
              "detector.vocabulary": ["box"], "detector.box_threshold": 0.0, "detector.text_threshold": 0.0,
              "detector.min_pixels": 1}
    return Config({**values, **overrides})


# --- annotations ------------------------------------------------------------------------------------------------------


def test_vsr_jsonl_is_read_with_subject_and_object_given_or_taken_from_the_caption(fixture_files):
    _, annotations, records = fixture_files
    samples = load_vsr_annotations(annotations)
    assert len(samples) == len(records)
    first, second = samples[0], samples[1]
    assert (first.line, first.image, first.label, first.relation, first.subj, first.obj) == \
        (1, "000000000001.jpg", True, "left of", "box", "ball")
    assert "subj" not in records[1]  # read from "The box is below the ball."
    assert (second.line, second.label, second.subj, second.obj) == (2, False, "box", "ball")
    at_side = samples[3]
    assert (at_side.relation, at_side.subj, at_side.obj) == ("at the right side of", "ball", "box")


def test_a_json_list_file_is_read_like_jsonl(tmp_path: Path):
    path = tmp_path / "vsr.json"
    path.write_text(json.dumps([{"image": "a.jpg", "caption": "The cat has as a part the dining table.",
                                 "label": 0, "relation": "has as a part"}]))
    (sample,) = load_vsr_annotations(path)
    assert (sample.line, sample.subj, sample.obj, sample.label) == (1, "cat", "dining table", False)


def test_a_caption_holding_a_unicode_line_separator_is_one_jsonl_line_and_a_byte_order_mark_is_no_part_of_it(
        tmp_path: Path):
    # json.dumps(ensure_ascii=False) leaves U+2028 as it is; only a line feed ends a JSONL line.
    records = [{"image": f"{name}.jpg", "caption": f"The cat{separator} is left of the dog.", "label": 1,
                "relation": "left of", "subj": "cat", "obj": "dog"} for name, separator in (("a", "\u2028"), ("b", ""))]
    path = tmp_path / "vsr.jsonl"
    path.write_text("\ufeff" + "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    samples, problems = read_vsr_annotations(path)
    assert problems == [] and [(s.line, s.image) for s in samples] == [(1, "a.jpg"), (2, "b.jpg")]
    listed = tmp_path / "vsr.json"
    listed.write_text("\ufeff" + json.dumps(records[1:]), encoding="utf-8")
    assert [s.image for s in load_vsr_annotations(listed)] == ["b.jpg"]


def test_the_subject_box_does_not_suppress_the_object_box_it_overlaps(models, monkeypatch, tmp_path: Path):
    # A rider on a horse: boxes overlapping by more than detector.nms_iou are both the objects asked for.
    from trusted_scene_graph.evaluation.vsr import PhrasePairDetector
    from trusted_scene_graph.perception import grounding_dino
    from trusted_scene_graph.perception.detector import Detection

    boxes = {"box": ((40, 5, 40, 60), 0.9), "ball": ((40, 20, 40, 70), 0.8)}  # IoU 0.53 > the default 0.5

    def detected(self, outputs, batch, height_px, width_px):  # random weights cannot be made to find these boxes
        return [Detection(phrase, boxes[phrase][1], boxes[phrase][0]) for phrase in batch.phrases]

    monkeypatch.setattr(grounding_dino.GroundingDinoDetector, "postprocess", detected)
    subject, object_ = PhrasePairDetector(_config(models)).detect(np.zeros((HEIGHT_PX, WIDTH_PX, 3), np.uint8),
                                                                  "box", "ball")
    assert (subject.box_xywh_px, object_.box_xywh_px) == (boxes["box"][0], boxes["ball"][0])


BAD_LINES = [
    ("{not json", r"vsr.jsonl:2: not valid JSON"),
    ('{"image": "a.jpg", "caption": "The cat is left of the dog.", "label": 2, "relation": "left of"}',
     r"vsr.jsonl:2: 'label' must be 0 or 1, got 2"),
    ('{"image": "a.jpg", "label": 1, "relation": "left of"}', r"vsr.jsonl:2: 'caption' must be a non-empty string"),
    ('{"image": "a.jpg", "caption": "A cat and a dog.", "label": 1, "relation": "left of"}',
     r"vsr.jsonl:2: no 'subj'/'obj' given and the caption 'A cat and a dog.' does not read "
     r"'The <subj> \[is\] left of the <obj>.'"),
    ('{"image": "a.jpg", "caption": "x", "label": 1, "relation": "left of", "subj": "cat", "obj": 3}',
     r"vsr.jsonl:2: 'obj' must be a non-empty string, got 3"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_an_invalid_annotation_is_an_error_naming_its_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "vsr.jsonl"
    good = {"image": "a.jpg", "caption": "The cat is left of the dog.", "label": 1, "relation": "left of"}
    path.write_text(json.dumps(good) + "\n" + line + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(EvaluationError, match=message):
        load_vsr_annotations(path)
    samples = load_vsr_annotations(path, skip_invalid=True)
    assert [s.line for s in samples] == [1, 4]


def test_all_invalid_lines_are_counted_and_an_unreadable_file_is_an_error(tmp_path: Path):
    path = tmp_path / "vsr.jsonl"
    path.write_text("\n".join(line for line, _ in BAD_LINES) + "\n")
    samples, problems = read_vsr_annotations(path)
    assert (samples, len(problems)) == ([], len(BAD_LINES))
    with pytest.raises(EvaluationError, match=r"vsr.jsonl:1: not valid JSON.* \(and 4 more invalid records\)"):
        load_vsr_annotations(path)
    with pytest.raises(EvaluationError, match=r"cannot read VSR annotations '.*missing.jsonl'"):
        load_vsr_annotations(tmp_path / "missing.jsonl")


# --- geometry ---------------------------------------------------------------------------------------------------------


def test_left_and_right_margins_are_centre_offsets_in_units_of_the_mean_box_width():
    subject, object_ = (0, 0, 10, 10), (30, 5, 30, 10)  # centres x = 5 and 45; mean width 20 px
    left = verify_relation("left of", subject, object_)
    assert (left.predicate, left.margin_px, left.normalised_margin, left.holds) == ("image_left_of", 40.0, 2.0, True)
    right = verify_relation("at the right side of", subject, object_)
    assert (right.predicate, right.margin_px, right.normalised_margin, right.holds) == \
        ("image_right_of", -40.0, -2.0, False)


def test_vertical_relations_use_image_up_and_the_mean_box_height():
    cup, table = (10, 0, 8, 10), (0, 30, 40, 30)  # centres y = 5 and 45; mean height 20 px
    for relation in ("above", "over", "on top of", "on"):
        verdict = verify_relation(relation, cup, table)
        assert (verdict.predicate, verdict.normalised_margin) == ("image_above", 2.0)
    for relation in ("below", "under", "beneath"):
        assert verify_relation(relation, cup, table).normalised_margin == -2.0
        assert verify_relation(relation, table, cup).normalised_margin == 2.0


def test_boxes_on_the_decision_boundary_have_margin_zero_and_the_relation_does_not_hold():
    verdict = verify_relation("left of", (0, 0, 10, 10), (0, 20, 10, 10))  # same centre x
    assert (verdict.margin_px, verdict.holds) == (0.0, False)


def test_relations_without_a_2d_meaning_are_unverifiable_and_names_are_normalised():
    for relation in ("in front of", "behind", "near", "touching", "contains", "facing"):
        assert image_predicate(relation) is None
        assert verify_relation(relation, (0, 0, 1, 1), (5, 5, 1, 1)) is None
    assert image_predicate("  Left   OF ") == "image_left_of"


def test_alignment_is_positive_when_the_boxes_agree_with_the_vlm_and_the_score_is_half_when_unverifiable():
    holds = verify_relation("left of", (0, 0, 10, 10), (30, 0, 10, 10))  # normalised margin 3
    assert alignment(True, holds) == 3.0
    assert alignment(False, holds) == -3.0
    assert math.isnan(alignment(True, None))
    trust = geometric_trust(np.array([3.0, -3.0, 0.0, np.nan]))
    np.testing.assert_allclose(trust, [0.5 + 0.5 * math.tanh(3), 0.5 - 0.5 * math.tanh(3), 0.5, 0.5])


# --- fusion -----------------------------------------------------------------------------------------------------------


def _fusion_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    correct = rng.random(60) < 0.6
    features = rng.normal(size=(60, len(FUSION_FEATURES)))
    features[:, 0] += 2.0 * correct  # the first feature carries the signal
    return features, correct, [f"image{i // 3}" for i in range(60)]


def test_fused_scores_are_out_of_fold_probabilities_that_rank_correct_answers_first():
    from trusted_scene_graph.evaluation.metrics import auroc

    features, correct, groups = _fusion_data()
    fusion = fuse_logistic(features, correct, groups, folds=5)
    assert fusion.available and fusion.folds == 5
    assert fusion.scores.shape == (60,) and ((fusion.scores > 0) & (fusion.scores < 1)).all()
    assert auroc(fusion.scores, correct) > 0.8


def test_a_samples_fused_score_comes_from_a_model_that_never_saw_its_image():
    features, correct, groups = _fusion_data()
    fusion = fuse_logistic(features, correct, groups, folds=5)
    flipped = correct.copy()
    flipped[:3] = ~flipped[:3]  # every label of image0
    refit = fuse_logistic(features, flipped, groups, folds=5)
    np.testing.assert_array_equal(refit.scores[:3], fusion.scores[:3])
    assert not np.allclose(refit.scores[3:], fusion.scores[3:])  # the other folds did see image0


def test_fusion_is_not_attempted_on_one_image_or_on_training_folds_with_one_outcome():
    features, correct, _ = _fusion_data()
    single = fuse_logistic(features, correct, ["image0"] * 60)
    assert not single.available and np.isnan(single.scores).all()
    assert single.note == "needs samples from at least 2 images for grouped cross-validation, got 1"
    one_outcome = np.zeros(60, dtype=bool)
    one_outcome[:3] = True  # only image0 has a correct answer: its own fold trains on wrong answers only
    result = fuse_logistic(features, one_outcome, [f"image{i // 3}" for i in range(60)], folds=5)
    assert not result.available and "has only wrong VLM answers" in result.note


# --- the command ------------------------------------------------------------------------------------------------------


def _recorded_answers(path: Path, records: list[dict], answers: dict[int, tuple[bool, float]]) -> Path:
    lines = [{"image": records[i]["image"], "caption": records[i]["caption"], "answer": answer,
              "probability": probability} for i, (answer, probability) in answers.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_recorded_answers_give_the_exact_vlm_accuracy_and_auroc(tmp_path: Path, models, fixture_files):
    images_dir, _, records = fixture_files
    chosen = [0, 1, 2, 3, 4]  # images 1, 2 and 3
    annotations = tmp_path / "vsr.jsonl"
    annotations.write_text("".join(json.dumps(records[i]) + "\n" for i in chosen))
    # Labels of the chosen captions: 1, 0, 1, 0, 1. Answers right for 0, 1, 4 and wrong for 2, 3.
    recorded = _recorded_answers(tmp_path / "answers.jsonl", records, {
        0: (True, 0.9), 1: (False, 0.8), 4: (True, 0.6), 2: (False, 0.7), 3: (True, 0.55)})
    config = _config(models, **{"vlm.backend": "recorded", "vlm.recorded_path": str(recorded)})
    assert run_vsr_eval(config, images_dir, annotations, tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["vlm"]["accuracy"] == pytest.approx(3 / 5)
    assert metrics["vlm"]["answered_true"] == 3
    # Correct answers have probabilities 0.9, 0.8, 0.6, wrong ones 0.7, 0.55: 5 of the 6 pairs are ranked right.
    vlm_scores = metrics["scores"]["vlm_confidence"]
    assert vlm_scores["auroc"] == pytest.approx(5 / 6)
    # At accuracy >= 0.6: keeping 0.9, 0.8, 0.7, 0.6 gives 3 of 4 right, adding 0.55 gives 3 of 5 = 0.6.
    assert (vlm_scores["coverage_at_target"], vlm_scores["threshold_at_target"]) == (1.0, 0.55)
    assert metrics["geometry"]["unverifiable"]["relation"] == 0  # all five relations have a 2D meaning


def test_the_command_runs_end_to_end_with_a_tiny_vlm_and_detector(tmp_path: Path, models, fixture_files):
    images_dir, annotations, records = fixture_files
    out = tmp_path / "out"
    messages = []
    assert run_vsr_eval(_config(models), images_dir, annotations, out, target_accuracy=0.6, log=messages.append) == 0
    assert messages[-1].startswith(f"evaluated {len(records) - 1} of {len(records)} samples (skipped: 1 missing "
                                   "image; the first: line ")  # the console says why, not only metrics.json
    for name in ("metrics.json", "report.md", "samples.jsonl", "roc.png", "risk_coverage.png"):
        assert (out / name).stat().st_size > 0
    for name in ("roc.png", "risk_coverage.png"):
        assert Image.open(out / name).format == "PNG"

    metrics = json.loads((out / "metrics.json").read_text())
    counts, geometry = metrics["counts"], metrics["geometry"]
    assert counts["requested"] == counts["annotations"] == len(records)
    assert counts["skipped"] == {"missing_image": 1, "unreadable_image": 0, "vlm_error": 0}
    evaluated = counts["evaluated"]
    assert evaluated == len(records) - 1
    assert evaluated + sum(counts["skipped"].values()) == counts["requested"]
    assert geometry["verifiable"] + sum(geometry["unverifiable"].values()) == evaluated
    assert geometry["unverifiable"]["relation"] == 3  # in front of, near, behind
    assert sum(entry["count"] for entry in metrics["per_relation"].values()) == evaluated
    assert 0.0 <= metrics["vlm"]["accuracy"] <= 1.0 and metrics["target_accuracy"] == 0.6
    assert set(metrics["scores"]) == set(SCORE_NAMES)
    for name in SCORE_NAMES:
        entry = metrics["scores"][name]
        assert entry is not None, f"{name} was not computed: {metrics['fusion']['note']}"
        for key in ("auroc", "auroc_verifiable", "aurc", "coverage_at_target", "ece"):
            assert entry[key] is None or 0.0 <= entry[key] <= 1.0, (name, key, entry[key])
    assert metrics["fusion"]["features"] == list(FUSION_FEATURES) and metrics["fusion"]["folds"] == 5
    assert any(MISSING_IMAGE in problem for problem in metrics["problems"])

    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == evaluated
    assert all(0.5 <= line["vlm_probability"] <= 1.0 for line in lines)
    assert all(0.0 <= line["vlm_answer_mass"] <= 1.0 for line in lines)  # the generative model's P(yes) + P(no)
    assert all(line["vlm_correct"] == (line["vlm_answer"] == line["label"]) for line in lines)
    assert all((line["unverifiable_reason"] is None) == (line["alignment"] is not None) for line in lines)
    report = (out / "report.md").read_text()
    assert "| fused_logistic |" in report and "missing image 1" in report


def test_unreadable_images_and_unanswerable_captions_are_skipped_and_counted(tmp_path: Path, models, fixture_files):
    images_dir, _, records = fixture_files
    broken_dir = tmp_path / "images"
    broken_dir.mkdir()
    for name in ("000000000001.jpg", "000000000002.jpg"):
        (broken_dir / name).write_bytes((images_dir / name).read_bytes())
    (broken_dir / "000000000003.jpg").write_bytes(b"not a jpeg")
    annotations = tmp_path / "vsr.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in records[:7]))  # images 1-3, 7 captions
    recorded = _recorded_answers(tmp_path / "answers.jsonl", records, {i: (True, 0.9) for i in (0, 1, 2)})
    config = _config(models, **{"vlm.backend": "recorded", "vlm.recorded_path": str(recorded)})
    assert run_vsr_eval(config, broken_dir, annotations, tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # Image 3's three captions cannot be read; caption 3 (image 2) has no recorded answer.
    assert metrics["counts"]["skipped"] == {"missing_image": 0, "unreadable_image": 3, "vlm_error": 1}
    assert metrics["counts"]["evaluated"] == 3
    assert any("has no answer for image '000000000002.jpg'" in p for p in metrics["problems"])


def test_nothing_evaluated_still_writes_the_report_and_fails(tmp_path: Path, models, fixture_files):
    _, annotations, _ = fixture_files
    empty_dir = tmp_path / "images"
    empty_dir.mkdir()
    assert run_vsr_eval(_config(models), empty_dir, annotations, tmp_path / "out") == 1
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["counts"]["evaluated"] == 0
    assert metrics["counts"]["skipped"]["missing_image"] == metrics["counts"]["requested"]
    assert metrics["scores"]["vlm_confidence"]["auroc"] is None
    assert "evaluated: 0 of" in (tmp_path / "out" / "report.md").read_text()


def test_invalid_annotations_stop_the_run_before_it_starts_unless_skipped(tmp_path: Path, models, fixture_files):
    images_dir, _, records = fixture_files
    annotations = tmp_path / "vsr.jsonl"
    annotations.write_text(json.dumps(records[0]) + "\n" + '{"image": "x.jpg"}\n')
    with pytest.raises(EvaluationError, match=r"vsr.jsonl:2: 'caption' must be a non-empty string"):
        run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out", skip_invalid=True) == 0
    counts = json.loads((tmp_path / "out" / "metrics.json").read_text())["counts"]
    assert (counts["annotations"], counts["invalid_annotations"], counts["evaluated"]) == (1, 1, 1)


def test_a_subject_and_object_differing_only_in_case_are_one_phrase_not_a_detector_error(tmp_path: Path, models,
                                                                                      fixture_files):
    images_dir, _, records = fixture_files
    annotations = tmp_path / "same.jsonl"
    annotations.write_text(json.dumps({"image": records[0]["image"], "caption": "The Box is left of the box.",
                                       "label": 1, "relation": "left of", "subj": "Box", "obj": "box"}) + "\n")
    assert run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out") == 0
    unverifiable = json.loads((tmp_path / "out" / "metrics.json").read_text())["geometry"]["unverifiable"]
    assert (unverifiable["same_phrase"], unverifiable["detector_error"]) == (1, 0)


def test_a_run_without_a_vlm_or_with_the_simulator_detector_is_refused(tmp_path: Path, models, fixture_files):
    images_dir, annotations, _ = fixture_files
    with pytest.raises(EvaluationError, match=r"vlm.backend is 'none': the VSR evaluation needs a VLM"):
        run_vsr_eval(_config(models, **{"vlm.backend": "none"}), images_dir, annotations, tmp_path / "out")
    with pytest.raises(EvaluationError, match=r"detector.backend 'sim' needs simulator instance images"):
        run_vsr_eval(_config(models, **{"detector.backend": "sim"}), images_dir, annotations, tmp_path / "out")
    with pytest.raises(EvaluationError, match=r"target accuracy must be in \[0, 1\], got 1.5"):
        run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out", target_accuracy=1.5)
    for limit in (0, -3):  # --limit 0 would evaluate nothing and fail afterwards
        with pytest.raises(EvaluationError, match=rf"^limit must be at least 1, got {limit}$"):
            run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out", limit=limit)



def test_tsg_eval_vsr_runs_the_protocol_from_the_command_line(tmp_path: Path, models, fixture_files, capsys):
    from trusted_scene_graph.cli import main

    images_dir, annotations, records = fixture_files
    out = tmp_path / "cli"
    assert main(["eval", "vsr", "--images", str(images_dir), "--annotations", str(annotations), "--out", str(out),
                 "--vlm", "generative", "--vlm-model", str(models["vlm"]), "--detector-model", str(models["detector"]),
                 "--set", "detector.vocabulary=[box]", "--set", "detector.box_threshold=0.0",
                 "--set", "detector.text_threshold=0.0", "--set", "detector.min_pixels=1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["evaluated"] == len(records) - 1  # one caption names a missing image
    assert 0.0 <= metrics["scores"]["vlm_confidence"]["auroc"] <= 1.0
    capsys.readouterr()
    assert main(["eval", "vsr", "--images", str(images_dir), "--annotations", str(annotations), "--out", str(out),
                 "--vlm", "generative", "--vlm-model", str(tmp_path / "no_model"),
                 "--detector-model", str(models["detector"])]) == 2
    assert f"tsg eval vsr: error: --vlm-model {tmp_path / 'no_model'}: no such model directory" in \
        capsys.readouterr().err


def test_an_out_that_is_a_file_is_refused_before_anything_is_loaded(tmp_path: Path, models, fixture_files):
    images_dir, annotations, _ = fixture_files
    (tmp_path / "file").write_text("")
    # vlm.backend 'none' would be refused once the models are made: the --out is refused first.
    with pytest.raises(EvaluationError, match=r"output directory .*file exists and is not a directory"):
        run_vsr_eval(_config(models, **{"vlm.backend": "none"}), images_dir, annotations, tmp_path / "file")


def test_a_rerun_that_draws_no_figure_leaves_none_of_the_earlier_runs(tmp_path: Path, models, fixture_files):
    images_dir, annotations, _ = fixture_files
    assert run_vsr_eval(_config(models), images_dir, annotations, tmp_path / "out") == 0
    assert (tmp_path / "out" / "roc.png").exists()
    (tmp_path / "empty").mkdir()
    assert run_vsr_eval(_config(models), tmp_path / "empty", annotations, tmp_path / "out") == 1
    assert not (tmp_path / "out" / "roc.png").exists() and not (tmp_path / "out" / "risk_coverage.png").exists()


def test_a_very_tall_image_is_a_detector_error_of_its_sample_not_the_end_of_the_run(tmp_path: Path, models,
                                                                                   fixture_files):
    images_dir, _, records = fixture_files
    tall = tmp_path / "images"
    shutil.copytree(images_dir, tall)
    Image.fromarray(np.zeros((300, 1, 3), np.uint8)).save(tall / "tall.png")
    annotations = tmp_path / "vsr.jsonl"
    annotations.write_text(json.dumps({**records[0], "image": "tall.png"}) + "\n" + json.dumps(records[1]) + "\n")
    assert run_vsr_eval(_config(models), tall, annotations, tmp_path / "out") == 0
    counts = json.loads((tmp_path / "out" / "metrics.json").read_text())["counts"]
    assert (counts["evaluated"], counts["detector_errors"]) == (2, 1)
