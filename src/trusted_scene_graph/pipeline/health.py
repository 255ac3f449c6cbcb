"""Frame counters and the health summary a node reports on ``/diagnostics``."""

from __future__ import annotations

import dataclasses
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
# A number, unless it is part of a name (after a letter, '_' or '/': /camera1, yuv422, frame_2); the second side of a
# size (the 480 of 640x480) is a number too.
_NUMBER = re.compile(r"(?:(?<![A-Za-z_/\d.])|(?<=\dx))[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


class LogThrottle:
    """Which error logs of one call site to print: each kind of message at most once per interval, so that a flood
    of one error does not hide the first of another (rclpy's own throttling is per call site, whatever the message).
    Messages that differ only in their numbers are of one kind (digits inside a name, such as ``/camera1``, are part of
    the name). Not thread-safe: one per callback group."""

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
    """What happened to the frames a node received. Times (``*_s``) are on the node's steady clock
    (``time.monotonic``), not message stamps: a replay carries old stamps."""

    completed: int = 0  # complete (colour + depth + info) frames from the synchronizer
    dropped: int = 0  # complete frames replaced by a newer one before perception took them
    processed: int = 0
    failed: int = 0
    last_failed: bool = False
    last_error: str = ""
    last_process_ms: float = math.nan
    messages: dict[str, int] = field(default_factory=dict)  # messages received per input topic
    active_since_s: float | None = None  # when the node last started listening (activation)
    last_frame_s: float | None = None  # when perception last finished a frame (processed or failed)
    last_completed_s: float | None = None  # when the synchronizer last completed a frame
    last_message_s: dict[str, float] = field(default_factory=dict)  # when each input topic's last message came

    def expect_topics(self, topics: Sequence[str], now_s: float) -> None:
        """List the input topics (with 0 messages until one arrives), so a silent topic shows in the reports, and
        start the clocks that say how long nothing came (at ``now_s``, the activation)."""
        self.active_since_s = now_s
        for topic in topics:
            self.messages.setdefault(topic, 0)

    def record_message(self, topic: str, now_s: float) -> None:
        self.messages[topic] = self.messages.get(topic, 0) + 1
        self.last_message_s[topic] = now_s

    def record_success(self, process_ms: float, now_s: float) -> None:
        self.processed += 1
        self.last_failed = False
        self.last_process_ms = process_ms
        self.last_frame_s = now_s

    def record_failure(self, error: str, now_s: float) -> None:
        self.failed += 1
        self.last_failed = True
        self.last_error = error
        self.last_frame_s = now_s

    def copy(self) -> FrameStats:
        """A snapshot another thread can read while this one keeps counting."""
        return dataclasses.replace(self, messages=dict(self.messages), last_message_s=dict(self.last_message_s))


def _latest(*times_s: float | None) -> float | None:
    known = [t for t in times_s if t is not None]
    return max(known) if known else None


def frame_age_s(stats: FrameStats, now_s: float) -> float | None:
    """Seconds since perception last finished a frame, or, before the first one, since the activation (None: the
    node has not been activated)."""
    since_s = _latest(stats.last_frame_s, stats.active_since_s)
    return None if since_s is None else now_s - since_s


def silent_inputs_text(stats: FrameStats, now_s: float, max_silence_s: float) -> str:
    """Which inputs stopped: ``no message on /color for 10.1 s (/depth, /camera_info still arriving)``; an input
    is silent when its last message (or the activation, before any) is more than ``max_silence_s`` old."""
    silent, arriving = [], []
    for topic in stats.messages:
        since_s = _latest(stats.last_message_s.get(topic), stats.active_since_s)
        if since_s is None or now_s - since_s > max_silence_s:
            silent.append(f"{topic} for {now_s - since_s:.1f} s" if since_s is not None else topic)
        else:
            arriving.append(topic)
    if not silent:
        return ("every input still arriving (stamps more than sync.tolerance_s apart, or perception busy)"
                if arriving else "no input topic known")
    return f"no message on {', '.join(silent)}" + (f" ({', '.join(arriving)} still arriving)" if arriving else "")


def health(stats: FrameStats, details: Mapping[str, str] | None = None, now_s: float | None = None,
           max_frame_age_s: float = math.inf) -> tuple[int, str, dict[str, str]]:
    """Level, one-line message and key/values (the counters, then ``details``) for a diagnostics status.

    With ``now_s`` (the steady clock), a node that has finished no frame for more than ``max_frame_age_s`` (since
    its activation, before the first) is at least WARN, and the message names the inputs that stopped."""
    age_s = frame_age_s(stats, now_s) if now_s is not None else None
    values = {
        "frames_completed": str(stats.completed),
        "frames_dropped": str(stats.dropped),
        "frames_processed": str(stats.processed),
        "frames_failed": str(stats.failed),
        "last_process_ms": f"{stats.last_process_ms:.1f}",
        "last_error": stats.last_error,
        "messages_received": messages_text(stats.messages),
    }
    if now_s is not None:
        values["last_frame_age_s"] = "none" if stats.last_frame_s is None else f"{now_s - stats.last_frame_s:.1f}"
        values["last_message_age_s"] = ", ".join(
            f"{topic} " + (f"{now_s - stats.last_message_s[topic]:.1f}" if topic in stats.last_message_s else "none")
            for topic in stats.messages) or "none"
    values.update(details or {})
    # "12.0 s; no message on ... (... still arriving)" when the last frame is too old, else "".
    silence = (f"{age_s:.1f} s; {silent_inputs_text(stats, now_s, max_frame_age_s)}"
               if age_s is not None and age_s > max_frame_age_s else "")
    if stats.last_failed:
        return ERROR, f"last frame skipped: {stats.last_error}" + (f"; no frame since, for {silence}" if silence
                                                                   else ""), values
    if stats.processed == 0:
        silent = [topic for topic, count in stats.messages.items() if count == 0]
        return WARN, ("waiting for a synchronised frame (colour, depth if used, camera_info)"
                      + (f" for {silence}" if silence else f"; nothing received on {', '.join(silent)}" if silent
                         else "")), values
    if silence:
        return WARN, f"no frame processed for {silence}", values
    return OK, f"{stats.processed} frames processed, {stats.dropped} dropped, {stats.failed} failed", values


def messages_text(messages: Mapping[str, int]) -> str:
    """``/camera/color/image_raw 12, /camera/depth/image_raw 0`` (``none`` before any input is known)."""
    return ", ".join(f"{topic} {count}" for topic, count in messages.items()) or "none"


def unknown_instance_id_warning(instance_id: int, instances_topic: str) -> str:
    """The node's warning, once per id (for the first ids only), for an instance id the 'sim' detector has no label
    for."""
    return (f"instance id {instance_id} in {instances_topic} is not in detector.sim_labels; it is ignored "
            "(config/benchmark.yaml lists every recorded label)")


def more_unknown_instance_ids_warning(count: int, instances_topic: str) -> str:
    """The node's one warning once more ids lack a label than it warns about one by one (``count`` so far)."""
    return (f"{count} instance ids in {instances_topic} are not in detector.sim_labels; further ones are not logged "
            "(/diagnostics counts them)")


def sim_label_details(unknown_instance_ids: Collection[int], count: int | None = None) -> dict[str, str]:
    """The 'sim' detector's ``/diagnostics`` entries: the instance ids seen without a label (``none``: all are known),
    the detector keeping only the first ones, and how many there are (``count``, default: as many as listed)."""
    count = len(unknown_instance_ids) if count is None else count
    listed = ", ".join(str(i) for i in sorted(unknown_instance_ids))
    more = count - len(unknown_instance_ids)
    return {"instance_ids_not_in_sim_labels": (listed + (f", ... ({more} more)" if more > 0 else "")) or "none",
            "instance_ids_not_in_sim_labels_count": str(count)}


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

    def line(self, stats: FrameStats, labels: Sequence[str] | None, now_s: float | None = None,
             max_silence_s: float = math.inf) -> str | None:
        """The line for this period, or None; ``labels`` are the object labels of the last graph (None: none). With
        ``now_s`` (the steady clock), a line after frames stopped completing for more than ``max_silence_s`` says
        since when, and which inputs stopped."""
        counters = (stats.completed, stats.processed, stats.failed, tuple(stats.messages.items()))
        if counters == self._last:
            if self._stopped_reported or stats.completed == 0 and not any(stats.messages.values()):
                return None
            self._stopped_reported = True
            return (f"no new message since the last report; {self._totals(stats, labels)}"
                    f"{self._stalled(stats, now_s, max_silence_s)}")
        self._stopped_reported = False
        new = stats.completed - self._last_completed
        self._last, self._last_completed = counters, stats.completed
        if stats.completed == 0:
            return (f"no synchronised frame yet (one message of each input within sync.tolerance_s); messages "
                    f"received: {messages_text(stats.messages)}")
        return (f"{self._totals(stats, labels)} (+{plural(new, 'frame')} since the last report)"
                f"{self._stalled(stats, now_s, max_silence_s)}")

    @staticmethod
    def _stalled(stats: FrameStats, now_s: float | None, max_silence_s: float) -> str:
        """``; no frame completed in 10.0 s; no message on ...`` once frames stopped completing (else "")."""
        since_s = _latest(stats.last_completed_s, stats.active_since_s)
        if now_s is None or since_s is None or now_s - since_s <= max_silence_s:
            return ""
        return f"; no frame completed in {now_s - since_s:.1f} s; {silent_inputs_text(stats, now_s, max_silence_s)}"

    @staticmethod
    def _totals(stats: FrameStats, labels: Sequence[str] | None) -> str:
        return (f"{plural(stats.completed, 'frame')} received, {stats.processed} processed, {stats.failed} failed, "
                f"{stats.dropped} dropped; {graph_text(labels)}")
