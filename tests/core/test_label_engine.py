"""The label engine on the local engine: atomic commits, resuming, retrying killed workers, reporting failures."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from label_work import FRAMES_FILE, LABELS_FILE, calls, item_files, label_item, make_items, worker_pids

from trusted_scene_graph.label import ENGINES, LabelError, RunSummary, WorkItem, run_items
from trusted_scene_graph.label.engine import LOCK_FILE, STAGING_DIR, check_run_options, exclusive

TESTS_DIR = Path(__file__).resolve().parents[1]
KEYS = tuple(f"item-{index:02d}" for index in range(6))
FRAMES = sum(3 + index for index in range(6))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The files of an uninterrupted in-process run of the six default items."""
    root = tmp_path_factory.mktemp("reference")
    assert run_items(make_items(root / "log"), label_item, root / "out").ok
    return item_files(root / "out")


def committed(out_dir: Path) -> list[str]:
    return sorted(path.name for path in out_dir.iterdir() if not path.name.startswith("."))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_is_written_once_with_the_same_bytes_in_process_and_on_two_processes(reference, tmp_path,
                                                                                        workers):
    events = []
    summary = run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", workers=workers,
                        progress=events.append)
    assert summary == RunSummary(done=KEYS, skipped=(), failed={}, frames=FRAMES, seconds=summary.seconds,
                                 attempts=6)
    assert summary.ok and summary.retries == 0 and summary.seconds > 0
    assert item_files(tmp_path / "out") == reference
    assert sorted(reference) == sorted(f"{key}/{name}" for key in KEYS for name in (FRAMES_FILE, LABELS_FILE))
    # The staging area goes once the run ends; only the lock file stays beside the items.
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [LOCK_FILE, *KEYS]
    assert calls(tmp_path / "log") == dict.fromkeys(KEYS, 1)
    assert sorted((event.key, event.frames, event.skipped) for event in events) == [
        (key, 3 + index, False) for index, key in enumerate(KEYS)]


def test_a_rerun_skips_committed_items_and_leaves_their_bytes_alone(reference, tmp_path):
    out = tmp_path / "out"
    run_items(make_items(tmp_path / "log")[:4], label_item, out)
    mtimes = {path: path.stat().st_mtime_ns for path in out.rglob("*")}

    events = []
    summary = run_items(make_items(tmp_path / "log"), label_item, out, workers=2, progress=events.append)
    assert summary.skipped == KEYS[:4] and summary.done == KEYS[4:] and summary.frames == 7 + 8
    assert [(event.key, event.frames, event.skipped) for event in events[:4]] == [(key, 0, True) for key in KEYS[:4]]
    assert calls(tmp_path / "log") == dict.fromkeys(KEYS, 1)
    assert item_files(out) == reference
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in mtimes.items() if path.name != LOCK_FILE)

    again = run_items(make_items(tmp_path / "log"), label_item, out)
    assert again.skipped == KEYS and again.done == () and again.attempts == 0 and again.ok
    assert calls(tmp_path / "log") == dict.fromkeys(KEYS, 1)


def test_a_killed_runs_staging_leftovers_are_removed_and_never_become_items(reference, tmp_path):
    out = tmp_path / "out"
    partial = out / STAGING_DIR / KEYS[0] / "0123abcd"
    partial.mkdir(parents=True)
    (partial / LABELS_FILE).write_text('{"key": "half written')
    (out / STAGING_DIR / "orphan").mkdir()

    assert run_items(make_items(tmp_path / "log"), label_item, out).done == KEYS
    assert not (out / STAGING_DIR).exists()
    assert item_files(out) == reference


def test_a_worker_killed_mid_item_is_retried_and_every_item_is_written_once(reference, tmp_path):
    killed = {KEYS[1]: "once", KEYS[4]: "once"}
    summary = run_items(make_items(tmp_path / "log", kill=killed), label_item, tmp_path / "out", workers=2)
    assert summary.ok and summary.done == KEYS
    assert summary.attempts == 8 and summary.retries == 2
    assert calls(tmp_path / "log") == {key: 2 if key in killed else 1 for key in KEYS}
    assert item_files(tmp_path / "out") == reference


@pytest.mark.parametrize("max_retries", [0, 2])
def test_an_item_whose_worker_dies_just_after_committing_it_is_done_and_not_labelled_again(reference, tmp_path,
                                                                                         max_retries):
    summary = run_items(make_items(tmp_path / "log", kill_after_commit={"item-02": True}), label_item,
                        tmp_path / "out", workers=2, max_retries=max_retries)
    assert summary.ok and summary.done == KEYS and not summary.worker_died
    assert summary.frames == sum(3 + index for index in range(6))  # the dead worker's count too
    assert calls(tmp_path / "log")["item-02"] == 1
    assert item_files(tmp_path / "out") == reference


