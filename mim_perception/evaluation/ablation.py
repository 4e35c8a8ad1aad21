"""The MIM ablation on real frames (scripts/ablate_real.sh): collect its runs' evaluate-real results into one summary
(mean ± spread over seeds per initialisation and label fraction) and render the README table from it.

A run folder is named ``INIT_fFRACTION_sSEED`` and holds ``real.json`` (evaluate-real of its exported bundle) and
``summary.json`` (its fine-tuning record). AP50 below is the mean of car and pedestrian AP50 on KITTI 60-74 (cyclist:
5 boxes, 0 for every model, left out); spread is half the range over seeds.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

INITS = {"mim": "COCO weights + MIM adaptation", "coco": "COCO weights, no MIM", "scratch": "random weights"}
METRICS = ("AP50", "car", "pedestrian", "mIoU")


def _run_metrics(real: dict[str, Any]) -> dict[str, float]:
    r = next(iter(real["models"].values()))
    car, ped = float(r["kitti"]["AP50"]["car"]), float(r["kitti"]["AP50"]["pedestrian"])
    return {"AP50": (car + ped) / 2, "car": car, "pedestrian": ped, "mIoU": float(r["camvid"]["mIoU"])}


def _cell(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "spread": float((v.max() - v.min()) / 2), "runs": v.tolist()}


def collect(root: Path, command: str = "") -> dict[str, Any]:
    """Every finished run under ``root`` -> {"arms": {"INIT@FRACTION": {metric: cell, "seeds": [...]}}, "deltas":
    {FRACTION: {"mim-scratch" / "mim-coco": {metric: cell of per-seed differences}}}, "steps", "command"}."""
    runs: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    steps = set()
    for f in sorted(root.glob("*/real.json")):
        m = re.fullmatch(r"(\w+)_f([\d.]+)_s(\d+)", f.parent.name)
        if m:
            runs[(m[1], m[2])][int(m[3])] = _run_metrics(json.loads(f.read_text()))
            summary = f.parent / "summary.json"
            if summary.is_file():
                steps.add(json.loads(summary.read_text()).get("steps"))
    arms = {f"{init}@{frac}": {k: _cell([r[k] for r in by_seed.values()]) for k in METRICS} | {"seeds": sorted(by_seed)}
            for (init, frac), by_seed in sorted(runs.items(), key=lambda kv: (float(kv[0][1]), kv[0][0]))}
    deltas: dict[str, dict[str, Any]] = {}
    for frac in sorted({f for _, f in runs}, key=float):
        for other in ("scratch", "coco"):
            a, b = runs.get(("mim", frac), {}), runs.get((other, frac), {})
            seeds = sorted(set(a) & set(b))   # paired by seed: same label subset, same order
            if seeds:
                deltas.setdefault(frac, {})[f"mim-{other}"] = {
                    k: _cell([a[s][k] - b[s][k] for s in seeds]) for k in METRICS} | {"seeds": seeds}
    return {"arms": arms, "deltas": deltas, "steps": sorted(s for s in steps if s is not None), "command": command}


def ablation_markdown(doc: dict[str, Any]) -> str:
    fmt = lambda c: f"{c['mean']:.3f} ± {c['spread']:.3f}"   # noqa: E731
    lines = ["| initialisation | labels | seeds | AP50 (car, ped.) | car AP50 | pedestrian AP50 | CamVid mIoU |",
             "|---|---|---|---|---|---|---|"]
    for key, c in doc["arms"].items():
        init, frac = key.split("@")
        lines.append(f"| {INITS.get(init, init)} | {float(frac):.0%} | {len(c['seeds'])} | "
                     + " | ".join(fmt(c[k]) for k in METRICS) + " |")
    lines += ["", "Differences, paired by seed (mean ± half the range):", "",
              "| labels | comparison | seeds | AP50 | CamVid mIoU |", "|---|---|---|---|---|"]
    for frac, comps in doc["deltas"].items():
        for name, c in comps.items():
            lines.append(f"| {float(frac):.0%} | {name.replace('-', ' − ')} | {len(c['seeds'])} | "
                         f"{c['AP50']['mean'] * 100:+.1f} ± {c['AP50']['spread'] * 100:.1f} points | "
                         f"{c['mIoU']['mean'] * 100:+.1f} ± {c['mIoU']['spread'] * 100:.1f} points |")
    steps = ", ".join(map(str, doc.get("steps") or [])) or "?"
    lines += ["", f"Each run: {steps} fine-tuning steps × 16 images on the same real data (CamVid masks, KITTI 0–59 "
              "boxes, pseudo-boxes), exported at 288×512, scored on KITTI 60–74 and CamVid test.", "",
              f"`{doc.get('command', '')}`"]
    return "\n".join(lines) + "\n"
