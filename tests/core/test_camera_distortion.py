"""Lens distortion of raw images (sensor_msgs/CameraInfo D), rectified images (P) and their use in back-projection."""

from __future__ import annotations

import collections
import dataclasses
import sys

import cv2
import numpy as np
import pytest

from trusted_scene_graph.config.schema import Config, ConfigError
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.geometry import camera as camera_module
from trusted_scene_graph.geometry.camera import GeometryError, Intrinsics, back_project, normalized_coordinates
from trusted_scene_graph.geometry.plane import fit_support_plane
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import Detection
from trusted_scene_graph.perception.lifting import LiftingSettings, LiftRequest, lift_frames
from trusted_scene_graph.pipeline.messages import intrinsics_from_msg

W, H = 640, 480
PINHOLE = Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5)
# Distortions of the strength real calibrations have (a webcam's barrel, an Azure Kinect's rational model, a fisheye).
DISTORTIONS = {
    "plumb_bob": (-0.4, 0.2, 0.001, -0.002, 0.0),
    "rational_polynomial": (0.5488, -2.768, 0.0005, -0.0002, 1.575, 0.4257, -2.596, 1.499),
    "equidistant": (0.1, -0.05, 0.01, 0.0),
}


def _distorted(model: str) -> Intrinsics:
    return dataclasses.replace(PINHOLE, distortion_model=model, distortion=DISTORTIONS[model])


def _project(intrinsics: Intrinsics, points_m: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of optical-frame points through OpenCV's forward model, independent of the code under test."""
    camera_matrix = np.array([[intrinsics.fx, 0.0, intrinsics.cx], [0.0, intrinsics.fy, intrinsics.cy], [0, 0, 1.0]])
    coefficients = np.array(DISTORTIONS[intrinsics.distortion_model])
    if intrinsics.distortion_model == "equidistant":
        return cv2.fisheye.projectPoints(points_m[:, None, :], np.zeros(3), np.zeros(3), camera_matrix,
                                         coefficients)[0][:, 0]
    return cv2.projectPoints(points_m, np.zeros(3), np.zeros(3), camera_matrix, coefficients)[0][:, 0]


# --- back-projection through the distortion --------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_a_point_projected_through_a_distorted_camera_back_projects_onto_itself(model):
    rng = np.random.default_rng(0)
    points_m = np.stack([rng.uniform(-0.7, 0.7, 3000), rng.uniform(-0.5, 0.5, 3000), np.ones(3000)], axis=1)
    points_m *= rng.uniform(0.3, 6.0, size=(3000, 1))
    pixels = _project(_distorted(model), points_m)
    in_image = (pixels[:, 0] >= 0) & (pixels[:, 0] <= W - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] <= H - 1)
    assert in_image.sum() > 2000  # the image corners are among them
    lifted = back_project(_distorted(model), pixels[in_image, 0], pixels[in_image, 1], points_m[in_image, 2])
    error = np.linalg.norm(lifted - points_m[in_image], axis=1) / np.linalg.norm(points_m[in_image], axis=1)
    assert error.max() < 1e-6
    # The pinhole model alone puts the same pixels far off: the distortion is not negligible.
    pinhole = back_project(PINHOLE, pixels[in_image, 0], pixels[in_image, 1], points_m[in_image, 2])
    assert (np.linalg.norm(pinhole - points_m[in_image], axis=1) / np.linalg.norm(points_m[in_image], axis=1)
            ).max() > 0.01


def test_normalized_coordinates_keep_the_shape_of_their_pixel_arrays():
    cols, rows = np.meshgrid(np.arange(0, W, 80), np.arange(0, H, 60))
    x, y = normalized_coordinates(_distorted("plumb_bob"), cols, rows)
    assert x.shape == y.shape == cols.shape
    x_flat, y_flat = normalized_coordinates(_distorted("plumb_bob"), cols.ravel(), rows.ravel())
    np.testing.assert_array_equal(x.ravel(), x_flat)
    np.testing.assert_array_equal(y.ravel(), y_flat)


def _count_table_builds(monkeypatch) -> list[Intrinsics]:
    """The cameras whose whole-image undistortion table is asked for from now on (in order)."""
    asked: list[Intrinsics] = []
    build = camera_module._undistortion_table

    def counting(intrinsics):
        asked.append(intrinsics)
        return build(intrinsics)

    monkeypatch.setattr(camera_module, "_undistortion_table", counting)
    return asked


