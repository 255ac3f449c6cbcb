"""Tests for the four Fetch tasks: labels, goal/success/episode fields, scripted policies, default views, determinism.

The camera conventions themselves are checked in ``test_fetch.py`` (against MuJoCo's ray casting); here the
per-task ground truth is checked against the env's own definitions (desired goal, 5 cm success threshold, dense
reward) and against MuJoCo's body frames.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

from trusted_scene_graph.sim import (  # noqa: E402
    DEFAULT_VIEW,
    TASK_VIEWS,
    TASKS,
    CameraModel,
    FetchScene,
    SimError,
    SimFrame,
)

pytestmark = pytest.mark.sim

SMALL = {"width": 160, "height": 120}
SUCCESS_M = 0.05  # every Fetch task's distance_threshold
EXPECTED_LABELS = {
    "FetchReach": {1: "gripper", 3: "table"},
    "FetchPush": {1: "gripper", 2: "cube", 3: "table"},
    "FetchPickAndPlace": {1: "gripper", 2: "cube", 3: "table"},
    "FetchSlide": {1: "gripper", 2: "puck", 3: "table"},
}
GOAL_OBJECT = {"FetchReach": None, "FetchPush": "cube", "FetchPickAndPlace": "cube", "FetchSlide": "puck"}
EPISODE_SEEDS = (0, 1, 2)


def run_episode(scene: FetchScene, seed: int) -> list[SimFrame]:
    """The reset frame and the 50 steps of the episode seeded with ``seed``."""
    return [scene.reset(seed=seed)] + [scene.step() for _ in range(FetchScene.EPISODE_STEPS)]


@pytest.fixture(scope="module", params=list(TASKS))
def episodes(request: pytest.FixtureRequest) -> tuple[str, CameraModel, dict[int, str], list[list[SimFrame]]]:
    """Three whole noise-free episodes per task at 160x120, rendered once per module."""
    task = request.param
    with FetchScene(task=task, seed=0, **SMALL) as scene:
        runs = [run_episode(scene, seed) for seed in EPISODE_SEEDS]
        return task, scene.camera, scene.instance_labels(), runs


def by_label(frame: SimFrame) -> dict[str, object]:
    return {obj.label: obj for obj in frame.objects}


def achieved_m(task: str, frame: SimFrame) -> np.ndarray:
    """What the env measures against the goal: the object's centre, or the grip site for Reach."""
    label = GOAL_OBJECT[task]
    return frame.grip_site_m if label is None else by_label(frame)[label].position_m


def test_every_task_has_its_labels_and_its_instance_ids_in_the_mask(episodes) -> None:
    task, _, instance_labels, runs = episodes
    assert instance_labels == EXPECTED_LABELS[task]
    seen_ids: set[int] = set()
    for frame in (f for run in runs for f in run):
        assert frame.task == task
        assert [(o.instance_id, o.label) for o in frame.objects] == sorted(instance_labels.items())
        ids = set(np.unique(frame.instance_ids).tolist())
        assert ids <= {0, *instance_labels}, f"{task} step {frame.step}: unexpected ids {ids}"
        seen_ids |= ids
    assert seen_ids == {0, *instance_labels}, f"{task}: every labelled object shows up in the instance mask"
    start = runs[0][0]
    assert {1, 3} <= set(np.unique(start.instance_ids).tolist()), "gripper and table are visible at the start"


@pytest.mark.parametrize("task", list(TASKS))
def test_scene_reports_its_labels_and_goal_object(task: str) -> None:
    with FetchScene(task=task, width=32, height=24) as scene:
        assert scene.instance_labels() == EXPECTED_LABELS[task]
        assert scene.labels == tuple(label for _, label in sorted(EXPECTED_LABELS[task].items()))
        assert scene.goal_object_label == GOAL_OBJECT[task]
    assert TASKS[task] == f"{task}Dense-v4"


def test_orientations_are_unit_quaternions_of_the_true_bodies(episodes) -> None:
    task, _, _, runs = episodes
    for frame in runs[0][::10]:
        objects = by_label(frame)
        for obj in frame.objects:
            assert np.linalg.norm(obj.orientation_xyzw) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_array_equal(objects["table"].orientation_xyzw, [0.0, 0.0, 0.0, 1.0])
        # Fetch holds its gripper link with x pointing down (the env's fixed target quaternion (1, 0, 1, 0), w first).
        finger_axis = Rotation.from_quat(objects["gripper"].orientation_xyzw).apply([1.0, 0.0, 0.0])
        np.testing.assert_allclose(finger_axis, [0.0, 0.0, -1.0], atol=0.1)
        if GOAL_OBJECT[task] is not None:
            # The object's extent along world z is the extent of its local box turned by its orientation.
            obj = objects[GOAL_OBJECT[task]]
            half_m = np.array([0.025, 0.025, 0.025]) if task != "FetchSlide" else np.array([0.025, 0.025, 0.02])
            turned = np.abs(Rotation.from_quat(obj.orientation_xyzw).as_matrix()) @ half_m
            np.testing.assert_allclose(obj.size_m, 2.0 * turned, atol=1e-6)


