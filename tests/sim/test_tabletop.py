"""Tests for the randomised MuJoCo tabletop scenes: layout rules, camera conventions and ground truth.

Geometry is checked against MuJoCo itself (the compiled geoms' boxes and poses, ``mj_ray`` through pixel centres)
and against an independent re-rendering, so the checks do not reuse the scene's own bookkeeping.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("mujoco")

import mujoco  # noqa: E402

from trusted_scene_graph.sim import (  # noqa: E402
    COLOURS,
    SHAPES,
    SimError,
    TabletopFrame,
    TabletopScene,
    TabletopSettings,
)

pytestmark = pytest.mark.sim

SMALL = {"width": 160, "height": 120}


def render(seed: int, **settings: object) -> tuple[TabletopScene, TabletopFrame]:
    """Render a scene and return it closed (its model and data stay readable for geometric checks)."""
    scene = TabletopScene(seed, TabletopSettings(**settings))  # type: ignore[arg-type]
    with scene:
        return scene, scene.render()


@pytest.fixture(scope="module")
def full_size() -> Iterator[list[tuple[TabletopScene, TabletopFrame]]]:
    """Scenes at the product's resolution with every layout feature: plain, stacked, both kinds of near-tie."""
    yield [
        render(0),
        render(1, stacks=2),
        render(2, stacks=1, near_tie="left"),
        render(3, near_tie="depth"),
    ]


def horizontal_axes(frame: TabletopFrame) -> tuple[np.ndarray, np.ndarray]:
    """The camera's horizontal left and forward directions in the world, from the optical-frame rotation."""
    rotation = frame.camera_to_world.rotation.as_matrix()
    left, forward = -rotation[:, 0], rotation[:, 2]
    left[2] = forward[2] = 0.0
    return left / np.linalg.norm(left), forward / np.linalg.norm(forward)


def world_to_pixel(frame: TabletopFrame, point_m: np.ndarray) -> tuple[float, float, float]:
    optical_m = frame.camera_to_world.rotation.inv().apply(point_m - frame.camera_to_world.translation_m)
    k = frame.intrinsics
    return k.fx * optical_m[0] / optical_m[2] + k.cx, k.fy * optical_m[1] / optical_m[2] + k.cy, optical_m[2]


def back_project_world_m(frame: TabletopFrame, mask: np.ndarray) -> np.ndarray:
    v_px, u_px = np.nonzero(mask)
    z_m = frame.depth_m[v_px, u_px].astype(np.float64)
    k = frame.intrinsics
    optical_m = np.stack([(u_px - k.cx) / k.fx * z_m, (v_px - k.cy) / k.fy * z_m, z_m], axis=1)
    return frame.camera_to_world.apply(optical_m)


# --- determinism and content --------------------------------------------------------------------------------------


def test_the_same_seed_gives_identical_frames_and_other_seeds_differ() -> None:
    _, first = render(11, stacks=1, near_tie="left", **SMALL)
    _, again = render(11, stacks=1, near_tie="left", **SMALL)
    assert first.rgb.tobytes() == again.rgb.tobytes()
    assert np.array_equal(first.depth_m, again.depth_m, equal_nan=True)
    assert np.array_equal(first.instances, again.instances)
    for a, b in zip(first.objects, again.objects, strict=True):
        assert (a.label, a.visible_pixels, a.visible_fraction) == (b.label, b.visible_pixels, b.visible_fraction)
        assert np.array_equal(a.centre_m, b.centre_m) and np.array_equal(a.size_m, b.size_m)
    assert np.array_equal(first.camera_to_world.matrix, again.camera_to_world.matrix)
    assert not first.rgb.flags.writeable and not first.objects[0].centre_m.flags.writeable

    _, other = render(12, stacks=1, near_tie="left", **SMALL)
    assert [o.label for o in other.objects] != [o.label for o in first.objects]


