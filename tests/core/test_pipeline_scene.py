"""Specification of the frame -> scene graph pipeline (trusted_scene_graph.pipeline.scene)."""

from __future__ import annotations

import numpy as np
import pytest

from trusted_scene_graph import TsgError
from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry import Intrinsics
from trusted_scene_graph.perception import CameraFrame, PerceptionError
from trusted_scene_graph.perception.detector import SimDetector
from trusted_scene_graph.pipeline import PipelineError, ScenePipeline
from trusted_scene_graph.trust.assess import EdgeTrust

# x_optical = (u - 40) z / 100, y_optical = (v - 30) z / 80. The default extrinsic has the camera at the graph
# origin looking along +x: graph = (z, -x_optical, -y_optical).
INTRINSICS = Intrinsics(width=80, height=60, fx=100.0, fy=80.0, cx=40.0, cy=30.0)
CUBE_ID, TABLE_ID = 2, 3  # instance ids; the default detector.sim_labels maps them to "cube" and "table"

# Cube: rows 20..29, columns 10..19 at 1.5 m. Centre pixel (14.5, 24.5):
# x_opt = -25.5 * 1.5 / 100 = -0.3825, y_opt = -5.5 * 1.5 / 80 = -0.103125.
CUBE_CENTROID = np.array([1.5, 0.3825, 0.103125])
CUBE_SIZE = np.array([0.0, 9 * 1.5 / 100, 9 * 1.5 / 80])
# Table: rows 35..44, columns 50..69 at 2.0 m. Centre pixel (59.5, 39.5): x_opt = 0.39, y_opt = 0.2375.
TABLE_CENTROID = np.array([2.0, -0.39, -0.2375])
TABLE_SIZE = np.array([0.0, 19 * 2.0 / 100, 9 * 2.0 / 80])


def scene_frame(stamp_ns: int = 1_000, cube_shift_px: int = 0, depth=None, instances=True) -> CameraFrame:
    ids = np.zeros((60, 80), np.uint16)
    ids[20:30, 10 + cube_shift_px:20 + cube_shift_px] = CUBE_ID
    ids[35:45, 50:70] = TABLE_ID
    if depth is None:
        depth = np.full((60, 80), 4.0, np.float32)  # a wall behind both objects
        depth[ids == CUBE_ID] = 1.5
        depth[ids == TABLE_ID] = 2.0
    return CameraFrame(stamp_ns, np.zeros((60, 80, 3), np.uint8), depth, INTRINSICS, ids if instances else None)


def by_label(graph):
    return {obj.label: obj for obj in graph.objects}


def test_pipeline_errors_are_tsg_errors():
    assert issubclass(PipelineError, TsgError)


def test_the_graph_has_both_objects_with_their_labels_and_hand_computed_centroids():
    graph = ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame())
    objects = by_label(graph)
    assert sorted(objects) == ["cube", "table"]
    np.testing.assert_allclose(objects["cube"].centroid_m, CUBE_CENTROID, atol=1e-9)
    np.testing.assert_allclose(objects["table"].centroid_m, TABLE_CENTROID, atol=1e-9)
    np.testing.assert_allclose(objects["cube"].size_m, CUBE_SIZE, atol=1e-9)
    np.testing.assert_allclose(objects["table"].size_m, TABLE_SIZE, atol=1e-9)


def test_a_graph_of_some_labels_has_only_those_objects_placed_as_in_the_full_graph():
    pipeline = ScenePipeline(Config({"trust.model": "prior"}))
    graph = pipeline.process(scene_frame(), relations=False, labels={"cube"})
    assert [obj.label for obj in graph.objects] == ["cube"]
    np.testing.assert_allclose(graph.objects[0].centroid_m, CUBE_CENTROID, atol=1e-9)
    assert graph.relations == ()


def test_the_objects_carry_their_detection_and_track_data():
    cube = by_label(ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame()))["cube"]
    assert cube.score == 1.0
    assert cube.box_xywh_px == (10, 20, 10, 10)
    assert cube.depth_valid_fraction == 1.0
    assert cube.track_age == 1


