"""Specification of camera frames, the sim detector, lifting to 3D and tracking (trusted_scene_graph.perception)."""

from __future__ import annotations

import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry import Intrinsics, RigidTransform
from trusted_scene_graph.perception import (
    DETECTORS,
    CameraFrame,
    Detection,
    LiftingSettings,
    PerceptionError,
    lift_detection,
    make_detector,
)
from trusted_scene_graph.perception.detector import MAX_UNKNOWN_IDS_KEPT, SimDetector
from trusted_scene_graph.perception.lifting import complete_hidden_side
from trusted_scene_graph.perception.tracking import Tracker

# A 40 x 30 camera with distinct focal lengths so x and y mistakes show: x = (u - 20) z / 50, y = (v - 15) z / 40.
INTRINSICS = Intrinsics(width=40, height=30, fx=50.0, fy=40.0, cx=20.0, cy=15.0)
IDENTITY = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
OPTICAL_TO_GRAPH = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [-0.5, 0.5, -0.5, 0.5])
EXACT = LiftingSettings(box_percentile=0.0)  # the box spans all inlier points, so sizes are exact too


def frame(depth=None, instances=None, rgb=None, intrinsics=INTRINSICS) -> CameraFrame:
    height, width = (intrinsics.height, intrinsics.width)
    rgb = np.zeros((height, width, 3), np.uint8) if rgb is None else rgb
    depth = np.full((height, width), 2.0, np.float32) if depth is None else depth
    return CameraFrame(1, rgb, depth, intrinsics, instances)


