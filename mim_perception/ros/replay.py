"""``mim-perception replay BAG``: publish a bag's topics with their recorded timing, plus /clock.

Messages are published as the raw CDR bytes stored in the bag (rclpy accepts serialized bytes), so
replay costs no (de)serialisation. Planning (what is published when, rate, loops, remaps, the
start/duration window, /clock ticks) is ROS-free and unit-tested; ``replay_bag`` is a thin rclpy loop
that sleeps to absolute monotonic deadlines (lateness never accumulates into drift).

Loops: play k (k = 0, 1, ...) is shifted by k × period, where period = the window's span plus one mean
inter-message gap. /clock and the header stamps of stamped messages are shifted by the same amount,
so neither ever goes backwards across a loop (a rewound /clock would reset every sim-time consumer).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from mim_perception.bags.io import (
    BagMessage,
    bag_summary,
    check_topics,
    has_leading_header,
    header_stamp_ns,
    iter_messages,
    make_typestore,
    with_header_stamp,
)
from mim_perception.core.config import config_dir
from mim_perception.core.errors import BagError
from mim_perception.ros import qos

if TYPE_CHECKING:
    from rclpy.context import Context
    from rclpy.node import Node

IMAGE_TYPES = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"})
QOS_CHOICES = ("auto", "reliable", "sensor")


@dataclass(frozen=True)
class ReplayOptions:
    """Every replay knob; the CLI takes its defaults from here (one source of defaults)."""

    rate: float = 1.0  # playback speed factor
    loops: int = 1  # number of plays; 0 = forever
    start: float | None = None  # s, offset from the bag's first message
    duration: float | None = None  # s of bag time to play from start
    topics: tuple[str, ...] | None = None  # bag topics to play (None = all)
    remaps: tuple[tuple[str, str], ...] = ()  # (bag topic, published topic)
    qos: str = "auto"  # auto: images sensor-data (best effort, depth 1), others reliable depth 10
    clock: bool = True  # publish rosgraph_msgs/Clock from bag time
    clock_hz: float = 100.0  # /clock ticks per bag-second between messages (0 = only at messages)
    restamp: bool = False  # overwrite header.stamp with the wall time the message is scheduled for
    wait_for_subscribers: int = 0  # wait until the played topics have this many subscriptions in total
    wait_timeout: float = 10.0  # s; proceed (stats.subscribers_ready False) after this
    delay: float = 0.0  # s between subscribers matching and the first message (the far side matches later)
    flush_timeout: float = 2.0  # s to wait at the end for reliable subscribers to acknowledge everything

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise BagError(f"rate must be > 0, got {self.rate}")
        if self.loops < 0:
            raise BagError(f"loops must be >= 0 (0 = forever), got {self.loops}")
        if self.qos not in QOS_CHOICES:
            raise BagError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {self.qos!r}")
        if min(self.clock_hz, self.wait_for_subscribers, self.wait_timeout, self.delay, self.flush_timeout) < 0:
            raise BagError("clock_hz, wait_for_subscribers, wait_timeout, delay and flush_timeout must be >= 0")


@dataclass
class ReplayStats:
    published: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)  # published topic name -> count
    clock_published: int = 0
    last_clock_ns: int = 0
    loops_completed: int = 0
    start_wall_ns: int = 0  # time.time_ns() at the replay's t = 0 (first message's deadline)
    wall_s: float = 0.0
    max_lateness_ms: float = 0.0  # worst publish time after its deadline
    subscribers_ready: bool = True
    stopped: bool = False  # stop_event ended the replay early


class Event(NamedTuple):
    """One step of the plan: publish /clock = ``clock_ns`` (if set), then ``data`` on ``topic`` (if set)."""

    due_ns: int  # wall-clock offset from replay start at which to publish
    clock_ns: int | None
    topic: str | None  # published (remapped) name
    msgtype: str
    data: bytes
    stamp_shift_ns: int  # add to header.stamp (loop offset); 0 on the first play
    play: int


# ---------------------------------------------------------------------------------------- planning


def parse_remap(spec: str) -> tuple[str, str]:
    """``FROM:=TO`` (ros2 style) or ``FROM=TO``."""
    src, sep, dst = spec.partition(":=") if ":=" in spec else spec.partition("=")
    if not sep or not src.startswith("/") or not dst.startswith("/"):
        raise BagError(f"remap {spec!r} must look like /from:=/to")
    return src, dst


def loop_period_ns(first_ns: int, last_ns: int, count: int) -> int:
    """Bag-time shift between plays: span + one mean gap between the ``count`` distinct message instants."""
    span = last_ns - first_ns
    if count < 2 or span <= 0:
        return 1_000_000_000  # a single instant: one second between plays
    return span + span // (count - 1)


def plan(messages: Callable[[], Iterable[BagMessage]], opts: ReplayOptions,
         stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
    """The replay schedule. ``messages()`` yields one play of the (already windowed) bag in time order."""
    remap = dict(opts.remaps)
    tick = round(1e9 / opts.clock_hz) if opts.clock and opts.clock_hz > 0 else 0
    first = last = None
    count = 0
    period = 0
    last_clock: int | None = None
    play = 0
    while (opts.loops == 0 or play < opts.loops) and not stop():
        if play == 1:
            if first is None or last is None:
                return  # nothing to play
            period = loop_period_ns(first, last, count)
        shift = play * period
        for m in messages():
            if play == 0:
                first = m.timestamp_ns if first is None else first
                # distinct instants: an image and its CameraInfo share a stamp and make one gap, not two
                count += m.timestamp_ns != last
                last = m.timestamp_ns
            assert first is not None
            t = m.timestamp_ns + shift
            if tick and last_clock is not None:
                # Clock ticks in gaps between messages so sim-time timers keep firing.
                while last_clock + tick < t:
                    last_clock += tick
                    yield Event(round((last_clock - first) / opts.rate), last_clock, None, "", b"", 0, play)
            clock = t if opts.clock and (last_clock is None or t > last_clock) else None
            last_clock = clock if clock is not None else last_clock
            yield Event(round((t - first) / opts.rate), clock, remap.get(m.topic, m.topic), m.msgtype, m.data,
                        shift, play)
            if stop():
                return
        play += 1


# ----------------------------------------------------------------------------------------- rclpy


def message_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` -> the generated ``sensor_msgs.msg.Image`` class."""
    pkg, _, name = msgtype.rpartition("/")
    module = pkg.replace("/", ".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise BagError(f"message type {msgtype} is not installed (no Python module {module}.{name}): {e}") from e


def _qos_for(msgtype: str, choice: str) -> Any:

    if choice == "auto":
        return qos.SENSOR if msgtype in IMAGE_TYPES else qos.RELIABLE
    return qos.profile(choice)


def _wait(deadline_ns: int, stop: threading.Event) -> None:
    remaining = (deadline_ns - time.monotonic_ns()) / 1e9
    if remaining > 0:
        stop.wait(remaining)


def replay_bag(path: Path | str, node: Node | None = None, options: ReplayOptions | None = None, *,
               context: Context | None = None, stop_event: threading.Event | None = None,
               progress: bool = False, **overrides: Any) -> ReplayStats:
    """Replay ``path`` on ``node`` (or a node created in ``context``, or in a private context).

    ``overrides`` are ReplayOptions fields (``rate=5.0, loops=2, ...``). Safe to run in a thread while
    other threads spin ``node``: publishing needs no spinning. Set ``stop_event`` to end early.
    """
    opts = dataclasses.replace(options or ReplayOptions(), **overrides)
    summary = bag_summary(path)
    if opts.topics is not None:
        check_topics(summary.topics, opts.topics, path)
    check_topics(summary.topics, [src for src, _ in opts.remaps], path)
    names = [t for t in (opts.topics or summary.topics) if not (opts.clock and t == "/clock")]
    if not names:
        raise BagError(f"bag {path} has no topics to replay")

    stop = stop_event or threading.Event()
    own_ctx = None
    if node is None and context is None:

        own_ctx = context = Context()
        rclpy.init(context=own_ctx, signal_handler_options=SignalHandlerOptions.NO)
    own_node = node is None
    if node is None:
        node = rclpy.create_node("mim_replay", context=context)
    try:
        return _run(node, path, names, summary, opts, stop=stop, progress=progress)
    finally:
        if own_node:
            node.destroy_node()
        if own_ctx is not None:
            rclpy.try_shutdown(context=own_ctx)


def _publishers(node: Node, names: list[str], summary: Any, opts: ReplayOptions) -> tuple[dict[str, Any], set[str]]:
    """Publisher per published topic, and the published topics whose messages start with a Header."""
    remap = dict(opts.remaps)
    store = make_typestore()
    pubs, stamped = {}, set()
    for t in names:
        info = summary.topics[t]
        out = remap.get(t, t)
        pubs[out] = node.create_publisher(message_class(info.msgtype), out, _qos_for(info.msgtype, opts.qos))
        if has_leading_header(info.msgtype, info.msgdef, store):
            stamped.add(out)
    return pubs, stamped


def _wait_for_subscribers(node: Node, pubs: dict[str, Any], opts: ReplayOptions, stop: threading.Event) -> bool:
    deadline = time.monotonic() + opts.wait_timeout
    count = lambda: sum(p.get_subscription_count() for p in pubs.values())  # noqa: E731
    while count() < opts.wait_for_subscribers:
        if time.monotonic() > deadline or stop.is_set():
            node.get_logger().warning(f"only {count()} of {opts.wait_for_subscribers} subscribers after "
                                      f"{opts.wait_timeout} s; replaying anyway")
            return False
        stop.wait(0.05)
    return True


def _run(node: Node, path: Path | str, names: list[str], summary: Any, opts: ReplayOptions, *,
         stop: threading.Event, progress: bool) -> ReplayStats:


    pubs, stamped = _publishers(node, names, summary, opts)
    clock_pub = node.create_publisher(Clock, "/clock", qos.RELIABLE) if opts.clock else None
    stats = ReplayStats(per_topic=dict.fromkeys(pubs, 0))
    if opts.wait_for_subscribers:
        stats.subscribers_ready = _wait_for_subscribers(node, pubs, opts, stop)
    if opts.delay:
        stop.wait(opts.delay)

    total = sum(summary.topics[t].count for t in names) * opts.loops if opts.loops else None
    bar = _progress(total, progress)
    window = lambda: iter_messages(path, names, opts.start, opts.duration)  # noqa: E731
    t0 = time.monotonic_ns()
    stats.start_wall_ns = time.time_ns()
    try:
        for ev in plan(window, opts, stop.is_set):
            stats.loops_completed = ev.play
            _wait(t0 + ev.due_ns, stop)
            if stop.is_set():
                stats.stopped = True
                break
            stats.max_lateness_ms = max(stats.max_lateness_ms, (time.monotonic_ns() - t0 - ev.due_ns) / 1e6)
            if ev.clock_ns is not None and clock_pub is not None:
                sec, nsec = divmod(ev.clock_ns, 1_000_000_000)
                clock_pub.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))
                stats.clock_published += 1
                stats.last_clock_ns = ev.clock_ns
            if ev.topic is None:
                continue
            data = ev.data
            if ev.topic in stamped and (opts.restamp or ev.stamp_shift_ns):
                # Restamp to the scheduled wall time, not the actual one: stamp gaps keep the bag's
                # regularity (drop estimation from gaps stays right) and latency includes replay lateness.
                stamp = stats.start_wall_ns + ev.due_ns if opts.restamp else header_stamp_ns(data) + ev.stamp_shift_ns
                data = with_header_stamp(data, stamp)
            pubs[ev.topic].publish(data)
            stats.published += 1
            stats.per_topic[ev.topic] += 1
            bar(1)
        else:
            stats.loops_completed += 1 if stats.published else 0
    finally:
        bar(0)
        stats.wall_s = (time.monotonic_ns() - t0) / 1e9
    if stats.published and not stats.stopped:
        _flush([*pubs.values(), *([clock_pub] if clock_pub else [])], opts.flush_timeout)
    return stats


