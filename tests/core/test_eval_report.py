"""``tsg eval`` report helpers: the output directory check, provenance, number formats and target applicability."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

import trusted_scene_graph
from trusted_scene_graph.evaluation import EvaluationError
from trusted_scene_graph.evaluation.report import (
    MIN_TARGET_SAMPLES,
    SIM_TARGETS,
    _fmt,
    _fmt_column,
    _fmt_metric,
    git_commit,
    ground_truth_note,
    missing_directories,
    not_applicable,
    prepare_output_dir,
    provenance,
    remove_empty_directories,
    render_markdown,
    report_title,
    target_rows,
    target_samples,
)
from trusted_scene_graph.trust.threshold import PRUNE_ALL_THRESHOLD


def _metrics(**inputs: Any) -> dict[str, Any]:
    """A metrics dict with the input flags target_rows reads and every target's value undefined."""
    base = {"has_ground_truth": True, "ground_truth_topic": "/ground_truth", "has_ee_pose": True,
            "ee_pose_topic": "/ee_pose", "ground_truth_with_gripper": 5, "ground_truth_with_goal": 5,
            "bag_topics": {}}
    return {"input": {**base, **inputs},
            "distance": {"ee_object": {"count": 0}, "spearman": math.nan},
            "relations": {"precision_kept": 0.5, "recall_kept": 0.9}}


def test_the_output_directory_is_created_and_a_file_in_its_place_is_refused(tmp_path: Path) -> None:
    assert prepare_output_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("user data")
    with pytest.raises(EvaluationError, match=f"output directory {tmp_path / 'file'} exists and is not a directory"):
        prepare_output_dir(tmp_path / "file")
    with pytest.raises(EvaluationError, match=f"cannot write to output directory {tmp_path / 'file' / 'sub'}"):
        prepare_output_dir(tmp_path / "file" / "sub")
    assert (tmp_path / "file").read_text() == "user data"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into any directory")
