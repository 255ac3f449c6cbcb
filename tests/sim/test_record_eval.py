"""``tsg sim record`` bags and ``tsg eval`` reports: content, determinism, and bad input that never stops a report."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("mujoco")

from trusted_scene_graph.cli import main  # noqa: E402
from trusted_scene_graph.config.schema import load_config_file  # noqa: E402
from trusted_scene_graph.dataset import BagMessage, BagReader, BagWriter  # noqa: E402
from trusted_scene_graph.evaluation import EvaluationError, EvaluationWarning  # noqa: E402
from trusted_scene_graph.evaluation.bag_eval import check_evaluable, evaluate_bag  # noqa: E402
from trusted_scene_graph.evaluation.report import write_report  # noqa: E402
from trusted_scene_graph.pipeline.messages import frame_from_msgs, stamp_to_ns  # noqa: E402
from trusted_scene_graph.sim import SimError  # noqa: E402
from trusted_scene_graph.sim.record import (  # noqa: E402
    LABEL_CATALOGUE,
    OPTICAL_FRAME,
    RecordSettings,
    benchmark_config,
    record_sim_bag,
    recorded_topics,
)

pytestmark = pytest.mark.sim

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def tabletop_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "tabletop"
    record_sim_bag(path, RecordSettings(scene="tabletop", episodes=4, seed=3, width=320, height=240),
                   benchmark_config())
    return path


def test_config_benchmark_yaml_is_the_rendered_benchmark_config() -> None:
    from trusted_scene_graph.config.schema import render_parameter_file

    assert (REPO_ROOT / "config" / "benchmark.yaml").read_text() == render_parameter_file(benchmark_config()), \
        "regenerate config/benchmark.yaml from trusted_scene_graph.sim.record.benchmark_config()"


def test_a_tabletop_bag_holds_every_topic_of_each_frame_at_one_stamp(tabletop_bag: Path) -> None:
    with BagReader(tabletop_bag) as reader:
        topics = dict(reader.topics)
        messages = list(reader.messages())
    assert topics == {
        "/camera/color/image_raw": "sensor_msgs/msg/Image",
        "/camera/depth/image_raw": "sensor_msgs/msg/Image",
        "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/instances/image_raw": "sensor_msgs/msg/Image",
        "/tf_static": "tf2_msgs/msg/TFMessage",
        "/ground_truth": "trusted_scene_graph_msgs/msg/GroundTruth",
    }
    stamps = sorted({m.log_time_ns for m in messages})
    assert len(stamps) == 4  # one frame per scene
    for message in messages:
        stamp = message.msg.transforms[0].header.stamp if message.topic == "/tf_static" else message.msg.header.stamp
        assert stamp.sec * 10**9 + stamp.nanosec == message.log_time_ns
    truths = [m.msg for m in messages if m.topic == "/ground_truth"]
    assert [t.episode for t in truths] == [0, 1, 2, 3]
    assert all(3 <= len(t.objects) - 1 <= 10 for t in truths)  # 3-10 objects plus the table


def test_instance_ids_are_catalogue_ids_and_ground_truth_names_them(tabletop_bag: Path) -> None:
    with BagReader(tabletop_bag) as reader:
        by_topic: dict[str, object] = {}
        for message in reader.messages():
            by_topic[message.topic] = message.msg
            if message.topic == "/ground_truth":
                break
    frame = frame_from_msgs(by_topic["/camera/color/image_raw"], by_topic["/camera/depth/image_raw"],
                            by_topic["/camera/color/camera_info"], by_topic["/camera/instances/image_raw"])
    truth = by_topic["/ground_truth"]
    for obj in truth.objects:
        assert LABEL_CATALOGUE[obj.label] == obj.instance_id
    visible_ids = set(np.unique(frame.instances).tolist()) - {0}
    assert visible_ids <= {obj.instance_id for obj in truth.objects}
    assert frame.depth_m.dtype == np.float32 and frame.rgb.shape == (240, 320, 3)


def test_the_same_seed_gives_the_same_messages_and_another_seed_does_not(tmp_path: Path) -> None:
    def content(path: Path, seed: int) -> list[tuple[str, int, bytes]]:
        record_sim_bag(path, RecordSettings(scene="tabletop", episodes=2, seed=seed, depth_noise="kinect", **SMALL),
                       benchmark_config())
        with BagReader(path) as reader:
            return [(m.topic, m.log_time_ns, bytes(m.msg.data)) for m in reader.messages()
                    if m.topic == "/camera/depth/image_raw"]

    first, again, other = content(tmp_path / "a", 5), content(tmp_path / "b", 5), content(tmp_path / "c", 6)
    assert first == again
    assert first != other


def test_depth_noise_and_16uc1_change_the_depth_topic_only(tmp_path: Path) -> None:
    def depth_and_rgb(path: Path, **settings: object) -> tuple[np.ndarray, bytes]:
        record_sim_bag(path, RecordSettings(scene="tabletop", episodes=1, seed=2, **SMALL, **settings),
                       benchmark_config())
        with BagReader(path) as reader:
            msgs = {m.topic: m.msg for m in reader.messages()}
        frame = frame_from_msgs(msgs["/camera/color/image_raw"], msgs["/camera/depth/image_raw"],
                                msgs["/camera/color/camera_info"])
        return frame.depth_m, bytes(msgs["/camera/color/image_raw"].data)

    exact, rgb = depth_and_rgb(tmp_path / "exact")
    noisy, noisy_rgb = depth_and_rgb(tmp_path / "noisy", depth_noise="kinect")
    millimetres, _ = depth_and_rgb(tmp_path / "mm", depth_encoding="16UC1", storage="sqlite3")
    both = np.isfinite(exact) & np.isfinite(noisy)
    assert rgb == noisy_rgb
    assert 0.0005 < np.median(np.abs(noisy[both] - exact[both])) < 0.02
    assert np.isnan(noisy).sum() > np.isnan(exact).sum()  # dropouts at depth edges
    valid = np.isfinite(exact)
    assert np.nanmax(np.abs(millimetres[valid] - exact[valid])) <= 0.0005 + 1e-6  # rounded to whole millimetres


def test_record_settings_name_the_bad_value() -> None:
    with pytest.raises(SimError, match="unknown --task 'FetchJuggle'; known: FetchPickAndPlace"):
        RecordSettings(scene="FetchJuggle")
    with pytest.raises(SimError, match="episodes=0"):
        RecordSettings(episodes=0)
    with pytest.raises(SimError, match="unknown depth noise preset 'lidar'"):
        RecordSettings(depth_noise="lidar")
    with pytest.raises(SimError, match="--camera is for Fetch tasks"):
        RecordSettings(scene="tabletop", camera="head_camera_rgb")


def test_a_recording_writes_the_configs_topics_and_refuses_two_streams_on_one() -> None:
    push = RecordSettings(scene="FetchPush")
    config = benchmark_config().with_overrides({
        "topics.goal_pose": "/task/goal_pose", "topics.ee_pose": "", "topics.color_transport": "compressed",
        "topics.depth_transport": "compressedDepth"})
    topics = recorded_topics(push, config)
    assert topics["/task/goal_pose"][0] == "geometry_msgs/msg/PoseStamped"
    assert "/goal_pose" not in topics and "" not in topics and "/ee_pose" not in topics  # empty: not recorded
    assert topics["/camera/color/image_raw/compressed"][0] == "sensor_msgs/msg/CompressedImage"
    assert topics["/camera/depth/image_raw/compressedDepth"][0] == "sensor_msgs/msg/CompressedImage"
    assert "/camera/color/image_raw" not in topics
    # Without sensor depth or the sim detector their topics may be empty: not recorded, nor taken for one topic.
    no_depth = benchmark_config().with_overrides({"detector.backend": "grounding_dino", "depth.backend": "monocular",
                                                  "topics.instances": "", "topics.depth": ""})
    assert not [topic for topic in recorded_topics(push, no_depth) if "depth" in topic or "instances" in topic]
    assert "" not in recorded_topics(push, no_depth)
    for overrides, match in (
            ({"topics.depth": "/camera/color/image_raw"},
             "topics.color and topics.depth would both be recorded on /camera/color/image_raw"),
            ({"topics.ee_pose": "/goal_pose"},
             "topics.ee_pose and topics.goal_pose would both be recorded on /goal_pose"),
            ({"topics.instances": "/ground_truth"},
             "topics.instances and the ground truth would both be recorded on /ground_truth"),
            ({"topics.camera_info": "/tf_static"},
             "topics.camera_info and the camera pose would both be recorded on /tf_static")):
        with pytest.raises(SimError, match=re.escape(match)):
            recorded_topics(push, benchmark_config().with_overrides(overrides))


def test_a_bag_recorded_with_compressed_transports_and_other_topics_is_labelled_with_that_config(
        tmp_path: Path) -> None:
    # The recording plays into (and is labelled with) the config it was recorded with, unchanged.
    from trusted_scene_graph.label.bags import label_bag

    config = benchmark_config().with_overrides({
        "topics.goal_pose": "/task/goal_pose", "topics.color_transport": "compressed",
        "topics.depth_transport": "compressedDepth"})
    bag = tmp_path / "bag"
    record_sim_bag(bag, RecordSettings(scene="FetchPush", episodes=1, seed=2, **SMALL), config)
    with BagReader(bag) as reader:
        assert reader.topics["/camera/color/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
        assert "/goal_pose" not in reader.topics and "/camera/color/image_raw" not in reader.topics
    (tmp_path / "out").mkdir()
    label_bag(bag, tmp_path / "out", config, ["cube:goal", "gripper:cube"])
    rows = pq.read_table(tmp_path / "out" / "rewards.parquet").to_pandas()
    for pair in ("cube:goal", "gripper:cube"):
        assert rows[rows["pair"] == pair]["valid"].mean() > 0.9, pair


def test_a_setting_the_scene_refuses_leaves_no_bag_behind(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="unknown camera 'nope'"):
        record_sim_bag(tmp_path / "bag", RecordSettings(scene="FetchPush", camera="nope", **SMALL), benchmark_config())
    assert not (tmp_path / "bag").exists()  # so the corrected command can write it


def test_eval_scores_a_tabletop_bag_and_meets_the_relation_targets(tabletop_bag: Path, tmp_path: Path) -> None:
    assert main(["eval", str(tabletop_bag), "--config", str(REPO_ROOT / "config" / "benchmark.yaml"),
                 "--out", str(tmp_path / "report")]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert {"relations", "trust", "distance", "reward", "timing"} <= set(metrics)
    assert metrics["frames"]["evaluated"] == 4 and metrics["frames"]["failed"] == 0
    assert metrics["frames"]["graph_frame_taken_as_truth_frame"] == 0  # the camera pose came from /tf_static
    assert metrics["detection"]["recall"] > 0.9
    relations = metrics["relations"]
    assert relations["precision_kept"] >= 0.95 and relations["recall_kept"] >= 0.80
    assert 0.0 <= metrics["trust"]["auroc"] <= 1.0 and 0.0 <= metrics["trust"]["ece"] <= 1.0
    assert metrics["distance"]["within_0_5x_2x"] >= 0.99
    assert metrics["distance"]["ee_object"] == {"count": 0}  # no robot in tabletop scenes
    assert {"decode", "detect", "lift", "relate", "total"} <= set(metrics["timing"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "relations.precision_kept" in report and "![roc.png](roc.png)" in report
    for figure in ("roc.png", "risk_coverage.png", "reliability.png", "distance_object_pairs.png", "timing.png"):
        assert (tmp_path / "report" / figure).read_bytes().startswith(b"\x89PNG")
    assert metrics["trust"]["threshold_source"] == "model" and "learned trust model" in metrics["trust"]["model"]


def test_eval_writes_one_training_row_per_fact_grouped_by_scene_whatever_the_bag_is_called(
        tabletop_bag: Path, tmp_path: Path) -> None:
    from trusted_scene_graph.trust.dataset import EdgeTable

    copy = tmp_path / "renamed_copy"
    shutil.copytree(tabletop_bag, copy)
    for bag, out in ((tabletop_bag, "a"), (copy, "b")):
        assert main(["eval", str(bag), "--config", str(REPO_ROOT / "config" / "benchmark.yaml"),
                     "--out", str(tmp_path / out)]) == 0
    first, second = EdgeTable.load(tmp_path / "a"), EdgeTable.load(tmp_path / "b")
    groups = sorted(set(first.group))
    assert len(groups) == 4 and all(g.startswith("tabletop/episode-") and "@" in g for g in groups)
    assert sorted(set(second.group)) == groups  # the same scenes, so the same groups
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    # An edge and its converse are one fact: fewer rows than scored edges.
    assert 0 < len(first) < metrics["trust"]["edges"]


def _copy_without(source: Path, target: Path, drop: set[str], shift_ns: dict[str, int] | None = None) -> None:
    """A copy of a bag without the topics in ``drop``; ``shift_ns`` moves a topic's log times."""
    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, msgtype in reader.topics.items():
            if topic not in drop:
                writer.add_topic(topic, msgtype)
        for message in reader.messages():
            if message.topic not in drop:
                writer.write(message.topic, message.msg, message.log_time_ns + (shift_ns or {}).get(message.topic, 0))


