"""Run labelling work items resumably, in-process, on local worker processes or on a Ray cluster.

Each :class:`WorkItem` (a bag, an episode) is labelled by a top-level ``work_fn(payload, staging_dir) -> frames``
that writes the item's files into a fresh, empty staging dir under ``out_dir/.staging/``. The process that ran
``work_fn`` then commits the item by renaming the staging dir to ``out_dir/<key>``: a rename within one
filesystem is atomic, so ``out_dir`` only ever holds complete items, and a run that was killed (driver, worker or
machine) is finished by running it again: committed items are skipped, staging leftovers are deleted.

Engines (:data:`ENGINES`):

* ``local``: ``workers == 1`` labels in this process (simple to debug); ``workers > 1`` uses 'spawn' worker
  processes (torch threads and fork do not mix). A worker killed mid-item (SIGKILL, the OOM killer) is replaced
  and its item retried, up to ``max_retries`` times. Workers ignore SIGINT: on Ctrl-C the driver stops and
  terminates them (their items are cut short; a rerun labels them), then removes the staging dirs. SIGTERM takes
  the same path within :func:`~trusted_scene_graph.signals.sigterm_interrupts` (``tsg label`` runs in it).
* ``ray``: one Ray task per item, at most ``workers`` in flight, retried by Ray up to ``max_retries`` times when
  its worker or node dies. ``out_dir`` must be on a filesystem shared by every Ray node (trivially true for a local
  cluster): workers write and commit there themselves, so the driver never moves files between machines.

An item whose ``work_fn`` raises a :class:`TsgError` is reported in :attr:`RunSummary.failed` (not retried: bad
input fails again) and the other items still run; any other exception is a bug and propagates.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib.util
import multiprocessing
import operator
import os
import re
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.files import fsync_dir, fsync_tree
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.signals import Terminated, as_terminated, signal_handlers

#: Under ``out_dir``: the attempts in progress, one dir per item key holding one dir per attempt.
STAGING_DIR = ".staging"
#: Under ``out_dir``: locked (flock) by the run labelling into it, so two runs cannot delete each other's staging.
LOCK_FILE = ".lock"

# Keys name directories on every filesystem a cluster may share; a leading dot is reserved for the engine's own
# entries. 200 characters leave room within NAME_MAX (255) for the staging names.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

WorkFn = Callable[[Any, Path], int]
# The directories whose lock this process holds (flock conflicts between two opens of one file in one process too).
_HELD_LOCKS: set[Path] = set()
_NO_RAY = "label engine 'ray' needs the ray package: pip install 'trusted_scene_graph[ray]'"
#: Seconds to wait for a TCP connection to ``ray_address`` (Ray itself retries for minutes where nothing listens).
RAY_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WorkItem:
    """One unit of labelling: ``key`` names its output dir ``out_dir/<key>``; ``payload`` (picklable) goes to
    ``work_fn``."""

    key: str
    payload: Any

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.fullmatch(self.key):
            raise LabelError(f"work item key {self.key!r} is not a safe directory name: use 1 to 200 letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")


@dataclass(frozen=True)
class ItemDone:
    """An item settled, as reported to the progress callback: labelled (``frames`` in ``seconds`` of work),
    skipped (committed by an earlier run) or failed (``error`` says why)."""

    key: str
    frames: int
    seconds: float
    skipped: bool = False
    error: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """What a run did. Keys are in the order of the items given."""

    done: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: Mapping[str, str]  # key -> reason
    frames: int  # labelled by this run (skipped items not counted)
    seconds: float  # wall time of the run
    attempts: int  # work_fn attempts made, retries included
    # The failed items whose worker process (or Ray node) died on every attempt, rather than failing on their input:
    # a rerun may label them.
    worker_died: tuple[str, ...] = ()

    @property
    def retries(self) -> int:
        """Attempts beyond the first of each item (after its worker died)."""
        return self.attempts - len(self.done) - len(self.failed)

    @property
    def ok(self) -> bool:
        """Every item is labelled (now or by an earlier run)."""
        return not self.failed


@dataclass(frozen=True)
class _Options:
    workers: int
    max_retries: int
    ray_address: str | None


class _Tally:
    """The driver's record of the run, reporting each settled item to the progress callback."""

    def __init__(self, progress: Callable[[ItemDone], None] | None) -> None:
        self._progress = progress
        self.done: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}
        self.worker_died: list[str] = []
        self.frames = 0
        self.attempts = 0

    def skip(self, key: str) -> None:
        self.skipped.append(key)
        self._report(ItemDone(key, 0, 0.0, skipped=True))

    def finish(self, key: str, frames: int, seconds: float, attempts: int) -> None:
        self.done.append(key)
        self.frames += frames
        self.attempts += attempts
        self._report(ItemDone(key, frames, seconds))

    def fail(self, key: str, reason: str, attempts: int, worker_died: bool = False) -> None:
        self.failed[key] = reason
        self.attempts += attempts
        if worker_died:
            self.worker_died.append(key)
        self._report(ItemDone(key, 0, 0.0, error=reason))

    def summary(self, keys: list[str], seconds: float) -> RunSummary:
        rank = {key: index for index, key in enumerate(keys)}
        return RunSummary(done=tuple(sorted(self.done, key=rank.__getitem__)),
                          skipped=tuple(sorted(self.skipped, key=rank.__getitem__)),
                          failed={key: self.failed[key] for key in sorted(self.failed, key=rank.__getitem__)},
                          frames=self.frames, seconds=seconds, attempts=self.attempts,
                          worker_died=tuple(sorted(self.worker_died, key=rank.__getitem__)))

    def _report(self, event: ItemDone) -> None:
        if self._progress is not None:
            self._progress(event)


