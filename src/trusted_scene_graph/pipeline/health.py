"""Frame counters and the health summary a node reports on ``/diagnostics``."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from trusted_scene_graph.text import plural

# diagnostic_msgs/DiagnosticStatus levels.
OK, WARN, ERROR = 0, 1, 2

#: The progress line lists at most this many labels of the last graph.
MAX_LABELS_LOGGED = 10


# A number in a log message: messages differing only in their numbers (stamps, sizes, counts) are of one kind.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


class LogThrottle:
    """Which error logs of one call site to print: each kind of message at most once per interval, so that a flood
    of one error does not hide the first of another (rclpy's own throttling is per call site, whatever the message).
    Messages that differ only in their numbers are of one kind. Not thread-safe: one per callback group."""

    def __init__(self, max_kinds: int = 64) -> None:
        self.max_kinds = max_kinds
        self._last_logged_s: dict[str, float] = {}  # kind -> when it was last logged, least recent first

    def should_log(self, message: str, now_s: float, interval_s: float) -> bool:
        kind = _NUMBER.sub("#", message)
        last_s = self._last_logged_s.get(kind)
        if last_s is not None and now_s - last_s < interval_s:
            return False
        self._last_logged_s.pop(kind, None)
        if len(self._last_logged_s) >= self.max_kinds:  # bounded: forget the kind logged least recently
            del self._last_logged_s[next(iter(self._last_logged_s))]
        self._last_logged_s[kind] = now_s
        return True


@dataclass
class FrameStats:
    """What happened to the frames a node received."""

    completed: int = 0  # complete (colour + depth + info) frames from the synchronizer
    dropped: int = 0  # complete frames replaced by a newer one before perception took them
    processed: int = 0
    failed: int = 0
    last_failed: bool = False
    last_error: str = ""
    last_process_ms: float = math.nan
    messages: dict[str, int] = field(default_factory=dict)  # messages received per input topic

    def expect_topics(self, topics: Sequence[str]) -> None:
        """List the input topics (with 0 messages until one arrives), so a silent topic shows in the reports."""
        for topic in topics:
            self.messages.setdefault(topic, 0)

    def record_message(self, topic: str) -> None:
        self.messages[topic] = self.messages.get(topic, 0) + 1

    def record_success(self, process_ms: float) -> None:
        self.processed += 1
        self.last_failed = False
        self.last_process_ms = process_ms

    def record_failure(self, error: str) -> None:
        self.failed += 1
        self.last_failed = True
        self.last_error = error


def health(stats: FrameStats, details: Mapping[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """Level, one-line message and key/values (the counters, then ``details``) for a diagnostics status."""
    values = {
        "frames_completed": str(stats.completed),
        "frames_dropped": str(stats.dropped),
        "frames_processed": str(stats.processed),
        "frames_failed": str(stats.failed),
        "last_process_ms": f"{stats.last_process_ms:.1f}",
        "last_error": stats.last_error,
        "messages_received": messages_text(stats.messages),
        **(details or {}),
    }
    if stats.last_failed:
        return ERROR, f"last frame skipped: {stats.last_error}", values
    if stats.processed == 0:
        silent = [topic for topic, count in stats.messages.items() if count == 0]
        return WARN, ("waiting for a synchronised frame (colour, depth if used, camera_info)"
                      + (f"; nothing received on {', '.join(silent)}" if silent else "")), values
    return OK, f"{stats.processed} frames processed, {stats.dropped} dropped, {stats.failed} failed", values


def messages_text(messages: Mapping[str, int]) -> str:
    """``/camera/color/image_raw 12, /camera/depth/image_raw 0`` (``none`` before any input is known)."""
    return ", ".join(f"{topic} {count}" for topic, count in messages.items()) or "none"


def unknown_instance_id_warning(instance_id: int, instances_topic: str) -> str:
    """The node's warning, once per id, for an instance id the 'sim' detector has no label for."""
    return (f"instance id {instance_id} in {instances_topic} is not in detector.sim_labels; it is ignored "
            "(config/benchmark.yaml lists every recorded label)")


def sim_label_details(unknown_instance_ids: Collection[int]) -> dict[str, str]:
    """The 'sim' detector's ``/diagnostics`` entry: instance ids seen without a label (``none``: all are known)."""
    return {"instance_ids_not_in_sim_labels": ", ".join(str(i) for i in sorted(unknown_instance_ids)) or "none"}


def graph_text(labels: Sequence[str] | None) -> str:
    """``last graph: 3 objects (cube, gripper, table)`` from the object labels of the last graph (None: no graph)."""
    if labels is None:
        return "no graph yet"
    names = sorted(set(labels))
    shown = ", ".join(names[:MAX_LABELS_LOGGED]) + (f", ... ({len(names) - MAX_LABELS_LOGGED} more labels)"
                                                    if len(names) > MAX_LABELS_LOGGED else "")
    return f"last graph: {plural(len(labels), 'object')}" + (f" ({shown})" if names else "")


class ProgressLog:
    """The node's periodic progress line: while messages come in, one per period; when they stop, one saying so;
    then nothing until they come again (an idle node does not fill the log)."""

    def __init__(self) -> None:
        self._last: tuple | None = None  # the counters of the last line
        self._last_completed = 0
        self._stopped_reported = False

    def line(self, stats: FrameStats, labels: Sequence[str] | None) -> str | None:
        """The line for this period, or None; ``labels`` are the object labels of the last graph (None: none)."""
        counters = (stats.completed, stats.processed, stats.failed, tuple(stats.messages.items()))
        if counters == self._last:
            if self._stopped_reported or stats.completed == 0 and not any(stats.messages.values()):
                return None
            self._stopped_reported = True
            return f"no new message since the last report; {self._totals(stats, labels)}"
        self._stopped_reported = False
        new = stats.completed - self._last_completed
        self._last, self._last_completed = counters, stats.completed
        if stats.completed == 0:
            return (f"no synchronised frame yet (one message of each input within sync.tolerance_s); messages "
                    f"received: {messages_text(stats.messages)}")
        return f"{self._totals(stats, labels)} (+{plural(new, 'frame')} since the last report)"

    @staticmethod
    def _totals(stats: FrameStats, labels: Sequence[str] | None) -> str:
        return (f"{plural(stats.completed, 'frame')} received, {stats.processed} processed, {stats.failed} failed, "
                f"{stats.dropped} dropped; {graph_text(labels)}")
