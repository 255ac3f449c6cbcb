"""Trust, calibration, distance and timing metrics on 1-D arrays.

Conventions shared by every function:

- ``scores`` are confidences: higher means "more likely correct". They must be finite.
- ``correct`` is a label per item: booleans, or numbers that are exactly 0 or 1.
- Arrays must be 1-D and of equal length; anything else raises :class:`EvaluationError` naming the problem.
- A metric that is undefined for its input (no items, only one class, constant input) returns ``float('nan')``;
  callers write NaN as JSON ``null``.

scikit-learn computes AUROC and the ROC curve, scipy the Spearman correlation. Risk-coverage curves, AURC / E-AURC,
ECE, coverage at a precision target and the distance metrics are hand-written: neither library has them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import check_finite, float_vector, label_vector
from trusted_scene_graph.evaluation import EvaluationError

# --- validation ---------------------------------------------------------------------------------------------------


def _vector(name: str, values: Any, *, finite: bool = True) -> np.ndarray:
    """``values`` as a 1-D float64 array; non-finite entries are rejected when ``finite``."""
    array = float_vector(name, values, EvaluationError)
    if finite:
        check_finite(name, array, EvaluationError)
    return array


def _labels(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D boolean array; only booleans or exact 0/1 numbers are accepted."""
    raw = np.asarray(values)
    # Numbers go through _vector first: labels that are not numbers fail with its "must be numbers" message.
    return label_vector(name, raw if raw.dtype == np.bool_ else _vector(name, raw, finite=False), EvaluationError)


