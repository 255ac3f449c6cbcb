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
    more_unknown_instance_ids_warning,
    sim_label_details,
    unknown_instance_id_warning,
)

COLOR, DEPTH, INFO = "/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info"


def running_stats(until_s: float, stop_color_s: float = float("inf"), stop_all_s: float = float("inf")) -> FrameStats:
    """A node activated at 0 s getting colour, depth and camera_info every 0.1 s (colour until ``stop_color_s``,
    everything until ``stop_all_s``), each complete frame processed at once."""
    stats = FrameStats()
    stats.expect_topics([COLOR, DEPTH, INFO], now_s=0.0)
    for tick in range(1, round(until_s * 10) + 1):
        now_s = tick / 10
        if now_s > stop_all_s:
            break
        for topic in (COLOR, DEPTH, INFO):
            if topic != COLOR or now_s <= stop_color_s:
                stats.record_message(topic, now_s)
        if now_s <= stop_color_s:
            stats.completed += 1
            stats.last_completed_s = now_s
            stats.record_success(10.0, now_s)
    return stats


def test_a_node_that_has_processed_nothing_yet_warns_that_it_is_waiting():
    level, message, values = health(FrameStats())
    assert level == WARN and message.startswith("waiting for a synchronised frame")
    assert values["frames_processed"] == "0"


def test_after_a_good_frame_the_node_is_ok_and_counts_it():
    stats = FrameStats(completed=3, dropped=1)
    stats.record_success(12.34, now_s=1.0)
    level, message, values = health(stats)
    assert (level, message) == (OK, "1 frames processed, 1 dropped, 0 failed")
    assert values["last_process_ms"] == "12.3"


def test_a_skipped_last_frame_is_an_error_that_quotes_the_reason_until_a_good_frame_follows():
    stats = FrameStats()
    stats.record_failure("depth image has no valid pixel", now_s=1.0)
    assert health(stats)[:2] == (ERROR, "last frame skipped: depth image has no valid pixel")
    stats.record_success(5.0, now_s=2.0)
    level, _, values = health(stats)
    assert level == OK and values["frames_failed"] == "1" and values["last_error"] == "depth image has no valid pixel"


def test_a_node_whose_frames_keep_coming_is_ok_at_any_time():
    stats = running_stats(until_s=30.0)
    level, message, values = health(stats, now_s=30.05, max_frame_age_s=1.0)
    assert (level, message) == (OK, "300 frames processed, 0 dropped, 0 failed")
    assert values["last_frame_age_s"] == "0.1"  # 0.05 s, rounded half to even
    assert values["last_message_age_s"] == f"{COLOR} 0.1, {DEPTH} 0.1, {INFO} 0.1"


def test_when_colour_stops_but_depth_goes_on_the_node_warns_naming_the_silent_and_the_living_inputs():
    stats = running_stats(until_s=20.0, stop_color_s=10.0)
    assert health(stats, now_s=10.5, max_frame_age_s=1.0)[0] == OK  # a gap shorter than the graph's useful age
    level, message, values = health(stats, now_s=20.2, max_frame_age_s=1.0)
    assert (level, message) == (WARN, f"no frame processed for 10.2 s; no message on {COLOR} for 10.2 s ({DEPTH}, "
                                      f"{INFO} still arriving)")
    assert values["last_frame_age_s"] == "10.2" and values["frames_processed"] == "100"
    assert values["last_message_age_s"] == f"{COLOR} 10.2, {DEPTH} 0.2, {INFO} 0.2"


def test_when_every_input_stops_the_node_warns_naming_them_all():
    stats = running_stats(until_s=5.0, stop_all_s=5.0)
    level, message, _ = health(stats, now_s=17.0, max_frame_age_s=1.0)
    assert (level, message) == (WARN, f"no frame processed for 12.0 s; no message on {COLOR} for 12.0 s, {DEPTH} "
                                      f"for 12.0 s, {INFO} for 12.0 s")


def test_inputs_that_all_arrive_without_frames_being_processed_point_at_sync_or_perception():
    stats = running_stats(until_s=5.0, stop_color_s=5.0)
    for topic in (COLOR, DEPTH, INFO):
        stats.record_message(topic, now_s=7.9)
    assert health(stats, now_s=8.0, max_frame_age_s=1.0)[1] == (
        "no frame processed for 3.0 s; every input still arriving (stamps more than sync.tolerance_s apart, or "
        "perception busy)")


