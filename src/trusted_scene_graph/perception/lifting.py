"""Lift 2D detections to 3D boxes in the graph frame using registered depth.

A camera sees the front (and, from above, the top) of an object, never its back or underside, so the box of the
visible points is short along the viewing direction and, for round objects, at the bottom. With
``lifting.amodal_completion`` the box is completed by point symmetry: the visible interval on the horizontal viewing
direction and on the vertical is united with its reflection through the object's centre, on the hidden side only
(the back, and the underside when the camera is above). The centre is found from the object's width profile (its
lateral extent per slice along an axis): on a round section (a sphere; a cylinder across its axis) the half-width h
at position s satisfies h^2 + (s - c)^2 = r^2, so a straight line through h^2 + s^2 gives the centre c even when
the widest section itself is hidden (from above) or lies behind the limb (r^2 / distance in front of the centre
under perspective). Only the slices on the camera's side of the widest one are used; beyond it the width is the
limb's. A profile counts as round only when it is rounded at its camera-side end, h^2 is a concave parabola of a
nearly round section, the circle's radius is the silhouette's half-width and it reaches the object's seen ends.
A cylinder lying across the view, equally wide everywhere, is completed from the circle through its near edge in
the vertical plane instead. A box is never enlarged: its flat top (seen from above) or front spans its full width,
so nothing is completed there, and seen level with its straight edges rising from a corner its widths are no
circle's (h^2 is convex), so it is left as measured too (its hidden back stays missing). Each horizontal axis of
the graph gets the
union of its interval with its reflection, so a view along a diagonal does not widen a box along both axes.
That needs the object's own silhouette: an object whose left or right edge in the image is cut by something in
front of it (or by the image border), or a detection without a mask, is left as measured. A flat face seen
head-on stays flat (its depth is unobservable from one view), and so does a can lying obliquely to the view (its
widths are neither round nor straight). An occluder in front of an object's lower half is not seen as such: that
half stays missing.

Stray depths are rejected before the box is taken (see ``_depth_inliers``): an object's points are those within
``lifting.outlier_mad_k`` robust standard deviations of its median depth, grown outwards through continuous depths
(gaps up to a tenth of its size across the view, at most that size beyond), so a side receding from the camera
stays while background behind the object does not. Only points of the mask's interior (more than 2 px inside its
border) grow that interval; a point of the mask's rim counts only within it, widened by a few times the depth the
object's surface recedes over the rim's width. So mask bleed of up to 2 px onto the surface the object stands on
(which continues from its base without a depth gap) does not deepen the box, while a receding side loses at most
a little of its far edge. Objects without a mask have no rim.

All objects of a frame are lifted together: each object's valid depth pixels are resampled (stratified, with a
fixed jitter) to exactly ``lifting.points_per_object`` points (repeating pixels of small objects), so the medians,
percentiles and slices run as single numpy calls over an (objects x points) array instead of a dozen calls per
object.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from trusted_scene_graph.geometry.boxes import is_horizontal_unit
from trusted_scene_graph.geometry.camera import Intrinsics, normalized_coordinates
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import Detection, PerceptionError
from trusted_scene_graph.perception.silhouette import MAD_TO_SIGMA, depth_silhouette, nested_boxes

# Smallest depth spread assumed, so that on an exactly flat surface (MAD = 0, common in simulation) a blob at
# another depth is still rejected; 5 mm is about the noise of a good RGB-D sensor at 1 m.
_MIN_SIGMA_M = 0.005
# Largest depth gap within an object, and farthest its points reach beyond the band around its median depth, as
# shares of its size across the view (see _depth_inliers).
_GAP_PER_SIZE = 0.1
_REACH_PER_SIZE = 1.0


@dataclass(frozen=True)
class LiftingSettings:
    depth_min_m: float = 0.05
    depth_max_m: float = 10.0
    box_percentile: float = 2.0
    outlier_mad_k: float = 4.0
    min_valid_fraction: float = 0.05
    points_per_object: int = 768
    amodal_completion: bool = False
    max_gap_m: float = 0.0
    mask_interior_px: int = 0  # 0: every mask point may extend the depth interval (see _depth_inliers)
    box_silhouette: bool = False  # a mask-less detection's pixels from depth (perception.silhouette)

    def __post_init__(self) -> None:
        # The schema checks these for a config; settings built directly are checked for what would crash or invert.
        if not self.points_per_object >= 1:
            raise PerceptionError(f"points_per_object must be at least 1, got {self.points_per_object!r}")
        if not 0.0 <= self.box_percentile < 50.0:
            raise PerceptionError(f"box_percentile must be in [0, 50), got {self.box_percentile!r}")
        if not 0.0 <= self.depth_min_m < self.depth_max_m:
            raise PerceptionError(f"depth range [{self.depth_min_m!r}, {self.depth_max_m!r}] m is empty or negative")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LiftingSettings:
        return cls(config["depth.min_m"], config["depth.max_m"], config["lifting.box_percentile"],
                   config["lifting.outlier_mad_k"], config["lifting.min_valid_fraction"],
                   config["lifting.points_per_object"], config["lifting.amodal_completion"],
                   config["lifting.max_gap_m"], config["lifting.mask_interior_px"], config["lifting.box_silhouette"])


@dataclass(frozen=True)
class LiftedObject:
    detection: Detection
    centroid_m: np.ndarray
    size_m: np.ndarray
    depth_valid_fraction: float


def _clip(low: int, high: int, size: int) -> tuple[int, int]:
    return min(max(low, 0), size), min(max(high, 0), size)


# Silhouette check: how far outside the mask to look, how much nearer a neighbour must be to be an occluder, and
# the share of occluded rows (on the left or the right edge) above which the silhouette is not the object's own.
_OUTSIDE_PX = 2
_OCCLUDER_MARGIN_M = 0.01
_MAX_OCCLUDED_ROWS = 0.1


def _silhouette_is_own(inside: np.ndarray, depth_m: np.ndarray, x0: int, y0: int) -> bool:
    """Whether the object's left and right edges in the image are its own silhouette, not an occluder's edge.

    Per image row, the pixel just outside the mask's leftmost and rightmost pixel is compared with them: nearer
    (by ``_OCCLUDER_MARGIN_M``) means something in front cuts the object there. An object cut by the image border
    has no complete silhouette either.
    """
    first = inside.argmax(axis=1)
    rows = np.flatnonzero(inside[np.arange(inside.shape[0]), first])  # rows holding any of the object
    if rows.size == 0:
        return False
    left = first[rows] + x0
    right = inside.shape[1] - 1 - inside[rows, ::-1].argmax(axis=1) + x0
    if left.min() - _OUTSIDE_PX < 0 or right.max() + _OUTSIDE_PX >= depth_m.shape[1]:
        return False
    image_rows = np.concatenate([rows, rows]) + y0
    edges = np.concatenate([left, right])
    outside = np.concatenate([left - _OUTSIDE_PX, right + _OUTSIDE_PX])
    occluded = (depth_m[image_rows, outside] < depth_m[image_rows, edges] - _OCCLUDER_MARGIN_M).reshape(2, -1)
    return bool(np.all(np.count_nonzero(occluded, axis=1) <= _MAX_OCCLUDED_ROWS * rows.size))  # NaN: not occluded


@dataclass(frozen=True)
class _Crop:
    """The pixels of an object within its (clipped) box, and where that box starts in the image."""

    inside: np.ndarray  # boolean, the box's shape
    x0: int
    y0: int
    from_mask: bool  # False: the central half of a box without a mask, which has no silhouette to complete from


def _object_pixels(detection: Detection, depth_m: np.ndarray, settings: LiftingSettings
                   ) -> tuple[np.ndarray, int, _Crop]:
    """The object's pixels with usable depth (flat indices into its crop), how many pixels it has in all, and
    its crop.

    The object is its mask inside its box, else the central half of its box (less background; its samples are
    then spread over the whole box, see :func:`_spread_over_box`). Boxes are clipped to the image. Mask pixels
    outside the box are ignored: the box is the detector's statement of where the object is (a jittered box cuts
    its mask), and scanning only the box keeps the cost proportional to the object, not to the image.
    """
    height, width = depth_m.shape
    x, y, w, h = detection.box_xywh_px
    if w <= 0 or h <= 0:  # an empty box states no extent: no pixel is the object's (not even the central one)
        return np.empty(0, dtype=np.intp), 0, _Crop(np.zeros((0, 0), dtype=bool), 0, 0, from_mask=False)
    if detection.mask is not None:
        if detection.mask.shape != depth_m.shape:
            raise PerceptionError(f"mask of {detection.label!r} is {detection.mask.shape[1]}x{detection.mask.shape[0]} "
                                  f"but the image is {width}x{height}")
        (x0, x1), (y0, y1) = _clip(x, x + w, width), _clip(y, y + h, height)
        crop = _Crop(detection.mask[y0:y1, x0:x1], x0, y0, from_mask=True)
    else:
        (x0, x1) = _clip(x + w // 4, x + max(w // 4 + 1, (3 * w) // 4), width)
        (y0, y1) = _clip(y + h // 4, y + max(h // 4 + 1, (3 * h) // 4), height)
        crop = _Crop(np.ones((y1 - y0, x1 - x0), dtype=bool), x0, y0, from_mask=False)
    depth = depth_m[y0:y1, x0:x1]
    usable = crop.inside & (depth >= settings.depth_min_m) & (depth <= settings.depth_max_m)  # NaN compares False
    return np.flatnonzero(usable), int(np.count_nonzero(crop.inside)), crop



def _box_valid_fraction(box_xywh_px: tuple[int, int, int, int], depth_m: np.ndarray, settings: LiftingSettings
                        ) -> float:
    """The fraction of a box's pixels (clipped to the image) with usable depth."""
    height, width = depth_m.shape
    x, y, w, h = box_xywh_px
    (x0, x1), (y0, y1) = _clip(x, x + w, width), _clip(y, y + h, height)
    depth = depth_m[y0:y1, x0:x1]
    usable = (depth >= settings.depth_min_m) & (depth <= settings.depth_max_m)  # NaN compares False
    return float(np.count_nonzero(usable) / usable.size) if usable.size else 0.0


