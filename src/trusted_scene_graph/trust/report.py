"""The trust report on disk: how well the fused trust and its baselines rank, calibrate and prune the same edges.

:func:`scorer_metrics` measures one scorer (a ``P(correct)`` per edge), :func:`compare_scorers` several on the same
edges, and :func:`write_trust_report` writes ``metrics.json``, ``report.md`` and the figures into a directory.
Ranking and selective-prediction metrics follow TrustVLM (Dong et al. 2025) and Geifman et al. 2019 and come from
:mod:`trusted_scene_graph.evaluation.metrics`; the figures from :mod:`trusted_scene_graph.evaluation.plots`.

Two coverages are reported and mean different things: ``coverage_at_target`` is an in-sample oracle (the threshold
is chosen on the very edges it is scored on, so it is the best any threshold could do here), while the
``*_at_threshold`` values and the ``guarantee`` use a threshold chosen beforehand (the model's, from its own
threshold split) and are an honest check of it when these edges were not used to fit the model.

Undefined values (an AUROC with one class, a precision with nothing kept) are NaN in the returned dicts, ``null``
in ``metrics.json`` and "n/a" in ``report.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import float_vector, json_ready
from trusted_scene_graph.evaluation import EvaluationError, plots
from trusted_scene_graph.evaluation.metrics import (
    _labels,
    aurc,
    auroc,
    coverage_at_precision,
    e_aurc,
    expected_calibration_error,
    fpr_at_tpr,
)
from trusted_scene_graph.files import remove_files
from trusted_scene_graph.text import format_number as _fmt
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.threshold import threshold_text

FUSED = "fused"
ECE_BINS = 15
#: Why a constant scorer carries no signal, by scorer name, for report.md.
CONSTANT_REASONS = {"vlm_confidence": "the model was trained without VLM answers, so it has no calibrated VLM "
                                      "confidence to compare"}
#: Keys of metrics.json written by :func:`write_trust_report`; ``extra`` may not reuse them.
REPORT_KEYS = ("edges", "correct", "target_precision", "delta", "model_threshold", "methods", "guarantee",
               "feature_importance_gain")
FIGURES = {
    "roc.png": "ROC curves of every scorer (AUROC, FPR at 95% TPR)",
    "risk_coverage.png": "risk-coverage curves of every scorer (AURC, E-AURC)",
    "reliability.png": "reliability diagram of the fused trust (ECE), baselines as lines",
    "feature_importance.png": "XGBoost gain per feature",
    "coverage_at_precision.png": "in-sample coverage reachable at each target precision, model threshold marked",
}


# --- validation ---------------------------------------------------------------------------------------------------


def _probabilities(name: str, values: Any) -> np.ndarray:
    """``values`` as a non-empty 1-D float array of finite probabilities in [0, 1]."""
    array = float_vector(f"scores of {name!r}", values, TrustError)
    if array.size == 0:
        raise TrustError(f"scores of {name!r} are empty: there are no edges to measure")
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0.0) | (array > 1.0))
    if bad.size:
        raise TrustError(f"scores of {name!r} must be finite probabilities in [0, 1], "
                         f"got {array[bad[0]]} at index {bad[0]}")
    return array


def _correct(values: Any, edges: int, name: str) -> np.ndarray:
    try:
        labels = _labels("correct", values)
    except EvaluationError as error:
        raise TrustError(str(error)) from None
    if labels.size != edges:
        raise TrustError(f"scores of {name!r} and correct differ in length: {edges} vs {labels.size}")
    return labels


def _target(target_precision: float) -> float:
    if not (isinstance(target_precision, int | float | np.number) and 0.0 < target_precision <= 1.0):
        raise TrustError(f"target_precision must be in (0, 1], got {target_precision!r}")
    return float(target_precision)


# --- metrics ------------------------------------------------------------------------------------------------------


def scorer_metrics(probabilities: Any, correct: Any, target_precision: float, threshold: float | None = None,
                   bins: int = ECE_BINS, *, name: str = "scorer") -> dict[str, Any]:
    """Ranking, calibration and pruning metrics of one scorer's ``P(correct)`` on labelled edges.

    Keys: ``edges``, ``correct`` (counts), ``constant`` (every score equal: no ranking signal), ``auroc``, ``aurc``,
    ``e_aurc``, ``fpr_at_95_tpr``, ``ece`` (``bins`` equal-width bins), ``coverage_at_target`` and
    ``threshold_at_target`` (largest coverage whose kept edges reach ``target_precision``, chosen in-sample). With a
    ``threshold`` (edges with score ``>= threshold`` are kept; +inf keeps none) also ``threshold``,
    ``kept_at_threshold``, ``coverage_at_threshold``, ``precision_at_threshold`` (NaN when nothing is kept) and
    ``recall_at_threshold`` (kept correct / all correct; NaN without correct edges). ``name`` only labels errors.
    """
    target = _target(target_precision)
    scores = _probabilities(name, probabilities)
    labels = _correct(correct, scores.size, name)
    coverage, threshold_at_target = coverage_at_precision(scores, labels, target)
    metrics: dict[str, Any] = {
        "edges": int(scores.size),
        "correct": int(labels.sum()),
        "constant": bool(np.ptp(scores) == 0.0),
        "auroc": auroc(scores, labels),
        "aurc": aurc(scores, labels),
        "e_aurc": e_aurc(scores, labels),
        "fpr_at_95_tpr": fpr_at_tpr(scores, labels, 0.95),
        "ece": expected_calibration_error(scores, labels, bins),
        "coverage_at_target": coverage,
        "threshold_at_target": threshold_at_target,
    }
    if threshold is not None:
        if not isinstance(threshold, int | float | np.number) or math.isnan(threshold):
            raise TrustError(f"threshold of {name!r} must be a number, got {threshold!r}")
        kept = scores >= threshold
        kept_count, kept_correct, all_correct = int(kept.sum()), int((kept & labels).sum()), int(labels.sum())
        metrics.update({
            "threshold": float(threshold),
            "kept_at_threshold": kept_count,
            "coverage_at_threshold": kept_count / scores.size,
            "precision_at_threshold": kept_correct / kept_count if kept_count else math.nan,
            "recall_at_threshold": kept_correct / all_correct if all_correct else math.nan,
        })
    return metrics


def compare_scorers(scorers: Mapping[str, Any], correct: Any, target_precision: float,
                    thresholds: Mapping[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """:func:`scorer_metrics` of every named scorer on the same edges, in the order given.

    ``thresholds`` (scorer name -> threshold) adds the ``*_at_threshold`` metrics for those scorers; naming a scorer
    that is not in ``scorers`` is refused. A constant scorer (e.g. VLM confidence 0.5 on every edge when the data has
    no VLM answers) is measured like any other and flagged with ``"constant": True``.
    """
    if not scorers:
        raise TrustError("compare_scorers needs at least one named scorer, got none")
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(scorers))
    if unknown:
        raise TrustError(f"thresholds given for scorers {unknown} that are not among {list(scorers)}")
    return {name: scorer_metrics(scores, correct, target_precision, thresholds.get(name), name=name)
            for name, scores in scorers.items()}


# --- report -------------------------------------------------------------------------------------------------------


def _guarantee(fused: Mapping[str, Any], target: float) -> dict[str, Any]:
    precision = fused["precision_at_threshold"]
    return {
        "realised_precision": precision,
        "coverage": fused["coverage_at_threshold"],
        "kept": fused["kept_at_threshold"],
        "meets_target": None if math.isnan(precision) else bool(precision >= target),
    }


def _figures(out_dir: Path, scorers: Mapping[str, np.ndarray], labels: np.ndarray, metrics: Mapping[str, Any],
             importance: Mapping[str, float]) -> dict[str, str | None]:
    """Draw every figure that has something to show: file name -> None when written, else why not. Figures an earlier
    report left in ``out_dir`` are deleted first: one this report does not draw would otherwise be shown stale beside
    it."""
    remove_files(out_dir, FIGURES)
    curves = {name: (scores, labels) for name, scores in scorers.items()}
    target, fused = metrics["target_precision"], metrics["methods"][FUSED]
    skipped: dict[str, str | None] = {}
    if labels.all() or not labels.any():
        skipped["roc.png"] = f"not drawn: every edge is {'correct' if labels.all() else 'wrong'}, ROC needs both"
    else:
        plots.plot_roc(curves, out_dir / "roc.png", "Edge trust: ROC (correct edges are positives)")
        skipped["roc.png"] = None
    plots.plot_risk_coverage(curves, out_dir / "risk_coverage.png", "Edge trust: risk-coverage")
    skipped["risk_coverage.png"] = None
    baselines = {name: pair for name, pair in curves.items() if name != FUSED}
    plots.plot_reliability(scorers[FUSED], labels, out_dir / "reliability.png", "Fused edge trust: reliability",
                           bins=ECE_BINS, baselines=baselines)
    skipped["reliability.png"] = None
    if importance:
        plots.plot_feature_importance(importance, out_dir / "feature_importance.png",
                                      "Trust model: feature importance", xlabel="gain (XGBoost)")
        skipped["feature_importance.png"] = None
    else:
        skipped["feature_importance.png"] = "not drawn: no feature importances given"
    marker = {f"{FUSED} at model threshold {threshold_text(metrics['model_threshold'], _fmt)}":
              (fused["precision_at_threshold"], fused["coverage_at_threshold"])}
    plots.plot_coverage_at_precision(curves, out_dir / "coverage_at_precision.png",
                                     "Coverage reachable at a target precision", target, markers=marker)
    skipped["coverage_at_precision.png"] = None
    return skipped


def _markdown(metrics: Mapping[str, Any], constants: Mapping[str, float], figures: Mapping[str, str | None],
              notes: Sequence[str] = ()) -> str:
    target = metrics["target_precision"]
    lines = [
        "# Edge trust report",
        "",
        *notes,
        *([""] if notes else []),
        f"{metrics['edges']} facts (an edge and its converse, such as left_of and right_of, are one fact), "
        f"{metrics['correct']} correct ({_fmt(metrics['correct'] / metrics['edges'])}); target precision "
        f"{_fmt(target)}, risk delta {_fmt(metrics['delta'])}.",
        "",
        f"| scorer | AUROC | AURC | E-AURC | FPR@95%TPR | ECE | coverage at precision {_fmt(target)} (oracle) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, method in metrics["methods"].items():
        lines.append(f"| {name}{' (constant)' if method['constant'] else ''} | {_fmt(method['auroc'])} | "
                     f"{_fmt(method['aurc'])} | {_fmt(method['e_aurc'])} | {_fmt(method['fpr_at_95_tpr'])} | "
                     f"{_fmt(method['ece'])} | {_fmt(method['coverage_at_target'])} |")
    lines.append("")
    for name, value in constants.items():
        reason = CONSTANT_REASONS.get(name, "it cannot rank the edges")
        lines.append(f"- {name} is {value:g} on every edge: {reason}; its AUROC and coverage carry no signal.")
    guarantee = metrics["guarantee"]
    if guarantee["meets_target"] is None:
        verdict = "nothing is kept, so precision is undefined"
    else:
        verdict = "meets the target" if guarantee["meets_target"] else "**below the target**"
    lines += [
        f"- Guarantee: at the model threshold {threshold_text(metrics['model_threshold'], _fmt)} the fused trust keeps "
        f"{guarantee['kept']} of {metrics['edges']} facts (coverage {_fmt(guarantee['coverage'])}) with realised "
        f"precision {_fmt(guarantee['realised_precision'])} against the target {_fmt(target)}: {verdict}. "
        f"This checks the threshold only when these facts were not used to train the model.",
        "- \"Oracle\" coverage chooses the threshold on these same edges: the best any threshold could do here.",
        "",
        "## Figures",
        "",
    ]
    for file_name, reason in figures.items():
        lines.append(f"- {file_name}: {FIGURES[file_name]}" + (f" ({reason})" if reason else ""))
    return "\n".join(lines) + "\n"


def write_trust_report(out_dir: Path, scorers: Mapping[str, Any], correct: Any, *, target_precision: float,
                       delta: float, model_threshold: float, feature_importance_gain: Mapping[str, float],
                       extra: Mapping[str, Any] | None = None, notes: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and the PNG figures of :data:`FIGURES` into ``out_dir``; return the
    metrics (NaN where undefined; ``null`` in the file).

    ``scorers`` maps names to ``P(correct)`` per edge and must include ``"fused"``, the model whose ``model_threshold``
    (chosen for ``target_precision`` at risk ``delta``) is checked in ``guarantee``. ``extra`` entries are added to
    ``metrics.json`` and may not reuse its keys (:data:`REPORT_KEYS`); ``notes`` are markdown lines put at the top of
    ``report.md`` (what was compared, warnings). Every input is checked before anything is
    written; mismatched lengths, no edges, non-finite or out-of-range scores and an ``out_dir`` that is a file are
    refused with :class:`TrustError`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrustError(f"output directory {out_dir} exists and is not a directory")
    if FUSED not in scorers:
        raise TrustError(f"the scorers must include {FUSED!r}, got {list(scorers)}")
    if not (isinstance(delta, int | float | np.number) and 0.0 < delta < 1.0):
        raise TrustError(f"delta must be in (0, 1), got {delta!r}")
    arrays = {name: _probabilities(name, scores) for name, scores in scorers.items()}
    labels = _correct(correct, arrays[FUSED].size, FUSED)
    importance: dict[str, float] = {}
    for feature, gain in feature_importance_gain.items():
        if not (isinstance(gain, int | float | np.number) and math.isfinite(gain)):
            raise TrustError(f"feature importance of {feature!r} must be a finite number, got {gain!r}")
        importance[str(feature)] = float(gain)
    extra = dict(extra or {})
    clashing = sorted(set(extra) & set(REPORT_KEYS))
    if clashing:
        raise TrustError(f"extra keys {clashing} would overwrite the report's own keys")
    try:
        json.dumps(json_ready(extra), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TrustError(f"extra cannot be written as JSON: {error}") from None

    methods = compare_scorers(arrays, labels, target_precision, thresholds={FUSED: model_threshold})
    metrics: dict[str, Any] = {
        "edges": int(labels.size),
        "correct": int(labels.sum()),
        "target_precision": float(target_precision),
        "delta": float(delta),
        "model_threshold": float(model_threshold),
        "methods": methods,
        "guarantee": _guarantee(methods[FUSED], float(target_precision)),
        "feature_importance_gain": dict(sorted(importance.items(), key=lambda item: (-item[1], item[0]))),
        **extra,
    }
    constants = {name: float(arrays[name][0]) for name, method in methods.items() if method["constant"]}

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrustError(f"cannot create output directory {out_dir}: {error.strerror or error}") from error
    figures = _figures(out_dir, arrays, labels, metrics, metrics["feature_importance_gain"])
    (out_dir / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n")
    (out_dir / "report.md").write_text(_markdown(metrics, constants, figures, notes))
    return metrics
