"""``tsg replay BAG``: publish a rosbag2 bag's messages on their topics with the recorded timing.

A bag player for installs without ``ros2 bag play`` (rclpy from PyPI wheels has no rosbag2_py), so a live bringup
can be evaluated on recorded data. The bag is read with ``rosbags`` (sqlite3 or mcap storage; a bag directory, a
single ``.mcap``/``.db3`` file, or a directory without ``metadata.yaml`` holding one of them) and each message's
serialized CDR bytes are published unmodified.

- **Damaged mcap**: an mcap file without a valid end (a recorder that was killed) has no summary for rosbags to
  index, so its records are read front to back with the mcap library and the messages before the damage are played,
  in file order (the recorder's write order, which is log-time order for ``ros2 bag record`` and rosbags), with
  :attr:`BagReplay.read_error` set. A damaged sqlite3 database cannot be read past its damage and stays an error.
- **Subscribers**: before playing, the player waits for the first subscriber on any replayed topic, then a short
  grace for the other topics' discovery; topics nobody subscribes to (a bringup ignores a sim bag's ground truth)
  are listed in the summary, not warned about.

- **Types**: the publisher's class comes from importing the recorded type name (``sensor_msgs/msg/Image`` ->
  ``sensor_msgs.msg.Image``). A topic whose type is not installed here is skipped with one warning and counted.
- **QoS**: the recorded ``offered_qos_profiles`` of the topic (reliability, durability, history, depth), else
  :func:`default_qos` (reliable, volatile, keep last 10; transient-local for ``/tf_static``), as ``ros2 bag play``;
  a transient-local ``tf2_msgs/TFMessage`` topic (``/tf_static``) keeps at least as many messages as were recorded on
  it (:func:`keep_every_latched_message`: several latched broadcasters merge onto one publisher).
- **Timing**: messages go out in log-time order; message ``i`` is due ``(t_i - t_origin) / rate`` seconds after the
  start on a monotonic clock, so late wake-ups never accumulate into drift. ``t_origin`` is the bag's start plus
  ``start_offset_s``; a topic subset keeps its timing relative to the bag's start.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import yaml
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trusted_scene_graph.clock import JUMP_BACK_NS
from trusted_scene_graph.config.nodes import TF_STATIC_TOPIC
from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.bag import (
    MCAP_READ_ERRORS,
    McapStream,
    check_bag_path,
    open_rosbags,
    storage_files,
    storage_path,
)
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.signals import sigterm_interrupts

DEFAULT_DEPTH = 10  # rmw's default history depth, what ``ros2 bag play`` uses when the bag records none
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
# As rclcpp's ClockQoS (which ``ros2 bag play --clock`` uses) and rclpy's /clock subscription: best effort, depth 1.
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# Values that name no concrete behaviour of the recording publisher: they leave the field to the default.
_UNRECORDED_POLICIES = frozenset({"SYSTEM_DEFAULT", "UNKNOWN", "BEST_AVAILABLE"})
# After the first subscriber matched, how long the other topics get for their discovery before playback starts:
# Fast DDS matches a process's endpoints within a few hundred ms of each other.
DISCOVERY_GRACE_S = 0.5
_SUBSCRIBER_POLL_S = 0.02
_UNBOUNDED_WIDTH = 10_000  # characters: measures a table's natural width, which rich caps at the width it is given
# A wait shorter than this counts as due: no OS sleeps that finely, and adding a few ulps to a large monotonic
# reading can leave it unchanged, so waiting for them could spin forever.
_WAIT_RESOLUTION_S = 1e-6


class ReplayError(TsgError):
    """A bag that cannot be replayed (missing, corrupt, empty) or invalid replay options."""


# --- QoS ----------------------------------------------------------------------------------------------------------

def default_qos(topic: str) -> QoSProfile:
    """The QoS for a topic whose recording has no usable offered profile: reliable, volatile, keep last 10.

    ``/tf_static`` is transient-local, as every static transform broadcaster publishes it, so late joiners still
    get the static transforms.
    """
    durability = DurabilityPolicy.TRANSIENT_LOCAL if topic == TF_STATIC_TOPIC else DurabilityPolicy.VOLATILE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEFAULT_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                      durability=durability)


def _policy(policy_type: type[Enum], value: object) -> Enum | None:
    """An rclpy policy from a recorded value: rmw's integer (bags up to version 8), its lower-case name (version 9)
    or a rosbags enum member (same names and numbers as rmw's); None when it names no concrete policy."""
    if isinstance(value, Enum):
        value = value.name
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            policy = policy_type(value)
        elif isinstance(value, str):
            policy = policy_type[value.strip().upper()]
        else:
            return None
    except (KeyError, ValueError):
        return None
    return None if policy.name in _UNRECORDED_POLICIES else policy


def _depth(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def qos_from_offers(offers: Iterable[Mapping[str, object]], topic: str = "") -> QoSProfile | None:
    """The replay QoS for a topic from its recorded offered profiles (one per recorded publisher).

    Reliability, durability and history come from the profiles where they agree, else from :func:`default_qos`
    (as ``ros2 bag play`` does for differing offers); the depth is the largest recorded one (bags before version 9
    record ``history: unknown, depth: 0``, so then the default depth). Deadline, lifespan and liveliness are not
    carried over: with ``rate != 1`` they would fire at the recording's pace, not the replay's. None when no
    profile names any concrete policy.
    """
    parsed = [(_policy(ReliabilityPolicy, o.get("reliability")), _policy(DurabilityPolicy, o.get("durability")),
               _policy(HistoryPolicy, o.get("history")), _depth(o.get("depth")))
              for o in offers if isinstance(o, Mapping)]
    if not any(value is not None for fields in parsed for value in fields):
        return None
    default = default_qos(topic)

    def agreed(index: int, fallback):
        known = {fields[index] for fields in parsed if fields[index] is not None}
        return known.pop() if len(known) == 1 else fallback

    history = agreed(2, HistoryPolicy.KEEP_LAST)
    depths = [fields[3] for fields in parsed if fields[3] is not None]
    return QoSProfile(history=history, depth=max(depths, default=DEFAULT_DEPTH),
                      reliability=agreed(0, default.reliability), durability=agreed(1, default.durability))


#: The latched type whose every recorded message a late subscriber needs (see keep_every_latched_message).
STATIC_TRANSFORM_TYPE = "tf2_msgs/msg/TFMessage"


def keep_every_latched_message(qos: QoSProfile, recorded_count: int, msgtype: str = STATIC_TRANSFORM_TYPE
                               ) -> QoSProfile:
    """``qos`` with a depth of at least ``recorded_count`` when it is transient-local (and keep-last) and carries
    transforms (``msgtype``).

    A transient-local topic is how a late subscriber gets what was published before it joined, from each
    publisher's own history: ``/tf_static`` recorded from robot_state_publisher and a camera driver, each offering
    depth 1, holds both broadcasters' transforms for a late joiner. The replay merges them onto one publisher, whose
    history must then hold every recorded message, not max(depths) = 1, or a late subscriber (the node after a
    cleanup and configure) would get only the last broadcaster's transforms. Static transforms are few and small, so
    keeping them all costs little. Other latched topics keep their recorded depth: a mapping bag's ``/map`` is
    latched too, and keeping every map it recorded would hold gigabytes for a late subscriber that needs the last.
    """
    if qos.durability != DurabilityPolicy.TRANSIENT_LOCAL or qos.history == HistoryPolicy.KEEP_ALL \
            or qos.depth >= recorded_count or msgtype != STATIC_TRANSFORM_TYPE:
        return qos
    return QoSProfile(history=qos.history, depth=recorded_count, reliability=qos.reliability,
                      durability=qos.durability)


def qos_from_metadata(offered: str | Sequence[Mapping[str, object]] | None, topic: str = "") -> QoSProfile | None:
    """The replay QoS from a topic's ``offered_qos_profiles`` as stored in a bag, None when absent or unparsable.

    Accepts the YAML text (metadata.yaml up to version 8, the sqlite3 ``topics`` table, mcap channel metadata) or
    the already-parsed list (metadata.yaml version 9). See :func:`qos_from_offers` for how profiles combine.
    """
    return qos_from_offers(_parse_offers(offered), topic)


def _parse_offers(offered: str | Sequence[Mapping[str, object]] | Mapping[str, object] | None,
                  ) -> list[Mapping[str, object]]:
    """The profiles of an ``offered_qos_profiles`` value (YAML text or parsed), [] when absent or unparsable."""
    if isinstance(offered, str):
        try:
            offered = yaml.safe_load(offered)
        except yaml.YAMLError:
            return []
    if isinstance(offered, Mapping):
        offered = [offered]
    if not isinstance(offered, Sequence) or isinstance(offered, str):
        return []
    return [offer for offer in offered if isinstance(offer, Mapping)]


def describe_qos(qos: QoSProfile) -> str:
    """``reliable, transient_local, keep_last 1`` for tables and messages."""
    history = ("keep_all" if qos.history == HistoryPolicy.KEEP_ALL
               else f"{qos.history.name.lower()} {qos.depth}")
    return f"{qos.reliability.name.lower()}, {qos.durability.name.lower()}, {history}"


# --- message types ------------------------------------------------------------------------------------------------

def message_class(type_name: str) -> type | None:
    """The installed message class for a ROS 2 type name (``sensor_msgs/msg/Image``), None if not installed here."""
    from rclpy.type_support import NoTypeSupportImportedException, check_for_type_support

    package, _, rest = type_name.partition("/")
    interface, _, name = rest.rpartition("/")
    if not package or not name:
        return None
    try:
        cls = getattr(importlib.import_module(f"{package}.{interface or 'msg'}"), name)
        check_for_type_support(cls)
    except (ImportError, AttributeError, NoTypeSupportImportedException):
        return None
    return cls


# --- timing -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """When each message is due, in seconds after the replay started (one pass, or pass ``loop`` of a loop)."""

    origin_ns: int  # the log time played at 0 s: bag start + start offset
    end_ns: int  # the log time of the bag's last message; a pass ends there
    rate: float

    @property
    def pass_s(self) -> float:
        """Wall-clock length of one pass."""
        return (self.end_ns - self.origin_ns) / 1e9 / self.rate

    def due_s(self, log_time_ns: int, loop: int = 0) -> float:
        """Log-time offset scaled by the rate; pass ``loop`` starts where the previous one's last message was due."""
        return loop * self.pass_s + (log_time_ns - self.origin_ns) / 1e9 / self.rate

    def bag_time_ns(self, elapsed_s: float, loop: int = 0) -> int:
        """The log time being played ``elapsed_s`` after the start (for /clock), within ``[origin_ns, end_ns]``."""
        played_ns = self.origin_ns + round((elapsed_s - loop * self.pass_s) * self.rate * 1e9)
        return min(max(played_ns, self.origin_ns), self.end_ns)


def make_schedule(start_ns: int, end_ns: int, rate: float, start_offset_s: float = 0.0) -> Schedule:
    """The schedule for a bag whose messages span ``[start_ns, end_ns]``, skipping its first ``start_offset_s``."""
    origin_ns = start_ns + round(start_offset_s * 1e9)
    if origin_ns > end_ns:
        raise ReplayError(f"start offset {start_offset_s:g} s is past the bag's last message "
                          f"({(end_ns - start_ns) / 1e9:.3f} s after its start)")
    return Schedule(origin_ns, end_ns, rate)


def short_loop_warning(schedule: Schedule) -> str | None:
    """Why a looped pass of ``schedule`` will not reset the scene-graph node, None when it will.

    The node starts a new episode at a stamp more than :data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the
    previous one; a loop jumps back by one pass's span of bag time, whatever the rate, so a pass no longer than that
    carries tracks and reward smoothing across loops."""
    span_ns = schedule.end_ns - schedule.origin_ns
    if span_ns > JUMP_BACK_NS:
        return None
    return (f"one pass spans {span_ns / 1e9:.3f} s of bag time, not more than the {JUMP_BACK_NS / 1e9:g} s jump back "
            "at which the scene-graph node starts a new episode: the node will not see a loop as a reset, so tracks "
            "and reward smoothing carry across passes (loop a bag longer than that to reset at each pass)")


@dataclass
class ReplayStats:
    """What a replay did, for the summary."""

    published: Counter = field(default_factory=Counter)  # topic -> messages published
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # topic -> (type, reason)
    loops_completed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    # Replayed topics without a subscriber, both when playback started and when it ended (None: not checked).
    unsubscribed: list[str] | None = None


def play(passes: Callable[[], Iterable[tuple[str, int, bytes]]], publish: Callable[[str, bytes], None],
         schedule: Schedule, stats: ReplayStats, *, max_loops: int | None = 1,
         publish_clock: Callable[[int], None] | None = None, clock_hz: float | None = None,
         monotonic: Callable[[], float] = time.monotonic,
         wait: Callable[[float], bool] | None = None) -> ReplayStats:
    """Publish ``passes()``'s ``(topic, log_time_ns, data)`` at their scheduled times, ``max_loops`` passes (None:
    until stopped).

    Each message waits until ``start + schedule.due_s(...)`` on ``monotonic`` (never relative to the previous
    message, so publish time and oversleeping do not add up); a message already due goes out at once. ``wait(s)``
    sleeps up to ``s`` seconds and returns True to stop (``threading.Event.wait``). With ``publish_clock`` and
    ``clock_hz``, the bag time being played is published that often while waiting, and at the start of each pass
    (before its first message). Sets ``stats.interrupted`` when stopped; Ctrl-C propagates, with ``stats`` up to
    date.
    """
    wait = wait or threading.Event().wait  # an Event never set: a sleep that Ctrl-C interrupts
    start = monotonic()
    clock_period_s = 1.0 / clock_hz if publish_clock is not None and clock_hz else None
    next_clock_s = 0.0
    loop = 0

    def tick(now_s: float) -> None:
        nonlocal next_clock_s
        publish_clock(schedule.bag_time_ns(now_s, loop))
        # The next tick on the fixed grid: ticks missed while busy are dropped, not bunched.
        next_clock_s = (math.floor((now_s + _WAIT_RESOLUTION_S) / clock_period_s) + 1) * clock_period_s

    def wait_until(due_s: float) -> bool:
        while True:
            now_s = monotonic() - start
            if clock_period_s is not None and next_clock_s <= min(now_s, due_s) + _WAIT_RESOLUTION_S:
                tick(now_s)
                continue
            remaining_s = due_s - now_s
            if remaining_s <= _WAIT_RESOLUTION_S:
                return False
            if clock_period_s is not None:
                remaining_s = min(remaining_s, next_clock_s - now_s)
            if wait(remaining_s):
                return True

    try:
        while max_loops is None or loop < max_loops:
            if clock_period_s is not None:
                # The clock goes back before the pass's first message: the previous pass's last message was due at
                # this pass's start, so the next grid tick may lie after this pass's first messages, which would go
                # out while /clock still reads the previous pass's end.
                tick(monotonic() - start)
            for topic, log_time_ns, data in passes():
                if wait_until(schedule.due_s(log_time_ns, loop)):
                    stats.interrupted = True
                    return stats
                publish(topic, data)
                stats.published[topic] += 1
            if (max_loops is None or loop + 1 < max_loops) and wait_until((loop + 1) * schedule.pass_s):
                # Another pass follows: it starts where this one ends on the schedule, the bag's last message, not
                # this pass's (a --topics subset ends sooner, a pass after --start-offset may hold none): /clock
                # plays the tail, and a pass with nothing to publish still takes its time and can be stopped.
                stats.interrupted = True  # the pass's time had not run out: not completed
                return stats
            loop += 1
            stats.loops_completed = loop
    except KeyboardInterrupt:
        stats.interrupted = True
        raise
    finally:
        stats.elapsed_s = monotonic() - start
    return stats


def wait_for_subscribers(subscription_counts: Callable[[], Mapping[str, int]], timeout_s: float, *,
                         grace_s: float = DISCOVERY_GRACE_S, wait: Callable[[float], bool],
                         monotonic: Callable[[], float] = time.monotonic) -> tuple[bool, list[str]]:
    """Give DDS discovery time to match the replayed topics' subscribers, so their first messages are not lost.

    Waits up to ``timeout_s`` for a subscriber on any topic, then (every topic being matched ends it sooner) up to
    ``min(grace_s, timeout_s)`` more for the others: a subscriber's endpoints are discovered together, and a topic
    nobody subscribes to (a bringup ignores a sim bag's ground truth) would otherwise hold playback for the whole
    timeout. ``subscription_counts()`` maps each topic to its matched subscriptions; ``wait(s)`` sleeps up to ``s``
    seconds and returns True to stop. Returns (stopped, topics still without a subscriber).
    """
    grace_s = min(grace_s, timeout_s)
    deadline_s = monotonic() + timeout_s
    in_grace = False
    while True:
        now_s = monotonic()
        counts = subscription_counts()
        unsubscribed = [topic for topic, count in counts.items() if count == 0]
        if not unsubscribed:
            return False, []
        if not in_grace and len(unsubscribed) < len(counts):  # the first subscriber matched: the others' grace
            in_grace, deadline_s = True, now_s + grace_s
        if now_s >= deadline_s:
            return False, unsubscribed
        if wait(min(_SUBSCRIBER_POLL_S, deadline_s - now_s)):
            return True, unsubscribed


# --- the bag ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplayOptions:
    """How to replay; validated on construction (each error names the value)."""

    rate: float = 1.0  # wall-clock speed factor: 2.0 plays twice as fast
    loop: bool = False
    max_loops: int | None = None  # with ``loop``: stop after this many passes (None: until Ctrl-C)
    topics: tuple[str, ...] | None = None  # None: every topic
    start_offset_s: float = 0.0
    clock_hz: float | None = None  # publish rosgraph_msgs/Clock on /clock this often; None: not at all
    wait_for_subscribers_s: float = 2.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ReplayError(f"rate must be a finite number > 0, got {self.rate!r}")
        if not (math.isfinite(self.start_offset_s) and self.start_offset_s >= 0):
            raise ReplayError(f"start offset must be a finite number of seconds >= 0, got {self.start_offset_s!r}")
        if self.clock_hz is not None and not (math.isfinite(self.clock_hz) and self.clock_hz > 0):
            raise ReplayError(f"clock rate must be a finite number of Hz > 0, got {self.clock_hz!r}")
        if self.max_loops is not None and self.max_loops < 1:
            raise ReplayError(f"max loops must be >= 1, got {self.max_loops!r}")
        if not (math.isfinite(self.wait_for_subscribers_s) and self.wait_for_subscribers_s >= 0):
            raise ReplayError("wait for subscribers must be a finite number of seconds >= 0, got "
                              f"{self.wait_for_subscribers_s!r}")

    @property
    def passes(self) -> int | None:
        """How many passes to play (None: until stopped)."""
        return self.max_loops if self.loop else 1


@dataclass(frozen=True)
class TopicPlan:
    """A topic that will be replayed."""

    topic: str
    type_name: str
    msg_class: type
    qos: QoSProfile
    qos_recorded: bool  # False: :func:`default_qos`
    recorded_count: int


def _bag_read_errors() -> tuple[type[BaseException], ...]:
    """What rosbags raises while reading a damaged bag's messages (the storage errors every bag reader here
    handles), and I/O errors."""
    from trusted_scene_graph.dataset.bag import STORAGE_READ_ERRORS

    return (*STORAGE_READ_ERRORS, OSError)


@dataclass(frozen=True, eq=False)
class _Connection:
    """One recorded connection (rosbags) or channel (mcap) of a topic, whichever way the bag was read."""

    key: object  # what the bag's ``messages`` selects by: a rosbags Connection, an mcap channel id
    topic: str
    type_name: str
    offers: tuple[Mapping[str, object], ...]  # the recorded offered QoS profiles
    count: int  # messages
    encoding: str  # how the messages are serialised: ROS 2 publishes 'cdr' only


class _RosbagsBag:
    """A bag rosbags can open: it reads the index, so messages come in log-time order."""

    def __init__(self, path: Path) -> None:
        self._reader = open_rosbags(path)  # its mcap index checked first: a damaged one raises, not a MemoryError
        # rosbags has parsed the profiles into ``rosbags.interfaces.Qos`` tuples (both storages, all versions).
        self.connections = [
            _Connection(conn, conn.topic, conn.msgtype,
                        tuple(offer._asdict() for offer in getattr(conn.ext, "offered_qos_profiles", ())),
                        conn.msgcount, getattr(conn.ext, "serialization_format", "cdr"))
            for conn in self._reader.connections]
        self.message_count: int = self._reader.message_count
        self.start_ns: int = self._reader.start_time
        self.end_ns: int = self._reader.end_time - 1  # rosbags reports one past the last message's log time

    def messages(self, keys: Sequence[object], start_ns: int) -> Iterator[tuple[str, int, bytes]]:
        for conn, log_time_ns, data in self._reader.messages(keys, start=start_ns):
            yield conn.topic, log_time_ns, data

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()


class _SalvagedMcap:
    """An mcap file that rosbags cannot open (no valid end: a recorder that was killed, a copy cut short), read front
    to back up to the damage by :class:`~trusted_scene_graph.dataset.bag.McapStream` (which checks CRCs, so a chunk
    damaged inside is not published as garbage).

    Messages come in file order, which is the recorder's write order. :attr:`damage` says where reading stopped
    (None: the whole file was read). Raises one of :data:`MCAP_READ_ERRORS` when not even the file's start is mcap.
    """

    def __init__(self, path: Path) -> None:
        self._stream = McapStream(path)
        self.path = path
        self.damage = self._stream.damage
        self.connections = [_Connection(channel.id, channel.topic, channel.msgtype,
                                        tuple(_parse_offers(channel.metadata.get("offered_qos_profiles"))),
                                        self._stream.message_counts[channel.id], channel.message_encoding)
                            for channel in self._stream.channels.values()]
        self.message_count = self._stream.message_count
        self.start_ns = self._stream.start_ns
        self.end_ns = self._stream.end_ns

    def messages(self, keys: Sequence[object], start_ns: int) -> Iterator[tuple[str, int, bytes]]:
        for channel, log_time_ns, raw in self._stream.messages(keys, start_ns):
            yield channel.topic, log_time_ns, raw

    def close(self) -> None:
        """Nothing stays open between passes."""


class BagReplay:
    """An open bag planned for replay: which topics publish with which QoS, which are skipped and why.

    Planning needs no rclpy context; :meth:`play` publishes through a node::

        with BagReplay(path, ReplayOptions(rate=2.0)) as bag:
            stats = bag.play(node)

    :attr:`read_error` is set when the bag is an mcap file without a valid end, of which the messages before the
    damage are played.
    """

    def __init__(self, path: Path, options: ReplayOptions | None = None, console: Console | None = None) -> None:
        self.path = Path(path)
        self.options = options or ReplayOptions()
        self.console = console or Console()
        self.stats = ReplayStats()
        self.read_error: str | None = None
        try:
            check_bag_path(self.path)
        except DatasetError as exc:
            raise ReplayError(str(exc)) from exc
        self._bag: _RosbagsBag | _SalvagedMcap = self._open()
        try:
            self._plan()
        except ReplayError:
            self.close()
            raise

    def _open(self) -> _RosbagsBag | _SalvagedMcap:
        try:
            return _RosbagsBag(storage_path(self.path))
        except _bag_read_errors() as exc:  # a garbled summary raises decoding errors too: salvage, as below
            mcap_files = storage_files(self.path, (".mcap",))
            if len(mcap_files) != 1:
                raise ReplayError(f"cannot read bag {self.path}: {exc}") from exc
            try:
                salvaged = _SalvagedMcap(mcap_files[0])
            except MCAP_READ_ERRORS as mcap_exc:
                raise ReplayError(f"cannot read bag {self.path}: {exc}") from mcap_exc
            if salvaged.damage is None:  # whole, but without the summary rosbags needs: read in file order
                return salvaged
            if salvaged.message_count == 0:
                raise ReplayError(f"cannot read bag {self.path}: {exc}; no complete message before the damage "
                                  f"({salvaged.damage})") from exc
            self.read_error = (f"bag {self.path} has no valid end ({exc}); replaying the messages before the "
                               "damage")
            return salvaged

    def _plan(self) -> None:
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_topic_name import validate_topic_name

        bag = self._bag
        if bag.message_count == 0:
            raise ReplayError(f"bag {self.path} contains no messages")
        by_topic: dict[str, list[_Connection]] = {}
        for conn in bag.connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        if self.options.topics is not None:
            if missing := sorted(set(self.options.topics) - by_topic.keys()):
                raise ReplayError(f"topics {missing} are not in bag {self.path}; it has {sorted(by_topic)}")
            by_topic = {topic: conns for topic, conns in by_topic.items() if topic in self.options.topics}
        self.plans: dict[str, TopicPlan] = {}
        for topic, conns in sorted(by_topic.items()):
            types = sorted({conn.type_name for conn in conns})
            if len(types) > 1:
                self._skip(topic, " | ".join(types), "recorded with several message types")
                continue
            if foreign := sorted({conn.encoding for conn in conns} - {"cdr"}):
                # Published as they are, the bytes would go out as CDR and every subscriber would drop them.
                self._skip(topic, types[0], f"recorded as {' / '.join(repr(e) for e in foreign)}, not ROS 2's CDR "
                                            "(a ROS 1 or JSON recording?): not publishable as a ROS 2 message")
                continue
            try:
                validate_topic_name(topic)
            except InvalidTopicNameException:
                self._skip(topic, types[0], "not a valid ROS 2 topic name")
                continue
            cls = message_class(types[0])
            if cls is None:
                self._skip(topic, types[0], "message type not installed here")
                continue
            recorded = qos_from_offers([offer for conn in conns for offer in conn.offers], topic)
            count = sum(conn.count for conn in conns)
            qos = keep_every_latched_message(recorded or default_qos(topic), count, types[0])
            self.plans[topic] = TopicPlan(topic, types[0], cls, qos, recorded is not None, count)
        self._connections = [conn for topic in self.plans for conn in by_topic[topic]]
        self.clock_class = None
        if self.options.clock_hz is not None:
            if CLOCK_TOPIC in self.plans:
                raise ReplayError(f"bag {self.path} has its own {CLOCK_TOPIC}; replay it without --clock, or leave "
                                  f"{CLOCK_TOPIC} out with --topics")
            self.clock_class = message_class(CLOCK_TYPE)
            if self.clock_class is None:
                self.console.print(f"not publishing {CLOCK_TOPIC}: {CLOCK_TYPE} is not installed here",
                                   style="yellow", markup=False, soft_wrap=True)
        self.schedule = make_schedule(bag.start_ns, bag.end_ns, self.options.rate, self.options.start_offset_s)
        if self.options.loop and self.schedule.pass_s == 0:
            raise ReplayError(f"cannot loop bag {self.path}: its messages from the start offset span 0 s, so a loop "
                              "would publish as fast as the CPU allows")
        if self.options.passes != 1 and (warning := short_loop_warning(self.schedule)) is not None:
            self.console.print(f"warning: {warning}", style="yellow", markup=False, soft_wrap=True)

    def _skip(self, topic: str, type_name: str, reason: str) -> None:
        self.stats.skipped[topic] = (type_name, reason)
        self.console.print(f"skipping {topic} ({type_name}): {reason}", style="yellow", markup=False, soft_wrap=True)

    def messages(self) -> Iterator[tuple[str, int, bytes]]:
        """One pass over the planned topics from the start offset, in log-time order (a salvaged mcap file: in
        file order)."""
        if not self._connections:
            return
        count = 0
        try:
            for topic, log_time_ns, data in self._bag.messages([conn.key for conn in self._connections],
                                                                self.schedule.origin_ns):
                # rclpy publishes ``bytes`` as an already-serialized message; other buffers would be rejected.
                yield topic, log_time_ns, data if isinstance(data, bytes) else bytes(data)
                count += 1
        except _bag_read_errors() as exc:
            raise ReplayError(f"bag {self.path} is damaged ({type(exc).__name__}: {exc})") from exc
        # A truncated sqlite3 file can lose whole tables without an error; the recorded counts reveal it.
        expected = sum(plan.recorded_count for plan in self.plans.values())
        if count > expected or (count < expected and self.options.start_offset_s == 0):
            raise ReplayError(f"bag {self.path} is damaged: its metadata lists {expected} messages on the replayed "
                              f"topics, its storage holds {count}")

    def play(self, node, stop: threading.Event | None = None) -> ReplayStats:
        """Create the publishers on ``node``, wait for subscribers, and publish; ``stop`` ends it early."""
        stop = stop or threading.Event()
        publishers = {topic: node.create_publisher(plan.msg_class, topic, plan.qos)
                      for topic, plan in self.plans.items()}
        clock_publisher = (node.create_publisher(self.clock_class, CLOCK_TOPIC, CLOCK_QOS)
                           if self.clock_class is not None else None)

        def subscription_counts() -> dict[str, int]:
            return {topic: publisher.get_subscription_count() for topic, publisher in publishers.items()}

        unsubscribed: list[str] | None = None
        try:
            timeout_s = self.options.wait_for_subscribers_s
            stopped, unsubscribed = wait_for_subscribers(subscription_counts, timeout_s, wait=stop.wait)
            if stopped:
                self.stats.interrupted = True
                return self.stats
            if publishers and len(unsubscribed) == len(publishers) and timeout_s > 0:
                self.console.print(f"no subscriber on any of the {len(publishers)} replayed topics after "
                                   f"{timeout_s:g} s; playing anyway", style="yellow", markup=False, soft_wrap=True)
            publish_clock = None
            if clock_publisher is not None:
                from builtin_interfaces.msg import Time

                def publish_clock(bag_time_ns: int) -> None:
                    secs, nanosecs = divmod(bag_time_ns, 1_000_000_000)
                    clock_publisher.publish(self.clock_class(clock=Time(sec=secs, nanosec=nanosecs)))

            self.console.print(f"replaying {self.path}: {len(publishers)} topics, "
                               f"{self.schedule.pass_s * self.options.rate:.3f} s of bag at rate "
                               f"{self.options.rate:g}" + (", looping" if self.options.loop else "")
                               + "; Ctrl-C to stop", markup=False, soft_wrap=True)
            return play(self.messages, lambda topic, data: publishers[topic].publish(data), self.schedule,
                        self.stats, max_loops=self.options.passes, publish_clock=publish_clock,
                        clock_hz=self.options.clock_hz, wait=stop.wait)
        finally:
            if unsubscribed is not None:
                # Sampled again at the end: with a short or no wait, discovery may not have finished at the start.
                still = {topic for topic, count in subscription_counts().items() if count == 0}
                self.stats.unsubscribed = [topic for topic in unsubscribed if topic in still]
            for publisher in publishers.values():
                node.destroy_publisher(publisher)
            if clock_publisher is not None:
                node.destroy_publisher(clock_publisher)

    def summary_tables(self) -> list[Table]:
        """Per-topic counts and QoS, and the skipped topics with their reasons.

        Cells fold rather than end in an ellipsis when a terminal is narrow, and every text is escaped: a path or an
        invalid topic name may hold ``[...]``, which rich would take for a markup tag and drop.
        """
        stats = self.stats
        damaged = " (the messages before the damage)" if self.read_error is not None else ""
        table = Table(title=escape(f"replayed {self.path}{damaged}"))
        for column in ("topic", "type", "QoS", "published", "in bag"):
            table.add_column(column, justify="right" if column in ("published", "in bag") else "left",
                             overflow="fold")
        for topic, plan in self.plans.items():
            qos = describe_qos(plan.qos) + ("" if plan.qos_recorded else " (default)")
            table.add_row(escape(topic), escape(plan.type_name), qos, str(stats.published[topic]),
                          str(plan.recorded_count))
        tables = [table]
        if stats.skipped:
            skipped = Table(title="skipped topics")
            for column in ("topic", "type", "reason"):
                skipped.add_column(column, overflow="fold")
            for topic, (type_name, reason) in stats.skipped.items():
                skipped.add_row(escape(topic), escape(type_name), escape(reason))
            tables.append(skipped)
        return tables

    def timing_line(self) -> str:
        """Elapsed wall time against what the bag time and rate predict."""
        stats, schedule = self.stats, self.schedule
        passes = f"{stats.loops_completed} pass{'es' if stats.loops_completed != 1 else ''}"
        return (f"{sum(stats.published.values())} messages, {passes} of {schedule.pass_s * schedule.rate:.3f} s bag "
                f"time at rate {schedule.rate:g} (expected {schedule.pass_s:.3f} s wall per pass); elapsed "
                f"{stats.elapsed_s:.3f} s wall" + (" (interrupted)" if stats.interrupted else ""))

    def print_summary(self) -> None:
        """The tables, the timing line and the topics nobody subscribed to.

        Off a terminal (a pipe, a CI log) rich would squeeze the tables into 80 columns; they are printed as wide as
        their content instead, so topic and type names stay whole on one line for grep. Plain lines are not wrapped.
        """
        console = self.console
        for table in self.summary_tables():
            width_needed = console.measure(table, options=console.options.update_width(_UNBOUNDED_WIDTH)).maximum
            if console.is_terminal or width_needed <= console.width:
                console.print(table)
                continue
            # print(width=...) is capped at the console's width; widening the console itself is not.
            width = console.width
            console.width = width_needed
            try:
                console.print(table)
            finally:
                console.width = width
        self.console.print(self.timing_line(), markup=False, soft_wrap=True)
        if self.stats.unsubscribed:
            self.console.print("not subscribed: " + ", ".join(self.stats.unsubscribed), markup=False, soft_wrap=True)

    def close(self) -> None:
        self._bag.close()

    def __enter__(self) -> BagReplay:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def run_replay(bag_path: Path, rate: float = 1.0, loop: bool = False, topics: Sequence[str] | None = None,
               start_offset_s: float = 0.0, clock_hz: float | None = None, max_loops: int | None = None,
               wait_for_subscribers_s: float = 2.0, console: Console | None = None) -> int:
    """``tsg replay``: play a bag into the live ROS graph and print a summary; returns an exit code.

    0 when played (or stopped with Ctrl-C or SIGTERM); 1 when no topic of the bag can be replayed here, or when the
    bag is an mcap file without a valid end, of which the messages before the damage were played (after a warning on
    stderr). Raises :class:`ReplayError` for a missing, corrupt or empty bag or invalid options (after printing what
    was played, if the bag turns out damaged midway).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    options = ReplayOptions(rate=rate, loop=loop, max_loops=max_loops,
                            topics=tuple(topics) if topics is not None else None, start_offset_s=start_offset_s,
                            clock_hz=clock_hz, wait_for_subscribers_s=wait_for_subscribers_s)
    console = console or Console()
    with BagReplay(Path(bag_path), options, console) as bag:
        if bag.read_error is not None:
            print(f"tsg replay: warning: {bag.read_error}", file=sys.stderr, flush=True)
        if not bag.plans:
            bag.print_summary()
            console.print(f"nothing to replay: no topic of {bag.path} has a message type installed here",
                          style="red", markup=False, soft_wrap=True)
            return 1
        # Python's own SIGINT handling, not rclpy's: rclpy's handler invalidates the context before the
        # KeyboardInterrupt arrives, so a publish in between fails. The player has no executor to wake anyway.
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        try:
            # SIGTERM too: a replay started with `&` from a non-interactive shell inherits SIGINT ignored, so
            # `kill` (SIGTERM) is how it gets stopped.
            with sigterm_interrupts():
                node = rclpy.create_node("tsg_replay")
                try:
                    bag.play(node)
                finally:
                    node.destroy_node()
        except KeyboardInterrupt:  # also Terminated
            bag.stats.interrupted = True  # how a looping replay ends: a summary, not a traceback
        except ReplayError:
            bag.print_summary()
            raise
        finally:
            rclpy.try_shutdown()
        bag.print_summary()
    return 1 if bag.read_error is not None else 0
