"""A box-only detection's silhouette from depth (:mod:`trusted_scene_graph.perception.silhouette`), on depth images
ray-cast here from boxes whose every number is given.

Camera: the default extrinsic (at the graph origin, looking along +x, graph +y image left, +z image up), 640 x 480
pixels, f = 500 px, principal point (320, 240): a ray through pixel (u, v) is (1, -(u - 320) / 500, -(v - 240) / 500)
in the graph frame. Scene: a floor at z = -0.5 m (the support), a wall at x = 3 m, and axis-aligned boxes on the floor.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.corruption import DetectionCorruption
from trusted_scene_graph.perception.detector import CameraFrame, Detection, SimDetector
from trusted_scene_graph.perception.lifting import LiftingSettings, LiftRequest, lift_detection, lift_frames
from trusted_scene_graph.perception.silhouette import depth_noise_m, depth_silhouette, nested_boxes
from trusted_scene_graph.pipeline import ScenePipeline

INTRINSICS = Intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
CAMERA_TO_GRAPH = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [-0.5, 0.5, -0.5, 0.5])
FLOOR_Z_M, WALL_X_M = -0.5, 3.0
# A 20 cm cube standing on the floor 1.5 m ahead, and a 10 cm cube floating 20 cm in front of its upper half.
CUBE = (np.array([1.5, 0.0, -0.4]), np.array([0.2, 0.2, 0.2]))
OCCLUDER = (np.array([1.2, 0.05, -0.3]), np.array([0.1, 0.1, 0.1]))


def ray_cast(boxes: list[tuple[np.ndarray, np.ndarray]], camera: RigidTransform = CAMERA_TO_GRAPH,
             floor_z_m: float = FLOOR_Z_M) -> tuple[np.ndarray, np.ndarray]:
    """Depth (along the optical axis) of the nearest surface at every pixel seen from ``camera``, and which box it is
    (-1: floor or wall)."""
    u, v = np.meshgrid(np.arange(640.0), np.arange(480.0))
    optical = np.stack([(u - 320.0) / 500.0, (v - 240.0) / 500.0, np.ones_like(u)], axis=-1)
    direction = optical @ camera.rotation_matrix_t  # graph-frame ray per unit of optical depth
    origin = camera.translation_m
    with np.errstate(divide="ignore", invalid="ignore"):
        floor_t = np.where(direction[..., 2] < 0, (floor_z_m - origin[2]) / direction[..., 2], np.inf)
        wall_t = np.where(direction[..., 0] > 0, (WALL_X_M - origin[0]) / direction[..., 0], np.inf)
    depth = np.minimum(floor_t, wall_t)
    which = np.full(depth.shape, -1)
    for index, (centre, size) in enumerate(boxes):
        low, high = centre - size / 2 - origin, centre + size / 2 - origin
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = low / direction, high / direction
        near_t = np.nanmax(np.minimum(t1, t2), axis=-1)
        far_t = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (near_t <= far_t) & (near_t > 0) & (near_t < depth)
        depth = np.where(hit, near_t, depth)
        which = np.where(hit, index, which)
    return depth, which


def box_of(pixels: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def silhouette(depth: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    return depth_silhouette(box, depth, INTRINSICS, CAMERA_TO_GRAPH, 0.05, 10.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / np.count_nonzero(a | b))


def test_a_cube_on_the_floor_is_told_from_the_floor_around_it() -> None:
    depth, which = ray_cast([CUBE])
    cube = which == 0
    found = silhouette(depth, box_of(cube))
    assert found is not None
    # Exact depth: only the cube's bottom row of pixels, within 2 mm of the floor, is taken for floor.
    assert iou(found, cube) > 0.98
    assert not (found & ~cube).any()


@pytest.mark.parametrize("sigma_m", [0.0, 0.001, 0.002, 0.005])
def test_the_depth_noise_is_read_from_the_image_edges_and_all(sigma_m: float) -> None:
    # Over the cube's box and the floor and wall around it (edges included), the estimate is within 15 % of the
    # noise added (exact depth: under 0.1 mm, from the floor's curvature in the image).
    depth, _ = ray_cast([CUBE])
    patch = (depth + np.random.default_rng(1).normal(0.0, sigma_m, depth.shape))[300:440, 250:370]
    estimate_m = depth_noise_m(patch, np.isfinite(patch))
    assert estimate_m == pytest.approx(sigma_m, rel=0.15, abs=1e-4)


@pytest.mark.parametrize("sigma_m", [0.002, 0.005])
def test_with_depth_noise_the_cube_is_still_found(sigma_m: float) -> None:
    # A Kinect's noise at about 1.5 m, and more.
    depth, which = ray_cast([CUBE])
    noisy = depth + np.random.default_rng(0).normal(0.0, sigma_m, depth.shape)
    cube = which == 0
    found = silhouette(noisy, box_of(cube))
    assert found is not None
    assert iou(found, cube) > 0.85
    assert np.count_nonzero(found & ~cube) < 0.02 * np.count_nonzero(cube)


def test_an_object_on_a_table_is_cut_at_the_table_top_not_at_the_floor_beyond_its_edge() -> None:
    # Camera 1 m above the floor, pitched 45 degrees down; a 0.4 m tall table ends at x = 1.2 m and a 10 cm cube
    # stands on it 3 cm from that edge, so the floor beyond the edge shows in the margin around the cube's box.
    pitch = Rotation.from_euler("y", 45, degrees=True).as_matrix()
    camera = RigidTransform.from_xyzw([0.0, 0.0, 1.0],
                                      Rotation.from_matrix(pitch @ CAMERA_TO_GRAPH.rotation_matrix_t.T).as_quat())
    table = (np.array([0.9, 0.0, 0.2]), np.array([0.6, 2.0, 0.4]))
    cube = (np.array([1.12, 0.0, 0.45]), np.array([0.1, 0.1, 0.1]))
    depth, which = ray_cast([table, cube], camera, floor_z_m=0.0)
    found = depth_silhouette(box_of(which == 1), depth, INTRINSICS, camera, 0.05, 10.0)
    assert found is not None
    assert iou(found, which == 1) > 0.95
    assert not (found & (which == 0)).any()


def test_the_object_reaching_the_box_edges_wins_over_one_in_front_covering_most_of_its_centre() -> None:
    # A 12 cm cube floating just in front of the 20 cm one (3 cm: a depth jump, within the box's size), shifted left,
    # covers most of the box's central half and crosses only its left and bottom edges; the 20 cm cube, seen around
    # it, reaches all four.
    in_front = (np.array([1.33, 0.03, -0.35]), np.array([0.12, 0.12, 0.12]))
    depth, which = ray_cast([CUBE, in_front])
    seen = which == 0
    x, y, w, h = box_of(seen)
    central = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert np.count_nonzero(which[central] == 1) > np.count_nonzero(seen[central])  # the centre is mostly in front
    found = silhouette(depth, (x, y, w, h))
    assert found is not None
    # The strip of the 20 cm cube below the one in front is a region of its own, so not all of it is found.
    assert iou(found, seen) > 0.8
    assert not (found & (which == 1)).any()


def test_an_object_in_front_is_parted_from_the_one_the_box_was_drawn_around_by_its_depth_jump() -> None:
    depth, which = ray_cast([CUBE, OCCLUDER])
    cube, occluder = which == 0, which == 1
    found = silhouette(depth, box_of(cube))  # a detector's box around the cube's visible pixels
    assert found is not None
    assert iou(found, cube) > 0.95
    assert np.count_nonzero(found & occluder) <= 0.05 * np.count_nonzero(occluder)  # at most its rim


def test_an_open_gripper_is_its_two_fingers_not_the_floor_between_them() -> None:
    # Two 2 cm fingers 8 cm apart, 10 cm tall, standing on the floor at 1.5 m: the box's central half is floor.
    fingers = [(np.array([1.5, y, -0.45]), np.array([0.02, 0.02, 0.1])) for y in (0.05, -0.05)]
    depth, which = ray_cast(fingers)
    both = which >= 0
    found = silhouette(depth, box_of(both))
    assert found is not None
    assert iou(found, both) > 0.9


@pytest.mark.parametrize("case", ["floor only", "no valid depth", "too small"])
def test_no_silhouette_where_nothing_stands_out_in_depth(case: str) -> None:
    depth, _ = ray_cast([CUBE])
    box = {"floor only": (100, 420, 200, 50), "no valid depth": (100, 100, 50, 50), "too small": (300, 300, 1, 1)}[case]
    if case == "no valid depth":
        depth[100:150, 100:150] = np.nan
    assert silhouette(depth, box) is None


def test_lifting_a_box_only_detection_with_its_silhouette_finds_the_cube_not_its_front_face() -> None:
    depth, which = ray_cast([CUBE])
    detection = Detection("cube", 0.9, box_of(which == 0), None)
    errors_m = {}
    for on in (False, True):
        settings = LiftingSettings(box_percentile=2.0, outlier_mad_k=4.0, amodal_completion=True, max_gap_m=0.01,
                                   box_silhouette=on)
        lifted = lift_detection(detection, depth, INTRINSICS, CAMERA_TO_GRAPH, settings, np.array([1.0, 0.0, 0.0]))
        assert lifted is not None and lifted.detection is detection  # the result keeps the detector's detection
        errors_m[on] = float(np.linalg.norm(lifted.centroid_m - CUBE[0]))
    # Without it the box spans the front face (the cube's centre is 10 cm behind it); with it the top face seen from
    # above gives the depth. The back half stays hidden (boxes are not completed), so the centre is still short.
    assert errors_m[True] < 0.5 * errors_m[False]


def test_a_silhouetted_detection_reports_the_boxs_share_of_valid_depth_not_its_own() -> None:
    # No depth on the box's left 40 % (a reflective side): the silhouette holds only pixels with depth, but the
    # reward's and the trust's depth checks must see that 40 % of the box has none.
    depth, which = ray_cast([CUBE])
    box = box_of(which == 0)
    x, y, w, h = box
    holes = np.zeros(depth.shape, dtype=bool)
    holes[y:y + h, x:x + (2 * w) // 5] = True
    depth = np.where(holes, np.nan, depth)
    settings = LiftingSettings(box_percentile=2.0, outlier_mad_k=4.0, amodal_completion=True, max_gap_m=0.01,
                               box_silhouette=True)
    lifted = lift_detection(Detection("cube", 0.9, box, None), depth, INTRINSICS, CAMERA_TO_GRAPH, settings,
                            np.array([1.0, 0.0, 0.0]))
    assert lifted is not None
    assert lifted.depth_valid_fraction == pytest.approx(1.0 - np.count_nonzero(holes) / (w * h))


def test_the_sim_detector_can_give_boxes_only_as_a_box_detector_does() -> None:
    instances = np.zeros((480, 640), dtype=np.uint16)
    instances[200:260, 300:340] = 2
    frame = CameraFrame(0, np.zeros((480, 640, 3), np.uint8), np.ones((480, 640), np.float32), INTRINSICS, instances)
    with_masks, boxes_only = (SimDetector({2: "cube"}, masks=masks).detect(frame) for masks in (True, False))
    assert [d.box_xywh_px for d in boxes_only] == [d.box_xywh_px for d in with_masks] == [(300, 200, 40, 60)]
    assert with_masks[0].mask is not None and boxes_only[0].mask is None


def test_a_detector_says_whether_every_detection_has_a_mask() -> None:
    # When one may not, a caller asking for some labels gets them all (the others are a box-only silhouette's context).
    assert SimDetector({2: "cube"}, masks=True).every_detection_masked
    assert not SimDetector({2: "cube"}, masks=False).every_detection_masked
    # A corrupted detector's false positives and boxes jittered off their pixels have no mask.
    corrupted = SimDetector({2: "cube"}, masks=True, corruption=DetectionCorruption(false_positive_rate=0.5))
    assert not corrupted.every_detection_masked


# --- boxes nested in a box: objects on a table --------------------------------------------------------------------

# Camera 1 m above the floor, pitched 45 degrees down, over a 0.4 m tall table with two 10 cm cubes on it.
PITCHED = RigidTransform.from_xyzw([0.0, 0.0, 1.0], Rotation.from_matrix(
    Rotation.from_euler("y", 45, degrees=True).as_matrix() @ CAMERA_TO_GRAPH.rotation_matrix_t.T).as_quat())
ON_TABLE = [(np.array([1.2, 0.2, 0.45]), np.array([0.1, 0.1, 0.1])),
            (np.array([1.0, -0.3, 0.45]), np.array([0.1, 0.1, 0.1]))]
TABLE_TOP_Z_M = 0.4
TABLES = {"filling the view": (np.array([1.5, 0.0, 0.2]), np.array([3.0, 6.0, 0.4])),  # no floor in its box
          "its front edge in view": (np.array([1.6, 0.0, 0.2]), np.array([1.6, 6.0, 0.4]))}  # floor below its edge
BOX_SETTINGS = LiftingSettings(box_percentile=2.0, outlier_mad_k=4.0, amodal_completion=True, max_gap_m=0.01,
                               box_silhouette=True)


def table_scene(table: str) -> tuple[np.ndarray, np.ndarray, list[Detection]]:
    """Depth, which surface each pixel is (0 the table, 1 and 2 the cubes) and the boxes a box detector gives."""
    depth, which = ray_cast([TABLES[table], *ON_TABLE], PITCHED, floor_z_m=0.0)
    detections = [Detection(label, 0.9, box_of(which == index), None)
                  for index, label in enumerate(("table", "cube", "cube"))]
    return depth, which, detections


def test_a_box_is_nested_in_another_when_it_is_small_and_inside_it() -> None:
    table = (0, 0, 100, 100)
    assert nested_boxes(table, [(10, 10, 20, 20), (90, 90, 20, 20), (0, 0, 100, 100), table], exclude=3) == [
        (10, 10, 20, 20)]  # not one mostly outside, not one as large (the same object detected twice), not itself
    # A cube held in a gripper's box (FetchPickAndPlace): 93 % inside it, but with 65 % of its area. Parting them is
    # left to depth: the cube's box holds the gripper's front finger.
    gripper = (0, 0, 100, 40)
    assert nested_boxes(gripper, [(3, 6, 93, 28)]) == []


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_table_seen_with_objects_on_it_is_its_top_not_the_objects(table: str) -> None:
    depth, which, detections = table_scene(table)
    table_box = detections[0].box_xywh_px
    nested = nested_boxes(table_box, [d.box_xywh_px for d in detections[1:]])
    assert len(nested) == 2
    found = depth_silhouette(table_box, depth, INTRINSICS, PITCHED, 0.05, 10.0, nested)
    assert found is not None
    assert not (found & (which >= 1)).any()
    assert iou(found, which == 0) > 0.8
    # Lifted with the cubes as its context, the table's top is the table top's height.
    lifted = lift_frames([LiftRequest(detections[:1], depth, INTRINSICS, PITCHED, np.array([1.0, 0.0, 0.0]),
                                      detections[1:])], BOX_SETTINGS)[0][0]
    assert lifted is not None
    assert lifted.centroid_m[2] + lifted.size_m[2] / 2 == pytest.approx(TABLE_TOP_Z_M, abs=0.01)


def test_a_few_stray_pixels_standing_out_do_not_hide_the_surface_the_objects_stand_on() -> None:
    # Depth noise and flying pixels at the cubes' edges: 0.5 % of the table's box reads 5 cm nearer than it is.
    depth, which, detections = table_scene("filling the view")
    stray = np.random.default_rng(0).random(depth.shape) < 0.005
    depth = np.where(stray, depth - 0.05, depth)
    table_box = detections[0].box_xywh_px
    found = depth_silhouette(table_box, depth, INTRINSICS, PITCHED, 0.05, 10.0,
                             nested_boxes(table_box, [d.box_xywh_px for d in detections[1:]]))
    assert found is not None
    assert iou(found, (which == 0) & ~stray) > 0.8
    assert not (found & (which >= 1)).any()


def test_the_surface_is_its_level_only_not_the_floor_beyond_its_far_edge() -> None:
    # A table from under the camera to 1.6 m: the top rows see the floor beyond its far edge (about 2 % of the image),
    # too little to be the support level, but below it. A loose box, the whole image, holds them.
    table = (np.array([0.8, 0.0, 0.2]), np.array([1.6, 6.0, 0.4]))
    depth, which = ray_cast([table, *ON_TABLE], PITCHED, floor_z_m=0.0)
    floor = which == -1
    assert 0.005 < floor.mean() < 0.05
    whole_image = (0, 0, 640, 480)
    found = depth_silhouette(whole_image, depth, INTRINSICS, PITCHED, 0.05, 10.0,
                             nested_boxes(whole_image, [box_of(which == index) for index in (1, 2)]))
    assert found is not None
    assert not (found & floor).any()
    assert iou(found, which == 0) > 0.8


def test_without_its_nested_boxes_a_table_takes_the_objects_on_it_or_has_no_silhouette() -> None:
    # What the nested boxes change. With the floor in view the table top stands out, and the cubes with it (their
    # bases touch it without a depth jump), so its box reaches up to the cubes' tops; filling the view, the table top
    # is the support and the cubes are all that stands: too little of the box, so no silhouette.
    depth, which, detections = table_scene("its front edge in view")
    found = depth_silhouette(detections[0].box_xywh_px, depth, INTRINSICS, PITCHED, 0.05, 10.0)
    assert found is not None and (found & (which >= 1)).any()
    lifted = lift_detection(detections[0], depth, INTRINSICS, PITCHED, BOX_SETTINGS, np.array([1.0, 0.0, 0.0]))
    assert lifted is not None and lifted.centroid_m[2] + lifted.size_m[2] / 2 > TABLE_TOP_Z_M + 0.05
    depth, _, detections = table_scene("filling the view")
    assert depth_silhouette(detections[0].box_xywh_px, depth, INTRINSICS, PITCHED, 0.05, 10.0) is None


def test_a_labeller_asking_for_the_table_alone_lifts_it_as_the_full_graph_does() -> None:
    # tsg label lifts only the labels its pairs name; the table's silhouette still leaves out the cubes on it.
    depth, which, _ = table_scene("its front edge in view")
    translation, rotation_xyzw = [0.0, 0.0, 1.0], Rotation.from_matrix(PITCHED.rotation_matrix_t.T).as_quat()
    config = Config({"trust.model": "prior", "extrinsic.translation_m": translation,
                     "extrinsic.rotation_xyzw": [float(q) for q in rotation_xyzw]})
    frame = CameraFrame(0, np.zeros((480, 640, 3), np.uint8), depth.astype(np.float32), INTRINSICS,
                        (which + 1).astype(np.uint16))  # ids: 1 the table, 2 and 3 the cubes; 0 the floor
    tables = {}
    for labels in (None, {"table"}):
        pipeline = ScenePipeline(config, detector=SimDetector({1: "table", 2: "cube", 3: "cube"}, masks=False))
        graph = pipeline.process(frame, relations=False, labels=labels)
        tables[labels is None] = next(o for o in graph.objects if o.label == "table")
    np.testing.assert_array_equal(tables[True].centroid_m, tables[False].centroid_m)
    np.testing.assert_array_equal(tables[True].size_m, tables[False].size_m)
    assert tables[True].centroid_m[2] + tables[True].size_m[2] / 2 == pytest.approx(TABLE_TOP_Z_M, abs=0.01)
