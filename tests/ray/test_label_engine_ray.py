"""The label engine on Ray: the same outputs as the local engine, retries of killed workers, bounded concurrency.

All tests share the session's cluster (tests/ray/conftest.py), which the engine must leave running, except the one
that joins a cluster of two nodes started for it in a driver process of its own (a process joins one cluster only).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from label_work import calls, concurrency, item_files, label_item, make_items, nodes

from trusted_scene_graph.label import run_items
from trusted_scene_graph.label.engine import STAGING_DIR

TERMINATED_NOTE = "tsg label: terminated (SIGTERM); rerun the same command to finish (labelled items are kept)\n"

KEYS = tuple(f"item-{index:02d}" for index in range(6))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The files of an in-process run of the six default items."""
    root = tmp_path_factory.mktemp("reference")
    assert run_items(make_items(root / "log"), label_item, root / "out").ok
    return item_files(root / "out")


def test_ray_writes_what_the_local_engine_writes_and_leaves_the_cluster_running(ray_cluster, reference, tmp_path):
    events = []
    summary = run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", engine="ray", workers=2,
                        progress=events.append)
    assert summary.ok and summary.done == KEYS and summary.attempts == 6
    assert summary.frames == sum(3 + index for index in range(6))
    assert sorted(event.key for event in events) == list(KEYS)
    assert item_files(tmp_path / "out") == reference
    assert not (tmp_path / "out" / STAGING_DIR).exists()
    assert ray_cluster.is_initialized()

    again = run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", engine="ray", workers=2)
    assert again.skipped == KEYS and again.attempts == 0
    assert calls(tmp_path / "log") == dict.fromkeys(KEYS, 1)


def test_ray_retries_an_item_whose_worker_was_killed(ray_cluster, reference, tmp_path):
    killed = {KEYS[0]: "once", KEYS[3]: "once"}
    summary = run_items(make_items(tmp_path / "log", kill=killed), label_item, tmp_path / "out", engine="ray",
                        workers=2, max_retries=2)
    assert summary.ok and summary.done == KEYS
    assert summary.retries == 2
    assert calls(tmp_path / "log") == {key: 2 if key in killed else 1 for key in KEYS}
    assert item_files(tmp_path / "out") == reference

    doomed = run_items(make_items(tmp_path / "log2", 2, kill={KEYS[1]: "always"}), label_item, tmp_path / "out2",
                       engine="ray", workers=2, max_retries=0)
    assert doomed.done == (KEYS[0],) and list(doomed.failed) == [KEYS[1]]
    assert doomed.failed[KEYS[1]].startswith("Ray gave up on it after 1 attempt(s): ")


def test_ray_reports_an_item_whose_worker_died_just_after_committing_it_as_done(ray_cluster, reference, tmp_path):
    summary = run_items(make_items(tmp_path / "log", kill_after_commit={KEYS[1]: True}), label_item,
                        tmp_path / "out", engine="ray", workers=2, max_retries=0)
    assert summary.ok and summary.done == KEYS and not summary.worker_died
    assert summary.frames == sum(3 + index for index in range(6))
    assert calls(tmp_path / "log")[KEYS[1]] == 1
    assert item_files(tmp_path / "out") == reference


def test_ray_reports_a_tsg_error_as_a_failed_item_and_lets_a_bug_propagate(ray_cluster, reference, tmp_path):
    summary = run_items(make_items(tmp_path / "log", 3, error={KEYS[1]: "episode item-01 is empty"}), label_item,
                        tmp_path / "out", engine="ray", workers=2)
    assert summary.failed == {KEYS[1]: "episode item-01 is empty"}
    assert summary.done == (KEYS[0], KEYS[2]) and summary.retries == 0

    with pytest.raises(ValueError, match="index out of range in item-01"):
        run_items(make_items(tmp_path / "log", 3, bug={KEYS[1]: "index out of range in item-01"}), label_item,
                  tmp_path / "out2", engine="ray", workers=2)


