"""Cityscapes / BDD100K masks into the stack's label space (config/label_maps.yaml), through the `coco:` data spec."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.training.common import open_source
from mim_perception.training.label_maps import IGNORE, load_mask_map

L = LabelSpace.load()


def test_cityscapes_label_ids_map_and_unknowns_are_counted() -> None:
    m = load_mask_map("cityscapes_labelids")
    mask = np.array([[7, 8, 11, 26], [24, 23, 0, 250]], np.uint8)   # road sidewalk building car / person sky void ?
    out = m.apply(mask)
    want = [[L.seg_index("road"), L.seg_index("sidewalk"), L.seg_index("building"), L.seg_index("vehicle")],
            [L.seg_index("person"), L.seg_index("sky"), IGNORE, IGNORE]]
    np.testing.assert_array_equal(out, want)
    assert m.unknown == {250: 1}, "a value the table neither maps nor ignores is counted, 'void' (0) is not"


def test_train_ids_cover_all_19_classes() -> None:
    m = load_mask_map("cityscapes_trainids")
    out = m.apply(np.arange(19, dtype=np.uint8)[None])
    assert (out != IGNORE).all() and not m.unknown
    assert out[0, 0] == L.seg_index("road") and out[0, 13] == L.seg_index("vehicle")


def test_unknown_map_and_bad_tables_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown label map"):
        load_mask_map("kitti")
    bad = tmp_path / "maps.yaml"
    bad.write_text("x:\n  map: {road: [1], lawn: [2]}\n")
    with pytest.raises(ConfigError, match="lawn"):
        load_mask_map("x", path=bad)
    bad.write_text("x:\n  map: {road: [1], sky: [1]}\n")
    with pytest.raises(ConfigError, match="mapped twice"):
        load_mask_map("x", path=bad)


def test_coco_spec_with_cityscapes_layout(tmp_path: Path) -> None:
    # leftImg8bit/val/city/<id>_leftImg8bit.png  +  gtFine/val/city/<id>_gtFine_labelIds.png
    (tmp_path / "leftImg8bit" / "val" / "city").mkdir(parents=True)
    (tmp_path / "gtFine" / "val" / "city").mkdir(parents=True)
    stem = "city_000000_000019"
    cv2.imwrite(str(tmp_path / "leftImg8bit" / "val" / "city" / f"{stem}_leftImg8bit.png"), np.zeros((8, 12, 3), np.uint8))
    mask = np.full((8, 12), 7, np.uint8)
    mask[:2] = 23
    mask[5:, 4:8] = 26
    cv2.imwrite(str(tmp_path / "gtFine" / "val" / "city" / f"{stem}_gtFine_labelIds.png"), mask)
    ann = {"images": [{"id": 1, "file_name": f"val/city/{stem}_leftImg8bit.png"}],
           "categories": [{"id": 26, "name": "car"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 26, "bbox": [4, 5, 4, 3]}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    src = open_source(f"coco:{tmp_path / 'leftImg8bit'}:{tmp_path / 'ann.json'}:{tmp_path / 'gtFine'}:cityscapes_labelids",
                      cache_dir=tmp_path, labelled=True)
    s = src[0]
    assert s.seg[0, 0] == L.seg_index("sky") and s.seg[4, 0] == L.seg_index("road") and s.seg[6, 5] == L.seg_index("vehicle")
    assert s.labels.tolist() == [L.det_index("car")]
