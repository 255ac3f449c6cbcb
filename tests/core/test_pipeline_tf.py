"""``extrinsic.source: tf``: the pipeline places the camera per frame from a tf buffer (pure, no rclpy)."""

from __future__ import annotations

import numpy as np
import pytest
from test_pipeline_scene import CUBE_CENTROID, TABLE_CENTROID, by_label, scene_frame

from trusted_scene_graph.config import Config
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.pipeline import PipelineError, ScenePipeline
from trusted_scene_graph.pipeline.scene import poses_differ

TF = {"extrinsic.source": "tf"}
DEFAULT_ROTATION_XYZW = [-0.5, 0.5, -0.5, 0.5]  # optical -> REP-103 axes (the schema default)
# The camera 1.2 m above the graph origin, 0.5 m back, looking along +x as the default extrinsic does.
CAMERA_IN_WORLD = RigidTransform.from_xyzw([-0.5, 0.0, 1.2], DEFAULT_ROTATION_XYZW)


def buffer_with(*transforms: tuple[int, str, str, RigidTransform]) -> TransformBuffer:
    buffer = TransformBuffer()
    for stamp_ns, parent, child, child_to_parent in transforms:
        buffer.add(bag_msgs.tf_message(stamp_ns, parent, child, child_to_parent))
    return buffer


def test_objects_are_placed_in_the_graph_frame_by_the_camera_pose_in_the_tf():
    pipeline = ScenePipeline(Config(TF))
    tf = buffer_with((0, "world", "cam", CAMERA_IN_WORLD))
    assert pipeline.camera_pose_from_tf(tf, "cam", 1_000) is not None
    objects = by_label(pipeline.process(scene_frame(stamp_ns=1_000)))
    # The hand-computed centroids are for a camera at the origin; the tf moves it by (-0.5, 0, 1.2).
    np.testing.assert_allclose(objects["cube"].centroid_m, CUBE_CENTROID + [-0.5, 0.0, 1.2], atol=1e-9)
    np.testing.assert_allclose(objects["table"].centroid_m, TABLE_CENTROID + [-0.5, 0.0, 1.2], atol=1e-9)


def test_the_tf_pose_gives_the_same_graph_as_that_pose_configured_statically():
    static = ScenePipeline(Config({"extrinsic.translation_m": [-0.5, 0.0, 1.2]}))
    from_tf = ScenePipeline(Config(TF))
    from_tf.camera_pose_from_tf(buffer_with((0, "world", "cam", CAMERA_IN_WORLD)), "cam", 1_000)
    expected, graph = static.process(scene_frame()), from_tf.process(scene_frame())
    assert [o.label for o in graph.objects] == [o.label for o in expected.objects]
    np.testing.assert_allclose([o.centroid_m for o in graph.objects], [o.centroid_m for o in expected.objects],
                               atol=1e-9)
    assert [(r.subject_id, r.predicate, r.object_id) for r in graph.relations] == \
        [(r.subject_id, r.predicate, r.object_id) for r in expected.relations]


def test_a_chain_through_the_robot_is_looked_up_at_each_frames_stamp():
    # world -> base (the robot drives 1 m along x between the two stamps) -> camera (fixed on the robot).
    tf = buffer_with((0, "world", "base", RigidTransform.from_xyzw([0.0, 0.0, 0.0], [0, 0, 0, 1])),
                     (2_000, "world", "base", RigidTransform.from_xyzw([1.0, 0.0, 0.0], [0, 0, 0, 1])),
                     (0, "base", "cam", CAMERA_IN_WORLD))
    pipeline = ScenePipeline(Config(TF))
    centroids = []
    for stamp_ns in (1_000, 3_000):
        pipeline.camera_pose_from_tf(tf, "cam", stamp_ns)
        centroids.append(by_label(pipeline.process(scene_frame(stamp_ns=stamp_ns)))["table"].centroid_m)
    np.testing.assert_allclose(centroids[0], TABLE_CENTROID + [-0.5, 0.0, 1.2], atol=1e-9)
    # The table did not move in the image, so in the world it moved with the robot (the tracker smooths it).
    assert centroids[1][0] > centroids[0][0]