def test_scenes_follow_the_settings_and_label_objects_uniquely_by_colour_and_shape() -> None:
    settings = {"num_objects_range": (4, 7), "camera_distance_range_m": (0.8, 1.0),
                "camera_elevation_down_range_deg": (30.0, 40.0), "camera_azimuth_range_deg": (10.0, 50.0)}
    for seed in range(4):
        scene, frame = render(seed, **settings, **SMALL)
        n = len(frame.objects)
        assert 4 <= n <= 7
        assert [o.instance_id for o in frame.objects] == list(range(1, n + 1))
        assert frame.table_instance_id == n + 1
        assert frame.labels_by_id == {**{o.instance_id: o.label for o in frame.objects}, n + 1: "table"}
        assert len({o.label for o in frame.objects}) == n, "labels are unique within a scene"
        for obj in frame.objects:
            assert obj.label == f"{obj.colour} {obj.shape}" and obj.colour in COLOURS and obj.shape in SHAPES
        assert set(np.unique(frame.instances).tolist()) <= set(range(n + 2))
        assert frame.instances.dtype == np.uint16 and frame.depth_m.dtype == np.float32
        assert frame.rgb.shape == (120, 160, 3) and frame.rgb.dtype == np.uint8

        lookat_m = np.array([0.0, 0.0, frame.table_top_z_m])
        camera_m = frame.camera_to_world.translation_m
        assert 0.8 - 1e-6 <= np.linalg.norm(camera_m - lookat_m) <= 1.0 + 1e-6
        optical_axis = frame.camera_to_world.rotation.as_matrix()[:, 2]
        assert 30.0 - 1e-4 <= -math.degrees(math.asin(optical_axis[2])) <= 40.0 + 1e-4
        assert 10.0 - 1e-4 <= math.degrees(math.atan2(optical_axis[1], optical_axis[0])) <= 50.0 + 1e-4
        np.testing.assert_allclose(camera_m + np.linalg.norm(camera_m - lookat_m) * optical_axis, lookat_m,
                                   atol=1e-5, err_msg="the camera looks at the table-top centre")
        for obj in frame.objects:
            assert obj.distance_m == pytest.approx(float(np.linalg.norm(obj.centre_m - camera_m)))
        assert np.array_equal(frame.table_normal, [0.0, 0.0, 1.0])


def test_object_sizes_stay_within_the_range_and_boxes_differ_from_cubes() -> None:
    for seed in range(6):
        scene, frame = render(seed, rotate_boxes=False, **SMALL)
        for obj in frame.objects:
            assert obj.yaw_deg == 0.0
            assert (obj.size_m >= 0.02 - 1e-12).all() and (obj.size_m <= 0.12 + 1e-12).all(), obj
            if obj.shape == "cube":
                assert obj.size_m[0] == pytest.approx(obj.size_m[1]) == pytest.approx(obj.size_m[2])
            if obj.shape == "box":
                assert obj.size_m.max() >= 1.5 * obj.size_m.min()
            if obj.shape in ("cylinder", "sphere", "capsule"):
                assert obj.size_m[0] == obj.size_m[1], "round shapes have equal x and y extents"


