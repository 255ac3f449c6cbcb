"""The Gymnasium-Robotics Fetch tasks as scenes that render RGB, metric depth and instance masks with ground truth.

Why this exists: the scene graph's perception chain (instance masks -> detections -> 3D boxes -> relations) needs
frames whose true answer is known exactly, both for the ROS demo and for end-to-end tests and benchmark recordings.
Scripted policies (:mod:`trusted_scene_graph.sim.fetch_policies`) drive the Fetch arm through FetchReach, FetchPush,
FetchPickAndPlace and FetchSlide, so relations such as "gripper holds cube" actually change over an episode.

Conventions (all checked by ``tests/sim/test_fetch.py`` against MuJoCo's own ray casting):

* World frame: MuJoCo's world, metres, z up.
* Camera frame: the REP-103 *optical* frame (x right, y down, z forward). MuJoCo cameras look along their local -z
  with y up, so ``R_world_optical = R_world_mujococam @ diag(1, -1, -1)``.
* Pixels: ``(u, v)`` = (column, row) with the *centre* of the top-left pixel at ``(0, 0)`` (the ROS/OpenCV
  convention, as in :class:`trusted_scene_graph.geometry.Intrinsics`). OpenGL puts pixel centres at ``i + 0.5`` in
  window coordinates, hence ``cx = (W - 1) / 2`` and ``cy = (H - 1) / 2`` for MuJoCo's symmetric frustum.
* Depth: z along the optical axis (not the ray length), in metres, NaN where no geometry was drawn.

Heavy imports (mujoco, gymnasium, gymnasium_robotics) happen inside :class:`FetchScene`'s constructor, so importing
this module is cheap and works without the optional ``sim`` extra. This module never imports rclpy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.fetch_policies import (
    ScriptedFetchPolicy,
    ScriptedPickAndPlacePolicy,
    ScriptedPushPolicy,
    ScriptedReachPolicy,
    ScriptedSlidePolicy,
    check_noise,
)

if TYPE_CHECKING:
    import mujoco

#: Task names accepted by :class:`FetchScene`, mapped to the Gymnasium-Robotics id that is built. The *Dense* variants
#: are used so ``SimFrame.env_reward`` (minus the object-to-goal distance; for Reach, grip-to-goal) is informative on
#: every step.
TASKS: dict[str, str] = {
    "FetchReach": "FetchReachDense-v4",
    "FetchPush": "FetchPushDense-v4",
    "FetchPickAndPlace": "FetchPickAndPlaceDense-v4",
    "FetchSlide": "FetchSlideDense-v4",
}

#: Instance ids and labels per task. The ids are the same in every task (gripper 1, the task's object 2, table 3;
#: FetchReach has no object), so the default ``detector.sim_labels`` ('1:gripper', '2:cube', '3:table') fits Push and
#: PickAndPlace as is; FetchSlide's object is a puck.
TASK_LABELS: dict[str, dict[int, str]] = {
    "FetchReach": {1: "gripper", 3: "table"},
    "FetchPush": {1: "gripper", 2: "cube", 3: "table"},
    "FetchPickAndPlace": {1: "gripper", 2: "cube", 3: "table"},
    "FetchSlide": {1: "gripper", 2: "puck", 3: "table"},
}


@dataclass(frozen=True)
class FreeCameraView:
    """A MuJoCo free camera (``mjCAMERA_FREE``) placed by orbit parameters, with the model's default fovy (45 deg)."""

    lookat_m: tuple[float, float, float]
    distance_m: float
    azimuth_deg: float  # 0 looks along world +x, 90 along +y
    elevation_deg: float  # negative looks down


#: The view FetchPickAndPlace uses when ``FetchScene(camera=None)``: across the table from the robot and to its
#: right (camera at world (2.44, 0.09, 1.03) m), 20 deg down, 1.4 m from a point above the table centre, fovy 45 deg.
#: Chosen over the model's ``external_camera_0`` (straight-on, 47 deg down) because
#: perception boxes the *visible* points: from the steep view the gripper hides the held cube's top face and the
#: visible-part box centre is off by up to 2.0 cm, while this oblique, lower view sees two side faces as well
#: (<= 0.5 cm over 10 seeds x 50 steps at 640x480). Gripper, cube and every goal stay in view.
DEFAULT_VIEW = FreeCameraView(lookat_m=(1.3, 0.75, 0.55), distance_m=1.4, azimuth_deg=150.0, elevation_deg=-20.0)

