"""Plain data classes for objects, relations and graphs; the ROS layer converts them to messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import networkx as nx
import numpy as np

from trusted_scene_graph.errors import TsgError


class GraphError(TsgError):
    """A scene graph question that cannot be answered as asked."""


@dataclass(frozen=True)
class ObjectNode:
    """An object lifted to 3D in the graph frame."""

    id: int
    label: str
    score: float
    box_xywh_px: tuple[int, int, int, int]
    centroid_m: np.ndarray
    size_m: np.ndarray
    depth_valid_fraction: float
    track_age: int = 1

    def __eq__(self, other: object) -> bool:
        """By value, arrays included (the generated ``==`` compares the arrays element-wise and cannot say True or
        False), so that graphs holding objects compare by value too."""
        if not isinstance(other, ObjectNode):
            return NotImplemented
        return ((self.id, self.label, self.score, tuple(self.box_xywh_px), self.depth_valid_fraction, self.track_age)
                == (other.id, other.label, other.score, tuple(other.box_xywh_px), other.depth_valid_fraction,
                    other.track_age)
                and np.array_equal(self.centroid_m, other.centroid_m) and np.array_equal(self.size_m, other.size_m))


class Relation(NamedTuple):
    """A directed edge ``subject predicate object`` with its metric value, margin and trust.

    Immutable and compared by value like the other records, but a NamedTuple rather than a frozen dataclass: a frame
    can produce thousands of edges and a frozen dataclass takes several times longer to create.
    """

    subject_id: int
    predicate: str
    object_id: int
    value_m: float
    margin_m: float
    trust: float
    source: str = "geometry"

    # By value with NaN equal to NaN: directional edges have value_m NaN, and an edge must equal itself recomputed.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Relation):
            return NotImplemented
        return all(a == b or (a != a and b != b) for a, b in zip(self, other, strict=True))  # x != x: x is NaN

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(None if value != value else value for value in self))


@dataclass(frozen=True)
class SceneGraph:
    """One frame's graph. ``relations`` holds only the kept edges; ``num_pruned`` counts the others."""

    stamp_ns: int
    frame_id: str
    objects: tuple[ObjectNode, ...] = ()
    relations: tuple[Relation, ...] = ()
    trust_threshold: float = 0.5
    num_pruned: int = 0
    timing_ms: dict[str, float] = field(default_factory=dict, compare=False)
    # Every claimed qualitative edge before pruning, with its features and trust (trust.assess.CandidateEdges); for
    # evaluation and training, never published.
    candidates: Any = field(default=None, compare=False, repr=False)

    def object_by_id(self, object_id: int) -> ObjectNode | None:
        return next((obj for obj in self.objects if obj.id == object_id), None)

    @property
    def labels(self) -> list[str]:
        return sorted({obj.label for obj in self.objects})

    def to_networkx(self) -> nx.MultiDiGraph:
        """The graph as a networkx MultiDiGraph (nodes: object ids; edges keyed by predicate)."""
        graph = nx.MultiDiGraph(stamp_ns=self.stamp_ns, frame_id=self.frame_id)
        for obj in self.objects:
            graph.add_node(obj.id, label=obj.label, score=obj.score, centroid_m=obj.centroid_m, size_m=obj.size_m)
        for rel in self.relations:
            graph.add_edge(rel.subject_id, rel.object_id, key=rel.predicate, value_m=rel.value_m,
                           margin_m=rel.margin_m, trust=rel.trust, source=rel.source)
        return graph


def distance_trust(a: ObjectNode, b: ObjectNode) -> float:
    """Trust of a distance between two objects: the lower detection score times the lower valid-depth fraction.

    A distance is as trustworthy as its weakest input. Uncalibrated (documented in the README) until the learned
    trust model replaces it.
    """
    # np.minimum, not min: a NaN on either side must give NaN (min(1.0, nan) is 1.0), never a confident trust.
    return float(np.minimum(a.score, b.score) * np.minimum(a.depth_valid_fraction, b.depth_valid_fraction))
