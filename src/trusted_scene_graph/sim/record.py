"""``tsg sim record``: rosbag2 bags of simulated scenes with exact ground truth, for evaluation and training.

A bag holds what a real RGB-D robot would log, plus what only a simulator knows:

===============================  ===================================  ===============================================
topic (default config)           type                                 content
===============================  ===================================  ===============================================
``/camera/color/image_raw``      sensor_msgs/Image                    rgb8
``/camera/depth/image_raw``      sensor_msgs/Image                    32FC1 metres or 16UC1 millimetres, registered
                                                                      to the colour camera, with the chosen noise
``/camera/color/camera_info``    sensor_msgs/CameraInfo               pinhole intrinsics from the camera's fovy
``/camera/instances/image_raw``  sensor_msgs/Image                    16UC1 instance ids (for the ``sim`` detector)
``/tf_static``                   tf2_msgs/TFMessage                   graph frame -> camera optical frame, once per
                                                                      episode (a new scene has a new camera pose)
``/tf``                             tf2_msgs/TFMessage                   instead of ``/tf_static`` for a model camera
                                                                      (``--camera``): the same, every frame
``/ee_pose``                     geometry_msgs/PoseStamped            Fetch: the grasp point from kinematics
``/goal_pose``                   geometry_msgs/PoseStamped            Fetch: the task's goal position
``/ground_truth``                trusted_scene_graph_msgs/GroundTruth objects, poses, sizes, instance ids, gripper,
                                                                      goal, the environment's dense reward
===============================  ===================================  ===============================================

Topic names are the config's. With ``topics.color_transport: compressed`` the colour image goes as a JPEG
``sensor_msgs/CompressedImage`` on ``topics.color`` + ``/compressed``, and with ``topics.depth_transport:
compressedDepth`` the depth as a PNG one on ``topics.depth`` + ``/compressedDepth``, as image_transport publishes them;
an empty ``topics.ee_pose`` / ``topics.goal_pose`` is not recorded.

Every message of one frame carries the same stamp, and is logged at that stamp, so a bag is fully determined by its
settings and seed. Stamps start at :data:`START_STAMP_NS` (a fixed date, so tools show sane times) plus the
simulated time. Scenes: the four Gymnasium-Robotics Fetch tasks, driven by scripted policies (an episode is the
reset frame plus the env's 50 steps), and randomised ``tabletop`` scenes (one scene per episode, 3-10 objects,
random stacks and near-ties).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from trusted_scene_graph.config.nodes import TF_STATIC_TOPIC, TF_TOPIC, subscribed_topic
from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import BagWriter
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.dataset.bag import DEFAULT_QOS, LATCHED_QOS, SENSOR_QOS
from trusted_scene_graph.dataset.messages import COMPRESSED_IMAGE_TYPE
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.image.compressed import encode_compressed_depth, encode_compressed_rgb
from trusted_scene_graph.image.decode import depth_to_encoding
from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.depth_noise import DepthNoiseModel, apply_depth_noise, depth_noise_from_name
from trusted_scene_graph.sim.fetch import TASKS, FetchScene
from trusted_scene_graph.sim.tabletop import COLOURS, NEAR_TIE_AXES, SHAPES, TabletopScene, TabletopSettings

TABLETOP = "tabletop"
SCENES: tuple[str, ...] = (*sorted(TASKS), TABLETOP)
DEPTH_ENCODINGS = ("32FC1", "16UC1")

OPTICAL_FRAME = "camera_color_optical_frame"
GROUND_TRUTH_TOPIC = "/ground_truth"

#: 2026-01-01T00:00:00Z: the stamp of a bag's first frame.
START_STAMP_NS = 1_767_225_600 * 1_000_000_000
#: Frame period of tabletop scenes (they are static; the period only orders the frames in time).
TABLETOP_PERIOD_NS = 100_000_000
#: Most stacks a random tabletop scene gets (each stack is two of its objects).
MAX_TABLETOP_STACKS = 2


def _label_catalogue() -> dict[str, int]:
    catalogue = {"gripper": 1, "cube": 2, "table": 3, "puck": 4}
    for index, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        catalogue[f"{colour} {shape}"] = 10 + index
    return catalogue


#: Instance id of every label a recorded scene can contain. Recorded instance images use these ids (not the
#: scene's own 1..N), so one fixed ``detector.sim_labels`` list (:func:`sim_label_entries`, used by
#: ``config/benchmark.yaml``) lets the 'sim' detector name the objects of every recorded scene.
LABEL_CATALOGUE: dict[str, int] = _label_catalogue()


def sim_label_entries() -> list[str]:
    """``detector.sim_labels`` entries ('id:label') for every label of :data:`LABEL_CATALOGUE`."""
    return [f"{instance_id}:{label}" for label, instance_id in LABEL_CATALOGUE.items()]


def benchmark_config() -> Config:
    """The schema defaults with every catalogue label known to the 'sim' detector and the camera pose from the tf
    (a recorded bag's ``/tf_static``, as a robot's tf tree gives it): ``config/benchmark.yaml``."""
    return Config({"detector.sim_labels": sim_label_entries(), "extrinsic.source": "tf"})


def _catalogue_lookup(labels_by_id: Mapping[int, str]) -> np.ndarray:
    """Scene instance id -> catalogue id, as an array indexed by the scene's id (0 stays 0)."""
    lookup = np.zeros(max(labels_by_id, default=0) + 1, dtype=np.uint16)
    for instance_id, label in labels_by_id.items():
        if label not in LABEL_CATALOGUE:
            raise SimError(f"label {label!r} of instance {instance_id} is not in the recording's label catalogue")
        lookup[instance_id] = LABEL_CATALOGUE[label]
    return lookup


