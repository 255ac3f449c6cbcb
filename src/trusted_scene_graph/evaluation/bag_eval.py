"""``tsg eval BAG``: replay a bag offline through the node's own code and score the graphs against ground truth.

Replay is exactly the node's path, minus DDS: camera messages go through the same :class:`FrameSynchronizer` (with
the node's topics, :func:`input_topic_names`), are decoded by the same :func:`frame_from_msgs` and processed by the
same :class:`ScenePipeline`. Every completed frame is processed (offline, nothing is dropped for being late), so a
run is deterministic. The candidate edges (before pruning) are recomputed from the graph's objects with the node's
own :func:`compute_relations`; ``kept`` means trust >= ``trust.threshold``, exactly what the node publishes.

Scoring (all in the ground truth's frame; the bag's ``/tf_static``/``/tf`` give the camera pose in it):

* Matching: per frame, perceived objects are matched to ground-truth objects of the *same label* by the Hungarian
  algorithm on centroid distance, gated at :data:`MATCH_GATE_M` (the most pairs within the gate, then the least
  total distance). Unmatched perceived objects are false positives.
* Evaluable objects: a ground-truth object counts for relations and distances only when its whole box projects
  inside the image (an object cut by the image border has no well-defined visible extent) and it is not fully
  occluded. Edges and pairs touching other objects are excluded and counted.
* A qualitative candidate edge ``a predicate b`` is *correct* when both ends are matched and the predicate holds
  between their ground-truth boxes (:func:`relations_from_boxes`, same settings, camera axes from the ground-truth
  camera pose). True edges are the correct candidates; recall of kept edges is kept-and-correct / true.
* Distances: every pair of matched evaluable objects (perceived vs true centroid distance), and the end effector
  (from the ee-pose topic, as the robot knows it) to every matched evaluable object except the robot and the support
  surface (``EE_EXCLUDED_LABELS``), against the true grasp point to true centre.
* Reward: for tasks with a goal, the env's dense reward formula on perceived positions, ``-|p - goal|`` with ``p``
  the perceived centroid of the highest-scoring object labelled like the goal's object (the end effector's pose for
  FetchReach); value-order correlation is Spearman of that reward against time on successful episodes.

Bad input never stops a report: unknown message types, undecodable messages and messages of an unexpected type on
the camera or ground-truth topics are skipped and counted, frames the pipeline rejects or whose ground truth is
invalid (non-finite boxes, repeated ids) are counted with their reason, frames whose stamp does not advance are
skipped and counted, and a bag that ends early yields the metrics of what was read, with the error in
``input.read_error``. Frames scored without a tf path from the camera to the ground truth's frame (the config's
extrinsic is assumed) are counted in ``frames.camera_pose_from_config``.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from trusted_scene_graph.config.nodes import input_topic_names
from trusted_scene_graph.dataset import BagReader
from trusted_scene_graph.dataset.messages import GROUND_TRUTH_TYPE
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation import metrics as m
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.pipeline.messages import frame_from_msgs, stamp_to_ns
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.pipeline.sync import FrameSynchronizer
from trusted_scene_graph.relations.geometric import (
    QUALITATIVE_PREDICATES,
    compute_relations,
    relations_from_boxes,
)

GROUND_TRUTH_TOPIC = "/ground_truth"
TF_TOPICS = ("/tf_static", "/tf")
MATCH_GATE_M = 0.20
EE_EXCLUDED_LABELS = ("gripper", "table")
MIN_TRUE_DISTANCE_M = 0.10  # SpatialVLM-style ratio metrics only for pairs at least this far apart
# A frame is scored once the bag's log time is this far past the log time at which the frame completed, so ground
# truth and the end-effector pose logged a little after the images are still found. Measured in log time only: a
# recorder's clock can be far from the stamps' (sim-time stamps, a bag re-recorded from a replay).
LOOKAHEAD_NS = 500_000_000
# Message types accepted on each synchroniser input; anything else on those topics is counted, not decoded.
_INPUT_TYPES = {
    "color": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "depth": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "instances": ("sensor_msgs/msg/Image",),
}
_QUALITATIVE = frozenset(QUALITATIVE_PREDICATES)


@dataclass
class _Samples:
    """Everything the metrics need, accumulated over frames."""

    edge_trust: list[float] = field(default_factory=list)
    edge_correct: list[bool] = field(default_factory=list)
    edge_kept: list[bool] = field(default_factory=list)
    edge_predicate: list[str] = field(default_factory=list)
    edges_excluded: int = 0
    kept_per_frame: list[int] = field(default_factory=list)
    true_edges_ground_truth: int = 0  # edges that hold between evaluable ground-truth objects
    pair_perceived_m: list[float] = field(default_factory=list)
    pair_true_m: list[float] = field(default_factory=list)
    ee_perceived_m: list[float] = field(default_factory=list)
    ee_true_m: list[float] = field(default_factory=list)
    ee_series: dict[tuple[int, str], list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    # Per episode: (step, reward on perceived positions, the env's reward, success) per frame.
    reward_series: dict[int, list[tuple[int, float, float, bool]]] = field(default_factory=lambda: defaultdict(list))
    reward_frames: int = 0
    reward_invalid: int = 0
    episode_success: dict[int, bool] = field(default_factory=dict)
    timing_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    gt_objects: int = 0
    matched: int = 0
    perceived: int = 0
    centroid_error_m: list[float] = field(default_factory=list)


@dataclass
class _Counts:
    camera_frames: int = 0
    evaluated: int = 0
    without_ground_truth: int = 0
    out_of_order: int = 0
    camera_pose_from_config: int = 0  # evaluated frames whose camera pose in the truth frame was not in the tf
    failed: Counter[str] = field(default_factory=Counter)
    episodes: set[int] = field(default_factory=set)


@dataclass
class _Pending:
    stamp_ns: int
    msgs: dict[str, Any]
    completed_log_ns: int  # log time of the message that completed the frame


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    samples: _Samples
    exit_code: int


def evaluate_bag(bag_path: Path, config: Mapping[str, Any], *, ground_truth_topic: str = GROUND_TRUTH_TOPIC,
                 max_frames: int | None = None, pipeline: ScenePipeline | None = None,
                 progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Replay ``bag_path`` through the pipeline and score it; ``progress(messages_read, total)`` is called as it
    goes. Raises :class:`DatasetError` only when the bag cannot be opened at all, :class:`EvaluationError` for a
    ``max_frames`` below 1."""
    if max_frames is not None and max_frames < 1:
        raise EvaluationError(f"max_frames={max_frames} must be >= 1")
    pipeline = pipeline if pipeline is not None else ScenePipeline(config)
    inputs = input_topic_names(config, pipeline.needs_depth, pipeline.needs_instances)
    ee_topic = config["topics.ee_pose"]
    samples, counts = _Samples(), _Counts()
    threshold = float(config["trust.threshold"])
    with BagReader(bag_path) as reader:
        missing = [topic for _, topic in inputs if topic not in reader.topics]
        sync = FrameSynchronizer([name for name, _ in inputs], int(config["sync.tolerance_s"] * 1e9),
                                 config["sync.buffer_size"])
        topic_to_name = {topic: name for name, topic in inputs}
        tf = TransformBuffer()
        ground_truth: dict[int, Any] = {}
        ee_poses: dict[int, Any] = {}
        pending: list[_Pending] = []
        unexpected_types: Counter[str] = Counter()
        last_stamp_ns = -1
        episode = None
        total = reader.message_count
        read = 0
        scorer = _FrameScorer(config, samples, threshold)

        def enough() -> bool:
            processed = counts.evaluated + counts.without_ground_truth + sum(counts.failed.values())
            return max_frames is not None and processed >= max_frames

        def score_ready(now_ns: int | None) -> None:
            nonlocal last_stamp_ns, episode
            while pending and (now_ns is None or now_ns - pending[0].completed_log_ns >= LOOKAHEAD_NS):
                item = pending.pop(0)
                if enough():
                    continue
                if item.stamp_ns <= last_stamp_ns:
                    counts.out_of_order += 1
                    continue
                last_stamp_ns = item.stamp_ns
                truth = _nearest(ground_truth, item.stamp_ns, sync.tolerance_ns)
                if truth is not None and truth.episode != episode:
                    if episode is not None:
                        pipeline.start_sequence()
                    episode = truth.episode
                _process(item, truth, _nearest(ee_poses, item.stamp_ns, sync.tolerance_ns), pipeline, tf, config,
                         scorer, counts)
                _forget_before(ground_truth, item.stamp_ns)
                _forget_before(ee_poses, item.stamp_ns)
                tf.forget_before(item.stamp_ns)

        for message in reader.messages():
            read += 1
            if progress is not None and read % 50 == 0:
                progress(read, total)
            if message.topic in topic_to_name:
                name = topic_to_name[message.topic]
                if message.msgtype not in _INPUT_TYPES[name]:
                    unexpected_types[f"{message.topic} ({message.msgtype})"] += 1
                elif sync.add(name, stamp_to_ns(message.msg.header.stamp), message.msg):
                    stamp, msgs = sync.take_latest()
                    counts.camera_frames += 1
                    pending.append(_Pending(stamp, msgs, message.log_time_ns))
            elif message.topic in TF_TOPICS and message.msgtype == "tf2_msgs/msg/TFMessage":
                tf.add(message.msg)
            elif message.topic == ground_truth_topic:
                if message.msgtype == GROUND_TRUTH_TYPE:
                    ground_truth[stamp_to_ns(message.msg.header.stamp)] = message.msg
                else:
                    unexpected_types[f"{message.topic} ({message.msgtype})"] += 1
            elif message.topic == ee_topic and message.msgtype == "geometry_msgs/msg/PoseStamped":
                ee_poses[stamp_to_ns(message.msg.header.stamp)] = message.msg
            score_ready(message.log_time_ns)
            if enough():
                break  # the rest of the bag would only be decoded and thrown away
        score_ready(None)
        if progress is not None:
            progress(read, total)
        input_report = {
            "bag": str(bag_path),
            "messages_read": read,
            "missing_topics": missing,
            "skipped_types": dict(reader.skipped_types),
            "undecodable": dict(reader.undecodable),
            "unexpected_types": dict(unexpected_types),
            "read_error": reader.read_error,
            "has_ground_truth": reader.topics.get(ground_truth_topic) == GROUND_TRUTH_TYPE,
        }
    metrics = compute_metrics(samples, counts, config, input_report)
    ok = counts.evaluated > 0 and reader.read_error is None
    return EvalResult(metrics, samples, 0 if ok else 1)


