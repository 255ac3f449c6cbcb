"""``tsg replay BAG``: publish a rosbag2 bag's messages on their topics with the recorded timing.

A bag player for installs without ``ros2 bag play`` (rclpy from PyPI wheels has no rosbag2_py), so a live bringup
can be evaluated on recorded data. The bag is read with ``rosbags`` (sqlite3 or mcap storage; a bag directory or a
single ``.mcap``/``.db3`` file) and each message's serialized CDR bytes are published unmodified.

- **Types**: the publisher's class comes from importing the recorded type name (``sensor_msgs/msg/Image`` ->
  ``sensor_msgs.msg.Image``). A topic whose type is not installed here is skipped with one warning and counted.
- **QoS**: the recorded ``offered_qos_profiles`` of the topic (reliability, durability, history, depth), else
  :func:`default_qos` (reliable, volatile, keep last 10; transient-local for ``/tf_static``), as ``ros2 bag play``.
- **Timing**: messages go out in log-time order; message ``i`` is due ``(t_i - t_origin) / rate`` seconds after the
  start on a monotonic clock, so late wake-ups never accumulate into drift. ``t_origin`` is the bag's start plus
  ``start_offset_s``; a topic subset keeps its timing relative to the bag's start.
"""

from __future__ import annotations

import importlib
import math
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
from rich.table import Table

from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.report import print_tables

DEFAULT_DEPTH = 10  # rmw's default history depth, what ``ros2 bag play`` uses when the bag records none
TF_STATIC_TOPIC = "/tf_static"
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
# As rclcpp's ClockQoS (which ``ros2 bag play --clock`` uses) and rclpy's /clock subscription: best effort, depth 1.
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# Values that name no concrete behaviour of the recording publisher: they leave the field to the default.
_UNRECORDED_POLICIES = frozenset({"SYSTEM_DEFAULT", "UNKNOWN", "BEST_AVAILABLE"})
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


def qos_from_metadata(offered: str | Sequence[Mapping[str, object]] | None, topic: str = "") -> QoSProfile | None:
    """The replay QoS from a topic's ``offered_qos_profiles`` as stored in a bag, None when absent or unparsable.

    Accepts the YAML text (metadata.yaml up to version 8, the sqlite3 ``topics`` table, mcap channel metadata) or
    the already-parsed list (metadata.yaml version 9). See :func:`qos_from_offers` for how profiles combine.
    """
    if isinstance(offered, str):
        try:
            offered = yaml.safe_load(offered)
        except yaml.YAMLError:
            return None
    if isinstance(offered, Mapping):
        offered = [offered]
    if not isinstance(offered, Sequence) or isinstance(offered, str):
        return None
    return qos_from_offers(offered, topic)


def _qos_from_connection_offers(offers: Sequence, topic: str) -> QoSProfile | None:
    """rosbags has parsed the profiles into ``rosbags.interfaces.Qos`` tuples (both storages, all versions)."""
    return qos_from_offers((offer._asdict() for offer in offers), topic)


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


