"""Specification of FrameSynchronizer (trusted_scene_graph.pipeline.sync)."""

from __future__ import annotations

import pytest

from trusted_scene_graph.pipeline import FrameSynchronizer

MS = 1_000_000
TOPICS = ("color", "depth", "info")


def sync(tolerance_ns: int = 10 * MS, buffer_size: int = 10, topics=TOPICS) -> FrameSynchronizer[str]:
    return FrameSynchronizer(topics, tolerance_ns, buffer_size)


def add_frame(synchronizer: FrameSynchronizer[str], stamp_ns: int, topics=TOPICS) -> list[bool]:
    return [synchronizer.add(topic, stamp_ns, f"{topic}@{stamp_ns}") for topic in topics]


def test_at_least_one_topic_is_required():
    with pytest.raises(ValueError, match=r"^at least one topic is needed$"):
        FrameSynchronizer([], 10 * MS)


def test_messages_with_equal_stamps_form_a_frame_on_the_last_arrival():
    synchronizer = sync()
    assert add_frame(synchronizer, 100 * MS) == [False, False, True]
    assert synchronizer.take_latest() == (100 * MS, {"color": "color@100000000", "depth": "depth@100000000",
                                                     "info": "info@100000000"})
    assert synchronizer.completed == 1


def test_messages_within_the_tolerance_of_the_anchor_are_paired_and_the_frame_has_the_anchor_stamp():
    synchronizer = sync()
    synchronizer.add("color", 100 * MS, "c")
    synchronizer.add("depth", 95 * MS, "d")
    assert synchronizer.add("info", 110 * MS, "i")  # exactly at the tolerance still pairs
    assert synchronizer.take_latest() == (100 * MS, {"color": "c", "depth": "d", "info": "i"})


def test_messages_beyond_the_tolerance_are_not_paired():
    synchronizer = sync()
    synchronizer.add("color", 100 * MS, "c")
    synchronizer.add("depth", 100 * MS, "d")
    assert not synchronizer.add("info", 110 * MS + 1, "i")
    assert synchronizer.take_latest() is None
    assert synchronizer.completed == 0


def test_the_tolerance_is_measured_from_the_anchor_not_between_other_topics():
    synchronizer = sync()
    synchronizer.add("color", 100 * MS, "c")
    synchronizer.add("depth", 90 * MS, "d")
    assert synchronizer.add("info", 110 * MS, "i")  # 20 ms from depth, 10 ms from the anchor


def test_the_closest_candidate_to_the_anchor_is_chosen():
    synchronizer = sync()
    synchronizer.add("depth", 92 * MS, "far")
    synchronizer.add("depth", 103 * MS, "close")
    synchronizer.add("info", 100 * MS, "i")
    assert synchronizer.add("color", 100 * MS, "c")
    assert synchronizer.take_latest()[1]["depth"] == "close"


def test_out_of_order_arrival_across_topics_still_matches():
    synchronizer = sync()
    assert not synchronizer.add("info", 200 * MS, "i")
    assert not synchronizer.add("depth", 201 * MS, "d")
    assert synchronizer.add("color", 199 * MS, "c")  # the anchor arrives last
    assert synchronizer.take_latest() == (199 * MS, {"color": "c", "depth": "d", "info": "i"})


def test_interleaved_frames_each_complete_when_their_last_message_arrives():
    synchronizer = sync()
    synchronizer.add("color", 100 * MS, "c1")
    synchronizer.add("color", 200 * MS, "c2")
    synchronizer.add("depth", 200 * MS, "d2")
    assert synchronizer.add("info", 200 * MS, "i2")  # the newer frame completes first
    assert synchronizer.take_latest() == (200 * MS, {"color": "c2", "depth": "d2", "info": "i2"})
    # c1 is older than a frame already delivered, so it can no longer complete one.
    synchronizer.add("depth", 100 * MS, "d1")
    assert not synchronizer.add("info", 100 * MS, "i1")


def test_only_the_latest_complete_frame_is_kept_and_replaced_frames_are_counted_as_dropped():
    synchronizer = sync()
    for stamp in (100, 200, 300):
        add_frame(synchronizer, stamp * MS)
    assert synchronizer.completed == 3
    assert synchronizer.dropped == 2
    stamp, items = synchronizer.take_latest()
    assert stamp == 300 * MS
    assert items["color"] == f"color@{300 * MS}"


def test_a_frame_taken_before_the_next_one_completes_is_not_dropped():
    synchronizer = sync()
    add_frame(synchronizer, 100 * MS)
    synchronizer.take_latest()
    add_frame(synchronizer, 200 * MS)
    synchronizer.take_latest()
    assert synchronizer.dropped == 0
    assert synchronizer.completed == 2


def test_take_latest_clears_the_frame():
    synchronizer = sync()
    add_frame(synchronizer, 100 * MS)
    assert synchronizer.take_latest() is not None
    assert synchronizer.take_latest() is None


def test_take_latest_with_nothing_complete_returns_none():
    assert sync().take_latest() is None


def test_messages_used_by_a_frame_do_not_form_a_second_frame():
    synchronizer = sync()
    add_frame(synchronizer, 100 * MS)
    synchronizer.take_latest()
    assert not synchronizer.add("depth", 100 * MS, "again")
    assert not synchronizer.add("info", 100 * MS, "again")
    assert synchronizer.take_latest() is None


def test_each_topic_buffer_is_bounded_by_the_buffer_size():
    synchronizer = sync(buffer_size=3)
    for stamp in range(10):
        synchronizer.add("color", stamp * 100 * MS, f"c{stamp}")
    assert len(synchronizer._buffers["color"]) == 3
    assert [stamp for stamp, _ in synchronizer._buffers["color"]] == [700 * MS, 800 * MS, 900 * MS]