def test_integer_pixels_read_from_the_undistortion_table_equal_undistorting_them_one_by_one(monkeypatch):
    # Coefficients of this test alone: a camera no other test has lifted from.
    camera = dataclasses.replace(_distorted("rational_polynomial"), distortion=(0.5487, -2.768, 0.0005, -0.0002,
                                                                                1.575, 0.4257, -2.596, 1.499))
    tables = _count_table_builds(monkeypatch)
    rng = np.random.default_rng(2)
    cols, rows = rng.integers(0, W, 3000), rng.integers(0, H, 3000)
    direct = normalized_coordinates(camera, cols, rows)  # first seen: undistorted directly
    assert tables == []
    from_table = normalized_coordinates(camera, cols, rows)  # seen again: integer pixels from the table
    assert tables == [camera]
    np.testing.assert_array_equal(from_table[0], direct[0])  # bit for bit
    np.testing.assert_array_equal(from_table[1], direct[1])
    for index in range(0, 3000, 97):
        alone = normalized_coordinates(camera, np.array([float(cols[index])]), np.array([float(rows[index])]))
        assert (from_table[0][index], from_table[1][index]) == (alone[0][0], alone[1][0])
    outside = normalized_coordinates(camera, np.array([-1, W]), np.array([0, 0]))  # beyond the table: OpenCV
    border = normalized_coordinates(camera, np.array([0, W - 1]), np.array([0, 0]))
    assert outside[0][0] < border[0][0] < 0 < border[0][1] < outside[0][1]


def test_new_distortion_coefficients_build_no_table_until_the_camera_is_lifted_from_again(monkeypatch):
    # A driver whose camera_info changes slightly every frame: checking each new camera must stay cheap.
    tables = _count_table_builds(monkeypatch)
    cameras = [Intrinsics(1920, 1080, 1400.0, 1400.0, 959.5, 539.5, "plumb_bob", (-0.1 + 1e-9 * i, 0.05))
               for i in range(3)]
    assert tables == []
    depth_m = np.full((1080, 1920), 2.0, np.float32)
    detection = Detection("patch", 0.9, (900, 500, 60, 40), np.ones((1080, 1920), bool))
    lift = [lift_frames([LiftRequest([detection], depth_m, camera, IDENTITY)], SETTINGS)[0][0] for camera in cameras]
    assert tables == []  # each camera lifted from once: its pixels undistorted directly
    again = lift_frames([LiftRequest([detection], depth_m, cameras[0], IDENTITY)], SETTINGS)[0][0]
    assert tables == [cameras[0]]
    np.testing.assert_array_equal(again.centroid_m, lift[0].centroid_m)  # the table's rays are the same bits
    np.testing.assert_array_equal(again.size_m, lift[0].size_m)


def test_the_cameras_remembered_for_a_table_are_bounded(monkeypatch):
    monkeypatch.setattr(camera_module, "_SEEN_CAMERAS", collections.OrderedDict())
    tables = _count_table_builds(monkeypatch)
    cameras = [dataclasses.replace(PINHOLE, distortion_model="plumb_bob", distortion=(-0.1 - 1e-6 * i,))
               for i in range(camera_module._MAX_SEEN_CAMERAS + 1)]
    for camera in cameras:
        normalized_coordinates(camera, np.array([10]), np.array([20]))
    assert len(camera_module._SEEN_CAMERAS) == camera_module._MAX_SEEN_CAMERAS
    normalized_coordinates(cameras[0], np.array([10]), np.array([20]))  # forgotten: undistorted directly again
    normalized_coordinates(cameras[-1], np.array([10]), np.array([20]))  # remembered: its table
    assert tables == [cameras[-1]]


def test_no_pixels_give_no_coordinates():
    x, y = normalized_coordinates(_distorted("plumb_bob"), np.zeros(0), np.zeros(0))
    assert x.shape == y.shape == (0,)
    assert back_project(_distorted("plumb_bob"), np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0, 3)