def test_a_failed_last_frame_stays_an_error_and_says_since_when_nothing_came():
    stats = running_stats(until_s=2.0, stop_all_s=2.0)
    stats.record_failure("depth image has no valid pixel", now_s=2.0)
    assert health(stats, now_s=2.5, max_frame_age_s=1.0)[:2] == (ERROR,
                                                                  "last frame skipped: depth image has no valid pixel")
    assert health(stats, now_s=5.0, max_frame_age_s=1.0)[:2] == (ERROR, (
        f"last frame skipped: depth image has no valid pixel; no frame since, for 3.0 s; no message on {COLOR} for "
        f"3.0 s, {DEPTH} for 3.0 s, {INFO} for 3.0 s"))


def test_before_the_first_frame_the_silence_counts_from_the_activation():
    stats = FrameStats()
    stats.expect_topics([COLOR, DEPTH], now_s=100.0)
    level, message, values = health(stats, now_s=100.5, max_frame_age_s=1.0)
    assert level == WARN and message.endswith(f"; nothing received on {COLOR}, {DEPTH}")
    stats.record_message(DEPTH, now_s=104.0)
    level, message, values = health(stats, now_s=104.5, max_frame_age_s=1.0)
    assert (level, message) == (WARN, "waiting for a synchronised frame (colour, depth if used, camera_info) for "
                                      f"4.5 s; no message on {COLOR} for 4.5 s ({DEPTH} still arriving)")
    assert values["last_frame_age_s"] == "none" and values["last_message_age_s"] == f"{COLOR} none, {DEPTH} 0.5"


def test_a_reactivated_node_counts_the_silence_from_its_activation_not_its_last_frame_before():
    stats = running_stats(until_s=1.0)
    stats.expect_topics([COLOR, DEPTH, INFO], now_s=50.0)  # deactivated at 1 s, activated again at 50 s
    assert health(stats, now_s=50.5, max_frame_age_s=1.0)[0] == OK
    assert health(stats, now_s=52.0, max_frame_age_s=1.0)[1].startswith("no frame processed for 2.0 s")


def test_details_such_as_the_fitted_support_plane_are_appended_to_the_counters():
    _, _, values = health(FrameStats(), {"graph_frame_source": "plane_fit", "camera_height_m": "0.812"})
    assert list(values)[-2:] == ["graph_frame_source", "camera_height_m"]
    assert values["camera_height_m"] == "0.812"


def test_while_waiting_the_message_names_the_inputs_nothing_arrived_on():
    stats = FrameStats()
    stats.expect_topics([COLOR, DEPTH], now_s=0.0)
    stats.record_message(COLOR, now_s=1.0)
    level, message, values = health(stats)
    assert level == WARN and message.endswith(f"; nothing received on {DEPTH}")
    assert values["messages_received"] == f"{COLOR} 1, {DEPTH} 0"


def test_before_the_inputs_are_known_the_message_counts_are_none():
    assert health(FrameStats())[2]["messages_received"] == "none"


def test_the_unknown_instance_id_warning_names_the_id_the_topic_and_the_config_that_has_it():
    assert unknown_instance_id_warning(12, "/camera/instances/image_raw") == (
        "instance id 12 in /camera/instances/image_raw is not in detector.sim_labels; it is ignored "
        "(config/benchmark.yaml lists every recorded label)")


def test_beyond_the_ids_warned_about_one_by_one_a_single_warning_gives_their_count():
    assert more_unknown_instance_ids_warning(21, "/camera/instances/image_raw") == (
        "21 instance ids in /camera/instances/image_raw are not in detector.sim_labels; further ones are not logged "
        "(/diagnostics counts them)")


def test_the_sim_label_diagnostics_count_the_ids_beyond_those_listed():
    assert sim_label_details({7, 3}, count=2999) == {"instance_ids_not_in_sim_labels": "3, 7, ... (2997 more)",
                                                     "instance_ids_not_in_sim_labels_count": "2999"}


def test_the_sim_label_diagnostics_list_the_unknown_ids_in_order_or_none():
    assert sim_label_details(frozenset()) == {"instance_ids_not_in_sim_labels": "none",
                                              "instance_ids_not_in_sim_labels_count": "0"}
    assert sim_label_details({12, 4}) == {"instance_ids_not_in_sim_labels": "4, 12",
                                          "instance_ids_not_in_sim_labels_count": "2"}


