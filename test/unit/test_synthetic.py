"""The procedural scene generator: deterministic, labels consistent with the rendered pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mim_perception.core.labels import IGNORE, LabelSpace
from mim_perception.sim.synth_cli import generate
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene

CFG = replace(SceneConfig(), width=320, height=192, frames=12, seed=5)


@pytest.fixture(scope="module")
def frames() -> list:
    return list(SyntheticScene(CFG).frames())


def test_deterministic_per_seed(frames: list) -> None:
    again = list(SyntheticScene(CFG).frames())
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) for a, b in zip(frames, again))
    other = next(SyntheticScene(replace(CFG, seed=6)).frames())
    assert not np.array_equal(other.image, frames[0].image)


def test_labels_match_pixels(frames: list) -> None:
    labels = LabelSpace.load()
    for f in frames:
        assert f.image.shape == (CFG.height, CFG.width, 3) and f.seg.shape == (CFG.height, CFG.width)
        assert f.seg.max() < len(labels.segmentation) and IGNORE not in f.seg
        assert len(set(f.track_ids.tolist())) == len(f.track_ids), "ids unique within a frame"
        assert ((f.visibility > 0) & (f.visibility <= 1)).all()
        for (x0, y0, x1, y1), det in zip(f.boxes.astype(int), f.labels):
            assert 0 <= x0 < x1 <= CFG.width and 0 <= y0 < y1 <= CFG.height
            patch = f.seg[y0:y1, x0:x1]
            # The box is the visible extent of the object: its class paints some pixels inside it.
            assert (patch == labels.det_to_seg[det]).any()


def test_ids_persist_and_stamps_advance(frames: list) -> None:
    first, last = set(frames[0].track_ids.tolist()), set(frames[-1].track_ids.tolist())
    assert first & last, "objects keep their id across frames"
    stamps = np.array([f.stamp for f in frames])
    assert np.allclose(np.diff(stamps), 1 / CFG.fps)


def test_writes_mot_and_images(tmp_path) -> None:
    counts = generate(tmp_path, replace(CFG, frames=5), bag=False, mot=True, images=True)
    assert counts == {"frames": 5}
    rows = np.loadtxt(tmp_path / "gt" / "gt.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 9 and rows[:, 0].min() == 1 and rows[:, 0].max() <= 5
    assert (rows[:, 4] > 0).all() and (rows[:, 5] > 0).all()
    assert "frameRate=15" in (tmp_path / "seqinfo.ini").read_text()
    assert len(list((tmp_path / "img1").glob("*.jpg"))) == 5 and len(list((tmp_path / "seg").glob("*.png"))) == 5
