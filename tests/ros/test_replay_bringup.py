"""A recorded simulator bag replayed with ``tsg replay`` drives the live node: the live bringup can be evaluated.

The node runs ``config/benchmark.yaml``'s ``extrinsic.source: tf``: the camera pose comes from the replayed
``/tf_static`` (each tabletop scene samples its own camera, far from the config's default extrinsic), so the graphs'
positions are checked against the recorded ground truth in the graph frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from dds_helpers import replay_into_node  # noqa: E402
from rclpy.qos import DurabilityPolicy  # noqa: E402
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg  # noqa: E402

from trusted_scene_graph.dataset import BagReader  # noqa: E402
from trusted_scene_graph.geometry.transform import RigidTransform  # noqa: E402
from trusted_scene_graph.pipeline.messages import stamp_to_ns  # noqa: E402
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, SCENE_GRAPH_TOPIC  # noqa: E402
from trusted_scene_graph.sim.record import RecordSettings, benchmark_config, record_sim_bag  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.sim]


def _recorded_truth(bag: Path) -> tuple[dict[int, dict[str, np.ndarray]], list[RigidTransform]]:
    """Per stamp, the ground-truth centre of each label (graph frame); and the recorded camera poses."""
    truth, cameras = {}, []
    with BagReader(bag) as reader:
        for message in reader.messages(["/ground_truth", "/tf_static"]):
            if message.topic == "/ground_truth":
                truth[stamp_to_ns(message.msg.header.stamp)] = {
                    o.label: np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z])
                    for o in message.msg.objects}
            else:
                t, q = message.msg.transforms[0].transform.translation, message.msg.transforms[0].transform.rotation
                cameras.append(RigidTransform.from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w]))
    return truth, cameras


def test_a_replayed_tabletop_bag_produces_graphs_naming_the_recorded_objects(tmp_path: Path, ros_context) -> None:
    config = benchmark_config()
    assert config["extrinsic.source"] == "tf"
    record_sim_bag(tmp_path / "bag", RecordSettings(scene="tabletop", episodes=3, seed=4, width=320, height=240),
                   config)
    truth, cameras = _recorded_truth(tmp_path / "bag")
    default_camera = [config["extrinsic.translation_m"], config["extrinsic.rotation_xyzw"]]
    assert len(cameras) == 3 and all(np.linalg.norm(c.translation_m - default_camera[0]) > 0.5 for c in cameras)
    graphs: list[SceneGraphMsg] = []

    def latched_camera_poses(replay) -> None:
        # As recorded (latched, like every static broadcaster's): a subscriber joining later still gets it.
        tf_static = replay.plans["/tf_static"]
        assert tf_static.qos_recorded and tf_static.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL

    node, stats = replay_into_node(
        tmp_path / "bag", config,
        lambda listener: listener.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, graphs.append, GRAPH_QOS),
        lambda: len({stamp_to_ns(g.header.stamp) for g in graphs}) >= 3, latched_camera_poses)
    assert stats.published["/camera/color/image_raw"] == 3
    assert stats.published["/tf_static"] == 3 and not stats.skipped  # one camera pose per scene
    assert node.stats.failed == 0, node.stats.last_error
    stamps = {stamp_to_ns(g.header.stamp) for g in graphs}
    assert len(stamps) >= 2  # sensor data is best effort; most frames must arrive
    labels = {obj.label for g in graphs for obj in g.objects}
    assert "table" in labels and any(" " in label for label in labels)  # "red cube", "blue sphere", ...
    # Positions in the graph frame: each object near its recorded centre (the table is cut by the image border).
    errors_m = [float(np.linalg.norm(np.array([o.centroid.x, o.centroid.y, o.centroid.z])
                                     - truth[stamp_to_ns(g.header.stamp)][o.label]))
                for g in graphs for o in g.objects if o.label != "table"]
    assert len(errors_m) >= 8
    assert np.median(errors_m) < 0.02 and np.percentile(errors_m, 90) < 0.10, sorted(errors_m)
