"""``tsg label`` on rosbag2 bags: a copy of each bag with ``/scene_graph/reward`` added, and a table of rewards.

A bag is replayed exactly as ``tsg eval`` replays it (the node's synchroniser, topics, decoding, camera pose and
:class:`~trusted_scene_graph.pipeline.ScenePipeline`), and each completed camera frame gets one ``DenseReward`` per
pair from :class:`~trusted_scene_graph.reward.RewardTracker`, so the labels are what the live node would have
published. Only the objects the pairs name are lifted and tracked (:attr:`RewardTracker.labels_needed`), without
relations; and, with ``tracking.smoothing`` 1 (the default: a perceived box then owes nothing to earlier frames), a
robot frame's fallback object (the gripper for the end effector) only in the frames where no usable pose of that frame
answers (:meth:`RewardTracker.labels_needed_at`). The rewards are then those of a full graph, and only the track ids
of perceived objects differ (a perceived gripper's track restarts when it is next needed), with one exception: when
several objects carry end-effector labels (two grippers, a false detection), the one the tracker remembers from an
earlier perceived frame may have lost its track meanwhile, and the highest score (ties: lowest id) then picks. An
absent object's message is said of the frame ("not in this frame (not detected, or without usable depth)"), not of
the graph, which holds the pairs' objects alone (``SideResolver(reduced_graphs=True)``).

The copy keeps every recorded message as its raw bytes, on a connection with the recorded type, definition, hash and
offered QoS; the source bag is only read. An mcap bag with a complete index is copied byte for byte (direct I/O on
ext4, else the kernel's copy_file_range) while its frames are labelled, and the rewards are appended to it as new
chunks with a new summary (:mod:`~trusted_scene_graph.dataset.bag_append`); other bags (sqlite3, split, compressed)
are re-written message by message, and so is an mcap file cut short (a killed recorder: no summary), from the messages
before the cut as ``tsg eval`` reads them, the run's summary saying how many. A bag without the config's camera topics
is refused, naming them and the bag's topics (it would give no frame). A reward message carries the frame's stamp
and is written at the log time of the frame's colour image (bag readers order by log time).

Episodes: a bag with ``/ground_truth`` (``tsg sim record``) starts a new episode where its episode number changes
(tracking, smoothing and the ``progress`` baseline restart). A frame stamped more than
:data:`~trusted_scene_graph.clock.JUMP_BACK_NS` before the previous one restarts that state too, as the live node
does: without ground truth it starts the next episode (numbered 1, 2, ... after 0; otherwise the bag is one
episode); within one ground-truth episode it keeps the episode's number and frame count. An episode that starts at a
frame stamped at or before the previous one (a jump, or a new ground-truth number there) drops the old timeline's
end-effector and goal poses, as the live node does. The end effector and the goal come from ``topics.ee_pose`` and
``topics.goal_pose`` in the bag (or tf with ``reward.ee_tf_frame``). A frame the pipeline rejects still gets its rows,
invalid with the reason (or held).

Output of one bag, written by :func:`label_bag` into a directory the engine commits atomically: the bag's files
(same storage format as the source; re-written mcap is uncompressed, appended chunks too) and ``rewards.parquet``
with one row per frame and pair (:data:`REWARD_COLUMNS`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.metadata import parse_qos
from rosbags.serde import SerdeError

from trusted_scene_graph.clock import follow_newest, jumped_back, seconds_to_ns
from trusted_scene_graph.config.nodes import REWARD_TOPIC, TF_STATIC_TOPIC, TF_TOPIC, input_topic_names, tf_topic_names
from trusted_scene_graph.config.schema import Config
from trusted_scene_graph.dataset import BagWriter, DatasetError
from trusted_scene_graph.dataset.bag import (
    DEFAULT_QOS,
    SCHEMA_FORMATS,
    STORAGE_READ_ERRORS,
    BagIndexError,
    McapStream,
    check_bag_path,
    is_bag_dir,
    open_rosbags,
    storage_files,
    storage_format,
    storage_path,
)
from trusted_scene_graph.dataset.bag_append import McapAppendCopy, NotAppendable
from trusted_scene_graph.dataset.messages import DENSE_REWARD_TYPE, GROUND_TRUTH_TYPE, dense_reward
from trusted_scene_graph.dataset.typestore import deserialize, make_typestore
from trusted_scene_graph.errors import TsgError
from trusted_scene_graph.evaluation.bag_eval import (
    GROUND_TRUTH_TOPIC,
    LOOKAHEAD_NS,
    forget_before_lookahead,
    nearest_by_stamp,
)
from trusted_scene_graph.files import partial_path
from trusted_scene_graph.geometry.tf_buffer import TransformBuffer, express_in
from trusted_scene_graph.label import LabelError
from trusted_scene_graph.perception.lifting import LiftedObject
from trusted_scene_graph.pipeline.messages import frame_from_msgs, stamp_to_ns
from trusted_scene_graph.pipeline.scene import PreparedFrame, ScenePipeline
from trusted_scene_graph.pipeline.sync import FrameSynchronizer
from trusted_scene_graph.reward import RewardSample, RewardTracker, SideResolver, pairs_from_config
from trusted_scene_graph.reward.sides import EE_FRAME, pose_topics
from trusted_scene_graph.reward.tracker import no_graph_reason
from trusted_scene_graph.text import plural

REWARDS_FILE = "rewards.parquet"
#: Key of a rewards table's metadata holding what the run reports of its item (:func:`rewards_table_note`).
NOTE_KEY = b"tsg_label.note"
#: Frames lifted as one batch (numpy's cost per call, not the arithmetic, dominates a frame of a few objects).
BATCH_FRAMES = 32
#: Queue items (frames, and the poses and ground truth read while they wait) at which a batch is labelled anyway.
MAX_QUEUED = 1024
POSE_TYPE = "geometry_msgs/msg/PoseStamped"
#: What :func:`label_bag`'s ``stage_seconds`` holds, in seconds: ``total``, and the stages in it.
LABEL_STAGES = {
    "open": "opening the bag (rosbags' Reader: metadata.yaml and every topic's QoS)",
    "read": "reading and deserialising the messages the frames use",
    "decode": "decoding a frame's images and camera info",
    "depth": "the depth backend (the sensor's depth, its invalid values as NaN)",
    "frame": "fitting the camera's pose to the support plane (extrinsic.source 'plane_fit' only)",
    "detect": "the detector (the 'sim' one: the pairs' objects from the instance image)",
    "lift": "lifting the detections to 3D boxes (each frame's share of its batch)",
    "track": "tracking the lifted objects into the frame's graph",
    "reward": "the rewards of the pairs from the graph and the poses",
    "write": "the reward messages (serialised) and table rows",
    "copy": "inspecting the source for the appended copy and appending to it (waiting for its copy, if still going)",
    "table": "writing rewards.parquet",
}
#: Columns of the rewards table: one row per camera frame and reward pair.
REWARD_COLUMNS = {
    "source": pa.string(),  # the bag (its directory name) or dataset the row labels
    # episode index (from /ground_truth, or the dataset's episode_index; else 0, then 1, 2, ... at clock resets)
    "episode": pa.int64(),
    "frame": pa.int64(),  # camera frame index within the episode, from 0
    "stamp_ns": pa.int64(),  # the frame's stamp (ns; a dataset's timestamp)
    "pair": pa.string(),
    "reward": pa.float64(),  # NaN when not valid
    "distance_m": pa.float64(),  # NaN when not valid
    "valid": pa.bool_(),
    "trust": pa.float32(),
    "held": pa.bool_(),
    "age_s": pa.float64(),
    "subject_id": pa.int64(),
    "object_id": pa.int64(),
    "subject_source": pa.string(),
    "object_source": pa.string(),
    "message": pa.string(),
}
_DECODE_ERRORS = (SerdeError, ValueError, struct.error, IndexError, UnicodeDecodeError)

# One pipeline per worker process and config: loading the detector (and a depth model) once, not once per item.
_PIPELINES: dict[str, ScenePipeline] = {}


def pipeline_for(config: Config) -> ScenePipeline:
    key = json.dumps(dict(config), sort_keys=True)  # C-fast; a YAML dump of the config cost ~10 ms per item
    if key not in _PIPELINES:
        _PIPELINES.clear()  # one config at a time: a worker never needs two models in memory
        _PIPELINES[key] = ScenePipeline(config, relations=False)  # rewards need objects only
    pipeline = _PIPELINES[key]
    pipeline.restart()  # as if built for this item alone: the same bytes whichever items the process labelled before
    return pipeline


def find_bags(path: Path) -> list[Path]:
    """``path`` itself when it is a bag, else the bags directly inside it, sorted by :func:`bag_key`: each bag
    directory, and each loose ``.mcap`` / ``.db3`` file (a folder of storage files without ``metadata.yaml``). A
    directory holding one storage file and no bag directory is a bag itself (a recorder killed before it wrote
    ``metadata.yaml``). Two bags whose keys (output names) collide are refused, naming both. Bags in folders deeper
    down are not taken (:func:`nested_bags` names them)."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"input {path} does not exist")
    if path.is_file() or (path / "metadata.yaml").exists():
        check_bag_path(path)
        return [path]
    loose = storage_files(path)
    folders = [p for p in path.iterdir() if p.is_dir() and is_bag_dir(p)]
    if len(loose) == 1 and not folders:
        return [path]
    bags = sorted([*loose, *folders], key=lambda bag: (bag_key(bag), bag.name))
    if not bags:
        raise LabelError(f"{path} is neither a rosbag2 bag, a folder of bags nor a LeRobot dataset (meta/info.json)")
    by_key: dict[str, list[str]] = {}
    for bag in bags:
        by_key.setdefault(bag_key(bag), []).append(bag.name + ("/" if bag.is_dir() else ""))
    clashes = {key: names for key, names in by_key.items() if len(names) > 1}
    if clashes:
        listed = "; ".join(f"{' and '.join(names)} would both be {key!r}" for key, names in clashes.items())
        raise LabelError(f"{path}: bags whose output names collide ({listed}); rename one of each, or label them "
                         "into separate --out directories")
    return bags


