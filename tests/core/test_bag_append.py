"""The fast "copy an mcap bag and add one topic" writer of ``tsg label`` (``dataset/bag_append.py``).

Its output is checked against the source (byte-identical data section, every message unchanged), against the indexed
readers (rosbags, the mcap library with CRCs validated, our BagReader) and against what the streaming ``BagWriter``
copy writes for the same bag (metadata.yaml, the new topic's schema and channel).
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import os
import shutil
import struct
import types
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from trusted_scene_graph.dataset import BagReader, BagWriter, DatasetError, QosSpec, bag_append, make_typestore
from trusted_scene_graph.dataset import messages as bag_msgs
from trusted_scene_graph.dataset.bag import DEFAULT_QOS, LATCHED_QOS, SENSOR_QOS, McapStream, storage_path
from trusted_scene_graph.dataset.bag_append import McapAppendCopy, append_unsupported_reason
from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform

T0_NS = 1_767_225_600_000_000_000
FRAME_NS = 100_000_000
FRAMES = 30
REWARD_TOPIC = "/scene_graph/reward"
REWARD_TYPE = bag_msgs.DENSE_REWARD_TYPE
INTRINSICS = Intrinsics(200, 150, 100.0, 100.0, 99.5, 74.5)

Message = tuple[str, int, bytes]  # topic, log time, raw bytes


def _write_source(path: Path, frames: int = FRAMES) -> None:
    """A bag of camera frames big enough for several chunks (rosbags closes a chunk after 1 MiB)."""
    rng = np.random.default_rng(0)
    with BagWriter(path) as bag:
        bag.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
        bag.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR_QOS)
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", LATCHED_QOS)
        bag.add_topic("/ground_truth", bag_msgs.GROUND_TRUTH_TYPE)
        bag.write("/tf_static", bag_msgs.tf_message(T0_NS, "world", "camera", RigidTransform.from_xyzw(
            [1, 2, 3], [0, 0, 0, 1])), T0_NS)
        for i in range(frames):
            stamp_ns = T0_NS + i * FRAME_NS
            rgb = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)  # noise: 90 kB a frame
            bag.write("/camera/color/image_raw", bag_msgs.image(rgb, "rgb8", stamp_ns, "camera"), stamp_ns)
            bag.write("/camera/color/camera_info", bag_msgs.camera_info(INTRINSICS, stamp_ns, "camera"),
                      stamp_ns + 1_000)
            bag.write("/ground_truth", bag_msgs.ground_truth(stamp_ns, "world", "push", 0, i, []), stamp_ns + 2_000)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared source bag; tests that change a bag change a copy of it."""
    path = tmp_path_factory.mktemp("source") / "source"
    _write_source(path)
    return path


def _reward(stamp_ns: int, pair: str = "cube->goal", reward: float = 0.5) -> bytes:
    sample = types.SimpleNamespace(
        stamp_ns=stamp_ns, pair=pair, subject="cube", object="goal", reward=reward, distance_m=0.1, valid=True,
        trust=0.9, held=False, age_s=0.0, subject_id=1, object_id=2, subject_source="gt", object_source="gt",
        message="")
    return make_typestore().serialize_cdr(bag_msgs.dense_reward(sample, "world"), REWARD_TYPE)


