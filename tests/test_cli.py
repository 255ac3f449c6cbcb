"""`tsg` commands are functions returning exit codes; each is tested by calling it."""

from __future__ import annotations

import gc
import json
import os
import sys
import types

import pytest

from trusted_scene_graph.bench.perception import bench_result, ratio_goal_text
from trusted_scene_graph.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from trusted_scene_graph.config import load_config_file, render_parameter_file


def test_config_prints_the_default_parameter_file(capsys):
    assert main(["config"]) == EXIT_OK
    assert capsys.readouterr().out == render_parameter_file()


def test_config_writes_overrides_into_a_file_that_loads_back(tmp_path):
    out = tmp_path / "params.yaml"
    assert main(["config", "--set", "trust.threshold=0.8", "--set", "extrinsic.translation_m=[0, 0, 1]",
                 "--out", str(out)]) == EXIT_OK
    config = load_config_file(out)
    assert config["trust.threshold"] == 0.8 and config["extrinsic.translation_m"] == [0.0, 0.0, 1.0]


def test_config_out_that_cannot_be_written_is_a_usage_error_naming_it(tmp_path, capsys):
    for out, reason in ((tmp_path / "no_dir" / "x.yaml", "No such file or directory"), (tmp_path, "Is a directory")):
        assert main(["config", "--out", str(out)]) == EXIT_USAGE
        assert capsys.readouterr().err == f"tsg config: error: --out {out}: cannot write the parameter file: {reason}\n"


def test_output_into_a_closed_pipe_ends_quietly_with_exit_1(monkeypatch, capsys):
    # tsg config | head -0: the reader is gone before tsg writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert main(["config"]) == EXIT_FAILED
    assert capsys.readouterr().err == ""


def test_an_out_of_range_override_is_a_usage_error_naming_the_parameter(capsys):
    assert main(["config", "--set", "trust.threshold=2"]) == EXIT_USAGE
    assert capsys.readouterr().err == "tsg config: error: trust.threshold: 2.0 is above the maximum 1.0\n"


def test_a_malformed_override_is_a_usage_error(capsys):
    assert main(["config", "--set", "trust.threshold"]) == EXIT_USAGE
    assert "--set expects name=value, got 'trust.threshold'" in capsys.readouterr().err


def test_bringup_with_a_config_file_that_does_not_exist_fails_before_starting_ros(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["bringup", "--config", str(missing)]) == EXIT_USAGE
    assert f"cannot read config file '{missing}'" in capsys.readouterr().err


