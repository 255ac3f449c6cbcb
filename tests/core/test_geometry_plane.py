"""The graph frame from a RANSAC fit of the support plane."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trusted_scene_graph.geometry import GeometryError, Intrinsics, RigidTransform
from trusted_scene_graph.geometry.plane import camera_to_graph_from_plane, fit_plane_ransac, fit_support_plane

INTRINSICS = Intrinsics(160, 120, 140.0, 140.0, 79.5, 59.5)


def render_plane_depth(camera_to_world: RigidTransform, plane_z_m: float = 0.0) -> np.ndarray:
    """Depth image of the horizontal plane z = plane_z_m (world) seen by a pinhole camera."""
    rows, cols = np.mgrid[0:INTRINSICS.height, 0:INTRINSICS.width]
    rays = np.stack([(cols - INTRINSICS.cx) / INTRINSICS.fx, (rows - INTRINSICS.cy) / INTRINSICS.fy,
                     np.ones_like(cols, dtype=float)], axis=-1)
    rays_world = camera_to_world.rotation.apply(rays.reshape(-1, 3)).reshape(rays.shape)
    z_depth = (plane_z_m - camera_to_world.translation_m[2]) / rays_world[..., 2]
    return np.where(z_depth > 0, z_depth, np.nan).astype(np.float32)


def look_at(eye: np.ndarray, target: np.ndarray) -> RigidTransform:
    """Optical frame (x right, y down, z forward) at ``eye`` looking at ``target`` (world z up)."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([right, down, forward], axis=1)
    matrix[:3, 3] = eye
    return RigidTransform.from_matrix(matrix)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))))


def test_plane_fit_recovers_up_and_camera_height_despite_clutter():
    camera = look_at(np.array([-0.8, 0.3, 0.9]), np.array([0.0, 0.0, 0.0]))
    depth = render_plane_depth(camera)
    # A box-shaped blob of clutter standing on the plane covers a quarter of the image.
    depth[30:90, 40:120] *= 0.8
    fit = fit_support_plane(depth, INTRINSICS, 0.01, 200, 0.2, np.random.default_rng(0))
    up_in_optical = camera.rotation.inv().apply([0.0, 0.0, 1.0])
    assert angle_deg(fit.normal, up_in_optical) < 0.5
    assert fit.camera_height_m == pytest.approx(0.9, abs=0.005)
    assert fit.inlier_fraction == pytest.approx(0.75, abs=0.01)  # the clutter covers exactly a quarter


def test_graph_frame_is_rep103_with_x_along_the_view_and_origin_below_the_camera():
    camera = look_at(np.array([-0.8, 0.3, 0.9]), np.array([0.0, 0.0, 0.0]))
    fit = fit_support_plane(render_plane_depth(camera), INTRINSICS, 0.01, 100, 0.5, np.random.default_rng(1))
    to_graph = camera_to_graph_from_plane(fit)
    assert to_graph.apply(np.zeros((1, 3)))[0] == pytest.approx([0.0, 0.0, 0.9], abs=0.005)
    forward = to_graph.rotation.apply([0.0, 0.0, 1.0])
    assert forward[1] == pytest.approx(0.0, abs=1e-6)  # the view direction has no sideways component
    assert forward[0] > 0 and forward[2] < 0  # looking forward and down
    image_right = to_graph.rotation.apply([1.0, 0.0, 0.0])
    assert image_right[1] < -0.99  # image right is graph -y: y is left as seen from the camera
    assert np.linalg.det(to_graph.rotation.as_matrix()) == pytest.approx(1.0)


def test_top_down_camera_takes_forward_from_image_up():
    camera = RigidTransform(Rotation.from_euler("x", 180, degrees=True), np.array([0.0, 0.0, 1.2]))
    fit = fit_support_plane(render_plane_depth(camera), INTRINSICS, 0.01, 100, 0.5, np.random.default_rng(2))
    to_graph = camera_to_graph_from_plane(fit)
    image_up = to_graph.rotation.apply([0.0, -1.0, 0.0])
    assert image_up == pytest.approx([1.0, 0.0, 0.0], abs=1e-3)
    assert to_graph.translation_m[2] == pytest.approx(1.2, abs=0.005)


def test_fit_is_deterministic_for_a_seed():
    camera = look_at(np.array([-0.8, 0.3, 0.9]), np.array([0.0, 0.0, 0.0]))
    depth = render_plane_depth(camera)
    a = fit_support_plane(depth, INTRINSICS, 0.01, 50, 0.2, np.random.default_rng(7))
    b = fit_support_plane(depth, INTRINSICS, 0.01, 50, 0.2, np.random.default_rng(7))
    assert np.array_equal(a.normal, b.normal)


def test_scattered_points_have_no_dominant_plane():
    points = np.random.default_rng(3).uniform(-1, 1, size=(2000, 3))
    with pytest.raises(GeometryError, match=r"no dominant plane: the best plane holds .* below the minimum 20.0%"):
        fit_plane_ransac(points, 0.005, 100, 0.2, np.random.default_rng(0))


@pytest.mark.parametrize(("points", "message"), [
    (np.zeros((2, 3)), "at least 3 finite points, got 2"),
    (np.full((10, 3), np.nan), "at least 3 finite points, got 0"),
    (np.zeros((5, 2)), r"expected \(N, 3\) points"),
    (np.tile([[0.0, 0.0, 1.0]], (10, 1)), "collinear"),
])
def test_degenerate_inputs_are_rejected(points, message):
    with pytest.raises(GeometryError, match=message):
        fit_plane_ransac(points, 0.01, 20, 0.1, np.random.default_rng(0))


def test_a_few_pixels_with_depth_are_no_support_plane():
    depth = np.full((INTRINSICS.height, INTRINSICS.width), np.nan, dtype=np.float32)
    depth[10, 10], depth[100, 150], depth[10, 150], depth[100, 12] = 1.0, 3.0, 0.7, 2.2  # a dropout's leftovers
    with pytest.raises(GeometryError, match=r"4 pixels with depth are too few for a support plane \(at least 50\)"):
        fit_support_plane(depth, INTRINSICS, 0.01, 200, 0.2, np.random.default_rng(0))


def test_one_row_of_pixels_with_depth_fits_no_support_plane_however_noisy():
    # A row's pixels lie in a plane through the camera; with noise RANSAC fits it rather than refusing collinearity.
    camera = look_at(np.array([-1.0, 0.0, 0.9]), np.array([0.0, 0.0, 0.0]))
    depth = np.full((INTRINSICS.height, INTRINSICS.width), np.nan, dtype=np.float32)
    depth[70] = render_plane_depth(camera)[70] + np.random.default_rng(0).normal(0.0, 0.001, INTRINSICS.width)
    with pytest.raises(GeometryError, match=r"lie along a line|passes through the camera"):
        fit_support_plane(depth, INTRINSICS, 0.01, 200, 0.2, np.random.default_rng(0))


def test_empty_depth_image_is_rejected():
    depth = np.full((INTRINSICS.height, INTRINSICS.width), np.nan, dtype=np.float32)
    with pytest.raises(GeometryError, match="at least 3 finite points, got 0"):
        fit_support_plane(depth, INTRINSICS, 0.01, 20, 0.1, np.random.default_rng(0))
