"""Copy an mcap bag and add one topic at about the cost of a file copy (the fast path of ``tsg label``).

The streaming copy (:class:`~trusted_scene_graph.dataset.BagWriter`) re-writes every message through rosbags; this
module instead copies the source file's bytes up to its ``DataEnd`` record verbatim (on a background thread, so the
caller labels meanwhile: by direct I/O from the source's mapped pages on ext4, where the kernel's copy would cost a
CPU copy of every byte and its writeback, else by copy_file_range, which shares the blocks on btrfs and XFS; see
:func:`_copy_range`) and appends, following the MCAP spec (https://mcap.dev/spec):

1. a Schema and a Channel record for the new topic (ids above the source's), exactly as rosbags' mcap writer would
   write them for ``add_connection`` (schema = the type store's definition, channel metadata = the offered QoS);
2. Chunk records (uncompressed, at most :data:`CHUNK_SIZE_BYTES` of messages each) holding the new messages in
   log-time order, each followed by its MessageIndex record;
3. a fresh ``rosbag2`` Metadata record (``serialized_metadata``, as rosbags writes it); the source's stays in the
   copied data section, but only the new one is indexed;
4. ``DataEnd`` (data section CRC 0: not computed, which the spec allows) and a new summary section: every Schema and
   Channel, Statistics, ChunkIndex records (the source's, whose offsets stay valid, and the new ones), the source's
   AttachmentIndex records, the MetadataIndex records (the source's other than ``rosbag2``, and the new one),
   SummaryOffset records and the Footer with its summary CRC.

Every original chunk, message index and offset is byte-identical in the output. ``metadata.yaml`` is written next to
the file in the version 9 layout of rosbags' ``Writer.close()``, dumped with PyYAML (rosbags' ruamel dump is the slow
part of closing a bag), listing what the streaming copy lists: the source's connections, as rosbags' readers make them
(from its metadata.yaml, or a lone file's channels), with the messages rosbags would read on each, plus the new topic.
The source is read with PyYAML's C loader and the mcap library rather than through a rosbags ``Reader``, whose
ruamel parsing alone costs about twice the whole copy. The source's ``custom_data`` is kept (as the streaming copy
keeps it).

What is not supported (:func:`append_unsupported_reason` says why; the caller then falls back to the streaming
copy): sqlite3 bags, bags of more than one storage file, file- or message-compressed bags, serialisation formats
other than CDR, mcap files without a footer (truncated, or a recorder that was killed), without a summary, a
``DataEnd`` record before it or a Statistics record, and files whose chunk indexes do not account for every message
the statistics count. The last one covers messages written outside chunks and chunks without message indexes: indexed
readers (rosbags, the mcap library) never see such messages, so the copy would carry them in its bytes but its index
would keep hiding them, while the streaming copy leaves them out; rather than keep two copies that differ, such a
file is refused.
"""

from __future__ import annotations

import errno
import functools
import mmap
import operator
import os
import struct
import textwrap
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import yaml
from rosbags.interfaces import ConnectionExtRosbag2, Qos
from rosbags.rosbag2.metadata import dump_qos_v9, parse_qos

from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.bag import BAG_VERSION, MCAP_READ_ERRORS, SCHEMA_FORMATS, QosSpec, storage_files
from trusted_scene_graph.dataset.typestore import make_typestore

if TYPE_CHECKING:
    from mcap.summary import Summary

#: Uncompressed bytes of messages per appended chunk (what rosbags' and the mcap library's writers use).
CHUNK_SIZE_BYTES = 1 << 20
#: The name of the Metadata record rosbag2 (and rosbags) store the bag's metadata.yaml in.
ROSBAG2_METADATA = "rosbag2"

_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_DATA_END = 0x02, 0x0F
_FOOTER_BYTES = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, summary_crc
_DATA_END_BYTES = 1 + 8 + 4  # opcode, length, data_section_crc
_MAX_ID = 0xFFFF  # schema and channel ids are uint16
_MAX_TIME_NS = 2**64 - 1
_NO_MESSAGES_START_NS = 2**63 - 1  # what rosbags' Writer stores as the start of a bag without messages
_IDL_PREFIX = "=" * 80 + "\nIDL: "  # rosbags tells IDL definitions from .msg ones by this
# copy_file_range/sendfile are refused for these (other filesystem, not implemented, unsupported file types): the
# copy then falls back to the next method, from where it stopped.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
_COPY_SLICE_BYTES = 64 << 20  # per call: small enough that abort() stops a copy quickly, large enough to be cheap
_BUFFER_BYTES = 1 << 20
#: Filesystems whose output is written with direct I/O (see :func:`_copy_range`): those on which copy_file_range
#: copies the data through the page cache. On btrfs and XFS it shares the source's extents instead (a reflink, next
#: to free), so they, and any filesystem not listed, keep the kernel copy.
DIRECT_COPY_FILESYSTEMS = frozenset({"ext4", "ext3", "ext2"})
# Direct I/O moves whole blocks at block-aligned offsets from block-aligned memory; 4096 covers the 512 and 4096 byte
# logical blocks of disks (a filesystem that needs more refuses with EINVAL and the kernel copy takes over), and the
# source is mapped at offsets that are multiples of it, which must also be multiples of the page size.
_DIRECT_ALIGN_BYTES = max(4096, mmap.ALLOCATIONGRANULARITY)

