"""Specification of the parameter schema (trusted_scene_graph.config.schema)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from trusted_scene_graph import TsgError
from trusted_scene_graph.config import SCHEMA, Config, ConfigError, ParamSpec, load_config, load_config_file
from trusted_scene_graph.config.schema import render_parameter_file
from trusted_scene_graph.perception import make_detector

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- defaults --------------------------------------------------------------------------------------------------


def test_every_default_value_passes_its_own_validation():
    for name, spec in SCHEMA.items():
        assert spec.validate(spec.default) == spec.default, name


def test_a_config_built_from_nothing_holds_every_default():
    config = Config()
    assert set(config) == set(SCHEMA)
    assert len(config) == len(SCHEMA)
    assert config["sync.tolerance_s"] == 0.01
    assert config["detector.backend"] == "sim"
    assert config["extrinsic.rotation_xyzw"] == [-0.5, 0.5, -0.5, 0.5]


def test_config_errors_are_tsg_errors_so_callers_can_catch_them_with_one_except():
    assert issubclass(ConfigError, TsgError)


def test_the_full_description_appends_the_unit_in_brackets_when_there_is_one():
    assert SCHEMA["sync.tolerance_s"].full_description.endswith(" [s]")
    assert SCHEMA["trust.threshold"].full_description == SCHEMA["trust.threshold"].description


# --- type coercion ---------------------------------------------------------------------------------------------


def test_an_int_is_accepted_for_a_float_parameter_and_becomes_a_float():
    value = SCHEMA["depth.max_m"].validate(5)
    assert value == 5.0
    assert type(value) is float


def test_a_bool_is_rejected_for_a_float_parameter():
    with pytest.raises(ConfigError, match=r"^depth\.max_m: expected float, got bool True$"):
        SCHEMA["depth.max_m"].validate(True)


def test_a_bool_is_rejected_for_an_int_parameter():
    with pytest.raises(ConfigError, match=r"^detector\.min_pixels: expected int, got bool False$"):
        SCHEMA["detector.min_pixels"].validate(False)


def test_a_float_is_rejected_for_an_int_parameter_even_when_whole():
    with pytest.raises(ConfigError, match=r"^detector\.min_pixels: expected int, got float 30\.0$"):
        SCHEMA["detector.min_pixels"].validate(30.0)


def test_a_string_is_rejected_for_a_float_parameter():
    with pytest.raises(ConfigError, match=r"^sync\.tolerance_s: expected float, got str '0\.01'$"):
        SCHEMA["sync.tolerance_s"].validate("0.01")


def test_an_int_is_rejected_for_a_bool_parameter():
    with pytest.raises(ConfigError, match=r"^markers\.enabled: expected bool, got int 1$"):
        SCHEMA["markers.enabled"].validate(1)


def test_a_non_string_is_rejected_for_a_string_parameter():
    with pytest.raises(ConfigError, match=r"^graph_frame: expected string, got int 3$"):
        SCHEMA["graph_frame"].validate(3)


def test_a_tuple_of_strings_is_accepted_for_a_string_array_and_becomes_a_list():
    assert SCHEMA["detector.sim_labels"].validate(("1:a", "2:b")) == ["1:a", "2:b"]


def test_a_string_array_with_a_non_string_item_is_rejected():
    with pytest.raises(ConfigError, match=r"^detector\.sim_labels: expected string\[\], got list \['1:a', 2\]$"):
        SCHEMA["detector.sim_labels"].validate(["1:a", 2])


def test_a_bare_string_is_rejected_for_a_string_array():
    with pytest.raises(ConfigError, match=r"detector\.sim_labels: expected string\[\], got str '1:a'; write a list in "
                                          r"brackets: \[1:a\]$"):
        SCHEMA["detector.sim_labels"].validate("1:a")


def test_a_list_written_without_brackets_is_rejected_saying_how_to_write_it():
    # --set extrinsic.translation_m=1,2,3 parses as the string '1,2,3'.
    with pytest.raises(ConfigError, match=r"^extrinsic\.translation_m: expected float\[\], got str '1,2,3'; write a "
                                          r"list in brackets: \[1, 2, 3\]$"):
        SCHEMA["extrinsic.translation_m"].validate("1,2,3")


def test_reward_pairs_without_brackets_are_told_to_quote_each_pair_as_its_settings_follow_after_commas():
    hint = r"; write a list in brackets, each pair quoted: \['gripper:cube,shaping=exp'\]$"
    with pytest.raises(ConfigError, match=r"^reward\.pairs: expected string\[\], got str 'gripper:cube,shaping=exp'"
                                          + hint):
        SCHEMA["reward.pairs"].validate("gripper:cube,shaping=exp")
    assert SCHEMA["reward.pairs"].validate(["gripper:cube,shaping=exp"]) == ["gripper:cube,shaping=exp"]  # the hint


def test_an_integer_too_large_for_a_float_is_refused_naming_the_parameter():
    huge = 10 ** 400
    for name, value in (("depth.max_m", huge), ("extrinsic.translation_m", [0, 0, huge])):
        with pytest.raises(ConfigError, match=rf"^{re.escape(name)}: 1000+ is too large for a float"):
            SCHEMA[name].validate(value)


def test_ints_in_a_float_array_become_floats():
    value = SCHEMA["extrinsic.translation_m"].validate([1, 2, 3])
    assert value == [1.0, 2.0, 3.0]
    assert all(type(v) is float for v in value)


def test_a_bool_inside_a_float_array_is_rejected():
    with pytest.raises(ConfigError, match=r"^extrinsic\.translation_m: expected float\[\], "
                                          r"got list \[1\.0, True, 0\.0\]$"):
        SCHEMA["extrinsic.translation_m"].validate([1.0, True, 0.0])


# --- ranges, choices, lengths ----------------------------------------------------------------------------------


def test_a_value_below_the_minimum_is_rejected_naming_parameter_value_minimum_and_unit():
    with pytest.raises(ConfigError, match=r"^sync\.tolerance_s: -0\.5 is below the minimum 0\.0 s$"):
        Config({"sync.tolerance_s": -0.5})


@pytest.mark.parametrize("name", ["relations.near_m", "relations.contact_tolerance_m"])
def test_relation_thresholds_of_zero_are_rejected_because_their_predicates_could_never_hold(name):
    # near needs near_m - surface > 0 and on_top_of contact_tolerance_m - |gap| > 0: at 0 neither is ever emitted.
    with pytest.raises(ConfigError, match=rf"^{name.replace('.', r'[.]')}: 0\.0 is below the minimum 0\.0001 m$"):
        Config({name: 0.0})
    assert Config({name: 0.0001})[name] == 0.0001


def test_a_value_above_the_maximum_is_rejected_naming_parameter_value_maximum_and_unit():
    with pytest.raises(ConfigError, match=r"^detector\.min_pixels: 20000000 is above the maximum 10000000 px$"):
        Config({"detector.min_pixels": 20_000_000})


def test_a_range_error_on_a_unitless_parameter_has_no_unit_suffix():
    with pytest.raises(ConfigError, match=r"^trust\.threshold: 1\.5 is above the maximum 1\.0$"):
        Config({"trust.threshold": 1.5})


def test_the_range_bounds_themselves_are_accepted():
    config = Config({"trust.threshold": 0.0, "sync.tolerance_s": 1.0})
    assert config["trust.threshold"] == 0.0
    assert config["sync.tolerance_s"] == 1.0


def test_nan_and_infinity_are_rejected_as_not_finite():
    with pytest.raises(ConfigError, match=r"^relations\.near_m: nan is not a finite number$"):
        Config({"relations.near_m": math.nan})
    with pytest.raises(ConfigError, match=r"^relations\.near_m: inf is not a finite number$"):
        Config({"relations.near_m": math.inf})


def test_a_value_outside_the_choices_is_rejected_listing_the_choices():
    with pytest.raises(ConfigError, match=r"^qos\.sensor_reliability: 'reliabel' is not one of "
                                          r"\['best_effort', 'reliable'\]$"):
        Config({"qos.sensor_reliability": "reliabel"})


def test_an_unknown_detector_backend_is_rejected_by_its_choices():
    with pytest.raises(ConfigError, match=r"^detector\.backend: 'yolo' is not one of \['sim', 'grounding_dino'\]$"):
        Config({"detector.backend": "yolo"})


def test_a_float_array_of_the_wrong_length_is_rejected_naming_expected_and_actual_count():
    with pytest.raises(ConfigError, match=r"^extrinsic\.translation_m: expected 3 values, got 2: \[1\.0, 2\.0\]$"):
        Config({"extrinsic.translation_m": [1.0, 2.0]})


def test_each_item_of_a_float_array_is_range_checked():
    with pytest.raises(ConfigError, match=r"^extrinsic\.rotation_xyzw: 2\.0 is above the maximum 1\.0$"):
        Config({"extrinsic.rotation_xyzw": [0.0, 0.0, 2.0, 0.0]})


def test_a_float_array_item_that_is_not_finite_is_rejected():
    with pytest.raises(ConfigError, match=r"^extrinsic\.translation_m: nan is not a finite number$"):
        Config({"extrinsic.translation_m": [0.0, math.nan, 0.0]})


def test_a_parameter_spec_without_limits_accepts_any_value_of_its_type():
    spec = ParamSpec("x", "float", 0.0, "free")
    assert spec.validate(-1e300) == -1e300


# --- unknown parameters ----------------------------------------------------------------------------------------


def test_an_unknown_parameter_is_rejected_with_close_names_suggested():
    with pytest.raises(ConfigError, match=r"^unknown parameter 'sync\.tolerence_s'; did you mean sync\.tolerance_s"):
        Config({"sync.tolerence_s": 0.02})


def test_an_unknown_parameter_with_nothing_close_gets_no_suggestion():
    with pytest.raises(ConfigError, match=r"^unknown parameter 'zzzzzzzz'$"):
        Config({"zzzzzzzz": 1})


def test_an_rclpy_parameter_given_as_a_schema_parameter_says_where_it_goes():
    with pytest.raises(ConfigError, match=r"^'use_sim_time' is rclpy's own parameter, not one of the schema: only "
                                          r"the ROS nodes read it, from their parameter file \(tsg bringup --config, "
                                          r"or --ros-args --params-file\) or `--ros-args -p use_sim_time:=VALUE`$"):
        Config({"use_sim_time": True})


# --- topic and frame names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["/camera/color/image_raw", "camera/rgb", "~/image", "/cam_1/image_2"])
def test_valid_ros_topic_names_are_accepted(topic):
    assert Config({"topics.color": topic})["topics.color"] == topic


@pytest.mark.parametrize(("topic", "why"), [
    ("not a topic", "has a character other than letters"), ("", "is empty"), ("/camera//image", "repeated '/'"),
    ("/camera/image/", "ends with '/'"), ("/2d/image", "token starting with a digit"),
    ("{node}/image", "has a character other than letters"), ("/", "ends with '/'")])
def test_an_invalid_ros_topic_name_is_refused_naming_the_parameter_and_why(topic, why):
    for name in ("topics.color", "topics.depth", "topics.camera_info", "topics.instances"):
        with pytest.raises(ConfigError, match=rf"^{re.escape(name)}: {re.escape(repr(topic))} is not a ROS 2 topic "
                                              rf"name: it [^(]*{re.escape(why)}"):
            Config({name: topic})


def test_the_pose_topics_may_be_empty_to_subscribe_none_but_not_invalid():
    assert Config({"topics.ee_pose": "", "topics.goal_pose": ""})["topics.goal_pose"] == ""
    with pytest.raises(ConfigError, match=r"^topics\.goal_pose: 'goal pose' is not a ROS 2 topic name"):
        Config({"topics.goal_pose": "goal pose"})


@pytest.mark.parametrize(("topic", "unused_by"), [("topics.depth", {"depth.backend": "monocular"}),
                                                  ("topics.instances", {"detector.backend": "grounding_dino"})])
def test_a_topic_the_node_does_not_subscribe_may_be_empty_but_one_it_subscribes_may_not(topic, unused_by):
    # A real robot's parameter file may blank the inputs its backends never read (no depth for a monocular model, no
    # instance image without the simulator's detector).
    assert Config({topic: "", **unused_by})[topic] == ""
    with pytest.raises(ConfigError, match=rf"^{re.escape(topic)}: '' is not a ROS 2 topic name: it is empty"):
        Config({topic: ""})


@pytest.mark.parametrize("name", ["graph_frame", "reward.ee_tf_frame"])
def test_a_frame_id_with_a_leading_slash_is_refused_as_tf2_does(name):
    with pytest.raises(ConfigError, match=rf"^{re.escape(name)}: '/world' starts with '/', which tf2 refuses in a "
                                          r"frame id: write 'world'$"):
        Config({name: "/world"})


def test_an_empty_graph_frame_is_refused():
    with pytest.raises(ConfigError, match=r"^graph_frame is empty"):
        Config({"graph_frame": ""})


# --- checks across parameters ----------------------------------------------------------------------------------


def test_depth_min_equal_to_depth_max_is_rejected():
    with pytest.raises(ConfigError, match=r"^depth\.min_m \(2\.0 m\) must be below depth\.max_m \(2\.0 m\)$"):
        Config({"depth.min_m": 2.0, "depth.max_m": 2.0})


def test_depth_min_above_depth_max_is_rejected():
    with pytest.raises(ConfigError, match=r"depth\.min_m \(5\.0 m\) must be below depth\.max_m \(1\.0 m\)"):
        Config({"depth.min_m": 5.0, "depth.max_m": 1.0})


def test_an_inverted_vlm_query_band_is_rejected_naming_low_and_high():
    with pytest.raises(ConfigError, match=r"^trust\.vlm_query_band: low 0\.9 is above high 0\.1"):
        Config({"trust.vlm_query_band": [0.9, 0.1]})


def test_a_vlm_query_band_of_one_value_is_accepted():
    assert Config({"trust.vlm_query_band": [0.5, 0.5]})["trust.vlm_query_band"] == [0.5, 0.5]


def test_a_non_unit_quaternion_is_rejected_with_its_norm():
    with pytest.raises(ConfigError, match=r"^extrinsic\.rotation_xyzw: quaternion norm is 0\.5000, expected 1$"):
        Config({"extrinsic.rotation_xyzw": [0.0, 0.0, 0.0, 0.5]})


def test_a_quaternion_within_the_norm_tolerance_is_accepted():
    assert Config({"extrinsic.rotation_xyzw": [0.0, 0.0, 0.0, 0.9995]})["extrinsic.rotation_xyzw"][3] == 0.9995


@pytest.mark.parametrize("entry", ["cube", "x:cube", "1:", "1:   ", ":cube", "-1:cube"])
def test_a_sim_labels_entry_not_of_the_form_id_colon_label_is_rejected(entry):
    with pytest.raises(ConfigError, match=rf"^detector\.sim_labels: '{entry}' is not of the form 'id:label'$"):
        Config({"detector.sim_labels": ["1:gripper", entry]})


def test_sim_labels_entries_with_spaces_around_id_and_label_are_accepted():
    assert Config({"detector.sim_labels": [" 4 : mug"]})["detector.sim_labels"] == [" 4 : mug"]


def test_every_sim_labels_entry_the_schema_accepts_can_be_turned_into_a_detector():
    try:
        config = Config({"detector.sim_labels": ["\u00b2:cube"]})
    except ConfigError:
        return  # rejecting the entry up front is also correct
    make_detector(config)


# --- load_config -----------------------------------------------------------------------------------------------


def test_load_config_reads_the_ros_parameter_file_layout_flattening_nested_keys():
    document = yaml.safe_load("""
