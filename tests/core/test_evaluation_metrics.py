"""Specification of the evaluation metrics: hand-computed values, reference formulas, NaN where undefined."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.evaluation import (
    EvaluationError,
    aurc,
    auroc,
    coverage_at_precision,
    distance_metrics,
    e_aurc,
    expected_calibration_error,
    fpr_at_tpr,
    optimal_aurc,
    reliability_bins,
    risk_coverage_curve,
    spearman,
    timing_summary,
)


def reference_aurc_eaurc(scores: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """AURC / E-AURC written out as in TrustVLM's ``calc_aurc_eaurc`` (distinct scores only)."""
    order = np.argsort(-scores, kind="stable")
    risks = np.cumsum(~correct[order]) / np.arange(1, scores.size + 1)
    error_rate = risks[-1]
    return float(np.mean(risks)), float(np.mean(risks) - (error_rate + (1 - error_rate) * np.log(1 - error_rate)))


def random_scores(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores where higher scores are more often correct."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    return scores, rng.random(n) < scores


# --- validation ---------------------------------------------------------------------------------------------------


def test_the_error_class_derives_from_the_package_root() -> None:
    assert issubclass(EvaluationError, TsgError)


@pytest.mark.parametrize(("scores", "correct", "message"), [
    ([0.1, 0.2], [1], "differ in length: 2 vs 1"),
    ([0.1, float("nan")], [1, 0], "scores must be finite, got nan at index 1"),
    ([0.1, 0.2], [1, 2], r"correct must hold booleans or 0/1, got 2.0 at index 1"),
    ([[0.1, 0.2]], [[1, 0]], r"scores must be 1-D, got shape \(1, 2\)"),
    (["a", "b"], [1, 0], "scores must be numbers"),
])
def test_malformed_input_is_rejected_with_the_problem_named(scores, correct, message) -> None:
    for metric in (auroc, fpr_at_tpr, aurc, e_aurc, risk_coverage_curve):
        with pytest.raises(EvaluationError, match=message):
            metric(scores, correct)


def test_labels_may_be_booleans_or_exact_zero_one_numbers() -> None:
    scores = [0.9, 0.8, 0.7, 0.6]
    assert auroc(scores, [True, False, True, False]) == auroc(scores, [1, 0, 1, 0]) == auroc(scores, [1.0, 0, 1, 0])


# --- AUROC and FPR@TPR ----------------------------------------------------------------------------------------------


def test_auroc_is_the_fraction_of_correct_wrong_pairs_ranked_right() -> None:
    # pairs (correct, wrong): (0.9, 0.8) yes, (0.9, 0.6) yes, (0.7, 0.8) no, (0.7, 0.6) yes
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert auroc([0.9, 0.1], [1, 0]) == 1.0
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5, "ties count one half"


def test_auroc_and_fpr_are_nan_with_one_class_or_no_items() -> None:
    for scores, correct in (([0.1, 0.9], [1, 1]), ([0.1, 0.9], [0, 0]), ([], [])):
        assert math.isnan(auroc(scores, correct))
        assert math.isnan(fpr_at_tpr(scores, correct))


def test_fpr_at_tpr_is_taken_at_the_first_threshold_reaching_the_tpr() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.85, 0.65, 0.5, 0.1]
    correct = [1, 1, 1, 1, 0, 0, 0, 0]
    # threshold 0.7 keeps 3 of 4 correct and the wrong 0.85; threshold 0.6 keeps all correct and 0.85, 0.65
    assert fpr_at_tpr(scores, correct, tpr=0.75) == pytest.approx(0.25)
    assert fpr_at_tpr(scores, correct, tpr=1.0) == pytest.approx(0.5)
    assert fpr_at_tpr(scores, correct) == pytest.approx(0.5), "95% of 4 correct items needs all 4"
    assert fpr_at_tpr(scores, correct, tpr=0.25) == 0.0, "the top item (0.9) is correct"
    assert fpr_at_tpr(scores, correct, tpr=0.5) == pytest.approx(0.25), "the second correct item is below 0.85"


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, float("nan")])
def test_fpr_at_tpr_rejects_a_tpr_outside_0_1(tpr: float) -> None:
    with pytest.raises(EvaluationError, match=r"tpr must be in \(0, 1\]"):
        fpr_at_tpr([0.9, 0.1], [1, 0], tpr=tpr)


