"""Scripted, phase-based policies for the Gymnasium-Robotics Fetch tasks (Reach, Push, PickAndPlace, Slide).

Why scripted: the demo and the benchmark recordings need scenes whose relations change (cube on table -> in gripper
-> at goal) in a reproducible way without a learned policy. Each policy is a proportional controller on the grip
site whose set point depends on a phase; a phase change takes effect in the step that detects it.

All policies read the env's ``obs["observation"]`` vector (layout: gymnasium_robotics fetch_env
``generate_mujoco_observations``) and ``obs["desired_goal"]`` and return the Fetch action ``(dx, dy, dz,
gripper)`` in [-1, 1], where Fetch moves the arm's target by ``5 cm * action[:3]`` per step. ``noise`` is the
standard deviation of Gaussian noise added to every action component (then clipped to [-1, 1]); it is drawn from
``rng`` once per step, so a seeded generator makes an episode reproducible.

This module imports no simulator: the policies work on numpy arrays only.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from trusted_scene_graph.sim import SimError

# Layout of the Fetch ``obs["observation"]`` vector. Reach has no object, so its vector holds only the first slice.
_OBS_GRIP_POS = slice(0, 3)
_OBS_OBJECT_POS = slice(3, 6)
_OBS_OBJECT_REL_VEL = slice(14, 17)  # (object velocity - grip velocity) * dt
_OBS_GRIP_VEL = slice(20, 23)  # grip velocity * dt


def check_noise(noise: float) -> float:
    """Return ``noise`` as a float if it is a valid action noise standard deviation, else raise :class:`SimError`."""
    if not math.isfinite(noise) or noise < 0.0:
        raise SimError(f"policy_noise={noise} must be a finite standard deviation >= 0")
    return float(noise)


class ScriptedFetchPolicy:
    """Shared machinery: phase transitions, the proportional step towards a set point and the action noise."""

    PHASES: ClassVar[tuple[str, ...]] = ()
    MAX_STEP_M: ClassVar[float] = 0.05  # Fetch scales action[:3] by 5 cm per step
    OPEN: ClassVar[float] = 1.0
    CLOSE: ClassVar[float] = -1.0
    LOCKED: ClassVar[float] = 0.0  # Reach, Push and Slide lock the fingers: the env ignores action[3]

    def __init__(self, noise: float, rng: np.random.Generator) -> None:
        self.noise = check_noise(noise)
        self.rng = rng
        self.phase = self.PHASES[0]
        self._phase_steps = 0  # acts taken in the current phase, counting the one that entered it

    def reset(self) -> None:
        """Start a new episode (the random generator continues, so episodes differ but stay reproducible)."""
        self.phase = self.PHASES[0]
        self._phase_steps = 0

    def act(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Return the Fetch action ``(dx, dy, dz, gripper)`` in [-1, 1] for the env's ``obs`` dict entries."""
        observation = np.asarray(observation, dtype=np.float64)
        goal_m = np.asarray(desired_goal, dtype=np.float64)
        # Follow transitions until the phase is stable, so a transition takes effect in the same step.
        for _ in range(len(self.PHASES)):
            new_phase = self._next_phase(observation, goal_m)
            if new_phase == self.phase:
                break
            self._enter(new_phase, observation, goal_m)
            self.phase = new_phase
            self._phase_steps = 0
        target_m, gripper = self._target(observation, goal_m)
        self._phase_steps += 1
        grip_m = observation[_OBS_GRIP_POS]
        action = np.append(np.clip((target_m - grip_m) / self.MAX_STEP_M, -1.0, 1.0), gripper)
        if self.noise > 0.0:
            action = action + self.rng.normal(0.0, self.noise, size=4)
        return np.clip(action, -1.0, 1.0)

    def _next_phase(self, observation: np.ndarray, goal_m: np.ndarray) -> str:
        raise NotImplementedError

    def _enter(self, phase: str, observation: np.ndarray, goal_m: np.ndarray) -> None:
        """Hook run when ``phase`` is entered, before its first set point is computed."""

    def _target(self, observation: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        raise NotImplementedError


class ScriptedReachPolicy(ScriptedFetchPolicy):
    """FetchReach: move the grip site straight to the goal and stay there (one phase, ``reach``)."""

    PHASES: ClassVar[tuple[str, ...]] = ("reach",)

    def _next_phase(self, observation: np.ndarray, goal_m: np.ndarray) -> str:
        return self.phase

    def _target(self, observation: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        return goal_m, self.LOCKED


class ScriptedPickAndPlacePolicy(ScriptedFetchPolicy):
    """FetchPickAndPlace: pick the cube up and carry it to the goal.

    Phases: ``approach`` (hover above the cube, gripper open), ``descend``, ``grasp`` (close for a few steps),
    ``lift`` (straight up to the carry height), ``carry`` (to above the goal), ``place`` (to the goal, holding). If
    the cube slips out, it starts again from ``approach``.
    """

    PHASES: ClassVar[tuple[str, ...]] = ("approach", "descend", "grasp", "lift", "carry", "place")
    HOVER_M: ClassVar[float] = 0.08  # approach height above the cube centre
    LIFT_M: ClassVar[float] = 0.10  # minimum carry height above the cube centre at grasp time
    XY_TOL_M: ClassVar[float] = 0.01
    Z_TOL_M: ClassVar[float] = 0.02
    GRASP_TOL_M: ClassVar[float] = 0.01  # grip site to cube centre distance to start closing
    DROP_TOL_M: ClassVar[float] = 0.03  # grip site to cube centre distance that means the cube was lost
    GRASP_STEPS: ClassVar[int] = 2

    def __init__(self, noise: float, rng: np.random.Generator) -> None:
        super().__init__(noise, rng)
        self._carry_z_m = math.nan

    def reset(self) -> None:
        super().reset()
        self._carry_z_m = math.nan

    def _enter(self, phase: str, observation: np.ndarray, goal_m: np.ndarray) -> None:
        if phase == "lift":
            cube_m = observation[_OBS_OBJECT_POS]
            self._carry_z_m = max(float(goal_m[2]), float(cube_m[2]) + self.LIFT_M)

    def _next_phase(self, observation: np.ndarray, goal_m: np.ndarray) -> str:
        grip_m, cube_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
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
                if self._phase_steps >= self.GRASP_STEPS:
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

    def _target(self, observation: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        grip_m, cube_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
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


class ScriptedPushPolicy(ScriptedFetchPolicy):
    """FetchPush (fingers locked): push the cube along the table to the goal with the closed fingers.

    Phases: ``align`` (hover above a point behind the cube, on the far side from the goal), ``descend`` (lower to
    the cube's centre height there), ``push`` (move along the cube-to-goal line, re-aimed every step, so the cube
    slides ahead of the fingers), ``hold`` (stay still once the cube is at the goal). If the fingers leave the line
    behind the cube (the cube turned or slipped sideways), it starts again from ``align``, which lifts the fingers
    over the cube instead of dragging it back.
    """

    PHASES: ClassVar[tuple[str, ...]] = ("align", "descend", "push", "hold")
    HOVER_M: ClassVar[float] = 0.06  # clearance above the cube centre while moving around it
    BEHIND_M: ClassVar[float] = 0.07  # grip site to cube centre before pushing: 2.5 cm half cube, 1.35 cm fingers
    CONTACT_M: ClassVar[float] = 0.04  # grip site to cube centre while the fingers touch the cube's face
    PUSH_STEP_M: ClassVar[float] = 0.03  # how far ahead of the contact point the set point leads while pushing
    XY_TOL_M: ClassVar[float] = 0.01
    Z_TOL_M: ClassVar[float] = 0.01
    LINE_TOL_M: ClassVar[float] = 0.02  # sideways offset of the fingers from the push line that restarts
    GOAL_TOL_M: ClassVar[float] = 0.02  # cube-to-goal distance at which pushing stops (success is < 5 cm)
    STEER_M: ClassVar[float] = 0.035  # closer than this to the goal the push direction is too noisy to steer by
    LOST_TOL_M: ClassVar[float] = 0.045  # cube-to-goal distance at which holding starts over

    def _next_phase(self, observation: np.ndarray, goal_m: np.ndarray) -> str:
        grip_m, cube_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
        to_goal_m = _xy_dist(goal_m, cube_m)
        behind_m = _behind(cube_m, goal_m, self.BEHIND_M)
        match self.phase:
            case "align":
                if _xy_dist(behind_m, grip_m) < self.XY_TOL_M and grip_m[2] > cube_m[2] + self.HOVER_M - self.Z_TOL_M:
                    return "descend"
            case "descend":
                if _xy_dist(behind_m, grip_m) > 2.0 * self.XY_TOL_M:
                    return "align"
                if abs(grip_m[2] - cube_m[2]) < self.Z_TOL_M:
                    return "push"
            case "push":
                if to_goal_m < self.GOAL_TOL_M:
                    return "hold"
                along_m, across_m = _line_coordinates(grip_m, cube_m, goal_m)
                if abs(across_m) > self.LINE_TOL_M or along_m > -self.CONTACT_M + self.XY_TOL_M:
                    # Close to the goal the line turns quickly as the cube passes beside it: stop rather than chase.
                    return "hold" if to_goal_m < self.STEER_M else "align"
            case "hold":
                if to_goal_m > self.LOST_TOL_M:
                    return "align"
        return self.phase

    def _target(self, observation: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        grip_m, cube_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
        match self.phase:
            case "align":
                # Rise first where the fingers are low near the cube, so they go over it rather than through it.
                behind_m = _behind(cube_m, goal_m, self.BEHIND_M) + (0.0, 0.0, self.HOVER_M)
                if grip_m[2] < cube_m[2] + self.HOVER_M - self.Z_TOL_M and _xy_dist(grip_m, cube_m) < self.BEHIND_M:
                    return np.array([grip_m[0], grip_m[1], behind_m[2]]), self.LOCKED
                return behind_m, self.LOCKED
            case "descend":
                return _behind(cube_m, goal_m, self.BEHIND_M), self.LOCKED
            case "push":
                step_m = min(self.PUSH_STEP_M, 0.5 * _xy_dist(goal_m, cube_m))  # slow down to stop at the goal
                return _behind(cube_m, goal_m, self.CONTACT_M - step_m), self.LOCKED
            case _:
                return grip_m.copy(), self.LOCKED


class ScriptedSlidePolicy(ScriptedFetchPolicy):
    """FetchSlide (fingers locked, slippery table): strike the puck once so that it slides to the goal.

    Why a strike: the goal is often beyond the arm's reach and the arm moves at most ~0.65 m/s, so the puck is hit
    from a short run-up; the impact leaves it up to ~1.7 times faster than the fingers (<= 1.1 m/s, so goals more
    than ~0.6-0.7 m away along x or y cannot be reached). Two details decide where the puck stops:

    * Aim: the locked finger block is a box with faces along world x and y, and a face pushes the puck along its
      normal whatever the stroke's direction. So the policy hits the puck with the block corner whose outward
      diagonal points along the wanted launch direction: a corner pushes towards the puck's centre.
    * Path: the table's friction bends the puck's path (see :func:`_launch_velocity_m_s`), so the launch direction
      is not the direction to the goal.

    Phases: ``align`` (hover above the run-up start behind the puck), ``descend`` (to the puck's height),
    ``settle`` (until the fingers are still on the stroke line), ``strike`` (along the launch direction at a speed
    set by the distance to go), ``follow`` (one more step of the stroke: the contact lasts into it), ``retreat``
    (back off and up, so the puck is not touched again), ``wait`` (until the puck stops; if it stopped short and
    within reach, ``align`` again for another stroke).

    Measured on FetchSlideDense-v4 (final step within 5 cm): ~85-90 % of episodes without noise, ~15-20 % with
    ``noise`` 0.1, which shifts the stroke's aim and speed by several degrees and ~0.1 m/s.
    """

    PHASES: ClassVar[tuple[str, ...]] = ("align", "descend", "settle", "strike", "follow", "retreat", "wait")
    PUCK_RADIUS_M: ClassVar[float] = 0.025  # slide.xml: cylinder size 0.025 0.02
    # Half extent of the locked finger block around the grip site along world x and y (robot.xml finger boxes:
    # x +-0.0135 turned ~2 deg, y from -0.0166 to +0.0152; y = 0.015-0.016 did best of 0.012-0.019 in 80 episodes).
    FINGER_HALF_M: ClassVar[tuple[float, float]] = (0.015, 0.0155)
    RUNUP_M: ClassVar[float] = 0.04  # gap between the striking corner and the puck before the stroke
    HOVER_M: ClassVar[float] = 0.06  # fingers' clearance height above the puck centre while moving around it
    HEIGHT_M: ClassVar[float] = 0.005  # grip site above the puck centre while striking: finger bottoms clear the table
    XY_TOL_M: ClassVar[float] = 0.002
    Z_TOL_M: ClassVar[float] = 0.005
    STILL_M_S: ClassVar[float] = 0.01  # speed under which fingers or puck count as still
    MOVING_M_S: ClassVar[float] = 0.05  # puck speed that means the stroke has hit
    # The launch model: the puck's sliding deceleration (friction 0.1 gives 0.98 m/s^2; the fitted 0.9 absorbs the
    # contact's bias), and the puck's launch speed SPEED_PER_ACTION_M_S * s - SPEED_OFFSET_M_S for a stroke of
    # action magnitude s (least squares over 80 strokes, then checked against neighbours on final distances).
    DECELERATION_M_S2: ClassVar[float] = 0.9
    SPEED_PER_ACTION_M_S: ClassVar[float] = 1.17
    SPEED_OFFSET_M_S: ClassVar[float] = 0.075
    MIN_ACTION: ClassVar[float] = 0.15
    SETTLE_STEPS: ClassVar[int] = 8  # give up on stillness after this many steps, to leave time for the slide
    STRIKE_STEPS: ClassVar[int] = 12  # the slowest stroke covers the run-up in ~7 steps; later means a miss
    FOLLOW_STEPS: ClassVar[int] = 1  # retreating at once would cut the impulse short (puck ~25 % slower)
    RETREAT_STEPS: ClassVar[int] = 3
    GOAL_TOL_M: ClassVar[float] = 0.03  # a puck stopped this close to the goal is left alone
    REACH_X_M: ClassVar[float] = 1.3  # world x beyond which the arm cannot get behind the puck for another stroke

    def __init__(self, noise: float, rng: np.random.Generator, dt_s: float) -> None:
        super().__init__(noise, rng)
        self.dt_s = float(dt_s)
        self._direction = np.array([1.0, 0.0, 0.0])
        self._strength = 1.0

    def reset(self) -> None:
        super().reset()
        self._direction = np.array([1.0, 0.0, 0.0])
        self._strength = 1.0

    def _puck_velocity_m_s(self, observation: np.ndarray) -> np.ndarray:
        return (observation[_OBS_OBJECT_REL_VEL] + observation[_OBS_GRIP_VEL]) / self.dt_s

    def _stroke(self, puck_m: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        """Unit stroke direction (3,) and the puck speed it must leave with, for the puck to stop at the goal."""
        launch_m_s = _launch_velocity_m_s(goal_m[:2] - puck_m[:2], self.DECELERATION_M_S2)
        speed_m_s = float(np.linalg.norm(launch_m_s))
        if speed_m_s < 1e-9:
            return np.array([1.0, 0.0, 0.0]), 0.0
        return np.append(launch_m_s / speed_m_s, 0.0), speed_m_s

    def _start_m(self, puck_m: np.ndarray, goal_m: np.ndarray) -> np.ndarray:
        """Grip site position at the start of the stroke: the striking corner ``RUNUP_M`` behind the puck."""
        direction, _ = self._stroke(puck_m, goal_m)
        half_x_m, half_y_m = self.FINGER_HALF_M
        corner_m = np.array([half_x_m * np.sign(direction[0]), half_y_m * np.sign(direction[1]), 0.0])
        start_m = puck_m - (self.PUCK_RADIUS_M + self.RUNUP_M) * direction - corner_m
        start_m[2] = puck_m[2] + self.HEIGHT_M
        return start_m

    def _enter(self, phase: str, observation: np.ndarray, goal_m: np.ndarray) -> None:
        if phase == "strike":
            self._direction, speed_m_s = self._stroke(observation[_OBS_OBJECT_POS], goal_m)
            strength = (speed_m_s + self.SPEED_OFFSET_M_S) / self.SPEED_PER_ACTION_M_S
            self._strength = min(1.0, max(self.MIN_ACTION, strength))  # 1.0: the goal is out of range, fall short

    def _next_phase(self, observation: np.ndarray, goal_m: np.ndarray) -> str:
        grip_m, puck_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
        puck_speed_m_s = float(np.linalg.norm(self._puck_velocity_m_s(observation)[:2]))
        grip_speed_m_s = float(np.linalg.norm(observation[_OBS_GRIP_VEL])) / self.dt_s
        start_m = self._start_m(puck_m, goal_m)
        match self.phase:
            case "align":
                if _xy_dist(start_m, grip_m) < 2 * self.XY_TOL_M:
                    return "descend"
            case "descend":
                if _xy_dist(start_m, grip_m) > 5.0 * self.XY_TOL_M:
                    return "align"
                if abs(grip_m[2] - start_m[2]) < self.Z_TOL_M:
                    return "settle"
            case "settle":
                on_line = _xy_dist(start_m, grip_m) < self.XY_TOL_M
                if (on_line and grip_speed_m_s < self.STILL_M_S) or self._phase_steps >= self.SETTLE_STEPS:
                    return "strike"
            case "strike":
                if puck_speed_m_s > self.MOVING_M_S:
                    return "follow"
                if self._phase_steps >= self.STRIKE_STEPS:  # missed (noise): line up again
                    return "align"
            case "follow":
                if self._phase_steps >= self.FOLLOW_STEPS:
                    return "retreat"
            case "retreat":
                if self._phase_steps >= self.RETREAT_STEPS:
                    return "wait"
            case "wait":
                stopped = puck_speed_m_s < self.STILL_M_S
                if stopped and _xy_dist(goal_m, puck_m) > self.GOAL_TOL_M and puck_m[0] < self.REACH_X_M:
                    return "align"
        return self.phase

    def _target(self, observation: np.ndarray, goal_m: np.ndarray) -> tuple[np.ndarray, float]:
        grip_m, puck_m = observation[_OBS_GRIP_POS], observation[_OBS_OBJECT_POS]
        match self.phase:
            case "align":
                start_m = self._start_m(puck_m, goal_m)
                hover_z_m = puck_m[2] + self.HOVER_M
                if grip_m[2] < hover_z_m - self.Z_TOL_M and _xy_dist(grip_m, start_m) > self.XY_TOL_M * 5:
                    return np.array([grip_m[0], grip_m[1], hover_z_m]), self.LOCKED
                return start_m + (0.0, 0.0, self.HOVER_M - self.HEIGHT_M), self.LOCKED
            case "descend" | "settle":
                return self._start_m(puck_m, goal_m), self.LOCKED
            case "strike" | "follow":
                return grip_m + self._strength * self.MAX_STEP_M * self._direction, self.LOCKED
            case "retreat":
                return grip_m - self.MAX_STEP_M * self._direction + (0.0, 0.0, self.MAX_STEP_M), self.LOCKED
            case _:
                return grip_m.copy(), self.LOCKED


def _xy_dist(a_m: np.ndarray, b_m: np.ndarray) -> float:
    return float(np.hypot(a_m[0] - b_m[0], a_m[1] - b_m[1]))


def _push_direction(object_m: np.ndarray, goal_m: np.ndarray) -> np.ndarray:
    """Unit vector in the table plane from the object to the goal ((1, 0, 0) if they coincide)."""
    delta_m = np.array([goal_m[0] - object_m[0], goal_m[1] - object_m[1], 0.0])
    norm_m = float(np.linalg.norm(delta_m))
    return delta_m / norm_m if norm_m > 1e-6 else np.array([1.0, 0.0, 0.0])


def _behind(object_m: np.ndarray, goal_m: np.ndarray, distance_m: float) -> np.ndarray:
    """The point ``distance_m`` behind the object on the goal-to-object line, at the object's height."""
    return object_m - distance_m * _push_direction(object_m, goal_m)


def _line_coordinates(point_m: np.ndarray, object_m: np.ndarray, goal_m: np.ndarray) -> tuple[float, float]:
    """Coordinates of ``point_m`` relative to the object along the object-to-goal direction and across it."""
    direction = _push_direction(object_m, goal_m)
    offset_m = point_m - object_m
    return float(offset_m[0] * direction[0] + offset_m[1] * direction[1]), float(
        offset_m[1] * direction[0] - offset_m[0] * direction[1]
    )


def _launch_velocity_m_s(displacement_m: np.ndarray, deceleration_m_s2: float) -> np.ndarray:
    """Initial (x, y) velocity that makes a puck slide by ``displacement_m`` under MuJoCo's pyramidal friction.

    MuJoCo's default pyramidal friction cone (condim 3, contact tangents along world x and y for the flat table)
    bounds ``|f_x| + |f_y|`` rather than the force's length, and maximal dissipation then puts all friction on the
    axis with the larger speed: that component slows at ``a`` while the other keeps its speed, until both are equal
    and both slow at ``a / 2``. Integrating gives ``D_major = (v_major**2 + v_minor**2) / (2 a)`` and
    ``D_minor = v_major * v_minor / a``, which this inverts. The path is therefore bent away from the major axis,
    and the speed needed depends on the larger displacement component only.
    """
    magnitude_m = np.abs(displacement_m)
    major = int(magnitude_m[1] > magnitude_m[0])
    sum_m_s = math.sqrt(2.0 * deceleration_m_s2 * (magnitude_m[major] + magnitude_m[1 - major]))
    difference_m_s = math.sqrt(2.0 * deceleration_m_s2 * (magnitude_m[major] - magnitude_m[1 - major]))
    velocity_m_s = np.zeros(2)
    velocity_m_s[major] = (sum_m_s + difference_m_s) / 2.0
    velocity_m_s[1 - major] = (sum_m_s - difference_m_s) / 2.0
    return velocity_m_s * np.where(displacement_m < 0.0, -1.0, 1.0)