def check_run_options(engine: str, workers: int, max_retries: int, ray_address: str | None) -> None:
    """Refuse run options :func:`run_items` cannot use, before anything is written (``tsg label`` checks them before
    it writes its manifest)."""
    if engine not in ENGINES:
        raise LabelError(f"unknown label engine {engine!r}; known engines: {sorted(ENGINES)}")
    if workers < 1:
        raise LabelError(f"workers must be at least 1, got {workers}")
    if max_retries < 0:
        raise LabelError(f"max_retries must be at least 0, got {max_retries}")
    if ray_address is not None and engine != "ray":
        raise LabelError(f"ray_address {ray_address!r} is only used by engine 'ray', not {engine!r}")
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise LabelError(_NO_RAY)


def run_items(items: Iterable[WorkItem], work_fn: WorkFn, out_dir: Path | str, *, engine: str = "local",
              workers: int = 1, ray_address: str | None = None, max_retries: int = 3,
              progress: Callable[[ItemDone], None] | None = None) -> RunSummary:
    """Label every item not yet committed in ``out_dir`` with ``work_fn`` on ``engine``; see the module docstring.

    ``workers`` bounds the items labelled at once (processes, or Ray tasks in flight); ``max_retries`` bounds the
    retries of an item whose worker died (``max_retries + 1`` attempts in all); ``ray_address`` joins an existing
    Ray cluster (``engine='ray'`` only; without it Ray starts a local one, unless this process is already connected
    to one). ``progress`` is called in this process as each item settles.
    """
    items = list(items)
    check_run_options(engine, workers, max_retries, ray_address)
    runner = ENGINES[engine]
    repeated = sorted(key for key, count in Counter(item.key for item in items).items() if count > 1)
    if repeated:
        raise LabelError(f"work item keys must be unique; repeated: {repeated}")

    started_s = time.perf_counter()
    # Absolute, because Ray workers need not share this process's working directory.
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    tally = _Tally(progress)
    with exclusive(out_dir):
        _remove_tree(out_dir / STAGING_DIR)  # partial items of a killed run
        todo = []
        for item in items:
            final = out_dir / item.key
            if final.exists() and not final.is_dir():
                raise LabelError(f"{final} is in the way of work item {item.key!r}: it is not an item directory")
            if final.is_dir():
                tally.skip(item.key)
            else:
                todo.append(item)
        if todo:
            runner(todo, work_fn, out_dir, _Options(workers, max_retries, ray_address), tally)
        _remove_tree(out_dir / STAGING_DIR)  # attempts whose worker died
    return tally.summary([item.key for item in items], time.perf_counter() - started_s)


# --- one attempt, in whichever process labels the item -----------------------------------------------------------


#: The file an attempt writes next to its item's staging dirs just before it commits: "<frames> <seconds>".
_RESULT_SUFFIX = ".result"


def _result_path(out_dir: Path, key: str) -> Path:
    """Where an attempt writes its item's (frames, seconds) before committing it, for :func:`_committed`."""
    return out_dir / STAGING_DIR / f"{key}{_RESULT_SUFFIX}"