# --- risk-coverage, AURC, E-AURC ----------------------------------------------------------------------------------


def test_risk_coverage_keeps_the_most_confident_items_first() -> None:
    coverage, risk = risk_coverage_curve([0.6, 0.9, 0.7, 0.8], [1, 1, 1, 0])
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.25])


def test_tied_scores_are_one_threshold_of_the_risk_coverage_curve() -> None:
    coverage, risk = risk_coverage_curve([0.9, 0.5, 0.9], [1, 1, 0])
    np.testing.assert_allclose(coverage, [2 / 3, 1.0])
    np.testing.assert_allclose(risk, [0.5, 1 / 3])


def test_the_risk_coverage_curve_of_nothing_is_empty() -> None:
    coverage, risk = risk_coverage_curve([], [])
    assert coverage.size == 0 and risk.size == 0


def test_aurc_and_e_aurc_match_the_reference_implementation_for_distinct_scores() -> None:
    scores, correct = random_scores()
    expected_aurc, expected_e_aurc = reference_aurc_eaurc(scores, correct)
    assert aurc(scores, correct) == pytest.approx(expected_aurc, abs=1e-12)
    assert e_aurc(scores, correct) == pytest.approx(expected_e_aurc, abs=1e-12)


def test_aurc_counts_a_tie_group_pro_rata_and_does_not_depend_on_input_order() -> None:
    scores, correct = random_scores()
    scores = np.round(scores, 1)  # 11 distinct values: large tie groups
    permutation = np.random.default_rng(1).permutation(scores.size)
    assert aurc(scores, correct) == pytest.approx(aurc(scores[permutation], correct[permutation]), abs=1e-12)
    tied = np.full(10, 0.5)
    three_wrong = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1])
    assert aurc(tied, three_wrong) == pytest.approx(0.3), "one tie group: expected risk is the error rate at every k"


def test_a_perfect_ranking_has_an_e_aurc_of_nearly_zero_and_a_random_one_does_not() -> None:
    n = 400
    correct = np.arange(n) % 5 != 0  # 20% wrong
    perfect = correct + np.linspace(0.0, 0.5, n)  # every correct item above every wrong one
    assert 0.0 <= e_aurc(perfect, correct) <= 1.0 / n
    assert aurc(perfect, correct) == pytest.approx(optimal_aurc(0.2), abs=1.0 / n)
    shuffled = np.random.default_rng(0).random(n)
    assert e_aurc(shuffled, correct) > 0.05, "a random ranking keeps the error rate (0.2) at every coverage"


def test_aurc_and_e_aurc_at_the_extremes() -> None:
    scores = [0.9, 0.5, 0.1]
    assert aurc(scores, [1, 1, 1]) == 0.0 and e_aurc(scores, [1, 1, 1]) == 0.0
    assert aurc(scores, [0, 0, 0]) == 1.0 and e_aurc(scores, [0, 0, 0]) == 0.0
    assert math.isnan(aurc([], [])) and math.isnan(e_aurc([], []))


def test_optimal_aurc_is_the_closed_form_of_geifman_et_al() -> None:
    assert optimal_aurc(0.0) == 0.0
    assert optimal_aurc(1.0) == 1.0
    assert optimal_aurc(0.2) == pytest.approx(0.2 + 0.8 * math.log(0.8))
    with pytest.raises(EvaluationError, match="error_rate must be in"):
        optimal_aurc(1.5)


