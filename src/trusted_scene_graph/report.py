"""Human-readable output shared by the CLI commands: graph tables, distance plots, JSON summaries."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.files import replace_text
from trusted_scene_graph.graph.model import SceneGraph


@dataclass(frozen=True)
class DistanceSample:
    """Perceived vs true distance at time ``t`` (seconds since the first frame)."""

    t: float
    perceived_m: float
    true_m: float


def plain_table(title: str, columns: Sequence[str], right: Sequence[str] = ()) -> Table:
    """A rich table whose title and headers are shown as written: rich reads ``[m]`` in a str as a markup tag and
    drops it, so units would vanish. Add rows with :func:`add_plain_row` for the same reason (labels, paths)."""
    table = Table(title=Text(title, style="table.title"))  # a str title gets this style from rich, a Text does not
    for column in columns:
        table.add_column(Text(column), justify="right" if column in right else "left")
    return table


def add_plain_row(table: Table, *cells: str) -> None:
    """Add a row whose cells are shown as written (no markup)."""
    table.add_row(*(Text(cell) for cell in cells))


def graph_tables(graph: SceneGraph) -> list[Table]:
    """Objects and kept relations of a graph as rich tables."""
    object_columns = ("id", "label", "score", "centroid [m]", "size [m]", "valid depth", "age")
    objects = plain_table(f"scene graph @ {graph.stamp_ns / 1e9:.3f} s ({graph.frame_id})", object_columns,
                          right=[c for c in object_columns if c != "label"])
    for obj in graph.objects:
        add_plain_row(objects, str(obj.id), obj.label, f"{obj.score:.2f}",
                      " ".join(f"{v:+.3f}" for v in obj.centroid_m), " ".join(f"{v:.3f}" for v in obj.size_m),
                      f"{obj.depth_valid_fraction:.0%}", str(obj.track_age))
    labels = {obj.id: f"#{obj.id} {obj.label}" for obj in graph.objects}
    relations = plain_table(f"relations kept at trust >= {graph.trust_threshold:.2f} ({graph.num_pruned} pruned)",
                            ("subject", "predicate", "object", "value [m]", "margin [m]", "trust"))
    for rel in graph.relations:
        value = "" if math.isnan(rel.value_m) else f"{rel.value_m:.3f}"
        add_plain_row(relations, labels.get(rel.subject_id, str(rel.subject_id)), rel.predicate,
                      labels.get(rel.object_id, str(rel.object_id)), value, f"{rel.margin_m:+.3f}",
                      f"{rel.trust:.2f}")
    return [objects, relations]


def distance_table(samples: Sequence[DistanceSample], max_rows: int = 20) -> Table:
    """Perceived vs true distance over time, thinned to at most ``max_rows`` evenly spaced rows."""
    columns = ("t [s]", "perceived [m]", "true [m]", "error [cm]")
    table = plain_table("gripper-object distance over time", columns, right=columns)
    stride = max(1, math.ceil(len(samples) / max_rows))
    for sample in samples[::stride]:
        add_plain_row(table, f"{sample.t:.2f}", f"{sample.perceived_m:.3f}", f"{sample.true_m:.3f}",
                      f"{(sample.perceived_m - sample.true_m) * 100:+.1f}")
    return table


def print_tables(tables: Sequence[Table], console: Console | None = None) -> None:
    console = console or Console()
    for table in tables:
        console.print(table)


def plot_distances(samples: Sequence[DistanceSample], path: Path, title: str) -> None:
    """Perceived and true distance over time as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on robots or CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    axes.plot([s.t for s in samples], [s.true_m for s in samples], label="true (simulator)", linewidth=2)
    axes.plot([s.t for s in samples], [s.perceived_m for s in samples], "o-", markersize=3,
              label="perceived (/scene_graph/query_distance)")
    axes.set_xlabel("time [s]")
    axes.set_ylabel("distance [m]")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


class OutputFileError(TsgError):
    """An output file (a command's ``--out``) that cannot be written."""


def check_output_file(path: Path, option: str = "--out") -> None:
    """Refuse, before a command does its work, an output file that could not be written at its end: a directory, a
    path under a file, a directory without write permission. Creates nothing (:func:`write_json` makes the missing
    parent directories)."""
    path = Path(path)
    if path.is_dir():
        raise OutputFileError(f"{option} {path} is a directory; give a file path, e.g. {path / 'result.json'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:  # the nearest existing one: it is written into
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputFileError(f"{option} {path}: {ancestor} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass  # the surest test of writability: os.access misses read-only mounts and ACLs
    except OSError as exc:
        raise OutputFileError(f"{option} {path}: cannot write in {ancestor}: {exc.strerror or exc}") from exc


def write_json(data: dict, path: Path) -> None:
    """``data`` as indented JSON, written atomically (a reader never sees half a file), parents made as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
