"""Axis-aligned 3D boxes (centre and size in metres): distances, per-axis gaps and extents along a direction."""

from __future__ import annotations

import numpy as np


def is_horizontal_unit(vector: np.ndarray) -> bool:
    """Whether ``vector`` is a 3-vector in the graph's horizontal plane (z 0) of length 1: a viewing direction as
    relations and lifting take it. NaN passes every comparison, so finiteness is checked first."""
    return bool(vector.shape == (3,) and np.isfinite(vector).all() and abs(vector[2]) <= 1e-9
                and abs(np.linalg.norm(vector) - 1.0) <= 1e-6)


def box_surface_distance_m(
    centre_a_m: np.ndarray, size_a_m: np.ndarray, centre_b_m: np.ndarray, size_b_m: np.ndarray
) -> float:
    """Distance between the closest points of two axis-aligned boxes; 0 when they overlap."""
    gap = np.abs(np.asarray(centre_a_m) - np.asarray(centre_b_m)) - (np.asarray(size_a_m) + np.asarray(size_b_m)) / 2
    return float(np.linalg.norm(np.clip(gap, 0.0, None)))


def pairwise_box_gaps_m(centres_m: np.ndarray, sizes_m: np.ndarray) -> np.ndarray:
    """Per-axis gap between every pair of N axis-aligned boxes, shape (N, N, 3): ``|c_a - c_b| - (s_a + s_b) / 2``.

    Positive along an axis: the boxes' extents on that axis are that far apart. Negative: they overlap, and ``-gap``
    is how far one box would have to move along the axis to stop overlapping (the overlap depth: the length of the
    common interval unless one extent contains the other). The array is symmetric in its first two axes.
    """
    centres = np.asarray(centres_m, dtype=np.float64)
    half_sizes = np.asarray(sizes_m, dtype=np.float64) / 2
    return np.abs(centres[:, None, :] - centres[None, :, :]) - (half_sizes[:, None, :] + half_sizes[None, :, :])


def surface_distances_from_gaps_m(gaps_m: np.ndarray) -> np.ndarray:
    """Closest-surface distances from per-axis gaps (last axis): the norm of the positive parts, 0 on overlap."""
    apart = np.maximum(gaps_m, 0.0)
    return np.sqrt(np.einsum("...k,...k->...", apart, apart))


def pairwise_box_surface_distances_m(centres_m: np.ndarray, sizes_m: np.ndarray) -> np.ndarray:
    """:func:`box_surface_distance_m` for every pair of N boxes at once, shape (N, N) (0 on the diagonal)."""
    return surface_distances_from_gaps_m(pairwise_box_gaps_m(centres_m, sizes_m))


def box_extent_along_m(sizes_m: np.ndarray, direction: np.ndarray) -> np.ndarray | float:
    """Length of the shadow of axis-aligned boxes on the line along the unit vector ``direction``.

    This is the box's support function summed over both sides: ``sum_i |u_i| * s_i``. ``sizes_m`` has shape
    (3,) (returns a float) or (..., 3) (returns an array of the leading shape).
    """
    extent = np.asarray(sizes_m, dtype=np.float64) @ np.abs(np.asarray(direction, dtype=np.float64))
    return float(extent) if np.ndim(extent) == 0 else extent
