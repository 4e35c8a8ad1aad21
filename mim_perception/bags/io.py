"""ROS-free rosbag2 reading and writing on top of ``rosbags`` (rosbag2_py is not on PyPI).

Messages travel as raw CDR bytes: replay publishes them unchanged and recording writes what the
subscription delivered, so no message is deserialised on the hot path. Typestore: ``ROS2_KILTED``
plus any custom ``.msg`` packages registered with :func:`register_msg_dirs`.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype, TypesysError

from mim_perception.core.errors import BagError

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys.store import Typestore

STORAGES = ("mcap", "sqlite3")
# CDR encapsulation header (4 bytes) then builtin_interfaces/Time: int32 sec, uint32 nanosec.
_STAMP_OFFSET = 4
_HEADER_LINE = re.compile(r"^\s*(std_msgs/(msg/)?)?Header\s+header\s*(#.*)?$")


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    timestamp_ns: int  # the bag's (receive) time, not header.stamp
    data: bytes  # serialized CDR, exactly as stored


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int
    msgdef: str  # message definition text stored in the bag ('' when absent)


@dataclass(frozen=True)
class BagSummary:
    path: Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: dict[str, TopicSummary]

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


# ------------------------------------------------------------------------------------------ types


def make_typestore(msg_dirs: Iterable[Path | str] = ()) -> Typestore:
    """The Kilted typestore with the ``.msg`` packages found under ``msg_dirs`` registered."""

    store = get_typestore(Stores.ROS2_KILTED)
    register_msg_dirs(store, msg_dirs)
    return store


def _msg_files(directory: Path) -> list[tuple[str, Path]]:
    """(package, file) for ``directory`` being a msg dir, a package dir or a folder of packages."""
    if directory.name == "msg":
        return [(directory.parent.name, f) for f in sorted(directory.glob("*.msg"))]
    if (directory / "msg").is_dir():
        return [(directory.name, f) for f in sorted((directory / "msg").glob("*.msg"))]
    return [(f.parent.parent.name, f) for f in sorted(directory.glob("*/msg/*.msg"))]


def register_msg_dirs(typestore: Typestore, dirs: Iterable[Path | str]) -> list[str]:
    """Register every ``PKG/msg/NAME.msg`` under ``dirs``; returns the type names (``PKG/msg/NAME``).

    Each entry may be a ``msg`` folder, a package folder, or a folder of packages (``interfaces/``).
    All types are registered in one call so packages may reference each other in any order.
    """

    typs: dict[str, object] = {}
    for d in dirs:
        directory = Path(d)
        if not directory.is_dir():
            raise BagError(f"message directory {directory} does not exist")
        for pkg, f in _msg_files(directory):
            name = f"{pkg}/msg/{f.stem}"
            try:
                typs.update(get_types_from_msg(f.read_text(encoding="utf-8"), name))
            except (TypesysError, UnicodeDecodeError) as e:
                raise BagError(f"cannot parse message definition {f}: {e}") from e
    if typs:
        try:
            typestore.register(typs)  # type: ignore[arg-type]
        except TypesysError as e:
            raise BagError(f"cannot register message types from {list(dirs)}: {e}") from e
    return sorted(typs)


def repo_msg_dirs(repo_root: Path | None = None) -> list[Path]:
    """``interfaces/`` of this repository when it exists (source checkout), else nothing."""
    root = repo_root or Path(__file__).resolve().parents[2]
    return [root / "interfaces"] if (root / "interfaces").is_dir() else []


DEMO_BAG_NAME = "highway_front"


def default_demo_bag() -> Path:
    """The bundled demo drive: demo/ of the source tree, else share/mim_perception/demo of the install."""
    here = Path(__file__).resolve().parents[2] / "demo" / DEMO_BAG_NAME
    installed = Path(sys.prefix) / "share" / "mim_perception" / "demo" / DEMO_BAG_NAME
    for p in (here, installed):
        if p.exists():
            return p
    raise BagError(f"bundled demo bag not found (looked in {here} and {installed}); pass --bag")


def installed_msg_dir(package: str) -> Path | None:
    """``share/PACKAGE/msg`` of an installed ROS package (venv prefix or AMENT_PREFIX_PATH), if any."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    for prefix in prefixes:
        d = Path(prefix) / "share" / package / "msg"
        if d.is_dir():
            return d
    return None


