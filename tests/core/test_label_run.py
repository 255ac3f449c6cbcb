"""tsg label's run: which bags a folder holds, what --out may hold, the lock over a LeRobot run, the settings checked
before the manifest is written, what the command prints of a run's outcome, and LeRobot runs end to end on a tiny
dataset whose rewards come from its state features alone (no perception): the next-frame reward, the columns a source
may already have, resuming (killed midway) and refusing committed episodes whose source rows changed."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from lerobot_data import FRONT, FRONT_DEPTH, STATE, SyntheticFrame, build_lerobot_dataset, default_frame

from trusted_scene_graph import cli
from trusted_scene_graph.cli import EXIT_FAILED, EXIT_USAGE, UsageError, cmd_label, main, progress_bar
from trusted_scene_graph.clock import seconds_to_ns
from trusted_scene_graph.config.schema import load_config_file
from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.bag import BagWriter
from trusted_scene_graph.dataset.lerobot import LeRobotDataset, write_with_column
from trusted_scene_graph.label import ItemDone, LabelError, RunSummary
from trusted_scene_graph.label import lerobot as lerobot_labelling
from trusted_scene_graph.label import run as cli_label_run
from trusted_scene_graph.label.bags import find_bags
from trusted_scene_graph.label.engine import LOCK_FILE, STAGING_DIR
from trusted_scene_graph.label.lerobot import SOURCE_FILE, FrameSource
from trusted_scene_graph.label.run import (
    MANIFEST_FILE,
    EngineSettings,
    LabelOutcome,
    check_model_weights,
    check_ray_address,
    claim_output,
    clear_interrupted_assembly,
    manifest,
    run_label,
)
from trusted_scene_graph.signals import sigterm_interrupts

REPO = Path(__file__).resolve().parents[2]
TESTS_DIR = Path(__file__).resolve().parents[1]
BENCHMARK_CONFIG = REPO / "config" / "benchmark.yaml"
PAIRS = ["gripper:cube", "cube:goal"]


def bag_dir(path: Path) -> Path:
    """An empty bag: it opens (a single input bag is opened before --out is made), and holds no message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with BagWriter(path):
        pass
    return path


# --- which bags a folder holds --------------------------------------------------------------------------------------


def test_a_folder_of_bag_directories_and_loose_storage_files_labels_each_of_them(tmp_path):
    bag_dir(tmp_path / "bags" / "b")
    bag_dir(tmp_path / "bags" / "d")
    for name in ("a.mcap", "c.db3"):
        (tmp_path / "bags" / name).write_bytes(b"")
    (tmp_path / "bags" / "notes").mkdir()  # no bag: left alone
    assert [p.name for p in find_bags(tmp_path / "bags")] == ["a.mcap", "b", "c.db3", "d"]
    # One loose file beside a bag directory is a bag of its own too.
    (tmp_path / "bags" / "c.db3").unlink()
    assert [p.name for p in find_bags(tmp_path / "bags")] == ["a.mcap", "b", "d"]


def test_a_directory_with_one_storage_file_and_no_bag_directory_is_one_bag(tmp_path):
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "killed_0.mcap").write_bytes(b"")  # a recorder killed before metadata.yaml
    assert find_bags(tmp_path / "killed") == [tmp_path / "killed"]


def test_bags_whose_output_names_collide_are_refused_naming_both(tmp_path):
    bag_dir(tmp_path / "bags" / "run1")
    (tmp_path / "bags" / "run1.mcap").write_bytes(b"")
    (tmp_path / "bags" / "run2.mcap").write_bytes(b"")
    (tmp_path / "bags" / "run2.db3").write_bytes(b"")
    with pytest.raises(LabelError, match=r"bags whose output names collide \(run1/ and run1.mcap would both be "
                                         r"'run1'; run2.db3 and run2.mcap would both be 'run2'\)"):
        find_bags(tmp_path / "bags")


# --- what --out may hold ----------------------------------------------------------------------------------------


def small_dataset(root: Path) -> tuple[Path, FrameSource, object]:
    built = build_lerobot_dataset(root)
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"extrinsic.source": "static"})
    return built.root, FrameSource(FRONT, (1.0, 1.0, 1.0, 1.0), FRONT_DEPTH, FRONT_DEPTH), config


@pytest.mark.parametrize("kind", ["bags", "lerobot"])
def test_an_out_holding_only_hidden_entries_is_not_tsg_labels_and_is_refused_untouched(tmp_path, kind):
    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".keep").touch()
    if kind == "bags":
        source, frame_source, config = bag_dir(tmp_path / "bag"), None, load_config_file(BENCHMARK_CONFIG)
    else:
        source, frame_source, config = small_dataset(tmp_path / "dataset")
    with pytest.raises(LabelError, match=r"is not empty and has no tsg_label.json: tsg label did not write it \(it "
                                         r"holds \.git, \.keep\); choose a new or empty directory"):
        run_label(source, out, config, PAIRS, EngineSettings(), frame_source)
    assert sorted(p.name for p in out.iterdir()) == [".git", ".keep"]


def test_what_a_run_killed_while_claiming_left_does_not_make_out_foreign(tmp_path):
    out = tmp_path / "out"
    (out / "tsg_rewards").mkdir(parents=True)
    (out / "tsg_rewards" / f".{MANIFEST_FILE}.tmp").write_text("{")
    (out / "tsg_rewards" / LOCK_FILE).touch()
    claim_output(out, out / "tsg_rewards" / MANIFEST_FILE, {"kind": "lerobot"})
    assert json.loads((out / "tsg_rewards" / MANIFEST_FILE).read_text()) == {"kind": "lerobot"}


