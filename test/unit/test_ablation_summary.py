"""The real-data ablation summary: means, spreads and seed-paired differences from run folders, and its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mim_perception.evaluation.ablation import ablation_markdown, collect


def _run(root: Path, name: str, car: float, ped: float, miou: float, steps: int = 300) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "real.json").write_text(json.dumps({"models": {"m": {"kitti": {"AP50": {"car": car, "pedestrian": ped}},
                                                               "camvid": {"mIoU": miou}}}}))
    (d / "summary.json").write_text(json.dumps({"steps": steps}))


def test_collect_pairs_seeds_and_renders(tmp_path: Path) -> None:
    _run(tmp_path, "mim_f0.1_s0", 0.8, 0.6, 0.60)
    _run(tmp_path, "mim_f0.1_s1", 0.6, 0.4, 0.64)
    _run(tmp_path, "scratch_f0.1_s0", 0.1, 0.0, 0.40)
    _run(tmp_path, "scratch_f0.1_s1", 0.3, 0.1, 0.50)
    _run(tmp_path, "scratch_f1.0_s0", 0.2, 0.1, 0.5)   # no mim run at 100 %: no difference row
    (tmp_path / "coco_f0.1_s0").mkdir()                # unfinished run: ignored
    doc = collect(tmp_path, "cmd")
    mim = doc["arms"]["mim@0.1"]
    assert mim["AP50"]["mean"] == pytest.approx((0.7 + 0.5) / 2) and mim["AP50"]["spread"] == pytest.approx(0.1)
    assert mim["seeds"] == [0, 1] and set(doc["arms"]) == {"mim@0.1", "scratch@0.1", "scratch@1.0"}
    d = doc["deltas"]["0.1"]["mim-scratch"]
    # per seed: AP50 0.7-0.05 = 0.65, 0.5-0.2 = 0.3; mIoU 0.2, 0.14
    assert d["AP50"]["mean"] == pytest.approx(0.475) and d["AP50"]["spread"] == pytest.approx(0.175)
    assert d["mIoU"]["mean"] == pytest.approx(0.17) and "1.0" not in doc["deltas"] and doc["steps"] == [300]
    md = ablation_markdown(doc)
    assert "| COCO weights + MIM adaptation | 10% | 2 | 0.600 ± 0.100 |" in md
    assert "| 10% | mim − scratch | 2 | +47.5 ± 17.5 points | +17.0 ± 3.0 points |" in md
