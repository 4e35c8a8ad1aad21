"""Ray in local mode with 2 workers: `simgen` and multi-bag `evaluate` give exactly what one process gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mim_perception.cli import main

ACCURACY = ("frames.answered_fraction", "detection.mAP", "detection.AP50", "segmentation.mIoU", "tracking.HOTA",
            "tracking.MOTA", "tracking.IDF1", "tracking.IDSW", "drops.total")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "episode.json"}   # episode.json holds wall-clock seconds


@pytest.mark.timeout(180)
def test_simgen_on_ray_equals_one_process(tmp_path: Path) -> None:
    args = ["--episodes", "4", "--frames", "6", "--seed", "5", "--bag"]
    assert main(["simgen", str(tmp_path / "one"), *args]) == 0
    assert main(["simgen", str(tmp_path / "ray"), *args, "--ray-address", "local", "--workers", "2"]) == 0
    one, ray = _files(tmp_path / "one" / "episodes"), _files(tmp_path / "ray" / "episodes")
    assert len(one) > 40 and one.keys() == ray.keys()
    assert all(one[k] == ray[k] for k in one if "/bag/" not in k)   # images, masks, gt, coco: byte-identical
    d1, d2 = (json.loads((tmp_path / n / "dataset.json").read_text()) for n in ("one", "ray"))
    assert d1["splits"] == d2["splits"] and d1["objects_per_class"] == d2["objects_per_class"] and d2["complete"]


@pytest.mark.timeout(240)
def test_evaluate_many_bags_on_ray_equals_one_process(tmp_path: Path) -> None:
    bags = []
    for seed in (31, 32):
        assert main(["synth", str(tmp_path / f"s{seed}"), "--frames", "6", "--fps", "5", "--seed", str(seed), "--bag"]) == 0
        bags.append(str(tmp_path / f"s{seed}" / "bag"))
    assert main(["evaluate", *bags, "--out", str(tmp_path / "one"), "--no-video"]) == 0
    rc = main(["evaluate", *bags, "--out", str(tmp_path / "ray"), "--no-video", "--ray-address", "local", "--workers", "2"])
    assert rc == 0
    one, ray = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("one", "ray"))
    assert one["frames"]["total"] == ray["frames"]["total"] == 12 and len(ray["runs"]) == 2 and not ray["failed"]
    for key in ACCURACY:
        assert one["headline"][key] == ray["headline"][key], key
    assert one["headline"]["detection.AP50"] > 0
    # a bag that cannot be evaluated is retried, then reported: the others still count and the exit status says so
    rc = main(["evaluate", bags[0], str(tmp_path / "missing"), "--out", str(tmp_path / "bad"), "--no-video",
               "--workers", "2", "--retries", "0"])
    bad = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert rc == 1 and len(bad["failed"]) == 1 and bad["failed"][0]["bag"].endswith("missing")
    assert bad["frames"]["total"] == 6
