"""The health summary a node publishes on /diagnostics, from its frame counters."""

from trusted_scene_graph.pipeline.health import ERROR, OK, WARN, FrameStats, health


def test_a_node_that_has_processed_nothing_yet_warns_that_it_is_waiting():
    level, message, values = health(FrameStats())
    assert level == WARN and message.startswith("waiting for a synchronised frame")
    assert values["frames_processed"] == "0"


def test_after_a_good_frame_the_node_is_ok_and_counts_it():
    stats = FrameStats(completed=3, dropped=1)
    stats.record_success(12.34)
    level, message, values = health(stats)
    assert (level, message) == (OK, "1 frames processed, 1 dropped, 0 failed")
    assert values["last_process_ms"] == "12.3"


def test_a_skipped_last_frame_is_an_error_that_quotes_the_reason_until_a_good_frame_follows():
    stats = FrameStats()
    stats.record_failure("depth image has no valid pixel")
    assert health(stats)[:2] == (ERROR, "last frame skipped: depth image has no valid pixel")
    stats.record_success(5.0)
    level, _, values = health(stats)
    assert level == OK and values["frames_failed"] == "1" and values["last_error"] == "depth image has no valid pixel"


def test_details_such_as_the_fitted_support_plane_are_appended_to_the_counters():
    _, _, values = health(FrameStats(), {"graph_frame_source": "plane_fit", "camera_height_m": "0.812"})
    assert list(values)[-2:] == ["graph_frame_source", "camera_height_m"]
    assert values["camera_height_m"] == "0.812"
