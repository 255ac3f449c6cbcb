"""Write and read rosbag2 bags (mcap by default, sqlite3 on request) with the :func:`make_typestore` types.

Reading is tolerant in the way an evaluation needs: messages of types the type store does not know and messages
that do not deserialise are skipped and counted, and an mcap bag that ends early (a recorder that was killed, a file
cut short in a copy) yields what it has, then reports the error in :attr:`BagReader.read_error` instead of losing the
messages before it. A bag directory without ``metadata.yaml`` that holds a single storage file is read through that
file (an mcap file carries its own index), without any error; one without any storage file is refused as no bag.
A damaged sqlite3 database cannot be read past its damage by sqlite, so such a bag is refused with a
:class:`DatasetError`.
"""

from __future__ import annotations

import sqlite3
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import apsw  # rosbags' sqlite3 storage reads through it (see STORAGE_READ_ERRORS)
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError

from trusted_scene_graph.dataset import DatasetError
from trusted_scene_graph.dataset.typestore import make_typestore
from trusted_scene_graph.text import plural

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# rosbag2 metadata version written; 9 is what Jazzy and Kilted's rosbag2 write and read.
BAG_VERSION = 9

#: What a truncated or damaged file raises inside rosbags' storage readers (mcap: struct and decoding errors, and an
#: OverflowError for a garbled record length; sqlite3: rosbags reads through apsw, whose errors (a malformed database
#: image) are not sqlite3's). Only these are turned into a partial read or a refused bag; anything else is a bug and
#: propagates. Shared by every reader of bags here (tsg eval, tsg label, tsg replay).
STORAGE_READ_ERRORS = (ReaderError, sqlite3.DatabaseError, apsw.Error, struct.error, EOFError, ValueError, IndexError,
                       KeyError, OverflowError)

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
        hash, serialisation format and offered QoS, for :meth:`write_raw`. A source without a stored definition
        (older bags) gets the type store's, when it knows the type."""
        msgdef, rihs01 = source.msgdef.data, source.digest
        if not msgdef or not rihs01:
            if source.msgtype not in self.typestore.fielddefs:
                raise DatasetError(f"topic {source.topic!r}: the bag stores no definition of {source.msgtype!r} and "
                                   "the type store does not know it, so it cannot be copied")
            msgdef, rihs01 = None, None
        return self._writer.add_connection(source.topic, source.msgtype, typestore=self.typestore, msgdef=msgdef,
                                           rihs01=rihs01, serialization_format=source.ext.serialization_format,
                                           offered_qos_profiles=source.ext.offered_qos_profiles)

    def write_raw(self, connection: Any, raw: bytes, log_time_ns: int) -> None:
        """Write already serialised bytes on a connection from :meth:`copy_connection`, unchanged."""
        self._writer.write(connection, int(log_time_ns), raw)
        self.messages_written += 1

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Serialise ``msg`` (a type-store message) as CDR and write it at ``log_time_ns``."""
        connection = self._connections.get(topic)
        if connection is None:
            raise DatasetError(f"topic {topic!r} was not added to the bag")
        self._writer.write(connection, int(log_time_ns), self.typestore.serialize_cdr(msg, connection.msgtype))
        self.messages_written += 1


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
            self._reader = Reader(storage_path(self.path))
            self._reader.open()
        except (*STORAGE_READ_ERRORS, OSError) as exc:
            # rosbags needs an mcap file's summary at its end, which a recorder that was killed never wrote; the
            # records before the cut are intact, so read them in order with the mcap library instead.
            self._salvage = McapStream.open(self.path)
            if self._salvage is None:
                raise DatasetError(f"cannot open bag {self.path}: {exc}") from exc
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
                msg = self.typestore.deserialize_cdr(raw, msgtype)
            except (SerdeError, ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
                self.undecodable[f"{topic} ({type(exc).__name__})"] += 1
                continue
            yield BagMessage(topic, msgtype, int(log_time_ns), msg)


@dataclass(frozen=True)
class McapChannel:
    """One channel of an mcap file: its topic, message type and metadata (rosbag2 keeps the offered QoS there)."""

    id: int
    topic: str
    msgtype: str
    metadata: Mapping[str, str]


class McapStream:
    """An mcap file read front to back with the mcap library's stream reader, up to its damage if it has one.

    rosbags needs an mcap file's summary at its end, which a recorder that was killed never wrote; the records before
    the cut are intact. Shared by :class:`BagReader`, ``tsg label`` and ``tsg replay``. Each iteration re-reads the
    file, so nothing stays open. :attr:`damage` says where reading stopped (None: the file is whole, footer and
    closing magic read). CRCs are checked where the file stores them (ROS 2's recorder does; rosbags' writer leaves
    them 0). Raises one of :data:`MCAP_READ_ERRORS` when not even the file's start is mcap.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.damage: str | None = None
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
            return cls(files[0])
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
        if self.damage is None or self.damage.startswith("EndOfFile"):
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
        """Every record up to the damage (recording it in :attr:`damage`), channels collected on the way."""
        from mcap.stream_reader import StreamReader

        records = _records()
        schemas: dict[int, str] = {}
        started = False
        self.damage = None
        with self.path.open("rb") as stream:
            try:
                # CRCs are checked where the file stores them: a chunk damaged inside is the damage, not messages
                # with garbled bytes (a cut-short file is suspect as a whole; checking costs little beside reading).
                for record in StreamReader(stream, validate_crcs=True).records:
                    started = True
                    if isinstance(record, records.Schema):
                        schemas[record.id] = record.name
                    elif isinstance(record, records.Channel):  # the summary repeats each channel: same id, content
                        self.channels[record.id] = McapChannel(record.id, record.topic,
                                                               schemas.get(record.schema_id, ""), record.metadata)
                    yield record
            except MCAP_READ_ERRORS as exc:
                if not started:
                    raise  # not an mcap file at all
                self.damage = f"{type(exc).__name__}: {exc}"

    def messages(self, channel_ids: Iterable[int] | None = None,
                 start_ns: int = 0) -> Iterator[tuple[McapChannel, int, bytes]]:
        """(channel, log time, raw bytes) of the messages of known channels, in file order (the recorder's write
        order), optionally only of ``channel_ids`` and from ``start_ns`` on."""
        message_type = _records().Message
        wanted = None if channel_ids is None else set(channel_ids)
        for record in self.records():
            if (isinstance(record, message_type) and record.channel_id in self.channels
                    and (wanted is None or record.channel_id in wanted) and record.log_time >= start_ns):
                yield self.channels[record.channel_id], record.log_time, record.data


def storage_files(path: Path, suffixes: tuple[str, ...] = (".mcap", ".db3")) -> list[Path]:
    """The rosbag2 storage files of ``path``: itself when it is such a file, else those directly in the directory."""
    if path.is_file():
        return [path] if path.suffix in suffixes else []
    return sorted(f for f in path.iterdir() if f.suffix in suffixes and f.is_file()) if path.is_dir() else []


def check_bag_path(path: Path) -> None:
    """Raise :class:`DatasetError` naming what is wrong when ``path`` cannot be a rosbag2 bag."""
    if not path.exists():
        raise DatasetError(f"bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").exists() and not storage_files(path):
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


def _records() -> Any:
    from mcap import records

    return records


def _mcap_errors() -> tuple[type[Exception], ...]:
    try:
        from mcap.exceptions import McapError
    except ImportError:  # the mcap library is optional: without it a damaged mcap bag cannot be salvaged
        return (EOFError,)
    return (McapError, EOFError, struct.error, ValueError)


#: What the mcap library's stream reader raises at a file's damage (bad magic, a record cut short, a bad CRC).
MCAP_READ_ERRORS = _mcap_errors()