@dataclass(frozen=True)
class RecordSettings:
    """What to record; validated on construction (errors are :class:`SimError` naming the value)."""

    scene: str = "FetchPickAndPlace"  # a Fetch task or "tabletop"
    episodes: int = 1
    seed: int = 0
    camera: str | None = None  # Fetch: a model camera name, None for the task's default view
    width: int = 640
    height: int = 480
    depth_noise: str = "none"  # a preset of trusted_scene_graph.sim.depth_noise
    depth_encoding: str = "32FC1"
    storage: str = "mcap"
    policy_noise: float = 0.0  # Fetch: std of the Gaussian noise on each action component
    frames_per_scene: int = 1  # tabletop: frames of each static scene (they differ by depth noise only)

    def __post_init__(self) -> None:
        if self.scene not in SCENES:
            raise SimError(f"unknown --task {self.scene!r}; known: {', '.join(SCENES)}")
        if self.episodes < 1:
            raise SimError(f"episodes={self.episodes} must be >= 1")
        if self.seed < 0:
            raise SimError(f"seed={self.seed} must be >= 0")
        if self.width < 16 or self.height < 16:
            raise SimError(f"image size {self.width}x{self.height} is below 16x16")
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise SimError(f"depth encoding {self.depth_encoding!r} is not one of {DEPTH_ENCODINGS}")
        if self.frames_per_scene < 1:
            raise SimError(f"frames_per_scene={self.frames_per_scene} must be >= 1")
        if self.camera is not None and self.scene == TABLETOP:
            raise SimError("camera: tabletop scenes sample their own camera; --camera is for Fetch tasks")
        # Each of these applies to one kind of scene only: a non-default value on the other kind would be ignored.
        if self.policy_noise != 0.0 and self.scene == TABLETOP:
            raise SimError(f"policy_noise={self.policy_noise}: tabletop scenes are static; --policy-noise is for "
                           "Fetch tasks")
        if self.frames_per_scene != 1 and self.scene != TABLETOP:
            raise SimError(f"frames_per_scene={self.frames_per_scene}: {self.scene} records whole episodes; "
                           "--frames-per-scene is for tabletop")
        depth_noise_from_name(self.depth_noise)  # raises for an unknown preset