def _copy_editing(source: Path, target: Path, edit: Callable[[BagMessage], BagMessage],
                  types: dict[str, str] | None = None) -> None:
    """A copy of a bag with every message passed through ``edit``; ``types`` changes topics' message types."""
    with BagReader(source) as reader, BagWriter(target) as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic(topic, (types or {}).get(topic, msgtype))
        for message in reader.messages():
            edited = edit(message)
            writer.write(edited.topic, edited.msg, edited.log_time_ns)


def test_frames_are_scored_when_the_recorders_clock_is_far_from_the_stamps(tabletop_bag: Path,
                                                                           tmp_path: Path) -> None:
    # A bag re-recorded from a replay, or sim-time stamps logged on the wall clock: log times are far from stamps.
    for name, offset_ns in (("late", 3_600 * 10**9), ("early", -3_600 * 10**9)):
        _copy_editing(tabletop_bag, tmp_path / name, lambda m, d=offset_ns: m._replace(log_time_ns=m.log_time_ns + d))
        frames = evaluate_bag(tmp_path / name, benchmark_config()).metrics["frames"]
        assert (frames["evaluated"], frames["without_ground_truth"]) == (4, 0), name


def test_invalid_ground_truth_fails_its_frame_and_the_other_frames_are_scored(tabletop_bag: Path,
                                                                             tmp_path: Path) -> None:
    seen: list[int] = []

    def corrupt(message: BagMessage) -> BagMessage:
        if message.topic == "/ground_truth":
            seen.append(message.log_time_ns)
            if len(seen) == 1:
                message.msg.objects[0].pose.position.x = math.nan
            elif len(seen) == 2:
                message.msg.objects[1].id = message.msg.objects[0].id
        return message

    _copy_editing(tabletop_bag, tmp_path / "bad_truth", corrupt)
    frames = evaluate_bag(tmp_path / "bad_truth", benchmark_config()).metrics["frames"]
    assert frames["evaluated"] == 2 and frames["failed"] == 2
    reasons = sorted(frames["failure_reasons"])
    assert reasons[0].startswith("invalid ground truth: object") and "non-finite" in reasons[0]
    assert reasons[1].startswith("invalid ground truth: repeated object ids")