@dataclass
class ReplayStats:
    """What a replay did, for the summary."""

    published: Counter = field(default_factory=Counter)  # topic -> messages published
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # topic -> (type, reason)
    loops_completed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False


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
    ``clock_hz``, the bag time being played is published that often while waiting. Sets ``stats.interrupted`` when
    stopped; Ctrl-C propagates, with ``stats`` up to date.
    """
    wait = wait or threading.Event().wait  # an Event never set: a sleep that Ctrl-C interrupts
    start = monotonic()
    clock_period_s = 1.0 / clock_hz if publish_clock is not None and clock_hz else None
    next_clock_s = 0.0
    loop = 0

    def wait_until(due_s: float) -> bool:
        nonlocal next_clock_s
        while True:
            now_s = monotonic() - start
            if clock_period_s is not None and next_clock_s <= min(now_s, due_s) + _WAIT_RESOLUTION_S:
                publish_clock(schedule.bag_time_ns(now_s, loop))
                # The next tick on the fixed grid: ticks missed while busy are dropped, not bunched.
                next_clock_s = (math.floor((now_s + _WAIT_RESOLUTION_S) / clock_period_s) + 1) * clock_period_s
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
            for topic, log_time_ns, data in passes():
                if wait_until(schedule.due_s(log_time_ns, loop)):
                    stats.interrupted = True
                    return stats
                publish(topic, data)
                stats.published[topic] += 1
            loop += 1
            stats.loops_completed = loop
    except KeyboardInterrupt:
        stats.interrupted = True
        raise
    finally:
        stats.elapsed_s = monotonic() - start
    return stats


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
    """What rosbags raises for a missing, corrupt or truncated bag: its ReaderError, I/O errors, and apsw's
    errors, which its sqlite3 storage lets through while iterating a damaged database."""
    import apsw
    from rosbags.rosbag2 import ReaderError

    return ReaderError, OSError, apsw.Error


class BagReplay:
    """An open bag planned for replay: which topics publish with which QoS, which are skipped and why.

    Planning needs no rclpy context; :meth:`play` publishes through a node::

        with BagReplay(path, ReplayOptions(rate=2.0)) as bag:
            stats = bag.play(node)
    """

    def __init__(self, path: Path, options: ReplayOptions | None = None, console: Console | None = None) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        self.options = options or ReplayOptions()
        self.console = console or Console()
        self.stats = ReplayStats()
        if not self.path.exists():
            raise ReplayError(f"bag {self.path} does not exist")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except _bag_read_errors() as exc:
            raise ReplayError(f"cannot read bag {self.path}: {exc}") from exc
        try:
            self._plan()
        except ReplayError:
            self.close()
            raise

    def _plan(self) -> None:
        from rclpy.exceptions import InvalidTopicNameException
        from rclpy.validate_topic_name import validate_topic_name

        reader = self._reader
        if reader.message_count == 0:
            raise ReplayError(f"bag {self.path} contains no messages")
        by_topic: dict[str, list] = {}
        for conn in reader.connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        if self.options.topics is not None:
            if missing := sorted(set(self.options.topics) - by_topic.keys()):
                raise ReplayError(f"topics {missing} are not in bag {self.path}; it has {sorted(by_topic)}")
            by_topic = {topic: conns for topic, conns in by_topic.items() if topic in self.options.topics}
        self.plans: dict[str, TopicPlan] = {}
        for topic, conns in sorted(by_topic.items()):
            types = sorted({conn.msgtype for conn in conns})
            if len(types) > 1:
                self._skip(topic, " | ".join(types), "recorded with several message types")
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
            offers = [offer for conn in conns for offer in getattr(conn.ext, "offered_qos_profiles", ())]
            recorded = _qos_from_connection_offers(offers, topic)
            self.plans[topic] = TopicPlan(topic, types[0], cls, recorded or default_qos(topic), recorded is not None,
                                          sum(conn.msgcount for conn in conns))
        self._connections = [conn for topic in self.plans for conn in by_topic[topic]]
        self.clock_class = None
        if self.options.clock_hz is not None:
            if CLOCK_TOPIC in self.plans:
                raise ReplayError(f"bag {self.path} has its own {CLOCK_TOPIC}; replay it without --clock, or leave "
                                  f"{CLOCK_TOPIC} out with --topics")
            self.clock_class = message_class(CLOCK_TYPE)
            if self.clock_class is None:
                self.console.print(f"not publishing {CLOCK_TOPIC}: {CLOCK_TYPE} is not installed here",
                                   style="yellow", markup=False)
        # rosbags reports the end as one past the last message's log time.
        self.schedule = make_schedule(reader.start_time, reader.end_time - 1, self.options.rate,
                                      self.options.start_offset_s)
        if self.options.loop and self.schedule.pass_s == 0:
            raise ReplayError(f"cannot loop bag {self.path}: its messages from the start offset span 0 s, so a loop "
                              "would publish as fast as the CPU allows")

    def _skip(self, topic: str, type_name: str, reason: str) -> None:
        self.stats.skipped[topic] = (type_name, reason)
        self.console.print(f"skipping {topic} ({type_name}): {reason}", style="yellow", markup=False)

    def messages(self) -> Iterator[tuple[str, int, bytes]]:
        """One pass over the planned topics from the start offset, in log-time order."""
        if not self._connections:
            return
        count = 0
        try:
            for conn, log_time_ns, data in self._reader.messages(self._connections, start=self.schedule.origin_ns):
                # rclpy publishes ``bytes`` as an already-serialized message; other buffers would be rejected.
                yield conn.topic, log_time_ns, data if isinstance(data, bytes) else bytes(data)
                count += 1
        except _bag_read_errors() as exc:
            raise ReplayError(f"bag {self.path} is damaged: {exc}") from exc
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
        try:
            if self._wait_for_subscribers(publishers, stop):
                self.stats.interrupted = True
                return self.stats
            publish_clock = None
            if clock_publisher is not None:
                from builtin_interfaces.msg import Time

                def publish_clock(bag_time_ns: int) -> None:
                    secs, nanosecs = divmod(bag_time_ns, 1_000_000_000)
                    clock_publisher.publish(self.clock_class(clock=Time(sec=secs, nanosec=nanosecs)))

            self.console.print(f"replaying {self.path}: {len(publishers)} topics, "
                               f"{self.schedule.pass_s * self.options.rate:.3f} s of bag at rate "
                               f"{self.options.rate:g}" + (", looping" if self.options.loop else "")
                               + "; Ctrl-C to stop", markup=False)
            return play(self.messages, lambda topic, data: publishers[topic].publish(data), self.schedule,
                        self.stats, max_loops=self.options.passes, publish_clock=publish_clock,
                        clock_hz=self.options.clock_hz, wait=stop.wait)
        finally:
            for publisher in publishers.values():
                node.destroy_publisher(publisher)
            if clock_publisher is not None:
                node.destroy_publisher(clock_publisher)

    def _wait_for_subscribers(self, publishers: Mapping, stop: threading.Event) -> bool:
        """Give DDS discovery up to ``wait_for_subscribers_s`` to match every topic, so no first message is lost;
        returns True when stopped meanwhile."""
        deadline = time.monotonic() + self.options.wait_for_subscribers_s
        while missing := [topic for topic, pub in publishers.items() if pub.get_subscription_count() == 0]:
            if time.monotonic() >= deadline:
                if self.options.wait_for_subscribers_s > 0:
                    self.console.print(f"no subscriber yet on {missing} after "
                                       f"{self.options.wait_for_subscribers_s:g} s; playing anyway", markup=False)
                return False
            if stop.wait(0.02):
                return True
        return False

    def summary_tables(self) -> list[Table]:
        """Per-topic counts and QoS, and the skipped topics with their reasons."""
        stats = self.stats
        table = Table(title=f"replayed {self.path}")
        for column in ("topic", "type", "QoS", "published", "in bag"):
            table.add_column(column, justify="right" if column in ("published", "in bag") else "left")
        for topic, plan in self.plans.items():
            table.add_row(topic, plan.type_name, describe_qos(plan.qos) + ("" if plan.qos_recorded else " (default)"),
                          str(stats.published[topic]), str(plan.recorded_count))
        tables = [table]
        if stats.skipped:
            skipped = Table(title="skipped topics")
            for column in ("topic", "type", "reason"):
                skipped.add_column(column)
            for topic, (type_name, reason) in stats.skipped.items():
                skipped.add_row(topic, type_name, reason)
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
        print_tables(self.summary_tables(), self.console)
        self.console.print(self.timing_line(), markup=False)

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> BagReplay:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def run_replay(bag_path: Path, rate: float = 1.0, loop: bool = False, topics: Sequence[str] | None = None,
               start_offset_s: float = 0.0, clock_hz: float | None = None, max_loops: int | None = None,
               wait_for_subscribers_s: float = 2.0, console: Console | None = None) -> int:
    """``tsg replay``: play a bag into the live ROS graph and print a summary; returns an exit code.

    0 when played (or stopped with Ctrl-C), 1 when no topic of the bag can be replayed here. Raises
    :class:`ReplayError` for a missing, corrupt or empty bag or invalid options (after printing what was played,
    if the bag turns out damaged midway).
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    options = ReplayOptions(rate=rate, loop=loop, max_loops=max_loops,
                            topics=tuple(topics) if topics is not None else None, start_offset_s=start_offset_s,
                            clock_hz=clock_hz, wait_for_subscribers_s=wait_for_subscribers_s)
    console = console or Console()
    with BagReplay(Path(bag_path), options, console) as bag:
        if not bag.plans:
            bag.print_summary()
            console.print(f"nothing to replay: no topic of {bag.path} has a message type installed here",
                          style="red", markup=False)
            return 1
        # Python's own SIGINT handling, not rclpy's: rclpy's handler invalidates the context before the
        # KeyboardInterrupt arrives, so a publish in between fails. The player has no executor to wake anyway.
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = rclpy.create_node("tsg_replay")
            try:
                bag.play(node)
            finally:
                node.destroy_node()
        except KeyboardInterrupt:
            bag.stats.interrupted = True  # Ctrl-C is how a looping replay ends: a summary, not a traceback
        except ReplayError:
            bag.print_summary()
            raise
        finally:
            rclpy.try_shutdown()
        bag.print_summary()
    return 0
