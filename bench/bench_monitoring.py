"""What monitoring costs per frame: the Perceiver with the shipped bundle, monitors switched on one by one.

Each configuration processes the same pre-rendered procedural frames (640×384, drives at 30 Hz) through
``Perceiver.process`` (letterbox, ONNX Runtime, NMS, segmentation, tracker, monitors) and reports the mean wall
time per frame and its ratio to the run without monitors, measured in the same process. Means, not medians: the
drift test runs on one frame in ``perception.drift_every`` and the OOD score on one in ``perception.ood_every``
(on a background thread, so its cost shows as contention on the cores). Configurations alternate in rounds so
slow drifts of a shared machine fall on all of them alike.

    .venv/bin/python bench/bench_monitoring.py [--frames 300] [--rounds 3] [--blas-threads 0]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> int:
    from mim_perception.core.config import load_config
    from mim_perception.core.monitoring.drift import DriftDetector, DriftReference
    from mim_perception.core.monitoring.ood import OodMonitor
    from mim_perception.core.pipeline import Perceiver, PerceptionConfig
    from mim_perception.core.tracking.tracker import Tracker, TrackerConfig
    from mim_perception.inference.backends import BackendConfig, load_backend
    from mim_perception.inference.manifest import load_manifest
    from mim_perception.inference.ood_model import load_ood
    from mim_perception.sim.synthetic import SceneConfig, SyntheticScene

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mim_convnext_atto_cpu")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blas-threads", type=int, help="backend.blas_threads (default: the config's; 0 = as is)")
    ap.add_argument("--json")
    args = ap.parse_args()

    bundle = Path(args.model)
    m = load_manifest(bundle)
    pcfg = load_config(PerceptionConfig, None, prefix="perception.")
    over: dict[str, object] = {"backend.model": str(bundle), "backend.kind": "onnxruntime"}
    if args.blas_threads is not None:
        over["backend.blas_threads"] = args.blas_threads
    bcfg = load_config(BackendConfig, None, over, prefix="backend.")
    backend = load_backend(bcfg)[0]
    ref = DriftReference.load(bundle / m.files["drift_reference"])
    image_ref = DriftReference.load(bundle / m.files["image_reference"]) if "image_reference" in m.files else None
    error_fn, ood_ref = load_ood(bundle, m, threads=1)
    scene = SyntheticScene(replace(SceneConfig(), fps=30.0, frames=args.frames, seed=777))
    frames = []
    for i in range(args.frames):
        if i:
            scene._step(1 / 30)
        frames.append(scene.render()[0])

    def run(name: str) -> float:
        drift = DriftDetector(ref, every=pcfg.drift_every, image_reference=image_ref if "image" in name else None) \
            if "drift" in name else None
        ood = OodMonitor(error_fn, ood_ref, every=pcfg.ood_every) if "ood" in name else None
        perceiver = Perceiver(backend, pcfg, Tracker(load_config(TrackerConfig, None, prefix="tracker.")), drift, ood)
        try:
            t0 = time.perf_counter()
            for k, f in enumerate(frames):
                perceiver.process(f, k / 30)
            return (time.perf_counter() - t0) * 1e3 / len(frames)
        finally:
            if ood is not None:
                ood.close()

    names = ["none", "drift (embedding)", "drift (embedding + image)", "drift (embedding + image) + ood"]
    run("none")   # warm-up
    per: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            per[n].append(run(n))
    base = float(np.mean(per["none"]))
    print(f"{'monitors':34s} {'ms/frame':>9s} {'vs none':>8s}   ({args.frames} frames × {args.rounds} rounds, "
          f"drift every {pcfg.drift_every}, OOD every {pcfg.ood_every}, BLAS threads {bcfg.blas_threads or 'as is'})")
    rows = {}
    for n in names:
        ms = float(np.mean(per[n]))
        rows[n] = {"ms_per_frame": ms, "ratio": ms / base, "rounds_ms": per[n]}
        print(f"{n:34s} {ms:9.2f} {ms / base:8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