# --- coverage at a precision target -------------------------------------------------------------------------------


def test_coverage_at_precision_keeps_the_most_items_that_still_reach_the_target() -> None:
    scores, correct = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0]
    # precision of the top k: 1, 1, 2/3, 3/4, 3/5
    assert coverage_at_precision(scores, correct, 0.75) == pytest.approx((0.8, 0.6))
    assert coverage_at_precision(scores, correct, 1.0) == pytest.approx((0.4, 0.8))
    assert coverage_at_precision(scores, correct, 0.0) == pytest.approx((1.0, 0.5))


def test_coverage_at_precision_is_zero_and_nan_when_the_target_is_unreachable() -> None:
    coverage, threshold = coverage_at_precision([0.9, 0.8], [0, 0], 0.5)
    assert coverage == 0.0 and math.isnan(threshold)
    coverage, threshold = coverage_at_precision([0.9, 0.9, 0.1], [1, 0, 1], 0.9)
    assert coverage == 0.0 and math.isnan(threshold), "a tie group cannot be split to keep only its correct item"
    assert all(math.isnan(v) for v in coverage_at_precision([], [], 0.9))
    with pytest.raises(EvaluationError, match="target precision must be in"):
        coverage_at_precision([0.9], [1], 1.1)


# --- calibration --------------------------------------------------------------------------------------------------


def test_ece_is_zero_for_calibrated_and_the_gap_for_overconfident_probabilities() -> None:
    calibrated = [0.25] * 4 + [0.75] * 4
    assert expected_calibration_error(calibrated, [1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 4, [1, 1, 0, 0]) == pytest.approx(0.5)
    # bin (0.6, 0.667]: 2 items, confidence 0.65, accuracy 1 -> gap 0.35; bin (0.067, 0.133]: 2 items, 0.1 vs 0 -> 0.1
    assert expected_calibration_error([0.65, 0.65, 0.1, 0.1], [1, 1, 0, 0]) == pytest.approx((0.35 + 0.1) / 2)
    assert math.isnan(expected_calibration_error([], []))


def test_reliability_bins_are_equal_width_closed_on_the_right() -> None:
    stats = reliability_bins([0.0, 1 / 15, 0.07, 0.5, 1.0], [1, 0, 1, 1, 0], bins=15)
    np.testing.assert_allclose(stats["edges"], np.linspace(0, 1, 16))
    assert stats["count"][0] == 2, "0.0 and the bin's right edge 1/15 fall in the first bin"
    assert stats["count"][1] == 1 and stats["count"][7] == 1 and stats["count"][14] == 1
    assert stats["count"].sum() == 5
    assert stats["accuracy"][0] == 0.5 and stats["mean_confidence"][0] == pytest.approx(1 / 30)
    assert np.isnan(stats["accuracy"][3]) and np.isnan(stats["mean_confidence"][3]), "empty bins are NaN"


@pytest.mark.parametrize("bins", [15, 25, 29, 35, 50, 100])
def test_a_probability_on_an_edge_falls_in_the_bin_the_edge_closes_whatever_the_bin_count(bins) -> None:
    # p * bins can round above i for p == i / bins (0.28 * 25 = 7.000000000000001): the bins are cut at the edges.
    edges = reliability_bins([0.5], [1], bins=bins)["edges"]
    for i in range(1, bins + 1):
        above = [np.nextafter(edges[i], 2.0)] if i < bins else []  # the next float opens the next bin
        stats = reliability_bins([edges[i], *above], [1] * (1 + len(above)), bins)
        assert stats["count"][i - 1] == 1, f"{edges[i]} closes bin {i - 1} of {bins}"
        assert i == bins or stats["count"][i] == 1
    assert expected_calibration_error([0.28, 0.28], [1, 0], bins=25) == pytest.approx(0.22)


def test_calibration_rejects_probabilities_outside_0_1_and_bad_bin_counts() -> None:
    with pytest.raises(EvaluationError, match=r"probabilities must be in \[0, 1\], got 1.2 at index 1"):
        expected_calibration_error([0.5, 1.2], [1, 0])
    for bins in (0, 2.5, True):
        with pytest.raises(EvaluationError, match="bins must be a positive integer"):
            reliability_bins([0.5], [1], bins=bins)


# --- Spearman -----------------------------------------------------------------------------------------------------


def test_spearman_is_rank_correlation() -> None:
    x = np.arange(1.0, 11.0)
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -np.exp(x)) == pytest.approx(-1.0)


