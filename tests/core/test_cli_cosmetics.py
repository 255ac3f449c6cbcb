"""`tsg` help, argument routing and option checks that need no simulator: each tested by calling the CLI."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from trusted_scene_graph.cli import (
    DEPTH_NOISE_CHOICES,
    EVAL_VSR,
    EXIT_USAGE,
    HelpFormatter,
    build_parser,
    main,
    plural,
    route_eval_vsr,
)
from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.depth_noise import DEPTH_NOISE_PRESETS
from trusted_scene_graph.sim.record import RecordSettings


def subparsers(parser: argparse.ArgumentParser, name: str = "tsg") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser below ``parser`` (sim record, bench service, ...), with its command words."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                yield f"{name} {word}", sub
                yield from subparsers(sub, f"{name} {word}")


def test_every_option_with_a_value_shows_its_default_in_the_help() -> None:
    formatter = HelpFormatter("tsg")
    checked = 0
    for name, parser in subparsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.default is None or action.default == []:
                continue  # flags, and options whose help states what leaving them out means (checked below)
            assert "default" in formatter._get_help_string(action), f"{name} {action.option_strings[0]}"
            checked += 1
    assert checked > 20


def test_sim_record_help_lists_the_depth_noise_presets_and_the_defaults_of_the_task_specific_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "record", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--depth-noise {none,kinect,realsense} depth noise preset (default: none)" in text
    assert "--width WIDTH image width [px] (default: 640)" in text
    defaults = RecordSettings()
    assert f"scripted action component (default: {defaults.policy_noise})" in text
    assert f"(they differ by depth noise only) (default: {defaults.frames_per_scene})" in text
    assert "(default: the task's view)" in text and "(default: None)" not in text


def test_the_cli_depth_noise_choices_are_the_presets() -> None:
    assert sorted(DEPTH_NOISE_CHOICES) == sorted(DEPTH_NOISE_PRESETS)


def test_an_unknown_depth_noise_preset_is_refused_by_argparse(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "record", "--depth-noise", "lidar", "--out", str(tmp_path / "bag")])
    assert exit_info.value.code == EXIT_USAGE
    assert "argument --depth-noise: invalid choice: 'lidar'" in capsys.readouterr().err


@pytest.mark.parametrize(("task", "option", "value", "message"), [
    ("tabletop", "--policy-noise", "0", "--policy-noise applies to the Fetch tasks only, not to --task tabletop"),
    ("tabletop", "--policy-noise", "0.1", "--policy-noise applies to the Fetch tasks only, not to --task tabletop"),
    ("FetchPush", "--frames-per-scene", "1",
     "--frames-per-scene applies to --task tabletop only, not to --task FetchPush"),
])
def test_an_option_of_the_other_kind_of_task_is_refused_even_at_its_default_value(
        task: str, option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bag"
    assert main(["sim", "record", "--task", task, option, value, "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err == f"tsg sim record: error: {message}\n"
    assert not out.exists()


def test_an_unknown_task_names_the_option_and_the_known_tasks(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "record", "--task", "FetchJuggle", "--out", str(tmp_path / "bag")]) == EXIT_USAGE
    assert capsys.readouterr().err == ("tsg sim record: error: unknown --task 'FetchJuggle'; known: "
                                       "FetchPickAndPlace, FetchPush, FetchReach, FetchSlide, tabletop\n")


def test_record_settings_refuse_a_non_default_value_the_task_would_ignore() -> None:
    with pytest.raises(SimError, match="policy_noise=0.1: tabletop scenes are static; --policy-noise is for Fetch"):
        RecordSettings(scene="tabletop", policy_noise=0.1)
    with pytest.raises(SimError, match="frames_per_scene=3: FetchPush records whole episodes"):
        RecordSettings(scene="FetchPush", frames_per_scene=3)
    assert RecordSettings(scene="tabletop", frames_per_scene=3).frames_per_scene == 3
    assert RecordSettings(scene="FetchPush", policy_noise=0.1).policy_noise == 0.1


def test_plural() -> None:
    assert [plural(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]


def test_top_level_help_hides_the_internal_eval_vsr_command_and_explains_eval_vsr(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert EVAL_VSR not in out
    assert "usage: tsg [-h] {bringup,config,demo,sim,label,eval,replay,bench,trust} ..." in out
    assert "write `tsg eval ./vsr` to be explicit" in " ".join(out.split())


def test_eval_vsr_help_is_the_vsr_parser(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["eval", "vsr", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: tsg eval vsr ") and "--annotations ANNOTATIONS" in out


@pytest.mark.parametrize(("argv", "vsr_dir_exists", "routed"), [
    (["eval", "vsr", "--images", "i", "--annotations", "a.jsonl"], False, True),
    (["eval", "vsr"], False, True),
    (["eval", "vsr", "--out", "report"], False, True),
    (["eval", "vsr", "--out", "report"], True, False),  # --out is an option of both: the directory wins
    (["eval", "vsr"], True, False),
    (["eval", "vsr", "--out", "report", "--images", "i"], True, True),  # a VSR-only option anywhere after
    (["eval", "vsr", "--annotations=a.jsonl"], True, True),
    (["eval", "./vsr", "--out", "report"], False, False),
    (["eval", "./vsr", "--images", "i"], True, False),
    (["eval", "bag", "vsr"], False, False),
])
def test_eval_vsr_is_the_vsr_command_unless_a_directory_vsr_exists_and_no_vsr_option_follows(
        argv: list[str], vsr_dir_exists: bool, routed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if vsr_dir_exists:
        (tmp_path / "vsr").mkdir()
    expected = [EVAL_VSR, *argv[2:]] if routed else argv
    assert route_eval_vsr(argv, build_parser()) == expected


def test_a_bag_directory_named_vsr_is_evaluated_as_a_bag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vsr").mkdir()  # not a bag: the bag reader's error shows main took it as one
    assert main(["eval", "vsr", "--out", str(tmp_path / "report")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tsg eval: error: ") and "vsr" in err  # `tsg eval BAG`'s error, not the vsr parser's


def test_without_a_vsr_directory_eval_vsr_runs_the_vsr_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "vsr", "--out", str(tmp_path / "report")])
    assert exit_info.value.code == EXIT_USAGE
    assert "tsg eval vsr: error: the following arguments are required: --images, --annotations" in (
        capsys.readouterr().err)
