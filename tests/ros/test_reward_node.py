"""Rewards, robot poses and distance answers of the scene-graph node over real DDS."""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
import rclpy
from dds_helpers import spin_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from test_node_dds import OBJECTS, SMALL, Harness
from test_node_tf import tf_message
from tf2_msgs.msg import TFMessage
from trusted_scene_graph_msgs.msg import DenseReward
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg

from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.scene_graph_node import POSE_QOS, REWARD_TOPIC, TF_QOS, TF_STATIC_QOS, reward_qos
from trusted_scene_graph.sim.synthetic import SyntheticFrame

pytestmark = pytest.mark.dds
FRAME_PERIOD_NS = 100_000_000  # Harness.publish steps the stamp by this
# The synthetic scene (test_node_dds.OBJECTS) holds a gripper (#1) and a cube (#2); detector.sim_labels also knows
# 'table' (#3), which it does not contain: absent, not unknown.
CONFIG = Config({"qos.sensor_reliability": "reliable", "reward.pairs": ["gripper:cube", "cube:table"]})
EE_XYZ_M = np.array([0.6, -0.1, 0.25])


class RewardHarness(Harness):
    """The camera harness plus the reward topic and the end-effector and goal pose publishers."""

    def __init__(self, node, config: Config, scene_node) -> None:
        super().__init__(node, config)
        self.rewards: list[DenseReward] = []
        node.create_subscription(DenseReward, REWARD_TOPIC, self.rewards.append,
                                 reward_qos(len(config["reward.pairs"])))
        self.poses = {"ee": node.create_publisher(PoseStamped, config["topics.ee_pose"], POSE_QOS),
                      "goal": node.create_publisher(PoseStamped, config["topics.goal_pose"], POSE_QOS)}
        # Rewards are volatile: the node must see this subscription before the first frame's are published.
        assert spin_until(node, lambda: scene_node.count_subscribers(REWARD_TOPIC) > 0)

    @property
    def next_stamp_ns(self) -> int:
        return self.stamp_ns + FRAME_PERIOD_NS

    def publish_pose(self, side: str, stamp_ns: int, frame_id: str, xyz_m) -> None:
        assert spin_until(self.node, lambda: self.poses[side].get_subscription_count() > 0)  # not lost to discovery
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = convert.ns_to_stamp(stamp_ns), frame_id
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, xyz_m)
        msg.pose.orientation.w = 1.0
        self.poses[side].publish(msg)

    def rewards_for(self, stamp_ns: int, count: int, timeout_s: float = 10.0) -> list[DenseReward]:
        def found() -> list[DenseReward]:
            return [r for r in self.rewards if convert.stamp_to_ns(r.header.stamp) == stamp_ns]

        assert spin_until(self.node, lambda: len(found()) >= count, timeout_s), f"{count} rewards for {stamp_ns}"
        return found()


def _running(test_node, config: Config):
    bringup = Bringup(config).start()
    try:
        harness = RewardHarness(test_node, config, bringup.nodes["scene_graph"])
        yield bringup, harness
    finally:
        bringup.stop()


@pytest.fixture
def running(test_node):
    yield from _running(test_node, CONFIG)


@pytest.fixture
def goal_running(test_node):
    yield from _running(test_node, CONFIG.with_overrides({"reward.pairs": ["cube:goal"]}))


def _centroids(graph: SceneGraphMsg) -> dict[str, np.ndarray]:
    return {o.label: np.array([o.centroid.x, o.centroid.y, o.centroid.z]) for o in graph.objects}


def _wait_for_poses(harness: RewardHarness, node, side: str, count: int) -> None:
    """Until the node holds ``count`` poses of ``side``: a pose and a frame travel on different topics, so a frame
    could otherwise be processed before the pose meant for it arrives."""
    assert spin_until(harness.node, lambda: len(node._resolver.poses[side]) == count)


