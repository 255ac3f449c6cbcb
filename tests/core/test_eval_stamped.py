"""Which ground truth (or pose) ``tsg eval`` gives a frame: ``bag_eval._Stamped``, across clock resets that the
streams may or may not see. Times in milliseconds; the tolerance is 10 ms, the config's default ``sync.tolerance_s``."""

from __future__ import annotations

from trusted_scene_graph.clock import JUMP_BACK_NS
from trusted_scene_graph.evaluation.bag_eval import KEEP_LOGGED_NS, _Stamped

MS = 1_000_000
TOLERANCE_NS = 10 * MS


def stream(*entries: tuple[int, int, str]) -> _Stamped:
    """A stream of (stamp ms, log time ms, message) entries, added in the order given (the bag's log order)."""
    stamped = _Stamped()
    for stamp_ms, log_ms, msg in entries:
        stamped.add(stamp_ms * MS, log_ms * MS, msg)
    return stamped


def test_a_pass_reads_its_own_entry_at_a_stamp_two_passes_share_though_the_stream_saw_no_reset() -> None:
    # The stream stopped at 950 ms before a reset the camera saw at 1300 ms: it jumps back 850 ms, no jump of its own.
    truth = stream((100, 100, "first"), (950, 950, "first at 950"), (100, 1600, "second"))
    assert truth.nearest(100 * MS, 100 * MS, TOLERANCE_NS) == "first"
    assert truth.nearest(100 * MS, 1600 * MS, TOLERANCE_NS) == "second"


def test_the_pass_logged_with_the_frame_wins_over_a_nearer_stamp_of_another_pass() -> None:
    # The first pass has an entry at the frame's very stamp, the frame's own pass one 5 ms off.
    truth = stream((100, 100, "first"), (105, 1605, "second"))
    assert truth.nearest(100 * MS, 1600 * MS, TOLERANCE_NS) == "second"
    # The same across a reset the stream saw (more than JUMP_BACK_NS back): timelines are told apart by log time,
    # not paired with the camera's by number.
    truth = stream((100, 100, "first"), (2000, 2000, "first at 2000"), (105, 2605, "second"))
    assert truth.nearest(100 * MS, 2600 * MS, TOLERANCE_NS) == "second"


def test_within_a_pass_the_nearest_stamp_wins_over_the_nearest_log_time() -> None:
    truth = stream((92, 500, "8 ms early, logged with the frame"), (102, 800, "2 ms late, logged late"))
    assert truth.nearest(100 * MS, 500 * MS, TOLERANCE_NS) == "2 ms late, logged late"
    # A repeated stamp: the one logged nearest the frame.
    truth = stream((100, 480, "logged 20 ms early"), (100, 510, "logged 10 ms late"))
    assert truth.nearest(100 * MS, 500 * MS, TOLERANCE_NS) == "logged 10 ms late"


def test_nothing_within_the_tolerance_is_no_entry() -> None:
    truth = stream((100, 100, "a"), (150, 150, "b"))
    assert truth.nearest(125 * MS, 125 * MS, TOLERANCE_NS) is None
    assert _Stamped().nearest(0, 0, TOLERANCE_NS) is None


def test_entries_are_kept_a_jump_back_in_log_time_so_an_earlier_pass_cannot_stand_in_for_a_missing_entry() -> None:
    assert KEEP_LOGGED_NS == JUMP_BACK_NS
    # A stream logged 800 ms ahead of the images is still found.
    truth = stream((100, 100, "ahead"))
    truth.forget_logged_before(900 * MS - KEEP_LOGGED_NS)
    assert truth.nearest(100 * MS, 900 * MS, TOLERANCE_NS) == "ahead"
    # The second pass (a reset of 1.3 s) has no entry at 100 ms: the first pass's, logged 1.4 s before the frame, is
    # forgotten by the time the frame is scored (after a frame logged at 1450 ms, which forgets up to 450 ms).
    truth = stream((100, 100, "first"), (1250, 1250, "first at 1250"), (50, 1450, "second at 50"))
    truth.forget_logged_before(1450 * MS - KEEP_LOGGED_NS)
    assert truth.nearest(100 * MS, 1500 * MS, TOLERANCE_NS) is None
    assert truth.nearest(50 * MS, 1450 * MS, TOLERANCE_NS) == "second at 50"


def test_memory_stays_bounded_as_frames_are_scored() -> None:
    truth = _Stamped()
    for k in range(10_000):  # 400 s at 25 Hz, a frame scored as each entry arrives
        truth.add(40 * k * MS, 40 * k * MS, k)
        assert truth.nearest(40 * k * MS, 40 * k * MS, TOLERANCE_NS) == k
        truth.forget_logged_before(40 * k * MS - KEEP_LOGGED_NS)
    assert len(truth) <= KEEP_LOGGED_NS // (40 * MS) + 1
