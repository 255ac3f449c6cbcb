"""Lifting on VGA-sized images: how pixels are sampled, which depths are rejected as stray, and boxes without masks
(trusted_scene_graph.perception.lifting)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.spatial.transform import Rotation

from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry import Intrinsics, RigidTransform
from trusted_scene_graph.perception import Detection, LiftingSettings, PerceptionError, lift_detection
from trusted_scene_graph.perception.lifting import LiftedObject, LiftRequest, _interior_points, lift_frames

# x = (u - 320) z / 500, y = (v - 240) z / 500; results in the optical frame (x right, y down, z forward).
INTRINSICS = Intrinsics(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0)
OPTICAL = RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
SETTINGS = LiftingSettings(box_percentile=2.0, max_gap_m=0.01)  # the configured defaults
BLEED_GUARD = LiftingSettings(box_percentile=2.0, max_gap_m=0.01, mask_interior_px=2)  # lifting.mask_interior_px 2


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


def camera_above_table(pitch_deg: float, height_m: float, roll_deg: float = 0.0) -> tuple[RigidTransform, np.ndarray]:
    """A camera ``height_m`` above a table top (graph z = 0), pitched ``pitch_deg`` down, looking along graph +x
    (and rolled ``roll_deg`` about its optical axis); and each pixel's ray in the graph frame, scaled to unit
    optical depth (so that a ray's parameter is depth)."""
    optical_to_graph = Rotation.from_euler("y", pitch_deg, degrees=True) * Rotation.from_matrix(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]) * Rotation.from_euler("z", roll_deg, degrees=True)
    matrix = np.eye(4)
    matrix[:3, :3] = optical_to_graph.as_matrix()
    matrix[:3, 3] = [0.0, 0.0, height_m]
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - 320.0) / 500.0, (rows - 240.0) / 500.0, np.ones(rows.shape)], axis=-1)
    return RigidTransform.from_matrix(matrix), rays @ optical_to_graph.as_matrix().T


def depth_to_plane(rays: np.ndarray, height_m: float) -> np.ndarray:
    """Each ray's depth to the horizontal plane ``height_m`` below the camera (NaN for rays that miss it)."""
    down = -rays[..., 2]
    return np.where(down > 0, height_m / np.where(down > 0, down, 1.0), np.nan)


def test_without_a_mask_a_table_top_seen_from_above_stays_flat_over_the_whole_box():
    # A camera 0.4 m above a table top, pitched 35 degrees down. The box's rows span the table's depth, not a
    # height: the central half's surface is extended over the box, so the table stays flat and its far and near
    # edges are where the box's top and bottom rows see them.
    camera_to_graph, rays = camera_above_table(35, 0.4)
    depth = depth_to_plane(rays, 0.4).astype(np.float32)
    box = (120, 200, 400, 200)  # rows 200..399
    lifted = lift_detection(Detection("table", 1.0, box), depth, INTRINSICS, camera_to_graph, SETTINGS)
    assert lifted.size_m[2] < 0.005
    near_m = 0.4 / np.tan(np.radians(35) + np.arctan((399 - 240) / 500.0))
    far_m = 0.4 / np.tan(np.radians(35) + np.arctan((200 - 240) / 500.0))
    assert lifted.centroid_m[0] - lifted.size_m[0] / 2 == pytest.approx(near_m, rel=0.02)
    assert lifted.centroid_m[0] + lifted.size_m[0] / 2 == pytest.approx(far_m, rel=0.02)


# --- mask bleed onto the supporting surface ------------------------------------------------------------------------

TABLE_TOP_M = 0.75