def test_a_manifest_whose_run_committed_nothing_is_replaced_and_one_with_items_is_kept(tmp_path):
    out = tmp_path / "out"
    claim_output(out, out / MANIFEST_FILE, {"kind": "bags", "pairs": ["a"]})
    (out / ".staging").mkdir()  # an attempt that failed: nothing committed
    claim_output(out, out / MANIFEST_FILE, {"kind": "bags", "pairs": ["b"]})
    assert json.loads((out / MANIFEST_FILE).read_text())["pairs"] == ["b"]
    (out / "bag1").mkdir()  # a committed item
    with pytest.raises(LabelError, match=r"labelled with other settings \(pairs differ\)"):
        claim_output(out, out / MANIFEST_FILE, {"kind": "bags", "pairs": ["a"]})


def test_a_manifest_with_the_config_fingerprint_of_before_2026_11_28_still_resumes(tmp_path):
    # Manifests then hashed the parameter file's text, whose strings are now quoted: the same config, another hash.
    source, frame_source, config = small_dataset(tmp_path / "dataset")
    out = tmp_path / "out"
    wanted = manifest("lerobot", source, config, PAIRS, frame_source, math.nan)
    assert wanted["config_sha256"] == config.sha256() != config.legacy_sha256()
    claim_output(out, out / MANIFEST_FILE, {**wanted, "config_sha256": config.legacy_sha256()})
    (out / "episode-000000").mkdir()  # a committed item
    claim_output(out, out / MANIFEST_FILE, wanted, {"config_sha256": [config.legacy_sha256()]})  # resumes
    other = config.with_overrides({"depth.max_m": 5.0})
    with pytest.raises(LabelError, match=r"labelled with other settings \(config_sha256 differ\)"):
        claim_output(out, out / MANIFEST_FILE, manifest("lerobot", source, other, PAIRS, frame_source, math.nan),
                     {"config_sha256": [other.legacy_sha256()]})


def test_an_interrupted_dataset_write_is_cleared_by_name_and_nothing_else_is_deleted(tmp_path):
    source, frame_source, config = small_dataset(tmp_path / "dataset")
    out = tmp_path / "out"
    claim_output(out, out / "tsg_rewards" / MANIFEST_FILE,
                 manifest("lerobot", source, config, PAIRS, frame_source, math.nan))
    (out / "data" / "chunk-000").mkdir(parents=True)  # moved in before the write was cut short
    (out / "videos").mkdir()
    (out / ".git").mkdir()  # not tsg label's
    (source / ".git").mkdir()  # a git clone's repository, which the dataset write does not copy
    (out / "my_notes.txt").write_text("mine")
    build = tmp_path / ".out.tsg-tmp-1234"
    build.mkdir()
    clear_interrupted_assembly(out, LeRobotDataset(source))
    assert sorted(p.name for p in out.iterdir()) == [".git", "my_notes.txt", "tsg_rewards"] and not build.exists()
    # The run refuses them before labelling anything (the dataset write would, once every episode is labelled).
    with pytest.raises(LabelError, match=r"holds \.git, my_notes.txt, which tsg label did not write there; move it "
                                         r"away"):
        run_label(source, out, config, PAIRS, EngineSettings(), frame_source)
    assert sorted(p.name for p in (out / "tsg_rewards").iterdir()) == [LOCK_FILE, MANIFEST_FILE]


def test_a_second_lerobot_run_is_refused_before_it_clears_or_labels_anything(tmp_path):
    source, frame_source, config = small_dataset(tmp_path / "dataset")
    out = tmp_path / "out"
    claim_output(out, out / "tsg_rewards" / MANIFEST_FILE,
                 manifest("lerobot", source, config, PAIRS, frame_source, math.nan))
    (out / "data").mkdir()  # the first run's dataset write, under way
    with open(out / "tsg_rewards" / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held by the first run
        with pytest.raises(LabelError, match=r"tsg_rewards is being labelled by another run"):
            run_label(source, out, config, PAIRS, EngineSettings(), frame_source)
    assert (out / "data").is_dir()


def test_a_second_bag_run_is_refused_before_it_claims_the_output(tmp_path):
    # The lock covers the manifest and the joined table too, not only the items: a second run writes nothing.
    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held by the first run
        with pytest.raises(LabelError, match=r"out is being labelled by another run"):
            run_label(bag_dir(tmp_path / "bag"), out, load_config_file(BENCHMARK_CONFIG), PAIRS, EngineSettings())
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


# --- settings checked before the manifest ------------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "match"), [
    (EngineSettings(workers=0), "workers must be at least 1, got 0"),
    (EngineSettings(max_retries=-1), "max_retries must be at least 0, got -1"),
    (EngineSettings(ray_address="127.0.0.1:6379"), "ray_address '127.0.0.1:6379' is only used by engine 'ray'"),
])
def test_bad_engine_settings_are_refused_before_the_manifest_is_written(tmp_path, engine, match):
    with pytest.raises(LabelError, match=match):
        run_label(bag_dir(tmp_path / "bag"), tmp_path / "out", load_config_file(BENCHMARK_CONFIG), PAIRS, engine)
    assert not (tmp_path / "out").exists()