def test_ray_runs_at_most_workers_items_at_once_on_a_bigger_cluster(ray_cluster, tmp_path):
    # The cluster has two CPUs, so only the engine's own bound keeps these four items from overlapping.
    summary = run_items(make_items(tmp_path / "log", 4, sleep_s=0.2), label_item, tmp_path / "out", engine="ray",
                        workers=1)
    assert summary.ok
    assert concurrency(tmp_path / "log") == [1, 1, 1, 1]


def test_an_address_where_no_ray_cluster_answers_is_an_error_naming_it(monkeypatch, tmp_path):
    """Refused at once where nothing listens (Ray would retry for minutes), and Ray's own refusals are errors, not
    tracebacks. Ray is faked as not yet connected: this process may already have joined the test cluster."""
    import socket

    import ray

    from trusted_scene_graph.label import LabelError

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with socket.socket() as closed:  # a port that was free a moment ago: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(LabelError, match=rf"--ray-address 127\.0\.0\.1:{port}: nothing answers there \(.*\); start "
                                         r"the cluster's head \(ray start --head\)"):
        run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", engine="ray",
                  ray_address=f"127.0.0.1:{port}")

    def refuse(address):  # as ray.init refuses (ConnectionError, or ValueError for a malformed address)
        if ":" not in address:
            raise ValueError(f"Invalid address format: {address}")
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.setattr(ray, "init", refuse)
    with socket.socket() as listening:  # something answers, but it is not Ray
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(LabelError, match=rf"--ray-address {address}: Failed to connect to Ray cluster at "):
            run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out2", engine="ray", ray_address=address)
    with pytest.raises(LabelError, match=r"--ray-address not-an-address: Invalid address format: not-an-address"):
        run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out3", engine="ray",
                  ray_address="not-an-address")


def test_without_an_address_the_engine_starts_a_cluster_of_its_own_rather_than_joining_ray_address(monkeypatch,
                                                                                                    tmp_path):
    """Inside a Ray job (RAY_ADDRESS set) or after `ray start --head`, a bare ray.init joins that cluster and refuses
    num_cpus: the engine asks for a local one. Ray is faked as not yet connected."""
    import ray

    class Started(Exception):
        pass

    def init(**kwargs):
        raise Started(kwargs)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    with pytest.raises(Started) as started:
        run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", engine="ray", workers=2)
    assert started.value.args[0] == {"address": "local", "num_cpus": 2}


# A driver joining, by its address, a cluster of two nodes (a head and one more, each with its own raylet and object
# store, one CPU each), as `tsg label --engine ray --ray-address HOST:PORT` joins one started by `ray start`. Ray's
# own Cluster helper starts the nodes on this machine and stops exactly them. It records the cluster's address in a
# file under RAY_TMPDIR, where a ray.init() without an address would find it: the driver deletes the file, so only
# the address given can lead to the cluster.
MULTI_NODE_DRIVER = """
import json, os, sys
from pathlib import Path
from ray.cluster_utils import Cluster
from label_work import label_item, make_items
from trusted_scene_graph.label import run_items

log, out = Path(sys.argv[1]), Path(sys.argv[2])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    address_files = list(Path(os.environ["RAY_TMPDIR"]).rglob("ray_current_cluster"))
    if len(address_files) != 1:
        sys.exit(f"expected one ray_current_cluster file under RAY_TMPDIR, found {address_files}")
    address_files[0].unlink()
    items = make_items(log, 4, sleep_s=1.0, record_node=True)
    summary = run_items(items, label_item, out, engine="ray", workers=2, ray_address=cluster.address)
    print(json.dumps({"ok": summary.ok, "done": list(summary.done), "frames": summary.frames}))
finally:
    cluster.shutdown()
"""


