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
    ("pairs 0.9–1.1×", "distance.object_pairs.within_0_9x_1_1x", "{:.1%}"),
    ("kept precision", "relations.precision_kept", "{:.1%}"),
    ("kept recall", "relations.recall_kept", "{:.1%}"),
    ("accuracy (all)", "relations.accuracy", "{:.1%}"),
    ("trust AUROC", "trust.auroc", "{:.3f}"),
    ("ECE", "trust.ece", "{:.3f}"),
    ("reward VOC", "reward.value_order_spearman", "{:.3f}"),
    ("total ms (p50)", "timing.total.median_ms", "{:.1f}"),
)


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
    if path == "distance.spearman":
        low = lookup(metrics, "distance.spearman_min")
        return f"{value:.3f} / {low:.3f}" if low is not None else f"{value:.3f}"
    if fmt.startswith("100x"):
        return fmt[4:].format(100 * value)
    return fmt.format(value)


def main(folder: str) -> int:
    rows = []
    for path in sorted(Path(folder).glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        rows.append("| " + " | ".join([path.parent.name] + [cell(metrics, p, f) for _, p, f in COLUMNS]) + " |")
    header = "| bag | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 1))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/benchmark/eval"))
