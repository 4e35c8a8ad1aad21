"""Summarise scripts/ablate_real.sh: mean ± spread (half the range) over seeds of KITTI AP50 and CamVid mIoU per
(init, label fraction); writes docs/results/ablation_real.json and prints the README table.
Usage: python scripts/ablation_table.py WORK/ablation [OUT_JSON]"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def main(root: Path, out: Path) -> None:
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for f in sorted(root.glob("*/real.json")):
        m = re.fullmatch(r"(\w+)_f([\d.]+)_s(\d+)", f.parent.name)
        if m:
            r = next(iter(json.loads(f.read_text())["models"].values()))
            runs[(m[1], m[2])].append({"seed": int(m[3]), "car": r["kitti"]["AP50"]["car"],
                                       "pedestrian": r["kitti"]["AP50"]["pedestrian"], "mIoU": r["camvid"]["mIoU"]})
    table: dict[str, dict] = {}
    print("| init | labels | seeds | car AP50 | pedestrian AP50 | CamVid mIoU |\n|---|---|---|---|---|---|")
    for (init, frac), rs in sorted(runs.items(), key=lambda kv: (float(kv[0][1]), kv[0][0])):
        cell = {}
        for k in ("car", "pedestrian", "mIoU"):
            v = np.array([r[k] for r in rs], np.float64)
            cell[k] = {"mean": float(np.nanmean(v)), "spread": float((np.nanmax(v) - np.nanmin(v)) / 2), "runs": v.tolist()}
        table[f"{init}@{frac}"] = cell | {"seeds": [r["seed"] for r in rs]}
        cells = " | ".join(f"{cell[k]['mean']:.3f} ± {cell[k]['spread']:.3f}" for k in ("car", "pedestrian", "mIoU"))
        print(f"| {init} | {float(frac):.0%} | {len(rs)} | {cells} |")
    out.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/results/ablation_real.json"))
