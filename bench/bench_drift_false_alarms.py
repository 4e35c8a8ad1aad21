"""Drift and OOD alarms per hour of clean driving, and detection of corrupted driving, with the node's sampling and rules.

Input: drives embedded by ``bench/drift_replay.py`` (one embedding and the image statistics per sampled camera frame
in drive order, and the MIM OOD error every ``ood_every``-th frame). Each drive goes through a ``DriftDetector`` (with
the bundle's image-statistics reference when it has one, combined as in the node) + the node's drift alarm
(p < monitor.drift_p_error for monitor.drift_persist evaluations in a row -> ERROR) and the OOD score + the node's
OOD alarm (score > monitor.ood_error for monitor.ood_persist scores in a row), for the bundle's shipped drift
reference and, with ``--calibration``, one rebuilt from another clean replay (disjoint seeds). Reports alarm events
per hour on the clean replays, and for each corrupted drive the share of time at ERROR (drift, OOD, either) and the
seconds to the first ERROR, plus threshold-free AUROCs (clean vs corrupted drift windows; OOD frames).

    .venv/bin/python bench/bench_drift_false_alarms.py --model BUNDLE --clean build/drift/test_clean.npz \\
        --clean-ood build/drift/test_clean_ood.npz --corrupted build/drift/fog_2.npz ... --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.config import load_config
from mim_perception.core.monitoring.calibration import REPLAY_NULL_DRAWS, load_replay, reference_from_replay
from mim_perception.core.monitoring.drift import DriftDetector, DriftReference
from mim_perception.core.monitoring.health import Level, MonitorConfig, drift_alarm, ood_alarm
from mim_perception.core.monitoring.image_stats import KERNEL_SCALES as IMAGE_KERNEL_SCALES
from mim_perception.core.monitoring.ood import OodReference
from mim_perception.core.pipeline import PerceptionConfig
from mim_perception.evaluation.robustness import auroc
from mim_perception.inference.manifest import load_manifest


def _load(path: str) -> dict[str, Any]:
    return load_replay(Path(path))


def _drift(ref: Any, image_ref: Any, d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (p-values as the node combines them, camera times, embedding p, image-statistics p) of a drive's windows."""
    stats = d.get("image_stats")
    if image_ref is not None and (stats is None or len(stats) != len(d["embeddings"])):
        raise SystemExit(f"{d['meta']}: no image statistics for this replay (run drift_replay.py --image-stats-only)")
    det, rows = DriftDetector(ref, every=1, image_reference=image_ref), []
    for i, (e, t) in enumerate(zip(d["embeddings"], d["time"], strict=True)):
        det.add(e, None if image_ref is None else stats[i])
        r = det.result()
        if r is not None:
            rows.append((r.p_value, t, r.p_embedding, r.p_image))
    a = np.array(rows).reshape(-1, 4)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def _errors(alarm: Any, ps: np.ndarray) -> np.ndarray:
    alarm.reset()
    return np.array([alarm.update(float(p)) == Level.ERROR for p in ps], bool)


def _events(err: np.ndarray) -> int:
    return int(err[0]) + int((err[1:] & ~err[:-1]).sum()) if len(err) else 0


def _state_at(times: np.ndarray, ev_times: np.ndarray, ev_err: np.ndarray) -> np.ndarray:
    """ERROR state of a slower alarm stream (OOD) at the given times (its last update at or before each)."""
    if not len(ev_times):
        return np.zeros(len(times), bool)
    idx = np.searchsorted(ev_times, times, side="right") - 1
    return np.where(idx >= 0, ev_err[np.maximum(idx, 0)], False)


