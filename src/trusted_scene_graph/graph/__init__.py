"""The scene graph data model and the questions asked of it (distance queries)."""

from trusted_scene_graph.graph.model import GraphError, ObjectNode, Relation, SceneGraph
from trusted_scene_graph.graph.query import DistanceAnswer, query_distance, resolve_object

__all__ = [
    "DistanceAnswer",
    "GraphError",
    "ObjectNode",
    "Relation",
    "SceneGraph",
    "query_distance",
    "resolve_object",
]
