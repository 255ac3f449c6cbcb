"""Rigid transforms between frames, backed by scipy's Rotation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial.transform import Rotation

from trusted_scene_graph.geometry.camera import GeometryError

#: How far from 1 a quaternion's squared norm may be (tf2's QUATERNION_NORMALIZATION_TOLERANCE); it is normalised.
QUATERNION_TOLERANCE = 0.01


@dataclass(frozen=True)
class RigidTransform:
    """Maps points from a child frame into a parent frame: ``p_parent = R @ p_child + t``."""

    rotation: Rotation
    translation_m: np.ndarray

    @classmethod
    def from_xyzw(cls, translation_m: Sequence[float], rotation_xyzw: Sequence[float]) -> RigidTransform:
        quat = np.asarray(rotation_xyzw, dtype=np.float64)
        norm = float(np.linalg.norm(quat))
        # tf2's tolerance (QUATERNION_NORMALIZATION_TOLERANCE: |q|^2 within 0.01 of 1), then normalised as tf2 does:
        # a transform tf2 accepts must not be dropped here.
        if quat.shape != (4,) or not np.isfinite(norm):
            raise GeometryError(f"rotation {list(rotation_xyzw)} is not a unit quaternion (x, y, z, w)")
        if abs(norm * norm - 1.0) >= QUATERNION_TOLERANCE:
            raise GeometryError(f"rotation {list(rotation_xyzw)} is not a unit quaternion (x, y, z, w): |q|^2 = "
                                f"{norm * norm:.6g}, not within {QUATERNION_TOLERANCE:g} of 1")
        translation = np.asarray(translation_m, dtype=np.float64)
        if translation.shape != (3,) or not np.all(np.isfinite(translation)):
            raise GeometryError(f"translation {list(translation_m)} is not 3 finite numbers")
        return cls(Rotation.from_quat(quat / norm), translation)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> RigidTransform:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise GeometryError(f"expected a 4x4 homogeneous matrix, got shape {matrix.shape}")
        rotation = matrix[:3, :3]
        if (not np.all(np.isfinite(matrix)) or not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0])
                or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
                or not np.isclose(np.linalg.det(rotation), 1.0, atol=1e-6)):
            raise GeometryError(f"matrix is not a rigid transform (rotation + translation): {matrix.tolist()}")
        return cls(Rotation.from_matrix(matrix[:3, :3]), matrix[:3, 3].copy())

    @property
    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.rotation.as_matrix()
        out[:3, 3] = self.translation_m
        return out

    @property
    def rotation_xyzw(self) -> list[float]:
        return [float(v) for v in self.rotation.as_quat()]

    @cached_property
    def rotation_matrix_t(self) -> np.ndarray:
        """R transposed: ``points @ rotation_matrix_t`` rotates (N, 3) row vectors."""
        return self.rotation.as_matrix().T.copy()

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points (a matrix product: scipy's Rotation.apply costs more per call for small N)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation_matrix_t + self.translation_m