def test_frames_scored_without_a_camera_pose_in_the_tf_are_counted(tabletop_bag: Path, tmp_path: Path) -> None:
    _copy_without(tabletop_bag, tmp_path / "no_tf", {"/tf_static"})
    static = benchmark_config().with_overrides({"extrinsic.source": "static"})
    with pytest.warns(UserWarning, match="the bag's tf does not connect camera frame 'camera_color_optical_frame' "
                                         "to the ground truth's frame 'world': frames are scored taking the graph "
                                         "frame 'world' as the truth frame"):
        metrics = evaluate_bag(tmp_path / "no_tf", static).metrics
    # Every frame is scored with the config's extrinsic, which is not the recorded camera's pose.
    assert metrics["frames"]["evaluated"] == metrics["frames"]["graph_frame_taken_as_truth_frame"] == 4
    # With the benchmark's 'tf' extrinsic such frames fail instead (tests/sim/test_eval_extrinsic.py).
    assert evaluate_bag(tmp_path / "no_tf", benchmark_config()).metrics["frames"]["failed"] == 4


def test_messages_of_an_unexpected_type_on_an_input_topic_are_counted(tabletop_bag: Path, tmp_path: Path) -> None:
    from trusted_scene_graph.dataset import make_typestore

    text = make_typestore().types["std_msgs/msg/String"](data="not a camera_info")
    _copy_editing(tabletop_bag, tmp_path / "wrong_type",
                  lambda m: m._replace(msg=text) if m.topic == "/camera/color/camera_info" else m,
                  {"/camera/color/camera_info": "std_msgs/msg/String"})
    metrics = evaluate_bag(tmp_path / "wrong_type", benchmark_config()).metrics
    assert metrics["input"]["unexpected_types"] == {"/camera/color/camera_info (std_msgs/msg/String)": 4}
    with pytest.raises(EvaluationError, match="unexpected message types: /camera/color/camera_info"):
        check_evaluable(metrics)


def test_a_bag_without_camera_info_gives_a_report_that_says_so(tabletop_bag: Path, tmp_path: Path) -> None:
    _copy_without(tabletop_bag, tmp_path / "no_info", {"/camera/color/camera_info"})
    result = evaluate_bag(tmp_path / "no_info", benchmark_config())
    assert result.exit_code == 1
    assert result.metrics["input"]["missing_topics"] == ["/camera/color/camera_info"]
    with pytest.raises(EvaluationError, match="no frame could be evaluated: the bag has no /camera/color/camera_info"):
        check_evaluable(result.metrics)
    assert main(["eval", str(tmp_path / "no_info"), "--config", str(REPO_ROOT / "config" / "benchmark.yaml"),
                 "--out", str(tmp_path / "report")]) == 2
    assert "camera_info" in (tmp_path / "report" / "report.md").read_text()  # the partial report is written


def test_frames_whose_stamps_go_back_in_time_are_skipped_and_counted(tabletop_bag: Path, tmp_path: Path) -> None:
    with BagReader(tabletop_bag) as reader:
        messages = list(reader.messages())
    stamps = sorted({m.log_time_ns for m in messages})
    # Log the second frame after the third: its stamps are older than a frame already scored.
    with BagWriter(tmp_path / "shuffled") as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic(topic, msgtype)
        for message in messages:
            log_ns = message.log_time_ns + (2 * (stamps[2] - stamps[1]) if message.log_time_ns == stamps[1] else 0)
            writer.write(message.topic, message.msg, log_ns)
    with pytest.warns(EvaluationWarning, match="frames were not scored: 1 frame out of order"):
        metrics = evaluate_bag(tmp_path / "shuffled", benchmark_config()).metrics
    assert metrics["frames"]["out_of_order"] == 1
    assert metrics["frames"]["evaluated"] == 3
    # 0.2 s back: less than a clock reset (clock.JUMP_BACK_NS), so skipped, and said so in the run's warnings.
    assert metrics["warnings"] == ["frames were not scored: 1 frame out of order (frames.out_of_order: stamped at or "
                                   "before the frame scored before them, but less than 1 s back; a longer jump back "
                                   "is a clock reset and starts a new timeline)"]


