"""The evaluation's transform buffer (chains of tf transforms, looked up as of a frame's stamp) and its matching."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.evaluation.bag_eval import _match
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
from trusted_scene_graph.geometry.transform import RigidTransform


def _shift(x_m: float) -> RigidTransform:
    return RigidTransform.from_xyzw([x_m, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])


def test_a_chain_of_transforms_is_composed_up_to_the_target_frame() -> None:
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(0, "world", "base", _shift(1.0)))
    buffer.add(bag_msgs.tf_message(0, "base", "camera", RigidTransform.from_xyzw([0, 0, 2.0], [0, 0, 0.7071068,
                                                                                                 0.7071068])))
    camera_in_world = buffer.lookup("world", "camera", 10)
    # A point 1 m along the camera's x: rotated 90 degrees about z into base y, lifted 2 m, shifted 1 m along x.
    np.testing.assert_allclose(camera_in_world.apply(np.array([[1.0, 0.0, 0.0]])), [[1.0, 1.0, 2.0]], atol=1e-6)
    assert buffer.lookup("world", "world", 10) is not None
    assert buffer.lookup("world", "gripper", 10) is None  # not connected
    # Down the tree and across it (a sibling of the camera's parent), through the common ancestor.
    np.testing.assert_allclose(buffer.lookup("camera", "world", 10).matrix, np.linalg.inv(camera_in_world.matrix),
                               atol=1e-9)
    buffer.add(bag_msgs.tf_message(0, "world", "table", _shift(-1.0)))
    np.testing.assert_allclose(buffer.lookup("table", "camera", 10).apply(np.array([[1.0, 0.0, 0.0]])),
                               [[2.0, 1.0, 2.0]], atol=1e-6)


def test_the_transform_in_force_at_a_stamp_is_the_latest_one_at_or_before_it() -> None:
    buffer = TransformBuffer()
    for stamp_ns, x_m in ((100, 1.0), (200, 2.0), (300, 3.0)):
        buffer.add(bag_msgs.tf_message(stamp_ns, "world", "camera", _shift(x_m)))
    assert buffer.lookup("world", "camera", 250).translation_m[0] == 2.0
    assert buffer.lookup("world", "camera", 300).translation_m[0] == 3.0
    assert buffer.lookup("world", "camera", 50).translation_m[0] == 1.0  # before any: the earliest known
    buffer.forget_before(250)
    assert buffer.lookup("world", "camera", 260).translation_m[0] == 2.0
    assert buffer.lookup("world", "camera", 400).translation_m[0] == 3.0


def test_a_transform_with_an_invalid_quaternion_is_ignored() -> None:
    buffer = TransformBuffer()
    message = bag_msgs.tf_message(0, "world", "camera", _shift(1.0))
    message.transforms[0].transform.rotation.w = 0.0  # norm 0: not a rotation
    buffer.add(message)
    assert buffer.lookup("world", "camera", 0) is None



def test_matching_keeps_the_most_pairs_within_the_gate_before_the_least_distance() -> None:
    # p0 sits on g0 and p1 is 0.19 m from g0; p0 is 0.19 m from g1 and p1 0.27 m (outside the 0.20 m gate). A plain
    # Hungarian on distances picks p0-g0 + p1-g1 (0.27 m in total, one pair within the gate); both objects are
    # matched by p0-g1 + p1-g0 (0.38 m), as in MOT evaluation.
    cubes = SimpleNamespace(objects=[SimpleNamespace(label="cube"), SimpleNamespace(label="cube")])
    perceived_m = np.array([[0.0, 0.0, 0.0], [0.19, 0.0, 0.0]])
    truth_m = np.array([[0.0, 0.0, 0.0], [0.0, 0.19, 0.0]])
    assert _match(cubes, perceived_m, ["cube", "cube"], truth_m) == {0: 1, 1: 0}
    # When only one pair can be within the gate, it is the closest one.
    far_truth_m = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    assert _match(cubes, perceived_m, ["cube", "cube"], far_truth_m) == {0: 0}
    # Labels never match across: a sphere is not a cube however close.
    assert _match(cubes, perceived_m, ["sphere", "sphere"], truth_m) == {}