@dataclass
class RecordSummary:
    path: Path
    frames: int = 0
    messages: int = 0
    episodes: int = 0
    successes: int = 0  # Fetch episodes whose last frame reports success
    topics: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Frame:
    """One frame of any scene, in the form the bag needs."""

    episode: int
    step: int
    stamp_ns: int
    rgb: np.ndarray
    depth_m: np.ndarray
    instances: np.ndarray
    intrinsics: Intrinsics
    camera_to_world: RigidTransform
    objects: list[Any]  # GroundTruthObject messages
    gripper_m: np.ndarray | None = None
    gripper_xyzw: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0)
    goal_m: np.ndarray | None = None
    goal_for: str = ""
    env_reward: float = math.nan
    is_success: bool = False


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """Independent per-episode seeds derived from one seed (numpy SeedSequence), so episode k of a recording does not
    depend on how many episodes are recorded."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(episodes)]


def record_sim_bag(out_path: Path, settings: RecordSettings, config: Mapping[str, Any],
                   progress: Callable[[int], None] | None = None) -> RecordSummary:
    """Record ``settings.episodes`` episodes into a new bag at ``out_path``; ``progress(frames)`` after each frame.

    Topic names and the graph frame come from ``config`` (the same schema the nodes use), so a recorded bag plays
    into a bringup with that config unchanged.
    """
    noise = depth_noise_from_name(settings.depth_noise)
    graph_frame = config["graph_frame"]
    topics = recorded_topics(settings, config)
    summary = RecordSummary(Path(out_path), topics={topic: msgtype for topic, (msgtype, _) in topics.items()})
    writer = BagWriter(out_path, settings.storage)  # refuses an existing path before the scene is built
    frames = _fetch_frames(settings) if settings.scene != TABLETOP else _tabletop_frames(settings)
    # Build the scene and its first frame before the bag exists: a setting the scene refuses (a camera the model
    # does not have, a negative policy noise) must not leave an empty bag behind that blocks the corrected rerun.
    first = next(frames)
    try:
        _record(writer, frames, first, topics, settings, noise, config, graph_frame, summary, progress)
    except BaseException:
        # The writer finalises the bag on the way out, so an interrupted (Ctrl-C) or failed recording would look
        # complete and block the rerun into the same path. Its episodes come back from the seed: remove it.
        shutil.rmtree(out_path, ignore_errors=True)
        raise
    return summary


def _record(writer: BagWriter, frames: Iterator[_Frame], first: _Frame, topics: Mapping[str, tuple[str, Any]],
            settings: RecordSettings, noise: DepthNoiseModel, config: Mapping[str, Any], graph_frame: str,
            summary: RecordSummary, progress: Callable[[int], None] | None) -> None:
    is_fetch = settings.scene != TABLETOP
    with writer as bag, contextlib.closing(frames):
        for topic, (msgtype, qos) in topics.items():
            bag.add_topic(topic, msgtype, qos)
        last_episode = -1
        last_success = False
        pose_topic = camera_pose_topic(settings)
        for frame in itertools.chain([first], frames):
            new_episode = frame.episode != last_episode
            if new_episode:
                if last_episode >= 0:
                    summary.successes += int(last_success)
                last_episode = frame.episode
                summary.episodes += 1
            # A new episode can be a new scene with a new camera: its pose goes on tf_static again.
            if new_episode or pose_topic == TF_TOPIC:
                bag.write(pose_topic, bag_msgs.tf_message(frame.stamp_ns, graph_frame, OPTICAL_FRAME,
                                                          frame.camera_to_world), frame.stamp_ns)
            _write_frame(bag, frame, settings, noise, config, graph_frame)
            last_success = frame.is_success
            summary.frames += 1
            if progress is not None:
                progress(summary.frames)
        summary.successes += int(last_success and is_fetch)
        summary.messages = bag.messages_written


def recorded_topics(settings: RecordSettings, config: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Topic -> (message type, QoS) of what a recording writes, named as the config's nodes subscribe them (the
    colour and depth images on their transport's topic, e.g. ``/compressed``), so that the bag plays into a bringup
    with that config unchanged. An empty topic (the schema's "none") is not written. Two of them on one topic are
    refused, naming both, before anything is written: one topic would mix two streams."""
    image = "sensor_msgs/msg/Image"
    wanted = [
        ("topics.color", subscribed_topic(config, "topics.color"),
         COMPRESSED_IMAGE_TYPE if config["topics.color_transport"] != "raw" else image, SENSOR_QOS),
        ("topics.depth", subscribed_topic(config, "topics.depth"),
         COMPRESSED_IMAGE_TYPE if config["topics.depth_transport"] != "raw" else image, SENSOR_QOS),
        ("topics.camera_info", config["topics.camera_info"], "sensor_msgs/msg/CameraInfo", SENSOR_QOS),
        ("topics.instances", config["topics.instances"], image, SENSOR_QOS),
        # A model camera may sit on a moving body (the gripper's, the head's): its pose goes on /tf with every frame.
        # The tasks' default views and the tabletop scenes' cameras are fixed for an episode: /tf_static.
        ("the camera pose", camera_pose_topic(settings), "tf2_msgs/msg/TFMessage",
         DEFAULT_QOS if settings.camera else LATCHED_QOS),
        ("the ground truth", GROUND_TRUTH_TOPIC, bag_msgs.GROUND_TRUTH_TYPE, DEFAULT_QOS),
    ]
    if settings.scene != TABLETOP:
        wanted += [(name, config[name], "geometry_msgs/msg/PoseStamped", DEFAULT_QOS)
                   for name in ("topics.ee_pose", "topics.goal_pose")]
    # An empty topic is none (the schema allows one for depth without sensor depth, instances without the sim
    # detector, and the poses): not recorded.
    wanted = [entry for entry in wanted if not entry[0].startswith("topics.") or config[entry[0]]]
    topics: dict[str, tuple[str, Any]] = {}
    writers: dict[str, str] = {}
    for what, topic, msgtype, qos in wanted:
        if topic in writers:
            raise SimError(f"{writers[topic]} and {what} would both be recorded on {topic}: give them different "
                           "topics")
        writers[topic] = what
        topics[topic] = (msgtype, qos)
    return topics


