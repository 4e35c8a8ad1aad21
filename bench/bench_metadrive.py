"""MetaDrive frame rate and reset time through MetaDriveScene (RGB + semantic per camera, ground truth included).

Each (size, variant) runs in a fresh process (Mesa reads LP_NUM_THREADS when the GL context is made, and the
first reset builds the engine): env creation, first reset, steady-state frames, then a second and third reset
of the same env (what reusing the env across episodes costs). frames/s per core = frames / process CPU
seconds over the steady-state frames (llvmpipe renders on threads of the same process). Target: >= 2.

    .venv/bin/python bench/bench_metadrive.py [--frames 15] [--sizes 640x384 320x192] [--variants base shadow1 ...]

Variants (overrides of config/sim_bridge.param.yaml's sim_bridge.sim.*):
  base       shipped defaults (front camera, terrain on, no shadows, anisotropy 1, 6 pedestrians + 2 cyclists)
  shadows    MetaDrive's PSSM shadows on (shadow_range 50 m)
  shadow1    shadows on, shadow_range 1 m
  noterrain  show_terrain false (no road either: the road is drawn by the terrain)
  lp1        LP_NUM_THREADS=1 (llvmpipe on one thread)
  novru      no pedestrians / cyclists
  aniso16    MetaDrive's 16x anisotropic terrain textures
  three      front + front_left + front_right (6 render buffers)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, object]] = {
    "base": {},
    "shadows": {"shadows": True},
    "shadow1": {"shadows": True, "shadow_range": 1.0},
    "noterrain": {"show_terrain": False},
    "lp1": {"render_threads": 1},
    "novru": {"pedestrians": 0, "cyclists": 0},
    "aniso16": {"anisotropy": 16},
    "three": {"cameras": ["front", "front_left", "front_right"]},
}


def child(size: str, variant: str, frames: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from mim_perception.sim.metadrive_env import MetaDriveConfig, MetaDriveScene

    w, h = (int(v) for v in size.split("x"))
    cfg = MetaDriveConfig.load(overrides={"width": w, "height": h, **VARIANTS[variant]})
    out: dict[str, object] = {"size": size, "variant": variant, "load": os.getloadavg()[0]}
    scene = MetaDriveScene(cfg)
    t = time.perf_counter()
    scene.open()
    out["open_s"] = time.perf_counter() - t
    scene.reset()
    out["reset1_s"] = scene.last_reset_s
    t = time.perf_counter()
    scene.step()
    out["first_step_s"] = time.perf_counter() - t
    scene.step()   # warm-up
    steps, boxes = [], 0
    cpu0 = time.process_time()
    for _ in range(frames):
        t = time.perf_counter()
        boxes += sum(len(f.boxes) for f in scene.step().values())
        steps.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    out.update(step_p50_s=sorted(steps)[len(steps) // 2], fps=len(steps) / sum(steps), fps_per_core=len(steps) / cpu,
               cpu_per_frame_s=cpu / len(steps), boxes_per_frame=boxes / len(steps))
    for k in (2, 3):   # the same env, next scenario seeds
        scene.reset()
        out[f"reset{k}_s"] = scene.last_reset_s
    scene.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--sizes", nargs="+", default=["640x384", "320x192"])
    ap.add_argument("--variants", nargs="+", default=["base"], choices=sorted(VARIANTS))
    ap.add_argument("--timeout", type=float, default=900.0, help="s per run")
    ap.add_argument("--child", nargs=2, metavar=("SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], args.child[1], args.frames)), flush=True)
        return
    cols = ("size", "variant", "load", "open_s", "reset1_s", "first_step_s", "step_p50_s", "fps", "fps_per_core",
            "boxes_per_frame", "reset2_s", "reset3_s")
    print(" | ".join(cols))
    for size in args.sizes:
        for variant in args.variants:
            env = dict(os.environ)
            if variant == "lp1":
                env["LP_NUM_THREADS"] = "1"
            try:
                r = subprocess.run([sys.executable, __file__, "--child", size, variant, "--frames", str(args.frames)],
                                   check=False, capture_output=True, text=True, timeout=args.timeout, env=env)
            except subprocess.TimeoutExpired:
                print(f"{size} | {variant} | timed out after {args.timeout:.0f} s", flush=True)
                continue
            line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(f"{size} | {variant} | failed (rc {r.returncode}): {r.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            res = json.loads(line[7:])
            print(" | ".join(f"{res[c]:.2f}" if isinstance(res[c], float) else str(res[c]) for c in cols), flush=True)


if __name__ == "__main__":
    main()
