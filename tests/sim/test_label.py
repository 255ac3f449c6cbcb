"""Specification of `tsg label` on recorded data: simulated Fetch bags (mcap and sqlite3), folders of bags, and a
LeRobot v3 dataset made from a bag's frames.

The accuracy checks use frames before the episode's success: after it the scripted policy holds still, so the true
distance sits on a plateau (within a few millimetres) where ranks are decided by sub-millimetre noise in either
signal, which says nothing about the reward."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from trusted_scene_graph.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, cmd_label, main
from trusted_scene_graph.config.nodes import REWARD_TOPIC
from trusted_scene_graph.config.schema import load_config_file
from trusted_scene_graph.dataset import BagReader
from trusted_scene_graph.dataset.lerobot import LeRobotDataset
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.label.bags import BAG_SOURCE_FILE, REWARD_COLUMNS, label_bag
from trusted_scene_graph.label.lerobot import FrameSource
from trusted_scene_graph.label.run import EngineSettings, run_label
from trusted_scene_graph.pipeline.messages import depth_m_from_msg, instances_from_msg, rgb_from_msg, stamp_to_ns
from trusted_scene_graph.sim.record import RecordSettings, benchmark_config, record_sim_bag

REPO = Path(__file__).resolve().parents[2]
BENCHMARK_CONFIG = REPO / "config" / "benchmark.yaml"
PAIRS = ["gripper:cube", "cube:goal"]


def record(path: Path, task: str, episodes: int, seed: int, width: int = 320, height: int = 240,
           storage: str = "mcap") -> Path:
    record_sim_bag(path, RecordSettings(scene=task, episodes=episodes, seed=seed, width=width, height=height,
                                        storage=storage), benchmark_config())
    return path


@pytest.fixture(scope="module")
def push_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("push") / "push", "FetchPush", episodes=4, seed=5)


@pytest.fixture(scope="module")
def pick_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("pick") / "pick", "FetchPickAndPlace", episodes=3, seed=5)


@pytest.fixture(scope="module")
def small_bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three small bags (one of them sqlite3)."""
    folder = tmp_path_factory.mktemp("small") / "bags"
    folder.mkdir()
    record(folder / "a", "FetchPickAndPlace", episodes=1, seed=1, width=160, height=120)
    record(folder / "b", "FetchPush", episodes=1, seed=2, width=160, height=120)
    record(folder / "c", "FetchReach", episodes=1, seed=3, width=160, height=120, storage="sqlite3")
    return folder


def label(source: Path, out: Path, pairs=PAIRS, **engine) -> int:
    return cmd_label(BENCHMARK_CONFIG, [], source, out, pairs, engine.get("engine", "local"),
                     engine.get("workers", 1), None, 3, None, None, None, None, None, None, math.nan, False)


def truth_by_stamp(bag: Path) -> dict[int, dict]:
    truth = {}
    with BagReader(bag) as reader:
        for message in reader.messages(["/ground_truth"]):
            gt = message.msg
            objects = {o.label: np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z])
                       for o in gt.objects}
            gripper = np.array([gt.gripper_position.x, gt.gripper_position.y, gt.gripper_position.z])
            truth[stamp_to_ns(gt.header.stamp)] = {
                "gripper_cube_m": float(np.linalg.norm(gripper - objects["cube"])) if "cube" in objects else math.nan,
                "env_reward": gt.env_reward, "success": gt.is_success, "episode": gt.episode}
    return truth


