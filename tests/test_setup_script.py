"""scripts/setup.sh's stamps: a second run with nothing changed installs nothing, also after a run with the other
Ray choice (`make demo` and `make test` in turn). Run on a copy of the script with a stand-in venv Python and colcon
that log what they are asked to do, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# The venv's Python: logs pip calls; `-c` (include paths, `import tf2_msgs`) prints a path and succeeds.
[ "$1" = -m ] && echo "$*" >> "$(dirname "$0")/../../pip.log"
[ "$1" = -c ] && echo /nonexistent
exit 0
"""
FAKE_COLCON = """#!/usr/bin/env bash
mkdir -p install
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files setup.sh reads, with placeholder contents, and a venv whose Python is a stand-in."""
    for name in ("scripts/setup.sh", "requirements/ros.txt", "requirements/ml.txt", "requirements/ray.txt",
                 "pyproject.toml", "msg/A.msg", "srv/B.srv", "ros2_ws/src/msgs/CMakeLists.txt",
                 "ros2_ws/src/msgs/package.xml", "ros2_ws/vendor/tf2/CMakeLists.txt", "ros2_ws/vendor/tf2/package.xml",
                 "ros2_ws/vendor/tf2/msg/C.msg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"{name}\n")
    shutil.copy(ROOT / "scripts/setup.sh", tmp_path / "scripts/setup.sh")
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/activate").write_text("")
    for path, text in ((tmp_path / ".venv/bin/python", FAKE_PYTHON), (tmp_path / "bin/colcon", FAKE_COLCON)):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    return tmp_path


def _setup(checkout: Path, with_ray: bool) -> list[str]:
    """Run the copied setup.sh; the pip commands it ran."""
    (checkout / "pip.log").write_text("")
    env = {**os.environ, "WITH_RAY": "1" if with_ray else "0", "PYTHON": str(checkout / ".venv/bin/python"),
           "PATH": f"{checkout / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(checkout / "scripts/setup.sh")], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # Not the check that the venv has a working pip, which every run makes: what it installs.
    return [line for line in (checkout / "pip.log").read_text().splitlines() if line != "-m pip --version"]


def test_setup_with_and_without_ray_in_turn_installs_only_what_is_missing(checkout):
    assert any("-r requirements/ml.txt" in line and "ray.txt" not in line for line in _setup(checkout, False))
    assert any("-r requirements/ray.txt" in line for line in _setup(checkout, True))
    # A Ray install has every package a setup without Ray needs: nothing to do, either way round.
    assert _setup(checkout, False) == []
    assert _setup(checkout, True) == []


def test_a_changed_requirement_reinstalls_after_a_ray_install(checkout):
    _setup(checkout, True)
    (checkout / "requirements/ml.txt").write_text("changed\n")
    assert any("-r requirements/ml.txt" in line for line in _setup(checkout, False))


def test_a_venv_without_a_working_python_3_11_and_pip_is_made_again(checkout):
    # A venv made without python3.11-venv has a python but no pip: reused, every later run failed on it.
    broken = FAKE_PYTHON.replace('[ "$1" = -c ] && echo /nonexistent', '[ "$1" = -c ] && exit 1')
    (checkout / ".venv/bin/python").write_text(broken)
    env = {**os.environ, "WITH_RAY": "0", "PYTHON": str(checkout / ".venv/bin/python"),
           "PATH": f"{checkout / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(checkout / "scripts/setup.sh")], capture_output=True, text=True, env=env,
                            timeout=60)
    assert "is not a working Python 3.11 venv with pip: making it again" in result.stdout
    assert f"-m venv --clear {checkout / '.venv'}" in (checkout / "pip.log").read_text().splitlines()
