"""Axis-aligned 3D boxes (centre and size in metres)."""

from __future__ import annotations

import numpy as np


def box_surface_distance_m(
    centre_a_m: np.ndarray, size_a_m: np.ndarray, centre_b_m: np.ndarray, size_b_m: np.ndarray
) -> float:
    """Distance between the closest points of two axis-aligned boxes; 0 when they overlap."""
    gap = np.abs(np.asarray(centre_a_m) - np.asarray(centre_b_m)) - (np.asarray(size_a_m) + np.asarray(size_b_m)) / 2
    return float(np.linalg.norm(np.clip(gap, 0.0, None)))
