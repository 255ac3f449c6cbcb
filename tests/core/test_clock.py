"""When the clock jumped back, and which frame starts a new episode (the live node's rule)."""

from __future__ import annotations

from trusted_scene_graph.clock import JUMP_BACK_NS, EpisodeStarts, follow_newest, jumped_back

MS = 1_000_000


def test_a_jump_back_is_more_than_a_second_behind_the_newest():
    assert not jumped_back(5_000 * MS, None)
    assert not jumped_back(5_000 * MS - JUMP_BACK_NS, 5_000 * MS)  # a second late: still this timeline
    assert jumped_back(5_000 * MS - JUMP_BACK_NS - 1, 5_000 * MS)


def test_a_streams_newest_stamp_keeps_the_newest_through_late_messages_and_restarts_at_a_jump():
    assert follow_newest(5_000 * MS, None) == (5_000 * MS, False)
    assert follow_newest(4_500 * MS, 5_000 * MS) == (5_000 * MS, False)  # late, same timeline
    assert follow_newest(5_100 * MS, 5_000 * MS) == (5_100 * MS, False)
    assert follow_newest(100 * MS, 5_000 * MS) == (100 * MS, True)  # a reset: the new timeline's first


def test_frames_captured_before_a_reset_request_stay_in_the_episode_that_ended():
    episodes = EpisodeStarts()
    for stamp_ms in (100, 200, 300):
        episodes.colour(stamp_ms * MS)
    assert not episodes.frame(100 * MS)
    episodes.request_reset()  # the environment reset after the image stamped 300 ms was captured
    assert not episodes.frame(300 * MS)  # a busy perception takes it only now: still the old episode
    episodes.colour(400 * MS)
    assert episodes.frame(400 * MS)  # the first frame captured after the request
    assert not episodes.frame(500 * MS)  # once


def test_a_request_before_any_image_starts_the_episode_at_the_first_frame():
    episodes = EpisodeStarts()
    episodes.request_reset()
    episodes.colour(100 * MS)
    assert episodes.frame(100 * MS)


def test_a_jump_back_starts_an_episode_and_serves_a_pending_request():
    episodes = EpisodeStarts()
    episodes.colour(9_000 * MS)
    assert not episodes.frame(9_000 * MS)
    episodes.request_reset()
    episodes.colour(100 * MS)  # the simulator's clock restarted
    assert episodes.newest_colour_ns == 100 * MS
    assert episodes.frame(100 * MS)
    episodes.colour(200 * MS)
    assert not episodes.frame(200 * MS)  # the request was that reset: no second episode a frame later
