"""``tsg sim record`` bags and ``tsg eval`` reports: content, determinism, and bad input that never stops a report."""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from trusted_scene_graph.cli import main  # noqa: E402
from trusted_scene_graph.config.schema import load_config_file  # noqa: E402
from trusted_scene_graph.dataset import BagMessage, BagReader, BagWriter  # noqa: E402
from trusted_scene_graph.evaluation import EvaluationError  # noqa: E402
from trusted_scene_graph.evaluation.bag_eval import check_evaluable, evaluate_bag  # noqa: E402
from trusted_scene_graph.pipeline.messages import frame_from_msgs  # noqa: E402
from trusted_scene_graph.sim import SimError  # noqa: E402
from trusted_scene_graph.sim.record import (  # noqa: E402
    LABEL_CATALOGUE,
    RecordSettings,
    benchmark_config,
    record_sim_bag,
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
    with pytest.raises(SimError, match="unknown scene 'FetchJuggle'"):
        RecordSettings(scene="FetchJuggle")
    with pytest.raises(SimError, match="episodes=0"):
        RecordSettings(episodes=0)
    with pytest.raises(SimError, match="unknown depth noise preset 'lidar'"):
        RecordSettings(depth_noise="lidar")
    with pytest.raises(SimError, match="--camera is for Fetch tasks"):
        RecordSettings(scene="tabletop", camera="head_camera_rgb")


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
    assert metrics["frames"]["camera_pose_from_config"] == 0  # the camera pose came from /tf_static
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
    metrics = evaluate_bag(tmp_path / "no_tf", benchmark_config()).metrics
    # Every frame is scored with the config's extrinsic, which is not the recorded camera's pose.
    assert metrics["frames"]["evaluated"] == metrics["frames"]["camera_pose_from_config"] == 4


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
    metrics = evaluate_bag(tmp_path / "shuffled", benchmark_config()).metrics
    assert metrics["frames"]["out_of_order"] == 1
    assert metrics["frames"]["evaluated"] == 3


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
    assert "1 episodes, 1 frames" in capsys.readouterr().out
    assert list(out.glob("*.db3"))
    assert main(["sim", "record", "--task", "tabletop", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


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