def _flush(pubs: list[Any], timeout: float) -> None:
    """Let the last messages leave before the node goes: destroying it at once drops them (measured)."""

    deadline = time.monotonic() + timeout
    for p in pubs:  # reliable: until acknowledged
        p.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
    # best effort has no acknowledgements: a short linger lets a large last sample finish sending
    time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))


def _progress(total: int | None, enabled: bool) -> Callable[[int], None]:
    """A callable advancing a tqdm bar by n (n = 0 closes it); a no-op when disabled."""
    if not enabled:
        return lambda n: None

    bar = tqdm(total=total, unit="msg", desc="replay")
    return lambda n: bar.update(n) if n else bar.close()


# -------------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction, verb: str) -> None:
    d = ReplayOptions()
    p = subparsers.add_parser(verb, help="publish a bag's topics with recorded timing (raw CDR) and /clock")
    p.add_argument("bag", help="bag directory (sqlite3 or mcap) or .mcap file")
    p.add_argument("--rate", type=float, default=d.rate, help="playback speed factor (default %(default)s)")
    loop = p.add_mutually_exclusive_group()
    loop.add_argument("--loop", action="store_const", const=0, dest="loops", default=d.loops, help="play forever")
    loop.add_argument("--loops", type=int, default=d.loops, help="number of plays (default %(default)s; 0 = forever)")
    p.add_argument("--start", type=float, default=d.start, help="s from the bag's first message")
    p.add_argument("--duration", type=float, default=d.duration, help="s of bag time to play")
    p.add_argument("--topics", nargs="+", default=d.topics, help="bag topics to play (default: all)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="rename a topic (repeatable)")
    p.add_argument("--qos", choices=QOS_CHOICES, default=d.qos,
                   help="auto: images best effort depth 1, others reliable depth 10 (default %(default)s)")
    p.add_argument("--clock", action=argparse.BooleanOptionalAction, default=d.clock,
                   help="publish /clock from bag time (default on)")
    p.add_argument("--clock-hz", type=float, default=d.clock_hz, help="/clock ticks per bag second between messages")
    p.add_argument("--restamp", action="store_true", default=d.restamp,
                   help="set header.stamp to the wall time each message is scheduled for (latency without sim time)")
    p.add_argument("--wait-for-subscribers", type=int, default=d.wait_for_subscribers, metavar="N",
                   help="wait until the played topics have N subscriptions in total")
    p.add_argument("--wait-timeout", type=float, default=d.wait_timeout, help="s to wait for subscribers")
    p.add_argument("--delay", type=float, default=d.delay,
                   help="s before the first message (after --wait-for-subscribers: the subscriber matches the "
                        "publisher a little after the publisher sees it; 0.5 s keeps the first frames)")
    p.add_argument("--large-data", action=argparse.BooleanOptionalAction, default=True,
                   help="load config/fastdds_large_data.xml (shared memory, 32 MB segment) unless "
                        "FASTDDS_DEFAULT_PROFILES_FILE is set (default on)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def large_data_env() -> dict[str, str]:
    """Fast DDS profile for camera-sized messages; must be in the environment before rclpy.init."""

    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return {}
    profile = config_dir() / "fastdds_large_data.xml"
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)} if profile.exists() else {}


def run(args: argparse.Namespace) -> int:

    opts = ReplayOptions(rate=args.rate, loops=args.loops, start=args.start, duration=args.duration,
                         topics=tuple(args.topics) if args.topics else None,
                         remaps=tuple(parse_remap(r) for r in args.remap), qos=args.qos, clock=args.clock,
                         clock_hz=args.clock_hz, restamp=args.restamp,
                         wait_for_subscribers=args.wait_for_subscribers, wait_timeout=args.wait_timeout,
                         delay=args.delay)
    if args.large_data:
        os.environ.update(large_data_env())
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C ends the replay cleanly
    try:
        stats = replay_bag(args.bag, options=opts, stop_event=stop, progress=not args.no_progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"published {stats.published} messages ({stats.loops_completed} plays) in {stats.wall_s:.2f} s; "
          f"/clock {stats.clock_published}; max lateness {stats.max_lateness_ms:.1f} ms")
    for topic, n in stats.per_topic.items():
        print(f"  {topic}: {n}")
    return 0 if stats.subscribers_ready else 1