#: The view each task uses when ``FetchScene(camera=None)``, chosen so that the gripper, the object and the goal
#: stay in the image over whole scripted episodes (checked by ``tests/sim/test_fetch_tasks.py``). Reach and Push
#: share PickAndPlace's table and goal region, and :data:`DEFAULT_VIEW` keeps their goals >= 20 % of the image
#: width inside its border (Reach's floating goals reach z = 0.69 m).
TASK_VIEWS: dict[str, FreeCameraView] = {
    "FetchReach": DEFAULT_VIEW,
    "FetchPush": DEFAULT_VIEW,
    "FetchPickAndPlace": DEFAULT_VIEW,
    # Slide's table is 1.25 m long (x 0.70-1.95 m) and its goals lie up to 0.7 m beyond the gripper's start: look
    # across the table from its side (camera at world (1.3, -0.64, 1.40) m), 35 deg down, so the whole table top,
    # and a puck anywhere on it, is in the image; the arm reaches in from the left.
    "FetchSlide": FreeCameraView(lookat_m=(1.3, 0.75, 0.42), distance_m=1.7, azimuth_deg=90.0, elevation_deg=-35.0),
}

# Names in gymnasium_robotics/envs/assets/fetch/{robot,push,pick_and_place,slide,reach}.xml. Push, PickAndPlace
# and Slide name their object's body and geom 'object0' (a box; Slide's is a cylinder); Reach has none.
_FINGER_GEOMS = ("robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link")
_GRIPPER_BODY = "robot0:gripper_link"
_OBJECT_NAME = "object0"
_TABLE_BODY = "table0"
_GRIP_SITE = "robot0:grip"
_IDENTITY_XYZW = (0.0, 0.0, 0.0, 1.0)
_OBJECT_ID = 2  # instance id of the task's object in TASK_LABELS

_POLICIES: dict[str, Callable[[float, np.random.Generator, float], ScriptedFetchPolicy]] = {
    "FetchReach": lambda noise, rng, dt_s: ScriptedReachPolicy(noise, rng),
    "FetchPush": lambda noise, rng, dt_s: ScriptedPushPolicy(noise, rng),
    "FetchPickAndPlace": lambda noise, rng, dt_s: ScriptedPickAndPlacePolicy(noise, rng),
    "FetchSlide": ScriptedSlidePolicy,
}


@dataclass(frozen=True)
class CameraModel:
    """Pinhole model of the rendering camera, so depth pixels can be lifted to world points.

    A pixel ``(u, v)`` (integer coordinates at pixel centres) with depth ``z`` maps to the optical-frame point
    ``((u - cx) z / fx, (v - cy) z / fy, z)``, and ``camera_to_world`` maps that point into the world frame.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    camera_to_world: np.ndarray  # (4, 4) float64: optical frame (x right, y down, z forward) -> world (z up)

    @property
    def intrinsics(self) -> Intrinsics:
        """The pinhole part, as the perception pipeline and ``sensor_msgs/CameraInfo`` take it."""
        return Intrinsics(self.width, self.height, self.fx, self.fy, self.cx, self.cy)

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 camera matrix, as in ``sensor_msgs/CameraInfo.k``."""
        return self.intrinsics.k


@dataclass(frozen=True)
class GroundTruthObject:
    """What is really in the scene, to score what perception reports."""

    label: str
    instance_id: int  # value of this object's pixels in SimFrame.instance_ids (0 = background / unlabelled)
    # (3,) world: centre of the object's 3D extent (cube: its centre; gripper: the box around the two fingers, which
    # by robot.xml sits 2 cm above the grip site; table: its box), the point perception's centroid estimates.
    position_m: np.ndarray
    size_m: np.ndarray  # (3,) full extent along world x, y, z of the axis-aligned box around the labelled geoms
    # (4,) world orientation as a unit quaternion (x, y, z, w): the object's body (cube, puck), the gripper link body
    # (the fingers' common parent) for the gripper, identity for the table (its box is world-aligned).
    orientation_xyzw: np.ndarray