def test_zero_distortion_is_the_pinhole_camera_bit_for_bit_and_needs_no_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # importing cv2 now fails: the pinhole path must not
    zero = Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "plumb_bob", (0.0, 0.0, 0.0, 0.0, 0.0))
    assert zero == PINHOLE and not zero.distorted
    rng = np.random.default_rng(1)
    u, v, z = rng.uniform(0, W, 500), rng.uniform(0, H, 500), rng.uniform(0.1, 9.0, 500)
    expected = np.stack([(u - 319.5) * z / 500.0, (v - 239.5) * z / 505.0, z], axis=-1)  # the formula as it was
    np.testing.assert_array_equal(back_project(zero, u, v, z), expected)
    x, y = normalized_coordinates(zero, u, v)
    np.testing.assert_array_equal(x, (u - 319.5) / 500.0)
    np.testing.assert_array_equal(y, (v - 239.5) / 505.0)


def test_the_ground_plane_fit_lifts_the_depth_image_through_the_distortion():
    camera = _distorted("plumb_bob")
    # A floor 1.2 m below a camera pitched down 30 degrees; z-depth per pixel along each pixel's true ray.
    rows, cols = np.mgrid[0:H, 0:W]
    x, y = normalized_coordinates(camera, cols, rows)
    pitch = np.radians(30.0)
    up = np.array([0.0, -np.cos(pitch), -np.sin(pitch)])  # in the optical frame (y down, z forward)
    along_up = x * up[0] + y * up[1] + up[2]
    depth_m = np.where(along_up < 0, -1.2 / along_up, np.nan).astype(np.float32)
    fitted = fit_support_plane(depth_m, camera, 0.005, 200, 0.5, np.random.default_rng(0))
    pinhole_fit = fit_support_plane(depth_m, PINHOLE, 0.005, 200, 0.05, np.random.default_rng(0))
    assert fitted.camera_height_m == pytest.approx(1.2, abs=1e-3) and fitted.inlier_fraction > 0.99
    assert pinhole_fit.inlier_fraction < 0.9  # the pinhole model bends the floor


# --- lifting ---------------------------------------------------------------------------------------------------

SETTINGS = LiftingSettings(box_percentile=0.0)
IDENTITY = RigidTransform.from_matrix(np.eye(4))


def _patch_scene(camera: Intrinsics, corner_m: tuple[float, float], size_m: float, distance_m: float
                 ) -> tuple[np.ndarray, Detection]:
    """A wall at ``distance_m`` with a square patch (the object) on it, as the camera sees it: the patch's mask from
    OpenCV's projection of a dense grid on it."""
    depth_m = np.full((H, W), distance_m, np.float32)
    grid = np.linspace(0.0, size_m, 400)
    xs, ys = np.meshgrid(corner_m[0] + grid, corner_m[1] + grid)
    points = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, distance_m)], axis=1)
    pixels = np.rint(_project(camera, points)).astype(int)
    mask = np.zeros((H, W), bool)
    mask[pixels[:, 1], pixels[:, 0]] = True
    rows, cols = np.nonzero(mask)
    box = (int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1))
    return depth_m, Detection("patch", 0.9, box, mask)


def test_an_object_near_the_corner_of_a_distorted_image_is_lifted_where_it_is():
    camera = _distorted("plumb_bob")
    depth_m, detection = _patch_scene(camera, (0.9, 0.5), 0.3, 2.0)
    lifted = lift_frames([LiftRequest([detection], depth_m, camera, IDENTITY)], SETTINGS)[0][0]
    true_centre = np.array([1.05, 0.65, 2.0])
    pixel_m = 2.0 / 500.0
    np.testing.assert_allclose(lifted.centroid_m, true_centre, atol=pixel_m)
    np.testing.assert_allclose(lifted.size_m[:2], [0.3, 0.3], atol=2 * pixel_m)
    as_pinhole = lift_frames([LiftRequest([detection], depth_m, PINHOLE, IDENTITY)], SETTINGS)[0][0]
    assert np.linalg.norm(as_pinhole.centroid_m - true_centre) > 0.1  # what ignoring D did


def test_lifting_a_batch_of_distorted_and_pinhole_frames_equals_lifting_them_one_by_one():
    requests = []
    for model, corner in ((None, (-0.5, -0.4)), ("plumb_bob", (0.9, 0.5)), ("equidistant", (-1.0, 0.3)),
                          ("plumb_bob", (0.2, -0.8))):
        camera = PINHOLE if model is None else _distorted(model)
        depth_m, detection = _patch_scene(camera if model else _distorted("plumb_bob"), corner, 0.25, 2.5)
        pose = RigidTransform.from_xyzw([0.1 * len(requests), 0.0, 1.0], [0.0, 0.0, 0.0, 1.0])
        requests.append(LiftRequest([detection, detection], depth_m, camera, pose))
    together = lift_frames(requests, SETTINGS)
    for request, batched in zip(requests, together, strict=True):
        (alone,) = lift_frames([request], SETTINGS)
        for one, other in zip(alone, batched, strict=True):
            np.testing.assert_array_equal(one.centroid_m, other.centroid_m)
            np.testing.assert_array_equal(one.size_m, other.size_m)


