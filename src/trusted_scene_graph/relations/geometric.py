"""Qualitative and metric relations computed from 3D boxes in the gravity-aligned graph frame.

Conventions (REP-103 graph frame, z up):
- ``left_of`` / ``right_of`` are from the camera's viewpoint, on the horizontal plane: "left" is the horizontal
  direction 90 degrees counter-clockwise (seen from above) from the camera's horizontal viewing direction.
- ``in_front_of`` / ``behind``: closer to / farther from the camera along its horizontal viewing direction.
- ``above`` / ``below``: along gravity (graph z).
- ``near`` / ``far``: closest-surface distance against ``relations.near_m``.
- ``distance``: centroid distance, its value in ``value_m``.
The margin of each edge is how far, in metres, the pair is past the decision boundary (positive = holds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np
from scipy.special import expit

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.boxes import box_surface_distance_m
from trusted_scene_graph.graph.model import ObjectNode, Relation, distance_trust


class RelationError(TsgError):
    """Relations cannot be computed from the given geometry."""


@dataclass(frozen=True)
class RelationSettings:
    near_m: float = 0.15
    margin_scale_m: float = 0.02

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RelationSettings:
        return cls(config["relations.near_m"], config["relations.margin_scale_m"])


def margin_trust(margin_m: float, scale_m: float) -> float:
    """Geometric prior P(edge correct) = logistic(margin / scale).

    Not calibrated: it only orders edges by how clear-cut they are, until the learned trust model replaces it.
    """
    return float(expit(margin_m / scale_m))


# Below this horizontal component (about 10 degrees from vertical) the optical axis gives no stable heading.
_MIN_HORIZONTAL = 0.17


def horizontal_axes(
    camera_forward_graph: np.ndarray, camera_up_graph: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The camera's horizontal forward and left unit vectors in the graph frame.

    A camera looking (nearly) straight down or up, such as a top-down or wrist camera, has no horizontal viewing
    direction; then "forward" is the image's up direction (``camera_up_graph``, the optical -y axis) projected on
    the horizontal plane, so left/right still mean image left/right.
    """
    for direction in (camera_forward_graph, camera_up_graph):
        if direction is None:
            continue
        forward = np.array([direction[0], direction[1], 0.0], dtype=np.float64)
        norm = np.linalg.norm(forward)
        if norm >= _MIN_HORIZONTAL:
            forward /= norm
            return forward, np.cross([0.0, 0.0, 1.0], forward)
    raise RelationError("the camera looks straight up or down and no image-up direction was given; "
                        "left/right and front/behind are undefined")


def compute_relations(
    objects: Sequence[ObjectNode],
    camera_forward_graph: np.ndarray,
    settings: RelationSettings,
    camera_up_graph: np.ndarray | None = None,
) -> list[Relation]:
    """All candidate edges between ordered pairs of objects (trust from the geometric prior)."""
    forward, left = horizontal_axes(camera_forward_graph, camera_up_graph)
    relations: list[Relation] = []
    for a, b in permutations(objects, 2):
        offset = a.centroid_m - b.centroid_m
        directional = {
            "left_of": float(offset @ left),
            "right_of": float(-(offset @ left)),
            "above": float(offset[2]),
            "below": float(-offset[2]),
            "in_front_of": float(-(offset @ forward)),
            "behind": float(offset @ forward),
        }
        surface_m = box_surface_distance_m(a.centroid_m, a.size_m, b.centroid_m, b.size_m)
        directional["near"] = settings.near_m - surface_m
        directional["far"] = surface_m - settings.near_m
        for predicate, margin in directional.items():
            if margin > 0:
                value = surface_m if predicate in ("near", "far") else math.nan
                relations.append(Relation(a.id, predicate, b.id, value, margin,
                                          margin_trust(margin, settings.margin_scale_m)))
        if a.id < b.id:  # distance is symmetric: one edge per pair
            distance = float(np.linalg.norm(offset))
            relations.append(Relation(a.id, "distance", b.id, distance, distance, distance_trust(a, b)))
    return relations
