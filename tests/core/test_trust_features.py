"""Per-edge trust features: the documented formulas on hand-made scenes, NaN for what is missing, temporal history."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trusted_scene_graph.relations.geometric import QUALITATIVE_PREDICATES, RelationSettings, relation_grid
from trusted_scene_graph.trust import TrustError
from trusted_scene_graph.trust.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES,
    VLM_FEATURES,
    ObjectArrays,
    TemporalHistory,
    edge_features,
)

ALONG_X = np.array([1.0, 0.0, 0.0])  # camera looks along +x: left is +y


def two_cubes(offset_y_m: float = 0.3):
    """Cube 1 at the origin, cube 2 offset along y (to the left), both 0.1 m; boxes side by side in the image."""
    grid = relation_grid([1, 2], np.array([[1.0, offset_y_m, 0.05], [1.0, 0.0, 0.05]]), np.full((2, 3), 0.1),
                         ALONG_X, RelationSettings())
    objects = ObjectArrays(scores=np.array([0.9, 0.6]), depth_valid_fractions=np.array([1.0, 0.5]),
                           boxes_xywh_px=np.array([[100.0, 200.0, 40.0, 40.0], [300.0, 200.0, 40.0, 40.0]]),
                           track_ages=np.array([3.0, 7.0]), image_area_px=640.0 * 480.0)
    return grid, objects


def column(table: np.ndarray, name: str) -> np.ndarray:
    return table[:, FEATURE_INDEX[name]]


def test_every_feature_is_documented_with_formula_range_and_source():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    for spec in FEATURES:
        assert spec.formula and spec.range and spec.source, spec.name


def test_left_of_claim_gets_margin_normalised_by_the_pair_extent_in_3d_and_2d():
    grid, objects = two_cubes()
    left = QUALITATIVE_PREDICATES.index("left_of")
    table = edge_features(grid, objects, np.array([0]), np.array([1]), np.array([left]))
    assert column(table, "margin_m")[0] == pytest.approx(0.3)
    assert column(table, "alignment_3d")[0] == pytest.approx(0.3 / 0.1, rel=1e-5)  # extents 0.1 m along left
    # Image: the subject's centre is at u=120, the object's at 320, mean width 40 px.
    assert column(table, "alignment_2d")[0] == pytest.approx((320 - 120) / 40)
    assert column(table, "iou_2d")[0] == 0.0
    assert column(table, "overlap_3d")[0] == 0.0
    assert column(table, "distance_over_size")[0] == pytest.approx(0.3 / 0.1, rel=1e-5)
    assert column(table, "subject_score")[0] == pytest.approx(0.9)
    assert column(table, "object_depth_valid")[0] == pytest.approx(0.5)
    assert column(table, "subject_box_area")[0] == pytest.approx(1600 / (640 * 480))
    assert column(table, "object_track_age")[0] == 7.0
    assert column(table, "predicate")[0] == left
    assert column(table, "claim_from_vlm")[0] == 0.0


def test_bigger_than_alignment_divides_its_margin_by_the_same_size_measure():
    # A table top lifted without thickness (1.0 x 1.4 x 0 m) and a 4 cm cube: sizes sqrt(1.4) and 0.04 m.
    grid = relation_grid([1, 2], np.array([[1.0, 0.0, 0.75], [1.0, 0.1, 0.77]]),
                         np.array([[1.0, 1.4, 0.0], [0.04, 0.04, 0.04]]), ALONG_X, RelationSettings())
    _, objects = two_cubes()
    bigger = QUALITATIVE_PREDICATES.index("bigger_than")
    table = edge_features(grid, objects, np.array([0]), np.array([1]), np.array([bigger]))
    size_table, size_cube = math.sqrt(1.4), 0.04
    assert column(table, "margin_m")[0] == pytest.approx(size_table - size_cube, rel=1e-6)
    assert column(table, "alignment_3d")[0] == pytest.approx((size_table - size_cube) / ((size_table + size_cube) / 2),
                                                             rel=1e-6)


def test_a_claim_the_geometry_contradicts_has_negative_alignment():
    grid, objects = two_cubes()
    right = QUALITATIVE_PREDICATES.index("right_of")
    table = edge_features(grid, objects, np.array([0]), np.array([1]), np.array([right]), np.array([1]))
    assert column(table, "alignment_3d")[0] < 0
    assert column(table, "alignment_2d")[0] < 0
    assert column(table, "claim_from_vlm")[0] == 1.0


def test_missing_inputs_are_nan_never_zero():
    grid, objects = two_cubes()
    near = QUALITATIVE_PREDICATES.index("far")
    table = edge_features(grid, objects, np.array([0]), np.array([1]), np.array([near]))
    for name in (*VLM_FEATURES, "temporal_agreement", "subject_prototype_similarity", "alignment_2d"):
        assert math.isnan(column(table, name)[0]), name  # far has no image-plane analogue


def test_vlm_temporal_and_prototype_inputs_land_in_their_columns():
    grid, objects = two_cubes()
    vlm = np.array([[0.8, 2.5, 0.6, 0.1]])
    table = edge_features(grid, objects, np.array([0]), np.array([1]), np.array([0]), vlm=vlm,
                          temporal_agreement=np.array([0.75]), prototype_similarity=np.array([0.9, 0.2]))
    assert [column(table, name)[0] for name in VLM_FEATURES] == pytest.approx([0.8, 2.5, 0.6, 0.1])
    assert column(table, "temporal_agreement")[0] == 0.75
    assert column(table, "subject_prototype_similarity")[0] == pytest.approx(0.9)
    assert column(table, "object_prototype_similarity")[0] == pytest.approx(0.2)


def test_overlapping_boxes_report_their_2d_and_3d_overlap():
    grid = relation_grid([1, 2], np.array([[1.0, 0.0, 0.05], [1.0, 0.05, 0.05]]), np.full((2, 3), 0.1), ALONG_X,
                         RelationSettings())
    objects = ObjectArrays(np.ones(2), np.ones(2), np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0]]),
                           np.ones(2), 100.0 * 100.0)
    table = edge_features(grid, objects, np.array([1]), np.array([0]), np.array([0]))
    assert column(table, "iou_2d")[0] == pytest.approx(50 / 150)
    assert column(table, "overlap_3d")[0] == pytest.approx(0.5, rel=1e-5)  # half of a cube's width overlaps


def test_bad_shapes_are_refused_naming_them():
    grid, objects = two_cubes()
    with pytest.raises(TrustError, match=r"vlm features must have shape \(1, 4\)"):
        edge_features(grid, objects, np.array([0]), np.array([1]), np.array([0]), vlm=np.zeros((1, 3)))
    with pytest.raises(TrustError, match=r"scores must hold one value per object \(2\)"):
        edge_features(grid, ObjectArrays(np.ones(3), np.ones(2), np.zeros((2, 4)), np.ones(2), 1.0),
                      np.array([0]), np.array([1]), np.array([0]))


def test_temporal_agreement_is_the_fraction_of_the_window_in_which_the_claim_held():
    history = TemporalHistory(window_frames=3)
    ids = np.array([5, 9])
    left = np.zeros((2, 2, len(QUALITATIVE_PREDICATES)), bool)
    left[0, 1, 0] = True  # 5 left_of 9
    right = np.zeros_like(left)
    right[0, 1, 1] = True  # 5 right_of 9
    edge = (np.array([0]), np.array([1]), np.array([0]))
    assert math.isnan(history.agreement(ids, left, *edge)[0])  # no history yet
    assert history.agreement(ids, left, *edge)[0] == 1.0
    assert history.agreement(ids, right, *edge)[0] == 1.0  # frames 0 and 1 held left_of
    assert history.agreement(ids, right, *edge)[0] == pytest.approx(2 / 3)  # frames 0, 1, 2
    assert history.agreement(ids, right, *edge)[0] == pytest.approx(1 / 3)  # window: frames 1, 2, 3
    assert history.agreement(ids, right, *edge)[0] == 0.0


def test_temporal_history_follows_track_ids_not_positions_and_forgets_ended_pairs():
    history = TemporalHistory(window_frames=2)
    holds = np.zeros((2, 2, len(QUALITATIVE_PREDICATES)), bool)
    holds[0, 1, 0] = True
    history.agreement(np.array([1, 2]), holds, np.array([0]), np.array([1]), np.array([0]))
    swapped = history.agreement(np.array([2, 1]), holds, np.array([1]), np.array([0]), np.array([0]))
    assert swapped[0] == 1.0  # track 1 left_of track 2, whatever the objects' order
    for _ in range(8):
        history.agreement(np.array([3, 4]), holds, np.array([0]), np.array([1]), np.array([0]))
    assert len(history) == 2  # only the pairs of tracks 3 and 4 remain


def test_temporal_window_must_hold_a_frame():
    with pytest.raises(TrustError, match="at least 1 frame, got 0"):
        TemporalHistory(0)


def test_the_readme_feature_table_is_the_schema():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in FEATURES:
        assert f"| `{spec.name}` | {spec.formula} | {spec.range} | {spec.source} |" in readme, spec.name