def _unresolved(typestore: Typestore) -> set[str]:
    """Type names referenced by registered types but not registered themselves."""

    refs: set[str] = set()
    for _, fields in typestore.fielddefs.values():
        for _, desc in fields:
            node: Any = desc[1][0] if desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE) else desc
            if node[0] == Nodetype.NAME:
                refs.add(str(node[1]))
    return refs - typestore.fielddefs.keys()


def ensure_type(typestore: Typestore, msgtype: str) -> None:
    """Make ``msgtype`` known to ``typestore``, loading installed packages' ``.msg`` files as needed."""
    tried: set[str] = set()
    pending = {msgtype} - typestore.fielddefs.keys()
    while pending:  # the type's package, then the packages of anything it references that is still unknown
        pkgs = {t.split("/")[0] for t in pending} - tried
        if not pkgs:
            break
        for pkg in pkgs:
            tried.add(pkg)
            d = installed_msg_dir(pkg)
            if d is not None:
                register_msg_dirs(typestore, [d])
        pending = ({msgtype} - typestore.fielddefs.keys()) | _unresolved(typestore)
    if msgtype not in typestore.fielddefs:
        raise BagError(f"message type {msgtype} is unknown: register its .msg files (msg_dirs) or install it")


def has_leading_header(msgtype: str, msgdef: str = "", typestore: Typestore | None = None) -> bool:
    """Whether the message starts with ``std_msgs/Header header`` (so its stamp sits at a fixed offset)."""
    if typestore is not None and msgtype in typestore.fielddefs:
        fields = typestore.fielddefs[msgtype][1]
        return bool(fields) and fields[0][0] == "header" and fields[0][1][1] == "std_msgs/msg/Header"
    for line in msgdef.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return bool(_HEADER_LINE.match(line))
    return False


def _stamp_format(data: bytes | bytearray) -> str:
    if len(data) < _STAMP_OFFSET + 8:
        raise BagError(f"message of {len(data)} bytes is too short to hold a header stamp")
    return "<iI" if data[1] & 1 else ">iI"  # CDR_LE / PL_CDR_LE have the low bit set


def header_stamp_ns(data: bytes | bytearray) -> int:
    """``header.stamp`` of a serialized message whose first field is a Header, read without deserialising."""
    sec, nsec = struct.unpack_from(_stamp_format(data), data, _STAMP_OFFSET)
    return sec * 1_000_000_000 + nsec


def with_header_stamp(data: bytes, stamp_ns: int) -> bytes:
    """A copy of ``data`` whose ``header.stamp`` is ``stamp_ns`` (an 8-byte patch, no re-serialisation)."""
    out = bytearray(data)
    struct.pack_into(_stamp_format(out), out, _STAMP_OFFSET, *divmod(stamp_ns, 1_000_000_000))
    return bytes(out)


# ----------------------------------------------------------------------------------------- reading


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        # rosbag2 writes metadata.yaml on close; a crashed recorder leaves a lone .mcap that is still readable.
        files = sorted(path.glob("*.mcap"))
        if len(files) == 1:
            return files[0]
        raise BagError(f"{path} is not a bag: no metadata.yaml (and not exactly one .mcap file) in it")
    if path.is_file() and path.suffix not in {".mcap", ".db3"}:
        raise BagError(f"{path} is not a bag: expected a bag directory, a .mcap or a .db3 file")
    return path


def open_reader(path: Path | str) -> Reader:
    """An opened ``rosbags`` Reader for a bag directory (sqlite3 or mcap) or a bare ``.mcap``; BagError if not a bag."""

    target = _resolve(Path(path))
    try:
        reader = Reader(target)
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError, struct.error) as e:
        raise BagError(f"{path} is not a readable bag: {e}") from e
    return reader


def _storage_name(reader: Reader) -> str:
    storages = getattr(reader.storage, "storages", None) or [reader.storage]  # a directory holds several files
    return "mcap" if "mcap" in type(storages[0]).__name__.lower() else "sqlite3"


def bag_summary(path: Path | str) -> BagSummary:
    """Topics, types, counts and time range from the bag's index (no message is read)."""
    reader = open_reader(path)
    try:
        topics = {
            name: TopicSummary(name, info.msgtype or "?", info.msgcount, info.msgdef.data if info.msgdef else "")
            for name, info in reader.topics.items()
        }
        count = reader.message_count
        start, end = (reader.start_time, reader.end_time) if count else (0, 0)
        return BagSummary(Path(path), _storage_name(reader), start, end, count, topics)
    finally:
        reader.close()


