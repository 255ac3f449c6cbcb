"""The evaluation report on disk: ``metrics.json``, ``report.md`` and PNG figures.

``metrics.json`` writes undefined metrics (no samples, a single class) as ``null``; ``report.md`` shows them as
"n/a". Figures that have nothing to draw are left out and listed in the report. A target the bag cannot have (an
end-effector distance without an end-effector pose, anything without ground truth or without the camera topics to
assemble a frame from) is "not applicable", which is not the same as "no data" (the bag has the input but nothing
was measured) or "missed". The run's warnings (``metrics["warnings"]``) open the report as banners.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trusted_scene_graph.arrays import json_ready
from trusted_scene_graph.evaluation import EvaluationError, plots
from trusted_scene_graph.files import remove_files, replace_text
from trusted_scene_graph.text import format_number as _fmt
from trusted_scene_graph.trust.dataset import EDGES_FILE, EdgeTable
from trusted_scene_graph.trust.features import FEATURE_NAMES
from trusted_scene_graph.trust.threshold import threshold_text

#: The simulated benchmark's targets (issue "Rosbag replay evaluation"): (metric path, comparison, value).
SIM_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("distance.ee_object.within_0_5x_2x", ">=", 0.99),
    ("distance.ee_object.within_0_9x_1_1x", ">=", 0.90),
    ("distance.ee_object.median_abs_error_close_m", "<=", 0.015),
    ("distance.spearman", ">=", 0.98),
    ("relations.precision_kept", ">=", 0.95),
    ("relations.recall_kept", ">=", 0.80),
)
#: The fewest samples (pairs for a distance target, edges for a relation target) a target is judged met or missed
#: on; below it the status is "too few samples (n=N)". A share of 20 moves in steps of 5 %, and its 95 % confidence
#: interval is about +-10 % wide near 90 %: fewer samples cannot tell a target of 90 or 99 % met from missed.
MIN_TARGET_SAMPLES = 20
#: Per target, the metric path that counts its samples: the far pairs (>= 0.10 m) of the ratio bands, the close pairs
#: of the absolute error, the end-effector pairs in the series whose per-episode Spearman rho the median takes (not
#: those of series too short or constant to rank), the kept edges of the precision, the true edges of the recall.
TARGET_SAMPLES = {
    "distance.ee_object.within_0_5x_2x": "distance.ee_object.count_far",
    "distance.ee_object.within_0_9x_1_1x": "distance.ee_object.count_far",
    "distance.ee_object.median_abs_error_close_m": "distance.ee_object.count_close",
    "distance.spearman": "distance.spearman_pairs",
    "relations.precision_kept": "relations.kept",
    "relations.recall_kept": "relations.true_edges",
}
# Metric paths whose value needs the end-effector pose and a gripper in the ground truth, or a goal.
_EE_PATHS = ("distance.ee_object", "distance.spearman")
_GOAL_PATHS = ("reward",)
# Distances whose key does not end in ``_m`` (renaming them would break readers of metrics.json): shown in cm too.
_METRE_PATHS = frozenset({"reward.abs_error_median", "reward.abs_error_p95"})


def prepare_output_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` (with parents) and check that files can be written in it, before any work is done, so a bad
    ``--out`` fails at once with the path named instead of after a whole evaluation."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"output directory {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass  # the surest test of writability: os.access misses read-only mounts and ACLs
    except OSError as exc:
        raise EvaluationError(f"cannot write to output directory {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def missing_directories(out_dir: Path) -> list[Path]:
    """``out_dir`` and those of its parents that do not exist yet, deepest first: what :func:`prepare_output_dir`
    is about to create, so that a command failing before it writes anything can remove them again."""
    missing = []
    for directory in (Path(out_dir), *Path(out_dir).parents):
        if directory.exists() or directory.is_symlink():
            break
        missing.append(directory)
    return missing


def remove_empty_directories(directories: Sequence[Path]) -> None:
    """Remove ``directories`` (deepest first) while they are empty: a file in one, whoever wrote it, keeps it and
    its parents."""
    for directory in directories:
        try:
            directory.rmdir()
        except FileNotFoundError:  # removed by someone else: its parents may still be empty
            continue
        except OSError:  # not empty: keep it and everything above it
            return


def _git(source_dir: Path, *args: str) -> str | None:
    """stdout of ``git args`` run in ``source_dir``, or None when git is missing or fails (no checkout)."""
    try:
        done = subprocess.run(["git", *args], cwd=source_dir, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(source_dir: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of the checkout holding ``source_dir``; (None, None) when
    the package is not a git checkout. The package's own ``__init__.py`` must be tracked: a package installed into a
    virtualenv that happens to sit inside some other checkout is not that checkout's code."""
    if _git(source_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit = _git(source_dir, "rev-parse", "HEAD")
    status = _git(source_dir, "status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def provenance(bag: Path, out_dir: Path, config_path: Path | None, overrides: Sequence[str],
               max_frames: int | None, ground_truth_topic: str) -> dict[str, Any]:
    """What produced a report: the inputs, the package version and commit, and the equivalent ``tsg`` command."""
    import trusted_scene_graph

    package_dir = Path(trusted_scene_graph.__file__).resolve().parent
    commit, dirty = git_commit(package_dir)
    command = ["tsg", "eval", str(bag)]
    if config_path is not None:
        command += ["--config", str(config_path)]
    for override in overrides:
        command += ["--set", override]
    command += ["--out", str(out_dir)]
    if max_frames is not None:
        command += ["--max-frames", str(max_frames)]
    command += ["--ground-truth-topic", ground_truth_topic]
    return {
        "bag": str(Path(bag).resolve()),
        "config": None if config_path is None else str(Path(config_path).resolve()),
        "overrides": list(overrides),
        "max_frames": max_frames,
        "ground_truth_topic": ground_truth_topic,
        "package_version": trusted_scene_graph.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "command": shlex.join(command),
    }


def report_title(bag: Path, out_dir: Path, overrides: Sequence[str]) -> str:
    """``Evaluation: VARIANT (bag NAME; --set a=b c=d)``: the variant is the output directory's name."""
    details = [f"bag {Path(bag).resolve().name}"]
    if overrides:
        details.append("--set " + " ".join(overrides))
    return f"Evaluation: {Path(out_dir).resolve().name} ({'; '.join(details)})"


def ground_truth_note(metrics: Mapping[str, Any]) -> str | None:
    """Why nothing was scored when the bag has no ground truth on the topic evaluated, or None when it has."""
    inputs = metrics["input"]
    if inputs["has_ground_truth"]:
        return None
    topic = inputs.get("ground_truth_topic", "/ground_truth")
    others = [name for name, info in inputs.get("bag_topics", {}).items()
              if info["type"].endswith("/GroundTruth") and name != topic]
    if others:
        hint = f"the bag has GroundTruth on {', '.join(others)}: pass --ground-truth-topic {others[0]}"
    elif inputs.get("read_error"):  # the topic may well be in the part of the bag that cannot be read
        return (f"no ground truth on topic {topic} before the bag's damage: only timing and frame counts were "
                "measured, nothing was scored (the ground truth may lie after the damage)")
    else:
        hint = "if it is on another topic, pass --ground-truth-topic TOPIC"
    return (f"no ground truth on topic {topic}: only timing and frame counts were measured, nothing was scored "
            f"({hint})")


def not_applicable(metrics: Mapping[str, Any], path: str) -> str | None:
    """Why the metric at ``path`` cannot apply to this bag (its input is not in the bag), or None when it can."""
    inputs = metrics["input"]
    if inputs.get("missing_topics") and metrics.get("frames", {}).get("camera_frames", 0) == 0:
        damage = " before the bag's damage" if inputs.get("read_error") else ""
        return f"no camera frames could be assembled (missing {', '.join(inputs['missing_topics'])}{damage})"
    if not inputs["has_ground_truth"]:
        return f"no ground truth on {inputs.get('ground_truth_topic', '/ground_truth')}"
    if path.startswith(_EE_PATHS):
        if not inputs.get("has_ee_pose", True):
            return f"no end-effector pose ({inputs.get('ee_pose_topic', 'topics.ee_pose')}) in the bag"
        if inputs.get("ground_truth_with_gripper", 1) == 0:
            return "no gripper in the ground truth"
    if path.startswith(_GOAL_PATHS) and inputs.get("ground_truth_with_goal", 1) == 0:
        return "the task has no goal"
    return None


def lookup(metrics: Mapping[str, Any], path: str) -> Any:
    node: Any = metrics
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _is_metres(path: str) -> bool:
    """Whether the metric at ``path`` (a dotted path or a bare key) is a distance in metres."""
    return path.rsplit(".", 1)[-1].endswith("_m") or path in _METRE_PATHS


def _fmt_metric(path: str, value: Any) -> str:
    """A metric's value for the report: distances (keys ending ``_m``, and :data:`_METRE_PATHS`) in centimetres with
    2 decimals."""
    if _is_metres(path) and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value * 100.0:.2f} cm"
    return _fmt(value)