def test_an_anchor_pushed_out_of_its_bounded_buffer_can_no_longer_be_matched():
    synchronizer = sync(buffer_size=2)
    for stamp in (100, 200, 300):
        synchronizer.add("color", stamp * MS, f"c{stamp}")
    synchronizer.add("depth", 100 * MS, "d")
    assert not synchronizer.add("info", 100 * MS, "i")
    assert synchronizer.add("depth", 300 * MS, "d3") is False
    assert synchronizer.add("info", 300 * MS, "i3") is True


def test_an_older_anchor_completes_when_the_newest_one_is_still_missing_a_topic():
    synchronizer = sync()
    synchronizer.add("color", 100 * MS, "c1")
    synchronizer.add("color", 200 * MS, "c2")
    synchronizer.add("depth", 100 * MS, "d1")
    assert synchronizer.add("info", 100 * MS, "i1")
    assert synchronizer.take_latest()[0] == 100 * MS
    synchronizer.add("depth", 200 * MS, "d2")
    assert synchronizer.add("info", 200 * MS, "i2")  # the newer anchor was kept and completes later
    assert synchronizer.take_latest()[0] == 200 * MS


def test_a_single_topic_completes_a_frame_with_every_message():
    synchronizer = sync(topics=("color",))
    assert synchronizer.add("color", 1, "a")
    assert synchronizer.add("color", 2, "b")
    assert synchronizer.take_latest() == (2, {"color": "b"})
    assert synchronizer.dropped == 1


def test_a_zero_tolerance_pairs_only_identical_stamps():
    synchronizer = sync(tolerance_ns=0, topics=("color", "depth"))
    synchronizer.add("color", 100, "c")
    assert not synchronizer.add("depth", 101, "d")
    assert synchronizer.add("depth", 100, "d")


def test_after_a_clock_reset_each_new_frame_completes_once():
    # Every topic still holds an unmatched message of the old timeline, stamped later than the new clock: the
    # frames of the new timeline must neither pair with them nor complete twice.
    synchronizer = sync()
    for topic in TOPICS[1:]:
        synchronizer.add(topic, 15_000 * MS, f"{topic}@old")
    add_frame(synchronizer, 14_000 * MS)
    synchronizer.take_latest()
    completions = []
    for stamp_ms in (1_000, 1_033, 1_066):
        completions += add_frame(synchronizer, stamp_ms * MS)
        frame = synchronizer.take_latest()
        assert frame is not None and frame[0] == stamp_ms * MS
        assert all(item.endswith(f"@{stamp_ms * MS}") for item in frame[1].values())
    assert completions.count(True) == 3
    assert synchronizer.dropped == 0


def test_the_old_timeline_is_forgotten_so_it_cannot_pair_when_the_new_clock_reaches_its_stamps():
    synchronizer = sync()
    synchronizer.add("depth", 5_000 * MS, "old depth")
    synchronizer.add("info", 5_000 * MS, "old info")
    add_frame(synchronizer, 1_000 * MS, ("color",))  # the clock went back by 4 s
    synchronizer.add("color", 5_000 * MS, "new colour")
    assert synchronizer.take_latest() is None


def test_a_late_message_within_a_second_is_not_a_clock_reset():
    synchronizer = sync()
    synchronizer.add("depth", 100 * MS, "d")
    synchronizer.add("info", 100 * MS, "i")
    synchronizer.add("color", 900 * MS, "newer colour")
    assert synchronizer.add("color", 100 * MS, "late colour")  # 0.8 s late: still pairs with what was buffered
    assert synchronizer.take_latest() == (100 * MS, {"color": "late colour", "depth": "d", "info": "i"})


def test_a_message_used_by_a_frame_is_not_used_again_when_it_arrived_after_a_newer_one():
    synchronizer = sync()
    synchronizer.add("depth", 200 * MS, "depth@200")
    synchronizer.add("depth", 100 * MS, "depth@100")  # late: the buffer is out of stamp order
    add_frame(synchronizer, 100 * MS, ("color", "info"))
    assert synchronizer.take_latest()[1]["depth"] == "depth@100"
    synchronizer.add("color", 105 * MS, "late colour")
    assert not synchronizer.add("info", 105 * MS, "late info")  # depth@100 is spent; depth@200 is out of tolerance


def test_a_colour_image_that_arrived_late_does_not_take_the_newest_one_s_depth():
    # Best-effort reordering: colour@100 arrives before colour@92; the depth fits both, and the newest frame is 100.
    synchronizer = sync(topics=("color", "depth"))
    synchronizer.add("color", 100 * MS, "colour@100")
    synchronizer.add("color", 92 * MS, "colour@92")
    assert synchronizer.add("depth", 99 * MS, "depth@99")
    assert synchronizer.take_latest() == (100 * MS, {"color": "colour@100", "depth": "depth@99"})


def test_an_input_arriving_over_a_second_after_the_others_still_pairs():
    # A slow segmenter: instance images carry the colour image's stamp but arrive 1.2 s later. Only the frames
    # before its first message (judged against the other topics' newest stamp) are lost.
    synchronizer = sync(buffer_size=50, topics=("color", "depth", "info", "instances"))
    period_ns, late_ns = 100 * MS, 1_200 * MS
    arrivals = sorted([(i * period_ns, topic, i * period_ns) for i in range(100)
                       for topic in ("color", "depth", "info")]
                      + [(i * period_ns + late_ns, "instances", i * period_ns) for i in range(100)])
    for _, topic, stamp_ns in arrivals:
        synchronizer.add(topic, stamp_ns, topic)
    assert synchronizer.completed >= 85