/**:
  ros__parameters:
    sync:
      tolerance_s: 0.02
    detector:
      min_pixels: 50
    graph_frame: map
""")
    config = load_config(document)
    assert config["sync.tolerance_s"] == 0.02
    assert config["detector.min_pixels"] == 50
    assert config["graph_frame"] == "map"
    assert config["depth.max_m"] == 10.0  # untouched parameters keep their defaults


@pytest.mark.parametrize("section", ["scene_graph", "/scene_graph", "/*", "/**/scene_graph", "/**/*"])
def test_load_config_reads_a_section_for_the_scene_graph_node_like_the_wildcard_section(section):
    config = load_config({section: {"ros__parameters": {"trust": {"threshold": 0.7}}}})
    assert config["trust.threshold"] == 0.7


@pytest.mark.parametrize(("section", "node_fqn", "applies"), [
    ("/ns/scene_graph", "/ns/scene_graph", True),
    ("ns/scene_graph", "/ns/scene_graph", True),
    ("/*/scene_graph", "/ns/scene_graph", True),
    ("/**", "/ns/scene_graph", True),
    ("/*", "/ns/scene_graph", False),  # one token: the root namespace's nodes only, as rcl matches it
    ("/scene_graph", "/ns/scene_graph", False),
    ("/ns/scene_graph", "/scene_graph", False),
    ("/scene_graph_node", "/scene_graph", False),  # the executable's name is not the node's
])
def test_load_config_matches_section_names_to_the_node_as_rcl_does(section, node_fqn, applies):
    document = {section: {"ros__parameters": {"trust.threshold": 0.7}}}
    if applies:
        assert load_config(document, node_fqn)["trust.threshold"] == 0.7
    else:  # the only section is another node's: not our config
        fqn = "/" + section.lstrip("/")
        with pytest.raises(ConfigError, match=rf"^ros__parameters for {re.escape(fqn)} only, none for "
                                              rf"{re.escape(node_fqn)}: name the section "
                                              rf"{re.escape(node_fqn.lstrip('/'))} or /\*\*$"):
            load_config(document, node_fqn)


