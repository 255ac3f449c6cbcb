"""The trust report measures scorers on known synthetic cases and writes strict JSON, markdown and figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.report import (
    FIGURES,
    REPORT_KEYS,
    compare_scorers,
    scorer_metrics,
    write_trust_report,
)

# A hand-made 6-edge example: scores descending, the third and the last two wrong.
SIX_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
SIX_CORRECT = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
GAINS = {"margin_m": 4.0, "depth_valid_fraction": 1.5, "vlm_probability": 0.0, "track_age": 0.25}


def synthetic(n: int = 2000, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """fused: informative and calibrated; geometry_alignment: weaker; vlm_confidence: no answers (all 0.5)."""
    rng = np.random.default_rng(seed)
    fused = rng.beta(2.0, 1.0, n)
    correct = rng.random(n) < fused
    geometry = np.clip(0.5 * fused + 0.5 * rng.random(n), 0.0, 1.0)
    return {"fused": fused, "geometry_alignment": geometry, "vlm_confidence": np.full(n, 0.5)}, correct


def test_perfect_scorer_ranks_perfectly_and_keeps_every_correct_edge_at_precision_one() -> None:
    rng = np.random.default_rng(1)
    correct = rng.random(500) < 0.7
    scores = np.where(correct, rng.uniform(0.6, 1.0, 500), rng.uniform(0.0, 0.4, 500))
    metrics = scorer_metrics(scores, correct, target_precision=1.0)
    assert metrics["edges"] == 500 and metrics["correct"] == int(correct.sum())
    assert metrics["auroc"] == 1.0
    assert metrics["fpr_at_95_tpr"] == 0.0
    assert 0.0 <= metrics["e_aurc"] < 1 / 500  # the continuous optimum: a perfect ranking of n edges is within 1/n
    assert metrics["coverage_at_target"] == pytest.approx(correct.mean())
    assert metrics["threshold_at_target"] == scores[correct].min()
    assert metrics["constant"] is False
    assert "kept_at_threshold" not in metrics, "threshold metrics only when a threshold is given"


def test_random_scorer_has_chance_auroc() -> None:
    rng = np.random.default_rng(2)
    metrics = scorer_metrics(rng.random(4000), rng.random(4000) < 0.6, target_precision=0.9)
    assert metrics["auroc"] == pytest.approx(0.5, abs=0.05)
    assert metrics["e_aurc"] > 0.1  # far from the optimal ranking


def test_calibrated_scorer_has_small_ece_and_a_miscalibrated_one_large() -> None:
    rng = np.random.default_rng(3)
    probability = rng.random(20000)
    correct = rng.random(20000) < probability
    assert scorer_metrics(probability, correct, 0.9)["ece"] < 0.02
    assert scorer_metrics(probability ** 4, correct, 0.9)["ece"] > 0.2  # under-confident everywhere


def test_threshold_metrics_count_exactly_on_six_edges() -> None:
    at_0_6 = scorer_metrics(SIX_SCORES, SIX_CORRECT, target_precision=0.75, threshold=0.6)
    assert at_0_6["kept_at_threshold"] == 4  # score >= threshold is kept
    assert at_0_6["coverage_at_threshold"] == pytest.approx(4 / 6)
    assert at_0_6["precision_at_threshold"] == pytest.approx(3 / 4)
    assert at_0_6["recall_at_threshold"] == 1.0
    # Precision of the top k: 1, 1, 2/3, 3/4, 3/5, 1/2 -> the largest k reaching 0.75 is 4, at score 0.6.
    assert at_0_6["coverage_at_target"] == pytest.approx(4 / 6)
    assert at_0_6["threshold_at_target"] == 0.6

    at_0_65 = scorer_metrics(SIX_SCORES, SIX_CORRECT, target_precision=0.75, threshold=0.65)
    assert (at_0_65["kept_at_threshold"], at_0_65["precision_at_threshold"]) == (3, pytest.approx(2 / 3))
    assert at_0_65["recall_at_threshold"] == pytest.approx(2 / 3)

    nothing = scorer_metrics(SIX_SCORES, SIX_CORRECT, target_precision=0.75, threshold=0.95)
    assert nothing["kept_at_threshold"] == 0 and nothing["coverage_at_threshold"] == 0.0
    assert math.isnan(nothing["precision_at_threshold"])
    assert nothing["recall_at_threshold"] == 0.0


def test_compare_scorers_flags_a_constant_scorer_and_still_measures_it() -> None:
    scorers, correct = synthetic()
    methods = compare_scorers(scorers, correct, target_precision=0.9, thresholds={"fused": 0.8})
    assert list(methods) == ["fused", "geometry_alignment", "vlm_confidence"]
    assert methods["vlm_confidence"]["constant"] is True
    assert methods["vlm_confidence"]["auroc"] == 0.5  # all scores tie
    assert math.isfinite(methods["vlm_confidence"]["ece"])
    assert methods["fused"]["constant"] is False and methods["geometry_alignment"]["constant"] is False
    assert methods["fused"]["auroc"] > methods["geometry_alignment"]["auroc"] > 0.5
    assert "precision_at_threshold" in methods["fused"]
    assert "precision_at_threshold" not in methods["geometry_alignment"]


def test_compare_scorers_refuses_bad_input() -> None:
    scorers, correct = synthetic(50)
    with pytest.raises(TrustError, match="at least one named scorer"):
        compare_scorers({}, correct, 0.9)
    with pytest.raises(TrustError, match=r"thresholds given for scorers \['vlm'\]"):
        compare_scorers(scorers, correct, 0.9, thresholds={"vlm": 0.5})
    with pytest.raises(TrustError, match="scores of 'geometry_alignment' and correct differ in length: 49 vs 50"):
        compare_scorers({**scorers, "geometry_alignment": scorers["geometry_alignment"][:-1]}, correct, 0.9)
    with pytest.raises(TrustError, match=r"target_precision must be in \(0, 1\], got 1.5"):
        compare_scorers(scorers, correct, 1.5)
    with pytest.raises(TrustError, match="correct must hold booleans or 0/1, got 2.0 at index 0"):
        scorer_metrics([0.5], [2], 0.9)
    with pytest.raises(TrustError, match="threshold of 'scorer' must be a number, got nan"):
        scorer_metrics([0.5], [1], 0.9, threshold=math.nan)


def test_report_writes_strict_json_markdown_and_every_figure(tmp_path: Path) -> None:
    scorers, correct = synthetic()
    out_dir = tmp_path / "nested" / "report"
    metrics = write_trust_report(out_dir, scorers, correct, target_precision=0.9, delta=0.1, model_threshold=0.8,
                                 feature_importance_gain=GAINS, extra={"data": "episodes.npz",
                                                                       "split_edges": np.array([1200, 400, 400])})
    for name in FIGURES:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    written = json.loads((out_dir / "metrics.json").read_text())
    assert list(written) == [*REPORT_KEYS, "data", "split_edges"]
    assert written["edges"] == 2000 and written["correct"] == int(correct.sum())
    assert written["split_edges"] == [1200, 400, 400]
    json.dumps(written, allow_nan=False)
    assert list(written["feature_importance_gain"]) == ["margin_m", "depth_valid_fraction", "track_age",
                                                        "vlm_probability"]  # by gain, zeros kept
    assert written["methods"]["vlm_confidence"]["constant"] is True

    fused = metrics["methods"]["fused"]
    kept = scorers["fused"] >= 0.8
    assert fused["kept_at_threshold"] == int(kept.sum())
    guarantee = written["guarantee"]
    assert guarantee["realised_precision"] == pytest.approx(correct[kept].mean())
    assert guarantee["coverage"] == pytest.approx(kept.mean())
    assert guarantee["meets_target"] is bool(correct[kept].mean() >= 0.9)

    report = (out_dir / "report.md").read_text()
    for name in (*scorers, *FIGURES):
        assert name in report
    assert "the model was trained without VLM answers" in report
    assert f"{fused['auroc']:.3f}" in report


def test_the_report_shows_small_values_with_three_significant_digits_not_as_zero(tmp_path: Path) -> None:
    # A near-perfect ranking: E-AURC is of the order 1/n, which three fixed decimals would show as 0.000.
    correct = np.r_[np.ones(990, bool), np.zeros(10, bool)]
    scores = {"fused": np.r_[np.linspace(0.99, 0.2, 990), np.linspace(0.19, 0.01, 10)]}
    metrics = write_trust_report(tmp_path, scores, correct, target_precision=0.9, delta=0.1, model_threshold=0.5,
                                 feature_importance_gain={})
    e_aurc = metrics["methods"]["fused"]["e_aurc"]
    assert 0.0 < e_aurc < 0.001
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| fused"))
    assert row.split(" | ")[3] == f"{e_aurc:.3g}"


def test_report_writes_null_for_undefined_metrics(tmp_path: Path) -> None:
    # Every edge correct: AUROC is undefined, the ROC figure cannot be drawn; nothing is kept at threshold 1.01.
    scores = {"fused": np.linspace(0.1, 0.9, 20), "vlm_confidence": np.full(20, 0.5)}
    metrics = write_trust_report(tmp_path, scores, np.ones(20, bool), target_precision=0.9, delta=0.05,
                                 model_threshold=1.01, feature_importance_gain={})
    assert math.isnan(metrics["methods"]["fused"]["auroc"])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["methods"]["fused"]["auroc"] is None
    assert written["guarantee"] == {"realised_precision": None, "coverage": 0.0, "kept": 0, "meets_target": None}
    assert not (tmp_path / "roc.png").exists() and not (tmp_path / "feature_importance.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "n/a" in report
    assert "roc.png" in report and "every edge is correct" in report
    assert "nothing is kept" in report


def test_report_refuses_bad_input_before_writing_anything(tmp_path: Path) -> None:
    scorers, correct = synthetic(30)
    out_dir = tmp_path / "out"
    kwargs = {"target_precision": 0.9, "delta": 0.1, "model_threshold": 0.7, "feature_importance_gain": GAINS}
    with pytest.raises(TrustError, match="scores of 'fused' and correct differ in length: 30 vs 29"):
        write_trust_report(out_dir, scorers, correct[:-1], **kwargs)
    with pytest.raises(TrustError, match="scores of 'fused' are empty"):
        write_trust_report(out_dir, {"fused": []}, [], **kwargs)
    with pytest.raises(TrustError, match="scores of 'geometry_alignment' must be finite probabilities in \\[0, 1\\], "
                                         "got nan at index 3"):
        nan_scores = scorers["geometry_alignment"].copy()
        nan_scores[3] = math.nan
        write_trust_report(out_dir, {**scorers, "geometry_alignment": nan_scores}, correct, **kwargs)
    with pytest.raises(TrustError, match=r"must include 'fused', got \['vlm_confidence'\]"):
        write_trust_report(out_dir, {"vlm_confidence": scorers["vlm_confidence"]}, correct, **kwargs)
    with pytest.raises(TrustError, match=r"extra keys \['methods'\] would overwrite"):
        write_trust_report(out_dir, scorers, correct, **kwargs, extra={"methods": {}})
    with pytest.raises(TrustError, match="extra cannot be written as JSON"):
        write_trust_report(out_dir, scorers, correct, **kwargs, extra={"path": tmp_path})
    with pytest.raises(TrustError, match="feature importance of 'margin_m' must be a finite number, got inf"):
        write_trust_report(out_dir, scorers, correct, **{**kwargs, "feature_importance_gain": {"margin_m": math.inf}})
    with pytest.raises(TrustError, match=r"delta must be in \(0, 1\), got 0"):
        write_trust_report(out_dir, scorers, correct, **{**kwargs, "delta": 0})
    assert not out_dir.exists(), "nothing is written when the input is refused"

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(TrustError, match="output directory .*a_file exists and is not a directory"):
        write_trust_report(a_file, scorers, correct, **kwargs)