@functools.lru_cache(maxsize=4)
def _sampling_jitter(count: int) -> np.ndarray:
    """``count`` fixed offsets in [0, 1), the same on every call, so that lifting is deterministic."""
    jitter = np.random.default_rng(0).random(count)
    jitter.flags.writeable = False
    return jitter


def _sample_indices(valid_count: int, count: int) -> np.ndarray:
    """Which of an object's ``valid_count`` pixels (in raster order) become its ``count`` points.

    An object with no more pixels than points uses every pixel (some twice). A larger one is sampled stratified
    with jitter: point i is a pixel from the i-th of ``count`` equal runs of its pixels, at a fixed pseudo-random
    offset within the run. An even stride instead aliases with the row width: when a run is a simple fraction of
    a rectangular object's width, every point lands in the same few columns, and the box loses up to half its
    width (a 200 px wide mask at a stride of 50 px is sampled in 2 columns).
    """
    if valid_count <= count:
        return np.arange(count) * valid_count // count
    offsets = (np.arange(count) + _sampling_jitter(count)) * (valid_count / count)
    return np.minimum(offsets.astype(np.int64), valid_count - 1)  # the minimum guards against rounding up to the end


def _spread_over_box(rows: np.ndarray, cols: np.ndarray, crop: _Crop, box_xywh_px: tuple[int, int, int, int],
                     image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The image positions of a mask-less detection's points (sampled in the central half of its box) moved
    linearly from that half onto the whole box, both clipped to the image; each point keeps its depth.

    Without a mask only the central half of the box is sure to be the object, so it gives the depth; but the box
    is the detector's statement of the object's extent in the image, so the box, not its central half, gives the
    lateral extent (else a box-only detection lifts to about half its width and height).
    """
    height, width = image_shape[:2]
    x, y, w, h = box_xywh_px
    (box_x0, box_x1), (box_y0, box_y1) = _clip(x, x + w, width), _clip(y, y + h, height)
    crop_height, crop_width = crop.inside.shape

    def stretch(values: np.ndarray, crop_start: int, crop_count: int, box_start: int, box_count: int) -> np.ndarray:
        if crop_count <= 1:
            return np.full(values.shape, box_start + (box_count - 1) / 2.0)
        return box_start + (values - crop_start) * ((box_count - 1) / (crop_count - 1))

    return (stretch(rows, crop.y0, crop_height, box_y0, box_y1 - box_y0),
            stretch(cols, crop.x0, crop_width, box_x0, box_x1 - box_x0))


class _Measured(NamedTuple):
    """Where a mask-less object's points were sampled (in the central half of its box, before
    :func:`_spread_over_box` moved them), its frame's principal point column, and whether the image's left or
    right border cuts its box (the box reaches it: detectors clip their boxes to the image)."""

    rows: np.ndarray
    cols: np.ndarray
    principal_col_px: float
    cut_left: bool
    cut_right: bool


#: The largest ratio of a mask-less surface's inverse-depth gradient along the image's columns to its gradient along
#: the rows for which the frustum's trapezoid is taken to run along the rows (about 11 degrees of roll).
_ROW_GRADIENT_SHARE = 0.2


def _extend_depth_over_box(depths_m: np.ndarray, rows: np.ndarray, cols: np.ndarray, inliers: np.ndarray,
                           measured_at: Mapping[int, _Measured], settings: LiftingSettings
                           ) -> tuple[np.ndarray, np.ndarray]:
    """``depths_m`` with the depth of each mask-less object's points moved to where :func:`_spread_over_box`
    put them in the image, and per point a factor on its horizontal offset from the principal point that keeps it
    within the object's lateral bounds (1 for the objects with a mask).

    A point keeps its depth's deviation from the object's surface, and the surface is extended over the whole
    box as the plane through the object's inlier points measured in the central half (inverse depth is linear in
    the pixel coordinates on a plane). Holding the measured depths at the moved positions instead would stand a
    table top seen from above on its edge: the rows of its box span its depth, not a height.

    On such a surface the box's frustum is a trapezoid, wider at its far end than at its near end, while the
    object (a tray, a plate) is about as wide at both: its image is the trapezoid, and only one of its rows,
    the near one on a side of the box facing away from the principal point (the far one on a side facing it),
    reaches each of the box's left and right edges. Spread over the whole frustum it would be widened by up to the
    ratio of its far to its near depth (a 0.6 m tray seen at a grazing angle lifted 1.04 m wide). So the points'
    lateral (horizontal optical) coordinates are clipped to the rectangle inscribed in the frustum: on each side,
    the narrower of the box's top and bottom rows at that edge. On a side cut by the image border the object may
    reach the border in more rows than the near one, so the bound there is the box's middle row. Both sides stay
    open when no rectangle fits (a narrow box far off the principal point, whose object recedes diagonally), and
    when the surface does not recede along the image's rows (a rolled camera, :data:`_ROW_GRADIENT_SHARE`). A
    surface whose depth does not change along the box's edge columns (a wall seen head-on or from the side) keeps
    the whole box. With lens distortion the bounds are those of the undistorted pinhole image, an approximation.
    """
    which = np.array(sorted(measured_at))
    rows_measured = np.stack([measured_at[row].rows for row in which]).astype(np.float64)
    cols_measured = np.stack([measured_at[row].cols for row in which]).astype(np.float64)
    inverse = 1.0 / depths_m[which]
    weight = inliers[which].astype(np.float64)
    total = np.maximum(weight.sum(axis=1, keepdims=True), 1.0)
    # Centred coordinates keep the normal equations well conditioned; pinv solves them even when the points are
    # on one row or column (no slope along it).
    col_mean = (weight * cols_measured).sum(axis=1, keepdims=True) / total
    row_mean = (weight * rows_measured).sum(axis=1, keepdims=True) / total
    col_offset = cols_measured - col_mean
    row_offset = rows_measured - row_mean
    design = np.stack([np.ones_like(col_offset), col_offset, row_offset], axis=-1)
    weighted = (design * weight[..., None]).transpose(0, 2, 1)
    # matmul (one product per object), so that batching never changes a bit.
    normal = np.matmul(weighted, design)
    rhs = np.matmul(weighted, inverse[..., None])
    coefficients = np.matmul(np.linalg.pinv(normal), rhs)[..., 0]
    moved = inverse + coefficients[:, 1:2] * (cols[which] - cols_measured) + \
        coefficients[:, 2:3] * (rows[which] - rows_measured)
    # depth.min_m may be 0 (no near limit): no largest inverse depth then.
    inverse_min = 1.0 / settings.depth_max_m
    inverse_max = 1.0 / settings.depth_min_m if settings.depth_min_m > 0 else np.inf
    extended = depths_m.copy()
    extended[which] = 1.0 / np.clip(moved, inverse_min, inverse_max)

    def plane_depth_m(col: np.ndarray, row: np.ndarray) -> np.ndarray:
        return 1.0 / np.clip(coefficients[:, 0:1] + coefficients[:, 1:2] * (col - col_mean) +
                             coefficients[:, 2:3] * (row - row_mean), inverse_min, inverse_max)

    # Lateral positions as column offset times depth (fx times the optical x). The spread points reach the box's
    # first and last rows and columns.
    principal = np.array([measured_at[row].principal_col_px for row in which])[:, None]
    top, bottom = rows[which].min(axis=1, keepdims=True), rows[which].max(axis=1, keepdims=True)
    left, right = cols[which].min(axis=1, keepdims=True), cols[which].max(axis=1, keepdims=True)
    left_bound = np.maximum((left - principal) * plane_depth_m(left, top),
                            (left - principal) * plane_depth_m(left, bottom))
    right_bound = np.minimum((right - principal) * plane_depth_m(right, top),
                             (right - principal) * plane_depth_m(right, bottom))
    # A side cut by the image border: the object reaches it at its near row, and perhaps farther; its middle row
    # is the compromise (the plane's inverse depth is linear in the row, so there it is the mean of the ends').
    middle = (top + bottom) / 2.0
    cut_left = np.array([[measured_at[row].cut_left] for row in which])
    cut_right = np.array([[measured_at[row].cut_right] for row in which])
    left_bound = np.where(cut_left, (left - principal) * plane_depth_m(left, middle), left_bound)
    right_bound = np.where(cut_right, (right - principal) * plane_depth_m(right, middle), right_bound)
    fits = left_bound <= right_bound
    # The trapezoid runs along the image's rows only when the surface recedes along them, its inverse depth changing
    # with the row and hardly with the column: a level surface seen by a camera that is not rolled. Under a roll it
    # runs along another image direction, and clipping the columns at fixed depth would lift points off the surface
    # (a 1 mm plate seen at 45 degrees of roll was given a 16.7 cm box): such a surface keeps the whole box, widened
    # by the perspective as a mask-less box is without this clipping.
    recedes_along_rows = np.abs(coefficients[:, 1:2]) <= _ROW_GRADIENT_SHARE * np.abs(coefficients[:, 2:3])
    fits &= recedes_along_rows
    lateral = (cols[which] - principal) * extended[which]
    clipped = np.clip(lateral, np.where(fits, left_bound, -np.inf), np.where(fits, right_bound, np.inf))
    lateral_scale = np.ones(depths_m.shape)
    # A point on the principal column (lateral 0) lies within any bounds the box's columns give, so keeps its place.
    lateral_scale[which] = np.where(lateral != 0.0, clipped / np.where(lateral != 0.0, lateral, 1.0), 1.0)
    return extended, lateral_scale


def _quantiles(values: np.ndarray, percents: Sequence[float]) -> np.ndarray:
    """Percentiles along the last axis with numpy's default (linear) interpolation, shape (len(percents), ...).

    Computed from a full sort rather than ``np.percentile``: numpy's vectorised sort of a few thousand numbers per
    row is several times faster than its partition with several split points, which ``np.percentile`` uses.
    """
    ordered = np.sort(values, axis=-1)
    count = ordered.shape[-1]
    out = []
    for percent in percents:
        position = percent / 100.0 * (count - 1)
        below = int(np.floor(position))
        above = min(below + 1, count - 1)
        weight = position - below
        out.append(ordered[..., below] * (1.0 - weight) + ordered[..., above] * weight)
    return np.stack(out)


# The largest lifting.mask_interior_px: how far inside its mask's border (in pixels) a point may be required to be to
# extend an object's depth interval; a mask that bleeds onto the surface around the object by up to that much then
# extends it by none of that surface (see _depth_inliers).
_INTERIOR_PX = 4
# How far a point of the mask's rim may lie beyond the depth interval its interior reached, in multiples of the
# depth that the interior's steeper slopes (upper quartile) cover over the rim's width: several, because a surface
# seen obliquely recedes fastest at its far edge (foreshortening; a sphere's limb), which is where the rim is cut off.
_RIM_SLOPES = 3.0
# The offsets of the pixels within _INTERIOR_PX steps (up, down, left, right) of a pixel, the pixels that
# _INTERIOR_PX binary erosions with the 4-neighbourhood look at, nearest first: the first _WINDOW_WITHIN[e] of them
# are those within e steps.
_WINDOW_DY, _WINDOW_DX = np.mgrid[-_INTERIOR_PX:_INTERIOR_PX + 1, -_INTERIOR_PX:_INTERIOR_PX + 1].reshape(2, -1)
_WINDOW_STEPS = np.abs(_WINDOW_DY) + np.abs(_WINDOW_DX)
_WINDOW_DY, _WINDOW_DX = (offsets[np.argsort(_WINDOW_STEPS, kind="stable")][:np.count_nonzero(
    _WINDOW_STEPS <= _INTERIOR_PX)] for offsets in (_WINDOW_DY, _WINDOW_DX))
_WINDOW_WITHIN = [int(np.count_nonzero(_WINDOW_STEPS <= steps)) for steps in range(_INTERIOR_PX + 1)]


def _interior_points(mask: np.ndarray, depth_m: np.ndarray, rows: np.ndarray, cols: np.ndarray, interior_px: int
                     ) -> tuple[np.ndarray, float]:
    """Which of an object's points (at image ``rows``, ``cols``, all inside ``mask``) are its mask's interior: more
    than ``interior_px`` (at most ``_INTERIOR_PX``) steps (up, down, left, right) from any pixel outside the mask, as
    if the mask had been eroded ``interior_px`` times; and how steeply the object's interior recedes: the upper
    quartile over its interior points of the larger depth change per pixel across or down the image (central
    differences).

    The image border is no border of the mask (the object goes on beyond it; a window position off the image is
    clipped onto the image). Only the points' windows are looked at, so the cost is the number of points, not the
    object's area. A mask too thin to have such an interior (or whose interior has no usable depth) keeps its
    innermost points instead: those left by fewer erosions, or all of them.
    """
    height, width = mask.shape
    # Flat indices and take: several times faster than indexing the 2D mask with broadcast index arrays. Clipping
    # (for windows reaching off the image) is needed only near the image border.
    if (rows.min() >= _INTERIOR_PX and rows.max() < height - _INTERIOR_PX and cols.min() >= _INTERIOR_PX
            and cols.max() < width - _INTERIOR_PX):
        flat = (rows * width + cols)[None, :] + (_WINDOW_DY * width + _WINDOW_DX)[:, None]
    else:
        flat = (np.clip(rows[None, :] + _WINDOW_DY[:, None], 0, height - 1) * width
                + np.clip(cols[None, :] + _WINDOW_DX[:, None], 0, width - 1))
    inside = np.ravel(mask).take(flat)
    interior = np.ones(rows.shape, dtype=bool)
    for steps in range(interior_px, 0, -1):
        eroded = inside[:_WINDOW_WITHIN[steps]].all(axis=0)
        if eroded.any():
            interior = eroded
            break
    # Window offsets 1-4 are the 4-neighbours: up, left, right, down.
    up, left, right, down = np.ravel(depth_m).take(flat[1:5])
    slope = np.fmax(np.abs(right - left), np.abs(down - up))  # fmax: one NaN (no depth) of the two is ignored
    slope = slope[interior & (slope >= 0.0)]  # NaN compares False
    if slope.size == 0:
        return interior, 0.0
    upper_quartile = (3 * (slope.size - 1)) // 4
    return interior, float(np.partition(slope, upper_quartile)[upper_quartile]) / 2.0  # central differences: 2 px


def _depth_inliers(depths_m: np.ndarray, median_m: np.ndarray, band_m: np.ndarray, max_gap_m: np.ndarray,
                   reach_m: np.ndarray, interior: np.ndarray, rim_margin_m: np.ndarray) -> np.ndarray:
    """Per object (row of ``depths_m``, (objects, N)): which points are the object's, not stray pixels.

    The core is the band of ``band_m`` (k robust standard deviations) around the median depth. A band alone
    drops real surfaces: when most of an object's pixels lie on one face square to the camera (the top of a box
    seen from above, its front seen level), its median absolute deviation is about zero and every point of the
    visible sides more than the band deeper is cut off, and with them the object's height or depth. So from the
    core the inliers grow outwards through the sorted depths while each next point is at most ``max_gap_m``
    (per object) beyond the last: a visible side is a continuous run of depths, however long, while mask bleed
    onto a background behind the object, or background seen through a hole, is separated from it by a gap.

    A rim of mask bleed onto the surface the object stands on is not separated: that surface runs on from the
    object's base to far behind it without a gap, and depth alone cannot tell it from a receding side. So only the
    ``interior`` points (those of the mask's interior, see :func:`_interior_points`) grow the inliers; a point of
    the mask's rim is an inlier only within the interval the interior reached, widened by ``rim_margin_m`` (per
    object; callers pass a few times the depth the object's own surface recedes over the rim's width, so a
    receding side keeps its last pixels, and noise at the rim stays in). Bleed no wider than the rim then adds at
    most that margin; wider bleed reaches into the interior and grows again, up to ``reach_m`` beyond the band on
    either side (callers pass about the object's size across the view, which a visible side seldom exceeds in
    depth).
    """
    # The rim's points are sorted in at the median: inside the core, so they neither extend it nor close a gap.
    ordered = np.sort(np.where(interior, depths_m, median_m[:, None]), axis=1)
    count = ordered.shape[1]
    # The core is the run of sorted points from core_low to core_high.
    core_low = np.count_nonzero(ordered < (median_m - band_m)[:, None], axis=1)
    core_high = count - 1 - np.count_nonzero(ordered > (median_m + band_m)[:, None], axis=1)
    gaps = np.diff(ordered, axis=1) > max_gap_m[:, None]  # gaps[:, j]: between sorted points j and j + 1
    index = np.arange(count - 1)
    above = gaps & (index >= core_high[:, None])
    high = np.where(above.any(axis=1), above.argmax(axis=1), count - 1)
    below = (gaps & (index < core_low[:, None]))[:, ::-1]
    low = np.where(below.any(axis=1), count - 1 - below.argmax(axis=1), 0)
    low_m = np.take_along_axis(ordered, low[:, None], axis=1)
    high_m = np.take_along_axis(ordered, high[:, None], axis=1)
    rim_m = np.where(interior, 0.0, rim_margin_m[:, None])
    low_m = np.maximum(low_m, (median_m - band_m - reach_m)[:, None])
    high_m = np.minimum(high_m, (median_m + band_m + reach_m)[:, None])
    return (depths_m >= low_m - rim_m) & (depths_m <= high_m + rim_m)


def _connected_extents(values: np.ndarray, percent: float, max_gap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` (..., N): the extent of the points connected to its central [p, 100 - p] percentiles.

    From each percentile outwards, the extent grows point by point (in sorted order) while the next point is at
    most ``max_gap_m`` away; a stray pixel separated by a larger gap stays out, as with the plain percentile, but a
    sparse yet continuous tail (the foreshortened side of an object seen from above) is kept.
    """
    ordered = np.sort(values, axis=-1)
    count = ordered.shape[-1]
    low_index = int(np.floor(percent / 100.0 * (count - 1)))
    high_index = int(np.ceil((100.0 - percent) / 100.0 * (count - 1)))
    # Only the tails matter: a gap between sorted points i and i + 1 below low_index (above high_index) stops the
    # growth there. argmax finds the first gap walking outwards from each percentile.
    low_gaps = (np.diff(ordered[..., :low_index + 1], axis=-1) > max_gap_m)[..., ::-1]
    high_gaps = np.diff(ordered[..., high_index:], axis=-1) > max_gap_m
    low_stop = (np.where(low_gaps.any(axis=-1), low_index - low_gaps.argmax(axis=-1), 0) if low_index > 0
                else np.zeros(ordered.shape[:-1], dtype=np.int64))
    high_stop = (np.where(high_gaps.any(axis=-1), high_index + high_gaps.argmax(axis=-1), count - 1)
                 if high_index < count - 1 else np.full(ordered.shape[:-1], count - 1, dtype=np.int64))
    return (np.take_along_axis(ordered, low_stop[..., None], axis=-1)[..., 0],
            np.take_along_axis(ordered, high_stop[..., None], axis=-1)[..., 0])