def camera_pose_topic(settings: RecordSettings) -> str:
    """Where a recording puts its camera's pose: ``/tf`` (every frame) for a model camera, which may move with the
    robot (``gripper_camera_rgb`` travels 17 cm in a FetchPickAndPlace episode), else ``/tf_static`` (once per
    episode)."""
    return TF_TOPIC if settings.camera else TF_STATIC_TOPIC


def frames_per_episode(settings: RecordSettings) -> int:
    """How many frames one episode records (for progress bars)."""
    return FetchScene.EPISODE_STEPS + 1 if settings.scene != TABLETOP else settings.frames_per_scene


def _write_frame(bag: BagWriter, frame: _Frame, settings: RecordSettings, noise: DepthNoiseModel,
                 config: Mapping[str, Any], graph_frame: str) -> None:
    stamp = frame.stamp_ns
    # The noise of frame k of episode e depends only on (seed, e, k): reproducible and independent of other frames.
    rng = np.random.default_rng([settings.seed, frame.episode, frame.step])
    depth_m = apply_depth_noise(frame.depth_m, noise, rng)
    if config["topics.color_transport"] == "raw":
        colour = bag_msgs.image(frame.rgb, "rgb8", stamp, OPTICAL_FRAME)
    else:  # 'compressed': JPEG, as image_transport's compressed publisher writes it by default
        colour = bag_msgs.compressed_image(*encode_compressed_rgb(frame.rgb), stamp, OPTICAL_FRAME)
    bag.write(subscribed_topic(config, "topics.color"), colour, stamp)
    if config["topics.depth"]:  # an empty topic is none: not recorded
        if config["topics.depth_transport"] == "raw":
            depth = bag_msgs.image(depth_to_encoding(depth_m, settings.depth_encoding), settings.depth_encoding,
                                   stamp, OPTICAL_FRAME)
        else:  # 'compressedDepth': PNG, with compressed_depth_image_transport's default range and quantisation
            depth = bag_msgs.compressed_image(*encode_compressed_depth(depth_m, settings.depth_encoding), stamp,
                                              OPTICAL_FRAME)
        bag.write(subscribed_topic(config, "topics.depth"), depth, stamp)
    bag.write(config["topics.camera_info"], bag_msgs.camera_info(frame.intrinsics, stamp, OPTICAL_FRAME), stamp)
    if config["topics.instances"]:
        bag.write(config["topics.instances"], bag_msgs.image(frame.instances, "16UC1", stamp, OPTICAL_FRAME), stamp)
    if frame.gripper_m is not None and config["topics.ee_pose"]:
        bag.write(config["topics.ee_pose"], bag_msgs.pose_stamped(stamp, graph_frame, frame.gripper_m,
                                                                  frame.gripper_xyzw), stamp)
    if frame.goal_m is not None and config["topics.goal_pose"]:
        bag.write(config["topics.goal_pose"], bag_msgs.pose_stamped(stamp, graph_frame, frame.goal_m), stamp)
    bag.write(GROUND_TRUTH_TOPIC, bag_msgs.ground_truth(
        stamp, graph_frame, settings.scene, frame.episode, frame.step, frame.objects, frame.gripper_m, frame.goal_m,
        frame.goal_for, frame.env_reward, frame.is_success), stamp)


