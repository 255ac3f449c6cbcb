"""The all-pairs (vectorised) relations agree with a plain per-pair definition, and give the expected edge counts."""

from __future__ import annotations

import math
from itertools import combinations, permutations

import numpy as np
import pytest

from trusted_scene_graph.geometry.boxes import (
    box_extent_along_m,
    box_surface_distance_m,
    pairwise_box_gaps_m,
    pairwise_box_surface_distances_m,
)
from trusted_scene_graph.graph import ObjectNode
from trusted_scene_graph.graph.model import distance_trust
from trusted_scene_graph.relations import (
    QUALITATIVE_PREDICATES,
    QUANTITATIVE_PREDICATES,
    RelationSettings,
    compute_relations,
    horizontal_axes,
    margin_trust,
    prune_relations,
)


def reference_relations(objects, camera_forward, settings, camera_up=None):
    """The relations written out pair by pair from their definitions: {(subject, predicate, object): edge}."""
    forward, left = horizontal_axes(camera_forward, camera_up)
    found = {}
    for a, b in permutations(objects, 2):
        offset = a.centroid_m - b.centroid_m
        surface = box_surface_distance_m(a.centroid_m, a.size_m, b.centroid_m, b.size_m)
        a_low, a_high = a.centroid_m - a.size_m / 2, a.centroid_m + a.size_m / 2
        b_low, b_high = b.centroid_m - b.size_m / 2, b.centroid_m + b.size_m / 2
        gap_z = a_low[2] - b_high[2]
        # How far a must slide along x (y) to leave b's footprint: to clear b's far side or its near side.
        depth_x = min(a_high[0] - b_low[0], b_high[0] - a_low[0])
        depth_y = min(a_high[1] - b_low[1], b_high[1] - a_low[1])
        qualitative = {
            "left_of": (offset @ left, math.nan),
            "right_of": (-(offset @ left), math.nan),
            "above": (offset[2], math.nan),
            "below": (-offset[2], math.nan),
            "in_front_of": (-(offset @ forward), math.nan),
            "behind": (offset @ forward, math.nan),
            "near": (settings.near_m - surface, surface),
            "far": (surface - settings.near_m, surface),
            "on_top_of": (min(settings.contact_tolerance_m - abs(gap_z), depth_x, depth_y, offset[2]), gap_z),
            # The side of the square with the area of the largest face: the two largest extents' geometric mean.
            "bigger_than": (math.sqrt(math.prod(sorted(a.size_m)[1:])) - math.sqrt(math.prod(sorted(b.size_m)[1:])),
                            math.nan),
            "taller_than": (a.size_m[2] - b.size_m[2], math.nan),
        }
        for predicate, (margin, value) in qualitative.items():
            if margin > 0:
                found[(a.id, predicate, b.id)] = (value, margin, margin_trust(margin, settings.margin_scale_m))
        if a.id < b.id:
            trust = distance_trust(a, b)
            for predicate, value, margin in (
                ("distance", math.dist(a.centroid_m, b.centroid_m), None),
                ("surface_distance", surface, None),
                ("horizontal_offset", math.dist(a.centroid_m[:2], b.centroid_m[:2]), None),
                ("vertical_offset", offset[2], abs(offset[2])),
            ):
                found[(a.id, predicate, b.id)] = (value, value if margin is None else margin, trust)
    return found


def random_scene(rng, count):
    """Random boxes, some stacked on others within a few centimetres and some duplicated in place."""
    objects = []
    ids = rng.permutation(np.arange(1, 10 * count))[:count]  # ids in no particular order
    for object_id in ids.tolist():
        size = rng.uniform(0.02, 0.4, 3)
        roll = rng.uniform()
        if objects and roll < 0.3:  # rest on an earlier object, with a small gap or interpenetration
            base = objects[rng.integers(len(objects))]
            top_z = base.centroid_m[2] + base.size_m[2] / 2
            xy = base.centroid_m[:2] + rng.uniform(-0.6, 0.6, 2) * (base.size_m[:2] + size[:2]) / 2
            centroid = np.array([*xy, top_z + rng.uniform(-0.03, 0.03) + size[2] / 2])
        elif objects and roll < 0.35:  # a second box in the same place
            twin = objects[rng.integers(len(objects))]
            centroid, size = twin.centroid_m.copy(), twin.size_m.copy()
        else:
            centroid = rng.uniform([0.5, -1.0, 0.0], [3.0, 1.0, 1.5])
        objects.append(ObjectNode(object_id, "thing", rng.uniform(0.3, 1.0), (0, 0, 1, 1), centroid, size,
                                  rng.uniform(0.2, 1.0)))
    return objects