def test_an_unparsable_ray_address_is_refused_before_the_manifest_without_starting_ray(tmp_path, monkeypatch):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed: --engine ray is refused for that first")
    monkeypatch.setattr("trusted_scene_graph.label.run.run_items", None)  # Ray starts there: calling it fails
    for address in ("not-an-address", "http://head:6379", "head:70000"):
        with pytest.raises(LabelError, match=rf"^--ray-address '{re.escape(address)}': expected HOST:PORT of a running "
                                             r"cluster's head \(e\.g\. 127\.0\.0\.1:6379\), ray://HOST:PORT"):
            run_label(bag_dir(tmp_path / "bag"), tmp_path / "out", load_config_file(BENCHMARK_CONFIG), PAIRS,
                      EngineSettings(engine="ray", ray_address=address))
        assert not (tmp_path / "out").exists()
        shutil.rmtree(tmp_path / "bag")


@pytest.mark.parametrize("address", ["ray://[::1]:10001", "ray://[::1]", "ray://[2001:db8::7]:10001/", "[::1]:6379",
                                     "ray://head:10001/"])
def test_a_bracketed_ipv6_host_is_accepted_in_a_ray_client_address_as_in_host_port(address):
    assert check_ray_address(address) is None


@pytest.mark.parametrize("address", ["ray://[::1", "ray://::1:10001", "ray://[::1]:", "ray://[::1]:70000",
                                     "ray://head:70000/"])
def test_a_malformed_ray_client_address_is_refused(address):
    # The last: a trailing slash once hid the port from its range check.
    with pytest.raises(LabelError, match=rf"^--ray-address '{re.escape(address)}': expected HOST:PORT of a running "):
        check_ray_address(address)


def test_a_ray_address_without_engine_ray_is_refused_by_the_options_that_fix_it(tmp_path, capsys):
    bag = bag_dir(tmp_path / "bag")
    with pytest.raises(UsageError, match=r"^--ray-address 127.0.0.1:1 is only used with --engine ray, not --engine "
                                         r"local; add --engine ray, or leave --ray-address out$"):
        cmd_label(BENCHMARK_CONFIG, [], bag, tmp_path / "o", PAIRS, "local", 1, "127.0.0.1:1", 3, None, None, None,
                  None, None, None, math.nan, False)
    assert main(["label", str(bag), "--config", str(BENCHMARK_CONFIG), "--out", str(tmp_path / "o"),
                 "--ray-address", "127.0.0.1:1"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("tsg label: error: --ray-address 127.0.0.1:1 is only used with --engine "
                                              "ray, not --engine local")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("pair", "named"), [
    ("gripper:cueb", "unknown object 'cueb' (did you mean 'cube'?); "),
    ("grpper:cube", "unknown object 'grpper' (did you mean 'gripper'?); "),
    ("gripper:gaol", "unknown object 'gaol' (did you mean 'goal'?); "),  # a robot frame's name is offered too
    ("gripper:xyzzy", "unknown object 'xyzzy'; "),  # nothing close: no guess
])
def test_an_unknown_label_in_a_pair_is_refused_with_the_closest_names(tmp_path, pair, named):
    with pytest.raises(LabelError, match=rf"^pair '{pair}': {re.escape(named)}the detector's labels are \['black "):
        run_label(bag_dir(tmp_path / "bag"), tmp_path / "out", load_config_file(BENCHMARK_CONFIG), [pair],
                  EngineSettings())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("backend", "parameter"), [("detector.backend=grounding_dino", "detector.model_path"),
                                                    ("depth.backend=monocular", "depth.model_path")])
def test_model_weights_that_are_not_there_are_refused_once_before_out_is_made(tmp_path, capsys, backend, parameter):
    # Each item's worker would load the model and fail the same way: "0 items labelled, N failed", N times the error.
    bags = tmp_path / "bags"
    bag_dir(bags / "a")
    bag_dir(bags / "b")
    out = tmp_path / "out"
    assert main(["label", str(bags), "--config", str(BENCHMARK_CONFIG), "--out", str(out), "--set", backend,
                 "--set", f"{parameter}=models/does-not-exist"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""  # no "0 items labelled"
    # Once, not once per item; "org/name" may be a model id, looked up in the local HF cache.
    assert re.fullmatch(rf"tsg label: error: {re.escape(parameter)}: 'models/does-not-exist' is neither a directory "
                        rf"\(relative to .*\) nor a model id in the local HF cache; download the weights .*\n",
                        captured.err)
    assert not out.exists()


def test_model_weights_are_checked_where_they_should_be_without_loading_them(tmp_path):
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"detector.backend": "grounding_dino"})
    with pytest.raises(LabelError, match=r"^detector.model_path is empty: this backend needs model weights; "):
        check_model_weights(config)
    (tmp_path / "weights.bin").touch()
    with pytest.raises(LabelError, match=r"^detector.model_path: '.*weights.bin' is a file, expected a model "):
        check_model_weights(config.with_overrides({"detector.model_path": str(tmp_path / "weights.bin")}))
    check_model_weights(config.with_overrides({"detector.model_path": str(tmp_path)}))  # a directory: loaded later
    check_model_weights(load_config_file(BENCHMARK_CONFIG))  # 'sim' detector, 'sensor' depth: no weights


@pytest.mark.parametrize("option", ["--workers", "--max-retries"])
def test_engine_counts_below_their_minimum_are_named_by_their_option(tmp_path, option):
    workers, retries = (0, 3) if option == "--workers" else (1, -1)
    with pytest.raises(UsageError, match=rf"^{option} {workers if option == '--workers' else retries}: must be at "
                                         rf"least {1 if option == '--workers' else 0}$"):
        cmd_label(BENCHMARK_CONFIG, [], bag_dir(tmp_path / "bag"), tmp_path / "o", PAIRS, "local", workers, None,
                  retries, None, None, None, None, None, None, math.nan, False)