def test_load_config_reads_a_section_nested_under_its_namespace():
    document = {"ns": {"scene_graph": {"ros__parameters": {"trust.threshold": 0.7}}}}
    assert load_config(document, "/ns/scene_graph")["trust.threshold"] == 0.7
    with pytest.raises(ConfigError, match=r"^ros__parameters for /ns/scene_graph only, none for /scene_graph: "):
        load_config(document)  # not for /scene_graph


def test_load_config_merges_the_sections_for_the_node_in_file_order():
    config = load_config({
        "/**": {"ros__parameters": {"trust.threshold": 0.6, "relations.near_m": 0.2}},
        "scene_graph": {"ros__parameters": {"trust.threshold": 0.8}},
    })
    assert config["trust.threshold"] == 0.8
    assert config["relations.near_m"] == 0.2


def test_load_config_ignores_the_sections_of_other_nodes_in_a_shared_file():
    # One file for a whole launch: the camera's parameters are not ours to validate, nor to apply.
    config = load_config(yaml.safe_load("""
camera:
  ros__parameters:
    fps: 30
    trust:
      threshold: 0.1
/robot/arm_controller:
  ros__parameters:
    gains: [1, 2]
scene_graph:
  ros__parameters:
    trust:
      threshold: 0.7
"""))
    assert config["trust.threshold"] == 0.7


