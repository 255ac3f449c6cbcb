"""The demo's rich tables print their units and labels as written (rich would read `[m]` as a markup tag)."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from trusted_scene_graph.graph.model import ObjectNode, Relation, SceneGraph
from trusted_scene_graph.report import DistanceSample, distance_table, graph_tables, print_tables


def rendered(tables) -> str:
    console = Console(file=io.StringIO(), width=200)
    print_tables(tables, console)
    return console.file.getvalue()


def graph() -> SceneGraph:
    objects = (
        ObjectNode(1, "gripper", 1.0, (0, 0, 4, 4), np.array([0.1, 0.2, 0.3]), np.array([0.05, 0.05, 0.05]), 1.0, 3),
        # A user's label with brackets must not be taken for markup either.
        ObjectNode(2, "[red] cube", 0.9, (5, 5, 4, 4), np.array([0.1, 0.2, 0.4]), np.array([0.04, 0.04, 0.04]), 0.8),
    )
    relations = (Relation(1, "above", 2, float("nan"), 0.05, 0.9), Relation(1, "distance", 2, 0.1, 0.1, 1.0))
    return SceneGraph(1_500_000_000, "world[0]", objects, relations, trust_threshold=0.6, num_pruned=2)


def test_the_graph_tables_show_every_unit_and_bracketed_labels_and_frames():
    text = rendered(graph_tables(graph()))
    for header in ("centroid [m]", "size [m]", "value [m]", "margin [m]"):
        assert header in text, header
    assert "[red] cube" in text and "#2 [red] cube" in text
    assert "scene graph @ 1.500 s (world[0])" in text
    assert "+0.100 +0.200 +0.300" in text  # the cells are still there


def test_the_distance_table_shows_every_unit():
    text = rendered([distance_table([DistanceSample(0.5, 0.12, 0.125)])])
    for header in ("t [s]", "perceived [m]", "true [m]", "error [cm]"):
        assert header in text, header
    assert "-0.5" in text  # (0.12 - 0.125) m in cm
