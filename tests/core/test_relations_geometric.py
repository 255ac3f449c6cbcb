"""Specification of geometric relations and their margins (trusted_scene_graph.relations.geometric)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.config import Config
from trusted_scene_graph.graph import ObjectNode
from trusted_scene_graph.relations import RelationError, RelationSettings, compute_relations, margin_trust

# The camera looks along +x of the graph frame, so "left" (from its viewpoint) is +y and "closer" is smaller x.
ALONG_X = np.array([1.0, 0.0, 0.0])


def node(object_id, centroid, size=(0.1, 0.1, 0.1), score=1.0, fraction=1.0, label="thing"):
    return ObjectNode(object_id, label, score, (0, 0, 1, 1), np.array(centroid, float), np.array(size, float),
                      fraction)


def edges(relations, subject_id, object_id):
    return {rel.predicate: rel for rel in relations if (rel.subject_id, rel.object_id) == (subject_id, object_id)}


# A is 0.6 m left of, 0.3 m above and 0.2 m closer to the camera than B.
A = node(1, (2.0, 0.5, 0.3), (0.1, 0.1, 0.1), score=0.9, fraction=0.8)
B = node(2, (2.2, -0.1, 0.0), (0.2, 0.2, 0.2), score=0.7, fraction=0.95)
# Surface gaps: x 0.2 - 0.15 = 0.05, y 0.6 - 0.15 = 0.45, z 0.3 - 0.15 = 0.15.
SURFACE_AB = math.sqrt(0.05**2 + 0.45**2 + 0.15**2)


def test_relation_errors_are_tsg_errors():
    assert issubclass(RelationError, TsgError)


def test_the_object_at_larger_y_is_left_of_the_other_and_not_right_of_it():
    relations = compute_relations([A, B], ALONG_X, RelationSettings())
    assert "left_of" in edges(relations, 1, 2) and "right_of" not in edges(relations, 1, 2)
    assert "right_of" in edges(relations, 2, 1) and "left_of" not in edges(relations, 2, 1)


def test_the_object_at_larger_z_is_above_the_other_which_is_below_it():
    relations = compute_relations([A, B], ALONG_X, RelationSettings())
    assert "above" in edges(relations, 1, 2) and "below" not in edges(relations, 1, 2)
    assert "below" in edges(relations, 2, 1) and "above" not in edges(relations, 2, 1)


def test_the_object_closer_to_the_camera_is_in_front_of_the_other_which_is_behind_it():
    relations = compute_relations([A, B], ALONG_X, RelationSettings())
    assert "in_front_of" in edges(relations, 1, 2) and "behind" not in edges(relations, 1, 2)
    assert "behind" in edges(relations, 2, 1) and "in_front_of" not in edges(relations, 2, 1)


def test_exactly_the_expected_edges_are_produced_for_a_far_apart_pair():
    relations = compute_relations([A, B], ALONG_X, RelationSettings(near_m=0.15))
    assert sorted(edges(relations, 1, 2)) == ["above", "distance", "far", "in_front_of", "left_of"]
    assert sorted(edges(relations, 2, 1)) == ["behind", "below", "far", "right_of"]
    assert len(relations) == 9


def test_directional_margins_equal_the_centroid_offsets_and_carry_no_value():
    relations = compute_relations([A, B], ALONG_X, RelationSettings())
    ab, ba = edges(relations, 1, 2), edges(relations, 2, 1)
    assert ab["left_of"].margin_m == pytest.approx(0.6)
    assert ba["right_of"].margin_m == pytest.approx(0.6)
    assert ab["above"].margin_m == pytest.approx(0.3)
    assert ba["below"].margin_m == pytest.approx(0.3)
    assert ab["in_front_of"].margin_m == pytest.approx(0.2)
    assert ba["behind"].margin_m == pytest.approx(0.2)
    for predicate in ("left_of", "above", "in_front_of"):
        assert math.isnan(ab[predicate].value_m)
        assert ab[predicate].source == "geometry"


def test_far_is_decided_by_surface_distance_against_near_m_with_the_difference_as_margin():
    relations = compute_relations([A, B], ALONG_X, RelationSettings(near_m=0.15))
    far = edges(relations, 1, 2)["far"]
    assert far.value_m == pytest.approx(SURFACE_AB)
    assert far.margin_m == pytest.approx(SURFACE_AB - 0.15)
    assert "near" not in edges(relations, 1, 2)


def test_near_uses_the_configured_near_m():
    relations = compute_relations([A, B], ALONG_X, RelationSettings(near_m=0.6))
    near = edges(relations, 1, 2)["near"]
    assert near.value_m == pytest.approx(SURFACE_AB)
    assert near.margin_m == pytest.approx(0.6 - SURFACE_AB)
    assert "far" not in edges(relations, 1, 2)
    assert "near" in edges(relations, 2, 1)


def test_touching_objects_are_near_with_the_whole_near_m_as_margin():
    a, b = node(1, (1.0, 0.0, 0.0), (0.2, 0.2, 0.2)), node(2, (1.0, 0.2, 0.0), (0.2, 0.2, 0.2))
    near = edges(compute_relations([a, b], ALONG_X, RelationSettings(near_m=0.15)), 1, 2)["near"]
    assert near.value_m == 0.0
    assert near.margin_m == pytest.approx(0.15)


def test_objects_exactly_at_near_m_are_neither_near_nor_far():
    a, b = node(1, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0)), node(2, (1.0, 0.25, 0.0), (0.0, 0.0, 0.0))
    predicates = set(edges(compute_relations([a, b], ALONG_X, RelationSettings(near_m=0.25)), 1, 2))
    assert "near" not in predicates and "far" not in predicates


def test_objects_at_the_same_place_have_no_directional_edges():
    a, b = node(1, (1.0, 0.0, 0.0)), node(2, (1.0, 0.0, 0.0))
    relations = compute_relations([a, b], ALONG_X, RelationSettings())
    assert sorted(edges(relations, 1, 2)) == ["distance", "near"]
    assert sorted(edges(relations, 2, 1)) == ["near"]


def test_every_edge_trust_is_the_logistic_of_its_margin_over_the_scale():
    settings = RelationSettings(margin_scale_m=0.05)
    for rel in compute_relations([A, B], ALONG_X, settings):
        if rel.predicate != "distance":
            assert rel.trust == pytest.approx(1.0 / (1.0 + math.exp(-rel.margin_m / 0.05)))
            assert rel.trust > 0.5


def test_there_is_one_distance_edge_per_unordered_pair_from_the_lower_id():
    c = node(3, (3.0, 1.0, 1.0))
    relations = compute_relations([B, c, A], ALONG_X, RelationSettings())
    distances = [(rel.subject_id, rel.object_id) for rel in relations if rel.predicate == "distance"]
    assert sorted(distances) == [(1, 2), (1, 3), (2, 3)]


def test_the_distance_edge_holds_the_centroid_distance_and_the_weaker_inputs_trust():
    distance = edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2)["distance"]
    assert distance.value_m == pytest.approx(0.7)  # |(-0.2, 0.6, 0.3)|
    assert distance.margin_m == pytest.approx(0.7)
    assert distance.trust == pytest.approx(0.7 * 0.8)


def test_fewer_than_two_objects_have_no_relations():
    assert compute_relations([], ALONG_X, RelationSettings()) == []
    assert compute_relations([A], ALONG_X, RelationSettings()) == []


def test_left_and_right_follow_the_camera_heading():
    # Looking along +y, "left" is -x.
    a, b = node(1, (-1.0, 2.0, 0.0)), node(2, (1.0, 2.0, 0.0))
    ab = edges(compute_relations([a, b], np.array([0.0, 1.0, 0.0]), RelationSettings()), 1, 2)
    assert ab["left_of"].margin_m == pytest.approx(2.0)
    assert "in_front_of" not in ab and "behind" not in ab


def test_a_camera_tilted_down_uses_its_horizontal_heading():
    tilted = np.array([1.0, 0.0, -1.0]) / math.sqrt(2.0)
    ab = edges(compute_relations([A, B], tilted, RelationSettings()), 1, 2)
    assert ab["left_of"].margin_m == pytest.approx(0.6)
    assert ab["in_front_of"].margin_m == pytest.approx(0.2)


@pytest.mark.parametrize("forward", [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [1e-9, 0.0, -1.0]])
def test_a_camera_looking_straight_down_or_up_without_an_image_up_direction_raises_a_relation_error(forward):
    with pytest.raises(RelationError, match=r"^the camera looks straight up or down and no image-up direction was "
                                            r"given; left/right and front/behind are undefined$"):
        compute_relations([A, B], np.array(forward), RelationSettings())


def test_a_top_down_camera_takes_forward_from_the_image_up_direction():
    # Looking down with the image's up towards graph +x: left is +y, as for a camera looking along +x.
    top_down = edges(compute_relations([A, B], np.array([0.0, 0.0, -1.0]), RelationSettings(),
                                       camera_up_graph=np.array([1.0, 0.0, 0.0])), 1, 2)
    along_x = edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2)
    assert set(top_down) == set(along_x)


def test_relation_settings_are_read_from_the_config():
    settings = RelationSettings.from_config(Config({"relations.near_m": 0.3, "relations.margin_scale_m": 0.05}))
    assert settings == RelationSettings(near_m=0.3, margin_scale_m=0.05)


# --- margin_trust ----------------------------------------------------------------------------------------------


def test_margin_trust_is_one_half_at_zero_margin():
    assert margin_trust(0.0, 0.02) == 0.5


def test_margin_trust_is_the_logistic_at_one_scale():
    assert margin_trust(0.02, 0.02) == pytest.approx(1.0 / (1.0 + math.exp(-1.0)))
    assert margin_trust(-0.02, 0.02) == pytest.approx(1.0 / (1.0 + math.exp(1.0)))


def test_margin_trust_is_monotonic_in_the_margin_and_within_zero_and_one():
    margins = np.linspace(-0.2, 0.2, 81)
    trusts = [margin_trust(float(m), 0.02) for m in margins]
    assert all(0.0 <= t <= 1.0 for t in trusts)
    assert all(later > earlier for earlier, later in itertools.pairwise(trusts))


def test_a_larger_scale_makes_the_same_margin_less_decisive():
    assert margin_trust(0.05, 0.1) < margin_trust(0.05, 0.02)


def test_margin_trust_of_a_very_negative_margin_is_zero_not_an_error():
    assert margin_trust(-20.0, 0.02) == pytest.approx(0.0)
