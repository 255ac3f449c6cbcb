"""A synthetic RGB-D frame with box-shaped objects at known depths: no simulator needed.

Used by benchmarks and tests that need camera traffic of realistic size but not realistic pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics


@dataclass(frozen=True)
class SyntheticObject:
    instance_id: int
    x_px: int
    y_px: int
    width_px: int
    height_px: int
    depth_m: float


# Instance ids follow the default 'sim' labels: 1 gripper, 2 cube, 3 table.
DEFAULT_OBJECTS = (
    SyntheticObject(1, 100, 200, 60, 60, 0.9),
    SyntheticObject(2, 300, 260, 50, 50, 1.0),
    SyntheticObject(3, 0, 400, 640, 80, 1.2),
)


class SyntheticFrame:
    """Flat background at ``background_m`` with fronto-parallel rectangles; attributes mirror ``SimFrame``."""

    def __init__(self, width: int = 640, height: int = 480, objects=DEFAULT_OBJECTS, background_m: float = 1.5,
                 focal_px: float = 525.0) -> None:
        self.rgb = np.zeros((height, width, 3), np.uint8)
        self.depth_m = np.full((height, width), background_m, np.float32)
        self.instance_ids = np.zeros((height, width), np.uint16)
        for obj in objects:
            region = (slice(obj.y_px, obj.y_px + obj.height_px), slice(obj.x_px, obj.x_px + obj.width_px))
            self.instance_ids[region] = obj.instance_id
            self.depth_m[region] = obj.depth_m
            self.rgb[region] = (50 * obj.instance_id) % 256
        self.objects = tuple(objects)
        self.intrinsics = Intrinsics(width, height, focal_px, focal_px, (width - 1) / 2, (height - 1) / 2)