# --- distortion models and their validation --------------------------------------------------------------------


def test_an_unknown_model_with_zero_coefficients_is_no_distortion():
    assert Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "", ()) == PINHOLE
    assert Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "my_model", (0.0, 0.0)) == PINHOLE


def test_trailing_zero_coefficients_are_dropped_and_fewer_than_the_model_takes_are_accepted():
    camera = Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "plumb_bob", (-0.2, 0.05, 0.0, 0.0, 0.0, 0.0))
    assert camera.distortion == (-0.2, 0.05) and camera.distorted
    assert camera == Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "plumb_bob", [-0.2, 0.05])


def test_an_unknown_distortion_model_with_coefficients_is_rejected_naming_it():
    with pytest.raises(GeometryError, match=r"^distortion model 'kannala' \(coefficients \[0\.1\]\) is not supported: "
                                            r"known models are plumb_bob, rational_polynomial, equidistant"):
        Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "kannala", (0.1,))


def test_more_coefficients_than_the_model_takes_are_rejected():
    with pytest.raises(GeometryError, match=r"^distortion model 'equidistant' takes at most 4 coefficients, got 5"):
        Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "equidistant", (0.1, 0.0, 0.0, 0.0, 0.1))


def test_a_non_finite_coefficient_is_rejected():
    with pytest.raises(GeometryError, match=r"^distortion coefficient d\[1\]=nan is not finite$"):
        Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "plumb_bob", (0.1, float("nan")))


def test_a_distortion_that_cannot_be_undone_at_the_image_border_is_rejected():
    # r (1 - 0.6 r^2) peaks at r = 0.75 (normalised): the image corners, further out, are reached by no ray.
    with pytest.raises(GeometryError, match=r"^intrinsics: the plumb_bob distortion \[-0\.6\] cannot be undone at "
                                            r"pixel \(\d+, \d+\) of the 640x480 image"):
        Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "plumb_bob", (-0.6,))


def test_a_distortion_that_folds_back_inside_the_image_is_rejected():
    # r (1 - 1.7 r^2 + 1.1 r^4) falls between 28 and 39 degrees off axis and rises again: the pixels from its peak
    # out see up to three rays each, and OpenCV returns one of them (the ray angle runs backwards along a row), though
    # the image corners and edge midpoints undistort and reproject fine.
    with pytest.raises(GeometryError, match=r"^intrinsics: the plumb_bob distortion \[-1\.7, 1\.1\] folds back inside "
                                            r"the 640x480 image: its distorted radius stops growing at 0\.323 "
                                            r"\(normalised image coordinates\), 27\.9 degrees off the optical axis, "
                                            r"short of the image's farthest corner at 0\.761"):
        Intrinsics(W, H, 525.0, 525.0, 319.5, 239.5, "plumb_bob", (-1.7, 1.1, 0.0, 0.0, 0.0))


def test_a_thin_prism_and_tilt_distortion_that_folds_back_inside_the_image_is_rejected():
    # No radial term to check: the undistorted rays of neighbouring grid pixels come out in the wrong order.
    with pytest.raises(GeometryError, match=r"^intrinsics: the rational_polynomial distortion \[(0\.0, ){11}-0\.4, "
                                            r"0\.9\] folds back inside the 640x480 image: pixel \(0, 20\) looks along "
                                            r"a ray no further along y than pixel \(0, 0\) before it"):
        Intrinsics(W, H, 500.0, 505.0, 319.5, 239.5, "rational_polynomial", (0.0,) * 11 + (-0.4, 0.9))


def test_a_distortion_that_turns_border_rays_sideways_is_rejected():
    # A fisheye whose image corners look 87 degrees off axis: z-depth is meaningless there.
    with pytest.raises(GeometryError, match=r"^intrinsics: with the equidistant distortion \[0\.001\], pixel \(0, 0\) "
                                            r"looks 86\.8 degrees off the optical axis, more than the 85 degrees"):
        Intrinsics(W, H, 263.0, 263.0, 319.5, 239.5, "equidistant", (0.001,))
    assert Intrinsics(W, H, 300.0, 300.0, 319.5, 239.5, "equidistant", (0.001,)).distorted  # 80 degrees: fine


