"""Specification of geometric relations and their margins (trusted_scene_graph.relations.geometric)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.config import Config
from trusted_scene_graph.graph import ObjectNode, Relation
from trusted_scene_graph.relations import (
    QUANTITATIVE_PREDICATES,
    RelationError,
    RelationSettings,
    compute_relations,
    horizontal_axes,
    margin_trust,
    object_dimensions_m,
    relations_from_boxes,
    size_measure_m,
)

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
    assert sorted(edges(relations, 1, 2)) == ["above", "distance", "far", "horizontal_offset", "in_front_of",
                                              "left_of", "surface_distance", "vertical_offset"]
    # B (0.2 m cube) is bigger and taller than A (0.1 m cube); A hovers 0.15 m above B's top, so it is not on it.
    assert sorted(edges(relations, 2, 1)) == ["behind", "below", "bigger_than", "far", "right_of", "taller_than"]
    assert len(relations) == 14


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
    # Nor on_top_of (neither centre is above the other), bigger_than or taller_than (same size).
    assert sorted(edges(relations, 1, 2)) == ["distance", "horizontal_offset", "near", "surface_distance",
                                              "vertical_offset"]
    assert sorted(edges(relations, 2, 1)) == ["near"]


def test_every_qualitative_edge_trust_is_the_logistic_of_its_margin_over_the_scale():
    settings = RelationSettings(margin_scale_m=0.05)
    for rel in compute_relations([A, B], ALONG_X, settings):
        if rel.predicate not in QUANTITATIVE_PREDICATES:
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
    with pytest.raises(RelationError, match=r"^the camera looks straight up or down \(camera_forward_graph \[.*\]\) "
                                            r"and no image-up direction was given; left/right and front/behind are "
                                            r"undefined$"):
        compute_relations([A, B], np.array(forward), RelationSettings())


def test_a_camera_looking_straight_down_with_a_vertical_image_up_direction_raises_a_relation_error():
    with pytest.raises(RelationError, match=r"its image-up direction camera_up_graph \[0.0, 0.0, 1.0\] is not "
                                            r"horizontal either"):
        horizontal_axes(np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0]))


def test_a_top_down_camera_takes_forward_from_the_image_up_direction():
    # Looking down with the image's up towards graph +x: left is +y, as for a camera looking along +x.
    top_down = edges(compute_relations([A, B], np.array([0.0, 0.0, -1.0]), RelationSettings(),
                                       camera_up_graph=np.array([1.0, 0.0, 0.0])), 1, 2)
    along_x = edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2)
    assert set(top_down) == set(along_x)


def camera_rotation(optical_axis, image_up):
    """Rotation (columns: the optical x, y, z axes in the graph frame) of a camera with these axes."""
    z = np.asarray(optical_axis, float) / np.linalg.norm(optical_axis)
    y = -np.asarray(image_up, float)
    y = y - (y @ z) * z  # image up must be perpendicular to the optical axis
    y /= np.linalg.norm(y)
    return np.column_stack([np.cross(y, z), y, z])  # x = y cross z: a right-handed optical frame (x right, y down)


def image_column(point, rotation, camera_position):
    x, _, z = rotation.T @ (np.asarray(point, float) - camera_position)
    return 320.0 + 500.0 * x / z


# Cameras looking straight down, 85 degrees down, straight up and 85 degrees up, facing graph +x; then straight up and
# down with the top of the image towards graph +y.
_STEEP = math.radians(85.0)


@pytest.mark.parametrize("optical_axis, image_up", [
    ([0.0, 0.0, -1.0], [1.0, 0.0, 0.0]),
    ([math.cos(_STEEP), 0.0, -math.sin(_STEEP)], [math.sin(_STEEP), 0.0, math.cos(_STEEP)]),
    ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
    ([math.cos(_STEEP), 0.0, math.sin(_STEEP)], [-math.sin(_STEEP), 0.0, math.cos(_STEEP)]),
    ([0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
    ([0.0, 0.0, -1.0], [0.0, 1.0, 0.0]),
])
def test_left_of_is_image_left_for_a_camera_looking_steeply_down_or_up(optical_axis, image_up):
    # Two points 1 m along the optical axis, offset to either side of it across the image.
    rotation = camera_rotation(optical_axis, image_up)
    camera = np.array([0.0, 0.0, 1.0])
    ahead = camera + rotation[:, 2]
    first, second = ahead - 0.2 * rotation[:, 0], ahead + 0.2 * rotation[:, 0]
    assert image_column(first, rotation, camera) < 320.0 < image_column(second, rotation, camera)
    relations = relations_from_boxes([1, 2], np.array([first, second]), np.full((2, 3), 0.02), rotation[:, 2],
                                     RelationSettings(), rotation @ [0.0, -1.0, 0.0])
    assert "left_of" in edges(relations, 1, 2) and "right_of" in edges(relations, 2, 1)
    assert "right_of" not in edges(relations, 1, 2)


def test_the_steep_fallback_turns_smoothly_into_the_viewing_direction_at_the_switch():
    # Just either side of the 10 degree switch, a camera facing +x (tilted up or down) keeps forward = +x.
    for pitch_deg in (-81.0, -79.0, 79.0, 81.0):
        pitch = math.radians(pitch_deg)
        optical_axis = np.array([math.cos(pitch), 0.0, math.sin(pitch)])
        image_up = np.array([-math.sin(pitch), 0.0, math.cos(pitch)])
        forward, left = horizontal_axes(optical_axis, image_up)
        assert forward == pytest.approx([1.0, 0.0, 0.0]) and left == pytest.approx([0.0, 1.0, 0.0])


def rolled_camera(pitch_deg: float, roll_deg: float, heading_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(optical axis, image up) of a camera facing ``heading_deg`` from graph +x, pitched up by ``pitch_deg`` and
    rolled clockwise (as seen from behind it) by ``roll_deg`` about its optical axis."""
    pitch, roll, heading = (math.radians(v) for v in (pitch_deg, roll_deg, heading_deg))
    level = np.array([math.cos(heading), math.sin(heading), 0.0])
    optical_axis = math.cos(pitch) * level + np.array([0.0, 0.0, math.sin(pitch)])
    unrolled_up = -math.sin(pitch) * level + np.array([0.0, 0.0, math.cos(pitch)])
    unrolled_left = np.cross(unrolled_up, optical_axis)
    return optical_axis, math.cos(roll) * unrolled_up + math.sin(roll) * unrolled_left