def test_the_graph_carries_the_frame_stamp_the_graph_frame_and_the_threshold():
    config = Config({"trust.model": "prior", "graph_frame": "map", "trust.threshold": 0.4})
    graph = ScenePipeline(config).process(scene_frame(stamp_ns=42))
    assert graph.stamp_ns == 42
    assert graph.frame_id == "map"
    assert graph.trust_threshold == 0.4
    assert set(graph.timing_ms) == {"depth", "detect", "lift", "track", "relate", "trust"}
    assert all(ms >= 0.0 for ms in graph.timing_ms.values())


def test_the_object_on_the_left_of_the_image_is_left_of_the_other():
    graph = ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame())
    ids = {obj.label: obj.id for obj in graph.objects}
    left_of = [rel for rel in graph.relations if rel.predicate == "left_of"]
    assert [(rel.subject_id, rel.object_id) for rel in left_of] == [(ids["cube"], ids["table"])]
    assert left_of[0].margin_m == pytest.approx(0.3825 + 0.39)


def test_the_expected_relations_hold_between_the_two_objects():
    graph = ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame())
    assert {obj.label: obj.id for obj in graph.objects} == {"cube": 1, "table": 2}  # ids in instance-id order
    named = {(graph.object_by_id(r.subject_id).label, r.predicate, graph.object_by_id(r.object_id).label)
             for r in graph.relations}
    assert named == {
        ("cube", "left_of", "table"), ("table", "right_of", "cube"),
        ("cube", "above", "table"), ("table", "below", "cube"),
        ("cube", "in_front_of", "table"), ("table", "behind", "cube"),
        ("cube", "far", "table"), ("table", "far", "cube"),
        ("table", "taller_than", "cube"),
        # Both lifted boxes have no thickness along x (zero volume); bigger_than compares their largest faces,
        # sqrt(0.38 * 0.225) = 0.292 m against sqrt(0.135 * 0.16875) = 0.151 m.
        ("table", "bigger_than", "cube"),
        # measurements: one edge per pair, from the lower id
        ("cube", "distance", "table"), ("cube", "surface_distance", "table"),
        ("cube", "horizontal_offset", "table"), ("cube", "vertical_offset", "table"),
    }
    distance = next(r for r in graph.relations if r.predicate == "distance")
    assert distance.value_m == pytest.approx(float(np.linalg.norm(CUBE_CENTROID - TABLE_CENTROID)))
    assert graph.num_pruned == 0


def test_edges_below_the_trust_threshold_are_pruned_and_counted():
    # With a 1 m margin scale the trusts are logistic(margin): left_of 0.68, in_front_of 0.62, far 0.64 (margin
    # 0.582) but above/below only logistic(0.340625) = 0.584, taller_than (table 0.225 m vs cube 0.16875 m)
    # logistic(0.05625) = 0.514 and bigger_than (0.292 m vs 0.151 m) logistic(0.1415) = 0.535, so a 0.6 threshold
    # prunes exactly those four.
    config = Config({"trust.model": "prior", "relations.margin_scale_m": 1.0, "trust.threshold": 0.6})
    graph = ScenePipeline(config).process(scene_frame())
    assert graph.num_pruned == 4
    assert len(graph.relations) == 10
    assert {rel.predicate for rel in graph.relations}.isdisjoint({"above", "below", "taller_than", "bigger_than"})
    assert all(rel.trust >= 0.6 for rel in graph.relations)


def test_reconfigure_changes_the_threshold_and_keeps_the_tracks():
    pipeline = ScenePipeline(Config({"trust.model": "prior"}))
    first = pipeline.process(scene_frame())
    pipeline.reconfigure(Config({"trust.model": "prior", "relations.margin_scale_m": 1.0, "trust.threshold": 0.6}))
    second = pipeline.process(scene_frame())
    assert (first.num_pruned, second.num_pruned) == (0, 4)
    assert {o.label: o.id for o in first.objects} == {o.label: o.id for o in second.objects}