def test_rclpys_own_parameters_pass_through_a_parameter_file_beside_the_schemas():
    from trusted_scene_graph.config.schema import ros_builtin_parameters

    document = yaml.safe_load("""
/**:
  ros__parameters:
    use_sim_time: true
scene_graph:
  ros__parameters:
    start_type_description_service: false
    qos_overrides:
      /tf:
        subscription:
          depth: 100
    trust:
      threshold: 0.7
""")
    assert load_config(document)["trust.threshold"] == 0.7
    assert ros_builtin_parameters(document) == {"use_sim_time": True, "start_type_description_service": False,
                                                "qos_overrides./tf.subscription.depth": 100}
    assert ros_builtin_parameters({"camera": {"ros__parameters": {"use_sim_time": True}},
                                   "scene_graph": {"ros__parameters": None}}) == {}


def test_an_rclpy_parameter_of_the_wrong_type_is_refused_with_its_name():
    from trusted_scene_graph.config.schema import ros_builtin_parameters

    with pytest.raises(ConfigError, match=r"^use_sim_time: expected bool, got str 'yes please'$"):
        ros_builtin_parameters({"/**": {"ros__parameters": {"use_sim_time": "yes please"}}})


@pytest.mark.parametrize(("value", "shown"), [
    ("null", "None"),
    ("[1, 2.5]", r"\[1, 2\.5\]"),  # rcl: "Sequence should be of same type"
    ("[[1]]", r"\[\[1\]\]"),
    ("!!binary aGk=", r"b'hi'"),
    ("!!timestamp 2001-12-14", r"datetime\.date\(2001, 12, 14\)"),
])
def test_an_rclpy_parameter_without_a_ros_type_is_refused_with_its_name(tmp_path, value, shown):
    path = tmp_path / "params.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    qos_overrides:\n      /tf:\n        subscription:\n"
                    f"          depth: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: qos_overrides\./tf\.subscription\.depth: "
                                          rf"{shown} is not a ROS parameter value \(a bool, int, float or string, or "
                                          r"a list of one of these types\)$"):
        load_config_file(path)


