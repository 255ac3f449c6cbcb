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

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import CameraFrame, Detection, SimDetector
from trusted_scene_graph.perception.lifting import LiftingSettings, lift_detection
from trusted_scene_graph.perception.silhouette import depth_noise_m, depth_silhouette

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