def test_bringup_with_an_invalid_value_in_the_file_names_file_and_parameter(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    sync:\n      tolerance_s: -1.0\n")
    assert main(["bringup", "--config", str(bad)]) == EXIT_USAGE
    assert f"{bad}: sync.tolerance_s: -1.0 is below the minimum 0.0 s" in capsys.readouterr().err


@pytest.mark.dds
def test_bench_service_writes_the_latency_ratios(tmp_path, capfd):
    pytest.importorskip("trusted_scene_graph_msgs")
    out = tmp_path / "service.json"
    # EXIT_OK also says the client process exited with 0: the bench fails on any other exit code.
    assert main(["bench", "service", "--out", str(out), "--calls", "100", "--rate", "10"]) == EXIT_OK
    # The client process writes to the same stderr (fd 2): it used to abort at every exit, its spin thread still
    # inside rclpy's wait ("terminate called without an active exception", exit code -6).
    err = capfd.readouterr().err
    assert not [marker for marker in ("terminate called", "Aborted", "Traceback") if marker in err], err
    result = json.loads(out.read_text())
    for key in ("query_p50_ms", "query_p99_ms", "echo_p50_ms", "echo_p99_ms", "p99_ratio", "calls_per_s"):
        assert result[key] > 0, key
    assert result["p99_ratio"] == pytest.approx(result["query_p99_ms"] / result["echo_p99_ms"])
    assert result["query_invalid"] == 0  # every query found both objects in the graph
    assert result["frames_processed_during"] > 0  # frames were flowing while we measured
    assert result["concurrency"] == 4 and min(result["query_calls"], result["echo_calls"]) >= 100
    # Measured as tsg bringup runs: the start-up objects frozen out of the collector's passes (and unfrozen after).
    assert result["gc"]["frozen_objects"] > 0 and gc.get_freeze_count() == 0
    assert result["gc"]["full_collections"] >= 0
    goals = result["goals"]
    assert (goals["p99_ratio_max"], goals["calls_per_s_min"]) == (1.3, 500)
    assert goals["p99_ratio_met"] == (result["p99_ratio"] <= 1.3)
    assert goals["calls_per_s_met"] == (result["calls_per_s"] >= 500)
    assert goals["under_load"] and goals["met"] == (goals["p99_ratio_met"] and goals["calls_per_s_met"])


@pytest.mark.parametrize(("frames", "invalid"), [(0, 0), (40, 7)])
def test_bench_service_goals_are_not_met_without_frames_processed_or_with_queries_answered_invalid(frames, invalid):
    # "at >= 500 calls/s while frames are processed": a query that finds no fresh graph returns before its work.
    service = pytest.importorskip("trusted_scene_graph.bench.service")
    latencies = {"query": [0.004] * 200, "echo": [0.004] * 200}
    result = service.service_result(latencies, 0.1, 200, 4, frames_processed_during=frames, query_invalid=invalid)
    assert result["goals"]["p99_ratio_met"] and result["goals"]["calls_per_s_met"]
    assert (result["goals"]["under_load"], result["goals"]["met"]) == (False, False)


def test_bench_service_records_the_pauses_of_full_collections_only_within_its_block():
    service = pytest.importorskip("trusted_scene_graph.bench.service")
    with service.FullCollections() as collections:
        collections._on_collection("stop", {"generation": 2})  # the end of one that began before the block: ignored
        gc.collect(0)
        gc.collect(1)
        gc.collect(2)
    gc.collect(2)  # after the block: not recorded
    assert len(collections.pauses_s) == 1
    summary = collections.summary()
    assert summary["full_collections"] == 1
    assert summary["longest_full_collection_ms"] == pytest.approx(1e3 * collections.pauses_s[0])
    assert service.FullCollections().summary() == {"full_collections": 0, "longest_full_collection_ms": None}


def test_bench_service_fails_when_its_client_process_did_not_exit_cleanly():
    service = pytest.importorskip("trusted_scene_graph.bench.service")
    service._check_client_exit(0, terminated=False)  # the one clean exit: nothing raised
    for exitcode, terminated, how in ((-6, False, r"was killed by SIGABRT \(exit code -6\)"),
                                      (1, False, "exited with code 1"),
                                      (-15, True, "was still running 10 s after sending its results and was "
                                                  "terminated")):
        with pytest.raises(service.ServiceBenchError, match=f"the bench client process {how} after sending its "
                                                            "results; see its output above"):
            service._check_client_exit(exitcode, terminated)


def test_bench_service_refuses_an_odd_concurrency(capsys):
    assert main(["bench", "service", "--out", "unused.json", "--concurrency", "3"]) == EXIT_USAGE
    assert "concurrency must be even and at least 2 (half the calls in flight go to each service), got 3" in \
        capsys.readouterr().err


@pytest.mark.dds
@pytest.mark.sim
def test_demo_runs_the_bringup_process_and_writes_a_summary_with_ground_truth(tmp_path, capsys):
    pytest.importorskip("trusted_scene_graph_msgs")
    pytest.importorskip("mujoco")
    out = tmp_path / "demo"
    assert main(["demo", "--seconds", "4", "--rate", "6", "--width", "320", "--height", "240",
                 "--out", str(out)]) == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_published"] >= 15
    assert summary["graphs_received"] >= summary["frames_published"] // 2
    assert {o["label"] for o in summary["objects"]} == {"gripper", "cube", "table"}
    samples = summary["distance_samples"]
    assert len(samples) >= 5 and all(set(s) == {"t", "perceived_m", "true_m"} for s in samples)
    assert max(abs(s["perceived_m"] - s["true_m"]) for s in samples) < 0.02
    assert (out / "distance.png").stat().st_size > 10_000
    assert "gripper-object distance over time" in capsys.readouterr().out


def test_bench_perception_writes_the_ratio_and_scaling_measured_side_by_side(tmp_path, capsys):
    out = tmp_path / "perception.json"
    assert main(["bench", "perception", "--out", str(out), "--repeats", "3", "--detector-size", "tiny"]) == EXIT_OK
    result = json.loads(out.read_text())
    for key in ("perception_ms", "perception_ms_50", "detector_forward_ms"):
        assert result[key] > 0, key
    assert result["ratio"] == pytest.approx(result["perception_ms"] / result["detector_forward_ms"])
    assert result["scaling"] == pytest.approx(result["perception_ms_50"] / result["perception_ms"])
    assert "tiny test model" in result["detector"]
    assert {"lift_ms", "track_ms", "relate_ms", "trust_ms"} <= set(result["stages_ms_20"])
    # The trust stage has its own bench and goal; the geometry's time leaves it out, and the JSON has both.
    assert result["perception_with_trust_ms"] > result["perception_ms"]
    assert result["stages_ms_50"]["relations_kept"] > result["stages_ms_20"]["relations_kept"]
    # Against the miniature detector the ratio goal is not applicable, neither met nor missed.
    assert result["detector_size"] == "tiny"
    assert result["goals"]["ratio_met"] is None and isinstance(result["goals"]["scaling_met"], bool)
    assert "applies to the full detector only" in capsys.readouterr().out


@pytest.mark.parametrize(("perception_ms", "met"), [(0.4, True), (0.6, False)])
def test_the_ratio_goal_is_judged_against_the_full_detector(perception_ms, met):
    timings = {"total_ms": perception_ms}
    detector = {"detector_forward_ms": 1000.0, "detector": "full", "detector_size": "full", "detector_threads": 1}
    result = bench_result("perception", timings, timings, detector, 3, ratio_goal=0.0005, scaling_goal=7.0)
    assert result["goals"]["ratio_met"] is met
    assert ratio_goal_text(result) == "(goal <= 0.0005)"


@pytest.mark.dds
def test_bringup_with_missing_detector_weights_stops_naming_the_path_and_how_to_get_them(tmp_path, capsys):
    pytest.importorskip("trusted_scene_graph_msgs")
    missing = tmp_path / "grounding-dino-tiny"
    assert main(["bringup", "--set", "detector.backend=grounding_dino", "--set",
                 f"detector.model_path={missing}"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert f"model directory '{missing}' does not exist" in captured.err
    assert "hf download IDEA-Research/grounding-dino-tiny --local-dir DIR" in captured.err


# --- options checked before any work -----------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "perception", "--repeats", "0"], "--repeats 0: must be at least 1"),
    (["bench", "trust", "--repeats", "-1"], "--repeats -1: must be at least 1"),
    (["bench", "perception", "--detector-repeats", "0"], "--detector-repeats 0: must be at least 1"),
    (["bench", "trust", "--detector-repeats", "0"], "--detector-repeats 0: must be at least 1"),
])
def test_bench_counts_below_one_are_refused_naming_the_option(tmp_path, capsys, argv, message):
    out = tmp_path / "bench.json"
    assert main([*argv, "--out", str(out), "--detector-size", "tiny"]) == EXIT_USAGE
    assert capsys.readouterr().err == f"tsg {' '.join(argv[:2])}: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("bench", ["perception", "trust"])
def test_a_bench_out_that_cannot_be_written_is_refused_before_the_timing(tmp_path, capsys, monkeypatch, bench):
    from trusted_scene_graph.bench import perception, trust

    # The timing would fail the test: the --out check must come first.
    monkeypatch.setattr(perception, "time_perception", None)
    monkeypatch.setattr(trust, "time_trust", None)
    a_file = tmp_path / "file"
    a_file.write_text("")
    for out, reason in ((tmp_path, f"{tmp_path} is a directory; give a file path, e.g. {tmp_path / 'result.json'}"),
                        (a_file / "x.json", f"{a_file / 'x.json'}: {a_file} is not a directory")):
        assert main(["bench", bench, "--out", str(out), "--detector-size", "tiny"]) == EXIT_USAGE
        assert capsys.readouterr().err == f"tsg bench {bench}: error: --out {reason}\n"


def test_bench_json_is_written_atomically(tmp_path, monkeypatch):
    from trusted_scene_graph import report

    written = []
    monkeypatch.setattr(report, "replace_text", lambda path, text: written.append(path))
    report.write_json({"a": 1}, tmp_path / "deep" / "x.json")
    assert written == [tmp_path / "deep" / "x.json"] and (tmp_path / "deep").is_dir()


def test_bench_service_refuses_an_infinite_rate(capsys):
    assert main(["bench", "service", "--out", "unused.json", "--rate", "inf"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("tsg bench service: error: --rate inf: must be a positive finite frame rate "
                                       "[Hz]\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--seed", "-1"], "--seed -1: must be at least 0"),
    (["--width", "8"], "--width 8 --height 480: image size 8x480 is below 16x16"),
    (["--width", "100000", "--height", "100000"], "--width 100000: at most 4096 px (MuJoCo's offscreen framebuffer)"),
])
def test_demo_refuses_what_sim_record_refuses_before_starting(tmp_path, capsys, argv, message):
    assert main(["demo", *argv, "--out", str(tmp_path / "demo")]) == EXIT_USAGE
    assert capsys.readouterr().err == f"tsg demo: error: {message}\n"
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_an_out_that_is_a_file_or_lies_under_one(tmp_path, capsys):
    pytest.importorskip("trusted_scene_graph_msgs")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["demo", "--out", str(a_file)]) == EXIT_USAGE
    assert capsys.readouterr().err == f"tsg demo: error: --out {a_file} exists and is not a directory\n"
    assert main(["demo", "--out", str(a_file / "x")]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"tsg demo: error: cannot write to output directory {a_file / 'x'}: ")


