"""When the clock jumped back, and which frame starts a new episode (the live node's rule)."""

from __future__ import annotations

from trusted_scene_graph.clock import (
    JUMP_BACK_NS,
    EpisodeStart,
    EpisodeStarts,
    follow_newest,
    jumped_back,
    seconds_to_ns,
)

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
    # The first frame captured after the request, after the old episode's stamps: no pose stamped before it to drop.
    assert episodes.frame(400 * MS) == EpisodeStart(went_back_from_ns=None)
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
    assert episodes.frame(100 * MS) == EpisodeStart(went_back_from_ns=9_000 * MS)  # the timeline it went back from
    episodes.colour(200 * MS)
    assert not episodes.frame(200 * MS)  # the request was that reset: no second episode a frame later


def test_while_a_reset_is_pending_a_clock_restarted_by_less_than_a_jump_starts_the_episode_at_once():
    # An episode shorter than a jump, then the RL loop's reset call and a simulator clock restarted at 0: the new
    # episode's frames are stamped among the old one's, none after the newest image received before the call.
    episodes = EpisodeStarts()
    for stamp_ms in (0, 200, 400, 600):
        episodes.colour(stamp_ms * MS)
        assert not episodes.frame(stamp_ms * MS)
    episodes.request_reset()
    episodes.colour(0)
    assert episodes.frame(0) == EpisodeStart(went_back_from_ns=600 * MS)
    for stamp_ms in (200, 400, 600, 800):  # once, not again when the new clock passes the old newest stamp
        episodes.colour(stamp_ms * MS)
        assert not episodes.frame(stamp_ms * MS)


def test_a_reset_served_by_a_frame_stamped_as_the_previous_one_starts_the_episode_dropping_no_poses():
    # A simulator that neither steps nor restarts its clock on reset: the reset's own pose has that same stamp, and a
    # restart of the pose histories there would drop it with the old ones.
    episodes = EpisodeStarts()
    for stamp_ms in (0, 200, 400):
        episodes.colour(stamp_ms * MS)
        assert not episodes.frame(stamp_ms * MS)
    episodes.request_reset()
    episodes.colour(400 * MS)
    assert episodes.frame(400 * MS) == EpisodeStart(went_back_from_ns=None)


def test_without_a_reset_request_a_frame_less_than_a_jump_back_continues_the_episode():
    # A frame late by milliseconds, or a clock restart the caller did not announce: only a jump tells them apart.
    episodes = EpisodeStarts()
    for stamp_ms in (0, 200, 400, 600):
        episodes.colour(stamp_ms * MS)
        episodes.frame(stamp_ms * MS)
    episodes.colour(590 * MS)
    assert episodes.frame(590 * MS) is None
    episodes.colour(0)
    assert episodes.frame(0) is None


def test_a_frame_only_late_serves_a_pending_reset_without_saying_the_clock_went_back():
    # Its depth image came last: perception takes it after the frame stamped 2000 ms, whose colour image arrived
    # after its own. The clock did not go back: the pose histories hold one timeline, whose poses must stay.
    episodes = EpisodeStarts()
    for stamp_ms in (1_800, 1_900, 1_995, 2_000):
        episodes.colour(stamp_ms * MS)
    for stamp_ms in (1_800, 1_900, 2_000):
        episodes.frame(stamp_ms * MS)
    episodes.request_reset()
    assert episodes.frame(1_995 * MS) == EpisodeStart(went_back_from_ns=None)
    # A restarted clock's image arrives after the previous frame's; one never heard of counts as that (dropping
    # the poses costs kinematics, which perception stands in for; keeping an old timeline's gives a wrong distance).
    for restarted_colour in (True, False):
        episodes = EpisodeStarts()
        for stamp_ms in (200, 400, 600):
            episodes.colour(stamp_ms * MS)
            episodes.frame(stamp_ms * MS)
        episodes.request_reset()
        if restarted_colour:
            episodes.colour(0)
        assert episodes.frame(0) == EpisodeStart(went_back_from_ns=600 * MS)


def test_a_slow_detector_s_next_frame_after_a_clock_restart_starts_the_episode_though_stamped_later():
    # Perception takes the image stamped 1.0 s, then needs 2 s: the old episode runs on to 3.0 s, the clock restarts
    # at 0, and the next frame it takes is the new episode's 1.2 s, after the previous frame's stamp. With a reset
    # call or without one (a simulator whose clock restarts needs none), that frame starts the episode, once.
    for call in (True, False):
        episodes = EpisodeStarts()
        for stamp_ms in (0, 500, 1_000):
            episodes.colour(stamp_ms * MS)
        assert not episodes.frame(1_000 * MS)
        for stamp_ms in (1_500, 2_000, 2_500, 3_000):
            episodes.colour(stamp_ms * MS)
        if call:
            episodes.request_reset()
        for stamp_ms in (0, 400, 800, 1_200):
            episodes.colour(stamp_ms * MS)
        # The pose histories' old timeline reached 3.0 s: poses that went back to at or before it are the new one's.
        assert episodes.frame(1_200 * MS) == EpisodeStart(went_back_from_ns=3_000 * MS)
        for stamp_ms in (3_200, 5_200):  # no second start, neither from a pending call nor from the same jump
            episodes.colour(stamp_ms * MS)
            assert not episodes.frame(stamp_ms * MS)


def test_a_colour_jump_after_the_frame_s_own_image_is_judged_at_the_frame_after_it():
    episodes = EpisodeStarts()
    for stamp_ms in (2_000, 2_100):
        episodes.colour(stamp_ms * MS)
    assert not episodes.frame(2_000 * MS)
    episodes.colour(0)  # the clock restarted after the image of the frame perception takes next
    assert not episodes.frame(2_100 * MS)  # still the old timeline's
    episodes.colour(100 * MS)
    assert episodes.frame(100 * MS) == EpisodeStart(went_back_from_ns=2_100 * MS)


def test_seconds_become_the_nearest_nanosecond_not_the_one_below():
    assert int(1.001 * 1e9) == 1_000_999_999  # why: truncation put a stamp exactly at a limit outside it
    assert [seconds_to_ns(s) for s in (1.001, 0.0157, 0.01, 0.0, 2.5)] == [1_001_000_000, 15_700_000, 10_000_000, 0,
                                                                          2_500_000_000]
