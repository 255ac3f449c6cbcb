"""``extrinsic.source: tf`` over DDS: the node places the camera from /tf_static and /tf, and rejects frames without."""

from __future__ import annotations

import numpy as np
import pytest
from dds_helpers import spin_until
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg

from trusted_scene_graph.config import Config
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.perception.detector import CameraFrame
from trusted_scene_graph.pipeline import ScenePipeline
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, SCENE_GRAPH_TOPIC, sensor_qos
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher
from trusted_scene_graph.sim.synthetic import SyntheticFrame, SyntheticObject

pytestmark = pytest.mark.dds
SMALL = (160, 120)
OBJECTS = (SyntheticObject(1, 20, 40, 20, 20, 0.9), SyntheticObject(2, 100, 60, 16, 16, 1.0))
CONFIG = Config({"qos.sensor_reliability": "reliable", "extrinsic.source": "tf"})
STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Not the config's default extrinsic (camera at the origin looking along +x): 1.1 m up, 0.4 m back, pitched 30 degrees
# down, 0.2 m to the left.
CAMERA_IN_WORLD = RigidTransform.from_matrix(np.array([
    [0.0, -0.5, 0.8660254, -0.4],
    [-1.0, 0.0, 0.0, 0.2],
    [0.0, -0.8660254, -0.5, 1.1],
    [0.0, 0.0, 0.0, 1.0]]))


def tf_message(stamp_ns: int, parent: str, child: str, child_to_parent: RigidTransform) -> TFMessage:
    stamped = TransformStamped()
    stamped.header.stamp = convert.ns_to_stamp(stamp_ns)
    stamped.header.frame_id, stamped.child_frame_id = parent, child
    t, q = child_to_parent.translation_m, child_to_parent.rotation_xyzw
    stamped.transform.translation.x, stamped.transform.translation.y, stamped.transform.translation.z = map(float, t)
    rotation = stamped.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = q
    return TFMessage(transforms=[stamped])


class Harness:
    def __init__(self, node) -> None:
        self.node = node
        self.camera = SimCameraPublisher(node, CONFIG, qos=sensor_qos(CONFIG))
        self.tf_static = node.create_publisher(TFMessage, "/tf_static", STATIC_QOS)
        self.tf = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        self.graphs: list[SceneGraphMsg] = []
        node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, self.graphs.append, GRAPH_QOS)
        self.statuses: list[DiagnosticStatus] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.statuses.extend(m.status), 10)
        self.frame = SyntheticFrame(*SMALL, objects=OBJECTS, focal_px=120.0)
        self.stamp_ns = 1_000_000_000
        assert spin_until(node, lambda: self.camera.color.get_subscription_count() > 0
                          and self.camera.instances.get_subscription_count() > 0
                          and self.tf.get_subscription_count() > 0)

    def publish(self, camera_frame: str = "cam") -> int:
        self.stamp_ns += 100_000_000
        frame, stamp = self.frame, self.stamp_ns
        self.camera.color.publish(convert.image_msg(frame.rgb, "rgb8", stamp, camera_frame))
        self.camera.depth.publish(convert.image_msg(frame.depth_m, "32FC1", stamp, camera_frame))
        self.camera.info.publish(convert.camera_info_msg(frame.intrinsics, stamp, camera_frame))
        self.camera.instances.publish(convert.image_msg(frame.instance_ids, "16UC1", stamp, camera_frame))
        return stamp

    def graph_for(self, stamp_ns: int, timeout_s: float = 10.0) -> SceneGraphMsg | None:
        def found():
            return next((g for g in self.graphs if convert.stamp_to_ns(g.header.stamp) == stamp_ns), None)

        spin_until(self.node, lambda: found() is not None, timeout_s)
        return found()


def expected_centroids(camera_in_graph: RigidTransform) -> dict[str, np.ndarray]:
    """The centroids a pipeline with that pose as its static extrinsic computes from the harness's frame."""
    frame = SyntheticFrame(*SMALL, objects=OBJECTS, focal_px=120.0)
    pipeline = ScenePipeline(Config({"extrinsic.translation_m": camera_in_graph.translation_m.tolist(),
                                     "extrinsic.rotation_xyzw": camera_in_graph.rotation_xyzw}))
    graph = pipeline.process(CameraFrame(0, frame.rgb, frame.depth_m, frame.intrinsics, frame.instance_ids))
    return {o.label: o.centroid_m for o in graph.objects}


def node_lookup(scene_graph_node, camera_frame: str, stamp_ns: int) -> RigidTransform | None:
    """What the scene-graph node's tf buffer holds for the camera at ``stamp_ns``. Transforms and images travel on
    different topics, so tests wait on this before publishing the images that need the transform."""
    with scene_graph_node._tf_lock:
        return scene_graph_node._tf.lookup("world", camera_frame, stamp_ns)


def wait_for_transform(test_node, scene_graph_node, camera_frame: str, stamp_ns: int) -> bool:
    return spin_until(test_node, lambda: node_lookup(scene_graph_node, camera_frame, stamp_ns) is not None)


def centroids(graph: SceneGraphMsg) -> dict[str, np.ndarray]:
    return {o.label: np.array([o.centroid.x, o.centroid.y, o.centroid.z]) for o in graph.objects}


@pytest.fixture
def running(test_node):
    with Bringup(CONFIG) as bringup:
        yield bringup, Harness(test_node)