def _attempt(work_fn: WorkFn, key: str, payload: Any, out_dir: Path) -> tuple[int, float]:
    """Label one item into a fresh staging dir and commit it; returns (frames, seconds of work)."""
    staging = out_dir / STAGING_DIR / key / uuid.uuid4().hex
    staging.mkdir(parents=True)
    started_s = time.perf_counter()
    try:
        frames = _frame_count(work_fn(payload, staging), work_fn, key)
        fsync_tree(staging)
        # What a worker that dies between the commit and its result reaching the driver leaves the driver to report
        # (beside the attempts' dirs, so it is not counted as one: _died_attempts).
        _result_path(out_dir, key).write_text(f"{frames} {time.perf_counter() - started_s!r}")
        _commit(staging, out_dir / key)
    finally:
        # Gone after a commit; still there after a failure or when another attempt committed first.
        if staging.exists():
            shutil.rmtree(staging)
    return frames, time.perf_counter() - started_s


def _committed(out_dir: Path, key: str) -> tuple[int, float] | None:
    """(frames, seconds) of an item an attempt committed though its worker then died (the result it wrote before
    committing), or None when the item is not committed. A worker killed in that window (SIGKILL, the OOM killer)
    still labelled the item: it is done, not failed, and not labelled again."""
    if not (out_dir / key).is_dir():
        return None
    try:
        frames, seconds = _result_path(out_dir, key).read_text().split()
        return int(frames), float(seconds)
    except (OSError, ValueError):
        return 0, 0.0  # committed, but what it labelled is not known (its result unreadable): counted as none


def _frame_count(result: Any, work_fn: WorkFn, key: str) -> int:
    name = getattr(work_fn, "__qualname__", repr(work_fn))
    try:
        frames = operator.index(result)
    except TypeError:
        raise LabelError(f"{name} returned {result!r} for work item {key!r}; it must return the number of frames "
                         "it labelled") from None
    if frames < 0:
        raise LabelError(f"{name} returned {frames} frames for work item {key!r}; expected 0 or more")
    return frames


def _commit(staging: Path, final: Path) -> None:
    """Publish a finished item atomically. If another attempt at it committed first (a retry racing the attempt
    thought dead), keep that one: the output holds each item exactly once. (POSIX rename replaces an existing
    *empty* directory, which only matters for items that write nothing, and then both are equal.)"""
    try:
        os.rename(staging, final)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return
        raise
    fsync_dir(final.parent)


# --- the driver ---------------------------------------------------------------------------------------------------


@contextmanager
def exclusive(out_dir: Path | str) -> Iterator[None]:
    """Hold ``out_dir``'s lock (:data:`LOCK_FILE`, created with ``out_dir``) or raise a :class:`LabelError` when
    another run holds it. Re-entrant within a process, so a caller can hold it over more than :func:`run_items` (tsg
    label: over a LeRobot dataset's clearing, labelling and assembly)."""
    out_dir = Path(out_dir).absolute()
    if out_dir in _HELD_LOCKS:
        yield
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(out_dir / LOCK_FILE, "a")  # noqa: SIM115 - closed by the with below
    except OSError as exc:  # a read-only or full file system, a path through a file: bad --out, said as such
        raise LabelError(f"cannot write into {out_dir}: {exc.strerror or exc}") from exc
    # The kernel drops the lock when this process dies, so a killed run never leaves the directory locked.
    with lock_file as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabelError(f"{out_dir} is being labelled by another run (it holds {out_dir / LOCK_FILE}); wait for "
                             "it to end or label into another directory") from None
        _HELD_LOCKS.add(out_dir)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(out_dir)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _run_local(todo: list[WorkItem], work_fn: WorkFn, out_dir: Path, options: _Options, tally: _Tally) -> None:
    if options.workers > 1:
        _run_processes(todo, work_fn, out_dir, options, tally)
        return
    try:
        for item in todo:
            try:
                frames, seconds = _attempt(work_fn, item.key, item.payload, out_dir)
            except TsgError as error:
                tally.fail(item.key, str(error), attempts=1)
            else:
                tally.finish(item.key, frames, seconds, attempts=1)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as Terminated: the item cut short left its staging dir
        with _stop_signals_ignored():
            _remove_staging(out_dir)
        raise


def _remove_staging(out_dir: Path) -> None:
    """The staging dirs of a local run that was stopped, once nothing writes into them (a rerun removes whatever is
    left). Ray tasks on a cluster joined may still be cancelling, writing into theirs: a rerun removes those."""
    shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)