def _nearest(by_stamp: dict[int, Any], stamp_ns: int, tolerance_ns: int) -> Any | None:
    exact = by_stamp.get(stamp_ns)
    if exact is not None:
        return exact
    best = min(by_stamp, key=lambda s: abs(s - stamp_ns), default=None)
    return by_stamp[best] if best is not None and abs(best - stamp_ns) <= tolerance_ns else None


def _forget_before(by_stamp: dict[int, Any], stamp_ns: int) -> None:
    """Drop entries older than the last scored frame (frames are scored in stamp order), so memory stays bounded."""
    for stamp in [s for s in by_stamp if s < stamp_ns - LOOKAHEAD_NS]:
        del by_stamp[stamp]


def _process(item: _Pending, truth: Any | None, ee_pose: Any | None, pipeline: ScenePipeline,
             tf: TransformBuffer, config: Mapping[str, Any], scorer: _FrameScorer, counts: _Counts) -> None:
    msgs = item.msgs
    camera_frame_id = msgs["camera_info"].header.frame_id
    graph_frame = config["graph_frame"]
    truth_frame = truth.header.frame_id if truth is not None else graph_frame
    camera_in_truth = tf.lookup(truth_frame, camera_frame_id, item.stamp_ns)
    if config["extrinsic.source"] == "static":
        # The recorded camera pose is the extrinsic, as a tf-aware driver would provide it; without one, the config.
        camera_in_graph = tf.lookup(graph_frame, camera_frame_id, item.stamp_ns)
        if camera_in_graph is not None and not _same_transform(camera_in_graph, pipeline.camera_to_graph):
            pipeline.reconfigure(pipeline.config.with_overrides({
                "extrinsic.translation_m": [float(v) for v in camera_in_graph.translation_m],
                "extrinsic.rotation_xyzw": camera_in_graph.rotation_xyzw}))
    start = time.perf_counter()
    try:
        frame = frame_from_msgs(msgs["color"], msgs.get("depth"), msgs["camera_info"], msgs.get("instances"))
        decode_ms = (time.perf_counter() - start) * 1e3
        graph = pipeline.process(frame)
    except TsgError as exc:
        counts.failed[f"{type(exc).__name__}: {_reason(str(exc))}"] += 1
        return
    timing = {"decode": decode_ms, **graph.timing_ms}
    timing["total"] = sum(timing.values())
    for stage, value_ms in timing.items():
        scorer.samples.timing_ms[stage].append(value_ms)
    if truth is None:
        counts.without_ground_truth += 1
        return
    problem = _ground_truth_problem(truth)
    if problem is not None:
        counts.failed[f"invalid ground truth: {problem}"] += 1
        return
    counts.evaluated += 1
    counts.episodes.add(int(truth.episode))
    if camera_in_truth is None:
        # No tf from the camera to the truth frame: assume the graph frame is the ground truth's frame (the
        # config's static extrinsic). Counted, as every score then rests on that assumption.
        counts.camera_pose_from_config += 1
        camera_in_truth = pipeline.camera_to_graph
    graph_to_truth = RigidTransform.from_matrix(camera_in_truth.matrix @ np.linalg.inv(pipeline.camera_to_graph.matrix))
    scorer.score(graph, truth, ee_pose, pipeline, camera_in_truth, graph_to_truth, frame.intrinsics)


