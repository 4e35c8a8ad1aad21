"""Long-run check (not a CI test): loop the demo drive at 30 Hz through the full graph and watch for creep.

Starts the graph in-process exactly as ``mim-perception demo`` does (camera_monitor + perception with the
shipped model), replays the bundled 15 Hz bag looped at rate 2 (30 Hz) for ``--minutes`` and samples every
``--every`` seconds: this process's RSS (the graph runs in it), frames processed, drops and the latency of
the frames of that interval. Writes soak.csv, soak.json and soak.png into ``--out``.

Verdict (printed and in soak.json): RSS growth after warm-up (first 20 % of the run) < 5 MB, and no latency
creep (p50 of the last quarter within 1.5× of the second quarter's, or within 5 ms).

    .venv/bin/python bench/soak.py --minutes 30 --out build/soak
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import threading
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def verdict(rows: list[dict[str, float]]) -> dict[str, float | bool]:
    n = len(rows)
    warm = max(1, n // 5)
    rss = np.array([r["rss_mb"] for r in rows])
    p50 = np.array([r["p50_ms"] for r in rows])
    growth = float(rss[warm:].max() - rss[warm]) if n > warm else float("nan")
    q2 = np.nanmedian(p50[n // 4:n // 2]) if n >= 4 else float("nan")
    q4 = np.nanmedian(p50[3 * n // 4:]) if n >= 4 else float("nan")
    creep = bool(q4 > 1.5 * q2 and q4 - q2 > 5.0)
    return {"rss_growth_after_warmup_mb": growth, "rss_ok": bool(growth < 5.0), "latency_p50_q2_ms": float(q2),
            "latency_p50_q4_ms": float(q4), "latency_creep": creep}


def plot(rows: list[dict[str, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array([r["t_s"] for r in rows]) / 60
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.6))
    ax[0].plot(t, [r["rss_mb"] for r in rows])
    ax[0].set(title="RSS of the graph process", xlabel="minutes", ylabel="MB")
    ax[1].plot(t, [r["p50_ms"] for r in rows], label="p50")
    ax[1].plot(t, [r["p99_ms"] for r in rows], label="p99")
    ax[1].set(title="pipeline latency per interval", xlabel="minutes", ylabel="ms")
    ax[1].legend()
    ax[2].plot(t, [r["processed"] for r in rows], label="processed")
    ax[2].plot(t, [r["dropped"] for r in rows], label="dropped (counted)")
    ax[2].set(title="cumulative frames", xlabel="minutes")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=80)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--rate", type=float, default=2.0, help="playback factor of the 15 Hz demo bag (2 = 30 Hz)")
    ap.add_argument("--out", default="build/soak")
    ap.add_argument("--results", help="also write the verdict and this command line here (docs/results/soak.json)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from mim_perception.bags.io import bag_summary, default_demo_bag
    from mim_perception.core.config import load_config
    from mim_perception.ros.graph import Camera, GraphConfig, describe, fastdds_env, private_domain_id
    from mim_perception.ros.probe import GraphProbe
    from mim_perception.ros.replay import replay_bag
    from mim_perception.ros.runner import GraphRunner, spin_in_thread

    bag = default_demo_bag()
    image_topic = "/camera/front/image_raw/compressed"
    infos = tuple(t for t in bag_summary(bag).topics if t.endswith("/camera_info"))
    cfg = load_config(GraphConfig, None, {"graph.use_sim_time": False, "graph.perception": True}, prefix="graph.")
    os.environ.update(fastdds_env(cfg))
    ctx = Context()
    rclpy.init(context=ctx, domain_id=private_domain_id())   # nothing else on this host can feed or read it
    runner = GraphRunner(describe(cfg, [Camera.parse(f"front={image_topic}")]), context=ctx, threads=cfg.executor_threads)
    stop = threading.Event()
    rows: list[dict[str, float]] = []
    try:
        runner.start()
        node = rclpy.create_node("mim_soak", context=ctx)
        probe = GraphProbe(node, "front", perception=True)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        spin_in_thread(ex, "mim-soak")
        threading.Thread(target=lambda: replay_bag(bag, node, rate=args.rate, loops=0, restamp=True,
                                                   topics=(image_topic, *infos), stop_event=stop,
                                                   wait_for_subscribers=len(runner.nodes), wait_timeout=30.0),
                         daemon=True).start()
        t0, seen = time.monotonic(), 0
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(args.every)
            lat = np.asarray(probe.latency_ms[seen:], np.float64)
            seen += len(lat)
            row = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(), 2), "processed": seen,
                   "dropped": int(sum(probe.drops)),
                   "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                   "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan")}
            rows.append(row)
            print(json.dumps(row), flush=True)
        stop.set()
    finally:
        stop.set()
        runner.stop()
        rclpy.try_shutdown(context=ctx)
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    v = verdict(rows)
    (out / "soak.json").write_text(json.dumps({"minutes": args.minutes, "rate_hz": 15 * args.rate, "verdict": v,
                                               "samples": rows}, indent=1))
    plot(rows, out)
    if args.results:
        import sys

        Path(args.results).write_text(json.dumps({
            "kind": "soak", "title": "30-minute soak (bench/soak.py), demo drive looped",
            "command": " ".join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]), "minutes": args.minutes,
            "rate_hz": 15 * args.rate, "verdict": v, "processed": rows[-1]["processed"], "dropped": rows[-1]["dropped"],
            "rss_mb_first_last": [rows[0]["rss_mb"], rows[-1]["rss_mb"]]}, indent=1))
    print(f"soak: {args.minutes} min at {15 * args.rate:.0f} Hz: {v}; wrote {out}/soak.csv, soak.json, soak.png")
    return 0 if v["rss_ok"] and not v["latency_creep"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