_YAML_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class NotAppendable(DatasetError):
    """The fast path cannot copy this bag; the message says why (the caller falls back to the streaming copy)."""


@dataclass(frozen=True)
class _Connection:
    """A source connection as rosbags' reader sees it, with what a copy's metadata.yaml lists for it."""

    topic: str
    msgtype: str
    serialization_format: str
    qos: tuple[Qos, ...]
    digest: str  # as stored; empty when the source stores none
    has_msgdef: bool  # the file stores a definition of msgtype
    message_count: int


@dataclass(frozen=True)
class _Source:
    """What the fast path needs to know of a source bag, read from its metadata and its mcap summary."""

    mcap_path: Path
    data_end: int  # offset of the DataEnd record: bytes [0, data_end) are copied verbatim
    size_bytes: int
    mtime_ns: int
    summary: Summary
    connections: tuple[_Connection, ...]
    custom_data: dict[str, str] | None


def append_unsupported_reason(source: Path) -> str | None:
    """Why the fast path cannot copy this bag (None: it can). Source is a bag directory or a lone ``.mcap`` file.

    Not supported (the caller falls back to the streaming copy): see the module docstring. None guarantees that
    :class:`McapAppendCopy` accepts the bag, as long as it does not change in between.
    """
    try:
        _inspect(Path(source))
    except NotAppendable as exc:
        return str(exc)
    return None