def _ground_truth_problem(truth: Any) -> str | None:
    """Why a GroundTruth message cannot be scored (non-finite or negative boxes, repeated ids), or None."""
    ids = [int(o.id) for o in truth.objects]
    if len(set(ids)) != len(ids):
        return f"repeated object ids {sorted({i for i in ids if ids.count(i) > 1})}"
    for o in truth.objects:
        centre = (o.pose.position.x, o.pose.position.y, o.pose.position.z)
        size = (o.size.x, o.size.y, o.size.z)
        if not all(math.isfinite(v) for v in centre + size) or min(size) < 0.0:
            return f"object {o.id} has a non-finite centre or a non-finite or negative size"
    for flag, name, p in ((truth.has_gripper, "gripper_position", truth.gripper_position),
                          (truth.has_goal, "goal_position", truth.goal_position)):
        if flag and not all(math.isfinite(v) for v in (p.x, p.y, p.z)):
            return f"{name} is not finite"
    return None


def _reason(message: str) -> str:
    """A failure message cut to a readable length; identical messages are counted together."""
    return message if len(message) <= 160 else message[:157] + "..."


def _same_transform(a: RigidTransform, b: RigidTransform | None) -> bool:
    return b is not None and bool(np.allclose(a.matrix, b.matrix, atol=1e-9))