@pytest.mark.parametrize("roll_deg", [0.0, 20.0, -45.0, 70.0])
def test_left_turns_continuously_with_a_rolled_camera_from_straight_down_to_straight_up(roll_deg):
    # A wrist camera rolled about its axis, swept in 1 degree steps: left never jumps (it used to switch by up to the
    # roll angle at 10 degrees from vertical), and two points on either side of the image centre, one above the other
    # in the image too, are left_of / right_of as the image shows them.
    camera = np.array([0.0, 0.0, 1.0])
    previous_left = None
    for pitch_deg in np.arange(-90.0, 90.5, 1.0):
        optical_axis, image_up = rolled_camera(pitch_deg, roll_deg, heading_deg=30.0)
        forward, left = horizontal_axes(optical_axis, image_up)
        if previous_left is not None:
            assert math.degrees(math.acos(min(1.0, float(left @ previous_left)))) < 3.0, pitch_deg
        previous_left = left
        rotation = camera_rotation(optical_axis, image_up)
        ahead = camera + optical_axis
        first = ahead - 0.2 * rotation[:, 0] - 0.05 * rotation[:, 1]
        second = ahead + 0.2 * rotation[:, 0] + 0.05 * rotation[:, 1]
        assert image_column(first, rotation, camera) < 320.0 < image_column(second, rotation, camera)
        relations = relations_from_boxes([1, 2], np.array([first, second]), np.full((2, 3), 0.02), optical_axis,
                                         RelationSettings(), image_up)
        assert "left_of" in edges(relations, 1, 2) and "right_of" in edges(relations, 2, 1), pitch_deg


def test_a_level_camera_in_portrait_takes_left_from_its_viewing_direction():
    # Rolled 90 degrees, image-left points straight down: it says nothing about the horizontal plane, so left is the
    # viewing direction turned counter-clockwise, as for a camera that is not rolled.
    for pitch_deg in (-3.0, 0.0, 3.0):
        optical_axis, image_up = rolled_camera(pitch_deg, 90.0, heading_deg=90.0)
        forward, left = horizontal_axes(optical_axis, image_up)
        assert forward == pytest.approx([0.0, 1.0, 0.0], abs=1e-12) and left == pytest.approx([-1.0, 0.0, 0.0],
                                                                                               abs=1e-12)