# Slices along an axis for an object's width profile; a slice with fewer points has no meaningful width.
_WIDTH_SLICES = 16
_MIN_SLICE_POINTS = 3
# The fewest slices a round section is fitted to (three points fix a circle's centre with one to spare for noise).
_MIN_FIT_SLICES = 3
# A camera-side end slice narrower than this share of the widest slice is a rounded end: the surface curves away
# from the widest section towards the camera too. A flat face there (a box's top seen from above, its front seen
# level) spans the object's whole width up to its edge; sampling misses at most a few per cent of a corner.
_ROUNDED_END = 0.75


class _Slices(NamedTuple):
    """Which of ``_WIDTH_SLICES`` equal slices along one axis each point of each object (row) falls in."""

    flat: np.ndarray  # per point (flattened), its object's row times _WIDTH_SLICES plus its slice
    positions: np.ndarray  # per point (flattened), its position along the axis
    populated: np.ndarray  # per object and slice, whether the slice has points enough


def _slices(positions: np.ndarray, low: np.ndarray, high: np.ndarray) -> _Slices:
    """The slices of ``positions`` (objects, points) from ``low`` to ``high`` (per object); the points beyond
    either end fall in the end slices."""
    count, _ = positions.shape
    span = high - low
    span_safe = np.where(span > 1e-9, span, 1.0)
    slices = np.clip(((positions - low[:, None]) / span_safe[:, None] * _WIDTH_SLICES).astype(np.int64), 0,
                     _WIDTH_SLICES - 1)
    flat = (slices + _WIDTH_SLICES * np.arange(count)[:, None]).ravel()
    populated = (np.bincount(flat, minlength=count * _WIDTH_SLICES) >= _MIN_SLICE_POINTS).reshape(count,
                                                                                                  _WIDTH_SLICES)
    return _Slices(flat, positions.ravel(), populated)


