"""The scene-graph pipeline: detect → lift → track → relate → prune, with per-stage timing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.graph.model import ObjectNode, SceneGraph
from trusted_scene_graph.perception.detector import CameraFrame, Detector, make_detector
from trusted_scene_graph.perception.lifting import LiftingSettings, lift_detection
from trusted_scene_graph.perception.tracking import Tracker
from trusted_scene_graph.relations.geometric import RelationSettings, compute_relations


class PipelineError(TsgError):
    """A frame the pipeline cannot turn into a graph (for example, no valid depth at all)."""


class ScenePipeline:
    """Stateful (tracks persist across frames) frame → :class:`SceneGraph` pipeline."""

    def __init__(self, config: Mapping[str, Any], detector: Detector | None = None) -> None:
        self.detector = detector if detector is not None else make_detector(config)
        self.tracker = Tracker(config["tracking.gate_m"], config["tracking.max_missed_frames"])
        self.reconfigure(config)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Apply changed settings; the detector (a loaded model) and the tracks are kept."""
        self.config = config
        self.camera_to_graph = RigidTransform.from_xyzw(config["extrinsic.translation_m"],
                                                        config["extrinsic.rotation_xyzw"])
        self.lifting = LiftingSettings.from_config(config)
        self.relation_settings = RelationSettings.from_config(config)
        self.tracker.gate_m = config["tracking.gate_m"]
        self.tracker.max_missed_frames = config["tracking.max_missed_frames"]
        self.frame_id = config["graph_frame"]
        self.trust_threshold = config["trust.threshold"]
        # The optical axis (z) in the graph frame: the camera's viewing direction, used by directional relations.
        self.camera_forward_graph = self.camera_to_graph.rotation.apply([0.0, 0.0, 1.0])
        self.camera_up_graph = self.camera_to_graph.rotation.apply([0.0, -1.0, 0.0])  # image "up" (optical -y)

    @property
    def needs_instances(self) -> bool:
        return self.detector.needs_instances

    def process(self, frame: CameraFrame) -> SceneGraph:
        timing_ms: dict[str, float] = {}
        start = time.perf_counter()
        depth_m = frame.depth_m
        usable = (depth_m >= self.lifting.depth_min_m) & (depth_m <= self.lifting.depth_max_m)  # NaN compares False
        if not usable.any():
            raise PipelineError(f"depth image has no valid pixel (all NaN, zero or outside "
                                f"[{self.lifting.depth_min_m}, {self.lifting.depth_max_m}] m)")
        detections = self.detector.detect(frame)
        timing_ms["detect"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        lifted = [
            obj for det in detections
            if (obj := lift_detection(det, frame.depth_m, frame.intrinsics, self.camera_to_graph, self.lifting))
        ]
        timing_ms["lift"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        tracks = self.tracker.update([o.detection.label for o in lifted], [o.centroid_m for o in lifted])
        objects = tuple(
            ObjectNode(track.id, o.detection.label, o.detection.score, o.detection.box_xywh_px, o.centroid_m,
                       o.size_m, o.depth_valid_fraction, track.age)
            for o, track in zip(lifted, tracks, strict=True)
        )
        timing_ms["track"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        candidates = compute_relations(objects, self.camera_forward_graph, self.relation_settings,
                                       self.camera_up_graph)
        kept = tuple(rel for rel in candidates if rel.trust >= self.trust_threshold)
        timing_ms["relate"] = (time.perf_counter() - start) * 1e3
        return SceneGraph(frame.stamp_ns, self.frame_id, objects, kept, self.trust_threshold,
                          len(candidates) - len(kept), timing_ms)
