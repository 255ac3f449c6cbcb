"""A Gymnasium-Robotics Fetch pick-and-place scene that renders RGB, metric depth and instance masks with ground truth.

Why this exists: the scene graph's perception chain (instance masks -> detections -> 3D boxes -> relations) needs
frames whose true answer is known exactly, both for the ROS demo and for end-to-end tests. A scripted policy drives
the Fetch arm to pick the cube up, so relations such as "gripper holds cube" actually change over an episode.

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

import math
import os
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.sim import SimError

if TYPE_CHECKING:
    import mujoco

#: Task names accepted by :class:`FetchScene`, mapped to the Gymnasium-Robotics id that is built. The *Dense* variant
#: is used so ``SimFrame.env_reward`` (minus the cube-to-goal distance) is informative on every step.
TASKS: dict[str, str] = {"FetchPickAndPlace": "FetchPickAndPlaceDense-v4"}


@dataclass(frozen=True)
class FreeCameraView:
    """A MuJoCo free camera (``mjCAMERA_FREE``) placed by orbit parameters, with the model's default fovy (45 deg)."""

    lookat_m: tuple[float, float, float]
    distance_m: float
    azimuth_deg: float  # 0 looks along world +x, 90 along +y
    elevation_deg: float  # negative looks down


#: The view used when ``FetchScene(camera=None)``: across the table from the robot and to its right (camera at
#: world (2.44, 0.09, 1.03) m), 20 deg down, 1.4 m from a point above the table centre, fovy 45 deg. Chosen over
#: the model's ``external_camera_0`` (straight-on, 47 deg down) because
#: perception boxes the *visible* points: from the steep view the gripper hides the held cube's top face and the
#: visible-part box centre is off by up to 2.0 cm, while this oblique, lower view sees two side faces as well
#: (<= 0.5 cm over 10 seeds x 50 steps at 640x480). Gripper, cube and every goal stay in view.
DEFAULT_VIEW = FreeCameraView(lookat_m=(1.3, 0.75, 0.55), distance_m=1.4, azimuth_deg=150.0, elevation_deg=-20.0)

# Names in gymnasium_robotics/envs/assets/fetch/{robot,pick_and_place}.xml.
_FINGER_GEOMS = ("robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link")
_CUBE_GEOM = "object0"
_TABLE_BODY = "table0"
_GRIP_SITE = "robot0:grip"

# Layout of the Fetch ``obs["observation"]`` vector (gymnasium_robotics fetch_env.generate_mujoco_observations).
_OBS_GRIP_POS = slice(0, 3)
_OBS_OBJECT_POS = slice(3, 6)


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


@dataclass(frozen=True)
class SimFrame:
    """One rendered simulation state. Its arrays are read-only so frames can be shared between threads safely."""

    step: int  # step within the current episode; 0 is the state right after a reset
    stamp_s: float  # simulated seconds since the scene was built; keeps increasing across episode resets
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 z-depth along the optical axis; NaN where nothing was drawn
    instance_ids: np.ndarray  # (H, W) uint16, see FetchScene.instance_labels()
    objects: tuple[GroundTruthObject, ...]
    env_reward: float  # the env's dense reward for the step (for a reset frame: compute_reward of that state)
    grip_site_m: np.ndarray  # (3,) world: the end effector's grasp point 'robot0:grip', as kinematics knows it