@pytest.mark.parametrize(("invalid_reward", "overwrite_column", "named"), [
    (0.0, False, "--invalid-reward applies"), (math.nan, True, "--overwrite-column applies"),
    (-1.0, True, "--invalid-reward, --overwrite-column apply")])
def test_lerobot_only_reward_options_on_a_bag_are_refused_not_ignored(tmp_path, invalid_reward, overwrite_column,
                                                                      named):
    bag = bag_dir(tmp_path / "bag")
    with pytest.raises(UsageError, match=rf"^{named} to LeRobot datasets only; {re.escape(str(bag))} is not "
                                         "one$"):
        cmd_label(BENCHMARK_CONFIG, [], bag, tmp_path / "o", PAIRS, "local", 1, None, 3, None, None, None, None, None,
                  None, invalid_reward, overwrite_column)
    with pytest.raises(LabelError, match=r"is a rosbag2 input; (invalid_reward=|overwrite_column).* appl(y|ies) to "
                                         "LeRobot datasets only"):
        run_label(bag, tmp_path / "o", load_config_file(BENCHMARK_CONFIG), PAIRS, EngineSettings(),
                  invalid_reward=invalid_reward, overwrite_column=overwrite_column)
    assert not (tmp_path / "o").exists()


def test_a_bags_manifest_has_no_invalid_reward_and_an_older_one_with_it_still_matches(tmp_path):
    bag, out = bag_dir(tmp_path / "bag"), tmp_path / "out"
    config = load_config_file(BENCHMARK_CONFIG)
    wanted = manifest("bags", bag, config, PAIRS, None, None, "copy")
    assert "invalid_reward" not in wanted
    out.mkdir()
    (out / MANIFEST_FILE).write_text(json.dumps({**wanted, "invalid_reward": "nan"}))  # as earlier versions wrote
    (out / "bag").mkdir()  # a committed item: a differing manifest would be refused, not replaced
    claim_output(out, out / MANIFEST_FILE, wanted)  # raises when the settings differ


