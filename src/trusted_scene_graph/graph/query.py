"""Finding the object a name means in a graph (for distance queries and rewards, :mod:`trusted_scene_graph.reward`)."""

from __future__ import annotations

from collections.abc import Iterable

from trusted_scene_graph.graph.model import GraphError, ObjectNode, SceneGraph


def resolve_object(graph: SceneGraph, name: str, *, prefer_id: int | None = None,
                   known_labels: Iterable[str] = (), complete: bool = True) -> ObjectNode:
    """Find the object a query names.

    A name is a label (case and surrounding spaces ignored) or an id written ``#3`` or ``3``. A label wins over an
    id when both could match. When several objects share the label, ``prefer_id`` is kept if it is one of them (a
    reward stays on the object it started with); otherwise the one with the highest detection score is chosen (ties:
    the lowest id), so the same graph always gives the same answer. The error tells an *absent* object (a label in
    ``known_labels``, the labels the detector can produce, that this graph does not contain) from an *unknown* one.
    With ``complete`` False the graph holds only some of the frame's objects (a labeller lifts those its pairs name),
    so the error says nothing of what it holds.
    """
    wanted = name.strip().lower()
    if not wanted:
        raise GraphError("empty object name; give a label or an id like '#3'")
    matches = [obj for obj in graph.objects if obj.label.lower() == wanted]
    if matches:
        preferred = [obj for obj in matches if obj.id == prefer_id]
        return preferred[0] if preferred else min(matches, key=lambda obj: (-obj.score, obj.id))
    wanted_id = object_id(wanted)
    if wanted_id is not None:
        found = graph.object_by_id(wanted_id)
        if found is not None:
            return found
        known_ids = sorted(obj.id for obj in graph.objects)
        raise GraphError(f"no object with id {wanted_id}; ids in the graph: {known_ids}")
    if wanted in {label.strip().lower() for label in known_labels}:
        if not complete:
            raise GraphError(f"object {name!r} is absent: not in this frame (not detected, or without usable depth)")
        raise GraphError(f"object {name!r} is absent: not detected in the scene graph "
                         f"(it holds {graph.labels if graph.objects else 'no objects'})")
    if not complete:
        raise GraphError(f"unknown object {name!r}; known labels: {sorted(known_labels)}")
    if not graph.objects:
        raise GraphError(f"unknown object {name!r}: the scene graph has no objects")
    raise GraphError(f"unknown object {name!r}; known labels: {sorted({*graph.labels, *known_labels})}")


def object_id(name: str) -> int | None:
    """The id ``name`` writes (``#3`` or ``3``; case and surrounding spaces ignored), or None: it is a label.
    ASCII digits only: ``str.isdigit`` also holds for '²', which ``int`` refuses, and ids are written in ASCII."""
    digits = name.strip().removeprefix("#")
    return int(digits) if digits.isascii() and digits.isdecimal() else None