@pytest.mark.parametrize(("argv", "message"), [
    (["--width", "100000", "--height", "100000"], "--width 100000: at most 4096 px (MuJoCo's offscreen framebuffer)"),
    (["--episodes", "0"], "--episodes 0: must be at least 1"),
])
def test_sim_record_names_the_option_of_a_bad_size_or_count(tmp_path, capsys, argv, message):
    assert main(["sim", "record", "--out", str(tmp_path / "bag"), *argv]) == EXIT_USAGE
    assert capsys.readouterr().err == f"tsg sim record: error: {message}\n"


# --- tsg config -----------------------------------------------------------------------------------------------------


def test_config_keeps_the_files_rclpy_parameters(tmp_path):
    from trusted_scene_graph.config.schema import load_parameter_file

    source, out = tmp_path / "a.yaml", tmp_path / "b.yaml"
    source.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n    qos_overrides:\n      /tf:\n"
                      "        subscription:\n          depth: 7\n")
    assert main(["config", "--config", str(source), "--set", "trust.threshold=0.7", "--out", str(out)]) == EXIT_OK
    config, builtins = load_parameter_file(out)
    assert config["trust.threshold"] == 0.7
    assert builtins == {"use_sim_time": True, "qos_overrides./tf.subscription.depth": 7}