def test_the_eval_summary_line_counts_the_frames_it_did_not_score(tabletop_bag: Path, tmp_path: Path,
                                                                  capsys) -> None:
    with BagReader(tabletop_bag) as reader:
        messages = list(reader.messages())
    first_colour = next(m for m in messages if m.topic == "/camera/color/image_raw")
    with BagWriter(tmp_path / "partial") as writer:
        for topic, msgtype in reader.topics.items():
            writer.add_topic(topic, msgtype)
        for message in messages:
            if message.topic != "/camera/depth/image_raw" or message.log_time_ns != first_colour.log_time_ns:
                writer.write(message.topic, message.msg, message.log_time_ns)
    assert main(["eval", str(tmp_path / "partial"), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"3 frames evaluated (0 failed, 1 incomplete); report in {tmp_path / 'r'}")
    assert "tsg eval: warning: frames were not scored: 1 frame incomplete (frames.incomplete: " in captured.err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["frames"]["incomplete"] == 1


@pytest.fixture(scope="module")
def two_pushes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two FetchPush episodes, 51 frames each, 40 ms apart (stamps are the log times), in small images."""
    path = tmp_path_factory.mktemp("bags") / "two_pushes"
    record_sim_bag(path, RecordSettings(scene="FetchPush", episodes=2, seed=4, **SMALL), benchmark_config())
    return path


def test_a_clock_reset_between_episodes_evaluates_every_episode_as_without_it(two_pushes: Path,
                                                                              tmp_path: Path) -> None:
    # A simulator whose clock restarts with each episode: the stamps of episode 1 are those of episode 0 again.
    # The camera pose comes on /tf with each frame, so the tf buffer restarts at the reset too.
    from bag_edits import clock_reset_at_each_episode, static_tf_as_tf

    source = static_tf_as_tf(two_pushes, tmp_path / "source")
    reset = clock_reset_at_each_episode(source, tmp_path / "reset")
    whole = evaluate_bag(source, benchmark_config()).metrics
    restarted = evaluate_bag(reset, benchmark_config()).metrics
    assert restarted["frames"]["episodes"] == 2 and restarted["frames"]["out_of_order"] == 0
    assert restarted["frames"]["evaluated"] == whole["frames"]["evaluated"] > 50  # both episodes, every frame
    assert restarted["warnings"] == whole["warnings"] == []
    for section in ("frames", "detection", "relations", "distance", "reward"):
        assert json.dumps(restarted[section], sort_keys=True) == json.dumps(whole[section], sort_keys=True), section


def test_a_bag_played_twice_scores_each_pass_as_episodes_of_their_own(two_pushes: Path, tmp_path: Path) -> None:
    # The second pass repeats the episode numbers (as a second run recorded after a reset would): its frames must not
    # join the first pass's episodes, whose series would then go back in time.
    from bag_edits import played_twice

    once = evaluate_bag(two_pushes, benchmark_config()).metrics
    twice = evaluate_bag(played_twice(two_pushes, tmp_path / "twice"), benchmark_config()).metrics
    assert (once["frames"]["episodes"], twice["frames"]["episodes"]) == (2, 4)
    assert (once["reward"]["episodes"], twice["reward"]["episodes"]) == (2, 4)
    per_episode = once["distance"]["spearman_per_episode"]
    assert list(per_episode) == ["0:cube", "1:cube"]
    # Both series are ranked: the target's n is every end-effector pair, once per pass.
    assert once["distance"]["spearman_pairs"] == once["distance"]["ee_object"]["count"] > 0
    assert twice["distance"]["spearman_pairs"] == 2 * once["distance"]["spearman_pairs"]
    assert json.dumps(twice["distance"]["spearman_per_episode"]) == json.dumps(
        {**per_episode, **{key.replace(":", " (pass 2):"): rho for key, rho in per_episode.items()}})
    for key in ("value_order_spearman", "successful_episodes"):
        assert twice["reward"][key] == pytest.approx(once["reward"][key] * (2 if key == "successful_episodes" else 1))


# Counts that add up over the passes of a bag when each pass is scored exactly as it is alone.
_ADDITIVE = (("frames", "camera_frames"), ("frames", "evaluated"), ("frames", "without_ground_truth"),
             ("detection", "ground_truth_objects"), ("detection", "matched"), ("relations", "candidates"),
             ("relations", "true_edges"), ("distance", "ee_object", "count"), ("reward", "frames"))


def _at(metrics: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        metrics = metrics[key]
    return metrics


def _frames_with_truth(source: Path, length_s: float, truth_from_s: float, truth_until_s: float) -> int:
    """The colour images of a pass (bag_edits.passes) that have ground truth of that pass at their stamp."""
    with BagReader(source) as reader:
        start_ns = min(message.log_time_ns for message in reader.messages())
        stamped = [(m.topic, (m.log_time_ns - start_ns) / 1e9, stamp_to_ns(m.msg.header.stamp))
                   for m in reader.messages(["/camera/color/image_raw", "/ground_truth"])]
    truth = {stamp for topic, offset_s, stamp in stamped
             if topic == "/ground_truth" and offset_s <= length_s and truth_from_s <= offset_s <= truth_until_s}
    return sum(1 for topic, offset_s, stamp in stamped
               if topic == "/camera/color/image_raw" and offset_s <= length_s and stamp in truth)


@pytest.mark.parametrize(("first", "second"), [
    # Every stream jumps back 1.3 s at the reset.
    ((1.3, 0.0, math.inf), (math.inf, 0.0, math.inf)),
    # Ground truth and poses stop at 0.95 s in the first pass: they jump back less than 1 s (no reset, judged alone),
    # the camera 1.3 s.
    ((1.3, 0.0, 0.95), (math.inf, 0.0, math.inf)),
    # The second pass has no ground truth nor poses for its first 0.5 s: the first pass's, stamped alike, must not
    # stand in for them.
    ((2.0, 0.0, math.inf), (math.inf, 0.5, math.inf)),
], ids=["streams_agree", "truth_stops_before_the_reset", "truth_starts_late_after_it"])
def test_each_pass_across_a_clock_reset_is_scored_with_its_own_ground_truth_whichever_streams_see_the_reset(
        two_pushes: Path, tmp_path: Path, first: tuple[float, float, float],
        second: tuple[float, float, float]) -> None:
    # A short first pass, then the whole bag again with the same stamps (a simulator reset, a looped replay).
    from bag_edits import passes

    looped = evaluate_bag(passes(two_pushes, tmp_path / "looped", first, second), benchmark_config()).metrics
    alone = [evaluate_bag(passes(two_pushes, tmp_path / f"pass_{k}", lengths), benchmark_config()).metrics
             for k, lengths in enumerate((first, second))]
    expected = _frames_with_truth(two_pushes, *first) + _frames_with_truth(two_pushes, *second)
    assert looped["frames"]["evaluated"] == expected > 100  # every frame with ground truth in either pass
    assert looped["frames"]["out_of_order"] == looped["frames"]["failed"] == 0
    assert looped["frames"]["without_ground_truth"] == looped["frames"]["camera_frames"] - expected
    for keys in _ADDITIVE:
        assert _at(looped, keys) == _at(alone[0], keys) + _at(alone[1], keys), keys


def test_a_truncated_bag_still_gives_a_report_of_what_was_read(tabletop_bag: Path, tmp_path: Path) -> None:
    (mcap_file,) = tabletop_bag.glob("*.mcap")
    data = mcap_file.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 3 // 5])
    result = evaluate_bag(cut, benchmark_config())
    assert result.exit_code == 1
    assert result.metrics["input"]["read_error"] is not None
    assert 1 <= result.metrics["frames"]["evaluated"] < 4


def test_frames_the_pipeline_rejects_are_counted_with_their_reason(tabletop_bag: Path) -> None:
    config = load_config_file(REPO_ROOT / "config" / "benchmark.yaml").with_overrides({"depth.min_m": 9.0,
                                                                                         "depth.max_m": 10.0})
    metrics = evaluate_bag(tabletop_bag, config).metrics
    assert metrics["frames"]["failed"] == 4 and metrics["frames"]["evaluated"] == 0
    (reason,) = metrics["frames"]["failure_reasons"]
    assert "no valid pixel" in reason


def test_sim_record_cli_writes_a_bag_and_refuses_an_existing_path(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bag"
    assert main(["sim", "record", "--task", "tabletop", "--episodes", "1", "--width", "160", "--height", "120",
                 "--storage", "sqlite3", "--out", str(out)]) == 0
    assert "1 tabletop episode, 1 frame, " in capsys.readouterr().out
    assert list(out.glob("*.db3"))
    assert main(["sim", "record", "--task", "tabletop", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_an_interrupted_recording_leaves_no_bag_that_looks_complete(tmp_path: Path, capsys, monkeypatch) -> None:
    # The writer finalises the bag on the way out: kept, a Ctrl-C'd recording would read as a whole one.
    out = tmp_path / "bag"

    def interrupt_after_two_frames(frames: int) -> None:
        if frames == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record_sim_bag(out, RecordSettings(scene="tabletop", episodes=3, **SMALL), benchmark_config(),
                       progress=interrupt_after_two_frames)
    assert not out.exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("trusted_scene_graph.sim.record.record_sim_bag", interrupted)
    assert main(["sim", "record", "--task", "tabletop", "--out", str(out)]) == 130
    assert f"tsg sim record: interrupted; the partial bag {out} was removed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def push_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "push"
    record_sim_bag(path, RecordSettings(scene="FetchPush", episodes=1, seed=2, width=320, height=240),
                   benchmark_config())
    return path


def test_a_fetch_bag_carries_kinematics_goal_and_the_envs_reward(push_bag: Path) -> None:
    with BagReader(push_bag) as reader:
        assert reader.topics["/ee_pose"] == "geometry_msgs/msg/PoseStamped"
        messages = list(reader.messages(["/ee_pose", "/ground_truth", "/goal_pose"]))
    truths = [m.msg for m in messages if m.topic == "/ground_truth"]
    poses = [m.msg for m in messages if m.topic == "/ee_pose"]
    assert len(truths) == len(poses) == 51  # the reset frame and 50 steps
    assert [t.step for t in truths] == list(range(51))
    first = truths[0]
    assert (first.task, first.goal_for, first.has_gripper, first.has_goal) == ("FetchPush", "cube", True, True)
    assert {o.label for o in first.objects} == {"gripper", "cube", "table"}
    pose = poses[0].pose.position
    assert (pose.x, pose.y, pose.z) == (first.gripper_position.x, first.gripper_position.y,
                                        first.gripper_position.z)
    cube = next(o for o in truths[-1].objects if o.label == "cube")
    goal = truths[-1].goal_position
    distance_m = float(np.linalg.norm([cube.pose.position.x - goal.x, cube.pose.position.y - goal.y,
                                       cube.pose.position.z - goal.z]))
    assert truths[-1].env_reward == pytest.approx(-distance_m, abs=1e-6)
    assert truths[-1].is_success == (distance_m < 0.05)


def test_eval_of_a_fetch_bag_scores_end_effector_distances_and_the_reward(push_bag: Path) -> None:
    metrics = evaluate_bag(push_bag, benchmark_config()).metrics
    ee = metrics["distance"]["ee_object"]
    assert ee["count"] == 51  # one cube per frame; the table is cut by the image border and not evaluable
    assert ee["within_0_5x_2x"] >= 0.99 or ee["count_far"] == 0
    assert ee["median_abs_error_close_m"] <= 0.015
    assert metrics["distance"]["spearman_pooled"] >= 0.95
    reward = metrics["reward"]
    assert reward["episodes"] == 1 and reward["valid_fraction"] == 1.0
    # The reward on perceived positions, -|cube - goal|, is the env's own dense reward up to perception error.
    assert reward["abs_error_p95"] <= 0.01
    assert -1.0 <= reward["env_spearman"] <= 1.0 and -1.0 <= reward["env_spearman_pooled"] <= 1.0
    assert {"value_order_spearman", "value_order_spearman_env", "value_order_spearman_whole_episode"} <= set(reward)


def test_frames_without_a_position_to_reward_are_counted_by_reason(push_bag: Path, tmp_path: Path) -> None:
    # A reach task rewards the end effector: a bag recorded without /ee_pose has no valid reward, and says why. A
    # push rewards the cube's position: a goal for an object that is never perceived says that instead.
    def as_reach_task(message: BagMessage) -> BagMessage:
        if message.topic == "/ground_truth":
            message.msg.goal_for = ""
        return message

    def goal_for_a_sphere(message: BagMessage) -> BagMessage:
        if message.topic == "/ground_truth":
            message.msg.goal_for = "sphere"
        return message

    from bag_edits import without_topic

    without_topic(push_bag, tmp_path / "reach_without_ee_pose", "/ee_pose", as_reach_task)
    _copy_editing(push_bag, tmp_path / "sphere_goal", goal_for_a_sphere)

    reach = evaluate_bag(tmp_path / "reach_without_ee_pose", benchmark_config()).metrics["reward"]
    assert reach["valid_fraction"] == 0.0
    assert reach["invalid_reasons"] == {
        "no end-effector position: no pose on the config's topics.ee_pose within sync.tolerance_s of the frame, or "
        "none the bag's tf places in the ground truth's frame": reach["frames"]}
    sphere = evaluate_bag(tmp_path / "sphere_goal", benchmark_config())
    assert sphere.metrics["reward"]["invalid_reasons"] == {"no perceived 'sphere'": sphere.metrics["reward"]["frames"]}
    assert evaluate_bag(push_bag, benchmark_config()).metrics["reward"]["invalid_reasons"] == {}
    write_report(sphere.metrics, sphere.samples, tmp_path / "report")
    assert "| `no perceived 'sphere'` | 51 |" in (tmp_path / "report" / "report.md").read_text()


def test_an_end_effector_pose_in_another_frame_is_moved_with_the_bags_tf_and_counted_without_one(
        push_bag: Path, tmp_path: Path) -> None:
    # On a real robot /ee_pose is usually in the base frame; the node moves it into its graph frame with tf.
    from bag_edits import ee_poses_in_base_frame

    ee_poses_in_base_frame(push_bag, tmp_path / "base_with_tf")
    ee_poses_in_base_frame(push_bag, tmp_path / "base_without_tf", with_tf=False)
    original = evaluate_bag(push_bag, benchmark_config()).metrics
    moved = evaluate_bag(tmp_path / "base_with_tf", benchmark_config()).metrics
    assert moved["distance"]["ee_object"] == pytest.approx(original["distance"]["ee_object"], nan_ok=True)
    assert moved["frames"]["ee_pose_not_in_truth_frame"] == 0
    with pytest.warns(UserWarning, match="the end-effector pose \\(/ee_pose\\) is in frame 'base_link', which the "
                                         "bag's tf does not connect to the ground truth's frame 'world'"):
        unmoved = evaluate_bag(tmp_path / "base_without_tf", benchmark_config()).metrics
    assert unmoved["distance"]["ee_object"] == {"count": 0}
    assert unmoved["frames"]["ee_pose_not_in_truth_frame"] == unmoved["frames"]["evaluated"] == 51


def test_max_frames_stops_reading_the_bag(push_bag: Path) -> None:
    metrics = evaluate_bag(push_bag, benchmark_config(), max_frames=5).metrics
    assert metrics["frames"]["evaluated"] == 5
    with BagReader(push_bag) as reader:
        # Frames 40 ms apart: reading stops about one lookahead (0.5 s) after the fifth frame, long before the end.
        assert metrics["input"]["messages_read"] < reader.message_count / 2
    with pytest.raises(EvaluationError, match="max_frames=0 must be >= 1"):
        evaluate_bag(push_bag, benchmark_config(), max_frames=0)


def test_a_nan_env_reward_leaves_the_perceived_reward_scored(push_bag: Path, tmp_path: Path) -> None:
    def no_env_reward(message: BagMessage) -> BagMessage:
        if message.topic == "/ground_truth":
            message.msg.env_reward = math.nan  # the message's "no env reward" value
        return message

    _copy_editing(push_bag, tmp_path / "no_env_reward", no_env_reward)
    reward = evaluate_bag(tmp_path / "no_env_reward", benchmark_config()).metrics["reward"]
    assert reward["valid_fraction"] == 1.0 and -1.0 <= reward["value_order_spearman"] <= 1.0
    assert math.isnan(reward["env_spearman_pooled"]) and math.isnan(reward["abs_error_median"])


def test_a_recorded_bag_decodes_with_the_mcap_librarys_ros2_reader(tabletop_bag: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = tabletop_bag.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        truths = [msg for _, channel, _, msg in reader.iter_decoded_messages(topics=["/ground_truth"])]
    with BagReader(tabletop_bag) as ours:
        expected = [m.msg for m in ours.messages(["/ground_truth"])]
    assert [[o.label for o in t.objects] for t in truths] == [[o.label for o in t.objects] for t in expected]
    assert [t.objects[0].pose.position.x for t in truths] == [t.objects[0].pose.position.x for t in expected]


def test_a_bag_without_ground_truth_reports_timing_and_says_why_nothing_was_scored(tabletop_bag: Path,
                                                                                   tmp_path: Path) -> None:
    _copy_without(tabletop_bag, tmp_path / "no_truth", {"/ground_truth"})
    result = evaluate_bag(tmp_path / "no_truth", benchmark_config())
    assert result.metrics["frames"]["without_ground_truth"] == 4
    assert result.metrics["timing"]["total"]["count"] == 4  # the frames still ran through the pipeline
    with pytest.raises(EvaluationError, match="the bag has no ground-truth topic"):
        check_evaluable(result.metrics)


BENCHMARK_YAML = str(REPO_ROOT / "config" / "benchmark.yaml")


def _copy_renaming(source: Path, target: Path, renames: dict[str, str],
                   raw_topics: dict[str, tuple[str, list[bytes]]] | None = None) -> None:
    """A copy of a bag with topics renamed; ``raw_topics`` adds topics of (type, raw payloads) written as they are."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from trusted_scene_graph.dataset import make_typestore

    store = make_typestore()
    with BagReader(source) as reader, Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(renames.get(topic, topic), msgtype, typestore=store)
                       for topic, msgtype in reader.topics.items()}
        for topic, (msgtype, payloads) in (raw_topics or {}).items():
            extra = writer.add_connection(topic, msgtype, typestore=store)
            for k, payload in enumerate(payloads):
                writer.write(extra, k + 1, payload)
        for message in reader.messages():
            writer.write(connections[message.topic], message.log_time_ns,
                         store.serialize_cdr(message.msg, message.msgtype))