def test_reconfigure_applies_the_detectors_writable_parameters_and_a_given_detector_keeps_its_own_until_then():
    detector = SimDetector({CUBE_ID: "cube", TABLE_ID: "table"}, min_pixels=5)
    pipeline = ScenePipeline(Config({"trust.model": "prior"}), detector=detector)
    assert detector.min_pixels == 5
    assert len(pipeline.process(scene_frame()).objects) == 2
    pipeline.reconfigure(Config({"trust.model": "prior", "detector.min_pixels": 10_000,
                                 "detector.corruption.miss_rate": 1.0}))
    assert (detector.min_pixels, detector.corruption.miss_rate) == (10_000, 1.0)
    assert len(pipeline.process(scene_frame(stamp_ns=2_000)).objects) == 0


def test_a_restarted_pipeline_gives_what_a_new_one_gives_whatever_it_processed_before():
    config = Config({"trust.model": "prior", "detector.corruption.miss_rate": 0.5, "detector.corruption.seed": 7,
                     "detector.corruption.box_jitter_px": 1.5})
    used = ScenePipeline(config)
    for stamp in range(1, 6):
        used.process(scene_frame(stamp_ns=stamp))
    used.restart()
    fresh = ScenePipeline(config)
    for stamp in range(10, 16):
        a, b = used.process(scene_frame(stamp_ns=stamp)), fresh.process(scene_frame(stamp_ns=stamp))
        assert [(o.id, o.label, o.centroid_m.tolist()) for o in a.objects] == [
            (o.id, o.label, o.centroid_m.tolist()) for o in b.objects]


def test_an_all_nan_depth_image_raises_a_pipeline_error():
    depth = np.full((60, 80), np.nan, np.float32)
    with pytest.raises(PipelineError, match=r"^depth image has no valid pixel "
                                            r"\(all NaN, zero or outside \[0.05, 10.0\] m\)$"):
        ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame(depth=depth))


def test_a_depth_image_entirely_out_of_range_raises_a_pipeline_error():
    depth = np.full((60, 80), 50.0, np.float32)  # beyond the default depth.max_m of 10 m
    with pytest.raises(PipelineError, match="no valid pixel"):
        ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame(depth=depth))


def test_objects_without_usable_depth_are_left_out_of_the_graph():
    depth = np.full((60, 80), 4.0, np.float32)
    depth[35:45, 50:70] = 2.0  # the table has depth, the cube's pixels stay NaN
    depth[20:30, 10:20] = np.nan
    graph = ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame(depth=depth))
    assert [obj.label for obj in graph.objects] == ["table"]
    assert graph.relations == ()


def test_the_sim_pipeline_needs_instances_and_fails_without_them():
    pipeline = ScenePipeline(Config({"trust.model": "prior"}))
    assert pipeline.needs_instances is True
    with pytest.raises(PerceptionError, match=r"needs an instance-id image"):
        pipeline.process(scene_frame(instances=False))


def test_an_injected_detector_is_used_instead_of_the_configured_one():
    pipeline = ScenePipeline(Config({"trust.model": "prior"}), detector=SimDetector({CUBE_ID: "mug"}))
    assert [obj.label for obj in pipeline.process(scene_frame()).objects] == ["mug"]


def test_object_ids_persist_across_frames_and_ages_grow():
    pipeline = ScenePipeline(Config({"trust.model": "prior"}))
    first = pipeline.process(scene_frame(stamp_ns=1))
    second = pipeline.process(scene_frame(stamp_ns=2, cube_shift_px=2))  # the cube moves 3 cm, within the gate
    assert {o.label: o.id for o in first.objects} == {o.label: o.id for o in second.objects}
    assert sorted(o.id for o in first.objects) == [1, 2]
    assert all(o.track_age == 2 for o in second.objects)
    assert by_label(second)["cube"].centroid_m[1] == pytest.approx(CUBE_CENTROID[1] - 2 * 1.5 / 100)


def test_a_camera_looking_straight_down_relates_objects_by_image_left_and_right():
    looking_down = [1.0, 0.0, 0.0, 0.0]  # 180 degrees about x: optical z (forward) -> graph -z
    pipeline = ScenePipeline(Config({"trust.model": "prior", "extrinsic.rotation_xyzw": looking_down}))
    assert pipeline.camera_forward_graph == pytest.approx([0.0, 0.0, -1.0])
    graph = pipeline.process(scene_frame())
    left_in_image, right_in_image = sorted(graph.objects, key=lambda o: o.box_xywh_px[0])
    predicates = {(r.subject_id, r.predicate, r.object_id) for r in graph.relations}
    assert (left_in_image.id, "left_of", right_in_image.id) in predicates
    assert (right_in_image.id, "left_of", left_in_image.id) not in predicates