@pytest.mark.parametrize(("pitch_deg", "roll_deg"), [(-20.0, 0.0), (-20.0, 45.0), (-20.0, 120.0), (-20.0, 180.0),
                                                   (-45.0, 90.0), (-60.0, -150.0)])
def test_in_front_of_is_closer_to_the_camera_however_it_is_rolled(pitch_deg, roll_deg):
    # Front came from image-left turned 90 degrees: a camera rolled past 90 degrees called the farther object in front,
    # and one in portrait called two objects at the same distance one in front of the other.
    optical_axis, image_up = rolled_camera(pitch_deg, roll_deg)
    forward, left = horizontal_axes(optical_axis, image_up)
    assert forward == pytest.approx([1.0, 0.0, 0.0])
    near, far = node(1, (1.0, 0.0, 0.0)), node(2, (3.0, 0.0, 0.0))
    relations = compute_relations([near, far], optical_axis, RelationSettings(), image_up)
    assert "in_front_of" in edges(relations, 1, 2) and "behind" in edges(relations, 2, 1)
    beside = compute_relations([node(1, (2.0, 0.5, 0.0)), node(2, (2.0, -0.5, 0.0))], optical_axis, RelationSettings(),
                               image_up)
    assert not {"in_front_of", "behind"} & ({*edges(beside, 1, 2)} | {*edges(beside, 2, 1)})


@pytest.mark.parametrize("scale", [0.1, 1e-3, 10.0, 1e200])
def test_the_camera_direction_may_have_any_length(scale):
    assert np.vstack(horizontal_axes(scale * ALONG_X)) == pytest.approx(np.vstack(horizontal_axes(ALONG_X)))
    tilted = scale * np.array([1.0, 0.0, -0.3])
    assert edges(compute_relations([A, B], tilted, RelationSettings()), 1, 2).keys() == (
        edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2).keys())


def test_the_vertical_threshold_applies_to_the_unit_direction():
    # [10, 0, -100] is 5.7 degrees from straight down: no stable heading, whatever its horizontal length.
    with pytest.raises(RelationError, match=r"^the camera looks straight up or down \(camera_forward_graph "
                                            r"\[0.0995.*, 0.0, -0.995.*\]\)"):
        horizontal_axes(np.array([10.0, 0.0, -100.0]))
    # [0.1, 0, -0.01] is 5.7 degrees below the horizon: a heading along +x.
    assert horizontal_axes(np.array([0.1, 0.0, -0.01]))[0] == pytest.approx([1.0, 0.0, 0.0])


@pytest.mark.parametrize("direction, shown", [
    ([1.0, 0.0], r"\[1.0, 0.0\]"),
    ([[1.0, 0.0, 0.0]], r"\[\[1.0, 0.0, 0.0\]\]"),
    ([math.nan, 0.0, 0.0], r"\[nan, 0.0, 0.0\]"),
    ([math.inf, 0.0, 0.0], r"\[inf, 0.0, 0.0\]"),
    ([0.0, 0.0, 0.0], r"\[0.0, 0.0, 0.0\]"),
    (["x", 0.0, 0.0], r"\['x', 0.0, 0.0\]"),
])
def test_a_malformed_camera_direction_raises_a_relation_error_naming_it(direction, shown):
    message = rf"must be a finite non-zero 3-vector in the graph frame, got {shown}$"
    with pytest.raises(RelationError, match=rf"^camera_forward_graph {message}"):
        horizontal_axes(direction)
    with pytest.raises(RelationError, match=rf"^camera_forward_graph {message}"):
        compute_relations([A, B], direction, RelationSettings())
    with pytest.raises(RelationError, match=rf"^camera_forward_graph {message}"):
        compute_relations([A], direction, RelationSettings())
    with pytest.raises(RelationError, match=rf"^camera_forward_graph {message}"):
        relations_from_boxes([1, 2], np.array([A.centroid_m, B.centroid_m]), np.array([A.size_m, B.size_m]),
                             direction, RelationSettings())
    with pytest.raises(RelationError, match=rf"^camera_up_graph {message}"):
        compute_relations([A, B], np.array([0.0, 0.0, -1.0]), RelationSettings(), camera_up_graph=direction)


def test_relation_settings_are_read_from_the_config():
    settings = RelationSettings.from_config(Config({"relations.near_m": 0.3, "relations.margin_scale_m": 0.05}))
    assert settings == RelationSettings(near_m=0.3, margin_scale_m=0.05)


