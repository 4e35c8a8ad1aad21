"""Drift and OOD monitors on held-out real frames in drive order: how often they fire on clean frames of a camera the
references know, and whether they notice the same frames corrupted.

Each frame of each source goes, in order, through the bundle's model (letterboxed like the node) into a
``DriftDetector`` with the bundle's embedding and image-statistics references (one sample per frame: the sources are
already sparse, e.g. CamVid is one frame per second) and the node's drift alarm (p < monitor.drift_p_error for
monitor.drift_persist evaluations in a row); every frame also gets the MIM OOD score and the node's OOD alarm.
Reported per source: windows evaluated, share of windows with p < drift_p_error, drift ERROR share, share of
frames with OOD score > monitor.ood_error, OOD ERROR share. ``--corruption NAME:SEVERITY`` adds a corrupted copy
of every source (training/corruptions.py, applied on the camera frame).

    .venv/bin/python bench/drift_real_frames.py --data camvid:data/realdata/camvid:test --corruption fog:3 \\
        --json docs/results/drift_real_frames.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.config import load_config
from mim_perception.core.monitoring.drift import DriftDetector, DriftReference
from mim_perception.core.monitoring.health import Level, MonitorConfig, drift_alarm, ood_alarm
from mim_perception.core.monitoring.image_stats import image_statistics
from mim_perception.core.preprocess import letterbox
from mim_perception.inference.backends import default_model_dir
from mim_perception.inference.manifest import INPUT_NAME, OUTPUT_NAMES, load_manifest
from mim_perception.inference.ood_model import load_ood
from mim_perception.inference.ort_backend import cpu_session
from mim_perception.training import corruptions
from mim_perception.training.common import open_source


def _run(images: list[np.ndarray], bundle: Path, threads: int, mon: MonitorConfig) -> dict[str, Any]:
    m = load_manifest(bundle)
    sess = cpu_session(m.path(bundle, "onnx"), threads)
    k = OUTPUT_NAMES.index("embed")
    ood, ood_ref = load_ood(bundle, m, threads)
    det = DriftDetector(DriftReference.load(bundle / m.files["drift_reference"]),
                        image_reference=DriftReference.load(bundle / m.files["image_reference"])
                        if "image_reference" in m.files else None)
    d_alarm, o_alarm = drift_alarm(mon), ood_alarm(mon)
    ps, d_err, scores, o_err = [], [], [], []
    for img in images:
        x = np.ascontiguousarray(letterbox(img, (m.input_height, m.input_width))[0].transpose(2, 0, 1)[None])
        det.add(sess.run(None, {INPUT_NAME: x})[k][0], image_statistics(img))
        r = det.result()
        if r is not None:
            ps.append(r.p_value)
            d_err.append(d_alarm.update(r.p_value) == Level.ERROR)
        s = ood_ref.score(ood(x))
        scores.append(s)
        o_err.append(o_alarm.update(1.0 - s) == Level.ERROR)
    p = np.array(ps)
    return {"frames": len(images), "windows": len(p), "window": det.size,
            "drift_p_below_error": float((p < mon.drift_p_error).mean()) if len(p) else None,
            "drift_p_median": float(np.median(p)) if len(p) else None,
            "drift_error_share": float(np.mean(d_err)) if d_err else None,
            "ood_above_error": float((np.array(scores) > mon.ood_error).mean()),
            "ood_error_share": float(np.mean(o_err))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model bundle (default: the shipped one)")
    ap.add_argument("--data", action="append", required=True, metavar="SPEC", help="frames in drive order")
    ap.add_argument("--corruption", action="append", default=[], metavar="NAME:SEVERITY")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default="build/data_cache")
    ap.add_argument("--json")
    args = ap.parse_args()
    bundle = Path(args.model) if args.model else default_model_dir()
    mon = load_config(MonitorConfig, None, prefix="monitor.")
    rows = []
    for spec in args.data:
        src = open_source(spec, cache_dir=Path(args.cache_dir), labelled=False)
        clean = [src[i].image for i in range(len(src))]
        for cond in [None, *args.corruption]:
            rng = np.random.default_rng(0)
            images = clean if cond is None else \
                [corruptions.apply(im, cond.split(":")[0], int(cond.split(":")[1]), rng) for im in clean]
            row = {"data": spec, "condition": cond or "clean"} | _run(images, bundle, args.threads, mon)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join([".venv/bin/python", "bench/drift_real_frames.py",
                                                                     *sys.argv[1:]]),
                                               "model": load_manifest(bundle).name, "monitor": {
                                                   "drift_p_error": mon.drift_p_error, "drift_persist": mon.drift_persist,
                                                   "ood_error": mon.ood_error, "ood_persist": mon.ood_persist},
                                               "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
