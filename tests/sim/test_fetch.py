"""Tests for the MuJoCo Fetch scene: camera conventions, determinism, the scripted policy and the label images.

The geometric checks use MuJoCo itself as the oracle (true object poses and ``mj_multiRay``), so they test the
intrinsics, the depth convention and the optical-frame extrinsics together, the way the product consumes them.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium_robotics")

import mujoco  # noqa: E402

from trusted_scene_graph.sim import CameraModel, FetchScene, SimError, SimFrame  # noqa: E402

pytestmark = pytest.mark.sim

GRIPPER, CUBE, TABLE = 1, 2, 3


def back_project_world_m(camera: CameraModel, depth_m: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Lift the masked depth pixels to (N, 3) world points, independently of the package's geometry code."""
    v_px, u_px = np.nonzero(mask)
    z_m = depth_m[v_px, u_px].astype(np.float64)
    optical_m = np.stack([(u_px - camera.cx) / camera.fx * z_m, (v_px - camera.cy) / camera.fy * z_m, z_m], axis=1)
    return optical_m @ camera.camera_to_world[:3, :3].T + camera.camera_to_world[:3, 3]


def visible_box_centre_m(frame: SimFrame, camera: CameraModel, instance_id: int) -> np.ndarray:
    points_m = back_project_world_m(camera, frame.depth_m, frame.instance_ids == instance_id)
    assert len(points_m) > 20, f"instance {instance_id} has only {len(points_m)} pixels"
    assert np.isfinite(points_m).all()
    return (points_m.min(axis=0) + points_m.max(axis=0)) / 2.0