def test_a_date_like_value_is_read_as_its_text_as_rcl_reads_it(tmp_path):
    from trusted_scene_graph.config.schema import load_parameter_file, parse_value

    path = tmp_path / "params.yaml"
    path.write_text("/**:\n  ros__parameters:\n    graph_frame: 2001-12-14\n    qos_overrides:\n      /tf:\n"
                    "        subscription:\n          a: 2001-12-14\n          b: 2001-12-14t21:59:43.10-05:00\n")
    config, builtins = load_parameter_file(path)
    assert config["graph_frame"] == "2001-12-14"
    assert builtins == {"qos_overrides./tf.subscription.a": "2001-12-14",
                        "qos_overrides./tf.subscription.b": "2001-12-14t21:59:43.10-05:00"}
    assert parse_value("2001-12-14") == "2001-12-14"


def test_an_unknown_parameter_in_the_nodes_own_section_is_still_refused_by_name():
    with pytest.raises(ConfigError, match=r"^unknown parameter 'trust\.treshold'; did you mean trust\.threshold"):
        load_config({"/**": {"ros__parameters": {"use_sim_time": True}},
                     "scene_graph": {"ros__parameters": {"trust": {"treshold": 0.7}}}})


def test_a_shared_wildcard_section_s_parameters_for_other_nodes_are_left_alone_and_typos_still_refused():
    # One file for a whole launch: robot_description in /** is for robot_state_publisher, not refused here.
    shared = {"/**": {"ros__parameters": {"robot_description": "<robot/>", "fps": 30, "trust": {"threshold": 0.7}}}}
    assert load_config(shared)["trust.threshold"] == 0.7
    with pytest.raises(ConfigError, match=r"^unknown parameter 'trust\.treshold'; did you mean trust\.threshold"):
        load_config({"/**": {"ros__parameters": {"robot_description": "<robot/>", "trust": {"treshold": 0.7}}}})
    with pytest.raises(ConfigError, match=r"^unknown parameter 'robot_description'"):  # in our own section: ours
        load_config({"scene_graph": {"ros__parameters": {"robot_description": "<robot/>"}}})


def test_load_config_reads_a_flat_mapping_with_dotted_names():
    config = load_config({"sync.tolerance_s": 0.03, "markers.enabled": False})
    assert config["sync.tolerance_s"] == 0.03
    assert config["markers.enabled"] is False


def test_load_config_reads_a_plain_nested_mapping():
    assert load_config({"tracking": {"gate_m": 0.5}})["tracking.gate_m"] == 0.5


