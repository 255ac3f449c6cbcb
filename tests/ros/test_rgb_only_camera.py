"""An RGB-only camera over DDS: compressed colour, no depth topic, metric depth from a (tiny) monocular model."""

from __future__ import annotations

import pytest
from dds_helpers import spin_until
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tiny_models import build_tiny_depth_anything
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg

from trusted_scene_graph.config import Config
from trusted_scene_graph.image.compressed import encode_compressed_rgb
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, SCENE_GRAPH_TOPIC, sensor_qos
from trusted_scene_graph.sim.synthetic import SyntheticFrame, SyntheticObject

pytestmark = pytest.mark.dds


def test_a_compressed_rgb_only_stream_becomes_graphs_without_any_depth_topic(test_node, tmp_path):
    config = Config({"qos.sensor_reliability": "reliable", "depth.backend": "monocular",
                     "depth.model_path": str(build_tiny_depth_anything(tmp_path / "depth")),
                     "topics.color_transport": "compressed",
                     "depth.max_m": 1000.0})  # a random model predicts anything up to tens of metres
    frame = SyntheticFrame(160, 120, objects=(SyntheticObject(1, 20, 40, 30, 30, 0.9),
                                              SyntheticObject(2, 100, 60, 30, 30, 1.0)), focal_px=120.0)
    qos = sensor_qos(config)
    color = test_node.create_publisher(CompressedImage, "/camera/color/image_raw/compressed", qos)
    info = test_node.create_publisher(CameraInfo, config["topics.camera_info"], qos)
    instances = test_node.create_publisher(Image, config["topics.instances"], qos)
    graphs: list[SceneGraphMsg] = []
    test_node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, graphs.append, GRAPH_QOS)
    with Bringup(config) as bringup:
        assert spin_until(test_node, lambda: color.get_subscription_count() > 0
                          and instances.get_subscription_count() > 0)
        subscribed = {subscription.topic_name for subscription in bringup.nodes["scene_graph"].subscriptions}
        assert "/camera/color/image_raw/compressed" in subscribed
        assert config["topics.depth"] not in subscribed
        stamp_ns = 2_000_000_000
        image_format, data = encode_compressed_rgb(frame.rgb, "png")
        compressed = CompressedImage(format=image_format, data=data)
        compressed.header.stamp = convert.ns_to_stamp(stamp_ns)
        color.publish(compressed)
        info.publish(convert.camera_info_msg(frame.intrinsics, stamp_ns, "cam"))
        instances.publish(convert.image_msg(frame.instance_ids, "16UC1", stamp_ns, "cam"))
        assert spin_until(test_node, lambda: any(convert.stamp_to_ns(g.header.stamp) == stamp_ns for g in graphs),
                          timeout_s=15.0)
        graph = next(g for g in graphs if convert.stamp_to_ns(g.header.stamp) == stamp_ns)
        assert sorted(o.label for o in graph.objects) == ["cube", "gripper"]
        assert all(o.depth_valid_fraction > 0 for o in graph.objects)
