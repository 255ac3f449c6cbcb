"""Pinhole intrinsics and back-projection of depth pixels into the camera optical frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.errors import TsgError


class GeometryError(TsgError):
    """Camera parameters or transforms that cannot describe a real camera."""


#: Largest angle between the optical axis and an image edge pixel's ray that :class:`Intrinsics` accepts, in degrees
#: (a 170-degree view for a centred principal point): rectified wide-angle cameras stay well below it.
MAX_RAY_ANGLE_DEG = 85.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a rectified image, in pixels (pixel centres at integer coordinates, as in ROS)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
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

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> Intrinsics:
        """Build from a row-major 3x3 camera matrix ``K`` (``sensor_msgs/CameraInfo.k``)."""
        if len(k) != 9:
            raise GeometryError(f"camera matrix K has {len(k)} values, expected 9")
        return cls(width=int(width), height=int(height), fx=float(k[0]), fy=float(k[4]), cx=float(k[2]),
                   cy=float(k[5]))

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 camera matrix."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]


def back_project(intrinsics: Intrinsics, u_px: np.ndarray, v_px: np.ndarray, depth_m: np.ndarray) -> np.ndarray:
    """Return (N, 3) points in the optical frame (x right, y down, z forward) for pixels (u, v) at z-depth."""
    z = np.asarray(depth_m, dtype=np.float64)
    x = (np.asarray(u_px, dtype=np.float64) - intrinsics.cx) * z / intrinsics.fx
    y = (np.asarray(v_px, dtype=np.float64) - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=-1)
