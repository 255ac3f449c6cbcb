"""The gravity-aligned graph frame from the dominant support plane (table or floor) seen in a depth image.

When no static extrinsic is configured, the camera-to-graph transform comes from a RANSAC fit of the plane that
most depth points lie on, as SpatialVLM does: its normal (towards the camera) is "up". The graph frame is then
REP-103 with its origin on the plane straight below the camera:

- z: the plane normal, pointing to the camera's side (so the camera is at height ``height_m`` > 0);
- x: the camera's viewing direction projected on the plane (for a camera looking straight down: the image's up
  direction projected on the plane), so "in front of" and "left of" keep their viewer-centred meaning;
- y = z × x: left, as seen from the camera.

RANSAC is written here (numpy, about 30 lines) because the maintained libraries either regress one coordinate on
the others (scikit-learn's RANSACRegressor, which fails for planes parallel to that coordinate) or are heavy C++
stacks (Open3D, PCL) for one function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics, back_project
from trusted_scene_graph.geometry.transform import RigidTransform

# Normals closer than this to the viewing direction count as "looking straight at the plane".
_MIN_PROJECTED_NORM = 0.17  # about 10 degrees


@dataclass(frozen=True)
class PlaneFit:
    """A plane ``normal · p + offset_m = 0`` in the camera optical frame; ``normal`` points to the camera."""

    normal: np.ndarray
    offset_m: float
    inlier_fraction: float
    num_points: int

    @property
    def camera_height_m(self) -> float:
        """Distance of the camera from the plane (the camera is at the optical frame's origin)."""
        return self.offset_m


# The inliers' second principal spread, below which they are a line, not a plane (as a share of the first).
_MIN_SPREAD = 0.02
#: The fewest pixels with depth a support plane is fitted to: a few pixels left by a dropout are no floor or table.
MIN_SUPPORT_PIXELS = 50


def fit_plane_ransac(
    points_m: np.ndarray,
    inlier_distance_m: float,
    iterations: int,
    min_inlier_fraction: float,
    rng: np.random.Generator,
) -> PlaneFit:
    """The plane supported by the most points (RANSAC on 3-point hypotheses), refined by least squares.

    Raises :class:`GeometryError` when there are too few points or the best plane has too few inliers.
    """
    points = np.asarray(points_m, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise GeometryError(f"expected (N, 3) points, got shape {points.shape}")
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 3:
        raise GeometryError(f"a plane needs at least 3 finite points, got {len(points)}")
    samples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(samples[:, 1] - samples[:, 0], samples[:, 2] - samples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    usable = norms > 1e-9  # three (nearly) collinear samples define no plane
    if not usable.any():
        raise GeometryError("all RANSAC samples were collinear: the points do not span a plane")
    normals = normals[usable] / norms[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, samples[usable, 0])
    # (hypotheses, points) distance matrix; the callers subsample to a few thousand points, so it stays small.
    inlier_counts = (np.abs(normals @ points.T + offsets[:, None]) <= inlier_distance_m).sum(axis=1)
    best = int(np.argmax(inlier_counts))
    normal, offset = normals[best], offsets[best]
    spread = np.ones(3)
    for _ in range(2):  # least-squares refinement on the inliers, twice so the inlier set can settle
        inliers = points[np.abs(points @ normal + offset) <= inlier_distance_m]
        if len(inliers) < 3:
            break
        centre = inliers.mean(axis=0)
        _, spread, axes = np.linalg.svd(inliers - centre, full_matrices=False)
        normal = axes[2]
        offset = -float(normal @ centre)
    if spread[1] < _MIN_SPREAD * spread[0]:
        # Points along a line (one image row, a table's edge) with a little noise: any plane through the line holds
        # them, and the noise picks which.
        raise GeometryError(f"the best plane's points lie along a line (their spread across it is "
                            f"{spread[1] / spread[0]:.2%} of their length): they define no plane")
    inlier_fraction = float(np.count_nonzero(np.abs(points @ normal + offset) <= inlier_distance_m)) / len(points)
    if inlier_fraction < min_inlier_fraction:
        raise GeometryError(f"no dominant plane: the best plane holds {inlier_fraction:.1%} of {len(points)} "
                            f"points, below the minimum {min_inlier_fraction:.1%}")
    if offset < 0:  # orient the normal towards the camera (origin): normal · 0 + offset > 0
        normal, offset = -normal, -offset
    return PlaneFit(normal, float(offset), inlier_fraction, len(points))


def fit_support_plane(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    inlier_distance_m: float,
    iterations: int,
    min_inlier_fraction: float,
    rng: np.random.Generator,
    max_points: int = 5000,
    depth_range_m: tuple[float, float] = (0.05, 10.0),
) -> PlaneFit:
    """Fit the dominant plane to a depth image's valid pixels (evenly strided down to ``max_points``); a support
    plane has :data:`MIN_SUPPORT_PIXELS` of them at least, and does not pass through the camera."""
    rows, cols = np.nonzero((depth_m >= depth_range_m[0]) & (depth_m <= depth_range_m[1]))  # NaN compares False
    if 0 < rows.size < MIN_SUPPORT_PIXELS:
        raise GeometryError(f"{rows.size} pixels with depth are too few for a support plane (at least "
                            f"{MIN_SUPPORT_PIXELS})")
    if rows.size > max_points:
        stride = -(-rows.size // max_points)
        rows, cols = rows[::stride], cols[::stride]
    points = back_project(intrinsics, cols, rows, depth_m[rows, cols])
    plane = fit_plane_ransac(points, inlier_distance_m, iterations, min_inlier_fraction, rng)
    if plane.offset_m <= inlier_distance_m:
        # What the pixels of one image row fit (they lie in a plane through the camera): no floor the camera sees.
        raise GeometryError(f"the best plane passes through the camera ({plane.offset_m:.3f} m from it): no support "
                            "plane")
    return plane


def camera_to_graph_from_plane(plane: PlaneFit) -> RigidTransform:
    """The optical → graph transform of the frame described in the module docstring."""
    up = plane.normal
    # The viewing axis and image up are orthogonal, so at least one of them projects to >= 0.7 on the plane.
    for direction in (np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])):  # viewing axis, else image up
        forward = direction - (direction @ up) * up
        norm = np.linalg.norm(forward)
        if norm >= _MIN_PROJECTED_NORM:
            forward /= norm
            break
    left = np.cross(up, forward)
    rotation = np.stack([forward, left, up])  # rows: graph axes in optical coordinates
    foot = -plane.offset_m * up  # the camera's foot on the plane, in optical coordinates
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ foot
    return RigidTransform.from_matrix(matrix)
