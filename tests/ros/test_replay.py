"""``tsg replay``: bags written with rosbags (sqlite3 and mcap) come out byte-identical, on time, with their QoS."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rclpy
from dds_helpers import spin_until
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rich.console import Console
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from trusted_scene_graph.cli import build_parser, main
from trusted_scene_graph.ros.replay import (
    DISCOVERY_GRACE_S,
    BagReplay,
    ReplayError,
    ReplayOptions,
    ReplayStats,
    Schedule,
    default_qos,
    describe_qos,
    keep_every_latched_message,
    make_schedule,
    message_class,
    play,
    qos_from_metadata,
    run_replay,
    wait_for_subscribers,
)

T0_NS = 1_700_000_000_000_000_000
MS = 1_000_000
TAIL_S = 60  # a last message far away keeps the player running until the test stops it
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
IMAGE, STRING, TF = "sensor_msgs/msg/Image", "std_msgs/msg/String", "tf2_msgs/msg/TFMessage"
PLANE = "shape_msgs/msg/Plane"  # in rosbags' typestore, not installed here: a type the player must skip
NO_TIME = QosTime(0, 0)
LATCHED_OFFER = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, NO_TIME,
                    NO_TIME, QosLiveliness.AUTOMATIC, NO_TIME, False)
IMAGE_OFFER = Qos(QosHistory.KEEP_LAST, 5, QosReliability.RELIABLE, QosDurability.VOLATILE, NO_TIME, NO_TIME,
                  QosLiveliness.AUTOMATIC, NO_TIME, False)
STORAGES = [pytest.param(StoragePlugin.SQLITE3, id="sqlite3"), pytest.param(StoragePlugin.MCAP, id="mcap")]


def _image(i: int) -> object:
    types = TYPESTORE.types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=i, nanosec=7), frame_id="cam")
    return types[IMAGE](header=header, height=3, width=4, encoding="rgb8", is_bigendian=0, step=12,
                        data=(np.arange(36, dtype=np.uint8) + i))


def _plane() -> object:
    return TYPESTORE.types[PLANE](coef=np.array([0.0, 0.0, 1.0, -0.5]))


def write_bag(path: Path, storage: StoragePlugin, with_tail: bool = True) -> list[tuple[str, int, bytes]]:
    """A small bag: a latched string at t0, images and strings interleaved every 10 ms, two shape_msgs/Plane
    messages (not installed here) and, optionally, one string far later. Returns what was written, in log-time order."""
    written = []
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {
            "/latched": writer.add_connection("/latched", STRING, typestore=TYPESTORE,
                                              offered_qos_profiles=[LATCHED_OFFER]),
            "/camera/color/image_raw": writer.add_connection("/camera/color/image_raw", IMAGE, typestore=TYPESTORE,
                                                             offered_qos_profiles=[IMAGE_OFFER]),
            "/chatter": writer.add_connection("/chatter", STRING, typestore=TYPESTORE),
            "/plane": writer.add_connection("/plane", PLANE, typestore=TYPESTORE),
        }
        messages = [("/latched", 0, TYPESTORE.types[STRING](data="static map"), STRING)]
        messages += [("/camera/color/image_raw", (10 + 20 * i) * MS, _image(i), IMAGE) for i in range(4)]
        messages += [("/chatter", (20 + 20 * i) * MS, TYPESTORE.types[STRING](data=f"hello {i}"), STRING)
                     for i in range(3)]
        messages += [("/plane", (25 + 20 * i) * MS, _plane(), PLANE) for i in range(2)]
        if with_tail:
            messages.append(("/chatter", TAIL_S * 1000 * MS, TYPESTORE.types[STRING](data="the end"), STRING))
        for topic, offset_ns, msg, type_name in sorted(messages, key=lambda m: m[1]):
            data = bytes(TYPESTORE.serialize_cdr(msg, type_name))
            writer.write(conns[topic], T0_NS + offset_ns, data)
            written.append((topic, T0_NS + offset_ns, data))
    return written


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


# --- QoS from recorded metadata -----------------------------------------------------------------------------------

ROSBAGS_V9_TEXT = """\
- avoid_ros_namespace_conventions: false
  deadline:
    nsec: 0
    sec: 0
  depth: 1
  durability: transient_local
  history: keep_last
  lifespan:
    nsec: 0
    sec: 0
  liveliness: automatic
  liveliness_lease_duration:
    nsec: 0
    sec: 0
  reliability: reliable"""
ROSBAGS_V8_TEXT = ("- avoid_ros_namespace_conventions: false\n  deadline: {nsec: 0, sec: 0}\n  depth: 1\n"
                   "  durability: 1\n  history: 1\n  lifespan: {nsec: 0, sec: 0}\n  liveliness: 1\n"
                   "  liveliness_lease_duration: {nsec: 0, sec: 0}\n  reliability: 1")
# As ros2 bag record (Humble) stores a camera driver's offer: history and depth are not part of a discovered offer.
HUMBLE_SENSOR_TEXT = ("- history: 3\n  depth: 0\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 9223372036\n"
                      "    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: 1\n"
                      "  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n"
                      "  avoid_ros_namespace_conventions: false")
R, D, H = ReliabilityPolicy, DurabilityPolicy, HistoryPolicy


@pytest.mark.parametrize(("offered", "expected"), [
    pytest.param(ROSBAGS_V9_TEXT, (R.RELIABLE, D.TRANSIENT_LOCAL, H.KEEP_LAST, 1), id="v9 text (mcap, sqlite3)"),
    pytest.param(ROSBAGS_V8_TEXT, (R.RELIABLE, D.TRANSIENT_LOCAL, H.KEEP_LAST, 1), id="v8 text, integer enums"),
    pytest.param(HUMBLE_SENSOR_TEXT, (R.BEST_EFFORT, D.VOLATILE, H.KEEP_LAST, 10), id="humble: unknown history"),
    pytest.param([{"reliability": "best_effort", "durability": "volatile", "history": "keep_all", "depth": 0}],
                 (R.BEST_EFFORT, D.VOLATILE, H.KEEP_ALL, None), id="v9 metadata.yaml list, keep_all"),
    pytest.param([{"reliability": "reliable", "durability": "transient_local", "history": "keep_last", "depth": 1},
                  {"reliability": "best_effort", "durability": "transient_local", "history": "keep_last",
                   "depth": 5}],
                 (R.RELIABLE, D.TRANSIENT_LOCAL, H.KEEP_LAST, 5), id="two publishers: disagreement -> default"),
])
def test_recorded_offers_become_the_publisher_qos(offered, expected):
    qos = qos_from_metadata(offered, topic="/x")
    assert (qos.reliability, qos.durability, qos.history) == expected[:3]
    if expected[3] is not None:
        assert qos.depth == expected[3]


@pytest.mark.parametrize("offered", [None, "", "[]", [], ": : [", "42", "- 1\n- 2", [{"history": "unknown"}],
                                     [{"reliability": "system_default", "depth": 0}]])
def test_absent_or_unusable_offers_give_none_so_the_default_applies(offered):
    assert qos_from_metadata(offered, topic="/x") is None


def test_the_default_is_reliable_volatile_keep_last_10_and_transient_local_for_tf_static():
    assert describe_qos(default_qos("/camera/color/image_raw")) == "reliable, volatile, keep_last 10"
    assert describe_qos(default_qos("/tf_static")) == "reliable, transient_local, keep_last 10"
    humble_static = qos_from_metadata(HUMBLE_SENSOR_TEXT.replace("reliability: 2", "reliability: 3")
                                      .replace("durability: 2", "durability: 3"), topic="/tf_static")
    assert humble_static is None


def test_a_latched_transform_topic_keeps_every_recorded_message_and_others_their_depth():
    latched = QoSProfile(depth=1, reliability=R.RELIABLE, durability=D.TRANSIENT_LOCAL)
    assert keep_every_latched_message(latched, 3).depth == 3
    assert describe_qos(keep_every_latched_message(latched, 3)) == "reliable, transient_local, keep_last 3"
    assert keep_every_latched_message(latched, 1) is latched
    assert keep_every_latched_message(QoSProfile(depth=100, durability=D.TRANSIENT_LOCAL), 3).depth == 100
    volatile = QoSProfile(depth=5, reliability=R.RELIABLE, durability=D.VOLATILE)
    assert keep_every_latched_message(volatile, 1000) is volatile
    keep_all = QoSProfile(history=H.KEEP_ALL, depth=1, durability=D.TRANSIENT_LOCAL)
    assert keep_every_latched_message(keep_all, 1000) is keep_all
    # A latched map (nav_msgs/OccupancyGrid) keeps its recorded depth: every map of a mapping bag would be gigabytes.
    assert keep_every_latched_message(latched, 360, "nav_msgs/msg/OccupancyGrid") is latched


def _tf(parent: str, child: str, x_m: float) -> object:
    types = TYPESTORE.types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                          frame_id=parent)
    transform = types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=x_m, y=0.0, z=0.0),
        rotation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    stamped = types["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=transform)
    return types[TF](transforms=[stamped])


def write_two_broadcaster_tf_static_bag(path: Path) -> None:
    """/tf_static as ``ros2 bag record`` stores two static broadcasters (robot_state_publisher, a camera driver):
    one topic, two offers of reliable, transient local, depth 1, one message each; a far tail keeps a player on."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tf_static = writer.add_connection("/tf_static", TF, typestore=TYPESTORE,
                                          offered_qos_profiles=[LATCHED_OFFER, LATCHED_OFFER])
        chatter = writer.add_connection("/chatter", STRING, typestore=TYPESTORE)
        writer.write(tf_static, T0_NS, bytes(TYPESTORE.serialize_cdr(_tf("world", "base", 0.5), TF)))
        writer.write(tf_static, T0_NS + 5 * MS, bytes(TYPESTORE.serialize_cdr(_tf("base", "cam", 0.2), TF)))
        writer.write(chatter, T0_NS + TAIL_S * 10**9,
                     bytes(TYPESTORE.serialize_cdr(TYPESTORE.types[STRING](data="the end"), STRING)))


