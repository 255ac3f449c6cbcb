"""``tsg eval BAG``: replay a bag offline through the node's own code and score the graphs against ground truth.

Replay is exactly the node's path, minus DDS: camera messages go through the same :class:`FrameSynchronizer` (with
the node's topics, :func:`input_topic_names`), are decoded by the same :func:`frame_from_msgs` and processed by the
same :class:`ScenePipeline`. Every completed frame is processed (offline, nothing is dropped for being late), so a
run is deterministic. The candidate edges are the graph's claims before pruning (``SceneGraph.candidates``, with
their trust features); ``kept`` means trust >= the pipeline's threshold, exactly what the node publishes.

Scoring (all in the ground truth's frame; the bag's ``/tf_static``/``/tf`` give the camera pose in it):

* Matching: per frame, perceived objects are matched to ground-truth objects of the *same label* by the Hungarian
  algorithm on centroid distance, gated at :data:`MATCH_GATE_M` (the most pairs within the gate, then the least
  total distance).
* Evaluable objects: a ground-truth object counts for detection, relations and distances only when its whole box
  projects inside the image (an object cut by the image border has no well-defined visible extent) and it is not
  fully occluded. A perceived object is *not evaluable* when it is matched to an object that is not, or unmatched
  with its centroid inside the box, grown by :data:`MATCH_GATE_M` on every side, of an object of its label that is
  not evaluable (likely the visible part of a cut object; an unmatched object anywhere else is a false positive).
  Edges touching a perceived object that is not evaluable are excluded and counted (except on support surfaces, below).
* Detection: recall is matched evaluable objects / evaluable objects, overall and per label. False positives are
  the perceived objects that are neither matched nor not evaluable; precision is matched / (matched + false
  positives). Two causes of misses are counted over evaluable objects: fewer visible pixels than the detector's
  ``min_pixels`` (its pixel count in the frame's instance-id image, what the 'sim' detector counts; without one, the
  area of its projected box), and, for the 'sim' detector, an ``instance_id:label`` that is not in
  ``detector.sim_labels`` (also a warning naming the labels).
* A qualitative candidate edge ``a predicate b`` is *correct* when both ends are matched and the predicate holds
  between their ground-truth boxes (:func:`relations_from_boxes`, same settings, camera axes from the ground-truth
  camera pose). True edges are the correct candidates; recall of kept edges is kept-and-correct / true.
* Support surfaces (:data:`SUPPORT_LABELS`, the table): no view holds one whole, so none is evaluable, but whether an
  object rests on one depends only on its top face, which the view holds. A perceived support surface that is not
  evaluable stands for the true one of its label it is matched to or whose box, grown by the gate, holds its centroid
  (when some of that one is in view: its visible fraction is not 0), and its ``on_top_of`` edges with objects that
  are not excluded (either way round) are scored against that true box; its other edges stay excluded. The truth's
  ``on_top_of`` edges between an evaluable object and a support surface in view count among the true edges.
* Distances: every pair of matched evaluable objects (perceived vs true centroid distance), and the end effector
  (from the ee-pose topic, as the robot knows it) to every matched evaluable object except the robot and the support
  surface (``EE_EXCLUDED_LABELS``), against the true grasp point to true centre.
* Reward: for tasks with a goal, the env's dense reward formula on perceived positions, ``-|p - goal|`` with ``p``
  the perceived centroid of the highest-scoring object labelled like the goal's object (the end effector's pose for
  FetchReach); value-order correlation is Spearman of that reward against time on successful episodes.

Bad input never stops a report: unknown message types, undecodable messages and messages of an unexpected type on
the camera or ground-truth topics are skipped and counted, frames the pipeline rejects or whose ground truth is
invalid (non-finite boxes, repeated ids) are counted with their reason, frames whose stamp does not advance (by
less than :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` back), colour images that never complete a frame and frames
without ground truth are skipped, counted and warned of, and a bag that ends early yields the metrics of what was
read, with the error in ``input.read_error``. A jump back of more than JUMP_BACK_NS is a clock reset (a simulator
reset, a bag played twice): the frames after it start a new sequence, as the node and ``tsg label`` start one, and
are matched only with the tf of their own timeline and with the ground truth and poses of their own pass, told apart
by log time whether or not those streams jump back too (a stream that stopped before the reset jumps back less).
Frames scored without a tf path from the camera to the ground truth's frame (the graph frame is taken as the truth
frame) are counted in ``frames.graph_frame_taken_as_truth_frame``. A bag without ground truth (a robot's own
recording) still gives timing and frame counts, with exit code 0.

Only the topics the replay uses are decoded (camera inputs, ground truth, end-effector pose, ``/tf``,
``/tf_static``); the messages of every other topic are counted from the bag's index (``input.bag_topics``).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from trusted_scene_graph.clock import JUMP_BACK_NS, follow_newest, jumped_back, seconds_to_ns
from trusted_scene_graph.config.nodes import TF_STATIC_TOPIC, TF_TOPIC, input_topic_names
from trusted_scene_graph.dataset import BagReader
from trusted_scene_graph.dataset.messages import GROUND_TRUTH_TYPE
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.evaluation import EvaluationError, EvaluationWarning
from trusted_scene_graph.evaluation import metrics as m
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer, express_in
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.perception.detector import BACKGROUND_INSTANCE_ID, SimDetector
from trusted_scene_graph.pipeline.messages import frame_from_msgs, stamp_to_ns
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.pipeline.sync import FrameSynchronizer
from trusted_scene_graph.relations.geometric import (
    QUALITATIVE_PREDICATES,
    relations_from_boxes,
)
from trusted_scene_graph.text import plural

GROUND_TRUTH_TOPIC = "/ground_truth"
TF_TOPICS = (TF_STATIC_TOPIC, TF_TOPIC)
EE_POSE_TYPE = "geometry_msgs/msg/PoseStamped"
MATCH_GATE_M = 0.20
# Surfaces other objects stand on. No view holds one whole (the true table is a box from the floor to its top), so
# none is ever evaluable, but whether an object rests on one depends only on its top face, which the view holds: their
# on_top_of edges are scored (see the module docstring).
SUPPORT_LABELS = ("table",)
EE_EXCLUDED_LABELS = ("gripper", *SUPPORT_LABELS)
MIN_TRUE_DISTANCE_M = 0.10  # SpatialVLM-style ratio metrics only for pairs at least this far apart
# A frame is scored once the bag's log time is this far past the log time at which the frame completed, so ground
# truth and the end-effector pose logged a little after the images are still found. Measured in log time only: a
# recorder's clock can be far from the stamps' (sim-time stamps, a bag re-recorded from a replay).
LOOKAHEAD_NS = 500_000_000
# Ground truth and poses are kept this long in log time after they were logged, before the colour image of the frame
# being scored (frames are scored in log order), so memory stays bounded however long the bag. A clock reset that the
# camera sees (a jump back of more than JUMP_BACK_NS) brings the stamps of the pass before it back at least that much
# log time later (the clock has to run the jump again; log time runs at least as fast as the stamps of a simulator
# not faster than real time): an earlier pass's entries are then gone before the new pass's frames reach their stamps,
# even for a frame whose own pass has nothing at its stamp. The cost: a stream logged more than this ahead of the
# colour images (they reach the recorder later than the small messages stamped like them) is not found.
KEEP_LOGGED_NS = JUMP_BACK_NS
# Message types accepted on each synchroniser input; anything else on those topics is counted, not decoded.
_INPUT_TYPES = {
    "color": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "depth": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "instances": ("sensor_msgs/msg/Image",),
}
_QUALITATIVE = frozenset(QUALITATIVE_PREDICATES)
_ON_TOP_OF = QUALITATIVE_PREDICATES.index("on_top_of")




class _Columns:
    """Per-item samples (one row per edge, pair, ...) in typed numpy columns, appended one frame's arrays at a time
    and joined when read: a few bytes per item, where a Python list holds a boxed object of tens of bytes."""

    def __init__(self, **dtypes: Any) -> None:
        self._dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}

    def append(self, **columns: Sequence[Any]) -> None:
        """Add one frame's rows: every column, all of the same length."""
        if set(columns) != set(self._dtypes):
            raise EvaluationError(f"columns {sorted(columns)} given, expected {sorted(self._dtypes)}")
        arrays = {name: np.asarray(values, dtype=self._dtypes[name]).reshape(-1) for name, values in columns.items()}
        lengths = {name: array.size for name, array in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise EvaluationError(f"columns differ in length: {lengths}")
        if next(iter(lengths.values())) == 0:
            return
        for name, array in arrays.items():
            self._parts[name].append(array)

    def __getitem__(self, name: str) -> np.ndarray:
        parts = self._parts[name]
        if len(parts) != 1:
            # Joined once and kept as the only part: reading again is free and the frames' arrays are released.
            parts[:] = [np.concatenate(parts) if parts else np.zeros(0, self._dtypes[name])]
        return parts[0]

    def __len__(self) -> int:
        return int(self[next(iter(self._dtypes))].size)


@dataclass
class _Samples:
    """Everything the metrics need, accumulated over frames. Per-item samples are :class:`_Columns`, read as arrays
    by column name (``samples.edges["trust"]``)."""

    # Qualitative candidate edges: trust, correct, kept (trust >= threshold), predicate as its index in
    # QUALITATIVE_PREDICATES.
    edges: _Columns = field(default_factory=lambda: _Columns(trust=np.float64, correct=np.bool_, kept=np.bool_,
                                                             predicate=np.uint8, source=np.uint8,
                                                             episode=np.int64, representative=np.bool_))
    # The trust features (float32) of the representative edges (one per fact: see trust.assess.CandidateEdges), one
    # array per frame, in the order of ``edges``.
    edge_features: list[np.ndarray] = field(default_factory=list)
    # Per episode: "<task>/episode-<n>@<fingerprint of its first scored ground truth>" (scene_fingerprint), the group
    # of its edges in a training table. Groups name scenes, not bag folders: the same scene evaluated twice (another
    # detector, a renamed copy) is one group, and two different bags with one folder name are two.
    episode_scene: dict[int, str] = field(default_factory=dict)
    # Per episode key (:meth:`episode_key`): how the metrics name it, its ground-truth number (plus the pass, for a
    # number met again after a clock reset: a second run in the bag, or the bag played twice).
    episode_names: dict[int, str] = field(default_factory=dict)
    _episode_keys: dict[tuple[int, int], int] = field(default_factory=dict)
    threshold: float = math.nan  # the pipeline's pruning threshold (the config's override or the model's)
    trust_model: str = ""  # which trust model gave the trust
    threshold_source: str = "model"  # "model": the trust model's own threshold; "trust.threshold": the config's
    edges_excluded: int = 0
    kept_per_frame: list[int] = field(default_factory=list)
    # Edges that hold between evaluable ground-truth objects, and on_top_of with a support surface in view.
    true_edges_ground_truth: int = 0
    pairs: _Columns = field(default_factory=lambda: _Columns(perceived_m=np.float64, true_m=np.float64))
    # End effector to object: distances, the frame's episode and the object's label as its index in ee_labels.
    ee: _Columns = field(default_factory=lambda: _Columns(perceived_m=np.float64, true_m=np.float64,
                                                          episode=np.int64, label=np.int32))
    ee_labels: list[str] = field(default_factory=list)
    # Per episode: (step, reward on perceived positions, the env's reward, success) per frame.
    reward_series: dict[int, list[tuple[int, float, float, bool]]] = field(default_factory=lambda: defaultdict(list))
    reward_frames: int = 0
    reward_invalid: Counter[str] = field(default_factory=Counter)  # reason -> frames whose reward had no position
    episode_success: dict[int, bool] = field(default_factory=dict)
    timing_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # Detection, over evaluable ground-truth objects and the perceived objects that are scored (see the module
    # docstring): totals, and per label.
    gt_objects: int = 0
    matched: int = 0
    perceived: int = 0
    false_positives: int = 0
    perceived_not_evaluable: int = 0
    centroid_errors: _Columns = field(default_factory=lambda: _Columns(error_m=np.float64))
    gt_by_label: Counter[str] = field(default_factory=Counter)
    matched_by_label: Counter[str] = field(default_factory=Counter)
    false_positives_by_label: Counter[str] = field(default_factory=Counter)
    below_min_pixels_by_label: Counter[str] = field(default_factory=Counter)
    min_pixels: int | None = None  # the detector's size threshold the pixel counts were compared with
    pixels_from_projected_box: int = 0  # objects measured by their projected box (the frame had no instance image)
    # 'sim' detector: evaluable objects whose 'instance_id:label' is not in its labels, per label, and their ids.
    not_in_sim_labels: Counter[str] = field(default_factory=Counter)
    not_in_sim_labels_ids: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    @property
    def edge_predicate(self) -> np.ndarray:
        """Predicate names of the edges (built on demand from the stored codes)."""
        return np.array(QUALITATIVE_PREDICATES, dtype=object)[self.edges["predicate"]]

    def ee_label_code(self, label: str) -> int:
        if label not in self.ee_labels:
            self.ee_labels.append(label)
        return self.ee_labels.index(label)

    def episode_key(self, timeline: int, episode: int) -> int:
        """The key of ground-truth ``episode`` on the camera's ``timeline`` (its passes between clock resets):
        episodes are numbered per run, so a number met again on a later timeline is another episode, whose frames
        must not join the first one's series. Keys count the episodes in the order they are met."""
        key = self._episode_keys.get((timeline, episode))
        if key is None:
            key = self._episode_keys[(timeline, episode)] = len(self._episode_keys)
            earlier = sum(1 for _, number in self._episode_keys if number == episode) - 1
            self.episode_names[key] = f"{episode}" if earlier == 0 else f"{episode} (pass {earlier + 1})"
        return key

    def ee_series(self) -> dict[tuple[int, str], np.ndarray]:
        """(episode, label) -> rows of (perceived, true) end-effector distance in frame order, sorted by key."""
        episode, code = self.ee["episode"], self.ee["label"]
        if episode.size == 0:
            return {}
        rank = np.argsort(np.argsort(np.array(self.ee_labels, dtype=object)))  # label code -> rank of its name
        order = np.lexsort((rank[code], episode))  # stable: frame order within a series
        episode, code = episode[order], code[order]
        starts = np.flatnonzero(np.r_[True, (episode[1:] != episode[:-1]) | (code[1:] != code[:-1])])
        values = np.stack([self.ee["perceived_m"], self.ee["true_m"]], axis=1)[order]
        return {(int(episode[s]), self.ee_labels[int(code[s])]): rows
                for s, rows in zip(starts, np.split(values, starts[1:]), strict=True)}


def scene_fingerprint(task: str, labels: Sequence[str], centres_m: np.ndarray, sizes_m: np.ndarray) -> str:
    """Eight hex digits of SHA-256 over a frame's ground truth (task, labels, centres and sizes to 0.1 mm): the
    identity of a scene. Rounding keeps the fingerprint the same for the same scene read back on another machine."""
    digest = hashlib.sha256(task.encode())
    for label, centre, size in zip(labels, np.round(centres_m, 4), np.round(sizes_m, 4), strict=True):
        digest.update(label.encode() + b"\0" + centre.tobytes() + size.tobytes())
    return digest.hexdigest()[:8]


@dataclass
class _Counts:
    camera_frames: int = 0
    evaluated: int = 0
    without_ground_truth: int = 0
    out_of_order: int = 0
    incomplete: int = 0  # colour images that never completed a frame (another camera input missing or late)
    graph_frame_taken_as_truth_frame: int = 0  # evaluated frames without a tf path from the camera to the truth frame
    extrinsic_differs_from_tf: int = 0  # 'static': frames whose camera pose in the tf is not the config's
    ee_pose_not_in_truth_frame: int = 0  # evaluated frames whose end-effector pose the tf cannot put in the truth frame
    failed: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)  # texts of the EvaluationWarnings issued while replaying
    episodes: set[int] = field(default_factory=set)