@pytest.mark.parametrize("roll_deg", [0, 45, 90, 180, -90])
def test_lifting_s_viewing_direction_is_the_optical_axis_seen_from_above_however_the_camera_is_rolled(roll_deg):
    # A wrist camera or an upside-down mount: the hidden side of a round object lies along the optical axis, not
    # along the relations' forward (image-left turned 90 degrees), which a roll turns sideways or backwards.
    from scipy.spatial.transform import Rotation

    pitched_down = Rotation.from_euler("y", 30, degrees=True) * Rotation.from_quat([-0.5, 0.5, -0.5, 0.5])
    rolled = pitched_down * Rotation.from_euler("z", roll_deg, degrees=True)  # about the optical axis
    pipeline = ScenePipeline(Config({"trust.model": "prior", "extrinsic.rotation_xyzw": rolled.as_quat().tolist()}))
    assert pipeline.camera_forward_graph == pytest.approx([np.cos(np.pi / 6), 0.0, -np.sin(np.pi / 6)])
    assert pipeline.view_forward_graph == pytest.approx([1.0, 0.0, 0.0])
    looking_down = ScenePipeline(Config({"trust.model": "prior", "extrinsic.rotation_xyzw": [1.0, 0.0, 0.0, 0.0]}))
    assert np.linalg.norm(looking_down.view_forward_graph) == pytest.approx(1.0)  # image-up's, where none is level


# --- the graph frame from the support plane ----------------------------------------------------------------------

PLANE_FIT = {"extrinsic.source": "plane_fit"}


def scattered_depth(seed: int = 0) -> np.ndarray:
    """Depth with no dominant plane: every pixel at a random distance."""
    return np.random.default_rng(seed).uniform(1.0, 5.0, (60, 80)).astype(np.float32)


def test_with_a_static_extrinsic_the_status_says_so():
    assert ScenePipeline(Config({"trust.model": "prior"})).frame_status() == {"graph_frame_source": "static"}


def test_the_trust_status_names_the_model_and_the_threshold_it_prunes_at():
    assert ScenePipeline(Config({"trust.model": "prior"})).trust_status() == {
        "trust_model": "geometric margin prior (uncalibrated, threshold 0.6)", "trust_threshold": "0.600"}
    status = ScenePipeline(Config()).trust_status()
    assert status["trust_model"].startswith("learned trust model (") and "default_model" in status["trust_model"]
    assert ScenePipeline(Config({"trust.threshold": 0.8})).trust_status()["trust_threshold"] == "0.800"


def test_plane_fit_finds_the_wall_behind_the_objects_and_reports_it():
    pipeline = ScenePipeline(Config(PLANE_FIT))
    assert pipeline.frame_status() == {"graph_frame_source": "plane_fit", "support_plane": "not fitted yet"}
    graph = pipeline.process(scene_frame())
    status = pipeline.frame_status()
    assert float(status["camera_height_m"]) == pytest.approx(4.0, abs=0.01)  # the wall 4 m away is the "floor"
    assert float(status["plane_inlier_fraction"]) > 0.8
    assert {obj.label for obj in graph.objects} == {"cube", "table"}


def test_a_first_frame_without_a_dominant_plane_is_skipped_with_the_reason():
    with pytest.raises(PipelineError, match=r"extrinsic.source 'plane_fit': no support plane in this frame: no "
                                            r"dominant plane"):
        ScenePipeline(Config(PLANE_FIT)).process(scene_frame(depth=scattered_depth()))


def test_a_failed_refit_keeps_the_last_good_plane():
    pipeline = ScenePipeline(Config({**PLANE_FIT, "extrinsic.plane_fit.refit_frames": 1}))
    pipeline.process(scene_frame())
    fitted = pipeline.camera_to_graph
    pipeline.process(scene_frame(depth=scattered_depth()))  # the refit fails; the frame still becomes a graph
    assert pipeline.camera_to_graph is fitted