def test_ray_labels_on_a_cluster_of_two_nodes_joined_by_its_address(tmp_path):
    pytest.importorskip("ray", reason="the Ray tests need ray: pip install 'trusted_scene_graph[ray]'")
    tests_dir = str(Path(__file__).resolve().parents[1])
    # The cluster's files in a directory of its own, so that it is not the one every ray.init() on the machine finds
    # (the session's cluster, a user's), even if the driver is killed. Not under tmp_path: Ray's socket paths would
    # exceed the 107 characters a Unix socket path allows.
    ray_tmp = tempfile.mkdtemp(prefix="tsg-ray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp,
           "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}
    try:
        driver = subprocess.run([sys.executable, "-c", MULTI_NODE_DRIVER, str(tmp_path / "log"),
                                 str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(driver.stdout.strip().splitlines()[-1])
    assert result == {"ok": True, "done": list(KEYS[:4]), "frames": 3 + 4 + 5 + 6}
    ran_on = nodes(tmp_path / "log")
    assert sorted(ran_on) == list(KEYS[:4]) and len(set(ran_on.values())) == 2  # both nodes labelled
    assert calls(tmp_path / "log") == dict.fromkeys(KEYS[:4], 1)

    expected = tmp_path / "expected"  # the same items in this process: the cluster wrote exactly those bytes
    assert run_items(make_items(tmp_path / "log-here", 4), label_item, expected).ok
    assert item_files(tmp_path / "out") == item_files(expected)


def _ray_label_driver(tmp_path: Path, *options: str) -> tuple[subprocess.Popen, Path, Path]:
    """``tsg label --engine ray`` on two bags in a driver process of its own (it starts its own local cluster), whose
    items hang half written until the run is stopped (tests/core/test_label_run.py's HANGING_RUN)."""
    sys.path[:0] = [str(Path(__file__).parents[1] / "core")]
    from test_label_run import HANGING_RUN, TESTS_DIR, label_args, two_bags

    bags, out = two_bags(tmp_path), tmp_path / "out"
    script = HANGING_RUN.format(tests=str(TESTS_DIR), core=str(TESTS_DIR / "core"),
                                args=label_args(bags, out, "--engine", "ray", "--workers", "2", *options))
    # The cluster's workers import the hanging work function too.
    python_path = os.pathsep.join(filter(None, [str(TESTS_DIR), str(TESTS_DIR / "core"), os.environ.get("PYTHONPATH")]))
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": python_path}, start_new_session=True)
    return driver, tmp_path / "running", out


def _stopped(driver: subprocess.Popen) -> tuple[int, str]:
    driver.send_signal(signal.SIGTERM)  # to the driver alone, as `kill PID` sends it
    try:
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    return driver.returncode, stderr


def _wait_for(driver: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + 150.0
    while not condition():
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, f"{what} within 150 s"
        time.sleep(0.02)


def test_sigterm_stops_a_ray_run_with_the_note_exit_143_and_no_staging_left(tmp_path):
    # ray.wait turns the run's own Terminated into a plain KeyboardInterrupt: it must still be told from Ctrl-C.
    driver, running, out = _ray_label_driver(tmp_path)
    _wait_for(driver, lambda: len(list(running.iterdir()) if running.is_dir() else []) == 2, "both items running")
    returncode, stderr = _stopped(driver)
    assert (returncode, stderr.splitlines()[-1]) == (143, TERMINATED_NOTE.strip())
    assert sorted(p.name for p in out.iterdir()) == [".lock", "tsg_label.json"]  # no item, no .staging


def test_sigterm_while_ray_starts_stops_the_run_with_the_note(tmp_path):
    # ray.init installs a handler of its own that exits 15, in force until ray.init returns. (Which of the cluster's
    # processes outlive the run then depends on how far Ray's start had come: not this run's to decide.)
    driver, _, _ = _ray_label_driver(tmp_path)

    def ray_started_spawning() -> bool:
        children = subprocess.run(["ps", "-o", "args=", "--ppid", str(driver.pid)], capture_output=True,
                                  text=True).stdout
        return "gcs_server" in children or "raylet" in children

    try:
        _wait_for(driver, ray_started_spawning, "Ray's first processes")
        returncode, stderr = _stopped(driver)
        assert (returncode, stderr.splitlines()[-1]) == (143, TERMINATED_NOTE.strip())
    finally:
        try:  # whatever of the driver's cluster is left, not to run on beside the other tests
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