@dataclass
class _Pending:
    stamp_ns: int
    msgs: dict[str, Any]
    completed_log_ns: int  # log time of the message that completed the frame
    colour_log_ns: int  # log time of its colour image: its ground truth and pose are those logged nearest (_Stamped)
    timeline: int = 0  # the colour images' clock jumps back before it: a new sequence starts at each


class _Entry(NamedTuple):
    log_ns: int
    stamp_ns: int
    timeline: int  # the stream's own jumps back before it
    msg: Any


class _Stamped:
    """The messages of one stream (ground truth, end-effector poses), each with its stamp, its log time and its
    timeline in the stream: a message stamped more than :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the
    stream's newest starts the next (:func:`~trusted_scene_graph.clock.jumped_back`, each stream judged against
    itself, as every buffer here is).

    After a clock reset (a simulator reset, a bag played twice) a pass's messages are stamped like the pass's before
    it, and the streams need not agree on the reset: one that stopped a while before it jumps back less than the
    camera, perhaps less than JUMP_BACK_NS (no jump at all, judged alone), so timelines are not paired by number.
    :meth:`nearest` tells the passes apart by log time instead: a pass's messages are logged with its frames, another
    pass's a whole pass earlier or later."""

    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()  # in log order: the bag is read in log order
        self._timeline = 0
        self._newest_ns: int | None = None

    def add(self, stamp_ns: int, log_ns: int, msg: Any) -> None:
        self._newest_ns, jumped = follow_newest(stamp_ns, self._newest_ns)
        self._timeline += jumped
        self._entries.append(_Entry(log_ns, stamp_ns, self._timeline, msg))

    def nearest(self, stamp_ns: int, log_ns: int, tolerance_ns: int) -> Any | None:
        """The message for a frame stamped ``stamp_ns`` whose colour image was logged at ``log_ns``, or None.

        Of the messages stamped within ``tolerance_ns`` of the frame, the one logged nearest ``log_ns`` names the
        frame's pass: the messages of its timeline logged within JUMP_BACK_NS of it. Of those, the one stamped
        nearest the frame is taken (on a tie, the one logged nearest): within a pass the stamp decides, as it did
        before there were passes. Whichever streams saw the reset, another pass's messages do not answer a frame whose
        own pass has one near its stamp, logged nearer the frame; nor, being forgotten by then (KEEP_LOGGED_NS), one
        whose pass has none, after a reset the camera saw."""
        candidates = [entry for entry in self._entries if abs(entry.stamp_ns - stamp_ns) <= tolerance_ns]
        if not candidates:
            return None
        anchor = min(candidates, key=lambda entry: abs(entry.log_ns - log_ns))
        same_pass = [entry for entry in candidates
                     if entry.timeline == anchor.timeline and abs(entry.log_ns - anchor.log_ns) <= JUMP_BACK_NS]
        return min(same_pass, key=lambda entry: (abs(entry.stamp_ns - stamp_ns), abs(entry.log_ns - log_ns))).msg

    def forget_logged_before(self, log_ns: int) -> None:
        """Drop the messages logged before ``log_ns`` (see :data:`KEEP_LOGGED_NS`)."""
        while self._entries and self._entries[0].log_ns < log_ns:
            self._entries.popleft()

    def __len__(self) -> int:
        return len(self._entries)


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
    threshold = float(pipeline.trust_threshold)
    samples.threshold = threshold
    samples.threshold_source = "trust.threshold" if config["trust.threshold"] >= 0 else "model"
    if pipeline.trust.warning:
        _warn(counts.warnings, pipeline.trust.warning)
    samples.trust_model = pipeline.trust.model.description
    with BagReader(bag_path) as reader:
        missing = [topic for _, topic in inputs if topic not in reader.topics]
        sync = FrameSynchronizer([name for name, _ in inputs], seconds_to_ns(config["sync.tolerance_s"]),
                                 config["sync.buffer_size"])
        topic_to_name = {topic: name for name, topic in inputs}
        tf = TransformBuffer(max_age_ns=seconds_to_ns(config["extrinsic.tf_max_age_s"]))
        ground_truth, ee_poses = _Stamped(), _Stamped()
        pending: list[_Pending] = []
        unexpected_types: Counter[str] = Counter()
        last_stamp_ns = -1
        episode = None
        # Clock resets (a simulator reset, a bag played twice): each stream judged against itself, as the synchroniser
        # and the tf buffer judge theirs (trusted_scene_graph.clock). The colour images' jumps number the camera's
        # timelines, each a new sequence; a frame's ground truth and pose are those of the pass logged with it
        # (_Stamped), whether or not their streams saw the jump.
        camera_timeline = scoring_timeline = 0
        newest_colour_ns: int | None = None
        # Colour images not yet part of a frame, (stamp, log time): for counts.incomplete and the frame's log time.
        waiting_colour: list[tuple[int, int]] = []
        # Only the topics the replay uses are decoded (a robot bag's point clouds or logs would cost more than the
        # pipeline); the others are counted from the bag's index.
        used_topics = {*topic_to_name, *TF_TOPICS, ground_truth_topic, ee_topic}
        total = sum(n for topic, n in reader.message_counts.items() if topic in used_topics)
        read = 0
        truth_with_gripper = truth_with_goal = 0
        scorer = _FrameScorer(config, samples, threshold)

        def enough() -> bool:
            processed = counts.evaluated + counts.without_ground_truth + sum(counts.failed.values())
            return max_frames is not None and processed >= max_frames

        def score_ready(now_ns: int | None, timeline_before_ns: int | None = None) -> None:
            """Score the frames completed LOOKAHEAD_NS of log time before ``now_ns`` (all, for None), and those of
            the timeline before one starting at ``timeline_before_ns`` (stamped more than JUMP_BACK_NS after it)."""
            nonlocal last_stamp_ns, episode, scoring_timeline
            while pending and (now_ns is None or now_ns - pending[0].completed_log_ns >= LOOKAHEAD_NS
                               or (timeline_before_ns is not None
                                   and jumped_back(timeline_before_ns, pending[0].stamp_ns))):
                item = pending.pop(0)
                if enough():
                    continue
                new_timeline = item.timeline != scoring_timeline
                if new_timeline:  # the clock jumped back: a new sequence, which no stamp of the old one precedes
                    scoring_timeline, last_stamp_ns = item.timeline, -1
                if item.stamp_ns <= last_stamp_ns:
                    counts.out_of_order += 1  # less than JUMP_BACK_NS back: a late frame, not a new timeline
                    continue
                last_stamp_ns = item.stamp_ns
                truth = ground_truth.nearest(item.stamp_ns, item.colour_log_ns, sync.tolerance_ns)
                new_episode = truth is not None and truth.episode != episode
                if new_timeline or (new_episode and episode is not None):
                    pipeline.start_sequence()  # as the node starts one at a reset, and tsg label at either
                if new_episode:
                    episode = truth.episode
                ee_pose = ee_poses.nearest(item.stamp_ns, item.colour_log_ns, sync.tolerance_ns)
                _process(item, truth, ee_pose, pipeline, tf, config, scorer, counts)
                ground_truth.forget_logged_before(item.colour_log_ns - KEEP_LOGGED_NS)
                ee_poses.forget_logged_before(item.colour_log_ns - KEEP_LOGGED_NS)
                tf.forget_before(item.stamp_ns)

        def add_camera_input(name: str, message: Any) -> None:
            """Into the synchroniser; a frame it completes waits in ``pending`` for its ground truth."""
            nonlocal camera_timeline, newest_colour_ns
            stamp_ns = stamp_to_ns(message.msg.header.stamp)
            if name == "color":
                newest_colour_ns, jumped = follow_newest(stamp_ns, newest_colour_ns)
                if jumped:
                    camera_timeline += 1
                    counts.incomplete += len(waiting_colour)  # the synchroniser drops them at the jump
                    waiting_colour.clear()
                waiting_colour.append((stamp_ns, message.log_time_ns))
            if sync.add(name, stamp_ns, message.msg):
                stamp, msgs = sync.take_latest()
                counts.camera_frames += 1
                # Colour images stamped before the frame's can no longer complete one (the synchroniser's rule).
                counts.incomplete += sum(1 for s, _ in waiting_colour if s < stamp)
                # The frame's stamp is its colour image's (the synchroniser's anchor); the last one so stamped.
                colour_log_ns = next((log for s, log in reversed(waiting_colour) if s == stamp), message.log_time_ns)
                waiting_colour[:] = [(s, log) for s, log in waiting_colour if s > stamp]
                pending.append(_Pending(stamp, msgs, message.log_time_ns, colour_log_ns, camera_timeline))

        for message in reader.messages(used_topics):
            read += 1
            if progress is not None and read % 50 == 0:
                progress(read, total)
            if message.topic in topic_to_name:
                name = topic_to_name[message.topic]
                if message.msgtype not in _INPUT_TYPES[name]:
                    unexpected_types[f"{message.topic} ({message.msgtype})"] += 1
                else:
                    add_camera_input(name, message)
            elif message.topic in TF_TOPICS and message.msgtype == "tf2_msgs/msg/TFMessage":
                static = message.topic == TF_STATIC_TOPIC
                for transform in [] if static else message.msg.transforms:
                    stamp_ns = stamp_to_ns(transform.header.stamp)
                    if tf.restarts(transform.child_frame_id, stamp_ns):
                        # The tf buffer drops the frame's history on it: first score the old timeline's frames,
                        # with the old transforms (tsg label does the same at a jump of the colour images).
                        score_ready(message.log_time_ns, timeline_before_ns=stamp_ns)
                tf.add(message.msg, static=static)
            elif message.topic == ground_truth_topic:
                if message.msgtype == GROUND_TRUTH_TYPE:
                    ground_truth.add(stamp_to_ns(message.msg.header.stamp), message.log_time_ns, message.msg)
                    truth_with_gripper += bool(message.msg.has_gripper)
                    truth_with_goal += bool(message.msg.has_goal)
                else:
                    unexpected_types[f"{message.topic} ({message.msgtype})"] += 1
            elif message.topic == ee_topic and message.msgtype == EE_POSE_TYPE:
                ee_poses.add(stamp_to_ns(message.msg.header.stamp), message.log_time_ns, message.msg)
            score_ready(message.log_time_ns)
            if enough():
                break  # the rest of the bag would only be decoded and thrown away
        else:
            if reader.read_error is None:  # at a damage, the read error says that what follows is missing
                counts.incomplete += len(waiting_colour)  # the bag ended before they completed a frame
        score_ready(None)
        if progress is not None:
            progress(read, total)
        input_report = {
            "bag": str(Path(bag_path).resolve()),  # as provenance.bag: the report names the bag wherever it is read
            "messages_read": read,
            "missing_topics": missing,
            "skipped_types": dict(reader.skipped_types),
            "undecodable": dict(reader.undecodable),
            "unexpected_types": dict(unexpected_types),
            "read_error": reader.read_error,
            "ground_truth_topic": ground_truth_topic,
            "has_ground_truth": reader.topics.get(ground_truth_topic) == GROUND_TRUTH_TYPE,
            # What the bag can be scored on: ee distances need the ee pose and a gripper in the ground truth, the
            # reward a goal; the report marks targets the bag cannot have as not applicable.
            "ground_truth_with_gripper": truth_with_gripper,
            "ground_truth_with_goal": truth_with_goal,
            "ee_pose_topic": ee_topic,
            "has_ee_pose": reader.topics.get(ee_topic) == EE_POSE_TYPE,
            "bag_topics": {topic: {"type": msgtype, "messages": reader.message_counts.get(topic, 0),
                                   "read": topic in used_topics}
                           for topic, msgtype in sorted(reader.topics.items())},
            "messages_not_read": sum(n for topic, n in reader.message_counts.items() if topic not in used_topics),
        }
    metrics = compute_metrics(samples, counts, config, input_report)
    # A bag without ground truth (a user's own robot recording) still measures timing and frame counts.
    timed_only = not input_report["has_ground_truth"] and counts.without_ground_truth > 0
    ok = (counts.evaluated > 0 or timed_only) and reader.read_error is None
    return EvalResult(metrics, samples, 0 if ok else 1)


