"""A tiny labelling work function for the label engine tests, at module level so worker processes can import it.

Its output files derive only from the item's key and frame count, so any two runs must write identical bytes. The
payload's other fields make it misbehave on purpose and leave evidence in ``log_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

from trusted_scene_graph.label import LabelError, WorkItem

LABELS_FILE = "labels.json"
FRAMES_FILE = "frames.bin"


def make_items(log_dir: Path, count: int = 6, **behaviour) -> list[WorkItem]:
    """``count`` items keyed item-00, item-01, ... labelling 3, 4, ... frames. ``behaviour`` maps a payload field
    (see :func:`label_item`) to a value for every item, or to a dict {key: value} for some."""
    items = []
    for index in range(count):
        key = f"item-{index:02d}"
        payload = {"key": key, "frames": 3 + index, "log_dir": str(log_dir)}
        for name, value in behaviour.items():
            if not isinstance(value, dict):
                payload[name] = value
            elif key in value:
                payload[name] = value[key]
        items.append(WorkItem(key, payload))
    return items


def label_item(payload: dict, staging_dir: Path) -> int:
    """Write labels.json and frames.bin for the item. Payload fields besides key/frames/log_dir:

    * kill: 'once' SIGKILLs this process on the item's first attempt, 'always' on every one;
    * kill_after_commit: SIGKILL this process on the item's first attempt just after the engine commits the item
      (its rename), before the result reaches the driver;
    * error: raise a LabelError with this message; bug: raise a ValueError with it;
    * sleep_s: pause between writing the two files, so a non-atomic commit would show half an item;
    * frames_returned: return this instead of the frame count;
    * record_node: leave nodes/<key>.<Ray node id> (in a Ray task).

    Every call leaves calls/<key>.<id> and pids/<its process id>; the number of items running as it starts goes
    to concurrency/<key>.<id>.
    """
    key, log_dir = payload["key"], Path(payload["log_dir"])
    _touch(log_dir / "calls" / f"{key}.{uuid.uuid4().hex}")
    _touch(log_dir / "pids" / str(os.getpid()))
    if payload.get("record_node"):
        import ray

        _touch(log_dir / "nodes" / f"{key}.{ray.get_runtime_context().get_node_id()}")
    killed = log_dir / "killed" / key
    if payload.get("kill") == "always" or (payload.get("kill") == "once" and not killed.exists()):
        _touch(killed)
        os.kill(os.getpid(), signal.SIGKILL)
    if payload.get("kill_after_commit") and not killed.exists():
        _touch(killed)
        from trusted_scene_graph.label import engine

        # What the engine calls right after the rename that commits the item, in this (worker) process only.
        engine.fsync_dir = lambda directory: os.kill(os.getpid(), signal.SIGKILL)
    if "error" in payload:
        raise LabelError(payload["error"])
    if "bug" in payload:
        raise ValueError(payload["bug"])

    running = log_dir / "running" / key
    _touch(running)
    concurrency = len(list(running.parent.iterdir()))
    (log_dir / "concurrency").mkdir(exist_ok=True)
    (log_dir / "concurrency" / f"{key}.{uuid.uuid4().hex}").write_text(str(concurrency))
    try:
        frames = payload["frames"]
        rewards = [round(1.0 / (1 + frame + len(key)), 6) for frame in range(frames)]
        (staging_dir / LABELS_FILE).write_text(json.dumps({"key": key, "reward": rewards}, sort_keys=True))
        time.sleep(payload.get("sleep_s", 0.0))
        digests = b"".join(hashlib.sha256(f"{key}/{frame}".encode()).digest() for frame in range(frames))
        (staging_dir / FRAMES_FILE).write_bytes(digests)
    finally:
        running.unlink()
    return payload.get("frames_returned", frames)


def calls(log_dir: Path) -> dict[str, int]:
    """How many times label_item was called per key."""
    counts: dict[str, int] = {}
    for path in (log_dir / "calls").iterdir() if (log_dir / "calls").exists() else ():
        key = path.name.rsplit(".", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def nodes(log_dir: Path) -> dict[str, str]:
    """The Ray node each item ran on (record_node)."""
    return dict(path.name.split(".", 1) for path in (log_dir / "nodes").iterdir())


def worker_pids(log_dir: Path) -> list[int]:
    """The processes label_item ran in."""
    return sorted(int(path.name) for path in (log_dir / "pids").iterdir())


def concurrency(log_dir: Path) -> list[int]:
    """The number of items running (this one included) seen by each call as it started."""
    return [int(path.read_text()) for path in sorted((log_dir / "concurrency").iterdir())]


def item_files(out_dir: Path) -> dict[str, bytes]:
    """Every file of every committed item, by path relative to out_dir (the engine's dot entries left out)."""
    return {str(path.relative_to(out_dir)): path.read_bytes()
            for item in sorted(out_dir.iterdir()) if not item.name.startswith(".")
            for path in sorted(item.rglob("*")) if path.is_file()}


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
