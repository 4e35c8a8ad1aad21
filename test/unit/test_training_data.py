"""Training data: samples, sources (generated, MOT, COCO, image folders, bags), batching and episode splits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mim_perception.bags.io import BagWriter, make_typestore
from mim_perception.core.errors import BadImageError, BagError, ConfigError, DatasetError
from mim_perception.core.labels import IGNORE
from mim_perception.sim import synthetic
from mim_perception.sim.synth_cli import generate
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene
from mim_perception.training.augment import Letterbox
from mim_perception.training.data import Sample, SampleDataset, collate, label_subset, split_by_episode
from mim_perception.training.sources import (
    BagSource,
    CocoSource,
    ConcatSource,
    ImageFolderSource,
    MotFolderSource,
    SyntheticSource,
)

W, H = 320, 192
NONE = np.zeros(0)


class ListSource:
    """In-memory source: ``episodes × frames`` tiny samples whose pixel value encodes the item index."""

    name = "list"
    labelled = True

    def __init__(self, episodes: int, frames: int) -> None:
        self._episodes = [f"ep{e}" for e in range(episodes) for _ in range(frames)]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, i: int) -> Sample:
        img = np.full((8, 12, 3), i % 256, np.uint8)
        return Sample(img, np.array([[1, 1, 5, 5]] * (i % 3)), np.array([i % 2] * (i % 3)), np.zeros((8, 12), np.uint8),
                      self._episodes[i], i)


# ------------------------------------------------------------------------------------------ samples, batches


def test_sample_coerces_dtypes_and_rejects_bad_shapes() -> None:
    s = Sample(np.zeros((4, 6, 3), np.uint8), np.array([[0, 0, 1, 1]]), np.array([3]), np.zeros((4, 6), np.uint8))
    assert s.boxes.dtype == np.float32 and s.labels.dtype == np.int64 and s.boxes.shape == (1, 4)
    with pytest.raises(ValueError, match="seg must be"):
        Sample(np.zeros((4, 6, 3), np.uint8), NONE, NONE, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        Sample(np.zeros((4, 6), np.uint8), NONE, NONE, np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        Sample(np.zeros((4, 6, 3), np.uint8), np.array([[0, 0, 1, 1]]), NONE, np.zeros((4, 6), np.uint8))
    u = Sample.unlabelled(np.zeros((4, 6, 3), np.uint8))
    assert len(u.boxes) == 0 and (u.seg == IGNORE).all()


def test_collate_layout_and_dataloader() -> None:
    import torch

    ds = SampleDataset(ListSource(2, 3), None, seed=0)
    ds_bgr = [replace(ds[k], image=np.dstack([np.full((8, 12), c, np.uint8) for c in (10, 20, 30)])) for k in range(3)]
    images, targets, seg = collate(ds_bgr)
    assert images.shape == (3, 3, 8, 12) and images.dtype == torch.uint8 and seg.shape == (3, 8, 12)
    assert images[:, 0].eq(10).all() and images[:, 2].eq(30).all(), "channel order stays BGR"
    assert [len(t["boxes"]) for t in targets] == [0, 1, 2]
    assert targets[2]["boxes"].dtype == torch.float32 and targets[2]["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match="differ in size"):
        collate([ds[0], Letterbox((32, 32))(ds[1])])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 2]


def test_dataset_augmentation_is_seeded_per_item_and_epoch() -> None:
    def noise(s: Sample, rng: np.random.Generator) -> Sample:
        return replace(s, image=rng.integers(0, 256, s.image.shape, dtype=np.uint8))

    src = ListSource(2, 4)
    a, b = SampleDataset(src, noise, seed=3), SampleDataset(src, noise, seed=3)
    assert np.array_equal(a[5].image, b[5].image)
    assert np.array_equal(a.subset([5])[0].image, a[5].image), "same frame, same draw, whatever the subset"
    before = a[5].image
    a.set_epoch(1)
    assert not np.array_equal(a[5].image, before)
    with pytest.raises(ConfigError, match="out of range"):
        SampleDataset(src, None, 0, indices=[8])


# ------------------------------------------------------------------------------------------ splits


def test_split_by_episode_disjoint_deterministic_and_whole_episodes() -> None:
    eps = [f"e{k % 20}" for k in range(200)]          # interleaved on purpose
    sp = split_by_episode(eps, (0.7, 0.15, 0.15), seed=1)
    parts = [set(sp.train), set(sp.val), set(sp.test)]
    assert sum(map(len, parts)) == 200 and set.union(*parts) == set(range(200))
    ep_sets = [{eps[i] for i in p} for p in parts]
    assert not (ep_sets[0] & ep_sets[1]) and not (ep_sets[0] & ep_sets[2]) and not (ep_sets[1] & ep_sets[2])
    assert [len(e) for e in ep_sets] == [14, 3, 3]
    again = split_by_episode(eps, (0.7, 0.15, 0.15), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(sp, again))
    assert {eps[i] for i in split_by_episode(eps, (0.7, 0.15, 0.15), seed=2).val} != ep_sets[1]
    tiny = split_by_episode(["a", "b", "c"], (0.9, 0.05, 0.05), seed=0)
    assert [len(p) for p in tiny] == [1, 1, 1]
    assert len(split_by_episode(["a", "b"], (1.0, 0.0, 0.0), seed=0).train) == 2
    for bad in ((0.5, 0.5, 0.5), (1.2, -0.1, -0.1)):
        with pytest.raises(ConfigError, match="fractions"):
            split_by_episode(eps, bad, seed=0)
    with pytest.raises(ConfigError, match="cannot be split"):
        split_by_episode(["a", "b"], (0.8, 0.1, 0.1), seed=0)


def test_label_subset_size_determinism_nesting_and_spread() -> None:
    ds = SampleDataset(ListSource(10, 20), None, seed=0)
    train = ds.subset(np.arange(150))               # a split of it: only those indices may be chosen
    one, ten, full = (label_subset(train, f, seed=4) for f in (0.01, 0.1, 1.0))
    assert (len(one), len(ten), len(full)) == (2, 15, 150)
    assert set(one.indices) <= set(ten.indices) <= set(full.indices) == set(range(150))
    assert np.array_equal(ten.indices, label_subset(train, 0.1, seed=4).indices)
    assert not np.array_equal(ten.indices, label_subset(train, 0.1, seed=5).indices)
    eps = ds.source.episodes
    assert len({eps[int(i)] for i in ten.indices}) >= 7, "spread over the split's 8 episodes, not one"
    assert len(label_subset(train, 0.0001, seed=0)) == 1
    with pytest.raises(ConfigError, match="fraction"):
        label_subset(train, 0.0, seed=0)


def test_label_subset_samples_each_source_on_its_own() -> None:
    from mim_perception.training.sources import ConcatSource

    # 60 one-frame episodes (KITTI-like) beside 2 long ones (CamVid-like): 10 % takes 6 + 4, not 10 + 0
    many, few = ListSource(60, 1), ListSource(2, 20)
    many.name, few.name = "many", "few"
    ds = SampleDataset(ConcatSource([many, few]), None, seed=0)
    ten = label_subset(ds, 0.1, seed=1)
    from_few = sum(ds.source.source_index(int(i)) == 1 for i in ten.indices)
    assert len(ten) == 10 and from_few == 4
    assert set(label_subset(ds, 0.05, seed=1).indices) <= set(ten.indices)


# ------------------------------------------------------------------------------------------ sources


def test_synthetic_source_caches_and_serves_identical_samples(tmp_path, monkeypatch) -> None:
    kw = dict(cache_dir=tmp_path, jpeg_quality=95)
    src = SyntheticSource(2, 3, 10, W, H, 2, **kw)
    assert len(src) == 6 and list(src.episodes) == ["synth-10"] * 3 + ["synth-11"] * 3
    first = [src[i] for i in range(len(src))]
    ref = list(SyntheticScene(replace(SceneConfig(), width=W, height=H, frames=6, seed=11)).frames())
    s, f = first[4], ref[2]                          # episode 1, kept frame 1 = generated frame 2 (stride 2)
    assert s.image.shape == (H, W, 3) and np.array_equal(s.seg, f.seg) and np.array_equal(s.boxes, f.boxes)
    assert np.array_equal(s.labels, f.labels) and cv2.PSNR(s.image, f.image) > 30
    assert len(list(src.episode_dir(1).glob("*.jpg"))) == 3

    def boom(*a, **k):
        raise AssertionError("cache miss: regenerated")

    monkeypatch.setattr(synthetic.SyntheticScene, "frames", boom)
    again = SyntheticSource(2, 3, 10, W, H, 2, **kw)
    cached = [again[i] for i in range(6)]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) for a, b in zip(first, cached))
    filtered = SyntheticSource(2, 3, 10, W, H, 2, **kw, min_visibility=0.999, min_size=40)
    assert all(len(filtered[i].boxes) <= len(first[i].boxes) for i in range(6))
    assert sum(len(filtered[i].boxes) for i in range(6)) < sum(len(x.boxes) for x in first)
    with pytest.raises(AssertionError, match="cache miss"):   # other settings: another cache entry
        SyntheticSource(1, 3, 10, W, H, 1, **kw)[0]


def test_mot_folder_round_trip_and_errors(tmp_path) -> None:
    cfg = replace(SceneConfig(), width=W, height=H, frames=4, seed=1)
    generate(tmp_path / "seqA", cfg, bag=False, mot=True, images=True)
    generate(tmp_path / "seqB", replace(cfg, seed=2), bag=False, mot=True, images=True)
    src = MotFolderSource(tmp_path / "seqA")
    ref = list(SyntheticScene(cfg).frames())
    assert len(src) == 4 and set(src.episodes) == {"seqA"}
    for s, f in zip((src[i] for i in range(4)), ref):
        np.testing.assert_allclose(s.boxes, f.boxes, atol=0.051)       # gt.txt keeps one decimal
        assert np.array_equal(s.labels, f.labels) and np.array_equal(s.seg, f.seg)
        assert cv2.PSNR(s.image, f.image) > 28
    both = MotFolderSource(tmp_path)
    assert len(both) == 8 and set(both.episodes) == {"seqA", "seqB"}
    (tmp_path / "seqA" / "gt" / "gt.txt").write_text("1,2,3\n")
    with pytest.raises(DatasetError, match="gt.txt"):
        MotFolderSource(tmp_path / "seqA")
    (tmp_path / "seqB" / "seqinfo.ini").write_text("[Sequence]\nname=x\n")
    with pytest.raises(DatasetError, match="seqinfo.ini"):
        MotFolderSource(tmp_path / "seqB")
    with pytest.raises(DatasetError, match="no MOT sequence"):
        MotFolderSource(tmp_path / "seqA" / "gt")


def _coco(tmp_path: Path) -> Path:
    (tmp_path / "img" / "drive1").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(tmp_path / "img" / "drive1" / f"{k}.png"), np.full((40, 60, 3), 50 * k, np.uint8))
    doc = {"images": [{"id": 1, "file_name": "drive1/0.png"}, {"id": 2, "file_name": "drive1/1.png"}],
           "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 20]},
                           {"id": 2, "image_id": 1, "category_id": 18, "bbox": [1, 1, 5, 5]},
                           {"id": 3, "image_id": 2, "category_id": 3, "bbox": [50, 30, 30, 30]},
                           {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 9, 9], "iscrowd": 1}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_source_maps_classes_and_counts_dropped(tmp_path) -> None:
    src = CocoSource(tmp_path / "img", _coco(tmp_path), class_map={"person": "pedestrian", "car": "car"})
    assert len(src) == 2 and src.dropped == {"dog": 1, "crowd": 1} and set(src.episodes) == {"drive1"}
    a, b = src[0], src[1]
    np.testing.assert_array_equal(a.boxes, [[5, 5, 15, 25]])
    assert a.labels.tolist() == [3] and (a.seg == IGNORE).all()
    np.testing.assert_array_equal(b.boxes, [[50, 30, 60, 40]])          # clipped to the 60×40 image
    assert b.labels.tolist() == [0]
    with pytest.raises(ConfigError, match="unknown detection class"):
        CocoSource(tmp_path / "img", tmp_path / "ann.json", class_map={"person": "human"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json"):
        CocoSource(tmp_path / "img", tmp_path / "bad.json", class_map={})
    (tmp_path / "img" / "drive1" / "1.png").write_bytes(b"broken")
    with pytest.raises(BadImageError, match="1.png"):
        src[1]


def test_image_folder_and_concat(tmp_path) -> None:
    for d in ("run1", "run2"):
        (tmp_path / d).mkdir()
        for k in range(2):
            cv2.imwrite(str(tmp_path / d / f"{k}.jpg"), np.full((16, 24, 3), 100, np.uint8))
    src = ImageFolderSource(tmp_path)
    assert len(src) == 4 and not src.labelled and list(src.episodes) == ["run1", "run1", "run2", "run2"]
    s = src[3]
    assert s.image.shape == (16, 24, 3) and len(s.boxes) == 0 and (s.seg == IGNORE).all()
    both = ConcatSource([src, ListSource(1, 2)])
    assert len(both) == 6 and not both.labelled and both.episodes[5] == "list/ep0" and both[5].frame == 1
    with pytest.raises(DatasetError, match="no images"):
        ImageFolderSource(tmp_path / "run1" / "nothing")


def test_bag_source_compressed_and_raw_topics(tmp_path) -> None:
    store = make_typestore()
    T = store.types
    rng = np.random.default_rng(0)
    # Smooth (JPEG-friendly) frames with a distinct level per channel, so a channel swap would show.
    levels = np.array([20, 120, 200], np.uint8)
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (0, 0), 4) // 4 + levels for _ in range(4)]
    with BagWriter(tmp_path / "bag", "mcap", store) as w:
        for k, f in enumerate(frames):
            hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=k, nanosec=0), frame_id="cam")
            ok, jpg = cv2.imencode(".png", f)
            w.write_msg("/cam/compressed", "sensor_msgs/msg/CompressedImage", k * 10**9,
                        T["sensor_msgs/msg/CompressedImage"](header=hdr, format="png", data=jpg.reshape(-1)))
            w.write_msg("/cam/raw", "sensor_msgs/msg/Image", k * 10**9,
                        T["sensor_msgs/msg/Image"](header=hdr, height=24, width=32, encoding="rgb8", is_bigendian=0,
                                                   step=96, data=f[..., ::-1].reshape(-1).copy()))
            w.write_msg("/status", "std_msgs/msg/String", k * 10**9, T["std_msgs/msg/String"](data="x"))
    comp = BagSource(tmp_path / "bag", "/cam/compressed")
    assert len(comp) == 4 and np.array_equal(comp[2].image, frames[2]) and not comp.labelled
    raw = BagSource(tmp_path / "bag", "/cam/raw", stride=2)
    assert len(raw) == 2 and cv2.PSNR(raw[1].image, frames[2]) > 35 and set(raw.episodes) == {"bag"}
    with pytest.raises(BagError, match="no topic /nope"):
        BagSource(tmp_path / "bag", "/nope")
    with pytest.raises(BagError, match="std_msgs/msg/String"):
        BagSource(tmp_path / "bag", "/status")