def nested_bags(path: Path) -> dict[str, list[str]]:
    """Per folder directly inside the folder of bags ``path`` that is no bag itself, the bags deeper inside it (their
    paths relative to it): :func:`find_bags` takes the bags directly inside ``path`` only, so the run says what it
    left out. A bag's own directory is not searched."""
    found: dict[str, list[str]] = {}
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not is_bag_dir(p)):
        for directory, subdirectories, _ in os.walk(folder):
            bags = {name for name in subdirectories if is_bag_dir(Path(directory, name))}
            found_here = [str(Path(directory, name).relative_to(folder)) for name in sorted(bags)]
            if found_here:
                found.setdefault(folder.name, []).extend(found_here)
            subdirectories[:] = sorted(set(subdirectories) - bags)
    return found


def short_list(values: Sequence[str], limit: int = 12) -> str:
    """``a, b, c and 4 more`` (``none`` when empty)."""
    return ", ".join(values[:limit]) + (f" and {len(values) - limit} more" if len(values) > limit else "") or "none"


def bag_key(path: Path) -> str:
    """The output name of a bag: its directory name (a lone .mcap file: its stem)."""
    return path.stem if path.is_file() else path.name


@dataclass(frozen=True)
class BagJob:
    """One bag to label (picklable: it crosses to worker processes and Ray tasks)."""

    source: str
    config: dict[str, Any]
    pairs: tuple[str, ...]
    replace_reward: bool = False  # leave a recorded /scene_graph/reward out of the copy instead of refusing the bag
    rewards_only: bool = False  # write a bag of the rewards alone, to play beside the source, instead of a copy


#: In each labelled bag's output directory: the source bag's files as they were labelled (:func:`bag_files_state`),
#: which a rerun checks before it skips the bag (:func:`check_labelled_bags`). Hidden: the directory is a bag.
BAG_SOURCE_FILE = ".tsg_source.json"


