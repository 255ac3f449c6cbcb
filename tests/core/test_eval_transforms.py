"""The evaluation's transform buffer (chains of tf transforms, looked up as of a frame's stamp) and its matching."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.evaluation.bag_eval import _match
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer, express_in
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
    assert buffer.lookup("world", "camera", 50) is None  # /tf is never extrapolated back in time
    buffer.forget_before(250)
    assert buffer.lookup("world", "camera", 260).translation_m[0] == 2.0
    assert buffer.lookup("world", "camera", 400).translation_m[0] == 3.0


def test_a_live_buffer_keeps_each_frame_s_recent_history_whatever_another_frame_s_stamps() -> None:
    # A /tf frame stamped far ahead (left from before a clock reset, or a wall-clock publisher beside sim time) must
    # not cut the camera's history to its last entry: a frame taken with some latency looks up an older stamp.
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(100_000_000_000, "world", "old_gripper", _shift(9.0)))
    for stamp_ns in range(0, 1_000_000_000, 100_000_000):
        buffer.add(bag_msgs.tf_message(stamp_ns, "world", "camera", _shift(stamp_ns / 1e9)))
    buffer.keep_recent(500_000_000)
    assert buffer.lookup("world", "camera", 650_000_000).translation_m[0] == 0.6
    assert buffer.lookup("world", "camera", 420_000_000).translation_m[0] == 0.4  # the last at or before 0.9 - 0.5 s
    assert buffer.lookup("world", "camera", 350_000_000) is None  # superseded more than 0.5 s before 0.9 s: dropped
    assert buffer.lookup("world", "old_gripper", 100_000_000_000).translation_m[0] == 9.0


def test_a_lookup_through_unchanged_transforms_is_reused_and_a_new_transform_replaces_it() -> None:
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(0, "world", "base", _shift(1.0)), static=True)
    buffer.add(bag_msgs.tf_message(100, "base", "camera", _shift(2.0)))
    first = buffer.lookup("world", "camera", 150)
    assert buffer.lookup("world", "camera", 160) is first  # same entries: the product is not recomputed
    assert first.translation_m[0] == 3.0
    buffer.add(bag_msgs.tf_message(200, "base", "camera", _shift(5.0)))
    assert buffer.lookup("world", "camera", 170) is first  # before the new transform: still the old one
    assert buffer.lookup("world", "camera", 250).translation_m[0] == 6.0
    assert buffer.lookup("camera", "world", 250).translation_m[0] == -6.0  # each direction has its own entry
    assert buffer.lookup("world", "camera", 170).translation_m[0] == 3.0


def test_a_transform_with_an_invalid_quaternion_is_ignored() -> None:
    buffer = TransformBuffer()
    message = bag_msgs.tf_message(0, "world", "camera", _shift(1.0))
    message.transforms[0].transform.rotation.w = 0.0  # norm 0: not a rotation
    buffer.add(message)
    assert buffer.lookup("world", "camera", 0) is None


def test_a_static_transform_also_holds_for_images_stamped_before_it() -> None:
    # A /tf_static published after the first image (a driver started late) still places that image's camera.
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(500, "world", "camera", _shift(1.0)), static=True)
    assert buffer.lookup("world", "camera", 100).translation_m[0] == 1.0


def test_a_dynamic_transform_older_than_the_max_age_is_stale_and_says_so() -> None:
    buffer = TransformBuffer(max_age_ns=500_000_000)
    buffer.add(bag_msgs.tf_message(1_000_000_000, "world", "camera", _shift(1.0)))
    assert buffer.lookup("world", "camera", 1_400_000_000).translation_m[0] == 1.0
    found = buffer.lookup_explained("world", "camera", 3_000_000_000)  # the publisher died 2 s ago
    assert found.transform is None
    assert "the newest /tf transform of 'camera' before the image is 2.000 s old" in found.reason
    assert "extrinsic.tf_max_age_s = 0.5 s" in found.reason
    early = buffer.lookup_explained("world", "camera", 900_000_000)
    assert early.transform is None and "stamped 0.100 s after the image" in early.reason
    # Statics never go stale: a fixed camera mount is published once.
    buffer.add(bag_msgs.tf_message(0, "world", "mount", _shift(2.0)), static=True)
    assert buffer.lookup("world", "mount", 3_600_000_000_000).translation_m[0] == 2.0
    assert "are not connected" in buffer.lookup_explained("world", "gripper", 0).reason


def test_a_clock_reset_starts_a_frame_history_again() -> None:
    # Episode 1's camera is latched at 0.5 s and frames run to 60 s; then the simulator's clock restarts and
    # episode 2's camera arrives stamped 0.1 s. Every later frame (0.2 s, 0.6 s) is in episode 2.
    buffer = TransformBuffer(max_age_ns=500_000_000)
    buffer.add(bag_msgs.tf_message(500_000_000, "world", "camera", _shift(1.0)), static=True)
    buffer.add(bag_msgs.tf_message(60_000_000_000, "world", "gripper", _shift(0.3)))
    buffer.add(bag_msgs.tf_message(100_000_000, "world", "camera", _shift(2.0)), static=True)
    assert buffer.lookup("world", "camera", 200_000_000).translation_m[0] == 2.0
    assert buffer.lookup("world", "camera", 600_000_000).translation_m[0] == 2.0
    # /tf jumping back by more than a second is a reset too; a slightly late message is not. A reader that must
    # finish with the old transforms first can ask before adding.
    assert buffer.restarts("/gripper", 200_000_000)
    assert not buffer.restarts("gripper", 59_500_000_000)
    assert not buffer.restarts("never_seen", 0)
    buffer.add(bag_msgs.tf_message(200_000_000, "world", "gripper", _shift(0.4)))
    assert not buffer.restarts("gripper", 200_000_000)
    assert buffer.lookup("world", "gripper", 300_000_000).translation_m[0] == 0.4
    buffer.add(bag_msgs.tf_message(400_000_000, "world", "gripper", _shift(0.5)))
    buffer.add(bag_msgs.tf_message(300_000_000, "world", "gripper", _shift(0.45)))  # late, kept in order
    assert buffer.lookup("world", "gripper", 350_000_000).translation_m[0] == 0.45
    assert buffer.lookup("world", "gripper", 450_000_000).translation_m[0] == 0.5


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


def test_a_point_is_expressed_in_the_target_frame_when_the_tf_can_and_kept_as_given_otherwise() -> None:
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(0, "world", "base_link", _shift(1.0)), static=True)
    for frame_id in ("base_link", "/base_link"):  # a leading '/' (ROS 1 style) names the same frame
        frame, point = express_in(buffer, "world", frame_id, [0.5, 0.0, 0.0], 10)
        assert frame == "world" and point.tolist() == [1.5, 0.0, 0.0]
    for frame_id in ("", "world", "/world"):  # no frame id, or already the target: as given, in the target frame
        frame, point = express_in(buffer, "/world", frame_id, [0.5, 0.0, 0.0], 10)
        assert frame == "world" and point.tolist() == [0.5, 0.0, 0.0]
    for tf in (buffer, None):  # not connected, or no tf at all: kept in its own frame for the caller to explain
        frame, point = express_in(tf, "world", "/gripper_link", [0.5, 0.0, 0.0], 10)
        assert frame == "gripper_link" and point.tolist() == [0.5, 0.0, 0.0]


def test_transforms_that_overflow_when_chained_give_no_transform_and_say_why() -> None:
    # Each is a finite float64, so each is a valid message; chained, world <- ee is 2e308 m away: inf.
    buffer = TransformBuffer()
    buffer.add(bag_msgs.tf_message(0, "world", "base", _shift(1e308)))
    buffer.add(bag_msgs.tf_message(0, "base", "ee", _shift(1e308)))
    found = buffer.lookup_explained("world", "ee", 10)
    assert found.transform is None
    assert "the /tf transforms from 'ee' to 'world' do not compose to a rigid transform" in found.reason
    assert express_in(buffer, "world", "ee", [0.0, 0.0, 0.0], 10)[0] == "ee"  # kept in its own frame
    assert buffer.lookup("base", "ee", 10) is not None  # each link alone still is one