def test_spearman_is_nan_without_warnings_for_short_or_constant_input() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))
        assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
        assert math.isnan(spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
    with pytest.raises(EvaluationError, match="x and y differ in length: 3 vs 2"):
        spearman([1, 2, 3], [1, 2])


# --- distances ----------------------------------------------------------------------------------------------------


def test_distance_metrics_split_far_and_close_pairs() -> None:
    perceived = [0.50, 1.10, 3.00, 0.50, 0.05, 0.01]
    true = [0.50, 1.00, 1.00, 2.00, 0.02, 0.05]
    metrics = distance_metrics(perceived, true)
    assert (metrics["count"], metrics["count_far"], metrics["count_close"]) == (6, 4, 2)
    assert metrics["mae_m"] == pytest.approx((0 + 0.1 + 2.0 + 1.5 + 0.03 + 0.04) / 6)
    # far relative errors 0, 0.1, 2.0, 0.75 -> median 0.425; ratios 1, 1.1, 3, 0.25
    assert metrics["median_relative_error"] == pytest.approx(0.425)
    assert metrics["within_0_5x_2x"] == pytest.approx(0.5)
    assert metrics["within_0_9x_1_1x"] == pytest.approx(0.5)
    assert metrics["median_abs_error_close_m"] == pytest.approx(0.035)


def test_distance_metrics_are_nan_over_empty_subsets() -> None:
    far_only = distance_metrics([1.0, 2.0], [1.0, 2.0])
    assert far_only["count_close"] == 0 and math.isnan(far_only["median_abs_error_close_m"])
    assert far_only["within_0_9x_1_1x"] == 1.0
    nothing = distance_metrics([], [])
    assert nothing["count"] == 0
    assert all(math.isnan(nothing[key]) for key in ("mae_m", "median_relative_error", "within_0_5x_2x",
                                                    "within_0_9x_1_1x", "median_abs_error_close_m"))


def test_distance_metrics_reject_bad_distances() -> None:
    with pytest.raises(EvaluationError, match="perceived_m must be non-negative, got -0.1 at index 0"):
        distance_metrics([-0.1], [1.0])
    with pytest.raises(EvaluationError, match="true_m must be finite, got inf at index 0"):
        distance_metrics([1.0], [float("inf")])
    with pytest.raises(EvaluationError, match="differ in length: 1 vs 2"):
        distance_metrics([1.0], [1.0, 2.0])
    with pytest.raises(EvaluationError, match="min_true_m must be a positive number of metres, got 0"):
        distance_metrics([1.0], [1.0], min_true_m=0)


# --- timing -------------------------------------------------------------------------------------------------------


def test_timing_summary_gives_count_median_and_95th_percentile_per_stage() -> None:
    summary = timing_summary({"detect": list(range(1, 101)), "relate": [2.0], "idle": []})
    assert summary["detect"] == {"count": 100, "median_ms": 50.5, "p95_ms": pytest.approx(95.05)}
    assert summary["relate"] == {"count": 1, "median_ms": 2.0, "p95_ms": 2.0}
    assert summary["idle"]["count"] == 0 and math.isnan(summary["idle"]["median_ms"])
    with pytest.raises(EvaluationError, match="stage 'lift' must be non-negative, got -1.0 ms at index 1"):
        timing_summary({"lift": [1.0, -1.0]})
