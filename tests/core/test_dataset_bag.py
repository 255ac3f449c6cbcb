"""Bags written by ``BagWriter`` read back with our reader, the plain ``rosbags`` reader and the ``mcap`` library.

Also: the reader's tolerance to bad input (unknown types, a truncated file) and QoS metadata round trips.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from trusted_scene_graph.dataset import BagReader, BagWriter, DatasetError, QosSpec, make_typestore
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.dataset.bag import LATCHED_QOS, SENSOR_QOS
from trusted_scene_graph.dataset.typestore import deserialize
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.pipeline.messages import frame_from_msgs

STAMP_NS = 1_767_225_600_123_456_789
INTRINSICS = Intrinsics(8, 6, 10.0, 10.0, 3.5, 2.5)


def _write_sample_bag(path: Path, storage: str) -> dict[str, object]:
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    depth_m = np.full((6, 8), 1.25, dtype=np.float32)
    depth_m[0, 0] = np.nan
    truth = bag_msgs.ground_truth(
        STAMP_NS, "world", "tabletop", 3, 7,
        [bag_msgs.ground_truth_object(1, "red cube", 10, (0.1, 0.2, 0.8), (0, 0, 0, 1), (0.05, 0.05, 0.05), 0.75)],
        gripper_m=(0.5, 0.0, 1.0), goal_m=None, env_reward=-0.25, is_success=True)
    with BagWriter(path, storage) as bag:
        bag.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
        bag.add_topic("/camera/depth/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
        bag.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR_QOS)
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED_QOS)
        bag.add_topic("/ground_truth", bag_msgs.GROUND_TRUTH_TYPE)
        bag.write("/tf_static", bag_msgs.tf_message(STAMP_NS, "world", "camera", RigidTransform.from_xyzw(
            [1, 2, 3], [0, 0, 0, 1])), STAMP_NS)
        bag.write("/camera/color/image_raw", bag_msgs.image(rgb, "rgb8", STAMP_NS, "camera"), STAMP_NS)
        bag.write("/camera/depth/image_raw", bag_msgs.image(depth_m, "32FC1", STAMP_NS, "camera"), STAMP_NS)
        bag.write("/camera/color/camera_info", bag_msgs.camera_info(INTRINSICS, STAMP_NS, "camera"), STAMP_NS)
        bag.write("/ground_truth", truth, STAMP_NS)
    return {"rgb": rgb, "depth_m": depth_m}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_written_bag_reads_back_into_the_same_camera_frame_and_ground_truth(tmp_path: Path, storage: str) -> None:
    written = _write_sample_bag(tmp_path / "bag", storage)
    with BagReader(tmp_path / "bag") as reader:
        assert reader.message_count == 5
        by_topic = {m.topic: m for m in reader.messages()}
    assert reader.read_error is None
    frame = frame_from_msgs(by_topic["/camera/color/image_raw"].msg, by_topic["/camera/depth/image_raw"].msg,
                            by_topic["/camera/color/camera_info"].msg)
    assert frame.stamp_ns == STAMP_NS
    np.testing.assert_array_equal(frame.rgb, written["rgb"])
    np.testing.assert_array_equal(frame.depth_m, written["depth_m"])  # NaN stays NaN
    assert frame.intrinsics == INTRINSICS
    truth = by_topic["/ground_truth"].msg
    assert (truth.task, truth.episode, truth.step, truth.is_success, truth.has_goal) == ("tabletop", 3, 7, True, False)
    assert truth.objects[0].label == "red cube" and truth.objects[0].instance_id == 10
    assert truth.objects[0].visible_fraction == pytest.approx(0.75)
    assert by_topic["/ground_truth"].log_time_ns == STAMP_NS


def test_an_instance_image_that_is_not_integer_ids_is_refused_with_the_accepted_encodings() -> None:
    from trusted_scene_graph.image.decode import ImageError
    from trusted_scene_graph.pipeline.messages import instances_from_msg

    colour = bag_msgs.image(np.zeros((6, 8, 3), dtype=np.uint8), "rgb8", STAMP_NS, "camera")
    with pytest.raises(ImageError, match=r"encoding 'rgb8' is not an integer id image \(16UC1, mono16, mono8, 8UC1\)"):
        instances_from_msg(colour)


def test_the_plain_rosbags_reader_sees_topics_types_and_offered_qos(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "sqlite3")
    with Reader(tmp_path / "bag") as reader:
        connections = {c.topic: c for c in reader.connections}
        tf_qos = connections["/tf_static"].ext.offered_qos_profiles[0]
        camera_qos = connections["/camera/color/image_raw"].ext.offered_qos_profiles[0]
        store = get_typestore(Stores.ROS2_KILTED)
        for connection, _, raw in reader.messages(connections=[connections["/camera/color/camera_info"]]):
            info = store.deserialize_cdr(raw, connection.msgtype)
    assert connections["/ground_truth"].msgtype == "trusted_scene_graph_msgs/msg/GroundTruth"
    assert (tf_qos.durability, tf_qos.reliability) == (QosDurability.TRANSIENT_LOCAL, QosReliability.RELIABLE)
    assert camera_qos.reliability == QosReliability.BEST_EFFORT
    assert list(info.k) == INTRINSICS.k


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_deserialize_decodes_as_rosbags_does_with_an_image_viewing_the_recorded_bytes(tmp_path: Path,
                                                                                     storage: str) -> None:
    _write_sample_bag(tmp_path / "bag", storage)
    store = make_typestore()
    depth_images = 0
    with Reader(tmp_path / "bag") as reader:
        for connection, _, raw in reader.messages():
            ours, theirs = deserialize(store, raw, connection.msgtype), store.deserialize_cdr(raw, connection.msgtype)
            assert store.serialize_cdr(ours, connection.msgtype) == store.serialize_cdr(theirs, connection.msgtype)
            if connection.topic == "/camera/depth/image_raw":
                assert np.shares_memory(ours.data, np.frombuffer(raw, np.uint8))  # no copy of the recorded message
                assert not np.shares_memory(theirs.data, np.frombuffer(raw, np.uint8))  # rosbags' rawdata[4:] copies
                assert not ours.data.flags.writeable
                depth_images += 1
    assert depth_images == 1


def test_the_mcap_library_decodes_every_message_including_our_ground_truth(tmp_path: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        decoded = {channel.topic: msg for _, channel, _, msg in reader.iter_decoded_messages()}
    assert set(decoded) == {"/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info",
                            "/tf_static", "/ground_truth"}
    truth = decoded["/ground_truth"]
    assert truth.objects[0].label == "red cube"
    assert truth.gripper_position.x == pytest.approx(0.5)
    assert math.isclose(truth.env_reward, -0.25)
    assert decoded["/camera/color/image_raw"].encoding == "rgb8"
    assert decoded["/tf_static"].transforms[0].transform.translation.z == pytest.approx(3.0)


def test_a_single_mcap_file_opens_like_the_bag_directory(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    with BagReader(mcap_file) as reader:
        assert sum(1 for _ in reader.messages(["/ground_truth"])) == 1


@pytest.mark.parametrize("kept_fraction", [0.5, 0.8, 0.97])
def test_a_truncated_mcap_bag_yields_the_messages_before_the_cut_and_reports_it(tmp_path: Path,
                                                                                 kept_fraction: float) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    data = mcap_file.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * kept_fraction)])  # a recorder killed before writing the file's end
    with BagReader(cut) as reader:
        read = [m.topic for m in reader.messages()]
    assert reader.read_error is not None and "cut.mcap" in reader.read_error
    assert read == ["/tf_static", "/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info",
                    "/ground_truth"][: len(read)]  # in order, none lost before the cut
    assert kept_fraction < 0.9 or len(read) == 5


def test_a_truncated_sqlite3_bag_is_refused_by_name(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "sqlite3")
    (database,) = (tmp_path / "bag").glob("*.db3")
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cannot open bag .*bag: .*malformed"):
        BagReader(tmp_path / "bag")


def _write_depth_bag(path: Path, storage: str, frames: int = 200) -> None:
    with BagWriter(path, storage) as bag:
        bag.add_topic("/camera/depth/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
        for i in range(frames):
            depth_m = np.full((32, 32), 1.0 + i, np.float32)
            bag.write("/camera/depth/image_raw", bag_msgs.image(depth_m, "32FC1", 1000 + i, "camera"), 1000 + i)


def test_an_mcap_bag_garbled_in_the_middle_is_read_up_to_the_damage_not_a_crash(tmp_path: Path) -> None:
    # rosbags reads a garbled record length as a size too large for C and raises OverflowError.
    _write_depth_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    data = mcap_file.read_bytes()
    middle = len(data) // 2
    mcap_file.write_bytes(data[:middle] + b"\xff" * 8192 + data[middle + 8192:])
    with BagReader(tmp_path / "bag") as reader:
        read = sum(1 for _ in reader.messages())
    assert read < 200
    assert reader.read_error.startswith(f"bag {tmp_path / 'bag'} is damaged: reading stopped after ")
    assert "(OverflowError: " in reader.read_error


def _write_mcap_with_chunk_crcs(path: Path, frames: int) -> None:
    """Depth frames 1.0 + i m written as ROS 2's recorder writes mcap (the mcap library, chunk CRCs on, no compression);
    rosbags' own writer leaves chunk CRCs 0 (none to check)."""
    from mcap.writer import CompressionType, Writer

    store = make_typestore()
    msgtype = "sensor_msgs/msg/Image"
    path.mkdir()
    with (path / "depth.mcap").open("wb") as stream:
        writer = Writer(stream, chunk_size=512 * 1024, compression=CompressionType.NONE)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(msgtype, "ros2msg", b"")
        channel = writer.register_channel("/camera/depth/image_raw", "cdr", schema)
        for i in range(frames):
            depth_m = np.full((200, 200), 1.0 + i, np.float32)  # 160 kB a frame: several chunks
            raw = store.serialize_cdr(bag_msgs.image(depth_m, "32FC1", 1000 + i, "camera"), msgtype)
            writer.add_message(channel, 1000 + i, bytes(raw), 1000 + i)
        writer.finish()