def _run_processes(todo: list[WorkItem], work_fn: WorkFn, out_dir: Path, options: _Options, tally: _Tally) -> None:
    """Label on ``workers`` spawned processes, each its own single-process executor rather than one shared pool: a
    worker that dies breaks only its executor, so the crash is charged to exactly the item it was running, and the
    items on the other workers carry on. Workers live across items (a model loaded once per process stays
    loaded); a dead one is replaced."""
    context = multiprocessing.get_context("spawn")
    executors: list[ProcessPoolExecutor | None] = [None] * min(options.workers, len(todo))
    queue = deque(todo)
    attempts: Counter[str] = Counter()
    running: dict[Future, tuple[int, WorkItem]] = {}

    def retire(slot: int) -> None:
        # Its worker died; a fresh one takes the slot at the next submit.
        executors[slot].shutdown(wait=True)
        executors[slot] = None

    def submit(slot: int, item: WorkItem) -> None:
        attempts[item.key] += 1
        for _ in range(2):
            if executors[slot] is None:
                executors[slot] = ProcessPoolExecutor(max_workers=1, mp_context=context,
                                                      initializer=_init_worker, initargs=(os.getpid(),))
            try:
                running[executors[slot].submit(_attempt, work_fn, item.key, item.payload, out_dir)] = slot, item
                return
            except BrokenProcessPool:
                # The worker died while idle, holding no item: replace it without charging this item.
                retire(slot)
        raise LabelError(f"the worker process for work item {item.key!r} died twice before it got the item")

    try:
        while queue or running:
            busy = {slot for slot, _ in running.values()}
            for slot in range(len(executors)):
                if queue and slot not in busy:
                    submit(slot, queue.popleft())
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                slot, item = running.pop(future)
                try:
                    frames, seconds = future.result()
                except BrokenProcessPool:
                    # Killed mid-item (SIGKILL, the OOM killer), or just after committing it.
                    retire(slot)
                    if (committed := _committed(out_dir, item.key)) is not None:
                        tally.finish(item.key, *committed, attempts[item.key])
                    elif attempts[item.key] <= options.max_retries:
                        queue.append(item)
                    else:
                        tally.fail(item.key, f"its worker process died on each of its {attempts[item.key]} "
                                             "attempt(s) (killed, or out of memory?)", attempts[item.key],
                                   worker_died=True)
                except TsgError as error:
                    tally.fail(item.key, str(error), attempts[item.key])
                else:
                    tally.finish(item.key, frames, seconds, attempts[item.key])
    except KeyboardInterrupt:
        # The workers ignore SIGINT (_init_worker): Ctrl-C (or SIGTERM, as Terminated) stops the run here, and their
        # items are cut short rather than waited for, and their staging dirs removed. A second signal
        # meanwhile would leave workers running, writing into the dirs about to be removed: the stop is finished first.
        with _stop_signals_ignored():
            for executor in executors:
                if executor is not None:
                    _terminate_workers(executor)
            for executor in executors:
                if executor is not None:
                    executor.shutdown(wait=True, cancel_futures=True)
            _remove_staging(out_dir)
        raise
    finally:
        # On a propagating error the items already running finish (and commit) before it surfaces.
        for executor in executors:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(executor: ProcessPoolExecutor) -> None:
    """SIGTERM the executor's worker processes (``terminate_workers`` from Python 3.14 on; before it, the executor's
    own record of its processes)."""
    terminate = getattr(executor, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((executor._processes or {}).values()):  # noqa: SLF001  (no public way before 3.14)
        if process.is_alive():
            process.terminate()


def _init_worker(driver_pid: int) -> None:
    """Worker initializer.

    Ctrl-C at a terminal sends SIGINT to the whole foreground process group, workers included: each would print
    its KeyboardInterrupt traceback. The driver alone handles it (and terminates the workers), so they ignore it.

    A worker holds its own end of the executor's task queue, so when the driver is killed (SIGKILL, the OOM killer)
    it would idle on forever, holding its model's memory; on Linux, have the kernel kill it with the driver."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != driver_pid:  # the driver died before the request was made
        os._exit(1)


def _run_ray(todo: list[WorkItem], work_fn: WorkFn, out_dir: Path, options: _Options, tally: _Tally) -> None:
    try:
        import ray
    except ImportError:
        raise LabelError(_NO_RAY) from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            with _sigterm_handler_kept():
                if options.ray_address is not None:
                    _join_ray_cluster(ray, options.ray_address)
                else:
                    # A cluster of our own: "local", or ray.init would join the one RAY_ADDRESS (inside a Ray job)
                    # or `ray start --head` names, and refuse num_cpus there.
                    ray.init(address="local", num_cpus=options.workers)
        except SystemExit as exit_:
            # SIGTERM while Ray starts: its own handler, in force until ray.init returns, exits with the signal's
            # number; the run stops as on SIGTERM at any other time.
            ray.shutdown()
            if exit_.code == signal.SIGTERM:
                raise Terminated(f"signal {signal.SIGTERM}") from None
            raise
    task = ray.remote(num_cpus=1, max_retries=options.max_retries)(_attempt)
    queue = deque(todo)
    running: dict[Any, WorkItem] = {}
    try:
        while queue or running:
            # Bounding the tasks in flight (not just the cluster's CPUs) makes --workers mean the same everywhere.
            while queue and len(running) < options.workers:
                item = queue.popleft()
                running[task.remote(work_fn, item.key, item.payload, out_dir)] = item
            (ref,), _ = ray.wait(list(running), num_returns=1)
            item = running.pop(ref)
            try:
                frames, seconds = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                # work_fn raised; ray.get re-raises it wrapped (and as an instance of its class).
                if not isinstance(error.cause, TsgError):
                    raise
                tally.fail(item.key, str(error.cause), 1 + _died_attempts(out_dir, item.key))
            except ray.exceptions.RayError as error:
                # Ray gave up on a system failure (worker or node died, out of memory) after max_retries retries;
                # unless the last attempt died only after committing the item.
                if (committed := _committed(out_dir, item.key)) is not None:
                    tally.finish(item.key, *committed, options.max_retries + 1)
                else:
                    tally.fail(item.key, f"Ray gave up on it after {options.max_retries + 1} attempt(s): {error}",
                               options.max_retries + 1, worker_died=True)
            else:
                tally.finish(item.key, frames, seconds, 1 + _died_attempts(out_dir, item.key))
    except KeyboardInterrupt as stop:
        # Ctrl-C or SIGTERM (which ray.wait turns into a plain KeyboardInterrupt: as_terminated tells them apart):
        # the tasks are ended and, once no worker of a cluster started here is left, their staging dirs removed. A
        # joined cluster's tasks may still be cancelling, one of them renaming its staging dir into place: removing
        # the dirs meanwhile could commit an emptied item, so a rerun removes them.
        with _stop_signals_ignored():
            for ref in running:
                ray.cancel(ref, force=True)
            running.clear()
            if started_here:
                ray.shutdown()
                started_here = False
                _remove_staging(out_dir)
        raise as_terminated(stop) from None
    finally:
        for ref in running:  # only when an error propagates
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


def _stop_signals_ignored() -> AbstractContextManager[None]:
    """SIGINT and SIGTERM ignored within the block: while a run that is already stopping ends its workers and
    removes their staging dirs."""
    return signal_handlers({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN})


def _sigterm_handler_kept() -> AbstractContextManager[None]:
    """The SIGTERM handler the block replaced put back: ``ray.init`` installs its own (``sys.exit(15)``, with a stack
    dump), which would bypass :func:`~trusted_scene_graph.signals.sigterm_interrupts` (exit 15, no note, the
    staging dirs left) for the rest of the run; ``ray.shutdown`` does not restore it."""
    return signal_handlers({signal.SIGTERM: None})


def _join_ray_cluster(ray: Any, address: str) -> None:
    """``ray.init(address=...)``, or a :class:`LabelError` saying why not: instead of Ray's traceback, and instead of
    Ray retrying for minutes an address where nothing listens (a TCP connection is tried first, for ``host:port``).
    Where something other than Ray listens, Ray still retries for minutes: telling the two apart would take Ray's own
    protocol."""
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise LabelError(f"--ray-address {address}: nothing answers there ({exc}); start the cluster's head "
                             "(ray start --head) or leave --ray-address out to start a local cluster") from None
    try:
        ray.init(address=address)
    except (ConnectionError, ValueError, RuntimeError) as exc:  # what ray.init raises for an address it refuses
        raise LabelError(f"--ray-address {address}: {exc}") from None


def _died_attempts(out_dir: Path, key: str) -> int:
    """Attempts at an item whose process died, which Ray retried without telling the driver: each left its
    staging dir behind (a finished or failed attempt removes its own)."""
    staging = out_dir / STAGING_DIR / key
    return sum(1 for _ in staging.iterdir()) if staging.is_dir() else 0


#: Engine name -> implementation.
ENGINES: dict[str, Callable[[list[WorkItem], WorkFn, Path, _Options, _Tally], None]] = {
    "local": _run_local,
    "ray": _run_ray,
}
