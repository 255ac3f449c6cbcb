"""PNG figures of the evaluation and trust reports: ROC, risk-coverage, reliability, coverage at a target precision,
feature importance, distance scatter, timing.

Each function draws one figure and writes it to ``path`` (parent folders are created). matplotlib is imported inside
the functions and draws through its Agg canvas directly (``Figure`` + ``FigureCanvasAgg``, no pyplot), so the
process-wide backend is never switched and no display is needed. Input with nothing to draw (no curves, no items,
no curve with both classes) raises :class:`EvaluationError`; malformed arrays raise it via the metrics' validation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation.metrics import (
    _both_classes,
    _scored,
    aurc,
    auroc,
    coverage_at_precision,
    coverage_at_targets,
    distance_metrics,
    e_aurc,
    expected_calibration_error,
    fpr_at_tpr,
    reliability_bins,
    risk_coverage_curve,
)
from trusted_scene_graph.text import format_number as _fmt

#: Named score sets drawn on the same axes: name -> (scores, correct).
Curves = Mapping[str, tuple[Any, Any]]


def _figure(width_in: float = 6.4, height_in: float = 4.8) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")




def plot_roc(curves: Curves, path: Path, title: str) -> None:
    """ROC curves of several score sets, each labelled with its AUROC and FPR at 95% TPR.

    A score set with no items or a single class has no ROC curve: it is named in the legend as undefined and not
    drawn. Raises :class:`EvaluationError` when no score set can be drawn.
    """
    from sklearn.metrics import roc_curve

    if not curves:
        raise EvaluationError("plot_roc needs at least one named score set, got none")
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    drawn = 0
    for name, (scores, correct) in curves.items():
        score_array, labels = _scored(scores, correct)
        if not _both_classes(labels):
            axes.plot([], [], " ", label=f"{name}: undefined (n={labels.size}, needs correct and wrong items)")
            continue
        fpr, tpr, _ = roc_curve(labels, score_array)
        axes.plot(fpr, tpr, label=f"{name} (AUROC {_fmt(auroc(score_array, labels))}, "
                                  f"FPR95 {_fmt(fpr_at_tpr(score_array, labels))})")
        drawn += 1
    if drawn == 0:
        raise EvaluationError(f"plot_roc: none of {sorted(curves)} has both correct and wrong items")
    axes.set_xlabel("false-positive rate (wrong items accepted)")
    axes.set_ylabel("true-positive rate (correct items accepted)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    _save(figure, path)


def plot_risk_coverage(curves: Curves, path: Path, title: str) -> None:
    """Risk-coverage curves of several score sets on the same axes, each labelled with its AURC and E-AURC.

    A score set with no items is named in the legend as empty and not drawn. Raises :class:`EvaluationError` when
    no score set has items.
    """
    if not curves:
        raise EvaluationError("plot_risk_coverage needs at least one named score set, got none")
    figure = _figure()
    axes = figure.add_subplot()
    drawn = 0
    for name, (scores, correct) in curves.items():
        score_array, labels = _scored(scores, correct)
        if score_array.size == 0:
            axes.plot([], [], " ", label=f"{name}: no items")
            continue
        coverage, risk = risk_coverage_curve(score_array, labels)
        axes.plot(coverage, risk, marker="." if coverage.size <= 50 else None,
                  label=f"{name} (AURC {_fmt(aurc(score_array, labels))}, "
                        f"E-AURC {_fmt(e_aurc(score_array, labels))})")
        drawn += 1
    if drawn == 0:
        raise EvaluationError(f"plot_risk_coverage: none of {sorted(curves)} has any items")
    axes.set_xlabel("coverage (fraction of items kept, most confident first)")
    axes.set_ylabel("risk (error rate of kept items)")
    axes.set_xlim(0, 1.02)
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    _save(figure, path)


def plot_reliability(probabilities: Any, correct: Any, path: Path, title: str, bins: int = 15, *,
                     baselines: Curves | None = None) -> None:
    """Reliability diagram (accuracy per confidence bin against the diagonal) over a count histogram (log scale);
    ECE in the title, the legend right of the axes.

    ``baselines`` (name -> (probabilities, correct)) are drawn on top as lines through their (mean confidence,
    accuracy) per filled bin, each with its ECE in the legend; the histogram stays that of ``probabilities``.
    Raises :class:`EvaluationError` when there are no items.
    """
    stats = reliability_bins(probabilities, correct, bins)
    total = int(stats["count"].sum())
    if total == 0:
        raise EvaluationError("plot_reliability needs at least one probability, got none")
    baseline_stats = {name: (reliability_bins(p, c, bins), expected_calibration_error(p, c, bins))
                      for name, (p, c) in (baselines or {}).items()}  # validated before anything is drawn
    ece = expected_calibration_error(probabilities, correct, bins)
    edges = stats["edges"]
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    filled = stats["count"] > 0
    figure = _figure(9.6, 6.4)  # wider than square: the legend sits right of the axes, never over the bars
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    top.bar(centres[filled], stats["accuracy"][filled], width=width * 0.9, alpha=0.7, label="accuracy")
    top.plot(stats["mean_confidence"][filled], stats["accuracy"][filled], "o", color="black", markersize=3,
             label="(mean confidence, accuracy)")
    for index, (name, (baseline, baseline_ece)) in enumerate(baseline_stats.items()):
        shown = baseline["count"] > 0
        # C0 is the bars' colour; C1, C2, ... match the baselines' colours in the other plots when listed second on
        top.plot(baseline["mean_confidence"][shown], baseline["accuracy"][shown], marker="s", markersize=4,
                 linewidth=1, color=f"C{index + 1}", label=f"{name} (ECE {_fmt(baseline_ece)})")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1.02)
    top.set_title(f"{title}\nECE {_fmt(ece)} (n={total}, {bins} bins)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    # Log counts: most edges sit in the extreme bins, a linear axis would flatten every other bin to nothing.
    bottom.bar(centres[filled], stats["count"][filled], width=width * 0.9, color="grey", log=True)
    bottom.set_ylim(bottom=0.5)  # bars rise from below 1, so a bin of one edge shows and heights compare
    bottom.set_xlabel("predicted probability of being correct")
    bottom.set_ylabel("count (log)")
    bottom.set_xlim(0, 1)
    _save(figure, path)


def plot_coverage_at_precision(curves: Curves, path: Path, title: str, target: float,
                               markers: Mapping[str, tuple[float, float]] | None = None,
                               lowest_target: float = 0.5) -> None:
    """Largest coverage whose kept items reach precision ``t``, for ``t`` from ``lowest_target`` to 1, per score set.

    Each curve is :func:`~.metrics.coverage_at_precision` as a function of the target (an in-sample oracle: the
    threshold is chosen on the same items). A dotted vertical line marks ``target``; ``markers`` (name ->
    (precision, coverage)) are realised operating points, e.g. a threshold chosen beforehand, drawn as stars; one
    with NaN precision (nothing kept) is only named in the legend. Raises :class:`EvaluationError` when no score set
    has items or ``target`` is not in (0, 1].
    """
    if not (math.isfinite(target) and 0.0 < target <= 1.0):
        raise EvaluationError(f"target precision must be in (0, 1], got {target}")
    if not curves:
        raise EvaluationError("plot_coverage_at_precision needs at least one named score set, got none")
    lowest = min(lowest_target, target)
    targets = np.linspace(lowest, 1.0, 201)
    coverages = {name: coverage_at_targets(scores, correct, targets) for name, (scores, correct) in curves.items()}
    if all(np.isnan(coverage).all() for coverage in coverages.values()):
        raise EvaluationError(f"plot_coverage_at_precision: none of {sorted(curves)} has any items")
    figure = _figure()
    axes = figure.add_subplot()
    for name, coverage in coverages.items():
        if np.isnan(coverage).all():
            axes.plot([], [], " ", label=f"{name}: no items")
            continue
        scores, correct = curves[name]
        at_target = coverage_at_precision(scores, correct, target)[0]
        axes.plot(targets, coverage, label=f"{name} (coverage {_fmt(at_target)} at precision {target:g})")
    axes.axvline(target, linestyle=":", color="grey", label=f"target precision {target:g}")
    left = lowest
    for name, (precision, coverage) in (markers or {}).items():
        if math.isnan(precision):
            axes.plot([], [], " ", label=f"{name}: nothing kept")
            continue
        left = min(left, precision)
        axes.plot([precision], [coverage], "*", markersize=12, markeredgecolor="black",
                  label=f"{name} (precision {_fmt(precision)}, coverage {_fmt(coverage)})")
    axes.set_xlabel("target precision of the kept items")
    axes.set_ylabel("largest coverage reaching it (in-sample)")
    axes.set_xlim(left - 0.01, 1.005)
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    _save(figure, path)


def plot_feature_importance(importance: Mapping[str, float], path: Path, title: str, xlabel: str = "gain") -> None:
    """Horizontal bars of a per-feature importance, largest on top, every feature drawn (zeros included).

    Raises :class:`EvaluationError` when there are no features or an importance is not a finite number.
    """
    if not importance:
        raise EvaluationError("plot_feature_importance needs at least one feature, got none")
    for name, value in importance.items():
        if not (isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)):
            raise EvaluationError(f"importance of feature {name!r} must be a finite number, got {value!r}")
    ranked = sorted(importance.items(), key=lambda item: (-float(item[1]), item[0]))
    names, values = [name for name, _ in ranked], np.array([float(value) for _, value in ranked])
    figure = _figure(6.4, 1.2 + 0.3 * len(names))
    axes = figure.add_subplot()
    rows = np.arange(len(names))
    axes.barh(rows, values, color="tab:blue", alpha=0.7)
    for row, value in zip(rows, values, strict=True):
        axes.annotate(f" {value:.3g}", (max(value, 0.0), row), va="center", fontsize="small")
    axes.set_yticks(rows, names)
    axes.invert_yaxis()  # largest on top
    largest = float(np.max(np.abs(values)))
    axes.set_xlim(min(0.0, float(values.min()) * 1.1), (largest if largest > 0 else 1.0) * 1.25)  # room for labels
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    _save(figure, path)


def plot_distance_scatter(perceived_m: Any, true_m: Any, path: Path, title: str,
                          min_true_m: float = 0.10) -> None:
    """Perceived against true distance with y = x and the 0.5x-2x and 0.9x-1.1x bands.

    Log-log when every distance is positive (ratios are then constant-width bands), linear otherwise. A dotted line
    marks ``min_true_m``, below which :func:`distance_metrics` scores absolute rather than relative errors; the
    legend gives the fraction of far pairs in each band. Raises :class:`EvaluationError` when there are no pairs.
    """
    metrics = distance_metrics(perceived_m, true_m, min_true_m)
    if metrics["count"] == 0:
        raise EvaluationError("plot_distance_scatter needs at least one distance pair, got none")
    perceived, true = np.asarray(perceived_m, np.float64), np.asarray(true_m, np.float64)
    both = np.concatenate([perceived, true])
    log_scale = bool(np.all(both > 0.0))
    if log_scale:
        low, high = float(both.min()) / 1.5, float(both.max()) * 1.5
        line = np.geomspace(low, high, 100)
    else:
        low, high = 0.0, max(float(both.max()) * 1.1, min_true_m * 2)
        line = np.linspace(low, high, 100)
    figure = _figure(6.4, 6.0)
    axes = figure.add_subplot()
    axes.fill_between(line, 0.5 * line, 2.0 * line, color="tab:blue", alpha=0.12,
                      label=f"0.5x-2x: {_fmt(metrics['within_0_5x_2x'])} of far pairs")
    axes.fill_between(line, 0.9 * line, 1.1 * line, color="tab:blue", alpha=0.25,
                      label=f"0.9x-1.1x: {_fmt(metrics['within_0_9x_1_1x'])} of far pairs")
    axes.plot(line, line, color="black", linewidth=1, label="perceived = true")
    axes.axvline(min_true_m, linestyle=":", color="grey", label=f"far/close split ({min_true_m:.2f} m)")
    axes.plot(true, perceived, "o", markersize=3, color="tab:red", alpha=0.7,
              label=f"pairs (n={metrics['count']}, MAE {_fmt(metrics['mae_m'])} m)")
    if log_scale:
        axes.set_xscale("log")
        axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    axes.set_xlabel("true distance [m]")
    axes.set_ylabel("perceived distance [m]")
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="upper left", fontsize="small")
    _save(figure, path)


def plot_timing(summary: Mapping[str, Mapping[str, float]], path: Path, title: str) -> None:
    """Median (bar) and 95th percentile (tick) per stage, from :func:`~.metrics.timing_summary`'s output.

    Stages without samples (count 0 or NaN median) are left out. Raises :class:`EvaluationError` when no stage has
    samples or an entry lacks ``median_ms`` / ``p95_ms``.
    """
    stages, medians, p95s = [], [], []
    for stage, entry in summary.items():
        if "median_ms" not in entry or "p95_ms" not in entry:
            raise EvaluationError(f"timing entry of stage {stage!r} needs median_ms and p95_ms, got {sorted(entry)}")
        if math.isnan(entry["median_ms"]):
            continue
        stages.append(stage)
        medians.append(float(entry["median_ms"]))
        p95s.append(float(entry["p95_ms"]))
    if not stages:
        raise EvaluationError(f"plot_timing: no stage has samples (stages: {sorted(summary)})")
    figure = _figure(6.4, 1.2 + 0.45 * len(stages))
    axes = figure.add_subplot()
    rows = np.arange(len(stages))
    axes.barh(rows, medians, color="tab:blue", alpha=0.7, label="median")
    axes.plot(p95s, rows, "|", color="black", markersize=14, markeredgewidth=2, label="95th percentile")
    for row, median, p95 in zip(rows, medians, p95s, strict=True):
        axes.annotate(f" {median:.1f} / {p95:.1f} ms", (max(median, p95), row), va="center", fontsize="small")
    axes.set_yticks(rows, stages)
    axes.invert_yaxis()  # first stage on top, in pipeline order
    axes.set_xlabel("time [ms]")
    axes.set_xlim(0, max(max(medians), max(p95s)) * 1.35)  # room for the labels right of the ticks
    axes.set_title(f"{title} (median / 95th percentile)")
    axes.grid(alpha=0.3, axis="x")
    axes.legend(loc="best", fontsize="small")
    _save(figure, path)