def test_rewards_arrive_per_pair_per_frame_with_the_distance_of_the_scene(running):
    bringup, harness = running
    statuses: list = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    stamps = []
    for _ in range(3):
        stamps.append(stamp := harness.publish())  # one at a time: the node drops a frame a newer one replaces
        graph = harness.graph_for(stamp)
        near, absent = harness.rewards_for(stamp, 2)
        assert (near.pair, absent.pair) == ("gripper:cube", "cube:table")
        centroids = _centroids(graph)
        assert near.valid and not near.held and near.header.frame_id == "world" and near.message == ""
        assert near.distance_m == pytest.approx(np.linalg.norm(centroids["gripper"] - centroids["cube"]), abs=1e-6)
        assert near.reward == pytest.approx(-near.distance_m)  # reward.shaping 'negative'
        assert (near.subject_id, near.object_id) == (1, 2)
        assert (near.subject_source, near.object_source) == ("perception", "perception")
        assert not absent.valid and math.isnan(absent.reward) and math.isnan(absent.distance_m)
        assert re.fullmatch(r"object 'table' is absent: not detected in the scene graph "
                            r"\(it holds \['cube', 'gripper'\]\)", absent.message)
    assert len(harness.rewards) == 2 * len(stamps)  # one per pair per frame, no more
    # A frame the pipeline rejects has no graph, yet every pair gets a sample saying why.
    zero_focal = convert.camera_info_msg(SyntheticFrame(*SMALL, objects=OBJECTS).intrinsics, 0, "cam")
    zero_focal.k = [0.0] * 9
    rejected = harness.publish(info=zero_focal)
    for sample in harness.rewards_for(rejected, 2):
        assert not sample.valid and math.isnan(sample.reward) and sample.header.frame_id == "world"
        assert sample.message == "no scene graph for this frame: focal length fx=0.0 must be positive and finite"

    # /diagnostics: the pairs, and each one's last sample (the rejected frame's).
    rejected_text = "not valid: no scene graph for this frame: focal length fx=0.0 must be positive and finite"

    def reward_status() -> dict[str, str] | None:
        values = [{v.key: v.value for v in s.values} for s in statuses]
        return next((v for v in values if v.get("reward gripper:cube") == rejected_text), None)

    assert spin_until(harness.node, lambda: reward_status() is not None, timeout_s=5.0)
    details = reward_status()
    assert details["reward_pairs"] == "gripper:cube, cube:table"
    assert details["reward cube:table"] == rejected_text


