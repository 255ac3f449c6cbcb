"""Camera intrinsics (pinhole, with the lens distortion of ``sensor_msgs/CameraInfo``) and back-projection of depth
pixels into the camera optical frame.

As in ROS (image_geometry's PinholeCameraModel), a raw image (``image_raw``) is distorted: its pixels map to rays
through ``K`` and the distortion model and coefficients ``D``; a rectified image (``image_rect``) is undistorted and
its camera matrix is the left 3x3 of ``P``. Undistortion is OpenCV's (``cv2.undistortPoints``, and
``cv2.fisheye.undistortPoints`` for ``equidistant``); a camera without distortion never calls it.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.errors import TsgError


class GeometryError(TsgError):
    """Camera parameters or transforms that cannot describe a real camera."""


#: Largest angle between the optical axis and an image edge pixel's ray that :class:`Intrinsics` accepts, in degrees
#: (a 170-degree view for a centred principal point): rectified wide-angle cameras stay well below it.
MAX_RAY_ANGLE_DEG = 85.0

#: ``sensor_msgs/CameraInfo.distortion_model`` values supported, with the most coefficients each takes (OpenCV's
#: order; fewer are padded with zeros, as trailing zeros change nothing). ``rational_polynomial`` takes OpenCV's
#: 14-coefficient form too (thin prism and tilt), which is what image_geometry passes on.
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 14, "equidistant": 4}
# OpenCV's accepted lengths of a (non-fisheye) distortion vector.
_OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)
# Skew (K[1], P[1]) below this fraction of fx moves no pixel by a measurable amount; calibration tools write 0.
_MAX_IGNORED_SKEW = 1e-6


@dataclass(frozen=True)
class Intrinsics:
    """Intrinsics of an image, in pixels (pixel centres at integer coordinates, as in ROS): the pinhole camera
    matrix and, for a distorted (raw) image, its distortion model and coefficients (``sensor_msgs/CameraInfo``'s
    ``distortion_model`` and ``d``; none by default, as for a rectified image).

    Coefficients that are all zero mean no distortion, whatever the model (as in image_geometry), and are stored
    as none, so such intrinsics equal the plain pinhole ones.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        model, coefficients = _checked_distortion(self.distortion_model, self.distortion)
        object.__setattr__(self, "distortion_model", model)  # frozen: normalised once, here
        object.__setattr__(self, "distortion", coefficients)
        if self.width <= 0 or self.height <= 0:
            raise GeometryError(f"camera size {self.width}x{self.height} is empty")
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise GeometryError(f"focal length {name}={value} must be positive and finite")
        for name in ("cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise GeometryError(f"principal point {name}={getattr(self, name)} is not finite")
        # A principal point may lie outside the image (a crop keeps the original's), but a calibration whose edge
        # pixels look almost sideways (a tiny focal length, a principal point far away) is broken: left alone, it
        # lifts pixels to absurd or infinite positions.
        for f_name, c_name, size_px in (("fx", "cx", self.width), ("fy", "cy", self.height)):
            f_px, c_px = getattr(self, f_name), getattr(self, c_name)
            edge_angle_deg = math.degrees(math.atan2(max(abs(c_px), abs(size_px - c_px)), f_px))
            if edge_angle_deg > MAX_RAY_ANGLE_DEG:
                raise GeometryError(
                    f"intrinsics: the image's edge pixels look {edge_angle_deg:.1f} degrees off the optical axis "
                    f"({f_name}={f_px:g} px, {c_name}={c_px:g} px, {size_px} px across), more than the "
                    f"{MAX_RAY_ANGLE_DEG:g} degrees of any rectified pinhole camera: a broken calibration "
                    "(camera_info.k), or intrinsics not in pixels")
        if self.distorted:
            _check_distortion(self)

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int, distortion_model: str = "",
               distortion: Sequence[float] = ()) -> Intrinsics:
        """Build from a row-major 3x3 camera matrix ``K`` (``sensor_msgs/CameraInfo.k``) and the distortion of the
        image it describes (``distortion_model``, ``d``): the intrinsics of a raw image."""
        if len(k) != 9:
            raise GeometryError(f"camera matrix K has {len(k)} values, expected 9")
        _check_no_skew("K", float(k[1]), float(k[0]))
        return cls(width=int(width), height=int(height), fx=float(k[0]), fy=float(k[4]), cx=float(k[2]),
                   cy=float(k[5]), distortion_model=distortion_model,
                   distortion=tuple(float(value) for value in distortion))

    @classmethod
    def from_p(cls, p: Sequence[float], width: int, height: int) -> Intrinsics:
        """Build from a row-major 3x4 projection matrix ``P`` (``sensor_msgs/CameraInfo.p``): the intrinsics of the
        rectified image (its left 3x3; no distortion). A stereo camera's baseline term ``P[3]`` does not change the
        rays, so it is not used."""
        if len(p) != 12:
            raise GeometryError(f"projection matrix P has {len(p)} values, expected 12")
        if not any(float(value) for value in p):
            raise GeometryError("projection matrix P is all zeros: the camera is not calibrated, so there are no "
                                "rectified intrinsics")
        _check_no_skew("P", float(p[1]), float(p[0]))
        return cls(width=int(width), height=int(height), fx=float(p[0]), fy=float(p[5]), cx=float(p[2]),
                   cy=float(p[6]))

    @property
    def distorted(self) -> bool:
        """Whether pixels need undistortion before the pinhole model applies."""
        return bool(self.distortion)

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 camera matrix."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