def test_config_set_of_an_rclpy_parameter_says_where_to_set_it(capsys):
    assert main(["config", "--set", "use_sim_time=true"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "tsg config: error: 'use_sim_time' is rclpy's own parameter, not one of the schema: only the ROS nodes read "
        "it, from their parameter file (tsg bringup --config, or --ros-args --params-file) or `--ros-args -p "
        "use_sim_time:=VALUE`\n")


def test_config_out_replaces_an_existing_file_atomically(tmp_path, monkeypatch):
    from trusted_scene_graph import files

    out = tmp_path / "keep.txt"
    out.write_text("old")
    replaced = []
    real = files.replace_text
    monkeypatch.setattr(files, "replace_text", lambda path, text: replaced.append(path) or real(path, text))
    assert main(["config", "--out", str(out)]) == EXIT_OK
    assert replaced == [out] and out.read_text() == render_parameter_file()


def test_nothing_after_the_equals_sign_sets_a_string_parameter_to_the_empty_string(tmp_path):
    # `--set topics.ee_pose=` is how a shell user writes "subscribe none"; YAML alone reads it as null.
    out = tmp_path / "params.yaml"
    assert main(["config", "--set", "topics.ee_pose=", "--set", "reward.ee_tf_frame= ", "--out", str(out)]) == EXIT_OK
    config = load_config_file(out)
    assert config["topics.ee_pose"] == "" and config["reward.ee_tf_frame"] == ""
    assert main(["config", "--set", "trust.threshold="]) == EXIT_USAGE  # a number still needs one


def test_an_unquoted_reward_pair_with_settings_says_to_quote_it(capsys):
    assert main(["config", "--set", "reward.pairs=[gripper:cube,shaping=exp]"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "tsg config: error: --set reward.pairs=[gripper:cube,shaping=exp]: YAML split the list at each comma, so "
        "'shaping=exp' became an entry of its own; quote each pair with its settings: "
        "'reward.pairs=[\"gripper:cube,shaping=exp\"]'\n")
    assert main(["config", "--set", 'reward.pairs=["gripper:cube,shaping=exp"]']) == EXIT_OK


def test_help_shows_the_default_config_relative_to_the_checkout(capsys):
    from trusted_scene_graph.cli import DEFAULT_CONFIG

    with pytest.raises(SystemExit):
        main(["bench", "perception", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "config/default.yaml of the checkout" in out and str(DEFAULT_CONFIG.parent) not in out


def test_bench_service_reports_the_call_that_timed_out_not_another_threads_broken_barrier():
    # One echo call without an answer during the warm-up aborts the start barrier; the query threads waiting there
    # got a BrokenBarrierError, which was raised first and hid the real cause.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    service = pytest.importorskip("trusted_scene_graph.bench.service")

    class Client:
        def __init__(self, answers: bool) -> None:
            self.answers = answers

        def call(self, request, timeout_sec):
            if not self.answers:
                raise TimeoutError
            return types.SimpleNamespace(valid=True)

    started = threading.Barrier(2)
    shared = service._Calls(["query", "echo"], 10)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(service._call_loop, "query", Client(True), None, 3, started, shared),
                   pool.submit(service._call_loop, "echo", Client(False), None, 3, started, shared)]
        errors = []
        for future in futures:
            try:
                future.result()
            except service.ServiceBenchError as exc:
                errors.append(str(exc))
    assert errors == [f"echo call 0 got no answer within {service.CALL_TIMEOUT_S} s"]


def test_bench_service_waits_for_a_long_run_in_proportion_to_its_calls():
    service = pytest.importorskip("trusted_scene_graph.bench.service")
    assert service.client_run_timeout_s(1000) == service.CLIENT_RUN_TIMEOUT_S
    # 200,000 calls per service at the slowest rate measured (about 210 calls/s) take over 30 minutes.
    assert service.client_run_timeout_s(200_000) >= 2 * 200_000 / 210 * 4