def _combined(p: np.ndarray, t: np.ndarray, ood: tuple[np.ndarray, np.ndarray] | None, span: float) -> np.ndarray:
    """Per drift evaluation: -log p of the window + mean -log p of the OOD scores inside the window's span (Fisher-
    style sum; a separability score for AUROC, not a calibrated p-value)."""
    s = -np.log(np.maximum(p, 1e-300))
    if ood is None or not len(ood[0]):
        return s
    op, ot = ood
    lo, hi = np.searchsorted(ot, t - span, side="right"), np.searchsorted(ot, t, side="right")
    csum = np.concatenate([[0.0], np.cumsum(-np.log(np.maximum(op, 1e-300)))])
    n = hi - lo
    return s + np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), 0.0)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mim_convnext_atto_cpu")
    ap.add_argument("--clean", required=True, help="clean replay with embeddings (.npz of drift_replay.py)")
    ap.add_argument("--clean-ood", help="clean replay with OOD errors (default: --clean)")
    ap.add_argument("--corrupted", nargs="*", default=[], help="corrupted replays (embeddings and OOD errors)")
    ap.add_argument("--calibration", help="another clean replay: also evaluate a drift reference rebuilt from it")
    ap.add_argument("--null-draws", type=int, default=REPLAY_NULL_DRAWS)
    ap.add_argument("--embedding-scales", type=float, nargs="+", default=[1.0], help="kernel bandwidths² (rebuilt)")
    ap.add_argument("--image-scales", type=float, nargs="+", default=list(IMAGE_KERNEL_SCALES),
                    help="kernel bandwidths² of the image statistics (rebuilt)")
    ap.add_argument("--p-error", type=float, nargs="*", help="drift rules to compare (default: monitor.drift_p_error)")
    ap.add_argument("--persist", type=int, nargs="*", help="drift rules to compare (default: monitor.drift_persist)")
    ap.add_argument("--ood-persist", type=int, nargs="*", help="OOD rules to compare (default: monitor.ood_persist)")
    ap.add_argument("--transport", nargs="*", default=[],
                    help="clean .img.npz replays through a camera JPEG transport (drift_replay.py --transport-jpeg Q "
                         "--image-stats-only): image-statistics alarms per hour with the shipped image reference")
    ap.add_argument("--ood-stride", type=int, help="keep every k-th recorded OOD score (default: the node's "
                    "perception.ood_every / the replay's ood_every)")
    ap.add_argument("--json")
    return ap.parse_args()


Refs = dict[str, tuple[DriftReference, DriftReference | None]]
OodSeries = dict[str, tuple[np.ndarray, np.ndarray]]


def _references(args: argparse.Namespace, bundle: Path, m: Any) -> Refs:
    """The bundle's shipped drift (+ image-statistics) reference and, with --calibration, one rebuilt from a replay."""
    shipped = DriftReference.load(bundle / m.files["drift_reference"])
    refs: Refs = {"shipped": (shipped, DriftReference.load(bundle / m.files["image_reference"])
                              if "image_reference" in m.files else None)}
    if args.calibration:
        cal = _load(args.calibration)
        w = shipped.window
        refs[f"rebuilt from {Path(args.calibration).name}"] = (
            reference_from_replay(cal["embeddings"], window=w, null_draws=args.null_draws,
                                  scales=tuple(args.embedding_scales)),
            reference_from_replay(cal["image_stats"], window=w, null_draws=args.null_draws,
                                  scales=tuple(args.image_scales))
            if len(cal.get("image_stats", ())) == len(cal["embeddings"]) else None)
    return refs