class _FrameScorer:
    """Scores one frame's graph against its ground truth into :class:`_Samples`."""

    def __init__(self, config: Mapping[str, Any], samples: _Samples, threshold: float) -> None:
        self.config = config
        self.samples = samples
        self.threshold = threshold

    def score(self, graph: SceneGraph, truth: Any, ee_pose: Any | None, pipeline: ScenePipeline,
              camera_in_truth: RigidTransform, graph_to_truth: RigidTransform, intrinsics: Intrinsics) -> None:
        samples = self.samples
        gt_ids = np.array([o.id for o in truth.objects], dtype=np.int64)
        gt_labels = [o.label for o in truth.objects]
        gt_centres = np.array([[o.pose.position.x, o.pose.position.y, o.pose.position.z] for o in truth.objects],
                              dtype=np.float64).reshape(-1, 3)
        gt_sizes = np.array([[o.size.x, o.size.y, o.size.z] for o in truth.objects], dtype=np.float64).reshape(-1, 3)
        evaluable = _evaluable(truth.objects, gt_centres, gt_sizes, camera_in_truth, intrinsics)
        perceived_in_truth = (graph_to_truth.apply(np.array([o.centroid_m for o in graph.objects]))
                              if graph.objects else np.zeros((0, 3)))
        match = _match(graph, perceived_in_truth, gt_labels, gt_centres)  # perceived index -> gt index
        samples.gt_objects += int(evaluable.sum())
        samples.perceived += len(graph.objects)
        samples.matched += sum(1 for g in match.values() if evaluable[g])
        samples.centroid_error_m += [float(np.linalg.norm(perceived_in_truth[p] - gt_centres[g]))
                                     for p, g in match.items() if evaluable[g]]

        # Relations: truth from ground-truth boxes, seen from the ground-truth camera.
        forward_truth = camera_in_truth.rotation.apply([0.0, 0.0, 1.0])
        up_truth = camera_in_truth.rotation.apply([0.0, -1.0, 0.0])
        settings = pipeline.relation_settings
        true_edges = {(s, r.predicate, o) for r in relations_from_boxes(gt_ids, gt_centres, gt_sizes, forward_truth,
                                                                        settings, up_truth)
                      if r.predicate in _QUALITATIVE
                      for s, o in [(int(r.subject_id), int(r.object_id))]}
        index_of_gt_id = {int(i): k for k, i in enumerate(gt_ids)}
        samples.true_edges_ground_truth += sum(1 for s, _, o in true_edges
                                               if evaluable[index_of_gt_id[s]] and evaluable[index_of_gt_id[o]])
        perceived_index = {obj.id: k for k, obj in enumerate(graph.objects)}
        # A perceived object left unmatched although an object of its label exists that is not evaluable (cut by the
        # image border: its perceived box is the visible part, far from the true centre) is not a false positive.
        hidden_labels = {gt_labels[k] for k in np.flatnonzero(~evaluable)}
        not_evaluable = {k for k, obj in enumerate(graph.objects) if k not in match and obj.label in hidden_labels}
        not_evaluable |= {k for k, g in match.items() if not evaluable[g]}
        candidates = compute_relations(graph.objects, pipeline.camera_forward_graph, settings,
                                       pipeline.camera_up_graph)
        kept_here = 0
        for rel in candidates:
            if rel.predicate not in _QUALITATIVE:
                continue
            ps, po = perceived_index[rel.subject_id], perceived_index[rel.object_id]
            gs, go = match.get(ps), match.get(po)
            if ps in not_evaluable or po in not_evaluable:
                samples.edges_excluded += 1
                continue
            correct = gs is not None and go is not None and (int(gt_ids[gs]), rel.predicate, int(gt_ids[go])) in \
                true_edges
            kept = rel.trust >= self.threshold
            kept_here += kept
            samples.edge_trust.append(float(rel.trust))
            samples.edge_correct.append(bool(correct))
            samples.edge_kept.append(bool(kept))
            samples.edge_predicate.append(rel.predicate)
        samples.kept_per_frame.append(kept_here)

        # Distances between matched, evaluable objects (centroid distance is frame-independent).
        matched = sorted((p, g) for p, g in match.items() if evaluable[g])
        for i, (pa, ga) in enumerate(matched):
            for pb, gb in matched[i + 1:]:
                samples.pair_perceived_m.append(float(np.linalg.norm(perceived_in_truth[pa] - perceived_in_truth[pb])))
                samples.pair_true_m.append(float(np.linalg.norm(gt_centres[ga] - gt_centres[gb])))

        # End effector (kinematics) to objects.
        truth_gripper = np.array([truth.gripper_position.x, truth.gripper_position.y, truth.gripper_position.z])
        ee_m = None
        ee_xyz = (np.array([ee_pose.pose.position.x, ee_pose.pose.position.y, ee_pose.pose.position.z])
                  if ee_pose is not None else None)
        if (ee_xyz is not None and np.isfinite(ee_xyz).all() and truth.has_gripper
                and ee_pose.header.frame_id == truth.header.frame_id):
            ee_m = ee_xyz
            for pa, ga in matched:
                if gt_labels[ga] in EE_EXCLUDED_LABELS:
                    continue
                perceived_m = float(np.linalg.norm(perceived_in_truth[pa] - ee_m))
                true_m = float(np.linalg.norm(gt_centres[ga] - truth_gripper))
                samples.ee_perceived_m.append(perceived_m)
                samples.ee_true_m.append(true_m)
                samples.ee_series[(int(truth.episode), gt_labels[ga])].append((perceived_m, true_m))

        # Reward on perceived positions, for tasks with a goal.
        if truth.has_goal:
            samples.reward_frames += 1
            goal = np.array([truth.goal_position.x, truth.goal_position.y, truth.goal_position.z])
            position = ee_m if not truth.goal_for else _best_by_label(graph, perceived_in_truth, truth.goal_for)
            samples.episode_success[int(truth.episode)] = bool(truth.is_success)
            if position is None:
                samples.reward_invalid += 1
            else:
                samples.reward_series[int(truth.episode)].append(
                    (int(truth.step), -float(np.linalg.norm(position - goal)), float(truth.env_reward),
                     bool(truth.is_success)))


