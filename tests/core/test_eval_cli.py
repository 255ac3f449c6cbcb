"""``tsg eval`` and ``tsg eval vsr`` on the command line: options checked before anything is created, help that
names what the commands take, and setup errors that name the options to pass rather than config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from trusted_scene_graph.cli import EXIT_USAGE, main


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(argv)
    return " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width


@pytest.mark.parametrize(("bag_kind", "options", "message"), [
    ("missing", [], "bag {bag} does not exist"),
    ("bag", ["--max-frames", "0"], "--max-frames 0: must be >= 1"),
    ("bag", ["--max-frames", "-1"], "--max-frames -1: must be >= 1"),
    ("empty", [], "{bag} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file"),
    ("bag", ["--set", "trust.threshold=2"], "trust.threshold"),
])
def test_an_argument_error_leaves_no_output_directory_behind(bag_kind: str, options: list[str], message: str,
                                                             tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "bags" / "b"
    if bag_kind == "empty":
        bag.mkdir(parents=True)
    elif bag_kind == "bag":  # a bag that is never opened: the option is refused first
        bag.mkdir(parents=True)
        (bag / "metadata.yaml").write_text("not read\n")
    out = tmp_path / "out" / "eval"
    assert main(["eval", str(bag), "--out", str(out), *options]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"tsg eval: error: {message.format(bag=bag)}"), err
    assert "max_frames=" not in err
    assert not (tmp_path / "out").exists()  # neither --out nor the parent the command would have created


def test_an_existing_output_directory_is_kept_when_the_bag_is_no_bag(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--out", str(out / "new")]) == EXIT_USAGE
    assert out.is_dir() and not (out / "new").exists()  # only what the command created is removed


def test_eval_help_describes_the_command_and_points_to_eval_vsr(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["eval", "--help"], capsys)
    assert "Replay a rosbag2 bag offline through the node's code and score the scene graphs" in text
    assert "`tsg eval vsr ...` evaluates VLM trust on VSR annotations instead (`tsg eval vsr --help`)" in text
    assert "bag directory, .mcap or .db3 file" in text
    assert "process at most this many frames (default: all frames)" in text


def test_the_top_level_description_does_not_call_the_live_commands_offline(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["--help"], capsys)
    assert "offline work" not in text
    assert ("the scene graph live on ROS 2 (bringup, demo, replay) and offline (config, sim record, eval, label, "
            "trust, bench)") in text


@pytest.mark.parametrize(("options", "message"), [
    ([], "the VSR evaluation needs a VLM: pass --vlm generative --vlm-model DIR (a local model directory) or "
         "--vlm recorded --vlm-recorded FILE"),
    (["--vlm", "generative"], "--vlm generative needs --vlm-model DIR, a local model directory"),
    (["--vlm", "recorded"], "--vlm recorded needs --vlm-recorded FILE, a JSONL of recorded answers"),
    (["--vlm", "recorded", "--vlm-recorded", "answers.jsonl"],
     "the VSR evaluation needs an open-vocabulary detector, not the 'sim' detector of the config (it needs "
     "simulator instance images): pass --detector-model DIR"),
])
def test_eval_vsr_setup_errors_name_the_options_to_pass(options: list[str], message: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["eval", "vsr", "--images", str(tmp_path), "--annotations", str(tmp_path / "a.jsonl"),
                 "--out", str(out), *options]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"tsg eval vsr: error: {message}"), err
    assert "vlm.backend" not in err and "vlm.model_path" not in err and "detector.backend" not in err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--vlm-model", "--detector-model"])
def test_eval_vsr_refuses_a_model_option_that_names_no_directory(option: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    base = ["eval", "vsr", "--images", str(tmp_path), "--annotations", str(tmp_path / "a.jsonl"), "--out",
            str(tmp_path / "report"), "--vlm", "generative", "--vlm-model", str(tmp_path), "--detector-model",
            str(tmp_path)]
    for value, message in ((str(tmp_path / "missing"), "no such model directory; download one on a machine with "
                                                        "network access, e.g. `hf download "),
                           (str(tmp_path / "weights.bin"), "a file, expected a model directory")):
        argv = [*base, option, value]  # argparse keeps the last value of a repeated option
        assert main(argv) == EXIT_USAGE
        assert capsys.readouterr().err.startswith(f"tsg eval vsr: error: {option} {value}: {message}")
    assert not (tmp_path / "report").exists()
