"""Spatial relations between 3D objects, each with a signed margin in metres, and image-plane relations in pixels."""

from trusted_scene_graph.relations.geometric import (
    QUALITATIVE_PREDICATES,
    QUANTITATIVE_PREDICATES,
    RelationError,
    RelationSettings,
    compute_relations,
    horizontal_axes,
    margin_trust,
    object_dimensions_m,
    prune_relations,
    relations_from_boxes,
    size_measure_m,
)
from trusted_scene_graph.relations.image import IMAGE_PREDICATES, ImageRelation, box_iou_matrix, image_relations

__all__ = [
    "IMAGE_PREDICATES",
    "QUALITATIVE_PREDICATES",
    "QUANTITATIVE_PREDICATES",
    "ImageRelation",
    "RelationError",
    "RelationSettings",
    "box_iou_matrix",
    "compute_relations",
    "horizontal_axes",
    "image_relations",
    "margin_trust",
    "object_dimensions_m",
    "prune_relations",
    "relations_from_boxes",
    "size_measure_m",
]