def test_ground_truth_that_does_not_decode_is_named_as_the_cause(tabletop_bag: Path, tmp_path: Path) -> None:
    # Written with another version of GroundTruth.msg: the bytes do not fit this package's definition.
    _copy_renaming(tabletop_bag, tmp_path / "old_truth", {"/ground_truth": "/unused_truth"},
                   {"/ground_truth": ("trusted_scene_graph_msgs/msg/GroundTruth",
                                      [b"\x00\x01\x00\x00" + bytes(8)] * 4)})
    metrics = evaluate_bag(tmp_path / "old_truth", benchmark_config()).metrics
    with pytest.raises(EvaluationError, match=r"no frame could be evaluated: messages that could not be decoded "
                                              r"\(written with another definition of their message type\?\): "
                                              r"/ground_truth \(SerdeError\): 4; 4 frames had no ground truth"):
        check_evaluable(metrics)


def test_eval_cli_of_a_bag_without_ground_truth_writes_timing_and_counts_and_exits_0(tabletop_bag: Path,
                                                                                     tmp_path: Path, capsys) -> None:
    _copy_without(tabletop_bag, tmp_path / "robot", {"/ground_truth"})
    out = tmp_path / "report"
    assert main(["eval", str(tmp_path / "robot"), "--config", BENCHMARK_YAML, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 frames processed (0 failed), none scored" in printed
    assert "no ground truth on topic /ground_truth" in printed and "--ground-truth-topic" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["without_ground_truth"] == 4 and metrics["frames"]["evaluated"] == 0
    assert metrics["timing"]["total"]["count"] == 4
    report = (out / "report.md").read_text()
    assert "no ground truth on topic /ground_truth" in report and "--ground-truth-topic" in report
    assert "| `relations.precision_kept` | n/a | >= 0.95 | n/a | not applicable: no ground truth on /ground_truth |" \
        in report
    assert (out / "timing.png").read_bytes().startswith(b"\x89PNG")


def test_ground_truth_on_another_topic_is_named_and_scored_with_the_option(tabletop_bag: Path, tmp_path: Path,
                                                                           capsys) -> None:
    _copy_renaming(tabletop_bag, tmp_path / "renamed", {"/ground_truth": "/sim/truth"})
    assert main(["eval", str(tmp_path / "renamed"), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "a")]) == 0
    assert "pass --ground-truth-topic /sim/truth" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "renamed"), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "b"),
                 "--ground-truth-topic", "/sim/truth"]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["frames"]["evaluated"] == 4