def test_a_tf_static_of_two_depth_1_broadcasters_is_replayed_with_a_history_holding_both(tmp_path):
    write_two_broadcaster_tf_static_bag(tmp_path / "bag")
    with BagReplay(tmp_path / "bag", console=quiet_console()) as bag:
        plan = bag.plans["/tf_static"]
        assert plan.recorded_count == 2 and plan.qos_recorded
        assert describe_qos(plan.qos) == "reliable, transient_local, keep_last 2"


def test_message_classes_come_from_the_installed_packages():
    assert message_class(IMAGE) is Image
    assert message_class(TF) is TFMessage  # apt's, or the vendored one scripts/setup.sh builds
    assert message_class(PLANE) is None
    assert message_class("std_msgs/msg/NoSuchType") is None
    assert message_class("not a type") is None


# --- timing -------------------------------------------------------------------------------------------------------

def test_the_schedule_divides_log_time_by_the_rate_and_starts_each_pass_where_the_last_ended():
    schedule = make_schedule(T0_NS, T0_NS + 400 * MS, rate=2.0)
    assert schedule.due_s(T0_NS + 100 * MS) == pytest.approx(0.05)
    assert schedule.pass_s == pytest.approx(0.2)
    assert schedule.due_s(T0_NS + 100 * MS, loop=2) == pytest.approx(0.45)
    assert schedule.bag_time_ns(0.05) == T0_NS + 100 * MS
    assert schedule.bag_time_ns(0.25, loop=1) == T0_NS + 100 * MS
    assert schedule.bag_time_ns(10.0) == T0_NS + 400 * MS  # clamped to the pass


def test_a_start_offset_moves_the_origin_and_must_lie_within_the_bag():
    schedule = make_schedule(T0_NS, T0_NS + 400 * MS, rate=1.0, start_offset_s=0.1)
    assert schedule.due_s(T0_NS + 100 * MS) == 0.0 and schedule.pass_s == pytest.approx(0.3)
    with pytest.raises(ReplayError, match=r"start offset 0\.5 s is past the bag's last message \(0\.400 s"):
        make_schedule(T0_NS, T0_NS + 400 * MS, rate=1.0, start_offset_s=0.5)


class FakeTime:
    """A monotonic clock that moves only when waited on (oversleeping each time) or when publishing costs time."""

    def __init__(self, oversleep_s: float = 0.0, publish_cost_s: float = 0.0) -> None:
        self.now_s, self.oversleep_s, self.publish_cost_s = 1000.0, oversleep_s, publish_cost_s
        self.published: list[tuple[str, float]] = []

    def monotonic(self) -> float:
        return self.now_s

    def wait(self, seconds: float) -> bool:
        self.now_s += seconds + self.oversleep_s
        return False

    def publish(self, topic: str, data: bytes) -> None:
        self.published.append((topic, self.now_s - 1000.0))
        self.now_s += self.publish_cost_s


def _messages(offsets_ms):
    return [(f"/t{i}", T0_NS + round(ms * MS), b"") for i, ms in enumerate(offsets_ms)]