def _slice_extremes(slices: _Slices, values: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per object (row) and slice (:func:`_slices`): the smallest of its points' ``values`` in the slice and that
    point's position, the same for the largest, and whether the slice has points enough (the others read 0)."""
    flat, positions_flat, populated = slices
    values_flat = values.ravel()
    groups = populated.size
    # Each slice's extreme values, then which point holds them (the first such point for the smallest, the last for
    # the largest): grouped reductions, several times faster here than sorting every point by slice and value.
    point = np.arange(flat.size)
    smallest_value = np.full(groups, np.inf)
    np.minimum.at(smallest_value, flat, values_flat)
    smallest = np.full(groups, flat.size - 1)
    at_smallest = values_flat == smallest_value[flat]
    np.minimum.at(smallest, flat[at_smallest], point[at_smallest])
    largest_value = np.full(groups, -np.inf)
    np.maximum.at(largest_value, flat, values_flat)
    largest = np.zeros(groups, dtype=point.dtype)
    at_largest = values_flat == largest_value[flat]
    np.maximum.at(largest, flat[at_largest], point[at_largest])
    return (*(np.where(populated, array[which].reshape(populated.shape), 0.0)
              for which in (smallest, largest) for array in (values_flat, positions_flat)), populated)


def _width_profiles(slices: _Slices, lateral: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object (row) and slice (:func:`_slices`): where in the slice its points' lateral extent was measured,
    half that extent, and whether the slice has points enough.

    The position is the mean of the positions of the slice's leftmost and rightmost point rather than the slice's
    centre: on a rounded surface those extremes lie at the slice's wider edge, half a slice from its centre.
    """
    right, right_at, left, left_at, populated = _slice_extremes(slices, lateral)
    return (left_at + right_at) / 2.0, (left - right) / 2.0, populated


def _upper_hull(where: np.ndarray, half_width: np.ndarray, populated: np.ndarray) -> np.ndarray:
    """Per object (row): which of its populated slices are vertices of the upper concave hull of its width profile.

    The sections of a convex object along an axis have a concave width profile, and a profile measured from a
    sample of the object's points lies below it: a slice whose extreme points were not sampled reads narrower (a
    dip of 10-30 % where the surface is seen edge-on and few points lie near the silhouette). The hull drops those.
    Each pass removes every slice below the chord between its kept neighbours; a slice below such a chord is below
    the hull, so removing them together is safe, and at most ``_WIDTH_SLICES`` passes (on small arrays) finish.
    """
    kept = populated.copy()
    index = np.arange(_WIDTH_SLICES)
    # Each pass's neighbours as indices into the flattened profiles (one take each: cheaper than indexing by row
    # and column); the first slice has no previous one and the last no following one.
    row_start = (np.arange(len(kept)) * _WIDTH_SLICES)[:, None]
    where_flat, half_width_flat = where.ravel(), half_width.ravel()
    previous, following = np.full(kept.shape, -1), np.full(kept.shape, _WIDTH_SLICES)
    for _ in range(_WIDTH_SLICES):
        before = np.maximum.accumulate(np.where(kept, index, -1), axis=1)
        after = np.minimum.accumulate(np.where(kept, index, _WIDTH_SLICES)[:, ::-1], axis=1)[:, ::-1]
        previous[:, 1:] = before[:, :-1]
        following[:, :-1] = after[:, 1:]
        inner = kept & (previous >= 0) & (following < _WIDTH_SLICES)
        # np.minimum / np.maximum: the same as np.clip on integers, without its fixed cost (several times theirs).
        p, f = np.maximum(previous, 0) + row_start, np.minimum(following, _WIDTH_SLICES - 1) + row_start
        where_p, half_width_p = where_flat.take(p), half_width_flat.take(p)
        run = where_flat.take(f) - where_p
        chord = half_width_p + (half_width_flat.take(f) - half_width_p) * (
            (where - where_p) / np.where(run != 0.0, run, 1.0))  # positions may run either way
        below = inner & (run != 0.0) & (half_width < chord)
        if not below.any():
            break
        kept &= ~below
    return kept


def _from_camera_side(camera_at_high: np.ndarray, *profiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-slice ``profiles`` (objects, slices) ordered from the camera's side: reversed for the objects whose
    camera-side end is at ``high``."""
    flip = camera_at_high[:, None]
    return tuple(np.where(flip, values[:, ::-1], values) for values in profiles)


def _rounded_end(half_width: np.ndarray, populated: np.ndarray) -> np.ndarray:
    """Per object, from a width profile ordered from the camera's side: whether its camera-side end slice is
    narrower than ``_ROUNDED_END`` of its widest slice (a rounded end, not a flat face)."""
    widest = half_width.max(axis=1)
    camera_end = populated.argmax(axis=1)  # the first populated slice from the camera's side
    return half_width[np.arange(len(widest)), camera_end] < _ROUNDED_END * widest


def _round_section_centres(where: np.ndarray, half_width: np.ndarray, populated: np.ndarray,
                           camera_at_high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per object: the centre of the circle its width profile traces on the camera's side of its widest slice,
    its radius, whether the profile is rounded at its camera-side end, and whether the circle could be fitted.

    A round object (a sphere; a cylinder across its axis) has half-width h(s) = sqrt(r^2 - (s - c)^2) at position s
    along an axis, so h^2 + s^2 = r^2 - c^2 + 2 c s is linear in s with slope 2 c: a least-squares line through the
    slices gives the centre c without seeing it, from any part of the profile. Only the slices from the camera-side
    end up to the widest one are used: there the left and right extremes of each cross-section face the camera,
    whereas beyond the widest section they are behind the limb and the measured width is the limb's, narrower than
    the object. So the fit recovers a sphere's centre whether its equator is seen (level) or not (from above), and
    a centre hidden behind the visible part (the peak of the widths at the limb, in front of the true centre by
    r^2 / distance with a perspective camera) is not mistaken for the widest section.
    ``camera_at_high``: per object, whether the camera-side end is at ``high`` (slices reversed) or at ``low``.
    """
    where, half_width, populated = _from_camera_side(camera_at_high, where, half_width, populated)
    rounded = _rounded_end(half_width, populated)
    used = _upper_hull(where, half_width, populated) & (
        np.arange(_WIDTH_SLICES)[None, :] <= half_width.argmax(axis=1)[:, None])
    used_count = used.sum(axis=1)
    # Centred on the used slices' mean position m, for conditioning: h^2 + (s - m)^2 = const + 2 (c - m)(s - m).
    mean = np.where(used, where, 0.0).sum(axis=1) / np.maximum(used_count, 1)
    offset = np.where(used, where - mean[:, None], 0.0)
    variance = (offset * offset).sum(axis=1)
    fitted = (used_count >= _MIN_FIT_SLICES) & (variance > 0.0)
    slope = (offset * (half_width ** 2 + offset ** 2)).sum(axis=1) / np.where(fitted, variance, 1.0)
    centre = mean + slope / 2.0
    radius_sq = np.where(used, half_width ** 2 + (where - centre[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(
        used_count, 1)
    # Whether the profile is round at all: on a section with semi-axes a (along) and b (across), h^2 is a concave
    # parabola in s with leading coefficient -(b / a)^2, -1 on a circle. Straight edges rising from a box's corner
    # (h^2 convex, coefficient k^2 > 0) or a constant width (0) are not round, whatever circle fits them.
    design = np.stack([np.ones_like(offset), offset, offset * offset], axis=-1) * used[..., None]
    normal = np.matmul(design.transpose(0, 2, 1), design)
    quadratic = np.matmul(np.linalg.pinv(normal), np.matmul(design.transpose(0, 2, 1),
                                                            (half_width ** 2)[..., None]))[:, 2, 0]
    round_section = (-quadratic >= 1.0 / _ROUND_ASPECT ** 2) & (-quadratic <= _ROUND_ASPECT ** 2)
    # And every populated slice on the camera's side, not only the hull's vertices, is at least half as wide as the
    # circle there: sampling dips are 10-30 %, but a step (a gripper's narrow wrist above its wide fingers, a mask
    # cropped by a jittered box) reads a tenth of it, and the hull alone would drop the narrow slices and fit a
    # circle to the step's corner.
    predicted = np.sqrt(np.maximum(radius_sq[:, None] - (where - centre[:, None]) ** 2, 0.0))
    camera_side = populated & (np.arange(_WIDTH_SLICES)[None, :] <= half_width.argmax(axis=1)[:, None])
    round_section &= np.all(~camera_side | (half_width >= _MIN_ROUND_WIDTH * predicted), axis=1)
    return centre, np.sqrt(radius_sq), rounded & round_section, fitted


# The most elongated section still taken for round (semi-axes along and across the axis, either way).
_ROUND_ASPECT = 1.5
# The narrowest share of the fitted circle's width a slice of a round section may read (see _round_section_centres).
_MIN_ROUND_WIDTH = 0.5
# How far a fitted round section's radius may differ from the silhouette's half-width, as a share of it (sampling
# and the limb under perspective shrink the measured width by a few per cent).
_ROUND_RADIUS_TOLERANCE = 0.15
# How far a round section's circle may miss the object's seen ends (its top from above, its nearest point), as a
# share of its radius: the box's percentiles trim a cap of about that height.
_SEEN_END_TOLERANCE = 0.06
# A near edge (see _near_edge_circles) whose camera-side end lies further back than this share of the object's
# visible height behind its nearest point is rounded; a face square to the view (a box's front, seen from above or
# level) keeps its near edge where it is up to its top.
_ROUNDED_EDGE = 0.25


def _near_edge_circles(near: np.ndarray, near_at: np.ndarray, populated: np.ndarray, camera_at_high: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per object: the centre (along the view, up) and radius of the circle through its near edge in the vertical
    plane along the view, and whether that edge is a round one.

    ``near`` is per horizontal slice the smallest distance along the view, at height ``near_at``. The near edge of
    an object round across the view (a cylinder lying across it; a sphere) is the arc of its cross-section facing
    the camera, visible from its top down to the limb, so a circle fitted to it (least squares on
    x^2 + z^2 = 2 a x + 2 b z + k, linear in a, b, k) gives the hidden centre (a, b). That completes what the width
    profiles cannot: a cylinder lying across the view is equally wide at every height and at every distance. The
    edge is round when its camera-side end lies well behind its nearest point (a box's front face keeps its near
    edge where it is) and the fitted circle is no larger than the edge itself: an inclined flat face (a ramp) has a
    near edge that recedes too, but along a line, whose circle is huge.
    """
    near, near_at, populated = _from_camera_side(camera_at_high, near, near_at, populated)
    count = populated.sum(axis=1)
    weight = populated.astype(np.float64)
    total = np.maximum(count, 1)
    # Centred coordinates keep the normal equations well conditioned.
    mean_x = (weight * near).sum(axis=1) / total
    mean_z = (weight * near_at).sum(axis=1) / total
    x = np.where(populated, near - mean_x[:, None], 0.0)
    z = np.where(populated, near_at - mean_z[:, None], 0.0)
    design = np.stack([2.0 * x, 2.0 * z, weight], axis=-1)
    weighted = (design * weight[..., None]).transpose(0, 2, 1)
    coefficients = np.matmul(np.linalg.pinv(np.matmul(weighted, design)),
                             np.matmul(weighted, (x * x + z * z)[..., None]))[..., 0]
    a, b, k = coefficients.T
    radius = np.sqrt(np.maximum(k + a * a + b * b, 0.0))
    height = _visible_height(near_at, populated)
    depth = np.where(populated, near, -np.inf).max(axis=1) - np.where(populated, near, np.inf).min(axis=1)
    round_edge = _near_edge_recedes(near, near_at, populated) & (radius <= np.maximum(height, depth))
    return mean_x + a, mean_z + b, radius, round_edge


def _visible_height(near_at: np.ndarray, populated: np.ndarray) -> np.ndarray:
    """Per object, the height its near edge's populated slices span."""
    return np.where(populated, near_at, -np.inf).max(axis=1) - np.where(populated, near_at, np.inf).min(axis=1)


def _near_edge_recedes(near: np.ndarray, near_at: np.ndarray, populated: np.ndarray) -> np.ndarray:
    """Per object, from a near edge ordered from the camera's side (see :func:`_near_edge_circles`): whether it has
    slices enough for a circle and its camera-side end lies well behind its nearest point (a round edge's first
    test)."""
    camera_end = populated.argmax(axis=1)
    receding = near[np.arange(len(near)), camera_end] - np.where(populated, near, np.inf).min(axis=1)
    enough = populated.sum(axis=1) >= _MIN_FIT_SLICES
    return enough & (receding > _ROUNDED_EDGE * _visible_height(near_at, populated))


def _complete_hidden_sides(
    points: np.ndarray, low: np.ndarray, high: np.ndarray, view_forward_graph: np.ndarray,
    camera_height_m: np.ndarray, box_percentile: float, max_gap_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`complete_hidden_side`: ``points`` (objects, points, 3), ``low``/``high`` (objects, 3), and per
    object the viewing direction of its camera (objects, 3) and that camera's height (objects,)."""
    forward = np.asarray(view_forward_graph, dtype=np.float64)
    left = np.stack([-forward[:, 1], forward[:, 0], np.zeros(len(forward))], axis=1)
    # matmul, not einsum: the same summation as one object's ``points @ forward``, so batching never changes a bit.
    lateral = np.matmul(points, left[:, :, None])[..., 0]
    along = np.matmul(points, forward[:, :, None])[..., 0]
    # The vertical: the camera-side end is the top for a camera above the object's visible middle.
    camera_above = camera_height_m > (low[:, 2] + high[:, 2]) / 2.0
    camera_outside = (camera_height_m > high[:, 2]) | (camera_height_m < low[:, 2])
    # The vertical slices serve the widths and the near edge alike.
    vertical_slices = _slices(points[..., 2], low[:, 2], high[:, 2])
    vertical = _width_profiles(vertical_slices, lateral)
    near, near_at, _, _, populated = _slice_extremes(vertical_slices, along)
    # The circle fits cost more than everything else here, so they run only for the objects whose box they can
    # change (the others' values below are never used), each after its own first test: the vertical circle where the
    # vertical profile has a rounded end, the circle along the view where the footprint may be hidden (footprint_seen
    # below: a camera level with the object, or a rounded vertical end), the near edge's circle where the edge
    # recedes. A box seen from above needs none, and a batch of such boxes keeps its boxes as measured.
    count = len(points)
    _, vertical_half_width, vertical_populated = vertical
    rounded_vertical_end = _rounded_end(*_from_camera_side(camera_above, vertical_half_width, vertical_populated))
    up_rows = np.flatnonzero(rounded_vertical_end)
    forward_rows = np.flatnonzero(~camera_outside | rounded_vertical_end)
    edge_rows = np.flatnonzero(_near_edge_recedes(*_from_camera_side(camera_above, near, near_at, populated)))
    if not (forward_rows.size or edge_rows.size):  # forward_rows holds every one of up_rows
        return low.copy(), high.copy()
    forward_low, forward_high = _connected_extents(along, box_percentile, max_gap_m)
    lateral_low, lateral_high = _connected_extents(lateral, box_percentile, max_gap_m)
    centre_up, radius_up, centre_forward, radius_forward = (np.zeros(count) for _ in range(4))
    rounded_up, fitted_up, rounded_forward, fitted_forward = (np.zeros(count, dtype=bool) for _ in range(4))
    if forward_rows.size:
        along_view = _width_profiles(_slices(along[forward_rows], forward_low[forward_rows],
                                             forward_high[forward_rows]), lateral[forward_rows])
        # Both profiles' circles in one call: it works row by row on arrays of a few numbers per object, where
        # numpy's fixed cost per call is most of the time, so stacking the rows halves that and changes no bit.
        profiles = [np.concatenate([up[up_rows], view]) for up, view in zip(vertical, along_view, strict=True)]
        circles = _round_section_centres(*profiles, np.concatenate([camera_above[up_rows],
                                                                    np.zeros(forward_rows.size, dtype=bool)]))
        for up, along_the_view, values in zip((centre_up, radius_up, rounded_up, fitted_up),
                                              (centre_forward, radius_forward, rounded_forward, fitted_forward),
                                              circles, strict=True):
            up[up_rows], along_the_view[forward_rows] = values[:up_rows.size], values[up_rows.size:]
    edge_forward, edge_up, edge_radius = (np.zeros(count) for _ in range(3))
    round_edge = np.zeros(count, dtype=bool)
    if edge_rows.size:
        for values, fitted in zip((edge_forward, edge_up, edge_radius, round_edge),
                                  _near_edge_circles(near[edge_rows], near_at[edge_rows], populated[edge_rows],
                                                     camera_above[edge_rows]), strict=True):
            values[edge_rows] = fitted
    # Only rounded ends are completed. A flat face at the camera-side end is a box's (or an upright cylinder's top
    # disc): its edges are the object's edges, nothing of the width profile is round, and a fit through it would
    # put the centre wherever sampling noise in a constant width puts it. And a camera above an object whose top is
    # such a face (or below one with a flat bottom) sees its whole footprint, so its back is not hidden either.
    footprint_seen = camera_outside & ~rounded_up
    # A round section's radius is the silhouette's half-width (its widest section is the silhouette's widest, seen
    # or not); a fitted circle much larger or smaller is no round section's. A profile that passes the round test
    # but not these is centred on the midpoint of the silhouette's leftmost and rightmost points instead (for a
    # round object the limb's, in front of the centre by r^2 / distance under perspective, which is why the circle
    # comes first). A box turned to the view, rising from its near corner along straight edges, fails the round
    # test itself (h^2 convex), so it is not completed: its hidden back stays missing.
    half_width = (lateral_high - lateral_low) / 2.0
    # And a round section's circle reaches the object's end on the camera's side, which is seen: a profile that is
    # round only in part (a can lying obliquely: its width is its length's share plus its round section's) fits a
    # circle whose end misses it.
    # The top is seen from a camera above the object's bottom, the bottom from one below its top (both from one
    # level with it).
    tolerance = _ROUND_RADIUS_TOLERANCE * half_width
    top_seen, bottom_seen = camera_height_m > low[:, 2], camera_height_m < high[:, 2]

    def reaches_seen_ends(centre_m: np.ndarray, radius_m: np.ndarray) -> np.ndarray:
        miss = _SEEN_END_TOLERANCE * radius_m
        return ((~top_seen | (np.abs(centre_m + radius_m - high[:, 2]) <= miss))
                & (~bottom_seen | (np.abs(centre_m - radius_m - low[:, 2]) <= miss)))

    complete_up = (rounded_up & fitted_up & (np.abs(radius_up - half_width) <= tolerance)
                   & reaches_seen_ends(centre_up, radius_up))
    round_forward = ((np.abs(radius_forward - half_width) <= tolerance)
                     & (np.abs(centre_forward - radius_forward - forward_low) <= _SEEN_END_TOLERANCE * radius_forward))
    rows = np.arange(len(along))
    extremes_forward = (along[rows, lateral.argmax(axis=1)] + along[rows, lateral.argmin(axis=1)]) / 2.0
    centre_forward = np.where(round_forward, centre_forward, extremes_forward)
    complete_forward = rounded_forward & fitted_forward & ~footprint_seen
    # Where the widths are not round but the near edge is (a cylinder lying across the view), its circle gives both;
    # its circle too must reach the seen ends, the nearest point and the top (for a camera above; else the bottom).
    round_edge &= (reaches_seen_ends(edge_up, edge_radius)
                   & (np.abs(edge_forward - edge_radius - forward_low) <= _SEEN_END_TOLERANCE * edge_radius))
    centre_forward = np.where(complete_forward, centre_forward, edge_forward)
    centre_up = np.where(complete_up, centre_up, edge_up)
    complete_forward |= round_edge
    complete_up |= round_edge
    # A fit through few slices can put the centre far beyond them. Seen from at least a radius away from its
    # surface, a sphere shows at least half its radius along the view (r - r^2 / distance), so its centre is at most
    # that extent again beyond the visible part: the centre is capped there.
    forward_extent = forward_high - forward_low
    centre_forward = np.minimum(centre_forward, forward_high + forward_extent)
    vertical_extent = high[:, 2] - low[:, 2]
    centre_up = np.clip(centre_up, low[:, 2] - vertical_extent, high[:, 2] + vertical_extent)
    low, high = low.copy(), high.copy()
    # Along the view the hidden half is the reflection of the visible points through the centre, on the far side
    # only (growing a visible side would undo what was measured). The centre is that of the round section: c along
    # the view, the middle of the silhouette across it. Each horizontal axis of the graph gets the union of its
    # visible interval with its reflection there, which for a view along a diagonal is the true box of a round
    # footprint; growing both axes by the growth along the view would widen it by up to 41 %.
    centre_graph = (centre_forward[:, None] * forward + ((lateral_low + lateral_high) / 2.0)[:, None] * left)
    for axis in (0, 1):
        away = forward[:, axis]
        grow_high = complete_forward & (away > 0.0)
        grow_low = complete_forward & (away < 0.0)
        high[:, axis] = np.where(grow_high, np.maximum(high[:, axis], 2.0 * centre_graph[:, axis] - low[:, axis]),
                                 high[:, axis])
        low[:, axis] = np.where(grow_low, np.minimum(low[:, axis], 2.0 * centre_graph[:, axis] - high[:, axis]),
                                low[:, axis])
    # The vertical: the underside for a camera above, the top for one below.
    reflected_low, reflected_high = 2.0 * centre_up - high[:, 2], 2.0 * centre_up - low[:, 2]
    low[:, 2] = np.where(complete_up & camera_above, np.minimum(low[:, 2], reflected_low), low[:, 2])
    high[:, 2] = np.where(complete_up & ~camera_above, np.maximum(high[:, 2], reflected_high), high[:, 2])
    return low, high


def complete_hidden_side(
    points_graph: np.ndarray, low: np.ndarray, high: np.ndarray, view_forward_graph: np.ndarray,
    camera_height_m: float, box_percentile: float, max_gap_m: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The box ``low``..``high`` of one object's (N, 3) points united with its reflection through the object's
    centre on its hidden sides (module docstring).

    ``view_forward_graph`` is the camera's horizontal viewing direction (unit, z = 0) in the graph frame and
    ``camera_height_m`` the camera's z there; the visible extent along the viewing direction is trimmed like the
    box (``box_percentile``, ``max_gap_m``). Non-finite inputs and a direction that is not a horizontal unit vector
    are refused (lifting never passes them: its depths are filtered first).
    """
    points, forward = np.asarray(points_graph, dtype=np.float64), np.asarray(view_forward_graph, dtype=np.float64)
    arrays = {"points_graph": points, "low": np.asarray(low, dtype=np.float64),
              "high": np.asarray(high, dtype=np.float64), "camera_height_m": np.float64(camera_height_m)}
    for name, values in arrays.items():
        if not np.all(np.isfinite(values)):
            raise PerceptionError(f"complete_hidden_side: {name} holds non-finite values")
    if not is_horizontal_unit(forward):
        raise PerceptionError(f"complete_hidden_side: view_forward_graph must be a horizontal unit vector, got "
                              f"{forward.tolist()}")
    completed_low, completed_high = _complete_hidden_sides(
        points[None], arrays["low"][None], arrays["high"][None], forward[None],
        np.array([camera_height_m], dtype=np.float64), box_percentile, max_gap_m)
    return completed_low[0], completed_high[0]


@dataclass(frozen=True)
class LiftRequest:
    """One frame's detections to lift, with what lifting needs of that frame."""

    detections: Sequence[Detection]
    depth_m: np.ndarray
    intrinsics: Intrinsics
    camera_to_graph: RigidTransform
    view_forward_graph: np.ndarray | None = None  # needed for amodal completion (see lift_detections)
    # The frame's other detections, not lifted: a box-only detection's silhouette leaves out the boxes nested in it
    # (perception.silhouette.nested_boxes), whichever of them the caller lifts (an offline labeller lifts some labels).
    context: Sequence[Detection] = ()


def lift_detections(
    detections: Sequence[Detection],
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    camera_to_graph: RigidTransform,
    settings: LiftingSettings,
    view_forward_graph: np.ndarray | None = None,
) -> list[LiftedObject | None]:
    """Each detection's 3D box (None when too few of its pixels have usable depth), in input order.

    ``view_forward_graph`` (the camera's horizontal viewing direction in the graph frame) is needed for
    ``settings.amodal_completion``; without it a box spans the visible points only.
    """
    return lift_frames([LiftRequest(detections, depth_m, intrinsics, camera_to_graph, view_forward_graph)],
                       settings)[0]


def lift_frames(requests: Sequence[LiftRequest], settings: LiftingSettings) -> list[list[LiftedObject | None]]:
    """:func:`lift_detections` for several frames at once: the objects of all of them go through the statistics as
    one batch. Each object's box depends on its own frame only, so the result is the same as lifting the frames one
    by one; an offline labeller lifts many frames per batch, because with a few objects per frame numpy's fixed cost
    per call, not the arithmetic, is most of the time."""
    results: list[list[LiftedObject | None]] = [[None] * len(request.detections) for request in requests]
    owners, sample_rows, sample_cols, depths, fractions, crops, focals = [], [], [], [], [], [], []
    interiors: list[np.ndarray] = []  # per object, which of its points are its mask's interior
    slopes: list[float] = []  # per object, how steeply its interior recedes [m per pixel]
    measured_at: dict[int, _Measured] = {}  # per mask-less object, where its points were sampled
    points_per_object = settings.points_per_object
    for request in requests:  # a CameraFrame checks this; a direct caller's depth could be of another camera
        expected = (request.intrinsics.height, request.intrinsics.width)
        if request.depth_m.shape != expected:
            raise PerceptionError(f"depth image of shape {request.depth_m.shape} does not fit the camera's "
                                  f"{expected[1]}x{expected[0]} intrinsics; expected shape {expected}")
    for frame_index, request in enumerate(requests):
        # Only a silhouette needs the frame's boxes (those nested in a box-only detection's).
        frame_boxes = ([d.box_xywh_px for d in (*request.detections, *request.context)] if settings.box_silhouette
                       else [])
        for index, detection in enumerate(request.detections):
            box_valid_fraction = None
            if detection.mask is None and settings.box_silhouette:
                silhouette = depth_silhouette(detection.box_xywh_px, request.depth_m, request.intrinsics,
                                              request.camera_to_graph, settings.depth_min_m, settings.depth_max_m,
                                              nested_boxes(detection.box_xywh_px, frame_boxes, exclude=index))
                if silhouette is not None:  # lifted as if the detector had given it (the result keeps the original)
                    # A silhouette holds only pixels with depth, so its own fraction is always 1: the box's tells
                    # the reward's and the trust's depth checks how much of the detection the sensor saw.
                    box_valid_fraction = _box_valid_fraction(detection.box_xywh_px, request.depth_m, settings)
                    detection = dataclasses.replace(detection, mask=silhouette)
            usable, pixel_count, crop = _object_pixels(detection, request.depth_m, settings)
            valid_count = usable.size
            if valid_count == 0 or valid_count < settings.min_valid_fraction * pixel_count:
                continue
            rows, cols = np.divmod(usable[_sample_indices(valid_count, points_per_object)], crop.inside.shape[1])
            rows += crop.y0
            cols += crop.x0
            depths.append(request.depth_m[rows, cols])
            # The central half of a box has no rim; with mask_interior_px 0 every point is interior (no rim rule).
            interior, slope = (_interior_points(detection.mask, request.depth_m, rows, cols,
                                                settings.mask_interior_px)
                               if crop.from_mask and settings.mask_interior_px > 0
                               else (np.ones(rows.shape, dtype=bool), 0.0))
            interiors.append(interior)
            slopes.append(slope)
            if not crop.from_mask:
                # Cut by the border: reaching it, not only beyond (detectors clip their boxes to the image).
                box_x, _, box_width, _ = detection.box_xywh_px
                measured_at[len(owners)] = _Measured(rows, cols, request.intrinsics.cx, box_x <= 0,
                                                     box_x + box_width >= request.depth_m.shape[1])
                rows, cols = _spread_over_box(rows, cols, crop, detection.box_xywh_px, request.depth_m.shape)
            sample_rows.append(rows)
            sample_cols.append(cols)
            focals.append((request.intrinsics.fx, request.intrinsics.fy))
            owners.append((frame_index, index))
            fractions.append(valid_count / pixel_count if box_valid_fraction is None else box_valid_fraction)
            crops.append(crop)
    if not owners:
        return results
    rows, cols = np.stack(sample_rows), np.stack(sample_cols)
    depths_m = np.stack(depths).astype(np.float64)
    median = _quantiles(depths_m, [50.0])[0][:, None]
    deviation = np.abs(depths_m - median)
    sigma_m = np.maximum(MAD_TO_SIGMA * _quantiles(deviation, [50.0])[0][:, None], _MIN_SIGMA_M)
    band_m = settings.outlier_mad_k * sigma_m[:, 0]
    # An object's size across the view: the larger side of its points' extent in the image, at its median depth.
    focal_px = np.array(focals)
    lateral_m = np.maximum((np.ptp(cols, axis=1) + 1.0) / focal_px[:, 0],
                           (np.ptp(rows, axis=1) + 1.0) / focal_px[:, 1]) * median[:, 0]
    inliers = _depth_inliers(depths_m, median[:, 0], band_m, np.maximum(band_m, _GAP_PER_SIZE * lateral_m),
                             _REACH_PER_SIZE * lateral_m, np.stack(interiors),
                             _RIM_SLOPES * settings.mask_interior_px * np.array(slopes))
    lateral_scale = None
    if measured_at:
        depths_m, lateral_scale = _extend_depth_over_box(depths_m, rows, cols, inliers, measured_at, settings)
    # Back-projected and moved into the graph frame with each object's own camera (as back_project and
    # RigidTransform.apply do, batched over the objects).
    frames = [requests[frame_index] for frame_index, _ in owners]
    frame_of = np.array([frame_index for frame_index, _ in owners])
    fx, fy, cx, cy = np.array([[r.intrinsics.fx, r.intrinsics.fy, r.intrinsics.cx, r.intrinsics.cy]
                               for r in requests])[frame_of].T[..., None]
    offset_x, offset_y = cols - cx, rows - cy
    for frame_index in sorted({i for i in frame_of.tolist() if requests[i].intrinsics.distorted}):
        # A raw image with lens distortion: OpenCV's undistorted normalised coordinates replace (u - cx) / fx, with
        # a focal length of 1 so that the arithmetic below is back_project's (batching changes no bit).
        which = frame_of == frame_index
        offset_x[which], offset_y[which] = normalized_coordinates(requests[frame_index].intrinsics, cols[which],
                                                                  rows[which])
        fx, fy = np.where(which[:, None], 1.0, fx), np.where(which[:, None], 1.0, fy)
    if lateral_scale is not None:
        # Only the mask-less objects' rows: multiplying the others by 1.0 would change no bit either, but need not run.
        which = np.array(sorted(measured_at))
        offset_x[which] = offset_x[which] * lateral_scale[which]
    optical = np.stack([offset_x * depths_m / fx, offset_y * depths_m / fy, depths_m], axis=-1)
    rotations_t = np.stack([r.camera_to_graph.rotation_matrix_t for r in requests])[frame_of]
    translations = np.stack([r.camera_to_graph.translation_m for r in requests])[frame_of]
    points = np.matmul(optical, rotations_t) + translations[:, None, :]
    # Rejected points are replaced by the object's point of median depth: inside the object, so they never widen
    # its box, and every object keeps the same number of points for the batched percentiles.
    central = points[np.arange(len(owners)), np.argmin(deviation, axis=1)]
    points = np.where(inliers[..., None], points, central[:, None, :])
    low, high = _connected_extents(points.transpose(0, 2, 1), settings.box_percentile, settings.max_gap_m)
    completable = np.array([r.view_forward_graph is not None for r in frames])
    if settings.amodal_completion and completable.any():
        which = np.flatnonzero(completable)
        completed_low, completed_high = _complete_hidden_sides(
            points[which], low[which], high[which], np.stack([frames[i].view_forward_graph for i in which]),
            np.array([frames[i].camera_to_graph.translation_m[2] for i in which]), settings.box_percentile,
            settings.max_gap_m)
        # The silhouette test costs more than the completion, so it runs only for the boxes the completion changed.
        changed = np.any(completed_low != low[which], axis=1) | np.any(completed_high != high[which], axis=1)
        for position in np.flatnonzero(changed):
            row = which[position]
            crop = crops[row]
            if crop.from_mask and _silhouette_is_own(crop.inside, frames[row].depth_m, crop.x0, crop.y0):
                low[row], high[row] = completed_low[position], completed_high[position]
    for row, ((frame_index, index), fraction) in enumerate(zip(owners, fractions, strict=True)):
        results[frame_index][index] = LiftedObject(requests[frame_index].detections[index],
                                                   (low[row] + high[row]) / 2.0, high[row] - low[row], fraction)
    return results


def lift_detection(
    detection: Detection,
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    camera_to_graph: RigidTransform,
    settings: LiftingSettings,
    view_forward_graph: np.ndarray | None = None,
) -> LiftedObject | None:
    """One detection's 3D box (see :func:`lift_detections`), or None when too few pixels have usable depth."""
    return lift_detections([detection], depth_m, intrinsics, camera_to_graph, settings, view_forward_graph)[0]