def _best_by_label(graph: SceneGraph, perceived_in_truth: np.ndarray, label: str) -> np.ndarray | None:
    candidates = [k for k, obj in enumerate(graph.objects) if obj.label == label]
    if not candidates:
        return None
    return perceived_in_truth[max(candidates, key=lambda k: graph.objects[k].score)]


def _match(graph: SceneGraph, perceived_m: np.ndarray, gt_labels: Sequence[str],
           gt_centres: np.ndarray) -> dict[int, int]:
    """Perceived index -> ground-truth index: same label, Hungarian on centroid distance, within the gate."""
    match: dict[int, int] = {}
    for label in {obj.label for obj in graph.objects}:
        perceived = [k for k, obj in enumerate(graph.objects) if obj.label == label]
        truth = [k for k, gt_label in enumerate(gt_labels) if gt_label == label]
        if not truth:
            continue
        cost = np.linalg.norm(perceived_m[perceived][:, None, :] - gt_centres[truth][None, :, :], axis=2)
        # Pairs beyond the gate cost more than any set of pairs within it, so the assignment first maximises the
        # number of matches within the gate, then minimises their total distance.
        gated = np.where(cost <= MATCH_GATE_M, cost, MATCH_GATE_M * (len(perceived) + len(truth) + 1))
        rows, cols = linear_sum_assignment(gated)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= MATCH_GATE_M:
                match[perceived[r]] = truth[c]
    return match