def test_a_frame_without_the_transform_is_rejected_naming_both_frames_and_a_later_one_is_processed():
    pipeline = ScenePipeline(Config({**TF, "graph_frame": "map"}))
    tf = buffer_with((0, "world", "cam", CAMERA_IN_WORLD))  # 'cam' is not connected to 'map'
    assert pipeline.camera_pose_from_tf(tf, "cam", 1_000) is None
    with pytest.raises(PipelineError, match=r"^extrinsic.source 'tf': no transform from camera frame 'cam' to graph "
                                            r"frame 'map' at the image stamp in /tf_static or /tf: "
                                            r"'cam' and 'map' are not connected$"):
        pipeline.process(scene_frame())
    assert pipeline.frame_status() == {"graph_frame_source": "tf", "camera_frame": "cam", "camera_in_tf": "no"}
    tf.add(bag_msgs.tf_message(0, "map", "world", RigidTransform.from_xyzw([0, 0, 0], [0, 0, 0, 1])))
    assert pipeline.camera_pose_from_tf(tf, "cam", 2_000) is not None
    assert {o.label for o in pipeline.process(scene_frame(stamp_ns=2_000)).objects} == {"cube", "table"}
    assert pipeline.frame_status()["camera_in_tf"] == "yes"


def test_a_missing_transform_is_never_replaced_by_the_previous_frames_pose():
    pipeline = ScenePipeline(Config(TF))
    pipeline.camera_pose_from_tf(buffer_with((0, "world", "cam", CAMERA_IN_WORLD)), "cam", 1_000)
    pipeline.process(scene_frame(stamp_ns=1_000))
    pipeline.camera_pose_from_tf(TransformBuffer(), "other_cam", 2_000)
    with pytest.raises(PipelineError, match="no transform from camera frame 'other_cam' to graph frame 'world'"):
        pipeline.process(scene_frame(stamp_ns=2_000))
    frame = scene_frame()
    with pytest.raises(PipelineError, match="no transform from camera frame 'other_cam'"):
        pipeline.process_detections(frame.stamp_ns, [], frame.depth_m, frame.intrinsics)


def test_before_any_lookup_and_with_an_empty_camera_frame_the_error_says_what_is_missing():
    pipeline = ScenePipeline(Config(TF))
    assert pipeline.frame_status() == {"graph_frame_source": "tf", "camera_frame": "not seen yet",
                                       "camera_in_tf": "not looked up yet"}
    with pytest.raises(PipelineError, match=r"no camera pose was looked up for this frame \(call camera_pose_from_tf"):
        pipeline.process(scene_frame())
    pipeline.camera_pose_from_tf(buffer_with((0, "world", "cam", CAMERA_IN_WORLD)), "", 1_000)
    with pytest.raises(PipelineError, match=r"camera_info has an empty header.frame_id, so there is no camera frame "
                                            r"to look up in the tf for graph frame 'world'"):
        pipeline.process(scene_frame())


@pytest.mark.parametrize("source", ["static", "plane_fit"])
def test_the_camera_pose_is_set_per_frame_only_with_tf(source):
    pipeline = ScenePipeline(Config({"extrinsic.source": source}))
    with pytest.raises(PipelineError, match=rf"set_camera_to_graph needs extrinsic.source 'tf'; it is '{source}'"):
        pipeline.set_camera_to_graph(CAMERA_IN_WORLD, "cam")


def test_poses_differ_beyond_a_millimetre_or_a_milliradian():
    turned = RigidTransform.from_xyzw([-0.5, 0.0, 1.2], (RigidTransform.from_xyzw(
        [0, 0, 0], [0.0, 0.0, np.sin(0.001), np.cos(0.001)]).rotation * CAMERA_IN_WORLD.rotation).as_quat())
    assert not poses_differ(CAMERA_IN_WORLD, RigidTransform.from_xyzw([-0.5, 0.0, 1.2 + 5e-4], DEFAULT_ROTATION_XYZW))
    assert poses_differ(CAMERA_IN_WORLD, RigidTransform.from_xyzw([-0.5, 0.0, 1.202], DEFAULT_ROTATION_XYZW))
    assert poses_differ(CAMERA_IN_WORLD, turned)  # turned by 2 mrad about z


def test_a_transform_tf2_would_refuse_is_named_by_the_lookup_it_leaves_unconnected():
    from types import SimpleNamespace

    def message(w: float) -> object:
        vector = SimpleNamespace(x=0.0, y=0.0, z=0.0)
        return SimpleNamespace(transforms=[SimpleNamespace(
            header=SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="world"), child_frame_id="camera",
            transform=SimpleNamespace(translation=vector, rotation=SimpleNamespace(x=0.0, y=0.0, z=0.0, w=w)))])

    buffer = TransformBuffer()
    buffer.add(message(1.01), static=True)  # |q|^2 - 1 = 0.0201: refused, as by tf2
    found = buffer.lookup_explained("world", "camera", 1_000_000_000)
    assert found.transform is None
    assert found.reason.startswith("'camera' and 'world' are not connected (the transform of 'camera' from 'world' was "
                                   "refused: rotation [0.0, 0.0, 0.0, 1.01] is not a unit quaternion")
    buffer.add(message(1.004), static=True)  # |q|^2 - 1 = 0.008: accepted and normalised, as by tf2
    assert buffer.lookup("world", "camera", 1_000_000_000) is not None