@pytest.mark.parametrize("rate", [1.0, 2.0, 0.5])
def test_publish_times_track_the_schedule_without_accumulating_oversleep_or_publish_cost(rate):
    fake = FakeTime(oversleep_s=0.002, publish_cost_s=0.003)
    messages = _messages(range(0, 101, 10))
    schedule = Schedule(T0_NS, T0_NS + 100 * MS, rate)
    stats = play(lambda: messages, fake.publish, schedule, ReplayStats(), monotonic=fake.monotonic, wait=fake.wait)
    due = [schedule.due_s(t) for _, t, _ in messages]
    lateness = [t - d for (_, t), d in zip(fake.published, due, strict=True)]
    # Each message is late by one oversleep at most; sleeping deltas would add 5 ms per message (55 ms at the end).
    assert max(lateness) == pytest.approx(0.002, abs=1e-9) and min(lateness) >= -1e-12
    assert sum(stats.published.values()) == 11 and stats.loops_completed == 1 and not stats.interrupted


def test_messages_already_due_go_out_at_once_in_log_time_order():
    fake = FakeTime(publish_cost_s=0.030)  # slower than the 10 ms spacing
    messages = _messages(range(0, 50, 10))
    play(lambda: messages, fake.publish, Schedule(T0_NS, T0_NS + 40 * MS, 1.0), ReplayStats(),
         monotonic=fake.monotonic, wait=fake.wait)
    assert [topic for topic, _ in fake.published] == [topic for topic, _, _ in messages]
    assert [t for _, t in fake.published] == pytest.approx([0.0, 0.03, 0.06, 0.09, 0.12])


def test_looping_repeats_the_pass_back_to_back():
    fake = FakeTime()
    messages = _messages([0, 100, 200])
    stats = play(lambda: messages, fake.publish, Schedule(T0_NS, T0_NS + 200 * MS, 1.0), ReplayStats(),
                 max_loops=3, monotonic=fake.monotonic, wait=fake.wait)
    assert [t for _, t in fake.published] == pytest.approx([0, .1, .2, .2, .3, .4, .4, .5, .6])
    assert stats.loops_completed == 3 and stats.published["/t0"] == 3


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_clock_ticks_carry_the_bag_time_at_the_clock_rate(rate):
    fake = FakeTime()
    ticks: list[int] = []
    play(lambda: _messages([0, 1000]), fake.publish, Schedule(T0_NS, T0_NS + 1000 * MS, rate), ReplayStats(),
         publish_clock=ticks.append, clock_hz=10.0, monotonic=fake.monotonic, wait=fake.wait)
    # One tick per 0.1 s of wall time, each 0.1 * rate s of bag time further on, up to the last message.
    expected = np.arange(0, 1.0 / rate + 1e-9, 0.1) * rate
    assert (np.array(ticks) - T0_NS) / 1e9 == pytest.approx(expected, abs=1e-6)