def test_the_contact_tolerance_is_read_from_the_config_and_defaults_to_two_centimetres():
    assert RelationSettings().contact_tolerance_m == 0.02
    assert RelationSettings.from_config(Config()).contact_tolerance_m == 0.02
    settings = RelationSettings.from_config(Config({"relations.contact_tolerance_m": 0.05}))
    assert settings.contact_tolerance_m == 0.05


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


# --- on_top_of ---------------------------------------------------------------------------------------------------

# A 1 m table whose top is at z = 1.0 and whose footprint spans x in [0.5, 1.5], y in [-0.5, 0.5].
TABLE = node(1, (1.0, 0.0, 0.5), (1.0, 1.0, 1.0))


def cube_at(x, y, bottom_z, object_id=2, size=0.1):
    return node(object_id, (x, y, bottom_z + size / 2), (size, size, size))


def test_a_cube_resting_on_the_table_is_on_top_of_it_with_the_contact_tolerance_as_margin():
    # Gap 0: contact slack 0.02 - 0 = 0.02, footprint overlaps 0.55 - 0.1 = 0.45 (x) and 0.55 - 0.05 = 0.5 (y),
    # centre 0.55 above the table's: the contact slack is the smallest.
    relations = compute_relations([TABLE, cube_at(1.1, 0.05, 1.0)], ALONG_X, RelationSettings(contact_tolerance_m=0.02))
    on_top = edges(relations, 2, 1)["on_top_of"]
    assert on_top.margin_m == pytest.approx(0.02)
    assert on_top.value_m == pytest.approx(0.0)
    assert on_top.trust == pytest.approx(margin_trust(0.02, 0.02))
    assert "on_top_of" not in edges(relations, 1, 2)


@pytest.mark.parametrize("gap_m", [0.005, -0.005])
def test_a_small_gap_or_interpenetration_within_the_tolerance_still_rests_with_a_smaller_margin(gap_m):
    relations = compute_relations([TABLE, cube_at(1.0, 0.0, 1.0 + gap_m)], ALONG_X, RelationSettings())
    on_top = edges(relations, 2, 1)["on_top_of"]
    assert on_top.margin_m == pytest.approx(0.02 - 0.005)
    assert on_top.value_m == pytest.approx(gap_m)  # the signed gap between the cube's bottom and the table's top


@pytest.mark.parametrize("gap_m", [0.03, -0.03])
def test_a_cube_floating_above_or_sunk_into_the_table_beyond_the_tolerance_is_not_on_top_of_it(gap_m):
    relations = compute_relations([TABLE, cube_at(1.0, 0.0, 1.0 + gap_m)], ALONG_X, RelationSettings())
    assert "on_top_of" not in edges(relations, 2, 1)


def test_a_larger_contact_tolerance_accepts_a_larger_gap():
    floating = cube_at(1.0, 0.0, 1.03)
    relations = compute_relations([TABLE, floating], ALONG_X, RelationSettings(contact_tolerance_m=0.05))
    assert edges(relations, 2, 1)["on_top_of"].margin_m == pytest.approx(0.02)


def test_a_cube_beside_the_table_touching_it_is_not_on_top_of_it():
    beside = node(2, (1.55, 0.0, 0.05), (0.1, 0.1, 0.1))  # touches the table's side face x = 1.5, on the floor
    relations = compute_relations([TABLE, beside], ALONG_X, RelationSettings())
    assert "on_top_of" not in edges(relations, 2, 1) and "on_top_of" not in edges(relations, 1, 2)
    assert "near" in edges(relations, 2, 1)


def test_the_footprint_overlap_decides_at_the_table_edge():
    # Cube footprint x in [1.49, 1.59]: overlap 0.01 m with the table's [0.5, 1.5], the smallest slack.
    overhanging = compute_relations([TABLE, cube_at(1.54, 0.0, 1.0)], ALONG_X, RelationSettings())
    assert edges(overhanging, 2, 1)["on_top_of"].margin_m == pytest.approx(0.01)
    # Footprint x in [1.51, 1.61]: 1 cm past the edge, level with the table top but not resting on it.
    past_the_edge = compute_relations([TABLE, cube_at(1.56, 0.0, 1.0)], ALONG_X, RelationSettings())
    assert "on_top_of" not in edges(past_the_edge, 2, 1)


