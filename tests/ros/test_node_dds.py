"""The bringup over real DDS: graphs come out, the service answers, and bad input never stops the node."""

from __future__ import annotations

import array
import math
import re
import threading
import time

import numpy as np
import pytest
import rclpy
from dds_helpers import call, spin_until
from trusted_scene_graph_msgs.msg import SceneGraph as SceneGraphMsg
from trusted_scene_graph_msgs.srv import QueryDistance

from trusted_scene_graph.config import Config
from trusted_scene_graph.ros import convert
from trusted_scene_graph.ros.bringup import Bringup
from trusted_scene_graph.ros.scene_graph_node import GRAPH_QOS, QUERY_SERVICE, SCENE_GRAPH_TOPIC, sensor_qos
from trusted_scene_graph.ros.sim_publisher import SimCameraPublisher
from trusted_scene_graph.sim.synthetic import SyntheticFrame, SyntheticObject

pytestmark = pytest.mark.dds
SMALL = (160, 120)  # small frames keep DDS tests fast; sizes do not matter for behaviour here
OBJECTS = (SyntheticObject(1, 20, 40, 20, 20, 0.9), SyntheticObject(2, 100, 60, 16, 16, 1.0))


class Harness:
    """A test node publishing camera frames into the bringup and collecting what comes back."""

    def __init__(self, node, config: Config) -> None:
        self.node = node
        self.camera = SimCameraPublisher(node, config, qos=sensor_qos(config))
        self.graphs: list[SceneGraphMsg] = []
        node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, self.graphs.append, GRAPH_QOS)
        self.client = node.create_client(QueryDistance, QUERY_SERVICE)
        self.stamp_ns = 1_000_000_000
        assert self.client.wait_for_service(timeout_sec=10.0)
        # Wait until the bringup's subscriptions see our publishers (discovery), so no frame is lost.
        assert spin_until(node, lambda: self.camera.color.get_subscription_count() > 0
                          and self.camera.instances.get_subscription_count() > 0)

    def publish(self, frame=None, **overrides) -> int:
        """Publish one frame; ``overrides`` replace individual messages (color, depth, info, instances)."""
        frame = frame or SyntheticFrame(*SMALL, objects=OBJECTS, focal_px=120.0)
        self.stamp_ns += 100_000_000
        msgs = {
            "color": convert.image_msg(frame.rgb, "rgb8", self.stamp_ns, "cam"),
            "depth": convert.image_msg(frame.depth_m, "32FC1", self.stamp_ns, "cam"),
            "info": convert.camera_info_msg(frame.intrinsics, self.stamp_ns, "cam"),
            "instances": convert.image_msg(frame.instance_ids, "16UC1", self.stamp_ns, "cam"),
        }
        for name, msg in overrides.items():
            msg.header.stamp = convert.ns_to_stamp(self.stamp_ns)
            msgs[name] = msg
        self.camera.color.publish(msgs["color"])
        self.camera.depth.publish(msgs["depth"])
        self.camera.info.publish(msgs["info"])
        self.camera.instances.publish(msgs["instances"])
        return self.stamp_ns

    def graph_for(self, stamp_ns: int, timeout_s: float = 10.0) -> SceneGraphMsg | None:
        found = spin_until(self.node, lambda: any(convert.stamp_to_ns(g.header.stamp) == stamp_ns
                                                  for g in self.graphs), timeout_s)
        return next(g for g in self.graphs if convert.stamp_to_ns(g.header.stamp) == stamp_ns) if found else None

    def query(self, subject: str, obj: str, mode: str = "centroid") -> QueryDistance.Response:
        return call(self.node, self.client, QueryDistance.Request(subject=subject, object=obj, mode=mode))


@pytest.fixture
def running(test_node):
    config = Config({"qos.sensor_reliability": "reliable"})  # reliable: no frame is dropped in these tests
    with Bringup(config) as bringup:
        yield bringup, Harness(test_node, config)