def _ood_section(args: argparse.Namespace, base: Any, ood_ref: Any, clean_ood: dict[str, Any],
                 drives: dict[str, dict[str, Any]], out: dict[str, Any]) -> OodSeries:
    """OOD: one reference, the node's rule over ood_persist values; returns each drive's (p-values, camera times)."""
    # every k-th recorded score: replays recorded OOD more often than the node now scores
    node_every = load_config(PerceptionConfig, None, prefix="perception.").ood_every
    k = args.ood_stride or max(1, node_every // int(clean_ood["meta"]["ood_every"]))
    out["ood"]["stride"] = k
    ood_p = {n: (np.array([ood_ref.p_value(float(e)) for e in d["ood_errors"][::k]]), d["ood_time"][::k])
             for n, d in ({"clean": clean_ood} | {k: v for k, v in drives.items() if k != "clean"}).items()}
    hours = clean_ood["meta"]["minutes"] / 60
    print(f"\n== OOD (MIM reconstruction), clean replay {hours:.2f} h, one score every "
          f"{clean_ood['meta']['ood_every'] * k / clean_ood['meta']['hz']:.2f} s")
    for n, (p, _) in ood_p.items():
        if n != "clean":
            out["ood"].setdefault("auroc_frame", {})[n] = auroc(-np.log(ood_p["clean"][0]), -np.log(p))
    print("AUROC per frame: " + ", ".join(f"{n} {a:.3f}" for n, a in out["ood"].get("auroc_frame", {}).items()))
    out["ood"]["clean_p_below"] = {str(t): float((ood_p["clean"][0] < t).mean()) for t in (0.05, 0.01, 1e-3, 1e-4)}
    out["ood"]["rules"] = []
    for persist in args.ood_persist or [base.ood_persist]:
        a = ood_alarm(replace(base, ood_persist=persist))
        row: dict[str, Any] = {"persist": persist,
                               "clean_events_per_hour": _events(_errors(a, ood_p["clean"][0])) / hours}
        row |= {n: float(_errors(a, p).mean()) for n, (p, _) in ood_p.items() if n != "clean"}
        out["ood"]["rules"].append(row)
        print(f"persist {persist}: clean {row['clean_events_per_hour']:.2f} events/h; ERROR share "
              + ", ".join(f"{n} {v:.0%}" for n, v in row.items() if n not in ("persist", "clean_events_per_hour")))
    return ood_p


def _drift_aurocs(full: dict[str, Any], series: dict[str, tuple[np.ndarray, np.ndarray]], ood_p: OodSeries,
                  span: float, image_ref: Any) -> dict[str, Any]:
    comb_clean = _combined(*series["clean"], ood_p.get("clean"), span)
    res: dict[str, Any] = {"median_p": {n: float(np.median(p)) for n, (p, _) in series.items()},
                           "auroc_window": {n: auroc(-np.log(series["clean"][0]), -np.log(p))
                                            for n, (p, _) in series.items() if n != "clean"},
                           "auroc_window_with_ood": {n: auroc(comb_clean, _combined(p, t, ood_p.get(n), span))
                                                     for n, (p, t) in series.items() if n != "clean"} if ood_p else {},
                           "rules": [], "image_statistics": image_ref is not None}
    if image_ref is not None:   # each channel alone, for the record
        for key, j in (("auroc_window_embedding", 2), ("auroc_window_image", 3)):
            res[key] = {n: auroc(-np.log(full["clean"][j]), -np.log(f[j])) for n, f in full.items() if n != "clean"}
    return res


def _drift_rule(base: Any, pe: float, persist: int, series: dict[str, tuple[np.ndarray, np.ndarray]],
                ood_p: OodSeries, hours: float, cols: list[str]) -> dict[str, Any]:
    """One drift rule (p_error, persist): clean ERROR events per hour; per corrupted drive the share of time at
    ERROR (drift alone, drift or OOD) and the camera seconds to the first ERROR."""
    a = drift_alarm(replace(base, drift_p_error=pe, drift_p_warn=max(pe, base.drift_p_warn), drift_persist=persist))
    row: dict[str, Any] = {"p_error": pe, "persist": persist,
                           "clean_events_per_hour": _events(_errors(a, series["clean"][0])) / hours}
    oa = ood_alarm(base)
    for n in cols:
        p, t = series[n]
        err = _errors(a, p)
        either = err.copy()
        if n in ood_p:
            either |= _state_at(t, ood_p[n][1], _errors(oa, ood_p[n][0]))
        first = float(t[np.argmax(either)]) if either.any() else None   # camera s since the drive began
        row[n] = {"drift": float(err.mean()), "either": float(either.mean()), "first_error_s": first}
    return row


def _drift_section(args: argparse.Namespace, base: Any, rname: str, ref: Any, image_ref: Any,
                   drives: dict[str, dict[str, Any]], ood_p: OodSeries) -> dict[str, Any]:
    full = {n: _drift(ref, image_ref, d) for n, d in drives.items()}
    series = {n: (p, t) for n, (p, t, _, _) in full.items()}
    eval_s = float(np.median(np.diff(series["clean"][1])))
    hours = len(series["clean"][0]) * eval_s / 3600
    res = _drift_aurocs(full, series, ood_p, (ref.window - 1) * eval_s, image_ref)
    print(f"\n== drift, reference: {rname}{' + image statistics' if image_ref is not None else ''}   "
          f"(clean replay {hours:.2f} h, evaluation every {eval_s:.3f} s)")
    for key in ("auroc_window_embedding", "auroc_window_image"):
        if key in res:
            print(f"AUROC per window, {key[13:]} alone: " + ", ".join(f"{n} {a:.3f}" for n, a in res[key].items()))
    print("AUROC per window: " + ", ".join(f"{n} {a:.3f}" for n, a in res["auroc_window"].items()))
    print("AUROC per window, drift + OOD: " + ", ".join(f"{n} {a:.3f}" for n, a in res["auroc_window_with_ood"].items()))
    cols = [n for n in drives if n != "clean"]
    print(f"{'p_error':>8} {'persist':>7} {'clean ev/h':>10} " + " ".join(f"{c[:16]:>16}" for c in cols)
          + "   (drift / either ERROR share)")
    for pe in args.p_error or [base.drift_p_error]:
        for persist in args.persist or [base.drift_persist]:
            row = _drift_rule(base, pe, persist, series, ood_p, hours, cols)
            res["rules"].append(row)
            print(f"{pe:8.0e} {persist:7d} {row['clean_events_per_hour']:10.2f} "
                  + " ".join(f"{row[c]['drift']:7.0%} /{row[c]['either']:6.0%} " for c in cols))
    return res


def _transport_section(paths: list[str], image_ref: Any, base: Any, out: dict[str, Any]) -> None:
    print("\n== image statistics alone (shipped reference), clean drives through a camera JPEG transport")
    for path in paths:
        with np.load(path, allow_pickle=False) as z:
            stats, meta = z["image_stats"], json.loads(str(z["meta"]))
        ps, _, _, _ = _drift(image_ref, None, {"embeddings": stats, "time": np.arange(len(stats)), "meta": meta})
        hours = meta["minutes"] / 60
        ev = _events(_errors(drift_alarm(base), ps)) / hours
        low = float((ps < base.drift_p_error).mean())
        q = meta["transport_jpeg"]
        q = ",".join(map(str, q)) if isinstance(q, list) else q
        out.setdefault("transport", {})[f"jpeg {q}"] = {"hours": hours, "events_per_hour": ev, "p_below_error": low}
        print(f"JPEG {q}: {ev:.1f} ERROR events/h over {hours:.2f} h, p < {base.drift_p_error:g} in {low:.1%} of windows")


def main() -> int:
    args = _args()
    bundle = Path(args.model)
    m = load_manifest(bundle)
    base = load_config(MonitorConfig, None, prefix="monitor.")
    refs = _references(args, bundle, m)
    ood_ref = OodReference.load(bundle / m.files["ood_reference"]) if "ood_reference" in m.files else None
    clean, clean_ood = _load(args.clean), _load(args.clean_ood or args.clean)
    drives = {"clean": clean} | {(d := _load(p))["meta"]["corruption"]: d for p in args.corrupted}
    out: dict[str, Any] = {"model": str(bundle), "clean": clean["meta"], "clean_ood": clean_ood["meta"], "drift": {},
                           "ood": {}, "either": {}}
    ood_p = _ood_section(args, base, ood_ref, clean_ood, drives, out) if ood_ref is not None else {}
    for rname, (ref, image_ref) in refs.items():
        out["drift"][rname] = _drift_section(args, base, rname, ref, image_ref, drives, ood_p)
    if args.transport and refs["shipped"][1] is not None:
        _transport_section(args.transport, refs["shipped"][1], base, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
