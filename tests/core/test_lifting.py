"""Lifting on VGA-sized images: how pixels are sampled, which depths are rejected as stray, and boxes without masks
(trusted_scene_graph.perception.lifting)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trusted_scene_graph.geometry import Intrinsics, RigidTransform
from trusted_scene_graph.perception import Detection, LiftingSettings, lift_detection
from trusted_scene_graph.perception.lifting import LiftRequest, lift_frames

# x = (u - 320) z / 500, y = (v - 240) z / 500; results in the optical frame (x right, y down, z forward).
INTRINSICS = Intrinsics(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0)
OPTICAL = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
SETTINGS = LiftingSettings(box_percentile=2.0, max_gap_m=0.01)  # the configured defaults


def rectangle(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((INTRINSICS.height, INTRINSICS.width), bool)
    mask[rows, cols] = True
    return mask


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1


@pytest.mark.parametrize(("height_px", "width_px"), [(192, 200), (256, 150), (384, 100), (100, 100)])
def test_a_rectangle_whose_pixel_count_is_a_multiple_of_the_points_loses_none_of_its_width(height_px, width_px):
    # 192 x 200 px over 768 points is a stride of exactly 50 px: an even stride in raster order would pick only
    # columns 0 and 50 of every row, and the box would be half as wide.
    mask = rectangle(slice(40, 40 + height_px), slice(100, 100 + width_px))
    depth = np.where(mask, 1.0, 3.0).astype(np.float32)
    lifted = lift_detection(Detection("card", 1.0, box_of(mask), mask), depth, INTRINSICS, OPTICAL, SETTINGS)
    assert lifted.size_m[0] == pytest.approx((width_px - 1) / 500.0, abs=0.005)
    assert lifted.size_m[1] == pytest.approx((height_px - 1) / 500.0, abs=0.005)
    assert lifted.centroid_m[0] == pytest.approx((100 + (width_px - 1) / 2 - 320) / 500.0, abs=0.003)


def test_lifting_is_deterministic_and_a_batch_of_frames_gives_the_boxes_of_each_frame_alone():
    mask = rectangle(slice(40, 232), slice(100, 300))
    depth = np.where(mask, 1.0, 3.0).astype(np.float32)
    depth += np.random.default_rng(0).normal(0.0, 0.003, depth.shape).astype(np.float32)
    first = LiftRequest([Detection("card", 1.0, box_of(mask), mask), Detection("wall", 1.0, (350, 100, 200, 150))],
                        depth, INTRINSICS, OPTICAL)
    second = LiftRequest([Detection("wall", 1.0, (20, 300, 300, 100))], depth * 1.5, INTRINSICS, OPTICAL)
    together = lift_frames([first, second], SETTINGS)
    alone = [lift_frames([first], SETTINGS)[0], lift_frames([second], SETTINGS)[0]]
    again = lift_frames([first, second], SETTINGS)
    for frame_together, frame_alone, frame_again in zip(together, alone, again, strict=True):
        for a, b, c in zip(frame_together, frame_alone, frame_again, strict=True):
            assert a.centroid_m.tobytes() == b.centroid_m.tobytes() == c.centroid_m.tobytes()
            assert a.size_m.tobytes() == b.size_m.tobytes() == c.size_m.tobytes()


def box_seen_from_above(noise_m: float = 0.0, background_m: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Depth and mask of a box from above: most of its pixels are its top at 0.9 m (fronto-parallel), the rest a
    side receding continuously from 0.9 m to 1.2 m; optionally a 3 px rim of the mask on a floor at
    ``background_m`` (mask bleed)."""
    top = rectangle(slice(100, 300), slice(200, 400))
    side = rectangle(slice(300, 380), slice(200, 400))
    depth = np.full((INTRINSICS.height, INTRINSICS.width), 1.7, np.float64)
    depth[top] = 0.9
    depth[300:380, 200:400] = np.linspace(0.9, 1.2, 80)[:, None]
    mask = top | side
    if background_m is not None:
        rim = rectangle(slice(97, 383), slice(197, 403)) & ~mask
        depth[rim] = background_m
        mask = mask | rim
    depth += np.random.default_rng(1).normal(0.0, 1.0, depth.shape) * noise_m * depth
    return depth.astype(np.float32), mask