def as_dict(relations):
    found = {}
    for rel in relations:
        key = (rel.subject_id, rel.predicate, rel.object_id)
        assert key not in found, f"duplicate edge {key}"
        found[key] = (rel.value_m, rel.margin_m, rel.trust)
    return found


def assert_same_edges(actual, expected):
    assert set(actual) == set(expected)
    for key, (value, margin, trust) in expected.items():
        got_value, got_margin, got_trust = actual[key]
        assert (math.isnan(got_value) and math.isnan(value)) or got_value == pytest.approx(value, abs=1e-12), key
        assert got_margin == pytest.approx(margin, abs=1e-12), key
        assert got_trust == pytest.approx(trust, abs=1e-12), key


@pytest.mark.parametrize("seed", range(40))
def test_all_pairs_at_once_agree_with_the_per_pair_definition_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    objects = random_scene(rng, int(rng.integers(2, 13)))
    heading = rng.uniform(0.0, 2 * math.pi)
    forward = np.array([math.cos(heading), math.sin(heading), rng.uniform(-2.0, 2.0)])
    settings = RelationSettings(near_m=rng.uniform(0.0, 0.5), margin_scale_m=rng.uniform(0.01, 0.1),
                                contact_tolerance_m=rng.uniform(0.0, 0.05))
    assert_same_edges(as_dict(compute_relations(objects, forward, settings)),
                      reference_relations(objects, forward, settings))


def test_random_scenes_do_exercise_resting_objects():
    resting = sum(rel.predicate == "on_top_of"
                  for seed in range(40)
                  for rel in compute_relations(random_scene(np.random.default_rng(seed), 10), np.array([1.0, 0, 0]),
                                               RelationSettings()))
    assert resting >= 20


def test_a_top_down_camera_agrees_with_the_per_pair_definition():
    objects = random_scene(np.random.default_rng(7), 8)
    down, image_up = np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])
    assert_same_edges(as_dict(compute_relations(objects, down, RelationSettings(), image_up)),
                      reference_relations(objects, down, RelationSettings(), image_up))


@pytest.mark.parametrize("count", [2, 3, 7, 20])
def test_edge_counts_for_objects_in_general_position(count):
    rng = np.random.default_rng(count)
    objects = [ObjectNode(i, "thing", 1.0, (0, 0, 1, 1), rng.uniform(-3.0, 3.0, 3), rng.uniform(0.01, 0.2, 3), 1.0)
               for i in range(1, count + 1)]
    relations = compute_relations(objects, np.array([1.0, 0.0, 0.0]), RelationSettings(near_m=0.15))
    ordered, unordered = count * (count - 1), count * (count - 1) // 2
    per_predicate = {p: sum(rel.predicate == p for rel in relations) for p in QUALITATIVE_PREDICATES}
    # Each ordered pair has exactly one of each opposite pair of predicates, and each unordered pair is one of
    # "a bigger than b" or "b bigger than a" (sizes in general position).
    for first, second in (("left_of", "right_of"), ("above", "below"), ("in_front_of", "behind"), ("near", "far")):
        assert per_predicate[first] + per_predicate[second] == ordered
        assert per_predicate[first] == per_predicate[second] or first == "near"
    assert per_predicate["bigger_than"] == per_predicate["taller_than"] == unordered
    for predicate in QUANTITATIVE_PREDICATES:
        assert sum(rel.predicate == predicate for rel in relations) == unordered
    assert all(rel.subject_id != rel.object_id for rel in relations)
    assert len(relations) == 4 * ordered + 2 * unordered + per_predicate["on_top_of"] + 4 * unordered


