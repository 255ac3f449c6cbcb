"""The scene-graph pipeline: depth → frame → detect → lift → track → relate → prune, with per-stage timing."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics
from trusted_scene_graph.geometry.plane import PlaneFit, camera_to_graph_from_plane, fit_support_plane
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.graph.model import ObjectNode, SceneGraph
from trusted_scene_graph.image.decode import has_depth_within
from trusted_scene_graph.perception.depth import DepthBackend, make_depth_backend
from trusted_scene_graph.perception.detector import CameraFrame, Detection, Detector, make_detector
from trusted_scene_graph.perception.lifting import LiftedObject, LiftingSettings, LiftRequest, lift_frames
from trusted_scene_graph.perception.tracking import Tracker
from trusted_scene_graph.relations.geometric import (
    RelationSettings,
    horizontal_axes,
    relation_grid,
    relations_from_grid,
)
from trusted_scene_graph.trust.assess import EdgeTrust, scene_graph_vlm

if TYPE_CHECKING:
    from trusted_scene_graph.geometry.tf_buffer import TransformBuffer

# A tf pose and the configured extrinsic closer than this are the same pose: well below what perception resolves, and
# above the rounding of a config written from the tf's printed values.
SAME_POSE_TRANSLATION_M = 1e-3
SAME_POSE_ROTATION_RAD = 1e-3


class PipelineError(TsgError):
    """A frame the pipeline cannot turn into a graph (for example, no valid depth at all)."""


def poses_differ(a: RigidTransform, b: RigidTransform) -> bool:
    """Whether two camera poses differ by more than :data:`SAME_POSE_TRANSLATION_M` or
    :data:`SAME_POSE_ROTATION_RAD`."""
    rotation_rad = float((a.rotation.inv() * b.rotation).magnitude())
    return bool(np.linalg.norm(a.translation_m - b.translation_m) > SAME_POSE_TRANSLATION_M
                or rotation_rad > SAME_POSE_ROTATION_RAD)


@dataclass(frozen=True)
class PreparedFrame:
    """A frame up to its detections, with the camera pose it is lifted with (:meth:`ScenePipeline.prepare`)."""

    stamp_ns: int
    detections: list[Detection]
    depth_m: np.ndarray
    intrinsics: Intrinsics
    camera_to_graph: RigidTransform
    view_forward_graph: np.ndarray
    camera_forward_graph: np.ndarray
    camera_up_graph: np.ndarray
    image_rgb: np.ndarray | None  # what a VLM looks at (None: no VLM is asked)
    timing_ms: dict[str, float]
    # Detections of labels not asked for (prepare's labels), not lifted: what box-only silhouettes leave out.
    context: tuple[Detection, ...] = ()


class ScenePipeline:
    """Stateful (tracks persist across frames) frame → :class:`SceneGraph` pipeline.

    The camera-to-graph transform comes from ``extrinsic.source``: the config ('static'), a support-plane fit
    ('plane_fit'), or per frame from the caller ('tf': :meth:`camera_pose_from_tf` before each :meth:`process`).
    """

    def __init__(self, config: Mapping[str, Any], detector: Detector | None = None,
                 depth_backend: DepthBackend | None = None, trust: EdgeTrust | None = None,
                 relations: bool = True) -> None:
        """``relations=False`` builds a pipeline of objects only (detect, lift, track: all a distance or a reward
        needs, as ``tsg label`` uses it): the trust model and the VLM are never loaded, which spares every labelling
        worker importing xgboost and scikit-learn, and asking it for relations is an error."""
        if trust is not None and not relations:
            raise PipelineError("a pipeline built with relations=False has no trust step: give it no trust model")
        self.detector = detector if detector is not None else make_detector(config)
        self.depth_backend = depth_backend if depth_backend is not None else make_depth_backend(config)
        if trust is None and relations:
            trust = EdgeTrust(config, vlm=scene_graph_vlm(config))
        self.trust: EdgeTrust | None = trust
        self.tracker = Tracker(config["tracking.gate_m"], config["tracking.max_missed_frames"],
                               config["tracking.smoothing"])
        self._plane_rng = np.random.default_rng(0)  # RANSAC is seeded: the same frames give the same graph frame
        self._frames_since_plane_fit = 0
        self.camera_to_graph: RigidTransform | None = None  # 'plane_fit': set by the first frame's fit, then kept
        self.plane: PlaneFit | None = None  # 'plane_fit': the last fitted support plane
        self.tf_camera_frame: str | None = None  # 'tf': the camera frame of the last lookup (None: none yet)
        self._tf_miss_reason = ""  # 'tf': why the last lookup found no transform (stale, not connected)
        self._configure(config)

    def start_sequence(self) -> None:
        """Forget the tracks, what the trust step keeps per track pair and (for 'plane_fit') the fitted plane: the
        next frame starts a new, unrelated scene."""
        self.tracker = Tracker(self.config["tracking.gate_m"], self.config["tracking.max_missed_frames"],
                               self.config["tracking.smoothing"])
        if self.trust is not None:  # its memory is keyed by track ids, which the new tracker numbers from 1 again
            self.trust.start_sequence()
        if self.config["extrinsic.source"] == "plane_fit":
            self.plane = None
            self.camera_to_graph = None
            self._frames_since_plane_fit = 0

    def restart(self) -> None:
        """:meth:`start_sequence`, and every random generator re-seeded (RANSAC's plane fit, the detector's
        corruption, the trust step's): from now on, as a pipeline just built (the models kept). A labelling worker
        restarts its pipeline for each item, so that an item's output does not depend on which items the process
        labelled before it (a rerun after an interruption, or another number of workers, gives the same bytes)."""
        self.start_sequence()
        self._plane_rng = np.random.default_rng(0)
        self.detector.restart()
        if self.trust is not None:
            self.trust.restart()

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Apply changed settings (a node's parameter change), the detector's writable ones too; the models (detector,
        depth) and the tracks are kept."""
        self.detector.reconfigure(config)
        self._configure(config)

    def _configure(self, config: Mapping[str, Any]) -> None:
        """The settings the pipeline itself reads (a detector given to the constructor keeps its own)."""
        self.config = config
        self.lifting = LiftingSettings.from_config(config)
        self.relation_settings = RelationSettings.from_config(config)
        self.tracker.gate_m = config["tracking.gate_m"]
        self.tracker.max_missed_frames = config["tracking.max_missed_frames"]
        self.tracker.smoothing = config["tracking.smoothing"]
        self.frame_id = config["graph_frame"]
        if self.trust is not None:
            self.trust.reconfigure(config)
        # Without a trust model no edge is ever made, so none is pruned: NaN says no threshold applied.
        self.trust_threshold = self.trust.threshold if self.trust is not None else math.nan
        if config["extrinsic.source"] == "static":
            self._set_camera_to_graph(RigidTransform.from_xyzw(config["extrinsic.translation_m"],
                                                               config["extrinsic.rotation_xyzw"]))

    def set_camera_to_graph(self, camera_to_graph: RigidTransform | None, camera_frame: str) -> None:
        """'tf': the pose of ``camera_frame`` in the graph frame for the next frame(s); None when the tf has no such
        transform, so that :meth:`process` rejects the frame naming both frames (never an older frame's pose)."""
        if self.config["extrinsic.source"] != "tf":
            raise PipelineError(f"set_camera_to_graph needs extrinsic.source 'tf'; it is "
                                f"{self.config['extrinsic.source']!r}, which sets the camera pose itself")
        self.tf_camera_frame = camera_frame
        self._tf_miss_reason = ""
        if camera_to_graph is None:
            self.camera_to_graph = None
        elif camera_to_graph is not self.camera_to_graph:  # the tf buffer returns the same object while unchanged
            self._set_camera_to_graph(camera_to_graph)

    def camera_pose_from_tf(self, tf: TransformBuffer, camera_frame: str, stamp_ns: int) -> RigidTransform | None:
        """'tf': look up ``graph_frame <- camera_frame`` at ``stamp_ns`` (the image stamp) and use it for the next
        frame; returns it (None: not in the tf). The one step the node and ``tsg eval`` share, so both place the
        camera alike."""
        found = tf.lookup_explained(self.frame_id, camera_frame, stamp_ns)
        self.set_camera_to_graph(found.transform, camera_frame)
        self._tf_miss_reason = found.reason
        return found.transform

    def static_extrinsic_differs_from_tf(self, tf: TransformBuffer, camera_frame: str, stamp_ns: int) -> bool:
        """'static': whether the tf places ``camera_frame`` in the graph frame at ``stamp_ns`` elsewhere than the
        configured extrinsic (which the graphs use): a recording whose camera pose is in its tf, read with a config
        that does not use it. False when the tf has no such transform, or the source is not 'static'."""
        if self.config["extrinsic.source"] != "static" or self.camera_to_graph is None:
            return False
        camera_in_graph = tf.lookup(self.frame_id, camera_frame, stamp_ns)
        return camera_in_graph is not None and poses_differ(camera_in_graph, self.camera_to_graph)

    def _no_camera_pose_message(self) -> str:
        if self.config["extrinsic.source"] != "tf":
            return ("the camera-to-graph transform is not known yet (extrinsic.source 'plane_fit' fits it from the "
                    "first frame's depth)")
        if self.tf_camera_frame is None:
            return "extrinsic.source 'tf': no camera pose was looked up for this frame (call camera_pose_from_tf)"
        if not self.tf_camera_frame:
            return (f"extrinsic.source 'tf': camera_info has an empty header.frame_id, so there is no camera frame "
                    f"to look up in the tf for graph frame {self.frame_id!r}")
        return (f"extrinsic.source 'tf': no transform from camera frame {self.tf_camera_frame!r} to graph frame "
                f"{self.frame_id!r} at the image stamp in /tf_static or /tf"
                + (f": {self._tf_miss_reason}" if self._tf_miss_reason else ""))

    def _set_camera_to_graph(self, camera_to_graph: RigidTransform) -> None:
        self.camera_to_graph = camera_to_graph
        # The optical axis (z) in the graph frame: the camera's viewing direction, used by directional relations.
        self.camera_forward_graph = camera_to_graph.rotation.apply([0.0, 0.0, 1.0])
        self.camera_up_graph = camera_to_graph.rotation.apply([0.0, -1.0, 0.0])  # image "up" (optical -y)
        # Lifting's horizontal viewing direction (the hidden side of a round object lies along it): the relations'
        # forward, the optical axis projected on the horizontal plane (for a camera looking straight down or up,
        # which has none, image-left turned 90 degrees: the hidden side is then below, not behind).
        self.view_forward_graph, _ = horizontal_axes(self.camera_forward_graph, self.camera_up_graph)

    def _update_frame_from_plane(self, depth_m: np.ndarray, intrinsics: Intrinsics) -> None:
        """'plane_fit': fit the support plane on the first frame, then every ``refit_frames`` frames (0: never)."""
        refit_frames = self.config["extrinsic.plane_fit.refit_frames"]
        self._frames_since_plane_fit += 1
        if self.plane is not None and (refit_frames == 0 or self._frames_since_plane_fit < refit_frames):
            return
        try:
            plane = fit_support_plane(depth_m, intrinsics, self.config["extrinsic.plane_fit.inlier_distance_m"],
                                      self.config["extrinsic.plane_fit.iterations"],
                                      self.config["extrinsic.plane_fit.min_inlier_fraction"], self._plane_rng,
                                      depth_range_m=(self.lifting.depth_min_m, self.lifting.depth_max_m))
        except GeometryError as exc:
            if self.plane is not None:  # keep the last good plane; a refit is an update, not a need
                return
            raise PipelineError(f"extrinsic.source 'plane_fit': no support plane in this frame: {exc}") from exc
        self._set_camera_to_graph(camera_to_graph_from_plane(plane))
        self.plane = plane
        self._frames_since_plane_fit = 0

    def frame_status(self) -> dict[str, str]:
        """Where the graph frame comes from; for 'tf' the camera frame and whether the tf had it at the last frame, for
        'plane_fit' the fitted plane (for ``/diagnostics``)."""
        status = {"graph_frame_source": self.config["extrinsic.source"]}
        if self.config["extrinsic.source"] == "tf":
            status["camera_frame"] = self.tf_camera_frame if self.tf_camera_frame is not None else "not seen yet"
            status["camera_in_tf"] = ("not looked up yet" if self.tf_camera_frame is None
                                      else "yes" if self.camera_to_graph is not None else "no")
        elif self.config["extrinsic.source"] == "plane_fit":
            if self.plane is None:
                status["support_plane"] = "not fitted yet"
            else:
                status["camera_height_m"] = f"{self.plane.camera_height_m:.3f}"
                status["plane_inlier_fraction"] = f"{self.plane.inlier_fraction:.2f}"
        return status

    def trust_status(self) -> dict[str, str]:
        """Which trust model prunes the graph, at which threshold (for ``/diagnostics``)."""
        if self.trust is None:
            return {"trust_model": "none (a pipeline of objects only)", "trust_threshold": "none"}
        return {"trust_model": self.trust.model.description, "trust_threshold": f"{self.trust_threshold:.3f}"}

    @property
    def needs_instances(self) -> bool:
        return self.detector.needs_instances

    @property
    def needs_depth(self) -> bool:
        """False for a monocular depth backend: the node then subscribes to no depth topic."""
        return self.depth_backend.needs_depth_topic

    def process(self, frame: CameraFrame, relations: bool = True, labels: Collection[str] | None = None
                ) -> SceneGraph:
        """Detect, lift, track, relate, trust and prune. ``relations=False`` stops after tracking: a graph of objects
        without edges, all a distance or a reward needs (``tsg label`` labels this way). ``labels`` (lower case):
        only detections with these labels are lifted and tracked (``tsg label`` lifts the objects its pairs name
        only). Tracks never pair different labels, so the objects kept move exactly as in a full graph; only the
        ids differ, as ids are numbered in order of appearance.

        The same as :meth:`prepare`, :meth:`lift` and :meth:`finish` in turn; an offline caller may prepare many
        frames, lift them as one batch, then finish them in order."""
        prepared = self.prepare(frame, labels)
        return self.finish(prepared, self.lift([prepared])[0], relations)

    def prepare(self, frame: CameraFrame, labels: Collection[str] | None = None) -> PreparedFrame:
        """The frame's depth and detections, with the camera pose it is lifted with (the current one: set the 'tf'
        pose first). Raises :class:`~trusted_scene_graph.errors.TsgError` naming why the frame cannot be used."""
        if self.config["extrinsic.source"] == "tf" and self.camera_to_graph is None:
            raise PipelineError(self._no_camera_pose_message())  # before the models run: the frame is lost anyway
        timing_ms: dict[str, float] = {}
        start = time.perf_counter()
        depth_m = self.depth_backend.depth_m(frame.rgb, frame.depth_m)
        timing_ms["depth"] = (time.perf_counter() - start) * 1e3
        if not has_depth_within(depth_m, self.lifting.depth_min_m, self.lifting.depth_max_m):
            raise PipelineError(f"depth image has no valid pixel (all NaN, zero or outside "
                                f"[{self.lifting.depth_min_m}, {self.lifting.depth_max_m}] m)")
        if self.config["extrinsic.source"] == "plane_fit":
            start = time.perf_counter()
            self._update_frame_from_plane(depth_m, frame.intrinsics)
            timing_ms["frame"] = (time.perf_counter() - start) * 1e3

        start = time.perf_counter()
        # A detection without a mask is lifted from a silhouette that leaves out the boxes nested in it, whatever
        # their labels: then every detection is asked for, and the others are kept as the frame's context.
        silhouettes = self.lifting.box_silhouette and not getattr(self.detector, "every_detection_masked", False)
        detections = self.detector.detect(frame, None if silhouettes else labels)
        context: list[Detection] = []
        if labels is not None:
            wanted = [d.label.strip().lower() in labels for d in detections]
            if silhouettes:  # their boxes only: a batch of frames need not hold their masks
                context = [dataclasses.replace(d, mask=None) for d, keep in zip(detections, wanted, strict=True)
                           if not keep]
            detections = [d for d, keep in zip(detections, wanted, strict=True) if keep]
        timing_ms["detect"] = (time.perf_counter() - start) * 1e3
        # Only a trust model asks the VLM about the colour image; without one (tsg label's pipeline) the frame does
        # not keep it, and with it the message it views, while it waits in a batch.
        image_rgb = frame.rgb if self.trust is not None else None
        return self._prepared(frame.stamp_ns, detections, depth_m, frame.intrinsics, timing_ms, image_rgb, context)

    def _prepared(self, stamp_ns: int, detections: Sequence[Detection], depth_m: np.ndarray, intrinsics: Intrinsics,
                  timing_ms: dict[str, float], image_rgb: np.ndarray | None,
                  context: Sequence[Detection] = ()) -> PreparedFrame:
        if self.camera_to_graph is None:
            raise PipelineError(self._no_camera_pose_message())
        return PreparedFrame(stamp_ns, list(detections), depth_m, intrinsics, self.camera_to_graph,
                             self.view_forward_graph, self.camera_forward_graph, self.camera_up_graph, image_rgb,
                             timing_ms, tuple(context))

    def lift(self, prepared: Sequence[PreparedFrame]) -> list[list[LiftedObject]]:
        """The 3D boxes of each prepared frame's detections (those with usable depth), all frames as one batch."""
        start = time.perf_counter()
        lifted = lift_frames([LiftRequest(p.detections, p.depth_m, p.intrinsics, p.camera_to_graph,
                                          p.view_forward_graph, p.context) for p in prepared], self.lifting)
        per_frame_ms = (time.perf_counter() - start) * 1e3 / max(len(prepared), 1)
        for frame in prepared:
            frame.timing_ms["lift"] = per_frame_ms
        return [[obj for obj in objects if obj is not None] for objects in lifted]

    def process_detections(self, stamp_ns: int, detections: Sequence[Detection], depth_m: np.ndarray,
                           intrinsics: Intrinsics, timing_ms: dict[str, float] | None = None,
                           image_rgb: np.ndarray | None = None) -> SceneGraph:
        """Lift, track, relate, trust and prune given detections (the part after the models; benchmarked alone).

        ``image_rgb`` is what a VLM looks at (without it, no VLM is asked); its id for recorded answers is the stamp
        in nanoseconds."""
        prepared = self._prepared(stamp_ns, detections, depth_m, intrinsics, {} if timing_ms is None else timing_ms,
                                  image_rgb)
        return self.finish(prepared, self.lift([prepared])[0])

    def finish(self, prepared: PreparedFrame, lifted: Sequence[LiftedObject], relations: bool = True) -> SceneGraph:
        """Track the frame's lifted objects, then (``relations``) relate, trust and prune: the frame's graph. Frames
        must be finished in order, as tracking follows them."""
        timing_ms = prepared.timing_ms
        start = time.perf_counter()
        tracks = self.tracker.update([o.detection.label for o in lifted], [o.centroid_m for o in lifted],
                                     [o.size_m for o in lifted])
        objects = tuple(
            ObjectNode(track.id, o.detection.label, o.detection.score, o.detection.box_xywh_px, track.centroid_m,
                       track.size_m, o.depth_valid_fraction, track.age)
            for o, track in zip(lifted, tracks, strict=True)
        )
        timing_ms["track"] = (time.perf_counter() - start) * 1e3
        stamp_ns, intrinsics, image_rgb = prepared.stamp_ns, prepared.intrinsics, prepared.image_rgb
        if not relations:
            return SceneGraph(stamp_ns, self.frame_id, objects, (), self.trust_threshold, 0, timing_ms)
        if self.trust is None:
            raise PipelineError("this pipeline was built with relations=False (objects only, as tsg label builds it): "
                                "it has no trust model to relate and prune with; finish the frame with "
                                "relations=False, or build the pipeline with relations")

        start = time.perf_counter()
        grid = relation_grid([o.id for o in objects], np.array([o.centroid_m for o in objects]).reshape(-1, 3),
                             np.array([o.size_m for o in objects]).reshape(-1, 3), prepared.camera_forward_graph,
                             self.relation_settings, prepared.camera_up_graph)
        timing_ms["relate"] = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        candidates = self.trust.assess(grid, objects, intrinsics.width, intrinsics.height, image_rgb,
                                       image_id=str(stamp_ns))
        keep = np.flatnonzero(candidates.trust >= self.trust_threshold)  # the pruning decision
        pruned_claims = len(candidates) - keep.size
        timing_ms["trust"] = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        kept, pruned_measurements = relations_from_grid(
            grid, candidates.subject[keep], candidates.object[keep], candidates.predicate[keep],
            candidates.trust[keep], sources=candidates.source[keep], scores=[o.score for o in objects],
            depth_valid_fractions=[o.depth_valid_fraction for o in objects], min_trust=self.trust_threshold)
        pruned = pruned_claims + pruned_measurements
        timing_ms["relate"] += (time.perf_counter() - start) * 1e3  # building the kept edges is relating
        return SceneGraph(stamp_ns, self.frame_id, objects, tuple(kept), self.trust_threshold, pruned, timing_ms,
                          candidates=candidates)