@pytest.mark.parametrize("relative_noise", [0.0, 0.003, 0.01])
def test_a_side_receding_behind_a_face_square_to_the_camera_is_kept(relative_noise):
    # 71 % of the pixels are at one depth, so the median absolute deviation is about zero: a band around the
    # median alone would cut the box to its top face (0.02 m deep instead of 0.3 m).
    depth, mask = box_seen_from_above(relative_noise)
    lifted = lift_detection(Detection("box", 1.0, box_of(mask), mask), depth, INTRINSICS, OPTICAL, SETTINGS)
    assert lifted.size_m[2] == pytest.approx(0.3, abs=0.03 + 3 * relative_noise)
    assert lifted.centroid_m[2] == pytest.approx(1.05, abs=0.015 + relative_noise)


@pytest.mark.parametrize("relative_noise", [0.0, 0.003, 0.01])
def test_a_rim_of_mask_on_a_background_half_a_metre_behind_the_object_is_still_rejected(relative_noise):
    depth, mask = box_seen_from_above(relative_noise, background_m=1.7)
    lifted = lift_detection(Detection("box", 1.0, box_of(mask), mask), depth, INTRINSICS, OPTICAL, SETTINGS)
    assert lifted.centroid_m[2] + lifted.size_m[2] / 2 < 1.2 + 0.05  # the far end is the side's, not the floor's
    assert lifted.size_m[2] == pytest.approx(0.3, abs=0.03 + 3 * relative_noise)


def test_without_a_mask_the_lateral_extent_spans_the_whole_box():
    # A wall at 2 m fills the image; the detector's box is 200 x 120 px. Its central half gives the depth.
    depth = np.full((INTRINSICS.height, INTRINSICS.width), 2.0, np.float32)
    lifted = lift_detection(Detection("poster", 1.0, (100, 50, 200, 120)), depth, INTRINSICS, OPTICAL, SETTINGS)
    np.testing.assert_allclose(lifted.size_m, [199 * 2.0 / 500, 119 * 2.0 / 500, 0.0], atol=1e-9)
    np.testing.assert_allclose(lifted.centroid_m, [(199.5 - 320) * 2 / 500, (109.5 - 240) * 2 / 500, 2.0],
                               atol=1e-9)


def test_without_a_mask_a_table_top_seen_from_above_stays_flat_over_the_whole_box():
    # A camera 0.4 m above a table top (graph z = 0), pitched 35 degrees down, looking along graph +x. The box's rows
    # span the table's depth, not a height: the central half's surface is extended over the box, so the table
    # stays flat and its far and near edges are where the box's top and bottom rows see them.
    optical_to_graph = Rotation.from_euler("y", 35, degrees=True) * Rotation.from_matrix(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = optical_to_graph.as_matrix()
    matrix[:3, 3] = [0.0, 0.0, 0.4]
    camera_to_graph = RigidTransform.from_matrix(matrix)
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - 320.0) / 500.0, (rows - 240.0) / 500.0, np.ones(rows.shape)], axis=-1)
    down = -(rays @ optical_to_graph.as_matrix().T)[..., 2]
    depth = np.where(down > 0, 0.4 / np.where(down > 0, down, 1.0), np.nan).astype(np.float32)
    box = (120, 200, 400, 200)  # rows 200..399
    lifted = lift_detection(Detection("table", 1.0, box), depth, INTRINSICS, camera_to_graph, SETTINGS)
    assert lifted.size_m[2] < 0.005
    near_m = 0.4 / np.tan(np.radians(35) + np.arctan((399 - 240) / 500.0))
    far_m = 0.4 / np.tan(np.radians(35) + np.arctan((200 - 240) / 500.0))
    assert lifted.centroid_m[0] - lifted.size_m[0] / 2 == pytest.approx(near_m, rel=0.02)
    assert lifted.centroid_m[0] + lifted.size_m[0] / 2 == pytest.approx(far_m, rel=0.02)