def test_a_bad_out_is_refused_by_name_before_the_bag_is_read(tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("user data")
    # The "bag" is an empty directory, which the bag reader would refuse: the error names the output directory, so
    # that was checked first.
    (tmp_path / "no_bag").mkdir()
    for out, message in ((tmp_path / "taken", f"output directory {tmp_path / 'taken'} exists and is not a directory"),
                         (tmp_path / "taken" / "report",
                          f"cannot write to output directory {tmp_path / 'taken' / 'report'}: ")):
        assert main(["eval", str(tmp_path / "no_bag"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"tsg eval: error: {message}" in err
        assert "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "user data"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any directory")
def test_an_unwritable_out_is_refused_by_name(tabletop_bag: Path, tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["eval", str(tabletop_bag), "--config", BENCHMARK_YAML, "--out", str(locked)]) == 2
    finally:
        locked.chmod(0o700)
    assert f"cannot write to output directory {locked}" in capsys.readouterr().err
    assert list(locked.iterdir()) == []


def test_a_reused_out_loses_its_stale_figures_and_keeps_other_files(tabletop_bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "thr06"
    out.mkdir()
    (out / "distance_ee_object.png").write_bytes(b"from a Fetch bag")  # this bag has no end effector to draw
    (out / "roc.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    assert main(["eval", str(tabletop_bag), "--config", BENCHMARK_YAML, "--set", "trust.threshold=0.6",
                 "--out", str(out)]) == 0
    assert not (out / "distance_ee_object.png").exists()
    assert (out / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "notes.txt").read_text() == "mine"


def test_the_report_records_provenance_precision_and_what_cannot_apply(tabletop_bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "thr06"
    assert main(["eval", str(tabletop_bag), "--config", BENCHMARK_YAML, "--set", "trust.threshold=0.6",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    run = metrics["provenance"]
    assert run["overrides"] == ["trust.threshold=0.6"] and run["config"] == BENCHMARK_YAML
    assert run["bag"] == str(tabletop_bag.resolve()) and run["package_version"]
    assert "--set trust.threshold=0.6" in run["command"] and run["command"].startswith("tsg eval ")
    assert run["git_commit"] is None or len(run["git_commit"]) == 40
    report = (out / "report.md").read_text()
    assert report.startswith("# Evaluation: thr06 (bag tabletop; --set trust.threshold=0.6)\n")
    assert f"`{run['command']}`" in report
    # Tabletop scenes have no robot: ee targets cannot apply; reward needs a goal.
    assert "| `distance.ee_object.median_abs_error_close_m` | n/a | <= 1.50 cm | n/a | not applicable: no " \
           "end-effector pose (/ee_pose) in the bag |" in report
    assert "## Reward\n\nNot applicable: the task has no goal." in report
    error_cm = metrics["detection"]["centroid_error_median_m"] * 100.0
    assert f"| `centroid_error_median_m` | {error_cm:.2f} cm |" in report


def test_only_the_topics_the_replay_uses_are_decoded_and_the_others_counted(tabletop_bag: Path,
                                                                             tmp_path: Path) -> None:
    # Bytes that would not deserialise: were the topic decoded, they would be counted as undecodable.
    _copy_renaming(tabletop_bag, tmp_path / "extra", {},
                   {"/lidar/points": ("sensor_msgs/msg/PointCloud2", [b"\x00\x01"] * 3)})
    inputs = evaluate_bag(tmp_path / "extra", benchmark_config()).metrics["input"]
    assert inputs["bag_topics"]["/lidar/points"] == {"type": "sensor_msgs/msg/PointCloud2", "messages": 3,
                                                     "read": False}
    assert inputs["bag_topics"]["/ground_truth"]["read"] and inputs["bag_topics"]["/tf_static"]["read"]
    assert inputs["messages_not_read"] == 3 and inputs["undecodable"] == {}
    assert inputs["messages_read"] == sum(t["messages"] for t in inputs["bag_topics"].values() if t["read"])


def test_an_mcap_file_without_metadata_yaml_evaluates_cleanly_and_a_cut_one_warns(tabletop_bag: Path, tmp_path: Path,
                                                                                   capsys) -> None:
    (mcap_file,) = tabletop_bag.glob("*.mcap")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / mcap_file.name).write_bytes(mcap_file.read_bytes())
    for bag in (alone, alone / mcap_file.name):
        assert main(["eval", str(bag), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "report")]) == 0
        assert "warning" not in capsys.readouterr().err
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size * 3 // 5])
    assert main(["eval", str(cut), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "cut_report")]) == 1
    assert "has no valid end" in capsys.readouterr().err


def test_evaluation_warnings_are_printed_as_tsg_warnings_and_open_the_report(tabletop_bag: Path, tmp_path: Path,
                                                                             capsys) -> None:
    out = tmp_path / "static"
    # The default config: a 'static' extrinsic the bag's tf contradicts, and sim_labels without the recorded labels.
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        assert main(["eval", str(tabletop_bag), "--set", "extrinsic.source=static", "--out", str(out)]) == 0
    assert escaped == []  # no raw Python warning leaves the command
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("tsg eval: warning: the bag's tf places camera frame ")
    assert lines[1].startswith("tsg eval: warning: the 'sim' detector cannot report ground-truth objects labelled ")
    assert len(lines) == 2 and "UserWarning" not in err and ".py:" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f"tsg eval: warning: {text}" for text in metrics["warnings"]] == lines
    report = (out / "report.md").read_text()
    banners = report[: report.index("## Run")]
    assert f"> **Warning:** {metrics['warnings'][0]}\n" in banners and f"> **Warning:** {metrics['warnings'][1]}\n" \
        in banners
    # A clean run has an empty list and no banner.
    assert main(["eval", str(tabletop_bag), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "clean")]) == 0
    assert json.loads((tmp_path / "clean" / "metrics.json").read_text())["warnings"] == []
    assert "**Warning:**" not in (tmp_path / "clean" / "report.md").read_text()
    assert "warning" not in capsys.readouterr().err


def test_a_bag_cut_before_its_first_frame_is_called_damaged_first_without_a_ground_truth_hint(
        tabletop_bag: Path, tmp_path: Path, capsys) -> None:
    (mcap_file,) = tabletop_bag.glob("*.mcap")
    cut = tmp_path / "tiny.mcap"
    cut.write_bytes(mcap_file.read_bytes()[:3000])  # the header and part of the first chunk
    assert main(["eval", str(cut), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "report")]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0].startswith(f"tsg eval: warning: bag {cut} is damaged: it has no valid end")
    assert "frames after it are missing" in err[0]
    assert err[1].startswith("tsg eval: error: the bag is damaged and no frame could be evaluated before the "
                             "damage: before it, the bag has no /camera/color/image_raw, ")
    assert "/ground_truth (0 messages read)" in err[1]
    assert "--ground-truth-topic" not in captured.out + captured.err and "note:" not in captured.out
    assert "0 frames processed before the damage" in captured.out
    report = (tmp_path / "report" / "report.md").read_text()
    assert "pass --ground-truth-topic" not in report and "> **Warning:** bag " in report
    assert "not applicable: no camera frames could be assembled (missing /camera/color/image_raw" in report


