"""Drift alarms per hour of clean driving and detection of corrupted driving, with the node's own sampling and rule.

Input: drives embedded by ``bench/drift_replay.py`` (one embedding per sampled camera frame, in drive order). Each
is pushed through a ``DriftDetector`` and the node's ``DriftAlarm`` (p < monitor.drift_p_error for
monitor.drift_persist evaluations in a row -> ERROR), for the bundle's shipped reference and, with
``--calibration``, a reference rebuilt from another clean replay (disjoint seeds). Reports, per reference and rule:
alarm events per hour on the clean replay, the share of corrupted-drive evaluations at ERROR and the seconds to
the first ERROR, and the AUROC of clean vs corrupted window p-values (threshold-free).

    .venv/bin/python bench/bench_drift_false_alarms.py --clean build/drift/test_clean.npz \\
        --corrupted build/drift/fog_2.npz ... [--calibration build/drift/calib_clean.npz] --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _load(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        return z["embeddings"], json.loads(str(z["meta"]))


def _p_series(ref: Any, emb: np.ndarray) -> np.ndarray:
    from mim_perception.core.monitoring.drift import DriftDetector

    det, ps = DriftDetector(ref, every=1), []
    for e in emb:
        det.add(e)
        r = det.result()
        if r is not None:
            ps.append(r.p_value)
    return np.array(ps)


def _alarm(cfg: Any, ps: np.ndarray) -> np.ndarray:
    from mim_perception.core.monitoring.health import DriftAlarm, Level

    a = DriftAlarm(cfg)
    return np.array([a.update(float(p)) == Level.ERROR for p in ps])


def _auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    from mim_perception.tools.evaluate_robustness import auroc

    return auroc(neg, pos)


def main() -> int:
    from mim_perception.core.config import load_config
    from mim_perception.core.monitoring.drift import DriftReference
    from mim_perception.core.monitoring.health import MonitorConfig
    from mim_perception.inference.manifest import load_manifest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mim_convnext_atto_cpu")
    ap.add_argument("--clean", required=True, help="clean replay (.npz of drift_replay.py)")
    ap.add_argument("--corrupted", nargs="*", default=[], help="corrupted replays")
    ap.add_argument("--calibration", help="another clean replay: also evaluate a reference rebuilt from it")
    ap.add_argument("--null-draws", type=int, default=4000)
    ap.add_argument("--p-error", type=float, nargs="*", help="rules to compare (default: monitor.drift_p_error)")
    ap.add_argument("--persist", type=int, nargs="*", help="rules to compare (default: monitor.drift_persist)")
    ap.add_argument("--json")
    args = ap.parse_args()

    bundle = Path(args.model)
    m = load_manifest(bundle)
    base = load_config(MonitorConfig, None, prefix="monitor.")
    refs = {"shipped": DriftReference.load(bundle / m.files["drift_reference"])}
    if args.calibration:
        cal = _load(args.calibration)[0]
        refs[f"rebuilt from {Path(args.calibration).name}"] = DriftReference.build(
            cal, window=refs["shipped"].window, dims=16, sample=256, null_draws=args.null_draws, sequential=True)
    clean, meta = _load(args.clean)
    eval_s = meta["every"] / meta["hz"]            # camera seconds between drift evaluations
    drives = {"clean": clean} | {_load(p)[1]["corruption"]: _load(p)[0] for p in args.corrupted}
    rules = [(pe, k) for pe in (args.p_error or [base.drift_p_error]) for k in (args.persist or [base.drift_persist])]
    out: dict[str, Any] = {"clean": meta, "eval_every_s": eval_s, "references": {}}
    for rname, ref in refs.items():
        ps = {d: _p_series(ref, e) for d, e in drives.items()}
        hours = len(ps["clean"]) * eval_s / 3600
        res: dict[str, Any] = {"median_p": {d: float(np.median(p)) for d, p in ps.items()},
                               "auroc_vs_clean": {d: _auroc(-np.log(ps["clean"]), -np.log(p))
                                                  for d, p in ps.items() if d != "clean"},
                               "rules": []}
        for pe, k in rules:
            cfg = replace(base, drift_p_error=pe, drift_p_warn=max(pe, base.drift_p_warn), drift_persist=k)
            row: dict[str, Any] = {"p_error": pe, "persist": k}
            for d, p in ps.items():
                err = _alarm(cfg, p)
                events = int(err[0]) + int((err[1:] & ~err[:-1]).sum()) if len(err) else 0
                first = float(np.argmax(err) * eval_s) if err.any() else None
                row[d] = {"evaluations": len(p), "error_fraction": float(err.mean()), "alarm_events": events,
                          "events_per_hour": events / (len(p) * eval_s / 3600), "first_error_s": first}
            row["clean_hours"] = hours
            res["rules"].append(row)
        out["references"][rname] = res
        print(f"\n== reference: {rname}   (clean replay {hours:.2f} h, evaluation every {eval_s:.3f} s)")
        print("AUROC clean vs: " + ", ".join(f"{d} {a:.3f}" for d, a in res["auroc_vs_clean"].items()))
        cols = [d for d in drives if d != "clean"]
        print(f"{'p_error':>8} {'persist':>7} {'clean events/h':>14} " + " ".join(f"{c[:14]:>14}" for c in cols))
        for row in res["rules"]:
            print(f"{row['p_error']:8.0e} {row['persist']:7d} {row['clean']['events_per_hour']:14.2f} "
                  + " ".join(f"{row[c]['error_fraction']:13.1%} " for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
