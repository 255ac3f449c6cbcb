"""Specification of image-plane relations between 2D boxes (trusted_scene_graph.relations.image)."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest

from trusted_scene_graph.relations import (
    IMAGE_PREDICATES,
    ImageRelation,
    RelationError,
    box_iou_matrix,
    image_relations,
)


def edges(relations, subject_id, object_id):
    return {rel.predicate: rel for rel in relations if (rel.subject_id, rel.object_id) == (subject_id, object_id)}


# Box 1 spans columns [10, 30) and rows [40, 60): centre (20, 50). Box 2 spans [50, 60) x [10, 30): centre (55, 20).
LEFT_LOW = (10, 40, 20, 20)
RIGHT_HIGH = (50, 10, 10, 20)


def test_the_box_with_the_smaller_centre_column_is_image_left_of_the_other_by_the_centre_difference():
    relations = image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [1, 2])
    assert edges(relations, 1, 2)["image_left_of"].margin_px == pytest.approx(35.0)
    assert edges(relations, 2, 1)["image_right_of"].margin_px == pytest.approx(35.0)
    assert "image_right_of" not in edges(relations, 1, 2) and "image_left_of" not in edges(relations, 2, 1)


def test_the_box_with_the_smaller_centre_row_is_image_above_because_rows_grow_downwards():
    relations = image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [1, 2])
    assert edges(relations, 2, 1)["image_above"].margin_px == pytest.approx(30.0)
    assert edges(relations, 1, 2)["image_below"].margin_px == pytest.approx(30.0)
    assert "image_above" not in edges(relations, 1, 2) and "image_below" not in edges(relations, 2, 1)


def test_boxes_centred_on_the_same_column_and_row_are_neither_left_right_above_nor_below():
    relations = image_relations(np.array([[10, 10, 20, 20], [15, 15, 10, 10]]), [1, 2])  # both centred at (20, 20)
    directional = {"image_left_of", "image_right_of", "image_above", "image_below"}
    assert not directional & {rel.predicate for rel in relations}


def test_disjoint_boxes_give_exactly_the_directional_edges_with_zero_iou():
    relations = image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [1, 2])
    assert sorted(edges(relations, 1, 2)) == ["image_below", "image_left_of"]
    assert sorted(edges(relations, 2, 1)) == ["image_above", "image_right_of"]
    assert all(rel.iou == 0.0 for rel in relations)


def test_overlapping_boxes_overlap_both_ways_by_how_far_they_must_move_apart():
    # [0, 10) x [0, 10) and [6, 16) x [3, 13): overlap 4 x 7, IoU 28 / (100 + 100 - 28).
    relations = image_relations(np.array([[0, 0, 10, 10], [6, 3, 10, 10]]), [1, 2])
    for subject_id, object_id in ((1, 2), (2, 1)):
        overlaps = edges(relations, subject_id, object_id)["image_overlaps"]
        assert overlaps.margin_px == pytest.approx(4.0)
        assert overlaps.iou == pytest.approx(28 / 172)


def test_every_edge_of_a_pair_carries_the_pair_iou():
    relations = image_relations(np.array([[0, 0, 10, 10], [6, 3, 10, 10]]), [1, 2])
    assert len(relations) == 6  # left/right, above/below, and overlaps both ways
    assert [rel.iou for rel in relations] == [pytest.approx(28 / 172)] * 6
    assert "image_left_of" in edges(relations, 1, 2)


def test_touching_boxes_do_not_overlap():
    relations = image_relations(np.array([[0, 0, 10, 10], [10, 0, 10, 10]]), [1, 2])  # columns [0, 10), [10, 20)
    assert "image_overlaps" not in {rel.predicate for rel in relations}


def test_a_box_strictly_inside_another_is_contained_with_the_tightest_room_as_margin():
    # Inner [12, 20) x [15, 18) inside outer [10, 40) x [10, 30): room 2 (left), 5 (top), 20 (right), 12 (bottom).
    relations = image_relations(np.array([[10, 10, 30, 20], [12, 15, 8, 3]]), [1, 2])
    contains = edges(relations, 1, 2)["image_contains"]
    assert contains.margin_px == pytest.approx(2.0)
    assert contains.iou == pytest.approx(24 / 600)
    assert "image_contains" not in edges(relations, 2, 1)
    assert "image_overlaps" in edges(relations, 1, 2) and "image_overlaps" in edges(relations, 2, 1)
    # To leave the outer box the inner one must move 2 + 8 = 10 px left or 5 + 3 = 8 px up: the overlap margin is 8.
    assert edges(relations, 1, 2)["image_overlaps"].margin_px == pytest.approx(8.0)


def test_a_box_sharing_an_edge_with_its_container_is_not_contained():
    relations = image_relations(np.array([[10, 10, 30, 20], [10, 15, 8, 3]]), [1, 2])  # same left edge
    assert "image_contains" not in edges(relations, 1, 2)


def test_identical_boxes_overlap_but_neither_contains_the_other():
    relations = image_relations(np.array([[5, 5, 10, 10], [5, 5, 10, 10]]), [1, 2])
    assert sorted(rel.predicate for rel in relations) == ["image_overlaps", "image_overlaps"]
    assert all(rel.iou == 1.0 and rel.margin_px == 10.0 for rel in relations)


def test_an_empty_box_inside_another_does_not_overlap_it():
    relations = image_relations(np.array([[0, 0, 10, 10], [5, 5, 0, 0]]), [1, 2])
    assert "image_overlaps" not in {rel.predicate for rel in relations}


def test_image_relations_are_their_own_record_type_in_pixels():
    rel = image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [1, 2])[0]
    assert isinstance(rel, ImageRelation)
    assert rel._fields == ("subject_id", "predicate", "object_id", "margin_px", "iou")
    assert type(rel.subject_id) is int and type(rel.margin_px) is float


def test_fewer_than_two_boxes_have_no_image_relations():
    assert image_relations(np.zeros((0, 4)), []) == []
    assert image_relations(np.array([LEFT_LOW]), [1]) == []


# --- box_iou_matrix ----------------------------------------------------------------------------------------------


def test_iou_of_hand_made_boxes():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [100, 100, 5, 5], [0, 0, 10, 10]])
    iou = box_iou_matrix(boxes)
    assert iou.shape == (4, 4)
    assert iou[0, 1] == pytest.approx(50 / 150)  # half of each box: one third of the union
    assert iou[0, 2] == 0.0
    assert iou[0, 3] == 1.0
    np.testing.assert_allclose(np.diag(iou), 1.0)
    np.testing.assert_allclose(iou, iou.T)


def test_iou_between_two_sets_of_boxes_has_one_row_per_box_of_the_first():
    iou = box_iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [0, 0, 5, 10], [20, 0, 1, 1]]))
    np.testing.assert_allclose(iou, [[1.0, 0.5, 0.0]])


def test_empty_boxes_have_iou_zero_not_nan():
    iou = box_iou_matrix(np.array([[3, 3, 0, 0], [3, 3, 0, 0]]))
    np.testing.assert_array_equal(iou, np.zeros((2, 2)))


# --- agreement with a per-pair definition ------------------------------------------------------------------------


def reference_image_relations(boxes, ids):
    found = {}
    for (i, a), (j, b) in permutations(enumerate(boxes), 2):
        ax, ay, aw, ah = a
        bx, by, bw, bh = b
        inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
        inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
        union = aw * ah + bw * bh - inter_w * inter_h
        iou = inter_w * inter_h / union if union > 0 else 0.0
        # To stop overlapping, a slides right past b's right edge or left past b's left edge, whichever is shorter.
        depth = min(ax + aw - bx, bx + bw - ax, ay + ah - by, by + bh - ay)
        candidates = {
            "image_left_of": (bx + bw / 2) - (ax + aw / 2),
            "image_right_of": (ax + aw / 2) - (bx + bw / 2),
            "image_above": (by + bh / 2) - (ay + ah / 2),
            "image_below": (ay + ah / 2) - (by + bh / 2),
            "image_overlaps": depth if iou > 0 else -1.0,
            "image_contains": min(bx - ax, by - ay, ax + aw - bx - bw, ay + ah - by - bh),
        }
        for predicate, margin in candidates.items():
            if margin > 0:
                found[(ids[i], predicate, ids[j])] = (margin, iou)
    return found


@pytest.mark.parametrize("seed", range(25))
def test_all_pairs_at_once_agree_with_the_per_pair_definition_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 12))
    boxes = np.column_stack([rng.uniform(0, 200, (count, 2)), rng.uniform(0, 80, (count, 2))])
    boxes[: count // 3, 2:] = np.round(boxes[: count // 3, 2:])  # some integer sizes, as detectors give
    if count > 3:  # a box nested in another, so that containment occurs
        boxes[-1] = boxes[0] + [1.0, 2.0, -3.0, -4.0] if (boxes[0, 2:] > 4).all() else boxes[-1]
    ids = rng.permutation(np.arange(100, 100 + count)).tolist()
    found = {(r.subject_id, r.predicate, r.object_id): (r.margin_px, r.iou) for r in image_relations(boxes, ids)}
    expected = reference_image_relations(boxes.tolist(), ids)
    assert set(found) == set(expected)
    for key, (margin, iou) in expected.items():
        assert found[key][0] == pytest.approx(margin, abs=1e-9)
        assert found[key][1] == pytest.approx(iou, abs=1e-12)


def test_the_predicate_list_names_every_image_predicate():
    assert IMAGE_PREDICATES == ("image_left_of", "image_right_of", "image_above", "image_below", "image_overlaps",
                                "image_contains")


# --- input checks ------------------------------------------------------------------------------------------------


def test_boxes_of_the_wrong_shape_raise_a_relation_error_naming_the_shape():
    with pytest.raises(RelationError, match=r"^boxes_xywh_px must have shape \(N, 4\) as \(x, y, width, height\) "
                                            r"rows, got \(2, 3\)$"):
        image_relations(np.zeros((2, 3)), [1, 2])
    with pytest.raises(RelationError, match=r"^boxes_b_xywh_px must have shape \(N, 4\)"):
        box_iou_matrix(np.zeros((2, 4)), np.zeros(4))


def test_a_box_with_negative_width_or_non_finite_values_raises_a_relation_error_naming_it():
    with pytest.raises(RelationError, match=r"^boxes_xywh_px row 1 is \[0.0, 0.0, -5.0, 3.0\]; a box must be finite "
                                            r"with non-negative width and height$"):
        image_relations(np.array([[0, 0, 1, 1], [0, 0, -5, 3]]), [1, 2])
    with pytest.raises(RelationError, match=r"row 0 is \[nan, 0.0, 1.0, 1.0\]"):
        box_iou_matrix(np.array([[math.nan, 0, 1, 1]]))


def test_ids_must_match_the_boxes_and_be_unique():
    with pytest.raises(RelationError, match=r"^ids must hold one id per box \(2\), got shape \(1,\)$"):
        image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [1])
    with pytest.raises(RelationError, match=r"^object ids must be unique; repeated: \[3\]$"):
        image_relations(np.array([LEFT_LOW, RIGHT_HIGH]), [3, 3])