def _check_no_skew(matrix: str, skew: float, fx: float) -> None:
    # The rays and OpenCV's undistortion use fx, fy, cx, cy only; a skewed camera would be lifted wrongly.
    if not math.isfinite(skew) or abs(skew) > _MAX_IGNORED_SKEW * abs(fx):
        index = "K[1]" if matrix == "K" else "P[1]"
        raise GeometryError(f"camera matrix {matrix} has skew {index}={skew:g}: only cameras without skew are "
                            "supported")


def _checked_distortion(model: str, coefficients: Sequence[float]) -> tuple[str, tuple[float, ...]]:
    """The distortion as stored: ``("", ())`` for none, else the model and its coefficients without trailing
    zeros."""
    values = [float(value) for value in coefficients]
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise GeometryError(f"distortion coefficient d[{index}]={value} is not finite")
    while values and values[-1] == 0.0:
        values.pop()
    if not values:
        return "", ()
    if model not in DISTORTION_MODELS:
        raise GeometryError(f"distortion model {model!r} (coefficients {values}) is not supported: known models are "
                            f"{', '.join(DISTORTION_MODELS)}; rectify the images (image_proc) and set the "
                            "rectified intrinsics instead")
    if len(values) > DISTORTION_MODELS[model]:
        raise GeometryError(f"distortion model {model!r} takes at most {DISTORTION_MODELS[model]} coefficients, "
                            f"got {len(values)}: {values}")
    return model, tuple(values)


#: The length of ``CameraInfo.d`` each model has in a message (REP 104, image_geometry): fewer coefficients are
#: refused by OpenCV and so by image_proc; rational_polynomial takes 8, or 12 or 14 when more are set.
_MESSAGE_DISTORTION_LENGTHS = {"plumb_bob": (5,), "equidistant": (4,), "rational_polynomial": (8, 12, 14)}


def camera_info_distortion(intrinsics: Intrinsics) -> tuple[str, tuple[float, ...]]:
    """``CameraInfo``'s ``distortion_model`` and ``d`` for ``intrinsics``: the coefficients as stored (trailing zeros
    dropped) padded back to the model's length in a message; none is ``plumb_bob`` with five zeros."""
    model = intrinsics.distortion_model or "plumb_bob"
    coefficients = intrinsics.distortion
    length = next(n for n in _MESSAGE_DISTORTION_LENGTHS[model] if n >= len(coefficients))
    return model, coefficients + (0.0,) * (length - len(coefficients))