# --- layout -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_objects_do_not_interpenetrate_and_rest_on_the_table_or_on_each_other(seed: int) -> None:
    scene, frame = render(seed, stacks=seed % 3, near_tie=("none", "left", "depth")[seed % 3], **SMALL)
    model, data = scene.model, scene.data
    by_id = {o.instance_id: o for o in frame.objects}
    for obj in frame.objects:
        # The compiled geom's world box, from MuJoCo's own local box and pose, is the ground-truth box.
        geom = model.geom(f"object_{obj.instance_id}").id
        rotation = data.geom_xmat[geom].reshape(3, 3)
        centre_m = data.geom_xpos[geom] + rotation @ model.geom_aabb[geom, :3]
        np.testing.assert_allclose(centre_m, obj.centre_m, atol=1e-9)
        np.testing.assert_allclose(2.0 * np.abs(rotation) @ model.geom_aabb[geom, 3:], obj.size_m, atol=1e-9)
    for a, b in itertools.combinations(frame.objects, 2):
        gap_m = np.abs(a.centre_m - b.centre_m) - (a.size_m + b.size_m) / 2.0  # per axis; > 0 = apart
        if b.supported_by == a.instance_id or a.supported_by == b.instance_id:
            assert gap_m[2] == pytest.approx(0.0, abs=1e-12) and (gap_m[:2] < 0.0).all(), (
                f"seed {seed}: stacked {a.label} and {b.label} do not touch"
            )
        else:
            # Disjoint boxes around the objects: the objects cannot interpenetrate.
            assert max(gap_m[0], gap_m[1]) >= 0.005 - 1e-12, f"seed {seed}: {a.label} and {b.label} overlap"
    for obj in frame.objects:
        bottom_m = obj.centre_m[2] - obj.size_m[2] / 2.0
        if obj.supported_by == frame.table_instance_id:
            assert bottom_m == pytest.approx(frame.table_top_z_m, abs=1e-12)
        else:
            base = by_id[obj.supported_by]
            assert bottom_m == pytest.approx(base.centre_m[2] + base.size_m[2] / 2.0, abs=1e-12)
        assert (np.abs(obj.centre_m[:2]) + obj.size_m[:2] / 2.0 <= np.array([0.3, 0.225]) + 1e-12).all(), (
            "objects stay inside the placement area on the table"
        )


def test_a_stacked_scene_has_objects_whose_bottom_is_their_base_top() -> None:
    for seed in range(5):
        _, frame = render(seed, stacks=2, **SMALL)
        by_id = {o.instance_id: o for o in frame.objects}
        stacked = [o for o in frame.objects if o.supported_by != frame.table_instance_id]
        assert len(stacked) == 2
        for top in stacked:
            base = by_id[top.supported_by]
            assert base.shape in ("cube", "box", "cylinder"), "only flat tops carry objects"
            assert base.supported_by == frame.table_instance_id
            assert top.centre_m[2] - top.size_m[2] / 2.0 == pytest.approx(base.centre_m[2] + base.size_m[2] / 2.0,
                                                                          abs=1e-12)
            assert (np.abs(top.centre_m[:2] - base.centre_m[:2]) < base.size_m[:2] / 2.0).all(), (
                "the top object's centre is above its base"
            )


@pytest.mark.parametrize("axis", ["left", "depth"])
def test_a_near_tie_pair_is_within_a_centimetre_along_the_chosen_camera_axis(axis: str) -> None:
    for seed in range(6):
        _, frame = render(seed, near_tie=axis, **SMALL)
        assert frame.near_tie_axis == axis and frame.near_tie_pair is not None
        first, second = (frame.objects[i - 1] for i in frame.near_tie_pair)
        left, forward = horizontal_axes(frame)
        offset_m = first.centre_m - second.centre_m
        tied, spread = (left, forward) if axis == "left" else (forward, left)
        assert abs(offset_m @ tied) < 0.01, f"seed {seed}: the pair is {abs(offset_m @ tied):.4f} m apart along {axis}"
        assert abs(offset_m @ spread) > 0.02, "the pair is separated along the other horizontal axis"
    _, plain = render(0, **SMALL)
    assert plain.near_tie_pair is None and plain.near_tie_axis == "none"


# --- rendering against geometry -----------------------------------------------------------------------------------


def test_true_centres_of_unoccluded_objects_project_into_their_masks(
    full_size: list[tuple[TabletopScene, TabletopFrame]],
) -> None:
    checked = 0
    for _, frame in full_size:
        for obj in frame.objects:
            u_px, v_px, z_m = world_to_pixel(frame, obj.centre_m)
            assert z_m > 0.0
            inside = 0 <= round(u_px) < frame.intrinsics.width and 0 <= round(v_px) < frame.intrinsics.height
            if obj.visible_fraction == 1.0 and inside:
                assert frame.instances[round(v_px), round(u_px)] == obj.instance_id, obj.label
                checked += 1
    assert checked >= 12