def test_an_item_whose_worker_dies_on_every_attempt_fails_after_max_retries(reference, tmp_path):
    summary = run_items(make_items(tmp_path / "log", 3, kill={KEYS[1]: "always"}), label_item, tmp_path / "out",
                        workers=2, max_retries=1)
    assert not summary.ok
    assert summary.done == (KEYS[0], KEYS[2]) and list(summary.failed) == [KEYS[1]]
    assert "worker process died on each of its 2 attempt(s)" in summary.failed[KEYS[1]]
    assert summary.attempts == 4 and summary.retries == 1
    assert committed(tmp_path / "out") == [KEYS[0], KEYS[2]]
    assert item_files(tmp_path / "out") == {name: data for name, data in reference.items()
                                            if name.split("/")[0] in (KEYS[0], KEYS[2])}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tsg_error_fails_only_its_item_and_a_rerun_tries_it_again(reference, tmp_path, workers):
    out = tmp_path / "out"
    events = []
    summary = run_items(make_items(tmp_path / "log", error={KEYS[2]: "bag item-02 has no camera topic"}),
                        label_item, out, workers=workers, progress=events.append)
    assert not summary.ok
    assert summary.failed == {KEYS[2]: "bag item-02 has no camera topic"}
    assert summary.done == KEYS[:2] + KEYS[3:] and summary.retries == 0
    assert [event.error for event in events if event.key == KEYS[2]] == ["bag item-02 has no camera topic"]
    assert committed(out) == sorted(KEYS[:2] + KEYS[3:])

    assert run_items(make_items(tmp_path / "log"), label_item, out).done == (KEYS[2],)
    assert item_files(out) == reference


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bug_in_the_work_function_propagates(tmp_path, workers):
    with pytest.raises(ValueError, match="index out of range in item-03"):
        run_items(make_items(tmp_path / "log", bug={KEYS[3]: "index out of range in item-03"}), label_item,
                  tmp_path / "out", workers=workers)
    assert KEYS[3] not in committed(tmp_path / "out")


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie awaiting a reaper that a container may lack counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_driver_shows_only_whole_items_and_its_rerun_matches_an_uninterrupted_run(reference, tmp_path,
                                                                                           workers):
    out, log = tmp_path / "out", tmp_path / "log"
    script = (f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); from pathlib import Path; "
              "from label_work import label_item, make_items; from trusted_scene_graph.label import run_items; "
              f"run_items(make_items(Path({str(log)!r}), sleep_s=0.25), label_item, Path({str(out)!r}), "
              f"workers={workers})")
    driver = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60.0
        seen: set[str] = set()
        # Watch every item as it appears: the work function pauses between its two files, so an item made
        # visible before it is whole would be caught here.
        while len(seen) < 2:
            assert driver.poll() is None, "the labelling run ended before it could be killed"
            assert time.monotonic() < deadline, "no item was committed within 60 s"
            for key in committed(out) if out.exists() else []:
                assert {name: data for name, data in item_files(out).items() if name.startswith(f"{key}/")} == {
                    name: data for name, data in reference.items() if name.startswith(f"{key}/")}
                seen.add(key)
            time.sleep(0.01)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    killed_with = committed(out)
    assert 2 <= len(killed_with) < len(KEYS)
    # Worker processes die with their driver instead of idling on as orphans.
    deadline = time.monotonic() + 10.0
    while any(alive(pid) for pid in worker_pids(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in worker_pids(log) if alive(pid)]

    summary = run_items(make_items(log), label_item, out)
    assert summary.skipped == tuple(killed_with) and summary.ok
    assert not (out / STAGING_DIR).exists()
    assert item_files(out) == reference
    assert all(count == 1 for key, count in calls(log).items() if key in killed_with)


def test_the_engines_are_named_in_one_mapping():
    assert sorted(ENGINES) == ["local", "ray"]


@pytest.mark.parametrize(("options", "match"), [
    ({"engine": "dask"}, r"unknown label engine 'dask'; known engines: \['local', 'ray'\]"),
    ({"workers": 0}, "workers must be at least 1, got 0"),
    ({"max_retries": -1}, "max_retries must be at least 0, got -1"),
    ({"ray_address": "auto"}, "ray_address 'auto' is only used by engine 'ray', not 'local'"),
])
def test_bad_run_options_are_refused_before_any_work(tmp_path, options, match):
    with pytest.raises(LabelError, match=match):
        run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists() and not (tmp_path / "log").exists()


@pytest.mark.parametrize("key", ["../escape", ".staging", "", "a/b", "bag 1", "x" * 201, 7])
def test_a_work_item_key_must_be_a_safe_directory_name(key):
    with pytest.raises(LabelError, match="is not a safe directory name"):
        WorkItem(key, None)


def test_repeated_keys_are_refused(tmp_path):
    items = make_items(tmp_path / "log", 2)
    with pytest.raises(LabelError, match=r"keys must be unique; repeated: \['item-01'\]"):
        run_items([*items, items[1]], label_item, tmp_path / "out")


@pytest.mark.parametrize(("returned", "match"), [
    ("3", r"label_item returned '3' for work item 'item-00'; it must return the number of frames"),
    (-1, r"label_item returned -1 frames for work item 'item-00'; expected 0 or more"),
])
def test_a_work_function_must_return_its_frame_count(tmp_path, returned, match):
    summary = run_items(make_items(tmp_path / "log", 1, frames_returned=returned), label_item, tmp_path / "out")
    assert list(summary.failed) == ["item-00"] and re.match(match, summary.failed["item-00"])
    assert committed(tmp_path / "out") == []


def test_a_file_in_the_way_of_an_item_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "item-01").write_text("not an item")
    with pytest.raises(LabelError, match=r"out/item-01 is in the way of work item 'item-01'"):
        run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out")


