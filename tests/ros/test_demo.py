"""`tsg demo`'s pacing: late frames are counted without a catch-up burst, and callbacks run after every frame."""

from __future__ import annotations

import json
import time

import pytest
from rclpy.executors import SingleThreadedExecutor

from trusted_scene_graph.ros.demo import FramePacer, run_ready_callbacks


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_frames_on_time_wait_for_their_tick_and_are_not_late():
    clock = FakeClock()
    pacer = FramePacer(8.0, clock)
    clock.now_s += 0.05  # rendering took 50 ms of the 125 ms period
    pacer.frame_done(0.05)
    assert pacer.remaining_s() == pytest.approx(0.075)
    clock.now_s += 0.075
    pacer.frame_done(0.05)
    assert (pacer.frames, pacer.late) == (2, 0) and pacer.warning() is None


def test_a_late_frame_restarts_the_schedule_instead_of_bursting_to_catch_up():
    clock = FakeClock()
    pacer = FramePacer(8.0, clock)
    clock.now_s += 0.5  # four periods
    pacer.frame_done(0.5)
    assert pacer.late == 1 and pacer.remaining_s() <= 0  # the next frame is due now...
    clock.now_s += 0.05
    pacer.frame_done(0.05)
    # ...and the one after a full period after it, not at once to make up for the missed ticks.
    assert pacer.late == 1 and pacer.remaining_s() == pytest.approx(0.075)


def test_the_warning_names_the_rate_the_late_frames_the_render_time_and_a_rate_to_try():
    clock = FakeClock()
    pacer = FramePacer(8.0, clock)
    for _ in range(10):
        clock.now_s += 0.18
        pacer.frame_done(0.18)
    assert pacer.warning() == ("publishing fell behind 8 Hz on 10 of 10 frames (rendering takes ~180 ms, 180 ms for "
                               "the slowest 5%); try --rate 4")


def test_the_suggested_rate_leaves_room_for_the_slow_frames_not_only_the_median():
    clock = FakeClock()
    pacer = FramePacer(8.0, clock)
    for render_s in [0.05] * 18 + [0.3, 0.3]:  # the median fits 8 Hz; a tenth of the frames do not
        clock.now_s += max(pacer.remaining_s(), 0.0) + render_s
        pacer.frame_done(render_s)
    assert pacer.late == 2 and pacer.suggested_rate_hz() == 2.0
    assert pacer.warning().endswith("(rendering takes ~50 ms, 300 ms for the slowest 5%); try --rate 2")


def test_frames_late_although_they_rendered_in_time_suggest_no_rate():
    # Every frame rendered in 50 ms of the 125 ms period, yet a third came late: the machine was busy elsewhere, and
    # suggesting the rate already in use (as the median once did) would help no one.
    clock = FakeClock()
    pacer = FramePacer(8.0, clock)
    for index in range(30):
        clock.now_s += max(pacer.remaining_s(), 0.0) + 0.05 + (0.2 if index % 3 == 0 else 0.0)
        pacer.frame_done(0.05)
    assert pacer.late == 10
    assert pacer.warning() == ("publishing fell behind 8 Hz on 10 of 30 frames (rendering takes ~50 ms, 50 ms for the "
                               "slowest 5%); rendering fits the period, so other load on the machine held the frames "
                               "up")


def test_one_slow_frame_among_many_is_no_warning():
    clock = FakeClock()
    pacer = FramePacer(10.0, clock)
    clock.now_s += 0.3  # a slow first frame (warm-up)
    pacer.frame_done(0.3)
    for _ in range(30):
        clock.now_s += pacer.remaining_s() if pacer.remaining_s() > 0 else 0.0
        clock.now_s += 0.02
        pacer.frame_done(0.02)
    assert pacer.late == 1 and pacer.warning() is None


def test_below_one_hertz_the_suggested_rate_has_a_decimal():
    clock = FakeClock()
    pacer = FramePacer(2.0, clock)
    clock.now_s += 1.5
    pacer.frame_done(1.5)
    assert pacer.suggested_rate_hz() == 0.5
    assert pacer.warning().endswith("try --rate 0.5")


@pytest.mark.parametrize("rate_hz", [0.0, -1.0, float("inf"), float("nan")])
def test_a_rate_that_cannot_be_paced_is_refused(rate_hz):
    with pytest.raises(ValueError, match=r"frame rate must be positive and finite, got .* Hz"):
        FramePacer(rate_hz)


def test_run_ready_callbacks_runs_every_ready_callback_and_returns_at_once_when_none_is(test_node):
    executor = SingleThreadedExecutor()
    executor.add_node(test_node)
    ran: list[int] = []
    guards = [test_node.create_guard_condition(lambda i=i: ran.append(i)) for i in range(3)]
    try:
        for guard in guards:
            guard.trigger()
        # spin_once(timeout_sec=0) would run one of the three; this runs all of them.
        assert run_ready_callbacks(executor) == 3 and sorted(ran) == [0, 1, 2]
        start = time.monotonic()
        assert run_ready_callbacks(executor) == 0
        assert time.monotonic() - start < 0.5  # no waiting for work that is not there
    finally:
        executor.shutdown()


def test_run_ready_callbacks_raises_what_a_callback_raised(test_node):
    executor = SingleThreadedExecutor()
    executor.add_node(test_node)

    def fail() -> None:
        raise RuntimeError("callback failed")

    guard = test_node.create_guard_condition(fail)
    try:
        guard.trigger()
        with pytest.raises(RuntimeError, match="callback failed"):
            run_ready_callbacks(executor)
    finally:
        executor.shutdown()


@pytest.mark.dds
@pytest.mark.sim
def test_a_demo_that_cannot_hold_its_rate_still_receives_the_graphs_and_says_to_lower_the_rate(tmp_path, capsys):
    pytest.importorskip("mujoco")
    from trusted_scene_graph.config import Config
    from trusted_scene_graph.ros.demo import run_demo

    out = tmp_path / "demo"
    # No machine renders 1000 frames a second: every frame is late and is published right after the last one.
    assert run_demo(Config(), seconds=3.0, rate_hz=1000.0, out_dir=out, width=320, height=240) == 0
    summary = json.loads((out / "summary.json").read_text())
    published = summary["frames_published"]
    assert published >= 5 and summary["frames_late"] == published
    # Callbacks ran after every frame: before, only the graphs of the final drain (two or three) arrived.
    assert summary["graphs_received"] >= 0.8 * published
    assert summary["render_ms_median"] > 1.0
    captured = capsys.readouterr()
    assert f"publishing fell behind 1000 Hz on {published} of {published} frames" in captured.err
    assert "t [s]" in captured.out and "error [cm]" in captured.out