def test_a_static_transform_published_before_the_node_started_places_objects_in_the_graph_frame(test_node):
    # Latched: published before the node exists, as a robot's static broadcaster does at boot.
    latched = test_node.create_publisher(TFMessage, "/tf_static", STATIC_QOS)
    latched.publish(tf_message(0, "world", "cam", CAMERA_IN_WORLD))
    with Bringup(CONFIG) as bringup:
        harness = Harness(test_node)
        assert wait_for_transform(test_node, bringup.nodes["scene_graph"], "cam", harness.stamp_ns)
        graph = harness.graph_for(harness.publish())
        assert graph is not None, bringup.nodes["scene_graph"].stats.last_error
    assert graph.header.frame_id == "world"
    got, expected = centroids(graph), expected_centroids(CAMERA_IN_WORLD)
    assert sorted(got) == sorted(expected) == ["cube", "gripper"]
    for label in expected:
        np.testing.assert_allclose(got[label], expected[label], atol=1e-5)
    # And not where the default extrinsic would have put them: the pose really came from the tf.
    default = expected_centroids(RigidTransform.from_xyzw([0.0, 0.0, 0.0], [-0.5, 0.5, -0.5, 0.5]))
    assert np.linalg.norm(got["cube"] - default["cube"]) > 0.5


def test_a_chain_through_tf_and_tf_static_is_looked_up_at_the_image_stamp(running):
    bringup, harness = running
    # world -> base_link on /tf (the robot moves 1 m along x between two stamps), base_link -> cam on /tf_static.
    base_to_world = [RigidTransform.from_xyzw([x_m, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]) for x_m in (0.0, 1.0)]
    harness.tf_static.publish(tf_message(0, "base_link", "cam", CAMERA_IN_WORLD))
    first_stamp = harness.stamp_ns + 100_000_000
    harness.tf.publish(tf_message(first_stamp - 50_000_000, "world", "base_link", base_to_world[0]))
    harness.tf.publish(tf_message(first_stamp + 50_000_000, "world", "base_link", base_to_world[1]))
    # Both /tf messages in: at the second image's stamp the robot has moved.
    assert spin_until(harness.node, lambda: (pose := node_lookup(bringup.nodes["scene_graph"], "cam",
                                                                 first_stamp + 100_000_000)) is not None
                      and pose.translation_m[0] > 0.5)
    graphs = [harness.graph_for(harness.publish()) for _ in range(2)]
    assert all(g is not None for g in graphs), bringup.nodes["scene_graph"].stats.last_error
    moved = centroids(graphs[1])["cube"] - centroids(graphs[0])["cube"]
    # The second image is stamped after the robot moved: the same pixels are 1 m further along x (tracking
    # smooths the track's centroid, so the step is at most 1 m and clearly more than nothing).
    assert 0.3 < moved[0] <= 1.0 + 1e-6 and abs(moved[1]) < 1e-6 and abs(moved[2]) < 1e-6
    np.testing.assert_allclose(centroids(graphs[0])["cube"], expected_centroids(CAMERA_IN_WORLD)["cube"], atol=1e-5)


def test_a_frame_without_the_transform_is_rejected_on_diagnostics_and_the_node_keeps_running(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    stamp = harness.publish()  # no transform for 'cam' yet
    assert spin_until(harness.node, lambda: node.stats.failed == 1)
    assert harness.graph_for(stamp, timeout_s=0.3) is None
    message = ("last frame skipped: extrinsic.source 'tf': no transform from camera frame 'cam' to graph frame "
               "'world' at the image stamp in /tf_static or /tf: 'cam' and 'world' are not connected")
    assert spin_until(harness.node, lambda: any(s.message == message for s in harness.statuses), timeout_s=5.0)
    error = next(s for s in harness.statuses if s.message == message)
    assert error.level == DiagnosticStatus.ERROR
    values = {v.key: v.value for v in error.values}
    assert (values["graph_frame_source"], values["camera_frame"], values["camera_in_tf"]) == ("tf", "cam", "no")
    # Once the camera's transform is published, frames become graphs again.
    harness.tf_static.publish(tf_message(0, "world", "cam", CAMERA_IN_WORLD))
    assert wait_for_transform(harness.node, node, "cam", harness.stamp_ns)
    graph = harness.graph_for(harness.publish())
    assert graph is not None, node.stats.last_error
    np.testing.assert_allclose(centroids(graph)["cube"], expected_centroids(CAMERA_IN_WORLD)["cube"], atol=1e-5)
    # A camera frame the tf does not know is rejected the same way, naming it.
    failed = node.stats.failed
    assert harness.graph_for(harness.publish(camera_frame="other_cam"), timeout_s=1.0) is None
    assert spin_until(harness.node, lambda: node.stats.failed == failed + 1)
    assert "no transform from camera frame 'other_cam' to graph frame 'world'" in node.stats.last_error


def test_without_tf2_msgs_configure_fails_naming_the_package(test_node, monkeypatch):
    import sys

    from trusted_scene_graph.ros.bringup import BringupError

    monkeypatch.setitem(sys.modules, "tf2_msgs.msg", None)  # `from tf2_msgs.msg import ...` raises ImportError
    # Not a bare "trigger_activate returned ERROR": configure fails, and the reason names the package and the fix.
    with pytest.raises(BringupError, match=r"'scene_graph': trigger_configure returned FAILURE: extrinsic.source "
                                           r"'tf' needs the tf2_msgs package, which is not importable .*"
                                           r"ros2_ws/vendor/tf2_msgs"):
        Bringup(CONFIG).start()
