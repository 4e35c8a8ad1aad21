"""Replay and record against live rclpy nodes in one process (private context per test)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage

from mim_perception.bags.io import BagWriter, header_stamp_ns, iter_messages, make_typestore
from mim_perception.core.errors import BagError
from mim_perception.ros import qos
from mim_perception.ros.record import record_topics
from mim_perception.ros.replay import ReplayStats, replay_bag

T0 = 1_700_000_000_000_000_000
TOPIC = "/cam/image_raw/compressed"
INFO = "/cam/camera_info"


def _bag(path: Path, n: int = 30, period_ns: int = 33_333_333, storage: str = "mcap") -> list[bytes]:
    """n CompressedImages (+ a CameraInfo every frame) with distinct payloads; returns the image bytes."""
    store = make_typestore()
    T = store.types
    raws = []
    with BagWriter(path, storage, store) as w:
        for i in range(n):
            ts = T0 + i * period_ns
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                sec=ts // 10**9, nanosec=ts % 10**9), frame_id="cam")
            img = T["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                       data=np.full(1000 + i, i, np.uint8))
            raw = bytes(store.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))
            raws.append(raw)
            w.write(TOPIC, "sensor_msgs/msg/CompressedImage", ts, raw)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header, height=48, width=64, distortion_model="plumb_bob", d=np.zeros(5), k=np.eye(3).ravel(),
                r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            w.write_msg(INFO, "sensor_msgs/msg/CameraInfo", ts, info)
    return raws


def _replay_thread(path: Path, ctx, **kw) -> tuple[threading.Thread, dict[str, ReplayStats | BaseException]]:
    out: dict[str, ReplayStats | BaseException] = {}

    def target() -> None:
        try:
            out["stats"] = replay_bag(path, context=ctx, **kw)
        except Exception as e:  # noqa: BLE001 -- surfaced by the test
            out["stats"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def test_replay_delivers_every_frame_in_order_with_clock(ros_context, tmp_path):
    raws = _bag(tmp_path / "bag")
    node = __import__("rclpy").create_node("sink", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    got: list[bytes] = []
    clocks: list[int] = []
    node.create_subscription(CompressedImage, "/renamed", got.append, qos.RELIABLE, raw=True)
    # /clock ticks at 500 Hz of wall time here (100 Hz of bag time, rate 5): a reader queue of the default depth
    # (10) drops the oldest ticks whenever this single-threaded spin falls 20 ms behind (it did at start-up on CI)
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    stop = threading.Event()
    th, out = _replay_thread(tmp_path / "bag", ros_context, rate=5.0, qos="reliable", topics=(TOPIC,),
                             remaps=((TOPIC, "/renamed"),), wait_for_subscribers=1, wait_timeout=10.0,
                             stop_event=stop)
    try:
        wait_for(lambda: len(got) >= 30 or not th.is_alive(), 15, lambda: ex.spin_once(timeout_sec=0.02), "30 frames")
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)  # late /clock messages
    finally:
        stop.set()
        th.join(timeout=5)
        ex.shutdown()
        node.destroy_node()
    stats = out["stats"]
    assert isinstance(stats, ReplayStats), stats
    assert stats.subscribers_ready and stats.published == 30 and stats.per_topic == {"/renamed": 30}
    assert got == raws  # byte-identical, in order: no re-serialisation
    assert [header_stamp_ns(g) for g in got] == [T0 + i * 33_333_333 for i in range(30)]
    # rate 5: 29 gaps of 33.3 ms -> ~0.19 s of wall time
    assert 0.15 < stats.wall_s < 2.0
    assert clocks and clocks == sorted(clocks) and clocks[0] == T0 and clocks[-1] == T0 + 29 * 33_333_333


def test_loop_keeps_clock_and_stamps_monotonic(ros_context, tmp_path):
    _bag(tmp_path / "bag", n=10, storage="sqlite3")
    node = __import__("rclpy").create_node("sink", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    stamps: list[int] = []
    clocks: list[int] = []
    node.create_subscription(CompressedImage, TOPIC, lambda d: stamps.append(header_stamp_ns(d)), qos.RELIABLE,
                             raw=True)
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             qos.RELIABLE)
    th, out = _replay_thread(tmp_path / "bag", ros_context, rate=10.0, loops=3, qos="reliable", topics=(TOPIC,),
                             wait_for_subscribers=1)
    try:
        wait_for(lambda: len(stamps) >= 30 or not th.is_alive(), 15, lambda: ex.spin_once(timeout_sec=0.02),
                 "three plays")
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)
    finally:
        th.join(timeout=5)
        ex.shutdown()
        node.destroy_node()
    stats = out["stats"]
    assert isinstance(stats, ReplayStats), stats
    assert stats.loops_completed == 3 and len(stamps) == 30
    assert all(b > a for a, b in itertools.pairwise(stamps)), "header stamps went backwards on loop"
    assert all(b > a for a, b in itertools.pairwise(clocks)), "/clock went backwards on loop"
    period = 10 * 33_333_333  # span (9 gaps) + one mean gap
    assert stamps[10] - stamps[0] == period and stamps[29] == T0 + 2 * period + 9 * 33_333_333
    assert clocks[-1] == stamps[-1]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_while_replaying_round_trips(ros_context, tmp_path, storage):
    raws = _bag(tmp_path / "bag")
    stop = threading.Event()
    # replay waits for the recorder's two subscriptions; the recorder resolves types from the replay's publishers
    th, out = _replay_thread(tmp_path / "bag", ros_context, rate=4.0, qos="reliable", wait_for_subscribers=2,
                             wait_timeout=10.0, clock=False, stop_event=stop)
    try:
        stats = record_topics(tmp_path / "rec", [TOPIC, INFO], context=ros_context, storage=storage,
                              max_messages=60, duration=15.0, stamp="header", type_timeout=10.0)
    finally:
        stop.set()
        th.join(timeout=5)
    assert isinstance(out["stats"], ReplayStats) and out["stats"].published == 60
    assert stats.counts == {TOPIC: 30, INFO: 30}
    assert stats.types == {TOPIC: "sensor_msgs/msg/CompressedImage", INFO: "sensor_msgs/msg/CameraInfo"}
    recorded = list(iter_messages(tmp_path / "rec", [TOPIC]))
    assert [m.data for m in recorded] == raws
    assert [m.timestamp_ns for m in recorded] == [T0 + i * 33_333_333 for i in range(30)]  # --stamp header


def test_record_missing_topic_is_a_clear_error(ros_context, tmp_path):
    with pytest.raises(BagError, match=r"/not/there did not appear on the graph within 0\.5 s"):
        record_topics(tmp_path / "rec", ["/not/there"], context=ros_context, type_timeout=0.5)
    assert not (tmp_path / "rec").exists()