def test_two_runs_cannot_label_into_one_directory_at_once(tmp_path):
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(LabelError, match="out is being labelled by another run"):
            run_items(make_items(tmp_path / "log"), label_item, tmp_path / "out")
    assert not (tmp_path / "log").exists()


def test_ctrl_c_stops_a_run_on_worker_processes_with_no_worker_traceback(tmp_path):
    """Ctrl-C at a terminal sends SIGINT to the whole process group: the workers ignore it (one idle, one mid-item
    here), the driver alone stops (and ends them) without waiting for the item."""
    out, log = tmp_path / "out", tmp_path / "log"
    script = (f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); from pathlib import Path; "
              "from label_work import label_item, make_items; from trusted_scene_graph.label import run_items\n"
              "try:\n"
              f"    run_items(make_items(Path({str(log)!r}), count=3, sleep_s={{'item-01': 60.0}}), label_item, "
              f"Path({str(out)!r}), workers=2)\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted', file=sys.stderr)\n"
              "    sys.exit(130)\n")
    # A session of its own: the driver leads a process group, as a shell's foreground job does.
    driver = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60.0
        # One worker labels item-01 for 60 s; the other, done with item-00 and item-02, waits for work.
        while not ((out / "item-00").is_dir() and (out / "item-02").is_dir()
                   and (log / "running" / "item-01").exists()):
            assert driver.poll() is None, driver.stderr.read()
            assert time.monotonic() < deadline, "the items did not get there within 60 s"
            time.sleep(0.02)
        interrupted_s = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert (driver.returncode, err) == (130, "interrupted\n")
    assert time.monotonic() - interrupted_s < 20.0  # the items' 60 s were not waited for
    deadline = time.monotonic() + 10.0
    while any(alive(pid) for pid in worker_pids(log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(worker_pids(log)) == 2 and not [pid for pid in worker_pids(log) if alive(pid)]
    assert committed(out) == ["item-00", "item-02"]  # item-01 was cut short; a rerun labels it


def test_only_items_whose_worker_died_are_reported_as_such(tmp_path):
    items = make_items(tmp_path / "log", count=3, kill={"item-00": "always"}, error={"item-01": "bad input"})
    summary = run_items(items, label_item, tmp_path / "out", workers=2, max_retries=0)
    assert sorted(summary.failed) == ["item-00", "item-01"] and summary.worker_died == ("item-00",)
    assert run_items(items[2:], label_item, tmp_path / "out2").worker_died == ()


def test_the_lock_can_be_held_over_more_than_one_run_by_its_holder_alone(tmp_path):
    out = tmp_path / "out"
    with exclusive(out):
        assert run_items(make_items(tmp_path / "log", count=2), label_item, out).ok  # re-entrant in its holder
        script = (f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); from pathlib import Path; "
                  "from label_work import label_item, make_items; from trusted_scene_graph.label import run_items; "
                  f"run_items(make_items(Path({str(tmp_path / 'log2')!r})), label_item, Path({str(out)!r}))")
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert other.returncode == 1 and "out is being labelled by another run" in other.stderr
    assert run_items(make_items(tmp_path / "log", count=2), label_item, out).skipped == ("item-00", "item-01")


def test_engine_ray_without_the_ray_package_is_refused_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "ray" else find_spec(name,
                                                                                                             *args))
    with pytest.raises(LabelError, match=r"label engine 'ray' needs the ray package"):
        check_run_options("ray", 1, 0, None)


def test_worker_processes_ignore_sigint_so_only_the_driver_decides_to_stop(reference, tmp_path):
    log = tmp_path / "log"

    def interrupt_workers() -> None:
        deadline = time.monotonic() + 60.0
        while len(list((log / "running").iterdir()) if (log / "running").exists() else []) < 2:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        for pid in worker_pids(log):
            os.kill(pid, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_workers)
    interrupter.start()
    try:
        summary = run_items(make_items(log, sleep_s=0.5), label_item, tmp_path / "out", workers=2)
    except KeyboardInterrupt:  # a worker's, sent back as its item's outcome
        pytest.fail("SIGINT sent to the workers alone stopped the run")
    finally:
        interrupter.join()
    assert summary.ok and summary.done == KEYS and summary.retries == 0
    assert item_files(tmp_path / "out") == reference