class McapAppendCopy:
    """A copy of the mcap bag ``source`` with one topic added, written as ``out_dir/file_name`` plus
    ``out_dir/metadata.yaml``.

    ``out_dir`` must exist and hold neither file. Call :meth:`start` (the data section is copied on a background
    thread), then :meth:`finish` with the new messages, or :meth:`abort` on errors (the caller removes what was
    written). Raises :class:`DatasetError` naming the reason when the bag is not supported
    (:func:`append_unsupported_reason`).
    """

    def __init__(self, source: Path, out_dir: Path, file_name: str) -> None:
        self.source = Path(source)
        out_dir = Path(out_dir)
        if PurePath(file_name).name != file_name or not file_name.endswith(".mcap") or file_name == ".mcap":
            raise DatasetError(f"output file name {file_name!r} is not a plain name ending in .mcap")
        if not out_dir.is_dir():
            raise DatasetError(f"output directory {out_dir} does not exist")
        self.path = out_dir / file_name
        self.metadata_path = out_dir / "metadata.yaml"
        for path in (self.path, self.metadata_path):
            if path.exists():
                raise DatasetError(f"{path} already exists; bags are never overwritten")
        try:
            self._source = _inspect(self.source)
        except NotAppendable as exc:
            raise NotAppendable(f"bag {self.source} cannot be copied by appending to it: {exc}") from exc
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._copy_error: BaseException | None = None
        self._cancel = threading.Event()  # set by abort(): the copy stops at its next slice
        self._state = "new"  # new -> copying -> finished | aborted

    def start(self) -> None:
        """Create the output file and start copying the source's data section into it on a background thread."""
        if self._state != "new":
            raise DatasetError(f"the copy to {self.path} was already started ({self._state})")
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise DatasetError(f"cannot create {self.path}: {exc}") from exc
        self._state = "copying"
        self._thread = threading.Thread(target=self._copy, name=f"mcap-copy-{self.path.name}", daemon=True)
        self._thread.start()

    def finish(self, topic: str, msgtype: str, qos: QosSpec, messages: Sequence[tuple[int, bytes]]) -> None:
        """Append ``messages`` ((log time ns, CDR bytes), in any order) on the new ``topic`` of type ``msgtype``
        offered with ``qos``, then the summary and ``metadata.yaml``. Waits for the copy; re-raises its error as a
        :class:`DatasetError` naming the file. Publish time = log time, sequence 0."""
        if self._state == "new":
            self.start()
        if self._state != "copying":
            raise DatasetError(f"the copy to {self.path} is {self._state}; it cannot be finished again")
        try:
            ordered = self._checked_messages(topic, msgtype, messages)
            tail, metadata_text = _appended_bytes(self._source, self.path.name, topic, msgtype, qos, ordered)
            self._join()
            if self._copy_error is not None:
                if isinstance(self._copy_error, (OSError, DatasetError)):
                    raise DatasetError(f"copying {self._source.mcap_path} to {self.path} failed: "
                                       f"{self._copy_error}") from self._copy_error
                raise self._copy_error  # a bug, not an I/O failure: keep its type and traceback
            try:
                _pwrite_all(self._require_fd(), tail, self._source.data_end)
            except OSError as exc:
                raise DatasetError(f"cannot write the end of {self.path}: {exc}") from exc
            try:
                with self.metadata_path.open("x", encoding="utf-8") as stream:
                    stream.write(metadata_text)
            except OSError as exc:
                raise DatasetError(f"cannot write {self.metadata_path}: {exc}") from exc
        except BaseException:
            self.abort()
            raise
        self._close()
        self._state = "finished"

    def abort(self) -> None:
        """Stop the copy (at its next slice of :data:`_COPY_SLICE_BYTES`) and close the output (idempotent); what was
        written stays for the caller to remove."""
        if self._state != "finished":
            self._cancel.set()
        self._join()
        self._close()
        if self._state != "finished":
            self._state = "aborted"

    # -- internals ------------------------------------------------------------------------------------------------

    def _checked_messages(self, topic: str, msgtype: str,
                          messages: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        known = [c.topic for c in self._source.connections] + [
            c.topic for c in self._source.summary.channels.values()]
        if topic in known:
            raise DatasetError(f"bag {self.source} already has topic {topic!r}; it cannot be added again")
        if msgtype not in make_typestore().fielddefs:
            raise DatasetError(f"unknown message type {msgtype!r} for topic {topic!r}")
        checked = []
        for log_time_ns, data in messages:
            try:
                time_ns = operator.index(log_time_ns)  # ints, numpy ints; not floats, which lose nanoseconds
            except TypeError:
                time_ns = -1
            if not 0 <= time_ns <= _MAX_TIME_NS:
                raise DatasetError(f"log time {log_time_ns!r} of a {topic} message is not an integer in "
                                   f"[0, 2**64) ns")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise DatasetError(f"a {topic} message at {time_ns} ns is {type(data).__name__}, not bytes")
            checked.append((time_ns, data))
        return sorted(checked, key=lambda message: message[0])  # stable: equal times keep the caller's order

    def _copy(self) -> None:
        """Thread body: copy bytes [0, data_end) of the source; any error is kept for :meth:`finish`."""
        try:
            source = self._source
            src_fd = os.open(source.mcap_path, os.O_RDONLY)
            try:
                _check_unchanged(src_fd, source)
                try:
                    _copy_range(src_fd, self._require_fd(), source.data_end, self._cancel, direct_path=self.path)
                except (OSError, DatasetError):
                    # A source cut short under the copy says so, not "bad address" nor "the source ended".
                    _check_unchanged(src_fd, source)
                    raise
                _check_unchanged(src_fd, source)
            finally:
                os.close(src_fd)
        except BaseException as exc:  # noqa: B036 -- kept and re-raised by finish(), never dropped
            self._copy_error = exc

    def _require_fd(self) -> int:
        if self._fd is None:
            raise DatasetError(f"the output {self.path} is not open")
        return self._fd

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


# -- reading the source -------------------------------------------------------------------------------------------


def _inspect(source: Path) -> _Source:
    """Everything the fast path needs of ``source``, or :class:`NotAppendable` naming why it cannot copy it."""
    if not source.exists():
        raise NotAppendable(f"{source} does not exist")
    try:
        import mcap.reader  # noqa: F401  (the fast path needs the mcap library; it comes with rosbags' extra)
    except ImportError as exc:
        raise NotAppendable(f"the mcap library is not installed ({exc})") from exc
    metadata_file = source / "metadata.yaml" if source.is_dir() else None
    if metadata_file is not None and metadata_file.exists():
        mcap_path, listed, custom_data = _read_bag_metadata(source, metadata_file)
    else:
        files = storage_files(source)
        if any(f.suffix == ".db3" for f in files):
            raise NotAppendable(f"{source} is a sqlite3 bag, not mcap")
        if len(files) != 1:
            raise NotAppendable(f"{source} has {len(files)} mcap storage files, not one")
        mcap_path, listed, custom_data = files[0], None, None
    summary, data_end, stat = _read_summary(mcap_path)
    channel_qos = {cid: _channel_qos(mcap_path, channel.topic, channel.metadata)
                   for cid, channel in summary.channels.items()}
    connections = (_count_listed(listed, summary, channel_qos) if listed is not None
                   else _channel_connections(summary, channel_qos))
    return _Source(mcap_path, data_end, stat.st_size, stat.st_mtime_ns, summary, connections, custom_data)


def _read_bag_metadata(source: Path, metadata_file: Path) -> tuple[Path, list[dict[str, Any]], dict[str, str] | None]:
    """The storage file, topic entries and custom data of a bag directory's metadata.yaml, read as rosbags' reader
    reads it (with PyYAML's C loader: rosbags' ruamel load costs more than the whole copy)."""
    try:
        info = yaml.load(metadata_file.read_text(encoding="utf-8"), Loader=_YAML_LOADER)["rosbag2_bagfile_information"]
        version = int(info["version"])
        storage = info["storage_identifier"]
        files = list(info["relative_file_paths"])
        mode = str(info.get("compression_mode") or "").lower()
        topics = list(info["topics_with_message_count"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise NotAppendable(f"{metadata_file} is not readable rosbag2 metadata ({type(exc).__name__}: {exc})") from exc
    if version > BAG_VERSION:
        raise NotAppendable(f"{metadata_file} is rosbag2 metadata version {version}; rosbags reads up to {BAG_VERSION}")
    if storage != "mcap":
        raise NotAppendable(f"{source} is a {storage} bag, not mcap")
    if len(files) != 1:
        raise NotAppendable(f"{source} has {len(files)} storage files ({', '.join(map(str, files))}), not one")
    if mode not in ("", "none"):
        raise NotAppendable(f"{source} is {mode}-compressed ({info.get('compression_format')}); only uncompressed "
                            "bags are copied by appending")
    custom_data = info.get("custom_data") or None
    if custom_data is not None and not (isinstance(custom_data, dict)
                                        and all(isinstance(v, str) for v in custom_data.values())):
        raise NotAppendable(f"custom_data of {metadata_file} does not load as strings: {custom_data!r}")
    mcap_path = source / PurePath(str(files[0])).name
    if not mcap_path.is_file():
        raise NotAppendable(f"{mcap_path}, the storage file {metadata_file} names, does not exist")
    for entry in topics:
        try:
            fmt = entry["topic_metadata"]["serialization_format"]
        except (KeyError, TypeError) as exc:
            raise NotAppendable(f"{metadata_file} has a topic entry without {exc}: {entry!r}") from exc
        if fmt != "cdr":
            raise NotAppendable(f"topic {entry['topic_metadata'].get('name')!r} of {source} is serialised as {fmt!r}, "
                                "not cdr")
    return mcap_path, topics, custom_data


def _read_summary(path: Path) -> tuple[Summary, int, os.stat_result]:
    """The summary of the mcap file at ``path``, the offset of its DataEnd record and the file's stat, checked so
    that appending keeps every index right."""
    from mcap.reader import make_reader

    with path.open("rb") as stream:
        stat = os.fstat(stream.fileno())
        if stream.read(len(_MAGIC)) != _MAGIC:
            raise NotAppendable(f"{path} is not an mcap file (no mcap magic at its start)")
        tail_bytes = _FOOTER_BYTES + len(_MAGIC)
        if stat.st_size < 2 * len(_MAGIC) + _DATA_END_BYTES + _FOOTER_BYTES:
            raise NotAppendable(f"{path} has no footer: {stat.st_size} bytes are too few for a complete mcap file")
        stream.seek(stat.st_size - tail_bytes)
        tail = stream.read(tail_bytes)
        if tail[-len(_MAGIC):] != _MAGIC:
            raise NotAppendable(f"{path} has no footer (it does not end with the mcap magic): truncated, or its "
                                "recorder never closed it")
        opcode, length, summary_start, summary_offset_start, summary_crc = struct.unpack("<BQQQI", tail[:-8])
        footer_start = stat.st_size - tail_bytes
        if opcode != _OP_FOOTER or length != _FOOTER_BYTES - 9:
            raise NotAppendable(f"{path} has no valid footer (opcode {opcode:#04x}, length {length})")
        if summary_start == 0:
            raise NotAppendable(f"{path} has no summary section, so no index to extend")
        if not len(_MAGIC) + _DATA_END_BYTES <= summary_start <= footer_start:
            raise NotAppendable(f"{path}: its footer's summary start {summary_start} lies outside the file")
        data_end = summary_start - _DATA_END_BYTES
        stream.seek(data_end)
        opcode, length = struct.unpack("<BQ", stream.read(9))
        if opcode != _OP_DATA_END or length != 4:
            raise NotAppendable(f"{path} has no DataEnd record right before its summary (at offset {data_end}: opcode "
                                f"{opcode:#04x}, length {length})")
        if summary_crc:
            stream.seek(summary_start)
            covered = stream.read(footer_start + 1 + 8 + 8 + 8 - summary_start)  # through summary_offset_start
            if zlib.crc32(covered) != summary_crc:
                raise NotAppendable(f"{path}: its summary CRC does not match (damaged summary)")
        try:
            stream.seek(0)  # the reader checks the magic where the stream stands
            summary = make_reader(stream).get_summary()
        except (*MCAP_READ_ERRORS, KeyError) as exc:
            raise NotAppendable(f"{path}: its summary does not read ({type(exc).__name__}: {exc})") from exc
    if summary is None or summary.statistics is None:
        raise NotAppendable(f"{path}: its summary has no Statistics record")
    del summary_offset_start  # rewritten; read only to reach the CRC
    _check_index(path, summary, data_end)
    return summary, data_end, stat


def _check_index(path: Path, summary: Summary, data_end: int) -> None:
    """Refuse a file whose summary does not index every message it counts (see the module docstring) or whose ids
    leave no room for one more schema and channel."""
    stats = summary.statistics
    indexed: dict[int, int] = {}
    for chunk in summary.chunk_indexes:
        if chunk.chunk_start_offset + chunk.chunk_length > data_end:
            raise NotAppendable(f"{path}: a chunk index points past the data section ({chunk.chunk_start_offset})")
        # Message index records follow their chunk back to back: each one's length is the gap to the next (what
        # rosbags' reader relies on to count a chunk's messages per channel).
        starts = sorted((offset, cid) for cid, offset in chunk.message_index_offsets.items())
        if not starts:
            continue  # a chunk without messages (rosbags writes one for a bag without any)
        ends = [offset for offset, _ in starts[1:]] + [
            chunk.chunk_start_offset + chunk.chunk_length + chunk.message_index_length]
        for (offset, cid), end in zip(starts, ends, strict=True):
            entries, rest = divmod(end - offset - (1 + 8 + 2 + 4), 16)
            if rest or entries < 0:
                raise NotAppendable(f"{path}: the message index of channel {cid} at offset {offset} is not followed "
                                    "by the next one")
            indexed[cid] = indexed.get(cid, 0) + entries
    counted = {cid: n for cid, n in stats.channel_message_counts.items() if n}
    if {cid: n for cid, n in indexed.items() if n} != counted or sum(counted.values()) != stats.message_count:
        raise NotAppendable(f"{path}: its chunk indexes account for {sum(indexed.values())} messages but its "
                            f"statistics count {stats.message_count}; messages outside chunks or chunks without "
                            "message indexes are not supported")
    for cid in set(counted) | set(indexed):
        if cid not in summary.channels:
            raise NotAppendable(f"{path}: channel {cid} has messages but its summary does not list the channel")
    for channel in summary.channels.values():
        if channel.schema_id and channel.schema_id not in summary.schemas:
            raise NotAppendable(f"{path}: schema {channel.schema_id} of channel {channel.topic!r} is not in its "
                                "summary")
    for index in [*summary.attachment_indexes, *summary.metadata_indexes]:
        if index.offset + index.length > data_end:
            raise NotAppendable(f"{path}: an attachment or metadata index points past the data section "
                                f"({index.offset})")
    if (stats.schema_count, stats.channel_count) != (len(summary.schemas), len(summary.channels)):
        # Schemas or channels in the data section that the summary leaves out: a new id could repeat one of theirs.
        raise NotAppendable(f"{path}: its summary lists {len(summary.schemas)} schemas and {len(summary.channels)} "
                            f"channels but its statistics count {stats.schema_count} and {stats.channel_count}")
    for kind, ids in (("schema", summary.schemas), ("channel", summary.channels)):
        if max(ids, default=0) >= _MAX_ID:
            raise NotAppendable(f"{path}: its {kind} ids reach {max(ids)}, leaving no id for the new topic")


def _channel_qos(path: Path, topic: str, metadata: Mapping[str, str]) -> tuple[Qos, ...]:
    """The offered QoS stored in a channel's metadata, parsed as rosbags' reader parses it."""
    text = metadata.get("offered_qos_profiles", "")
    try:
        qos, v9_form = _parse_qos_text(text)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise NotAppendable(f"{path}: the offered QoS of channel {topic!r} does not parse ({exc})") from exc
    if not v9_form:
        # rosbag2 <= 8 (Humble, Iron) writes the policies as integers. The appended rosbag2 record says version 9,
        # and rosbag2's mcap plugin parses every channel's QoS by that version, so it would misread these.
        raise NotAppendable(f"{path}: channel {topic!r} stores its QoS in the rosbag2 version <= 8 form (integer "
                            "policies), which a version 9 rosbag2 record would make rosbag2 misread")
    return qos


@functools.lru_cache(maxsize=64)
def _parse_qos_text(text: str) -> tuple[tuple[Qos, ...], bool]:
    """The profiles as rosbags parses them, and whether every one names its policies as strings ('reliable'), as
    rosbag2 version 9 writes them. Cached: a bag's channels share a few QoS texts, and bags of one recorder share
    them all (Qos is immutable)."""
    profiles = yaml.load(text, Loader=_YAML_LOADER) if text else []
    v9_form = all(isinstance(profile.get(policy, ""), str) for profile in profiles
                  for policy in ("reliability", "durability", "history", "liveliness"))
    return tuple(parse_qos(profiles)), v9_form


def _schema_name(summary: Summary, schema_id: int) -> str:
    schema = summary.schemas.get(schema_id)
    return schema.name if schema is not None else "__schemaless__"  # rosbags' name for a channel without schema


def _has_msgdef(summary: Summary, msgtype: str) -> bool:
    """Whether rosbags' directory reader finds a definition of ``msgtype`` in the file: the first channel schema of
    that name in a definition format, when its text is not empty."""
    for channel in summary.channels.values():
        schema = summary.schemas.get(channel.schema_id)
        if schema is not None and schema.name == msgtype and schema.encoding in SCHEMA_FORMATS:
            return bool(schema.data)
    return False


def _channel_connections(summary: Summary, channel_qos: Mapping[int, tuple[Qos, ...]]) -> tuple[_Connection, ...]:
    """A lone mcap file's connections as rosbags' mcap reader makes them: one per channel, without digest."""
    counts = summary.statistics.channel_message_counts
    connections = []
    for cid, channel in summary.channels.items():
        if channel.message_encoding != "cdr" and counts.get(cid, 0):
            # As the metadata.yaml path refuses one: the copy's metadata would list a format rosbags cannot read.
            raise NotAppendable(f"channel {channel.topic!r} is serialised as {channel.message_encoding!r}, not cdr")
        schema = summary.schemas.get(channel.schema_id)
        connections.append(_Connection(channel.topic, _schema_name(summary, channel.schema_id),
                                       channel.message_encoding, channel_qos[cid], "",
                                       schema is not None and bool(schema.data), int(counts.get(cid, 0))))
    return tuple(connections)


def _count_listed(listed: Sequence[Mapping[str, Any]], summary: Summary,
                  channel_qos: Mapping[int, tuple[Qos, ...]]) -> tuple[_Connection, ...]:
    """A bag directory's connections (its metadata.yaml topics) with the messages rosbags would read for each: a
    channel's messages go to the first connection of the same topic, type, format and QoS, as in rosbags'
    directory reader."""
    connections = []
    for entry in listed:
        meta = entry["topic_metadata"]
        try:
            qos = tuple(parse_qos(meta.get("offered_qos_profiles", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise NotAppendable(f"the offered QoS of topic {meta.get('name')!r} does not parse ({exc})") from exc
        connections.append(_Connection(str(meta["name"]), str(meta["type"]), str(meta["serialization_format"]), qos,
                                       str(meta.get("type_description_hash") or ""), False, 0))
    counts = [0] * len(connections)
    for cid, n in summary.statistics.channel_message_counts.items():
        channel = summary.channels.get(cid)
        if channel is None or not n:  # _check_index refuses a channel with messages that the summary lacks
            continue
        ext = ConnectionExtRosbag2(channel.message_encoding, list(channel_qos[cid]))
        msgtype = _schema_name(summary, channel.schema_id)
        for i, conn in enumerate(connections):
            if (conn.topic, conn.msgtype) == (channel.topic, msgtype) and ext == ConnectionExtRosbag2(
                    conn.serialization_format, list(conn.qos)):
                counts[i] += n
                break
    return tuple(_Connection(c.topic, c.msgtype, c.serialization_format, c.qos, c.digest,
                             _has_msgdef(summary, c.msgtype), n) for c, n in zip(connections, counts, strict=True))


# -- copying ------------------------------------------------------------------------------------------------------


def _check_unchanged(fd: int, source: _Source) -> None:
    stat = os.fstat(fd)
    if (stat.st_size, stat.st_mtime_ns) != (source.size_bytes, source.mtime_ns):
        raise DatasetError(f"{source.mcap_path} changed while it was being copied (size {source.size_bytes} -> "
                           f"{stat.st_size} bytes)")


def _copy_range(src_fd: int, dst_fd: int, length: int, cancel: threading.Event | None = None,
                direct_path: Path | None = None) -> None:
    """Copy bytes [0, length) of ``src_fd`` to the same offsets of ``dst_fd``. Copies in slices of
    :data:`_COPY_SLICE_BYTES`, checking ``cancel`` between them, so that an aborted labelling does not wait for a
    whole large bag to be copied. Each method continues where the one before stopped (refused, or done with what it
    can copy):

    1. with ``direct_path`` (the file ``dst_fd`` writes), its whole blocks by direct I/O from the source's mapped
       pages: the device takes them from the page cache where they are, so no CPU copies the bytes and the copy
       leaves no dirty page cache to write back (nor evicts the bags being read). With copy_file_range the kernel
       copies every byte into new page cache and writes it back later: CPU time that, on a 2-core machine, took the
       second worker's share (``tsg bench label``'s ``ray_speedup``);
    2. copy_file_range (in the kernel, no Python buffers; it releases the GIL);
    3. sendfile;
    4. a buffered loop.
    """
    copied = 0
    direct = _DirectWriter.open(src_fd, dst_fd, direct_path, length) if direct_path else None

    def kernel_copy(offset: int, count: int) -> int:
        return os.copy_file_range(src_fd, dst_fd, count, offset, offset)

    def send(offset: int, count: int) -> int:
        os.lseek(dst_fd, offset, os.SEEK_SET)  # sendfile writes at the output's file position
        return os.sendfile(dst_fd, src_fd, offset, count)

    def buffered(offset: int, count: int) -> int:
        data = os.pread(src_fd, min(count, _BUFFER_BYTES), offset)
        if data:
            _pwrite_all(dst_fd, data, offset)
        return len(data)

    methods: list[Callable[[int, int], int]] = [direct.write] if direct is not None else []
    if hasattr(os, "copy_file_range"):
        methods.append(kernel_copy)
    if hasattr(os, "sendfile"):
        methods.append(send)
    methods.append(buffered)
    try:
        for method in methods:
            try:
                while copied < length:
                    if cancel is not None and cancel.is_set():
                        raise DatasetError(f"the copy was cancelled after {copied} of {length} bytes")
                    n = method(copied, min(length - copied, _COPY_SLICE_BYTES))
                    if n == 0:
                        if method is not buffered:
                            break  # done with what it can copy, or a filesystem wrongly reporting 0 bytes: next
                        raise DatasetError(f"the source ended after {copied} of the {length} bytes to copy")
                    copied += n
                else:
                    return
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY or method is buffered:
                    raise
    finally:
        if direct is not None:
            direct.close()


class _DirectWriter:
    """Writes whole blocks of a source file to the same offsets of another file, with ``O_DIRECT``, from read-only
    mappings of the source, one per slice (see :func:`_copy_range`). Nothing reads or writes the mapped bytes in
    Python: the kernel hands the source's pages (from the page cache, read from disk first where they are not there)
    to the device, and a source cut short under a mapping fails the write (EFAULT), which is reported, rather than
    killing the process."""

    def __init__(self, src_fd: int, direct_fd: int, end: int) -> None:
        self._src_fd, self._fd, self._end = src_fd, direct_fd, end

    @classmethod
    def open(cls, src_fd: int, dst_fd: int, path: Path, length: int) -> _DirectWriter | None:
        """A writer of the whole blocks of [0, length) to ``path`` (the file ``dst_fd`` has open), or None where
        direct I/O is not worth it or not possible (a filesystem not in :data:`DIRECT_COPY_FILESYSTEMS`, no
        ``O_DIRECT``, less than a block, a source that cannot be mapped, an output that cannot be opened for direct
        I/O or is no longer the file ``dst_fd`` writes): the kernel copy then copies everything."""
        end = length // _DIRECT_ALIGN_BYTES * _DIRECT_ALIGN_BYTES
        flag = getattr(os, "O_DIRECT", 0)
        if not flag or end == 0 or filesystem_type(path) not in DIRECT_COPY_FILESYSTEMS:
            return None
        try:
            mmap.mmap(src_fd, _DIRECT_ALIGN_BYTES, prot=mmap.PROT_READ).close()  # e.g. FUSE may refuse (ENODEV)
            direct_fd = os.open(path, os.O_WRONLY | flag)
        except (OSError, ValueError):
            return None
        opened, expected = os.fstat(direct_fd), os.fstat(dst_fd)
        if (opened.st_dev, opened.st_ino) != (expected.st_dev, expected.st_ino):
            os.close(direct_fd)  # the name now points at another file: never write there
            return None
        return cls(src_fd, direct_fd, end)

    def write(self, offset: int, count: int) -> int:
        """Write up to ``count`` bytes from ``offset`` (block-aligned), whole blocks only; 0 when none is left."""
        stop = min(offset + count, self._end) // _DIRECT_ALIGN_BYTES * _DIRECT_ALIGN_BYTES
        if offset % _DIRECT_ALIGN_BYTES or stop <= offset:
            return 0  # a short write left an unaligned offset, or only the last partial block is left
        # A mapping per slice: mapping the whole bag would count all of it in the worker's resident memory.
        try:
            mapping = mmap.mmap(self._src_fd, stop - offset, prot=mmap.PROT_READ, offset=offset)
        except ValueError as exc:  # Python compares with the file's size first
            raise DatasetError(f"the source ended before byte {stop} of the copy ({exc})") from exc
        try:
            with memoryview(mapping) as view:
                return os.pwrite(self._fd, view, offset)
        finally:
            mapping.close()

    def close(self) -> None:
        os.close(self._fd)


def filesystem_type(path: Path) -> str | None:
    """The type (``ext4``, ``xfs``, ...) of the filesystem holding ``path``, from ``/proc/self/mountinfo``; None
    when unknown (not Linux, or no mount with its device number)."""
    try:
        device = os.stat(path).st_dev
        text = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return filesystem_type_from_mountinfo(text, os.major(device), os.minor(device))


def filesystem_type_from_mountinfo(text: str, major: int, minor: int) -> str | None:
    """The filesystem type of the last mount of device ``major:minor`` in a ``/proc/<pid>/mountinfo`` text (its third
    field; the type is the first field after the ``-`` separator, which follows a variable number of optional
    fields)."""
    wanted, found = f"{major}:{minor}", None
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 3 and fields[2] == wanted and "-" in fields[6:]:
            separator = fields.index("-", 6)
            if separator + 1 < len(fields):
                found = fields[separator + 1]
    return found


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# -- the appended records -----------------------------------------------------------------------------------------


def _qos_channel_text(qos: Sequence[Qos]) -> str:
    """The ``offered_qos_profiles`` value rosbags' mcap writer stores in a channel (version 9): its ruamel safe dump,
    whose keys are sorted; PyYAML's block dump with sorted keys is the same text."""
    return yaml.dump(dump_qos_v9(list(qos)), Dumper=_YAML_DUMPER, default_flow_style=False, sort_keys=True).strip()


def _appended_bytes(source: _Source, file_name: str, topic: str, msgtype: str, qos: QosSpec,
                    messages: Sequence[tuple[int, bytes]]) -> tuple[bytes, str]:
    """Everything written at ``source.data_end`` (records, DataEnd, summary, footer, magic) and metadata.yaml's text;
    ``messages`` are sorted by log time."""
    from mcap.data_stream import RecordBuilder
    from mcap.opcode import Opcode
    from mcap.records import (
        Channel,
        Chunk,
        ChunkIndex,
        DataEnd,
        Footer,
        Message,
        MessageIndex,
        Metadata,
        MetadataIndex,
        Schema,
        Statistics,
        SummaryOffset,
    )

    typestore = make_typestore()
    summary, base = source.summary, source.data_end
    stats = summary.statistics
    msgdef, _ = typestore.generate_msgdef(msgtype, ros_version=2)
    schema = Schema(id=max(summary.schemas, default=0) + 1, name=msgtype, data=msgdef.encode(),
                    encoding="ros2idl" if msgdef.startswith(_IDL_PREFIX) else "ros2msg")
    offered = (qos.to_rosbags(),)
    channel = Channel(id=max(summary.channels, default=0) + 1, topic=topic, message_encoding="cdr",
                      metadata={"offered_qos_profiles": _qos_channel_text(offered)}, schema_id=schema.id)
    out = RecordBuilder()
    schema.write(out)
    channel.write(out)

    chunk_indexes: list[ChunkIndex] = []
    pending = RecordBuilder()
    index: list[tuple[int, int]] = []  # (log time, offset in the chunk's records)

    def close_chunk() -> None:
        records = pending.end()
        chunk = Chunk(compression="", data=records, message_start_time=index[0][0], message_end_time=index[-1][0],
                      uncompressed_crc=zlib.crc32(records), uncompressed_size=len(records))
        chunk_start = base + out.count
        chunk.write(out)
        index_start = base + out.count
        MessageIndex(channel_id=channel.id, records=list(index)).write(out)
        chunk_indexes.append(ChunkIndex(
            message_start_time=chunk.message_start_time, message_end_time=chunk.message_end_time,
            chunk_start_offset=chunk_start, chunk_length=index_start - chunk_start,
            message_index_offsets={channel.id: index_start}, message_index_length=base + out.count - index_start,
            compression="", compressed_size=len(records), uncompressed_size=len(records)))
        index.clear()

    for log_time_ns, data in messages:
        index.append((log_time_ns, pending.count))
        Message(channel_id=channel.id, log_time=log_time_ns, data=bytes(data), publish_time=log_time_ns,
                sequence=0).write(pending)
        if pending.count >= CHUNK_SIZE_BYTES:
            close_chunk()
    if index:
        close_chunk()

    # Start and end over the source's and the new messages (the source's statistics hold its exact range).
    times = [t for t, _ in messages]
    if stats.message_count:
        times += [stats.message_start_time, stats.message_end_time]
    digest = typestore.hash_rihs01(msgtype)
    metadata_info = _metadata_info(source, file_name, topic, msgtype, offered, digest, len(messages), times)
    metadata_start = base + out.count
    info_text = _dump_yaml(metadata_info)
    Metadata(name=ROSBAG2_METADATA, metadata={"serialized_metadata": info_text.strip()}).write(out)
    metadata_index = MetadataIndex(offset=metadata_start, length=base + out.count - metadata_start,
                                   name=ROSBAG2_METADATA)
    DataEnd(data_section_crc=0).write(out)
    data = out.end()

    summary_start = base + len(data)
    statistics = Statistics(
        message_count=stats.message_count + len(messages), schema_count=stats.schema_count + 1,
        channel_count=stats.channel_count + 1, attachment_count=stats.attachment_count,
        metadata_count=stats.metadata_count + 1, chunk_count=stats.chunk_count + len(chunk_indexes),
        message_start_time=min(times) if times else stats.message_start_time,
        message_end_time=max(times) if times else stats.message_end_time,
        channel_message_counts={**stats.channel_message_counts, channel.id: len(messages)})
    groups: list[tuple[int, list[Any]]] = [
        (Opcode.SCHEMA, [*summary.schemas.values(), schema]),
        (Opcode.CHANNEL, [*summary.channels.values(), channel]),
        (Opcode.STATISTICS, [statistics]),
        (Opcode.CHUNK_INDEX, [*summary.chunk_indexes, *chunk_indexes]),
        (Opcode.ATTACHMENT_INDEX, list(summary.attachment_indexes)),
        (Opcode.METADATA_INDEX, [*(m for m in summary.metadata_indexes if m.name != ROSBAG2_METADATA),
                                 metadata_index]),
    ]
    out_summary = RecordBuilder()
    offsets = []
    for opcode, records in groups:
        if records:
            group_start = out_summary.count
            for record in records:
                record.write(out_summary)
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + group_start,
                                         group_length=out_summary.count - group_start))
    summary_offset_start = summary_start + out_summary.count
    for offset in offsets:
        offset.write(out_summary)
    summary_bytes = out_summary.end()
    # The summary CRC covers the summary section and the footer up to and including summary_offset_start.
    footer_prefix = struct.pack("<BQQQ", Opcode.FOOTER, _FOOTER_BYTES - 9, summary_start, summary_offset_start)
    Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
           summary_crc=zlib.crc32(footer_prefix, zlib.crc32(summary_bytes))).write(out)
    # metadata.yaml nests the same mapping one level down; indenting the block dump (blank lines left alone, so
    # multi-line quoted scalars keep their line breaks) says the same as dumping it again, at half the YAML cost.
    metadata_yaml = "rosbag2_bagfile_information:\n" + textwrap.indent(info_text, "  ")
    return data + summary_bytes + out.end() + _MAGIC, metadata_yaml


def _metadata_info(source: _Source, file_name: str, topic: str, msgtype: str, offered: Sequence[Qos], digest: str,
                   new_count: int, times: Sequence[int]) -> dict[str, Any]:
    """metadata.yaml's ``rosbag2_bagfile_information``, laid out as rosbags' ``Writer.close()`` builds it (version
    9), for the source's connections plus the new topic."""
    typestore = make_typestore()
    topics = []
    for conn in source.connections:
        rihs01 = conn.digest
        if (not rihs01 or not conn.has_msgdef) and conn.msgtype in typestore.fielddefs:
            rihs01 = typestore.hash_rihs01(conn.msgtype)  # what BagWriter.copy_connection stores for such a topic
        topics.append(_topic_entry(conn.topic, conn.msgtype, conn.serialization_format, conn.qos, rihs01,
                                   conn.message_count))
    topics.append(_topic_entry(topic, msgtype, "cdr", offered, digest, new_count))
    count = sum(entry["message_count"] for entry in topics)
    start_ns = min(times) if times else _NO_MESSAGES_START_NS
    duration = {"nanoseconds": max(0, (max(times) if times else 0) - start_ns)}
    return {
        "version": BAG_VERSION,
        "storage_identifier": "mcap",
        "relative_file_paths": [file_name],
        "duration": duration,
        "starting_time": {"nanoseconds_since_epoch": start_ns},
        "message_count": count,
        "topics_with_message_count": topics,
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": file_name, "starting_time": {"nanoseconds_since_epoch": start_ns},
                   "duration": dict(duration), "message_count": count}],
        "custom_data": source.custom_data or None,
        "ros_distro": "rosbags",
    }


def _topic_entry(topic: str, msgtype: str, serialization_format: str, qos: Sequence[Qos], digest: str,
                 message_count: int) -> dict[str, Any]:
    return {"topic_metadata": {"name": topic, "type": msgtype, "serialization_format": serialization_format,
                               "offered_qos_profiles": dump_qos_v9(list(qos)), "type_description_hash": digest},
            "message_count": message_count}


def _dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_YAML_DUMPER, default_flow_style=False, sort_keys=False)