def test_load_config_of_an_empty_mapping_gives_the_defaults():
    assert dict(load_config({})) == dict(Config())


def test_load_config_rejects_a_document_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match=r"^expected a mapping at the top of the config, got list$"):
        load_config([1, 2])


def test_load_config_rejects_an_unknown_nested_parameter_by_its_dotted_name():
    with pytest.raises(ConfigError, match=r"^unknown parameter 'sync\.tolerence_s'; did you mean sync\.tolerance_s"):
        load_config({"/**": {"ros__parameters": {"sync": {"tolerence_s": 0.02}}}})


def test_an_empty_ros_parameters_section_gives_the_defaults_or_a_config_error():
    document = yaml.safe_load("/**:\n  ros__parameters:\n")
    try:
        config = load_config(document)
    except ConfigError:
        return
    assert dict(config) == dict(Config())


def test_a_ros_parameters_section_that_is_not_a_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_config({"/**": {"ros__parameters": [1, 2]}})


def test_a_float_in_exponent_form_without_a_dot_loads_as_ros_2_reads_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("/**:\n  ros__parameters:\n    sync:\n      tolerance_s: 1e-2\n")
    assert load_config_file(path)["sync.tolerance_s"] == 0.01


def test_a_value_on_the_command_line_is_read_as_a_parameter_file_reads_it():
    from trusted_scene_graph.cli import parse_overrides

    assert parse_overrides(["sync.tolerance_s=1e-2", "extrinsic.translation_m=[0, 0, 1]"]) == {
        "sync.tolerance_s": 0.01, "extrinsic.translation_m": [0, 0, 1]}
    with pytest.raises(ConfigError, match=r"^'\[0, 0' is not a YAML value: "):
        parse_overrides(["extrinsic.translation_m=[0, 0"])


# --- load_config_file ------------------------------------------------------------------------------------------


def test_load_config_file_reads_a_ros_parameter_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("/**:\n  ros__parameters:\n    relations:\n      near_m: 0.25\n")
    assert load_config_file(path)["relations.near_m"] == 0.25
    assert load_config_file(str(path))["relations.near_m"] == 0.25


@pytest.mark.parametrize(("text", "named"), [
    ("/**:\n  ros__parameters:\n    relations.near_m: 0.3\ntrust.threshold: 0.7\n", "trust.threshold"),
    ("/**:\n  ros__parameters: {relations.near_m: 0.3}\nscene_graph:\n  ros_parameters: {trust.threshold: 0.7}\n",
     "scene_graph"),
    ("robot:\n  /**:\n    ros__parameters: {relations.near_m: 0.3}\n  trust.threshold: 0.7\n", "robot.trust.threshold"),
])
def test_a_parameter_outside_every_node_section_is_refused_not_dropped(tmp_path, text, named):
    # rcl refuses such a file when the node starts ("Cannot have a value before ros__parameters"); read as our config
    # (tsg eval, tsg label, and the launch file, which hands the node its validated file) it was dropped silently.
    path = tmp_path / "stray.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {re.escape(named)} outside every node section: "
                                          r"indent parameters under a section's ros__parameters"):
        load_config_file(path)


def test_parameters_indented_beside_ros__parameters_instead_of_under_it_are_refused_naming_them(tmp_path):
    # One level too little: YAML reads them as keys of the node's section, beside an empty ros__parameters. Taken as
    # the node's config they would change nothing, and the node would run on defaults.
    path = tmp_path / "indent.yaml"
    path.write_text("/**:\n  ros__parameters:\n  extrinsic.source: tf\n  trust.treshold: 0.7\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: /\*\*: extrinsic.source, trust.treshold beside "
                                          r"ros__parameters, not under it: indent the parameters under "
                                          r"ros__parameters$"):
        load_config_file(path)
    # Another node's section is not ours to judge.
    other = {"camera": {"ros__parameters": None, "fps": 30}, "/**": {"ros__parameters": {"trust.threshold": 0.7}}}
    assert load_config(other)["trust.threshold"] == 0.7
    # Nested parameters beside ros__parameters are refused too; a node section beside it is read, as rcl reads it.
    path.write_text("/**:\n  ros__parameters:\n  relations:\n    near_m: 0.3\n")
    with pytest.raises(ConfigError, match=r"/\*\*: relations beside ros__parameters, not under it"):
        load_config_file(path)
    path.write_text("/**:\n  ros__parameters: {trust.threshold: 0.7}\n"
                    "  scene_graph:\n    ros__parameters: {relations.near_m: 0.3}\n")
    config = load_config_file(path)
    assert (config["trust.threshold"], config["relations.near_m"]) == (0.7, 0.3)


def test_load_config_file_of_an_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert dict(load_config_file(path)) == dict(Config())