def interior(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label: rasterisation and a ray through the pixel centre must agree."""
    padded = np.pad(labels, 1, mode="edge")
    same = np.ones(labels.shape, dtype=bool)
    for dv in range(3):
        for du in range(3):
            same &= padded[dv : dv + labels.shape[0], du : du + labels.shape[1]] == labels
    return same


@pytest.fixture(scope="module")
def episode_640() -> Iterator[tuple[FetchScene, list[tuple[SimFrame, CameraModel]]]]:
    """The first 24 frames of seed 0 at the product's default resolution (reset, approach, descend, grasp, lift)."""
    with FetchScene(width=640, height=480, seed=0) as scene:
        frames = [(scene.reset(), scene.camera)]
        for _ in range(23):
            frames.append((scene.step(), scene.camera))
        yield scene, frames


def test_back_projected_masks_are_centred_on_ground_truth(
    episode_640: tuple[FetchScene, list[tuple[SimFrame, CameraModel]]],
) -> None:
    _, frames = episode_640
    grip_to_cube_m = [
        float(np.linalg.norm(f.objects[GRIPPER - 1].position_m - f.objects[CUBE - 1].position_m)) for f, _ in frames
    ]
    near = [i for i, d in enumerate(grip_to_cube_m) if d < 0.03]
    assert near, f"the gripper never came within 3 cm of the cube: {np.round(grip_to_cube_m, 3)}"
    # The start, the approach, the first frames with the gripper at the cube, and while holding it.
    checked = sorted({0, 3, near[0], near[0] + 1, near[0] + 4, near[-1]})
    for index in checked:
        frame, camera = frames[index]
        cube, gripper = frame.objects[CUBE - 1], frame.objects[GRIPPER - 1]
        cube_error_m = np.linalg.norm(visible_box_centre_m(frame, camera, CUBE) - cube.position_m)
        assert cube_error_m < 0.015, f"step {frame.step}: cube box centre off by {cube_error_m * 1000:.1f} mm"
        gripper_error_m = np.linalg.norm(visible_box_centre_m(frame, camera, GRIPPER) - gripper.position_m)
        assert gripper_error_m < 0.015, f"step {frame.step}: gripper box centre off by {gripper_error_m * 1000:.1f} mm"
        # The finger box sits 2.0 cm above the grip site by construction (robot.xml: site at x=0.02 in the gripper
        # link frame, finger geoms at x=0); the grip site is what kinematics reports as the end effector.
        assert np.linalg.norm(gripper.position_m - frame.grip_site_m) == pytest.approx(0.02, abs=0.002)


def test_every_labelled_pixel_lies_on_its_object(
    episode_640: tuple[FetchScene, list[tuple[SimFrame, CameraModel]]],
) -> None:
    """Each instance's back-projected pixels fall inside that object's true box, also where it is occluded."""
    _, frames = episode_640
    for frame, camera in frames[::4]:
        for obj in frame.objects:
            points_m = back_project_world_m(camera, frame.depth_m, frame.instance_ids == obj.instance_id)
            outside_m = np.abs(points_m - obj_box_centre_m(frame, obj.label)) - obj.size_m / 2.0
            assert outside_m.max() < 0.002, (
                f"step {frame.step}: a {obj.label} pixel is {outside_m.max() * 1000:.1f} mm outside its box"
            )


def obj_box_centre_m(frame: SimFrame, label: str) -> np.ndarray:
    """Centre of the ground-truth box (for the gripper, the box around both fingers)."""
    return next(o for o in frame.objects if o.label == label).position_m


def test_same_seed_gives_identical_frames_and_seeds_differ() -> None:
    def run(seed: int) -> list[SimFrame]:
        with FetchScene(width=320, height=240, seed=seed, policy_noise=0.2) as scene:
            return [scene.reset()] + [scene.step() for _ in range(10)]

    first, second = run(7), run(7)
    for a, b in zip(first, second, strict=True):
        assert (a.step, a.stamp_s, a.env_reward) == (b.step, b.stamp_s, b.env_reward)
        assert a.rgb.tobytes() == b.rgb.tobytes()
        assert np.array_equal(a.depth_m, b.depth_m, equal_nan=True)
        assert np.array_equal(a.instance_ids, b.instance_ids)
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert np.array_equal(oa.position_m, ob.position_m) and np.array_equal(oa.size_m, ob.size_m)
    assert first[-1].stamp_s == pytest.approx(10 * 0.04)
    assert not first[0].rgb.flags.writeable, "frames are shared between threads and must be immutable"

    cube_starts_m = []
    for seed in (7, 8):
        with FetchScene(width=64, height=48, seed=seed) as scene:
            cube_starts_m.append(scene.reset().objects[CUBE - 1].position_m)
    assert np.linalg.norm(cube_starts_m[0][:2] - cube_starts_m[1][:2]) > 0.005
    assert np.array_equal(cube_starts_m[0], first[0].objects[CUBE - 1].position_m)


def test_reset_with_seed_replays_the_episode() -> None:
    with FetchScene(width=64, height=48, seed=3, policy_noise=0.2) as scene:
        start = scene.reset()
        for _ in range(5):
            scene.step()
        replay = scene.reset(seed=3)
        assert replay.step == 0 and replay.stamp_s > start.stamp_s
        assert replay.rgb.tobytes() == start.rgb.tobytes()
        assert scene.step().rgb.tobytes() != start.rgb.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scripted_policy_picks_the_cube_up(seed: int) -> None:
    with FetchScene(width=64, height=48, seed=seed) as scene:
        start = scene.reset()
        episode = [start]
        while True:
            frame = scene.step()
            if frame.step == 0:
                break
            episode.append(frame)
    start_z_m = start.objects[CUBE - 1].position_m[2]
    lift_m = max(f.objects[CUBE - 1].position_m[2] for f in episode) - start_z_m
    assert len(episode) == 51, "Fetch episodes are 50 steps; the next step() starts a new episode"
    assert lift_m > 0.03, f"seed {seed}: the cube rose only {lift_m * 100:.1f} cm"
    assert episode[-1].env_reward > -0.05, f"seed {seed}: the cube ended {-episode[-1].env_reward:.3f} m from the goal"
    assert frame.stamp_s > episode[-1].stamp_s, "stamps must keep increasing across the automatic reset"


@pytest.mark.parametrize("camera", [None, "external_camera_0", "lidar"])
def test_instance_ids_and_depth_agree_with_ray_casting(camera: str | None) -> None:
    with FetchScene(width=160, height=120, seed=0, camera=camera) as scene:
        check_against_rays(scene, scene.reset(), camera)  # scene.data holds the state of the latest frame
        for _ in range(13):
            scene.step()
        check_against_rays(scene, scene.step(), camera)  # holding the cube


def check_against_rays(scene: FetchScene, frame: SimFrame, camera_name: str | None) -> None:
    model, data, camera = scene.model, scene.data, scene.camera
    ids, depth_m = frame.instance_ids, frame.depth_m
    assert set(np.unique(ids)) <= {0, GRIPPER, CUBE, TABLE}
    assert np.isfinite(depth_m[ids == TABLE]).all()
    assert (depth_m[np.isfinite(depth_m)] > 0).all()

    # Independent expectation: cast a ray through every pixel centre and label the geom it hits.
    geom_label = np.zeros(model.ngeom, dtype=np.uint16)
    geom_label[[model.geom(n).id for n in ("robot0:r_gripper_finger_link", "robot0:l_gripper_finger_link")]] = GRIPPER
    geom_label[model.geom("object0").id] = CUBE
    geom_label[model.geom_bodyid == model.body("table0").id] = TABLE
    v_px, u_px = np.mgrid[0 : camera.height, 0 : camera.width]
    optical = np.stack([(u_px - camera.cx) / camera.fx, (v_px - camera.cy) / camera.fy, np.ones(u_px.shape)], -1)
    rays = optical.reshape(-1, 3) @ camera.camera_to_world[:3, :3].T  # optical z = 1, so hit distance = z-depth
    origin_m = camera.camera_to_world[:3, 3].copy()
    hit_geom = np.zeros(len(rays), dtype=np.int32)
    hit_depth_m = np.zeros(len(rays))
    geom_id = np.zeros(1, dtype=np.int32)
    # One mj_ray per pixel (~4 us each): mj_multiRay in MuJoCo 3.11 misses some mesh hits that mj_ray finds.
    for index, ray in enumerate(rays):
        hit_depth_m[index] = mujoco.mj_ray(model, data, origin_m, ray, None, 1, -1, geom_id)
        hit_geom[index] = geom_id[0]
    hit_geom, hit_depth_m = hit_geom.reshape(ids.shape), hit_depth_m.reshape(ids.shape)
    expected_ids = np.where(hit_geom >= 0, geom_label[hit_geom], 0)

    # Compare away from silhouette edges, where pixel coverage and the pixel-centre ray may legitimately differ.
    smooth = interior(np.where(hit_geom >= 0, hit_geom, -1)) & interior(ids.astype(np.int32))
    assert smooth.mean() > 0.5
    mismatch = smooth & (ids != expected_ids)
    assert not mismatch.any(), f"{camera_name}: {mismatch.sum()} interior pixels have the wrong instance id"
    assert set(np.unique(ids[smooth])) == set(np.unique(expected_ids[smooth])), "ids are exactly the visible objects"
    missed = hit_geom < 0
    assert np.array_equal(np.isnan(depth_m)[smooth], missed[smooth]), "NaN exactly where no geometry is hit"
    depth_error_m = np.abs(depth_m - hit_depth_m)[smooth & ~missed]
    assert depth_error_m.max() < 0.002, f"{camera_name}: depth differs from ray casting by {depth_error_m.max():.4f} m"
    if camera_name is None:
        assert {GRIPPER, CUBE, TABLE} <= set(np.unique(ids)), "the default view shows all labelled objects"
    if camera_name == "lidar":
        assert set(np.unique(ids)) == {0, TABLE}, "the low lidar camera sees only the table's side"


def test_default_camera_pose_and_intrinsics_match_mujoco() -> None:
    with FetchScene(width=320, height=240, camera="external_camera_0") as scene:
        camera, model, data = scene.camera, scene.model, scene.data
        cam = model.camera("external_camera_0")
        fovy_rad = np.deg2rad(model.cam_fovy[cam.id])
        assert camera.fy == pytest.approx(0.5 * 240 / np.tan(fovy_rad / 2.0), rel=1e-6)
        assert camera.fx == pytest.approx(camera.fy)
        assert (camera.cx, camera.cy) == (159.5, 119.5)
        expected_rotation = data.cam_xmat[cam.id].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        np.testing.assert_allclose(camera.camera_to_world[:3, :3], expected_rotation, atol=1e-6)
        np.testing.assert_allclose(camera.camera_to_world[:3, 3], data.cam_xpos[cam.id], atol=1e-6)
        np.testing.assert_allclose(camera.camera_to_world[3], [0.0, 0.0, 0.0, 1.0])
        assert scene.instance_labels() == {1: "gripper", 2: "cube", 3: "table"}
    with pytest.raises(SimError, match="closed"):
        scene.step()


def test_unknown_task_and_camera_raise_sim_error() -> None:
    with pytest.raises(SimError, match=r"unknown task 'FetchBogus'.*known tasks: FetchPickAndPlace"):
        FetchScene(task="FetchBogus")
    with pytest.raises(SimError, match=r"unknown camera 'nope'.*external_camera_0"):
        FetchScene(width=64, height=48, camera="nope")
    with pytest.raises(SimError, match="policy_noise"):
        FetchScene(policy_noise=-1.0)


def test_importing_the_package_loads_no_simulator_and_no_ros() -> None:
    code = (
        "import sys, trusted_scene_graph.sim\n"
        "loaded = {'mujoco', 'gymnasium', 'gymnasium_robotics', 'rclpy'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
