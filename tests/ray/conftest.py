"""One local Ray cluster for every Ray test: starting one takes seconds, and a process can only join one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A two-CPU local Ray cluster, shut down when the session ends. Engines that find Ray initialised use it and
    leave it running."""
    ray = pytest.importorskip("ray", reason="the Ray tests need ray: pip install 'trusted_scene_graph[ray]'")
    # Ray workers import the test work functions (tests/label_work.py) by name; pytest put tests/ on this
    # process's sys.path only, which Ray does not pass on.
    python_path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}})
    yield ray
    ray.shutdown()