class ScriptedPickAndPlacePolicy:
    """A phase-based proportional controller that picks the cube up and carries it to the goal.

    Why scripted: the demo needs a scene whose relations change (cube on table -> in gripper -> at goal) in a
    reproducible way without a learned policy. Phases: ``approach`` (hover above the cube, gripper open),
    ``descend``, ``grasp`` (close for a few steps), ``lift`` (straight up to the carry height), ``carry`` (to above
    the goal), ``place`` (to the goal, holding). If the cube slips out, it starts again from ``approach``.
    """

    PHASES: ClassVar[tuple[str, ...]] = ("approach", "descend", "grasp", "lift", "carry", "place")
    MAX_STEP_M: ClassVar[float] = 0.05  # Fetch scales action[:3] by 5 cm per step
    HOVER_M: ClassVar[float] = 0.08  # approach height above the cube centre
    LIFT_M: ClassVar[float] = 0.10  # minimum carry height above the cube centre at grasp time
    XY_TOL_M: ClassVar[float] = 0.01
    Z_TOL_M: ClassVar[float] = 0.02
    GRASP_TOL_M: ClassVar[float] = 0.01  # grip site to cube centre distance to start closing
    DROP_TOL_M: ClassVar[float] = 0.03  # grip site to cube centre distance that means the cube was lost
    GRASP_STEPS: ClassVar[int] = 2
    OPEN: ClassVar[float] = 1.0
    CLOSE: ClassVar[float] = -1.0

    def __init__(self, noise: float, rng: np.random.Generator) -> None:
        if not math.isfinite(noise) or noise < 0.0:
            raise SimError(f"policy_noise={noise} must be a finite standard deviation >= 0")
        self.noise = float(noise)
        self.rng = rng
        self.phase = "approach"
        self._grasp_steps = 0
        self._carry_z_m = math.nan

    def reset(self) -> None:
        """Start a new episode (the random generator continues, so episodes differ but stay reproducible)."""
        self.phase = "approach"
        self._grasp_steps = 0
        self._carry_z_m = math.nan

    def act(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Return the Fetch action ``(dx, dy, dz, gripper)`` in [-1, 1] for the env's ``obs`` dict entries."""
        grip_m = np.asarray(observation[_OBS_GRIP_POS], dtype=np.float64)
        cube_m = np.asarray(observation[_OBS_OBJECT_POS], dtype=np.float64)
        goal_m = np.asarray(desired_goal, dtype=np.float64)
        # Follow transitions until the phase is stable, so a transition takes effect in the same step.
        for _ in range(len(self.PHASES)):
            new_phase = self._next_phase(grip_m, cube_m, goal_m)
            if new_phase == self.phase:
                break
            if new_phase == "grasp":
                self._grasp_steps = 0
            if new_phase == "lift":
                self._carry_z_m = max(float(goal_m[2]), float(cube_m[2]) + self.LIFT_M)
            self.phase = new_phase
        target_m, gripper = self._target(grip_m, cube_m, goal_m)
        if self.phase == "grasp":
            self._grasp_steps += 1
        action = np.append(np.clip((target_m - grip_m) / self.MAX_STEP_M, -1.0, 1.0), gripper)
        if self.noise > 0.0:
            action = action + self.rng.normal(0.0, self.noise, size=4)
        return np.clip(action, -1.0, 1.0)

    def _next_phase(self, grip_m: np.ndarray, cube_m: np.ndarray, goal_m: np.ndarray) -> str:
        holding_lost = float(np.linalg.norm(cube_m - grip_m)) > self.DROP_TOL_M
        match self.phase:
            case "approach":
                hover_m = cube_m + (0.0, 0.0, self.HOVER_M)
                if _xy_dist(hover_m, grip_m) < self.XY_TOL_M and abs(hover_m[2] - grip_m[2]) < self.Z_TOL_M:
                    return "descend"
            case "descend":
                if float(np.linalg.norm(cube_m - grip_m)) < self.GRASP_TOL_M:
                    return "grasp"
                if _xy_dist(cube_m, grip_m) > 2.0 * self.XY_TOL_M:  # the cube was pushed away: hover again
                    return "approach"
            case "grasp":
                if self._grasp_steps >= self.GRASP_STEPS:
                    return "lift"
            case "lift":
                if holding_lost:
                    return "approach"
                if abs(self._carry_z_m - grip_m[2]) < self.Z_TOL_M:
                    return "carry"
            case "carry":
                if holding_lost:
                    return "approach"
                if _xy_dist(goal_m, grip_m) < self.XY_TOL_M:
                    return "place"
            case "place":
                if holding_lost:
                    return "approach"
        return self.phase

    def _target(self, grip_m: np.ndarray, cube_m: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        match self.phase:
            case "approach":
                return cube_m + (0.0, 0.0, self.HOVER_M), self.OPEN
            case "descend":
                return cube_m, self.OPEN
            case "grasp":
                return cube_m, self.CLOSE
            case "lift":
                return np.array([grip_m[0], grip_m[1], self._carry_z_m]), self.CLOSE
            case "carry":
                return np.array([goal_m[0], goal_m[1], self._carry_z_m]), self.CLOSE
            case _:
                return goal_m, self.CLOSE


class FetchScene:
    """The Fetch pick-and-place env, driven by :class:`ScriptedPickAndPlacePolicy` and rendered from one camera.

    Each :meth:`step` applies one policy action (20 physics substeps, ``dt_s`` = 0.04 s) and renders the state
    three times with one ``mujoco.Renderer`` (RGB; depth; segmentation). Instance ids: gripper = the two finger
    geoms (the box around their visible part is centred 2 cm above the grip site, while adding the gripper link
    would move it ~8 cm up), cube = the ``object0`` geom, table = the geoms of body ``table0``; everything else
    (robot arm, floor) is 0. The mocap target marker geoms and all sites (goal marker) are hidden, because they are
    not physical and would otherwise occlude depth.

    ``camera`` is None for :data:`DEFAULT_VIEW` or the name of a camera in the model (``external_camera_0``,
    ``head_camera_rgb``, ``gripper_camera_rgb``, ``lidar``); :attr:`camera` follows cameras on moving bodies.
    ``policy_noise`` is the standard deviation of Gaussian noise added to each action component (range [-1, 1]).

    Determinism: the env and the policy noise are seeded with ``seed``; the same calls give identical frames.
    One 640x480 step takes ~55 ms on two CPU cores with EGL software rendering (three renders of ~20 ms each).
    """

    LABELS: ClassVar[tuple[str, ...]] = ("gripper", "cube", "table")  # instance_id = index + 1

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
        self._policy = ScriptedPickAndPlacePolicy(policy_noise, np.random.default_rng(seed))
        self.task = task
        self._width = int(width)
        self._height = int(height)
        self._mujoco, gymnasium = _import_simulator()
        self._env = gymnasium.make(TASKS[task], width=self._width, height=self._height)
        built = False
        try:
            self._setup(camera, seed)
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

        camera_names = [model.camera(i).name for i in range(model.ncam)]
        self._render_camera: int | mujoco.MjvCamera
        if camera is None:
            self._render_camera = _free_camera(mj, DEFAULT_VIEW)
            self._camera_label = "the default free camera"
        elif camera in camera_names:
            self._render_camera = camera_names.index(camera)
            self._camera_label = f"camera {camera!r}"
        else:
            raise SimError(
                f"unknown camera {camera!r}; use None (the default front-side free camera) or one of the model's "
                f"cameras: {', '.join(camera_names)}"
            )

        # The mocap bodies carry visual-only crosshair geoms (no collisions) that mark the arm's target; they are not
        # objects, so make them invisible (MuJoCo skips geoms with alpha 0 in rendering and in mj_ray).
        mocap_geoms = (model.body_mocapid[model.geom_bodyid] >= 0) & (model.geom_contype == 0) & (
            model.geom_conaffinity == 0
        )
        model.geom_rgba[mocap_geoms, 3] = 0.0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self._width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self._height)

        self._label_geoms: dict[str, np.ndarray] = {
            "gripper": np.array([self._geom_id(name) for name in _FINGER_GEOMS]),
            "cube": np.array([self._geom_id(_CUBE_GEOM)]),
            "table": np.flatnonzero(model.geom_bodyid == self._named_id(mj.mjtObj.mjOBJ_BODY, _TABLE_BODY)),
        }
        # Lookup table indexed by (geom id + 1), so the segmentation's -1 (nothing drawn) maps to 0.
        self._geom_to_instance = np.zeros(model.ngeom + 1, dtype=np.uint16)
        for instance_id, label in enumerate(self.LABELS, start=1):
            self._geom_to_instance[self._label_geoms[label] + 1] = instance_id
        self._grip_site = self._named_id(mj.mjtObj.mjOBJ_SITE, _GRIP_SITE)

        self._scene_option = mj.MjvOption()
        self._scene_option.sitegroup[:] = 0  # sites (goal marker, grip site) are annotations, not geometry
        try:
            self._renderer = mj.Renderer(model, self._height, self._width)
        except (RuntimeError, mj.FatalError) as exc:
            raise SimError(
                f"cannot create a {self._width}x{self._height} MuJoCo renderer ({exc}); headless machines need "
                f"MUJOCO_GL=egl (or osmesa), currently MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}"
            ) from exc

        self._obs, _ = self._env.reset(seed=seed)
        # The env is in its first episode and nothing has been shown yet: reset() without a seed shows this state,
        # so FetchScene(seed=s).reset() is the same episode as FetchScene(...).reset(seed=s).
        self._untouched = True
        self._episode_over = False
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

    def instance_labels(self) -> dict[int, str]:
        """Map instance ids in ``SimFrame.instance_ids`` to labels; 0 (background) is not included."""
        return {index + 1: label for index, label in enumerate(self.LABELS)}

    def reset(self, seed: int | None = None) -> SimFrame:
        """Start a new episode and return its first frame.

        With ``seed``, the env and the policy noise are re-seeded; without, they continue their random streams.
        """
        self._check_open()
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
        reward = self._env.unwrapped.compute_reward(self._obs["achieved_goal"], self._obs["desired_goal"], {})
        return self._make_frame(float(reward))

    def step(self) -> SimFrame:
        """Apply one scripted action and return the rendered result.

        After the step that ends an episode (Fetch truncates after 50 steps), the next call resets the env and
        returns the new episode's first frame (``step == 0``) instead of acting.
        """
        self._check_open()
        if self._episode_over:
            return self.reset()
        action = self._policy.act(self._obs["observation"], self._obs["desired_goal"])
        self._obs, reward, terminated, truncated, _ = self._env.step(action)
        self._untouched = False
        self._episode_over = bool(terminated or truncated)
        self._episode_step += 1
        self._ticks += 1
        return self._make_frame(float(reward))

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

    def _make_frame(self, env_reward: float) -> SimFrame:
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
            step=self._episode_step,
            stamp_s=self._ticks * self._dt_s,
            rgb=read_only(rgb),
            depth_m=read_only(depth_m),
            instance_ids=read_only(instance_ids),
            objects=self._ground_truth(),
            env_reward=env_reward,
            grip_site_m=read_only(self._data.site_xpos[self._grip_site].copy()),
        )

    def _ground_truth(self) -> tuple[GroundTruthObject, ...]:
        """Read positions and boxes from the same MjData arrays the renderer drew, so both describe one state."""
        data = self._data
        objects = []
        for instance_id, label in enumerate(self.LABELS, start=1):
            low_m, high_m = self._world_aabb(self._label_geoms[label])
            if label == "cube":
                position_m = data.geom_xpos[self._label_geoms["cube"][0]].copy()
            else:
                position_m = (low_m + high_m) / 2.0
            objects.append(
                GroundTruthObject(
                    label=label,
                    instance_id=instance_id,
                    position_m=read_only(position_m),
                    size_m=read_only(high_m - low_m),
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


def _xy_dist(a_m: np.ndarray, b_m: np.ndarray) -> float:
    return float(np.hypot(a_m[0] - b_m[0], a_m[1] - b_m[1]))


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


def _import_simulator() -> tuple[ModuleType, ModuleType]:
    """Import MuJoCo (:func:`import_mujoco`) and Gymnasium-Robotics on demand."""
    mujoco = import_mujoco()
    try:
        import gymnasium
        import gymnasium_robotics
    except ImportError as exc:
        raise SimError(
            f"the MuJoCo simulator is not installed ({exc}); install the extra: pip install 'trusted_scene_graph[sim]'"
        ) from exc
    gymnasium.register_envs(gymnasium_robotics)
    return mujoco, gymnasium