def test_the_subject_centre_must_be_above_the_object_centre():
    # Two flat (zero-height) plates with overlapping footprints: plate 2 is 1 cm above plate 1, well within the
    # contact tolerance both ways, but only plate 2's centre is above the other's.
    low = node(1, (1.0, 0.0, 0.99), (0.4, 0.4, 0.0))
    high = node(2, (1.0, 0.0, 1.0), (0.4, 0.4, 0.0))
    relations = compute_relations([low, high], ALONG_X, RelationSettings())
    assert edges(relations, 2, 1)["on_top_of"].margin_m == pytest.approx(0.01)  # the contact slack 0.02 - 0.01
    assert "on_top_of" not in edges(relations, 1, 2)


def test_a_thin_plate_lying_on_a_table_top_rests_on_it_by_its_contact_not_by_its_thickness():
    # A 1 cm plate flat on a table top lifted without thickness (seen from above): its centre is only 5 mm above
    # the table's. That is a gate, not a slack: it rests as surely as a cube does (the contact slack, 0.02).
    table_top = node(1, (1.0, 0.0, 0.75), (1.0, 1.0, 0.0))
    plate = node(2, (1.0, 0.0, 0.755), (0.2, 0.2, 0.01))
    assert edges(compute_relations([table_top, plate], ALONG_X, RelationSettings()), 2, 1)["on_top_of"].margin_m == (
        pytest.approx(0.02))


def test_flat_plates_at_the_same_height_are_not_on_top_of_each_other():
    a, b = node(1, (1.0, 0.0, 1.0), (0.4, 0.4, 0.0)), node(2, (1.1, 0.0, 1.0), (0.4, 0.4, 0.0))
    relations = compute_relations([a, b], ALONG_X, RelationSettings())
    assert not [rel for rel in relations if rel.predicate == "on_top_of"]


def test_a_box_without_depth_along_x_rests_on_the_table_when_it_is_over_it():
    # Zero extent along x, as a box lifted from a single depth: its footprint is a segment inside the table's, which
    # would have to move 0.5 m along x to leave it; the contact slack (0.02) stays the smallest.
    flat = node(2, (1.0, 0.0, 1.05), (0.0, 0.1, 0.1))
    assert edges(compute_relations([TABLE, flat], ALONG_X, RelationSettings()), 2, 1)["on_top_of"].margin_m == (
        pytest.approx(0.02))
    beyond = node(2, (1.6, 0.0, 1.05), (0.0, 0.1, 0.1))
    assert "on_top_of" not in edges(compute_relations([TABLE, beyond], ALONG_X, RelationSettings()), 2, 1)


def test_the_footprint_overlap_is_how_far_the_subject_must_move_to_leave_the_object():
    # The cube's footprint x [0.95, 1.05], y [0.25, 0.35] lies inside the table's x [0.5, 1.5], y [-0.5, 0.5]: it
    # must move 0.55 m along x or 0.25 m along y to leave it (not its 0.1 m overlap lengths). With a 0.5 m contact
    # tolerance, the y depth is the smallest slack.
    relations = compute_relations([TABLE, cube_at(1.0, 0.3, 1.0)], ALONG_X, RelationSettings(contact_tolerance_m=0.5))
    assert edges(relations, 2, 1)["on_top_of"].margin_m == pytest.approx(0.25)


def test_a_stack_of_three_gives_on_top_of_only_between_touching_neighbours():
    middle, top = cube_at(1.0, 0.0, 1.0, object_id=2), cube_at(1.0, 0.0, 1.1, object_id=3)
    relations = compute_relations([TABLE, middle, top], ALONG_X, RelationSettings())
    on_top = sorted((rel.subject_id, rel.object_id) for rel in relations if rel.predicate == "on_top_of")
    assert on_top == [(2, 1), (3, 2)]


# --- bigger_than and taller_than ---------------------------------------------------------------------------------


def test_bigger_compares_largest_face_sides_and_taller_compares_heights():
    big_cube = node(1, (1.0, 0.0, 0.1), (0.2, 0.2, 0.2))  # largest face 0.04 m^2: side 0.2 m
    pole = node(2, (1.0, 1.0, 0.2), (0.05, 0.05, 0.4))  # largest face 0.02 m^2: side 0.141 m, 0.4 m tall
    relations = compute_relations([big_cube, pole], ALONG_X, RelationSettings())
    assert edges(relations, 1, 2)["bigger_than"].margin_m == pytest.approx(0.2 - math.sqrt(0.02))
    assert edges(relations, 2, 1)["taller_than"].margin_m == pytest.approx(0.2)
    assert "bigger_than" not in edges(relations, 2, 1) and "taller_than" not in edges(relations, 1, 2)
    assert math.isnan(edges(relations, 1, 2)["bigger_than"].value_m)
    assert edges(relations, 2, 1)["taller_than"].trust == pytest.approx(margin_trust(0.2, 0.02))