def _fetch_frames(settings: RecordSettings) -> Iterator[_Frame]:
    with FetchScene(settings.scene, settings.width, settings.height, settings.camera, settings.seed,
                    settings.policy_noise) as scene:
        to_catalogue = _catalogue_lookup(scene.instance_labels())
        goal_for = scene.goal_object_label or ""
        for episode, episode_seed in enumerate(episode_seeds(settings.seed, settings.episodes)):
            sim_frame = scene.reset(seed=episode_seed)
            for step in range(FetchScene.EPISODE_STEPS + 1):
                if step > 0:
                    sim_frame = scene.step()
                camera = scene.camera
                objects = [bag_msgs.ground_truth_object(obj.instance_id, obj.label, to_catalogue[obj.instance_id],
                                                        obj.position_m, obj.orientation_xyzw, obj.size_m)
                           for obj in sim_frame.objects]
                gripper = next((obj for obj in sim_frame.objects if obj.label == "gripper"), None)
                yield _Frame(
                    episode=episode, step=step, stamp_ns=START_STAMP_NS + round(sim_frame.stamp_s * 1e9),
                    rgb=sim_frame.rgb, depth_m=sim_frame.depth_m, instances=to_catalogue[sim_frame.instance_ids],
                    intrinsics=camera.intrinsics, camera_to_world=RigidTransform.from_matrix(camera.camera_to_world),
                    objects=objects, gripper_m=sim_frame.grip_site_m,
                    gripper_xyzw=tuple(gripper.orientation_xyzw) if gripper is not None else (0.0, 0.0, 0.0, 1.0),
                    goal_m=sim_frame.goal_m, goal_for=goal_for, env_reward=sim_frame.env_reward,
                    is_success=sim_frame.is_success,
                )


def tabletop_settings(rng: np.random.Generator, width: int, height: int) -> TabletopSettings:
    """Random per-scene variety: 3-10 objects, 0-2 stacks, and a near-tie pair (left or depth) or none."""
    near_tie = str(rng.choice(NEAR_TIE_AXES))
    stacks = int(rng.integers(0, MAX_TABLETOP_STACKS + 1))
    required = 2 * stacks + (2 if near_tie != "none" else 0)
    low = max(3, required)
    return TabletopSettings(num_objects_range=(low, 10), stacks=stacks, near_tie=near_tie, width=width,
                            height=height)


def _tabletop_frames(settings: RecordSettings) -> Iterator[_Frame]:
    for episode, episode_seed in enumerate(episode_seeds(settings.seed, settings.episodes)):
        rng = np.random.default_rng(episode_seed)
        scene_settings = tabletop_settings(rng, settings.width, settings.height)
        with TabletopScene(int(rng.integers(2**31)), scene_settings) as scene:
            frame = scene.render()
        to_catalogue = _catalogue_lookup(frame.labels_by_id)
        objects = [
            bag_msgs.ground_truth_object(obj.instance_id, obj.label, to_catalogue[obj.instance_id], obj.centre_m,
                                         Rotation.from_euler("z", obj.yaw_deg, degrees=True).as_quat(), obj.size_m,
                                         obj.visible_fraction)
            for obj in frame.objects
        ]
        table_x_m, table_y_m = scene_settings.table_size_m
        objects.append(bag_msgs.ground_truth_object(
            frame.table_instance_id, TabletopScene.TABLE_LABEL, to_catalogue[frame.table_instance_id],
            (0.0, 0.0, frame.table_top_z_m / 2.0), (0.0, 0.0, 0.0, 1.0),
            (table_x_m, table_y_m, frame.table_top_z_m)))
        for step in range(settings.frames_per_scene):
            index = episode * settings.frames_per_scene + step
            yield _Frame(episode=episode, step=step, stamp_ns=START_STAMP_NS + index * TABLETOP_PERIOD_NS,
                         rgb=frame.rgb, depth_m=frame.depth_m, instances=to_catalogue[frame.instances],
                         intrinsics=frame.intrinsics, camera_to_world=frame.camera_to_world, objects=objects)