def test_real_calibrations_pass_the_plausibility_checks():
    Intrinsics(800, 600, 538.63, 539.723, 457.698, 297.003, "plumb_bob",
               (-0.30678, 0.0825017, 0.0028784, -0.00015829, 0.0))
    Intrinsics(W, H, 525.0, 525.0, 319.5, 239.5, "plumb_bob", (-0.3, 0.1, 0.0, 0.0, 0.0))  # a webcam's
    Intrinsics(1280, 720, 605.8, 605.6, 637.9, 366.1, "rational_polynomial",
               (0.5488, -2.768, 0.0005, -0.0002, 1.575, 0.4257, -2.596, 1.499))


def test_the_pinhole_plausibility_check_still_applies_to_a_distorted_camera():
    with pytest.raises(GeometryError, match=r"^intrinsics: the image's edge pixels look .* degrees off"):
        Intrinsics(W, H, 10.0, 505.0, 319.5, 239.5, "plumb_bob", (-0.1,))


@pytest.mark.parametrize(("matrix", "build"), [
    ("K", lambda: Intrinsics.from_k([500.0, 2.0, 319.5, 0.0, 505.0, 239.5, 0.0, 0.0, 1.0], W, H)),
    ("P", lambda: Intrinsics.from_p([500.0, 2.0, 319.5, 0.0, 0.0, 505.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0], W, H)),
])
def test_a_skewed_camera_matrix_is_rejected(matrix, build):
    with pytest.raises(GeometryError, match=rf"^camera matrix {matrix} has skew {matrix}\[1\]=2: only cameras "
                                            "without skew are supported$"):
        build()


def test_from_p_reads_the_left_3x3_of_the_projection_matrix():
    camera = Intrinsics.from_p([480.0, 0.0, 321.0, -24.0, 0.0, 482.0, 238.0, 0.0, 0.0, 0.0, 1.0, 0.0], W, H)
    assert camera == Intrinsics(W, H, 480.0, 482.0, 321.0, 238.0)


def test_from_p_rejects_the_wrong_length_and_an_uncalibrated_all_zero_matrix():
    with pytest.raises(GeometryError, match=r"^projection matrix P has 9 values, expected 12$"):
        Intrinsics.from_p(PINHOLE.k, W, H)
    with pytest.raises(GeometryError, match=r"^projection matrix P is all zeros: the camera is not calibrated"):
        Intrinsics.from_p([0.0] * 12, W, H)


# --- CameraInfo: raw (K + D) or rectified (P) ------------------------------------------------------------------