def test_bigger_uses_the_geometric_mean_of_the_two_largest_extents():
    a = node(1, (1.0, 0.0, 0.0), (0.1, 0.2, 0.4))  # largest face 0.2 x 0.4: side sqrt(0.08)
    b = node(2, (2.0, 0.0, 0.0), (0.1, 0.1, 0.1))  # side 0.1
    assert edges(compute_relations([a, b], ALONG_X, RelationSettings()), 1, 2)["bigger_than"].margin_m == (
        pytest.approx(math.sqrt(0.08) - 0.1))
    assert size_measure_m(np.array([[0.1, 0.2, 0.4], [0.4, 0.0, 0.2], [0.0, 0.3, 0.0]])) == pytest.approx(
        [math.sqrt(0.08), math.sqrt(0.08), 0.0])


def test_a_flat_table_top_is_bigger_than_a_small_cube_on_it():
    # A table top lifted from above has no visible thickness: its volume is 0, its largest face 1.0 x 1.4 m.
    table = node(1, (1.0, 0.0, 0.75), (1.0, 1.4, 0.0))
    cube = node(2, (1.0, 0.1, 0.77), (0.04, 0.04, 0.04))
    relations = compute_relations([table, cube], ALONG_X, RelationSettings())
    assert edges(relations, 1, 2)["bigger_than"].margin_m == pytest.approx(math.sqrt(1.4) - 0.04)
    assert "bigger_than" not in edges(relations, 2, 1)


def test_the_size_measure_rejects_a_malformed_array():
    with pytest.raises(RelationError, match=r"^sizes_m must have shape \(N, 3\), got \(3,\)$"):
        size_measure_m(np.array([0.1, 0.2, 0.3]))


def test_objects_of_equal_volume_and_height_are_neither_bigger_nor_taller():
    a = node(1, (1.0, 0.0, 0.0), (0.1, 0.4, 0.2))
    b = node(2, (2.0, 0.0, 0.0), (0.4, 0.1, 0.2))
    predicates = {rel.predicate for rel in compute_relations([a, b], ALONG_X, RelationSettings())}
    assert predicates.isdisjoint({"bigger_than", "taller_than"})


# --- measurement edges -------------------------------------------------------------------------------------------


def test_the_measurement_edges_hold_the_hand_computed_values():
    ab = edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2)
    assert ab["surface_distance"].value_m == pytest.approx(SURFACE_AB)
    assert ab["horizontal_offset"].value_m == pytest.approx(math.hypot(0.2, 0.6))
    assert ab["vertical_offset"].value_m == pytest.approx(0.3)  # z of the lower id (A) minus z of B


def test_measurement_edges_carry_their_value_as_margin_and_the_weaker_inputs_trust():
    ab = edges(compute_relations([A, B], ALONG_X, RelationSettings()), 1, 2)
    for predicate in QUANTITATIVE_PREDICATES:
        assert ab[predicate].margin_m == pytest.approx(abs(ab[predicate].value_m))
        assert ab[predicate].trust == pytest.approx(0.7 * 0.8)  # distance_trust(A, B)
        assert ab[predicate].source == "geometry"


def test_the_vertical_offset_goes_from_the_lower_id_and_is_signed_with_a_positive_margin():
    high, low = node(7, (1.0, 0.0, 0.5)), node(3, (1.0, 0.0, 0.2))
    relations = compute_relations([high, low], ALONG_X, RelationSettings())
    vertical = [rel for rel in relations if rel.predicate == "vertical_offset"]
    assert [(rel.subject_id, rel.object_id) for rel in vertical] == [(3, 7)]
    assert vertical[0].value_m == pytest.approx(-0.3)
    assert vertical[0].margin_m == pytest.approx(0.3)


def test_overlapping_boxes_have_surface_distance_zero():
    a, b = node(1, (1.0, 0.0, 0.0), (0.4, 0.4, 0.4)), node(2, (1.1, 0.1, 0.0), (0.4, 0.4, 0.4))
    surface = edges(compute_relations([a, b], ALONG_X, RelationSettings()), 1, 2)["surface_distance"]
    assert surface.value_m == 0.0 and surface.margin_m == 0.0


# --- object dimensions -------------------------------------------------------------------------------------------

