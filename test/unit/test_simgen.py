"""simgen: deterministic per seed, split by episode with disjoint test seeds, resumable, never a partial episode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mim_perception.core.errors import ConfigError
from mim_perception.scale.fanout import FanoutFailed
from mim_perception.sim import simgen
from mim_perception.sim.simgen import GenConfig, generate_dataset

CFG = GenConfig(source="synthetic", episodes=4, frames=6, seed=3, width=160, height=96, fps=10.0, labelled=True,
                bag=False, val_fraction=0.25, test_fraction=0.25)


def test_layout_splits_and_determinism(tmp_path: Path) -> None:
    s = generate_dataset(CFG, tmp_path / "a")
    assert s["splits"] == {"train": [0, 1], "val": [2], "test": [3]}
    assert s["frames"] == 24 and sum(s["objects_per_class"].values()) > 0
    ep = tmp_path / "a" / "episodes" / "ep_00003"
    meta = json.loads((ep / "episode.json").read_text())
    assert meta["seed"] == 3 + 3 + simgen.TEST_SEED_OFFSET, "test episodes draw from a disjoint seed range"
    coco = json.loads((ep / "coco.json").read_text())
    gt_lines = (ep / "gt" / "gt.txt").read_text().splitlines()
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == len(gt_lines)
    assert len(list((ep / "img1").glob("*.jpg"))) == 6 and len(list((ep / "seg").glob("*.png"))) == 6
    assert json.loads((ep / "camera.json").read_text())["width"] == 160
    generate_dataset(CFG, tmp_path / "b")
    assert (tmp_path / "b" / "episodes" / "ep_00001" / "gt" / "gt.txt").read_text() == \
        (tmp_path / "a" / "episodes" / "ep_00001" / "gt" / "gt.txt").read_text()


def test_resumes_and_cleans_partial_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = simgen._frames

    def crash_on_episode_2(cfg: GenConfig, episode: int):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        for i, f in enumerate(real(cfg, episode)):
            if episode == 2 and i == 3:
                raise OSError("No space left on device")
            yield f

    monkeypatch.setattr(simgen, "_frames", crash_on_episode_2)
    with pytest.raises(FanoutFailed, match="No space"):
        generate_dataset(CFG, tmp_path, retries=1)
    eps = tmp_path / "episodes"
    # the failing episode was retried once, then reported; the others were written; nothing partial is left
    assert sorted(p.name for p in eps.iterdir()) == ["ep_00000", "ep_00001", "ep_00003"], "no partial episode left"
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert not manifest["complete"] and manifest["failed"][0]["episode"] == 2 and manifest["failed"][0]["attempts"] == 2
    assert "No space" in manifest["failed"][0]["error"]
    monkeypatch.setattr(simgen, "_frames", real)
    (eps / "ep_00002.tmp").mkdir()   # debris of a killed run
    s = generate_dataset(CFG, tmp_path)
    assert s["frames"] == 24 and s["complete"] and not (eps / "ep_00002.tmp").exists()
    assert json.loads((eps / "ep_00000" / "episode.json").read_text())["episode"] == 0


def test_unlabelled_pool_and_bad_settings(tmp_path: Path) -> None:
    s = generate_dataset(replace(CFG, labelled=False, episodes=1, val_fraction=0, test_fraction=0), tmp_path / "u")
    ep = tmp_path / "u" / "episodes" / "ep_00000"
    assert s["frames"] == 6 and not (ep / "gt").exists() and len(list((ep / "img1").glob("*.jpg"))) == 6
    with pytest.raises(ConfigError, match="other settings"):
        generate_dataset(replace(CFG, frames=7), tmp_path / "u")
    with pytest.raises(ConfigError, match="unknown source"):
        generate_dataset(replace(CFG, source="carla"), tmp_path / "x")