def rectangle_mask(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((INTRINSICS.height, INTRINSICS.width), bool)
    mask[rows, cols] = True
    return mask


def test_perception_errors_are_tsg_errors():
    assert issubclass(PerceptionError, TsgError)


# --- CameraFrame -----------------------------------------------------------------------------------------------


def test_a_frame_with_matching_sizes_is_accepted():
    assert frame(instances=np.zeros((30, 40), np.uint16)).stamp_ns == 1


def test_a_frame_whose_depth_size_differs_from_the_colour_size_is_rejected():
    with pytest.raises(PerceptionError, match=r"^depth image is 20x30 but colour is 40x30; depth must be registered "
                                              r"to the colour image$"):
        frame(depth=np.ones((30, 20), np.float32))


def test_a_frame_whose_camera_info_size_differs_from_the_colour_size_is_rejected():
    with pytest.raises(PerceptionError, match=r"^camera_info is 40x30 but colour is 80x60$"):
        frame(rgb=np.zeros((60, 80, 3), np.uint8), depth=np.ones((60, 80), np.float32))


def test_a_frame_whose_instance_image_size_differs_from_the_colour_size_is_rejected():
    with pytest.raises(PerceptionError, match=r"^instance image is 40x29 but colour is 40x30$"):
        frame(instances=np.zeros((29, 40), np.uint16))


def test_a_frame_whose_depth_or_instance_image_has_a_channel_axis_is_rejected_naming_its_shape():
    with pytest.raises(PerceptionError, match=r"^depth image must be a 2-D \(H, W\) array, got shape \(30, 40, 1\)$"):
        frame(depth=np.ones((30, 40, 1), np.float32))
    with pytest.raises(PerceptionError, match=r"^instance image must be a 2-D \(H, W\) array, got shape \(30, 40, 1\)"):
        frame(instances=np.zeros((30, 40, 1), np.uint16))


# --- SimDetector -----------------------------------------------------------------------------------------------


def instance_image() -> np.ndarray:
    instances = np.zeros((30, 40), np.uint16)
    instances[2:12, 5:15] = 1  # 10 x 10 block: 100 px
    instances[20:28, 30:34] = 2  # an L shape: 8 x 4 block ...
    instances[26:28, 25:30] = 2  # ... plus a 2 x 5 foot to its left: 42 px, box x 25..33, y 20..27
    instances[0:2, 38:40] = 3  # 4 px, below min_pixels
    instances[15:20, 0:10] = 9  # 50 px of an id with no label
    return instances


def test_the_sim_detector_reports_one_exact_box_and_mask_per_labelled_instance():
    instances = instance_image()
    detections = SimDetector({1: "cube", 2: "gripper", 3: "screw"}, min_pixels=5).detect(frame(instances=instances))
    assert [(d.label, d.score, d.box_xywh_px) for d in detections] == [
        ("cube", 1.0, (5, 2, 10, 10)),
        ("gripper", 1.0, (25, 20, 9, 8)),
    ]
    np.testing.assert_array_equal(detections[0].mask, instances == 1)
    np.testing.assert_array_equal(detections[1].mask, instances == 2)
    assert detections[1].mask.sum() == 42


def test_the_sim_detector_drops_instances_smaller_than_min_pixels():
    instances = instance_image()
    labels = {1: "cube", 2: "gripper", 3: "screw"}
    assert [d.label for d in SimDetector(labels, min_pixels=4).detect(frame(instances=instances))] == [
        "cube", "gripper", "screw"]
    assert [d.label for d in SimDetector(labels, min_pixels=5).detect(frame(instances=instances))] == [
        "cube", "gripper"]
    assert [d.label for d in SimDetector(labels, min_pixels=43).detect(frame(instances=instances))] == ["cube"]


def test_the_sim_detector_ignores_ids_without_a_label_including_the_background():
    detections = SimDetector({2: "gripper"}, min_pixels=1).detect(frame(instances=instance_image()))
    assert [d.label for d in detections] == ["gripper"]


def test_the_sim_detector_remembers_the_ids_without_a_label_but_not_the_background_or_small_labelled_ones():
    detector = SimDetector({1: "cube", 2: "gripper", 3: "screw"}, min_pixels=30)
    assert detector.unknown_instance_ids == frozenset()
    detector.detect(frame(instances=instance_image()))
    assert detector.unknown_instance_ids == {9}  # id 3 has a label (too small this frame), 0 is the background
    later = np.zeros((30, 40), np.uint16)
    later[0:3, 0:3] = 12  # new ids are added, ids no longer seen are kept
    detector.detect(frame(instances=later))
    assert detector.unknown_instance_ids == {9, 12}
    assert detector.unknown_instance_id_count == 2
    detector.detect(frame(instances=later))  # an id seen again is not counted again
    assert detector.unknown_instance_id_count == 2


def test_the_sim_detector_keeps_the_first_unknown_ids_and_only_counts_the_rest():
    detector = SimDetector({1: "cube"}, min_pixels=1)
    for instance_id in range(100, 3100):  # a simulator giving every frame a fresh id
        instances = np.zeros((30, 40), np.uint16)
        instances[:5, :5], instances[10:15, 10:15] = 1, instance_id
        detector.detect(frame(instances=instances))
    assert detector.unknown_instance_ids == frozenset(range(100, 100 + MAX_UNKNOWN_IDS_KEPT))
    assert detector.unknown_instance_id_count == 3000
    assert detector.detect(frame(instances=instances))[0].label == "cube"
    assert detector.unknown_instance_id_count == 3000


def test_the_sim_detector_asked_for_some_labels_returns_exactly_those_detections_of_a_full_run():
    labels = {1: "cube", 2: "gripper", 3: "screw"}
    everything = SimDetector(labels, min_pixels=5).detect(frame(instances=instance_image()))
    detector = SimDetector(labels, min_pixels=5)
    wanted = detector.detect(frame(instances=instance_image()), labels={"gripper", "screw"})
    assert [(d.label, d.box_xywh_px) for d in wanted] == [("gripper", (25, 20, 9, 8))]  # screw: below min_pixels
    np.testing.assert_array_equal(wanted[0].mask, everything[1].mask)
    assert detector.unknown_instance_ids == frozenset()  # no histogram: only the node reports unlabelled ids


def test_the_sim_detector_with_corruption_detects_everything_so_the_corruption_replays_then_filters():
    config = Config({"detector.corruption.false_positive_rate": 1.0, "detector.corruption.seed": 3})
    full = SimDetector.from_config(config).detect(frame(instances=instance_image()))
    asked = SimDetector.from_config(config).detect(frame(instances=instance_image()), labels={"cube"})
    assert [d.box_xywh_px for d in asked] == [d.box_xywh_px for d in full if d.label == "cube"]


def test_asking_a_corrupting_sim_detector_for_some_labels_keeps_the_corruption_of_a_full_run_frame_after_frame():
    config = Config({"detector.sim_labels": ["1:cube", "2:gripper", "3:screw"], "detector.min_pixels": 1,
                     "detector.corruption.miss_rate": 0.3, "detector.corruption.box_jitter_px": 2.0,
                     "detector.corruption.seed": 7})
    full, asked = SimDetector.from_config(config), SimDetector.from_config(config)
    for _ in range(20):
        everything = full.detect(frame(instances=instance_image()))
        cube_only = asked.detect(frame(instances=instance_image()), labels={"cube"})
        assert [(d.label, d.box_xywh_px) for d in cube_only] == [
            (d.label, d.box_xywh_px) for d in everything if d.label == "cube"]


def test_the_sim_detector_reports_nothing_for_an_all_background_image():
    assert SimDetector({1: "cube"}).detect(frame(instances=np.zeros((30, 40), np.uint16))) == []


def test_the_sim_detector_without_an_instance_image_raises_a_perception_error():
    with pytest.raises(PerceptionError, match=r"^the 'sim' detector needs an instance-id image \(topics\.instances\), "
                                              r"none was given$"):
        SimDetector({1: "cube"}).detect(frame())


def test_the_sim_detector_needs_instances():
    assert SimDetector({}).needs_instances is True


def test_the_sim_detector_reads_labels_and_min_pixels_from_the_config():
    detector = SimDetector.from_config(Config({"detector.sim_labels": [" 4 : mug", "12:plate"],
                                               "detector.min_pixels": 7}))
    assert detector.labels_by_id == {4: "mug", 12: "plate"}
    assert detector.min_pixels == 7


def test_make_detector_builds_the_configured_backend():
    detector = make_detector(Config())
    assert isinstance(detector, SimDetector)
    assert detector.labels_by_id == {1: "gripper", 2: "cube", 3: "table"}
    assert detector.min_pixels == 30


def test_make_detector_with_an_unknown_backend_lists_the_known_ones():
    config = {**Config(), "detector.backend": "yolo"}
    with pytest.raises(PerceptionError,
                       match=r"^unknown detector backend 'yolo'; known backends: \['grounding_dino', 'sim'\]$"):
        make_detector(config)
    assert sorted(DETECTORS) == ["grounding_dino", "sim"]


# --- lift_detection --------------------------------------------------------------------------------------------

PLANE_MASK = rectangle_mask(slice(5, 15), slice(10, 30))  # rows 5..14, columns 10..29, 200 px


def test_a_fronto_parallel_plane_lifts_to_its_exact_centroid_and_size():
    # Centre column 19.5, centre row 9.5 at z = 2: x = (19.5 - 20) * 2 / 50 = -0.02, y = (9.5 - 15) * 2 / 40 = -0.275.
    # Extent: 19 columns * 2 / 50 = 0.76 m wide, 9 rows * 2 / 40 = 0.45 m high, no depth.
    lifted = lift_detection(Detection("wall", 0.8, (10, 5, 20, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                            IDENTITY, EXACT)
    np.testing.assert_allclose(lifted.centroid_m, [-0.02, -0.275, 2.0], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [0.76, 0.45, 0.0], atol=1e-9)
    assert lifted.depth_valid_fraction == 1.0
    assert lifted.detection.label == "wall"


def test_the_default_percentile_box_keeps_the_centroid_and_size_of_a_plane_with_no_stray_pixels():
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                            IDENTITY, LiftingSettings())
    np.testing.assert_allclose(lifted.centroid_m, [-0.02, -0.275, 2.0], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [0.76, 0.45, 0.0], atol=1e-9)


def test_the_percentile_box_ignores_a_stray_mask_pixel_far_from_the_object():
    mask = PLANE_MASK.copy()
    mask[10, 39] = True  # one pixel at the image edge, at the same depth (MAD cannot reject it)
    detection = Detection("wall", 1.0, (10, 5, 30, 10), mask)
    trimmed = lift_detection(detection, frame().depth_m, INTRINSICS, IDENTITY, LiftingSettings(box_percentile=2.0))
    np.testing.assert_allclose(trimmed.centroid_m, [-0.02, -0.275, 2.0], atol=1e-9)
    np.testing.assert_allclose(trimmed.size_m, [0.76, 0.45, 0.0], atol=1e-9)
    untrimmed = lift_detection(detection, frame().depth_m, INTRINSICS, IDENTITY, EXACT)
    assert untrimmed.size_m[0] == pytest.approx((39 - 10) * 2 / 50)


def test_a_stray_pixel_past_the_gap_stays_out_but_a_sparse_continuous_tail_is_kept():
    from trusted_scene_graph.perception.lifting import _connected_extents

    dense = np.linspace(0.0, 0.10, 100)  # 1 mm apart
    sparse_tail = np.array([0.105, 0.11, 0.115])  # 5 mm apart: the foreshortened side of an object
    stray = np.array([0.30])  # 18.5 cm past the tail: another object's pixel in the mask
    values = np.concatenate([dense, sparse_tail, stray])[None]
    low, high = _connected_extents(values, 2.0, max_gap_m=0.01)
    assert (low[0], high[0]) == (0.0, 0.115)
    low, high = _connected_extents(values, 2.0, max_gap_m=0.0)  # percentiles only: the sparse tail is trimmed too
    assert high[0] < 0.115


@pytest.mark.parametrize("seed", range(50))
def test_connected_extents_agree_with_growing_point_by_point_from_the_percentiles(seed):
    from trusted_scene_graph.perception.lifting import _connected_extents

    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 0.05, rng.integers(1, 300)), rng.uniform(-1, 1, rng.integers(0, 5))])
    percent, max_gap_m = rng.uniform(0, 10), rng.uniform(0, 0.05)
    ordered = np.sort(values)
    low = int(np.floor(percent / 100 * (len(ordered) - 1)))
    high = int(np.ceil((100 - percent) / 100 * (len(ordered) - 1)))
    while low > 0 and ordered[low] - ordered[low - 1] <= max_gap_m:
        low -= 1
    while high < len(ordered) - 1 and ordered[high + 1] - ordered[high] <= max_gap_m:
        high += 1
    extent = _connected_extents(values[None], percent, max_gap_m)
    assert (extent[0][0], extent[1][0]) == (ordered[low], ordered[high])


