"""Summarise the metrics.json of every evaluation under a folder as the Markdown tables in docs/benchmark.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    ("frames", "frames.evaluated", "{:.0f}"),
    ("ee–obj 0.5–2×", "distance.ee_object.within_0_5x_2x", "{:.1%}"),
    ("ee–obj 0.9–1.1×", "distance.ee_object.within_0_9x_1_1x", "{:.1%}"),
    ("ee–obj close MAE-med [cm]", "distance.ee_object.median_abs_error_close_m", "100x{:.2f}"),
    ("ee–obj ρ (median / min)", "distance.spearman", "{:.3f}"),
    ("ee–obj ρ pooled", "distance.spearman_pooled", "{:.3f}"),
    ("pairs 0.9–1.1×", "distance.object_pairs.within_0_9x_1_1x", "{:.1%}"),
    ("kept precision", "relations.precision_kept", "{:.1%}"),
    ("kept recall", "relations.recall_kept", "{:.1%}"),
    ("accuracy (all)", "relations.accuracy", "{:.1%}"),
    ("trust AUROC", "trust.auroc", "{:.3f}"),
    ("ECE", "trust.ece", "{:.3f}"),
    ("reward VOC (env's own)", "reward.value_order_spearman", "{:.3f}"),
    ("total ms (p50)", "timing.total.median_ms", "{:.1f}"),
)


SECOND = (
    ("candidates", "relations.candidates", "{:.0f}"),
    ("excluded (not evaluable)", "relations.excluded_not_evaluable", "{:.0f}"),
    # The header names the runs' trust.target_precision: see second_columns.
    ("coverage at target precision", "trust.coverage_at_target_precision", "{:.1%}"),
    ("recall vs all true edges", "relations.recall_ground_truth", "{:.1%}"),
    ("detection recall", "detection.recall", "{:.1%}"),
    ("detection precision", "detection.precision", "{:.1%}"),
    ("false positives", "detection.false_positives", "{:.0f}"),
    ("objects below min_pixels", "detection.below_min_pixels", "{:.0f}"),
    ("centroid error p50 / p95 [cm]", "detection.centroid_error_median_m", "100x{:.2f}"),
    ("reward abs. error p50 / p95 [cm]", "reward.abs_error_median", "100x{:.2f}"),
    ("reward ρ vs env (episode median / pooled)", "reward.env_spearman", "{:.3f}"),
)


def second_columns(metrics_by_name: dict[str, dict]) -> tuple[tuple[str, str, str], ...]:
    """SECOND with the coverage header at the precision the runs targeted (``trust.target_precision``).

    Runs that targeted different precisions are refused rather than listed in one column: rows would read as
    comparable when a lower target alone buys more coverage. Runs without the value (no trust section) show "–".
    """
    targets = {name: lookup(metrics, "trust.target_precision") for name, metrics in metrics_by_name.items()}
    distinct = sorted({target for target in targets.values() if target is not None})
    if len(distinct) > 1:
        raise ValueError("trust.target_precision differs between the runs, so their coverages at it are not "
                         "comparable in one column; summarise each target separately: "
                         + ", ".join(f"{name}: {target}" for name, target in targets.items() if target is not None))
    header = f"coverage at {100 * distinct[0]:g} % precision" if distinct else "coverage at target precision"
    return tuple((header if path == "trust.coverage_at_target_precision" else name, path, fmt)
                 for name, path, fmt in SECOND)


def lookup(metrics: dict, path: str):
    node = metrics
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def cell(metrics: dict, path: str, fmt: str) -> str:
    value = lookup(metrics, path)
    if value is None:
        return "–"
    if path == "reward.value_order_spearman":
        env = lookup(metrics, "reward.value_order_spearman_env")
        return f"{value:.3f} ({env:.3f})" if env is not None else f"{value:.3f}"
    pairs = {"detection.centroid_error_median_m": "detection.centroid_error_p95_m",
             "reward.abs_error_median": "reward.abs_error_p95", "reward.env_spearman": "reward.env_spearman_pooled"}
    if path in pairs:
        other = lookup(metrics, pairs[path])
        scale = 100 if fmt.startswith("100x") else 1
        return f"{scale * value:.{2 if scale == 100 else 3}f} / " + (f"{scale * other:.{2 if scale == 100 else 3}f}"
                                                                      if other is not None else "–")
    if path == "distance.spearman":
        low = lookup(metrics, "distance.spearman_min")
        return f"{value:.3f} / {low:.3f}" if low is not None else f"{value:.3f}"
    if fmt.startswith("100x"):
        return fmt[4:].format(100 * value)
    return fmt.format(value)


def table(metrics_by_name: dict[str, dict], columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    lines = ["| bag | " + " | ".join(name for name, _, _ in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, metrics in metrics_by_name.items():
        lines.append("| " + " | ".join([name] + [cell(metrics, p, f) for _, p, f in columns]) + " |")
    return lines


def main(folder: str, names: list[str]) -> int:
    """Summarise ``folder/NAME/metrics.json`` for the given names (all evaluations in the folder when none)."""
    paths = ([Path(folder) / name / "metrics.json" for name in names] if names
             else list(Path(folder).glob("*/metrics.json")))
    metrics_by_name = {path.parent.name: json.loads(path.read_text()) for path in sorted(paths)}
    try:
        second = second_columns(metrics_by_name)
    except ValueError as error:
        print(f"benchmark_summary: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(table(metrics_by_name, COLUMNS) + [""] + table(metrics_by_name, second)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/benchmark/eval", sys.argv[2:]))
