"""Acceptance bench: replay a 300-frame 640×384 bgr8 Image bag at 30 Hz into a subscriber in ANOTHER process.

For each transport (Fast DDS defaults, ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``, and the shipped
``config/fastdds_large_data.xml`` profile that ``mim-perception replay`` loads by default; set in the
environment of both processes) and each QoS (sensor = best effort depth 1, the image default; reliable depth 10) it prints
received/300, latency p50/p99 (receive wall time − header.stamp, stamps rewritten at publish with
``--restamp``) and inter-arrival jitter, with ratios vs the first row (the baseline, same run).

    .venv/bin/python bench/bench_replay.py [--frames 300] [--qos sensor reliable]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOPIC = "/bench/image_raw"
HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def make_bag(path: Path, frames: int, w: int = 640, h: int = 384, hz: float = 30.0) -> None:
    sys.path.insert(0, str(ROOT))
    from mim_perception.bags.io import BagWriter, make_typestore

    store = make_typestore()
    T = store.types
    base = np.tile(np.arange(w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    t0 = time.time_ns()
    with BagWriter(path, "mcap", store) as bag:
        for i in range(frames):
            ts = t0 + round(i * 1e9 / hz)
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                sec=ts // 10**9, nanosec=ts % 10**9), frame_id="cam")
            img = np.roll(base, i, axis=1)
            img[0, 0, :2] = (i % 256, i // 256)  # frame index, to name the frames that were lost
            msg = T["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                                             step=w * 3, data=img.reshape(-1))
            bag.write_msg(TOPIC, "sensor_msgs/msg/Image", ts, msg)


def subscriber(args: argparse.Namespace) -> None:
    """Child process: receive Images, record (header stamp, receive time), write JSON when idle."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    sys.path.insert(0, str(ROOT))
    from mim_perception.ros import qos

    rclpy.init()
    node = rclpy.create_node("bench_sink")
    rows: list[tuple[int, int]] = []

    def on_image(msg: Image) -> None:
        rows.append((msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, time.time_ns(),
                     msg.data[0] + 256 * msg.data[1]))

    node.create_subscription(Image, TOPIC, on_image, qos.profile(args.qos))
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    Path(args.ready).touch()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not Path(args.done).exists():
        ex.spin_once(timeout_sec=0.01)
    end = time.monotonic() + 0.5  # drain what is still in flight
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.01)
    Path(args.out).write_text(json.dumps(rows))
    node.destroy_node()
    rclpy.try_shutdown()


TRANSPORTS = {  # name -> environment of both processes
    "defaults": {},
    "LARGE_DATA": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "xml-shm32M": {"FASTDDS_DEFAULT_PROFILES_FILE": str(ROOT / "config" / "fastdds_large_data.xml")},
}


def run_case(bag: Path, work: Path, transport: str, qos_name: str, domain: int, frames: int,
             delay: float) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=str(work / "log"),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    for k in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE"):
        env.pop(k, None)
    env.update(TRANSPORTS[transport])
    tag = f"{transport}_{qos_name}"
    ready, done, out = work / f"{tag}.ready", work / f"{tag}.done", work / f"{tag}.json"
    sub = subprocess.Popen([sys.executable, str(HERE), "--role", "sub", "--qos", qos_name, "--ready", str(ready),
                            "--done", str(done), "--out", str(out), "--timeout", str(frames / 30 + 40)], env=env)
    try:
        t = time.monotonic()
        while not ready.exists() and time.monotonic() - t < 30:
            time.sleep(0.05)
        cmd = [sys.executable, "-m", "mim_perception.cli", "replay", str(bag), "--qos", qos_name, "--restamp",
               "--no-clock", "--no-large-data", "--wait-for-subscribers", "1", "--wait-timeout", "20",
               "--delay", str(delay), "--no-progress"]
        rep = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=frames / 30 + 60, check=False)
        done.touch()
        sub.wait(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
    if rep.returncode != 0:
        print(rep.stdout, rep.stderr, file=sys.stderr)
    rows = json.loads(out.read_text()) if out.exists() else []
    stamps = np.array([r[0] for r in rows], dtype=np.int64)
    recv = np.array([r[1] for r in rows], dtype=np.int64)
    lat = (recv - stamps) / 1e6
    gaps = np.diff(recv) / 1e6
    missing = sorted(set(range(frames)) - {r[2] for r in rows})
    return {
        "transport": transport, "qos": qos_name, "received": len(rows),
        "lat_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "lat_p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "gap_mean": float(gaps.mean()) if len(gaps) else float("nan"),
        "gap_std": float(gaps.std()) if len(gaps) else float("nan"),
        "jitter_p99": float(np.percentile(np.abs(gaps - 1000 / 30), 99)) if len(gaps) else float("nan"),
        "replay_rc": rep.returncode, "missing": missing,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["main", "sub"], default="main")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--qos", nargs="+", default=["sensor", "reliable"])
    ap.add_argument("--transports", nargs="+", choices=list(TRANSPORTS), default=list(TRANSPORTS))
    ap.add_argument("--ready"), ap.add_argument("--done"), ap.add_argument("--out")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--delay", type=float, default=0.5, help="replay --delay: s between matching and frame 0")
    args = ap.parse_args()
    if args.role == "sub":
        args.qos = args.qos[0]
        subscriber(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        work = Path(tmp)
        bag = work / "bag"
        t = time.perf_counter()
        make_bag(bag, args.frames)
        print(f"bag: {args.frames} × 640×384 bgr8 at 30 Hz, written in {time.perf_counter() - t:.1f} s; "
              f"replay --delay {args.delay} s")
        results = []
        domain = 100 + os.getpid() % 100
        for qos_name in args.qos:
            for transport in args.transports:
                results.append(run_case(bag, work, transport, qos_name, domain, args.frames, args.delay))
                domain += 1
    base = results[0]
    print(f"\n{'transport':<12} {'qos':<9} {'received':>9} {'lat p50':>8} {'lat p99':>8} {'gap mean':>9} "
          f"{'gap std':>8} {'jit p99':>8}  p50 vs base")
    for r in results:
        ratio = r["lat_p50"] / base["lat_p50"] if base["lat_p50"] else float("nan")
        print(f"{r['transport']:<12} {r['qos']:<9} {r['received']:>5}/{args.frames:<3} {r['lat_p50']:8.2f} "
              f"{r['lat_p99']:8.2f} {r['gap_mean']:9.2f} {r['gap_std']:8.2f} {r['jitter_p99']:8.2f}  {ratio:5.2f}×"
              + (f"  lost {r['missing'][:6]}{'…' if len(r['missing']) > 6 else ''}" if r["missing"] else "")
              + ("" if r["replay_rc"] == 0 else f"  (replay rc {r['replay_rc']})"))
    print("\nlatency = receive wall time − header.stamp (set at publish by --restamp), ms; "
          "gap = inter-arrival, ms (30 Hz → 33.33); jit p99 = p99 |gap − 33.33| ms")


if __name__ == "__main__":
    main()
