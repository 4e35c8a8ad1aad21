"""``mim-perception record TOPIC...``: write live topics to a rosbag2 (mcap or sqlite3).

Subscriptions are ``raw=True``: rclpy hands over the serialized CDR bytes and they are written as
they are, so recording never deserialises an image. Topic types come from the graph (polled with a
timeout); QoS follows the publishers (reliable only when every publisher offers reliable, else best
effort) with a deep queue so a burst is not dropped while the writer is busy.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from tqdm import tqdm

from mim_perception.bags.io import (
    STORAGES,
    BagWriter,
    has_leading_header,
    header_stamp_ns,
    make_typestore,
    repo_msg_dirs,
)
from mim_perception.core.errors import BagError
from mim_perception.ros.replay import message_class

if TYPE_CHECKING:
    from rclpy.context import Context
    from rclpy.node import Node

STAMP_CHOICES = ("receive", "header")
QOS_CHOICES = ("auto", "reliable", "sensor")
_IGNORED = frozenset({"/rosout", "/parameter_events"})


@dataclass(frozen=True)
class RecordOptions:
    """Every recording knob; the CLI takes its defaults from here."""

    storage: str = "mcap"
    duration: float | None = None  # s after the subscriptions exist
    max_messages: int | None = None  # stop after this many messages in total
    stamp: str = "receive"  # bag timestamp: receive time (node clock) or the message's header.stamp
    qos: str = "auto"
    depth: int = 100  # subscription queue depth
    type_timeout: float = 10.0  # s to wait for every topic to appear on the graph

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {self.storage!r}")
        if self.stamp not in STAMP_CHOICES:
            raise BagError(f"stamp must be one of {', '.join(STAMP_CHOICES)}, got {self.stamp!r}")
        if self.qos not in QOS_CHOICES:
            raise BagError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {self.qos!r}")
        if (self.duration is not None and self.duration <= 0) or (self.max_messages is not None
                                                                    and self.max_messages <= 0):
            raise BagError("duration and max_messages must be > 0")


@dataclass
class RecordStats:
    path: Path
    storage: str
    counts: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def resolve_types(node: Node, topics: Sequence[str], timeout: float,
                  stop: threading.Event | None = None) -> dict[str, str]:
    """topic -> type from the ROS graph, polling until all appear; BagError naming the missing ones."""
    deadline = time.monotonic() + timeout
    while True:
        graph = {name: types for name, types in node.get_topic_names_and_types()}
        missing = [t for t in topics if t not in graph]
        if not missing:
            break
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            seen = sorted(set(graph) - _IGNORED)
            raise BagError(f"topic {', '.join(missing)} did not appear on the graph within {timeout:.1f} s; "
                           f"topics seen: {', '.join(seen) or 'none'}")
        time.sleep(0.05)
    for t in topics:
        if len(graph[t]) != 1:
            raise BagError(f"topic {t} carries several types {graph[t]}; cannot record it")
    return {t: graph[t][0] for t in topics}


def _subscription_qos(node: Node, topic: str, opts: RecordOptions) -> Any:

    if opts.qos == "auto":
        infos = node.get_publishers_info_by_topic(topic)
        reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    else:
        reliable = opts.qos == "reliable"
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=opts.depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def record_topics(output: Path | str, topics: Sequence[str], options: RecordOptions | None = None, *,
                  context: Context | None = None, stop_event: threading.Event | None = None,
                  ready_event: threading.Event | None = None, progress: bool = False,
                  **overrides: Any) -> RecordStats:
    """Record ``topics`` into a new bag at ``output`` until duration / max_messages / ``stop_event``.

    Runs its own node and executor in ``context`` (or a private context), so it can run in a thread
    beside other nodes of the same context. ``ready_event`` is set once the subscriptions exist.
    ``overrides`` are RecordOptions fields (``storage="sqlite3", max_messages=30, ...``).
    """

    opts = dataclasses.replace(options or RecordOptions(), **overrides)
    if not topics:
        raise BagError("no topics to record")
    stop = stop_event or threading.Event()
    own_ctx = None
    if context is None:

        own_ctx = context = Context()
        rclpy.init(context=own_ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("mim_recorder", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        types = resolve_types(node, topics, opts.type_timeout, stop)
        stats = RecordStats(Path(output), opts.storage, dict.fromkeys(topics, 0), types)
        store = make_typestore(repo_msg_dirs())
        with BagWriter(output, opts.storage, store) as writer:
            for t in topics:
                writer.add_topic(t, types[t])
            _spin(node, executor, writer, stats, opts, stop=stop, ready_event=ready_event, progress=progress)
        return stats
    finally:
        executor.shutdown()
        node.destroy_node()
        if own_ctx is not None:
            rclpy.try_shutdown(context=own_ctx)


def _spin(node: Node, executor: Any, writer: BagWriter, stats: RecordStats, opts: RecordOptions, *,
          stop: threading.Event, ready_event: threading.Event | None, progress: bool) -> None:
    stamped = {t for t, ty in stats.types.items() if has_leading_header(ty, "", writer.typestore)}
    clock = node.get_clock()
    bar = None
    if progress:

        bar = tqdm(total=opts.max_messages, unit="msg", desc="record")

    def on_message(topic: str, data: bytes) -> None:
        if opts.max_messages is not None and stats.total >= opts.max_messages:
            return  # messages already queued when the limit was hit
        ts = header_stamp_ns(data) if opts.stamp == "header" and topic in stamped else clock.now().nanoseconds
        writer.write(topic, stats.types[topic], ts, data)
        stats.counts[topic] += 1
        if bar is not None:
            bar.update(1)

    for t in stats.types:
        node.create_subscription(message_class(stats.types[t]), t, lambda d, t=t: on_message(t, d),
                                 _subscription_qos(node, t, opts), raw=True)
    executor.add_node(node)
    if ready_event is not None:
        ready_event.set()
    t0 = time.monotonic()
    end = None if opts.duration is None else t0 + opts.duration
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            if opts.max_messages is not None and stats.total >= opts.max_messages:
                break
            executor.spin_once(timeout_sec=0.05)
    finally:
        stats.wall_s = time.monotonic() - t0
        if bar is not None:
            bar.close()


# -------------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction, verb: str) -> None:
    d = RecordOptions()
    p = subparsers.add_parser(verb, help="record live topics (raw CDR) into an mcap or sqlite3 bag")
    p.add_argument("topics", nargs="+", help="topics to record")
    p.add_argument("-o", "--output", help="bag directory to create (default rosbag2_YYYY_MM_DD-HH_MM_SS)")
    p.add_argument("--storage", choices=STORAGES, default=d.storage, help="default %(default)s")
    p.add_argument("--duration", type=float, default=d.duration, help="s to record (default: until Ctrl-C)")
    p.add_argument("--max-messages", type=int, default=d.max_messages, help="stop after N messages in total")
    p.add_argument("--stamp", choices=STAMP_CHOICES, default=d.stamp,
                   help="bag timestamp: receive time or header.stamp (default %(default)s)")
    p.add_argument("--qos", choices=QOS_CHOICES, default=d.qos,
                   help="auto: reliable only if every publisher is reliable (default %(default)s)")
    p.add_argument("--depth", type=int, default=d.depth, help="subscription queue depth")
    p.add_argument("--type-timeout", type=float, default=d.type_timeout,
                   help="s to wait for the topics to appear on the graph")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    output = args.output or time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")
    opts = RecordOptions(storage=args.storage, duration=args.duration, max_messages=args.max_messages,
                         stamp=args.stamp, qos=args.qos, depth=args.depth, type_timeout=args.type_timeout)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C closes the bag properly
    try:
        stats = record_topics(output, args.topics, opts, stop_event=stop, progress=not args.no_progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"wrote {stats.total} messages in {stats.wall_s:.1f} s to {stats.path} ({stats.storage})")
    for topic, n in stats.counts.items():
        print(f"  {topic} [{stats.types[topic]}]: {n}")
    return 0