def test_the_graph_text_counts_the_objects_and_lists_each_label_once():
    assert graph_text(None) == "no graph yet"
    assert graph_text([]) == "last graph: 0 objects"
    assert graph_text(["table"]) == "last graph: 1 object (table)"
    assert graph_text(["cup", "table", "cup"]) == "last graph: 3 objects (cup, table)"
    many = graph_text([f"label{i:02d}" for i in range(12)])
    assert many.endswith("label09, ... (2 more labels))") and "label10" not in many


def test_the_progress_log_reports_waiting_then_arrivals_then_once_that_they_stopped():
    log, stats = ProgressLog(), FrameStats()
    stats.expect_topics([COLOR, DEPTH], now_s=0.0)
    assert log.line(stats, None) == ("no synchronised frame yet (one message of each input within sync.tolerance_s); "
                                     f"messages received: {COLOR} 0, {DEPTH} 0")
    assert log.line(stats, None) is None  # still nothing: no repeat
    stats.record_message(COLOR, now_s=1.0)
    assert log.line(stats, None).endswith(f"messages received: {COLOR} 1, {DEPTH} 0")
    stats.record_message(DEPTH, now_s=1.0)
    stats.completed = 1
    stats.record_success(3.0, now_s=1.0)
    assert log.line(stats, ["table"]) == ("1 frame received, 1 processed, 0 failed, 0 dropped; last graph: 1 object "
                                          "(table) (+1 frame since the last report)")
    for _ in range(4):
        stats.record_message(COLOR, now_s=1.0)
        stats.record_message(DEPTH, now_s=1.0)
    stats.completed = 5
    stats.record_failure("depth image has no valid pixel", now_s=1.0)
    assert log.line(stats, ["table"]).endswith("0 dropped; last graph: 1 object (table) (+4 frames since the last "
                                               "report)")
    assert log.line(stats, ["table"]) == ("no new message since the last report; 5 frames received, 1 processed, "
                                          "1 failed, 0 dropped; last graph: 1 object (table)")
    assert log.line(stats, ["table"]) is None
    stats.record_message(COLOR, now_s=1.0)
    assert log.line(stats, ["table"]).endswith("(+0 frames since the last report)")


def test_the_progress_line_says_since_when_no_frame_completed_and_which_inputs_stopped():
    log, stats = ProgressLog(), running_stats(until_s=20.0, stop_color_s=10.0)
    assert log.line(stats, ["table"], now_s=20.0, max_silence_s=1.0) == (
        "100 frames received, 100 processed, 0 failed, 0 dropped; last graph: 1 object (table) (+100 frames since the "
        f"last report); no frame completed in 10.0 s; no message on {COLOR} for 10.0 s ({DEPTH}, {INFO} still "
        "arriving)")
    for topic in (DEPTH, INFO):
        stats.record_message(topic, now_s=25.0)
    assert log.line(stats, ["table"], now_s=30.0, max_silence_s=1.0).endswith(
        f"(+0 frames since the last report); no frame completed in 20.0 s; no message on {COLOR} for 20.0 s, {DEPTH} "
        f"for 5.0 s, {INFO} for 5.0 s")
    assert log.line(stats, ["table"], now_s=40.0, max_silence_s=1.0).startswith("no new message since the last report")


def test_the_progress_line_of_a_node_whose_frames_keep_coming_names_no_stop():
    log = ProgressLog()
    assert log.line(running_stats(until_s=20.0), None, now_s=20.05, max_silence_s=1.0).endswith(
        "(+200 frames since the last report)")


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


def test_digits_inside_a_name_are_part_of_the_name_not_a_number_of_the_message():
    throttle = LogThrottle()
    logged = [throttle.should_log(message, 0.0, interval_s=2.0) for message in (
        "no message on /camera1/color for 3.2 s",
        "no message on /camera2/color for 3.2 s",  # another camera: another kind
        "no message on /camera1/color for 5.7 s",  # the same camera, another duration: the same kind
        "unsupported image encoding 'yuv422'",
        "unsupported image encoding 'nv12'",  # another encoding: another kind
        "camera size 0x480 is empty",
        "camera size 640x0 is empty",  # both sides of a size are numbers: the same kind
    )]
    assert logged == [True, True, False, True, True, True, False]


def test_the_kinds_remembered_are_bounded_by_forgetting_the_least_recently_logged():
    throttle = LogThrottle(max_kinds=2)
    assert throttle.should_log("a", 0.0, 10.0) and throttle.should_log("b", 1.0, 10.0)
    assert throttle.should_log("c", 2.0, 10.0)  # forgets "a"
    assert throttle.should_log("a", 3.0, 10.0) and not throttle.should_log("c", 3.0, 10.0)