def test_edges_come_by_ordered_pair_in_input_order_then_the_measurements():
    rng = np.random.default_rng(3)
    objects = [ObjectNode(i, "thing", 1.0, (0, 0, 1, 1), rng.uniform(-3.0, 3.0, 3), rng.uniform(0.01, 0.2, 3), 1.0)
               for i in (5, 2, 9, 4)]
    relations = compute_relations(objects, np.array([1.0, 0.0, 0.0]), RelationSettings())
    position = {obj.id: index for index, obj in enumerate(objects)}
    split = next(i for i, rel in enumerate(relations) if rel.predicate in QUANTITATIVE_PREDICATES)
    qualitative, measured = relations[:split], relations[split:]
    keys = [(position[r.subject_id], position[r.object_id], QUALITATIVE_PREDICATES.index(r.predicate))
            for r in qualitative]
    assert keys == sorted(keys)
    assert [r.predicate for r in measured] == list(QUANTITATIVE_PREDICATES) * 6
    pairs = [(r.subject_id, r.object_id) for r in measured[::4]]
    # Each pair from its lower id, ordered by that object's position in the input, then by the other's.
    assert pairs == [(5, 9), (2, 5), (2, 9), (2, 4), (4, 5), (4, 9)]


def test_edges_hold_plain_python_numbers():
    objects = random_scene(np.random.default_rng(1), 4)
    for rel in compute_relations(objects, np.array([1.0, 0.0, 0.0]), RelationSettings()):
        assert type(rel.subject_id) is int and type(rel.object_id) is int
        assert type(rel.value_m) is float and type(rel.margin_m) is float and type(rel.trust) is float


# --- the pairwise box helpers ------------------------------------------------------------------------------------


def test_pairwise_surface_distances_match_the_two_box_function():
    rng = np.random.default_rng(11)
    centres, sizes = rng.uniform(-1.0, 1.0, (9, 3)), rng.uniform(0.0, 0.8, (9, 3))
    distances = pairwise_box_surface_distances_m(centres, sizes)
    assert distances.shape == (9, 9)
    for i, j in combinations(range(9), 2):
        expected = box_surface_distance_m(centres[i], sizes[i], centres[j], sizes[j])
        assert distances[i, j] == pytest.approx(expected, abs=1e-12)
        assert distances[j, i] == distances[i, j]
    assert np.all(np.diag(distances) == 0.0)


def test_pairwise_gaps_are_positive_apart_and_minus_the_overlap_depth_when_overlapping():
    centres = np.array([[0.0, 0.0, 0.0], [1.5, 0.2, 0.0]])
    sizes = np.array([[1.0, 1.0, 1.0], [1.0, 0.2, 0.4]])
    gaps = pairwise_box_gaps_m(centres, sizes)
    # x: faces at 0.5 and 1.0 (0.5 apart); y: [-0.5, 0.5] contains [0.1, 0.3], which must move 0.4 to leave it;
    # z: [-0.5, 0.5] contains [-0.2, 0.2], which must move 0.7 either way.
    np.testing.assert_allclose(gaps[0, 1], [0.5, -0.4, -0.7])
    np.testing.assert_allclose(gaps[1, 0], gaps[0, 1])


def test_the_extent_along_a_direction_is_the_support_width():
    assert box_extent_along_m(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0])) == 3.0
    diagonal = np.array([1.0, 1.0, 0.0]) / math.sqrt(2.0)
    assert box_extent_along_m(np.array([1.0, 1.0, 5.0]), diagonal) == pytest.approx(math.sqrt(2.0))
    np.testing.assert_allclose(box_extent_along_m(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
                                                  np.array([-1.0, 0.0, 0.0])), [1.0, 4.0])


@pytest.mark.parametrize("min_trust", [0.0, 0.6, 0.9, 1.0])
def test_pruning_keeps_exactly_the_candidates_at_or_above_the_threshold_and_counts_the_rest(min_trust):
    rng = np.random.default_rng(7)
    objects = random_scene(rng, 12)
    forward = np.array([1.0, 0.2, -0.5])
    settings = RelationSettings()
    candidates = compute_relations(objects, forward, settings)
    kept, pruned = prune_relations(objects, forward, settings, min_trust=min_trust)
    def keys(relations):  # value_m is NaN for most edges, and NaN != NaN
        return [(r.subject_id, r.predicate, r.object_id, r.margin_m, r.trust) for r in relations]

    assert keys(kept) == keys([rel for rel in candidates if rel.trust >= min_trust])
    assert pruned == len(candidates) - len(kept)
    assert (pruned > 0) == (min_trust > 0.0)
