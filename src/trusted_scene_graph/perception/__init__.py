"""Detection backends and lifting of detections to 3D objects."""

from trusted_scene_graph.perception.detector import (
    DETECTORS,
    CameraFrame,
    Detection,
    Detector,
    PerceptionError,
    make_detector,
)
from trusted_scene_graph.perception.lifting import LiftedObject, LiftingSettings, lift_detection

__all__ = [
    "DETECTORS",
    "CameraFrame",
    "Detection",
    "Detector",
    "LiftedObject",
    "LiftingSettings",
    "PerceptionError",
    "lift_detection",
    "make_detector",
]