def test_an_unwritable_output_directory_is_refused_by_name(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(EvaluationError, match=f"cannot write to output directory {locked}"):
            prepare_output_dir(locked)
    finally:
        locked.chmod(0o700)


def test_git_commit_is_none_outside_a_checkout_and_heads_commit_inside(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == (None, None)
    package_dir = Path(trusted_scene_graph.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package_dir, capture_output=True, text=True, check=False)
    commit, dirty = git_commit(package_dir)
    if head.returncode != 0:
        assert (commit, dirty) == (None, None)
    else:
        assert commit == head.stdout.strip() and isinstance(dirty, bool)


def test_provenance_names_the_inputs_version_and_an_equivalent_command(tmp_path: Path) -> None:
    run = provenance(tmp_path / "bag dir", tmp_path / "out", Path("config/benchmark.yaml"),
                     ["trust.threshold=0.7"], 5, "/gt")
    assert run["bag"] == str((tmp_path / "bag dir").resolve())
    assert run["config"] == str(Path("config/benchmark.yaml").resolve())
    assert run["overrides"] == ["trust.threshold=0.7"] and run["package_version"] == trusted_scene_graph.__version__
    assert shlex.split(run["command"]) == ["tsg", "eval", str(tmp_path / "bag dir"), "--config",
                                           "config/benchmark.yaml", "--set", "trust.threshold=0.7", "--out",
                                           str(tmp_path / "out"), "--max-frames", "5", "--ground-truth-topic", "/gt"]
    assert provenance(tmp_path, tmp_path, None, [], None, "/ground_truth")["config"] is None


def test_the_title_names_the_variant_and_the_overrides(tmp_path: Path) -> None:
    assert report_title(tmp_path / "bag", tmp_path / "thr07", ["trust.threshold=0.7"]) == \
        "Evaluation: thr07 (bag bag; --set trust.threshold=0.7)"
    assert report_title(tmp_path / "bag", tmp_path / "base", []) == "Evaluation: base (bag bag)"


def test_small_values_keep_their_digits_and_distances_show_in_centimetres() -> None:
    assert _fmt(0.000412) == "0.000412"
    assert _fmt(0.9964) == "0.996" and _fmt(0.0) == "0.000" and _fmt(math.nan) == "n/a" and _fmt(7) == "7"
    assert _fmt_metric("median_abs_error_close_m", 0.0042) == "0.42 cm"
    assert _fmt_metric("median_abs_error_close_m", None) == "n/a"
    assert _fmt_metric("recall", 0.0042) == "0.0042"


def test_targets_the_bag_cannot_have_are_not_applicable_not_missing() -> None:
    def statuses(metrics: dict[str, Any]) -> dict[str, str]:
        return {metric.strip("`"): status for metric, _, _, status in target_rows(metrics)}

    without_ee = statuses(_metrics(has_ee_pose=False))
    assert without_ee["distance.ee_object.median_abs_error_close_m"] == \
        "not applicable: no end-effector pose (/ee_pose) in the bag"
    assert without_ee["distance.spearman"].startswith("not applicable")
    assert without_ee["relations.precision_kept"] == "missed" and without_ee["relations.recall_kept"] == "met"
    assert statuses(_metrics(ground_truth_with_gripper=0))["distance.spearman"] == \
        "not applicable: no gripper in the ground truth"
    # The bag has what the ee distances need, yet none was measured: that is missing data, not "not applicable".
    assert statuses(_metrics())["distance.ee_object.within_0_5x_2x"] == "no data"
    assert not_applicable(_metrics(ground_truth_with_goal=0), "reward.value_order_spearman") == "the task has no goal"
    assert not_applicable(_metrics(), "reward.value_order_spearman") is None
    no_truth = statuses(_metrics(has_ground_truth=False))
    assert set(no_truth.values()) == {"not applicable: no ground truth on /ground_truth"}
    rows = {metric.strip("`"): (value, target) for metric, value, target, _ in target_rows(_metrics())}
    assert rows["distance.ee_object.median_abs_error_close_m"] == ("n/a", "<= 1.50 cm")


def test_a_target_measured_on_too_few_samples_is_not_judged_and_says_how_many() -> None:
    metrics = _metrics()
    # Three far pairs, all within the bands: "100 %" of 3 pairs cannot show 99 %.
    metrics["distance"] = {"spearman": 0.99, "spearman_pairs": 40, "ee_object": {
        "count": 43, "count_far": 3, "count_close": 40, "within_0_5x_2x": 1.0, "within_0_9x_1_1x": 1.0,
        "median_abs_error_close_m": 0.002}}
    metrics["relations"] = {"precision_kept": 0.5, "recall_kept": 0.9, "kept": MIN_TARGET_SAMPLES,
                            "true_edges": MIN_TARGET_SAMPLES - 1}
    statuses = {metric.strip("`"): status for metric, _, _, status in target_rows(metrics)}
    assert statuses == {
        "distance.ee_object.within_0_5x_2x": "too few samples (n=3)",
        "distance.ee_object.within_0_9x_1_1x": "too few samples (n=3)",
        "distance.ee_object.median_abs_error_close_m": "met",  # 40 close pairs
        "distance.spearman": "met",  # over the 40 end-effector pairs of the ranked series
        "relations.precision_kept": "missed",  # 20 kept edges: judged
        "relations.recall_kept": f"too few samples (n={MIN_TARGET_SAMPLES - 1})",
    }
    assert [target_samples(metrics, path) for path, _, _ in SIM_TARGETS] == [3, 3, 40, 40, 20, 19]
    # A median rho over series of a few frames is not judged, however many unranked pairs the bag has besides.
    metrics["distance"].update(spearman_pairs=3, ee_object={**metrics["distance"]["ee_object"], "count": 22})
    assert {metric.strip("`"): status for metric, _, _, status in target_rows(metrics)}[
        "distance.spearman"] == "too few samples (n=3)"
    # A metrics.json without the counts (written before they were read) is judged on its values, as it was.
    assert target_samples(_metrics(), "relations.precision_kept") is None
    assert {metric.strip("`"): status for metric, _, _, status in target_rows(_metrics())}[
        "relations.precision_kept"] == "missed"


def test_the_ground_truth_note_names_the_topic_and_the_option() -> None:
    assert ground_truth_note(_metrics()) is None
    note = ground_truth_note(_metrics(has_ground_truth=False))
    assert "no ground truth on topic /ground_truth" in note and "--ground-truth-topic" in note
    elsewhere = ground_truth_note(_metrics(has_ground_truth=False, bag_topics={
        "/sim/truth": {"type": "trusted_scene_graph_msgs/msg/GroundTruth", "messages": 3, "read": False}}))
    assert "pass --ground-truth-topic /sim/truth" in elsewhere


def test_reward_errors_show_in_centimetres_and_a_column_keeps_one_format() -> None:
    assert _fmt_metric("reward.abs_error_median", 0.00133) == "0.13 cm"
    assert _fmt_metric("reward.abs_error_p95", 0.0481) == "4.81 cm"
    assert _fmt_metric("reward.value_order_spearman", 0.5) == "0.500"
    # The smallest nonzero value keeps 3 significant digits; every other value gets as many decimals.
    assert _fmt_column("relations.by_predicate.accuracy", [0.0784, 1.0, None, math.nan, 0.0]) == \
        ["0.0784", "1.0000", "n/a", "n/a", "0.0000"]
    assert _fmt_column("relations.by_predicate.coverage", [0.5, 1.0]) == ["0.500", "1.000"]
    assert _fmt_column("relations.by_predicate.candidates", [3, 120]) == ["3", "120"]
    assert _fmt_column("x.tiny", [0.0000001, 2.0]) == ["0.000000", "2.000000"]  # at most 6 decimals
    assert _fmt_column("timing.median_ms", [0.0402, 12.5], 2, 3) == ["0.040", "12.500"]
    assert _fmt_column("detection.centroid_error_m", [0.004, 0.1]) == ["0.40 cm", "10.00 cm"]


def test_targets_of_a_bag_without_camera_frames_are_not_applicable_with_the_missing_topic() -> None:
    metrics = {**_metrics(missing_topics=["/camera/color/camera_info"]), "frames": {"camera_frames": 0}}
    reason = "no camera frames could be assembled (missing /camera/color/camera_info)"
    assert {status for *_, status in target_rows(metrics)} == {f"not applicable: {reason}"}
    assert not_applicable(metrics, "detection.recall") == reason
    damaged = {**metrics, "input": {**metrics["input"], "read_error": "bag b is damaged"}}
    assert not_applicable(damaged, "relations") == \
        "no camera frames could be assembled (missing /camera/color/camera_info before the bag's damage)"


def test_a_damaged_bag_without_ground_truth_is_not_sent_to_another_topic() -> None:
    note = ground_truth_note(_metrics(has_ground_truth=False, read_error="bag b is damaged"))
    assert "no ground truth on topic /ground_truth before the bag's damage" in note
    assert "may lie after the damage" in note and "--ground-truth-topic" not in note
    elsewhere = ground_truth_note(_metrics(has_ground_truth=False, read_error="bag b is damaged", bag_topics={
        "/sim/truth": {"type": "trusted_scene_graph_msgs/msg/GroundTruth", "messages": 3, "read": False}}))
    assert "pass --ground-truth-topic /sim/truth" in elsewhere  # found before the damage: the hint is right


def test_the_created_output_directories_are_removed_only_while_empty(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c"
    created = missing_directories(out)
    assert created == [out, tmp_path / "a" / "b", tmp_path / "a"]
    prepare_output_dir(out)
    remove_empty_directories(created)
    assert not (tmp_path / "a").exists() and tmp_path.is_dir()
    prepare_output_dir(out)
    (tmp_path / "a" / "b" / "keep.txt").write_text("someone else's")
    remove_empty_directories(created)
    assert not out.exists() and (tmp_path / "a" / "b" / "keep.txt").is_file()
    assert missing_directories(tmp_path) == []


def test_the_report_names_the_prune_everything_threshold_in_words_not_as_1_000() -> None:
    inputs = {"bag": "b", "messages_read": 3, "missing_topics": [], "skipped_types": {}, "undecodable": {},
              "unexpected_types": {}, "read_error": None}
    frames = {"camera_frames": 1, "evaluated": 1, "episodes": 1, "failed": 0, "without_ground_truth": 0,
              "out_of_order": 0, "graph_frame_taken_as_truth_frame": 0, "failure_reasons": {}}

    def trust_row(threshold: float) -> str:
        trust = {"configured_threshold": threshold, "threshold_source": "model"}
        metrics = {**_metrics(), "input": {**_metrics()["input"], **inputs}, "frames": frames, "detection": {},
                   "reward": {}, "timing": {}, "trust": trust}
        report = render_markdown(metrics, "Evaluation report", [], [])
        return next(line for line in report.splitlines() if line.startswith("| `configured_threshold` |"))

    assert trust_row(PRUNE_ALL_THRESHOLD) == \
        "| `configured_threshold` | none (no feasible threshold: every fact is pruned) |"
    assert trust_row(0.8) == "| `configured_threshold` | 0.800 |"
    assert trust_row(math.nan) == "| `configured_threshold` | n/a |"  # NaN is not above 1: not the sentinel