def test_lifting_expresses_the_object_in_the_graph_frame():
    # Optical (x right, y down, z forward) -> graph (x forward, y left, z up): (z, -x, -y).
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                            OPTICAL_TO_GRAPH, EXACT)
    np.testing.assert_allclose(lifted.centroid_m, [2.0, 0.02, 0.275], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [0.0, 0.76, 0.45], atol=1e-9)


def test_nan_and_out_of_range_depth_pixels_are_ignored_but_lower_the_valid_fraction():
    depth = frame().depth_m.copy()
    depth[8, 12:16] = np.nan  # 4 NaN
    depth[9, 12:15] = 50.0  # 3 beyond depth.max_m
    depth[10, 12:15] = 0.01  # 3 below depth.min_m
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY, EXACT)
    np.testing.assert_allclose(lifted.centroid_m, [-0.02, -0.275, 2.0], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [0.76, 0.45, 0.0], atol=1e-9)
    assert lifted.depth_valid_fraction == pytest.approx(190 / 200)


def test_the_depth_range_limits_themselves_are_valid():
    depth = frame().depth_m.copy()
    depth[PLANE_MASK] = 0.05
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY,
                            LiftingSettings(depth_min_m=0.05))
    assert lifted is not None and lifted.depth_valid_fraction == 1.0


def noisy_plane() -> np.ndarray:
    """Depth 2.0 +- 5 mm in a checkerboard, so the median absolute deviation is 5 mm."""
    rows, cols = np.mgrid[0:30, 0:40]
    return np.where((rows + cols) % 2 == 0, 1.995, 2.005).astype(np.float32)