def _opencv_camera(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's camera matrix and distortion vector (zero-padded to a length OpenCV takes) of a camera."""
    camera_matrix = np.array([[intrinsics.fx, 0.0, intrinsics.cx], [0.0, intrinsics.fy, intrinsics.cy],
                              [0.0, 0.0, 1.0]])
    coefficients = np.array(intrinsics.distortion, dtype=np.float64)
    lengths = (4,) if intrinsics.distortion_model == "equidistant" else _OPENCV_DISTORTION_LENGTHS
    length = next(n for n in lengths if n >= coefficients.size)
    return camera_matrix, np.pad(coefficients, (0, length - coefficients.size))


def normalized_coordinates(intrinsics: Intrinsics, u_px: np.ndarray, v_px: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised undistorted image coordinates ``(x / z, y / z)`` of pixels (``u`` columns, ``v`` rows; arrays
    of any equal shape): the rays through them in the optical frame are ``(x / z, y / z, 1)``.

    Without distortion this is the pinhole model, ``(u - cx) / fx``; with it, OpenCV's iterative undistortion
    (image_geometry's ``rectifyPoint``), which inverts the distortion to about 1e-9 of a pixel within the image.
    Pixel centres inside the image (what depth images are mostly lifted at) of a camera lifted from before are
    looked up in a table of the whole image, undistorted once per camera (as image_proc's rectification map): the
    same numbers, without the iterations per frame. A camera seen for the first time has its pixels undistorted
    directly: a driver whose camera_info changes slightly every frame would otherwise pay for a whole table each
    frame.
    """
    u = np.asarray(u_px, dtype=np.float64)
    v = np.asarray(v_px, dtype=np.float64)
    if not intrinsics.distorted:
        return (u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy
    shape = np.broadcast_shapes(u.shape, v.shape)
    u, v = np.broadcast_to(u, shape), np.broadcast_to(v, shape)
    on_grid = ((u == np.rint(u)) & (v == np.rint(v)) & (u >= 0) & (v >= 0) & (u <= intrinsics.width - 1)
               & (v <= intrinsics.height - 1))
    if not (on_grid.any() and _seen_before(intrinsics)):
        return _undistort(intrinsics, u, v)
    x, y = np.empty(shape), np.empty(shape)
    table_x, table_y = _undistortion_table(intrinsics)
    cols, rows = u[on_grid].astype(np.intp), v[on_grid].astype(np.intp)
    x[on_grid], y[on_grid] = table_x[rows, cols], table_y[rows, cols]
    if not on_grid.all():
        x[~on_grid], y[~on_grid] = _undistort(intrinsics, u[~on_grid], v[~on_grid])
    return x, y


# Cameras lifted from lately, most recent last: a table is built for one only when it comes again. More cameras
# than tables are remembered, so that a few cameras taking turns still get theirs.
_SEEN_CAMERAS: OrderedDict[Intrinsics, None] = OrderedDict()
_MAX_SEEN_CAMERAS = 16
_SEEN_CAMERAS_LOCK = threading.Lock()  # lifts may run on several executor threads


def _seen_before(intrinsics: Intrinsics) -> bool:
    """Record a lift with these intrinsics and tell whether one of the last cameras lifted from had them."""
    with _SEEN_CAMERAS_LOCK:
        seen = intrinsics in _SEEN_CAMERAS
        _SEEN_CAMERAS[intrinsics] = None
        _SEEN_CAMERAS.move_to_end(intrinsics)
        while len(_SEEN_CAMERAS) > _MAX_SEEN_CAMERAS:
            _SEEN_CAMERAS.popitem(last=False)
    return seen


@functools.lru_cache(maxsize=4)  # a few cameras; each table is 16 bytes per pixel
def _undistortion_table(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalized_coordinates` of every pixel of the image, (height, width) each, read-only."""
    rows, cols = np.mgrid[0:intrinsics.height, 0:intrinsics.width].astype(np.float64)
    table_x, table_y = _undistort(intrinsics, cols, rows)
    table_x.flags.writeable = table_y.flags.writeable = False
    return table_x, table_y


def _undistort(intrinsics: Intrinsics, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's undistortion of float pixel coordinates (equal shapes); each point's result depends on it alone."""
    if u.size == 0:  # OpenCV returns None for no points
        return np.zeros(u.shape), np.zeros(u.shape)
    import cv2  # lazy: only distorted cameras need OpenCV

    pixels = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]
    camera_matrix, coefficients = _opencv_camera(intrinsics)
    # Undistortion is iterative; OpenCV's default of 5 iterations leaves a few hundredths of a pixel at the corners
    # of a strongly distorted image, so iterate until the point reprojects onto its pixel (one vectorised call).
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, _UNDISTORT_ITERATIONS, _UNDISTORT_EPS)
    if intrinsics.distortion_model == "equidistant":
        normalised = cv2.fisheye.undistortPoints(pixels, camera_matrix, coefficients, criteria=criteria)
    else:
        normalised = cv2.undistortPoints(pixels, camera_matrix, coefficients, R=None, P=None, criteria=criteria)
    normalised = normalised.reshape(-1, 2)
    return normalised[:, 0].reshape(u.shape), normalised[:, 1].reshape(u.shape)


# Iteration limit and convergence threshold (reprojection error in pixels) of the undistortion.
_UNDISTORT_ITERATIONS = 200
_UNDISTORT_EPS = 1e-9
# Largest reprojection error of an undistorted pixel of a usable calibration, in pixels.
_MAX_REPROJECTION_PX = 1e-3
# Columns and rows of the grid of pixels the check undistorts (the corners and edge midpoints among them): a few
# hundred points, a millisecond, where the whole image's table would take up to a second.
_CHECK_GRID_COLUMNS, _CHECK_GRID_ROWS = 33, 25
# Ray angles from the optical axis to MAX_RAY_ANGLE_DEG at which the radial distortion is sampled (0.04 degrees
# apart): a polynomial fold narrower than that is left to the grid.
_RADIAL_SAMPLES = 2000


@functools.lru_cache(maxsize=16)  # every frame brings equal intrinsics; a failed check is not cached
def _check_distortion(intrinsics: Intrinsics) -> None:
    """The plausibility check of :class:`Intrinsics` for a distorted camera: the distortion must map the rays onto
    the image one to one (the distorted radius must grow with the ray's angle out to the image's farthest corner),
    and the undistorted rays of a grid of pixels over the image must reproject onto their pixels, keep their order
    and stay within :data:`MAX_RAY_ANGLE_DEG` of the optical axis.

    Distortion polynomials are fitted to where the calibration target was; beyond, they may fold back (several rays
    land on a pixel) or never reach the image border (none does), and OpenCV's undistortion then returns a wrong ray
    without saying so. The pixels are undistorted directly, not through the table of the whole image, so that a
    camera_info that changes every frame costs a millisecond here."""
    import cv2  # lazy: only distorted cameras need OpenCV

    fold = _radial_fold(intrinsics)
    if fold is not None and fold[3]:  # several rays per pixel: say so before OpenCV picks one of them
        _raise_fold(intrinsics, fold)
    # Integer pixel centres (unique: an image narrower than the grid repeats none).
    cols = np.unique(np.rint(np.linspace(0.0, intrinsics.width - 1.0, _CHECK_GRID_COLUMNS)))
    rows = np.unique(np.rint(np.linspace(0.0, intrinsics.height - 1.0, _CHECK_GRID_ROWS)))
    u, v = np.meshgrid(cols, rows)  # (rows, columns), the corner (0, 0) first
    x, y = _undistort(intrinsics, u, v)
    rays = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], axis=-1)
    camera_matrix, coefficients = _opencv_camera(intrinsics)
    with np.errstate(invalid="ignore"):  # non-finite rays are reported below
        if intrinsics.distortion_model == "equidistant":
            projected = cv2.fisheye.projectPoints(rays[:, None, :], np.zeros(3), np.zeros(3), camera_matrix,
                                                  coefficients)[0]
        else:
            projected = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), camera_matrix, coefficients)[0]
        error_px = np.hypot(projected[:, 0, 0] - u.ravel(), projected[:, 0, 1] - v.ravel())
        angle_deg = np.degrees(np.arctan(np.hypot(x, y))).ravel()
    u, v = u.ravel(), v.ravel()
    if not np.all(error_px <= _MAX_REPROJECTION_PX):
        bad = int(np.argmax(np.where(np.isfinite(error_px), error_px, np.inf)))
        raise GeometryError(
            f"intrinsics: the {intrinsics.distortion_model} distortion {list(intrinsics.distortion)} cannot be "
            f"undone at pixel ({u[bad]:g}, {v[bad]:g}) of the {intrinsics.width}x{intrinsics.height} image (its "
            "undistorted ray does not map back onto it): a broken calibration (camera_info.d), or one for another "
            "image size")
    worst = int(np.argmax(np.where(np.isfinite(angle_deg), angle_deg, np.inf)))
    if angle_deg[worst] > MAX_RAY_ANGLE_DEG:
        raise GeometryError(
            f"intrinsics: with the {intrinsics.distortion_model} distortion {list(intrinsics.distortion)}, pixel "
            f"({u[worst]:g}, {v[worst]:g}) looks {angle_deg[worst]:.1f} degrees off the optical axis, more than the "
            f"{MAX_RAY_ANGLE_DEG:g} degrees a depth image can be lifted from: a wider fisheye than supported, or a "
            "broken calibration (camera_info.d)")
    if fold is not None:  # no ray reaches the outer pixels, though OpenCV found some near them
        _raise_fold(intrinsics, fold)
    # The whole model (tangential, thin prism and tilt terms too): neighbouring pixels must look along rays in the
    # same order, left to right and top to bottom, or the distortion folds somewhere between them.
    for axis, coordinate, name in ((1, x, "x"), (0, y, "y")):
        steps = np.diff(coordinate, axis=axis)
        if not np.all(steps > 0):
            row, col = np.unravel_index(int(np.argmin(np.where(np.isnan(steps), -np.inf, steps))), steps.shape)
            shape = (len(rows), len(cols))
            first = np.ravel_multi_index((row, col), shape)
            second = np.ravel_multi_index((row + 1 - axis, col + axis), shape)
            raise GeometryError(
                f"intrinsics: the {intrinsics.distortion_model} distortion {list(intrinsics.distortion)} folds back "
                f"inside the {intrinsics.width}x{intrinsics.height} image: pixel ({u[second]:g}, {v[second]:g}) "
                f"looks along a ray no further along {name} than pixel ({u[first]:g}, {v[first]:g}) before it, so "
                "pixels there see several rays: a broken calibration (camera_info.d)")


def _radial_fold(intrinsics: Intrinsics) -> tuple[float, float, float, bool] | None:
    """Where the radial part of the distortion stops growing short of the image's farthest corner: the ray angle
    in degrees, the distorted radius reached there and the corner's (normalised image coordinates), and whether
    rays further out land on the image again; None if the distorted radius grows out to the corner."""
    d = np.pad(np.array(intrinsics.distortion), (0, 14))
    angle_rad = np.linspace(0.0, math.radians(MAX_RAY_ANGLE_DEG), _RADIAL_SAMPLES)
    if intrinsics.distortion_model == "equidistant":  # the distorted radius is the angle's polynomial
        a2 = angle_rad**2
        distorted = angle_rad * (1 + a2 * (d[0] + a2 * (d[1] + a2 * (d[2] + a2 * d[3]))))
    else:  # OpenCV's k1, k2, (p1, p2,) k3 over k4, k5, k6; plumb_bob has no k4..k6
        r2 = np.tan(angle_rad)**2
        with np.errstate(divide="ignore", invalid="ignore"):  # a vanishing denominator is a fold, found below
            distorted = np.sqrt(r2) * ((1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4])))
                                       / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))))
    corner = max(math.hypot(u / intrinsics.fx, v / intrinsics.fy)
                 for u in (-intrinsics.cx, intrinsics.width - 1 - intrinsics.cx)
                 for v in (-intrinsics.cy, intrinsics.height - 1 - intrinsics.cy))
    with np.errstate(invalid="ignore"):
        growing = np.diff(distorted) > 0
    if growing.all():
        return None
    peak = int(np.argmin(growing))  # the last sample before the first that is not further out
    if distorted[peak] >= corner:  # folds beyond the image: those rays miss it
        return None
    with np.errstate(invalid="ignore"):
        lands_again = bool(np.any(distorted[peak + 1:] >= corner))
    return math.degrees(angle_rad[peak]), float(distorted[peak]), corner, lands_again


def _raise_fold(intrinsics: Intrinsics, fold: tuple[float, float, float, bool]) -> None:
    angle_deg, peak, corner, _ = fold
    raise GeometryError(
        f"intrinsics: the {intrinsics.distortion_model} distortion {list(intrinsics.distortion)} folds back inside "
        f"the {intrinsics.width}x{intrinsics.height} image: its distorted radius stops growing at {peak:.3g} "
        f"(normalised image coordinates), {angle_deg:.1f} degrees off the optical axis, short of the image's "
        f"farthest corner at {corner:.3g}, so pixels beyond see several rays or none: a broken calibration "
        "(camera_info.d), fitted beyond where its target was")


def back_project(intrinsics: Intrinsics, u_px: np.ndarray, v_px: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """Return (N, 3) points in the optical frame (x right, y down, z forward) for pixels (u, v) at z-depth, through
    the camera's distortion (:func:`normalized_coordinates`)."""
    z = np.asarray(depth_m, dtype=np.float64)
    if not intrinsics.distorted:  # the pinhole arithmetic in this order, as it has always been
        x = (np.asarray(u_px, dtype=np.float64) - intrinsics.cx) * z / intrinsics.fx
        y = (np.asarray(v_px, dtype=np.float64) - intrinsics.cy) * z / intrinsics.fy
        return np.stack([x, y, z], axis=-1)
    x_over_z, y_over_z = normalized_coordinates(intrinsics, u_px, v_px)
    return np.stack([x_over_z * z, y_over_z * z, z], axis=-1)
