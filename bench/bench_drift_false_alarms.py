"""Drift false alarms per hour of clean driving, with the node's own sampling (DriftDetector, perception.drift_every).

Clean held-out drives (procedural, seeds disjoint from training and calibration) are pushed frame by frame, in drive
order, through the bundle's ONNX model and a DriftDetector exactly as the perception node does; every evaluation
below monitor.drift_p_error is an ERROR verdict. Reports verdicts/hour and alarm *events*/hour (OK/WARN -> ERROR
transitions) at the camera rate ``--hz``.

    .venv/bin/python bench/bench_drift_false_alarms.py --model models/mim_convnext_atto_cpu [--data SPEC] [--hz 15]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    from mim_perception.core.config import load_config
    from mim_perception.core.monitoring.drift import DriftDetector, DriftReference
    from mim_perception.core.monitoring.health import MonitorConfig
    from mim_perception.core.pipeline import PerceptionConfig
    from mim_perception.inference.manifest import INPUT_NAME, OUTPUT_NAMES, load_manifest
    from mim_perception.tools.export import _frames, _session

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mim_convnext_atto_cpu")
    ap.add_argument("--data", default="synthetic:60:40:9000:640x384", help="clean held-out drives (in order)")
    ap.add_argument("--frames", type=int, default=2400)
    ap.add_argument("--hz", type=float, default=15.0, help="camera rate the frames stand for")
    ap.add_argument("--corruption", help="NAME:SEVERITY applied to every frame (detection power instead of false alarms)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    bundle = Path(args.model)
    m = load_manifest(bundle)
    sess = _session(m.path(bundle, "onnx"))
    k = OUTPUT_NAMES.index("embed")
    every = load_config(PerceptionConfig, None, prefix="perception.").drift_every
    mon = load_config(MonitorConfig, None, prefix="monitor.")
    det = DriftDetector(DriftReference.load(bundle / m.files["drift_reference"]), every=every)
    frames = _frames([args.data], args.frames, (m.input_height, m.input_width), Path("build/data_cache"))
    if args.corruption:
        from mim_perception.training import corruptions

        name, sev = args.corruption.split(":")
        rng = np.random.default_rng(0)
        # on the letterboxed frame (the bench's input); the robustness report corrupts the camera frame instead
        frames = np.stack([corruptions.apply(np.ascontiguousarray(f.transpose(1, 2, 0)), name, int(sev), rng)
                           .transpose(2, 0, 1) for f in frames])
    ps = []
    for f in frames:
        if det.wants():
            if det.add(sess.run(None, {INPUT_NAME: f[None]})[k][0]):
                r = det.result()
                if r is not None:
                    ps.append(r.p_value)
        else:
            det.add(np.zeros(0))   # frames the node does not sample
    p = np.array(ps)
    hours = len(frames) / args.hz / 3600
    err = p < mon.drift_p_error
    events = int(err[0]) + int((err[1:] & ~err[:-1]).sum()) if len(err) else 0
    out = {"model": str(bundle), "data": args.data, "corruption": args.corruption or "none", "frames": len(frames),
           "drive_minutes": round(hours * 60, 2),
           "evaluations": len(p), "drift_every": every, "window": det.ref.window, "p_error": mon.drift_p_error,
           "error_verdicts": int(err.sum()), "warn_or_error_verdicts": int((p < mon.drift_p_warn).sum()),
           "error_fraction": float(err.mean()) if len(p) else float("nan"),
           "alarm_events": events, "alarm_events_per_hour": events / hours, "median_p": float(np.median(p))}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