def test_each_pass_sets_the_clock_back_before_its_first_message():
    # A 0.4 s bag at 10 Hz: the next grid tick after a pass fell 0.1 s into the next pass, so its first message
    # (stamped at the bag's start) went out while /clock still read the bag's end.
    fake = FakeTime()
    events: list[str] = []
    messages = _messages([0, 400])
    log_ms = {topic: (t - T0_NS) // MS for topic, t, _ in messages}

    def publish(topic: str, data: bytes) -> None:
        events.append(f"message {log_ms[topic]}")

    play(lambda: messages, publish, Schedule(T0_NS, T0_NS + 400 * MS, 1.0), ReplayStats(), max_loops=3,
         publish_clock=lambda ns: events.append(f"clock {(ns - T0_NS) // MS}"), clock_hz=10.0,
         monotonic=fake.monotonic, wait=fake.wait)
    one_pass = ["clock 0", "message 0", "clock 100", "clock 200", "clock 300", "clock 400", "message 400"]
    assert events == one_pass * 3


def test_a_pass_ending_before_the_bags_end_plays_the_clock_through_the_tail_before_the_next_pass():
    # --topics picked topics whose last message (200 ms) comes before the bag's (400 ms): the next pass starts at
    # 400 ms on the schedule, and /clock must not jump back to the bag's start before it.
    fake = FakeTime()
    events: list[str] = []
    messages = _messages([0, 200])
    log_ms = {topic: (t - T0_NS) // MS for topic, t, _ in messages}
    play(lambda: messages, lambda topic, data: events.append(f"message {log_ms[topic]}"),
         Schedule(T0_NS, T0_NS + 400 * MS, 1.0), ReplayStats(), max_loops=2,
         publish_clock=lambda ns: events.append(f"clock {(ns - T0_NS) // MS}"), clock_hz=10.0,
         monotonic=fake.monotonic, wait=fake.wait)
    first = ["clock 0", "message 0", "clock 100", "clock 200", "message 200", "clock 300", "clock 400"]
    assert events == first + ["clock 0", "message 0", "clock 100", "clock 200", "message 200"]


def test_looped_passes_with_nothing_to_publish_take_their_time_and_can_be_stopped():
    # After --start-offset the replayed topics may have no message left: each pass still lasts the bag's span
    # instead of re-reading the bag flat out, deaf to a stop request.
    fake = FakeTime()

    def wait(seconds: float) -> bool:  # a stop request 3.5 s in, during the fourth pass
        if fake.now_s + seconds - 1000.0 > 3.5:
            fake.now_s = 1003.5
            return True
        return fake.wait(seconds)

    stats = play(lambda: [], fake.publish, Schedule(T0_NS, T0_NS + 1000 * MS, 1.0), ReplayStats(), max_loops=None,
                 monotonic=fake.monotonic, wait=wait)
    assert stats.interrupted and stats.loops_completed == 3 and not stats.published


def test_a_stop_request_while_waiting_ends_the_replay_as_interrupted():
    fake = FakeTime()
    waits = iter([False, True])
    stats = play(lambda: _messages([0, 100, 200]), fake.publish, Schedule(T0_NS, T0_NS + 200 * MS, 1.0),
                 ReplayStats(), monotonic=fake.monotonic, wait=lambda s: next(waits))
    assert stats.interrupted and sum(stats.published.values()) == 1


def test_the_rate_scales_the_real_wall_clock_duration():
    messages = _messages(range(0, 401, 100))
    elapsed = {}
    for rate in (2.0, 0.5):
        stats = play(lambda: messages, lambda topic, data: None, Schedule(T0_NS, T0_NS + 400 * MS, rate),
                     ReplayStats())
        elapsed[rate] = stats.elapsed_s
    # The last message is due at 0.4 s / rate and never earlier; loose upper bounds for a loaded machine.
    assert 0.2 <= elapsed[2.0] < 0.6
    assert 0.8 <= elapsed[0.5] < 1.2
    assert elapsed[0.5] / elapsed[2.0] > 2.0


@pytest.mark.parametrize(("options", "message"), [
    ({"rate": 0.0}, r"rate must be a finite number > 0, got 0\.0"),
    ({"rate": math.nan}, r"rate must be a finite number > 0, got nan"),
    ({"start_offset_s": -1.0}, r"start offset must be a finite number of seconds >= 0, got -1\.0"),
    ({"clock_hz": 0.0}, r"clock rate must be a finite number of Hz > 0, got 0\.0"),
    ({"loop": True, "max_loops": 0}, r"max loops must be >= 1, got 0"),
])
def test_invalid_options_are_rejected_naming_the_value(options, message):
    with pytest.raises(ReplayError, match=message):
        ReplayOptions(**options)


# --- waiting for subscribers --------------------------------------------------------------------------------------

def _subscribed_from(fake: FakeTime, matched_at_s: dict[str, float]):
    """Subscription counts as discovery would report them: each topic matched from its time on (never if absent)."""
    return lambda: {topic: int(fake.now_s - 1000.0 >= matched_at_s.get(topic, math.inf))
                    for topic in ("/image", "/tf_static", "/ground_truth")}


def test_the_first_subscriber_ends_the_wait_after_a_short_grace_for_the_other_topics():
    # A bringup subscribes to the camera topics, never to a sim bag's /ground_truth: no waiting out the timeout.
    fake = FakeTime()
    stopped, unsubscribed = wait_for_subscribers(_subscribed_from(fake, {"/image": 0.3, "/tf_static": 0.5}), 10.0,
                                                 wait=fake.wait, monotonic=fake.monotonic)
    assert not stopped and unsubscribed == ["/ground_truth"]
    assert fake.now_s - 1000.0 == pytest.approx(0.3 + DISCOVERY_GRACE_S, abs=0.03)


def test_every_topic_matched_ends_the_wait_at_once():
    fake = FakeTime()
    matched = {"/image": 0.2, "/tf_static": 0.25, "/ground_truth": 0.3}
    stopped, unsubscribed = wait_for_subscribers(_subscribed_from(fake, matched), 10.0, wait=fake.wait,
                                                 monotonic=fake.monotonic)
    assert (stopped, unsubscribed) == (False, []) and fake.now_s - 1000.0 == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("timeout_s", [0.0, 2.0])
def test_without_any_subscriber_the_wait_lasts_the_timeout(timeout_s):
    fake = FakeTime()
    stopped, unsubscribed = wait_for_subscribers(_subscribed_from(fake, {}), timeout_s, wait=fake.wait,
                                                 monotonic=fake.monotonic)
    assert not stopped and unsubscribed == ["/image", "/tf_static", "/ground_truth"]
    assert fake.now_s - 1000.0 == pytest.approx(timeout_s)


def test_the_grace_is_never_longer_than_the_timeout_and_a_stop_ends_the_wait():
    fake = FakeTime()
    _, unsubscribed = wait_for_subscribers(_subscribed_from(fake, {"/image": 0.0}), 0.1, wait=fake.wait,
                                           monotonic=fake.monotonic)
    assert unsubscribed == ["/tf_static", "/ground_truth"] and fake.now_s - 1000.0 == pytest.approx(0.1)
    stopped, _ = wait_for_subscribers(_subscribed_from(fake, {}), 10.0, wait=lambda s: True, monotonic=fake.monotonic)
    assert stopped


# --- reading bags -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", STORAGES)
def test_a_bag_is_planned_with_recorded_qos_and_unknown_types_skipped(tmp_path, storage):
    written = write_bag(tmp_path / "bag", storage)
    console = quiet_console()
    with BagReplay(tmp_path / "bag", console=console) as bag:
        assert sorted(bag.plans) == ["/camera/color/image_raw", "/chatter", "/latched"]
        assert describe_qos(bag.plans["/latched"].qos) == "reliable, transient_local, keep_last 1"
        assert describe_qos(bag.plans["/camera/color/image_raw"].qos) == "reliable, volatile, keep_last 5"
        assert bag.plans["/latched"].qos_recorded and not bag.plans["/chatter"].qos_recorded
        assert bag.stats.skipped == {"/plane": (PLANE, "message type not installed here")}
        assert bag.schedule.pass_s == pytest.approx(TAIL_S)
        # One pass: every replayable message, byte-identical, in log-time order.
        assert list(bag.messages()) == [m for m in written if m[0] != "/plane"]
    assert console.file.getvalue().count("skipping /plane (shape_msgs/msg/Plane)") == 1


def test_a_single_mcap_file_a_topic_subset_and_a_start_offset(tmp_path):
    written = write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    options = ReplayOptions(topics=("/camera/color/image_raw", "/plane"), start_offset_s=0.04)
    with BagReplay(tmp_path / "bag" / "bag.mcap", options, quiet_console()) as bag:
        assert list(bag.plans) == ["/camera/color/image_raw"] and list(bag.stats.skipped) == ["/plane"]
        assert describe_qos(bag.plans["/camera/color/image_raw"].qos) == "reliable, volatile, keep_last 5"
        assert list(bag.messages()) == [m for m in written
                                        if m[0] == "/camera/color/image_raw" and m[1] >= T0_NS + 40 * MS]


def test_a_single_db3_file_is_a_bag_as_the_help_says(tmp_path):
    written = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    with BagReplay(tmp_path / "bag" / "bag.db3", console=quiet_console()) as bag:
        assert describe_qos(bag.plans["/latched"].qos) == "reliable, transient_local, keep_last 1"
        assert list(bag.messages()) == [m for m in written if m[0] != "/plane"]
    help_text = _replay_help()
    assert "bag directory, .mcap or .db3 file" in help_text
    assert help_text.split("\n\n")[1].startswith("Publish a rosbag2 bag's messages")  # the description line
    # The wait's help states the grace the player uses.
    assert f"then up to {DISCOVERY_GRACE_S:g} s more for the other topics' discovery" in " ".join(help_text.split())


@pytest.mark.parametrize(("profile", "encoding", "payload"), [("ros1", "ros1", b"\x07\x00\x00\x00hello 0"),
                                                              ("ros2", "json", b'{"data": "hello 0"}')])
def test_messages_not_serialised_as_ros2_cdr_are_skipped_naming_their_encoding(tmp_path, profile, encoding, payload):
    # A ROS 1 recording converted to mcap, or JSON messages: published as they are, their bytes would go out as CDR
    # and every subscriber would drop them, while the summary said they were published.
    from mcap.writer import Writer

    path = tmp_path / "foreign.mcap"
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start(profile=profile, library="test")
        schema = writer.register_schema(name="std_msgs/msg/String", encoding=f"{encoding}msg", data=b"string data")
        channel = writer.register_channel(topic="/chatter", message_encoding=encoding, schema_id=schema)
        for i in range(3):
            writer.add_message(channel_id=channel, log_time=10**9 + i * 10**7, publish_time=10**9 + i * 10**7,
                               data=payload)
        writer.finish()
    console = quiet_console()
    with BagReplay(path, console=console) as bag:
        assert bag.plans == {} and list(bag.messages()) == []
        assert bag.stats.skipped == {"/chatter": ("std_msgs/msg/String", f"recorded as {encoding!r}, not ROS 2's CDR "
                                                  "(a ROS 1 or JSON recording?): not publishable as a ROS 2 message")}


def _replay_help() -> str:
    commands = next(action for action in build_parser()._actions if action.dest == "command")
    return commands.choices["replay"].format_help()


def test_the_summary_keeps_names_whole_at_80_columns_and_brackets_verbatim(tmp_path):
    write_bag(tmp_path / "bag[s]", StoragePlugin.MCAP)
    piped = Console(file=io.StringIO(), width=80)  # not a terminal: a pipe or a CI log
    narrow_terminal = Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None)
    for console in (piped, narrow_terminal):
        with BagReplay(tmp_path / "bag[s]", console=console) as bag:
            bag.stats.unsubscribed = ["/chatter"]
            bag.print_summary()
    piped_text = piped.file.getvalue()
    # Piped: one row per topic with the whole names, grep-able.
    assert any("/camera/color/image_raw" in line and "sensor_msgs/msg/Image" in line
               for line in piped_text.splitlines())
    assert f"replayed {tmp_path / 'bag[s]'}" in piped_text  # "[s]" is a markup tag unless escaped
    assert "not subscribed: /chatter" in piped_text
    assert piped.width == 80  # widened for the tables only
    # A narrow terminal folds cells instead of cutting them off.
    terminal_text = narrow_terminal.file.getvalue()
    assert "…" not in piped_text and "…" not in terminal_text
    first_column = "".join(line.split("│")[1].strip() for line in terminal_text.splitlines() if "│" in line)
    assert "/camera/color/image_raw/chatter/latched" in first_column  # folded over lines, not lost


def test_topics_not_in_the_bag_are_an_error_listing_what_it_has(tmp_path):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    with pytest.raises(ReplayError, match=r"topics \['/nope'\] are not in bag .*bag; it has \['/camera"):
        BagReplay(tmp_path / "bag", ReplayOptions(topics=("/chatter", "/nope")), quiet_console())


def test_a_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(ReplayError, match=f"bag {tmp_path / 'nope'} does not exist"):
        run_replay(tmp_path / "nope")


def test_a_directory_without_metadata_is_an_error_naming_it(tmp_path):
    with pytest.raises(ReplayError, match=f"^{tmp_path} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 "
                                          "file$"):
        BagReplay(tmp_path, console=quiet_console())


def test_a_bag_without_messages_is_an_error_naming_it(tmp_path):
    with Writer(tmp_path / "empty", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/chatter", STRING, typestore=TYPESTORE)
    with pytest.raises(ReplayError, match=f"bag {tmp_path / 'empty'} contains no messages"):
        BagReplay(tmp_path / "empty", console=quiet_console())


@pytest.mark.parametrize("kept", [0.0, 0.5, 0.9])
def test_a_truncated_sqlite3_bag_is_an_error_naming_it(tmp_path, kept):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    _cut(tmp_path / "bag" / "bag.db3", kept)
    # Depending on where the cut falls, opening or reading fails, or a table silently reads empty and the recorded
    # message counts tell; in every case with the bag's path. sqlite cannot read past its damage: nothing to salvage.
    with pytest.raises(ReplayError, match=f"bag {tmp_path / 'bag'}"):
        with BagReplay(tmp_path / "bag", console=quiet_console()) as bag:
            list(bag.messages())


def _cut(path: Path, kept: float) -> None:
    """Truncate a file to the fraction ``kept`` of its bytes, as a killed recorder or a cut-short copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * kept)])


IMAGE_BYTES = 420_000  # rosbags closes an mcap chunk past 1 MiB: three of these images per chunk


def write_chunked_bag(path: Path, frames: int = 8) -> list[tuple[str, int, bytes]]:
    """An mcap bag of a latched string and ``frames`` large images with a string each, 10 ms apart, so that it spans
    several chunks (as any camera recording does) and a cut leaves whole chunks before it. Returns what was written."""
    types = TYPESTORE.types
    written = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        latched = writer.add_connection("/latched", STRING, typestore=TYPESTORE, offered_qos_profiles=[LATCHED_OFFER])
        image = writer.add_connection("/camera/color/image_raw", IMAGE, typestore=TYPESTORE,
                                      offered_qos_profiles=[IMAGE_OFFER])
        chatter = writer.add_connection("/chatter", STRING, typestore=TYPESTORE)
        messages = [(latched, 0, TYPESTORE.serialize_cdr(types[STRING](data="static map"), STRING))]
        for i in range(frames):
            header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=i, nanosec=0),
                                                  frame_id="cam")
            msg = types[IMAGE](header=header, height=200, width=700, encoding="rgb8", is_bigendian=0, step=2100,
                               data=np.full(IMAGE_BYTES, i, dtype=np.uint8))
            messages.append((image, (10 + 10 * i) * MS, TYPESTORE.serialize_cdr(msg, IMAGE)))
            messages.append((chatter, (15 + 10 * i) * MS, TYPESTORE.serialize_cdr(types[STRING](data=f"{i}"), STRING)))
        for conn, offset_ns, data in messages:
            writer.write(conn, T0_NS + offset_ns, bytes(data))
            written.append((conn.topic, T0_NS + offset_ns, bytes(data)))
    return written


@pytest.mark.parametrize("kept", [0.6, 0.999])
def test_a_truncated_mcap_bag_replays_the_messages_before_the_damage(tmp_path, kept):
    written = write_chunked_bag(tmp_path / "bag")
    _cut(tmp_path / "bag" / "bag.mcap", kept)
    with BagReplay(tmp_path / "bag", console=quiet_console()) as bag:
        assert bag.read_error == (f"bag {tmp_path / 'bag'} has no valid end (File end magic is invalid.); replaying "
                                  "the messages before the damage")
        salvaged = list(bag.messages())
        # What the QoS came from here is the mcap channels' metadata, rosbags' summary being cut off.
        assert describe_qos(bag.plans["/latched"].qos) == "reliable, transient_local, keep_last 1"
        assert describe_qos(bag.plans["/camera/color/image_raw"].qos) == "reliable, volatile, keep_last 5"
        assert not bag.plans["/chatter"].qos_recorded
        assert {topic: plan.recorded_count for topic, plan in bag.plans.items()} == {
            topic: sum(1 for m in salvaged if m[0] == topic) for topic in bag.plans}
        summary = quiet_console()
        bag.console = summary
        bag.print_summary()
    # Byte-identical, in order, up to the last whole chunk: cut in the data, a strict prefix with at least the first
    # chunk (the latched string, three images, two strings); cut in the closing summary, every message.
    assert salvaged == written[:len(salvaged)]
    if kept < 0.99:
        assert 6 <= len(salvaged) < len(written)
    else:
        assert salvaged == written
    assert f"replayed {tmp_path / 'bag'} (the messages before the damage)" in summary.file.getvalue()


def test_a_bag_whose_summary_is_garbled_is_replayed_from_its_records(tmp_path):
    # rosbags then fails while decoding the summary (here a topic name that is no longer UTF-8), not with ReaderError.
    written = write_chunked_bag(tmp_path / "bag", frames=4)
    mcap_file = tmp_path / "bag" / "bag.mcap"
    data = bytearray(mcap_file.read_bytes())
    data[data.rfind(b"/chatter") + 1] = 0xFF  # the channel record in the summary at the file's end
    mcap_file.write_bytes(bytes(data))
    with BagReplay(tmp_path / "bag", console=quiet_console()) as bag:
        assert bag.read_error.startswith(f"bag {tmp_path / 'bag'} has no valid end ('utf-8' codec can't decode")
        assert list(bag.messages()) == written


def test_a_bag_missing_bytes_in_its_middle_replays_the_whole_chunks_before_them_not_a_memory_error(tmp_path):
    # Every offset of the index past the gap points too far: rosbags read a record length at the wrong place and
    # raised MemoryError, which escaped tsg replay as a traceback.
    from bag_edits import bytes_removed_inside_chunk

    written = write_chunked_bag(tmp_path / "bag")
    trusted = bytes_removed_inside_chunk(tmp_path / "bag" / "bag.mcap", chunk=1)
    with BagReplay(tmp_path / "bag", console=quiet_console()) as bag:
        assert bag.read_error.startswith(f"bag {tmp_path / 'bag'} has no valid end (mcap file ")
        assert "is damaged: its footer puts the summary" in bag.read_error
        salvaged = list(bag.messages())
    assert salvaged == written[:trusted] and trusted > 0


def test_a_memory_error_while_replaying_is_a_damaged_bag(tmp_path, monkeypatch):
    from rosbags.rosbag2 import Reader

    write_chunked_bag(tmp_path / "bag", frames=2)

    def garbled(self, *args, **kwargs):
        raise MemoryError  # what a garbled record length makes rosbags allocate
        yield

    monkeypatch.setattr(Reader, "messages", garbled)
    with BagReplay(tmp_path / "bag", console=quiet_console()) as bag, pytest.raises(
            ReplayError, match=r"bag .*bag is damaged \(MemoryError: \)"):
        list(bag.messages())


def test_a_killed_recorders_directory_without_metadata_is_salvaged_and_a_whole_one_read_through_its_file(tmp_path):
    written = write_chunked_bag(tmp_path / "whole", frames=4)
    (tmp_path / "whole" / "metadata.yaml").unlink()  # as a bag copied without it: rosbags reads the file's index
    with BagReplay(tmp_path / "whole", console=quiet_console()) as bag:
        assert bag.read_error is None and list(bag.messages()) == written
    written = write_chunked_bag(tmp_path / "killed")
    (tmp_path / "killed" / "metadata.yaml").unlink()  # rosbag2 writes it on close, which a killed recorder never does
    _cut(tmp_path / "killed" / "killed.mcap", 0.6)
    with BagReplay(tmp_path / "killed", console=quiet_console()) as bag:
        assert bag.read_error.startswith(f"bag {tmp_path / 'killed'} has no valid end (")
        salvaged = list(bag.messages())
    assert 6 <= len(salvaged) < len(written) and salvaged == written[:len(salvaged)]


@pytest.mark.parametrize(("kept_bytes", "message"), [
    (0, r"cannot read bag .*bag: File .*bag\.mcap. seems to be empty"),
    (100, r"cannot read bag .*bag: .*; no complete message before the damage \(EndOfFile"),
])
def test_an_mcap_bag_cut_before_its_first_message_is_an_error_naming_it(tmp_path, kept_bytes, message):
    write_chunked_bag(tmp_path / "bag", frames=1)
    data_file = tmp_path / "bag" / "bag.mcap"
    data_file.write_bytes(data_file.read_bytes()[:kept_bytes])
    with pytest.raises(ReplayError, match=message):
        BagReplay(tmp_path / "bag", console=quiet_console())


def test_a_bag_with_no_installed_type_fails_without_touching_dds(tmp_path):
    with Writer(tmp_path / "plane_only", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/plane", PLANE, typestore=TYPESTORE)
        writer.write(conn, T0_NS, bytes(TYPESTORE.serialize_cdr(_plane(), PLANE)))
    console = quiet_console()
    assert run_replay(tmp_path / "plane_only", console=console) == 1
    assert "nothing to replay" in console.file.getvalue()


def test_looping_a_bag_that_spans_no_time_is_refused(tmp_path):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)
    with pytest.raises(ReplayError, match=r"cannot loop bag .*bag: its messages from the start offset span 0 s"):
        BagReplay(tmp_path / "bag", ReplayOptions(loop=True, start_offset_s=0.07), quiet_console())


@pytest.mark.parametrize("rate", [1.0, 0.25])
def test_looping_a_bag_shorter_than_the_nodes_jump_back_warns_that_the_node_will_not_reset(tmp_path, rate):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)  # 70 ms of bag time
    console = quiet_console()
    BagReplay(tmp_path / "bag", ReplayOptions(loop=True, rate=rate), console).close()
    output = console.file.getvalue()
    assert ("warning: one pass spans 0.070 s of bag time, not more than the 1 s jump back at which the scene-graph "
            "node starts a new episode: the node will not see a loop as a reset, so tracks and reward smoothing "
            "carry across passes") in output, output


@pytest.mark.parametrize("options", [{"loop": True}, {"loop": True, "max_loops": 1}, {}])
def test_no_loop_warning_for_a_bag_longer_than_the_jump_back_or_a_single_pass(tmp_path, options):
    write_bag(tmp_path / "long", StoragePlugin.MCAP)  # 60 s
    write_bag(tmp_path / "short", StoragePlugin.MCAP, with_tail=False)
    for bag in ("long",) if options.get("loop") and options.get("max_loops") is None else ("long", "short"):
        console = quiet_console()
        BagReplay(tmp_path / bag, ReplayOptions(**options), console).close()
        assert "jump back" not in console.file.getvalue(), (bag, options)


def test_the_loop_warning_starts_at_a_pass_of_exactly_the_jump_back():
    from trusted_scene_graph.clock import JUMP_BACK_NS
    from trusted_scene_graph.ros.replay import short_loop_warning

    # The node resets at a stamp *more* than JUMP_BACK_NS back: a pass of exactly 1 s does not reset it.
    assert short_loop_warning(Schedule(T0_NS, T0_NS + JUMP_BACK_NS, 1.0)) is not None
    assert short_loop_warning(Schedule(T0_NS, T0_NS + JUMP_BACK_NS + 1, 1.0)) is None


def test_clock_is_refused_when_the_bag_has_its_own(tmp_path):
    with Writer(tmp_path / "clocked", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/clock", "rosgraph_msgs/msg/Clock", typestore=TYPESTORE)
        clock = TYPESTORE.types["rosgraph_msgs/msg/Clock"](clock=TYPESTORE.types["builtin_interfaces/msg/Time"](
            sec=1, nanosec=0))
        writer.write(conn, T0_NS, bytes(TYPESTORE.serialize_cdr(clock, "rosgraph_msgs/msg/Clock")))
    with pytest.raises(ReplayError, match=r"has its own /clock"):
        BagReplay(tmp_path / "clocked", ReplayOptions(clock_hz=40.0), quiet_console())


# --- over DDS -----------------------------------------------------------------------------------------------------

RELIABLE_LATCHED = QoSProfile(depth=1, reliability=R.RELIABLE, durability=D.TRANSIENT_LOCAL)


@pytest.mark.dds
@pytest.mark.parametrize("storage", STORAGES)
def test_replayed_messages_arrive_byte_identical_in_order_and_latched_for_late_joiners(tmp_path, test_node,
                                                                                      storage):
    written = write_bag(tmp_path / "bag", storage)
    expected = {}
    for topic, _, data in written[:-1]:  # all but the far tail
        if topic != "/plane":
            expected.setdefault(topic, []).append(data)
    received: dict[str, list[bytes]] = {topic: [] for topic in expected}
    for topic in expected:
        qos = RELIABLE_LATCHED if topic == "/latched" else QoSProfile(depth=10)
        test_node.create_subscription(message_class(STRING if topic != "/camera/color/image_raw" else IMAGE), topic,
                                      received[topic].append, qos, raw=True)
    clock_ns: list[int] = []
    test_node.create_subscription(message_class("rosgraph_msgs/msg/Clock"), "/clock",
                                  lambda m: clock_ns.append(m.clock.sec * 10**9 + m.clock.nanosec),
                                  QoSProfile(depth=10, reliability=R.BEST_EFFORT))
    player_node = rclpy.create_node("tsg_replay_test")
    stop = threading.Event()
    options = ReplayOptions(clock_hz=50.0, wait_for_subscribers_s=10.0)
    with BagReplay(tmp_path / "bag", options, quiet_console()) as bag, ThreadPoolExecutor(1) as pool:
        try:
            playing = pool.submit(bag.play, player_node, stop)
            assert spin_until(test_node, lambda: all(len(received[t]) == len(expected[t]) for t in expected))
            late: list[bytes] = []
            test_node.create_subscription(message_class(STRING), "/latched", late.append, RELIABLE_LATCHED,
                                          raw=True)
            assert spin_until(test_node, lambda: len(late) == 1)
            assert spin_until(test_node, lambda: len(clock_ns) >= 3)
        finally:
            stop.set()
            stats = playing.result(timeout=10.0)
            player_node.destroy_node()
    assert received == expected  # every message, byte-identical, in order per topic
    assert late == expected["/latched"]  # published once, before this subscription existed
    image = deserialize_message(received["/camera/color/image_raw"][2], Image)
    assert (image.header.stamp.sec, image.encoding, list(image.data[:3])) == (2, "rgb8", [2, 3, 4])
    assert stats.interrupted and stats.published == {t: len(v) for t, v in expected.items()}
    assert stats.skipped == {"/plane": (PLANE, "message type not installed here")}
    assert all(T0_NS <= t <= T0_NS + TAIL_S * 10**9 for t in clock_ns) and clock_ns == sorted(clock_ns)


def _start_looping_replay(bag: Path, ignore_sigint: bool = False) -> subprocess.Popen:
    """``run_replay(bag, loop=True)`` in a child process, once it has printed "replaying ..."; with ``ignore_sigint``
    the child inherits SIGINT ignored, as a job started with `&` from a non-interactive shell does."""
    script = ("import sys\nfrom trusted_scene_graph.ros.replay import run_replay\n"
              f"sys.exit(run_replay({str(bag)!r}, loop=True, wait_for_subscribers_s=0))")
    # Ignored here for the moment of the fork, as the shell does: the child inherits the disposition through exec.
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore_sigint else None
    try:
        process = subprocess.Popen([sys.executable, "-u", "-c", script], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "300"})
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    # The /plane warning, the short-loop warning (these bags span 70 ms), then "replaying ...".
    output = [process.stdout.readline() for _ in range(3)]
    if not (output[1].startswith("warning: one pass spans 0.070 s")
            and output[2].startswith(f"replaying {bag}: 3 topics")):
        process.kill()
        process.wait()
        pytest.fail(f"the replay did not start: {output}")
    return process


def _stop(process: subprocess.Popen, *signals: signal.Signals) -> str:
    """Send the signals (the last one must end the replay) and return the rest of its output."""
    try:
        for sent in signals[:-1]:
            process.send_signal(sent)
            with pytest.raises(subprocess.TimeoutExpired):  # ignored
                process.wait(timeout=0.5)
        process.send_signal(signals[-1])
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return rest


@pytest.mark.dds
def test_ctrl_c_ends_a_looping_replay_with_a_summary_and_exit_code_0(tmp_path):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)
    process = _start_looping_replay(tmp_path / "bag")
    rest = _stop(process, signal.SIGINT)
    assert process.returncode == 0, rest
    assert "Traceback" not in rest and "(interrupted)" in rest and "skipped topics" in rest


@pytest.mark.dds
def test_sigterm_ends_a_replay_started_in_the_background_with_a_summary(tmp_path):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)
    process = _start_looping_replay(tmp_path / "bag", ignore_sigint=True)
    rest = _stop(process, signal.SIGINT, signal.SIGTERM)  # SIGINT is ignored, as the shell asked; `kill` works
    assert process.returncode == 0, rest
    assert "Traceback" not in rest and "(interrupted)" in rest and "skipped topics" in rest
    assert "not subscribed: /camera/color/image_raw, /chatter, /latched" in rest


@pytest.mark.dds
def test_a_truncated_mcap_bag_is_played_up_to_the_damage_with_a_warning_and_exit_code_1(tmp_path, capsys):
    written = write_chunked_bag(tmp_path / "bag")
    _cut(tmp_path / "bag" / "bag.mcap", 0.6)
    assert main(["replay", str(tmp_path / "bag"), "--wait-for-subscribers", "0"]) == 1
    out, err = capsys.readouterr()
    assert err == (f"tsg replay: warning: bag {tmp_path / 'bag'} has no valid end (File end magic is invalid.); "
                   "replaying the messages before the damage\n")
    published = int(out.split(" messages, 1 pass of")[0].rsplit("\n", 1)[-1])
    assert 6 <= published < len(written) and "(interrupted)" not in out


@pytest.mark.dds
def test_playback_starts_once_one_topic_is_subscribed_and_the_others_are_listed_not_warned(tmp_path, test_node):
    # As a bringup replaying a sim bag: it subscribes to the camera, never to the bag's other topics.
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)
    received: list[bytes] = []
    test_node.create_subscription(message_class(STRING), "/chatter", received.append, QoSProfile(depth=10), raw=True)
    player_node = rclpy.create_node("tsg_replay_wait_test")
    console = quiet_console()
    try:
        with BagReplay(tmp_path / "bag", ReplayOptions(wait_for_subscribers_s=20.0), console) as bag:
            stats = bag.play(player_node)
    finally:
        player_node.destroy_node()
    assert stats.elapsed_s < 1.0  # the pass itself: 70 ms of bag
    assert stats.unsubscribed == ["/camera/color/image_raw", "/latched"]
    assert spin_until(test_node, lambda: len(received) == 3)  # no first message lost to discovery
    bag.print_summary()
    output = console.file.getvalue()
    assert "no subscriber" not in output
    assert "not subscribed: /camera/color/image_raw, /latched" in output


@pytest.mark.dds
def test_a_warning_only_when_no_topic_has_a_subscriber_after_the_timeout(tmp_path, ros_context):
    write_bag(tmp_path / "bag", StoragePlugin.MCAP, with_tail=False)
    player_node = rclpy.create_node("tsg_replay_nobody_test")
    console = quiet_console()
    try:
        with BagReplay(tmp_path / "bag", ReplayOptions(topics=("/chatter", "/latched"), wait_for_subscribers_s=0.3),
                       console) as bag:
            stats = bag.play(player_node)
    finally:
        player_node.destroy_node()
    assert "no subscriber on any of the 2 replayed topics after 0.3 s; playing anyway" in console.file.getvalue()
    assert stats.unsubscribed == ["/chatter", "/latched"]


@pytest.mark.dds
def test_a_recorded_tf_static_replays_transient_local_so_a_late_subscriber_still_gets_it(tmp_path, test_node):
    from trusted_scene_graph.dataset import BagWriter
    from trusted_scene_graph.dataset import messages as bag_msgs
    from trusted_scene_graph.dataset.bag import LATCHED_QOS
    from trusted_scene_graph.geometry.transform import RigidTransform

    # As `tsg sim record` writes it: /tf_static offered reliable, transient local; a far tail keeps the player on.
    camera_in_world = RigidTransform.from_xyzw([0.4, -0.2, 1.1], [0.0, 0.7071068, 0.0, 0.7071068])
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/tf_static", TF, LATCHED_QOS)
        bag.add_topic("/chatter", STRING)
        bag.write("/tf_static", bag_msgs.tf_message(T0_NS, "world", "cam", camera_in_world), T0_NS)
        bag.write("/chatter", TYPESTORE.types[STRING](data="the end"), T0_NS + TAIL_S * 10**9)
    player_node = rclpy.create_node("tsg_replay_tf_test")
    stop = threading.Event()
    with BagReplay(tmp_path / "bag", ReplayOptions(wait_for_subscribers_s=0.0), quiet_console()) as bag, \
            ThreadPoolExecutor(1) as pool:
        plan = bag.plans["/tf_static"]
        assert plan.msg_class is TFMessage and plan.qos_recorded
        assert plan.qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        assert plan.qos.reliability == ReliabilityPolicy.RELIABLE
        try:
            playing = pool.submit(bag.play, player_node, stop)
            assert spin_until(test_node, lambda: bag.stats.published["/tf_static"] == 1)
            late: list[TFMessage] = []  # subscribes after the only /tf_static message went out
            test_node.create_subscription(TFMessage, "/tf_static", late.append,
                                          QoSProfile(depth=100, reliability=R.RELIABLE, durability=D.TRANSIENT_LOCAL))
            assert spin_until(test_node, lambda: len(late) == 1)
        finally:
            stop.set()
            playing.result(timeout=10.0)
            player_node.destroy_node()
    (stamped,) = late[0].transforms
    assert (stamped.header.frame_id, stamped.child_frame_id) == ("world", "cam")
    assert [stamped.transform.translation.x, stamped.transform.translation.y,
            stamped.transform.translation.z] == pytest.approx([0.4, -0.2, 1.1])


@pytest.mark.dds
def test_a_late_subscriber_gets_the_static_transforms_of_every_recorded_broadcaster(tmp_path, test_node):
    # Merged onto one depth-1 publisher, a late joiner (the node after cleanup and configure) got only the last
    # broadcaster's transforms: the camera's frame hung off a base that was never connected to the world.
    write_two_broadcaster_tf_static_bag(tmp_path / "bag")
    player_node = rclpy.create_node("tsg_replay_tf_test")
    stop = threading.Event()
    with BagReplay(tmp_path / "bag", ReplayOptions(wait_for_subscribers_s=0.0), quiet_console()) as bag, \
            ThreadPoolExecutor(1) as pool:
        try:
            playing = pool.submit(bag.play, player_node, stop)
            assert spin_until(test_node, lambda: bag.stats.published["/tf_static"] == 2)
            late: list[TFMessage] = []  # subscribes after both /tf_static messages went out
            test_node.create_subscription(TFMessage, "/tf_static", late.append,
                                          QoSProfile(depth=100, reliability=R.RELIABLE, durability=D.TRANSIENT_LOCAL))
            assert spin_until(test_node, lambda: len(late) == 2)
            spin_until(test_node, lambda: len(late) > 2, timeout_s=0.3)
        finally:
            stop.set()
            playing.result(timeout=10.0)
            player_node.destroy_node()
    assert [(t.header.frame_id, t.child_frame_id) for msg in late for t in msg.transforms] == [
        ("world", "base"), ("base", "cam")]
