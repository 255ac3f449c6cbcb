"""End to end over DDS: rendered Fetch frames in, /scene_graph and a distance answer matching the simulator out."""

from __future__ import annotations

import numpy as np
import pytest
from dds_helpers import call, spin_until
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.config import Config
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.demo import true_distance_m
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, QUERY_SERVICE, SCENE_GRAPH_TOPIC, sensor_qos
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher, extrinsic_overrides

pytest.importorskip("mujoco")
pytestmark = [pytest.mark.dds, pytest.mark.sim]


@pytest.fixture(scope="module")
def fetch_frames():
    """An approach and grasp of the cube: frames far from, near and at the cube (rendered once per module)."""
    from trusted_scene_graph.sim import FetchScene

    with FetchScene(width=320, height=240, seed=1) as scene:
        frames = [scene.reset()] + [scene.step() for _ in range(14)]
        return scene.camera, frames


@pytest.mark.parametrize("depth_encoding", ["32FC1", "16UC1"])
def test_the_bringup_turns_rendered_frames_into_graphs_whose_distance_matches_the_simulator(
        test_node, fetch_frames, depth_encoding):
    camera_model, frames = fetch_frames
    config = Config({"qos.sensor_reliability": "reliable", **extrinsic_overrides(camera_model)})
    graphs: list[SceneGraphMsg] = []
    with Bringup(config):
        camera = SimCameraPublisher(test_node, config, depth_encoding, qos=sensor_qos(config))
        test_node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, graphs.append, GRAPH_QOS)
        client = test_node.create_client(QueryDistance, QUERY_SERVICE)
        assert client.wait_for_service(timeout_sec=10.0)
        assert spin_until(test_node, lambda: camera.instances.get_subscription_count() > 0)
        true_distances = []
        for index, frame in enumerate(frames[::3]):
            stamp_ns = 1_000_000_000 * (index + 1)
            camera.publish(frame, camera_model.intrinsics, stamp_ns)
            assert spin_until(test_node, lambda s=stamp_ns: any(convert.stamp_to_ns(g.header.stamp) == s
                                                     for g in graphs)), f"no graph for frame {index}"
            answer = call(test_node, client, QueryDistance.Request(subject="gripper", object="cube"))
            assert answer.valid and convert.stamp_to_ns(answer.graph_stamp) == stamp_ns
            true_m = true_distance_m(frame)
            true_distances.append(true_m)
            assert answer.distance_m == pytest.approx(true_m, abs=0.02), f"frame {index}"

        graph = graphs[-1]
        assert graph.header.frame_id == "world"
        assert sorted(o.label for o in graph.objects) == ["cube", "gripper", "table"]
        # Ids are stable: every object was tracked through all frames.
        assert all(o.track_age == len(true_distances) for o in graph.objects)
        # The frames cover the approach: the gripper starts far from the cube and ends at it.
        assert true_distances[0] > 0.1 and true_distances[-1] < 0.03
        by_label = {o.label: o for o in graph.objects}
        cube_truth = next(o for o in frames[::3][-1].objects if o.label == "cube")
        centroid = by_label["cube"].centroid
        assert np.linalg.norm([centroid.x, centroid.y, centroid.z] - cube_truth.position_m) < 0.015
        predicates = {(r.subject_id, r.predicate, r.object_id) for r in graph.relations}
        assert (by_label["cube"].id, "above", by_label["table"].id) in predicates