BOX_SIZE = np.array([1.0, 2.0, 0.5])  # along graph x, y, z


def test_seen_along_x_the_width_is_the_y_extent_and_the_depth_the_x_extent():
    assert object_dimensions_m(BOX_SIZE, *horizontal_axes(ALONG_X)) == pytest.approx((2.0, 0.5, 1.0))


def test_seen_along_y_width_and_depth_swap():
    assert object_dimensions_m(BOX_SIZE, *horizontal_axes(np.array([0.0, 1.0, 0.0]))) == pytest.approx((1.0, 0.5, 2.0))


def test_at_a_30_degree_heading_width_and_depth_are_the_box_shadows_on_the_camera_axes():
    heading = math.radians(30.0)
    forward, left = horizontal_axes(np.array([math.cos(heading), math.sin(heading), -0.3]))
    width, height, depth = object_dimensions_m(BOX_SIZE, forward, left)
    # left = (-sin 30, cos 30): 1 * 0.5 + 2 * 0.866; forward = (cos 30, sin 30): 1 * 0.866 + 2 * 0.5.
    assert width == pytest.approx(0.5 + 2.0 * math.sqrt(3.0) / 2)
    assert depth == pytest.approx(math.sqrt(3.0) / 2 + 1.0)
    assert height == 0.5
    assert all(isinstance(value, float) for value in (width, height, depth))


def test_at_45_degrees_width_and_depth_are_equal():
    width, _, depth = object_dimensions_m(BOX_SIZE, *horizontal_axes(np.array([1.0, -1.0, 0.0])))
    assert width == pytest.approx(3.0 / math.sqrt(2.0)) and depth == pytest.approx(width)