def test_a_published_frame_becomes_a_graph_with_the_image_stamp_and_a_distance_answer(running):
    bringup, harness = running
    stamp = harness.publish()
    graph = harness.graph_for(stamp)
    assert graph is not None and graph.header.frame_id == "world"
    assert sorted(o.label for o in graph.objects) == ["cube", "gripper"]
    answer = harness.query("gripper", "cube")
    assert answer.valid and convert.stamp_to_ns(answer.graph_stamp) == stamp
    # Back-projection of the two rectangles: the centroids are a known distance apart.
    objects = {o.label: np.array([o.centroid.x, o.centroid.y, o.centroid.z]) for o in graph.objects}
    assert answer.distance_m == pytest.approx(np.linalg.norm(objects["gripper"] - objects["cube"]), abs=1e-6)
    surface = harness.query("#1", "cube", mode="surface")
    assert surface.valid and surface.distance_m < answer.distance_m


def test_the_graph_is_latched_for_subscribers_that_join_late(running):
    bringup, harness = running
    stamp = harness.publish()
    assert harness.graph_for(stamp) is not None
    late: list[SceneGraphMsg] = []
    harness.node.create_subscription(SceneGraphMsg, SCENE_GRAPH_TOPIC, late.append, GRAPH_QOS)
    assert spin_until(harness.node, lambda: len(late) == 1)
    assert convert.stamp_to_ns(late[0].header.stamp) == stamp


