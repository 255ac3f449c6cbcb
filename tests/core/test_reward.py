"""Specification of the dense reward core (trusted_scene_graph.reward): pairs, shaping, sides, validity, smoothing,
holding the last valid value, and the distance query's answers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from trusted_scene_graph.config.schema import Config, ConfigError
from trusted_scene_graph.graph import ObjectNode, SceneGraph
from trusted_scene_graph.perception.detector import configured_labels
from trusted_scene_graph.reward import (
    PoseHistory,
    RewardError,
    RewardPair,
    RewardTracker,
    SideResolver,
    pairs_from_config,
    parse_pair,
    shape_reward,
)
from trusted_scene_graph.reward.query import query_distance
from trusted_scene_graph.reward.sides import POSE_HISTORY_S

S = 1_000_000_000  # ns per second


def node(object_id: int, label: str, centroid, size=(0.1, 0.1, 0.1), score: float = 1.0, fraction: float = 1.0):
    return ObjectNode(object_id, label, score, (0, 0, 1, 1), np.array(centroid, float), np.array(size, float),
                      fraction)


def graph(*objects: ObjectNode, t_s: float = 0.0) -> SceneGraph:
    return SceneGraph(stamp_ns=int(t_s * S), frame_id="world", objects=tuple(objects))


def resolver(**kwargs) -> SideResolver:
    return SideResolver(known_labels=("gripper", "cube", "table"), **kwargs)


# --- pairs -----------------------------------------------------------------------------------------------------


def test_a_pair_takes_the_config_settings_unless_it_overrides_them():
    config = Config({"reward.shaping": "tanh", "reward.smoothing_frames": 3})
    plain, tuned = pairs_from_config(config, ["gripper:cube", "gripper:red cube, shaping=exp, shaping_scale_m=0.05"])
    assert (plain.subject, plain.object, plain.shaping, plain.smoothing_frames) == ("gripper", "cube", "tanh", 3)
    assert (tuned.object, tuned.shaping, tuned.shaping_scale_m, tuned.smoothing_frames) == ("red cube", "exp", 0.05, 3)
    assert tuned.name == "gripper:red cube"


@pytest.mark.parametrize(("text", "match"), [
    ("gripper cube", "not of the form 'SUBJECT:OBJECT"),
    (":cube", "not of the form"),
    ("cube:Cube", "measures 'cube' against itself"),
    ("gripper:cube,speed=3", "'speed=3' is not one of distance_mode=..."),
    ("gripper:cube,shaping=quadratic", r"'gripper:cube,shaping=quadratic': reward.shaping: 'quadratic' is not one"),
    ("gripper:cube,smoothing_frames=0", "reward.smoothing_frames: 0 is below the minimum 1"),
    ("gripper:cube:goal", r"'gripper:cube:goal' is not of the form 'SUBJECT:OBJECT\[,setting=value...\]' \(one pair "
                          r"per SUBJECT:OBJECT\)"),
    ("gripper:cube,shaping_scale_m=[", r"'gripper:cube,shaping_scale_m=\[': shaping_scale_m: '\[' is not a YAML value"),
])
def test_a_malformed_pair_is_refused_naming_it(text, match):
    with pytest.raises(RewardError, match=match):
        parse_pair(text, Config())


def test_a_pair_setting_is_read_as_a_parameter_file_reads_it():
    assert parse_pair("gripper:cube,shaping_scale_m=5e-2", Config()).shaping_scale_m == 0.05  # YAML 1.1: a string


def test_goal_cannot_be_an_end_effector_name():
    with pytest.raises(ConfigError, match=r"^reward.ee_names: 'goal' names the goal \(topics.goal_pose\); it cannot "
                                          r"also name the end effector$"):
        Config({"reward.ee_names": ["gripper", " Goal"]})


def test_two_pairs_over_the_same_sides_are_refused_and_the_config_checks_its_pairs():
    with pytest.raises(RewardError, match="'gripper:cube' and 'Gripper:Cube,shaping=exp' measure the same two sides"):
        pairs_from_config(Config(), ["gripper:cube", "Gripper:Cube,shaping=exp"])
    with pytest.raises(ConfigError, match="reward.pairs: reward pair 'gripper' is not of the form"):
        Config({"reward.pairs": ["gripper"]})
    assert pairs_from_config(Config({"reward.pairs": []})) == []


# --- shaping ---------------------------------------------------------------------------------------------------


def test_shapings_map_distance_to_reward_as_documented():
    d = np.array([0.0, 0.1, 0.4])
    np.testing.assert_allclose(shape_reward(d, "negative"), [-0.0, -0.1, -0.4])
    np.testing.assert_allclose(shape_reward(d, "exp", 0.1), np.exp([0.0, -1.0, -4.0]))
    np.testing.assert_allclose(shape_reward(d, "tanh", 0.2), 1 - np.tanh([0.0, 0.5, 2.0]))
    np.testing.assert_allclose(shape_reward(d, "progress", first_distance_m=0.4), [1.0, 0.75, 0.0])
    assert shape_reward(0.5, "progress", first_distance_m=0.4) == pytest.approx(-0.25)  # moving away is negative
    assert isinstance(shape_reward(0.2, "exp"), float)


def test_progress_starting_in_contact_stays_finite():
    assert math.isfinite(shape_reward(0.01, "progress", first_distance_m=0.0))


@pytest.mark.parametrize(("args", "match"), [
    ((0.1, "square"), "unknown shaping 'square'; expected one of"),
    ((0.1, "exp", 0.0), "shaping 'exp' needs a scale > 0 m, got 0.0"),
    ((0.1, "progress", 0.1, None), "shaping 'progress' needs the episode's first distance, got None"),
])
def test_bad_shaping_arguments_are_refused(args, match):
    with pytest.raises(RewardError, match=match):
        shape_reward(*args)


# --- sides -----------------------------------------------------------------------------------------------------


def test_kinematics_beats_perceiving_the_gripper_and_perception_answers_without_a_pose():
    scene = graph(node(1, "gripper", (0.0, 0.0, 0.5)), node(2, "cube", (0.3, 0.0, 0.0)), t_s=10.0)
    sides = resolver(ee_pose_max_age_s=0.05)
    perceived = sides.resolve(scene, "gripper")
    assert (perceived.source, perceived.id) == ("perception", 1)
    sides.poses["ee"].add(int(10.02 * S), "world", (0.1, 0.2, 0.3))
    kinematic = sides.resolve(scene, "Gripper")
    assert (kinematic.source, kinematic.id, kinematic.label) == ("kinematics", 0, "ee")
    np.testing.assert_allclose(kinematic.centroid_m, [0.1, 0.2, 0.3])
    assert sides.resolve(graph(t_s=10.0), "ee").source == "kinematics"  # no perceived gripper needed


def test_the_labels_a_labeller_must_lift_are_the_pairs_labels_and_every_end_effector_label():
    sides = resolver()
    assert sides.labels_needed([" Red Cube", "goal"]) == {"red cube", "goal"}
    assert sides.labels_needed(["ee", "cube"]) == {"ee", "gripper", "end_effector", "cube"}
    assert sides.labels_needed(["cube", "#3"]) is None  # an id can be any object
    tracker = RewardTracker([RewardPair("gripper", "cube"), RewardPair("cube", "table")], sides)
    assert tracker.labels_needed == {"ee", "gripper", "end_effector", "cube", "table"}


def test_a_robot_frame_whose_pose_will_answer_needs_no_perceived_object():
    sides = resolver(ee_pose_max_age_s=0.05)
    tracker = RewardTracker([RewardPair("gripper", "cube"), RewardPair("cube", "goal")], sides)
    everything = {"ee", "gripper", "end_effector", "cube", "goal"}
    assert tracker.labels_needed_at(int(10 * S), "world") == everything  # no pose yet
    sides.poses["ee"].add(int(10.02 * S), "world", (0, 0, 0))
    assert sides.posed_frames(int(10 * S), "world") == {"ee"}
    assert tracker.labels_needed_at(int(10 * S), "world") == {"cube", "goal"}
    assert tracker.labels_needed_at(int(11 * S), "world") == everything  # the pose is too old then
    assert tracker.labels_needed_at(int(10 * S), "base_link") == everything  # in another frame: perceived
    lookahead = {"ee": PoseHistory(), "goal": PoseHistory()}
    lookahead["goal"].add(int(11 * S), "", (1, 0, 0))  # no frame id: taken as the graph's
    assert tracker.labels_needed_at(int(11 * S), "world", lookahead) == {"ee", "gripper", "end_effector", "cube"}
    assert tracker.labels_needed == everything
    assert sides.labels_needed(["#3", "gripper"], posed={"ee"}) is None  # an id can still be any object


def test_a_pose_too_far_from_the_graph_stamp_or_in_another_frame_is_not_used_and_the_error_says_why():
    sides = resolver(ee_pose_max_age_s=0.05)
    sides.poses["ee"].add(int(9.0 * S), "world", (0, 0, 0))
    with pytest.raises(RewardError, match=r"'ee': no usable end-effector pose \(the nearest is 1.000 s from the "
                                          r"graph's stamp \(limit 0.05 s\)\) and object 'gripper' is absent"):
        sides.resolve(graph(node(2, "cube", (0, 0, 0)), t_s=10.0), "ee")
    sides.poses["ee"].add(int(10.0 * S), "base_link", (0, 0, 0))
    with pytest.raises(RewardError, match="it is in frame 'base_link', not the graph frame 'world'"):
        sides.resolve(graph(t_s=10.0), "gripper")
    with pytest.raises(RewardError, match=r"'goal': no usable goal pose \(none received\)"):
        sides.resolve(graph(t_s=10.0), "goal")


def test_a_pose_in_another_frame_does_not_hide_a_usable_one_a_little_farther_from_the_stamp():
    # Live, a pose the node could not yet put in the graph frame (no tf, or tf too old) stays in its own frame.
    sides = resolver(ee_pose_max_age_s=0.1)
    sides.poses["ee"].add(10 * S - 20_000_000, "world", (0.1, 0.0, 0.0))
    sides.poses["ee"].add(10 * S + 5_000_000, "base_link", (0.5, 0.0, 0.0))
    scene = graph(node(1, "gripper", (0.3, 0.0, 0.0)), node(2, "cube", (0.0, 0.0, 0.0)), t_s=10.0)
    endpoint = sides.resolve(scene, "gripper")
    assert (endpoint.source, endpoint.centroid_m.tolist()) == ("kinematics", [0.1, 0.0, 0.0])
    answer = query_distance(graph(node(2, "cube", (0.0, 0.0, 0.0)), t_s=10.0), "gripper", "cube", resolver=sides)
    assert (answer.valid, answer.distance_m) == (True, pytest.approx(0.1))
    # Beyond the limit, the other frame's pose is still the one the error names.
    with pytest.raises(RewardError, match="it is in frame 'base_link', not the graph frame 'world'"):
        sides.resolve(graph(t_s=10.0 + 0.09), "gripper")


@pytest.mark.parametrize("limit_s", [0.1, 0.0157, 1.001])
def test_a_pose_exactly_at_the_age_limit_is_used(limit_s):
    # 1.001 s is 1000999999.9999999 ns in binary: the limit is the nearest nanosecond, not the one below.
    sides = resolver(ee_pose_max_age_s=limit_s)
    sides.poses["ee"].add(10 * S - round(limit_s * 1e9), "world", (0.0, 0.0, 0.0))
    assert sides.resolve(graph(t_s=10.0), "ee").source == "kinematics"
    assert "the nearest is" in str(pytest.raises(RewardError, sides.resolve, graph(t_s=10.0 + 1e-6), "ee").value)


def test_pose_history_is_bounded_and_rejects_bad_positions():
    history = PoseHistory(max_poses=3)
    for t in range(5):
        history.add(t * S, "world", (t, 0, 0))
    assert len(history) == 3
    assert history.nearest(0, S // 2) == "the nearest is 2.000 s from the graph's stamp (limit 0.5 s)"
    with pytest.raises(RewardError, match=r"pose position \[nan, 0.0, 0.0\] is not 3 finite numbers"):
        history.add(0, "world", (math.nan, 0, 0))
    with pytest.raises(RewardError, match=r"pose position \[0.0, 0.0, -inf\] is not 3 finite numbers"):
        history.add(0, "world", (0, 0, -math.inf))
    with pytest.raises(RewardError, match=r"pose position \[0.0, 1.0\] is not 3 finite numbers"):
        history.add(0, "world", (0, 1))
    assert len(history) == 3  # nothing refused was kept


def test_a_pose_stamped_over_a_second_before_the_newest_restarts_the_history():
    # A simulator reset: a full history of the old timeline must neither evict the new pose (its smallest stamp) nor
    # answer for the new timeline's stamps.
    history = PoseHistory(max_poses=3)
    for t_s in (10.0, 10.5, 11.0):
        history.add(int(t_s * S), "world", (t_s, 0, 0))
    history.add(1 * S, "world", (1.0, 0, 0))
    assert len(history) == 1
    assert history.nearest(1 * S, S // 5)[1].tolist() == [1.0, 0.0, 0.0]
    assert history.nearest(10 * S, S // 5) == "the nearest is 9.000 s from the graph's stamp (limit 0.2 s)"


def test_a_late_pose_within_a_second_joins_the_history():
    history = PoseHistory()
    history.add(2 * S, "world", (2.0, 0, 0))
    history.add(int(1.5 * S), "world", (1.5, 0, 0))
    assert len(history) == 2
    assert history.nearest(int(1.5 * S), 0)[1].tolist() == [1.5, 0.0, 0.0]


def test_of_two_poses_as_near_a_stamp_the_one_added_last_answers():
    # A simulator restarted its clock at 0 after a short episode: its new pose shares a stamp with the old one's.
    history = PoseHistory()
    for t_s, x in ((0.0, 2.0), (0.2, 1.5), (0.4, 1.0), (0.6, 0.5)):
        history.add(int(t_s * S), "world", (x, 0, 0))
    history.add(0, "world", (0.4, 0, 0))
    assert history.nearest(0, S // 10)[1].tolist() == [0.4, 0.0, 0.0]
    history.add(int(0.25 * S), "world", (0.3, 0, 0))  # as near 0.3 s as the old pose at 0.35 s ...
    history.add(int(0.35 * S), "world", (9.0, 0, 0))  # ... added later
    assert history.nearest(int(0.3 * S), S // 10)[1].tolist() == [9.0, 0.0, 0.0]


def old_and_new_timeline(new_poses_s=(0.0, 0.02, 0.04)) -> PoseHistory:
    """Poses of an episode from 0 to 0.6 s (x = 1), then of the next one after the clock restarted at 0 (x = 2)."""
    history = PoseHistory()
    for k in range(31):
        history.add(k * S // 50, "world", (1.0, 0, 0))
    for t_s in new_poses_s:
        history.add(int(t_s * S), "world", (2.0, 0, 0))
    return history


def test_a_restart_drops_the_old_timelines_poses_and_keeps_the_new_ones_already_received():
    history = old_and_new_timeline()
    history.restart(int(0.6 * S))  # the new timeline's first frame was taken after the frame stamped 0.6 s
    assert len(history) == 3
    assert history.nearest(int(0.02 * S), 0)[1].tolist() == [2.0, 0.0, 0.0]
    assert history.nearest(int(0.3 * S), S // 10) == ("the nearest is 0.260 s from the graph's stamp "
                                                       "(limit 0.1 s)")  # the old pose at 0.3 s went
    # A pose stream out of phase with the frames: its first new pose is stamped after the new frame, still kept.
    history = old_and_new_timeline(new_poses_s=(0.005, 0.025))
    history.restart(int(0.6 * S))
    assert len(history) == 2


def test_a_restart_keeps_every_pose_of_the_new_timeline_however_out_of_order_they_came():
    # The furthest step back is the restart; steps back of a few milliseconds are the new timeline's own disorder.
    for new_poses_s in ((0.0, 0.01, 0.02, 0.03, 0.04, 0.06, 0.05, 0.07),  # 50 ms arrives after 60 ms
                        (0.01, 0.0, 0.02)):  # the new timeline's first two poses swapped
        history = old_and_new_timeline(new_poses_s)
        history.restart(int(0.6 * S))
        assert len(history) == len(new_poses_s)  # the new timeline's, none of the old one's 31
        assert history.nearest(0, 0)[1].tolist() == [2.0, 0.0, 0.0]


def test_a_looped_replays_jump_keeps_every_new_pose_however_out_of_order_they_came():
    # Over a second back the history starts again on its own, and a restart at the frame that jumped keeps it all.
    history = PoseHistory()
    for t_ms in range(0, 5001, 10):
        history.add(t_ms * S // 1000, "world", (1.0, 0, 0))
    for t_ms in (0, 10, 20, 30, 40, 60, 50, 70):
        history.add(t_ms * S // 1000, "world", (t_ms / 1000, 0, 0))
    history.restart(5 * S)
    assert len(history) == 8
    assert history.nearest(0, S // 10)[1].tolist() == [0.0, 0.0, 0.0]


def test_a_restart_before_any_pose_of_the_new_timeline_drops_them_all_and_later_poses_answer():
    history = old_and_new_timeline(new_poses_s=())
    history.add(int(0.59 * S), "world", (1.0, 0, 0))  # late by 10 ms at the old timeline's end: no new timeline
    history.restart(int(0.5 * S))
    assert history.nearest(0, S) == "none received"
    history.add(int(0.02 * S), "world", (2.0, 0, 0))
    assert history.nearest(0, S // 10)[1].tolist() == [2.0, 0.0, 0.0]


def test_a_second_restart_does_not_keep_the_timeline_the_first_one_kept():
    history = old_and_new_timeline()
    history.restart(int(0.6 * S))
    history.add(int(0.06 * S), "world", (2.0, 0, 0))
    history.restart(int(0.06 * S))  # a one-frame episode, and its successor's poses have not come yet
    assert len(history) == 0


def test_a_restart_after_the_pose_streams_own_jump_keeps_the_new_timeline():
    history = PoseHistory()
    for t_s in (10.0, 10.5, 11.0):
        history.add(int(t_s * S), "world", (1.0, 0, 0))
    history.add(1 * S, "world", (2.0, 0, 0))  # over a second back: the history starts again
    history.restart(11 * S)
    assert history.nearest(1 * S, 0)[1].tolist() == [2.0, 0.0, 0.0]


def test_the_pose_at_a_frames_stamp_outlives_seconds_of_perception_at_a_kilohertz():
    # GroundingDINO on a CPU takes seconds: the 1 kHz poses received meanwhile must not evict the one at the stamp.
    history = PoseHistory()
    for k in range(9_000, 13_001):  # 9 s to 13 s; the frame is stamped 10 s
        history.add(k * S // 1000, "world", (k / 1000, 0, 0))
    assert history.nearest(10 * S, S // 10)[1].tolist() == [10.0, 0.0, 0.0]
    sides = resolver(ee_pose_max_age_s=0.1)
    sides.poses["ee"] = history
    scene = graph(node(1, "gripper", (10.2, 0, 0)), node(2, "cube", (10.3, 0, 0)), t_s=10.0)
    assert RewardTracker([RewardPair("gripper", "cube")], sides).update(scene)[0].subject_source == "kinematics"


def test_pose_history_keeps_seconds_of_poses_before_the_newest_at_most_max_poses():
    history = PoseHistory(keep_s=2.0)
    for k in range(501):  # 0 to 5 s at 100 Hz
        history.add(k * S // 100, "world", (k, 0, 0))
    assert len(history) == 201  # 3 s to 5 s
    assert history.nearest(int(2.9 * S), S // 20) == "the nearest is 0.100 s from the graph's stamp (limit 0.05 s)"
    assert resolver().poses["ee"].keep_ns == POSE_HISTORY_S * S  # ee_pose_max_age_s 0.2: seconds more
    longer = resolver(ee_pose_max_age_s=30.0)
    assert longer.poses["goal"].keep_ns == 30 * S  # a pose it could use is kept
    longer.take_poses(resolver())  # a parameter change rebuilds the resolver: the same histories, kept as long
    assert longer.poses["ee"].keep_ns == 30 * S


def test_known_but_missing_labels_are_absent_and_others_unknown():
    scene = graph(node(2, "cube", (0, 0, 0)))
    with pytest.raises(RewardError, match=r"object 'table' is absent: not detected in the scene graph"):
        resolver().resolve(scene, "table")
    with pytest.raises(RewardError, match=r"unknown object 'mug'; known labels: \['cube', 'gripper', 'table'\]"):
        resolver().resolve(scene, "mug")
    with pytest.raises(RewardError, match=r"^object 'table' is absent: not detected in the scene graph \(it holds no "
                                          r"objects\)$"):
        resolver().resolve(graph(), "table")  # the live node's graph: it really is empty
    assert configured_labels(Config()) == ("cube", "gripper", "table")
    assert configured_labels(Config({"detector.backend": "grounding_dino", "detector.vocabulary": ["red cube", "bowl"],
                                     "detector.label_map": ["red cube:cube"]})) == ("bowl", "cube")


@pytest.mark.parametrize("objects", [(), (node(1, "gripper", (0, 0, 0)),)])
def test_in_a_labellers_reduced_graph_a_missing_name_says_nothing_of_what_the_graph_holds(objects):
    # A labeller lifts only the objects its pairs name: the frame may have held many where its graph holds none.
    sides = resolver(reduced_graphs=True)
    with pytest.raises(RewardError, match=r"^object 'cube' is absent: not in this frame \(not detected, or without "
                                          r"usable depth\)$"):
        sides.resolve(graph(*objects), "cube")
    with pytest.raises(RewardError, match=r"^unknown object 'mug'; known labels: \['cube', 'gripper', 'table'\]$"):
        sides.resolve(graph(*objects), "mug")
    with pytest.raises(RewardError, match=r"^'ee': no usable end-effector pose \(none received\) and object 'table' is "
                                          r"absent: not in this frame \(not detected, or without usable depth\)$"):
        resolver(ee_names=("table",), reduced_graphs=True).resolve(graph(*objects[:0]), "ee")
    with pytest.raises(RewardError, match=r"^no object with id 7; ids in the graph: "):  # ids: a full graph
        sides.resolve(graph(*objects), "#7")
    [sample] = track([RewardPair("cube", "table")], [graph(*objects)], sides)
    assert sample.message.endswith("object 'cube' is absent: not in this frame (not detected, or without usable "
                                   "depth)")
    assert SideResolver.from_config(Config(), reduced_graphs=True).reduced_graphs
    assert not SideResolver.from_config(Config()).reduced_graphs  # the live node's and the query service's


# --- tracker ---------------------------------------------------------------------------------------------------


def track(pairs: list[RewardPair], graphs: list[SceneGraph], sides: SideResolver | None = None):
    tracker = RewardTracker(pairs, sides or resolver())
    return [tracker.update(g)[0] for g in graphs]


def test_a_valid_reward_is_the_shaped_distance_with_the_ids_and_sources_used():
    [sample] = track([RewardPair("gripper", "cube")],
                     [graph(node(1, "gripper", (0, 0, 0), score=0.9, fraction=0.8), node(2, "cube", (0.3, 0.4, 0)))])
    assert sample.valid and not sample.held and sample.message == ""
    assert sample.distance_m == pytest.approx(0.5) and sample.reward == pytest.approx(-0.5)
    assert sample.trust == pytest.approx(0.72)
    assert (sample.subject_id, sample.object_id, sample.subject_source, sample.object_source) == (
        1, 2, "perception", "perception")


def test_surface_mode_measures_between_box_faces_and_a_robot_frame_is_a_point():
    sides = resolver()
    sides.poses["ee"].add(0, "world", (0.0, 0.0, 0.0))
    [sample] = track([RewardPair("ee", "cube", distance_mode="surface")],
                     [graph(node(2, "cube", (0.5, 0, 0), size=(0.2, 0.2, 0.2)))], sides)
    assert sample.distance_m == pytest.approx(0.4)
    assert sample.trust == 1.0 and sample.subject_source == "kinematics"


@pytest.mark.parametrize(("objects", "match"), [
    ((node(1, "gripper", (0, 0, 0)),), "object 'cube' is absent"),
    ((node(1, "gripper", (0, 0, 0)), node(2, "cube", (1, 0, 0), score=0.2)), "trust 0.200 is below min_trust 0.300"),
    ((node(1, "gripper", (0, 0, 0)), node(2, "cube", (1, 0, 0), fraction=0.1)),
     r"depth: 10% of 'cube' \(#2\) has valid depth, below min_depth_valid_fraction 30%"),
])
def test_an_unusable_frame_is_invalid_with_nan_reward_and_says_why(objects, match):
    [sample] = track([RewardPair("gripper", "cube")], [graph(*objects)])
    assert not sample.valid and math.isnan(sample.reward) and math.isnan(sample.distance_m)
    assert pytest.approx(sample.trust) == (0.2 if "trust" in match else sample.trust)
    assert re.search(match, sample.message)


def test_both_names_resolving_to_one_object_is_invalid():
    [sample] = track([RewardPair("#2", "cube")], [graph(node(2, "cube", (0, 0, 0)))])
    assert not sample.valid and sample.message == "'#2' and 'cube' both resolve to object #2"


def test_a_label_matching_several_objects_keeps_the_object_it_started_with():
    gripper = node(1, "gripper", (0, 0, 0))
    first = graph(gripper, node(2, "cube", (0.1, 0, 0), score=0.9), node(3, "cube", (0.5, 0, 0), score=0.6))
    # The other cube now scores higher; the reward stays on #2 while #2 is in the graph.
    second = graph(gripper, node(2, "cube", (0.1, 0, 0), score=0.7), node(3, "cube", (0.5, 0, 0), score=0.95))
    third = graph(gripper, node(3, "cube", (0.5, 0, 0), score=0.95))
    samples = track([RewardPair("gripper", "cube")], [first, second, third])
    assert [s.object_id for s in samples] == [2, 2, 3]
    assert [s.distance_m for s in samples] == pytest.approx([0.1, 0.1, 0.5])


def test_smoothing_is_the_median_of_the_last_valid_distances():
    distances = [0.5, 0.4, 2.0, 0.3, 0.2]  # one outlier frame
    graphs = [graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (d, 0, 0)), t_s=i) for i, d in enumerate(distances)]
    samples = track([RewardPair("gripper", "cube", smoothing_frames=3)], graphs)
    assert [s.distance_m for s in samples] == pytest.approx([0.5, 0.45, 0.5, 0.4, 0.3])


def test_the_smoothing_window_starts_again_when_a_side_resolves_to_another_object():
    # Cube #3 leaves the graph and #5 is chosen: its distance is not the median of two different cubes.
    gripper = node(1, "gripper", (0, 0, 0))
    first = graph(gripper, node(3, "cube", (0.3, 0, 0)), node(5, "cube", (0.9, 0, 0), score=0.5), t_s=0)
    second = graph(gripper, node(5, "cube", (0.9, 0, 0), score=0.5), t_s=1)
    third = graph(gripper, node(5, "cube", (0.7, 0, 0), score=0.5), t_s=2)
    samples = track([RewardPair("gripper", "cube", smoothing_frames=3)], [first, second, third])
    assert [s.object_id for s in samples] == [3, 5, 5]
    assert [s.distance_m for s in samples] == pytest.approx([0.3, 0.9, 0.8])


def test_the_smoothing_window_starts_again_when_the_gripper_switches_from_perception_to_kinematics():
    sides = resolver()
    tracker = RewardTracker([RewardPair("gripper", "cube", smoothing_frames=3)], sides)
    perceived = tracker.update(graph(node(1, "gripper", (0.5, 0, 0)), node(2, "cube", (0, 0, 0)), t_s=1.0))[0]
    sides.poses["ee"].add(2 * S, "world", (0.1, 0.0, 0.0))
    kinematic = tracker.update(graph(node(1, "gripper", (0.5, 0, 0)), node(2, "cube", (0, 0, 0)), t_s=2.0))[0]
    assert (perceived.subject_source, perceived.distance_m) == ("perception", pytest.approx(0.5))
    assert (kinematic.subject_source, kinematic.distance_m) == ("kinematics", pytest.approx(0.1))


def test_a_frame_stamped_before_the_last_valid_one_is_not_held():
    # Another timeline (a reset the caller did not announce): a value from the future is no held value.
    pair = RewardPair("gripper", "cube", hold_last_valid_s=0.5)
    later = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0)), t_s=10.0)
    earlier_without_cube = graph(node(1, "gripper", (0, 0, 0)), t_s=5.0)
    _, sample = track([pair], [later, earlier_without_cube])
    assert not sample.valid and not sample.held and math.isnan(sample.reward)


@pytest.mark.parametrize(("score", "fraction", "match"), [
    (math.nan, 1.0, "trust nan is below min_trust"),
    (1.0, math.nan, "depth: nan% of 'cube'"),
])
def test_a_nan_trust_or_depth_fraction_is_not_enough(score, fraction, match):
    pair = RewardPair("gripper", "cube", min_trust=0.5, min_depth_valid_fraction=0.5)
    (sample,) = track([pair], [graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0), score=score,
                                                                          fraction=fraction))])
    assert not sample.valid
    assert re.search(match, sample.message), sample.message


def test_progress_is_relative_to_the_episodes_first_valid_distance_and_resets_per_episode():
    pair = RewardPair("gripper", "cube", shaping="progress")
    tracker = RewardTracker([pair], resolver())
    at = [graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (d, 0, 0)), t_s=i) for i, d in enumerate([0.4, 0.1])]
    assert [tracker.update(g)[0].reward for g in at] == pytest.approx([0.0, 0.75])
    tracker.start_episode()
    assert tracker.update(at[1])[0].reward == pytest.approx(0.0)


def test_an_invalid_frame_holds_the_last_valid_reward_until_it_is_too_old():
    pair = RewardPair("gripper", "cube", hold_last_valid_s=0.25)
    both = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0)), t_s=1.0)
    gone = [graph(node(1, "gripper", (0, 0, 0)), t_s=t) for t in (1.1, 1.25, 1.3)]
    fresh, held_1, held_2, expired = track([pair], [both, *gone])
    assert fresh.valid and not fresh.held
    for held, age in ((held_1, 0.1), (held_2, 0.25)):
        assert held.valid and held.held and held.age_s == pytest.approx(age)
        assert held.reward == fresh.reward and held.distance_m == fresh.distance_m and held.object_id == 2
        assert held.message.startswith(f"held {age:.3f} s: object 'cube' is absent")
    assert not expired.valid and not expired.held and math.isnan(expired.reward)


def test_hold_last_valid_s_zero_never_holds_even_at_the_same_stamp():
    pair = RewardPair("gripper", "cube", hold_last_valid_s=0.0)
    both = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0)), t_s=1.0)
    gone = graph(node(1, "gripper", (0, 0, 0)), t_s=1.0)
    fresh, after = track([pair], [both, gone])
    assert fresh.valid and not after.valid and not after.held and math.isnan(after.reward)


@pytest.mark.parametrize("shaping", ["negative", "exp", "tanh", "progress"])
def test_a_distance_that_is_not_finite_makes_an_invalid_sample_for_every_shaping(shaping):
    # A camera_info with an absurd focal length can lift an object to infinity: no reward of -inf, no error.
    pair = RewardPair("gripper", "cube", shaping=shaping)
    far = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (math.inf, 0, 0)), t_s=1.0)
    near = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0)), t_s=2.0)
    infinite, finite = track([pair], [far, near])
    assert not infinite.valid and math.isnan(infinite.reward) and math.isnan(infinite.distance_m)
    assert infinite.message == "the distance between 'gripper' and 'cube' is inf m, not finite"
    assert infinite.object_id == 2
    assert finite.valid and finite.distance_m == pytest.approx(0.2)
    if shaping == "progress":  # the baseline is the first finite distance
        assert finite.reward == pytest.approx(0.0)


def test_a_tracker_needs_pairs():
    with pytest.raises(RewardError, match="no reward pairs configured"):
        RewardTracker([], resolver())


# --- query -----------------------------------------------------------------------------------------------------


def test_query_answers_with_kinematics_and_explains_every_invalid_answer():
    scene = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.3, 0.4, 0)), t_s=5.0)
    sides = resolver()
    sides.poses["ee"].add(5 * S, "world", (0.3, 0.0, 0.0))
    answer = query_distance(scene, "gripper", "cube", resolver=sides)
    assert answer.valid and answer.distance_m == pytest.approx(0.4) and answer.subject_source == "kinematics"
    cases = {
        "no scene graph has been computed yet": query_distance(None, "gripper", "cube"),
        r"stale scene graph: the latest is 2.50 s old \(limit query.max_graph_age_s 1 s\)":
            query_distance(scene, "gripper", "cube", graph_age_s=2.5, max_graph_age_s=1.0),
        r"unknown object 'mug'; known labels": query_distance(scene, "mug", "cube", resolver=sides),
        "object 'table' is absent": query_distance(scene, "cube", "table", resolver=sides),
        "'ee' and 'gripper' both resolve to the ee frame": query_distance(scene, "ee", "gripper", resolver=sides),
        r"unknown mode 'volume'; expected one of \['centroid', 'surface'\]":
            query_distance(scene, "gripper", "cube", "volume"),
        r"the distance between 'cube' and '#3' is inf m, not finite":
            query_distance(graph(node(2, "cube", (0, 0, 0)), node(3, "cube", (math.inf, 0, 0))), "cube", "#3"),
    }
    for match, answer in cases.items():
        assert not answer.valid and math.isnan(answer.distance_m)
        assert re.search(match, answer.message), (match, answer.message)


@pytest.mark.parametrize("name", ["²", "#²", "٣"])
def test_a_name_of_digits_other_than_ascii_is_an_unknown_label_in_queries_and_rewards(name):
    # str.isdigit() holds for '²', which int() refuses: the ValueError escaped the service and the tracker.
    sides = resolver()
    sides.poses["ee"].add(0, "world", (0, 0, 0))
    scene = graph(node(1, "cube", (0, 0, 0)))
    answer = query_distance(scene, "cube", name, resolver=sides)
    assert not answer.valid and answer.message.startswith(f"unknown object {name!r}; known labels")
    (sample,) = RewardTracker([parse_pair(f"gripper:{name}")], sides).update(scene)
    assert not sample.valid and sample.message.startswith(f"unknown object {name!r}")
    assert sides.labels_needed(["cube", name]) == {"cube", name}  # a label to lift, not an id any object can match


def test_a_frame_without_a_graph_gives_invalid_or_held_samples_with_its_reason():
    tracker = RewardTracker([RewardPair("gripper", "cube", hold_last_valid_s=0.5)], resolver())
    assert tracker.skip(0, "bad image")[0].message == "bad image"
    tracker.update(graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.2, 0, 0)), t_s=1.0))
    held = tracker.skip(int(1.2 * S), "depth image is all NaN")[0]
    assert held.valid and held.held and held.message == "held 0.200 s: depth image is all NaN"
    assert not tracker.skip(2 * S, "bad image")[0].valid


def test_the_end_effector_pose_can_come_from_tf():
    from types import SimpleNamespace as NS

    from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
    from trusted_scene_graph.label.bags import add_ee_position, tf_ee_position

    def add_tf_ee_pose(sides: SideResolver, tf: TransformBuffer, config: Config, stamp_ns: int) -> None:
        add_ee_position(sides, config, stamp_ns, tf_ee_position(tf, config, stamp_ns))  # as the labeller does

    def stamped(parent: str, child: str, t_s: float, xyz) -> NS:
        return NS(header=NS(stamp=NS(sec=int(t_s), nanosec=int((t_s % 1) * 1e9)), frame_id=parent),
                  child_frame_id=child, transform=NS(translation=NS(x=xyz[0], y=xyz[1], z=xyz[2]),
                                                     rotation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))

    tf = TransformBuffer(max_age_ns=S // 2)
    tf.add(NS(transforms=[stamped("world", "base_link", 0.0, (1.0, 0.0, 0.0))]), static=True)
    tf.add(NS(transforms=[stamped("base_link", "gripper_link", 10.0, (0.2, 0.1, 0.5))]))
    sides = resolver()
    config = Config({"reward.ee_tf_frame": "gripper_link"})
    add_tf_ee_pose(sides, tf, config, 10 * S)
    ee = sides.resolve(graph(t_s=10.0), "gripper")
    assert ee.source == "kinematics"
    np.testing.assert_allclose(ee.centroid_m, [1.2, 0.1, 0.5])
    add_tf_ee_pose(sides, tf, Config(), 11 * S)  # without reward.ee_tf_frame nothing is added
    assert len(sides.poses["ee"]) == 1


# --- rules found by using it -----------------------------------------------------------------------------------


def test_two_names_of_the_end_effector_are_one_side():
    with pytest.raises(RewardError, match=r"'gripper:ee' measures the end effector against itself \('gripper' and "
                                          r"'ee' both name it\)"):
        pairs_from_config(Config(), ["gripper:ee"])
    with pytest.raises(RewardError, match="'gripper:cube' and 'ee:cube' measure the same two sides"):
        pairs_from_config(Config(), ["gripper:cube", "ee:cube"])


def test_any_end_effector_name_falls_back_to_a_perceived_gripper():
    scene = graph(node(1, "gripper", (0, 0, 0.5)), t_s=1.0)
    assert resolver().resolve(scene, "end_effector").id == 1
    assert resolver().resolve(scene, "EE").source == "perception"


def test_several_end_effector_labels_without_a_pose_follow_the_one_rule_across_them():
    # A detector prompted with several end-effector names may report one gripper under two of them.
    first = graph(node(2, "end_effector", (0.5, 0, 0), score=0.9), node(9, "cube", (1, 0, 0)), t_s=0.0)
    both = graph(node(1, "gripper", (0, 0, 0), score=0.6), node(2, "end_effector", (0.5, 0, 0), score=0.9),
                 node(9, "cube", (1, 0, 0)), t_s=1.0)
    samples = track([RewardPair("gripper", "cube")], [first, both], resolver())
    assert [s.subject_id for s in samples] == [2, 2]  # the object used stays while it is in the graph
    assert resolver().resolve(both, "gripper").id == 2  # else the highest score, not the name asked for first
    tie = graph(node(4, "gripper", (0, 0, 0), score=0.8), node(3, "end_effector", (0.5, 0, 0), score=0.8), t_s=1.0)
    assert resolver().resolve(tie, "gripper").id == 3  # ties: the lowest id


def test_the_object_stays_the_same_when_the_other_side_is_the_robot():
    sides = resolver()
    cubes = [((0.1, 0.9), (0.5, 0.6)), ((0.1, 0.6), (0.5, 0.95)), ((0.1, 0.9), (0.5, 0.6))]
    graphs = []
    for t, ((x2, s2), (x3, s3)) in enumerate(cubes):
        sides.poses["ee"].add(t * S, "world", (0, 0, 0))
        graphs.append(graph(node(2, "cube", (x2, 0, 0), score=s2), node(3, "cube", (x3, 0, 0), score=s3), t_s=t))
    samples = track([RewardPair("gripper", "cube")], graphs, sides)
    assert [s.object_id for s in samples] == [2, 2, 2]
    assert all(s.subject_source == "kinematics" for s in samples)


def test_a_frame_the_live_node_never_sees_takes_no_place_in_the_smoothing_window():
    pair = RewardPair("gripper", "cube", smoothing_frames=2)
    tracker = RewardTracker([pair], resolver())
    at = [graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (d, 0, 0)), t_s=i) for i, d in enumerate([0.2, 0.4])]
    tracker.update(at[0])
    (incomplete,) = tracker.skip(int(0.5 * S), "frame incomplete", in_window=False)
    assert not incomplete.valid
    assert tracker.update(at[1])[0].distance_m == pytest.approx(0.3)  # the median of 0.2 and 0.4, as live
    tracker.start_episode()
    tracker.update(at[0])
    tracker.skip(int(0.5 * S), "no scene graph")  # a frame the node rejected: in the window, live too
    assert tracker.update(at[1])[0].distance_m == pytest.approx(0.4)


def test_smoothing_counts_frames_so_a_gap_ages_old_distances_out():
    pair = RewardPair("gripper", "cube", smoothing_frames=3)
    both = [graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (d, 0, 0)), t_s=t) for t, d in ((0, 0.3), (1, 0.3))]
    gap = [graph(node(1, "gripper", (0, 0, 0)), t_s=t) for t in (2, 3)]
    back = graph(node(1, "gripper", (0, 0, 0)), node(2, "cube", (0.02, 0, 0)), t_s=4)
    samples = track([pair], [*both, *gap, back])
    assert samples[-1].distance_m == pytest.approx(0.02)  # not the median with the 0.3 m of four frames ago


def test_progress_is_bounded_when_an_episode_starts_in_contact():
    rewards = shape_reward(np.array([0.0005, 0.05, 0.2]), "progress", scale_m=0.1, first_distance_m=0.0005)
    np.testing.assert_allclose(rewards, [0.995, 0.5, -1.0])


def test_a_held_sample_carries_the_trust_of_the_value_it_repeats():
    pair = RewardPair("gripper", "cube", hold_last_valid_s=1.0)
    good = graph(node(1, "gripper", (0, 0, 0), score=0.8), node(2, "cube", (0.2, 0, 0)), t_s=0)
    doubtful = graph(node(1, "gripper", (0, 0, 0), score=0.1), node(2, "cube", (0.3, 0, 0)), t_s=0.5)
    fresh, held = track([pair], [good, doubtful])
    assert held.held and held.valid and held.trust == fresh.trust == pytest.approx(0.8)
    assert "trust 0.100 is below min_trust" in held.message


@pytest.mark.parametrize(("settings", "match"), [
    ({"distance_mode": "centriod"}, r"reward pair 'gripper:cube': .*distance_mode.*'centriod'"),
    ({"shaping": "Exp"}, r"reward pair 'gripper:cube': .*shaping.*'Exp'"),
    ({"smoothing_frames": 0}, r"reward pair 'gripper:cube': .*smoothing_frames.*0"),
    ({"hold_last_valid_s": -1.0}, r"reward pair 'gripper:cube': .*hold_last_valid_s.*-1"),
])
def test_a_pair_built_directly_is_validated_as_a_parsed_one_naming_the_pair_and_value(settings, match):
    # A typo must not pass for another mode, nor fail at the first frame without naming the pair.
    with pytest.raises(RewardError, match=match):
        RewardPair("gripper", "cube", **settings)
    with pytest.raises(RewardError, match="each side must be a non-empty name without ':'"):
        RewardPair("gripper", " ")
    with pytest.raises(RewardError, match="each side must be a non-empty name without ':'"):
        RewardPair("a", "b:c")
    with pytest.raises(RewardError, match="reward pair 'gripper:Gripper ' measures 'gripper' against itself"):
        RewardPair("gripper", "Gripper ")


def test_an_unknown_distance_mode_is_refused_not_taken_for_surface():
    from trusted_scene_graph.reward.sides import KINEMATICS, Endpoint, distance_m

    a = Endpoint(KINEMATICS, 0, "ee", np.zeros(3), np.zeros(3))
    b = Endpoint(KINEMATICS, 0, "goal", np.array([0.5, 0.0, 0.0]), np.full(3, 0.2))
    assert distance_m(a, b, "centroid") == pytest.approx(0.5) and distance_m(a, b, "surface") == pytest.approx(0.4)
    with pytest.raises(RewardError, match="distance mode 'centriod' is not 'centroid' or 'surface'"):
        distance_m(a, b, "centriod")


def test_a_resolver_built_without_settings_has_the_schemas_defaults():
    defaults = Config()
    plain = SideResolver()
    assert plain.max_age_ns == round(defaults["reward.ee_pose_max_age_s"] * 1e9)
    assert plain.ee_names == frozenset(defaults["reward.ee_names"]) | {"ee"}



def test_a_stale_graph_says_why_the_frames_since_gave_none_when_they_were_rejected():
    scene = graph(node(1, "cube", (1.0, 0.0, 0.0)))
    camera_gone = query_distance(scene, "cube", "goal", graph_age_s=2.0, max_graph_age_s=1.0)
    assert camera_gone.message.endswith("are the camera topics still publishing?")
    rejected = query_distance(scene, "cube", "goal", graph_age_s=2.0, max_graph_age_s=1.0,
                              frames_rejected_because="focal length fx=0.0 must be positive and finite")
    assert not rejected.valid and rejected.message == (
        "stale scene graph: the latest is 2.00 s old (limit query.max_graph_age_s 1 s); the frames since were "
        "rejected: focal length fx=0.0 must be positive and finite")