def test_back_projected_pixels_of_each_instance_lie_in_its_true_box(
    full_size: list[tuple[TabletopScene, TabletopFrame]],
) -> None:
    for _, frame in full_size:
        for obj in frame.objects:
            if obj.visible_pixels == 0:
                continue
            points_m = back_project_world_m(frame, frame.instances == obj.instance_id)
            assert np.isfinite(points_m).all()
            outside_m = (np.abs(points_m - obj.centre_m) - obj.size_m / 2.0).max(axis=1)
            assert (outside_m < 0.005).mean() >= 0.99, f"{obj.label}: pixels off its box"
            assert outside_m.max() < 0.01, f"{obj.label}: a pixel is {outside_m.max() * 1000:.1f} mm off its box"
        table_points_m = back_project_world_m(frame, frame.instances == frame.table_instance_id)
        assert table_points_m[:, 2].max() == pytest.approx(frame.table_top_z_m, abs=0.003)


def test_instances_and_depth_agree_with_mujoco_ray_casting(
    full_size: list[tuple[TabletopScene, TabletopFrame]],
) -> None:
    rng = np.random.default_rng(0)
    for scene, frame in full_size:
        model, data = scene.model, scene.data
        instance_of_geom = np.zeros(model.ngeom, dtype=np.uint16)
        for obj in frame.objects:
            instance_of_geom[model.geom(f"object_{obj.instance_id}").id] = obj.instance_id
        instance_of_geom[model.geom("table").id] = frame.table_instance_id
        # Away from silhouette edges, where pixel coverage and the pixel-centre ray may legitimately differ.
        interior = uniform_neighbourhood(frame.instances)
        is_object = (frame.instances > 0) & (frame.instances < frame.table_instance_id)
        object_pixels, other_pixels = np.argwhere(interior & is_object), np.argwhere(interior & ~is_object)
        pixels = np.concatenate([object_pixels[rng.choice(len(object_pixels), 600)],  # over-sampled: they are small
                                 other_pixels[rng.choice(len(other_pixels), 300)]])
        k = frame.intrinsics
        rotation = frame.camera_to_world.rotation.as_matrix()
        origin_m = frame.camera_to_world.translation_m.copy()
        geom_id = np.zeros(1, dtype=np.int32)
        for v_px, u_px in pixels:
            ray = rotation @ np.array([(u_px - k.cx) / k.fx, (v_px - k.cy) / k.fy, 1.0])  # z = 1: hit = z-depth
            hit_m = mujoco.mj_ray(model, data, origin_m, ray, None, 1, -1, geom_id)
            expected = instance_of_geom[geom_id[0]] if geom_id[0] >= 0 else 0
            assert frame.instances[v_px, u_px] == expected, f"pixel ({u_px}, {v_px})"
            if geom_id[0] < 0:
                assert np.isnan(frame.depth_m[v_px, u_px]), "no depth where the ray hits nothing"
            else:
                # Boxes are exact; curved shapes are drawn tessellated, within ~0.6 mm of the true surface.
                assert frame.depth_m[v_px, u_px] == pytest.approx(hit_m, abs=0.001), f"pixel ({u_px}, {v_px})"