@pytest.mark.parametrize("kind", ["empty mcap", "garbage mcap", "broken metadata", "yaml file"])
def test_a_single_input_bag_that_cannot_be_opened_is_refused_before_out_is_made(tmp_path, capsys, kind):
    if kind == "empty mcap":
        source = tmp_path / "empty.mcap"
        source.write_bytes(b"")
    elif kind == "garbage mcap":
        source = tmp_path / "garbage.mcap"
        source.write_bytes(os.urandom(256))
    elif kind == "broken metadata":
        source = tmp_path / "bag"  # no readable storage file either: a valid mcap file would be read on its own
        source.mkdir()
        (source / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
        (source / "bag.mcap").write_bytes(b"")
    else:
        source = tmp_path / "params.yaml"
        source.write_text("/**:\n  ros__parameters: {}\n")
    out = tmp_path / "out"
    with pytest.raises(LabelError, match=rf"^cannot open bag {re.escape(str(source))}: "):
        run_label(source, out, load_config_file(BENCHMARK_CONFIG), PAIRS, EngineSettings())
    assert main(["label", str(source), "--config", str(BENCHMARK_CONFIG), "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"tsg label: error: cannot open bag {source}: ")
    assert not out.exists()


def test_no_reward_pairs_at_all_is_refused_up_front_with_exit_2(tmp_path, capsys):
    bag = bag_dir(tmp_path / "bag")
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"reward.pairs": []})
    with pytest.raises(LabelError, match=r"no reward pairs to label: give --pair SUBJECT:OBJECT \(repeatable\) or set "
                                         r"reward.pairs"):
        run_label(bag, tmp_path / "out", config, [], EngineSettings())
    assert main(["label", str(bag), "--config", str(BENCHMARK_CONFIG), "--set", "reward.pairs=[]",
                 "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert "tsg label: error: no reward pairs to label" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_intrinsics_must_be_finite(tmp_path):
    source, _, _ = small_dataset(tmp_path / "dataset")
    with pytest.raises(UsageError, match=r"--intrinsics 'inf,inf,1,1': expected four positive finite numbers"):
        cmd_label(BENCHMARK_CONFIG, [], source, tmp_path / "o", PAIRS, "local", 1, None, 3, FRONT, None, None,
                  "inf,inf,1,1", None, None, math.nan, False)


# --- what the command prints of an outcome ----------------------------------------------------------------------


KEPT = "tsg label: the other items are kept; "


@pytest.mark.parametrize(("failed", "worker_died", "hint"), [
    (("a",), (), "fix or remove the failed inputs\n"),
    (("a",), ("a",), "rerun the same command to retry the items whose worker died\n"),
    (("a", "b"), ("b",), "fix or remove the failed inputs, or rerun the same command to retry the items whose worker "
                         "died\n"),
])
def test_the_closing_hint_gives_only_the_remedies_that_apply(tmp_path, monkeypatch, capsys, failed, worker_died,
                                                             hint):
    summary = RunSummary(done=("c",), skipped=(), failed=dict.fromkeys(failed, "why"), frames=3, seconds=1.0,
                         attempts=3, worker_died=worker_died)
    monkeypatch.setattr("trusted_scene_graph.label.run.run_label",
                        lambda *args, **kwargs: LabelOutcome("bags", summary))
    assert cmd_label(BENCHMARK_CONFIG, [], tmp_path / "bags", tmp_path / "o", PAIRS, "local", 1, None, 3, None, None,
                     None, None, None, None, math.nan, False) == EXIT_FAILED
    assert capsys.readouterr().err.endswith(KEPT + hint)


def test_the_closing_hint_says_nothing_was_labelled_when_no_item_was(tmp_path, monkeypatch, capsys):
    summary = RunSummary(done=(), skipped=(), failed={"a": "why"}, frames=0, seconds=1.0, attempts=1,
                         worker_died=())
    monkeypatch.setattr("trusted_scene_graph.label.run.run_label",
                        lambda *args, **kwargs: LabelOutcome("bags", summary))
    assert cmd_label(BENCHMARK_CONFIG, [], tmp_path / "bags", tmp_path / "o", PAIRS, "local", 1, None, 3, None, None,
                     None, None, None, None, math.nan, False) == EXIT_FAILED
    assert capsys.readouterr().err.endswith("tsg label: nothing was labelled; fix or remove the failed inputs\n")


def test_an_item_labelled_without_a_frame_and_an_items_note_are_warned_of(tmp_path, monkeypatch, capsys):
    def run_label_stub(*args, progress, on_items, **kwargs):
        on_items(2)
        progress(ItemDone("empty", 0, 0.1))
        progress(ItemDone("full", 5, 0.1))
        outcome = LabelOutcome("bags", RunSummary(done=("empty", "full"), skipped=(), failed={}, frames=5,
                                                  seconds=0.2, attempts=2))
        outcome.warnings = {"full": "the bag is cut short"}
        return outcome

    monkeypatch.setattr("trusted_scene_graph.label.run.run_label", run_label_stub)
    bars = []
    monkeypatch.setattr(cli, "progress_bar", lambda *columns: bars.append(progress_bar(*columns)) or bars[-1])
    assert cmd_label(BENCHMARK_CONFIG, [], tmp_path / "bags", tmp_path / "o", PAIRS, "local", 1, None, 3, None, None,
                     None, None, None, None, math.nan, False) == 0
    err = capsys.readouterr().err
    assert "tsg label: warning: empty: labelled no frame (it has no message on the config's colour topic)" in err
    assert "tsg label: warning: full: the bag is cut short" in err and "full: labelled no frame" not in err
    assert (bars[0].tasks[0].completed, bars[0].tasks[0].total) == (2, 2)  # "2/2 items", not "2/?"


def test_a_dataset_whose_cameras_are_all_videos_is_refused_saying_videos_are_not_decoded(tmp_path):
    built = build_lerobot_dataset(tmp_path / "dataset", with_depth=False)
    info_path = built.root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"][FRONT]["dtype"] = "video"
    info_path.write_text(json.dumps(info))
    with pytest.raises(UsageError, match=r"dataset stores no camera as images \(its cameras are the video features "
                                         r"\['observation.images.front', 'observation.images.wrist'\]\): tsg label "
                                         r"reads image features only and does not decode videos"):
        cmd_label(BENCHMARK_CONFIG, [], built.root, tmp_path / "o", PAIRS, "local", 1, None, 3, None, None, None,
                  "1,1,1,1", None, None, math.nan, False)
    assert not (tmp_path / "o").exists()


def test_the_only_image_feature_not_named_by_depth_or_instances_is_the_camera(tmp_path, monkeypatch):
    built = build_lerobot_dataset(tmp_path / "dataset")  # front and its depth as images
    assert LeRobotDataset(built.root).image_keys == [FRONT, FRONT_DEPTH]
    sources = []
    monkeypatch.setattr("trusted_scene_graph.label.run.run_label", lambda source, out, config, pairs, engine,
                        frame_source, **kwargs: sources.append(frame_source) or LabelOutcome("lerobot", None))
    assert cmd_label(BENCHMARK_CONFIG, [], built.root, tmp_path / "o", PAIRS, "local", 1, None, 3, None, FRONT_DEPTH,
                     None, "1,1,1,1", None, None, math.nan, False) == 0
    assert sources[0].camera == FRONT
    with pytest.raises(UsageError, match=r"--camera is required: .* has image features \['observation\.images\.front', "
                                         r"'observation\.images\.front_depth'\]"):
        cmd_label(BENCHMARK_CONFIG, [], built.root, tmp_path / "o", PAIRS, "local", 1, None, 3, None, None, None,
                  "1,1,1,1", None, None, math.nan, False)


# --- LeRobot runs, with rewards from the state features ---------------------------------------------------------

POSE_PAIRS = ["gripper:goal"]


def label_poses(source: Path, out: Path, **options) -> LabelOutcome:
    """Label ``source`` with gripper:goal, both positions read from observation.state ([0:3], [3:6]): every frame has
    a valid reward, and nothing is perceived."""
    config = load_config_file(BENCHMARK_CONFIG).with_overrides({"extrinsic.source": "static"})
    frame_source = FrameSource(FRONT, (1.0, 1.0, 1.0, 1.0), FRONT_DEPTH, FRONT_DEPTH, f"{STATE}[0:3]", f"{STATE}[3:6]")
    return run_label(source, out, config, POSE_PAIRS, EngineSettings(), frame_source, **options)


def output_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


@pytest.mark.parametrize("invalid_reward", [math.nan, -5.0])
def test_next_reward_is_the_next_frames_and_the_last_frame_of_an_episode_has_none(tmp_path, invalid_reward):
    source = build_lerobot_dataset(tmp_path / "dataset").root
    out = tmp_path / "out"
    assert label_poses(source, out, invalid_reward=invalid_reward).ok
    labelled = LeRobotDataset(out)
    for episode in labelled.episodes:
        table = labelled.episode_table(episode.episode_index, columns=["next.reward", "next.reward_valid"])
        own = pq.read_table(out / "tsg_rewards" / f"episode-{episode.episode_index:06d}" / "rewards.parquet")
        assert all(own.column("valid").to_pylist())
        expected = np.append(own.column("reward").to_numpy()[1:], invalid_reward).astype(np.float32)
        np.testing.assert_array_equal(table.column("next.reward").to_numpy(), expected)
        # The last frame's next.reward would be its own reward again: no next frame, so no valid reward.
        assert table.column("next.reward_valid").to_pylist() == [True] * (episode.length - 1) + [False]
    stats = json.loads((out / "meta" / "stats.json").read_text())["next.reward_valid"]
    assert stats["count"] == [9] and stats["mean"] == [pytest.approx(6 / 9)]


@pytest.mark.parametrize("existing", [["next.reward_valid"], ["next.reward", "next.reward_valid"]])
def test_a_source_with_either_output_column_is_refused_up_front_unless_overwrite_column_is_given(tmp_path, existing):
    built = LeRobotDataset(build_lerobot_dataset(tmp_path / "dataset").root)
    lengths = {e.episode_index: e.length for e in built.episodes}
    columns = {name: {e: np.zeros(n, bool) for e, n in lengths.items()} for name in existing}
    source = write_with_column(built, tmp_path / "with_columns", "other", {e: np.zeros(n) for e, n in lengths.items()},
                               extra_bool_columns=columns).root
    with pytest.raises(LabelError, match=rf"already has the column\(s\) {re.escape(str(existing))}; pass "
                                         rf"--overwrite-column to replace (it|them)$"):
        label_poses(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any episode is labelled
    assert label_poses(source, tmp_path / "out", overwrite_column=True).ok
    valid = LeRobotDataset(tmp_path / "out").episode_table(0, columns=["next.reward_valid"])
    assert valid.column("next.reward_valid").to_pylist() == [True, True, False]


def shifted_frame(episode_index: int, frame_index: int, height: int, width: int) -> SyntheticFrame:
    """Other content for the same episode lengths (another recording)."""
    return default_frame(episode_index + 10, frame_index, height, width)


@pytest.mark.parametrize("complete", [True, False])
def test_committed_episodes_whose_source_rows_changed_are_refused_and_rewritten_identical_files_are_not(tmp_path,
                                                                                                       complete):
    source, out = tmp_path / "dataset", tmp_path / "out"
    build_lerobot_dataset(source)
    assert label_poses(source, out).ok
    if not complete:  # a dataset write cut short: the episodes are committed, the dataset not written
        (out / "meta" / "info.json").unlink()
    record = json.loads((out / "tsg_rewards" / "episode-000001" / SOURCE_FILE).read_text())
    assert record["episode_index"] == 1 and record["frames"] == 4 and record["data_file"] == (
        "data/chunk-000/file-000.parquet")
    # The same rows written again (a fresh download: new mtimes, same content): the rewards are reused.
    for data_file in (source / "data").rglob("*.parquet"):
        data_file.write_bytes(data_file.read_bytes())
        os.utime(data_file, ns=(record["mtime_ns"] + 10**9, record["mtime_ns"] + 10**9))
    before = output_digest(out)
    assert label_poses(source, out).ok
    if complete:  # only the records of the source rows changed: they hold the files' new mtimes
        after = output_digest(out)
        assert {k for k in after if after[k] != before.get(k)} == {
            f"tsg_rewards/episode-{e:06d}/{SOURCE_FILE}" for e in range(3)}
        assert after.keys() == before.keys()
    assert json.loads((out / "tsg_rewards" / "episode-000001" / SOURCE_FILE).read_text()) == {
        **record, "mtime_ns": record["mtime_ns"] + 10**9}
    # Other episodes of the same lengths at the same path: the committed rewards would be stale.
    shutil.rmtree(source)
    build_lerobot_dataset(source, frame_fn=shifted_frame)
    with pytest.raises(DatasetError, match=r"episode 0 of .*dataset changed since its rewards were committed to "
                                           r".*tsg_rewards/episode-000000: its rows of \['timestamp', 'frame_index', "
                                           r"'observation.state', .*\] differ from the 3 frames labelled then \(3 "
                                           r"frames now\); the rewards would be stale: label into a fresh --out$"):
        label_poses(source, out)
    assert label_poses(source, tmp_path / "fresh").ok


@pytest.mark.parametrize("complete", [True, False])
def test_a_rerun_after_a_touch_records_the_new_mtimes_so_the_next_rerun_hashes_nothing(tmp_path, monkeypatch,
                                                                                      complete):
    source, out = build_lerobot_dataset(tmp_path / "dataset").root, tmp_path / "out"
    assert label_poses(source, out).ok
    if not complete:
        (out / "meta" / "info.json").unlink()
    hashed = []
    fingerprint = lerobot_labelling.rows_fingerprint
    monkeypatch.setattr(lerobot_labelling, "rows_fingerprint", lambda table: hashed.append(table) or fingerprint(table))
    for data_file in (source / "data").rglob("*.parquet"):
        os.utime(data_file)  # a copy or a fresh download of the same content: a new mtime
    assert label_poses(source, out).ok
    assert len(hashed) == 3  # every committed episode, once, as its data file's mtime changed
    hashed.clear()
    assert label_poses(source, out).ok
    assert hashed == []  # the first rerun recorded the new mtimes
    assert not list((out / "tsg_rewards").rglob(f".{SOURCE_FILE}.tmp"))


def test_committed_episodes_without_a_record_of_their_source_rows_are_refused(tmp_path):
    source, out = build_lerobot_dataset(tmp_path / "dataset").root, tmp_path / "out"
    assert label_poses(source, out).ok
    (out / "meta" / "info.json").unlink()
    (out / "tsg_rewards" / "episode-000002" / SOURCE_FILE).unlink()
    with pytest.raises(DatasetError, match=rf"episode 2's committed rewards \(.*episode-000002\) have no "
                                           rf"{SOURCE_FILE} recording the source rows .*: label into a fresh --out$"):
        label_poses(source, out)


KILL_AFTER_FIRST_EPISODE = """
import os, signal, sys
from pathlib import Path
sys.path[:0] = [{tests!r}, {core!r}]
import test_label_run
from trusted_scene_graph.label import run
label_episode_item = run.label_episode_item

def killed_on_the_second_episode(job, staging_dir):
    frames = label_episode_item(job, staging_dir)  # written into staging, never committed
    if job.episode_index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return frames

run.label_episode_item = killed_on_the_second_episode
test_label_run.label_poses(Path({source!r}), Path({out!r}))
"""


def test_a_lerobot_run_killed_after_its_first_episode_resumes_to_byte_identical_outputs(tmp_path):
    source = build_lerobot_dataset(tmp_path / "dataset").root
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert label_poses(source, clean).ok
    script = KILL_AFTER_FIRST_EPISODE.format(tests=str(TESTS_DIR), core=str(Path(__file__).parent),
                                             source=str(source), out=str(killed))
    job = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert job.returncode == -9, job.stderr
    items = killed / "tsg_rewards"
    assert sorted(p.name for p in items.iterdir() if not p.name.startswith(".")) == ["episode-000000", MANIFEST_FILE]
    assert list((items / STAGING_DIR).glob("episode-000001/*/rewards.parquet"))  # the uncommitted attempt
    assert not LeRobotDataset.is_dataset(killed)
    first = {k: v for k, v in output_digest(killed).items() if k.startswith("tsg_rewards/episode-000000/")}
    assert first and first == {k: v for k, v in output_digest(clean).items() if k in first}

    outcome = label_poses(source, killed)
    assert outcome.summary.skipped == ("episode-000000",) and outcome.summary.done == ("episode-000001",
                                                                                       "episode-000002")
    assert not (items / STAGING_DIR).exists()
    assert output_digest(killed) == output_digest(clean)


# --- stopping a run: SIGTERM as Ctrl-C ----------------------------------------------------------------------------


TERMINATED_NOTE = "tsg label: terminated (SIGTERM); rerun the same command to finish (labelled items are kept)\n"


def two_bags(root: Path) -> Path:
    bag_dir(root / "bags" / "a")
    bag_dir(root / "bags" / "b")
    return root / "bags"


def label_args(bags: Path, out: Path, *options: str) -> list[str]:
    return ["label", str(bags), "--config", str(BENCHMARK_CONFIG), "--out", str(out), *options]


@pytest.mark.parametrize("fps", [10, 15, 30, 50])
def test_lerobot_frames_a_period_apart_are_stamped_the_same_nanoseconds_apart_at_every_frame(fps):
    # LeRobot stores frame_index / fps as float32 (0.2 is 0.200000003): read as written, a pose one period away would
    # be within a limit of one period (reward.ee_pose_max_age_s) at some frames and not at others.
    frames = np.arange(300)
    stamps = lerobot_labelling.frame_stamps_ns((frames / fps).astype(np.float32), frames, fps)
    assert set(np.diff(stamps).tolist()) == {seconds_to_ns(1 / fps)}
    assert stamps[0] == 0


def test_lerobot_timestamps_other_than_frame_index_over_fps_are_taken_as_they_are():
    clock_s = np.array([0.0, 0.0331, 0.0672, 0.1004])  # recorded from a clock, not frame_index / fps
    assert lerobot_labelling.frame_stamps_ns(clock_s, np.arange(4), 30).tolist() == [0, 33_100_000, 67_200_000,
                                                                                     100_400_000]


def test_sigterm_stops_a_run_in_process_with_a_note_exit_143_and_no_staging_left(tmp_path, monkeypatch, capsys):
    bags, out = two_bags(tmp_path), tmp_path / "out"

    def terminated_midway(job, staging_dir: Path) -> int:
        (staging_dir / "part").write_text("half an item")
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            raise AssertionError("SIGTERM is not handled: it would end the test process")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the handler raises in here
        raise AssertionError("SIGTERM did not stop the item")

    monkeypatch.setattr("trusted_scene_graph.label.run.label_bag_item", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    assert main(label_args(bags, out)) == 143
    assert capsys.readouterr().err == TERMINATED_NOTE
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, MANIFEST_FILE]  # no item, no .staging
    assert signal.getsignal(signal.SIGTERM) is before  # the handler was the run's only


def test_a_sigterm_handler_ray_init_installs_gives_way_to_the_runs_own():
    # ray.init installs a SIGTERM handler of its own (sys.exit(15), with a stack dump) and ray.shutdown leaves it:
    # with --engine ray a SIGTERM would end the run without the note or the staging cleanup.
    from trusted_scene_graph.label.engine import _sigterm_handler_kept

    with sigterm_interrupts():
        runs_own = signal.getsignal(signal.SIGTERM)
        with _sigterm_handler_kept():
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is runs_own


def test_a_second_signal_while_a_stopped_run_ends_its_workers_is_ignored_until_it_has():
    from trusted_scene_graph.label.engine import _stop_signals_ignored

    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with _stop_signals_ignored():
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process
        time.sleep(0.05)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def hanging_bag_item(job, staging_dir: Path) -> int:
    """A bag's work function (module level: worker processes import it) that writes part of its item, leaves its
    process id in ``<bags' parent>/running`` and waits there for the run to be stopped."""
    (staging_dir / "part").write_text("half an item")
    running = Path(job.source).parents[1] / "running"
    running.mkdir(exist_ok=True)
    (running / str(os.getpid())).touch()
    time.sleep(120)
    return 0


HANGING_RUN = """
import sys
sys.path[:0] = [{tests!r}, {core!r}]
import test_label_run
from trusted_scene_graph.cli import main
from trusted_scene_graph.label import run
run.label_bag_item = test_label_run.hanging_bag_item
sys.exit(main({args!r}))
"""


def test_sigterm_stops_a_run_on_worker_processes_as_ctrl_c_does_and_leaks_no_semaphore(tmp_path):
    bags, out = two_bags(tmp_path), tmp_path / "out"
    script = HANGING_RUN.format(tests=str(TESTS_DIR), core=str(Path(__file__).parent),
                                args=label_args(bags, out, "--workers", "2"))
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    running = tmp_path / "running"
    try:
        deadline = time.monotonic() + 90.0
        while len(list(running.iterdir()) if running.is_dir() else []) < 2:  # both workers inside an item
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the two items did not start within 90 s"
            time.sleep(0.05)
        stopped_s = time.monotonic()
        driver.send_signal(signal.SIGTERM)  # to the driver alone, as `kill PID` sends it
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # Exit 143, not killed by the signal (-15); the note alone: no resource_tracker warning of leaked semaphores.
    assert (driver.returncode, stdout, stderr) == (143, "", TERMINATED_NOTE)
    assert time.monotonic() - stopped_s < 30.0  # the items' 120 s were not waited for
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, MANIFEST_FILE]  # no item, no .staging
    assert not [pid for pid in (int(p.name) for p in running.iterdir()) if alive(pid)]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie awaiting a reaper that a container may lack counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_out_that_cannot_be_written_is_refused_naming_it_not_a_traceback(tmp_path):
    # A read-only or full file system, or (here, as root too) a path through a file.
    source, frame_source, config = small_dataset(tmp_path / "dataset")
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "out"
    with pytest.raises(LabelError, match=rf"^cannot write into {re.escape(str(out / 'tsg_rewards'))}: Not a "
                                         r"directory"):
        run_label(source, out, config, PAIRS, EngineSettings(), frame_source)


def test_an_out_that_became_unwritable_during_the_run_is_an_error_line_keeping_the_items(tmp_path, monkeypatch,
                                                                                        capsys):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "rewards.parquet"))

    monkeypatch.setattr(cli_label_run, "run_label", full_disk)
    assert cmd_label(None, [], tmp_path, tmp_path / "out", ["gripper:cube"], "local", 1, None, 3, None, None, None,
                     None, None, None, math.nan, False) == EXIT_FAILED
    assert capsys.readouterr().err == (f"tsg label: error: cannot write {tmp_path / 'out' / 'rewards.parquet'}: No "
                                       "space left on device; rerun the same command once it can be written "
                                       "(labelled items are kept)\n")


def test_a_finished_dataset_of_a_source_that_gained_an_episode_since_is_refused_not_called_done(tmp_path):
    source = build_lerobot_dataset(tmp_path / "dataset").root
    out = tmp_path / "out"
    assert label_poses(source, out).ok
    shutil.rmtree(source)
    build_lerobot_dataset(tmp_path / "dataset", episode_lengths=(3, 4, 2, 5))
    with pytest.raises(LabelError, match=rf"{re.escape(str(out))} is the labelled dataset of .* as it was: 3 episodes "
                                         r"\(9 frames\), where the source now has 4 episodes \(14 frames\); label into "
                                         r"a fresh --out"):
        label_poses(source, out)


def test_an_episodes_job_names_its_dataset_by_an_absolute_path(tmp_path, monkeypatch):
    # A Ray cluster's workers need not share the driver's working directory.
    source, frame_source, config = small_dataset(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    jobs = lerobot_labelling.lerobot_jobs(LeRobotDataset(Path("dataset")), config, PAIRS, frame_source)
    assert {item.payload.root for item in jobs} == {str(source.resolve())}


def test_clearing_an_interrupted_write_into_a_bracketed_out_touches_only_its_own_build(tmp_path):
    source, _, _ = small_dataset(tmp_path / "dataset")
    out = tmp_path / "ep[1]"
    out.mkdir()
    own, neighbours = tmp_path / ".ep[1].tsg-tmp-1-a", tmp_path / ".ep1.tsg-tmp-1-b"  # another run's, into ep1
    own.mkdir()
    neighbours.mkdir()
    clear_interrupted_assembly(out, LeRobotDataset(source))
    assert not own.exists() and neighbours.exists()