def pitched_camera(pitch_deg: float, position_m: tuple[float, float, float]) -> RigidTransform:
    """A camera at ``position_m`` in the graph frame (z up) looking along graph +x, pitched down by ``pitch_deg``."""
    optical_to_graph = Rotation.from_euler("y", pitch_deg, degrees=True) * Rotation.from_matrix(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = optical_to_graph.as_matrix()
    matrix[:3, 3] = position_m
    return RigidTransform.from_matrix(matrix)


def render_boxes(camera_to_graph: RigidTransform, boxes: list[tuple[tuple[float, ...], tuple[float, ...]]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Depth (along the optical axis) and the index of the nearest box per pixel (-1: none) of axis-aligned boxes
    given as (centre, size) in the graph frame, ray-cast with the slab method."""
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - INTRINSICS.cx) / INTRINSICS.fx, (rows - INTRINSICS.cy) / INTRINSICS.fy,
                     np.ones(rows.shape)], axis=-1) @ camera_to_graph.rotation_matrix_t  # optical z = 1: t is depth
    origin = camera_to_graph.translation_m
    nearest = np.full(rows.shape, np.inf)
    which = np.full(rows.shape, -1)
    for index, (centre, size) in enumerate(boxes):
        low, high = np.subtract(centre, np.divide(size, 2)), np.add(centre, np.divide(size, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            near, far = (low - origin) / rays, (high - origin) / rays
        enter = np.nanmax(np.minimum(near, far), axis=-1)
        leave = np.nanmin(np.maximum(near, far), axis=-1)
        depth = np.where((leave >= enter) & (enter > 0), enter, np.inf)
        closer = depth < nearest
        nearest[closer], which[closer] = depth[closer], index
    return np.where(np.isfinite(nearest), nearest, np.nan).astype(np.float32), which


TABLE = ((1.0, 0.0, TABLE_TOP_M - 0.02), (2.0, 2.4, 0.04))


def bled_mask(which: np.ndarray, index: int, bleed_px: int) -> np.ndarray:
    """Box ``index``'s mask grown by ``bleed_px`` pixels (4-neighbourhood) onto whatever is around it."""
    mask = which == index
    return binary_dilation(mask, iterations=bleed_px) if bleed_px else mask


@pytest.mark.parametrize("amodal", [False, True])
@pytest.mark.parametrize(("pitch_deg", "camera_m", "size_m", "bleed_px"), [
    (35, (0.3, 0.0, 1.15), (0.08, 0.08, 0.10), 1),
    (35, (0.3, 0.0, 1.15), (0.08, 0.08, 0.10), 2),
    (55, (0.5, 0.0, 1.3), (0.08, 0.08, 0.10), 2),
    (55, (0.5, 0.0, 1.3), (0.10, 0.10, 0.30), 2),
])
def test_mask_bleed_onto_the_table_an_object_stands_on_does_not_deepen_its_box(pitch_deg, camera_m, size_m, bleed_px,
                                                                              amodal):
    # The table runs on from the object's base to far behind it without a depth gap, so growing the inliers through
    # continuous depths from a rim of bleed on it used to stretch the box along the view 2-5 fold.
    camera = pitched_camera(pitch_deg, camera_m)
    depth, which = render_boxes(camera, [TABLE, ((1.0, 0.0, TABLE_TOP_M + size_m[2] / 2), size_m)])
    mask = bled_mask(which, 1, bleed_px)
    lifted = lift_detection(Detection("box", 1.0, box_of(mask), mask), depth, INTRINSICS, camera,
                            LiftingSettings(box_percentile=2.0, max_gap_m=0.01, amodal_completion=amodal,
                                            mask_interior_px=2),
                            np.array([1.0, 0.0, 0.0]))
    # Along the view (graph x) the box is at most its true depth and 25 % more; across it, its true width.
    assert lifted.size_m[0] < 1.25 * size_m[0]
    assert lifted.size_m[1] == pytest.approx(size_m[1], rel=0.25)
    assert lifted.centroid_m[0] < 1.0 + 0.25 * size_m[0]


def test_with_mask_bleed_two_cubes_a_hand_apart_stay_apart():
    # Two 8 cm cubes 10 cm apart along the view, their masks bled by 1 px: each box deepened onto the table
    # closed the gap between them to about a centimetre.
    camera = pitched_camera(35, (0.3, 0.0, 1.15))
    cube = (0.08, 0.08, 0.10)
    depth, which = render_boxes(camera, [TABLE, ((0.9, 0.0, TABLE_TOP_M + 0.05), cube),
                                         ((1.08, 0.05, TABLE_TOP_M + 0.05), cube)])
    near, far = (lift_detection(Detection("cube", 1.0, box_of(mask), mask), depth, INTRINSICS, camera, BLEED_GUARD)
                 for mask in (bled_mask(which, 1, 1), bled_mask(which, 2, 1)))
    gap_m = (far.centroid_m[0] - far.size_m[0] / 2) - (near.centroid_m[0] + near.size_m[0] / 2)
    assert gap_m == pytest.approx(0.10, abs=0.025)


def test_a_cube_seen_from_above_keeps_most_of_its_receding_front_and_the_bleed_guard_costs_some_of_it():
    # From 80 degrees the cube's front is a few pixels tall in the image, most of them within the 2 px rim whose
    # depths extend nothing with the guard on; its interior still reaches half the front's height (a band alone
    # keeps ~2 cm). Without the guard (the default, for exact masks) every mask point extends the interval.
    camera = pitched_camera(80, (0.9, 0.0, 1.4))
    depth, which = render_boxes(camera, [TABLE, ((1.0, 0.0, TABLE_TOP_M + 0.05), (0.08, 0.08, 0.10))])
    mask = which == 1
    guarded, exact = (lift_detection(Detection("cube", 1.0, box_of(mask), mask), depth, INTRINSICS, camera, settings)
                      for settings in (BLEED_GUARD, SETTINGS))
    assert 0.04 < guarded.size_m[2] < 0.105
    assert guarded.size_m[2] < exact.size_m[2] <= 0.105


@pytest.mark.parametrize("width_px", [1, 3, 5])
def test_a_mask_too_thin_for_an_interior_still_lifts_whole(width_px):
    # A thin pole seen head-on, 40 px tall and 1-5 px wide: no pixel is 3 px from the mask's border, so its
    # innermost pixels grow the inliers instead; at one depth they are all kept.
    mask = rectangle(slice(200, 240), slice(300, 300 + width_px))
    depth = np.where(mask, 1.0, 3.0).astype(np.float32)
    lifted = lift_detection(Detection("pole", 1.0, box_of(mask), mask), depth, INTRINSICS, OPTICAL, BLEED_GUARD)
    assert lifted.size_m[1] == pytest.approx(39 / 500.0, abs=0.002)
    assert lifted.size_m[0] == pytest.approx((width_px - 1) / 500.0, abs=0.002)


def test_the_interior_of_a_mask_is_what_two_erosions_leave_and_the_image_border_is_not_a_border():
    mask = rectangle(slice(0, 10), slice(100, 110))
    rows, cols = (axis.ravel() for axis in np.mgrid[0:10, 100:110])
    interior, _ = _interior_points(mask, np.ones(mask.shape), rows, cols, 2)
    # Erosion with the image border as mask: rows 0..7 (the top edge is the image's), columns 102..107.
    padded = np.pad(mask, ((2, 0), (0, 0)), constant_values=True)
    expected = binary_erosion(padded, iterations=2, border_value=1)[2:][rows, cols]
    np.testing.assert_array_equal(interior, expected)
    assert interior.sum() == 8 * 6
    # The slope is how much the depth changes per pixel inside: 3 mm per column here.
    ramp = np.broadcast_to(1.0 + 0.003 * np.arange(INTRINSICS.width), mask.shape)
    assert _interior_points(mask, ramp, rows, cols, 2)[1] == pytest.approx(0.003)


@pytest.mark.parametrize(("pitch_deg", "camera_height_m", "distance_m", "offset_m", "side_m"), [
    (6, 0.15, 1.2, 0.0, 0.6),  # a tray at a grazing view (lifted 1.04 m wide on the box's frustum)
    (6, 0.15, 1.2, 0.25, 0.6),
    (15, 0.25, 1.0, 0.0, 0.3),  # a plate
    (35, 0.4, 0.8, -0.15, 0.3),
    (35, 0.4, 0.8, 0.3, 0.3),  # wholly to one side: its inner edge is the far corner's
    (55, 0.6, 0.6, 0.0, 0.3),
])
def test_without_a_mask_a_tray_seen_from_above_is_as_wide_as_its_near_edge(pitch_deg, camera_height_m, distance_m,
                                                                           offset_m, side_m):
    # A square tray lying on the table (its top 1 cm above it), side_m wide, centred distance_m ahead and offset_m
    # to the left. It is a trapezoid in the image, widest at its near edge, which gives the box its width; the
    # box's top corners are table beyond the tray's far corners. Spread over the box's frustum on the tray's plane,
    # the box would be as wide as the frustum's far end.
    camera_to_graph, rays = camera_above_table(pitch_deg, camera_height_m)
    top_m = depth_to_plane(rays, camera_height_m - 0.01)
    hit = rays * top_m[..., None]
    on_tray = (np.abs(hit[..., 0] - distance_m) <= side_m / 2) & (np.abs(hit[..., 1] - offset_m) <= side_m / 2)
    depth = np.where(on_tray, top_m, depth_to_plane(rays, camera_height_m)).astype(np.float32)
    lifted = lift_detection(Detection("tray", 1.0, box_of(on_tray)), depth, INTRINSICS, camera_to_graph, SETTINGS)
    assert lifted.size_m[1] == pytest.approx(side_m, rel=0.1)
    assert lifted.centroid_m[1] == pytest.approx(offset_m, abs=0.1 * side_m)
    assert lifted.size_m[2] < 0.005  # still flat


@pytest.mark.parametrize("roll_deg", [30, 45, 90, -60])
def test_without_a_mask_a_tray_seen_by_a_rolled_camera_stays_on_the_table(roll_deg):
    # The frustum's trapezoid then runs along another image direction than the rows: clipping the columns at fixed
    # depth lifted a flat tray's points off the table (6-10 cm tall here, 16.7 cm in a review's scene). The box is
    # kept whole instead, and its points stay on the plane fitted to the tray's top and the table around it (a
    # rolled view's box holds more table), within 2 cm.
    camera_to_graph, rays = camera_above_table(35, 0.4, roll_deg)
    top_m = depth_to_plane(rays, 0.4 - 0.01)
    hit = rays * top_m[..., None]
    on_tray = (np.abs(hit[..., 0] - 0.7) <= 0.15) & (np.abs(hit[..., 1]) <= 0.15)
    depth = np.where(on_tray, top_m, depth_to_plane(rays, 0.4)).astype(np.float32)
    lifted = lift_detection(Detection("tray", 1.0, box_of(on_tray)), depth, INTRINSICS, camera_to_graph, SETTINGS)
    assert lifted.size_m[2] < 0.021
    assert lifted.centroid_m[2] == pytest.approx(0.01, abs=0.01)


def test_without_a_mask_a_box_reaching_the_image_border_is_cut_by_it_as_one_running_beyond_it():
    # Detectors clip their boxes to the image, so a mat running off the image's left (graph +y) comes as a box
    # starting at column 0. Lying flat on the floor, it stands out of nothing: its depth is the central half's
    # plane. The border cuts it at every row, not only the near one, so its left bound is the box's middle row's.
    camera_to_graph, rays = camera_above_table(45, 1.0)
    floor_m = depth_to_plane(rays, 1.0)
    hit = rays * floor_m[..., None]
    on_mat = (hit[..., 0] > 0.6) & (hit[..., 0] < 2.5) & (hit[..., 1] > -0.3)
    x, y, width, height = box_of(on_mat)
    assert x == 0
    depth = floor_m.astype(np.float32)
    touching, beyond = (lift_detection(Detection("mat", 1.0, box), depth, INTRINSICS, camera_to_graph, SETTINGS)
                        for box in ((x, y, width, height), (x - 40, y, width + 40, height)))
    left_m = [obj.centroid_m[1] + obj.size_m[1] / 2 for obj in (touching, beyond)]
    middle_row_m = hit[y + (height - 1) // 2, 0, 1]  # where the border cuts the mat at the box's middle row
    near_row_m = hit[y + height - 1, 0, 1]
    assert middle_row_m - near_row_m > 0.2  # the near row's bound would lose over 20 cm of the mat
    assert left_m == pytest.approx([middle_row_m, middle_row_m], abs=0.01)


def test_without_a_mask_a_depth_range_from_zero_lifts_the_box():
    # depth.min_m 0 (no near limit) is valid: the surface's inverse depth then has no upper bound.
    camera_to_graph, rays = camera_above_table(35, 0.4)
    depth = depth_to_plane(rays, 0.4).astype(np.float32)
    settings = LiftingSettings(box_percentile=2.0, max_gap_m=0.01, depth_min_m=0.0)
    near_limit = lift_detection(Detection("table", 1.0, (120, 200, 400, 200)), depth, INTRINSICS, camera_to_graph,
                                SETTINGS)
    no_limit = lift_detection(Detection("table", 1.0, (120, 200, 400, 200)), depth, INTRINSICS, camera_to_graph,
                              settings)
    np.testing.assert_allclose(no_limit.size_m, near_limit.size_m)


def test_without_a_mask_a_wall_seen_from_the_side_spans_the_whole_box():
    # A wall receding to the right: its depth changes along the box's rows only, so every row of the box reaches
    # its left and right edges, and the box's frustum on it is the wall.
    cols = np.arange(INTRINSICS.width, dtype=np.float64)
    depth = np.tile(1.0 / (1.0 - 0.001 * cols), (INTRINSICS.height, 1)).astype(np.float32)
    lifted = lift_detection(Detection("wall", 1.0, (100, 50, 200, 120)), depth, INTRINSICS, OPTICAL, SETTINGS)
    left_m, right_m = ((col - 320.0) / 500.0 / (1.0 - 0.001 * col) for col in (100, 299))
    assert lifted.centroid_m[0] - lifted.size_m[0] / 2 == pytest.approx(left_m, abs=1e-3)
    assert lifted.centroid_m[0] + lifted.size_m[0] / 2 == pytest.approx(right_m, abs=1e-3)


# --- completing the hidden side of round objects and boxes on a table -----------------------------------------------

AMODAL = LiftingSettings.from_config(Config())  # the configured defaults, amodal completion on
CONTACT_TOLERANCE_M = 0.02  # relations.contact_tolerance_m: on_top_of needs the bottom within this of the top below


def orbiting_camera(target_m: np.ndarray, distance_m: float, pitch_deg: float, yaw_deg: float
                    ) -> tuple[RigidTransform, np.ndarray]:
    """A camera ``distance_m`` from ``target_m`` looking at it, pitched ``pitch_deg`` down and turned ``yaw_deg``
    about the vertical from looking along graph +x; and its horizontal viewing direction."""
    rotation = (Rotation.from_euler("z", yaw_deg, degrees=True) * Rotation.from_euler("y", pitch_deg, degrees=True)
                * Rotation.from_matrix([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.as_matrix()
    matrix[:3, 3] = np.asarray(target_m) - distance_m * rotation.apply([0.0, 0.0, 1.0])
    yaw = np.radians(yaw_deg)
    return RigidTransform.from_matrix(matrix), np.array([np.cos(yaw), np.sin(yaw), 0.0])


def box_hit(origin: np.ndarray, rays: np.ndarray, centre: np.ndarray, size: tuple[float, ...]) -> np.ndarray:
    """Each ray's parameter where it enters an axis-aligned box (inf: it misses), by the slab method."""
    low, high = centre - np.divide(size, 2), centre + np.divide(size, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        near, far = (low - origin) / rays, (high - origin) / rays
    enter, leave = np.nanmax(np.minimum(near, far), axis=-1), np.nanmin(np.maximum(near, far), axis=-1)
    return np.where((leave >= enter) & (enter > 0), enter, np.inf)


def sphere_hit(origin: np.ndarray, rays: np.ndarray, centre: np.ndarray, radius_m: float) -> np.ndarray:
    offset = origin - centre
    a, b = np.einsum("...k,...k", rays, rays), 2.0 * rays @ offset
    discriminant = b * b - 4.0 * a * (offset @ offset - radius_m ** 2)
    t = (-b - np.sqrt(np.clip(discriminant, 0.0, None))) / (2.0 * a)
    return np.where((discriminant > 0) & (t > 0), t, np.inf)


def cylinder_hit(origin: np.ndarray, rays: np.ndarray, centre: np.ndarray, radius_m: float, length_m: float,
                 axis: int) -> np.ndarray:
    """A closed cylinder along graph ``axis``: its side where the ray meets it within the length, else a cap."""
    across = [i for i in range(3) if i != axis]
    offset = origin - centre
    d, o = rays[..., across], offset[across]
    a, b = np.einsum("...k,...k", d, d), 2.0 * d @ o
    discriminant = b * b - 4.0 * a * (o @ o - radius_m ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.clip(discriminant, 0.0, None))) / (2.0 * a)
        side = np.where((discriminant > 0) & (t > 0) & (np.abs(offset[axis] + t * rays[..., axis]) <= length_m / 2),
                        t, np.inf)
        caps = [(sign * length_m / 2 - offset[axis]) / rays[..., axis] for sign in (-1.0, 1.0)]
    hits = [side]
    for cap in caps:
        at = offset[across] + cap[..., None] * d
        hits.append(np.where((cap > 0) & (np.einsum("...k,...k", at, at) <= radius_m ** 2), cap, np.inf))
    return np.minimum.reduce(hits)


def lift_on_table(camera: RigidTransform, forward: np.ndarray, hit) -> LiftedObject:
    """Ray-cast an object (``hit(origin, rays)``) on a table top at TABLE_TOP_M and lift it with its exact mask."""
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - INTRINSICS.cx) / INTRINSICS.fx, (rows - INTRINSICS.cy) / INTRINSICS.fy,
                     np.ones(rows.shape)], axis=-1) @ camera.rotation_matrix_t  # optical z = 1: t is depth
    origin = camera.translation_m
    table = box_hit(origin, rays, np.array([1.0, 0.0, TABLE_TOP_M - 0.02]), (4.0, 4.0, 0.04))
    with np.errstate(invalid="ignore"):
        on_object = hit(origin, rays)
    mask = on_object < table
    depth = np.minimum(on_object, table)
    depth = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    return lift_detection(Detection("object", 1.0, box_of(mask), mask), depth, INTRINSICS, camera, AMODAL, forward)


@pytest.mark.parametrize("pitch_deg", [35, 60, 75, 89])
def test_a_ball_resting_on_a_table_seen_from_above_is_completed_down_to_the_table(pitch_deg):
    # Seen from above, a ball's widest section is at the bottom of what is seen (from straight above it is all of
    # it): its underside is hidden below the limb. Completed, it rests on the table (on_top_of), 10 cm tall.
    centre = np.array([1.0, 0.0, TABLE_TOP_M + 0.05])
    camera, forward = orbiting_camera(centre, 0.5, pitch_deg, 0.0)
    ball = lift_on_table(camera, forward, lambda origin, rays: sphere_hit(origin, rays, centre, 0.05))
    bottom_m = ball.centroid_m[2] - ball.size_m[2] / 2
    assert abs(bottom_m - TABLE_TOP_M) < 0.25 * CONTACT_TOLERANCE_M
    assert ball.size_m[2] == pytest.approx(0.1, abs=0.006)
    np.testing.assert_allclose(ball.centroid_m, centre, atol=0.003)


@pytest.mark.parametrize("yaw_deg", [0, 20, 45, 70, 90])
@pytest.mark.parametrize(("pitch_deg", "distance_m"), [(0, 0.7), (30, 0.7), (60, 0.5)])
@pytest.mark.parametrize("axis", [2, 0], ids=["standing", "lying"])
def test_a_cylinder_standing_or_lying_is_completed_to_its_true_box(axis, pitch_deg, distance_m, yaw_deg):
    # A can 8 cm across and 12 cm long, standing or lying along graph x; the camera orbits it, so a lying can is
    # seen end-on (yaw 0), obliquely, or across its length (yaw 90).
    size = np.full(3, 0.08)
    size[axis] = 0.12
    centre = np.array([1.0, 0.0, TABLE_TOP_M + size[2] / 2])
    camera, forward = orbiting_camera(centre, distance_m, pitch_deg, yaw_deg)
    can = lift_on_table(camera, forward, lambda origin, rays: cylinder_hit(origin, rays, centre, 0.04, 0.12, axis))
    assert np.all(can.size_m <= size + 0.004), can.size_m
    if axis == 0 and (yaw_deg in (20, 70) or (pitch_deg == 0 and yaw_deg == 0)):
        # Lying obliquely its width profiles are neither round nor straight, and end-on and level it is a disc
        # that no view shows the length of: those are left as measured (not enlarged, above), not completed.
        return
    np.testing.assert_allclose(can.centroid_m, centre, atol=0.004)
    np.testing.assert_allclose(can.size_m, size, atol=0.008)


@pytest.mark.parametrize("yaw_deg", [0, 10, 20, 30, 45, 50, 60, 75])
@pytest.mark.parametrize(("pitch_deg", "distance_m"), [(0, 0.8), (20, 0.5), (35, 0.5), (35, 0.6), (50, 0.5)])
def test_a_cube_on_a_table_is_never_enlarged_at_any_yaw(pitch_deg, distance_m, yaw_deg):
    # A 10 cm cube seen from around it: its top (from above) and two faces show its whole footprint, and seen level
    # its side corners mark its centre. No side may grow beyond the cube's box, nor its bottom below the table.
    centre = np.array([1.0, 0.0, TABLE_TOP_M + 0.05])
    camera, forward = orbiting_camera(centre, distance_m, pitch_deg, yaw_deg)
    cube = lift_on_table(camera, forward, lambda origin, rays: box_hit(origin, rays, centre, (0.1, 0.1, 0.1)))
    assert np.all(cube.size_m <= 0.1 + 0.002), cube.size_m
    assert cube.centroid_m[2] - cube.size_m[2] / 2 >= TABLE_TOP_M - 0.002


@pytest.mark.parametrize(("change", "message"), [
    ({"points_per_object": 0}, r"points_per_object must be at least 1, got 0"),
    ({"box_percentile": 60.0}, r"box_percentile must be in \[0, 50\), got 60\.0"),
    ({"depth_min_m": 2.0, "depth_max_m": 1.0}, r"depth range \[2\.0, 1\.0\] m is empty"),
])
def test_settings_built_directly_are_refused_where_they_would_crash_or_invert_a_box(change, message):
    with pytest.raises(PerceptionError, match=message):
        LiftingSettings(**change)


def test_a_depth_image_of_another_size_than_the_intrinsics_is_refused_naming_both():
    with pytest.raises(PerceptionError, match=r"depth image of shape \(240, 320\) does not fit the camera's 640x480 "
                                              r"intrinsics"):
        lift_detection(Detection("cube", 1.0, (10, 10, 20, 20)), np.ones((240, 320), np.float32), INTRINSICS, OPTICAL,
                       SETTINGS)
