"""`tsg sim record`'s output: one summary line on stdout naming the task, and nothing else on stdout or stderr."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is first imported

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")

from trusted_scene_graph.cli import EXIT_OK, main  # noqa: E402
from trusted_scene_graph.sim.fetch import _drop_adroit_notice  # noqa: E402

pytestmark = pytest.mark.sim

SMALL = ["--width", "160", "--height", "120"]


def test_tabletop_summary_is_the_only_stdout_line_and_is_pluralised(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["sim", "record", "--task", "tabletop", *SMALL, "--out", str(one)]) == EXIT_OK
    # No empty line first (rich's Progress prints one when it stops on a non-interactive stdout).
    assert capsys.readouterr().out == f"wrote {one}: 1 tabletop episode, 1 frame, 6 messages (mcap)\n"
    assert main(["sim", "record", "--task", "tabletop", "--episodes", "2", "--frames-per-scene", "2", *SMALL,
                 "--out", str(two)]) == EXIT_OK
    assert capsys.readouterr().out == f"wrote {two}: 2 tabletop episodes, 4 frames, 22 messages (mcap)\n"


def test_a_fetch_recording_prints_one_line_and_no_gymnasium_robotics_notice(tmp_path: Path) -> None:
    # A fresh interpreter: gymnasium_robotics prints its notice once, on first import, which another test of this
    # process may already have done.
    out = tmp_path / "reach"
    result = subprocess.run(
        [sys.executable, "-m", "trusted_scene_graph.cli", "sim", "record", "--task", "FetchReach", "--width", "64",
         "--height", "48", "--policy-noise", "0.05", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out}: 1 FetchReach episode (1 successful), 51 frames, 358 messages (mcap)\n"
    assert result.stderr == ""


def test_only_the_adroit_notice_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    farama_notifications = pytest.importorskip("farama_notifications")
    adroit = farama_notifications.GYMNASIUM_ROBOTICS_ADROIT_WARNING
    table = {"gymnasium_robotics": {"1.4.2": adroit, "1.4.1": adroit, "9.9.9": "another notice"},
             "gymnasium": {"1.4.0": adroit}}
    monkeypatch.setattr(farama_notifications, "notifications", table)
    _drop_adroit_notice()
    assert table == {"gymnasium_robotics": {"9.9.9": "another notice"}, "gymnasium": {"1.4.0": adroit}}