def test_detections_cannot_be_lifted_before_the_plane_is_fitted():
    pipeline = ScenePipeline(Config(PLANE_FIT))
    frame = scene_frame()
    with pytest.raises(PipelineError, match="camera-to-graph transform is not known yet"):
        pipeline.process_detections(frame.stamp_ns, [], frame.depth_m, frame.intrinsics)


def test_a_pipeline_built_without_relations_loads_no_trust_model_and_places_the_same_objects(tmp_path):
    # A trust.model that would fail to load: an objects-only pipeline never reads it.
    missing = Config({"trust.model": str(tmp_path / "no-such-model")})
    with pytest.raises(TsgError, match="is not 'default', 'prior' or an existing model directory"):
        ScenePipeline(missing)
    objects_only = ScenePipeline(missing, relations=False)
    assert objects_only.trust is None
    graph = objects_only.process(scene_frame(), relations=False)
    full = ScenePipeline(Config({"trust.model": "prior"})).process(scene_frame())
    assert [(o.id, o.label) for o in graph.objects] == [(o.id, o.label) for o in full.objects]
    for a, b in zip(graph.objects, full.objects, strict=True):
        np.testing.assert_allclose(a.centroid_m, b.centroid_m)
    assert graph.relations == () and np.isnan(graph.trust_threshold)  # no edges, so no threshold applied
    assert objects_only.trust_status() == {"trust_model": "none (a pipeline of objects only)",
                                           "trust_threshold": "none"}


def test_only_a_pipeline_with_a_trust_model_keeps_a_prepared_frame_s_colour_image_for_its_vlm():
    frame = scene_frame()
    assert ScenePipeline(Config({"trust.model": "prior"})).prepare(frame).image_rgb is frame.rgb
    # tsg label's pipeline never asks a VLM: its frames, waiting in a batch, do not hold the image (and its message)
    assert ScenePipeline(Config({"trust.model": "prior"}), relations=False).prepare(frame).image_rgb is None


@pytest.mark.parametrize("depth_m", [np.full((60, 80), np.nan, np.float32), np.full((60, 80), 0.01, np.float32),
                                     np.full((60, 80), 50.0, np.float32)], ids=["no value", "too near", "too far"])
def test_a_frame_without_depth_in_the_configured_range_is_refused_naming_the_range(depth_m):
    with pytest.raises(PipelineError, match=r"depth image has no valid pixel \(all NaN, zero or outside \[0.05, "):
        ScenePipeline(Config({"trust.model": "prior"})).prepare(scene_frame(depth=depth_m))


def test_a_pipeline_built_without_relations_refuses_to_relate():
    with pytest.raises(PipelineError, match=r"^a pipeline built with relations=False has no trust step: give it no "
                                            r"trust model$"):
        ScenePipeline(Config({"trust.model": "prior"}), trust=EdgeTrust(Config({"trust.model": "prior"})),
                      relations=False)
    pipeline = ScenePipeline(Config(), relations=False)
    with pytest.raises(PipelineError, match=r"^this pipeline was built with relations=False \(objects only, as tsg "
                                            r"label builds it\): it has no trust model"):
        pipeline.process(scene_frame())


def test_without_relations_the_pipeline_stops_after_tracking_with_the_same_objects():
    from trusted_scene_graph.sim.synthetic import SyntheticFrame

    config = Config()
    scene = SyntheticFrame()
    frame = CameraFrame(1, scene.rgb, scene.depth_m, scene.intrinsics, scene.instance_ids)
    full = ScenePipeline(config).process(frame)
    objects_only = ScenePipeline(config).process(frame, relations=False)
    assert full.relations and objects_only.relations == () and objects_only.candidates is None
    assert [(o.id, o.label) for o in objects_only.objects] == [(o.id, o.label) for o in full.objects]
    for a, b in zip(objects_only.objects, full.objects, strict=True):
        np.testing.assert_allclose(a.centroid_m, b.centroid_m)
    assert "trust" not in objects_only.timing_ms and "relate" not in objects_only.timing_ms
