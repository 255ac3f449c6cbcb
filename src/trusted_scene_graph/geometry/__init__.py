"""Camera models, rigid transforms and 3D box geometry in metres."""

from trusted_scene_graph.geometry.boxes import box_surface_distance_m
from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics, back_project
from trusted_scene_graph.geometry.transform import RigidTransform

__all__ = ["GeometryError", "Intrinsics", "RigidTransform", "back_project", "box_surface_distance_m"]