def test_goal_success_and_reward_follow_the_env_definitions(episodes) -> None:
    task, _, _, runs = episodes
    goals_m = []
    for run in runs:
        goals_m.append(run[0].goal_m)
        for frame in run:
            np.testing.assert_array_equal(frame.goal_m, run[0].goal_m)  # one goal per episode
            distance_m = float(np.linalg.norm(achieved_m(task, frame) - frame.goal_m))
            assert frame.env_reward == pytest.approx(-distance_m, abs=1e-9), "dense reward = -distance"
            assert frame.is_success == (distance_m < SUCCESS_M), f"{task} step {frame.step}: {distance_m:.3f} m"
            assert not frame.goal_m.flags.writeable
    assert len({tuple(g) for g in goals_m}) == len(runs), "each seeded episode samples its own goal"
    if task in ("FetchPush", "FetchPickAndPlace", "FetchSlide"):
        table = by_label(runs[0][0])["table"]
        table_top_m = table.position_m[2] + table.size_m[2] / 2.0
        assert all(g[2] >= table_top_m for g in goals_m), "object goals lie on or above the table"


def test_scripted_policies_reach_their_goals(episodes) -> None:
    """Reach, Push and PickAndPlace succeed on every seeded episode; Slide (one strike) on most (85 % measured)."""
    task, _, _, runs = episodes
    final = [run[-1] for run in runs]
    assert all(f.step == FetchScene.EPISODE_STEPS for f in final)
    successes = sum(f.is_success for f in final)
    distances_cm = [round(-100 * f.env_reward, 1) for f in final]
    if task == "FetchSlide":
        assert successes >= 2, f"{task}: final distances {distances_cm} cm"
    else:
        assert successes == len(runs), f"{task}: final distances {distances_cm} cm"
    assert not any(run[0].is_success for run in runs), "no episode starts solved"


def test_default_view_keeps_gripper_object_and_goal_in_the_image(episodes) -> None:
    task, camera, _, runs = episodes
    world_to_camera = np.linalg.inv(camera.camera_to_world)
    for run in runs:
        for frame in run:
            points_m = {"goal": frame.goal_m, "grip site": frame.grip_site_m}
            points_m |= {o.label: o.position_m for o in frame.objects if o.label != "table"}
            for name, point_m in points_m.items():
                x_m, y_m, z_m = world_to_camera[:3, :3] @ point_m + world_to_camera[:3, 3]
                u_px, v_px = camera.fx * x_m / z_m + camera.cx, camera.fy * y_m / z_m + camera.cy
                inside = z_m > 0 and 0 <= u_px <= camera.width - 1 and 0 <= v_px <= camera.height - 1
                assert inside, f"{task} step {frame.step}: the {name} projects to ({u_px:.0f}, {v_px:.0f})"
    assert TASK_VIEWS["FetchPickAndPlace"] == DEFAULT_VIEW


@pytest.mark.parametrize("task", ["FetchReach", "FetchPush", "FetchSlide"])
def test_same_seed_gives_identical_frames(task: str) -> None:
    def run() -> list[SimFrame]:
        with FetchScene(task=task, width=64, height=48, seed=5, policy_noise=0.2) as scene:
            return [scene.reset()] + [scene.step() for _ in range(12)]

    for a, b in zip(run(), run(), strict=True):
        assert (a.step, a.stamp_s, a.env_reward, a.is_success) == (b.step, b.stamp_s, b.env_reward, b.is_success)
        assert a.rgb.tobytes() == b.rgb.tobytes()
        assert np.array_equal(a.depth_m, b.depth_m, equal_nan=True)
        assert np.array_equal(a.instance_ids, b.instance_ids)
        assert np.array_equal(a.goal_m, b.goal_m) and np.array_equal(a.grip_site_m, b.grip_site_m)
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert np.array_equal(oa.position_m, ob.position_m)
            assert np.array_equal(oa.orientation_xyzw, ob.orientation_xyzw)


def test_episode_counts_resets_and_the_automatic_reset() -> None:
    with FetchScene(task="FetchReach", width=32, height=24, seed=3) as scene:
        first = scene.reset()
        frames = [first] + [scene.step() for _ in range(FetchScene.EPISODE_STEPS + 1)]
        assert first.episode == 0 and first.step == 0
        assert [f.episode for f in frames[:-1]] == [0] * (FetchScene.EPISODE_STEPS + 1)
        wrapped = frames[-1]
        assert (wrapped.episode, wrapped.step) == (1, 0), "the step after the 50th starts episode 1"
        assert not np.array_equal(wrapped.goal_m, first.goal_m)
        again = scene.reset(seed=3)
        assert (again.episode, again.step) == (2, 0)
        np.testing.assert_array_equal(again.goal_m, first.goal_m)  # same seed, same goal
    with FetchScene(task="FetchReach", width=32, height=24) as scene:
        assert (scene.step().episode, scene.reset().episode) == (0, 1), "stepping first is episode 0 as well"


def test_unknown_task_lists_the_known_tasks() -> None:
    with pytest.raises(SimError, match=r"unknown task 'FetchStack'; known tasks: FetchPickAndPlace, FetchPush, "
                                       r"FetchReach, FetchSlide"):
        FetchScene(task="FetchStack")