def test_a_config_file_whose_sections_are_all_for_other_nodes_is_refused_naming_them(tmp_path):
    # rcl would start the node on its defaults; as our config it would silently change nothing.
    path = tmp_path / "misnamed.yaml"
    path.write_text("scene_graph_node:\n  ros__parameters:\n    trust:\n      threshold: 0.7\n"
                    "camera:\n  ros__parameters:\n    fps: 30\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: ros__parameters for /scene_graph_node, "
                                          r"/camera only, none for /scene_graph: name the section scene_graph or "
                                          r"/\*\*$"):
        load_config_file(path)
    # A document without any section is still the parameters themselves; an empty one gives the defaults.
    path.write_text("trust:\n  threshold: 0.7\n")
    assert load_config_file(path)["trust.threshold"] == 0.7
    path.write_text("{}\n")
    assert dict(load_config_file(path)) == dict(Config())


def test_load_config_file_names_a_missing_file(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=rf"^cannot read config file '{path}': No such file or directory$"):
        load_config_file(path)


def test_load_config_file_names_a_file_that_is_not_valid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sync: [0.01\n")
    with pytest.raises(ConfigError, match=rf"^config file '{path}' is not valid YAML: "):
        load_config_file(path)


def test_load_config_file_names_the_file_and_the_parameter_of_an_invalid_value(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("/**:\n  ros__parameters:\n    trust:\n      threshold: 2.0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: trust\.threshold: 2\.0 is above the maximum 1\.0$"):
        load_config_file(path)


def test_load_config_file_names_the_file_when_the_top_level_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=rf"^{path}: expected a mapping at the top of the config, got list$"):
        load_config_file(path)


def test_load_config_file_names_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match="binary.yaml"):
        load_config_file(path)


DEFAULT_YAML = REPO_ROOT / "config" / "default.yaml"
needs_default_yaml = pytest.mark.skipif(not DEFAULT_YAML.exists(),
                                        reason="config/default.yaml does not exist in this checkout")


@needs_default_yaml
def test_the_repository_default_config_file_loads():
    config = load_config_file(DEFAULT_YAML)
    assert set(config) == set(SCHEMA)


@needs_default_yaml
def test_the_repository_default_config_file_is_what_the_schema_renders():
    assert DEFAULT_YAML.read_text() == render_parameter_file(), "regenerate config/default.yaml from the schema"


def test_the_rendered_parameter_file_round_trips_through_load_config():
    config = Config({"relations.margin_scale_m": 1e-6, "detector.sim_labels": ["7:yes", "8:null"],
                     "graph_frame": "on", "markers.enabled": False, "extrinsic.translation_m": [0.1, -2, 3]})
    assert dict(load_config(yaml.safe_load(render_parameter_file(config)))) == dict(config)


def test_the_rendered_parameter_file_comments_every_parameter_with_unit_range_and_read_only():
    text = render_parameter_file()
    for name in SCHEMA:
        assert f"\n    {name}: " in text, name
    assert "    # Largest stamp difference between colour, depth, camera_info (and instances) of one frame [s] " \
           "(range [0.0, 1.0])\n    sync.tolerance_s: 0.01\n" in text
    assert "(one of ['best_effort', 'reliable']; read-only: change needs a restart)" in text


# --- Config as a value -----------------------------------------------------------------------------------------


def test_with_overrides_returns_a_new_config_and_leaves_the_original_unchanged():
    original = Config()
    changed = original.with_overrides({"trust.threshold": 0.9, "tracking.gate_m": 1})
    assert changed is not original
    assert changed["trust.threshold"] == 0.9
    assert changed["tracking.gate_m"] == 1.0 and type(changed["tracking.gate_m"]) is float
    assert original["trust.threshold"] == -1.0
    assert original["tracking.gate_m"] == 0.3


def test_with_overrides_validates_the_overrides():
    with pytest.raises(ConfigError, match=r"^trust\.threshold: -2\.0 is below the minimum -1\.0$"):
        Config().with_overrides({"trust.threshold": -2.0})


def test_with_overrides_checks_consistency_against_the_existing_values():
    with pytest.raises(ConfigError, match=r"^depth\.min_m \(20\.0 m\) must be below depth\.max_m \(10\.0 m\)$"):
        Config().with_overrides({"depth.min_m": 20.0})


def test_a_config_cannot_be_modified_in_place():
    config = Config()
    with pytest.raises(TypeError):
        config["trust.threshold"] = 0.9  # type: ignore[index]


def test_to_ros_parameters_yaml_is_a_ros_parameter_file():
    document = yaml.safe_load(Config().to_ros_parameters_yaml())
    assert list(document) == ["/**"]
    assert document["/**"]["ros__parameters"]["sync.tolerance_s"] == 0.01