def nearest_by_stamp(by_stamp: dict[int, Any], stamp_ns: int, tolerance_ns: int) -> Any | None:
    """The entry stamped nearest ``stamp_ns`` within ``tolerance_ns`` (exact first), or None."""
    exact = by_stamp.get(stamp_ns)
    if exact is not None:
        return exact
    best = min(by_stamp, key=lambda s: abs(s - stamp_ns), default=None)
    return by_stamp[best] if best is not None and abs(best - stamp_ns) <= tolerance_ns else None


def forget_before_lookahead(by_stamp: dict[int, Any], stamp_ns: int) -> None:
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
    if config["extrinsic.source"] == "tf":
        # Exactly the node's step: the camera pose at the image stamp from the tf (a frame without one fails below).
        pipeline.camera_pose_from_tf(tf, camera_frame_id, item.stamp_ns)
    elif pipeline.static_extrinsic_differs_from_tf(tf, camera_frame_id, item.stamp_ns):
        # The config's extrinsic, as the node uses it. A bag whose tf puts the camera elsewhere is counted (and
        # warned about once): its graphs are not what the recorded robot's tf would give.
        _count_and_warn_once(
            counts, "extrinsic_differs_from_tf",
            f"the bag's tf places camera frame {camera_frame_id!r} in graph frame {graph_frame!r} elsewhere than the "
            "config's extrinsic.translation_m/rotation_xyzw (extrinsic.source 'static'), which the graphs use "
            "(frames.extrinsic_differs_from_tf counts them); to use the bag's camera pose, as the node does with tf, "
            "pass --set extrinsic.source=tf")
    start = time.perf_counter()
    try:
        frame = frame_from_msgs(msgs["color"], msgs.get("depth"), msgs["camera_info"], msgs.get("instances"),
                                rectified=config["topics.rectified"])
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
    episode = scorer.samples.episode_key(item.timeline, int(truth.episode))
    counts.episodes.add(episode)
    if camera_in_truth is None:
        # No tf from the camera to the truth frame: assume the graph frame is the ground truth's frame (the
        # config's static extrinsic). Counted, as every score then rests on that assumption.
        _count_and_warn_once(
            counts, "graph_frame_taken_as_truth_frame",
            f"the bag's tf does not connect camera frame {camera_frame_id!r} to the ground truth's frame "
            f"{truth_frame!r}: frames are scored taking the graph frame {graph_frame!r} as the truth frame, which "
            "holds only when the config's extrinsic places the camera as it was recorded "
            "(frames.graph_frame_taken_as_truth_frame counts them)")
        camera_in_truth = pipeline.camera_to_graph
    graph_to_truth = RigidTransform.from_matrix(camera_in_truth.matrix @ np.linalg.inv(pipeline.camera_to_graph.matrix))
    ee_position_m = None
    if ee_pose is not None:
        ee_position_m = ee_position_in(truth_frame, ee_pose, tf)
        if ee_position_m is None:
            _count_and_warn_once(
                counts, "ee_pose_not_in_truth_frame",
                f"the end-effector pose ({config['topics.ee_pose']}) is in frame {ee_pose.header.frame_id!r}, which "
                f"the bag's tf does not connect to the ground truth's frame {truth_frame!r}: those frames have no "
                "end-effector distances (frames.ee_pose_not_in_truth_frame counts them)")
    scorer.score(graph, truth, episode, ee_position_m, pipeline, camera_in_truth, graph_to_truth, frame.intrinsics,
                 instances=frame.instances)


