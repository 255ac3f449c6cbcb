"""Evaluation: ``tsg eval BAG`` (:mod:`.bag_eval`, :mod:`.report`), ``tsg eval vsr`` (:mod:`.vsr`) and their metrics.

The metrics (:mod:`.metrics`) are pure numpy / scikit-learn / scipy on 1-D arrays. A metric that is undefined for
its input (an AUROC with one class, a median of nothing) is ``float('nan')``, never an exception; callers write NaN
as JSON ``null``. Input that is malformed (different lengths, non-finite scores, labels other than 0/1) raises
:class:`EvaluationError`. Plots (:mod:`trusted_scene_graph.evaluation.plots`) import matplotlib lazily.
"""

from trusted_scene_graph.errors import TsgError


class EvaluationError(TsgError):
    """Evaluation input is malformed or insufficient (mismatched lengths, non-finite values, nothing to plot)."""


class EvaluationWarning(UserWarning):
    """Something about the bag or the config that makes the scores mean less than they seem (the bag's tf disagrees
    with a 'static' extrinsic, labels the 'sim' detector cannot report). Every such text is also in the metrics'
    ``warnings`` list, which ``tsg eval`` prints and puts atop report.md instead of showing the raw warning."""


# Imported after EvaluationError is defined because metrics.py imports it from this package.
from trusted_scene_graph.evaluation.metrics import (  # noqa: E402
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

__all__ = [
    "EvaluationError",
    "aurc",
    "auroc",
    "coverage_at_precision",
    "distance_metrics",
    "e_aurc",
    "expected_calibration_error",
    "fpr_at_tpr",
    "optimal_aurc",
    "reliability_bins",
    "risk_coverage_curve",
    "spearman",
    "timing_summary",
]