def test_a_cut_short_mcap_bag_with_a_chunk_damaged_inside_stops_before_that_chunk_not_after_garbled_bytes(
        tmp_path: Path) -> None:
    # One flipped byte in frame 21's depth values leaves every record readable: only the chunk's CRC tells. The file
    # is cut short too, so it is read front to back (the salvage path of tsg eval, tsg label and tsg replay).
    _write_mcap_with_chunk_crcs(tmp_path / "bag", 40)
    mcap_file = tmp_path / "bag" / "depth.mcap"
    data = bytearray(mcap_file.read_bytes())
    data[data.find(np.full(4, 22.0, np.float32).tobytes()) + 1000] ^= 0x40
    mcap_file.write_bytes(bytes(data[: len(data) * 9 // 10]))
    with BagReader(tmp_path / "bag") as reader:
        frames = [np.frombuffer(m.msg.data, np.float32) for m in reader.messages()]
    assert 0 < len(frames) < 21  # the whole chunks before the damaged one
    assert all((depth_m == 1.0 + i).all() for i, depth_m in enumerate(frames))  # none garbled
    assert "CRC" in reader.read_error


def test_a_sqlite3_bag_whose_database_is_malformed_midway_is_read_up_to_the_damage(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    # rosbags' sqlite3 storage reads through apsw, whose errors are not sqlite3's.
    import apsw

    _write_depth_bag(tmp_path / "bag", "sqlite3", frames=5)
    messages = Reader.messages

    def malformed_after_two(self, *args, **kwargs):
        iterator = messages(self, *args, **kwargs)
        yield next(iterator)
        yield next(iterator)
        raise apsw.CorruptError("database disk image is malformed")

    monkeypatch.setattr(Reader, "messages", malformed_after_two)
    with BagReader(tmp_path / "bag") as reader:
        read = sum(1 for _ in reader.messages())
    assert read == 2
    assert reader.read_error.endswith("reading stopped after 2 messages (CorruptError: database disk image is "
                                      "malformed); frames after the damage are missing")


def test_a_file_that_is_no_bag_at_all_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "garbage.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(DatasetError, match="cannot open bag .*garbage.mcap"):
        BagReader(tmp_path / "garbage.mcap")


def test_messages_of_types_the_typestore_does_not_know_are_skipped_and_counted(tmp_path: Path) -> None:
    store = make_typestore()
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    foreign = get_types_from_msg("int32 value", "vendor_msgs/msg/Secret")
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        private = get_typestore(Stores.EMPTY)
        private.register(foreign)
        secret = writer.add_connection("/secret", "vendor_msgs/msg/Secret", typestore=private)
        header = writer.add_connection("/text", "std_msgs/msg/String", typestore=store)
        for k in range(3):
            writer.write(secret, k, private.serialize_cdr(private.types["vendor_msgs/msg/Secret"](value=k),
                                                          "vendor_msgs/msg/Secret"))
        writer.write(header, 5, store.serialize_cdr(store.types["std_msgs/msg/String"](data="kept"),
                                                    "std_msgs/msg/String"))
    with BagReader(tmp_path / "bag") as reader:
        read = list(reader.messages())
    assert [m.msg.data for m in read] == ["kept"]
    assert reader.skipped_types == {"vendor_msgs/msg/Secret": 3}


def test_bad_paths_storages_and_topics_are_refused_with_the_value_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        BagReader(tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown bag storage 'rosbag1'"):
        BagWriter(tmp_path / "new", "rosbag1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        BagWriter(tmp_path / "exists")
    with BagWriter(tmp_path / "bag") as bag:
        with pytest.raises(DatasetError, match="unknown message type 'nope/msg/Nope'"):
            bag.add_topic("/x", "nope/msg/Nope")
        with pytest.raises(DatasetError, match="topic '/y' was not added"):
            bag.write("/y", None, 0)
    with pytest.raises(DatasetError, match="QoS reliability 'sometimes'"):
        QosSpec(reliability="sometimes")


def test_a_complete_mcap_file_without_metadata_yaml_reads_without_an_error(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    alone = tmp_path / "alone"  # the mcap file copied on its own into a directory, as people share bags
    alone.mkdir()
    (alone / mcap_file.name).write_bytes(mcap_file.read_bytes())
    for path in (mcap_file, alone):
        with BagReader(path) as reader:
            topics = [m.topic for m in reader.messages()]
            assert reader.message_counts["/ground_truth"] == 1 and sum(reader.message_counts.values()) == 5
        assert reader.read_error is None, path
        assert len(topics) == 5


def test_the_salvage_reader_reports_an_error_only_for_a_file_without_its_end(tmp_path: Path, monkeypatch) -> None:
    from rosbags.rosbag2 import ReaderError

    from trusted_scene_graph.dataset import bag as bag_module

    def refuse(path: Path) -> None:
        raise ReaderError(f"cannot index {path}")  # as rosbags refuses an mcap file it cannot index

    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])
    monkeypatch.setattr(bag_module, "Reader", refuse)
    with BagReader(mcap_file) as whole:
        assert whole.read_error is None
        assert whole.message_counts == {"/tf_static": 1, "/camera/color/image_raw": 1, "/camera/depth/image_raw": 1,
                                        "/camera/color/camera_info": 1, "/ground_truth": 1}
        assert len(list(whole.messages())) == 5
    with BagReader(cut) as damaged:
        assert damaged.read_error is not None and "no valid end" in damaged.read_error
        assert sum(damaged.message_counts.values()) == len(list(damaged.messages()))


def test_messages_of_other_topics_are_not_decoded_but_counted(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        text = writer.add_connection("/text", "std_msgs/msg/String", typestore=store)
        broken = writer.add_connection("/broken", "std_msgs/msg/String", typestore=store)
        writer.write(text, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="kept"),
                                                  "std_msgs/msg/String"))
        for k in range(3):
            writer.write(broken, 2 + k, b"\x00\x01")  # would not deserialise if it were read
    with BagReader(tmp_path / "bag") as reader:
        read = list(reader.messages(["/text"]))
        assert reader.message_counts == {"/text": 1, "/broken": 3}
    assert [m.msg.data for m in read] == ["kept"]
    assert not reader.undecodable
    with BagReader(tmp_path / "bag") as reader:
        list(reader.messages())
    assert sum(reader.undecodable.values()) == 3  # the same bytes, decoded, do fail: the filter skipped them


def test_a_directory_without_metadata_or_storage_file_is_refused_as_no_bag(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a bag")
    with pytest.raises(DatasetError, match=f"^{empty} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 "
                                           "file$"):
        BagReader(empty)


def test_a_truncated_bags_error_says_it_is_damaged_and_what_is_missing(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap_file.read_bytes()[:200])  # before the first message
    with BagReader(cut) as reader:
        assert list(reader.messages()) == []
    assert reader.read_error.startswith(f"bag {cut} is damaged: it has no valid end (")
    assert reader.read_error.endswith("only its 0 messages before the damage can be read, frames after it are "
                                      "missing")


def _write_big_depth_bag(path: Path, frames: int = 40) -> None:
    """Depth frames 1.0 + i m of 160 kB each: rosbags closes a chunk past 1 MiB, so several chunks."""
    with BagWriter(path, "mcap") as bag:
        bag.add_topic("/camera/depth/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
        for i in range(frames):
            depth_m = np.full((200, 200), 1.0 + i, np.float32)
            bag.write("/camera/depth/image_raw", bag_msgs.image(depth_m, "32FC1", 1000 + i, "camera"), 1000 + i)


def test_an_mcap_bag_missing_bytes_in_its_middle_is_read_up_to_the_damage_not_a_memory_error(tmp_path: Path) -> None:
    # Every offset of the index past the gap points 1000 bytes too far: rosbags read a record length at the wrong
    # place and raised MemoryError. The index is checked first; the chunks before the damaged one are read, whole.
    from bag_edits import bytes_removed_inside_chunk

    from trusted_scene_graph.dataset.bag import BagIndexError, check_mcap_index

    _write_big_depth_bag(tmp_path / "bag")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    trusted = bytes_removed_inside_chunk(mcap_file, chunk=3)
    with pytest.raises(BagIndexError, match=r"mcap file .*bag\.mcap is damaged: its footer puts the summary"):
        check_mcap_index(mcap_file)
    with BagReader(tmp_path / "bag") as reader:
        frames = [np.frombuffer(m.msg.data, np.float32) for m in reader.messages()]
    assert reader.read_error.startswith(f"bag {tmp_path / 'bag'} is damaged: it has no valid end (mcap file ")
    # The damaged chunk still parses (rosbags writes no CRC), but the message index after it does not list it.
    assert "message index after it lists 0" in reader.read_error
    assert len(frames) == trusted > 0
    assert all((depth_m == 1.0 + i).all() for i, depth_m in enumerate(frames))  # none garbled


def test_a_memory_error_while_reading_is_a_damaged_bag_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    # A garbled record length rosbags tries to allocate (one it cannot even pass to C is an OverflowError, handled
    # as well: test_an_mcap_bag_garbled_in_the_middle_is_read_up_to_the_damage_not_a_crash).
    error = MemoryError
    _write_depth_bag(tmp_path / "bag", "mcap", frames=5)
    messages = Reader.messages

    def garbled_after_two(self, *args, **kwargs):
        iterator = messages(self, *args, **kwargs)
        yield next(iterator)
        yield next(iterator)
        raise error("garbled length")

    monkeypatch.setattr(Reader, "messages", garbled_after_two)
    with BagReader(tmp_path / "bag") as reader:
        assert sum(1 for _ in reader.messages()) == 2
    assert reader.read_error.endswith(f"reading stopped after 2 messages ({error.__name__}: garbled length); frames "
                                      "after the damage are missing")


def test_an_index_pointing_outside_the_file_is_refused_before_rosbags_follows_it(tmp_path: Path) -> None:
    import struct

    from trusted_scene_graph.dataset.bag import BagIndexError, check_mcap_index

    _write_big_depth_bag(tmp_path / "bag", frames=10)
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    whole = mcap_file.read_bytes()
    check_mcap_index(mcap_file)  # a whole file passes
    footer = len(whole) - 37  # opcode, length, summary start, summary offset start, CRC, then the magic
    summary_start = struct.unpack_from("<Q", whole, footer + 9)[0]
    beyond = whole[:footer + 9] + struct.pack("<Q", len(whole) + 5) + whole[footer + 17:]
    mcap_file.write_bytes(beyond)
    with pytest.raises(BagIndexError, match=rf"puts the summary at byte {len(whole) + 5}, outside its data"):
        check_mcap_index(mcap_file)
    # A chunk index shifted by a byte: no chunk of its sizes starts there.
    at = summary_start
    while whole[at] != 0x08:  # to the first chunk index record: opcode, length, then its fields
        at += 9 + struct.unpack_from("<Q", whole, at + 1)[0]
    chunk_start = struct.unpack_from("<Q", whole, at + 9 + 16)[0]  # after the message start and end times
    shifted = bytearray(whole)
    struct.pack_into("<Q", shifted, at + 9 + 16, chunk_start + 1)
    mcap_file.write_bytes(bytes(shifted))
    with pytest.raises(BagIndexError, match=rf"puts chunk 0 at byte {chunk_start + 1}, where no chunk"):
        check_mcap_index(mcap_file)
    with BagReader(tmp_path / "bag") as reader:  # read front to back instead: the records are whole
        assert sum(1 for _ in reader.messages()) == 10
    assert reader.read_error is None


def test_tsg_label_opens_a_bag_missing_bytes_in_its_middle_as_a_damaged_one(tmp_path: Path) -> None:
    from bag_edits import bytes_removed_inside_chunk

    from trusted_scene_graph.label.bags import _open_bag, _SalvagedMcap

    _write_big_depth_bag(tmp_path / "bag")
    trusted = bytes_removed_inside_chunk(next((tmp_path / "bag").glob("*.mcap")), chunk=3)
    reader = _open_bag(tmp_path / "bag")
    assert isinstance(reader, _SalvagedMcap)
    assert sum(1 for _ in reader.messages()) == trusted
    assert reader.salvage_note().startswith("the bag is damaged (mcap file ")
    assert reader.salvage_note().endswith(f"labelled from the {trusted} messages before the damage, re-written "
                                          "message by message")


def test_the_relation_message_names_every_predicate_the_graph_publishes_and_no_other() -> None:
    # A ROS user compares SpatialRelation.predicate with these constants: they must be exactly the relations' names.
    from trusted_scene_graph.relations.geometric import EDGE_SOURCES, QUALITATIVE_PREDICATES, QUANTITATIVE_PREDICATES

    constants = make_typestore().fielddefs["trusted_scene_graph_msgs/msg/SpatialRelation"][0]
    predicates = [value for name, _, value in constants if name.startswith("PREDICATE_")]
    assert predicates == [*QUALITATIVE_PREDICATES, *QUANTITATIVE_PREDICATES]
    assert all(name == f"PREDICATE_{value.upper()}" for name, _, value in constants if name.startswith("PREDICATE_"))
    assert [value for name, _, value in constants if name.startswith("SOURCE_")] == list(EDGE_SOURCES)


def _write_compressed_depth_mcap(path: Path, compression: str, frames: int = 30) -> Path:
    """Depth frames 1.0 + i m in mcap chunks compressed as rosbag2 writes them by default (zstd), or lz4."""
    from mcap.writer import CompressionType, Writer

    store = make_typestore()
    msgtype = "sensor_msgs/msg/Image"
    path.mkdir()
    with (path / "depth.mcap").open("wb") as stream:
        writer = Writer(stream, chunk_size=4096, compression=CompressionType[compression.upper()])
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema(msgtype, "ros2msg", b"")
        channel = writer.register_channel("/camera/depth/image_raw", "cdr", schema)
        for i in range(frames):
            depth_m = np.random.default_rng(i).uniform(1.0, 2.0, (20, 20)).astype(np.float32)  # no compressing away
            raw = store.serialize_cdr(bag_msgs.image(depth_m, "32FC1", 1000 + i, "camera"), msgtype)
            writer.add_message(channel, 1000 + i, bytes(raw), 1000 + i)
        writer.finish()
    return path / "depth.mcap"


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
@pytest.mark.parametrize("damage", ["flipped", "missing"])
def test_a_compressed_mcap_bag_damaged_inside_a_chunk_is_read_up_to_the_damage_not_a_crash(tmp_path: Path,
                                                                                          compression: str,
                                                                                          damage: str) -> None:
    # The decompressors' own errors (zstd's ZstdError, lz4's RuntimeError) escaped as tracebacks.
    mcap_file = _write_compressed_depth_mcap(tmp_path / "bag", compression)
    data = bytearray(mcap_file.read_bytes())
    middle = len(data) // 2
    if damage == "flipped":
        data[middle] ^= 0x10
    else:
        del data[middle:middle + 2]
    mcap_file.write_bytes(bytes(data))
    try:
        with BagReader(tmp_path / "bag") as reader:
            read = sum(1 for _ in reader.messages())
    except DatasetError:
        return  # refused by name: no traceback either
    assert read < 30 and reader.read_error is not None


def test_an_mcap_file_holding_only_its_magic_is_refused_by_name(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    cut = tmp_path / "magic.mcap"
    cut.write_bytes(mcap_file.read_bytes()[:8])
    with pytest.raises(DatasetError, match=rf"mcap file {cut} is cut short inside its header \(8 bytes\)"):
        BagReader(cut)


def test_asking_for_topics_the_bag_does_not_have_reads_nothing(tmp_path: Path) -> None:
    _write_sample_bag(tmp_path / "bag", "mcap")
    with BagReader(tmp_path / "bag") as reader:
        assert list(reader.messages(["/not_in_the_bag"])) == [] and list(reader.messages([])) == []


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("log_time", [-5, 2**64, 1.5e9, True])
def test_a_log_time_the_storage_cannot_hold_is_refused_naming_it(tmp_path: Path, storage: str, log_time) -> None:
    # mcap raised an OverflowError naming nothing; sqlite3 stored a negative time, or truncated a float, silently.
    with BagWriter(tmp_path / "bag", storage) as writer:
        writer.add_topic("/p", "geometry_msgs/msg/PoseStamped")
        with pytest.raises(DatasetError, match=rf"^log time {log_time!r} is not an integer number of nanoseconds"):
            writer.write("/p", bag_msgs.pose_stamped(0, "world", [0.0, 0.0, 0.0]), log_time)
        writer.write("/p", bag_msgs.pose_stamped(0, "world", [0.0, 0.0, 0.0]), np.int64(5))


def test_a_byte_missing_from_the_first_chunk_of_a_bag_without_crcs_gives_no_shifted_image(tmp_path: Path) -> None:
    # rosbags' writer leaves CRCs 0, and no message index has been read before the first chunk's: nothing but the
    # records after it tells that it lost a byte. Its images must not be given out as intact.
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (300, 400, 3), dtype=np.uint8) for _ in range(6)]
    with BagWriter(tmp_path / "bag") as writer:
        writer.add_topic("/img", "sensor_msgs/msg/Image")
        for i, pixels in enumerate(images):
            writer.write("/img", bag_msgs.image(pixels, "rgb8", i, "camera"), i)
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    data = mcap_file.read_bytes()
    at = data.index(images[1].tobytes()[:64]) + 1000  # inside the second image's pixels, in the first chunk
    mcap_file.write_bytes(data[:at] + data[at + 1:])
    with BagReader(tmp_path / "bag") as reader:
        read = {m.log_time_ns: np.asarray(m.msg.data).reshape(300, 400, 3) for m in reader.messages()}
    assert all(np.array_equal(pixels, images[i]) for i, pixels in read.items())
    assert "no CRC or message index confirms its bytes" in reader.read_error


def test_an_idl_definition_in_rosbag2s_sectioned_layout_is_hashed_as_the_bare_idl() -> None:
    # rosbag2 and rosbags store a type's IDL with its dependencies, each after a line of 80 '=' and 'IDL: <type>':
    # parsed whole, it gave no hash, and a custom type of a cut-short bag could not be copied.
    from rosbags.interfaces import MessageDefinition, MessageDefinitionFormat

    from trusted_scene_graph.dataset.bag import definition_hash

    thing = "module my_pkg {\n  module msg {\n    struct Thing {\n      double value;\n    };\n  };\n};\n"
    sectioned = "=" * 80 + "\nIDL: my_pkg/msg/Thing\n" + thing
    bare = definition_hash("my_pkg/msg/Thing", MessageDefinition(MessageDefinitionFormat.IDL, thing))
    assert bare is not None and bare.startswith("RIHS01_")
    assert definition_hash("my_pkg/msg/Thing", MessageDefinition(MessageDefinitionFormat.IDL, sectioned)) == bare


def test_a_split_bag_with_a_cut_file_is_refused_naming_that_file(tmp_path: Path) -> None:
    # rosbags says "File end magic is invalid" without saying which of the files.
    for part in ("a", "b"):
        _write_sample_bag(tmp_path / part, "mcap")
    split = tmp_path / "split"
    split.mkdir()
    for index, part in enumerate(("a", "b")):
        (mcap_file,) = (tmp_path / part).glob("*.mcap")
        data = mcap_file.read_bytes()
        (split / f"split_{index}.mcap").write_bytes(data if index == 0 else data[: len(data) - 100])
    with pytest.raises(DatasetError, match=r"split_1\.mcap of its 2 files has no valid end"):
        BagReader(split)


def test_a_message_compressed_bag_cut_short_gives_its_messages_decompressed(tmp_path: Path) -> None:
    # rosbag2's compression_mode 'message': read front to back, the zstd payloads were given out as CDR and none
    # decoded.
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    store = make_typestore()
    writer = Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    writer.open()
    connection = writer.add_connection("/depth", "sensor_msgs/msg/Image", typestore=store)
    for i in range(12):
        depth_m = np.random.default_rng(i).uniform(1.0, 2.0, (200, 200)).astype(np.float32)
        writer.write(connection, 1000 + i, store.serialize_cdr(bag_msgs.image(depth_m, "32FC1", 1000 + i, "camera"),
                                                               connection.msgtype))
    writer.close()
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) * 3 // 4])
    with BagReader(tmp_path / "bag") as reader:
        images = [m.msg for m in reader.messages()]
    assert reader.read_error is not None and not reader.undecodable
    assert 0 < len(images) < 12
    for i, image in enumerate(images):
        expected = np.random.default_rng(i).uniform(1.0, 2.0, (200, 200)).astype(np.float32)
        assert np.array_equal(np.frombuffer(image.data, np.float32).reshape(200, 200), expected)