def ee_position_in(truth_frame: str, ee_pose: Any, tf: TransformBuffer) -> np.ndarray | None:
    """The end effector's position (a ``PoseStamped``) in ``truth_frame``: as it is when the pose is in that frame
    (or names none), else moved there with the bag's tf at the pose's stamp, as the live node moves a pose into its
    graph frame; None when the tf has no such transform."""
    position = ee_pose.pose.position
    frame_id, xyz = express_in(tf, truth_frame, ee_pose.header.frame_id, [position.x, position.y, position.z],
                               stamp_to_ns(ee_pose.header.stamp))
    return xyz if frame_id == truth_frame.lstrip("/") else None


def _count_and_warn_once(counts: _Counts, counter: str, warning: str) -> None:
    """Count a frame in ``counts.<counter>``; the first one also issues ``warning``."""
    setattr(counts, counter, getattr(counts, counter) + 1)
    if getattr(counts, counter) == 1:
        _warn(counts.warnings, warning, stacklevel=4)


def _warn(collected: list[str], text: str, stacklevel: int = 3) -> None:
    """Issue ``text`` as an :class:`EvaluationWarning` for library callers and keep it for the metrics."""
    collected.append(text)
    warnings.warn(text, EvaluationWarning, stacklevel=stacklevel)


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
    return message if len(message) <= 240 else message[:237] + "..."


