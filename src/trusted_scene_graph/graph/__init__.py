"""The scene graph data model and finding the object a name means in it."""

from trusted_scene_graph.graph.model import GraphError, ObjectNode, Relation, SceneGraph
from trusted_scene_graph.graph.query import resolve_object

__all__ = ["GraphError", "ObjectNode", "Relation", "SceneGraph", "resolve_object"]