def test_to_ros_parameters_yaml_round_trips_through_load_config():
    config = Config({
        "sync.tolerance_s": 0.025,
        "relations.margin_scale_m": 1e-6,
        "detector.sim_labels": ["7:mug", "8:plate"],
        "extrinsic.translation_m": [0.1, -0.2, 1.5],
        "markers.enabled": False,
        "graph_frame": "map",
    })
    reloaded = load_config(yaml.safe_load(config.to_ros_parameters_yaml()))
    assert dict(reloaded) == dict(config)


# Strings a parameter file could misread: a float to ROS 2 (and to our loader), not to YAML 1.1; a path with spaces
# longer than a YAML line (folded, it is no valid YAML in the block it is written into).
AWKWARD = {"graph_frame": "2e5", "reward.ee_tf_frame": "1E-3", "detector.vocabulary": ["1e3", "cube", "2001-12-14"],
           "detector.model_path": "/data/models/some very long directory with spaces/another long directory name/"
                                  "grounding dino tiny"}


def test_strings_that_look_like_numbers_and_long_strings_round_trip_through_the_rendered_file(tmp_path):
    config = Config(AWKWARD)
    for text in (render_parameter_file(config), config.to_ros_parameters_yaml()):
        path = tmp_path / "out.yaml"
        path.write_text(text)
        assert dict(load_config_file(path)) == dict(config)
        yaml.load(text, Loader=yaml.CSafeLoader)  # libyaml, which rcl reads parameter files with, parses it too


def test_to_ros_parameters_yaml_round_trips_through_a_file(tmp_path):
    config = Config({"tracking.max_missed_frames": 0, "qos.sensor_reliability": "reliable"})
    path = tmp_path / "out.yaml"
    path.write_text(config.to_ros_parameters_yaml())
    assert dict(load_config_file(path)) == dict(config)


def test_grounding_dino_with_an_empty_vocabulary_is_rejected():
    with pytest.raises(ConfigError, match=r"^detector\.vocabulary is empty: the 'grounding_dino' detector needs"):
        Config({"detector.backend": "grounding_dino", "detector.vocabulary": [" "]})


def test_a_label_map_entry_without_a_colon_is_rejected():
    with pytest.raises(ConfigError, match=r"^detector\.label_map: 'red cup' is not of the form 'phrase:label'$"):
        Config({"detector.label_map": ["red cup"]})


def test_half_precision_on_cpu_is_rejected():
    with pytest.raises(ConfigError, match=r"^detector\.half_precision needs detector\.device 'cuda'"):
        Config({"detector.half_precision": True})


@pytest.mark.parametrize(("overrides", "match"), [
    ({"topics.color": "/cam/color/image_raw/compressed", "topics.color_transport": "compressed"},
     r"topics.color '/cam/color/image_raw/compressed' ends in an image transport's name: give the base topic and set "
     r"topics.color_transport to 'compressed'"),
    ({"topics.depth": "/cam/depth/image_raw/compressedDepth"},
     r"topics.depth '/cam/depth/image_raw/compressedDepth' ends in an image transport's name"),
])
def test_a_topic_given_with_its_transports_suffix_is_refused(overrides, match):
    # The node appends the suffix itself: it would subscribe .../compressed/compressed, where nothing arrives.
    with pytest.raises(ConfigError, match=match):
        Config(overrides)


@pytest.mark.parametrize(("sim_labels", "match"), [
    (["1:gripper", "2:cube", "01:table"], r"'1:gripper' and '01:table' give id 1 two labels"),
    (["0:floor", "2:cube"], r"'0:floor': the id must be in 1..65535 \(0 is the background\)"),
    (["70000:cube"], r"'70000:cube': the id must be in 1..65535"),
])
def test_sim_label_ids_must_be_unique_instance_ids(sim_labels, match):
    with pytest.raises(ConfigError, match=rf"^detector.sim_labels: {match}"):
        Config({"detector.sim_labels": sim_labels})


@pytest.mark.parametrize("name", ["map_frame", "world_frame", "base_frame", "global_frame", "camera_frame",
                                  "transform_tolerance"])
def test_other_nodes_common_parameters_in_a_shared_section_are_left_alone(name):
    # A robot's /** file that rcl accepts: at difflib's default cutoff these read as typos of graph_frame and co.
    assert load_config({"/**": {"ros__parameters": {name: "x", "trust.threshold": 0.7}}})["trust.threshold"] == 0.7


@pytest.mark.parametrize(("name", "close"), [("grap_frame", "graph_frame"), ("autostrat", "autostart")])
def test_a_typo_of_an_ungrouped_name_in_a_shared_section_is_still_refused(name, close):
    with pytest.raises(ConfigError, match=rf"{name}.*{close}"):
        load_config({"/**": {"ros__parameters": {name: True}}})