def test_a_bag_cut_after_some_frames_says_they_were_evaluated_before_the_damage(tabletop_bag: Path, tmp_path: Path,
                                                                                capsys) -> None:
    (mcap_file,) = tabletop_bag.glob("*.mcap")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size * 3 // 5])
    assert main(["eval", str(cut), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "report")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"tsg eval: warning: bag {cut} is damaged: it has no valid end")
    assert re.match(r"\d+ frames? evaluated before the damage \(0 failed\)", captured.out)


def test_input_bag_is_the_absolute_path_as_in_the_provenance(tabletop_bag: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tabletop_bag.parent)
    assert main(["eval", tabletop_bag.name, "--config", BENCHMARK_YAML, "--out", str(tmp_path / "report")]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["input"]["bag"] == metrics["provenance"]["bag"] == str(tabletop_bag.resolve())


def test_report_columns_share_one_format_and_reward_errors_are_in_centimetres(push_bag: Path, tmp_path: Path) -> None:
    assert main(["eval", str(push_bag), "--config", BENCHMARK_YAML, "--out", str(tmp_path / "report")]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"| `abs_error_median` | {metrics['reward']['abs_error_median'] * 100.0:.2f} cm |" in report
    assert f"| `abs_error_p95` | {metrics['reward']['abs_error_p95'] * 100.0:.2f} cm |" in report
    for heading in ("`detection.by_label`:", "`relations.by_predicate`:", "## Timing"):
        table = report[report.index(heading):].split("\n\n")[1].splitlines()
        rows = [[cell.strip() for cell in row.strip("|").split("|")][1:] for row in table[2:]]
        for column in zip(*rows, strict=True):
            decimals = {len(cell.partition(".")[2]) for cell in column if re.fullmatch(r"-?\d+\.\d+", cell)}
            assert len(decimals) <= 1, (heading, column)


def _readme_metrics_keys() -> list[list[str]]:
    """The keys the README's metrics.json table names in its first column, as lists of components. A key starting
    with '.' replaces the last component of the key before it in the same cell (`timing.<stage>.median_ms`,
    `.p95_ms`)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Recording, replay and evaluation"):]
    table = section[section.index("| key | meaning |"):].split("\n\n")[0].splitlines()[2:]
    keys = []
    for row in table:
        previous: list[str] = []
        for token in re.findall(r"`([^`]+)`", row.strip("|").split(" | ")[0]):
            parts = previous[:-1] + token[1:].split(".") if token.startswith(".") else token.split(".")
            keys.append(parts)
            previous = parts
    return keys


def _documented(path: list[str], keys: list[list[str]]) -> bool:
    """Whether a README key names ``path`` (or a key under it): `<name>` stands for any one component, a final `*`
    for any components below it, but only from the third level on (`detection.*` documents no particular key)."""
    def matches(key: list[str]) -> bool:
        star = key[-1] == "*" and len(key) > 2
        named = key[:-1] if key[-1] == "*" else key
        for depth, component in enumerate(path):
            if depth >= len(named):
                return star
            if component != named[depth] and not (named[depth].startswith("<") and named[depth].endswith(">")):
                return False
        return True

    return any(matches(key) for key in keys)


def test_the_readme_documents_every_metrics_key_to_the_third_level(push_bag: Path, tabletop_bag: Path,
                                                                    tmp_path: Path) -> None:
    paths: set[tuple[str, ...]] = set()

    def collect(tree: dict, prefix: tuple[str, ...]) -> None:
        for key, value in tree.items():
            paths.add((*prefix, key))
            if isinstance(value, dict) and len(prefix) < 2:
                collect(value, (*prefix, key))

    for bag in (push_bag, tabletop_bag):
        out = tmp_path / bag.name
        assert main(["eval", str(bag), "--config", BENCHMARK_YAML, "--out", str(out)]) == 0
        collect(json.loads((out / "metrics.json").read_text()), ())
    keys = _readme_metrics_keys()
    assert {"warnings", "input", "frames", "detection", "relations", "trust", "distance", "reward", "timing",
            "provenance"} == {p[0] for p in paths}
    undocumented = sorted(".".join(p) for p in paths if not _documented(list(p), keys))
    assert undocumented == [], "add these metrics.json keys to the README's table"
    assert not _documented(["detection", "recall"], [["detection", "*"]])  # the rule is no wildcard at level two


def test_a_model_camera_that_moves_with_the_robot_has_its_pose_on_tf_at_every_frame(tmp_path: Path) -> None:
    # The gripper's camera travels with the arm: a pose published once per episode would place every later frame's
    # objects where the camera was at the reset.
    bag = tmp_path / "gripper_camera"
    record_sim_bag(bag, RecordSettings(scene="FetchPickAndPlace", episodes=1, seed=2, camera="gripper_camera_rgb",
                                       **SMALL), benchmark_config())
    with BagReader(bag) as reader:
        poses = [m.msg.transforms[0] for m in reader.messages(["/tf", "/tf_static"])]
        assert reader.message_counts.get("/tf_static", 0) == 0
    assert len(poses) == 51  # one per frame
    positions = np.array([[p.transform.translation.x, p.transform.translation.y, p.transform.translation.z]
                          for p in poses])
    assert np.ptp(positions, axis=0).max() > 0.05  # it does move
    # Each frame's recorded pose puts the table's pixels, lifted with the recorded depth, on the true table top (the
    # camera mostly looks down at it; the cube is in view in two frames only).
    from trusted_scene_graph.geometry.tf_buffer import TransformBuffer

    tf, by_stamp = TransformBuffer(), {}
    wanted = ("/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth/image_raw",
              "/camera/instances/image_raw", "/ground_truth")
    with BagReader(bag) as reader:
        for message in reader.messages():
            if message.topic == "/tf":
                tf.add(message.msg)
            elif message.topic in wanted:
                by_stamp.setdefault(stamp_to_ns(message.msg.header.stamp), {})[message.topic] = message.msg
    checked = 0
    for stamp_ns, msgs in by_stamp.items():
        info, truth = msgs["/camera/color/camera_info"], msgs["/ground_truth"]
        frame = frame_from_msgs(msgs["/camera/color/image_raw"], msgs["/camera/depth/image_raw"], info,
                                msgs["/camera/instances/image_raw"])
        table = next(o for o in truth.objects if o.label == "table")
        rows, cols = np.nonzero(frame.instances == table.instance_id)
        depth_m = frame.depth_m[rows, cols]
        usable = np.isfinite(depth_m)
        if np.count_nonzero(usable) < 100:
            continue  # not in view
        optical = np.stack([(cols - info.k[2]) * depth_m / info.k[0], (rows - info.k[5]) * depth_m / info.k[4],
                            depth_m], axis=1)[usable]
        height_m = tf.lookup(benchmark_config()["graph_frame"], OPTICAL_FRAME, stamp_ns).apply(optical)[:, 2]
        top_m = table.pose.position.z + table.size.z / 2
        assert np.mean(np.abs(height_m - top_m) < 0.01) > 0.9, stamp_ns
        checked += 1
    assert checked >= 10
