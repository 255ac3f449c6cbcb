"""Spatial relations between 3D objects, each with a signed margin in metres."""

from trusted_scene_graph.relations.geometric import (
    RelationError,
    RelationSettings,
    compute_relations,
    margin_trust,
)

__all__ = ["RelationError", "RelationSettings", "compute_relations", "margin_trust"]
