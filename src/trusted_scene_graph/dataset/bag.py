"""Write and read rosbag2 bags (mcap by default, sqlite3 on request) with the :func:`make_typestore` types.

Reading is tolerant in the way an evaluation needs: messages of types the type store does not know and messages
that do not deserialise are skipped and counted, and an mcap bag that ends early (a recorder that was killed, a file
cut short in a copy) or whose index no longer fits the file (bytes missing from its middle: :func:`check_mcap_index`,
checked before rosbags follows the index) yields what it has before the damage, then reports the error in
:attr:`BagReader.read_error` instead of losing the messages before it. A bag directory without ``metadata.yaml``
that holds a single storage file is read through that file (an mcap file carries its own index), without any error;
one without any storage file is refused as no bag.
A damaged sqlite3 database cannot be read past its damage by sqlite, so such a bag is refused with a
:class:`DatasetError`.
"""

from __future__ import annotations

import importlib
import operator
import sqlite3
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import apsw  # rosbags' sqlite3 storage reads through it (see STORAGE_READ_ERRORS)
from rosbags.interfaces import (
    MessageDefinition,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore

from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.typestore import deserialize, make_typestore
from trusted_scene_graph.text import plural

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rosbag2 metadata version written; 9 is what Jazzy and Kilted's rosbag2 write and read.
BAG_VERSION = 9


class BagIndexError(DatasetError):
    """An mcap file's footer or summary (the index rosbags reads it by) does not fit the file: bytes are missing or
    garbled before it. Raised by :func:`check_mcap_index` before rosbags would follow the index into the wrong bytes."""


def _decompression_errors() -> tuple[type[Exception], ...]:
    """What a damaged compressed mcap chunk raises in the decompressors rosbags and the mcap library use: zstd's
    error (from the standard library's compression.zstd or its backport for rosbags, zstandard for the mcap library)
    and lz4's (a RuntimeError: its frame decoder has no class of its own)."""
    errors: list[type[Exception]] = [RuntimeError]
    for module in ("compression.zstd", "backports.zstd", "zstandard"):
        try:
            errors.append(importlib.import_module(module).ZstdError)
        except (ImportError, AttributeError):  # not installed here: nothing of it to catch
            continue
    return tuple(errors)


#: What a truncated or damaged file raises inside rosbags' storage readers (mcap: struct and decoding errors, an
#: OverflowError or a MemoryError for a garbled record length, the decompressors' errors for a damaged compressed chunk,
#: and :class:`BagIndexError` from the check made before rosbags opens an mcap file; sqlite3: rosbags reads through
#: apsw, whose errors (a malformed database image) are not sqlite3's). Only these are turned into a partial read or a
#: refused bag; anything else is a bug and propagates. Shared by every reader of bags here (tsg eval, tsg label, tsg
#: replay).
STORAGE_READ_ERRORS = (ReaderError, sqlite3.DatabaseError, apsw.Error, struct.error, EOFError, ValueError, IndexError,
                       KeyError, OverflowError, MemoryError, BagIndexError, *_decompression_errors())

_ZERO_TIME = QosTime(sec=0, nsec=0)
# rmw's "infinite" duration as rosbag2 writes it into offered_qos_profiles.
_INFINITE_TIME = QosTime(sec=2147483647, nsec=4294967295)


@dataclass(frozen=True)
class QosSpec:
    """The QoS a recorded publisher offered, stored in the bag so a player can offer it again."""

    reliability: str = "reliable"  # "reliable" or "best_effort"
    durability: str = "volatile"  # "volatile" or "transient_local"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise DatasetError(f"QoS reliability {self.reliability!r} is not 'reliable' or 'best_effort'")
        if self.durability not in ("volatile", "transient_local"):
            raise DatasetError(f"QoS durability {self.durability!r} is not 'volatile' or 'transient_local'")
        if self.depth < 1:
            raise DatasetError(f"QoS depth {self.depth} must be >= 1")

    def to_rosbags(self) -> Qos:
        return Qos(
            history=QosHistory.KEEP_LAST,
            depth=self.depth,
            reliability=QosReliability.RELIABLE if self.reliability == "reliable" else QosReliability.BEST_EFFORT,
            durability=(QosDurability.TRANSIENT_LOCAL if self.durability == "transient_local"
                        else QosDurability.VOLATILE),
            deadline=_INFINITE_TIME,
            lifespan=_INFINITE_TIME,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=_INFINITE_TIME,
            avoid_ros_namespace_conventions=False,
        )


#: A camera driver's SensorDataQoS; latched static data (``/tf_static``); everything else.
SENSOR_QOS = QosSpec("best_effort", "volatile", 5)
LATCHED_QOS = QosSpec("reliable", "transient_local", 100)
DEFAULT_QOS = QosSpec()


class BagWriter:
    """A new bag at ``path`` (a directory that must not exist yet); use as a context manager."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise DatasetError(f"unknown bag storage {storage!r}; use one of {sorted(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise DatasetError(f"{self.path} already exists; bags are never overwritten")
        self.storage = storage
        self.typestore = make_typestore()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._connections: dict[str, Any] = {}
        self.messages_written = 0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise DatasetError(f"cannot create bag {self.path}: {exc}") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._writer.close()  # also on errors: what was written stays a readable bag

    def add_topic(self, topic: str, msgtype: str, qos: QosSpec = DEFAULT_QOS) -> None:
        if topic in self._connections:
            raise DatasetError(f"topic {topic!r} was already added")
        if msgtype not in self.typestore.fielddefs:
            raise DatasetError(f"unknown message type {msgtype!r} for topic {topic!r}")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                               offered_qos_profiles=[qos.to_rosbags()])

    def copy_connection(self, source: Any) -> Any:
        """Add a connection like ``source`` (a rosbags connection of another bag): same topic, type, definition,
        hash, serialisation format and offered QoS, for :meth:`write_raw`. A stored definition without its hash (an
        mcap file's) gets the hash of that definition (:func:`definition_hash`); a source without a stored definition
        (older bags) gets the type store's, when it knows the type."""
        msgdef, rihs01 = source.msgdef.data, source.digest
        if msgdef and not rihs01:
            # An mcap file stores each type's definition but not its hash (rosbags reads none from one): the hash of
            # the definition recorded, which for a type the store knows is the store's.
            rihs01 = definition_hash(source.msgtype, source.msgdef)
        if not msgdef or not rihs01:
            if source.msgtype not in self.typestore.fielddefs:
                raise DatasetError(f"topic {source.topic!r}: the bag stores no definition of {source.msgtype!r} and "
                                   "the type store does not know it, so it cannot be copied")
            msgdef, rihs01 = None, None
        return self._writer.add_connection(source.topic, source.msgtype, typestore=self.typestore, msgdef=msgdef,
                                           rihs01=rihs01, serialization_format=source.ext.serialization_format,
                                           offered_qos_profiles=source.ext.offered_qos_profiles)

    def set_custom_data(self, custom_data: Mapping[str, str]) -> None:
        """The bag's ``custom_data`` (metadata.yaml's map of strings a recorder or a user set: a robot, an operator)."""
        for key, value in custom_data.items():
            self._writer.set_custom_data(str(key), str(value))

    def write_raw(self, connection: Any, raw: bytes, log_time_ns: int) -> None:
        """Write already serialised bytes on a connection from :meth:`copy_connection`, unchanged."""
        self._writer.write(connection, _log_time(log_time_ns), raw)
        self.messages_written += 1

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Serialise ``msg`` (a type-store message) as CDR and write it at ``log_time_ns``."""
        connection = self._connections.get(topic)
        if connection is None:
            raise DatasetError(f"topic {topic!r} was not added to the bag")
        self._writer.write(connection, _log_time(log_time_ns), self.typestore.serialize_cdr(msg, connection.msgtype))
        self.messages_written += 1


def _log_time(log_time_ns: Any) -> int:
    """``log_time_ns`` as the unsigned 64-bit nanoseconds both storages hold: mcap raised an OverflowError that named
    nothing for one outside them, and sqlite3 stored a negative one, or truncated a float, without a word."""
    try:
        value = operator.index(log_time_ns)  # an int or a numpy integer; not a float, which would be truncated
    except TypeError:
        value = None
    if isinstance(log_time_ns, bool) or value is None or not 0 <= value < 2**64:
        raise DatasetError(f"log time {log_time_ns!r} is not an integer number of nanoseconds in [0, 2**64)")
    return value


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any  # the deserialised message (a type-store dataclass with the ROS field names)


class BagReader:
    """Messages of a bag directory (or a single ``.mcap`` file) in log-time order, deserialised."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        check_bag_path(self.path)
        self.typestore = make_typestore()
        self.skipped_types: Counter[str] = Counter()  # messages of types the type store does not know
        self.undecodable: Counter[str] = Counter()  # messages whose bytes did not deserialise, per topic
        self.read_error: str | None = None  # set when the bag ended early (truncated or damaged)
        self._reader: Any = None
        self._salvage: McapStream | None = None
        try:
            self._reader = open_rosbags(storage_path(self.path))
        except (*STORAGE_READ_ERRORS, OSError) as exc:
            # rosbags needs an mcap file's summary at its end, which a recorder that was killed never wrote, and which
            # bytes missing before it make point at the wrong places; the records before the damage are intact, so
            # read them in order with the mcap library instead.
            self._salvage = McapStream.open(self.path)
            if self._salvage is None:
                raise DatasetError(f"cannot open bag {self.path}: {exc}{_files_without_an_end(self.path)}") from exc
            if not self._salvage.complete:  # a whole file rosbags cannot index (no summary) is read as it is
                self.read_error = (f"bag {self.path} is damaged: it has no valid end ({exc}); only its "
                                   f"{plural(self._salvage.message_count, 'message')} before the damage"
                                   f"{self._salvage.damage_detail} can be read, frames after it are missing")
        self.topics: dict[str, str] = (self._salvage.topics() if self._salvage is not None
                                       else {c.topic: c.msgtype for c in self._reader.connections})
        #: Messages per topic as the bag's index (or, for a salvaged mcap file, its records) counts them.
        self.message_counts: dict[str, int] = dict.fromkeys(self.topics, 0)
        if self._salvage is not None:
            self.message_counts.update(self._salvage.topic_message_counts())
        else:
            for connection in self._reader.connections:
                self.message_counts[connection.topic] += int(connection.msgcount)

    @property
    def message_count(self) -> int:
        return self._salvage.message_count if self._salvage is not None else int(self._reader.message_count)

    def close(self) -> None:
        if self._reader is not None and self._salvage is None:
            self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Deserialised messages of ``topics`` (default: all); see the class docstring for what is skipped."""
        wanted = None if topics is None else set(topics)
        known_types = self.typestore.fielddefs
        for topic, msgtype in self.topics.items():
            if (wanted is None or topic in wanted) and msgtype not in known_types:
                self.skipped_types[msgtype] += 0  # listed even when it has no message
        if self._salvage is not None:
            channels = [c.id for c in self._salvage.channels.values() if wanted is None or c.topic in wanted]
            iterator = ((c.topic, c.msgtype, t, raw) for c, t, raw in self._salvage.messages(channels))
        else:
            connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
            if not connections:  # rosbags reads every message for connections=[]
                return
            iterator = ((c.topic, c.msgtype, t, raw) for c, t, raw in self._reader.messages(connections=connections))
        read = 0  # messages read before a damage, for its message
        while True:
            try:
                topic, msgtype, log_time_ns, raw = next(iterator)
            except StopIteration:
                return
            except (*STORAGE_READ_ERRORS, *MCAP_READ_ERRORS) as exc:
                self.read_error = (f"bag {self.path} is damaged: reading stopped after {plural(read, 'message')} "
                                   f"({type(exc).__name__}: {exc}); frames after the damage are missing")
                return
            read += 1
            if msgtype not in known_types:
                self.skipped_types[msgtype] += 1
                continue
            try:
                msg = deserialize(self.typestore, raw, msgtype)
            except (SerdeError, ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
                self.undecodable[f"{topic} ({type(exc).__name__})"] += 1
                continue
            yield BagMessage(topic, msgtype, int(log_time_ns), msg)


@dataclass(frozen=True)
class McapChannel:
    """One channel of an mcap file: its topic, message type and metadata (rosbag2 keeps the offered QoS there), and
    its schema's encoding and text: the type's definition, its dependencies' included ("" when it has none)."""

    id: int
    topic: str
    msgtype: str
    metadata: Mapping[str, str]
    schema_encoding: str = ""
    schema_text: str = ""
    message_encoding: str = "cdr"  # how its messages are serialised: ROS 2's is 'cdr' (ROS 1's 'ros1', or 'json'...)


class McapStream:
    """An mcap file read front to back with the mcap library's stream reader, up to its damage if it has one.

    rosbags needs an mcap file's summary at its end, which a recorder that was killed never wrote, and which bytes
    missing from the file's middle make point at the wrong places (see :func:`check_mcap_index`); the records before
    the damage are intact. Shared by :class:`BagReader`, ``tsg label`` and ``tsg replay``. Each iteration re-reads the
    file, so nothing stays open. :attr:`damage` says where reading stopped (None: the file is whole, footer and
    closing magic read). CRCs are checked where the file stores them (ROS 2's recorder does; rosbags' writer leaves
    them 0). Raises one of :data:`MCAP_READ_ERRORS` when not even the file's start is mcap.
    """

    def __init__(self, path: Path, message_compression: str = "") -> None:
        self.path = path
        # rosbag2's compression_mode 'message' (metadata.yaml): each payload zstd-compressed on its own, given out
        # decompressed as rosbags' reader does.
        self._decompress = _message_decompressor(message_compression)
        self.damage: str | None = None
        self.cut = False  # the damage is the file's end: it stops inside a record, with no valid end after it
        self.channels: dict[int, McapChannel] = {}
        self.message_counts: Counter[int] = Counter()  # per channel id, over the messages of known channels
        times_ns: list[int] = []
        for channel, log_time_ns, _ in self.messages():  # one pass, for what rosbags reads from the summary
            self.message_counts[channel.id] += 1
            times_ns.append(log_time_ns)
        self.start_ns = min(times_ns, default=0)
        self.end_ns = max(times_ns, default=0)

    @classmethod
    def open(cls, path: Path) -> McapStream | None:
        """The bag's single ``.mcap`` file read as a stream, or None when there is none or it is no mcap file."""
        files = storage_files(path, (".mcap",))
        if len(files) != 1:
            return None
        try:
            return cls(files[0], _message_compression(path))
        except MCAP_READ_ERRORS:
            return None

    @property
    def complete(self) -> bool:
        return self.damage is None

    @property
    def message_count(self) -> int:
        return sum(self.message_counts.values())

    @property
    def damage_detail(self) -> str:
        """`` (<what stopped the reading>)`` for messages, or "" when the file simply ends (a cut) or is whole."""
        if self.damage is None or self.cut:
            return ""
        return f" ({self.damage.rstrip(': ')})"

    def topics(self) -> dict[str, str]:
        """Topic -> message type of every channel."""
        return {channel.topic: channel.msgtype for channel in self.channels.values()}

    def topic_message_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for channel_id, count in self.message_counts.items():
            counts[self.channels[channel_id].topic] += count
        return counts

    def records(self) -> Iterator[Any]:
        """Every record up to the damage (recording it in :attr:`damage`), channels collected on the way.

        Without CRCs (rosbags' writer leaves them 0) a chunk that lost bytes from its middle still parses: it reads
        its length's worth into what follows, and the records after it may even parse by chance. So when the writer
        indexes its chunks (rosbags and ROS 2's recorder write a message index after each), a chunk's messages are
        given out only once the index after it lists exactly them; a chunk that does not match is the damage. At a
        cut (the file simply ends) a chunk whose index was cut short is kept if what was read of it matches."""
        from mcap.exceptions import EndOfFile, RecordLengthLimitExceeded
        from mcap.stream_reader import StreamReader, breakup_chunk

        records = _records()
        schemas: dict[int, Any] = {}
        started = False
        self.damage, self.cut = None, False
        held: list[Any] = []  # the records of the last chunk, until its message index has been read
        held_at = 0  # the byte offset where that chunk ends
        held_verified = False  # that chunk's CRC was checked
        indexed: Counter[tuple[int, int]] = Counter()  # (channel id, log time) in the index read after it
        writer_indexes = False  # an earlier chunk was followed by a message index

        def register(record: Any) -> Any:
            if isinstance(record, records.Schema):
                schemas[record.id] = record
            elif isinstance(record, records.Channel):  # the summary repeats each channel: same id, content
                schema = schemas.get(record.schema_id)
                self.channels[record.id] = (
                    McapChannel(record.id, record.topic, "", record.metadata,
                                message_encoding=record.message_encoding) if schema is None else
                    McapChannel(record.id, record.topic, schema.name, record.metadata, schema.encoding,
                                schema.data.decode("utf-8", errors="replace"), record.message_encoding))
            return record

        def mismatch(cut: bool) -> str | None:
            """Why the held chunk's messages are not its index's (a cut index only needs to agree so far)."""
            held_messages = Counter((r.channel_id, r.log_time) for r in held if isinstance(r, records.Message))
            if not (indexed or writer_indexes) or indexed == held_messages or (cut and indexed <= held_messages):
                return None
            return (f"the chunk ending at byte {held_at} holds {plural(held_messages.total(), 'message')} but the "
                    f"message index after it lists {indexed.total()} (bytes missing or garbled in it); its messages "
                    "are left out")

        size = self.path.stat().st_size
        with self.path.open("rb") as stream:
            # A record running past the file's end is a cut only when the file has no valid end: in one that has,
            # bytes are missing from its middle.
            stream.seek(max(size - len(_MCAP_MAGIC), 0))
            ends_whole = stream.read() == _MCAP_MAGIC
            stream.seek(0)
            try:
                # CRCs are checked where the file stores them: a chunk damaged inside is the damage, not messages
                # with garbled bytes (a cut-short file is suspect as a whole; checking costs little beside reading).
                # No record can be longer than the file: a garbled length is the damage, not a huge allocation.
                reader = StreamReader(stream, validate_crcs=True, emit_chunks=True, record_size_limit=size)
                for record in reader.records:
                    started = True
                    if isinstance(record, records.MessageIndex):
                        indexed.update((record.channel_id, log_time) for log_time, _ in record.records)
                        continue
                    if held or indexed:
                        if (problem := mismatch(cut=False)) is not None:
                            self.damage = problem
                            return
                        writer_indexes = writer_indexes or bool(indexed)
                        yield from map(register, held)
                    held, indexed = [], Counter()
                    if isinstance(record, records.Chunk):
                        held, held_at = breakup_chunk(record, validate_crc=True), stream.tell()
                        held_verified = record.uncompressed_crc != 0  # its CRC was checked: its bytes are intact
                    else:
                        yield register(record)
                # The footer was read: a chunk held still (none, in a whole file) is checked like any other.
                if (problem := mismatch(cut=False)) is not None:
                    self.damage = problem
                    return
                yield from map(register, held)
            except MCAP_READ_ERRORS as exc:
                if not started:
                    raise  # not an mcap file at all
                self.damage = f"{type(exc).__name__}: {exc}"
                self.cut = isinstance(exc, (EndOfFile, RecordLengthLimitExceeded)) and not ends_whole
                if self.cut and isinstance(exc, RecordLengthLimitExceeded):  # the file ends inside that record
                    self.damage = f"EndOfFile: {exc} (the file's size)"
                if (problem := mismatch(cut=self.cut)) is not None:
                    self.damage, self.cut = f"{problem}; then {self.damage}", False  # more than a cut: say what
                    return
                if held and not self.cut and not indexed and not held_verified:
                    # Bytes missing from the middle of a whole file, right after a chunk that nothing confirms (no
                    # CRC, no message index read yet: the first chunk of a rosbags-written bag): the chunk itself
                    # may have lost them and still parse, its images shifted. Left out, not given as intact.
                    self.damage = (f"{self.damage}; the chunk ending at byte {held_at} before it is left out: no CRC "
                                   "or message index confirms its bytes")
                    return
                yield from map(register, held)

    def messages(self, channel_ids: Iterable[int] | None = None,
                 start_ns: int = 0) -> Iterator[tuple[McapChannel, int, bytes]]:
        """(channel, log time, raw bytes) of the messages of known channels, in file order (the recorder's write
        order), optionally only of ``channel_ids`` and from ``start_ns`` on."""
        message_type = _records().Message
        wanted = None if channel_ids is None else set(channel_ids)
        for record in self.records():
            if (isinstance(record, message_type) and record.channel_id in self.channels
                    and (wanted is None or record.channel_id in wanted) and record.log_time >= start_ns):
                data = record.data if self._decompress is None else self._decompress(record.data)
                yield self.channels[record.channel_id], record.log_time, data


def storage_files(path: Path, suffixes: tuple[str, ...] = (".mcap", ".db3")) -> list[Path]:
    """The rosbag2 storage files of ``path``: itself when it is such a file, else those directly in the directory."""
    if path.is_file():
        return [path] if path.suffix in suffixes else []
    return sorted(f for f in path.iterdir() if f.suffix in suffixes and f.is_file()) if path.is_dir() else []


def storage_format(path: Path) -> str:
    """'sqlite3' or 'mcap': how the bag at ``path`` (a directory or a storage file) stores its messages, told by
    its files' names, a file compressed whole ('.db3.zstd', '.mcap.zstd') by the name under the compression."""
    files = [path] if path.is_file() else [f for f in path.iterdir() if f.is_file()] if path.is_dir() else []
    names = [f.name.removesuffix(".zstd") for f in files]
    has_sqlite3 = any(name.endswith(".db3") for name in names)
    return "sqlite3" if has_sqlite3 and not any(name.endswith(".mcap") for name in names) else "mcap"


#: An mcap schema's encoding -> the format of a rosbags connection's definition (as rosbags' mcap reader maps it).
SCHEMA_FORMATS = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL,
                  "omgidl": MessageDefinitionFormat.IDL}


def definition_hash(msgtype: str, msgdef: MessageDefinition) -> str | None:
    """The RIHS01 hash of ``msgtype`` from a bag's definition of it (with its dependencies, as rosbag2 stores it),
    or None when that definition does not parse or does not define the type."""
    parse = _types_from_idl if msgdef.format == MessageDefinitionFormat.IDL else (
        lambda text: get_types_from_msg(text, msgtype))
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(parse(msgdef.data))
        return store.hash_rihs01(msgtype)
    except (TypesysError, KeyError, ValueError):
        return None


_IDL_SECTION = "=" * 80 + "\n"


def _types_from_idl(text: str) -> dict[str, Any]:
    """The types of an IDL definition, bare or as rosbag2 and rosbags store one with its dependencies: sections of
    ``IDL: pkg/msg/Type`` after a line of 80 '=' (parsed section by section, as rosbags' AnyReader does)."""
    if not text.startswith(f"{_IDL_SECTION}IDL: "):
        return get_types_from_idl(text)
    types: dict[str, Any] = {}
    for section in text.split(_IDL_SECTION)[1:]:
        header, _, idl = section.partition("\n")
        if not header.startswith("IDL: "):
            raise ValueError(f"an IDL section starts with {header!r}, not 'IDL: <type>'")
        types.update(get_types_from_idl(idl))
    return types


def _message_compression(path: Path) -> str:
    """The format a bag directory's metadata.yaml says each message is compressed with (compression_mode 'message'),
    '' when none (or no metadata.yaml: a lone file's messages are as stored)."""
    metadata_file = path / "metadata.yaml" if path.is_dir() else None
    if metadata_file is None or not metadata_file.is_file():
        return ""
    import yaml  # noqa: PLC0415 - only for a bag read front to back

    try:
        info = yaml.safe_load(metadata_file.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        mode, fmt = str(info.get("compression_mode") or ""), str(info.get("compression_format") or "")
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return ""  # unreadable: the messages are given as stored, and do not decode if they are compressed
    return fmt if mode.lower() == "message" else ""


def _message_decompressor(compression: str) -> Callable[[bytes], bytes] | None:
    if not compression:
        return None
    if compression != "zstd":
        raise DatasetError(f"messages compressed with {compression!r} cannot be read (rosbag2 compresses with zstd)")
    try:
        from compression import zstd  # noqa: PLC0415 - Python 3.14's standard library
    except ImportError:
        from backports import zstd  # noqa: PLC0415 - what rosbags decompresses with before 3.14
    return zstd.decompress


def _files_without_an_end(path: Path) -> str:
    """Which of a bag's several mcap files do not end with the mcap magic (rosbags' "File end magic is invalid" names
    none of them): the file of a split recording that was cut short. Empty when there is no such file to name."""
    files = storage_files(path, (".mcap",)) if path.is_dir() else []
    if len(files) < 2:
        return ""
    cut = []
    for file in files:
        with file.open("rb") as stream:
            stream.seek(max(file.stat().st_size - len(_MCAP_MAGIC), 0))
            if stream.read() != _MCAP_MAGIC:
                cut.append(file.name)
    if not cut:
        return ""
    return f" ({', '.join(cut)} of its {len(files)} files {'has' if len(cut) == 1 else 'have'} no valid end)"


def is_bag_dir(path: Path) -> bool:
    """Whether the directory ``path`` is a bag: it has ``metadata.yaml``, or storage files of its own."""
    return (path / "metadata.yaml").exists() or bool(storage_files(path))


def check_bag_path(path: Path) -> None:
    """Raise :class:`DatasetError` naming what is wrong when ``path`` cannot be a rosbag2 bag."""
    if not path.exists():
        raise DatasetError(f"bag {path} does not exist")
    if path.is_dir() and not is_bag_dir(path):
        # rosbags would say "Expected metadata file ... does not exist", which hides that the directory is no bag.
        raise DatasetError(f"{path} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file")


def storage_path(path: Path) -> Path:
    """What rosbags should open: a bag directory without ``metadata.yaml`` (a killed recorder never wrote it, or an
    mcap file was copied on its own) holding exactly one storage file is read through that file, whose own index
    rosbags reads."""
    if not path.is_dir() or (path / "metadata.yaml").exists():
        return path
    files = storage_files(path)
    return files[0] if len(files) == 1 else path


def open_rosbags(path: Path) -> Reader:
    """rosbags' Reader on ``path`` (a bag directory or storage file, see :func:`storage_path`), opened, once every mcap
    file of it has passed :func:`check_mcap_index`. Raises one of :data:`STORAGE_READ_ERRORS` or an OSError when the
    bag cannot be opened so: the callers' salvage path then reads an mcap file front to back."""
    for mcap_file in storage_files(path, (".mcap",)):
        check_mcap_index(mcap_file)
    reader = Reader(path)
    reader.open()
    return reader


_MCAP_MAGIC = b"\x89MCAP0\r\n"
_RECORD_HEAD = struct.Struct("<BQ")  # every mcap record: opcode, length of what follows
_FOOTER = struct.Struct("<BQQQI")  # opcode, length (20), summary start, summary offset start, summary CRC
_FOOTER_SIZE = _FOOTER.size + len(_MCAP_MAGIC)
_CHUNK_INDEX_HEAD = struct.Struct("<QQQQI")  # start and end time, chunk start offset, chunk length, offsets' bytes
_CHUNK_HEAD = struct.Struct("<BQQQQII")  # opcode, length, start/end time, uncompressed size, CRC, compression's bytes
_OPCODE_HEADER, _OPCODE_FOOTER, _OPCODE_CHUNK, _OPCODE_CHUNK_INDEX = 0x01, 0x02, 0x06, 0x08


def check_mcap_index(path: Path) -> None:
    """Raise :class:`BagIndexError` naming ``path`` and what is wrong when the footer of an mcap file that has one
    points outside the file, or its summary's records or chunk indexes do not fit it.

    rosbags trusts an mcap file's index: with bytes missing from the middle of the file, every offset after the gap
    points a little too far and rosbags reads a record length at the wrong place (a MemoryError for the huge size it
    then allocates). The summary is small, and each chunk is checked by the ~50 bytes of its header (its opcode,
    sizes and compression must be the index's), so this costs little beside reading the bag. A file without a valid
    footer (cut short) is left to rosbags, which refuses it by name and the salvage path reads it; one without a
    summary (rosbags scans it) has its top-level records checked to end inside the file."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(len(_MCAP_MAGIC) + _RECORD_HEAD.size)
        if head[: len(_MCAP_MAGIC)] != _MCAP_MAGIC:
            return  # not mcap: rosbags refuses it by name
        if len(head) < len(_MCAP_MAGIC) + _RECORD_HEAD.size:  # rosbags raises a TypeError on it
            raise BagIndexError(f"mcap file {path} is cut short inside its header ({size} bytes)")
        opcode, length = _RECORD_HEAD.unpack_from(head, len(_MCAP_MAGIC))
        data_start = len(head) + length
        if opcode != _OPCODE_HEADER or data_start > size:
            raise BagIndexError(f"mcap file {path} is damaged: its header record (opcode {opcode:#04x}, {length} "
                                f"bytes) does not fit the file ({size} bytes)")
        if size < data_start + _FOOTER_SIZE:
            return  # no room for a footer: cut short
        stream.seek(size - _FOOTER_SIZE)
        tail = stream.read(_FOOTER_SIZE)
        opcode, length, summary_start, summary_offset_start, summary_crc = _FOOTER.unpack_from(tail)
        if tail[_FOOTER.size:] != _MCAP_MAGIC or opcode != _OPCODE_FOOTER or length != _FOOTER.size - 9:
            return  # no valid end (cut short): rosbags says so, and the salvage path reads the records before it
        footer_start = size - _FOOTER_SIZE
        if summary_start == 0:
            _check_mcap_records(path, stream, data_start, footer_start)
            return
        if not data_start <= summary_start <= footer_start:
            raise BagIndexError(f"mcap file {path} is damaged: its footer puts the summary at byte {summary_start}, "
                                f"outside its data (bytes {data_start} to {footer_start})")
        if summary_offset_start and not summary_start <= summary_offset_start <= footer_start:
            raise BagIndexError(f"mcap file {path} is damaged: its footer puts the summary offsets at byte "
                                f"{summary_offset_start}, outside its summary (bytes {summary_start} to "
                                f"{footer_start})")
        stream.seek(summary_start)
        summary = stream.read(footer_start - summary_start)
        # The CRC covers the summary and the footer up to the CRC (ROS 2's recorder writes it; rosbags leaves 0).
        if summary_crc and zlib.crc32(tail[: _FOOTER.size - 4], zlib.crc32(summary)) != summary_crc:
            raise BagIndexError(f"mcap file {path} is damaged: its summary (bytes {summary_start} to {footer_start}) "
                                "does not match its CRC")
        chunks = []
        position = 0
        while position < len(summary):
            if position + _RECORD_HEAD.size > len(summary):
                raise BagIndexError(f"mcap file {path} is damaged: its summary (from byte {summary_start}) ends "
                                    f"inside a record at byte {summary_start + position}")
            opcode, length = _RECORD_HEAD.unpack_from(summary, position)
            body = position + _RECORD_HEAD.size
            if length > len(summary) - body:
                raise BagIndexError(f"mcap file {path} is damaged: the summary record (opcode {opcode:#04x}) at byte "
                                    f"{summary_start + position} claims {length} bytes, past the footer at byte "
                                    f"{footer_start}")
            if opcode == _OPCODE_CHUNK_INDEX:
                chunks.append(summary[body:body + length])
            position = body + length
        for number, chunk_index in enumerate(chunks):
            _check_mcap_chunk(path, stream, number, chunk_index, data_start, summary_start)


def _check_mcap_chunk(path: Path, stream: Any, number: int, chunk_index: bytes, data_start: int,
                      data_end: int) -> None:
    """Raise :class:`BagIndexError` when chunk index ``number`` does not point at a chunk of its sizes in the data."""
    try:
        _, _, start, length, offsets_bytes = _CHUNK_INDEX_HEAD.unpack_from(chunk_index)
        at = _CHUNK_INDEX_HEAD.size + offsets_bytes + 8  # past the message index offsets and their length
        (compression_bytes,) = struct.unpack_from("<I", chunk_index, at)
        compression = chunk_index[at + 4:at + 4 + compression_bytes]
        compressed_size, uncompressed_size = struct.unpack_from("<QQ", chunk_index, at + 4 + compression_bytes)
    except struct.error as exc:
        raise BagIndexError(f"mcap file {path} is damaged: chunk index {number} of its summary is cut short "
                            f"({exc})") from exc
    header_size = _CHUNK_HEAD.size + len(compression) + 8  # up to the compressed records, whose size comes last
    if start < data_start or start + max(length, header_size + compressed_size) > data_end:
        raise BagIndexError(f"mcap file {path} is damaged: its summary puts chunk {number} at bytes {start} to "
                            f"{start + length}, outside its data (bytes {data_start} to {data_end})")
    stream.seek(start)
    header = stream.read(header_size)
    expected = (_OPCODE_CHUNK, uncompressed_size, len(compression), compression, compressed_size)
    try:
        opcode, _, _, _, found_uncompressed, _, found_compression_bytes = _CHUNK_HEAD.unpack_from(header)
        found_compression = header[_CHUNK_HEAD.size:_CHUNK_HEAD.size + found_compression_bytes]
        (found_compressed,) = struct.unpack_from("<Q", header, _CHUNK_HEAD.size + found_compression_bytes)
        found = (opcode, found_uncompressed, found_compression_bytes, found_compression, found_compressed)
    except struct.error:
        found = None
    if found != expected:
        raise BagIndexError(f"mcap file {path} is damaged: its summary puts chunk {number} at byte {start}, where no "
                            "chunk of the indexed sizes starts (bytes missing or garbled before it)")


def _check_mcap_records(path: Path, stream: Any, data_start: int, data_end: int) -> None:
    """Raise :class:`BagIndexError` when a top-level record of an mcap file without summary (which rosbags reads by
    scanning) claims more bytes than are left before the footer."""
    position = data_start
    while position < data_end:
        if position + _RECORD_HEAD.size > data_end:
            raise BagIndexError(f"mcap file {path} is damaged: a record starts at byte {position}, too close to the "
                                f"footer at byte {data_end} to hold its opcode and length")
        stream.seek(position)
        opcode, length = _RECORD_HEAD.unpack(stream.read(_RECORD_HEAD.size))
        if length > data_end - position - _RECORD_HEAD.size:
            raise BagIndexError(f"mcap file {path} is damaged: the record (opcode {opcode:#04x}) at byte {position} "
                                f"claims {length} bytes, past the footer at byte {data_end}")
        position += _RECORD_HEAD.size + length


def _records() -> Any:
    from mcap import records

    return records


def _mcap_errors() -> tuple[type[Exception], ...]:
    try:
        from mcap.exceptions import McapError
    except ImportError:  # the mcap library is optional: without it a damaged mcap bag cannot be salvaged
        return (EOFError,)
    return (McapError, EOFError, struct.error, ValueError, MemoryError, OverflowError, *_decompression_errors())


#: What the mcap library's stream reader raises at a file's damage (bad magic, a record cut short, a bad CRC, a
#: MemoryError for a chunk whose garbled uncompressed size is allocated before decompressing).
MCAP_READ_ERRORS = _mcap_errors()
