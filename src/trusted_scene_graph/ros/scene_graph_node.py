"""The scene-graph lifecycle node: camera topics in, ``/scene_graph``, ``/scene_graph/reward`` and a distance-query
service out.

Callbacks only convert messages and call the core (:class:`~trusted_scene_graph.pipeline.ScenePipeline`,
:class:`~trusted_scene_graph.reward.RewardTracker`, :func:`~trusted_scene_graph.reward.query.query_distance`).
Threading model (with a MultiThreadedExecutor):

- sensor subscriptions (``sensor`` group) only buffer messages in a :class:`FrameSynchronizer`, and wake the
  perception callback through a guard condition when a frame completes;
- perception (``perception`` group, mutually exclusive) takes the *latest* complete frame only, so a slow
  detector never builds a queue;
- the query service has its own group and answers from the last published graph (an atomic reference read),
  so it never waits behind perception, nor behind the diagnostics and progress timers (``timer`` group).

Rewards: for each processed frame, right after publishing the graph, the node publishes one
``trusted_scene_graph_msgs/DenseReward`` per ``reward.pairs`` entry on ``/scene_graph/reward`` (reliable, volatile,
:data:`REWARD_FRAMES_QUEUED` frames of every pair queued), from :meth:`RewardTracker.update`; a frame the pipeline
rejects (no graph) gets samples too, invalid (or held) with the reason (:meth:`RewardTracker.skip`). With no pairs
there is no reward publisher. A new episode (tracks, reward smoothing, held values and the ``progress`` baseline
forgotten, so two episodes never mix) starts at the first frame captured after a call of
``/scene_graph/reset_episode`` (``std_srvs/Trigger``: what an RL loop calls just before its environment's reset, so
that the reset's own observation is captured after it; frames captured before the call stay in the episode that
ended, however late perception takes them) or, while a call is pending, at a frame stamped at or before the previous
one (a simulator clock restarted after a short episode); and at a frame stamped more than
:data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the previous one (a simulator reset, a looped replay; the rule
of every stamped buffer here), or at the first frame whose colour image came after the colour stream itself jumped
back so (a slow detector's next frame after a restart, stamped after the frame it took before); a jump also serves a
pending call (:class:`~trusted_scene_graph.clock.EpisodeStarts`).
When such an episode starts because the clock went back, the pose histories drop the old timeline's poses
(:meth:`~trusted_scene_graph.reward.PoseHistory.restart`). ``tsg label`` restarts the same state at the same jumps, and
where a bag has ground truth, at its episode numbers.

Robot frames: ``topics.ee_pose`` (unless ``reward.ee_tf_frame`` is set) and ``topics.goal_pose``
(``geometry_msgs/PoseStamped``, best effort, depth 50, ``sensor`` group) fill the end-effector and goal pose
histories of a :class:`~trusted_scene_graph.reward.SideResolver`, which rewards and queries share, so "gripper" is
the kinematic pose when one lies within ``reward.ee_pose_max_age_s`` of the graph's stamp. A pose whose frame_id is not
``graph_frame`` is transformed into it with the node's tf buffer (when the node has one and it holds the transform
at the pose's stamp); otherwise it is kept as is and a reward or answer using it says the frames differ. With
``reward.ee_tf_frame`` set, the node subscribes ``/tf`` and ``/tf_static`` whatever ``extrinsic.source`` is, and for
each frame it takes (also one the pipeline rejects) adds the end effector's pose looked up at the frame's stamp
(``graph_frame <- ee_tf_frame``) before the rewards are computed (a miss is shown on ``/diagnostics``). The pose
histories are guarded by one lock: poses arrive on the sensor group and are read by perception (rewards) and the
query service.

The query service answers with :func:`~trusted_scene_graph.reward.query.query_distance` from the last published
graph and its age on the node's steady clock (``time.monotonic``, not message stamps: a replay carries old
stamps); beyond ``query.max_graph_age_s`` the answer is not valid.

With ``extrinsic.source: tf`` the node also buffers ``/tf_static`` and ``/tf`` (sensor group) in a
:class:`~trusted_scene_graph.geometry.tf_buffer.TransformBuffer`, and perception looks the camera pose up at each
image's stamp (:meth:`ScenePipeline.camera_pose_from_tf`, the step ``tsg eval`` runs too). A frame whose camera has
no transform to the graph frame is rejected like any bad frame: counted, logged and reported on ``/diagnostics``.

So that a user sees frames arrive (or not), the node logs a progress line every :data:`PROGRESS_LOG_PERIOD_S` while
messages come in (:class:`~trusted_scene_graph.pipeline.health.ProgressLog`), and with the 'sim' detector warns once
per instance id that has no ``detector.sim_labels`` entry (such objects are never detected), for the first
:data:`~trusted_scene_graph.perception.detector.MAX_UNKNOWN_IDS_KEPT` ids, then once that there are more. Both
``/diagnostics`` (WARN) and the progress line say when no frame has come for ``query.max_graph_age_s`` (the age beyond
which the query service's answers are invalid) and name the inputs that stopped, on the steady clock.
"""