def topic_types(path: Path | str) -> dict[str, str]:
    """topic -> message type (``sensor_msgs/msg/Image``)."""
    return {t.name: t.msgtype for t in bag_summary(path).topics.values()}


def check_topics(available: Iterable[str], requested: Iterable[str], path: Path | str) -> None:
    """BagError naming every requested topic the bag lacks and listing those it has."""
    have = sorted(available)
    missing = [t for t in requested if t not in have]
    if missing:
        raise BagError(f"bag {path} has no topic {', '.join(missing)}; available topics: {', '.join(have) or 'none'}")


def _select(reader: Reader, topics: Iterable[str] | None, path: Path | str) -> list[Connection]:
    if topics is None:
        return list(reader.connections)
    wanted = list(topics)
    check_topics(reader.topics, wanted, path)
    return [c for c in reader.connections if c.topic in wanted]


def iter_messages(path: Path | str, topics: Iterable[str] | None = None, start: float | None = None,
                  duration: float | None = None) -> Iterator[BagMessage]:
    """Messages in bag-time order as (topic, msgtype, timestamp_ns, raw CDR bytes).

    ``start`` and ``duration`` are seconds: ``start`` is an offset from the bag's first message, and only
    messages in ``[start, start + duration)`` are yielded. Missing topics raise BagError before any yield.
    """
    if start is not None and start < 0:
        raise BagError(f"start offset must be >= 0 s, got {start}")
    if duration is not None and duration <= 0:
        raise BagError(f"duration must be > 0 s, got {duration}")
    reader = open_reader(path)
    try:
        conns = _select(reader, topics, path)
        if not conns or reader.message_count == 0:
            return
        t0 = reader.start_time + round((start or 0.0) * 1e9)
        t1 = None if duration is None else t0 + round(duration * 1e9)
        for conn, ts, data in reader.messages(conns, start=t0, stop=t1):
            yield BagMessage(conn.topic, conn.msgtype, ts, bytes(data))
    finally:
        reader.close()


# ----------------------------------------------------------------------------------------- writing


class BagWriter:
    """rosbag2 (v9) writer for raw CDR messages; topics are added on first use from their type name.

    Use as a context manager. ``storage`` is ``"mcap"`` or ``"sqlite3"``. Types outside the Kilted
    typestore are loaded from ``msg_dirs`` or, failing that, from the installed package's ``.msg`` files.
    """

    def __init__(self, path: Path | str, storage: str = "mcap", typestore: Typestore | None = None,
                 msg_dirs: Iterable[Path | str] = ()) -> None:

        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; use one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; not overwriting")
        self.storage = storage
        self.typestore = typestore if typestore is not None else make_typestore(msg_dirs)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer: Writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._conns: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def __enter__(self) -> BagWriter:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        try:
            self._writer.open()
        except Exception as e:
            raise BagError(f"cannot create bag {self.path}: {e}") from e
        self._open = True

    def add_topic(self, topic: str, msgtype: str, msgdef: str | None = None, rihs01: str | None = None) -> None:
        """Declare ``topic`` (idempotent). ``msgdef``/``rihs01`` bypass the typestore (copying another bag)."""
        if topic in self._conns:
            if self._conns[topic].msgtype != msgtype:
                raise BagError(f"topic {topic} already recorded as {self._conns[topic].msgtype}, not {msgtype}")
            return
        if not (msgdef and rihs01):
            ensure_type(self.typestore, msgtype)
            msgdef = rihs01 = None
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                         msgdef=msgdef, rihs01=rihs01)
        self.counts[topic] = 0

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        if topic not in self._conns:
            self.add_topic(topic, msgtype)
        self._writer.write(self._conns[topic], timestamp_ns, data)
        self.counts[topic] += 1

    def write_msg(self, topic: str, msgtype: str, timestamp_ns: int, msg: object) -> None:
        """Serialize a typestore message object (``typestore.types[msgtype](...)``) and write it."""
        self.write(topic, msgtype, timestamp_ns, bytes(self.typestore.serialize_cdr(msg, msgtype)))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()
