"""Detector and depth backends, lifting of detections to 3D objects, and tracking."""

from trusted_scene_graph.perception.depth import DEPTH_BACKENDS, DepthBackend, make_depth_backend
from trusted_scene_graph.perception.detector import (
    DETECTORS,
    CameraFrame,
    Detection,
    Detector,
    PerceptionError,
    make_detector,
)
from trusted_scene_graph.perception.lifting import LiftedObject, LiftingSettings, lift_detection, lift_detections
from trusted_scene_graph.perception.tracking import Tracker

__all__ = [
    "DEPTH_BACKENDS",
    "DETECTORS",
    "CameraFrame",
    "DepthBackend",
    "Detection",
    "Detector",
    "LiftedObject",
    "LiftingSettings",
    "PerceptionError",
    "Tracker",
    "lift_detection",
    "lift_detections",
    "make_depth_backend",
    "make_detector",
]
