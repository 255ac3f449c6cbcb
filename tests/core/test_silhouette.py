"""A box-only detection's silhouette from depth (:mod:`trusted_scene_graph.perception.silhouette`), on depth images
ray-cast here from boxes whose every number is given.

Camera: the default extrinsic (at the graph origin, looking along +x, graph +y image left, +z image up), 640 x 480
pixels, f = 500 px, principal point (320, 240): a ray through pixel (u, v) is (1, -(u - 320) / 500, -(v - 240) / 500)
in the graph frame. Scene: a floor at z = -0.5 m (the support), a wall at x = 3 m, and axis-aligned boxes on the floor.
"""

from __future__ import annotations

import numpy as np
import pytest

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import CameraFrame, Detection, SimDetector
from trusted_scene_graph.perception.lifting import LiftingSettings, lift_detection
from trusted_scene_graph.perception.silhouette import depth_silhouette

INTRINSICS = Intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)
CAMERA_TO_GRAPH = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [-0.5, 0.5, -0.5, 0.5])
FLOOR_Z_M, WALL_X_M = -0.5, 3.0
# A 20 cm cube standing on the floor 1.5 m ahead, and a 10 cm cube floating 20 cm in front of its upper half.
CUBE = (np.array([1.5, 0.0, -0.4]), np.array([0.2, 0.2, 0.2]))
OCCLUDER = (np.array([1.2, 0.05, -0.3]), np.array([0.1, 0.1, 0.1]))


def ray_cast(boxes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Depth (optical z = graph x) of the nearest surface at every pixel, and which box it is (-1: floor or wall)."""
    u, v = np.meshgrid(np.arange(640.0), np.arange(480.0))
    direction = np.stack([np.ones_like(u), -(u - 320.0) / 500.0, -(v - 240.0) / 500.0], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor_t = np.where(direction[..., 2] < 0, FLOOR_Z_M / direction[..., 2], np.inf)
    depth = np.minimum(floor_t, WALL_X_M)  # t along a ray with unit x is the depth
    which = np.full(depth.shape, -1)
    for index, (centre, size) in enumerate(boxes):
        low, high = centre - size / 2, centre + size / 2
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


def test_a_cube_on_the_floor_is_told_from_the_floor_around_it_and_the_wall_behind() -> None:
    depth, which = ray_cast([CUBE])
    cube = which == 0
    found = silhouette(depth, box_of(cube))
    assert found is not None
    # Exact depth: only the cube's bottom row of pixels, within 2 mm of the floor, is taken for floor.
    assert iou(found, cube) > 0.98
    assert not (found & ~cube).any()


def test_with_depth_noise_the_support_tolerance_follows_the_noise() -> None:
    depth, which = ray_cast([CUBE])
    noisy = depth + np.random.default_rng(0).normal(0.0, 0.002, depth.shape)  # a Kinect's at about 1.5 m
    found = silhouette(noisy, box_of(which == 0))
    assert found is not None
    assert iou(found, which == 0) > 0.9


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


def test_the_sim_detector_can_give_boxes_only_as_a_box_detector_does() -> None:
    instances = np.zeros((480, 640), dtype=np.uint16)
    instances[200:260, 300:340] = 2
    frame = CameraFrame(0, np.zeros((480, 640, 3), np.uint8), np.ones((480, 640), np.float32), INTRINSICS, instances)
    with_masks, boxes_only = (SimDetector({2: "cube"}, masks=masks).detect(frame) for masks in (True, False))
    assert [d.box_xywh_px for d in boxes_only] == [d.box_xywh_px for d in with_masks] == [(300, 200, 40, 60)]
    assert with_masks[0].mask is not None and boxes_only[0].mask is None