def test_dimensions_reject_an_axis_that_is_not_a_horizontal_unit_vector():
    with pytest.raises(RelationError, match=r"^forward must be a horizontal unit vector \(see horizontal_axes\), "
                                            r"got \[2.0, 0.0, 0.0\]$"):
        object_dimensions_m(BOX_SIZE, np.array([2.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    with pytest.raises(RelationError, match=r"^left must be a horizontal unit vector"):
        object_dimensions_m(BOX_SIZE, np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    with pytest.raises(RelationError, match=r"^forward must be a horizontal unit vector .* got \[nan, 0.0, 0.0\]$"):
        object_dimensions_m(BOX_SIZE, np.array([np.nan, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))  # NaN fails no test


def test_dimensions_reject_a_negative_or_malformed_size():
    forward, left = horizontal_axes(ALONG_X)
    with pytest.raises(RelationError, match=r"^size_m must be 3 finite non-negative extents in metres, "
                                            r"got \[1.0, -2.0, 0.5\]$"):
        object_dimensions_m(np.array([1.0, -2.0, 0.5]), forward, left)
    with pytest.raises(RelationError, match=r"got \[1.0, 2.0\]$"):
        object_dimensions_m(np.array([1.0, 2.0]), forward, left)


# --- ground truth and input checks -------------------------------------------------------------------------------


def comparable(relations):
    """Relations as tuples whose NaN values compare equal (NaN != NaN would fail list equality)."""
    return [(*rel[:3], None if math.isnan(rel.value_m) else rel.value_m, *rel[4:]) for rel in relations]


def test_relations_from_boxes_needs_only_ids_centroids_and_sizes_and_gives_exact_distances_full_trust():
    centroids = np.array([A.centroid_m, B.centroid_m])
    sizes = np.array([A.size_m, B.size_m])
    truth = relations_from_boxes([1, 2], centroids, sizes, ALONG_X, RelationSettings())
    perfect = [ObjectNode(o.id, o.label, 1.0, (0, 0, 0, 0), o.centroid_m, o.size_m, 1.0) for o in (A, B)]
    assert comparable(truth) == comparable(compute_relations(perfect, ALONG_X, RelationSettings()))
    assert all(rel.trust == 1.0 for rel in truth if rel.predicate in QUANTITATIVE_PREDICATES)


def test_relations_from_boxes_with_scores_and_fractions_matches_compute_relations():
    arrays = relations_from_boxes([1, 2], np.array([A.centroid_m, B.centroid_m]), np.array([A.size_m, B.size_m]),
                                  ALONG_X, RelationSettings(), scores=[0.9, 0.7], depth_valid_fractions=[0.8, 0.95])
    assert comparable(arrays) == comparable(compute_relations([A, B], ALONG_X, RelationSettings()))


def test_duplicate_ids_raise_a_relation_error_naming_them():
    with pytest.raises(RelationError, match=r"^object ids must be unique; repeated: \[4\]$"):
        compute_relations([node(4, (1.0, 0.0, 0.0)), node(4, (2.0, 0.0, 0.0))], ALONG_X, RelationSettings())


def test_a_non_finite_centroid_raises_a_relation_error_naming_the_object():
    with pytest.raises(RelationError, match=r"^object 2 has centroid \[nan, 0.0, 0.0\] m and size \[0.1, 0.1, 0.1\] m; "
                                            r"both must be finite and the size non-negative$"):
        compute_relations([A, node(2, (math.nan, 0.0, 0.0))], ALONG_X, RelationSettings())


def test_a_negative_size_raises_a_relation_error():
    with pytest.raises(RelationError, match=r"^object 2 has centroid .* and size \[0.1, -0.1, 0.1\] m"):
        compute_relations([A, node(2, (1.0, 0.0, 0.0), (0.1, -0.1, 0.1))], ALONG_X, RelationSettings())


def test_malformed_arrays_raise_relation_errors_naming_the_shape():
    with pytest.raises(RelationError, match=r"^centroids_m must have shape \(N, 3\), got \(2, 2\)$"):
        relations_from_boxes([1, 2], np.zeros((2, 2)), np.zeros((2, 2)), ALONG_X, RelationSettings())
    with pytest.raises(RelationError, match=r"^sizes_m must have the shape of centroids_m \(2, 3\), got \(3, 3\)$"):
        relations_from_boxes([1, 2], np.zeros((2, 3)), np.zeros((3, 3)), ALONG_X, RelationSettings())
    with pytest.raises(RelationError, match=r"^ids must hold one id per box \(2\), got shape \(3,\)$"):
        relations_from_boxes([1, 2, 3], np.zeros((2, 3)), np.zeros((2, 3)), ALONG_X, RelationSettings())
    with pytest.raises(RelationError, match=r"^scores must hold one value per object \(2\), got shape \(1,\)$"):
        relations_from_boxes([1, 2], np.zeros((2, 3)), np.zeros((2, 3)), ALONG_X, RelationSettings(), scores=[1.0])


def test_an_object_without_a_3_vector_centroid_raises_a_relation_error():
    broken = ObjectNode(2, "thing", 1.0, (0, 0, 1, 1), np.array([1.0, 2.0]), np.array([0.1, 0.1, 0.1]), 1.0)
    with pytest.raises(RelationError, match=r"^every object needs a 3-vector centroid_m and size_m"):
        compute_relations([A, broken], ALONG_X, RelationSettings())


def test_relations_are_immutable_records_with_the_geometry_source_by_default():
    rel = Relation(1, "left_of", 2, math.nan, 0.4, 0.99)
    assert (rel.subject_id, rel.predicate, rel.object_id, rel.margin_m, rel.trust, rel.source) == (
        1, "left_of", 2, 0.4, 0.99, "geometry")
    with pytest.raises(AttributeError):
        rel.trust = 0.1  # type: ignore[misc]


def test_an_edge_and_a_graph_equal_themselves_recomputed_though_directional_values_are_nan():
    first = compute_relations([A, B], ALONG_X, RelationSettings())
    second = compute_relations([A, B], ALONG_X, RelationSettings())
    assert any(math.isnan(rel.value_m) for rel in first)
    assert first == second and {*first} == {*second}
    assert first[0] != first[0]._replace(margin_m=first[0].margin_m + 1.0)


@pytest.mark.parametrize("bad", [math.nan, -0.5, 1.5])
def test_a_score_or_valid_depth_fraction_outside_0_1_is_refused_naming_the_object(bad):
    # A NaN trust would prune the measurement edges, which are always emitted.
    with pytest.raises(RelationError, match=rf"^scores must be in \[0, 1\]; the object at index 0 has {bad}"):
        relations_from_boxes([1, 2], np.array([A.centroid_m, B.centroid_m]), np.array([A.size_m, B.size_m]), ALONG_X,
                             RelationSettings(), scores=[bad, 0.8])


@pytest.mark.parametrize(("name", "value"), [("near_m", math.nan), ("margin_scale_m", -0.02),
                                             ("contact_tolerance_m", 0.0)])
def test_relation_settings_built_directly_are_checked(name, value):
    with pytest.raises(RelationError, match=rf"^RelationSettings {name} must be a finite number > 0"):
        RelationSettings(**{name: value})
