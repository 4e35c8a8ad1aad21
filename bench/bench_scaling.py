"""Capacity of the scale-out paths on this machine: 1 vs 2 workers for simgen, multi-bag evaluate and DDP pretraining.

Each row runs a real command in a subprocess and reports wall time, throughput, the scaling efficiency against the
1-worker row measured in the same run (speed-up / workers), and the peak RSS of the largest child process.

    .venv/bin/python bench/bench_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
CLI = [PY, "-m", "mim_perception.cli"]


# Runs the command as its child and reports the largest RSS among all its descendants (workers included).
_WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB of the largest process the command started) of ``cmd``."""
    t0 = time.perf_counter()
    p = subprocess.run([PY, "-c", _WRAP, *cmd], check=False, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("MAXRSS"))
    return time.perf_counter() - t0, rss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mim_scaling_"))
    eps, frames = (4, 20) if args.quick else (8, 40)
    rows = []
    for label, extra in (("pool, 1 worker", ["--workers", "1"]), ("pool, 2 workers", ["--workers", "2"]),
                         ("Ray local, 2 workers", ["--workers", "2", "--ray-address", "local"])):
        out = tmp / f"sg_{len(rows)}"
        s, rss = timed([*CLI, "simgen", str(out), "--episodes", str(eps), "--frames", str(frames), *extra])
        rows.append({"task": "simgen (synthetic, JPEG + labels)", "setup": label, "seconds": s,
                     "units": eps * frames, "unit": "frames", "rss_mb": rss})
    bags = []
    for seed in (41, 42):
        d = tmp / f"bag{seed}"
        subprocess.run([*CLI, "synth", str(d), "--frames", "30" if args.quick else "60", "--fps", "5", "--seed", str(seed),
                        "--bag"], check=True, capture_output=True)
        bags.append(str(d / "bag"))
    n = 60 if args.quick else 120
    for label, extra in (("pool, 1 worker", ["--workers", "1"]), ("pool, 2 workers", ["--workers", "2"]),
                         ("Ray local, 2 workers", ["--workers", "2", "--ray-address", "local"])):
        s, rss = timed([*CLI, "evaluate", *bags, "--out", str(tmp / f"ev_{len(rows)}"), "--no-video", *extra])
        rows.append({"task": "evaluate, 2 bags (graph + scoring, fast)", "setup": label, "seconds": s, "units": n,
                     "unit": "frames", "rss_mb": rss})
    steps = 6 if args.quick else 12
    common = ["--data", "synthetic:4:20:0:320x192", "--cache-dir", str(tmp / "cache"), "--set", "train.workers=0",
              "--set", f"pretrain.max_steps={steps}", "--set", "train.batch_size=16", "--set", "train.log_every=100"]
    subprocess.run([*CLI, "pretrain", "--out", str(tmp / "warm"), *common, "--set", "pretrain.max_steps=1"], check=True,
                   capture_output=True)   # generate the data once, outside the timings
    for label, cmd, env in (
            ("1 process, 2 threads", [*CLI, "pretrain", "--out", str(tmp / "p1"), *common, "--set", "train.threads=2"], {}),
            ("torchrun 2 × 1 thread (gloo)", [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                              "-m", "mim_perception.cli", "pretrain", "--out", str(tmp / "p2"), *common,
                                              "--set", "train.threads=1"], {"OMP_NUM_THREADS": "1"})):
        s, rss = timed(cmd, env)
        rows.append({"task": "pretrain convnext_atto_cpu 192×320 (incl. start-up)", "setup": label, "seconds": s,
                     "units": steps * 16, "unit": "images", "rss_mb": rss})
    print("| task | setup | wall s | throughput | vs 1 worker | largest process RSS MB |\n|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for r in rows:
        rate = r["units"] / r["seconds"]
        base.setdefault(r["task"], rate)
        r["per_s"], r["speedup"] = rate, rate / base[r["task"]]
        print(f"| {r['task']} | {r['setup']} | {r['seconds']:.1f} | {rate:.1f} {r['unit']}/s | {r['speedup']:.2f}× | "
              f"{r['rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