@dataclass(frozen=True)
class SimFrame:
    """One rendered simulation state. Its arrays are read-only so frames can be shared between threads safely."""

    task: str  # the FetchScene task, e.g. "FetchPickAndPlace"
    episode: int  # 0 for the scene's first episode, +1 with every reset (explicit or after the 50th step)
    step: int  # step within the current episode; 0 is the state right after a reset
    stamp_s: float  # simulated seconds since the scene was built; keeps increasing across episode resets
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 z-depth along the optical axis; NaN where nothing was drawn
    instance_ids: np.ndarray  # (H, W) uint16, see FetchScene.instance_labels()
    objects: tuple[GroundTruthObject, ...]
    env_reward: float  # the env's dense reward for the step (for a reset frame: compute_reward of that state)
    grip_site_m: np.ndarray  # (3,) world: the end effector's grasp point 'robot0:grip', as kinematics knows it
    goal_m: np.ndarray  # (3,) world: the env's desired_goal (object position to reach; for Reach, grip site position)
    is_success: bool  # the env's info["is_success"] for the step (reset frame: the env's _is_success of that state)


class FetchScene:
    """One Fetch task (see :data:`TASKS`), driven by its scripted policy and rendered from one camera.

    Each :meth:`step` applies one policy action (20 physics substeps, ``dt_s`` = 0.04 s) and renders the state
    three times with one ``mujoco.Renderer`` (RGB; depth; segmentation). Instance ids (:data:`TASK_LABELS`): gripper
    = the two finger geoms (the box around their visible part is centred 2 cm above the grip site, while adding the
    gripper link would move it ~8 cm up), the object (cube or puck) = the ``object0`` geom, table = the geoms of body
    ``table0``; everything else (robot arm, floor) is 0. The mocap target marker geoms and all sites (goal marker)
    are hidden, because they are not physical and would otherwise occlude depth; the goal is in ``SimFrame.goal_m``.

    ``camera`` is None for the task's :data:`TASK_VIEWS` entry (:data:`DEFAULT_VIEW` for FetchPickAndPlace) or the
    name of a camera in the model (``external_camera_0``, ``head_camera_rgb``, ``gripper_camera_rgb``, ``lidar``);
    :attr:`camera` follows cameras on moving bodies. ``policy_noise`` is the standard deviation of Gaussian noise
    added to each action component (range [-1, 1]).

    Determinism: the env and the policy noise are seeded with ``seed``; the same calls give identical frames.
    One 640x480 step takes 40-65 ms on two CPU cores with EGL software rendering (median of 60 steps, machine shared
    with other jobs), nearly all of it the three renders; the four tasks cost the same within that noise.
    """

    #: FetchPickAndPlace's labels (instance_id = index + 1), kept for callers written before the other tasks; use
    #: :attr:`labels` or :meth:`instance_labels`, which follow the scene's task.
    LABELS: ClassVar[tuple[str, ...]] = ("gripper", "cube", "table")
    #: Steps per episode: every Fetch task is registered with ``max_episode_steps=50`` (checked when built).
    EPISODE_STEPS: ClassVar[int] = 50

    def __init__(
        self,
        task: str = "FetchPickAndPlace",
        width: int = 640,
        height: int = 480,
        camera: str | None = None,
        seed: int = 0,
        policy_noise: float = 0.0,
    ) -> None:
        # Set first so close() works on a partially built scene.
        self._env: Any = None
        self._renderer: Any = None
        if task not in TASKS:
            raise SimError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
        if width <= 0 or height <= 0:
            raise SimError(f"image size {width}x{height} is empty")
        check_noise(policy_noise)  # before the slow env build
        self.task = task
        self._width = int(width)
        self._height = int(height)
        self._mujoco, gymnasium = _import_simulator()
        self._env = gymnasium.make(TASKS[task], width=self._width, height=self._height)
        built = False
        try:
            self._setup(camera, seed)
            self._policy = _POLICIES[task](policy_noise, np.random.default_rng(seed), self._dt_s)
            built = True
        finally:
            if not built:
                self.close()

    def _setup(self, camera: str | None, seed: int) -> None:
        """Prepare the model for rendering, find the labelled geoms and reset the env with ``seed``."""
        mj = self._mujoco
        unwrapped = self._env.unwrapped
        model = unwrapped.model
        self._model = model
        self._data = unwrapped.data
        self._dt_s = float(unwrapped.dt)
        if self._env.spec.max_episode_steps != self.EPISODE_STEPS:
            raise SimError(f"{TASKS[self.task]} truncates after {self._env.spec.max_episode_steps} steps, not "
                           f"{self.EPISODE_STEPS}; is gymnasium-robotics 1.4.2?")

        camera_names = [model.camera(i).name for i in range(model.ncam)]
        self._render_camera: int | mujoco.MjvCamera
        if camera is None:
            self._render_camera = _free_camera(mj, TASK_VIEWS[self.task])
            self._camera_label = f"the {self.task} default free camera"
        elif camera in camera_names:
            self._render_camera = camera_names.index(camera)
            self._camera_label = f"camera {camera!r}"
        else:
            raise SimError(
                f"unknown camera {camera!r}; leave it out (tsg sim record: no --camera) for the task's default "
                f"free camera, or give one of the model's cameras: {', '.join(camera_names)}"
            )

        # The mocap bodies carry visual-only crosshair geoms (no collisions) that mark the arm's target; they are not
        # objects, so make them invisible (MuJoCo skips geoms with alpha 0 in rendering and in mj_ray).
        mocap_geoms = (model.body_mocapid[model.geom_bodyid] >= 0) & (model.geom_contype == 0) & (
            model.geom_conaffinity == 0
        )
        model.geom_rgba[mocap_geoms, 3] = 0.0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self._width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self._height)

        self._instance_labels = dict(TASK_LABELS[self.task])
        self._label_geoms: dict[str, np.ndarray] = {}
        self._label_bodies: dict[str, int] = {}  # the body whose orientation a label reports; absent: identity
        for label in self._instance_labels.values():
            if label == "gripper":
                self._label_geoms[label] = np.array([self._geom_id(name) for name in _FINGER_GEOMS])
                self._label_bodies[label] = self._named_id(mj.mjtObj.mjOBJ_BODY, _GRIPPER_BODY)
            elif label == "table":
                table_body = self._named_id(mj.mjtObj.mjOBJ_BODY, _TABLE_BODY)
                self._label_geoms[label] = np.flatnonzero(model.geom_bodyid == table_body)
            else:  # the task's object: cube or puck
                self._label_geoms[label] = np.array([self._geom_id(_OBJECT_NAME)])
                self._label_bodies[label] = self._named_id(mj.mjtObj.mjOBJ_BODY, _OBJECT_NAME)
        # Lookup table indexed by (geom id + 1), so the segmentation's -1 (nothing drawn) maps to 0.
        self._geom_to_instance = np.zeros(model.ngeom + 1, dtype=np.uint16)
        for instance_id, label in self._instance_labels.items():
            self._geom_to_instance[self._label_geoms[label] + 1] = instance_id
        self._grip_site = self._named_id(mj.mjtObj.mjOBJ_SITE, _GRIP_SITE)

        self._scene_option = mj.MjvOption()
        self._scene_option.sitegroup[:] = 0  # sites (goal marker, grip site) are annotations, not geometry
        self._renderer = open_renderer(mj, model, self._width, self._height)

        self._obs, _ = self._env.reset(seed=seed)
        # The env is in its first episode and nothing has been shown yet: reset() without a seed shows this state,
        # so FetchScene(seed=s).reset() is the same episode as FetchScene(...).reset(seed=s).
        self._untouched = True
        self._episode_over = False
        self._episode = 0
        self._episode_step = 0
        self._ticks = 0  # frame periods since construction; stamp_s = ticks * dt_s
        self._frames_made = 0
        self._update_scene()

    # ----------------------------------------------------------------------------------------------- public API

    @property
    def camera(self) -> CameraModel:
        """The camera of the most recent frame (for a camera on a moving body it changes with every frame)."""
        self._check_open()
        return self._camera

    @property
    def model(self) -> mujoco.MjModel:
        """The env's MjModel, for checks such as ray casting; treat it as read-only."""
        self._check_open()
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        """The env's MjData in the state of the most recent frame; treat it as read-only."""
        self._check_open()
        return self._data

    @property
    def dt_s(self) -> float:
        """Simulated seconds between consecutive frames (the env's control period)."""
        return self._dt_s

    @property
    def labels(self) -> tuple[str, ...]:
        """The task's labels in instance-id order (see :data:`TASK_LABELS`)."""
        return tuple(self._instance_labels[instance_id] for instance_id in sorted(self._instance_labels))

    @property
    def goal_object_label(self) -> str | None:
        """Label of the object whose position ``SimFrame.goal_m`` is for; None when it is for the grip site (Reach)."""
        return self._instance_labels.get(_OBJECT_ID)

    def instance_labels(self) -> dict[int, str]:
        """Map instance ids in ``SimFrame.instance_ids`` to labels; 0 (background) is not included."""
        return dict(self._instance_labels)

    def reset(self, seed: int | None = None) -> SimFrame:
        """Start a new episode and return its first frame.

        With ``seed``, the env and the policy noise are re-seeded; without, they continue their random streams.
        """
        self._check_open()
        if not self._untouched:
            self._episode += 1  # the constructor's reset is episode 0 until something has been shown or stepped
        if seed is not None or not self._untouched:
            self._obs, _ = self._env.reset(seed=seed)
        if seed is not None:
            self._policy.rng = np.random.default_rng(seed)
        self._policy.reset()
        self._untouched = False
        self._episode_over = False
        self._episode_step = 0
        if self._frames_made:
            self._ticks += 1  # a reset takes one frame period, so stamps keep increasing
        env = self._env.unwrapped
        reward = env.compute_reward(self._obs["achieved_goal"], self._obs["desired_goal"], {})
        # The env reports success only from step(); _is_success is the same test it applies there.
        success = env._is_success(self._obs["achieved_goal"], self._obs["desired_goal"])
        return self._make_frame(float(reward), bool(success))

    def step(self) -> SimFrame:
        """Apply one scripted action and return the rendered result.

        After the step that ends an episode (:attr:`EPISODE_STEPS`), the next call resets the env and
        returns the new episode's first frame (``step == 0``) instead of acting.
        """
        self._check_open()
        if self._episode_over:
            return self.reset()
        action = self._policy.act(self._obs["observation"], self._obs["desired_goal"])
        self._obs, reward, terminated, truncated, info = self._env.step(action)
        self._untouched = False
        self._episode_over = bool(terminated or truncated)
        self._episode_step += 1
        self._ticks += 1
        return self._make_frame(float(reward), bool(info["is_success"]))

    def close(self) -> None:
        """Free the OpenGL context and the env; safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def __enter__(self) -> FetchScene:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._env is None:
            raise SimError("the FetchScene is closed")

    def _geom_id(self, name: str) -> int:
        return self._named_id(self._mujoco.mjtObj.mjOBJ_GEOM, name)

    def _named_id(self, kind: mujoco.mjtObj, name: str) -> int:
        index = int(self._mujoco.mj_name2id(self._model, kind, name))
        if index < 0:
            raise SimError(f"the {self.task} model has no {kind.name} named {name!r}; is gymnasium-robotics 1.4.2?")
        return index

    def _update_scene(self) -> None:
        """Build the render scene from the current state and derive the camera model from it."""
        self._renderer.update_scene(self._data, camera=self._render_camera, scene_option=self._scene_option)
        self._camera = self._camera_from_scene()

    def _camera_from_scene(self) -> CameraModel:
        return camera_from_scene(self._mujoco, self._renderer.scene, self._width, self._height, self._camera_label)

    def _make_frame(self, env_reward: float, is_success: bool) -> SimFrame:
        mj = self._mujoco
        renderer = self._renderer
        self._update_scene()
        rgb = renderer.render()
        renderer.enable_depth_rendering()
        depth_m = renderer.render()
        renderer.enable_segmentation_rendering()  # also disables depth rendering
        segmentation = renderer.render()  # (H, W, 2) int32: object id, object type; -1 where nothing was drawn
        renderer.disable_segmentation_rendering()

        object_id = segmentation[..., 0]
        # int(): comparing an int array with the pybind enum itself takes numpy's object path (~60 ms per frame).
        is_geom = segmentation[..., 1] == int(mj.mjtObj.mjOBJ_GEOM)
        instance_ids = self._geom_to_instance[np.where(is_geom, object_id + 1, 0)]
        # Depth and segmentation are rasterised with the same flags, so "nothing drawn" is exact per pixel; without
        # it, empty pixels would read as the far plane (~139 m) and look like real, distant geometry.
        depth_m[object_id < 0] = np.nan

        self._frames_made += 1
        return SimFrame(
            task=self.task,
            episode=self._episode,
            step=self._episode_step,
            stamp_s=self._ticks * self._dt_s,
            rgb=read_only(rgb),
            depth_m=read_only(depth_m),
            instance_ids=read_only(instance_ids),
            objects=self._ground_truth(),
            env_reward=env_reward,
            grip_site_m=read_only(self._data.site_xpos[self._grip_site].copy()),
            goal_m=read_only(np.array(self._obs["desired_goal"], dtype=np.float64)),
            is_success=is_success,
        )

    def _ground_truth(self) -> tuple[GroundTruthObject, ...]:
        """Read positions and boxes from the same MjData arrays the renderer drew, so both describe one state."""
        data = self._data
        objects = []
        for instance_id, label in sorted(self._instance_labels.items()):
            geoms = self._label_geoms[label]
            low_m, high_m = self._world_aabb(geoms)
            if label in ("gripper", "table"):
                position_m = (low_m + high_m) / 2.0
            else:  # the object's own centre, not the centre of its (rotated) box
                position_m = data.geom_xpos[geoms[0]].copy()
            body = self._label_bodies.get(label)
            if body is None:
                orientation_xyzw = np.array(_IDENTITY_XYZW)
            else:
                w, x, y, z = data.xquat[body]  # MuJoCo stores (w, x, y, z)
                orientation_xyzw = np.array([x, y, z, w])
            objects.append(
                GroundTruthObject(
                    label=label,
                    instance_id=instance_id,
                    position_m=read_only(position_m),
                    size_m=read_only(high_m - low_m),
                    orientation_xyzw=read_only(orientation_xyzw),
                )
            )
        return tuple(objects)

    def _world_aabb(self, geom_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the world-axis-aligned box (low, high) around the geoms' local bounding boxes."""
        aabb = self._model.geom_aabb[geom_ids]  # (n, 6): centre, half-size in the geom frame
        rotation = self._data.geom_xmat[geom_ids].reshape(-1, 3, 3)
        centre_m = self._data.geom_xpos[geom_ids] + np.einsum("nij,nj->ni", rotation, aabb[:, :3])
        half_m = np.einsum("nij,nj->ni", np.abs(rotation), aabb[:, 3:])
        return (centre_m - half_m).min(axis=0), (centre_m + half_m).max(axis=0)


