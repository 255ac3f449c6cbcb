"""Message <-> core conversions are pure functions of message fields: tested without rclpy.init."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trusted_scene_graph_msgs.srv import QueryDistance  # noqa: E402  (after the conftest's importorskip)

from trusted_scene_graph.geometry import GeometryError, Intrinsics
from trusted_scene_graph.graph import ObjectNode, Relation, SceneGraph
from trusted_scene_graph.image import ImageError
from trusted_scene_graph.perception import PerceptionError
from trusted_scene_graph.reward import RewardSample, SideResolver
from trusted_scene_graph.reward.query import query_distance
from trusted_scene_graph.ros import convert

H, W = 6, 8
INTRINSICS = Intrinsics(W, H, 10.0, 10.0, 3.5, 2.5)


def _frame_msgs(depth_encoding: str = "32FC1"):
    rgb = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
    depth_m = np.full((H, W), 1.25, np.float32)
    depth_m[0, 0] = np.nan
    from trusted_scene_graph.image import depth_to_encoding

    color = convert.image_msg(rgb, "rgb8", 1_500_000_000, "cam")
    depth = convert.image_msg(depth_to_encoding(depth_m, depth_encoding), depth_encoding, 1_500_000_000, "cam")
    info = convert.camera_info_msg(INTRINSICS, 1_500_000_000, "cam")
    instances = convert.image_msg(np.ones((H, W), np.uint16), "16UC1", 1_500_000_000, "cam")
    return rgb, color, depth, info, instances


@pytest.mark.parametrize("depth_encoding", ["32FC1", "16UC1"])
def test_a_synchronised_set_of_messages_decodes_to_the_arrays_that_were_encoded(depth_encoding):
    rgb, color, depth, info, instances = _frame_msgs(depth_encoding)
    frame = convert.frame_from_msgs(color, depth, info, instances)
    assert frame.stamp_ns == 1_500_000_000
    np.testing.assert_array_equal(frame.rgb, rgb)
    assert np.isnan(frame.depth_m[0, 0])
    np.testing.assert_allclose(frame.depth_m[1:, 1:], 1.25)
    assert frame.intrinsics == INTRINSICS
    assert frame.instances.dtype == np.uint16 and frame.instances.sum() == H * W


def test_bgr8_colour_is_returned_as_rgb():
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 200  # red
    msg = convert.image_msg(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", 0, "cam")
    assert convert.rgb_from_msg(msg)[0, 0].tolist() == [200, 0, 0]


def test_an_image_whose_step_disagrees_with_its_width_is_rejected_with_both_numbers():
    _, color, *_ = _frame_msgs()
    color.step = W * 3 - 1
    with pytest.raises(ImageError, match=r"step 23 is smaller than width 8"):
        convert.rgb_from_msg(color)


def test_an_image_whose_data_is_shorter_than_step_times_height_is_rejected():
    _, color, *_ = _frame_msgs()
    color.data = bytes(color.data)[:-5]
    with pytest.raises(ImageError, match=r"data has 139 bytes, expected step 24 x height 6 = 144"):
        convert.rgb_from_msg(color)


def test_an_unknown_encoding_is_rejected_with_the_supported_list():
    _, color, *_ = _frame_msgs()
    color.encoding = "yuv422"
    with pytest.raises(ImageError, match=r"unsupported image encoding 'yuv422'; supported: \["):
        convert.rgb_from_msg(color)


def test_a_colour_encoding_on_the_depth_topic_is_rejected():
    _, color, *_ = _frame_msgs()
    with pytest.raises(ImageError, match=r"depth encoding 'rgb8' is not supported"):
        convert.depth_m_from_msg(color)


def test_camera_info_with_zero_focal_length_is_rejected():
    _, _, _, info, _ = _frame_msgs()
    info.k = [0.0, 0.0, 3.5, 0.0, 0.0, 2.5, 0.0, 0.0, 1.0]
    with pytest.raises(GeometryError, match=r"focal length fx=0.0 must be positive"):
        convert.intrinsics_from_msg(info)


def test_a_distorted_camera_round_trips_through_camera_info_and_a_rectified_one_reads_p():
    distorted = Intrinsics(640, 480, 500.0, 505.0, 319.5, 239.5, "plumb_bob", (-0.3, 0.1, 0.001))
    info = convert.camera_info_msg(distorted, 0, "cam")
    assert info.distortion_model == "plumb_bob" and list(info.d) == [-0.3, 0.1, 0.001, 0.0, 0.0]
    assert convert.intrinsics_from_msg(info) == distorted
    info.p = [480.0, 0.0, 321.0, 0.0, 0.0, 482.0, 238.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert convert.intrinsics_from_msg(info, rectified=True) == Intrinsics(640, 480, 480.0, 482.0, 321.0, 238.0)
    info.binning_x = 2
    with pytest.raises(GeometryError, match=r"^camera_info\.binning_x is 2: binned images are not supported"):
        convert.intrinsics_from_msg(info)


def test_depth_and_colour_of_different_sizes_are_rejected():
    _, color, _, info, _ = _frame_msgs()
    small_depth = convert.image_msg(np.ones((H // 2, W // 2), np.float32), "32FC1", 0, "cam")
    with pytest.raises(PerceptionError, match=r"depth image is 4x3 but colour is 8x6"):
        convert.frame_from_msgs(color, small_depth, info)


def _graph() -> SceneGraph:
    objects = (
        ObjectNode(1, "gripper", 0.9, (1, 2, 3, 4), np.array([0.5, 0.0, 0.3]), np.array([0.02, 0.08, 0.05]), 0.8, 7),
        ObjectNode(2, "cube", 0.8, (5, 6, 7, 8), np.array([0.5, 0.1, 0.3]), np.array([0.05, 0.05, 0.05]), 1.0, 3),
    )
    relations = (Relation(1, "right_of", 2, math.nan, 0.1, 0.99), Relation(1, "distance", 2, 0.1, 0.1, 0.72))
    return SceneGraph(2_000_000_123, "world", objects, relations, 0.5, 4)


def test_a_graph_survives_the_round_trip_through_its_message():
    graph = _graph()
    back = convert.graph_from_msg(convert.graph_to_msg(graph))
    assert (back.stamp_ns, back.frame_id, back.trust_threshold, back.num_pruned) == (2_000_000_123, "world", 0.5, 4)
    assert [(o.id, o.label, o.box_xywh_px, o.track_age) for o in back.objects] == [
        (1, "gripper", (1, 2, 3, 4), 7), (2, "cube", (5, 6, 7, 8), 3)]
    np.testing.assert_allclose(back.objects[1].centroid_m, [0.5, 0.1, 0.3])
    assert [(r.predicate, r.source) for r in back.relations] == [("right_of", "geometry"), ("distance", "geometry")]
    assert math.isnan(back.relations[0].value_m)


def test_markers_clear_the_previous_frame_then_draw_a_box_and_a_label_per_object():
    markers = convert.markers_from_graph(_graph(), lifetime_s=1.0).markers
    assert markers[0].action == markers[0].DELETEALL
    assert [(m.ns, m.id) for m in markers[1:]] == [("objects", 1), ("labels", 1), ("objects", 2), ("labels", 2)]
    assert markers[3].scale.x == pytest.approx(0.05) and markers[4].text == "#2 cube"


def test_boxes_and_labels_expire_after_the_given_lifetime_so_they_never_outlive_a_stale_graph():
    # Lifetime 0 means "never expires" in RViz: boxes of a graph that stopped coming stayed up forever.
    markers = convert.markers_from_graph(_graph(), lifetime_s=2.5).markers
    assert [(m.lifetime.sec, m.lifetime.nanosec) for m in markers[1:]] == [(2, 500_000_000)] * 4
    tiny = convert.markers_from_graph(_graph(), lifetime_s=0.001).markers[1]
    assert (tiny.lifetime.sec, tiny.lifetime.nanosec) == (0, 1_000_000)


def test_clearing_markers_is_a_lone_delete_all_in_the_given_frame():
    (marker,) = convert.clear_markers("world", 1_500_000_000).markers
    assert marker.action == marker.DELETEALL
    assert marker.header.frame_id == "world" and convert.stamp_to_ns(marker.header.stamp) == 1_500_000_000


def test_a_distance_answer_fills_the_service_response_with_the_graph_stamp():
    graph = _graph()
    response = convert.fill_distance_response(query_distance(graph, "gripper", "cube"), graph,
                                              QueryDistance.Response())
    assert response.valid and response.distance_m == pytest.approx(0.1)
    assert (response.subject_id, response.object_id) == (1, 2)
    assert convert.stamp_to_ns(response.graph_stamp) == 2_000_000_123


def test_an_invalid_answer_has_nan_distance_and_says_why():
    response = convert.fill_distance_response(query_distance(None, "gripper", "cube"), None,
                                              QueryDistance.Response())
    assert not response.valid and math.isnan(response.distance_m)
    assert response.message == "no scene graph has been computed yet"
    assert math.isnan(response.graph_age_s)  # no graph, no age


def test_a_kinematic_answer_fills_the_sides_sources_and_the_graph_age():
    graph = _graph()
    resolver = SideResolver()
    resolver.poses["ee"].add(graph.stamp_ns, "world", [0.5, 0.1, 0.5])
    answer = query_distance(graph, "gripper", "cube", resolver=resolver, graph_age_s=0.25)
    response = convert.fill_distance_response(answer, graph, QueryDistance.Response(), graph_age_s=0.25)
    assert response.valid and response.distance_m == pytest.approx(0.2)
    assert (response.subject_source, response.object_source) == ("kinematics", "perception")
    assert (response.subject_id, response.object_id) == (0, 2) and response.graph_age_s == pytest.approx(0.25)


def _sample(**fields) -> RewardSample:
    values = {"pair": "gripper:cube", "subject": "gripper", "object": "cube", "stamp_ns": 2_000_000_123,
              "reward": -0.1, "distance_m": 0.1, "valid": True, "trust": 0.72, "subject_id": 1, "object_id": 2,
              "subject_source": "perception", "object_source": "perception"}
    return RewardSample(**{**values, **fields})


def test_a_reward_sample_becomes_a_dense_reward_in_the_graph_frame_with_the_graphs_stamp():
    msg = convert.reward_to_msg(_sample(held=True, age_s=0.2, message="held 0.200 s: trust 0.1"), "world")
    assert (msg.header.frame_id, convert.stamp_to_ns(msg.header.stamp)) == ("world", 2_000_000_123)
    assert (msg.pair, msg.subject, msg.object) == ("gripper:cube", "gripper", "cube")
    assert (msg.reward, msg.distance_m, msg.age_s) == (pytest.approx(-0.1), pytest.approx(0.1), pytest.approx(0.2))
    assert msg.valid and msg.held and msg.trust == pytest.approx(0.72)
    assert (msg.subject_id, msg.object_id, msg.subject_source, msg.object_source) == (1, 2, "perception",
                                                                                      "perception")
    assert msg.message == "held 0.200 s: trust 0.1"


def test_an_invalid_reward_sample_keeps_its_nan_values_and_its_reason():
    msg = convert.reward_to_msg(_sample(reward=math.nan, distance_m=math.nan, valid=False, trust=0.0,
                                        subject_source="", message="object 'cube' is absent"), "world")
    assert not msg.valid and math.isnan(msg.reward) and math.isnan(msg.distance_m)
    assert msg.subject_source == "" and msg.message == "object 'cube' is absent"


def test_reward_diagnostics_list_the_pairs_and_each_last_samples_validity():
    pairs = ["gripper:cube", "cube:goal", "gripper:table", "ee:table"]
    last = {"gripper:cube": _sample(),
            "cube:goal": _sample(pair="cube:goal", valid=False, message="'goal': no usable goal pose " + "x" * 300),
            "gripper:table": _sample(pair="gripper:table", held=True, message="held 0.100 s: trust 0.1")}
    details = convert.reward_details(pairs, last)
    assert details["reward_pairs"] == "gripper:cube, cube:goal, gripper:table, ee:table"
    assert details["reward gripper:cube"] == "valid"
    assert details["reward cube:goal"].startswith("not valid: 'goal': no usable goal pose xxx")
    assert len(details["reward cube:goal"]) == convert.MAX_DIAGNOSTIC_MESSAGE_CHARS
    assert details["reward cube:goal"].endswith("...")
    assert details["reward gripper:table"] == "held 0.100 s: trust 0.1"
    assert details["reward ee:table"] == "no frame yet"
    assert convert.reward_details([], {}) == {"reward_pairs": "none"}


def _compressed(image_format: str, data: bytes):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=image_format, data=data)
    msg.header.stamp = convert.ns_to_stamp(1_500_000_000)
    return msg


def test_compressed_colour_and_compressed_depth_decode_like_their_raw_versions():
    from trusted_scene_graph.image.compressed import encode_compressed_depth, encode_compressed_rgb

    rgb, _, _, info, _ = _frame_msgs()
    depth_m = np.full((H, W), 1.25, np.float32)
    depth_m[0, 0] = np.nan
    frame = convert.frame_from_msgs(_compressed(*encode_compressed_rgb(rgb, "png")),
                                    _compressed(*encode_compressed_depth(depth_m, "16UC1")), info)
    assert frame.stamp_ns == 1_500_000_000
    np.testing.assert_array_equal(frame.rgb, rgb)
    assert np.isnan(frame.depth_m[0, 0])
    np.testing.assert_allclose(frame.depth_m[1:, 1:], 1.25)


def test_an_rgb_only_camera_gives_a_frame_without_depth():
    rgb, color, _, info, _ = _frame_msgs()
    frame = convert.frame_from_msgs(color, None, info)
    assert frame.depth_m is None
    np.testing.assert_array_equal(frame.rgb, rgb)


def test_input_topics_follow_the_transports_and_the_backends_needs():
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from trusted_scene_graph.config import Config
    from trusted_scene_graph.ros.scene_graph_node import input_topics

    raw = input_topics(Config(), needs_depth=True, needs_instances=True)
    assert raw == [("color", Image, "/camera/color/image_raw"), ("depth", Image, "/camera/depth/image_raw"),
                   ("camera_info", CameraInfo, "/camera/color/camera_info"),
                   ("instances", Image, "/camera/instances/image_raw")]
    compressed = input_topics(Config({"topics.color_transport": "compressed",
                                      "topics.depth_transport": "compressedDepth"}), True, False)
    assert compressed == [("color", CompressedImage, "/camera/color/image_raw/compressed"),
                          ("depth", CompressedImage, "/camera/depth/image_raw/compressedDepth"),
                          ("camera_info", CameraInfo, "/camera/color/camera_info")]
    rgb_only = input_topics(Config(), needs_depth=False, needs_instances=False)
    assert [name for name, _, _ in rgb_only] == ["color", "camera_info"]