def _fmt_column(path: str, values: Sequence[Any], min_decimals: int = 3, max_decimals: int = 6) -> list[str]:
    """One table column in one format: distances in cm, integers as they are, and every other number with the same
    decimals, enough for the smallest nonzero value to keep 3 significant digits (``min_decimals`` to
    ``max_decimals``)."""
    if _is_metres(path):
        return [_fmt_metric(path, value) for value in values]
    magnitudes = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v != 0.0]
    decimals = max([min_decimals, *(min(max_decimals, 2 - math.floor(math.log10(v))) for v in magnitudes)])
    return [f"{v:.{decimals}f}" if isinstance(v, float) and math.isfinite(v) else _fmt(v) for v in values]


def _column_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str], first: str, section: str,
                  min_decimals: int = 3) -> list[str]:
    """A table of one row per name of ``rows`` and one column per metric, each column in one format."""
    cells = [_fmt_column(f"{section}.{column}", [row.get(column) for row in rows.values()], min_decimals)
             for column in columns]
    return _table([(name, *(column[i] for column in cells)) for i, name in enumerate(rows)], (first, *columns))


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def target_samples(metrics: Mapping[str, Any], path: str) -> int | None:
    """How many samples (pairs, edges: :data:`TARGET_SAMPLES`) the target at ``path`` was measured on; None when the
    metrics do not say (an older metrics.json)."""
    count = lookup(metrics, TARGET_SAMPLES[path])
    return int(count) if isinstance(count, (int, float)) and not isinstance(count, bool) else None


