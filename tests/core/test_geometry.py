"""Specification of camera intrinsics, rigid transforms and box distances (trusted_scene_graph.geometry)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trusted_scene_graph import TsgError
from trusted_scene_graph.geometry import (
    GeometryError,
    Intrinsics,
    RigidTransform,
    back_project,
    box_surface_distance_m,
)

# --- Intrinsics ------------------------------------------------------------------------------------------------


def test_geometry_errors_are_tsg_errors():
    assert issubclass(GeometryError, TsgError)


@pytest.mark.parametrize("width, height", [(0, 480), (640, 0), (-1, 480)])
def test_an_empty_camera_size_is_rejected(width, height):
    with pytest.raises(GeometryError, match=rf"^camera size {width}x{height} is empty$"):
        Intrinsics(width, height, 500.0, 500.0, 320.0, 240.0)


@pytest.mark.parametrize("value, shown", [(0.0, "0.0"), (-500.0, "-500.0"), (math.nan, "nan"), (math.inf, "inf")])
def test_a_focal_length_that_is_zero_negative_or_not_finite_is_rejected(value, shown):
    with pytest.raises(GeometryError, match=rf"^focal length fx={shown} must be positive and finite$"):
        Intrinsics(640, 480, value, 500.0, 320.0, 240.0)
    with pytest.raises(GeometryError, match=rf"^focal length fy={shown} must be positive and finite$"):
        Intrinsics(640, 480, 500.0, value, 320.0, 240.0)


@pytest.mark.parametrize("fx, cx, angle", [(1e-300, 320.0, "90.0"), (20.0, 320.0, "86.4"), (500.0, 1e9, "90.0"),
                                           (500.0, -7000.0, "86.3")])
def test_a_calibration_whose_edge_pixels_look_sideways_is_rejected(fx, cx, angle):
    # A tiny focal length or a far principal point lifts pixels to absurd or infinite positions.
    with pytest.raises(GeometryError, match=rf"^intrinsics: the image's edge pixels look {angle} degrees off the "
                                            rf"optical axis \(fx={fx:g} px, cx={re.escape(f'{cx:g}')} px, 640 px "
                                            r"across\), more "
                                            r"than the 85 degrees of any rectified pinhole camera: a broken "
                                            r"calibration \(camera_info.k\), or intrinsics not in pixels$"):
        Intrinsics(640, 480, fx, 500.0, cx, 240.0)
    with pytest.raises(GeometryError, match=r"\(fy=10 px, cy=240 px, 480 px across\)"):
        Intrinsics(640, 480, 500.0, 10.0, 320.0, 240.0)


def test_wide_angle_and_cropped_calibrations_are_kept():
    assert Intrinsics(640, 480, 100.0, 100.0, 320.0, 240.0).fx == 100.0  # 145 degrees across: a rectified fisheye
    assert Intrinsics(640, 480, 500.0, 500.0, -300.0, 240.0).cx == -300.0  # the right part of a wider image


def test_a_principal_point_that_is_not_finite_is_rejected():
    with pytest.raises(GeometryError, match=r"^principal point cx=nan is not finite$"):
        Intrinsics(640, 480, 500.0, 500.0, math.nan, 240.0)
    with pytest.raises(GeometryError, match=r"^principal point cy=inf is not finite$"):
        Intrinsics(640, 480, 500.0, 500.0, 320.0, math.inf)


def test_a_principal_point_outside_the_image_is_allowed():
    assert Intrinsics(640, 480, 500.0, 500.0, -10.0, 1000.0).cx == -10.0


def test_intrinsics_are_read_from_a_row_major_k_matrix():
    intrinsics = Intrinsics.from_k([525.0, 0.0, 319.5, 0.0, 520.0, 239.5, 0.0, 0.0, 1.0], 640, 480)
    assert intrinsics == Intrinsics(640, 480, 525.0, 520.0, 319.5, 239.5)


def test_k_round_trips_through_from_k():
    intrinsics = Intrinsics(320, 240, 300.0, 310.0, 160.5, 120.25)
    assert intrinsics.k == [300.0, 0.0, 160.5, 0.0, 310.0, 120.25, 0.0, 0.0, 1.0]
    assert Intrinsics.from_k(intrinsics.k, 320, 240) == intrinsics


@pytest.mark.parametrize("length", [0, 4, 8, 12])
def test_a_k_matrix_of_the_wrong_length_is_rejected(length):
    with pytest.raises(GeometryError, match=rf"^camera matrix K has {length} values, expected 9$"):
        Intrinsics.from_k([1.0] * length, 640, 480)


def test_a_k_matrix_with_zero_focal_length_is_rejected_like_direct_construction():
    with pytest.raises(GeometryError, match=r"^focal length fx=0\.0 must be positive and finite$"):
        Intrinsics.from_k([0.0] * 9, 640, 480)


# --- back_project ----------------------------------------------------------------------------------------------

INTRINSICS = Intrinsics(640, 480, 500.0, 400.0, 320.0, 240.0)


def test_the_principal_point_back_projects_onto_the_optical_axis():
    np.testing.assert_array_equal(back_project(INTRINSICS, np.array([320.0]), np.array([240.0]), np.array([2.5])),
                                  [[0.0, 0.0, 2.5]])


def test_an_off_centre_pixel_back_projects_by_the_pinhole_model():
    # u = 420 is 100 px right of cx: x = 100 * 2 / 500 = 0.4; v = 140 is 100 px above cy: y = -100 * 2 / 400 = -0.5.
    points = back_project(INTRINSICS, np.array([420]), np.array([140]), np.array([2.0]))
    np.testing.assert_allclose(points, [[0.4, -0.5, 2.0]], rtol=0, atol=1e-12)


def test_back_project_handles_arrays_of_pixels_and_keeps_their_order():
    points = back_project(INTRINSICS, np.array([320, 820]), np.array([240, 240]), np.array([1.0, 3.0]))
    assert points.shape == (2, 3)
    np.testing.assert_allclose(points, [[0.0, 0.0, 1.0], [3.0, 0.0, 3.0]])


def test_back_projected_points_project_back_to_their_pixels():
    rng = np.random.default_rng(0)
    u, v, z = rng.uniform(0, 640, 50), rng.uniform(0, 480, 50), rng.uniform(0.1, 10, 50)
    points = back_project(INTRINSICS, u, v, z)
    np.testing.assert_allclose(INTRINSICS.fx * points[:, 0] / points[:, 2] + INTRINSICS.cx, u)
    np.testing.assert_allclose(INTRINSICS.fy * points[:, 1] / points[:, 2] + INTRINSICS.cy, v)
    np.testing.assert_allclose(points[:, 2], z)


def test_back_project_propagates_nan_depth():
    assert np.isnan(back_project(INTRINSICS, np.array([0]), np.array([0]), np.array([np.nan]))).all()


# --- RigidTransform --------------------------------------------------------------------------------------------

# Camera optical frame (x right, y down, z forward) to a REP-103 body frame (x forward, y left, z up).
OPTICAL_TO_BODY_XYZW = [-0.5, 0.5, -0.5, 0.5]


def test_the_identity_transform_leaves_points_unchanged():
    transform = RigidTransform.from_xyzw([0, 0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(transform.apply(np.array([[1.0, -2.0, 3.0]])), [[1.0, -2.0, 3.0]])
    np.testing.assert_allclose(transform.matrix, np.eye(4))


def test_apply_rotates_then_translates():
    # 90 degrees about z: x -> y; then shift by (1, 2, 3).
    transform = RigidTransform.from_xyzw([1.0, 2.0, 3.0], [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(transform.apply(np.array([[1.0, 0.0, 0.0]])), [[1.0, 3.0, 3.0]], atol=1e-12)


def test_the_default_extrinsic_maps_optical_axes_onto_rep_103_axes():
    transform = RigidTransform.from_xyzw([0, 0, 0], OPTICAL_TO_BODY_XYZW)
    axes = transform.apply(np.eye(3))  # optical x (right), y (down), z (forward)
    np.testing.assert_allclose(axes, [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)


def test_from_xyzw_then_rotation_xyzw_returns_the_same_quaternion():
    quat = Rotation.from_euler("xyz", [0.3, -0.2, 1.1]).as_quat()
    transform = RigidTransform.from_xyzw([0.5, 0.0, -1.0], quat)
    assert np.allclose(transform.rotation_xyzw, quat) or np.allclose(transform.rotation_xyzw, -quat)
    assert all(isinstance(v, float) for v in transform.rotation_xyzw)


def test_a_nearly_unit_quaternion_is_normalised():
    transform = RigidTransform.from_xyzw([0, 0, 0], [0.0, 0.0, 0.0, 1.0005])
    np.testing.assert_allclose(transform.rotation_xyzw, [0.0, 0.0, 0.0, 1.0])


def test_matrix_then_from_matrix_round_trips():
    rotation_xyzw = Rotation.from_euler("zyx", [40, 10, -70], degrees=True).as_quat()
    transform = RigidTransform.from_xyzw([0.1, -0.2, 0.3], rotation_xyzw)
    again = RigidTransform.from_matrix(transform.matrix)
    np.testing.assert_allclose(again.matrix, transform.matrix, atol=1e-12)
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 0.0]])
    np.testing.assert_allclose(again.apply(points), transform.apply(points), atol=1e-12)


def test_matrix_is_homogeneous_and_agrees_with_apply():
    transform = RigidTransform.from_xyzw([1.0, 2.0, 3.0], OPTICAL_TO_BODY_XYZW)
    matrix = transform.matrix
    np.testing.assert_array_equal(matrix[3], [0, 0, 0, 1])
    point = np.array([0.3, -0.7, 2.0])
    np.testing.assert_allclose((matrix @ np.append(point, 1.0))[:3], transform.apply(point[None])[0])


def test_from_matrix_keeps_a_copy_of_the_translation():
    matrix = np.eye(4)
    matrix[:3, 3] = [1.0, 2.0, 3.0]
    transform = RigidTransform.from_matrix(matrix)
    matrix[:3, 3] = 0.0
    np.testing.assert_array_equal(transform.translation_m, [1.0, 2.0, 3.0])


def test_from_matrix_rejects_a_matrix_that_is_not_4x4():
    with pytest.raises(GeometryError, match=r"^expected a 4x4 homogeneous matrix, got shape \(3, 3\)$"):
        RigidTransform.from_matrix(np.eye(3))


@pytest.mark.parametrize("quat", [[0, 0, 0, 0], [0, 0, 0, 2], [1, 1, 0, 0], [0, 0, 0, math.nan], [0, 0, 0, 1.006]])
def test_from_xyzw_rejects_a_quaternion_that_is_not_unit(quat):
    with pytest.raises(GeometryError, match=r"^rotation \[.*\] is not a unit quaternion \(x, y, z, w\)"):
        RigidTransform.from_xyzw([0, 0, 0], quat)


def test_from_xyzw_accepts_and_normalises_a_quaternion_tf2_accepts():
    # tf2 takes |q|^2 within 0.01 of 1 and normalises it: such a transform must not be dropped from the buffer.
    transform = RigidTransform.from_xyzw([0, 0, 0], [0.0, 0.0, 0.0, 1.0041])
    np.testing.assert_allclose(transform.rotation.as_quat(), [0.0, 0.0, 0.0, 1.0])


def test_from_xyzw_rejects_a_quaternion_with_the_wrong_number_of_values():
    with pytest.raises(GeometryError, match=r"^rotation \[0, 0, 1\] is not a unit quaternion"):
        RigidTransform.from_xyzw([0, 0, 0], [0, 0, 1])


@pytest.mark.parametrize("translation", [[0, 0], [0, 0, 0, 0], [0, math.inf, 0]])
def test_from_xyzw_rejects_a_translation_that_is_not_three_finite_numbers(translation):
    with pytest.raises(GeometryError, match=r"^translation \[.*\] is not 3 finite numbers$"):
        RigidTransform.from_xyzw(translation, [0, 0, 0, 1])


def test_from_matrix_rejects_a_matrix_that_is_not_rigid():
    scaled = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(GeometryError):
        RigidTransform.from_matrix(scaled)


# --- box_surface_distance_m ------------------------------------------------------------------------------------

UNIT = np.array([1.0, 1.0, 1.0])


def test_overlapping_boxes_are_at_surface_distance_zero():
    assert box_surface_distance_m(np.zeros(3), UNIT, np.array([0.5, 0.2, -0.3]), UNIT) == 0.0


def test_a_box_inside_another_is_at_surface_distance_zero():
    assert box_surface_distance_m(np.zeros(3), 4 * UNIT, np.array([0.5, 0.5, 0.5]), 0.1 * UNIT) == 0.0


def test_touching_boxes_are_at_surface_distance_zero():
    assert box_surface_distance_m(np.zeros(3), UNIT, np.array([1.0, 0.0, 0.0]), UNIT) == 0.0


def test_boxes_apart_along_one_axis_are_at_the_exact_gap():
    # Faces at x = 0.5 and x = 2.0 - 0.25 = 1.75.
    distance = box_surface_distance_m(np.zeros(3), UNIT, np.array([2.0, 0.1, 0.0]), 0.5 * UNIT)
    assert distance == pytest.approx(1.25, abs=1e-12)


def test_boxes_apart_diagonally_are_at_the_distance_between_closest_corners():
    # Gaps of 1.0 along x, 2.0 along y and 2.0 along z: the closest corners are sqrt(1 + 4 + 4) = 3 apart.
    distance = box_surface_distance_m(np.zeros(3), UNIT, np.array([2.0, 3.0, -3.0]), UNIT)
    assert distance == pytest.approx(3.0, abs=1e-12)


def test_boxes_apart_in_a_plane_use_only_the_separated_axes():
    # Gaps 0.3 (x) and 0.4 (y); z overlaps.
    distance = box_surface_distance_m(np.zeros(3), UNIT, np.array([1.3, 1.4, 0.2]), UNIT)
    assert distance == pytest.approx(0.5, abs=1e-12)


def test_surface_distance_is_symmetric():
    a, sa = np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.4, 0.6])
    b, sb = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.3, 0.3])
    assert box_surface_distance_m(a, sa, b, sb) == box_surface_distance_m(b, sb, a, sa)


def test_surface_distance_of_point_boxes_is_their_centre_distance():
    distance = box_surface_distance_m(np.zeros(3), np.zeros(3), np.array([3.0, 4.0, 0.0]), np.zeros(3))
    assert distance == pytest.approx(5.0)
    assert isinstance(distance, float)