class _FrameScorer:
    """Scores one frame's graph against its ground truth into :class:`_Samples`."""

    def __init__(self, config: Mapping[str, Any], samples: _Samples, threshold: float) -> None:
        self.config = config
        self.samples = samples
        self.threshold = threshold

    def _score_detection(self, graph: SceneGraph, objects: Sequence[Any], evaluable: np.ndarray,
                         match: Mapping[int, int], not_evaluable: set[int], pipeline: ScenePipeline,
                         visible: tuple[np.ndarray, bool]) -> None:
        """Recall over evaluable ground-truth objects, false positives among the perceived objects, and why an
        evaluable object may be missed: too few visible pixels, or an id and label the 'sim' detector does not map."""
        samples = self.samples
        pixels, projected = visible
        min_pixels = _detector_min_pixels(pipeline, self.config)
        samples.min_pixels = min_pixels
        sim_labels = pipeline.detector.labels_by_id if isinstance(pipeline.detector, SimDetector) else None
        matched_truth = set(match.values())
        for k in np.flatnonzero(evaluable):
            obj = objects[k]
            samples.gt_objects += 1
            samples.gt_by_label[obj.label] += 1
            if k in matched_truth:
                samples.matched += 1
                samples.matched_by_label[obj.label] += 1
            if pixels[k] < min_pixels:
                samples.below_min_pixels_by_label[obj.label] += 1
            # The background id is "not in the mask": no sim_labels entry could make it detectable.
            if (sim_labels is not None and obj.instance_id != BACKGROUND_INSTANCE_ID
                    and sim_labels.get(int(obj.instance_id)) != obj.label):
                samples.not_in_sim_labels[obj.label] += 1
                samples.not_in_sim_labels_ids[obj.label].add(int(obj.instance_id))
        if projected:
            samples.pixels_from_projected_box += int(evaluable.sum())
        samples.perceived += len(graph.objects)
        samples.perceived_not_evaluable += len(not_evaluable)
        for k, obj in enumerate(graph.objects):
            if k not in match and k not in not_evaluable:
                samples.false_positives += 1
                samples.false_positives_by_label[obj.label] += 1

    def score(self, graph: SceneGraph, truth: Any, episode: int, ee_position_m: np.ndarray | None,
              pipeline: ScenePipeline, camera_in_truth: RigidTransform, graph_to_truth: RigidTransform,
              intrinsics: Intrinsics, instances: np.ndarray | None = None) -> None:
        """Score ``graph`` against ``truth`` of ``episode`` (:meth:`_Samples.episode_key`); ``instances`` is the
        frame's instance-id image, when it has one."""
        samples = self.samples
        gt_ids = np.array([o.id for o in truth.objects], dtype=np.int64)
        gt_labels = [o.label for o in truth.objects]
        gt_centres = np.array([[o.pose.position.x, o.pose.position.y, o.pose.position.z] for o in truth.objects],
                              dtype=np.float64).reshape(-1, 3)
        gt_sizes = np.array([[o.size.x, o.size.y, o.size.z] for o in truth.objects], dtype=np.float64).reshape(-1, 3)
        if episode not in samples.episode_scene:
            samples.episode_scene[episode] = (
                f"{truth.task}/episode-{truth.episode}@"
                f"{scene_fingerprint(truth.task, gt_labels, gt_centres, gt_sizes)}")
        u_px, v_px, z_m = _project_boxes(gt_centres, gt_sizes, camera_in_truth, intrinsics)
        evaluable = _evaluable(truth.objects, u_px, v_px, z_m, intrinsics)
        perceived_in_truth = (graph_to_truth.apply(np.array([o.centroid_m for o in graph.objects]))
                              if graph.objects else np.zeros((0, 3)))
        match = _match(graph, perceived_in_truth, gt_labels, gt_centres)  # perceived index -> gt index
        # A perceived object left unmatched is not a false positive when it plausibly is the visible part of an
        # object of its label that is not evaluable (cut by the image border: its centroid is the visible part's,
        # too far from the true centre to match, but inside the true box): its centroid lies in the box of such an
        # object grown by the matching gate. Anywhere else it is a false positive, whatever else the image cuts.
        hidden_by_label: dict[str, list[int]] = {}
        for g in np.flatnonzero(~evaluable):
            hidden_by_label.setdefault(gt_labels[g], []).append(int(g))
        not_evaluable = set()
        for k, obj in enumerate(graph.objects):
            cut = hidden_by_label.get(obj.label)
            if (k not in match and cut
                    and _within_boxes(perceived_in_truth[k], gt_centres[cut], gt_sizes[cut], MATCH_GATE_M)):
                not_evaluable.add(k)
        not_evaluable |= {k for k, g in match.items() if not evaluable[g]}
        # A support surface counts when any of it is in view (the truth's visible fraction is not 0).
        support_in_view = np.array([o.label in SUPPORT_LABELS and not (o.visible_fraction == 0.0)
                                    for o in truth.objects], dtype=bool)
        supports = _support_matches(graph, perceived_in_truth, match, not_evaluable, gt_labels, support_in_view,
                                    gt_centres, gt_sizes)
        self._score_detection(graph, truth.objects, evaluable, match, not_evaluable, pipeline,
                              _visible_pixels(truth.objects, instances, u_px, v_px))
        samples.centroid_errors.append(error_m=[float(np.linalg.norm(perceived_in_truth[p] - gt_centres[g]))
                                                for p, g in match.items() if evaluable[g]])

        # Relations: truth from ground-truth boxes, seen from the ground-truth camera.
        forward_truth = camera_in_truth.rotation.apply([0.0, 0.0, 1.0])
        up_truth = camera_in_truth.rotation.apply([0.0, -1.0, 0.0])
        settings = pipeline.relation_settings
        true_edges = {(s, r.predicate, o) for r in relations_from_boxes(gt_ids, gt_centres, gt_sizes, forward_truth,
                                                                        settings, up_truth)
                      if r.predicate in _QUALITATIVE
                      for s, o in [(int(r.subject_id), int(r.object_id))]}
        index_of_gt_id = {int(i): k for k, i in enumerate(gt_ids)}
        samples.true_edges_ground_truth += sum(
            1 for s, predicate, o in true_edges
            if (evaluable[index_of_gt_id[s]] and evaluable[index_of_gt_id[o]])
            or (predicate == "on_top_of" and (evaluable[index_of_gt_id[s]] and support_in_view[index_of_gt_id[o]]
                                              or support_in_view[index_of_gt_id[s]] and evaluable[index_of_gt_id[o]])))
        candidates = graph.candidates  # the pipeline's claims before pruning, with their trust and features
        subject_not_evaluable = np.isin(candidates.subject, list(not_evaluable))
        object_not_evaluable = np.isin(candidates.object, list(not_evaluable))
        # on_top_of with a support surface on one side and a scored object (not one that is not evaluable) on the
        # other: judged against the surface's true box, which has the true top face.
        on_support = (candidates.predicate == _ON_TOP_OF) & (
            (np.isin(candidates.subject, list(supports)) & ~object_not_evaluable)
            | (np.isin(candidates.object, list(supports)) & ~subject_not_evaluable))
        excluded = (subject_not_evaluable | object_not_evaluable) & ~on_support
        samples.edges_excluded += int(excluded.sum())
        scored = np.flatnonzero(~excluded)
        truth_of = {**match, **supports}  # perceived index -> ground-truth index, support surfaces included
        correct = [ps in truth_of and po in truth_of
                   and (int(gt_ids[truth_of[ps]]), QUALITATIVE_PREDICATES[p], int(gt_ids[truth_of[po]])) in true_edges
                   for ps, po, p in zip(candidates.subject[scored].tolist(), candidates.object[scored].tolist(),
                                        candidates.predicate[scored].tolist(), strict=True)]
        trust = candidates.trust[scored]
        kept = trust >= self.threshold
        representative = candidates.representative[scored]
        samples.edges.append(trust=trust, correct=correct, kept=kept, predicate=candidates.predicate[scored],
                             source=candidates.source[scored], episode=np.full(scored.size, episode),
                             representative=representative)
        # One feature row per fact (an edge and its converse share it), for the training table.
        samples.edge_features.append(candidates.features[candidates.canonical[scored[representative]]])
        samples.kept_per_frame.append(int(kept.sum()))

        # Distances between matched, evaluable objects (centroid distance is frame-independent).
        matched = sorted((p, g) for p, g in match.items() if evaluable[g])
        pair_perceived_m, pair_true_m = [], []
        for i, (pa, ga) in enumerate(matched):
            for pb, gb in matched[i + 1:]:
                pair_perceived_m.append(float(np.linalg.norm(perceived_in_truth[pa] - perceived_in_truth[pb])))
                pair_true_m.append(float(np.linalg.norm(gt_centres[ga] - gt_centres[gb])))
        samples.pairs.append(perceived_m=pair_perceived_m, true_m=pair_true_m)

        # End effector (kinematics) to objects.
        truth_gripper = np.array([truth.gripper_position.x, truth.gripper_position.y, truth.gripper_position.z])
        ee_m = None
        if ee_position_m is not None and np.isfinite(ee_position_m).all() and truth.has_gripper:
            ee_m = ee_position_m
            scored = [(pa, ga) for pa, ga in matched if gt_labels[ga] not in EE_EXCLUDED_LABELS]
            samples.ee.append(perceived_m=[float(np.linalg.norm(perceived_in_truth[pa] - ee_m)) for pa, _ in scored],
                              true_m=[float(np.linalg.norm(gt_centres[ga] - truth_gripper)) for _, ga in scored],
                              episode=[episode] * len(scored),
                              label=[samples.ee_label_code(gt_labels[ga]) for _, ga in scored])

        # Reward on perceived positions, for tasks with a goal.
        if truth.has_goal:
            samples.reward_frames += 1
            goal = np.array([truth.goal_position.x, truth.goal_position.y, truth.goal_position.z])
            position = ee_m if not truth.goal_for else _best_by_label(graph, perceived_in_truth, truth.goal_for)
            samples.episode_success[episode] = bool(truth.is_success)
            if position is None:
                samples.reward_invalid[_no_reward_position_reason(truth, ee_position_m)] += 1
            else:
                samples.reward_series[episode].append(
                    (int(truth.step), -float(np.linalg.norm(position - goal)), float(truth.env_reward),
                     bool(truth.is_success)))


