"""Distance queries answered from an existing graph, without recomputing perception."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trusted_scene_graph.geometry.boxes import box_surface_distance_m
from trusted_scene_graph.graph.model import GraphError, ObjectNode, SceneGraph, distance_trust

MODES = ("centroid", "surface")


@dataclass(frozen=True)
class DistanceAnswer:
    valid: bool
    distance_m: float
    trust: float
    subject_id: int = 0
    object_id: int = 0
    message: str = ""


def resolve_object(graph: SceneGraph, name: str) -> ObjectNode:
    """Find the object a query names.

    A name is a label (case and surrounding spaces ignored) or an id written ``#3`` or ``3``. A label wins over an
    id when both could match. When several objects share the label, the one with the highest detection score is
    chosen (ties: the lowest id), so the same graph always gives the same answer.
    """
    wanted = name.strip().lower()
    if not wanted:
        raise GraphError("empty object name; give a label or an id like '#3'")
    matches = [obj for obj in graph.objects if obj.label.lower() == wanted]
    if matches:
        return min(matches, key=lambda obj: (-obj.score, obj.id))
    digits = wanted.removeprefix("#")
    if digits.isdigit():
        found = graph.object_by_id(int(digits))
        if found is not None:
            return found
        known_ids = sorted(obj.id for obj in graph.objects)
        raise GraphError(f"no object with id {digits}; ids in the graph: {known_ids}")
    if not graph.objects:
        raise GraphError(f"unknown object {name!r}: the scene graph has no objects")
    raise GraphError(f"unknown object {name!r}; known labels: {graph.labels}")


def query_distance(graph: SceneGraph | None, subject: str, obj: str, mode: str = "centroid") -> DistanceAnswer:
    """Answer "how far is ``subject`` from ``obj``" in metres; invalid answers say why in ``message``."""
    mode = mode.strip().lower() or "centroid"
    if mode not in MODES:
        return DistanceAnswer(False, math.nan, 0.0, message=f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if graph is None:
        return DistanceAnswer(False, math.nan, 0.0, message="no scene graph has been computed yet")
    try:
        a = resolve_object(graph, subject)
        b = resolve_object(graph, obj)
    except GraphError as exc:
        return DistanceAnswer(False, math.nan, 0.0, message=str(exc))
    if a.id == b.id:
        return DistanceAnswer(False, math.nan, 0.0, a.id, b.id,
                              message=f"{subject!r} and {obj!r} both resolve to object #{a.id}")
    if mode == "centroid":
        distance_m = float(np.linalg.norm(a.centroid_m - b.centroid_m))
    else:
        distance_m = box_surface_distance_m(a.centroid_m, a.size_m, b.centroid_m, b.size_m)
    return DistanceAnswer(True, distance_m, distance_trust(a, b), a.id, b.id)
