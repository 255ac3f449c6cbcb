"""Lift 2D detections to 3D boxes in the graph frame using registered depth."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics, back_project
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import Detection

# Scale from the median absolute deviation to a Gaussian standard deviation.
_MAD_TO_SIGMA = 1.4826
# Smallest depth spread assumed, so that on an exactly flat surface (MAD = 0, common in simulation) a blob at
# another depth is still rejected; 5 mm is about the noise of a good RGB-D sensor at 1 m.
_MIN_SIGMA_M = 0.005


@dataclass(frozen=True)
class LiftingSettings:
    depth_min_m: float = 0.05
    depth_max_m: float = 10.0
    box_percentile: float = 2.0
    outlier_mad_k: float = 4.0
    min_valid_fraction: float = 0.05
    max_points: int = 20_000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LiftingSettings:
        return cls(config["depth.min_m"], config["depth.max_m"], config["lifting.box_percentile"],
                   config["lifting.outlier_mad_k"], config["lifting.min_valid_fraction"], config["lifting.max_points"])


@dataclass(frozen=True)
class LiftedObject:
    detection: Detection
    centroid_m: np.ndarray
    size_m: np.ndarray
    depth_valid_fraction: float


def _pixels(detection: Detection, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns of the object: its mask, else the central half of its box (less background)."""
    if detection.mask is not None:
        return np.nonzero(detection.mask)
    x, y, w, h = detection.box_xywh_px
    x0, x1 = x + w // 4, x + max(w // 4 + 1, (3 * w) // 4)
    y0, y1 = y + h // 4, y + max(h // 4 + 1, (3 * h) // 4)
    x0, x1 = np.clip([x0, x1], 0, shape[1])
    y0, y1 = np.clip([y0, y1], 0, shape[0])
    rows, cols = np.mgrid[y0:y1, x0:x1]
    return rows.ravel(), cols.ravel()


def lift_detection(
    detection: Detection,
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    camera_to_graph: RigidTransform,
    settings: LiftingSettings,
) -> LiftedObject | None:
    """Return the object's 3D box, or None when too few of its pixels have usable depth."""
    rows, cols = _pixels(detection, depth_m.shape)
    if rows.size == 0:
        return None
    if rows.size > settings.max_points:
        # An even stride keeps the pixels spread over the whole object, so medians and percentiles barely move,
        # while a table-sized mask no longer costs more than a cup.
        stride = -(-rows.size // settings.max_points)
        rows, cols = rows[::stride], cols[::stride]
    depths = depth_m[rows, cols]
    valid = np.isfinite(depths) & (depths >= settings.depth_min_m) & (depths <= settings.depth_max_m)
    valid_fraction = float(np.count_nonzero(valid)) / rows.size
    if valid_fraction < settings.min_valid_fraction or not valid.any():
        return None
    rows, cols, depths = rows[valid], cols[valid], depths[valid]
    median = np.median(depths)
    sigma_m = max(_MAD_TO_SIGMA * float(np.median(np.abs(depths - median))), _MIN_SIGMA_M)
    inliers = np.abs(depths - median) <= settings.outlier_mad_k * sigma_m
    rows, cols, depths = rows[inliers], cols[inliers], depths[inliers]
    points_graph = camera_to_graph.apply(back_project(intrinsics, cols, rows, depths))
    low = np.percentile(points_graph, settings.box_percentile, axis=0)
    high = np.percentile(points_graph, 100.0 - settings.box_percentile, axis=0)
    return LiftedObject(detection, (low + high) / 2.0, high - low, valid_fraction)