def _support_matches(graph: SceneGraph, perceived_in_truth: np.ndarray, match: Mapping[int, int],
                     not_evaluable: set[int], gt_labels: Sequence[str], support_in_view: np.ndarray,
                     gt_centres: np.ndarray, gt_sizes: np.ndarray) -> dict[int, int]:
    """Perceived index -> ground-truth index of the support surfaces (:data:`SUPPORT_LABELS`) among the perceived
    objects that are not evaluable: the true object they are matched to, or else the one of their label whose box,
    grown by the matching gate, holds their centroid (the nearest centre, if several), when some of it is in view
    (``support_in_view``). Of several perceived pieces of one true table (split by an object in front of it), only
    the one with the largest footprint stands for it: a claim on each would count one true edge several times."""
    pieces: dict[int, list[int]] = {}  # true support -> its perceived pieces
    for k in sorted(not_evaluable):
        label = graph.objects[k].label
        if label not in SUPPORT_LABELS:
            continue
        if k in match:
            holding = [match[k]] if support_in_view[match[k]] else []
        else:
            holding = [g for g, gt_label in enumerate(gt_labels) if gt_label == label and support_in_view[g]
                       and _within_boxes(perceived_in_truth[k], gt_centres[g][None], gt_sizes[g][None], MATCH_GATE_M)]
        if holding:
            truth = min(holding, key=lambda g: float(np.linalg.norm(perceived_in_truth[k] - gt_centres[g])))
            pieces.setdefault(truth, []).append(k)
    return {max(ks, key=lambda k: float(np.prod(graph.objects[k].size_m[:2]))): g for g, ks in pieces.items()}