from __future__ import annotations

import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from trusted_scene_graph_msgs.msg import DenseReward
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance
from visualization_msgs.msg import MarkerArray

from trusted_scene_graph.clock import EpisodeStart, EpisodeStarts, seconds_to_ns
from trusted_scene_graph.config.nodes import (
    REWARD_TOPIC,
    TF_STATIC_TOPIC,
    input_topic_names,
    tf_topic_names,
)
from trusted_scene_graph.config.schema import Config, ConfigError
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer, express_in
from trusted_scene_graph.graph.model import SceneGraph
from trusted_scene_graph.perception.detector import SimDetector, configured_labels
from trusted_scene_graph.pipeline.health import (
    FrameStats,
    LogThrottle,
    ProgressLog,
    more_unknown_instance_ids_warning,
    sim_label_details,
    unknown_instance_id_warning,
)
from trusted_scene_graph.pipeline.scene import ScenePipeline
from trusted_scene_graph.pipeline.sync import FrameSynchronizer
from trusted_scene_graph.reward import RewardError, RewardSample, RewardTracker, SideResolver, pairs_from_config
from trusted_scene_graph.reward.query import query_distance
from trusted_scene_graph.reward.sides import EE_FRAME, pose_topics
from trusted_scene_graph.reward.tracker import no_graph_reason
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.params import coerce_on_set, declare_config, schema_overrides, validate_on_set

SCENE_GRAPH_TOPIC = "/scene_graph"
MARKERS_TOPIC = "/scene_graph/markers"
QUERY_SERVICE = "/scene_graph/query_distance"
RESET_EPISODE_SERVICE = "/scene_graph/reset_episode"
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_PERIOD_S = 1.0
# The info line saying how many frames came in and what the last graph holds (see ProgressLog).
PROGRESS_LOG_PERIOD_S = 10.0
# Transforms older than this before the newest one are dropped (tf2's default cache length) when no frame comes to
# prune them, so a /tf stream without camera frames cannot grow the buffer without bound.
TF_CACHE_NS = 10 * 1_000_000_000

# Latched graph: a late subscriber (RViz, a policy starting up) gets the newest graph at once.
GRAPH_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                       history=HistoryPolicy.KEEP_LAST)


# Rewards are reliable (a learner should not lose one) and volatile (a late joiner has no use for old ones); this many
# frames of every pair are queued for a subscriber that falls briefly behind.
REWARD_FRAMES_QUEUED = 10
# Robot poses come at a controller's rate, faster than frames; a queue of 50 absorbs a burst. Best effort: it matches
# reliable and best-effort publishers alike (a reliable subscription would never hear a best-effort driver), and a
# lost pose is replaced by the next one within milliseconds.
POSE_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST)


def reward_qos(num_pairs: int) -> QoSProfile:
    return QoSProfile(depth=REWARD_FRAMES_QUEUED * max(num_pairs, 1), reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


# As tf2_ros's listener: static transforms are latched by their broadcasters, dynamic ones come at a high rate.
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)


class TfMessagesMissingError(TsgError):
    """The node reads tf (``extrinsic.source: tf`` or ``reward.ee_tf_frame``) but ``tf2_msgs`` (the type of /tf and
    /tf_static) is not importable."""