def _bad_inputs(frame: SyntheticFrame) -> dict[str, dict]:
    wrong_step = convert.image_msg(frame.rgb, "rgb8", 0, "cam")
    wrong_step.step -= 1
    unknown_encoding = convert.image_msg(frame.rgb, "rgb8", 0, "cam")
    unknown_encoding.encoding = "yuv422"
    zero_focal = convert.camera_info_msg(frame.intrinsics, 0, "cam")
    zero_focal.k = [0.0] * 9
    half_depth = convert.image_msg(np.ones((SMALL[1] // 2, SMALL[0] // 2), np.float32), "32FC1", 0, "cam")
    return {
        "step disagrees with width": {"color": wrong_step},
        "unknown encoding": {"color": unknown_encoding},
        "depth all NaN": {"depth": convert.image_msg(np.full(frame.depth_m.shape, np.nan, np.float32), "32FC1", 0,
                                                     "cam")},
        "depth all zero": {"depth": convert.image_msg(np.zeros(frame.depth_m.shape, np.uint16), "16UC1", 0, "cam")},
        "zero focal length": {"info": zero_focal},
        "depth smaller than colour": {"depth": half_depth},
    }


def test_each_bad_input_is_skipped_with_an_error_and_the_node_keeps_serving(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    # The last good graph ages while the bad frames are tried; answers from it stay valid here (staleness has its own
    # test in test_reward_node.py).
    assert node.set_parameters([rclpy.parameter.Parameter("query.max_graph_age_s", value=3600.0)])[0].successful
    good = harness.publish()
    assert harness.graph_for(good) is not None
    for case, overrides in _bad_inputs(SyntheticFrame(*SMALL, objects=OBJECTS, focal_px=120.0)).items():
        failed_before = node.stats.failed
        bad = harness.publish(**overrides)
        assert spin_until(harness.node, lambda n=failed_before: node.stats.failed == n + 1), case
        assert harness.graph_for(bad, timeout_s=0.3) is None, case
        # The service still answers from the last good graph.
        answer = harness.query("gripper", "cube")
        assert answer.valid and convert.stamp_to_ns(answer.graph_stamp) == good, case
    # And a good frame after all that is processed normally.
    assert harness.graph_for(harness.publish()) is not None


def test_an_unknown_label_is_answered_invalid_with_the_known_labels(running):
    bringup, harness = running
    assert harness.graph_for(harness.publish()) is not None
    answer = harness.query("gripper", "red banana")
    assert not answer.valid and math.isnan(answer.distance_m)
    # Known: the labels in the graph and those the detector can produce (detector.sim_labels' 'table').
    assert answer.message == "unknown object 'red banana'; known labels: ['cube', 'gripper', 'table']"


def test_an_empty_scene_publishes_an_empty_graph_and_queries_say_so(running):
    bringup, harness = running
    stamp = harness.publish(SyntheticFrame(*SMALL, objects=(), focal_px=120.0))
    graph = harness.graph_for(stamp)
    assert graph is not None and list(graph.objects) == [] and list(graph.relations) == []
    answer = harness.query("cube", "gripper")
    assert not answer.valid and answer.message == ("object 'cube' is absent: not detected in the scene graph (it holds "
                                                   "no objects)")


def test_before_any_frame_the_service_says_no_graph_yet(running):
    bringup, harness = running
    answer = harness.query("gripper", "cube")
    assert not answer.valid and answer.message == "no scene graph has been computed yet"


def test_a_deactivated_node_stops_publishing_and_resumes_on_activate(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    assert harness.graph_for(harness.publish()) is not None
    assert node.trigger_deactivate().name == "SUCCESS"
    assert harness.graph_for(harness.publish(), timeout_s=1.0) is None
    assert node.trigger_activate().name == "SUCCESS"
    assert spin_until(harness.node, lambda: harness.camera.color.get_subscription_count() > 0)
    assert harness.graph_for(harness.publish()) is not None


def test_a_node_deactivated_and_activated_again_and_again_while_frames_arrive_keeps_processing(running):
    # Deactivating destroys the input subscriptions while the executor runs; with rclpy's own executor one of their
    # QoS event handlers destroyed mid-spin ended the spin within a few cycles (ros2/rclpy#1284, BringupExecutor).
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    assert harness.graph_for(harness.publish()) is not None
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            harness.publish()
            time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        for _ in range(30):
            assert node.trigger_deactivate().name == "SUCCESS"
            time.sleep(0.01)
            assert node.trigger_activate().name == "SUCCESS"
            time.sleep(0.03)
    finally:
        stop.set()
        feeder.join()
    assert bringup.error is None
    assert spin_until(harness.node, lambda: harness.camera.color.get_subscription_count() > 0)
    assert harness.graph_for(harness.publish()) is not None


def _marker_arrays(harness: Harness) -> list:
    """The marker arrays the node publishes, subscribed as RViz does (transient local)."""
    from visualization_msgs.msg import MarkerArray

    from trusted_scene_graph.ros.scene_graph_node import MARKERS_TOPIC

    arrays: list[MarkerArray] = []
    harness.node.create_subscription(MarkerArray, MARKERS_TOPIC, arrays.append, GRAPH_QOS)
    return arrays


def _is_lone_delete_all(array) -> bool:
    return [m.action for m in array.markers] == [array.markers[0].DELETEALL] if array.markers else False


def _markers_of_one_graph(running):
    """The node, the test's harness and the marker arrays received, once one graph's boxes have arrived."""
    bringup, harness = running
    arrays = _marker_arrays(harness)
    assert harness.graph_for(harness.publish()) is not None
    assert spin_until(harness.node, lambda: any(len(a.markers) > 1 for a in arrays))
    return bringup.nodes["scene_graph"], harness, arrays


def test_deactivating_the_node_clears_its_markers_also_for_an_rviz_that_joins_later(running):
    node, harness, arrays = _markers_of_one_graph(running)
    # The boxes expire at the age at which the node calls its graph stale (query.max_graph_age_s, 1 s here).
    boxes = next(a for a in arrays if len(a.markers) > 1).markers[1:]
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in boxes} == {(1, 0)}
    assert node.trigger_deactivate().name == "SUCCESS"
    assert spin_until(harness.node, lambda: _is_lone_delete_all(arrays[-1]))
    late = _marker_arrays(harness)  # a late RViz gets the clear, not the last graph's boxes
    assert spin_until(harness.node, lambda: len(late) == 1) and _is_lone_delete_all(late[0])


def test_switching_markers_off_at_run_time_clears_them_and_no_boxes_follow(running):
    node, harness, arrays = _markers_of_one_graph(running)
    assert node.set_parameters([rclpy.parameter.Parameter("markers.enabled", value=False)])[0].successful
    assert spin_until(harness.node, lambda: _is_lone_delete_all(arrays[-1]))
    received = len(arrays)
    assert harness.graph_for(harness.publish()) is not None
    spin_until(harness.node, lambda: len(arrays) > received, timeout_s=0.5)
    assert len(arrays) == received  # disabled: the next graph draws nothing


def test_a_parameter_outside_its_range_is_rejected_on_set_with_the_reason(running):
    bringup, _ = running
    node = bringup.nodes["scene_graph"]
    result = node.set_parameters([rclpy.parameter.Parameter("trust.threshold", value=1.5)])[0]
    assert not result.successful and "trust.threshold" in result.reason and "1.0" in result.reason
    result = node.set_parameters([rclpy.parameter.Parameter("depth.min_m", value=20.0)])[0]
    assert not result.successful and result.reason == (
        "depth.min_m (20.0 m) must be below depth.max_m (10.0 m)")
    assert node.config["trust.threshold"] == -1.0  # unchanged: the model's threshold


def test_values_a_user_cannot_type_otherwise_are_given_the_parameters_type_on_set(running):
    # `ros2 param set /scene_graph query.max_graph_age_s 60` sends an integer; `[]` has no element type.
    bringup, _ = running
    node = bringup.nodes["scene_graph"]
    Type = rclpy.parameter.Parameter.Type
    for parameter, expected in ((rclpy.parameter.Parameter("query.max_graph_age_s", value=60), 60.0),
                                (rclpy.parameter.Parameter("reward.pairs", Type.BYTE_ARRAY, []), []),
                                (rclpy.parameter.Parameter("extrinsic.translation_m", value=[1, 0, 2]),
                                 [1.0, 0.0, 2.0]),
                                # What `ros2 param set ... "[0.1, 0.2, 1.5]"` delivers: the message's array.array.
                                (rclpy.parameter.Parameter("extrinsic.translation_m", Type.DOUBLE_ARRAY,
                                                           array.array("d", [0.1, 0.2, 1.5])), [0.1, 0.2, 1.5]),
                                (rclpy.parameter.Parameter("trust.vlm_query_band", Type.DOUBLE_ARRAY,
                                                           array.array("d", [0.25, 0.75])), [0.25, 0.75])):
        result = node.set_parameters([parameter])[0]
        assert result.successful, result.reason
        assert node.config[parameter.name] == expected and type(node.config[parameter.name]) is type(expected)
        assert node.get_parameter(parameter.name).type_ != Type.BYTE_ARRAY
    assert node.get_parameter("query.max_graph_age_s").type_ == Type.DOUBLE
    result = node.set_parameters([rclpy.parameter.Parameter("query.max_graph_age_s", value="soon")])[0]
    assert not result.successful  # a string is still refused


def test_a_valid_parameter_change_applies_to_the_running_pipeline(running):
    bringup, harness = running
    node = bringup.nodes["scene_graph"]
    assert node.set_parameters([rclpy.parameter.Parameter("trust.threshold", value=1.0)])[0].successful
    graph = harness.graph_for(harness.publish())
    assert graph.trust_threshold == pytest.approx(1.0)
    assert all(r.trust >= 1.0 for r in graph.relations) and graph.num_pruned > 0


def test_read_only_parameters_cannot_be_changed_at_run_time(running):
    bringup, _ = running
    result = bringup.nodes["scene_graph"].set_parameters(
        [rclpy.parameter.Parameter("detector.backend", value="sim")])[0]
    assert not result.successful and "read-only" in result.reason


@pytest.mark.parametrize(("override", "message"), [
    (rclpy.parameter.Parameter("trust.threshold", value=5.0), r"trust\.threshold out of range Min: -1\.0, Max: 1\.0"),
    (rclpy.parameter.Parameter("trust.threshold", value="high"), r"expecting type 'DOUBLE'"),
    (rclpy.parameter.Parameter("depth.min_m", value=50.0), r"depth\.min_m \(50\.0 m\) must be below depth\.max_m"),
    (rclpy.parameter.Parameter("detector.sim_labels", value=["cube"]), r"'cube' is not of the form 'id:label'"),
])
def test_an_invalid_parameter_given_at_startup_stops_the_node_with_the_reason(ros_context, override, message):
    from trusted_scene_graph.config import ConfigError
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    with pytest.raises(ConfigError, match=rf"^node 'scene_graph': invalid parameter: .*{message}"):
        SceneGraphNode(parameter_overrides=[override])


def test_integers_given_at_startup_for_float_parameters_are_taken_as_floats(ros_context):
    # `--ros-args -p reward.shaping_scale_m:=1` arrives as an integer; --set, a parameter file and `ros2 param set`
    # all take it, so must the node's start-up.
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    node = SceneGraphNode(parameter_overrides=[rclpy.parameter.Parameter("reward.shaping_scale_m", value=1),
                                               rclpy.parameter.Parameter("extrinsic.translation_m", value=[0, 0, 1])])
    try:
        assert node.config["reward.shaping_scale_m"] == 1.0 and isinstance(node.config["reward.shaping_scale_m"],
                                                                            float)
        assert node.config["extrinsic.translation_m"] == [0.0, 0.0, 1.0]
        assert node.get_parameter("reward.shaping_scale_m").type_ == rclpy.parameter.Parameter.Type.DOUBLE
    finally:
        node.destroy_node()


def test_diagnostics_report_the_frame_counters_and_the_last_error(running):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    bringup, harness = running
    statuses: list = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    assert harness.graph_for(harness.publish()) is not None
    assert spin_until(harness.node, lambda: any(s.level == DiagnosticStatus.OK for s in statuses), timeout_s=5.0)
    ok = next(s for s in statuses if s.level == DiagnosticStatus.OK)
    assert ok.name == "trusted_scene_graph: /scene_graph"
    assert {v.key: v.value for v in ok.values}["frames_processed"] == "1"
    zero_focal = convert.camera_info_msg(SyntheticFrame(*SMALL, objects=OBJECTS).intrinsics, 0, "cam")
    zero_focal.k = [0.0] * 9
    harness.publish(info=zero_focal)
    assert spin_until(harness.node, lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses), timeout_s=5.0)
    error = next(s for s in statuses if s.level == DiagnosticStatus.ERROR)
    # A status published query.max_graph_age_s (1 s) or more after that frame (a loaded machine) also says that no
    # frame came since: its own test covers that part.
    assert re.fullmatch(r"last frame skipped: focal length fx=0\.0 must be positive and finite(; no frame since, .*)?",
                        error.message), error.message


def test_every_listed_parameter_of_the_running_node_has_a_value(running):
    # What `ros2 param dump /scene_graph` does: list, then get them all in one call. A statically typed parameter
    # declared without a value (an empty array) made the get come back empty, so the dump printed nothing.
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters, ListParameters

    _, harness = running
    clients = {service: harness.node.create_client(service, f"/scene_graph/{name}")
               for service, name in ((ListParameters, "list_parameters"), (GetParameters, "get_parameters"))}
    assert all(client.wait_for_service(timeout_sec=10.0) for client in clients.values())
    names = list(call(harness.node, clients[ListParameters], ListParameters.Request()).result.names)
    assert "detector.label_map" in names and "use_sim_time" in names
    values = call(harness.node, clients[GetParameters], GetParameters.Request(names=names)).values
    assert len(values) == len(names)
    assert [name for name, value in zip(names, values, strict=True) if value.type == ParameterType.PARAMETER_NOT_SET] \
        == []
    label_map = values[names.index("detector.label_map")]
    assert label_map.type == ParameterType.PARAMETER_STRING_ARRAY and list(label_map.string_array_value) == []


def test_use_sim_time_is_set_at_run_time_and_taken_up_by_the_nodes_clock(running):
    # `ros2 param set /scene_graph use_sim_time true`: rclpy's own parameter, not the schema's to refuse.
    bringup, _ = running
    node = bringup.nodes["scene_graph"]
    config = node.config
    assert not node.get_clock().ros_time_is_active
    result = node.set_parameters([rclpy.parameter.Parameter("use_sim_time", value=True)])[0]
    assert result.successful, result.reason
    assert node.get_clock().ros_time_is_active and node.config is config
    # The schema's checks still apply to its own parameters set beside it.
    result = node.set_parameters_atomically([rclpy.parameter.Parameter("use_sim_time", value=False),
                                             rclpy.parameter.Parameter("trust.threshold", value=1.5)])
    assert not result.successful and "trust.threshold" in result.reason
    assert node.get_clock().ros_time_is_active


def test_the_node_takes_rclpys_own_parameters_from_the_launch_files_parameter_file(ros_context, tmp_path,
                                                                                    monkeypatch):
    # The file the launch file writes: validated from a shared file (another node's section, use_sim_time for all).
    import tempfile

    from trusted_scene_graph.config.nodes import validated_parameter_file
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / "shared.yaml"
    shared.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n"
                      "camera:\n  ros__parameters:\n    fps: 30\n"
                      "scene_graph:\n  ros__parameters:\n    trust:\n      threshold: 0.7\n"
                      "    qos_overrides:\n      /tf:\n        subscription:\n          depth: 100\n")
    _, parameter_file = validated_parameter_file(str(shared))
    node = SceneGraphNode(cli_args=["--ros-args", "--params-file", parameter_file])
    try:
        assert node.config["trust.threshold"] == 0.7
        assert node.get_parameter("use_sim_time").value is True and node.get_clock().ros_time_is_active
    finally:
        node.destroy_node()


def test_strings_rcl_would_read_as_other_types_reach_the_node_as_the_strings_validated(ros_context, tmp_path,
                                                                                       monkeypatch):
    # rcl reads a plain y/n as a bool and whatever strtod takes (inf, nan, 0x1p3) as a double: the file written for
    # the nodes quotes every string, so the node gets what the schema checked (a quoted file stays as it was).
    import tempfile

    from trusted_scene_graph.config.nodes import validated_parameter_file
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    user_file = tmp_path / "user.yaml"
    user_file.write_text("scene_graph:\n  ros__parameters:\n    graph_frame: 'inf'\n    topics.ee_pose: 'n'\n"
                         "    detector.vocabulary: ['naan', 'nan', '0x1p3']\n    reward.ee_names: ['y', 'ee']\n")
    config, parameter_file = validated_parameter_file(str(user_file), overrides={"topics.color": "on"})
    node = SceneGraphNode(cli_args=["--ros-args", "--params-file", parameter_file])
    try:
        for name in ("graph_frame", "topics.ee_pose", "detector.vocabulary", "reward.ee_names", "topics.color"):
            assert node.config[name] == config[name], name
        assert (node.config["graph_frame"], node.config["topics.color"]) == ("inf", "on")
        assert node.config["detector.vocabulary"] == ["naan", "nan", "0x1p3"]
    finally:
        node.destroy_node()


def test_empty_list_parameters_are_declared_with_their_list_type(ros_context):
    from rcl_interfaces.msg import ParameterType

    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    node = SceneGraphNode()
    try:
        assert node.describe_parameter("detector.label_map").type == ParameterType.PARAMETER_STRING_ARRAY
        assert node.config["detector.label_map"] == []
    finally:
        node.destroy_node()


def test_an_empty_list_given_at_startup_overrides_a_default_that_is_not_empty(ros_context, tmp_path):
    # `reward.pairs: []` (no reward pairs) in a parameter file arrives untyped: an empty YAML list has no element type.
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    parameter_file = tmp_path / "no_pairs.yaml"
    parameter_file.write_text("/**:\n  ros__parameters:\n    reward.pairs: []\n    reward.ee_names: []\n")
    node = SceneGraphNode(cli_args=["--ros-args", "--params-file", str(parameter_file)])
    try:
        assert node.config["reward.pairs"] == [] and node.config["reward.ee_names"] == []
        assert node.get_parameter("reward.pairs").type_ == rclpy.parameter.Parameter.Type.STRING_ARRAY
    finally:
        node.destroy_node()


def test_a_string_list_given_at_startup_overrides_an_empty_default(ros_context):
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    override = rclpy.parameter.Parameter("detector.label_map", value=["cube:red cube"])
    node = SceneGraphNode(parameter_overrides=[override])
    try:
        assert node.config["detector.label_map"] == ["cube:red cube"]
    finally:
        node.destroy_node()


class ConsoleLog:
    """The node's log lines as a user running `tsg bringup` sees them on the console (stderr, captured by capfd).

    Not read from /rosout: its transient-local history did not reliably reach a subscriber that joined after the
    line was logged, so counting lines there was flaky."""

    def __init__(self, capfd) -> None:
        self.capfd = capfd
        self.lines: list[str] = []

    def wait_for(self, node, text: str, timeout_s: float = 10.0) -> list[str]:
        """The lines containing ``text``, once at least one has been logged."""
        def seen() -> bool:
            self.lines += self.capfd.readouterr().err.splitlines()
            return any(text in line for line in self.lines)

        assert spin_until(node, seen, timeout_s)
        return [line for line in self.lines if text in line]


UNKNOWN_OBJECTS = (*OBJECTS, SyntheticObject(12, 60, 90, 20, 20, 1.1))  # id 12 is not in the default sim_labels


def test_an_instance_id_without_a_sim_label_is_warned_about_once_and_listed_on_diagnostics(running, capfd):
    from diagnostic_msgs.msg import DiagnosticArray

    bringup, harness = running
    statuses: list = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    frame = SyntheticFrame(*SMALL, objects=UNKNOWN_OBJECTS, focal_px=120.0)
    for _ in range(3):
        graph = harness.graph_for(harness.publish(frame))
        assert sorted(o.label for o in graph.objects) == ["cube", "gripper"]  # id 12 is still ignored
    assert spin_until(harness.node, lambda: any(
        {v.key: v.value for v in s.values}.get("instance_ids_not_in_sim_labels") == "12" for s in statuses))
    # The console, as a user running `tsg bringup` sees it (read from stderr, not /rosout, whose late-joiner delivery
    # is not reliable enough to count lines on): the warning comes once, not once per frame.
    expected = ("[scene_graph]: instance id 12 in /camera/instances/image_raw is not in detector.sim_labels; it is "
                "ignored (config/benchmark.yaml lists every recorded label)")
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.endswith(expected)]
    assert len(warnings) == 1 and warnings[0].startswith("[WARN]")


def test_beyond_the_first_unknown_ids_one_warning_gives_their_count_and_diagnostics_count_them_all(
        running, capfd, monkeypatch):
    from diagnostic_msgs.msg import DiagnosticArray

    from trusted_scene_graph.perception import detector

    monkeypatch.setattr(detector, "MAX_UNKNOWN_IDS_KEPT", 2)  # the detector reads it at each new id
    bringup, harness = running
    statuses: list = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    for instance_id in (12, 13, 14, 15):  # a fresh unknown id in every frame
        frame = SyntheticFrame(*SMALL, objects=(*OBJECTS, SyntheticObject(instance_id, 60, 90, 20, 20, 1.1)),
                               focal_px=120.0)
        assert harness.graph_for(harness.publish(frame)) is not None
    assert spin_until(harness.node, lambda: any(
        {v.key: v.value for v in s.values}.get("instance_ids_not_in_sim_labels_count") == "4" for s in statuses))
    last = {v.key: v.value for v in statuses[-1].values}
    assert last["instance_ids_not_in_sim_labels"] == "12, 13, ... (2 more)"
    warnings = [line for line in capfd.readouterr().err.splitlines() if "not in detector.sim_labels" in line]
    assert [w.split("]: ", 1)[1] for w in warnings] == [
        "instance id 12 in /camera/instances/image_raw is not in detector.sim_labels; it is ignored "
        "(config/benchmark.yaml lists every recorded label)",
        "instance id 13 in /camera/instances/image_raw is not in detector.sim_labels; it is ignored "
        "(config/benchmark.yaml lists every recorded label)",
        "3 instance ids in /camera/instances/image_raw are not in detector.sim_labels; further ones are not logged "
        "(/diagnostics counts them)",
    ]


def test_diagnostics_warn_when_colour_stops_while_depth_and_camera_info_keep_coming(running):
    import time

    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    bringup, harness = running
    statuses: list = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
    assert harness.graph_for(harness.publish()) is not None
    frame = SyntheticFrame(*SMALL, objects=OBJECTS, focal_px=120.0)

    def stalled() -> bool:
        return any(s.level == DiagnosticStatus.WARN and s.message.startswith("no frame processed for")
                   for s in statuses)

    deadline = time.monotonic() + 10.0  # query.max_graph_age_s (1 s) of silence, plus a diagnostics period
    while not stalled() and time.monotonic() < deadline:  # no colour: no frame completes, the rest keeps coming
        harness.stamp_ns += 100_000_000
        harness.camera.depth.publish(convert.image_msg(frame.depth_m, "32FC1", harness.stamp_ns, "cam"))
        harness.camera.info.publish(convert.camera_info_msg(frame.intrinsics, harness.stamp_ns, "cam"))
        harness.camera.instances.publish(convert.image_msg(frame.instance_ids, "16UC1", harness.stamp_ns, "cam"))
        spin_until(harness.node, lambda: False, timeout_s=0.1)
    assert stalled()
    warning = next(s for s in statuses if s.level == DiagnosticStatus.WARN
                   and s.message.startswith("no frame processed for"))
    assert ("; no message on /camera/color/image_raw for " in warning.message
            and warning.message.endswith("(/camera/depth/image_raw, /camera/color/camera_info, "
                                         "/camera/instances/image_raw still arriving)")), warning.message
    assert {v.key: v.value for v in warning.values}["frames_processed"] == "1"


def test_the_node_logs_how_many_frames_arrived_and_what_the_last_graph_holds(test_node, monkeypatch, capfd):
    from trusted_scene_graph.ros import scene_graph_node

    monkeypatch.setattr(scene_graph_node, "PROGRESS_LOG_PERIOD_S", 0.3)
    config = Config({"qos.sensor_reliability": "reliable"})
    log = ConsoleLog(capfd)
    with Bringup(config):
        harness = Harness(test_node, config)
        waiting = log.wait_for(test_node, "[scene_graph]: no synchronised frame yet")
        assert waiting[0].endswith("no synchronised frame yet (one message of each input within sync.tolerance_s); "
                                   "messages received: /camera/color/image_raw 0, /camera/depth/image_raw 0, "
                                   "/camera/color/camera_info 0, /camera/instances/image_raw 0")
        for _ in range(2):
            assert harness.graph_for(harness.publish()) is not None
        progress = log.wait_for(test_node, "[scene_graph]: 2 frames received")
        assert ("2 frames received, 2 processed, 0 failed, 0 dropped; last graph: 2 objects (cube, gripper)"
                in progress[0])
        log.wait_for(test_node, "[scene_graph]: no new message since the last report; 2 frames received")


def _entity_counts(node) -> dict[str, int]:
    return {"publishers": len(list(node.publishers)), "subscriptions": len(list(node.subscriptions)),
            "timers": len(list(node.timers)), "services": len(list(node.services)),
            "guards": len(list(node.guards))}


def test_cleanup_then_configure_counts_frames_and_errors_from_zero(ros_context):
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    node = SceneGraphNode(Config({"qos.sensor_reliability": "reliable"}))
    try:
        node.trigger_configure()
        node.trigger_activate()
        node.stats.processed, node.stats.failed, node.stats.last_error = 3, 1, "focal length fx=0.0 ..."
        node.stats.record_message("/camera/color/image_raw", time.monotonic())
        node.trigger_deactivate()
        node.trigger_cleanup()
        node.trigger_configure()
        node.trigger_activate()
        assert (node.stats.processed, node.stats.failed, node.stats.last_error) == (0, 0, "")
        assert set(node.stats.messages.values()) == {0}  # the inputs listed again, nothing received yet
    finally:
        node.destroy_node()


def test_a_failed_activation_releases_what_configure_made_so_a_retry_starts_clean(ros_context, monkeypatch):
    from trusted_scene_graph.ros.scene_graph_node import SceneGraphNode

    node = SceneGraphNode(Config({"qos.sensor_reliability": "reliable"}))
    try:
        unconfigured = _entity_counts(node)
        node.trigger_configure()
        configured = _entity_counts(node)
        made = []

        def third_fails(*args, **kwargs):  # as an rcl error would, midway through the subscriptions
            if len(made) == 2:
                raise RuntimeError("rcl failed to create a subscription")
            made.append(rclpy.node.Node.create_subscription(node, *args, **kwargs))
            return made[-1]

        monkeypatch.setattr(node, "create_subscription", third_fails)
        assert node.trigger_activate().name == "ERROR"
        assert node.activate_error == "RuntimeError: rcl failed to create a subscription"
        assert _entity_counts(node) == unconfigured  # the two subscriptions made too
        monkeypatch.undo()
        assert node.trigger_configure().name == "SUCCESS"
        assert _entity_counts(node) == configured
        assert node.trigger_activate().name == "SUCCESS"
        topics = [subscription.topic_name for subscription in node.subscriptions]
        assert len(topics) == len(set(topics)) == 6  # the camera's 4 inputs and the 2 poses, once each
    finally:
        node.destroy_node()