def _free_camera(mj: ModuleType, view: FreeCameraView) -> mujoco.MjvCamera:
    camera = mj.MjvCamera()
    camera.type = mj.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = view.lookat_m
    camera.distance = view.distance_m
    camera.azimuth = view.azimuth_deg
    camera.elevation = view.elevation_deg
    return camera


def camera_from_scene(mj: ModuleType, scene: mujoco.MjvScene, width: int, height: int,
                      camera_label: str) -> CameraModel:
    """Derive intrinsics and pose from the OpenGL camera MuJoCo renders ``scene`` with, so they match by construction.

    mjr_render draws a mono image from the average of the scene's two (stereo) cameras, with
    ``glFrustum(center - hw, center + hw, bottom, top, near, far)`` where ``hw`` matches the image aspect ratio.
    Shared by every scene of this package.
    """
    gl_camera = mj.mjv_averageCamera(scene.camera[0], scene.camera[1])
    if gl_camera.orthographic or gl_camera.frustum_width != 0.0 or gl_camera.frustum_center != 0.0:
        raise SimError(f"{camera_label} uses an orthographic or sensor-intrinsics projection; only fovy pinhole "
                       "cameras are modelled")
    near_m = float(gl_camera.frustum_near)
    top_m = float(gl_camera.frustum_top)
    bottom_m = float(gl_camera.frustum_bottom)
    fy = height * near_m / (top_m - bottom_m)
    # OpenGL window coordinate of row v's centre (counted from the top) is height - (v + 0.5).
    cy = height * top_m / (top_m - bottom_m) - 0.5

    forward = np.asarray(gl_camera.forward, dtype=np.float64)
    up = np.asarray(gl_camera.up, dtype=np.float64)
    z_axis = forward / np.linalg.norm(forward)
    y_axis = -(up - np.dot(up, z_axis) * z_axis)  # optical y points down; re-orthogonalised (float32 input)
    y_axis /= np.linalg.norm(y_axis)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = np.column_stack([np.cross(y_axis, z_axis), y_axis, z_axis])
    camera_to_world[:3, 3] = np.asarray(gl_camera.pos, dtype=np.float64)
    camera_to_world.flags.writeable = False
    # Square pixels: MuJoCo sizes the frustum width from the image aspect ratio.
    return CameraModel(width=width, height=height, fx=fy, fy=fy, cx=(width - 1) / 2.0, cy=cy,
                       camera_to_world=camera_to_world)


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def open_renderer(mj: ModuleType, model: Any, width: int, height: int) -> Any:
    """A ``mujoco.Renderer`` of ``width`` x ``height``, or a :class:`SimError` saying what to change: the GL backend
    when it is not a headless one, else the size (the offscreen framebuffer of the model and the GL driver is finite:
    9000x9000 failed on the development machine with EGL)."""
    try:
        return mj.Renderer(model, height, width)
    except (RuntimeError, mj.FatalError) as exc:
        backend = os.environ.get("MUJOCO_GL")
        advice = (f"the GL backend MUJOCO_GL={backend!r} is headless, so the size is the likely cause: try a smaller "
                  "--width/--height" if backend in ("egl", "osmesa")
                  else f"headless machines need MUJOCO_GL=egl (or osmesa), currently MUJOCO_GL={backend!r}")
        raise SimError(f"cannot create a {width}x{height} MuJoCo renderer ({exc}); {advice}") from exc