def tree_digest(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


# --- accuracy (the checks) ------------------------------------------------------------------------------


def test_labelled_end_effector_to_object_distance_ranks_like_the_true_one(push_bag: Path, tmp_path: Path):
    assert label(push_bag, tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    rows = pq.read_table(tmp_path / "out" / "rewards.parquet").to_pylist()
    truth = truth_by_stamp(push_bag)
    used = [r for r in rows if r["valid"] and not truth[r["stamp_ns"]]["success"]]
    assert len(used) >= 40 and all(r["subject_source"] == "kinematics" for r in used)
    rho = spearmanr([r["distance_m"] for r in used], [truth[r["stamp_ns"]]["gripper_cube_m"] for r in used])
    print(f"gripper:cube Spearman rho {rho.statistic:.4f} over {len(used)} frames before success")
    assert rho.statistic >= 0.98


def test_object_to_goal_reward_ranks_like_the_environments_own_dense_reward(pick_bag: Path, tmp_path: Path):
    assert label(pick_bag, tmp_path / "out", ["cube:goal"]) == EXIT_OK
    rows = pq.read_table(tmp_path / "out" / "rewards.parquet").to_pylist()
    truth = truth_by_stamp(pick_bag)
    used = [r for r in rows if r["valid"] and not truth[r["stamp_ns"]]["success"]]
    assert len(used) >= 40
    rho = spearmanr([r["reward"] for r in used], [truth[r["stamp_ns"]]["env_reward"] for r in used])
    print(f"cube:goal Spearman rho {rho.statistic:.4f} against env_reward over {len(used)} frames before success")
    assert rho.statistic >= 0.98


def test_no_labeller_loads_a_trust_model_so_none_imports_xgboost_or_scikit_learn(small_bags: Path, tmp_path: Path):
    # Rewards need objects, not edges: a labelling pipeline has no trust step, which spares each worker process
    # importing xgboost and scikit-learn (about 1.5 s of its start-up on the development machine). Checked in a fresh
    # process for each way a pipeline is made: label_bag's own, the workers' cached one, the LeRobot labeller's.
    bag = small_bags / "a"
    lerobot_args = lerobot_label_args(bag, tmp_path / "dataset", tmp_path / "lerobot" / "labelled")
    calls = {
        "label_bag": f"label_bag(Path({str(bag)!r}), out, config, ['gripper:cube'])",
        "label_bag_item": f"label_bag_item(BagJob({str(bag)!r}, dict(config), ('gripper:cube',)), out)",
        "lerobot": f"assert cmd_label(*{lerobot_args!r}) == 0",  # its paths' repr is PosixPath('...')
    }
    for name, call in calls.items():
        out = tmp_path / name
        out.mkdir()
        script = (
            "import sys\n"
            "from math import nan\n"
            "from pathlib import Path, PosixPath\n"
            "from trusted_scene_graph.cli import cmd_label\n"
            "from trusted_scene_graph.label.bags import BagJob, label_bag, label_bag_item\n"
            "from trusted_scene_graph.sim.record import benchmark_config\n"
            f"config, out = benchmark_config(), Path({str(out)!r})\n"
            f"{call}\n"
            "print(sorted(m for m in ('xgboost', 'sklearn') if m in sys.modules))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert result.stdout.strip().splitlines()[-1] == "[]", name  # after what cmd_label prints
        assert any(out.rglob("*.parquet")), name  # it labelled something


def test_the_read_ratio_floor_script_measures_the_distances_tsg_label_measures(small_bags: Path, tmp_path: Path):
    # scripts/label_floor.py, the bare loop README's read_ratio analysis is set against, must measure the same thing.
    import importlib.util

    spec = importlib.util.spec_from_file_location("label_floor", Path(__file__).parents[2] / "scripts" /
                                                  "label_floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    config = load_config_file(BENCHMARK_CONFIG)
    bag = small_bags / "b"  # FetchPush
    _, distances = floor.bare_label_s(bag, config, instance_id=2)  # the cube
    labelled = floor.labelled_distances(bag, config, tmp_path)
    both = sorted(distances.keys() & labelled.keys())
    assert len(both) >= 20
    assert np.median(np.abs([distances[stamp] - labelled[stamp] for stamp in both])) < 0.02


# --- the labelled copy -------------------------------------------------------------------------------------------


def test_the_copy_holds_every_recorded_message_unchanged_plus_one_reward_per_pair_per_frame(small_bags: Path,
                                                                                             tmp_path: Path):
    from rosbags.rosbag2 import Reader

    before = tree_digest(small_bags)
    assert label(small_bags, tmp_path / "out") == EXIT_OK
    assert tree_digest(small_bags) == before  # the source is only read
    for name in ("a", "c"):
        with Reader(small_bags / name) as src, Reader(tmp_path / "out" / name) as dst:
            copied = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in dst.messages()
                      if c.topic != REWARD_TOPIC]
            assert copied == [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in src.messages()]
            qos = {c.topic: (c.msgtype, c.digest, c.ext.offered_qos_profiles) for c in src.connections}
            assert {c.topic: (c.msgtype, c.digest, c.ext.offered_qos_profiles) for c in dst.connections
                    if c.topic != REWARD_TOPIC} == qos
        suffixes = {f.suffix for f in (tmp_path / "out" / name).iterdir()}
        assert suffixes == {f.suffix for f in (small_bags / name).iterdir()} | {".parquet", ".json"}  # mcap stays
        with BagReader(tmp_path / "out" / name) as reader:
            colour_log = {stamp_to_ns(m.msg.header.stamp): m.log_time_ns
                          for m in reader.messages(["/camera/color/image_raw"])}
            rewards = [m for m in reader.messages([REWARD_TOPIC])]
        assert len(rewards) == len(PAIRS) * len(colour_log)
        for message in rewards:
            stamp = stamp_to_ns(message.msg.header.stamp)
            assert message.log_time_ns == colour_log[stamp]  # the source frame's stamp and log time
            assert message.msg.pair in PAIRS
    # The mcap bag was copied by the kernel and the rewards appended: its recorded data section is byte-identical.
    source_mcap = (small_bags / "a" / "a.mcap").read_bytes()
    copied_mcap = (tmp_path / "out" / "a" / "a.mcap").read_bytes()
    data_section = int(len(source_mcap) * 0.9)
    assert len(copied_mcap) > len(source_mcap) and copied_mcap[:data_section] == source_mcap[:data_section]


def test_appending_to_a_kernel_copy_and_rewriting_every_message_give_the_same_bag_and_rewards(small_bags: Path,
                                                                                                tmp_path: Path,
                                                                                                monkeypatch):
    """Also on a bag with a topic the labeller does not read, between a frame and an end-effector pose logged late:
    only the topics a frame uses move the labelling clock, so both copies label each frame with the same poses."""
    from rosbags.rosbag2 import Reader

    from trusted_scene_graph.dataset import BagWriter, make_typestore
    from trusted_scene_graph.label import bags

    source = tmp_path / "late"
    string = make_typestore().types["std_msgs/msg/String"]
    with Reader(small_bags / "a") as reader, BagWriter(source) as writer:
        copies = {c.id: writer.copy_connection(c) for c in reader.connections}
        writer.add_topic("/chatter", "std_msgs/msg/String")
        first_ns = reader.start_time
        late = {first_ns + k * 40_000_000 for k in (3, 6, 9)}
        records = []
        for connection, log_ns, raw in reader.messages():
            if connection.topic == "/ee_pose" and log_ns in late:
                records += [(log_ns + 505_000_000, copies[connection.id], raw), (log_ns + 501_000_000, None, None)]
            else:
                records.append((log_ns, copies[connection.id], raw))
        for log_ns, connection, raw in sorted(records, key=lambda record: record[0]):
            if connection is None:
                writer.write("/chatter", string(data="not read by the labeller"), log_ns)
            else:
                writer.write_raw(connection, raw, log_ns)
    config = load_config_file(BENCHMARK_CONFIG)
    (tmp_path / "appended").mkdir()
    bags.label_bag(source, tmp_path / "appended", config, PAIRS)

    def refuse(*args, **kwargs):
        raise bags.NotAppendable("forced streaming copy")

    monkeypatch.setattr(bags, "McapAppendCopy", refuse)
    (tmp_path / "streamed").mkdir()
    stage_seconds: Counter[str] = Counter()
    bags.label_bag(source, tmp_path / "streamed", config, PAIRS, stage_seconds=stage_seconds)
    # The streamed copy keeps the stages too; it has no 'copy' stage (writing the copied messages is in the rest).
    assert set(stage_seconds) == {"total", *bags.LABEL_STAGES} - {"frame", "copy"}
    assert sum(seconds for stage, seconds in stage_seconds.items() if stage != "total") <= stage_seconds["total"]
    appended = pq.read_table(tmp_path / "appended" / "rewards.parquet").to_pandas()
    streamed = pq.read_table(tmp_path / "streamed" / "rewards.parquet").to_pandas()
    assert appended.equals(streamed)  # NaN equals NaN here
    assert appended["valid"].any()
    with Reader(tmp_path / "appended") as a, Reader(tmp_path / "streamed") as b:
        assert ([(c.topic, t, bytes(raw)) for c, t, raw in a.messages()]
                == [(c.topic, t, bytes(raw)) for c, t, raw in b.messages()])
        assert ({c.topic: (c.msgtype, c.msgcount, c.digest) for c in a.connections}
                == {c.topic: (c.msgtype, c.msgcount, c.digest) for c in b.connections})


def test_frames_lifted_as_one_batch_get_exactly_the_boxes_of_lifting_them_one_by_one(small_bags: Path):
    """Bit for bit, also with a different camera pose and viewing direction per frame (amodal completion on)."""
    import dataclasses

    from trusted_scene_graph.geometry.tf_buffer import TransformBuffer
    from trusted_scene_graph.geometry.transform import RigidTransform
    from trusted_scene_graph.pipeline.messages import frame_from_msgs
    from trusted_scene_graph.pipeline.scene import ScenePipeline

    config = load_config_file(BENCHMARK_CONFIG)
    assert config["lifting.amodal_completion"]
    pipeline, tf, frames = ScenePipeline(config), TransformBuffer(), {}
    with BagReader(small_bags / "a") as reader:
        for message in reader.messages():
            if message.topic == "/tf_static":
                tf.add(message.msg, static=True)
            elif message.topic.startswith("/camera/"):
                frames.setdefault(stamp_to_ns(message.msg.header.stamp), {})[message.topic] = message.msg
    prepared = []
    for index, msgs in enumerate(list(frames.values())[:12]):
        pipeline.camera_pose_from_tf(tf, msgs["/camera/color/camera_info"].header.frame_id, 0)
        frame = pipeline.prepare(frame_from_msgs(
            msgs["/camera/color/image_raw"], msgs["/camera/depth/image_raw"], msgs["/camera/color/camera_info"],
            msgs["/camera/instances/image_raw"]))
        angle = 0.05 * index
        turn = RigidTransform.from_xyzw([0.01 * index, 0.0, 0.0], [0.0, 0.0, np.sin(angle), np.cos(angle)])
        moved = RigidTransform.from_matrix(turn.matrix @ frame.camera_to_graph.matrix)
        forward = turn.rotation.apply(frame.view_forward_graph)
        prepared.append(dataclasses.replace(frame, camera_to_graph=moved, view_forward_graph=forward))
    together = pipeline.lift(prepared)
    alone = [pipeline.lift([frame])[0] for frame in prepared]
    assert sum(len(objects) for objects in together) >= 24
    for batched, single in zip(together, alone, strict=True):
        assert [o.detection.label for o in batched] == [o.detection.label for o in single]
        for a, b in zip(batched, single, strict=True):
            assert np.array_equal(a.centroid_m, b.centroid_m) and np.array_equal(a.size_m, b.size_m)


def test_batch_size_and_early_flushes_do_not_change_a_single_reward(small_bags: Path, tmp_path: Path, monkeypatch):
    from trusted_scene_graph.label import bags

    config = load_config_file(BENCHMARK_CONFIG)
    tables = []
    for batch_frames, max_queued in ((32, 1024), (1, 1024), (7, 3)):  # 3: poses read while frames wait flush it
        monkeypatch.setattr(bags, "BATCH_FRAMES", batch_frames)
        monkeypatch.setattr(bags, "MAX_QUEUED", max_queued)
        out = tmp_path / f"{batch_frames}-{max_queued}"
        out.mkdir()
        bags.label_bag(small_bags / "b", out, config, PAIRS)
        tables.append(pq.read_table(out / "rewards.parquet").to_pandas())
    assert tables[0]["valid"].any()
    assert all(table.equals(tables[0]) for table in tables[1:])


def label_perceiving_the_gripper_where_needed_and_always(source: Path, config, out: Path, monkeypatch,
                                                         pairs=("gripper:cube",)):
    """The rewards tables of labelling ``source`` as tsg label does and with the gripper perceived in every frame,
    and the labels each frame's detection was asked for."""
    from trusted_scene_graph.label import bags
    from trusted_scene_graph.pipeline.scene import ScenePipeline
    from trusted_scene_graph.reward import RewardTracker

    asked, prepare, tables = [], ScenePipeline.prepare, {}

    def spy(self, frame, labels=None):
        asked.append(labels)
        return prepare(self, frame, labels)

    monkeypatch.setattr(ScenePipeline, "prepare", spy)
    for name in ("posed", "always"):
        if name == "always":
            monkeypatch.setattr(RewardTracker, "labels_needed_at", lambda self, *args: self.labels_needed)
        (out / name).mkdir(parents=True)
        bags.label_bag(source, out / name, config, list(pairs))
        tables[name] = pq.read_table(out / name / "rewards.parquet").to_pandas()
    return tables["posed"], tables["always"], asked


def rewrite_ee_poses(source: Path, out: Path, pose_fn, depth_fn=lambda index, msg: msg) -> Path:
    """A copy of ``source`` with each /ee_pose message replaced by ``pose_fn(index, msg)`` (None: left out, or a
    (topic, msg) to write instead) and each depth image by ``depth_fn(index, msg)``."""
    from rosbags.rosbag2 import Reader

    from trusted_scene_graph.dataset import BagWriter

    with Reader(source) as reader, BagWriter(out) as writer:
        ts = writer.typestore
        copies = {c.id: writer.copy_connection(c) for c in reader.connections}
        writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        counts = {"/ee_pose": 0, "/camera/depth/image_raw": 0}
        for connection, log_ns, raw in reader.messages():
            if connection.topic in counts:
                index = counts[connection.topic]
                counts[connection.topic] += 1
                msg = ts.deserialize_cdr(raw, connection.msgtype)
                replaced = (pose_fn if connection.topic == "/ee_pose" else depth_fn)(index, msg)
                if replaced is None:
                    continue
                if isinstance(replaced, tuple):
                    writer.write(*replaced, log_ns)
                    continue
                raw = ts.serialize_cdr(replaced, connection.msgtype)
            writer.write_raw(copies[connection.id], raw, log_ns)
    return out


def test_the_gripper_is_perceived_only_where_no_pose_answers_and_the_rewards_are_those_of_perceiving_it_always(
        small_bags: Path, tmp_path: Path, monkeypatch):
    """A bag whose end-effector poses stop for a stretch (and one of which has no position): those frames fall back
    to the perceived gripper; only the perceived objects' track numbers differ from a run that perceives it in every
    frame."""
    def pose(index, msg):
        if 9 <= index < 19:
            return None
        if index == 29:
            msg.pose.position.x = math.nan
        return msg

    source = rewrite_ee_poses(small_bags / "b", tmp_path / "gaps", pose)
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"detector.min_pixels": 1})  # a small gripper at 160x120
    posed, always, asked = label_perceiving_the_gripper_where_needed_and_always(source, config, tmp_path, monkeypatch)
    perceived = posed["subject_source"] == "perception"
    assert 5 <= perceived.sum() < len(posed) / 2 and (posed["subject_source"] == "kinematics").any()
    assert asked.count(frozenset({"cube"})) == len(posed) - perceived.sum()  # gripper left out where posed
    ids = ["subject_id", "object_id"]
    assert posed.drop(columns=ids).equals(always.drop(columns=ids))
    assert posed["valid"].all()


def test_a_rejected_frame_still_gives_later_frames_its_end_effector_pose_from_tf(small_bags: Path, tmp_path: Path,
                                                                                 monkeypatch):
    """The end effector's tf pose at a frame's stamp is added whether or not the frame gives a graph (as the node
    does), so deciding ahead which frames need the perceived gripper stays exact: here a frame with no usable depth
    lies beside a stretch without tf poses."""
    from trusted_scene_graph.dataset import make_typestore

    types = make_typestore().types

    def pose(index, msg):
        if 19 <= index < 34:
            return None
        p = msg.pose.position
        transform = types["geometry_msgs/msg/TransformStamped"](
            header=types["std_msgs/msg/Header"](stamp=msg.header.stamp, frame_id="world"), child_frame_id="ee_link",
            transform=types["geometry_msgs/msg/Transform"](
                translation=types["geometry_msgs/msg/Vector3"](x=p.x, y=p.y, z=p.z),
                rotation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
        return "/tf", types["tf2_msgs/msg/TFMessage"](transforms=[transform])

    def depth(index, msg):
        if index == 18:
            msg.data = np.zeros_like(msg.data)
        return msg

    source = rewrite_ee_poses(small_bags / "b", tmp_path / "tf", pose, depth)
    config = load_config_file(BENCHMARK_CONFIG).with_overrides(
        {"detector.min_pixels": 1, "reward.ee_tf_frame": "ee_link", "extrinsic.tf_max_age_s": 0.02})
    posed, always, _ = label_perceiving_the_gripper_where_needed_and_always(source, config, tmp_path, monkeypatch)
    assert not posed.loc[18, "valid"] and posed.loc[18, "message"].startswith("no scene graph for this frame")
    assert posed.loc[20, "subject_source"] == "kinematics"  # frame 18's pose, 80 ms before (frame 17's is 120 ms)
    assert (posed["subject_source"] == "perception").sum() >= 5
    ids = ["subject_id", "object_id"]
    assert posed.drop(columns=ids).equals(always.drop(columns=ids))


def test_an_end_effector_pose_in_the_robots_base_frame_is_moved_into_the_graph_frame_with_the_bags_tf(
        small_bags: Path, tmp_path: Path):
    # As the node does on arrival: a real robot publishes /ee_pose in its base frame.
    from bag_edits import ee_poses_in_base_frame

    reframed = ee_poses_in_base_frame(small_bags / "b", tmp_path / "bags" / "b")
    assert label(small_bags / "b", tmp_path / "original", ["gripper:cube"]) == EXIT_OK
    assert label(reframed, tmp_path / "moved", ["gripper:cube"]) == EXIT_OK
    original = pq.read_table(tmp_path / "original" / "rewards.parquet").to_pandas()
    moved = pq.read_table(tmp_path / "moved" / "rewards.parquet").to_pandas()
    assert moved["subject_source"].equals(original["subject_source"]) and moved["valid"].equals(original["valid"])
    assert (moved["subject_source"] == "kinematics").sum() >= 45  # the first frame misses its cube in both
    np.testing.assert_allclose(moved["distance_m"], original["distance_m"], atol=1e-9)


def test_poses_are_used_as_the_live_node_uses_them_where_it_reads_no_tf_or_no_pose_topic(small_bags: Path,
                                                                                          tmp_path: Path, capsys):
    # The labels are what the live node would have published. With a static extrinsic and no reward.ee_tf_frame it
    # subscribes no tf, so a pose in the robot's base frame stays unused; with reward.ee_tf_frame it does not
    # subscribe topics.ee_pose at all, so a bag's /ee_pose must not stand in where the tf has no end effector.
    from bag_edits import ee_poses_in_base_frame

    def rows(overrides: list[str], source: Path, out: str) -> pd.DataFrame:
        assert cmd_label(BENCHMARK_CONFIG, overrides, source, tmp_path / out, ["gripper:cube"], "local", 1, None, 3,
                         None, None, None, None, None, None, math.nan, False) == EXIT_OK
        return pq.read_table(tmp_path / out / "rewards.parquet").to_pandas()

    reframed = ee_poses_in_base_frame(small_bags / "b", tmp_path / "bags" / "b")
    static = rows(["extrinsic.source=static"], reframed, "static")
    assert len(static) == 51 and not (static["subject_source"] == "kinematics").any()
    assert ("poses on /ee_pose in frame 'base_link', not the graph frame 'world': 51 unused, as live, since with "
            "this config (extrinsic.source 'static', no reward.ee_tf_frame) the node reads no tf to move them there; "
            "--set extrinsic.source=tf (or reward.ee_tf_frame) reads the bag's tf") in capsys.readouterr().err
    assert (rows([], reframed, "tf")["subject_source"] == "kinematics").sum() >= 45  # benchmark.yaml reads tf

    no_ee_link = rows(["reward.ee_tf_frame=ee_link"], small_bags / "b", "ee_tf_frame")  # the bag's tf has none
    assert len(no_ee_link) == 51 and not (no_ee_link["subject_source"] == "kinematics").any()
    assert (rows([], small_bags / "b", "ee_pose")["subject_source"] == "kinematics").sum() >= 45


def test_a_frame_whose_lifting_fails_gets_rows_saying_why_and_its_batch_is_labelled(small_bags: Path, tmp_path: Path):
    from trusted_scene_graph.label.bags import label_bag
    from trusted_scene_graph.perception.detector import Detection, SimDetector
    from trusted_scene_graph.pipeline.scene import ScenePipeline

    config = load_config_file(BENCHMARK_CONFIG)
    inner = SimDetector.from_config(config)

    class WrongMaskOnTenthFrame:
        needs_instances = True
        every_detection_masked = True
        unknown_instance_ids = frozenset()
        frames = 0

        def detect(self, frame, labels=None):
            self.frames += 1
            detections = inner.detect(frame, labels)
            if self.frames == 10:
                first = detections[0]
                detections[0] = Detection(first.label, first.score, first.box_xywh_px, np.zeros((5, 5), bool))
            return detections

    (tmp_path / "faulty").mkdir()
    (tmp_path / "clean").mkdir()
    label_bag(small_bags / "a", tmp_path / "faulty", config, ["gripper:cube"],
              ScenePipeline(config, detector=WrongMaskOnTenthFrame()))
    label_bag(small_bags / "a", tmp_path / "clean", config, ["gripper:cube"])
    faulty = pq.read_table(tmp_path / "faulty" / "rewards.parquet").to_pylist()
    clean = pq.read_table(tmp_path / "clean" / "rewards.parquet").to_pylist()
    assert len(faulty) == len(clean) > 32  # every frame of the batch is labelled
    differing = [(a, b) for a, b in zip(faulty, clean, strict=True) if a["message"] != b["message"]]
    assert [a["frame"] for a, _ in differing] == [9] and differing[0][1]["valid"]
    message = differing[0][0]["message"]
    assert message.startswith("no scene graph for this frame: mask of") and "5x5" in message


def test_the_rewards_table_has_one_row_per_frame_and_pair_with_the_documented_columns(small_bags: Path,
                                                                                       tmp_path: Path):
    assert label(small_bags, tmp_path / "out") == EXIT_OK
    joined = pq.read_table(tmp_path / "out" / "rewards.parquet")
    assert joined.schema.names == list(REWARD_COLUMNS)
    assert sorted(set(joined.column("source").to_pylist())) == ["a", "b", "c"]
    per_bag = pq.read_table(tmp_path / "out" / "a" / "rewards.parquet").to_pylist()
    frames = {(r["episode"], r["frame"]) for r in per_bag}
    assert len(per_bag) == len(PAIRS) * len(frames) and min(f for _, f in frames) == 0
    reach = [r for r in joined.to_pylist() if r["source"] == "c" and r["pair"] == "gripper:cube"]
    assert reach and not any(r["valid"] for r in reach)  # FetchReach has no cube: every row says so
    # Said of this frame, not of its graph, which holds only the pairs' objects ("it holds no objects" misled).
    assert all(r["message"].endswith("object 'cube' is absent: not in this frame (not detected, or without usable "
                                      "depth)") for r in reach)


def test_a_rerun_after_killing_the_job_midway_gives_byte_identical_outputs(small_bags: Path, tmp_path: Path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert label(small_bags, clean) == EXIT_OK
    command = [sys.executable, "-m", "trusted_scene_graph.cli", "label", str(small_bags), "--out", str(killed),
               "--config", str(BENCHMARK_CONFIG), *[arg for pair in PAIRS for arg in ("--pair", pair)]]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "a").exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    visible = sorted(p.name for p in killed.iterdir() if not p.name.startswith("."))
    assert "a" in visible and "rewards.parquet" not in visible  # killed before the end
    for name in visible:  # whatever is visible is complete
        assert tree_digest(killed / name) == tree_digest(clean / name)
    assert label(small_bags, killed) == EXIT_OK
    for name in ("a", "b", "c", "rewards.parquet"):
        target_clean, target_killed = clean / name, killed / name
        if target_clean.is_dir():
            assert tree_digest(target_killed) == tree_digest(target_clean)
        else:
            assert target_killed.read_bytes() == target_clean.read_bytes()


def test_a_rerun_of_a_finished_job_skips_every_bag(small_bags: Path, tmp_path: Path, capsys):
    assert label(small_bags, tmp_path / "out") == EXIT_OK
    capsys.readouterr()
    assert label(small_bags, tmp_path / "out") == EXIT_OK
    out = capsys.readouterr().out
    assert "0 items labelled (0 frames" in out and "3 already done" in out


def test_a_bag_re_recorded_under_its_name_is_refused_on_the_rerun_not_skipped_with_stale_labels(small_bags: Path,
                                                                                                  tmp_path: Path):
    source = tmp_path / "bags"
    shutil.copytree(small_bags / "a", source / "a")
    shutil.copytree(small_bags / "c", source / "c")
    assert label(source, tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    assert label(source, tmp_path / "out", ["gripper:cube"]) == EXIT_OK  # unchanged: skipped
    shutil.rmtree(source / "c")
    shutil.copytree(small_bags / "b", source / "c")  # another recording, the same name
    with pytest.raises(LabelError, match=rf"this bag has changed since {re.escape(str(tmp_path / 'out'))} labelled "
                                         rf"it .*: {re.escape(str(source / 'c'))} \(labelled in "):
        label(source, tmp_path / "out", ["gripper:cube"])
    # A bag reached through a symbolic link is recorded as the file it names, and compared as such.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "run1.mcap").symlink_to(next((small_bags / "a").glob("*.mcap")))
    assert label(linked, tmp_path / "linked_out", ["gripper:cube"]) == EXIT_OK
    assert label(linked, tmp_path / "linked_out", ["gripper:cube"]) == EXIT_OK


def test_a_damaged_bag_fails_alone_and_the_others_are_labelled(small_bags: Path, tmp_path: Path, capsys):
    folder = tmp_path / "bags"
    shutil.copytree(small_bags, folder)
    storage = next((folder / "a").glob("*.mcap"))
    storage.write_bytes(b"\0" * 64 + storage.read_bytes()[64:])  # its start overwritten: not even salvageable
    assert label(folder, tmp_path / "out") == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"tsg label: error: a: cannot open bag {folder / 'a'}: " in err
    assert (tmp_path / "out" / "b").is_dir() and not (tmp_path / "out" / "a").exists()


def summary_start(mcap: Path) -> int:
    """Where an mcap file's summary starts (its footer's summary_start): the data section ends there."""
    data = mcap.read_bytes()
    return struct.unpack_from("<Q", data, len(data) - 8 - 4 - 8 - 8)[0]


def test_an_mcap_cut_short_is_labelled_from_its_messages_before_the_cut_with_a_warning(small_bags: Path,
                                                                                         tmp_path: Path, capsys):
    from rosbags.rosbag2 import Reader, ReaderError

    source = small_bags / "a"
    intact = next(source.glob("*.mcap"))
    cut = tmp_path / "cut" / "a"  # a recorder killed before its summary: no metadata.yaml either
    cut.mkdir(parents=True)
    (cut / intact.name).write_bytes(intact.read_bytes()[:summary_start(intact)])
    with pytest.raises(ReaderError, match="magic is invalid"):  # what rosbags says of it
        Reader(cut / intact.name).open()
    assert label(source, tmp_path / "whole") == EXIT_OK
    capsys.readouterr()
    assert label(cut, tmp_path / "salvaged") == EXIT_OK
    err = capsys.readouterr().err
    with Reader(source) as reader:
        count = reader.message_count
        recorded = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    assert ("tsg label: warning: a: the bag is cut short (" in err
            and f"labelled from the {count} messages before the cut, re-written message by message" in err)
    whole = pq.read_table(tmp_path / "whole" / "rewards.parquet").to_pandas()
    assert pq.read_table(tmp_path / "salvaged" / "rewards.parquet").to_pandas().equals(whole)  # no note in it
    with Reader(tmp_path / "salvaged" / "a") as copy:
        assert [(c.topic, t, bytes(raw)) for c, t, raw in copy.messages() if c.topic != REWARD_TOPIC] == recorded
        assert sum(c.msgcount for c in copy.connections if c.topic == REWARD_TOPIC) == len(whole)
    # Cut inside its data: the messages before the damage are labelled, and the warning says how many.
    (cut / intact.name).write_bytes(intact.read_bytes()[: summary_start(intact) // 2])
    assert label(cut, tmp_path / "half") == EXIT_OK
    with Reader(tmp_path / "half" / "a") as copy:
        kept = sum(c.msgcount for c in copy.connections if c.topic != REWARD_TOPIC)
    assert 0 < kept < count
    assert f"labelled from the {kept} messages before the cut" in capsys.readouterr().err


def rewritten(source: Path, target: Path, compress_file: bool = False, custom_data: dict[str, str] | None = None,
              extra_type: tuple[str, str] | None = None) -> Path:
    """``source`` written again by rosbags (its storage kept), compressed file by file, with ``custom_data``, and
    with a topic of a type no type store knows (``extra_type``: its name and definition) on each colour image."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    from trusted_scene_graph.dataset import make_typestore

    sqlite3 = any(f.suffix == ".db3" for f in source.iterdir())
    writer = Writer(target, version=9, storage_plugin=StoragePlugin.SQLITE3 if sqlite3 else StoragePlugin.MCAP)
    if compress_file:
        writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with Reader(source) as reader, writer:
        for key, value in (custom_data or {}).items():
            writer.set_custom_data(key, value)
        copies = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                              serialization_format=c.ext.serialization_format,
                                              offered_qos_profiles=c.ext.offered_qos_profiles)
                  for c in reader.connections}
        extra = None if extra_type is None else writer.add_connection(
            "/custom", extra_type[0], msgdef=extra_type[1], rihs01="RIHS01_" + "ab" * 32, typestore=make_typestore())
        for connection, log_ns, raw in reader.messages():
            writer.write(copies[connection.id], log_ns, raw)
            if extra is not None and connection.topic == "/camera/color/image_raw":
                writer.write(extra, log_ns, b"\x00\x01\x00\x00" + struct.pack("<iI", 5, 3) + b"hi\x00")
    return target


def test_a_bag_compressed_file_by_file_or_in_sqlite3_is_rewritten_in_its_own_storage_keeping_its_custom_data(
        small_bags: Path, tmp_path: Path):
    from rosbags.rosbag2 import Reader

    recorder = {"robot": "fetch-07", "operator": "alice"}
    folder = tmp_path / "bags"
    folder.mkdir()
    rewritten(small_bags / "a", folder / "zstd", compress_file=True, custom_data=recorder)
    rewritten(small_bags / "c", folder / "sqlite", custom_data=recorder)
    assert [f.name for f in (folder / "zstd").iterdir() if f.suffix == ".zstd"] == ["zstd.mcap.zstd"]
    assert label(folder, tmp_path / "out") == EXIT_OK
    for name, suffix in (("zstd", ".mcap"), ("sqlite", ".db3")):
        copy = tmp_path / "out" / name
        assert {f.suffix for f in copy.iterdir()} == {".yaml", suffix, ".parquet", ".json"}  # uncompressed, same
        with Reader(copy) as reader:
            assert reader.storage.metadata.custom == recorder
            assert sum(c.msgcount for c in reader.connections if c.topic == REWARD_TOPIC) > 0


def test_a_cut_short_mcap_with_a_message_type_no_type_store_knows_is_copied_with_its_recorded_definition(
        small_bags: Path, tmp_path: Path, capsys):
    from rosbags.rosbag2 import Reader

    definition = "int32 a\nstring b\n"
    whole = rewritten(small_bags / "a", tmp_path / "whole", extra_type=("my_pkg/msg/Custom", definition))
    recorded = next(whole.glob("*.mcap"))
    cut = tmp_path / "cut" / "whole"  # a recorder killed before its summary: no metadata.yaml either
    cut.mkdir(parents=True)
    (cut / recorded.name).write_bytes(recorded.read_bytes()[:summary_start(recorded)])
    assert label(cut, tmp_path / "out") == EXIT_OK
    assert "the bag is cut short" in capsys.readouterr().err
    with Reader(whole) as source, Reader(tmp_path / "out" / "whole") as copy:
        [custom] = [c for c in copy.connections if c.topic == "/custom"]
        assert (custom.msgtype, custom.msgdef.data) == ("my_pkg/msg/Custom", definition)
        assert custom.digest.startswith("RIHS01_")  # the definition's hash (the mcap file keeps none)
        assert ([(t, bytes(raw)) for c, t, raw in copy.messages() if c.topic == "/custom"]
                == [(t, bytes(raw)) for c, t, raw in source.messages() if c.topic == "/custom"])


def test_a_copied_definition_is_hashed_as_the_type_store_hashes_the_type():
    from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

    from trusted_scene_graph.dataset import make_typestore
    from trusted_scene_graph.dataset.bag import definition_hash

    store = make_typestore()
    text, _ = store.generate_msgdef("geometry_msgs/msg/PoseStamped", ros_version=2)
    assert (definition_hash("geometry_msgs/msg/PoseStamped", MessageDefinition(MessageDefinitionFormat.MSG, text))
            == store.hash_rihs01("geometry_msgs/msg/PoseStamped"))
    assert definition_hash("my_pkg/msg/Bad", MessageDefinition(MessageDefinitionFormat.MSG, "no such type x\n")) is None


def test_bags_named_like_the_runs_own_files_are_refused_before_any_work(small_bags: Path, tmp_path: Path):
    folder = tmp_path / "bags"
    shutil.copytree(small_bags / "b", folder / "rewards.parquet")
    shutil.copytree(small_bags / "b", folder / "b")
    with pytest.raises(LabelError, match=r"rewards\.parquet would be written where --out keeps its joined "
                                         r"rewards\.parquet and tsg_label\.json; rename or copy the bag"):
        run_label(folder, tmp_path / "out", load_config_file(BENCHMARK_CONFIG), ["gripper:cube"], EngineSettings())
    assert not (tmp_path / "out").exists()


def test_undecodable_messages_are_named_in_the_warning_with_their_topic_and_error(small_bags: Path, tmp_path: Path,
                                                                                  capsys):
    from rosbags.rosbag2 import Reader

    from trusted_scene_graph.dataset import BagWriter

    source = tmp_path / "corrupt"
    with Reader(small_bags / "b") as reader, BagWriter(source) as writer:
        copies = {c.id: writer.copy_connection(c) for c in reader.connections}
        for connection, log_ns, raw in reader.messages():
            cut = connection.topic == "/camera/depth/image_raw"
            writer.write_raw(copies[connection.id], raw[:60] if cut else raw, log_ns)
    assert label(source, tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    err = capsys.readouterr().err
    assert re.search(r"warning: corrupt: \d+ messages on /camera/depth/image_raw did not decode \(the first: "
                     r"SerdeError: .+\): no frame used them \(their camera frames are incomplete\); the copy holds "
                     r"them as recorded", err)


def test_bags_in_folders_deeper_down_are_not_labelled_and_the_run_says_so(small_bags: Path, tmp_path: Path, capsys):
    folder = tmp_path / "bags"
    shutil.copytree(small_bags / "b", folder / "b")
    shutil.copytree(small_bags / "a", folder / "site2" / "day1" / "a")
    (folder / "plots").mkdir()
    assert label(folder, tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "1 item labelled" in out
    assert (f"warning: site2/: holds 1 bag of its own (day1/a), not labelled: tsg label takes the bags directly "
            f"inside {folder}; label {folder / 'site2'} on its own") in err
    assert "plots" not in err


def test_a_static_extrinsic_the_bags_tf_contradicts_is_warned_of(small_bags: Path, tmp_path: Path, capsys):
    # A tsg sim record bag places its camera in /tf_static; the default config's static extrinsic puts the camera at
    # the origin instead, and every distance would be off while still valid.
    static = ["extrinsic.source=static"]
    assert cmd_label(BENCHMARK_CONFIG, static, small_bags / "b", tmp_path / "static", ["gripper:cube"], "local", 1,
                     None, 3, None, None, None, None, None, None, math.nan, False) == EXIT_OK
    assert ("tsg label: warning: b: the bag's tf places camera frame 'camera_color_optical_frame' in graph frame "
            "'world' elsewhere than the config's extrinsic (extrinsic.source 'static', which the rewards use) in 51 "
            "frames: to use the bag's camera pose, pass --set extrinsic.source=tf") in capsys.readouterr().err
    assert label(small_bags / "b", tmp_path / "tf", ["gripper:cube"]) == EXIT_OK  # config/benchmark.yaml: tf
    assert "elsewhere than the config's extrinsic" not in capsys.readouterr().err


@pytest.mark.parametrize(("overrides", "missing"), [
    ({"topics.color": "/nosuch"}, "/nosuch"),
    ({"topics.color_transport": "compressed"}, "/camera/color/image_raw/compressed"),
    ({"topics.camera_info": "/robot/camera/color/camera_info"}, "/robot/camera/color/camera_info"),
])
def test_a_bag_without_the_configs_camera_topics_is_refused_naming_them_and_the_bags(small_bags: Path,
                                                                                     tmp_path: Path, overrides,
                                                                                     missing):
    config = load_config_file(BENCHMARK_CONFIG).with_overrides(overrides)
    with pytest.raises(LabelError, match=rf"bag {small_bags / 'a'} has no {missing} \(the config's camera topics: "
                                         r".*\); its topics are /camera/color/camera_info, /camera/color/image_raw, "
                                         r"/camera/depth/image_raw, .*, /tf_static; set the config's topics"):
        label_bag(small_bags / "a", tmp_path, config, ["gripper:cube"])
    assert list(tmp_path.iterdir()) == []


def test_a_bag_without_frames_fails_or_warns_and_a_corrected_rerun_labels_into_the_same_out(small_bags: Path,
                                                                                           tmp_path: Path, capsys):
    from rosbags.rosbag2 import Reader, Writer

    out = tmp_path / "out"
    args = ["label", str(small_bags / "a"), "--config", str(BENCHMARK_CONFIG), "--pair", "gripper:cube", "--out",
            str(out)]
    assert main([*args, "--set", "topics.color=/nosuch"]) == EXIT_FAILED
    assert "tsg label: error: a: bag " in capsys.readouterr().err
    assert main(args) == EXIT_OK  # nothing was committed: the manifest of the failed run is replaced
    assert (out / "a" / "rewards.parquet").is_file()
    # A rewards-only bag is no input: it has no camera topic.
    assert main([*args[:-1], str(tmp_path / "only"), "--rewards-only"]) == EXIT_OK
    capsys.readouterr()
    assert main(["label", str(tmp_path / "only" / "a"), *args[2:-1], str(tmp_path / "again")]) == EXIT_FAILED
    assert "has no /camera/color/image_raw, /camera/depth/image_raw" in capsys.readouterr().err
    # Camera topics without a colour image: labelled, with no frame, and the summary says so.
    source = tmp_path / "no_colour"
    with Reader(small_bags / "a") as reader, Writer(source, version=9) as writer:
        copies = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                              offered_qos_profiles=c.ext.offered_qos_profiles)
                  for c in reader.connections}
        for connection, log_time, raw in reader.messages():
            if connection.topic != "/camera/color/image_raw":
                writer.write(copies[connection.id], log_time, raw)
    assert main(["label", str(source), *args[2:-1], str(tmp_path / "empty")]) == EXIT_OK
    assert ("tsg label: warning: no_colour: labelled no frame (it has no message on the config's colour topic)"
            in capsys.readouterr().err)


def test_a_folder_of_bag_directories_and_loose_mcap_files_labels_every_one(small_bags: Path, tmp_path: Path):
    folder = tmp_path / "bags"
    shutil.copytree(small_bags / "b", folder / "b")
    shutil.copyfile(next((small_bags / "a").glob("*.mcap")), folder / "loose.mcap")
    counts = []
    outcome = run_label(folder, tmp_path / "out", load_config_file(BENCHMARK_CONFIG), ["gripper:cube"],
                        EngineSettings(), on_items=counts.append)
    assert outcome.summary.done == ("b", "loose") and counts == [2]
    assert sorted(set(pq.read_table(tmp_path / "out" / "rewards.parquet").column("source").to_pylist())) == [
        "b", "loose"]


def test_bad_inputs_are_refused_before_any_work(small_bags: Path, tmp_path: Path, capsys):
    with pytest.raises(LabelError, match="is inside the input"):
        run_label(small_bags, small_bags / "out", load_config_file(BENCHMARK_CONFIG), PAIRS, EngineSettings())
    with pytest.raises(LabelError, match="is neither a rosbag2 bag, a folder of bags nor a LeRobot dataset"):
        run_label(tmp_path, tmp_path.parent / "elsewhere", load_config_file(BENCHMARK_CONFIG), PAIRS,
                  EngineSettings())
    with pytest.raises(UsageError, match="--intrinsics applies to LeRobot datasets only"):
        cmd_label(BENCHMARK_CONFIG, [], small_bags, tmp_path / "o", PAIRS, "local", 1, None, 3, None, None, None,
                  "1,1,1,1", None, None, math.nan, False)
    assert main(["label", str(small_bags), "--out", str(tmp_path / "o"), "--pair", "gripper"]) == EXIT_USAGE
    assert "reward pair 'gripper' is not of the form" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_rerun_with_other_settings_or_a_foreign_output_directory_is_refused(small_bags: Path, tmp_path: Path):
    config = load_config_file(BENCHMARK_CONFIG)
    assert label(small_bags / "a", tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    with pytest.raises(LabelError, match=r"labelled with other settings \(pairs differ\); a rerun only resumes"):
        run_label(small_bags / "a", tmp_path / "out", config, ["cube:goal"], EngineSettings())
    with pytest.raises(LabelError, match=r"\(config_sha256 differ\)"):
        run_label(small_bags / "a", tmp_path / "out", config.with_overrides({"tracking.gate_m": 0.5}),
                  ["gripper:cube"], EngineSettings())
    with pytest.raises(LabelError, match=r"\(bag_output differ: it holds 'copy' bags and this run writes 'rewards "
                                         r"only' bags \(--rewards-only\)\)"):  # the two forms never mix in one --out
        run_label(small_bags / "a", tmp_path / "out", config, ["gripper:cube"], EngineSettings(), rewards_only=True)
    manifest_path = tmp_path / "out" / "tsg_label.json"
    written = json.loads(manifest_path.read_text())
    del written["bag_output"]  # as a run before --rewards-only existed wrote it
    manifest_path.write_text(json.dumps(written))
    assert run_label(small_bags / "a", tmp_path / "out", config, ["gripper:cube"], EngineSettings()).summary.skipped
    from trusted_scene_graph.label.run import claim_output

    lerobot_manifest = tmp_path / "dataset_out" / "tsg_label.json"  # a dataset's run, then a bag run into its --out
    lerobot_manifest.parent.mkdir()
    lerobot_manifest.write_text(json.dumps({"kind": "lerobot", "bag_output": None}))
    (lerobot_manifest.parent / "episode-000000").mkdir()  # an episode it labelled (else its manifest is replaced)
    with pytest.raises(LabelError, match=r"\(kind, bag_output differ\); a rerun only resumes"):
        claim_output(lerobot_manifest.parent, lerobot_manifest, {"kind": "bags", "bag_output": "copy"})
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "a").mkdir()
    with pytest.raises(LabelError, match="is not empty and has no tsg_label.json: tsg label did not write it"):
        run_label(small_bags / "a", tmp_path / "foreign", config, ["gripper:cube"], EngineSettings())


def test_a_label_the_detector_cannot_produce_is_refused_before_any_work(small_bags: Path, tmp_path: Path):
    with pytest.raises(LabelError, match=r"pair 'gripper:mug': unknown object 'mug'; the detector's labels are"):
        run_label(small_bags, tmp_path / "out", load_config_file(BENCHMARK_CONFIG), ["gripper:mug"],
                  EngineSettings())
    assert not (tmp_path / "out").exists()


def test_colour_images_whose_frame_never_completes_still_get_their_rows(small_bags: Path, tmp_path: Path):
    from rosbags.rosbag2 import Reader, Writer

    source = tmp_path / "gappy"
    with Reader(small_bags / "a") as reader, Writer(source, version=9) as writer:
        copies = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest,
                                              offered_qos_profiles=c.ext.offered_qos_profiles)
                  for c in reader.connections}
        depth_seen = 0
        for connection, log_time, raw in reader.messages():
            if connection.topic == "/camera/depth/image_raw":
                depth_seen += 1
                if depth_seen % 10 == 5:
                    continue  # every tenth depth image lost
            writer.write(copies[connection.id], log_time, raw)
    assert label(source, tmp_path / "out", ["gripper:cube"]) == EXIT_OK
    rows = pq.read_table(tmp_path / "out" / "rewards.parquet").to_pylist()
    assert [r["frame"] for r in rows] == list(range(len(rows)))  # one row per colour image, in order
    assert len(rows) == len(truth_by_stamp(small_bags / "a"))
    gaps = [r for r in rows if r["message"].startswith("frame incomplete")]
    assert len(gaps) == sum(1 for i in range(1, depth_seen + 1) if i % 10 == 5) and not any(r["valid"] for r in gaps)
    assert "no depth / camera_info / instances message within sync.tolerance_s" in gaps[0]["message"]


def test_a_labelled_bag_is_labelled_again_only_when_its_recorded_rewards_are_to_be_replaced(small_bags: Path,
                                                                                            tmp_path: Path):
    from rosbags.rosbag2 import Reader

    config = load_config_file(BENCHMARK_CONFIG)
    assert label(small_bags / "a", tmp_path / "once") == EXIT_OK
    summary = run_label(tmp_path / "once" / "a", tmp_path / "twice", config, PAIRS, EngineSettings()).summary
    assert ("already has /scene_graph/reward (recorded from a live node?); label the original recording, or pass "
            "--replace-reward") in summary.failed["a"]

    summary = run_label(tmp_path / "once" / "a", tmp_path / "beside", config, PAIRS, EngineSettings(),
                        rewards_only=True).summary
    assert ("a rewards-only bag played beside it would add a second reward stream; label a copy instead, with "
            "--replace-reward") in summary.failed["a"]
    with pytest.raises(LabelError, match=r"--rewards-only writes no copy of a bag, so --replace-reward has no recorded "
                                         r"rewards to leave out"):
        run_label(tmp_path / "once" / "a", tmp_path / "both", config, PAIRS, EngineSettings(), replace_reward=True,
                  rewards_only=True)

    outcome = run_label(tmp_path / "once" / "a", tmp_path / "replaced", config, PAIRS, EngineSettings(),
                        replace_reward=True)
    assert outcome.summary.ok
    once = pq.read_table(tmp_path / "once" / "a" / "rewards.parquet").to_pandas()
    assert pq.read_table(tmp_path / "replaced" / "a" / "rewards.parquet").to_pandas().equals(once)
    with Reader(small_bags / "a") as source, Reader(tmp_path / "replaced" / "a") as replaced:
        assert [c.topic for c in replaced.connections].count(REWARD_TOPIC) == 1
        assert sum(c.msgcount for c in replaced.connections if c.topic == REWARD_TOPIC) == len(once)
        assert ([(c.topic, t, bytes(raw)) for c, t, raw in replaced.messages() if c.topic != REWARD_TOPIC]
                == [(c.topic, t, bytes(raw)) for c, t, raw in source.messages()])


def test_replacing_recorded_rewards_is_for_bags_a_dataset_overwrites_its_column(tmp_path: Path):
    (tmp_path / "dataset" / "meta").mkdir(parents=True)
    (tmp_path / "dataset" / "meta" / "info.json").write_text("{}")
    with pytest.raises(LabelError, match=r"LeRobot dataset: --replace-reward is for bags; .*--overwrite-column"):
        run_label(tmp_path / "dataset", tmp_path / "out", load_config_file(BENCHMARK_CONFIG), PAIRS,
                  EngineSettings(), replace_reward=True)
    with pytest.raises(LabelError, match=r"LeRobot dataset: --rewards-only is for bags; a dataset gets its "
                                         r"'next.reward' column in a new dataset"):
        run_label(tmp_path / "dataset", tmp_path / "out", load_config_file(BENCHMARK_CONFIG), PAIRS,
                  EngineSettings(), rewards_only=True)


@pytest.mark.parametrize("bag", ["a", "c"])  # mcap, sqlite3
def test_a_rewards_only_bag_holds_exactly_the_reward_messages_of_the_labelled_copy(small_bags: Path, tmp_path: Path,
                                                                                   bag: str):
    """Played beside the source (ros2 bag play -i SOURCE -i OUT/<bag>), it gives what the labelled copy gives."""
    from rosbags.rosbag2 import Reader

    assert label(small_bags / bag, tmp_path / "copy") == EXIT_OK
    assert main(["label", str(small_bags / bag), "--config", str(BENCHMARK_CONFIG), "--out", str(tmp_path / "only"),
                 "--rewards-only", *[arg for pair in PAIRS for arg in ("--pair", pair)]]) == EXIT_OK
    copy_table = pq.read_table(tmp_path / "copy" / bag / "rewards.parquet").to_pandas()
    assert pq.read_table(tmp_path / "only" / bag / "rewards.parquet").to_pandas().equals(copy_table)
    with Reader(tmp_path / "copy" / bag) as copy, Reader(tmp_path / "only" / bag) as only:
        assert [(c.topic, c.msgtype) for c in only.connections] == [(REWARD_TOPIC, "trusted_scene_graph_msgs/msg/"
                                                                                   "DenseReward")]
        assert only.message_count == len(copy_table) > 0
        assert ([(t, bytes(raw)) for _, t, raw in only.messages()]
                == [(t, bytes(raw)) for c, t, raw in copy.messages() if c.topic == REWARD_TOPIC])
    written = [f for f in (tmp_path / "only" / bag).iterdir() if f.name not in ("rewards.parquet", BAG_SOURCE_FILE)]
    assert {f.suffix for f in written} == {f.suffix for f in (small_bags / bag).iterdir()}  # the source's storage
    source_bytes = sum(f.stat().st_size for f in (small_bags / bag).iterdir())
    assert sum(f.stat().st_size for f in written) < source_bytes / 20


# --- LeRobot ---------------------------------------------------------------------------------------------------


def lerobot_from_bag(bag: Path, root: Path):
    """A LeRobot v3 dataset holding the bag's camera frames, depth in mm, instance ids, and the end effector and goal
    positions as observation.state[0:3] and [3:6]."""
    from lerobot_data import SyntheticFrame, build_lerobot_dataset

    frames: dict[int, dict] = {}
    with BagReader(bag) as reader:
        topics = ["/camera/color/image_raw", "/camera/depth/image_raw", "/camera/instances/image_raw",
                  "/ground_truth", "/ee_pose", "/goal_pose", "/camera/color/camera_info"]
        for m in reader.messages(topics):
            frames.setdefault(stamp_to_ns(m.msg.header.stamp), {})[m.topic] = m.msg
    stamps = sorted(frames)
    by_episode: dict[int, list] = {}
    for stamp in stamps:
        by_episode.setdefault(int(frames[stamp]["/ground_truth"].episode), []).append(frames[stamp])

    def position(msg) -> list[float]:
        p = msg.pose.position
        return [p.x, p.y, p.z]

    def frame_fn(episode: int, index: int, height: int, width: int):
        f = by_episode[episode][index]
        depth_mm = np.nan_to_num(depth_m_from_msg(f["/camera/depth/image_raw"]) * 1000.0).round().astype(np.uint16)
        return SyntheticFrame(rgb=rgb_from_msg(f["/camera/color/image_raw"]), depth_mm=depth_mm,
                              state=np.array(position(f["/ee_pose"]) + position(f["/goal_pose"]), np.float32),
                              action=np.zeros(4, np.float32),
                              instances=instances_from_msg(f["/camera/instances/image_raw"]))

    info = frames[stamps[0]]["/camera/color/camera_info"]
    lengths = [len(by_episode[e]) for e in sorted(by_episode)]
    built = build_lerobot_dataset(root, episode_lengths=lengths, image_hw=(info.height, info.width),
                                  frame_fn=frame_fn, fps=25, with_instances=True)
    return built, (info.k[0], info.k[4], info.k[2], info.k[5])


def lerobot_label_args(bag: Path, root: Path, out: Path) -> tuple:
    """cmd_label's arguments to label, for gripper:cube, a LeRobot dataset made at ``root`` from ``bag``
    (:func:`lerobot_from_bag`) into ``out``: the bag's camera pose as a static extrinsic (a dataset has no tf)."""
    from lerobot_data import FRONT, FRONT_DEPTH, FRONT_INSTANCES

    built, intrinsics = lerobot_from_bag(bag, root)
    with BagReader(bag) as reader:
        tf = next(m.msg for m in reader.messages(["/tf_static"])).transforms[0].transform
    overrides = ["extrinsic.source=static",
                 f"extrinsic.translation_m=[{tf.translation.x},{tf.translation.y},{tf.translation.z}]",
                 f"extrinsic.rotation_xyzw=[{tf.rotation.x},{tf.rotation.y},{tf.rotation.z},{tf.rotation.w}]"]
    return (BENCHMARK_CONFIG, overrides, built.root, out, ["gripper:cube"], "local", 1, None, 3, FRONT, FRONT_DEPTH,
            FRONT_INSTANCES, ",".join(map(str, intrinsics)), "observation.state[0:3]", "observation.state[3:6]",
            math.nan, False)


def test_a_lerobot_dataset_gets_a_next_reward_column_that_loads_as_lerobot_loads_it(small_bags: Path,
                                                                                     tmp_path: Path, capsys):
    import datasets

    args = lerobot_label_args(small_bags / "a", tmp_path / "dataset", tmp_path / "labelled")
    built = LeRobotDataset(args[2])
    before = tree_digest(built.root)
    capsys.readouterr()
    assert cmd_label(*args) == EXIT_OK
    printed = capsys.readouterr().out
    assert tree_digest(built.root) == before
    out = LeRobotDataset(tmp_path / "labelled")
    assert out.features["next.reward"] == {"dtype": "float32", "shape": [1], "names": None}
    files = [str(f) for f in out.data_files()]
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    assert loaded.features["next.reward"].dtype == "float32"
    reward = np.array(loaded["next.reward"], dtype=np.float64)
    valid = np.array(loaded["next.reward_valid"])
    assert valid.mean() > 0.9
    # The summary gives each pair's own share of valid frames, then next.reward's (every pair valid at the next frame).
    episode_tables = pq.read_table(sorted((tmp_path / "labelled" / "tsg_rewards").rglob("rewards.parquet")))
    pair_valid = np.array(episode_tables.column("valid").to_pylist())
    assert f"  gripper:cube: {pair_valid.mean():.1%} of frames valid\n" in printed
    assert f"  all pairs (next.reward): {valid.mean():.1%} of frames valid\n" in printed
    # The episode's last frame has no next frame, so no reward.
    assert not valid[-1] and np.isnan(reward[-1])
    # The same frames labelled from the bag. next.reward[t] is frame t + 1's reward (LeRobot's convention), and the
    # dataset's depth is rounded to millimetres: within a few millimetres.
    assert label(small_bags / "a", tmp_path / "from_bag", ["gripper:cube"]) == EXIT_OK
    bag_rows = pq.read_table(tmp_path / "from_bag" / "rewards.parquet").to_pylist()
    bag_reward = np.array([r["reward"] for r in bag_rows])
    next_bag_reward = bag_reward[np.minimum(np.arange(bag_reward.size) + 1, bag_reward.size - 1)]
    both = valid & np.isfinite(next_bag_reward)
    assert np.median(np.abs(reward[both] - next_bag_reward[both])) < 0.002
    # Where the gripper moves (the reward changes by over 1 cm from one frame to the next), the column is frame
    # t + 1's, not frame t's nor t + 2's: an off-by-one would pass the median above, the gripper being still for long.
    moving = both & (np.abs(next_bag_reward - bag_reward) > 0.01)
    after_next = bag_reward[np.minimum(np.arange(bag_reward.size) + 2, bag_reward.size - 1)]
    assert moving.sum() >= 5
    assert np.median(np.abs(reward[moving] - next_bag_reward[moving])) < 0.003
    for shifted in (bag_reward, after_next):
        assert np.median(np.abs(reward[moving] - shifted[moving])) > 0.005
    stats = json.loads((out.root / "meta" / "stats.json").read_text())["next.reward"]
    assert stats["max"][0] == pytest.approx(float(np.nanmax(reward[valid])), abs=1e-6)
    # Rerun: the dataset is complete, nothing to do.
    capsys.readouterr()
    assert cmd_label(*args) == EXIT_OK
    assert "is already the labelled dataset; nothing to do" in capsys.readouterr().out
    # A dataset write cut before meta/info.json (always written last) is redone from the episode tables.
    info = tmp_path / "labelled" / "meta" / "info.json"
    written = info.read_bytes()
    info.unlink()
    assert cmd_label(*args) == EXIT_OK
    assert info.read_bytes() == written
    # Another pair into the same --out is refused rather than mixed with the finished labels.
    other = (*args[:4], ["cube:goal"], *args[5:])
    with pytest.raises(LabelError, match="was labelled with other settings \\(pairs differ\\)"):
        cmd_label(*other)


def test_lerobot_options_are_checked_against_the_dataset(tmp_path: Path):
    from lerobot_data import WRIST, build_lerobot_dataset

    built = build_lerobot_dataset(tmp_path / "d")
    front, depth = "observation.images.front", "observation.images.front_depth"
    with pytest.raises(LabelError, match="a LeRobot dataset has no tf: set extrinsic.source to 'static'"):
        run_label(built.root, tmp_path / "o", load_config_file(BENCHMARK_CONFIG), PAIRS, EngineSettings(),
                  FrameSource(front, (1, 1, 1, 1), depth, depth))
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"extrinsic.source": "static"})
    with pytest.raises(LabelError, match=r"camera feature 'observation.images.front_depth' holds uint16 images of "
                                         r"shape \(6, 8\), expected an 8-bit RGB image"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(), FrameSource(depth, (1, 1, 1, 1),
                                                                                            depth, depth))
    with pytest.raises(LabelError, match=r"depth feature 'observation.images.front' holds uint8 images"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(), FrameSource(front, (1, 1, 1, 1),
                                                                                            front, depth))
    with pytest.raises(LabelError, match="'observation.images.wrist' is stored as video"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(),
                  FrameSource(WRIST, (1, 1, 1, 1), depth, instances=depth))
    # Normalised intrinsics (not pixels): refused against the image size before any episode, not in every frame.
    with pytest.raises(LabelError, match=r"^--intrinsics 0.01,0.01,0.5,0.5 \(pixels\) do not fit "
                                         r"'observation.images.front''s 8x6 images: intrinsics: the image's edge "
                                         r"pixels look 89.9 degrees off the optical axis"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(),
                  FrameSource(front, (0.01, 0.01, 0.5, 0.5), depth, depth))
    with pytest.raises(LabelError, match=r"selects 2 values; a position needs 3"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(),
                  FrameSource(front, (1, 1, 1, 1), depth, depth, ee_position="observation.state[0:2]"))
    # A bare key is the whole feature: six joint positions are no x, y, z (their first three were taken silently).
    with pytest.raises(LabelError, match=r"position feature 'observation.state' holds 6 values \(shape \[6\]\); "
                                         r"name the three that are x, y, z: observation.state\[START:STOP\]"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(),
                  FrameSource(front, (1, 1, 1, 1), depth, depth, ee_position="observation.state"))
    with pytest.raises(LabelError, match="--depth is required with depth.backend 'sensor'"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(), FrameSource(front, (1, 1, 1, 1)))
    with pytest.raises(LabelError, match="--instances is required with the 'sim' detector"):
        run_label(built.root, tmp_path / "o", config, PAIRS, EngineSettings(), FrameSource(front, (1, 1, 1, 1), depth))
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match="--intrinsics FX,FY,CX,CY is required"):
        cmd_label(BENCHMARK_CONFIG, [], built.root, tmp_path / "o", PAIRS, "local", 1, None, 3, None, None, None,
                  None, None, None, math.nan, False)


def test_without_ground_truth_a_clock_reset_starts_the_episode_the_ground_truth_would_have(tmp_path: Path):
    from bag_edits import clock_reset_at_each_episode_without_ground_truth

    source = record(tmp_path / "bags" / "reach", "FetchReach", episodes=2, seed=4, width=160, height=120)
    reset = clock_reset_at_each_episode_without_ground_truth(source, tmp_path / "reset" / "reach")
    pairs = ["gripper:goal, shaping=progress, smoothing_frames=3"]
    assert label(source.parent, tmp_path / "with_truth", pairs) == EXIT_OK
    assert label(reset.parent, tmp_path / "without_truth", pairs) == EXIT_OK
    columns = ["episode", "frame", "reward", "distance_m", "valid"]
    with_truth = pq.read_table(tmp_path / "with_truth" / "rewards.parquet").to_pandas()[columns]
    without_truth = pq.read_table(tmp_path / "without_truth" / "rewards.parquet").to_pandas()[columns]
    assert sorted(set(with_truth["episode"])) == [0, 1]
    assert without_truth.equals(with_truth)


def test_a_clock_reset_within_one_ground_truth_episode_restarts_the_rewards_state_and_keeps_its_rows_unique(
        tmp_path: Path):
    from bag_edits import played_twice

    source = record(tmp_path / "bags" / "reach", "FetchReach", episodes=1, seed=4, width=160, height=120)
    looped = played_twice(source, tmp_path / "looped" / "reach")
    pairs = ["gripper:goal, shaping=progress, smoothing_frames=3"]
    assert label(looped.parent, tmp_path / "out", pairs) == EXIT_OK
    rows = pq.read_table(tmp_path / "out" / "rewards.parquet").to_pandas()
    half = len(rows) // 2
    assert set(rows["episode"]) == {0} and list(rows["frame"]) == list(range(len(rows)))  # the ground truth's
    columns = ["reward", "distance_m", "valid"]
    # The second pass is labelled as the first: smoothing and the progress baseline started again at the jump.
    assert rows[columns].iloc[half:].reset_index(drop=True).equals(rows[columns].iloc[:half].reset_index(drop=True))


def test_a_pass_whose_end_effector_poses_start_late_is_not_given_the_previous_passs_poses_at_its_stamps(
        tmp_path: Path, monkeypatch):
    """A looped bag whose second pass has no end-effector pose for its first frames: the first pass's poses, stamped
    alike, must not answer for them (the live node drops the old timeline's poses where the clock went back): the
    perceived gripper does, and the pass's own poses from the first that comes near enough. Deciding ahead which
    frames need the gripper perceived drops them at the same frame."""
    from bag_edits import played_twice

    source = record(tmp_path / "bags" / "reach", "FetchReach", episodes=1, seed=4, width=160, height=120)
    with BagReader(source) as reader:
        poses_per_pass = sum(message.topic == "/ee_pose" for message in reader.messages())
    looped = rewrite_ee_poses(played_twice(source, tmp_path / "looped" / "reach"), tmp_path / "late" / "reach",
                              lambda index, msg: None if poses_per_pass <= index < poses_per_pass + 20 else msg)
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"detector.min_pixels": 1})  # a small gripper at 160x120
    posed, always, _ = label_perceiving_the_gripper_where_needed_and_always(looped, config, tmp_path / "out",
                                                                             monkeypatch, ["gripper:goal"])
    sources = list(posed["subject_source"])
    half = len(sources) // 2
    assert set(sources[:half]) == {"kinematics"}
    # Stamped 0 to 680 ms into the pass, 40 ms apart: its first pose (800 ms) is beyond reward.ee_pose_max_age_s
    # (0.1 s); the first of them are labelled before that pose is read (it is logged after tsg label's look-ahead).
    assert set(sources[half:half + 18]) == {"perception"} and set(sources[half + 18:]) == {"kinematics"}
    ids = ["subject_id", "object_id"]
    assert posed.drop(columns=ids).equals(always.drop(columns=ids))


def test_an_episode_whose_clock_restarts_by_less_than_a_jump_is_not_given_the_previous_episodes_poses(
        tmp_path: Path, monkeypatch):
    """Ground truth numbering a new episode at a frame stamped before the previous one, by less than a jump (an
    episode of 0.6 s, then the simulator's clock restarted where it began, as an RL loop's reset call and the live
    node's pending request serve it): the old episode's poses, stamped alike, must not answer for the new one's
    first frames, whose own poses come late. The live node drops them at that frame; so does tsg label, and its
    look-ahead (which frames need the gripper perceived) at the same frame."""
    from bag_edits import clock_reset_at_each_episode

    from trusted_scene_graph.dataset import BagWriter

    source = record(tmp_path / "bags" / "reach", "FetchReach", episodes=2, seed=4, width=160, height=120)
    reset = clock_reset_at_each_episode(source, tmp_path / "reset" / "reach")
    with BagReader(reset) as reader:
        topics, messages = dict(reader.topics), list(reader.messages())
    first_log_ns = min(message.log_time_ns for message in messages)
    second_log_ns = min(message.log_time_ns for message in messages
                        if message.topic == "/ground_truth" and message.msg.episode == 1)
    short = tmp_path / "short" / "reach"
    with BagWriter(short) as writer:
        for topic, msgtype in topics.items():
            writer.add_topic(topic, msgtype)
        for message in messages:
            if message.topic != "/tf_static" and first_log_ns + 600_000_000 < message.log_time_ns < second_log_ns:
                continue  # the first episode ends after 0.6 s
            if message.topic == "/ee_pose" and 0 <= message.log_time_ns - second_log_ns < 800_000_000:
                continue  # the second one's poses start 0.8 s in
            writer.write(message.topic, message.msg, message.log_time_ns)
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"detector.min_pixels": 1})  # a small gripper at 160x120
    posed, always, _ = label_perceiving_the_gripper_where_needed_and_always(short, config, tmp_path / "out",
                                                                             monkeypatch, ["gripper:goal"])
    first, second = posed[posed["episode"] == 0], posed[posed["episode"] == 1]
    assert len(first) == 16 and set(first["subject_source"]) == {"kinematics"}
    assert list(second["frame"]) == list(range(len(second)))
    # Stamped 0 to 680 ms into the episode, 40 ms apart: its first pose (800 ms) is beyond reward.ee_pose_max_age_s.
    sources = list(second["subject_source"])
    assert set(sources[:18]) == {"perception"} and set(sources[18:]) == {"kinematics"}
    ids = ["subject_id", "object_id"]
    assert posed.drop(columns=ids).equals(always.drop(columns=ids))
