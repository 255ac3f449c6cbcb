"""The node with the open-vocabulary detector (a tiny random GroundingDINO) over DDS: no instance topic needed."""

from __future__ import annotations

import numpy as np
import pytest
from dds_helpers import spin_until
from sensor_msgs.msg import CameraInfo, Image
from tiny_models import build_tiny_grounding_dino
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg

from trusted_scene_graph.config import Config
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, SCENE_GRAPH_TOPIC, sensor_qos
from trusted_scene_graph.sim.synthetic import SyntheticFrame

pytestmark = pytest.mark.dds


def test_an_rgbd_stream_through_grounding_dino_becomes_graphs_with_vocabulary_labels(test_node, tmp_path):
    vocabulary = ["red cube", "table", "gripper"]
    config = Config({"qos.sensor_reliability": "reliable", "detector.backend": "grounding_dino",
                     "detector.model_path": str(build_tiny_grounding_dino(tmp_path / "gdino")),
                     "detector.vocabulary": vocabulary, "detector.label_map": ["red cube:cube"],
                     # random weights: accept every box so that something is detected
                     "detector.box_threshold": 0.0, "detector.text_threshold": 0.0, "detector.min_pixels": 1})
    frame = SyntheticFrame(160, 120, focal_px=120.0)
    frame.rgb[:] = np.random.default_rng(0).integers(0, 256, frame.rgb.shape, dtype=np.uint8)
    qos = sensor_qos(config)
    color = test_node.create_publisher(Image, config["topics.color"], qos)
    depth = test_node.create_publisher(Image, config["topics.depth"], qos)
    info = test_node.create_publisher(CameraInfo, config["topics.camera_info"], qos)
    graphs: list[SceneGraphMsg] = []
    test_node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, graphs.append, GRAPH_QOS)
    with Bringup(config) as bringup:
        subscribed = {subscription.topic_name for subscription in bringup.nodes["scene_graph"].subscriptions}
        assert config["topics.instances"] not in subscribed
        assert spin_until(test_node, lambda: color.get_subscription_count() > 0 and depth.get_subscription_count() > 0)
        stamp_ns = 3_000_000_000
        color.publish(convert.image_msg(frame.rgb, "rgb8", stamp_ns, "cam"))
        depth.publish(convert.image_msg(frame.depth_m, "32FC1", stamp_ns, "cam"))
        info.publish(convert.camera_info_msg(frame.intrinsics, stamp_ns, "cam"))
        assert spin_until(test_node, lambda: any(convert.stamp_to_ns(g.header.stamp) == stamp_ns for g in graphs),
                          timeout_s=15.0)
    graph = next(g for g in graphs if convert.stamp_to_ns(g.header.stamp) == stamp_ns)
    assert graph.objects, "thresholds at 0 keep every box the model proposes"
    assert {o.label for o in graph.objects} <= {"cube", "table", "gripper"}
    assert all(0.0 <= o.score <= 1.0 for o in graph.objects)