def _rewards() -> list[tuple[int, bytes]]:
    """Rewards between the frames, one before the first and one after the last message, two at the same time; in
    no particular order."""
    times = [T0_NS + i * FRAME_NS + FRAME_NS // 2 for i in range(FRAMES)] + [T0_NS - 5, T0_NS + FRAMES * FRAME_NS]
    messages = [(t, _reward(t, reward=i / 10)) for i, t in enumerate(times)]
    messages += [(times[3], _reward(times[3], pair="tie->second"))]  # after the first at times[3], by caller order
    rng = np.random.default_rng(1)
    return [messages[i] for i in rng.permutation(len(messages))]


def _sorted_new(messages: Sequence[tuple[int, bytes]]) -> list[Message]:
    return [(REWARD_TOPIC, t, raw) for t, raw in sorted(messages, key=lambda m: m[0])]


def _append(source: Path, out_dir: Path, messages: Sequence[tuple[int, bytes]], file_name: str = "copy.mcap",
            qos: QosSpec = DEFAULT_QOS) -> Path:
    out_dir.mkdir(parents=True)
    copy = McapAppendCopy(source, out_dir, file_name)
    copy.start()
    copy.finish(REWARD_TOPIC, REWARD_TYPE, qos, messages)
    return out_dir


def _streaming_copy(source: Path, dest: Path, messages: Sequence[tuple[int, bytes]],
                    qos: QosSpec = DEFAULT_QOS) -> Path:
    """What ``tsg label`` writes today: every message through ``BagWriter``."""
    typestore = make_typestore()
    with Reader(storage_path(source)) as reader, BagWriter(dest) as writer:
        copies = {c.id: writer.copy_connection(c) for c in reader.connections}
        writer.add_topic(REWARD_TOPIC, REWARD_TYPE, qos)
        for connection, log_time_ns, raw in reader.messages():
            writer.write_raw(copies[connection.id], raw, log_time_ns)
        for log_time_ns, raw in messages:
            writer.write(REWARD_TOPIC, typestore.deserialize_cdr(raw, REWARD_TYPE), log_time_ns)
    return dest


def _rosbags_messages(path: Path) -> list[Message]:
    with Reader(path) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def _mcap_messages(mcap_file: Path) -> list[Message]:
    from mcap.reader import make_reader

    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        return [(channel.topic, message.log_time, message.data)
                for _, channel, message in reader.iter_messages(log_time_order=True)]


def _summary(mcap_file: Path) -> Any:  # an mcap.summary.Summary
    from mcap.reader import make_reader

    with mcap_file.open("rb") as stream:
        return make_reader(stream).get_summary()


def _mcap_of(bag: Path) -> Path:
    (mcap_file,) = bag.glob("*.mcap")
    return mcap_file


def _footer(mcap_file: Path) -> tuple[int, int, int]:
    data = mcap_file.read_bytes()
    opcode, length, summary_start, summary_offset_start, crc = struct.unpack("<BQQQI", data[-37:-8])
    assert (opcode, length) == (0x02, 20)
    return summary_start, summary_offset_start, crc


def _merged(old: list[Message], new: list[Message]) -> list[Message]:
    """The log-time merge of the source's and the new messages (no new message shares a time with an old one)."""
    assert not {t for _, t, _ in old} & {t for _, t, _ in new}
    return list(heapq.merge(old, new, key=lambda m: m[1]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _require_direct_io(path: Path) -> None:
    """Skip unless copies into ``path`` are written with direct I/O (Linux, on a filesystem that copies by it)."""
    if not hasattr(os, "O_DIRECT") or bag_append.filesystem_type(path) not in bag_append.DIRECT_COPY_FILESYSTEMS:
        pytest.skip(f"{path} is on {bag_append.filesystem_type(path)}, not copied with direct I/O")


def _open_flags(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (path, flags) os.open is called with from now on."""
    opened: list[tuple[str, int]] = []
    real = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        opened.append((str(path), flags))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return opened


@pytest.mark.parametrize("chunk_size_bytes", [None, 600])  # None: the default (1 MiB)
def test_every_message_comes_back_unchanged_with_the_new_ones_merged_by_log_time(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size_bytes: int | None) -> None:
    if chunk_size_bytes is not None:
        monkeypatch.setattr(bag_append, "CHUNK_SIZE_BYTES", chunk_size_bytes)
    source_hash = _sha256(_mcap_of(source))
    rewards = _rewards()
    out = _append(source, tmp_path / "out", rewards)

    new = _sorted_new(rewards)
    assert [raw for _, _, raw in new][4:6] == [_reward(new[4][1], reward=0.3), _reward(new[4][1], pair="tie->second")]
    old_rosbags = _rosbags_messages(source)
    assert _rosbags_messages(out) == _merged(old_rosbags, new)
    assert _rosbags_messages(out / "copy.mcap") == _merged(old_rosbags, new)  # the file alone, through its index
    old_mcap = _mcap_messages(_mcap_of(source))
    assert _mcap_messages(out / "copy.mcap") == _merged(old_mcap, new)
    assert _sha256(_mcap_of(source)) == source_hash

    summary, source_summary = _summary(out / "copy.mcap"), _summary(_mcap_of(source))
    new_chunks = len(summary.chunk_indexes) - len(source_summary.chunk_indexes)
    assert len(source_summary.chunk_indexes) > 1  # a multi-chunk source
    assert new_chunks == 1 if chunk_size_bytes is None else new_chunks > 1
    assert summary.chunk_indexes[:len(source_summary.chunk_indexes)] == source_summary.chunk_indexes
    stats = summary.statistics
    assert (stats.message_count, stats.chunk_count) == (len(old_mcap) + len(rewards), len(summary.chunk_indexes))
    assert (stats.message_start_time, stats.message_end_time) == (T0_NS - 5, T0_NS + FRAMES * FRAME_NS)


def test_the_copy_is_the_source_byte_for_byte_up_to_its_data_end_and_its_summary_is_consistent(
        source: Path, tmp_path: Path) -> None:
    out = _append(source, tmp_path / "out", _rewards())
    source_bytes, out_bytes = _mcap_of(source).read_bytes(), (out / "copy.mcap").read_bytes()
    data_end = _footer(_mcap_of(source))[0] - 13
    assert source_bytes[data_end] == 0x0F  # the source's DataEnd record, which the copy replaces
    assert out_bytes[:data_end] == source_bytes[:data_end]
    assert out_bytes[data_end] == 0x03  # the new topic's Schema record comes first

    # Read front to back (as BagReader salvages a file and ``tsg replay`` streams it), CRCs checked: every record.
    stream = McapStream(out / "copy.mcap")
    assert stream.complete and stream.message_count == 3 * FRAMES + 1 + len(_rewards())

    summary_start, summary_offset_start, crc = _footer(out / "copy.mcap")
    assert out_bytes[summary_start - 13] == 0x0F
    assert zlib.crc32(out_bytes[summary_start:len(out_bytes) - 8 - 4]) == crc  # through summary_offset_start
    # Each SummaryOffset names a group of records of its opcode, back to back, ending where the next group starts.
    offsets = []
    position = summary_offset_start
    while out_bytes[position] == 0x0E:
        opcode, start, length = struct.unpack_from("<BQQ", out_bytes, position + 9)
        offsets.append((opcode, start, length))
        position += 9 + 17
    assert [o[0] for o in offsets] == [0x03, 0x04, 0x0B, 0x08, 0x0D]
    assert offsets[0][1] == summary_start and offsets[-1][1] + offsets[-1][2] == summary_offset_start
    for opcode, start, length in offsets:
        while length:
            record_opcode, record_length = struct.unpack_from("<BQ", out_bytes, start)
            assert record_opcode == opcode
            start, length = start + 9 + record_length, length - 9 - record_length


def test_our_bag_reader_decodes_the_new_messages_and_counts_the_new_topic(source: Path, tmp_path: Path) -> None:
    rewards = _rewards()
    out = _append(source, tmp_path / "out", rewards)
    with BagReader(out) as reader:
        counts = dict(reader.message_counts)
        decoded = list(reader.messages([REWARD_TOPIC]))
    assert reader.read_error is None and not reader.undecodable
    assert counts == {"/camera/color/image_raw": FRAMES, "/camera/color/camera_info": FRAMES, "/tf_static": 1,
                      "/ground_truth": FRAMES, REWARD_TOPIC: len(rewards)}
    assert [m.log_time_ns for m in decoded] == sorted(t for t, _ in rewards)
    assert decoded[0].msg.pair == "cube->goal" and decoded[0].msg.header.stamp.sec == (T0_NS - 5) // 10**9
    assert sorted(m.msg.reward for m in decoded) == pytest.approx(sorted([i / 10 for i in range(FRAMES + 2)] + [0.5]))


@pytest.mark.parametrize(("lone_file", "qos"), [(False, DEFAULT_QOS), (True, SENSOR_QOS)])
def test_metadata_schema_and_channel_are_what_the_streaming_copy_writes(
        source: Path, tmp_path: Path, lone_file: bool, qos: QosSpec) -> None:
    """Both copies are named ``copy`` (BagWriter names its file after the directory), so even file names agree; a
    lone .mcap source has no type hashes, and both take them from the type store."""
    src = _mcap_of(source) if lone_file else source
    rewards = _rewards()
    fast = _append(src, tmp_path / "fast" / "copy", rewards, file_name="copy.mcap", qos=qos)
    slow = _streaming_copy(src, tmp_path / "slow" / "copy", rewards, qos=qos)

    fast_meta = yaml.safe_load((fast / "metadata.yaml").read_text())
    assert fast_meta == yaml.safe_load((slow / "metadata.yaml").read_text())
    info = fast_meta["rosbag2_bagfile_information"]
    assert info["message_count"] == 3 * FRAMES + 1 + len(rewards)
    assert info["topics_with_message_count"][-1]["topic_metadata"]["name"] == REWARD_TOPIC
    assert all(t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
               for t in info["topics_with_message_count"])

    def stored(bag: Path) -> tuple[object, ...]:
        summary = _summary(bag / "copy.mcap")
        (channel,) = [c for c in summary.channels.values() if c.topic == REWARD_TOPIC]
        schema = summary.schemas[channel.schema_id]
        from mcap.reader import make_reader

        with (bag / "copy.mcap").open("rb") as stream:
            (record,) = [m for m in make_reader(stream).iter_metadata() if m.name == "rosbag2"]
        return ((schema.name, schema.encoding, schema.data), (channel.message_encoding, channel.metadata),
                yaml.safe_load(record.metadata["serialized_metadata"]))

    assert stored(fast) == stored(slow)
    assert stored(fast)[2] == info

    def connections(bag: Path) -> list[tuple[object, ...]]:
        with Reader(bag) as reader:
            return [(c.topic, c.msgtype, c.msgdef, c.digest, c.msgcount, c.ext) for c in reader.connections]

    assert connections(fast) == connections(slow)


def test_an_mcap_library_file_keeps_its_attachment_its_metadata_and_its_compressed_chunks(tmp_path: Path) -> None:
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    typestore = make_typestore()
    msgdef, _ = typestore.generate_msgdef("std_msgs/msg/String", ros_version=2)
    path = tmp_path / "other.mcap"
    with path.open("wb") as stream:
        writer = Writer(stream, chunk_size=200, compression=CompressionType.LZ4)
        writer.start(profile="ros2", library="test")
        schema_id = writer.register_schema("std_msgs/msg/String", "ros2msg", msgdef.encode())
        channel_id = writer.register_channel("/chatter", "cdr", schema_id)
        texts = [f"hello {i}" for i in range(12)]
        for i, text in enumerate(texts):
            raw = typestore.serialize_cdr(typestore.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String")
            writer.add_message(channel_id, T0_NS + i * FRAME_NS, raw, T0_NS + i * FRAME_NS)
        writer.add_attachment(T0_NS, T0_NS, "calibration.yaml", "text/yaml", b"fx: 100\n")
        writer.add_metadata("robot", {"name": "fetch"})
        writer.finish()
    assert append_unsupported_reason(path) is None
    rewards = [(T0_NS + 3 * FRAME_NS + 7, _reward(T0_NS))]
    out = _append(path, tmp_path / "out", rewards)

    with (out / "copy.mcap").open("rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        attachments = [(a.name, a.data) for a in reader.iter_attachments()]
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
        compression = {c.compression for c in reader.get_summary().chunk_indexes}
    assert attachments == [("calibration.yaml", b"fx: 100\n")]
    assert metadata["robot"] == {"name": "fetch"} and set(metadata) == {"robot", "rosbag2"}
    assert compression == {"lz4", ""}  # the source's chunks stay compressed, the new one is not
    with BagReader(out) as bag:
        read = [(m.topic, m.msg.data if m.topic == "/chatter" else m.msg.pair) for m in bag.messages()]
    assert read == [("/chatter", t) for t in texts[:4]] + [(REWARD_TOPIC, "cube->goal")] + [
        ("/chatter", t) for t in texts[4:]]


def test_no_new_messages_still_declares_the_topic(source: Path, tmp_path: Path) -> None:
    out = _append(source, tmp_path / "out", [])
    with Reader(out) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[REWARD_TOPIC] == 0 and sum(counts.values()) == 3 * FRAMES + 1
    assert _mcap_messages(out / "copy.mcap") == _mcap_messages(_mcap_of(source))
    stats = _summary(out / "copy.mcap").statistics
    assert stats.channel_message_counts[max(stats.channel_message_counts)] == 0
    with BagReader(out) as bag:
        assert bag.message_counts[REWARD_TOPIC] == 0 and bag.topics[REWARD_TOPIC] == REWARD_TYPE


def test_an_empty_source_gets_its_first_messages(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "empty") as bag:
        bag.add_topic("/ground_truth", bag_msgs.GROUND_TRUTH_TYPE)
    rewards = [(T0_NS + 10, _reward(T0_NS)), (T0_NS, _reward(T0_NS))]
    out = _append(tmp_path / "empty", tmp_path / "out", rewards)
    assert _rosbags_messages(out) == _sorted_new(rewards)
    info = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert (info["starting_time"]["nanoseconds_since_epoch"], info["duration"]["nanoseconds"]) == (T0_NS, 10)


def _with_metadata(source: Path, dest: Path, **changes: object) -> Path:
    shutil.copytree(source, dest)
    metadata = yaml.safe_load((dest / "metadata.yaml").read_text())
    metadata["rosbag2_bagfile_information"].update(changes)
    (dest / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    return dest


def test_custom_data_is_kept_and_metadata_yaml_says_what_the_mcap_record_says(source: Path, tmp_path: Path) -> None:
    custom = {"note": "line one\nline two\n\nafter a blank line", "long": "word " * 40, "colon": "a: b",
              "number": "0123", "boolean": "yes", "unicode": "Größe"}
    src = _with_metadata(source, tmp_path / "custom", custom_data=custom)
    out = _append(src, tmp_path / "out", _rewards()[:3])
    from mcap.reader import make_reader

    with (out / "copy.mcap").open("rb") as stream:
        (record,) = [m for m in make_reader(stream).iter_metadata() if m.name == "rosbag2"]
    info = yaml.safe_load(record.metadata["serialized_metadata"])
    assert yaml.safe_load((out / "metadata.yaml").read_text()) == {"rosbag2_bagfile_information": info}
    assert info["custom_data"] == custom
    with Reader(out) as reader:  # rosbags loads it with ruamel (YAML 1.2)
        assert reader.storage.metadata.custom == custom


def test_bags_the_fast_path_cannot_copy_say_why(source: Path, tmp_path: Path) -> None:
    from mcap.writer import CompressionType, Writer

    with BagWriter(tmp_path / "sqlite", "sqlite3") as bag:
        bag.add_topic("/ground_truth", bag_msgs.GROUND_TRUTH_TYPE)
    assert append_unsupported_reason(tmp_path / "sqlite") == f"{tmp_path / 'sqlite'} is a sqlite3 bag, not mcap"

    two = _with_metadata(source, tmp_path / "two", relative_file_paths=["source.mcap", "source_1.mcap"])
    assert "has 2 storage files (source.mcap, source_1.mcap), not one" in append_unsupported_reason(two)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(_mcap_of(source), loose / "a.mcap")
    shutil.copy(_mcap_of(source), loose / "b.mcap")
    assert append_unsupported_reason(loose) == f"{loose} has 2 mcap storage files, not one"
    compressed = _with_metadata(source, tmp_path / "zstd", compression_mode="FILE", compression_format="zstd")
    assert "is file-compressed (zstd)" in append_unsupported_reason(compressed)

    truncated = tmp_path / "truncated"
    shutil.copytree(source, truncated)
    data = _mcap_of(truncated).read_bytes()
    _mcap_of(truncated).write_bytes(data[:len(data) - 100])
    assert "has no footer (it does not end with the mcap magic)" in append_unsupported_reason(truncated)

    def one_message_file(name: str, encoding: str, schema: tuple[str, bytes], data: bytes, chunked: bool) -> Path:
        path = tmp_path / name
        with path.open("wb") as stream:
            writer = Writer(stream, use_chunking=chunked, compression=CompressionType.NONE)
            writer.start(profile="ros2")
            schema_id = writer.register_schema("std_msgs/msg/String", *schema)
            writer.add_message(writer.register_channel("/chatter", encoding, schema_id), T0_NS, data, T0_NS)
            writer.finish()
        return path

    unchunked = one_message_file("unchunked.mcap", "cdr", ("ros2msg", b"string data"),
                                 b"\x00\x01\x00\x00\x01\x00\x00\x00\x00", chunked=False)
    assert "account for 0 messages but its statistics count 1" in append_unsupported_reason(unchunked)
    # A lone file has no metadata.yaml to name its format: its channel does.
    json_channel = one_message_file("json.mcap", "json", ("jsonschema", b"{}"), b'{"data": "hi"}', chunked=True)
    assert "channel '/chatter' is serialised as 'json', not cdr" in append_unsupported_reason(json_channel)
    assert append_unsupported_reason(tmp_path / "missing") == f"{tmp_path / 'missing'} does not exist"

    (tmp_path / "out").mkdir()
    with pytest.raises(DatasetError, match=r"truncated cannot be copied by appending to it: .*has no footer"):
        McapAppendCopy(truncated, tmp_path / "out", "copy.mcap")
    assert append_unsupported_reason(source) is None and append_unsupported_reason(_mcap_of(source)) is None


def test_a_version_8_bag_and_a_summary_that_omits_channels_are_left_to_the_streaming_copy(tmp_path: Path) -> None:
    from mcap.writer import CompressionType, Writer
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as RosbagsWriter

    # rosbag2 <= 8 stores QoS policies as integers; a version 9 rosbag2 record next to them would be misread.
    typestore = make_typestore()
    with RosbagsWriter(tmp_path / "v8", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=typestore,
                                           offered_qos_profiles=[DEFAULT_QOS.to_rosbags()])
        writer.write(connection, T0_NS, bytes(typestore.serialize_cdr(
            typestore.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String")))
    assert "'/chatter' stores its QoS in the rosbag2 version <= 8 form" in append_unsupported_reason(tmp_path / "v8")

    # A channel without messages that the summary does not list: a new channel could reuse its id.
    omitted = tmp_path / "omitted.mcap"
    with omitted.open("wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE, repeat_channels=False, repeat_schemas=False)
        writer.start(profile="ros2")
        writer.register_channel("/status", "cdr", writer.register_schema("std_msgs/msg/String", "ros2msg",
                                                                           b"string data"))
        writer.finish()
    assert "its summary lists 0 schemas and 0 channels but its statistics count 1 and 1" in (
        append_unsupported_reason(omitted))


@pytest.mark.parametrize("method", ["kernel copy", "direct I/O"])
def test_abort_stops_the_copy_between_slices_instead_of_waiting_for_all_of_it(source: Path, tmp_path: Path,
                                                                           monkeypatch, method: str) -> None:
    import threading

    monkeypatch.setattr(bag_append, "_COPY_SLICE_BYTES", 4096)  # many slices, so the copy is still running
    calls, in_second_slice, release = [], threading.Event(), threading.Event()
    if method == "direct I/O":
        _require_direct_io(tmp_path)
        owner, name = bag_append._DirectWriter, "write"
    else:
        monkeypatch.setattr(bag_append, "DIRECT_COPY_FILESYSTEMS", frozenset())
        owner, name = os, "copy_file_range"
    real = getattr(owner, name)

    def held_copy(*args):
        calls.append(args)
        if len(calls) == 2:
            in_second_slice.set()
            release.wait(10)
        return real(*args)

    monkeypatch.setattr(owner, name, held_copy)
    (tmp_path / "out").mkdir()
    copy = McapAppendCopy(source, tmp_path / "out", "copy.mcap")
    copy.start()
    assert in_second_slice.wait(10)
    aborting = threading.Thread(target=copy.abort)
    aborting.start()  # abort() sets the cancel flag, then waits for the copy thread
    while not copy._cancel.is_set():
        pass
    release.set()
    aborting.join(10)
    assert not aborting.is_alive()
    assert len(calls) == 2  # stopped after the slice in flight, not after the whole data section
    assert isinstance(copy._copy_error, DatasetError) and "cancelled after 8192 of" in str(copy._copy_error)


def test_bad_arguments_are_refused_with_the_value_named(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DatasetError, match=r"output file name 'sub/copy.mcap' is not a plain name ending in .mcap"):
        McapAppendCopy(source, out, "sub/copy.mcap")
    with pytest.raises(DatasetError, match=r"output directory .*nowhere does not exist"):
        McapAppendCopy(source, tmp_path / "nowhere", "copy.mcap")
    (out / "metadata.yaml").write_text("")
    with pytest.raises(DatasetError, match=r"metadata.yaml already exists"):
        McapAppendCopy(source, out, "copy.mcap")
    (out / "metadata.yaml").unlink()

    cases = [("/ground_truth", REWARD_TYPE, [], r"already has topic '/ground_truth'"),
             (REWARD_TOPIC, "pkg/msg/Nope", [], r"unknown message type 'pkg/msg/Nope'"),
             (REWARD_TOPIC, REWARD_TYPE, [(1.5, b"")], r"log time 1.5 of a /scene_graph/reward message"),
             (REWARD_TOPIC, REWARD_TYPE, [(-1, b"")], r"log time -1 of"),
             (REWARD_TOPIC, REWARD_TYPE, [(1, "text")], r"message at 1 ns is str, not bytes")]
    for i, (topic, msgtype, messages, match) in enumerate(cases):
        copy = McapAppendCopy(source, out, f"copy{i}.mcap")
        copy.start()
        with pytest.raises(DatasetError, match=match):
            copy.finish(topic, msgtype, DEFAULT_QOS, messages)
        copy.abort()  # what the caller does; a second abort is harmless
        with pytest.raises(DatasetError, match=r"copy.\.mcap is aborted; it cannot be finished again"):
            copy.finish(REWARD_TOPIC, REWARD_TYPE, DEFAULT_QOS, [])
    assert not (out / "metadata.yaml").exists()


def test_without_direct_io_copy_file_range_or_sendfile_the_copy_is_the_same(source: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rewards = _rewards()
    reference = (_append(source, tmp_path / "default", rewards) / "copy.mcap").read_bytes()
    monkeypatch.setattr(bag_append, "DIRECT_COPY_FILESYSTEMS", frozenset())
    assert (_append(source, tmp_path / "kernel", rewards) / "copy.mcap").read_bytes() == reference
    calls: dict[str, int] = {}

    def refuse(name: str, code: int) -> Callable[..., int]:
        def call(*args: object) -> int:
            calls[name] = calls.get(name, 0) + 1
            raise OSError(code, os.strerror(code))
        return call

    monkeypatch.setattr(os, "copy_file_range", refuse("copy_file_range", errno.EXDEV))
    assert (_append(source, tmp_path / "sendfile", rewards) / "copy.mcap").read_bytes() == reference
    monkeypatch.setattr(os, "sendfile", refuse("sendfile", errno.EINVAL))
    assert (_append(source, tmp_path / "buffered", rewards) / "copy.mcap").read_bytes() == reference
    assert calls == {"copy_file_range": 2, "sendfile": 1}


@pytest.mark.parametrize("method", ["kernel copy", "direct I/O"])
def test_a_failing_copy_is_reported_naming_the_files(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      method: str) -> None:
    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    if method == "direct I/O":
        _require_direct_io(tmp_path)
        monkeypatch.setattr(bag_append._DirectWriter, "write", broken)
    else:
        monkeypatch.setattr(bag_append, "DIRECT_COPY_FILESYSTEMS", frozenset())
        monkeypatch.setattr(os, "copy_file_range", broken)
    (tmp_path / "out").mkdir()
    copy = McapAppendCopy(source, tmp_path / "out", "copy.mcap")
    copy.start()
    with pytest.raises(DatasetError, match=r"copying .*source.mcap to .*out/copy.mcap failed: .*Input/output error"):
        copy.finish(REWARD_TOPIC, REWARD_TYPE, DEFAULT_QOS, [])
    assert not (tmp_path / "out" / "metadata.yaml").exists()


def test_a_source_that_changes_before_the_copy_is_refused(source: Path, tmp_path: Path) -> None:
    changing = tmp_path / "changing"
    shutil.copytree(source, changing)
    (tmp_path / "out").mkdir()
    copy = McapAppendCopy(changing, tmp_path / "out", "copy.mcap")
    with _mcap_of(changing).open("ab") as stream:
        stream.write(b"more")
    copy.start()
    with pytest.raises(DatasetError, match=r"copying .*changing/source.mcap to .*failed: .*changing/source.mcap "
                                           r"changed while it was being copied \(size \d+ -> \d+ bytes\)"):
        copy.finish(REWARD_TOPIC, REWARD_TYPE, DEFAULT_QOS, [])


def test_on_ext4_the_data_section_is_written_with_direct_io_and_elsewhere_by_the_kernel_copy(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_direct_io(tmp_path)
    opened = _open_flags(monkeypatch)
    kernel_copies: list[tuple[int, int]] = []  # (offset, bytes)
    real_copy = os.copy_file_range

    def kernel_copy(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        kernel_copies.append((offset_src, count))
        return real_copy(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", kernel_copy)
    direct = _append(source, tmp_path / "direct", _rewards()) / "copy.mcap"
    assert [flags & os.O_DIRECT for path, flags in opened if path == str(direct)] == [0, os.O_DIRECT]
    # Direct I/O wrote every whole block; the kernel copied only the last, partial one.
    data_end = bag_append._inspect(source).data_end
    assert data_end % 4096 and kernel_copies == [(data_end // 4096 * 4096, data_end % 4096)]

    monkeypatch.setattr(bag_append, "DIRECT_COPY_FILESYSTEMS", frozenset({"xfs"}))  # as on a filesystem not listed
    opened.clear()
    kernel = _append(source, tmp_path / "kernel", _rewards()) / "copy.mcap"
    assert [flags & os.O_DIRECT for path, flags in opened if path == str(kernel)] == [0]
    assert direct.read_bytes() == kernel.read_bytes()


def test_direct_io_refused_midway_or_at_open_or_a_source_not_mappable_leaves_the_rest_to_the_kernel_copy(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_direct_io(tmp_path)
    monkeypatch.setattr(bag_append, "_COPY_SLICE_BYTES", 64 * 1024)
    reference = (_append(source, tmp_path / "reference", _rewards()) / "copy.mcap").read_bytes()
    real_write, real_copy = bag_append._DirectWriter.write, os.copy_file_range
    direct_offsets: list[int] = []
    kernel_offsets: list[int] = []

    def refused_after_two_slices(writer: Any, offset: int, count: int) -> int:
        if len(direct_offsets) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")  # e.g. a device whose blocks are larger than 4096
        direct_offsets.append(offset)
        return real_write(writer, offset, count)

    def kernel_copy(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        kernel_offsets.append(offset_src)
        return real_copy(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(bag_append._DirectWriter, "write", refused_after_two_slices)
    monkeypatch.setattr(os, "copy_file_range", kernel_copy)
    assert (_append(source, tmp_path / "midway", _rewards()) / "copy.mcap").read_bytes() == reference
    assert direct_offsets == [0, 64 * 1024] and kernel_offsets[0] == 2 * 64 * 1024  # continued where it stopped

    real_open = os.open

    def no_direct_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_direct_open)
    kernel_offsets.clear()
    assert (_append(source, tmp_path / "no-open", _rewards()) / "copy.mcap").read_bytes() == reference
    assert kernel_offsets[0] == 0

    def no_mapping(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENODEV, "No such device")  # what a FUSE filesystem without mmap says

    monkeypatch.undo()
    monkeypatch.setattr(bag_append.mmap, "mmap", no_mapping)
    monkeypatch.setattr(os, "copy_file_range", kernel_copy)
    kernel_offsets.clear()
    assert (_append(source, tmp_path / "no-mapping", _rewards()) / "copy.mcap").read_bytes() == reference
    assert kernel_offsets[0] == 0


@pytest.mark.parametrize("when", ["before its slice is mapped", "under the mapping"])
def test_a_source_cut_short_under_the_direct_copy_is_reported_as_changed(source: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          when: str) -> None:
    _require_direct_io(tmp_path)
    cut = tmp_path / "cut"
    shutil.copytree(source, cut)
    owner, name = (bag_append._DirectWriter, "write") if when.startswith("before") else (os, "pwrite")
    real = getattr(owner, name)

    def truncate_then_call(*args: Any) -> int:
        # Before: Python's mmap refuses a slice past the end. Under: the mapped pages past the end are gone, and
        # the direct write fails with EFAULT.
        if _mcap_of(cut).stat().st_size > 4096:
            os.truncate(_mcap_of(cut), 4096)
        return real(*args)

    monkeypatch.setattr(owner, name, truncate_then_call)
    (tmp_path / "out").mkdir()
    copy = McapAppendCopy(cut, tmp_path / "out", "copy.mcap")
    copy.start()
    with pytest.raises(DatasetError, match=r"copying .*cut/source.mcap to .*failed: .*cut/source.mcap changed while "
                                           r"it was being copied \(size \d+ -> 4096 bytes\)"):
        copy.finish(REWARD_TOPIC, REWARD_TYPE, DEFAULT_QOS, [])


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - xfs /dev/sdb1 rw,attr2
"""


@pytest.mark.parametrize(("major", "minor", "expected"), [(254, 0, "ext4"), (98, 0, "xfs"), (0, 21, "proc"),
                                                          (8, 1, None)])
def test_the_filesystem_type_is_read_after_the_separator_past_any_optional_fields(major: int, minor: int,
                                                                                   expected: str | None) -> None:
    assert bag_append.filesystem_type_from_mountinfo(MOUNTINFO, major, minor) == expected


def test_the_filesystem_of_a_real_path_is_known_on_linux(tmp_path: Path) -> None:
    mountinfo = Path("/proc/self/mountinfo")
    if not mountinfo.exists():
        pytest.skip("no /proc/self/mountinfo (not Linux)")
    device = os.stat(tmp_path).st_dev
    if f" {os.major(device)}:{os.minor(device)} " not in mountinfo.read_text():
        pytest.skip(f"{tmp_path}'s device is not a mount of its own (a btrfs subvolume?): its type is unknown")
    assert bag_append.filesystem_type(tmp_path)  # e.g. 'ext4', 'tmpfs', 'overlay'
    assert bag_append.filesystem_type(tmp_path / "missing") is None


def _open_descriptors_and_mappings(path: Path) -> tuple[int, int]:
    """How many file descriptors this process has open, and how many of its memory mappings are of ``path``."""
    maps = Path("/proc/self/maps").read_text()
    return len(os.listdir("/proc/self/fd")), sum(line.endswith(str(path)) for line in maps.splitlines())


def test_no_descriptor_nor_mapping_outlives_a_copy_that_succeeds_fails_or_is_aborted(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_direct_io(tmp_path)
    source_file = _mcap_of(source)
    before = _open_descriptors_and_mappings(source_file)
    _append(source, tmp_path / "done", _rewards())
    assert _open_descriptors_and_mappings(source_file) == before

    real_write = bag_append._DirectWriter.write

    def fails_on_the_second_slice(writer: Any, offset: int, count: int) -> int:
        if offset:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(writer, offset, count)

    monkeypatch.setattr(bag_append, "_COPY_SLICE_BYTES", 64 * 1024)
    monkeypatch.setattr(bag_append._DirectWriter, "write", fails_on_the_second_slice)
    (tmp_path / "failed").mkdir()
    copy = McapAppendCopy(source, tmp_path / "failed", "copy.mcap")
    copy.start()
    with pytest.raises(DatasetError, match=r"Input/output error"):
        copy.finish(REWARD_TOPIC, REWARD_TYPE, DEFAULT_QOS, [])
    assert _open_descriptors_and_mappings(source_file) == before

    (tmp_path / "aborted").mkdir()
    copy = McapAppendCopy(source, tmp_path / "aborted", "copy.mcap")
    copy.start()
    copy.abort()
    assert _open_descriptors_and_mappings(source_file) == before