def _scored(scores: Any, correct: Any, score_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    score_array = _vector(score_name, scores)
    labels = _labels("correct", correct)
    if score_array.shape != labels.shape:
        raise EvaluationError(f"{score_name} and correct differ in length: {score_array.size} vs {labels.size}")
    return score_array, labels


def _both_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and bool(labels.any()) and not bool(labels.all())


# --- ranking: ROC ---------------------------------------------------------------------------------------------------


def auroc(scores: Any, correct: Any) -> float:
    """Area under the ROC curve of ``scores`` separating correct (positive) from wrong items.

    Computed by :func:`sklearn.metrics.roc_auc_score` (ties count one half). NaN when there are no items or only
    one class, where the ROC curve is undefined.
    """
    from sklearn.metrics import roc_auc_score

    score_array, labels = _scored(scores, correct)
    if not _both_classes(labels):
        return math.nan
    return float(roc_auc_score(labels, score_array))


def fpr_at_tpr(scores: Any, correct: Any, tpr: float = 0.95) -> float:
    """False-positive rate at the first (highest) threshold whose true-positive rate is at least ``tpr``.

    Positives are the correct items, so this is the fraction of wrong items that are still accepted when the
    threshold is lowered until ``tpr`` of the correct ones pass ("FPR95" for the default). The ROC points come from
    :func:`sklearn.metrics.roc_curve` with every threshold kept (``drop_intermediate=False``, so the crossing point
    is never thinned away). NaN when there are no items or only one class.
    """
    from sklearn.metrics import roc_curve

    if not (math.isfinite(tpr) and 0.0 < tpr <= 1.0):
        raise EvaluationError(f"tpr must be in (0, 1], got {tpr}")
    score_array, labels = _scored(scores, correct)
    if not _both_classes(labels):
        return math.nan
    fpr_curve, tpr_curve, _ = roc_curve(labels, score_array, drop_intermediate=False)
    return float(fpr_curve[np.argmax(tpr_curve >= tpr)])  # tpr_curve ends at 1.0, so a crossing always exists


# --- selective prediction: risk-coverage --------------------------------------------------------------------------


def _tie_groups(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores in descending order, with the item and error counts of each tie group."""
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    errors = np.bincount(inverse, weights=~correct, minlength=values.size)
    return values[::-1], counts[::-1], errors[::-1]


def risk_coverage_curve(scores: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) when keeping the items with the highest scores, from the most confident item to all.

    Items are sorted by score, descending; keeping the top ``k`` gives coverage ``k / n`` and risk = the fraction of
    the kept items that are wrong. Tied scores form one threshold: a threshold either keeps the whole tie group or
    none of it, so the curve has one point per distinct score (at most ``n``), with coverage increasing to 1.0,
    where the risk is the overall error rate. Both arrays are empty when there are no items.
    """
    score_array, labels = _scored(scores, correct)
    if score_array.size == 0:
        return np.zeros(0), np.zeros(0)
    _, counts, errors = _tie_groups(score_array, labels)
    kept = np.cumsum(counts)
    return kept / score_array.size, np.cumsum(errors) / kept


def aurc(scores: Any, correct: Any) -> float:
    """Area under the risk-coverage curve (lower is better), as in Geifman, Uziel & El-Yaniv 2019.

    The mean over ``k = 1..n`` of the risk of the ``k`` most confident items: the definition of Geifman et al.,
    "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers" (ICLR 2019), as TrustVLM computes it
    (``calc_aurc_eaurc``; Dong et al. 2025, github.com/EPFL-IMOS/TrustVLM). TrustVLM breaks ties in sort order; here
    a ``k`` that falls inside a tie group counts the group's errors pro rata (the expected risk over random
    tie-breaking), so the value does not depend on input order and equals TrustVLM's when all scores differ.
    Geifman's repository code (``RC_curve`` in github.com/geifmany/uncertainty_ICLR) differs by one in a denominator:
    it divides the errors left among ``k`` items by ``k + 1``, so its values on small sets are slightly lower. NaN when
    there are no items.
    """
    score_array, labels = _scored(scores, correct)
    n = score_array.size
    if n == 0:
        return math.nan
    _, counts, errors = _tie_groups(score_array, labels)
    kept_before = np.cumsum(counts) - counts
    errors_before = np.cumsum(errors) - errors
    group = np.repeat(np.arange(counts.size), counts)  # tie group holding the k-th most confident item
    k = np.arange(1, n + 1)
    expected_errors = errors_before[group] + (k - kept_before[group]) * errors[group] / counts[group]
    return float(np.mean(expected_errors / k))


def optimal_aurc(error_rate: float) -> float:
    """AURC of a perfect ranking (all correct items first) at overall error rate ``r``: ``r + (1 - r) ln(1 - r)``.

    The closed form of Geifman et al. 2019 (the integral of the optimal risk-coverage curve); 1.0 at ``r = 1``.
    """
    if not (0.0 <= error_rate <= 1.0):
        raise EvaluationError(f"error_rate must be in [0, 1], got {error_rate}")
    if error_rate == 1.0:
        return 1.0  # limit of (1 - r) ln(1 - r) is 0
    return error_rate + (1.0 - error_rate) * math.log1p(-error_rate)


def e_aurc(scores: Any, correct: Any) -> float:
    """Excess AURC: :func:`aurc` minus the AURC of the optimal ranking at the same error rate (lower is better).

    Definition of Geifman et al. 2019, "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers" (ICLR),
    with their closed form for the optimal AURC (:func:`optimal_aurc`), exactly as TrustVLM computes it (Dong et al.
    2025), so values are comparable with published ones. It removes the dependence of AURC on the accuracy; being the
    continuous limit, a perfect ranking of ``n`` items scores slightly above 0 (by less than ``1/n``). NaN when there
    are no items.
    """
    score_array, labels = _scored(scores, correct)
    if score_array.size == 0:
        return math.nan
    return aurc(score_array, labels) - optimal_aurc(float(np.mean(~labels)))


def coverage_at_precision(scores: Any, correct: Any, target: float) -> tuple[float, float]:
    """Largest coverage whose kept items (``score >= threshold``) have precision ``>= target``, and that threshold.

    Thresholds are the distinct scores (ties kept or dropped together, as in :func:`risk_coverage_curve`); precision
    is the fraction of kept items that are correct. ``(0.0, nan)`` when no threshold reaches ``target``;
    ``(nan, nan)`` when there are no items.
    """
    if not (math.isfinite(target) and 0.0 <= target <= 1.0):
        raise EvaluationError(f"target precision must be in [0, 1], got {target}")
    score_array, labels = _scored(scores, correct)
    if score_array.size == 0:
        return math.nan, math.nan
    thresholds, counts, errors = _tie_groups(score_array, labels)
    kept = np.cumsum(counts)
    precision = (kept - np.cumsum(errors)) / kept
    reaching = np.flatnonzero(precision >= target)
    if reaching.size == 0:
        return 0.0, math.nan
    best = reaching[-1]  # coverage grows with the index, so the last index reaching the target keeps the most
    return float(kept[best] / score_array.size), float(thresholds[best])


def coverage_at_targets(scores: Any, correct: Any, targets: np.ndarray) -> np.ndarray:
    """:func:`coverage_at_precision`'s coverage for every target at once (0.0 where none is reached).

    Same tie groups and the same precision expression, so each value equals the single-target function's; the
    largest coverage among thresholds reaching ``t`` is a suffix maximum over the thresholds sorted by precision.
    """
    score_array, labels = _scored(scores, correct)
    targets = np.asarray(targets, dtype=np.float64)
    if score_array.size == 0:
        return np.full(targets.shape, math.nan)
    _, counts, errors = _tie_groups(score_array, labels)
    kept = np.cumsum(counts)
    precision = (kept - np.cumsum(errors)) / kept
    order = np.argsort(precision, kind="stable")
    best_coverage_from = np.maximum.accumulate((kept / score_array.size)[order][::-1])[::-1]
    first = np.searchsorted(precision[order], targets, side="left")  # first threshold with precision >= target
    return np.where(first < order.size, best_coverage_from[np.minimum(first, order.size - 1)], 0.0)


# --- calibration --------------------------------------------------------------------------------------------------


def reliability_bins(probabilities: Any, correct: Any, bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin statistics of a reliability diagram over ``bins`` equal-width bins of [0, 1].

    Bin ``i`` holds probabilities in ``(i/bins, (i+1)/bins]``; 0.0 goes to the first bin. Returns numpy arrays:
    ``edges`` (``bins + 1``), ``count`` (int), ``mean_confidence`` and ``accuracy`` (NaN for empty bins).
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise EvaluationError(f"bins must be a positive integer, got {bins!r}")
    probability_array, labels = _scored(probabilities, correct, "probabilities")
    outside = np.flatnonzero((probability_array < 0.0) | (probability_array > 1.0))
    if outside.size:
        raise EvaluationError(
            f"probabilities must be in [0, 1], got {probability_array[outside[0]]} at index {outside[0]}")
    # Against the edges themselves: ceil(p * bins) puts p == i / bins into bin i, not i - 1, wherever p * bins
    # rounds above i (p = 0.28 with 25 bins).
    edges = np.arange(bins + 1) / bins
    index = np.clip(np.searchsorted(edges, probability_array, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=probability_array, minlength=bins)
    correct_sum = np.bincount(index, weights=labels, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins are NaN by design
        mean_confidence = np.where(count > 0, confidence_sum / count, np.nan)
        accuracy = np.where(count > 0, correct_sum / count, np.nan)
    return {"edges": edges, "count": count,
            "mean_confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(probabilities: Any, correct: Any, bins: int = 15) -> float:
    """Expected calibration error: ``sum_b (n_b / n) |accuracy_b - mean confidence_b|`` over equal-width bins.

    Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017); binning as in :func:`reliability_bins`.
    NaN when there are no items.
    """
    stats = reliability_bins(probabilities, correct, bins)
    total = int(stats["count"].sum())
    if total == 0:
        return math.nan
    filled = stats["count"] > 0
    gaps = np.abs(stats["accuracy"][filled] - stats["mean_confidence"][filled])
    return float(np.sum(stats["count"][filled] * gaps) / total)


# --- correlation --------------------------------------------------------------------------------------------------


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (:func:`scipy.stats.spearmanr`); NaN for fewer than 3 pairs or constant input."""
    from scipy.stats import spearmanr

    x_array, y_array = _vector("x", x), _vector("y", y)
    if x_array.size != y_array.size:
        raise EvaluationError(f"x and y differ in length: {x_array.size} vs {y_array.size}")
    if x_array.size < 3 or np.ptp(x_array) == 0.0 or np.ptp(y_array) == 0.0:
        return math.nan
    with warnings.catch_warnings():  # scipy warns on near-constant input; the result (or NaN) says enough
        warnings.simplefilter("ignore")
        return float(spearmanr(x_array, y_array).statistic)


# --- distances ----------------------------------------------------------------------------------------------------


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def distance_metrics(perceived_m: Any, true_m: Any, min_true_m: float = 0.10) -> dict[str, float | int]:
    """Errors of perceived against true distances (metres), split at ``min_true_m``.

    Ratios are meaningless near contact (a 1 cm error at 2 cm true distance is a factor 1.5), so relative errors
    and the ratio bands use only "far" pairs (``true >= min_true_m``) and "close" pairs get an absolute error:

    - ``count``, ``count_far``, ``count_close``;
    - ``mae_m``: mean ``|p - t|`` over all pairs;
    - ``median_relative_error``: median ``|p - t| / t`` over far pairs;
    - ``within_0_5x_2x`` / ``within_0_9x_1_1x``: fraction of far pairs with ``0.5 <= p/t <= 2`` resp.
      ``0.9 <= p/t <= 1.1`` (the distance accuracy of SpatialVLM, Chen et al., CVPR 2024);
    - ``median_abs_error_close_m``: median ``|p - t|`` over close pairs.

    Values over an empty subset are NaN. Distances must be finite and non-negative.
    """
    if not (math.isfinite(min_true_m) and min_true_m > 0.0):
        raise EvaluationError(f"min_true_m must be a positive number of metres, got {min_true_m}")
    perceived, true = _vector("perceived_m", perceived_m), _vector("true_m", true_m)
    if perceived.size != true.size:
        raise EvaluationError(f"perceived_m and true_m differ in length: {perceived.size} vs {true.size}")
    for name, values in (("perceived_m", perceived), ("true_m", true)):
        negative = np.flatnonzero(values < 0.0)
        if negative.size:
            raise EvaluationError(f"{name} must be non-negative, got {values[negative[0]]} at index {negative[0]}")
    absolute_error = np.abs(perceived - true)
    far = true >= min_true_m
    ratio = perceived[far] / true[far]
    return {
        "count": int(true.size),
        "count_far": int(far.sum()),
        "count_close": int((~far).sum()),
        "mae_m": _mean(absolute_error),
        "median_relative_error": _median(absolute_error[far] / true[far]),
        "within_0_5x_2x": _mean((ratio >= 0.5) & (ratio <= 2.0)),
        "within_0_9x_1_1x": _mean((ratio >= 0.9) & (ratio <= 1.1)),
        "median_abs_error_close_m": _median(absolute_error[~far]),
    }


# --- timing -------------------------------------------------------------------------------------------------------


def timing_summary(samples_ms: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """Per stage: ``count`` (int), ``median_ms`` and ``p95_ms`` (linear-interpolated percentile, numpy's default).

    A stage without samples has count 0 and NaN times. Samples must be finite and non-negative.
    """
    summary: dict[str, dict[str, float]] = {}
    for stage, samples in samples_ms.items():
        values = _vector(f"timing samples of stage {stage!r}", samples)
        negative = np.flatnonzero(values < 0.0)
        if negative.size:
            raise EvaluationError(f"timing samples of stage {stage!r} must be non-negative, "
                                  f"got {values[negative[0]]} ms at index {negative[0]}")
        summary[stage] = {
            "count": int(values.size),
            "median_ms": _median(values),
            "p95_ms": float(np.percentile(values, 95)) if values.size else math.nan,
        }
    return summary