def import_mujoco() -> ModuleType:
    """Import MuJoCo on demand, defaulting to headless EGL rendering.

    MUJOCO_GL must be set before mujoco is first imported; an explicit user setting wins.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
    except ImportError as exc:
        raise SimError(
            f"the MuJoCo simulator is not installed ({exc}); install the extra: pip install 'trusted_scene_graph[sim]'"
        ) from exc
    return mujoco


def _drop_adroit_notice() -> None:
    """Keep gymnasium-robotics' import-time Adroit notice off stderr.

    On import, gymnasium_robotics prints (not warns: ``warnings`` filters cannot catch it) a notice from
    ``farama_notifications`` that the AdroitHand*Dense-v1 rewards changed in 1.2.1. We use only the Fetch
    tasks, so that notice is noise on every recording and demo; this drops that one message from the notification
    table before the import and leaves any other notice in place.
    """
    try:
        import farama_notifications
    except ImportError:  # gymnasium-robotics without it prints nothing
        return
    adroit_notice = getattr(farama_notifications, "GYMNASIUM_ROBOTICS_ADROIT_WARNING", None)
    versions = farama_notifications.notifications.get("gymnasium_robotics", {})
    for version in [version for version, message in versions.items() if message == adroit_notice]:
        del versions[version]


def _import_simulator() -> tuple[ModuleType, ModuleType]:
    """Import MuJoCo (:func:`import_mujoco`) and Gymnasium-Robotics on demand."""
    mujoco = import_mujoco()
    _drop_adroit_notice()
    try:
        import gymnasium
        import gymnasium_robotics
    except ImportError as exc:
        raise SimError(
            f"the MuJoCo simulator is not installed ({exc}); install the extra: pip install 'trusted_scene_graph[sim]'"
        ) from exc
    gymnasium.register_envs(gymnasium_robotics)
    return mujoco, gymnasium
