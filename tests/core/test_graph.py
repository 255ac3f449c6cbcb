"""Specification of the scene-graph model and its distance queries (trusted_scene_graph.graph)."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.graph import GraphError, ObjectNode, Relation, SceneGraph, resolve_object
from trusted_scene_graph.reward.query import query_distance


def node(object_id: int, label: str, centroid, size=(0.1, 0.1, 0.1), score: float = 1.0, fraction: float = 1.0):
    return ObjectNode(object_id, label, score, (0, 0, 1, 1), np.array(centroid, float), np.array(size, float),
                      fraction)


def graph(*objects: ObjectNode, relations=()) -> SceneGraph:
    return SceneGraph(stamp_ns=123, frame_id="world", objects=tuple(objects), relations=tuple(relations))


# A cube at the origin (0.1 m) and a table 3 m away along x and 4 m along y (0.2 m box).
CUBE = node(1, "cube", (0.0, 0.0, 0.0), (0.1, 0.1, 0.1), score=0.9, fraction=0.8)
TABLE = node(2, "Table", (3.0, 4.0, 0.0), (0.2, 0.2, 0.2), score=0.6, fraction=0.95)
SCENE = graph(CUBE, TABLE)


def test_graph_errors_are_tsg_errors():
    assert issubclass(GraphError, TsgError)


def test_objects_and_graphs_compare_by_value_arrays_included():
    assert node(1, "cube", (0.0, 0.0, 0.0)) == node(1, "cube", [0.0, 0.0, 0.0])
    assert node(1, "cube", (0.0, 0.0, 0.0)) != node(1, "cube", (0.0, 0.0, 0.01))
    assert node(1, "cube", (0.0, 0.0, 0.0)) != node(1, "cube", (0.0, 0.0, 0.0), size=(0.2, 0.1, 0.1))
    assert node(1, "cube", (0.0, 0.0, 0.0)) != node(2, "cube", (0.0, 0.0, 0.0))
    assert graph(node(1, "cube", (0, 0, 0)), TABLE) == graph(node(1, "cube", (0, 0, 0)), TABLE)
    assert graph(CUBE, TABLE) != graph(TABLE, CUBE)


# --- resolve_object --------------------------------------------------------------------------------------------


def test_an_object_is_found_by_its_label_ignoring_case_and_surrounding_spaces():
    assert resolve_object(SCENE, "cube") is CUBE
    assert resolve_object(SCENE, "  CUBE ") is CUBE
    assert resolve_object(SCENE, "table") is TABLE


def test_an_object_is_found_by_its_id_with_or_without_a_hash():
    assert resolve_object(SCENE, "#2") is TABLE
    assert resolve_object(SCENE, "2") is TABLE
    assert resolve_object(SCENE, " #1 ") is CUBE


def test_a_label_wins_over_an_id_when_both_match():
    labelled_two = node(5, "2", (0, 0, 0))
    assert resolve_object(graph(CUBE, TABLE, labelled_two), "2") is labelled_two
    assert resolve_object(graph(CUBE, TABLE, labelled_two), "#2") is TABLE


def test_of_several_objects_with_one_label_the_highest_score_is_chosen():
    low = node(1, "cup", (0, 0, 0), score=0.4)
    high = node(7, "cup", (1, 0, 0), score=0.9)
    mid = node(3, "cup", (2, 0, 0), score=0.6)
    assert resolve_object(graph(low, high, mid), "cup") is high


def test_of_several_objects_with_one_label_and_equal_scores_the_lowest_id_is_chosen():
    a, b, c = (node(9, "cup", (0, 0, 0), score=0.8), node(4, "cup", (1, 0, 0), score=0.8),
               node(6, "cup", (2, 0, 0), score=0.8))
    assert resolve_object(graph(a, b, c), "cup") is b
    assert resolve_object(graph(c, a, b), "cup") is b


def test_an_unknown_label_lists_the_known_labels():
    with pytest.raises(GraphError, match=r"^unknown object 'mug'; known labels: \['Table', 'cube'\]$"):
        resolve_object(SCENE, "mug")


def test_an_unknown_id_lists_the_ids_in_the_graph():
    with pytest.raises(GraphError, match=r"^no object with id 9; ids in the graph: \[1, 2\]$"):
        resolve_object(SCENE, "#9")


def test_a_label_in_an_empty_graph_says_the_graph_has_no_objects():
    with pytest.raises(GraphError, match=r"^unknown object 'cube': the scene graph has no objects$"):
        resolve_object(graph(), "cube")


def test_an_id_in_an_empty_graph_says_there_are_no_ids():
    with pytest.raises(GraphError, match=r"^no object with id 1; ids in the graph: \[\]$"):
        resolve_object(graph(), "#1")


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_name_is_rejected_with_a_hint(name):
    with pytest.raises(GraphError, match=r"^empty object name; give a label or an id like '#3'$"):
        resolve_object(SCENE, name)


@pytest.mark.parametrize("name", ["²", "#²", "٣"])
def test_digits_other_than_ascii_are_an_unknown_label_not_an_id(name):
    with pytest.raises(GraphError, match=rf"^unknown object '{name}'; known labels:"):
        resolve_object(SCENE, name)


def test_a_lone_hash_is_an_unknown_label_not_an_id():
    with pytest.raises(GraphError, match=r"^unknown object '#'; known labels:"):
        resolve_object(SCENE, "#")


# --- query_distance --------------------------------------------------------------------------------------------


def test_centroid_distance_is_the_euclidean_distance_between_centroids():
    answer = query_distance(SCENE, "cube", "table", "centroid")
    assert answer.valid
    assert answer.distance_m == pytest.approx(5.0, abs=1e-12)
    assert (answer.subject_id, answer.object_id) == (1, 2)
    assert answer.message == ""


def test_the_default_mode_is_centroid():
    assert query_distance(SCENE, "cube", "table").distance_m == pytest.approx(5.0)
    assert query_distance(SCENE, "cube", "table", "  ").distance_m == pytest.approx(5.0)


def test_surface_distance_is_the_gap_between_the_boxes():
    # Gaps: x 3 - 0.05 - 0.1 = 2.85, y 4 - 0.15 = 3.85, z overlaps: sqrt(2.85^2 + 3.85^2).
    answer = query_distance(SCENE, "#1", "#2", " Surface ")
    assert answer.valid
    assert answer.distance_m == pytest.approx(math.hypot(2.85, 3.85), abs=1e-12)


def test_surface_distance_of_overlapping_objects_is_zero():
    a, b = node(1, "a", (0, 0, 0), (1, 1, 1)), node(2, "b", (0.5, 0, 0), (1, 1, 1))
    assert query_distance(graph(a, b), "a", "b", "surface").distance_m == 0.0


def test_the_answer_trust_is_the_lower_score_times_the_lower_valid_depth_fraction():
    answer = query_distance(SCENE, "table", "cube")
    assert answer.trust == pytest.approx(0.6 * 0.8)
    assert (answer.subject_id, answer.object_id) == (2, 1)


def test_an_invalid_mode_gives_an_invalid_answer_naming_the_modes():
    answer = query_distance(SCENE, "cube", "table", "manhattan")
    assert not answer.valid
    assert math.isnan(answer.distance_m)
    assert answer.trust == 0.0
    assert answer.message == "unknown mode 'manhattan'; expected one of ['centroid', 'surface']"


def test_no_graph_yet_gives_an_invalid_answer_saying_so():
    answer = query_distance(None, "cube", "table")
    assert not answer.valid
    assert math.isnan(answer.distance_m)
    assert answer.message == "no scene graph has been computed yet"


def test_an_unresolvable_name_gives_an_invalid_answer_with_the_resolution_message():
    answer = query_distance(SCENE, "cube", "mug")
    assert not answer.valid
    assert math.isnan(answer.distance_m)
    assert answer.message == "unknown object 'mug'; known labels: ['Table', 'cube']"


def test_the_same_object_on_both_sides_gives_an_invalid_answer_naming_it():
    answer = query_distance(SCENE, "cube", "#1")
    assert not answer.valid
    assert math.isnan(answer.distance_m)
    assert (answer.subject_id, answer.object_id) == (1, 1)
    assert answer.message == "'cube' and '#1' both resolve to object #1"


# --- the model -------------------------------------------------------------------------------------------------


def test_object_by_id_finds_an_object_or_returns_none():
    assert SCENE.object_by_id(2) is TABLE
    assert SCENE.object_by_id(3) is None


def test_labels_are_sorted_and_unique():
    assert graph(node(1, "b", (0, 0, 0)), node(2, "a", (0, 0, 0)), node(3, "b", (0, 0, 0))).labels == ["a", "b"]


def test_to_networkx_has_one_node_per_object_with_its_attributes():
    nx_graph = SCENE.to_networkx()
    assert isinstance(nx_graph, nx.MultiDiGraph)
    assert nx_graph.graph == {"stamp_ns": 123, "frame_id": "world"}
    assert sorted(nx_graph.nodes) == [1, 2]
    attributes = nx_graph.nodes[2]
    assert attributes["label"] == "Table"
    assert attributes["score"] == 0.6
    np.testing.assert_array_equal(attributes["centroid_m"], [3.0, 4.0, 0.0])
    np.testing.assert_array_equal(attributes["size_m"], [0.2, 0.2, 0.2])


def test_to_networkx_has_one_edge_per_relation_keyed_by_predicate():
    relations = (
        Relation(1, "left_of", 2, math.nan, 0.4, 0.99),
        Relation(1, "near", 2, 0.05, 0.1, 0.9),
        Relation(2, "distance", 1, 5.0, 5.0, 0.48, source="query"),
    )
    nx_graph = graph(CUBE, TABLE, relations=relations).to_networkx()
    assert nx_graph.number_of_edges() == 3
    assert sorted(nx_graph[1][2]) == ["left_of", "near"]
    near = nx_graph.edges[1, 2, "near"]
    assert near == {"value_m": 0.05, "margin_m": 0.1, "trust": 0.9, "source": "geometry"}
    assert nx_graph.edges[2, 1, "distance"]["source"] == "query"
    assert nx_graph.has_edge(2, 1, key="distance") and not nx_graph.has_edge(1, 2, key="distance")


def test_an_empty_graph_converts_to_an_empty_networkx_graph():
    nx_graph = graph().to_networkx()
    assert nx_graph.number_of_nodes() == 0
    assert nx_graph.number_of_edges() == 0