def _within_boxes(point_m: np.ndarray, centres_m: np.ndarray, sizes_m: np.ndarray, margin_m: float) -> bool:
    """Whether ``point_m`` lies in any of the axis-aligned boxes (centres and sizes, (N, 3)) grown by ``margin_m`` on
    every side (boxes as the scorer takes them everywhere: axis-aligned in the truth frame)."""
    return bool(np.all(np.abs(point_m - centres_m) <= sizes_m / 2.0 + margin_m, axis=1).any())


def _no_reward_position_reason(truth: Any, ee_position_m: np.ndarray | None) -> str:
    """Why a frame with a goal has no position to reward (its ``reward.invalid_reasons`` key)."""
    if truth.goal_for:
        return f"no perceived {truth.goal_for!r}"
    if ee_position_m is None:
        return ("no end-effector position: no pose on the config's topics.ee_pose within sync.tolerance_s of the "
                "frame, or none the bag's tf places in the ground truth's frame")
    if not np.isfinite(ee_position_m).all():
        return "the end-effector pose is not finite"
    return "the ground truth has no gripper"


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


def _project_boxes(centres_m: np.ndarray, sizes_m: np.ndarray, camera_in_truth: RigidTransform,
                   intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image column ``u`` and row ``v`` (pixels) and depth ``z`` (metres) of the 8 corners of each box, each (N, 8).
    Corners behind the camera have meaningless (possibly infinite) ``u``, ``v``."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = centres_m[:, None, :] + signs[None, :, :] * sizes_m[:, None, :] / 2.0  # (N, 8, 3)
    truth_to_camera = np.linalg.inv(camera_in_truth.matrix)
    points = corners.reshape(-1, 3) @ truth_to_camera[:3, :3].T + truth_to_camera[:3, 3]
    z = points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * points[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * points[:, 1] / z + intrinsics.cy
    count = len(centres_m)
    return u.reshape(count, 8), v.reshape(count, 8), z.reshape(count, 8)


def _evaluable(objects: Sequence[Any], u_px: np.ndarray, v_px: np.ndarray, z_m: np.ndarray,
               intrinsics: Intrinsics) -> np.ndarray:
    """Objects whose whole box (corners from :func:`_project_boxes`) projects inside the image, in front of the
    camera, and that are not fully hidden."""
    if len(objects) == 0:
        return np.zeros(0, dtype=bool)
    inside = (z_m > 0) & (u_px >= 0) & (u_px <= intrinsics.width - 1) & (v_px >= 0) & (v_px <= intrinsics.height - 1)
    in_view = inside.all(axis=1)
    visible = np.array([not (o.visible_fraction == 0.0) for o in objects])  # NaN (unknown) counts as visible
    return in_view & visible


def _visible_pixels(objects: Sequence[Any], instances: np.ndarray | None, u_px: np.ndarray,
                    v_px: np.ndarray) -> tuple[np.ndarray, bool]:
    """Each ground-truth object's size in pixels as the detector's size filter sees it, and whether it was estimated
    from the projected box.

    With the frame's instance-id image: the object's pixel count in it, exactly what the 'sim' detector compares
    with ``min_pixels`` (occlusion by other objects included). Without one (a detector that needs none): the area of
    the bounding rectangle of the object's projected box, what a box detector's area filter compares (occlusion not
    included). Only meaningful for evaluable objects (whole box in view).
    """
    if instances is not None:
        ids, counts = np.unique(instances, return_counts=True)
        count_of = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        # The background id ("not in the mask") is not the object.
        return np.array([count_of.get(int(o.instance_id), 0) if o.instance_id != BACKGROUND_INSTANCE_ID else 0
                         for o in objects],
                        dtype=np.float64), False
    with np.errstate(invalid="ignore"):  # boxes behind the camera: inf - inf
        return np.ptp(u_px, axis=1) * np.ptp(v_px, axis=1), True


def _detector_min_pixels(pipeline: ScenePipeline, config: Mapping[str, Any]) -> int:
    """The size below which the pipeline's detector reports nothing: the 'sim' detector's own ``min_pixels`` (a
    detector passed in may differ from the config), else ``detector.min_pixels`` (also the box-area filter of
    'grounding_dino')."""
    detector = pipeline.detector
    return int(detector.min_pixels) if isinstance(detector, SimDetector) else int(config["detector.min_pixels"])


# ------------------------------------------------------------------------------------------------------- metrics


def compute_metrics(samples: _Samples, counts: _Counts, config: Mapping[str, Any],
                    input_report: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of ``samples``; warns (once) when the 'sim' detector could not report some evaluable objects
    because their id and label are not in its ``detector.sim_labels``.

    ``warnings`` lists, in this order, the bag's read error (the bag is damaged), the warnings issued while
    replaying (``counts.warnings``) and that one."""
    trust, correct, kept = samples.edges["trust"], samples.edges["correct"], samples.edges["kept"]
    target = float(config["trust.target_precision"])
    run_warnings = [input_report["read_error"]] if input_report.get("read_error") else []
    run_warnings += counts.warnings
    if samples.not_in_sim_labels:
        _warn(run_warnings, _sim_labels_warning(samples))
    skipped = skipped_frames(counts.out_of_order, counts.without_ground_truth, counts.incomplete,
                             bool(input_report.get("has_ground_truth", True)))
    if skipped:
        _warn(run_warnings, _skipped_warning(skipped))
    return {
        "warnings": run_warnings,
        "input": dict(input_report),
        "frames": {
            "camera_frames": counts.camera_frames,
            "evaluated": counts.evaluated,
            "failed": sum(counts.failed.values()),
            "failure_reasons": dict(counts.failed),
            "without_ground_truth": counts.without_ground_truth,
            "out_of_order": counts.out_of_order,
            "incomplete": counts.incomplete,
            "graph_frame_taken_as_truth_frame": counts.graph_frame_taken_as_truth_frame,
            "ee_pose_not_in_truth_frame": counts.ee_pose_not_in_truth_frame,
            "extrinsic_differs_from_tf": counts.extrinsic_differs_from_tf,
            "episodes": len(counts.episodes),
        },
        "detection": _detection_metrics(samples),
        "relations": _relation_metrics(samples, trust, correct, kept),
        "trust": {**_trust_metrics(trust, correct, target, samples.threshold), "model": samples.trust_model,
                  "threshold_source": samples.threshold_source},
        "distance": _distance_section(samples),
        "reward": _reward_metrics(samples),
        "timing": m.timing_summary(samples.timing_ms) if samples.timing_ms else {},
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else math.nan


def _detection_metrics(samples: _Samples) -> dict[str, Any]:
    errors = samples.centroid_errors["error_m"]
    labels = sorted(set(samples.gt_by_label) | set(samples.false_positives_by_label))
    return {
        "ground_truth_objects": samples.gt_objects,
        "perceived_objects": samples.perceived,
        "matched": samples.matched,
        "recall": _ratio(samples.matched, samples.gt_objects),
        "false_positives": samples.false_positives,
        "perceived_not_evaluable": samples.perceived_not_evaluable,
        # Over the perceived objects that are scored: those of objects that are not evaluable are neither.
        "precision": _ratio(samples.matched, samples.matched + samples.false_positives),
        "min_pixels": samples.min_pixels,
        "below_min_pixels": sum(samples.below_min_pixels_by_label.values()),
        "pixels_from_projected_box": samples.pixels_from_projected_box,
        "not_in_sim_labels": dict(sorted(samples.not_in_sim_labels.items())),
        "by_label": {label: {
            "ground_truth_objects": samples.gt_by_label[label],
            "matched": samples.matched_by_label[label],
            "recall": _ratio(samples.matched_by_label[label], samples.gt_by_label[label]),
            "false_positives": samples.false_positives_by_label[label],
            "below_min_pixels": samples.below_min_pixels_by_label[label],
        } for label in labels},
        "centroid_error_median_m": float(np.median(errors)) if errors.size else math.nan,
        "centroid_error_p95_m": float(np.percentile(errors, 95)) if errors.size else math.nan,
    }


def skipped_frames(out_of_order: int, without_ground_truth: int, incomplete: int,
                   has_ground_truth: bool = True) -> dict[str, int]:
    """The frames left unscored by cause ("out of order", "without ground truth", "incomplete"), those that are not
    zero, for the run's warning and ``tsg eval``'s summary line. Frames without ground truth count only when the bag
    has ground truth: without any, timing and counts are the result and the report says so instead."""
    causes = {"out of order": out_of_order, "without ground truth": without_ground_truth if has_ground_truth else 0,
              "incomplete": incomplete}
    return {cause: count for cause, count in causes.items() if count}


def _skipped_warning(skipped: Mapping[str, int]) -> str:
    why = {
        "out of order": ("frames.out_of_order: stamped at or before the frame scored before them, but less than "
                         f"{JUMP_BACK_NS / 1e9:g} s back; a longer jump back is a clock reset and starts a new "
                         "timeline"),
        "without ground truth": "frames.without_ground_truth: no ground truth within sync.tolerance_s of their stamp",
        "incomplete": ("frames.incomplete: colour images that never completed a frame, another camera input "
                       "missing or too late"),
    }
    return "frames were not scored: " + "; ".join(f"{plural(count, 'frame')} {cause} ({why[cause]})"
                                                  for cause, count in skipped.items())


def _sim_labels_warning(samples: _Samples) -> str:
    missing = ", ".join(
        f"'{label}' (instance id {', '.join(str(i) for i in sorted(samples.not_in_sim_labels_ids[label]))}, "
        f"{plural(count, 'evaluable object')})"
        for label, count in sorted(samples.not_in_sim_labels.items()))
    return (f"the 'sim' detector cannot report ground-truth objects labelled {missing}: their 'id:label' is not in "
            "detector.sim_labels, so they count as missed. Evaluate with config/benchmark.yaml (its sim_labels "
            "cover every label `tsg sim record` writes) or add them to detector.sim_labels.")


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
    codes = samples.edges["predicate"]
    return {
        **everything,
        "true_edges": int(correct.sum()),
        "kept": int(kept.sum()),
        "kept_per_frame": float(np.mean(samples.kept_per_frame)) if samples.kept_per_frame else math.nan,
        "recall_ground_truth": _ratio((correct & kept).sum(), samples.true_edges_ground_truth),
        "ground_truth_edges": samples.true_edges_ground_truth,
        "excluded_not_evaluable": samples.edges_excluded,
        "by_predicate": {p: summary(codes == code) for code, p in enumerate(QUALITATIVE_PREDICATES)
                         if (codes == code).any()},
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
    perceived = np.concatenate([samples.pairs["perceived_m"], samples.ee["perceived_m"]])
    true = np.concatenate([samples.pairs["true_m"], samples.ee["true_m"]])
    series = samples.ee_series()
    per_episode = {f"{samples.episode_names[episode]}:{label}": m.spearman(values[:, 0], values[:, 1])
                   for (episode, label), values in series.items()}
    rhos = np.array([r for r in per_episode.values() if not math.isnan(r)])
    # The pairs the median rho stands on: a series too short or too constant to rank has no rho.
    ranked_pairs = sum(len(values) for values, rho in zip(series.values(), per_episode.values(), strict=True)
                       if not math.isnan(rho))
    return {
        # Per episode, a held object's distance is nearly constant for many frames and its rank order is noise even
        # when every error is a millimetre or two; the pooled value ranks all frames of all episodes together.
        "spearman_pooled": m.spearman(samples.ee["perceived_m"], samples.ee["true_m"]),
        **_distance_metrics(perceived, true),
        "spearman": float(np.median(rhos)) if rhos.size else math.nan,
        "spearman_min": float(rhos.min()) if rhos.size else math.nan,
        "spearman_series": len(rhos),
        "spearman_pairs": ranked_pairs,
        "spearman_per_episode": per_episode,
        "ee_object": _distance_metrics(samples.ee["perceived_m"], samples.ee["true_m"]),
        "object_pairs": _distance_metrics(samples.pairs["perceived_m"], samples.pairs["true_m"]),
    }


def _distance_metrics(perceived: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    if perceived.size == 0:
        return {"count": 0}
    return dict(m.distance_metrics(perceived, true, MIN_TRUE_DISTANCE_M))


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
        "valid_fraction": _ratio(samples.reward_frames - sum(samples.reward_invalid.values()), samples.reward_frames),
        "invalid_reasons": dict(samples.reward_invalid.most_common()),
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
    """Raise when a report would hold no score at all (no frame evaluated), naming the likely cause.

    In a damaged bag (``input.read_error``) the topics and ground truth that were not found may lie after the damage:
    the error says so first, and speaks of the part before the damage rather than of the bag."""
    frames, inputs = metrics["frames"], metrics["input"]
    if frames["evaluated"] > 0:
        return
    damaged = bool(inputs.get("read_error"))
    causes = []
    if damaged:
        absent = [*inputs["missing_topics"],
                  *([] if inputs["has_ground_truth"] else [inputs.get("ground_truth_topic", GROUND_TRUTH_TOPIC)])]
        if absent:
            read = inputs["messages_read"]
            causes.append(f"before it, the bag has no {', '.join(absent)} ({plural(read, 'message')} read)")
    else:
        if inputs["missing_topics"]:
            causes.append(f"the bag has no {', '.join(inputs['missing_topics'])}")
        if not inputs["has_ground_truth"]:
            causes.append("the bag has no ground-truth topic")
    if inputs.get("undecodable"):
        # Before "no ground truth near the frames": messages that did not decode leave frames without it too.
        causes.append("messages that could not be decoded (written with another definition of their message type?): "
                      + ", ".join(f"{topic}: {count}" for topic, count in inputs["undecodable"].items()))
    if inputs["has_ground_truth"] and frames["without_ground_truth"]:
        causes.append(f"{frames['without_ground_truth']} frames had no ground truth within sync.tolerance_s of "
                      "their stamp")
    if inputs["unexpected_types"]:
        causes.append(f"unexpected message types: {', '.join(inputs['unexpected_types'])}")
    if frames["failure_reasons"]:
        causes.append(f"every frame failed: {next(iter(frames['failure_reasons']))}")
    head = ("the bag is damaged and no frame could be evaluated before the damage" if damaged
            else "no frame could be evaluated")
    raise EvaluationError(head + (f": {'; '.join(causes)}" if causes else ""))