def _evaluable(objects: Sequence[Any], centres_m: np.ndarray, sizes_m: np.ndarray,
               camera_in_truth: RigidTransform, intrinsics: Intrinsics) -> np.ndarray:
    """Objects whose whole box projects inside the image, in front of the camera, and that are not fully hidden."""
    if len(objects) == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = centres_m[:, None, :] + signs[None, :, :] * sizes_m[:, None, :] / 2.0  # (N, 8, 3)
    truth_to_camera = np.linalg.inv(camera_in_truth.matrix)
    points = corners.reshape(-1, 3) @ truth_to_camera[:3, :3].T + truth_to_camera[:3, 3]
    z = points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * points[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * points[:, 1] / z + intrinsics.cy
    inside = (z > 0) & (u >= 0) & (u <= intrinsics.width - 1) & (v >= 0) & (v <= intrinsics.height - 1)
    in_view = inside.reshape(len(objects), 8).all(axis=1)
    visible = np.array([not (o.visible_fraction == 0.0) for o in objects])  # NaN (unknown) counts as visible
    return in_view & visible


# ------------------------------------------------------------------------------------------------------- metrics


def compute_metrics(samples: _Samples, counts: _Counts, config: Mapping[str, Any],
                    input_report: Mapping[str, Any]) -> dict[str, Any]:
    trust = np.array(samples.edge_trust, dtype=np.float64)
    correct = np.array(samples.edge_correct, dtype=bool)
    kept = np.array(samples.edge_kept, dtype=bool)
    target = float(config["trust.target_precision"])
    return {
        "input": dict(input_report),
        "frames": {
            "camera_frames": counts.camera_frames,
            "evaluated": counts.evaluated,
            "failed": sum(counts.failed.values()),
            "failure_reasons": dict(counts.failed),
            "without_ground_truth": counts.without_ground_truth,
            "out_of_order": counts.out_of_order,
            "camera_pose_from_config": counts.camera_pose_from_config,
            "episodes": len(counts.episodes),
        },
        "detection": _detection_metrics(samples),
        "relations": _relation_metrics(samples, trust, correct, kept),
        "trust": _trust_metrics(trust, correct, target, float(config["trust.threshold"])),
        "distance": _distance_section(samples),
        "reward": _reward_metrics(samples),
        "timing": m.timing_summary(samples.timing_ms) if samples.timing_ms else {},
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else math.nan


def _detection_metrics(samples: _Samples) -> dict[str, Any]:
    errors = np.array(samples.centroid_error_m)
    return {
        "ground_truth_objects": samples.gt_objects,
        "perceived_objects": samples.perceived,
        "matched": samples.matched,
        "recall": _ratio(samples.matched, samples.gt_objects),
        "centroid_error_median_m": float(np.median(errors)) if errors.size else math.nan,
        "centroid_error_p95_m": float(np.percentile(errors, 95)) if errors.size else math.nan,
    }


def _relation_metrics(samples: _Samples, trust: np.ndarray, correct: np.ndarray, kept: np.ndarray) -> dict[str, Any]:
    def summary(mask: np.ndarray) -> dict[str, Any]:
        c, k = correct[mask], kept[mask]
        return {
            "candidates": int(mask.sum()),
            "accuracy": _ratio(c.sum(), c.size),
            "precision_kept": _ratio((c & k).sum(), k.sum()),
            "recall_kept": _ratio((c & k).sum(), c.sum()),
            "coverage": _ratio(k.sum(), k.size),
        }

    everything = summary(np.ones(len(correct), dtype=bool))
    predicates = np.array(samples.edge_predicate, dtype=object)
    return {
        **everything,
        "true_edges": int(correct.sum()),
        "kept": int(kept.sum()),
        "kept_per_frame": float(np.mean(samples.kept_per_frame)) if samples.kept_per_frame else math.nan,
        "recall_ground_truth": _ratio((correct & kept).sum(), samples.true_edges_ground_truth),
        "ground_truth_edges": samples.true_edges_ground_truth,
        "excluded_not_evaluable": samples.edges_excluded,
        "by_predicate": {p: summary(predicates == p) for p in QUALITATIVE_PREDICATES if (predicates == p).any()},
    }


def _trust_metrics(trust: np.ndarray, correct: np.ndarray, target: float, threshold: float) -> dict[str, Any]:
    if trust.size == 0:
        nan = math.nan
        return {"edges": 0, "auroc": nan, "aurc": nan, "e_aurc": nan, "fpr_at_95_tpr": nan, "ece": nan,
                "target_precision": target, "coverage_at_target_precision": nan,
                "threshold_at_target_precision": nan, "configured_threshold": threshold}
    coverage, at_threshold = m.coverage_at_precision(trust, correct, target)
    return {
        "edges": int(trust.size),
        "auroc": m.auroc(trust, correct),
        "aurc": m.aurc(trust, correct),
        "e_aurc": m.e_aurc(trust, correct),
        "fpr_at_95_tpr": m.fpr_at_tpr(trust, correct, 0.95),
        "ece": m.expected_calibration_error(trust, correct, 15),
        "target_precision": target,
        "coverage_at_target_precision": coverage,
        "threshold_at_target_precision": at_threshold,
        "configured_threshold": threshold,
    }


def _distance_section(samples: _Samples) -> dict[str, Any]:
    perceived = samples.pair_perceived_m + samples.ee_perceived_m
    true = samples.pair_true_m + samples.ee_true_m
    per_episode = {}
    for (episode, label), series in sorted(samples.ee_series.items()):
        values = np.array(series)
        per_episode[f"{episode}:{label}"] = m.spearman(values[:, 0], values[:, 1])
    rhos = np.array([r for r in per_episode.values() if not math.isnan(r)])
    return {
        # Per episode, a held object's distance is nearly constant for many frames and its rank order is noise even
        # when every error is a millimetre or two; the pooled value ranks all frames of all episodes together.
        "spearman_pooled": m.spearman(samples.ee_perceived_m, samples.ee_true_m),
        **_distance_metrics(perceived, true),
        "spearman": float(np.median(rhos)) if rhos.size else math.nan,
        "spearman_min": float(rhos.min()) if rhos.size else math.nan,
        "spearman_series": len(rhos),
        "spearman_per_episode": per_episode,
        "ee_object": _distance_metrics(samples.ee_perceived_m, samples.ee_true_m),
        "object_pairs": _distance_metrics(samples.pair_perceived_m, samples.pair_true_m),
    }


def _distance_metrics(perceived: Sequence[float], true: Sequence[float]) -> dict[str, Any]:
    if not perceived:
        return {"count": 0}
    return dict(m.distance_metrics(np.array(perceived), np.array(true), MIN_TRUE_DISTANCE_M))


def _reward_metrics(samples: _Samples) -> dict[str, Any]:
    """Value-order correlation is taken up to the frame an episode first succeeds: after it the task is done and
    the reward is flat by design (the object rests at the goal), so the order of those frames is noise.
    ``value_order_spearman_whole_episode`` keeps every frame. ``value_order_spearman_env`` is the same measure of the
    env's own dense reward on the same frames: the most a perceived reward of that formula can reach. Frames whose
    env reward is NaN (a scene without one) are left out of the comparisons with it."""
    value_order, value_order_whole, value_order_env, env_rho = [], [], [], []
    for episode, series in sorted(samples.reward_series.items()):
        values = np.array([row[:3] for row in series], dtype=np.float64)
        success = np.array([row[3] for row in series], dtype=bool)
        env_rho.append(_finite_spearman(values[:, 1], values[:, 2]))
        if samples.episode_success.get(episode) and success.any():
            first = int(np.argmax(success))
            value_order.append(m.spearman(values[: first + 1, 0], values[: first + 1, 1]))
            value_order_env.append(_finite_spearman(values[: first + 1, 0], values[: first + 1, 2]))
            value_order_whole.append(m.spearman(values[:, 0], values[:, 1]))

    def mean(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return float(np.mean(finite)) if finite else math.nan

    finite_env = [v for v in env_rho if not math.isnan(v)]
    rows = np.array([row[1:3] for series in samples.reward_series.values() for row in series], dtype=np.float64)
    rows = rows.reshape(-1, 2)
    rows = rows[np.isfinite(rows).all(axis=1)]
    error = np.abs(rows[:, 0] - rows[:, 1])
    return {
        "frames": samples.reward_frames,
        "valid_fraction": _ratio(samples.reward_frames - samples.reward_invalid, samples.reward_frames),
        "episodes": len(samples.reward_series),
        "successful_episodes": sum(1 for e in samples.reward_series if samples.episode_success.get(e)),
        "value_order_spearman": mean(value_order),
        "value_order_spearman_whole_episode": mean(value_order_whole),
        "value_order_spearman_env": mean(value_order_env),
        "env_spearman": float(np.median(finite_env)) if finite_env else math.nan,
        # Per episode, long plateaus (the object resting before it is touched or after it arrived) make Spearman
        # rank sub-millimetre differences; the pooled value and the absolute errors are not affected by that.
        "env_spearman_pooled": m.spearman(rows[:, 0], rows[:, 1]),
        "abs_error_median": float(np.median(error)) if error.size else math.nan,
        "abs_error_p95": float(np.percentile(error, 95)) if error.size else math.nan,
    }


def _finite_spearman(x: np.ndarray, y: np.ndarray) -> float:
    both = np.isfinite(x) & np.isfinite(y)
    return m.spearman(x[both], y[both])


def check_evaluable(metrics: Mapping[str, Any]) -> None:
    """Raise when a report would hold no score at all (no frame evaluated), naming the likely cause."""
    frames = metrics["frames"]
    if frames["evaluated"] > 0:
        return
    causes = []
    if metrics["input"]["missing_topics"]:
        causes.append(f"the bag has no {', '.join(metrics['input']['missing_topics'])}")
    if not metrics["input"]["has_ground_truth"]:
        causes.append("the bag has no ground-truth topic")
    elif frames["without_ground_truth"]:
        causes.append(f"{frames['without_ground_truth']} frames had no ground truth within sync.tolerance_s of "
                      "their stamp")
    if metrics["input"]["unexpected_types"]:
        causes.append(f"unexpected message types: {', '.join(metrics['input']['unexpected_types'])}")
    if frames["failure_reasons"]:
        causes.append(f"every frame failed: {next(iter(frames['failure_reasons']))}")
    raise EvaluationError("no frame could be evaluated" + (f": {'; '.join(causes)}" if causes else ""))