def target_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, status) per target; status is "met", "missed", "too few samples (n=N)" (fewer than
    :data:`MIN_TARGET_SAMPLES`: :func:`target_samples`), "no data" (the bag has the input, nothing was measured) or
    "not applicable: WHY" (the bag cannot have it)."""
    rows = []
    for path, comparison, target in SIM_TARGETS:
        value = lookup(metrics, path)
        reason = not_applicable(metrics, path)
        samples = target_samples(metrics, path)
        if reason is not None:
            status = f"not applicable: {reason}"
        elif not isinstance(value, (int, float)) or not math.isfinite(value):
            status = "no data"
        elif samples is not None and samples < MIN_TARGET_SAMPLES:
            status = f"too few samples (n={samples})"
        else:
            status = "met" if (value >= target if comparison == ">=" else value <= target) else "missed"
        target_text = _fmt_metric(path, target) if _is_metres(path) else f"{target:g}"
        rows.append((f"`{path}`", _fmt_metric(path, value), f"{comparison} {target_text}", status))
    return rows


# What a section's numbers mean beyond their names.
SECTION_NOTES = {
    "trust": ("Every candidate edge counts, an edge and its converse (left_of, right_of) both, as both are published "
              "(`tsg trust report` counts them once, as one fact). `threshold_at_target_precision` and "
              "`coverage_at_target_precision` choose the threshold on these same edges (an in-sample oracle); "
              "`configured_threshold` is the one the graph was pruned at (`threshold_source`: the model's own, "
              "chosen with a precision guarantee, or `trust.threshold`, which sets the guarantee aside)."),
}


def render_markdown(metrics: Mapping[str, Any], title: str, figures: list[str], missing_figures: list[str]) -> str:
    inputs, frames = metrics["input"], metrics["frames"]
    lines = [f"# {title}", "", f"Bag: `{inputs['bag']}`", ""]
    # Warnings first (a damaged bag explains everything below), each as a banner of its own.
    for warning in metrics.get("warnings", []):
        lines += [f"> **Warning:** {warning}", ""]
    note = ground_truth_note(metrics)
    if note is not None:
        lines += [f"> **Not scored:** {note}.", ""]
    if "provenance" in metrics:
        run = metrics["provenance"]
        lines += ["## Run", ""]
        lines += _table([
            ("command", f"`{run['command']}`"),
            ("config", f"`{run['config']}`" if run["config"] else "the default config"),
            ("overrides", ", ".join(f"`{o}`" for o in run["overrides"]) or "none"),
            ("package version", _fmt(run["package_version"])),
            ("git commit", (run["git_commit"] or "not a git checkout")
             + (" (with uncommitted changes)" if run["git_dirty"] else "")),
        ], ("", "value"))
    lines += ["## Input", ""]
    lines += _table([
        ("messages read", _fmt(inputs["messages_read"])),
        ("camera frames", _fmt(frames["camera_frames"])),
        ("frames evaluated", _fmt(frames["evaluated"])),
        ("episodes", _fmt(frames["episodes"])),
        ("frames failed", _fmt(frames["failed"])),
        ("frames without ground truth", _fmt(frames["without_ground_truth"])),
        ("frames out of order (skipped)", _fmt(frames["out_of_order"])),
        ("frames incomplete (a colour image without the other camera inputs: skipped)",
         _fmt(frames.get("incomplete", 0))),
        ("frames scored taking the graph frame as the truth frame (no tf)",
         _fmt(frames["graph_frame_taken_as_truth_frame"])),
        ("frames whose static extrinsic differs from the bag's tf", _fmt(frames.get("extrinsic_differs_from_tf", 0))),
        ("frames without end-effector distances (pose in a frame the tf does not reach)",
         _fmt(frames.get("ee_pose_not_in_truth_frame", 0))),
        ("missing topics", ", ".join(inputs["missing_topics"]) or "none"),
        ("skipped message types", ", ".join(f"{k} ({v})" for k, v in inputs["skipped_types"].items()) or "none"),
        ("undecodable messages", ", ".join(f"{k} ({v})" for k, v in inputs["undecodable"].items()) or "none"),
        ("unexpected types on known topics",
         ", ".join(f"{k} ({v})" for k, v in inputs["unexpected_types"].items()) or "none"),
        ("read error", inputs["read_error"] or "none"),
        ("messages of topics not used (not decoded)", _fmt(inputs.get("messages_not_read", 0))),
    ], ("", "value"))
    if frames["failure_reasons"]:
        lines += ["Frame failures:", ""] + [f"- {count} x {reason}" for reason, count in
                                             frames["failure_reasons"].items()] + [""]
    lines += ["## Simulated-benchmark targets", ""]
    # n: the pairs or edges each target was measured on (TARGET_SAMPLES); fewer than MIN_TARGET_SAMPLES judge nothing.
    lines += _table([(metric, value, target,
                      "n/a" if status.startswith("not applicable") else _fmt(target_samples(metrics, path)), status)
                     for (path, _, _), (metric, value, target, status) in zip(SIM_TARGETS, target_rows(metrics),
                                                                                strict=True)],
                    ("metric", "value", "target", "n", "status"))
    lines += [f"A target measured on fewer than {MIN_TARGET_SAMPLES} pairs or edges is not judged: too few samples.",
              ""]

    def cell(path: str, value: Any) -> str:
        if path == "trust.configured_threshold":
            return threshold_text(value, _fmt)  # the prune-all sentinel in words, not as "1.000"
        text = _fmt_metric(path, value)
        return "not applicable" if text == "n/a" and not_applicable(metrics, path) else text

    for section in ("detection", "relations", "trust", "distance", "reward"):
        values = metrics[section]
        reason = not_applicable(metrics, section)
        if reason is not None:  # the whole section needs an input the bag does not have
            lines += [f"## {section.capitalize()}", "", f"Not applicable: {reason}.", ""]
            continue
        flat = [(f"`{k}`", cell(f"{section}.{k}", v)) for k, v in values.items()
                if not isinstance(v, (Mapping, list))]
        lines += [f"## {section.capitalize()}", ""] + _table(flat, ("metric", "value"))
        if section == "trust":
            lines += [SECTION_NOTES["trust"], ""]
        for key, sub in values.items():
            sub_reason = not_applicable(metrics, f"{section}.{key}")
            if isinstance(sub, Mapping) and sub_reason is not None:
                lines += [f"`{section}.{key}`: not applicable: {sub_reason}.", ""]
            elif isinstance(sub, Mapping) and sub and all(isinstance(v, Mapping) for v in sub.values()):
                columns = sorted({c for v in sub.values() for c in v})
                lines += [f"`{section}.{key}`:", ""]
                lines += _column_table(sub, columns, key, f"{section}.{key}")
            elif isinstance(sub, Mapping) and sub and key != "spearman_per_episode":
                lines += [f"`{section}.{key}`:", ""]
                lines += _table([(f"`{k}`", cell(f"{section}.{key}.{k}", v)) for k, v in sub.items()],
                                ("metric", "value"))
    if metrics["timing"]:
        lines += ["## Timing", ""]
        timing = metrics["timing"]
        # Milliseconds with 2 decimals, 3 (microseconds) in a column with a stage under 0.1 ms.
        median, p95 = (_fmt_column(f"timing.{key}", [v[key] for v in timing.values()], 2, 3)
                       for key in ("median_ms", "p95_ms"))
        lines += _table([(stage, median[i], p95[i], _fmt(v["count"])) for i, (stage, v) in enumerate(timing.items())],
                        ("stage", "median [ms]", "p95 [ms]", "frames"))
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures]
    if missing_figures:
        lines += ["", "Not drawn (nothing to draw): " + ", ".join(missing_figures)]
    return "\n".join(lines) + "\n"


def write_report(metrics: Mapping[str, Any], samples: Any, out_dir: Path, title: str = "Evaluation report") -> None:
    """Write ``metrics.json``, the PNGs, ``report.md`` and the labelled edge table ``edges.npz`` (the training data of
    ``tsg trust train``: one row per fact, an edge and its converse being one; each row's group is its scene,
    ``<task>/episode-<n>@<fingerprint of the ground truth>``, whatever the bag is called) into ``out_dir`` (created if
    needed).

    The figures this function draws that an earlier run left are deleted first, so a figure this run has nothing
    to draw is not shown stale next to the new report; no other file in ``out_dir`` is touched."""
    out_dir = prepare_output_dir(out_dir)
    replace_text(out_dir / "metrics.json", json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n")
    trust = np.array(samples.edges["trust"])
    correct = np.array(samples.edges["correct"], dtype=bool)
    features = (np.concatenate(samples.edge_features) if samples.edge_features
                else np.zeros((0, len(FEATURE_NAMES)), np.float32))
    facts = samples.edges["representative"]
    episodes = samples.edges["episode"][facts]
    groups = np.array([samples.episode_scene[episode] for episode in episodes.tolist()], dtype=str)
    EdgeTable(features, correct[facts], groups).save(out_dir / EDGES_FILE)
    drawings = {
        "roc.png": lambda p: plots.plot_roc({"trust": (trust, correct)}, p, "Relation edges: ROC"),
        "risk_coverage.png": lambda p: plots.plot_risk_coverage({"trust": (trust, correct)}, p,
                                                                "Relation edges: risk vs coverage"),
        "reliability.png": lambda p: plots.plot_reliability(trust, correct, p, "Relation edges: reliability"),
        "distance_ee_object.png": lambda p: plots.plot_distance_scatter(
            samples.ee["perceived_m"], samples.ee["true_m"], p, "End effector to object distance"),
        "distance_object_pairs.png": lambda p: plots.plot_distance_scatter(
            samples.pairs["perceived_m"], samples.pairs["true_m"], p, "Object pair distance"),
        "timing.png": lambda p: plots.plot_timing(metrics["timing"], p, "Time per frame and stage"),
    }
    remove_files(out_dir, drawings)
    figures, missing = [], []
    for name, draw in drawings.items():
        try:
            draw(out_dir / name)
            figures.append(name)
        except EvaluationError:
            missing.append(name)
    replace_text(out_dir / "report.md", render_markdown(json_ready(metrics), title, figures, missing))