def test_a_depth_outlier_blob_is_rejected_by_the_median_absolute_deviation():
    depth = noisy_plane()
    depth[8:11, 15:20] = 3.0  # 15 px of background seen through the object (7.5 %)
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY, EXACT)
    assert lifted.centroid_m[2] == pytest.approx(2.0, abs=1e-6)
    assert lifted.size_m[2] == pytest.approx(0.01, abs=1e-6)
    np.testing.assert_allclose(lifted.centroid_m[:2], [-0.02, -0.275], atol=2e-3)
    assert lifted.depth_valid_fraction == 1.0  # the fraction counts valid depth, before outlier rejection


def test_without_outlier_rejection_the_same_blob_would_stretch_the_box():
    depth = noisy_plane()
    depth[8:11, 15:20] = 3.0
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY,
                            LiftingSettings(box_percentile=0.0, outlier_mad_k=1e6))
    assert lifted.size_m[2] == pytest.approx(1.005, abs=1e-6)


def test_a_depth_outlier_blob_on_an_exactly_flat_plane_is_rejected():
    depth = frame().depth_m.copy()
    depth[8:11, 15:20] = 3.0
    lifted = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY, EXACT)
    assert lifted.centroid_m[2] == pytest.approx(2.0)
    assert lifted.size_m[2] == pytest.approx(0.0)


def test_an_object_with_too_few_valid_depth_pixels_is_dropped():
    depth = np.full((30, 40), np.nan, np.float32)
    mask = rectangle_mask(slice(0, 10), slice(0, 10))  # 100 px
    depth[0, 0:4] = 2.0  # 4 % valid
    settings = LiftingSettings(min_valid_fraction=0.05)
    assert lift_detection(Detection("a", 1.0, (0, 0, 10, 10), mask), depth, INTRINSICS, IDENTITY, settings) is None
    depth[0, 4] = 2.0  # exactly 5 % valid is enough
    lifted = lift_detection(Detection("a", 1.0, (0, 0, 10, 10), mask), depth, INTRINSICS, IDENTITY, settings)
    assert lifted is not None
    assert lifted.depth_valid_fraction == pytest.approx(0.05)


def test_an_object_with_no_valid_depth_at_all_is_dropped_even_with_a_zero_minimum_fraction():
    depth = np.full((30, 40), np.nan, np.float32)
    settings = LiftingSettings(min_valid_fraction=0.0)
    assert lift_detection(Detection("a", 1.0, (10, 5, 20, 10), PLANE_MASK), depth, INTRINSICS, IDENTITY,
                          settings) is None


def test_an_empty_mask_is_dropped():
    empty = np.zeros((30, 40), bool)
    assert lift_detection(Detection("a", 1.0, (0, 0, 1, 1), empty), frame().depth_m, INTRINSICS, IDENTITY,
                          EXACT) is None


def test_without_a_mask_the_depth_comes_from_the_central_half_of_the_box_and_the_extent_from_all_of_it():
    # Box columns 10..29, rows 6..17; its central half is columns 15..24 and rows 9..14 (10 x 6 px).
    depth = np.full((30, 40), 5.0, np.float32)  # background, inside the box but outside its central half
    depth[9:15, 15:25] = 2.0
    lifted = lift_detection(Detection("a", 1.0, (10, 6, 20, 12)), depth, INTRINSICS, IDENTITY, EXACT)
    # x = (19.5 - 20) * 2 / 50 = -0.02, y = (11.5 - 15) * 2 / 40 = -0.175; the box's 19 columns and 11 rows of
    # extent at the central half's depth.
    np.testing.assert_allclose(lifted.centroid_m, [-0.02, -0.175, 2.0], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [19 * 2 / 50, 11 * 2 / 40, 0.0], atol=1e-9)
    assert lifted.depth_valid_fraction == 1.0