def label_bag_item(job: BagJob, staging_dir: Path, stage_seconds: Counter[str] | None = None) -> int:
    """The engine's work function for a bag; returns the number of camera frames labelled (``stage_seconds``: see
    :func:`label_bag`)."""
    config = Config(job.config)
    state = bag_files_state(Path(job.source))  # before reading: a bag changed meanwhile then shows on the rerun
    frames = label_bag(Path(job.source), Path(staging_dir), config, list(job.pairs), pipeline_for(config),
                       replace_reward=job.replace_reward, rewards_only=job.rewards_only, stage_seconds=stage_seconds)
    (Path(staging_dir) / BAG_SOURCE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    return frames


def bag_files_state(bag: Path) -> list[list[Any]]:
    """[relative name, size, mtime_ns] of each file of ``bag`` (a directory's files, or the one storage file)."""
    files = sorted(path for path in bag.rglob("*") if path.is_file()) if bag.is_dir() else [bag]
    return [[str(path.relative_to(bag)) if bag.is_dir() else path.name, (state := path.stat()).st_size,
             state.st_mtime_ns] for path in files]


def check_labelled_bags(bags: Sequence[Path], keys: Sequence[str], out: Path) -> None:
    """Refuse to skip a bag whose labelled output in ``out`` was made from other files: re-recorded, cut or appended
    to under the same name since (its files' sizes or modification times differ from those :data:`BAG_SOURCE_FILE`
    recorded). An output without the record (labelled before it was kept) is taken as it is."""
    changed = []
    for bag, key in zip(bags, keys, strict=True):
        record = out / key / BAG_SOURCE_FILE
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise LabelError(f"cannot read {record}: {exc}; remove {out / key} to label {bag} again") from None
        if recorded != bag_files_state(bag.resolve()):  # as the item recorded it (its job names the resolved path)
            changed.append(f"{bag} (labelled in {out / key})")
    if changed:
        several = len(changed) > 1
        raise LabelError(f"{'these bags have' if several else 'this bag has'} changed since {out} labelled "
                         f"{'them' if several else 'it'} (other files, sizes or modification times): "
                         f"{', '.join(changed)}; remove {'their outputs' if several else 'its output'} to label "
                         f"{'them' if several else 'it'} again, or label into a fresh --out")


def label_bag(source: Path, out_dir: Path, config: Config, pair_texts: Sequence[str],
              pipeline: ScenePipeline | None = None, replace_reward: bool = False, rewards_only: bool = False,
              stage_seconds: Counter[str] | None = None) -> int:
    """Write the labelled copy of ``source`` and its rewards table into the existing directory ``out_dir``.

    An mcap bag with a complete index (what rosbag2 and ``tsg sim record`` write) is copied on a background thread
    while the frames are labelled, and the rewards are appended to the copy
    (:class:`~trusted_scene_graph.dataset.bag_append.McapAppendCopy`); any other bag (sqlite3, split into several
    files, compressed, an mcap file without its index) is re-written message by message through rosbags; an mcap file
    rosbags cannot open (cut short) is read up to its cut as ``tsg eval`` reads it, and its rewards table notes it
    (:func:`rewards_table_note`). A bag without every camera topic of the config is refused before any work.

    A bag that already has the reward topic (recorded from a live node) is refused, unless ``replace_reward``: then
    the recorded rewards are left out of the copy (which is re-written message by message) and labelled again.

    With ``rewards_only`` the bag written holds the reward topic alone, in the source's storage format, to be played
    beside the source (``ros2 bag play -i SOURCE -i OUT``): nothing recorded is copied.

    ``stage_seconds`` (when given) is added the seconds spent in each stage (:data:`LABEL_STAGES`), as ``tsg bench
    label`` reports them."""
    clock = stage_seconds if stage_seconds is not None else Counter()
    start_s = time.perf_counter()
    pairs = pairs_from_config(config, list(pair_texts))
    pipeline = pipeline if pipeline is not None else ScenePipeline(config, relations=False)
    resolver = SideResolver.from_config(config, reduced_graphs=True)  # only the pairs' objects are lifted
    tracker = RewardTracker(pairs, resolver)
    opening_s = time.perf_counter()
    reader = _open_bag(source)
    clock["open"] += time.perf_counter() - opening_s
    try:
        inputs = input_topic_names(config, pipeline.needs_depth, pipeline.needs_instances)
        topics = sorted({c.topic for c in reader.connections})
        missing = [topic for _, topic in inputs if topic not in topics]
        if missing:
            # Every frame needs all of them: the bag would be "labelled" with no frame at all.
            raise LabelError(f"bag {source} has no {', '.join(missing)} (the config's camera topics: "
                             f"{', '.join(topic for _, topic in inputs)}); its topics are {short_list(topics)}; set "
                             "the config's topics.* (e.g. --set topics.color=...) to the bag's")
        recorded = [c for c in reader.connections if c.topic == REWARD_TOPIC]
        if recorded and rewards_only:
            raise LabelError(f"bag {source} already has {REWARD_TOPIC} (recorded from a live node?): a rewards-only "
                             "bag played beside it would add a second reward stream; label a copy instead, with "
                             "--replace-reward")
        if recorded and not replace_reward:
            raise LabelError(f"bag {source} already has {REWARD_TOPIC} (recorded from a live node?); label the "
                             "original recording, or pass --replace-reward to leave the recorded rewards out")
        if rewards_only:
            rows, notes = _label_rewritten(source, out_dir, reader, config, pipeline, tracker, _RewardsOnly, clock)
        else:
            try:
                if recorded:
                    raise NotAppendable(f"{REWARD_TOPIC} is replaced")  # an appended copy cannot leave a topic out
                if isinstance(reader, _SalvagedMcap):
                    raise NotAppendable("its index is lost")
                copying_s = time.perf_counter()
                copy = McapAppendCopy(source, out_dir, f"{bag_key(source)}.mcap")
                clock["copy"] += time.perf_counter() - copying_s
            except NotAppendable:
                rows, notes = _label_rewritten(source, out_dir, reader, config, pipeline, tracker, _StreamedCopy,
                                               clock)
            else:
                rows, notes = _label_appending(source, copy, reader, config, pipeline, tracker, clock)
    finally:
        reader.close()
    writing_s = time.perf_counter()
    if isinstance(reader, _SalvagedMcap):
        notes.insert(0, reader.salvage_note())
    write_rewards_table(rows, out_dir / REWARDS_FILE, "; ".join(notes) or None)
    clock["table"] += time.perf_counter() - writing_s
    clock["total"] += time.perf_counter() - start_s
    return len({(row["episode"], row["frame"]) for row in rows})


def _open_bag(source: Path) -> Reader | _SalvagedMcap:
    """rosbags' Reader on the bag; for an mcap file rosbags cannot open (cut short: a recorder that was killed, a
    copy that stopped, leaving no summary; or an index that no longer fits the file, bytes missing from its middle:
    :func:`~trusted_scene_graph.dataset.bag.check_mcap_index`), the messages before the damage, read front to back as
    ``tsg eval`` reads them (:class:`~trusted_scene_graph.dataset.bag.McapStream`)."""
    try:
        reader = open_rosbags(storage_path(source))
    except (*STORAGE_READ_ERRORS, OSError) as exc:
        stream = McapStream.open(source)
        if stream is None:
            raise DatasetError(f"cannot open bag {source}: {exc}") from exc
        # The index check names the file and the damage itself; rosbags' errors are said to be its.
        return _SalvagedMcap(source, stream, str(exc) if isinstance(exc, BagIndexError) else f"rosbags: {exc}")
    return reader


class _SalvagedMcap:
    """A cut-short mcap file as :class:`_Replay` reads rosbags' Reader: its connections, and (connection, log time,
    raw bytes) in file order, up to the damage. A channel keeps its schema's definition, as rosbags' mcap reader keeps
    it, so that a type the type store does not know (a custom message) is copied too; the hash is the definition's
    (:meth:`~trusted_scene_graph.dataset.bag.BagWriter.copy_connection`)."""

    def __init__(self, path: Path, stream: McapStream, open_error: str) -> None:
        self.path, self.stream, self.open_error = path, stream, open_error
        self._connections = {
            channel.id: Connection(channel.id, channel.topic, channel.msgtype,
                                   MessageDefinition(SCHEMA_FORMATS.get(channel.schema_encoding,
                                                                        MessageDefinitionFormat.NONE),
                                                     channel.schema_text), "",
                                   stream.message_counts[channel.id],
                                   ConnectionExtRosbag2("cdr", parse_qos(channel.metadata.get(
                                       "offered_qos_profiles", ""))), None)
            for channel in stream.channels.values()}

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    def messages(self, connections: Sequence[Connection] | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        channel_ids = None if connections is None else [c.id for c in connections]
        for channel, log_time_ns, raw in self.stream.messages(channel_ids):
            yield self._connections[channel.id], log_time_ns, raw

    def salvage_note(self) -> str:
        """What the labelled copy holds of the source, for the run's summary."""
        messages = plural(self.stream.message_count, "message")
        if self.stream.damage is None:
            return (f"the bag has no usable index ({self.open_error}): labelled from its {messages}, re-written "
                    "message by message")
        if self.stream.cut:
            return (f"the bag is cut short ({self.open_error}): labelled from the {messages} before the cut, "
                    "re-written message by message")
        return (f"the bag is damaged ({self.open_error}){self.stream.damage_detail}: labelled from the {messages} "
                "before the damage, re-written message by message")

    def close(self) -> None:
        pass  # the stream re-opens the file for each pass


def _label_appending(source: Path, copy: McapAppendCopy, reader: Reader, config: Config, pipeline: ScenePipeline,
                     tracker: RewardTracker, clock: Counter[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and the notes (:meth:`_Replay.notes`) of labelling into an appended copy."""
    copy.start()
    try:
        rewards = _AppendedRewards(make_typestore())
        replay = _Replay(config, pipeline, tracker, rewards, bag_key(source), clock)
        rows = replay.run(reader)
        finishing_s = time.perf_counter()
        copy.finish(REWARD_TOPIC, DENSE_REWARD_TYPE, DEFAULT_QOS, rewards.messages)
        clock["copy"] += time.perf_counter() - finishing_s
    except BaseException:
        copy.abort()
        raise
    return rows, replay.notes()


def _label_rewritten(source: Path, out_dir: Path, reader: Reader | _SalvagedMcap, config: Config,
                     pipeline: ScenePipeline, tracker: RewardTracker, output: type[_StreamedCopy | _RewardsOnly],
                     clock: Counter[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Label into a bag written message by message through rosbags (in the source's storage format): a streamed
    copy, or the rewards alone; returns the rows and the notes (:meth:`_Replay.notes`)."""
    bag_dir = out_dir / bag_key(source)
    with BagWriter(bag_dir, storage_format(storage_path(source))) as writer:
        if output.is_copy:  # a copy keeps what the recording says of itself; a bag of rewards is no copy
            writer.set_custom_data(_custom_data(reader))
        replay = _Replay(config, pipeline, tracker, output(writer, reader.connections), bag_key(source), clock)
        rows = replay.run(reader)
    # The committed directory is the bag itself: move its files up from the named subdirectory (which gave the
    # storage file its name).
    for item in bag_dir.iterdir():
        item.rename(out_dir / item.name)
    bag_dir.rmdir()
    return rows, replay.notes()


def _custom_data(reader: Reader | _SalvagedMcap) -> dict[str, str]:
    """The source's metadata.yaml ``custom_data`` (none for a storage file read on its own, or a salvaged one)."""
    metadata = getattr(getattr(reader, "storage", None), "metadata", None)  # rosbags' bag directory reader has it
    return dict(getattr(metadata, "custom", None) or {})


class _StreamedCopy:
    """The copy written as the bag is read: every message through rosbags' writer, the rewards among them."""

    copies_messages = True
    is_copy = True

    def __init__(self, writer: BagWriter, connections: Sequence[Any]) -> None:
        self.writer, self.typestore = writer, writer.typestore
        # A recorded reward topic (replace_reward) is left out: the rewards written here replace it.
        self.copies = {source.id: writer.copy_connection(source) for source in connections
                       if source.topic != REWARD_TOPIC}
        writer.add_topic(REWARD_TOPIC, DENSE_REWARD_TYPE, DEFAULT_QOS)

    def message(self, connection: Any, raw: bytes, log_time_ns: int) -> None:
        copy = self.copies.get(connection.id)
        if copy is not None:
            self.writer.write_raw(copy, raw, log_time_ns)

    def reward(self, msg: Any, log_time_ns: int) -> None:
        self.writer.write(REWARD_TOPIC, msg, log_time_ns)


class _RewardsOnly:
    """A bag of the rewards alone, written as they come; the recorded messages are read only where a frame needs
    them and never copied."""

    copies_messages = False
    is_copy = False

    def __init__(self, writer: BagWriter, connections: Sequence[Any]) -> None:
        self.writer, self.typestore = writer, writer.typestore
        writer.add_topic(REWARD_TOPIC, DENSE_REWARD_TYPE, DEFAULT_QOS)

    def message(self, connection: Any, raw: bytes, log_time_ns: int) -> None:
        pass

    def reward(self, msg: Any, log_time_ns: int) -> None:
        self.writer.write(REWARD_TOPIC, msg, log_time_ns)


class _AppendedRewards:
    """The rewards only, serialised, to be appended to a copy of the bag made meanwhile; the recorded messages are
    read only where a frame needs them."""

    copies_messages = False
    is_copy = True  # the output is a copy of the bag (made meanwhile by McapAppendCopy)

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore
        self.messages: list[tuple[int, bytes]] = []

    def message(self, connection: Any, raw: bytes, log_time_ns: int) -> None:
        pass  # McapAppendCopy copies the recorded messages meanwhile

    def reward(self, msg: Any, log_time_ns: int) -> None:
        self.messages.append((log_time_ns, bytes(self.typestore.serialize_cdr(msg, DENSE_REWARD_TYPE))))


@dataclass(frozen=True)
class _Incomplete:
    """A colour image whose frame never completed."""

    stamp_ns: int
    reason: str
    colour_log_ns: int


@dataclass(frozen=True)
class _Frame:
    """A frame waiting in the batch: prepared (or why not), with the end effector's tf position at its stamp."""

    stamp_ns: int
    colour_log_ns: int
    prepared: PreparedFrame | str
    ee_position_m: np.ndarray | None


@dataclass(frozen=True)
class _Episode:
    stamp_ns: int
    episode: int


@dataclass(frozen=True)
class _Pose:
    frame: str
    stamp_ns: int
    frame_id: str
    position_m: tuple[float, float, float]


class _Replay:
    """One pass over a bag: replay the camera frames, write the rewards, copy every message (streamed copies)."""

    def __init__(self, config: Config, pipeline: ScenePipeline, tracker: RewardTracker,
                 out: _StreamedCopy | _RewardsOnly | _AppendedRewards, source_name: str,
                 clock: Counter[str]) -> None:
        self.config, self.pipeline, self.tracker, self.out = config, pipeline, tracker, out
        self.source_name = source_name
        # Seconds per stage (LABEL_STAGES); a few perf_counter calls per message and frame, so always kept.
        self.clock = clock
        self.inputs = dict(input_topic_names(config, pipeline.needs_depth, pipeline.needs_instances))
        self.topic_to_input = {topic: name for name, topic in self.inputs.items()}
        self.sync = FrameSynchronizer(list(self.inputs), seconds_to_ns(config["sync.tolerance_s"]),
                                      config["sync.buffer_size"])
        self.tf = TransformBuffer(max_age_ns=seconds_to_ns(config["extrinsic.tf_max_age_s"]))
        # The poses the live node subscribes (none on topics.ee_pose with reward.ee_tf_frame), moved into the graph
        # frame with the bag's tf only where the node reads tf (tf_topic_names): elsewhere the node keeps a pose in
        # another frame unused, and so must the labels.
        self.pose_topics = {topic: frame for frame, topic in pose_topics(config)}
        self.pose_tf = self.tf if tf_topic_names(config) else None
        self.poses_without_tf: Counter[tuple[str, str]] = Counter()  # (topic, frame) -> poses left unused for it
        self.decoded = {*self.inputs.values(), TF_TOPIC, TF_STATIC_TOPIC, GROUND_TRUTH_TOPIC, *self.pose_topics}
        self.episodes: dict[int, int] = {}  # ground-truth stamp -> episode
        self.read_episodes: dict[int, int] = {}  # the same, as read (the look-ahead's; forgotten as frames are queued)
        self.pending: list[tuple[int, dict[str, Any], int, int]] = []  # stamp, msgs, colour log time, completed log
        self.colour_log_ns: dict[int, int] = {}  # colour image stamp -> its log time
        self.episode: int | None = None
        self.frame_in_episode = 0
        self.last_stamp_ns: int | None = None  # of the previous frame (or incomplete colour image) finished
        self.queued_stamp_ns: int | None = None  # of the previous one queued
        self.queued_episode: int | None = None  # the episode of the previous one queued, as self.episode will be
        self.newest_colour_ns: int | None = None  # the newest colour image's stamp on this timeline
        self.rows: list[dict[str, Any]] = []
        self.labels = tracker.labels_needed
        # What the resolver's pose histories will hold when a frame is finished is known when the frame is queued:
        # every pose read until then and the tf positions of this and every earlier frame (whatever became of
        # them), added in the order they are applied in, and restarted at the same frames (an episode that starts
        # where the clock went back).
        self.perceive_posed = perceives_posed_frames(tracker, config)
        self.lookahead = tracker.resolver.new_pose_histories()
        # Frames lifted together; 'plane_fit' fits each frame's camera pose in order, so its frames go one by one.
        self.batch_frames = 1 if config["extrinsic.source"] == "plane_fit" else BATCH_FRAMES
        self.batch: list[_Incomplete | _Frame | _Episode | _Pose] = []
        # 'static': frames (per camera frame) whose camera the bag's tf places elsewhere than the config does.
        self.extrinsic_differs_from_tf: Counter[str] = Counter()
        # Per topic, the messages whose bytes did not deserialise, and the first one's error.
        self.undecodable: Counter[str] = Counter()
        self.first_decode_error: dict[str, str] = {}

    def notes(self) -> list[str]:
        """What the run's summary should say of this bag's labels (see :func:`write_rewards_table`)."""
        return [*(f"{plural(count, 'message')} on {topic} did not decode (the first: "
                  f"{self.first_decode_error[topic]}): no frame used them"
                  + (" (their camera frames are incomplete)" if topic in self.topic_to_input else "")
                  + ("; the copy holds them as recorded" if self.out.is_copy else "")
                  for topic, count in self.undecodable.items()),
                *(f"the bag's tf places camera frame {camera_frame!r} in graph frame {self.pipeline.frame_id!r} "
                  f"elsewhere than the config's extrinsic (extrinsic.source 'static', which the rewards use) in "
                  f"{plural(count, 'frame')}: to use the bag's camera pose, pass --set extrinsic.source=tf (a tsg sim "
                  "record bag: --config config/benchmark.yaml)"
                  for camera_frame, count in self.extrinsic_differs_from_tf.items()),
                *(f"poses on {topic} in frame {frame_id!r}, not the graph frame {self.pipeline.frame_id!r}: "
                  f"{count} unused, as live, since with this config (extrinsic.source "
                  f"{self.config['extrinsic.source']!r}, no reward.ee_tf_frame) the node reads no tf to move them "
                  "there; --set extrinsic.source=tf (or reward.ee_tf_frame) reads the bag's tf"
                  for (topic, frame_id), count in self.poses_without_tf.items())]

    def run(self, reader: Reader | _SalvagedMcap) -> list[dict[str, Any]]:
        typestore = self.out.typestore
        # Without a streamed copy only the topics a frame needs are read (the index skips the others' bytes).
        wanted = [c for c in reader.connections if c.topic in self.decoded]
        if self.out.copies_messages:
            messages = reader.messages()
        else:
            messages = reader.messages(connections=wanted) if wanted else iter(())  # rosbags reads all for []
        clock = self.clock
        while True:
            reading_s = time.perf_counter()
            try:
                connection, log_time_ns, raw = next(messages)
            except StopIteration:
                break
            except STORAGE_READ_ERRORS as exc:
                raise DatasetError(f"bag {reader.path} is damaged ({type(exc).__name__}: {exc}); tsg label copies "
                                   "complete bags only") from exc
            clock["read"] += time.perf_counter() - reading_s
            self.out.message(connection, raw, log_time_ns)
            if connection.topic not in self.decoded:
                continue  # only the topics a frame uses move the labelling clock, whichever way the bag is copied
            if connection.msgtype in typestore.fielddefs:
                reading_s = time.perf_counter()
                try:
                    msg = deserialize(typestore, raw, connection.msgtype)
                except _DECODE_ERRORS as exc:
                    # Copied all the same; a camera frame missing it never completes, and the notes say why.
                    self.undecodable[connection.topic] += 1
                    self.first_decode_error.setdefault(connection.topic, f"{type(exc).__name__}: {exc}")
                    continue
                finally:
                    clock["read"] += time.perf_counter() - reading_s
                self._on_message(connection.topic, connection.msgtype, msg, log_time_ns)
            self._label_ready(log_time_ns)
        self._label_ready(None)
        return self.rows

    def _on_message(self, topic: str, msgtype: str, msg: Any, log_time_ns: int) -> None:
        self._follow_timeline(topic, msg)
        if topic in self.topic_to_input:
            name = self.topic_to_input[topic]
            stamp_ns = stamp_to_ns(msg.header.stamp)
            if name == "color":
                self.colour_log_ns[stamp_ns] = log_time_ns
            if self.sync.add(name, stamp_ns, msg):
                stamp_ns, msgs = self.sync.take_latest()
                colour_log_ns = self.colour_log_ns.pop(stamp_ns, log_time_ns)
                self.pending.append((stamp_ns, msgs, colour_log_ns, log_time_ns))
        elif topic in (TF_TOPIC, TF_STATIC_TOPIC) and msgtype == "tf2_msgs/msg/TFMessage":
            self.tf.add(msg, static=topic == TF_STATIC_TOPIC)
        elif topic == GROUND_TRUTH_TOPIC and msgtype == GROUND_TRUTH_TYPE:
            event = _Episode(stamp_to_ns(msg.header.stamp), int(msg.episode))
            self.read_episodes[event.stamp_ns] = event.episode
            self._apply_or_queue(event)
        elif topic in self.pose_topics and msgtype == POSE_TYPE:
            p = msg.pose.position
            stamp_ns = stamp_to_ns(msg.header.stamp)
            if not all(math.isfinite(value) for value in (p.x, p.y, p.z)):
                return  # no position: the frames near it have no pose (their rows say so, or perception answers)
            # In the graph frame when the tf read so far can put it there, as the node does on arrival.
            frame_id, position_m = express_in(self.pose_tf, self.pipeline.frame_id, msg.header.frame_id,
                                              (p.x, p.y, p.z), stamp_ns)
            if self.pose_tf is None and frame_id != self.pipeline.frame_id.lstrip("/"):
                self.poses_without_tf[(topic, frame_id)] += 1  # said in the run's summary (notes)
            pose = _Pose(self.pose_topics[topic], stamp_ns, frame_id, tuple(position_m.tolist()))
            self.lookahead[pose.frame].add(pose.stamp_ns, pose.frame_id, pose.position_m)
            self._apply_or_queue(pose)

    def _follow_timeline(self, topic: str, msg: Any) -> None:
        """At the first colour image of a new timeline (stamped more than JUMP_BACK_NS before the newest colour
        image: a simulator reset), label everything of the old one first, its colour images that never completed a
        frame included, so that no frame of the new one is queued among them (the new one starts a new episode:
        :meth:`_start_episode_at`). Judged on the colour images alone, as every stream is judged against itself
        (:mod:`~trusted_scene_graph.clock`): a camera whose clock is not the robot's is no reset. The synchroniser, tf
        and pose histories restart on their own streams' jumps."""
        if self.topic_to_input.get(topic) != "color":
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self.newest_colour_ns, jumped = follow_newest(stamp_ns, self.newest_colour_ns)
        if jumped:
            self._label_ready(None)

    def _apply_or_queue(self, event: _Episode | _Pose) -> None:
        """Ground truth and poses are used when a frame is finished: while frames wait in the batch, they wait
        behind them, so each frame is finished knowing exactly what had been read when it became ready."""
        if self.batch:
            self.batch.append(event)
            if len(self.batch) >= MAX_QUEUED:  # frames stopped while poses keep coming: finish what waits
                self._label_batch()
        else:
            self._apply(event)

    def _apply(self, event: _Episode | _Pose) -> None:
        if isinstance(event, _Episode):
            self.episodes[event.stamp_ns] = event.episode
        else:
            self.tracker.resolver.poses[event.frame].add(event.stamp_ns, event.frame_id, event.position_m)

    def _label_ready(self, now_ns: int | None) -> None:
        """Queue the frames completed at least LOOKAHEAD_NS of log time ago (or all, at the end), so ground truth
        and poses logged a little after a frame's images are there; label the queue as one batch once it holds
        :data:`BATCH_FRAMES` frames (or at the end)."""
        while self.pending and (now_ns is None or now_ns - self.pending[0][3] >= LOOKAHEAD_NS):
            stamp_ns, msgs, colour_log_ns, _ = self.pending.pop(0)
            self._queue_incomplete(before_ns=stamp_ns)
            self._queue_frame(stamp_ns, msgs, colour_log_ns)
            self.tf.forget_before(stamp_ns)
            if sum(isinstance(item, _Frame) for item in self.batch) >= self.batch_frames:
                self._label_batch()
        if now_ns is None:
            self._queue_incomplete(before_ns=None)
            self._label_batch()

    def _queue_incomplete(self, before_ns: int | None) -> None:
        """Rows (invalid, or held) for the colour images stamped before ``before_ns`` (all, at the end) whose frame
        never completed: every colour image is a frame of the table, in stamp order."""
        missing = [name for name in self.inputs if name != "color"]
        for stamp_ns in sorted(s for s in self.colour_log_ns if before_ns is None or s < before_ns):
            self._restart_lookahead_at(stamp_ns)
            reason = (f"frame incomplete: no {' / '.join(missing)} message within sync.tolerance_s "
                      f"({self.sync.tolerance_ns / 1e9:g} s) of this colour image")
            self.batch.append(_Incomplete(stamp_ns, reason, self.colour_log_ns.pop(stamp_ns)))

    def _queue_frame(self, stamp_ns: int, msgs: dict[str, Any], colour_log_ns: int) -> None:
        """Everything of a frame that needs the tf as of now (its camera pose, the end effector's tf pose), and its
        detections; lifting and the rest wait for the batch."""
        if self.batch_frames == 1:
            # 'plane_fit' fits the camera pose from the frames of the episode: a new one must start before it (after
            # the incomplete colour images queued before this frame).
            self._label_batch()
            self._start_episode_at(stamp_ns)
        self._restart_lookahead_at(stamp_ns)
        forget_before_lookahead(self.read_episodes, stamp_ns)  # where self.episodes forgets at this frame's finish
        ee_position_m = tf_ee_position(self.tf, self.config, stamp_ns)
        if ee_position_m is not None:
            self.lookahead[EE_FRAME].add(stamp_ns, self.pipeline.frame_id, ee_position_m)
        # Objects only, and only those the pairs need: a reward needs no relations nor other objects.
        labels = (self.labels if self.perceive_posed
                  else self.tracker.labels_needed_at(stamp_ns, self.pipeline.frame_id, self.lookahead))
        camera_frame = msgs["camera_info"].header.frame_id
        if self.pipeline.static_extrinsic_differs_from_tf(self.tf, camera_frame, stamp_ns):
            self.extrinsic_differs_from_tf[camera_frame] += 1  # said in the run's summary (notes)
        try:
            if self.config["extrinsic.source"] == "tf":
                self.pipeline.camera_pose_from_tf(self.tf, camera_frame, stamp_ns)
            decoding_s = time.perf_counter()
            try:
                frame = frame_from_msgs(msgs["color"], msgs.get("depth"), msgs["camera_info"], msgs.get("instances"),
                                        rectified=self.config["topics.rectified"])
            finally:
                self.clock["decode"] += time.perf_counter() - decoding_s
            prepared: PreparedFrame | str = self.pipeline.prepare(frame, labels=labels)
        except TsgError as exc:
            prepared = no_graph_reason(exc)
        self.batch.append(_Frame(stamp_ns, colour_log_ns, prepared, ee_position_m))

    def _label_batch(self) -> None:
        """Lift the queued frames as one batch, then finish each in order, with the ground truth and poses that
        were read before it became ready."""
        lifted = self._lift_batch()
        batch, self.batch = self.batch, []
        for item in batch:
            if isinstance(item, (_Episode, _Pose)):
                self._apply(item)
            elif isinstance(item, _Incomplete):
                self._start_episode_at(item.stamp_ns)
                # The live node never sees such a frame: not in the smoothing window, so smoothing matches it.
                self._write(self.tracker.skip(item.stamp_ns, item.reason, in_window=False), item.colour_log_ns)
            else:
                self._start_episode_at(item.stamp_ns)
                outcome = lifted[id(item)]
                if not isinstance(outcome, str):
                    try:
                        graph = self.pipeline.finish(item.prepared, outcome, relations=False)
                    except TsgError as exc:
                        outcome = no_graph_reason(exc)
                    else:
                        for stage, stage_ms in graph.timing_ms.items():  # the pipeline's: depth, detect, lift, track
                            self.clock[stage] += stage_ms / 1e3
                # The robot's pose does not depend on the image (the node adds it for a rejected frame too).
                add_ee_position(self.tracker.resolver, self.config, item.stamp_ns, item.ee_position_m)
                rewarding_s = time.perf_counter()
                if isinstance(outcome, str):
                    samples = self.tracker.skip(item.stamp_ns, outcome)
                else:
                    samples = self.tracker.update(graph)
                writing_s = time.perf_counter()
                self._write(samples, item.colour_log_ns)
                self.clock["reward"] += writing_s - rewarding_s
                self.clock["write"] += time.perf_counter() - writing_s
                forget_before_lookahead(self.episodes, item.stamp_ns)

    def _lift_batch(self) -> dict[int, list[LiftedObject] | str]:
        """Each queued frame's lifted objects, or why it has none (by ``id`` of its queue item). A frame whose
        lifting fails costs only its own rows: the batch is then lifted frame by frame."""
        frames = [item for item in self.batch if isinstance(item, _Frame)]
        lifted: dict[int, list[LiftedObject] | str] = {
            id(frame): frame.prepared for frame in frames if isinstance(frame.prepared, str)}
        ready = [frame for frame in frames if not isinstance(frame.prepared, str)]
        try:
            lifted.update(zip((id(frame) for frame in ready), self.pipeline.lift([f.prepared for f in ready]),
                              strict=True))
        except TsgError:
            for frame in ready:
                try:
                    lifted[id(frame)] = self.pipeline.lift([frame.prepared])[0]
                except TsgError as exc:
                    lifted[id(frame)] = no_graph_reason(exc)
        return lifted

    def _start_episode_at(self, stamp_ns: int) -> None:
        """Start a new episode when the ground truth's episode number changes at this frame, or when the clock jumped
        back (see the module docstring). Within one ground-truth episode a jump restarts the rewards' and tracks'
        state, as live, and keeps the episode's number and frame count (the table's rows stay unique)."""
        truth_episode = nearest_by_stamp(self.episodes, stamp_ns, self.sync.tolerance_ns)
        previous_ns, self.last_stamp_ns = self.last_stamp_ns, stamp_ns
        jumped = jumped_back(stamp_ns, previous_ns)
        if _clock_went_back_at_new_episode(stamp_ns, previous_ns, truth_episode, self.episode):
            self.tracker.resolver.restart_poses(previous_ns)  # the old timeline's poses, as live; and the look-ahead
        episode = _episode_of_frame(truth_episode, self.episode, jumped)
        if episode != self.episode:
            # Unnumbered frames before a jump were episode 0: the jump ends it too.
            if self.episode is not None or truth_episode is None:
                self._restart_state()
                self.frame_in_episode = 0
            self.episode = episode
        elif jumped:
            self._restart_state()

    def _restart_lookahead_at(self, stamp_ns: int) -> None:
        """The look-ahead's restart of the old timeline's poses (:meth:`_start_episode_at`, at the same frame: the
        items are finished in the order they are queued; the ground truth read so far is what it will have applied),
        as the live node restarts them where an episode starts with the clock gone back."""
        truth_episode = nearest_by_stamp(self.read_episodes, stamp_ns, self.sync.tolerance_ns)
        previous_ns, self.queued_stamp_ns = self.queued_stamp_ns, stamp_ns
        if _clock_went_back_at_new_episode(stamp_ns, previous_ns, truth_episode, self.queued_episode):
            for history in self.lookahead.values():
                history.restart(previous_ns)
        self.queued_episode = _episode_of_frame(truth_episode, self.queued_episode,
                                                jumped_back(stamp_ns, previous_ns))

    def _restart_state(self) -> None:
        self.pipeline.start_sequence()
        self.tracker.start_episode()

    def _write(self, samples: list[RewardSample], colour_log_ns: int) -> None:
        for sample in samples:
            self.out.reward(dense_reward(sample, self.config["graph_frame"]), colour_log_ns)
            self.rows.append(reward_row(sample, self.source_name, self.episode or 0, self.frame_in_episode))
        self.frame_in_episode += 1


def _episode_of_frame(truth_episode: int | None, episode: int | None, jumped: bool) -> int | None:
    """A frame's episode number: the ground truth's at its stamp; without one, the episode so far (None before any
    number), or the next one where the clock jumped back (the unnumbered frames before it being episode 0)."""
    if truth_episode is not None:
        return truth_episode
    return (episode or 0) + 1 if jumped else episode


def _clock_went_back_at_new_episode(stamp_ns: int, previous_ns: int | None, truth_episode: int | None,
                                    episode: int | None) -> bool:
    """Whether the frame stamped ``stamp_ns`` starts an episode where the clock went back (stamped before the previous
    frame, ``previous_ns``: an equal stamp drops nothing), so that the pose histories drop the old timeline's poses:
    at a jump back, and
    where the ground truth's episode number (``truth_episode``, at the frame) differs from the episode's so far. The
    live node restarts them where its clock went back at an episode start
    (:class:`~trusted_scene_graph.clock.EpisodeStart`), a reset request served by a step back of less than a jump
    included, which that number records."""
    if previous_ns is None or stamp_ns >= previous_ns:
        return False
    new_truth_episode = truth_episode is not None and episode is not None and truth_episode != episode
    return jumped_back(stamp_ns, previous_ns) or new_truth_episode


def perceives_posed_frames(tracker: RewardTracker, config: Mapping[str, Any]) -> bool:
    """Whether a labeller must perceive a robot frame's fallback object (the gripper) also where the frame's pose
    answers: with track smoothing, a perceived box depends on the track's earlier frames; with an ``#id`` side,
    every object is needed anyway. Otherwise :meth:`RewardTracker.labels_needed_at` gives each frame's labels."""
    return tracker.labels_needed is None or config["tracking.smoothing"] != 1.0


def tf_ee_position(tf: TransformBuffer, config: Mapping[str, Any], stamp_ns: int) -> np.ndarray | None:
    """With ``reward.ee_tf_frame``, the end effector's position in the graph frame at ``stamp_ns`` from the tf (None:
    no such setting, or the tf has no transform)."""
    frame = config["reward.ee_tf_frame"]
    if not frame:
        return None
    transform = tf.lookup(config["graph_frame"], frame, stamp_ns)
    return None if transform is None else transform.translation_m


def add_ee_position(resolver: SideResolver, config: Mapping[str, Any], stamp_ns: int,
                    position_m: np.ndarray | None) -> None:
    """Add an end-effector position in the graph frame at ``stamp_ns`` to the resolver (None: nothing to add)."""
    if position_m is not None:
        resolver.poses[EE_FRAME].add(stamp_ns, config["graph_frame"], position_m)


def reward_row(sample: RewardSample, source: str, episode: int, frame: int) -> dict[str, Any]:
    return {"source": source, "episode": int(episode), "frame": int(frame), "stamp_ns": int(sample.stamp_ns),
            "pair": sample.pair, "reward": float(sample.reward), "distance_m": float(sample.distance_m),
            "valid": bool(sample.valid), "trust": float(sample.trust), "held": bool(sample.held),
            "age_s": float(sample.age_s), "subject_id": int(sample.subject_id), "object_id": int(sample.object_id),
            "subject_source": sample.subject_source, "object_source": sample.object_source,
            "message": sample.message}


def write_rewards_table(rows: Sequence[Mapping[str, Any]], path: Path, note: str | None = None) -> None:
    """The rows as a parquet table with :data:`REWARD_COLUMNS` (also when empty); ``note`` (what the run should
    report of the item, e.g. a salvaged bag) goes into its metadata as :data:`NOTE_KEY`."""
    schema = pa.schema(list(REWARD_COLUMNS.items()), metadata={NOTE_KEY: note.encode()} if note else None)
    table = pa.Table.from_pylist(list(rows), schema=schema)
    pq.write_table(table, path)


def rewards_table_note(path: Path) -> str | None:
    """The ``note`` :func:`write_rewards_table` left in the table at ``path`` (None: it has none)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"cannot read rewards table {path}: {exc}") from exc
    note = metadata.get(NOTE_KEY)
    return None if note is None else note.decode()


def read_rewards_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"cannot read rewards table {path}: {exc}") from exc


def merge_rewards_tables(paths: Sequence[Path], out_path: Path) -> pa.Table:
    """Concatenate per-item tables into one file, written atomically; returns the joined table."""
    tables = [read_rewards_table(p).replace_schema_metadata(None) for p in paths]  # notes are per item
    schema = pa.schema(list(REWARD_COLUMNS.items()))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    partial = partial_path(out_path)
    pq.write_table(table, partial)
    partial.replace(out_path)
    return table


def valid_fraction(table: pa.Table) -> dict[tuple[str, str], tuple[float, str]]:
    """Per (source, pair): the fraction of rows whose reward is valid, and the most common reason of the others."""
    sources = table.column("source").to_numpy(zero_copy_only=False)
    pairs = table.column("pair").to_numpy(zero_copy_only=False)
    valid = table.column("valid").to_numpy(zero_copy_only=False)
    messages = table.column("message").to_numpy(zero_copy_only=False)
    out = {}
    for key in sorted(set(zip(sources.tolist(), pairs.tolist(), strict=True))):
        rows = (sources == key[0]) & (pairs == key[1])
        reasons = Counter(messages[rows & ~valid].tolist()).most_common(1)
        out[key] = (float(np.mean(valid[rows])), reasons[0][0] if reasons else "")
    return out