def tf_message_type(needed_by: str = "extrinsic.source 'tf'") -> type:
    """``tf2_msgs/msg/TFMessage``, imported only when the node reads tf: tf2_msgs may be missing elsewhere. Checked at
    configure, so a missing package fails the transition with this reason instead of an unlogged ImportError in
    on_activate (rclpy turns an exception in a transition callback into a bare ERROR)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as exc:
        raise TfMessagesMissingError(f"{needed_by} needs the tf2_msgs package, which is not importable "
                                     f"({exc}); run scripts/setup.sh (it builds ros2_ws/vendor/tf2_msgs) or install "
                                     "ros-<distro>-tf2-msgs") from exc
    return TFMessage


def sensor_qos(config: Config) -> QoSProfile:
    """SensorDataQoS (best effort, volatile, keep last) unless the config asks for reliable delivery."""
    reliability = (ReliabilityPolicy.RELIABLE if config["qos.sensor_reliability"] == "reliable"
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=config["qos.sensor_depth"], reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def input_topics(config: Config, needs_depth: bool, needs_instances: bool) -> list[tuple[str, type, str]]:
    """(synchroniser name, message type, topic) per input; compressed transports use image_transport's names."""
    types = {
        "color": CompressedImage if config["topics.color_transport"] == "compressed" else Image,
        "depth": CompressedImage if config["topics.depth_transport"] == "compressedDepth" else Image,
        "camera_info": CameraInfo,
        "instances": Image,
    }
    return [(name, types[name], topic) for name, topic in input_topic_names(config, needs_depth, needs_instances)]