@pytest.mark.parametrize("box_xywh_px", [(20, 15, 0, 0), (20, 15, 5, 0), (20, 15, 0, 5), (25, 20, -10, -10)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_an_empty_or_negative_box_is_dropped_not_lifted_at_a_pixel_it_never_held(box_xywh_px, with_mask):
    depth = np.full((30, 40), 2.0, np.float32)
    mask = np.ones((30, 40), bool) if with_mask else None
    assert lift_detection(Detection("a", 1.0, box_xywh_px, mask), depth, INTRINSICS, IDENTITY, EXACT) is None


def test_without_a_mask_a_one_pixel_box_still_uses_its_pixel():
    depth = np.full((30, 40), np.nan, np.float32)
    depth[15, 20] = 1.5
    lifted = lift_detection(Detection("a", 1.0, (20, 15, 1, 1)), depth, INTRINSICS, IDENTITY, EXACT)
    np.testing.assert_allclose(lifted.centroid_m, [0.0, 0.0, 1.5], atol=1e-12)


def test_without_a_mask_a_box_partly_outside_the_image_is_clipped():
    depth = np.full((30, 40), 2.0, np.float32)
    # Box x 30..49, clipped to 30..39, y 20..39, clipped to 20..29 (depth from the central half, clipped to 35..39
    # and 25..29).
    lifted = lift_detection(Detection("a", 1.0, (30, 20, 20, 20)), depth, INTRINSICS, IDENTITY, EXACT)
    np.testing.assert_allclose(lifted.centroid_m, [(34.5 - 20) * 2 / 50, (24.5 - 15) * 2 / 40, 2.0], atol=1e-9)
    np.testing.assert_allclose(lifted.size_m, [9 * 2 / 50, 9 * 2 / 40, 0.0], atol=1e-9)


def test_lifting_settings_are_read_from_the_config():
    settings = LiftingSettings.from_config(Config({"depth.min_m": 0.2, "depth.max_m": 4.0,
                                                   "lifting.box_percentile": 5.0, "lifting.outlier_mad_k": 3.0,
                                                   "lifting.min_valid_fraction": 0.5}))
    assert settings == LiftingSettings(0.2, 4.0, 5.0, 3.0, 0.5, amodal_completion=True, max_gap_m=0.01,
                                       box_silhouette=True)


# --- Tracker ---------------------------------------------------------------------------------------------------


def p(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    return np.array([x, y, z])


def test_new_objects_get_consecutive_ids_starting_at_one_and_age_one():
    tracks = Tracker().update(["cube", "table"], [p(0), p(1)])
    assert [(t.id, t.label, t.age) for t in tracks] == [(1, "cube", 1), (2, "table", 1)]


def test_with_smoothing_a_track_smooths_its_box_so_centre_and_extent_lag_alike():
    # A box growing on one side (its low x fixed at 0, its high x from 0.2 to 0.4 m): smoothing the centre alone
    # would publish a box whose low side moved, which no frame measured.
    tracker = Tracker(smoothing=0.5)
    tracker.update(["cube"], [p(0.1)], [p(0.2)])
    (track,) = tracker.update(["cube"], [p(0.2)], [p(0.4)])
    np.testing.assert_allclose([track.centroid_m[0], track.size_m[0]], [0.15, 0.3])
    assert track.centroid_m[0] - track.size_m[0] / 2 == pytest.approx(0.0)  # the side that stayed, stays
    (unsmoothed,) = Tracker(smoothing=1.0).update(["cube"], [p(0.2)], [p(0.4)])
    np.testing.assert_array_equal(unsmoothed.size_m, p(0.4))


def test_an_object_moving_within_the_gate_keeps_its_id_and_ages():
    tracker = Tracker(gate_m=0.3)
    tracker.update(["cube"], [p(0)])
    tracks = tracker.update(["cube"], [p(0.2, 0.1)])
    assert [(t.id, t.age) for t in tracks] == [(1, 2)]
    np.testing.assert_array_equal(tracks[0].centroid_m, p(0.2, 0.1))
    assert tracker.update(["cube"], [p(0.4, 0.1)])[0].id == 1  # the gate follows the last position


def test_a_move_of_exactly_the_gate_still_continues_the_track():
    tracker = Tracker(gate_m=0.5)
    tracker.update(["cube"], [p(0)])
    assert tracker.update(["cube"], [p(0.5)])[0].id == 1


def test_an_object_jumping_beyond_the_gate_starts_a_new_id():
    tracker = Tracker(gate_m=0.3)
    tracker.update(["cube"], [p(0)])
    tracks = tracker.update(["cube"], [p(0.31)])
    assert [(t.id, t.age) for t in tracks] == [(2, 1)]


def test_an_object_with_a_different_label_at_the_same_place_starts_a_new_id():
    tracker = Tracker()
    tracker.update(["cube"], [p(0)])
    assert tracker.update(["mug"], [p(0)])[0].id == 2


def test_tracks_are_returned_in_input_order_and_matched_by_nearest_position():
    tracker = Tracker(gate_m=0.3)
    tracker.update(["cube", "cube"], [p(0), p(0.5)])
    tracks = tracker.update(["cube", "cube"], [p(0.45), p(0.05)])  # same objects, listed the other way round
    assert [t.id for t in tracks] == [2, 1]


def test_the_assignment_is_globally_optimal_not_greedy():
    # Greedy matching would give the first detection (0.2 from both) to track 1 and leave the second unmatched.
    tracker = Tracker(gate_m=0.3)
    tracker.update(["cube", "cube"], [p(0), p(0.4)])
    tracks = tracker.update(["cube", "cube"], [p(0.2), p(-0.1)])
    assert sorted(t.id for t in tracks) == [1, 2]
    assert [t.id for t in tracks] == [2, 1]


def test_a_track_survives_max_missed_frames_without_detection_then_retires():
    tracker = Tracker(max_missed_frames=2)
    tracker.update(["cube"], [p(0)])
    tracker.update([], [])
    tracker.update([], [])
    assert [t.id for t in tracker.tracks] == [1]
    assert tracker.tracks[0].missed == 2
    assert tracker.update(["cube"], [p(0)])[0].id == 1  # back after two missed frames: same id
    for _ in range(3):
        tracker.update([], [])
    assert tracker.tracks == []
    assert tracker.update(["cube"], [p(0)])[0].id == 2  # retired ids are not reused


def test_with_zero_max_missed_frames_a_track_retires_on_its_first_miss():
    tracker = Tracker(max_missed_frames=0)
    tracker.update(["cube"], [p(0)])
    tracker.update([], [])
    assert tracker.tracks == []


def test_age_counts_the_frames_an_object_was_seen():
    tracker = Tracker()
    ages = [tracker.update(["cube"], [p(0)])[0].age for _ in range(4)]
    assert ages == [1, 2, 3, 4]
    tracker.update([], [])
    assert tracker.update(["cube"], [p(0)])[0].age == 5  # a missed frame does not add to the age


def test_a_large_object_is_lifted_from_an_even_subset_of_its_pixels_with_the_same_box():
    full = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                          IDENTITY, EXACT)
    strided = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                             IDENTITY, LiftingSettings(box_percentile=0.0, points_per_object=100))  # every 2nd px
    np.testing.assert_allclose(strided.centroid_m, full.centroid_m, atol=0.02)
    np.testing.assert_allclose(strided.size_m, full.size_m, atol=0.05)
    assert strided.depth_valid_fraction == full.depth_valid_fraction == 1.0


def test_without_smoothing_a_track_takes_the_measured_position():
    tracker = Tracker(gate_m=0.5)
    tracker.update(["cube"], [p(0.0)])
    np.testing.assert_allclose(tracker.update(["cube"], [p(0.1)])[0].centroid_m, [0.1, 0.0, 0.0])


def test_smoothing_blends_the_measurement_into_the_track_position_exponentially():
    tracker = Tracker(gate_m=0.5, smoothing=0.25)
    tracker.update(["cube"], [p(0.0)])  # a new track starts at its first measurement
    assert tracker.update(["cube"], [p(0.2)])[0].centroid_m[0] == pytest.approx(0.05)
    assert tracker.update(["cube"], [p(0.2)])[0].centroid_m[0] == pytest.approx(0.05 + 0.25 * 0.15)


def test_smoothing_averages_out_depth_noise_on_a_static_object():
    rng = np.random.default_rng(0)
    raw, smoothed = Tracker(gate_m=0.5), Tracker(gate_m=0.5, smoothing=0.2)
    raw_x, smoothed_x = [], []
    for _ in range(200):
        measured = p(1.0 + rng.normal(0.0, 0.01))
        raw_x.append(raw.update(["cube"], [measured])[0].centroid_m[0])
        smoothed_x.append(smoothed.update(["cube"], [measured])[0].centroid_m[0])
    assert np.std(smoothed_x[20:]) < 0.5 * np.std(raw_x[20:])
    assert np.mean(smoothed_x[20:]) == pytest.approx(1.0, abs=0.005)


def test_a_mask_of_the_wrong_size_is_rejected_naming_both_sizes():
    with pytest.raises(PerceptionError, match=r"^mask of 'a' is 20x10 but the image is 40x30$"):
        lift_detection(Detection("a", 1.0, (0, 0, 5, 5), np.ones((10, 20), bool)), frame().depth_m, INTRINSICS,
                       IDENTITY, EXACT)


def test_mask_pixels_outside_the_box_are_ignored():
    mask = PLANE_MASK.copy()
    mask[20:25, 0:5] = True  # a second blob, outside the box (a jittered box cut it off)
    inside_only = lift_detection(Detection("wall", 1.0, (10, 5, 20, 10), mask), frame().depth_m, INTRINSICS,
                                 IDENTITY, EXACT)
    np.testing.assert_allclose(inside_only.centroid_m, [-0.02, -0.275, 2.0], atol=1e-9)


def test_a_box_entirely_outside_the_image_lifts_to_nothing():
    assert lift_detection(Detection("a", 1.0, (100, 100, 10, 10)), frame().depth_m, INTRINSICS, IDENTITY,
                          EXACT) is None
    assert lift_detection(Detection("a", 1.0, (-50, 5, 10, 10), PLANE_MASK), frame().depth_m, INTRINSICS,
                          IDENTITY, EXACT) is None


# --- completing the hidden side ----------------------------------------------------------------------------------

FORWARD_X = np.array([1.0, 0.0, 0.0])  # the camera looks along graph +x, from above


def sphere_points_seen_from(camera_m: np.ndarray, radius_m: float = 0.05, count: int = 20_000) -> np.ndarray:
    """Points of a sphere at the origin that face the camera (the visible cap)."""
    directions = np.random.default_rng(0).normal(size=(count, 3))
    surface = radius_m * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return surface[np.einsum("ij,ij->i", surface, camera_m - surface) > 0]


def visible_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(axis=0), points.max(axis=0)


def test_the_hidden_back_and_underside_of_a_sphere_are_recovered():
    camera = np.array([-1.0, 0.0, 0.4])  # in front of and above the sphere
    points = sphere_points_seen_from(camera)
    low, high = visible_box(points)
    assert high[0] < 0.03 and low[2] > -0.05  # the back and the bottom are hidden
    completed_low, completed_high = complete_hidden_side(points, low, high, FORWARD_X, camera[2], 0.0)
    # The visible box alone is off by a quarter of the diameter; the circles the sphere's widths trace on the
    # camera's side of its widest sections put the centre back where it is.
    centre = (completed_low + completed_high) / 2
    assert abs((low[0] + high[0]) / 2) > 0.01
    np.testing.assert_allclose(centre, 0.0, atol=0.002)
    np.testing.assert_allclose(completed_high - completed_low, 0.1, atol=0.003)


def test_the_hidden_back_of_a_cylinder_seen_level_is_its_front_reflected():
    # The front half of an upright cylinder (radius 5 cm, axis at x = 1): its widths grow up to the far end of what
    # is seen, and the centre of the circle they trace is the axis, so the back edge is at x = 1.05.
    angle = np.random.default_rng(0).uniform(np.pi / 2, 3 * np.pi / 2, 4000)
    height = np.random.default_rng(1).uniform(-0.1, 0.1, 4000)
    points = np.stack([1.0 + 0.05 * np.cos(angle), 0.05 * np.sin(angle), height], axis=1)
    low, high = visible_box(points)
    completed_low, completed_high = complete_hidden_side(points, low, high, FORWARD_X, 0.0, 0.0)
    assert completed_high[0] == pytest.approx(1.05, abs=0.002)
    np.testing.assert_allclose(completed_low, low)  # the front, the sides and the ends are seen
    np.testing.assert_allclose(completed_high[1:], high[1:])


def test_objects_completed_together_get_each_its_own_completion_bit_for_bit():
    # Lifting completes a frame's (or a batch of frames') objects in one call, whose steps stack the objects' rows:
    # spheres, cylinders and boxes seen from different heights and directions, some of them completed, some not.
    from trusted_scene_graph.perception.lifting import _complete_hidden_sides

    rng = np.random.default_rng(7)
    objects, forwards, cameras = [], [], []
    for index in range(12):
        camera = np.array([-1.0, 0.0, rng.uniform(-0.3, 0.8)])
        if index % 3 == 0:
            points = sphere_points_seen_from(camera, count=2000)[:600]
        elif index % 3 == 1:
            angle, height = rng.uniform(np.pi / 2, 3 * np.pi / 2, 600), rng.uniform(-0.1, 0.1, 600)
            points = np.stack([0.05 * np.cos(angle), 0.05 * np.sin(angle), height], axis=1)
        else:
            points = rng.uniform(-0.05, 0.05, (600, 3)) * np.array([0.1, 1.0, 1.0])  # a box's front face
        yaw = rng.uniform(0.0, 2 * np.pi)
        objects.append(points)
        forwards.append(np.array([np.cos(yaw), np.sin(yaw), 0.0]))
        cameras.append(camera[2])
    # Each object's points turned with its camera's direction (the view is along graph +x for yaw 0).
    turned = np.stack([points @ np.array([[f[0], f[1], 0.0], [-f[1], f[0], 0.0], [0.0, 0.0, 1.0]])
                       for points, f in zip(objects, forwards, strict=True)])
    low, high = turned.min(axis=1), turned.max(axis=1)
    together_low, together_high = _complete_hidden_sides(turned, low, high, np.stack(forwards), np.array(cameras),
                                                         2.0, 0.01)
    completed = 0
    for index in range(len(turned)):
        alone_low, alone_high = complete_hidden_side(turned[index], low[index], high[index], forwards[index],
                                                     cameras[index], 2.0, 0.01)
        assert together_low[index].tobytes() == alone_low.tobytes()
        assert together_high[index].tobytes() == alone_high.tobytes()
        completed += bool(np.any(alone_low != low[index]) or np.any(alone_high != high[index]))
    assert 0 < completed < len(turned)  # the case exercises both outcomes


def test_a_box_whose_top_is_visible_is_left_as_measured():
    grid = np.linspace(-0.05, 0.05, 21)
    top = np.array([[x, y, 0.05] for x in grid for y in grid])
    front = np.array([[-0.05, y, z] for y in grid for z in grid])
    points = np.vstack([top, front])
    low, high = visible_box(points)
    completed = complete_hidden_side(points, low, high, FORWARD_X, 1.0, 0.0)
    np.testing.assert_allclose(completed[0], low, atol=1e-9)
    np.testing.assert_allclose(completed[1], high, atol=1e-9)


def test_a_flat_face_seen_head_on_stays_flat():
    grid = np.linspace(-0.05, 0.05, 21)
    points = np.array([[0.5, y, z] for y in grid for z in grid])
    low, high = visible_box(points)
    completed_low, completed_high = complete_hidden_side(points, low, high, FORWARD_X, 1.0, 0.0)
    assert completed_high[0] - completed_low[0] == pytest.approx(0.0, abs=1e-9)


def test_a_camera_below_an_object_completes_its_top_instead_of_its_underside():
    camera = np.array([-1.0, 0.0, -0.4])
    points = sphere_points_seen_from(camera)
    low, high = visible_box(points)
    completed_low, completed_high = complete_hidden_side(points, low, high, FORWARD_X, camera[2], 0.0)
    assert completed_low[2] == pytest.approx(low[2])
    assert completed_high[2] == pytest.approx(0.05, abs=0.005)


def test_lifting_completes_the_hidden_side_only_when_enabled_and_given_the_view_direction():
    # A cylinder-like depth profile is not needed here: a fronto-parallel plane has nothing hidden to complete.
    detection = Detection("wall", 1.0, (10, 5, 20, 10), PLANE_MASK)
    plain = lift_detection(detection, frame().depth_m, INTRINSICS, IDENTITY, EXACT)
    completed = lift_detection(detection, frame().depth_m, INTRINSICS, IDENTITY,
                               LiftingSettings(box_percentile=0.0, amodal_completion=True),
                               view_forward_graph=np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(completed.centroid_m, plain.centroid_m, atol=1e-9)
    assert LiftingSettings.from_config(Config()).amodal_completion is True


def test_a_surface_that_is_widest_at_its_visible_bottom_is_not_extended_below_it():
    # A face that widens towards the table (a slightly turned box held in a gripper): its widest section is its
    # lowest, so its bottom is where it ends, not a surface curving away under the object.
    heights = np.linspace(-0.05, 0.05, 21)
    points = np.array([[-0.05, y, z] for z in heights for y in np.linspace(-0.05 if z < -0.045 else -0.03, 0.03, 13)])
    low, high = visible_box(points)
    completed_low, _ = complete_hidden_side(points, low, high, FORWARD_X, 1.0, 0.0)
    assert completed_low[2] == pytest.approx(low[2])


def test_a_step_in_the_width_is_no_round_section_and_grows_nothing():
    # A gripper seen from above: a narrow wrist (1 cm) on top of wide fingers (11 cm) whose sides are straight. The
    # convex hull of its widths drops the narrow slices, and a circle through the step's corner would reach its
    # top: every slice on the camera's side must read at least half the circle's width, which the wrist does not.
    rng = np.random.default_rng(0)
    wrist = np.stack([rng.uniform(-0.01, 0.01, 600), rng.uniform(-0.005, 0.005, 600), rng.uniform(0.03, 0.06, 600)], 1)
    fingers = np.stack([rng.uniform(-0.015, 0.015, 2400), rng.uniform(-0.055, 0.055, 2400),
                        rng.uniform(-0.02, 0.03, 2400)], 1)
    points = np.vstack([wrist, fingers])
    low, high = visible_box(points)
    completed_low, completed_high = complete_hidden_side(points, low, high, FORWARD_X, 1.0, 0.0)
    assert completed_low[2] == pytest.approx(low[2])


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(points=np.vstack([a["points"], [[np.nan, 0.0, 0.05]]])), "points_graph holds non-finite"),
    (lambda a: a.update(height=np.inf), "camera_height_m holds non-finite"),
    (lambda a: a.update(forward=2 * FORWARD_X), r"horizontal unit vector, got \[2.0, 0.0, 0.0\]"),
    (lambda a: a.update(forward=np.array([0.6, 0.0, 0.8])), "horizontal unit vector"),
    (lambda a: a.update(forward=np.array([np.nan, 0.0, 0.0])), r"horizontal unit vector, got \[nan, 0.0, 0.0\]")])