def test_the_end_effector_pose_topic_answers_for_the_gripper_over_the_perceived_one(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    stamp = harness.next_stamp_ns
    harness.publish_pose("ee", stamp, "world", EE_XYZ_M)
    _wait_for_poses(harness, node, "ee", 1)
    assert harness.publish() == stamp
    graph = harness.graph_for(stamp)
    assert "gripper" in _centroids(graph)  # perceived too, yet kinematics answers
    reward = harness.rewards_for(stamp, 2)[0]
    expected_m = np.linalg.norm(EE_XYZ_M - _centroids(graph)["cube"])
    assert reward.valid and (reward.subject_source, reward.object_source) == ("kinematics", "perception")
    assert (reward.subject_id, reward.object_id) == (0, 2) and reward.distance_m == pytest.approx(expected_m)
    cube = next(o for o in graph.objects if o.label == "cube")
    assert reward.trust == pytest.approx(cube.score * cube.depth_valid_fraction)  # kinematics counts as certain
    answer = harness.query("gripper", "cube")
    assert answer.valid and answer.subject_source == "kinematics" and answer.distance_m == pytest.approx(expected_m)
    # Two frames later no pose lies within reward.ee_pose_max_age_s (0.1 s) of the stamp: the perceived gripper.
    harness.publish()
    later = harness.publish()
    fallback = harness.rewards_for(later, 2)[0]
    assert fallback.valid and (fallback.subject_source, fallback.subject_id) == ("perception", 1)


def test_the_service_says_why_for_an_unknown_label_an_absent_object_and_a_stale_graph(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    assert node.set_parameters([rclpy.parameter.Parameter("query.max_graph_age_s", value=3600.0)])[0].successful
    stamp = harness.publish()
    assert harness.graph_for(stamp) is not None
    unknown = harness.query("gripper", "red banana")
    assert not unknown.valid and math.isnan(unknown.distance_m) and unknown.subject_source == ""
    assert re.fullmatch(r"unknown object 'red banana'; known labels: \['cube', 'gripper', 'table'\]",
                        unknown.message)
    absent = harness.query("gripper", "table")
    assert not absent.valid
    assert re.fullmatch(r"object 'table' is absent: not detected in the scene graph \(it holds \['cube', 'gripper'\]\)",
                        absent.message)
    fresh = harness.query("gripper", "cube")
    assert fresh.valid and 0.0 <= fresh.graph_age_s < 60.0 and convert.stamp_to_ns(fresh.graph_stamp) == stamp
    # No new frame comes: once the graph is older than query.max_graph_age_s, no answer is valid.
    assert node.set_parameters([rclpy.parameter.Parameter("query.max_graph_age_s", value=0.05)])[0].successful
    time.sleep(0.1)
    stale = harness.query("gripper", "cube")
    assert not stale.valid and math.isnan(stale.distance_m) and stale.graph_age_s > 0.05
    assert convert.stamp_to_ns(stale.graph_stamp) == stamp
    assert re.fullmatch(r"stale scene graph: the latest is \d+\.\d\d s old \(limit query\.max_graph_age_s 0\.05 s\); "
                        r"are the camera topics still publishing\?", stale.message)


def test_a_goal_pose_in_another_frame_without_tf_is_explained(goal_running):
    bringup, harness = goal_running
    node = bringup.nodes["scene_graph"]
    stamp = harness.next_stamp_ns
    harness.publish_pose("goal", stamp, "base_link", [0.1, 0.2, 0.3])
    _wait_for_poses(harness, node, "goal", 1)
    assert harness.publish() == stamp
    assert harness.graph_for(stamp) is not None
    (reward,) = harness.rewards_for(stamp, 1)
    explanation = (r"'goal': no usable goal pose \(it is in frame 'base_link', not the graph frame 'world'\) and "
                   r"unknown object 'goal'; known labels: \['cube', 'gripper', 'table'\]")
    assert not reward.valid and re.fullmatch(explanation, reward.message)
    answer = harness.query("cube", "goal")
    assert not answer.valid and re.fullmatch(explanation, answer.message)


# reward.ee_tf_frame: the end effector from tf, and the goal pose transformed into the graph frame with the same tf.
TF_CONFIG = CONFIG.with_overrides({"reward.pairs": ["gripper:cube", "cube:goal"], "reward.ee_tf_frame": "ee_link"})
# base_link in world: turned 90 degrees about z, 0.2 m along x.
BASE_IN_WORLD = RigidTransform.from_xyzw([0.2, 0.0, 0.0], [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)])
EE_IN_BASE = RigidTransform.from_xyzw([0.3, 0.1, 0.4], [0.0, 0.0, 0.0, 1.0])
GOAL_IN_BASE_M = np.array([0.5, 0.0, 0.1])


def test_with_ee_tf_frame_the_end_effector_comes_from_tf_and_poses_are_transformed_into_the_graph_frame(test_node):
    tf_static = test_node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    tf = test_node.create_publisher(TFMessage, "/tf", TF_QOS)
    statuses: list = []
    test_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    with Bringup(TF_CONFIG) as bringup:
        node = bringup.nodes["scene_graph"]
        harness = RewardHarness(test_node, TF_CONFIG, node)
        assert spin_until(test_node, lambda: tf.get_subscription_count() > 0
                          and harness.poses["goal"].get_subscription_count() > 0)
        assert harness.poses["ee"].get_subscription_count() == 0  # topics.ee_pose is not read: tf gives the pose
        stamp = harness.next_stamp_ns
        tf_static.publish(tf_message(0, "world", "base_link", BASE_IN_WORLD))
        tf.publish(tf_message(stamp, "base_link", "ee_link", EE_IN_BASE))
        assert spin_until(test_node, lambda: node._tf.lookup("world", "ee_link", stamp) is not None)
        harness.publish_pose("goal", stamp, "base_link", GOAL_IN_BASE_M)
        _wait_for_poses(harness, node, "goal", 1)
        assert harness.publish() == stamp
        cube_m = _centroids(harness.graph_for(stamp))["cube"]
        to_cube, to_goal = harness.rewards_for(stamp, 2)
        assert spin_until(test_node, lambda: any({v.key: v.value for v in s.values}.get("ee_tf_frame")
                                                 == "ee_link: in tf" for s in statuses), timeout_s=5.0)
        # A frame the pipeline rejects still leaves the end effector's tf pose at its stamp for later frames.
        rejected_stamp = harness.next_stamp_ns
        tf.publish(tf_message(rejected_stamp, "base_link", "ee_link", EE_IN_BASE))
        assert spin_until(test_node, lambda: node._tf.lookup("world", "ee_link", rejected_stamp) is not None)
        colour = convert.image_msg(np.zeros((SMALL[1], SMALL[0], 3), np.uint8), "rgb8", rejected_stamp, "cam")
        colour.encoding = "yuv422"
        assert harness.publish(color=colour) == rejected_stamp
        assert not any(reward.valid for reward in harness.rewards_for(rejected_stamp, 2))
        kept = node._resolver.poses["ee"].nearest(rejected_stamp, 0)
        assert kept[0] == "world" and np.allclose(kept[1], BASE_IN_WORLD.apply([[0.3, 0.1, 0.4]])[0])
    ee_world_m = BASE_IN_WORLD.apply([[0.3, 0.1, 0.4]])[0]
    goal_world_m = BASE_IN_WORLD.apply([GOAL_IN_BASE_M])[0]
    np.testing.assert_allclose(ee_world_m, [0.1, 0.3, 0.4], atol=1e-9)  # the rotation is the one intended
    assert to_cube.valid and to_cube.subject_source == "kinematics"
    assert to_cube.distance_m == pytest.approx(np.linalg.norm(ee_world_m - cube_m))
    assert to_goal.valid and (to_goal.object_source, to_goal.object_id) == ("kinematics", 0)
    assert to_goal.distance_m == pytest.approx(np.linalg.norm(goal_world_m - cube_m))


def test_without_pairs_there_is_no_reward_publisher_until_pairs_are_set(test_node):
    config = CONFIG.with_overrides({"reward.pairs": []})
    with Bringup(config) as bringup:
        node = bringup.nodes["scene_graph"]
        harness = Harness(test_node, config)
        assert harness.graph_for(harness.publish()) is not None
        assert node.count_publishers(REWARD_TOPIC) == 0
        pairs = rclpy.parameter.Parameter("reward.pairs", value=["gripper:cube"])
        assert node.set_parameters([pairs])[0].successful
        rewards: list[DenseReward] = []
        test_node.create_subscription(DenseReward, REWARD_TOPIC, rewards.append, reward_qos(1))
        assert spin_until(test_node, lambda: node.count_subscribers(REWARD_TOPIC) > 0)
        stamp = harness.publish()
        assert spin_until(test_node, lambda: any(convert.stamp_to_ns(r.header.stamp) == stamp for r in rewards))
        assert [(r.pair, r.valid) for r in rewards] == [("gripper:cube", True)]


def test_more_pairs_set_at_run_time_get_a_reward_queue_as_deep_as_their_count_and_rewards_go_on(test_node):
    with Bringup(CONFIG.with_overrides({"reward.pairs": ["gripper:cube"]})) as bringup:
        node = bringup.nodes["scene_graph"]
        harness = Harness(test_node, CONFIG)
        assert node._reward_pub.qos_profile.depth == reward_qos(1).depth
        pairs = ["gripper:cube", "cube:table", "gripper:table"]
        assert node.set_parameters([rclpy.parameter.Parameter("reward.pairs", value=pairs)])[0].successful
        assert node._reward_pub.qos_profile.depth == reward_qos(3).depth == 30
        assert spin_until(test_node, lambda: node.count_publishers(REWARD_TOPIC) == 1)  # the old one is gone
        rewards: list[DenseReward] = []
        test_node.create_subscription(DenseReward, REWARD_TOPIC, rewards.append, reward_qos(3))
        assert spin_until(test_node, lambda: node.count_subscribers(REWARD_TOPIC) > 0)
        stamp = harness.publish()
        assert spin_until(test_node, lambda: len([r for r in rewards if convert.stamp_to_ns(r.header.stamp) == stamp])
                          == 3)
        no_pairs = rclpy.parameter.Parameter("reward.pairs", rclpy.parameter.Parameter.Type.STRING_ARRAY, [])
        assert node.set_parameters([no_pairs])[0].successful
        assert node._reward_pub is None  # no publisher without pairs, as at a configure without them
        assert spin_until(test_node, lambda: node.count_publishers(REWARD_TOPIC) == 0)


@pytest.fixture
def progress_running(test_node):
    yield from _running(test_node, CONFIG.with_overrides({"reward.pairs": ["gripper:cube"],
                                                          "reward.shaping": "progress"}))


def test_reset_episode_and_a_clock_gone_back_start_a_new_progress_baseline(progress_running):
    from std_srvs.srv import Trigger

    from trusted_scene_graph.ros.scene_graph_node import RESET_EPISODE_SERVICE

    bringup, harness = progress_running
    node = bringup.nodes["scene_graph"]

    def reward_with_ee_at(xyz_m) -> DenseReward:
        # Counted before publishing: the node's executor thread may take the pose before this thread reads the count
        # after publishing (it did once in a CI run), and the count it waited for then never came.
        poses_after = len(node._resolver.poses["ee"]) + 1  # a handful: far below the history's bounds
        harness.publish_pose("ee", harness.next_stamp_ns, "world", xyz_m)
        _wait_for_poses(harness, node, "ee", poses_after)
        (sample,) = harness.rewards_for(harness.publish(), 1)
        assert sample.valid and sample.subject_source == "kinematics", sample.message
        return sample

    def reset_episode() -> None:
        client = harness.node.create_client(Trigger, RESET_EPISODE_SERVICE)
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        assert spin_until(harness.node, future.done)
        assert future.result().success and "captured after this call starts a new episode" in future.result().message

    assert reward_with_ee_at(EE_XYZ_M).reward == pytest.approx(0.0)  # the episode's first distance is the baseline
    cube_m = _centroids(harness.graph_for(harness.stamp_ns))["cube"]
    far, near = cube_m + [0.5, 0.0, 0.0], cube_m + [0.1, 0.0, 0.0]
    reset_episode()
    assert reward_with_ee_at(far).reward == pytest.approx(0.0)
    closer = reward_with_ee_at(near)
    assert closer.reward == pytest.approx(0.8, abs=0.01)  # 1 - 0.1 / 0.5
    assert reward_with_ee_at(near).reward == pytest.approx(closer.reward)  # the same episode: the same baseline
    reset_episode()
    assert reward_with_ee_at(near).reward == pytest.approx(0.0)  # a new baseline
    assert reward_with_ee_at(far).reward < -0.05
    # A simulator reset: the clock goes back 5 s, and the rewards start again from that frame's distance.
    harness.stamp_ns -= 5_000_000_000
    node._resolver.poses["ee"].clear()  # only so that _wait_for_poses can count from 0; the history clears too
    assert reward_with_ee_at(far).reward == pytest.approx(0.0)
    # An episode shorter than a second, the reset call, and the simulator's clock restarted where the episode began:
    # the new episode starts at its first frame, stamped like the old one's, and no pose of the old one answers for
    # the new one's stamps (this frame's own pose has not come: the perceived gripper answers).
    start_ns = harness.stamp_ns
    assert reward_with_ee_at(near).reward == pytest.approx(0.8, abs=0.01)
    reset_episode()
    harness.stamp_ns = start_ns - FRAME_PERIOD_NS
    harness.rewards.clear()  # the old episode's rewards carry the new one's stamps
    (first,) = harness.rewards_for(harness.publish(), 1)
    assert first.valid and first.subject_source == "perception" and first.reward == pytest.approx(0.0)
    assert reward_with_ee_at(cube_m + [0.3, 0.0, 0.0]).distance_m == pytest.approx(0.3, abs=0.01)
