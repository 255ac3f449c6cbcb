"""Each evaluation plot writes one decodable PNG; input with nothing to draw raises EvaluationError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trusted_scene_graph.evaluation import EvaluationError, timing_summary
from trusted_scene_graph.evaluation.metrics import coverage_at_precision, coverage_at_targets
from trusted_scene_graph.evaluation.plots import (
    plot_coverage_at_precision,
    plot_distance_scatter,
    plot_feature_importance,
    plot_reliability,
    plot_risk_coverage,
    plot_roc,
    plot_timing,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height > 100 and width > 100, (height, width)


def scored(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    return scores, rng.random(n) < scores


def test_roc_and_risk_coverage_draw_several_named_score_sets(tmp_path: Path) -> None:
    curves = {"trust": scored(0), "detector score": scored(1), "one class": ([0.2, 0.8], [1, 1])}
    plot_roc(curves, tmp_path / "roc.png", "ROC")
    plot_risk_coverage(curves, tmp_path / "nested" / "risk_coverage.png", "risk-coverage")
    assert_png(tmp_path / "roc.png")
    assert_png(tmp_path / "nested" / "risk_coverage.png")


def test_roc_and_risk_coverage_need_something_to_draw(tmp_path: Path) -> None:
    for plot in (plot_roc, plot_risk_coverage):
        with pytest.raises(EvaluationError, match="at least one named score set"):
            plot({}, tmp_path / "x.png", "empty")
    with pytest.raises(EvaluationError, match=r"none of \['a'\] has both correct and wrong items"):
        plot_roc({"a": ([0.1, 0.9], [1, 1])}, tmp_path / "roc.png", "one class")
    with pytest.raises(EvaluationError, match=r"none of \['a'\] has any items"):
        plot_risk_coverage({"a": ([], [])}, tmp_path / "rc.png", "no items")
    with pytest.raises(EvaluationError, match="differ in length"):
        plot_roc({"a": ([0.1, 0.9], [1])}, tmp_path / "roc.png", "malformed")
    assert not list(tmp_path.iterdir()), "nothing is written when the input is refused"


def test_reliability_diagram(tmp_path: Path) -> None:
    plot_reliability(*scored(2), tmp_path / "reliability.png", "reliability", bins=10)
    assert_png(tmp_path / "reliability.png")
    with pytest.raises(EvaluationError, match="at least one probability"):
        plot_reliability([], [], tmp_path / "empty.png", "empty")


def test_reliability_diagram_with_baselines(tmp_path: Path) -> None:
    plot_reliability(*scored(4), tmp_path / "reliability.png", "fused", baselines={
        "geometry": scored(5), "no VLM answers": (np.full(200, 0.5), scored(5)[1])})
    assert_png(tmp_path / "reliability.png")
    with pytest.raises(EvaluationError, match="probabilities must be in"):
        plot_reliability(*scored(4), tmp_path / "bad.png", "bad", baselines={"margin": ([2.0], [1])})
    assert not (tmp_path / "bad.png").exists()


def test_coverage_curve_equals_coverage_at_precision_at_every_target() -> None:
    rng = np.random.default_rng(6)
    scores = np.round(rng.random(300), 2)  # ties
    correct = rng.random(300) < scores
    targets = np.linspace(0.5, 1.0, 51)
    expected = [coverage_at_precision(scores, correct, t)[0] for t in targets]
    np.testing.assert_array_equal(coverage_at_targets(scores, correct, targets), expected)
    # Hand-made: precision of the top k is 1, 1, 2/3, 3/4, 3/5, 1/2.
    six = coverage_at_targets([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0], np.array([0.5, 0.75, 0.8, 1.0]))
    np.testing.assert_allclose(six, [1.0, 4 / 6, 2 / 6, 2 / 6])
    assert np.isnan(coverage_at_targets([], [], np.array([0.9]))).all()


def test_coverage_at_precision_plot(tmp_path: Path) -> None:
    curves = {"fused": scored(7), "constant": (np.full(200, 0.5), scored(7)[1]), "empty": ([], [])}
    plot_coverage_at_precision(curves, tmp_path / "cov.png", "coverage", 0.9,
                               markers={"model threshold": (0.93, 0.4), "strict threshold": (float("nan"), 0.0)})
    assert_png(tmp_path / "cov.png")
    with pytest.raises(EvaluationError, match=r"target precision must be in \(0, 1\], got 0.0"):
        plot_coverage_at_precision(curves, tmp_path / "x.png", "bad", 0.0)
    with pytest.raises(EvaluationError, match="at least one named score set"):
        plot_coverage_at_precision({}, tmp_path / "x.png", "empty", 0.9)
    with pytest.raises(EvaluationError, match=r"none of \['a'\] has any items"):
        plot_coverage_at_precision({"a": ([], [])}, tmp_path / "x.png", "empty", 0.9)
    assert not (tmp_path / "x.png").exists()


def test_feature_importance_plot(tmp_path: Path) -> None:
    plot_feature_importance({"margin_m": 3.0, "vlm_probability": 0.0, "track_age": 0.5}, tmp_path / "fi.png",
                            "importance")
    plot_feature_importance({"unused": 0.0}, tmp_path / "zeros.png", "all zero")
    assert_png(tmp_path / "fi.png")
    assert_png(tmp_path / "zeros.png")
    with pytest.raises(EvaluationError, match="at least one feature"):
        plot_feature_importance({}, tmp_path / "x.png", "empty")
    with pytest.raises(EvaluationError, match="importance of feature 'margin_m' must be a finite number, got nan"):
        plot_feature_importance({"margin_m": float("nan")}, tmp_path / "x.png", "nan")
    assert not (tmp_path / "x.png").exists()


def test_distance_scatter_in_log_and_linear_axes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    true_m = rng.uniform(0.02, 1.5, 100)
    perceived_m = true_m * rng.uniform(0.7, 1.4, 100)
    plot_distance_scatter(perceived_m, true_m, tmp_path / "log.png", "all positive: log-log")
    plot_distance_scatter(np.append(perceived_m, 0.0), np.append(true_m, 0.01), tmp_path / "linear.png",
                          "a zero distance: linear")
    assert_png(tmp_path / "log.png")
    assert_png(tmp_path / "linear.png")
    with pytest.raises(EvaluationError, match="at least one distance pair"):
        plot_distance_scatter([], [], tmp_path / "empty.png", "empty")


def test_timing_plot_skips_stages_without_samples(tmp_path: Path) -> None:
    summary = timing_summary({"detect": [30.0, 35.0, 80.0], "lift": [1.0, 1.2], "idle": []})
    plot_timing(summary, tmp_path / "timing.png", "timing")
    assert_png(tmp_path / "timing.png")
    with pytest.raises(EvaluationError, match=r"no stage has samples \(stages: \['idle'\]\)"):
        plot_timing(timing_summary({"idle": []}), tmp_path / "empty.png", "empty")
    with pytest.raises(EvaluationError, match="needs median_ms and p95_ms"):
        plot_timing({"detect": {"count": 3}}, tmp_path / "bad.png", "bad")


def test_plotting_does_not_switch_the_process_wide_backend(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    plot_reliability([0.2, 0.9], [0, 1], tmp_path / "r.png", "backend")
    assert matplotlib.get_backend() == before


def test_legend_numbers_keep_three_significant_digits_below_0_1() -> None:
    # A good scorer's E-AURC is of the order 1/n: three fixed decimals showed it as 0.000.
    from trusted_scene_graph.evaluation.plots import _fmt

    assert (_fmt(4.998e-06), _fmt(0.0412), _fmt(0.5), _fmt(0.0), _fmt(float("nan"))) == (
        "5e-06", "0.0412", "0.500", "0.000", "n/a")
