"""The evaluation report on disk: ``metrics.json``, ``report.md`` and PNG figures.

``metrics.json`` writes undefined metrics (no samples, a single class) as ``null``; ``report.md`` shows them as
"n/a". Figures that have nothing to draw are left out and listed in the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.evaluation import EvaluationError, plots

#: The simulated benchmark's targets (issue "Rosbag replay evaluation"): (metric path, comparison, value).
SIM_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("distance.ee_object.within_0_5x_2x", ">=", 0.99),
    ("distance.ee_object.within_0_9x_1_1x", ">=", 0.90),
    ("distance.ee_object.median_abs_error_close_m", "<=", 0.015),
    ("distance.spearman", ">=", 0.98),
    ("relations.precision_kept", ">=", 0.95),
    ("relations.recall_kept", ">=", 0.80),
)


def json_ready(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def lookup(metrics: Mapping[str, Any], path: str) -> Any:
    node: Any = metrics
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def target_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for path, comparison, target in SIM_TARGETS:
        value = lookup(metrics, path)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            status = "no data"
        else:
            status = "met" if (value >= target if comparison == ">=" else value <= target) else "missed"
        rows.append((f"`{path}`", _fmt(value), f"{comparison} {target}", status))
    return rows


def render_markdown(metrics: Mapping[str, Any], title: str, figures: list[str], missing_figures: list[str]) -> str:
    inputs, frames = metrics["input"], metrics["frames"]
    lines = [f"# {title}", "", f"Bag: `{inputs['bag']}`", ""]
    lines += ["## Input", ""]
    lines += _table([
        ("messages read", _fmt(inputs["messages_read"])),
        ("camera frames", _fmt(frames["camera_frames"])),
        ("frames evaluated", _fmt(frames["evaluated"])),
        ("episodes", _fmt(frames["episodes"])),
        ("frames failed", _fmt(frames["failed"])),
        ("frames without ground truth", _fmt(frames["without_ground_truth"])),
        ("frames out of order (skipped)", _fmt(frames["out_of_order"])),
        ("frames with the camera pose from the config (no tf)", _fmt(frames["camera_pose_from_config"])),
        ("missing topics", ", ".join(inputs["missing_topics"]) or "none"),
        ("skipped message types", ", ".join(f"{k} ({v})" for k, v in inputs["skipped_types"].items()) or "none"),
        ("undecodable messages", ", ".join(f"{k} ({v})" for k, v in inputs["undecodable"].items()) or "none"),
        ("unexpected types on known topics",
         ", ".join(f"{k} ({v})" for k, v in inputs["unexpected_types"].items()) or "none"),
        ("read error", inputs["read_error"] or "none"),
    ], ("", "value"))
    if frames["failure_reasons"]:
        lines += ["Frame failures:", ""] + [f"- {count} x {reason}" for reason, count in
                                             frames["failure_reasons"].items()] + [""]
    lines += ["## Simulated-benchmark targets", ""]
    lines += _table(target_rows(metrics), ("metric", "value", "target", "status"))
    for section in ("detection", "relations", "trust", "distance", "reward"):
        values = metrics[section]
        flat = [(f"`{k}`", _fmt(v)) for k, v in values.items() if not isinstance(v, (Mapping, list))]
        lines += [f"## {section.capitalize()}", ""] + _table(flat, ("metric", "value"))
        for key, sub in values.items():
            if isinstance(sub, Mapping) and sub and all(isinstance(v, Mapping) for v in sub.values()):
                columns = sorted({c for v in sub.values() for c in v})
                lines += [f"`{section}.{key}`:", ""]
                lines += _table([(name, *(_fmt(v.get(c)) for c in columns)) for name, v in sub.items()],
                                (key, *columns))
            elif isinstance(sub, Mapping) and sub and key != "spearman_per_episode":
                lines += [f"`{section}.{key}`:", ""] + _table([(f"`{k}`", _fmt(v)) for k, v in sub.items()],
                                                             ("metric", "value"))
    if metrics["timing"]:
        lines += ["## Timing", ""]
        lines += _table([(stage, _fmt(v["median_ms"], 2), _fmt(v["p95_ms"], 2), _fmt(v["count"]))
                         for stage, v in metrics["timing"].items()], ("stage", "median [ms]", "p95 [ms]", "frames"))
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures]
    if missing_figures:
        lines += ["", "Not drawn (nothing to draw): " + ", ".join(missing_figures)]
    return "\n".join(lines) + "\n"


def write_report(metrics: Mapping[str, Any], samples: Any, out_dir: Path, title: str = "Evaluation report") -> None:
    """Write ``metrics.json``, the PNGs and ``report.md`` into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n")
    trust = np.array(samples.edge_trust)
    correct = np.array(samples.edge_correct, dtype=bool)
    drawings = {
        "roc.png": lambda p: plots.plot_roc({"geometric trust": (trust, correct)}, p, "Relation edges: ROC"),
        "risk_coverage.png": lambda p: plots.plot_risk_coverage({"geometric trust": (trust, correct)}, p,
                                                                "Relation edges: risk vs coverage"),
        "reliability.png": lambda p: plots.plot_reliability(trust, correct, p, "Relation edges: reliability"),
        "distance_ee_object.png": lambda p: plots.plot_distance_scatter(
            samples.ee_perceived_m, samples.ee_true_m, p, "End effector to object distance"),
        "distance_object_pairs.png": lambda p: plots.plot_distance_scatter(
            samples.pair_perceived_m, samples.pair_true_m, p, "Object pair distance"),
        "timing.png": lambda p: plots.plot_timing(metrics["timing"], p, "Time per frame and stage"),
    }
    figures, missing = [], []
    for name, draw in drawings.items():
        try:
            draw(out_dir / name)
            figures.append(name)
        except EvaluationError:
            missing.append(name)
    (out_dir / "report.md").write_text(render_markdown(json_ready(metrics), title, figures, missing))