P_RECTIFIED = [470.0, 0.0, 322.0, 0.0, 0.0, 471.0, 241.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _info(**fields):
    msg = bag_msgs.camera_info(_distorted("plumb_bob"), 0, "camera")
    return dataclasses.replace(msg, **{"p": np.array(P_RECTIFIED), **fields})


def test_a_raw_camera_info_gives_k_with_its_distortion():
    assert intrinsics_from_msg(_info()) == _distorted("plumb_bob")
    assert intrinsics_from_msg(_info(), rectified=False).distortion == DISTORTIONS["plumb_bob"][:4]


def test_a_rectified_camera_info_gives_p_without_distortion():
    assert intrinsics_from_msg(_info(), rectified=True) == Intrinsics(W, H, 470.0, 471.0, 322.0, 241.0)


def test_rectified_with_an_all_zero_p_is_an_error_naming_the_setting():
    with pytest.raises(GeometryError, match=r"^topics\.rectified is true but camera_info\.p is all zeros"):
        intrinsics_from_msg(_info(p=np.zeros(12)), rectified=True)
    assert intrinsics_from_msg(_info(p=np.zeros(12))) == _distorted("plumb_bob")  # raw images do not need P


def test_the_same_camera_info_again_gives_the_intrinsics_already_checked_and_changed_values_give_new_ones():
    first = intrinsics_from_msg(_info())
    assert intrinsics_from_msg(_info()) is first  # another message with the same fields: not checked again
    k = np.array(_info().k)
    k[0] += 10.0
    assert intrinsics_from_msg(_info(k=k)).fx == first.fx + 10.0
    assert intrinsics_from_msg(_info(), rectified=True) != first  # rectified reads P: part of what is remembered
    bad = k.copy()
    bad[0] = -1.0
    for _ in range(2):  # a refused camera_info is refused every time, never remembered
        with pytest.raises(GeometryError, match=r"focal length fx=-1\.0"):
            intrinsics_from_msg(_info(k=bad))


def test_a_distorted_camera_round_trips_through_the_bag_camera_info():
    assert intrinsics_from_msg(bag_msgs.camera_info(_distorted("equidistant"), 0, "c")) == _distorted("equidistant")


@pytest.mark.parametrize(("model", "coefficients", "length"), [
    ("plumb_bob", (-0.3, 0.1), 5), ("equidistant", (0.1, -0.02, 0.003), 4),
    ("rational_polynomial", (-0.3, 0.1, 0.0, 0.001, 0.01, 0.2), 8),
    ("rational_polynomial", (-0.3, 0.1, 0.0, 0.001, 0.01, 0.2, 0.0, 0.0, 1e-4), 12), ("", (), 5)])
def test_camera_info_d_has_the_model_s_length_though_trailing_zeros_are_not_stored(model, coefficients, length):
    # Intrinsics drops trailing zero coefficients; a message with a short D is refused by OpenCV (image_proc).
    intrinsics = dataclasses.replace(PINHOLE, distortion_model=model, distortion=coefficients)
    assert len(intrinsics.distortion) < length
    model_name, d = camera_module.camera_info_distortion(intrinsics)
    assert model_name == (model or "plumb_bob") and len(d) == length
    assert d[:len(coefficients)] == coefficients and not any(d[len(coefficients):])
    info = bag_msgs.camera_info(intrinsics, 0, "c")
    assert info.distortion_model == model_name and info.d.tolist() == list(d)
    assert intrinsics_from_msg(info) == intrinsics
    points_m = np.array([[0.1, -0.05, 1.0], [0.0, 0.0, 2.0]])
    matrix = np.array(info.k).reshape(3, 3)
    if model_name == "equidistant":  # OpenCV asserts D's length: 4 for fisheye, 4/5/8/12/14 for the others
        cv2.fisheye.projectPoints(points_m[:, None, :], np.zeros(3), np.zeros(3), matrix, info.d)
    else:
        cv2.projectPoints(points_m, np.zeros(3), np.zeros(3), matrix, info.d)


@pytest.mark.parametrize("field", ["binning_x", "binning_y"])
def test_binning_is_rejected_naming_the_field(field):
    with pytest.raises(GeometryError, match=rf"^camera_info\.{field} is 2: binned images are not supported"):
        intrinsics_from_msg(_info(**{field: 2}))
    assert intrinsics_from_msg(_info(**{field: 1})) == _distorted("plumb_bob")  # 1, like 0, is no binning


def test_a_region_of_interest_is_rejected_and_the_full_image_as_roi_is_accepted():
    roi = bag_msgs._types()["sensor_msgs/msg/RegionOfInterest"]
    with pytest.raises(GeometryError, match=r"^camera_info\.roi is x_offset 10, y_offset 0, width 320, height 240 of "
                                            r"the 640x480 image: images of a region of interest are not supported$"):
        intrinsics_from_msg(_info(roi=roi(x_offset=10, y_offset=0, width=320, height=240, do_rectify=False)))
    full = roi(x_offset=0, y_offset=0, width=W, height=H, do_rectify=False)
    assert intrinsics_from_msg(_info(roi=full)) == _distorted("plumb_bob")


def test_a_camera_info_with_an_unknown_distortion_model_is_rejected_naming_it():
    with pytest.raises(GeometryError, match=r"^distortion model 'fov'"):
        intrinsics_from_msg(_info(distortion_model="fov", d=np.array([0.9])))


# --- config ----------------------------------------------------------------------------------------------------


def test_topics_are_raw_images_by_default():
    assert Config()["topics.rectified"] is False


def test_a_rectified_colour_topic_read_as_raw_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^topics\.color '/camera/color/image_rect_color' is a rectified image but "
                                          r"topics\.rectified is false \(raw images\): set topics\.rectified to true$"):
        Config({"topics.color": "/camera/color/image_rect_color"})
    assert Config({"topics.color": "/camera/color/image_rect_color", "topics.rectified": True})["topics.rectified"]
