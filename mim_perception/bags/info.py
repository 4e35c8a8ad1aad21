"""``mim-perception bag-info BAG``: topics, types, counts, duration and per-topic rate of a bag.

Counts and the time range come from the bag's index; per-topic rates need each topic's first and
last timestamp, which costs one pass over the messages (skip it with ``--no-scan``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mim_perception.bags.io import bag_summary, iter_messages


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int
    first_ns: int | None  # None without a scan
    last_ns: int | None

    @property
    def rate_hz(self) -> float | None:
        """Mean message rate over the topic's own span ((count - 1) / span)."""
        if self.first_ns is None or self.last_ns is None or self.count < 2 or self.last_ns <= self.first_ns:
            return None
        return (self.count - 1) / ((self.last_ns - self.first_ns) / 1e9)


@dataclass(frozen=True)
class BagInfo:
    path: str
    storage: str
    message_count: int
    start_ns: int
    duration_s: float
    topics: list[TopicInfo]


def bag_info(path: Path | str, scan: bool = True) -> BagInfo:
    s = bag_summary(path)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    if scan:
        for m in iter_messages(path):
            first.setdefault(m.topic, m.timestamp_ns)
            last[m.topic] = m.timestamp_ns
    topics = [TopicInfo(t.name, t.msgtype, t.count, first.get(t.name), last.get(t.name))
              for t in sorted(s.topics.values(), key=lambda t: t.name)]
    # rosbag2's end time is one past the last message; report the span between first and last.
    return BagInfo(str(path), s.storage, s.message_count, s.start_ns, max(0, s.duration_ns - 1) / 1e9, topics)


def format_info(info: BagInfo) -> str:
    lines = [f"bag:        {info.path}", f"storage:    {info.storage}",
             f"duration:   {info.duration_s:.3f} s", f"start:      {info.start_ns / 1e9:.3f} s (epoch)",
             f"messages:   {info.message_count}", "topics:"]
    width = max((len(t.name) for t in info.topics), default=5)
    for t in info.topics:
        rate = "     -" if t.rate_hz is None else f"{t.rate_hz:6.2f}"
        lines.append(f"  {t.name:<{width}}  {t.count:7d} msgs  {rate} Hz  {t.msgtype}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction, verb: str) -> None:
    p = subparsers.add_parser(verb, help="print a bag's topics, types, counts, duration and rates")
    p.add_argument("bag", help="bag directory (sqlite3 or mcap) or .mcap file")
    p.add_argument("--no-scan", action="store_true", help="index only: no per-topic rates, no message reads")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = bag_info(args.bag, scan=not args.no_scan)
    if args.json:
        out = asdict(info)
        for t, d in zip(info.topics, out["topics"], strict=True):
            d["rate_hz"] = t.rate_hz
        print(json.dumps(out, indent=2))
    else:
        print(format_info(info))
    return 0
