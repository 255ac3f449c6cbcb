"""The health summary a node publishes on /diagnostics, from its frame counters."""

from trusted_scene_graph.pipeline.health import (
    ERROR,
    OK,
    WARN,
    FrameStats,
    LogThrottle,
    ProgressLog,
    graph_text,
    health,
    sim_label_details,
    unknown_instance_id_warning,
)

COLOR, DEPTH = "/camera/color/image_raw", "/camera/depth/image_raw"


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


def test_while_waiting_the_message_names_the_inputs_nothing_arrived_on():
    stats = FrameStats()
    stats.expect_topics([COLOR, DEPTH])
    stats.record_message(COLOR)
    level, message, values = health(stats)
    assert level == WARN and message.endswith(f"; nothing received on {DEPTH}")
    assert values["messages_received"] == f"{COLOR} 1, {DEPTH} 0"


def test_before_the_inputs_are_known_the_message_counts_are_none():
    assert health(FrameStats())[2]["messages_received"] == "none"


def test_the_unknown_instance_id_warning_names_the_id_the_topic_and_the_config_that_has_it():
    assert unknown_instance_id_warning(12, "/camera/instances/image_raw") == (
        "instance id 12 in /camera/instances/image_raw is not in detector.sim_labels; it is ignored "
        "(config/benchmark.yaml lists every recorded label)")


def test_the_sim_label_diagnostics_list_the_unknown_ids_in_order_or_none():
    assert sim_label_details(frozenset()) == {"instance_ids_not_in_sim_labels": "none"}
    assert sim_label_details({12, 4}) == {"instance_ids_not_in_sim_labels": "4, 12"}


def test_the_graph_text_counts_the_objects_and_lists_each_label_once():
    assert graph_text(None) == "no graph yet"
    assert graph_text([]) == "last graph: 0 objects"
    assert graph_text(["table"]) == "last graph: 1 object (table)"
    assert graph_text(["cup", "table", "cup"]) == "last graph: 3 objects (cup, table)"
    many = graph_text([f"label{i:02d}" for i in range(12)])
    assert many.endswith("label09, ... (2 more labels))") and "label10" not in many


def test_the_progress_log_reports_waiting_then_arrivals_then_once_that_they_stopped():
    log, stats = ProgressLog(), FrameStats()
    stats.expect_topics([COLOR, DEPTH])
    assert log.line(stats, None) == ("no synchronised frame yet (one message of each input within sync.tolerance_s); "
                                     f"messages received: {COLOR} 0, {DEPTH} 0")
    assert log.line(stats, None) is None  # still nothing: no repeat
    stats.record_message(COLOR)
    assert log.line(stats, None).endswith(f"messages received: {COLOR} 1, {DEPTH} 0")
    stats.record_message(DEPTH)
    stats.completed = 1
    stats.record_success(3.0)
    assert log.line(stats, ["table"]) == ("1 frame received, 1 processed, 0 failed, 0 dropped; last graph: 1 object "
                                          "(table) (+1 frame since the last report)")
    for _ in range(4):
        stats.record_message(COLOR)
        stats.record_message(DEPTH)
    stats.completed = 5
    stats.record_failure("depth image has no valid pixel")
    assert log.line(stats, ["table"]).endswith("0 dropped; last graph: 1 object (table) (+4 frames since the last "
                                               "report)")
    assert log.line(stats, ["table"]) == ("no new message since the last report; 5 frames received, 1 processed, "
                                          "1 failed, 0 dropped; last graph: 1 object (table)")
    assert log.line(stats, ["table"]) is None
    stats.record_message(COLOR)
    assert log.line(stats, ["table"]).endswith("(+0 frames since the last report)")


def test_each_kind_of_error_is_logged_the_first_time_and_then_at_most_once_per_interval():
    throttle = LogThrottle()
    logged = [throttle.should_log(message, now_s, interval_s=2.0) for message, now_s in (
        ("depth image has no valid pixel", 0.0),
        ("unsupported image encoding 'yuv422'", 0.1),  # another kind: not hidden by the first
        ("depth image has no valid pixel", 0.5),
        ("camera size 0x0 is empty", 0.6),
        ("camera size 640x0 is empty", 0.7),  # differs only in its numbers: the same kind
        ("depth image has no valid pixel", 2.0),
    )]
    assert logged == [True, True, False, True, False, True]


def test_the_kinds_remembered_are_bounded_by_forgetting_the_least_recently_logged():
    throttle = LogThrottle(max_kinds=2)
    assert throttle.should_log("a", 0.0, 10.0) and throttle.should_log("b", 1.0, 10.0)
    assert throttle.should_log("c", 2.0, 10.0)  # forgets "a"
    assert throttle.should_log("a", 3.0, 10.0) and not throttle.should_log("c", 3.0, 10.0)