class SceneGraphNode(LifecycleNode):
    """Managed node: the model loads on configure, publishing starts on activate."""

    def __init__(self, config: Config | None = None, node_name: str = "scene_graph", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.config = declare_config(self, config if config is not None else Config())
        except (ConfigError, ParameterException) as exc:
            # rclpy checks an override's type and range against the descriptor first; the schema checks the rest.
            raise ConfigError(f"node {node_name!r}: invalid parameter: {exc}") from exc
        self.add_pre_set_parameters_callback(coerce_on_set)
        self.add_on_set_parameters_callback(validate_on_set(lambda: self.config))
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self._perception_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        # The diagnostics and progress timers: in the service's group, a query arriving while they run would wait.
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._lock = threading.Lock()  # guards the synchronizer, shared by sensor and perception callbacks
        # Held while a frame is taken, processed and published, while parameters are applied and while a transition
        # makes or releases what configure makes: a frame sees one configuration, and nothing it publishes on is
        # destroyed under it (a transition waits for the frame in progress). Taken before _lock, never inside it.
        self._frame_lock = threading.RLock()
        # Held while the diagnostics publisher is used and while it is destroyed: the timer's group is not blocked
        # for a whole frame.
        self._entities_lock = threading.Lock()
        self._tf_lock = threading.Lock()  # guards the tf buffer, shared by the tf and perception callbacks
        self._tf: TransformBuffer | None = None  # 'tf' extrinsic or reward.ee_tf_frame only
        self._tf_message_type: type | None = None  # tf2_msgs' TFMessage, set at configure when the node reads tf
        # Guards the resolver's pose histories: written by the pose callbacks (sensor group) and perception (the end
        # effector from tf), read by perception (rewards) and the query service. Taken after _tf_lock, never inside.
        self._pose_lock = threading.Lock()
        # Held while publishing rewards and while the reward publisher is swapped (reward.pairs changed its depth).
        self._reward_pub_lock = threading.Lock()
        self._resolver: SideResolver | None = None
        self._reward_tracker: RewardTracker | None = None  # None without reward.pairs
        self._last_rewards: dict[str, RewardSample] = {}  # pair -> its last sample (for /diagnostics)
        # Which frame starts a new episode (a jump back, or the first captured after /scene_graph/reset_episode);
        # guarded by _lock: colour images (sensor group), the service and perception all use it.
        self._episodes = EpisodeStarts()
        self._ee_tf_miss: str | None = None  # reward.ee_tf_frame: why the last lookup failed ("" found, None not yet)
        self.pipeline: ScenePipeline | None = None
        # (graph, time.monotonic() when it was published), replaced as one reference so the service reads a pair.
        self._published: tuple[SceneGraph, float] | None = None
        self.stats = FrameStats()
        self._sync: FrameSynchronizer | None = None
        # Not `_subscriptions`: rclpy's Node keeps its own list under that name, which destroy_subscription edits.
        self._input_subscriptions = []
        self._graph_pub = self._marker_pub = self._diagnostics_pub = self._service = self._frame_ready = None
        self._reward_pub = self._reset_service = None
        self._diagnostics_timer = self._progress_timer = None
        self._progress = ProgressLog()
        # Error logs per kind of message (log_throttle_s), one throttle per callback group that logs.
        self._frame_log, self._pose_log, self._query_log = LogThrottle(), LogThrottle(), LogThrottle()
        self._reported_unknown_ids: frozenset[int] = frozenset()  # 'sim' detector ids already warned about
        self._reported_more_unknown_ids = False  # whether the one warning beyond those was logged
        self.configure_error: str | None = None  # why the last configure failed (models missing, ...)
        self.activate_error: str | None = None  # why the last activate failed (rclpy reports only ERROR)

    @property
    def latest_graph(self) -> SceneGraph | None:
        """The last published graph (None before the first, and after cleanup)."""
        published = self._published
        return published[0] if published is not None else None

    # Lifecycle transitions.

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._frame_lock:
            return self._configure()

    def _configure(self) -> TransitionCallbackReturn:
        try:
            # Before the pipeline, whose models take a while to load.
            needed_by = "extrinsic.source 'tf'" if self.config["extrinsic.source"] == "tf" else "reward.ee_tf_frame"
            self._tf_message_type = tf_message_type(needed_by) if tf_topic_names(self.config) else None
            self._build_reward()
            self.pipeline = ScenePipeline(self.config)
        except TsgError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        topics = [name for name, _, _ in self._inputs()]
        self._sync = FrameSynchronizer(topics, seconds_to_ns(self.config["sync.tolerance_s"]),
                                       self.config["sync.buffer_size"])
        self._tf = (TransformBuffer(max_age_ns=seconds_to_ns(self.config["extrinsic.tf_max_age_s"]))
                    if tf_topic_names(self.config) else None)
        self._ee_tf_miss = None
        self._graph_pub = self.create_lifecycle_publisher(SceneGraphMsg, SCENE_GRAPH_TOPIC, GRAPH_QOS)
        self._create_reward_publisher()
        self._marker_pub = self.create_lifecycle_publisher(MarkerArray, MARKERS_TOPIC, GRAPH_QOS)
        self._diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                                    callback_group=self._timer_group)
        self._progress = ProgressLog()
        # Error logs per kind of message (log_throttle_s), one throttle per callback group that logs.
        self._frame_log, self._pose_log, self._query_log = LogThrottle(), LogThrottle(), LogThrottle()
        self._reported_unknown_ids = frozenset()
        self._reported_more_unknown_ids = False
        self._progress_timer = self.create_timer(PROGRESS_LOG_PERIOD_S, self._log_progress,
                                                 callback_group=self._timer_group)
        self._frame_ready = self.create_guard_condition(self._on_frame_ready, self._perception_group)
        self._service = self.create_service(QueryDistance, QUERY_SERVICE, self._on_query,
                                            callback_group=self._service_group)
        self._reset_service = self.create_service(Trigger, RESET_EPISODE_SERVICE, self._on_reset_episode,
                                                  callback_group=self._service_group)
        tracker = self._reward_tracker
        rewards = ", ".join(pair.name for pair in tracker.pairs) if tracker is not None else "none"
        self.get_logger().info(f"configured: detector {self.config['detector.backend']!r}, inputs {topics}; trust: "
                               f"{self.pipeline.trust.model.description}, pruning at "
                               f"{self.pipeline.trust_threshold:.3f}; rewards: {rewards}")
        if self.pipeline.trust.warning:
            self.get_logger().warning(self.pipeline.trust.warning)
        return TransitionCallbackReturn.SUCCESS

    def _build_reward(self) -> None:
        """The side resolver and reward tracker from the reward.* settings; pose histories carry over a rebuild."""
        resolver = SideResolver.from_config(self.config)
        previous = self._resolver
        if previous is not None:
            resolver.take_poses(previous)  # the same PoseHistory objects, still guarded by _pose_lock
        pairs = pairs_from_config(self.config)
        self._resolver = resolver
        self._reward_tracker = RewardTracker(pairs, resolver) if pairs else None
        self._last_rewards = {}

    def _create_reward_publisher(self) -> None:
        """The reward publisher, once there are pairs (at configure, or when reward.pairs is first set later), with a
        queue of REWARD_FRAMES_QUEUED frames of every pair: replaced when a change of reward.pairs changes that."""
        tracker, old = self._reward_tracker, self._reward_pub
        if self._graph_pub is None:
            return
        if tracker is None:  # reward.pairs set to none: no publisher, as at a configure without pairs
            if old is not None:
                with self._reward_pub_lock:
                    self._reward_pub = None
                self.destroy_lifecycle_publisher(old)
            return
        qos = reward_qos(len(tracker.pairs))
        if old is not None and old.qos_profile.depth == qos.depth:
            return
        publisher = self.create_lifecycle_publisher(DenseReward, REWARD_TOPIC, qos)
        if self._graph_pub.is_activated:
            publisher.on_activate(None)  # created while active: the node's activation has already passed it by
        with self._reward_pub_lock:
            self._reward_pub = publisher
        if old is not None:
            self.destroy_lifecycle_publisher(old)  # unused: rewards are published under the lock, from the new one

    def _inputs(self) -> list[tuple[str, type, str]]:
        """(synchroniser name, message type, topic) of every subscription this configuration needs."""
        return input_topics(self.config, self.pipeline.needs_depth, self.pipeline.needs_instances)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate_error = None
        try:
            return self._activate(state)
        except Exception as exc:
            # Kept, logged and raised on: rclpy turns any exception of a transition into a bare ERROR, unlogged.
            self.activate_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"activate failed: {self.activate_error}")
            raise

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        qos = sensor_qos(self.config)
        with self._lock:
            self.stats.expect_topics([topic for _, _, topic in self._inputs()], time.monotonic())
        # tf first: when a transform and the images of its frame are ready at once, the transform is buffered first.
        # Kept one by one as they are made: when one fails, on_error destroys those made before it.
        for topic in tf_topic_names(self.config):
            self._input_subscriptions.append(self._tf_subscription(topic))
        for frame, topic in pose_topics(self.config):
            self._input_subscriptions.append(self.create_subscription(
                PoseStamped, topic, self._pose_callback(frame), POSE_QOS, callback_group=self._sensor_group))
        for name, msg_type, topic in self._inputs():
            self._input_subscriptions.append(self.create_subscription(
                msg_type, topic, self._buffer_callback(name, topic), qos, callback_group=self._sensor_group))
        return super().on_activate(state)

    def _tf_subscription(self, topic: str):
        static = topic == TF_STATIC_TOPIC
        return self.create_subscription(self._tf_message_type, topic, lambda msg: self._on_tf(msg, static),
                                        TF_STATIC_QOS if static else TF_QOS,
                                        callback_group=self._sensor_group)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_input_subscriptions()
        self._clear_markers()  # while the publisher is still active: the base class deactivates it
        return super().on_deactivate(state)

    def _destroy_input_subscriptions(self) -> None:
        for subscription in self._input_subscriptions:
            self.destroy_subscription(subscription)
        self._input_subscriptions = []

    def _clear_markers(self) -> None:
        """Remove the boxes from RViz when the node stops showing graphs; the marker topic is transient-local, so a
        late RViz gets this lone DELETEALL instead of the last graph's boxes. A frame being processed meanwhile may
        still publish boxes after it: their lifetime (query.max_graph_age_s) removes those."""
        publisher = self._marker_pub  # read once: cleanup may clear it
        if publisher is not None and publisher.is_activated:
            publisher.publish(convert.clear_markers(self.config["graph_frame"],
                                                    self.get_clock().now().nanoseconds))

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_input_subscriptions()
        self._clear_markers()  # shutdown from active skips on_deactivate
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (an activation that failed): rclpy goes to 'unconfigured' after this, so everything
        configure and the failed transition made is released, and a configure that follows starts clean (without
        it, a lifecycle manager's retry would duplicate every timer, publisher, service and subscription)."""
        self._destroy_input_subscriptions()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        with self._frame_lock:  # after the frame in progress, which publishes on what is destroyed here
            self._release_entities()

    def _release_entities(self) -> None:
        for service in (self._service, self._reset_service):
            if service is not None:
                self.destroy_service(service)
        with self._entities_lock:
            if self._diagnostics_pub is not None:
                self.destroy_lifecycle_publisher(self._diagnostics_pub)
            self._diagnostics_pub = None
        with self._reward_pub_lock:
            reward_pub, self._reward_pub = self._reward_pub, None
        for publisher in (self._graph_pub, self._marker_pub, reward_pub):
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        with self._lock:  # the sensor callbacks trigger it under this lock
            if self._frame_ready is not None:
                self.destroy_guard_condition(self._frame_ready)
            self._frame_ready = None
        for timer in (self._diagnostics_timer, self._progress_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._graph_pub = self._marker_pub = self._service = None
        self._reset_service = None
        self._diagnostics_timer = self._progress_timer = None
        self.pipeline = None
        self._published = None
        self._tf = None
        self._resolver = self._reward_tracker = None
        self._last_rewards = {}
        with self._lock:
            self._episodes = EpisodeStarts()
            self.stats = FrameStats()  # a configure after cleanup starts counting again, as its synchroniser does

    # Callbacks: convert, call the core, publish.

    def _buffer_callback(self, name: str, topic: str):
        def callback(msg) -> None:
            with self._lock:
                now_s = time.monotonic()
                self.stats.record_message(topic, now_s)
                stamp_ns = convert.stamp_to_ns(msg.header.stamp)
                if name == "color":
                    self._episodes.colour(stamp_ns)
                completed = self._sync.add(name, stamp_ns, msg)
                if completed:
                    self.stats.last_completed_s = now_s
                    if self._frame_ready is not None:  # None once cleanup released it
                        self._frame_ready.trigger()

        return callback

    def _on_tf(self, msg, static: bool) -> None:
        tf = self._tf  # read once: cleanup may clear it while a callback runs
        if tf is not None:
            with self._tf_lock:
                tf.add(msg, static=static)

    def _pose_callback(self, frame: str):
        """Adds a PoseStamped to the pose history of ``frame`` (EE_FRAME or GOAL_FRAME), in the graph frame when the
        tf buffer can transform it there."""
        def callback(msg: PoseStamped) -> None:
            resolver, tf = self._resolver, self._tf  # read once: cleanup may clear them
            if resolver is None:
                return
            stamp_ns = convert.stamp_to_ns(msg.header.stamp)
            position = msg.pose.position
            with self._tf_lock:
                frame_id, xyz = express_in(tf, self.config["graph_frame"], msg.header.frame_id,
                                           [position.x, position.y, position.z], stamp_ns)
            try:
                with self._pose_lock:
                    resolver.poses[frame].add(stamp_ns, frame_id, xyz)
            except RewardError as exc:
                if self._pose_log.should_log(str(exc), time.monotonic(), self.config["log_throttle_s"]):
                    self.get_logger().error(f"{frame} pose skipped: {exc}")

        return callback

    def _on_frame_ready(self) -> None:
        with self._frame_lock:  # a transition or a parameter change waits for this frame, and it for them
            self._process_latest_frame()

    def _process_latest_frame(self) -> None:
        pipeline, tf = self.pipeline, self._tf
        if pipeline is None:  # released by a cleanup this callback waited for
            return
        with self._lock:
            latest = self._sync.take_latest()
            new_episode = self._episodes.frame(latest[0]) if latest is not None else None
        if latest is None:
            return
        stamp_ns, msgs = latest
        if new_episode is not None:
            self._start_episode(pipeline, new_episode)
        try:
            if tf is not None and self.config["extrinsic.source"] == "tf":
                with self._tf_lock:
                    pipeline.camera_pose_from_tf(tf, msgs["camera_info"].header.frame_id, stamp_ns)
            frame = convert.frame_from_msgs(msgs["color"], msgs.get("depth"), msgs["camera_info"],
                                            msgs.get("instances"), rectified=self.config["topics.rectified"])
            graph = pipeline.process(frame)
        except TsgError as exc:
            self.stats.record_failure(str(exc), time.monotonic())
            if self._frame_log.should_log(str(exc), time.monotonic(), self.config["log_throttle_s"]):
                self.get_logger().error(f"frame skipped: {exc}")
            self._warn_unknown_instance_ids(pipeline)
            self._add_ee_pose_from_tf(tf, stamp_ns)  # later frames may use it: it does not depend on the image
            self._publish_rewards(stamp_ns, None, no_graph_reason(exc))
            return
        self._warn_unknown_instance_ids(pipeline)
        self._add_ee_pose_from_tf(tf, stamp_ns)  # before the graph is served: queries on it use that pose too
        self._published = (graph, time.monotonic())
        self.stats.record_success(sum(graph.timing_ms.values()), time.monotonic())
        self._graph_pub.publish(convert.graph_to_msg(graph))
        self._publish_rewards(stamp_ns, graph)
        if self.config["markers.enabled"]:
            self._marker_pub.publish(convert.markers_from_graph(graph, self.config["query.max_graph_age_s"]))

    def _add_ee_pose_from_tf(self, tf: TransformBuffer | None, stamp_ns: int) -> None:
        """reward.ee_tf_frame: the end effector's pose at a frame's stamp (whether or not the frame gave a graph),
        from the tf buffer."""
        ee_frame, resolver, graph_frame = self.config["reward.ee_tf_frame"], self._resolver, self.config["graph_frame"]
        if not ee_frame or tf is None or resolver is None:
            return
        with self._tf_lock:
            found = tf.lookup_explained(graph_frame, ee_frame, stamp_ns)
        self._ee_tf_miss = found.reason
        if found.transform is not None:
            with self._pose_lock:
                resolver.poses[EE_FRAME].add(stamp_ns, graph_frame, found.transform.translation_m)

    def _publish_rewards(self, stamp_ns: int, graph: SceneGraph | None, reason: str = "") -> None:
        """One DenseReward per pair for the frame at ``stamp_ns``: from its ``graph``, or, when the pipeline rejected
        the frame (no graph), invalid (or held) with ``reason``."""
        tracker, publisher = self._reward_tracker, self._reward_pub  # read once: a parameter change may swap them
        if tracker is None or publisher is None:
            return
        if graph is None:
            samples = tracker.skip(stamp_ns, reason)
        else:
            with self._pose_lock:
                samples = tracker.update(graph)
        frame_id = graph.frame_id if graph is not None else self.config["graph_frame"]
        with self._reward_pub_lock:
            publisher = self._reward_pub  # swapped meanwhile when reward.pairs changed the queue's depth
            for sample in samples if publisher is not None else ():
                publisher.publish(convert.reward_to_msg(sample, frame_id))
        self._last_rewards = {sample.pair: sample for sample in samples}

    def _start_episode(self, pipeline: ScenePipeline, start: EpisodeStart) -> None:
        """Forget what the previous episode accumulated: the pipeline's tracks and the rewards' state; and when the
        clock went back, the old timeline's poses, which share the new one's stamps."""
        pipeline.start_sequence()
        tracker, resolver = self._reward_tracker, self._resolver
        if tracker is not None:
            tracker.start_episode()
        if resolver is not None and start.went_back_from_ns is not None:
            with self._pose_lock:
                resolver.restart_poses(start.went_back_from_ns)

    def _warn_unknown_instance_ids(self, pipeline: ScenePipeline) -> None:
        """Once per id: the 'sim' detector saw an instance id it has no label for, so that object is never found.
        Only for the first ids (those the detector keeps), then once that there are more: a simulator giving every
        frame fresh ids would otherwise log a warning per frame."""
        detector = pipeline.detector
        if not isinstance(detector, SimDetector):
            return
        unknown, count = detector.unknown_instance_ids, detector.unknown_instance_id_count  # ids first: see detector
        for instance_id in sorted(unknown - self._reported_unknown_ids):
            self.get_logger().warning(unknown_instance_id_warning(instance_id, self.config["topics.instances"]))
        self._reported_unknown_ids = unknown
        if count > len(unknown) and not self._reported_more_unknown_ids:
            self._reported_more_unknown_ids = True
            self.get_logger().warning(more_unknown_instance_ids_warning(count, self.config["topics.instances"]))

    def _stats_snapshot(self) -> FrameStats:
        """The counters with the synchroniser's, copied under the lock the sensor callbacks count under."""
        with self._lock:
            self.stats.completed, self.stats.dropped = self._sync.completed, self._sync.dropped
            return self.stats.copy()

    def _log_progress(self) -> None:
        graph = self.latest_graph
        line = self._progress.line(self._stats_snapshot(),
                                   None if graph is None else [obj.label for obj in graph.objects],
                                   time.monotonic(), self.config["query.max_graph_age_s"])
        if line is not None:
            self.get_logger().info(line)

    def _publish_diagnostics(self) -> None:
        tf = self._tf
        if tf is not None:
            with self._tf_lock:  # bounded memory: TF_CACHE_NS of each frame's history
                tf.keep_recent(TF_CACHE_NS)
        stats = self._stats_snapshot()
        pipeline = self.pipeline  # read once: cleanup may clear it
        details = {**pipeline.frame_status(), **pipeline.trust_status()} if pipeline is not None else {}
        if pipeline is not None and isinstance(pipeline.detector, SimDetector):
            detector = pipeline.detector
            details.update(sim_label_details(detector.unknown_instance_ids, detector.unknown_instance_id_count))
        tracker = self._reward_tracker
        details.update(convert.reward_details([pair.name for pair in tracker.pairs] if tracker is not None else [],
                                              self._last_rewards))
        if self.config["reward.ee_tf_frame"]:
            miss = self._ee_tf_miss
            details["ee_tf_frame"] = (f"{self.config['reward.ee_tf_frame']}: "
                                      + ("not looked up yet" if miss is None else f"not in tf: {miss}" if miss
                                         else "in tf"))
        # Beyond query.max_graph_age_s without a frame the query service's answers are invalid: warn at the same age.
        message = convert.diagnostics_msg(self.get_fully_qualified_name(), stats, self.get_clock().now().nanoseconds,
                                          details, now_s=time.monotonic(),
                                          max_frame_age_s=self.config["query.max_graph_age_s"])
        with self._entities_lock:
            if self._diagnostics_pub is not None:  # None once cleanup released it while this callback ran
                self._diagnostics_pub.publish(message)

    def _on_query(self, request: QueryDistance.Request, response: QueryDistance.Response) -> QueryDistance.Response:
        published, resolver = self._published, self._resolver  # read once: perception replaces them
        graph, age_s = (published[0], time.monotonic() - published[1]) if published is not None else (None, math.nan)
        with self._pose_lock:
            answer = query_distance(graph, request.subject, request.object, request.mode, resolver=resolver,
                                    graph_age_s=age_s, max_graph_age_s=self.config["query.max_graph_age_s"],
                                    frames_rejected_because=self.stats.last_error if self.stats.last_failed else "")
        if not answer.valid:
            line = f"query {request.subject!r} -> {request.object!r}: {answer.message}"
            if self._query_log.should_log(line, time.monotonic(), self.config["log_throttle_s"]):
                self.get_logger().warning(line)
        return convert.fill_distance_response(answer, graph, response, age_s)

    def _on_reset_episode(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._episodes.request_reset()
        response.success = True
        response.message = ("the first frame captured after this call starts a new episode (tracks, reward "
                            "smoothing, held values and the progress baseline forgotten)")
        return response

    def _apply_parameters(self, parameters) -> None:
        overrides = schema_overrides(parameters)
        if not overrides:
            return  # only rclpy's own parameters (use_sim_time): rclpy applies them, the pipeline is unchanged
        with self._frame_lock:  # between frames: a frame is processed with one configuration, whole
            self._apply_overrides(overrides, parameters)

    def _apply_overrides(self, overrides: dict, parameters) -> None:
        markers_were_enabled = self.config["markers.enabled"]
        self.config = self.config.with_overrides(overrides)
        if markers_were_enabled and not self.config["markers.enabled"]:
            self._clear_markers()  # no more frames will replace the boxes shown
        if self.pipeline is not None:
            self.pipeline.reconfigure(self.config)
        resolver = self._resolver
        if resolver is not None and (any(p.name.startswith("reward.") for p in parameters)
                                     or configured_labels(self.config) != resolver.known_labels):
            self._build_reward()  # a new tracker: changed pairs or settings start a new episode
            self._create_reward_publisher()
        if self._sync is not None:
            with self._lock:  # the sensor callbacks match with it
                self._sync.tolerance_ns = seconds_to_ns(self.config["sync.tolerance_s"])


def main(args: list[str] | None = None) -> int:
    """Run the node alone (the launch file's executable); parameters come from ``--ros-args``. Returns the exit
    code: 1 when autostart's configure or activate fails (the reason is logged), as a node that stays unconfigured
    would look alive to ``ros2 launch`` while it does nothing."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.logging import get_logger

    from trusted_scene_graph import keep_hub_offline
    from trusted_scene_graph.ros.bringup import (
        EXECUTOR_THREADS,
        ROS_ARGS_ERRORS,
        BringupError,
        BringupExecutor,
        activate,
        check_parameter_overrides,
        startup_objects_frozen,
        use_short_gil_switch_interval,
    )

    keep_hub_offline()  # before the node's model backends import huggingface_hub
    # As `tsg bringup` does: queries share the GIL with CPU-bound perception, and with the default switch interval
    # a query under `ros2 launch` (which runs this) would wait several times as long as under tsg bringup.
    use_short_gil_switch_interval()
    try:
        rclpy.init(args=args)
    except ROS_ARGS_ERRORS as exc:  # an argument or -p rule rcl cannot parse: one line, not a traceback
        get_logger("scene_graph").fatal(f"rclpy refused the arguments: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        check_parameter_overrides()  # a misspelled -p (trust.treshold) is refused, as tsg bringup refuses it
        node = SceneGraphNode()
    except (ConfigError, ParameterException, BringupError) as exc:  # the schema or rclpy refuses a parameter
        get_logger("scene_graph").fatal(str(exc))
        rclpy.try_shutdown()
        return 1
    executor = BringupExecutor(num_threads=EXECUTOR_THREADS)  # as tsg bringup's: survives a transition's destroys
    try:
        if node.config["autostart"]:
            activate(node, node.get_name())
        executor.add_node(node)
        with startup_objects_frozen():  # as `tsg bringup` does (without autostart: the imports, not yet the models)
            executor.spin()
    except BringupError as exc:
        node.get_logger().fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # joins the worker threads: no callback may still use the node it destroys next
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