def test_complete_hidden_side_refuses_non_finite_input_and_a_direction_that_is_no_horizontal_unit_vector(
        change, message):
    points = sphere_points_seen_from(np.array([-1.0, 0.0, 0.4]))
    low, high = visible_box(points)
    arguments = {"points": points, "height": 0.4, "forward": FORWARD_X}
    change(arguments)
    with pytest.raises(PerceptionError, match=message):
        complete_hidden_side(arguments["points"], low, high, arguments["forward"], arguments["height"], 0.0)


def test_the_silhouette_is_the_objects_own_only_without_a_nearer_neighbour_or_the_image_border():
    from trusted_scene_graph.perception.lifting import _silhouette_is_own

    depth = np.full((30, 40), 3.0, np.float32)  # background far behind
    depth[10:20, 10:20] = 1.0  # the object
    inside = np.ones((10, 10), bool)
    assert _silhouette_is_own(inside, depth, 10, 10)
    depth[10:20, 6:10] = 0.6  # something in front, touching its left edge
    assert not _silhouette_is_own(inside, depth, 10, 10)
    assert not _silhouette_is_own(np.ones((10, 2), bool), depth, 0, 10)  # cut by the image border


def sphere_depth(centre_optical_m: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth image (background 5 m) and mask of a sphere seen by the INTRINSICS camera, by ray casting."""
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - INTRINSICS.cx) / INTRINSICS.fx, (rows - INTRINSICS.cy) / INTRINSICS.fy,
                     np.ones(rows.shape)], axis=-1)
    along = rays @ centre_optical_m / np.einsum("ijk,ijk->ij", rays, rays)  # z-depth of the closest approach
    closest = rays * along[..., None]
    miss_sq = radius_m ** 2 - np.sum((closest - centre_optical_m) ** 2, axis=-1)
    mask = miss_sq > 0
    depth = np.where(mask, along - np.sqrt(np.clip(miss_sq, 0, None)) / np.linalg.norm(rays, axis=-1), 5.0)
    return depth.astype(np.float32), mask


def test_an_object_with_an_occluded_edge_keeps_its_measured_box():
    # A level camera 1 m above the floor sees a sphere of radius 0.5 m at its own height, 3 m ahead: its back half
    # is hidden, and completion restores it, unless something in front cuts the sphere's silhouette.
    to_graph = RigidTransform.from_xyzw([0.0, 0.0, 1.0], [-0.5, 0.5, -0.5, 0.5])
    depth, mask = sphere_depth(np.array([0.0, 0.0, 3.0]), 0.5)
    rows, cols = np.nonzero(mask)
    detection = Detection("ball", 1.0, (int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1,
                                        int(np.ptp(rows)) + 1), mask)
    forward = np.array([1.0, 0.0, 0.0])
    completing = LiftingSettings(box_percentile=0.0, amodal_completion=True)
    measured = lift_detection(detection, depth, INTRINSICS, to_graph, EXACT, view_forward_graph=forward)
    completed = lift_detection(detection, depth, INTRINSICS, to_graph, completing, view_forward_graph=forward)
    # The true centre is at x = 3. The limb is r^2 / 3 m = 8 cm in front of it, so neither the visible points nor
    # the widest visible section put it there; the circle the widths trace does, within a few pixels' worth on a
    # 40 x 30 image (a pixel is 6 cm there).
    assert measured.centroid_m[0] < 2.8
    assert completed.centroid_m[0] == pytest.approx(3.0, abs=0.03)
    assert completed.size_m[0] == pytest.approx(1.0, abs=0.06)
    occluded_depth = depth.copy()
    left = cols.min()
    occluded_depth[:, left - 3:left + 2] = 1.0  # a post in front of the sphere's left edge
    occluded_mask = mask & (occluded_depth > 1.0)
    occluded = lift_detection(Detection("ball", 1.0, detection.box_xywh_px, occluded_mask), occluded_depth,
                              INTRINSICS, to_graph, completing, view_forward_graph=forward)
    plain = lift_detection(Detection("ball", 1.0, detection.box_xywh_px, occluded_mask), occluded_depth,
                           INTRINSICS, to_graph, EXACT, view_forward_graph=forward)
    np.testing.assert_allclose(occluded.centroid_m, plain.centroid_m)