def uniform_neighbourhood(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label."""
    padded = np.pad(labels, 1, mode="edge")
    same = np.ones(labels.shape, dtype=bool)
    for dv in range(3):
        for du in range(3):
            same &= padded[dv : dv + labels.shape[0], du : du + labels.shape[1]] == labels
    return same


def test_visible_fraction_matches_rendering_each_object_alone_with_the_others_moved_away() -> None:
    scene, frame = render(2, stacks=1, near_tie="left", num_objects_range=(10, 10), width=320, height=240)
    assert any(0.0 < o.visible_fraction < 1.0 for o in frame.objects), "the scene should show occlusion"
    assert any(o.visible_fraction == 1.0 for o in frame.objects)
    # Independently of the scene's alpha trick: a fresh model where all other geoms are moved 100 m down.
    model = mujoco.MjModel.from_xml_string(scene.mjcf)
    data = mujoco.MjData(model)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:], camera.distance = scene.view.lookat_m, scene.view.distance_m
    camera.azimuth, camera.elevation = scene.view.azimuth_deg, scene.view.elevation_deg
    original_pos = model.geom_pos.copy()
    with mujoco.Renderer(model, 240, 320) as renderer:
        renderer.enable_segmentation_rendering()
        for obj in frame.objects:
            geom = model.geom(f"object_{obj.instance_id}").id
            model.geom_pos[:] = original_pos - np.array([0.0, 0.0, 100.0])
            model.geom_pos[geom] = original_pos[geom]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            alone_pixels = int((renderer.render()[..., 0] == geom).sum())
            assert obj.visible_pixels == int((frame.instances == obj.instance_id).sum())
            assert obj.visible_pixels <= alone_pixels
            expected = obj.visible_pixels / alone_pixels if alone_pixels else 0.0
            assert obj.visible_fraction == pytest.approx(expected, abs=1e-12), obj.label
            assert (obj.visible_pixels > 0) == (obj.visible_fraction > 0.0)


def test_every_object_with_a_visible_fraction_has_instance_pixels(
    full_size: list[tuple[TabletopScene, TabletopFrame]],
) -> None:
    for _, frame in full_size:
        counts = np.bincount(frame.instances.ravel(), minlength=len(frame.objects) + 2)
        for obj in frame.objects:
            assert 0.0 <= obj.visible_fraction <= 1.0
            assert (obj.visible_fraction > 0.0) == (counts[obj.instance_id] > 0) == (obj.visible_pixels > 0)
        assert np.isfinite(frame.depth_m[frame.instances > 0]).all()
        assert (frame.instances[np.isnan(frame.depth_m)] == 0).all(), "only the sky has no depth"


# --- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"num_objects_range": (5, 3)}, r"num_objects_range=\(5, 3\)"),
        ({"object_size_range_m": (0.05, 0.08)}, r"object_size_range_m=\(0.05, 0.08\).*high >= 2 \* low"),
        ({"camera_distance_range_m": (1.0, 0.5)}, r"camera_distance_range_m=\(1.0, 0.5\)"),
        ({"camera_elevation_down_range_deg": (20.0, 95.0)}, r"camera_elevation_down_range_deg=\(20.0, 95.0\)"),
        ({"near_tie": "diagonal"}, r"near_tie='diagonal'"),
        ({"stacks": 4, "num_objects_range": (3, 6)}, r"stacks=4 .* need 8 objects"),
        ({"placement_area_m": (2.0, 0.4)}, r"placement_area_m=\(2.0, 0.4\)"),
        ({"width": 0}, r"image size 0x480"),
    ],
)
def test_invalid_settings_raise_a_sim_error_naming_the_value(settings: dict[str, object], match: str) -> None:
    with pytest.raises(SimError, match=match):
        TabletopSettings(**settings)  # type: ignore[arg-type]


def test_an_overfull_placement_area_raises_a_sim_error() -> None:
    with pytest.raises(SimError, match=r"could not place 10 objects .* placement_area_m=\(0.15, 0.15\)"):
        TabletopScene(0, TabletopSettings(num_objects_range=(10, 10), placement_area_m=(0.15, 0.15), **SMALL))


def test_a_closed_scene_cannot_render() -> None:
    scene, _ = render(0, **SMALL)
    with pytest.raises(SimError, match="closed"):
        scene.render()
