"""Segmentation masks of public driving datasets (Cityscapes label ids / train ids, BDD100K) -> the stack's labels.

The tables live in ``config/label_maps.yaml`` (one place, documented there). A map is a 256-entry lookup table;
values it neither maps nor ignores become 255 (ignore) and are counted, never silently trained on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mim_perception.core.config import config_dir
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace

IGNORE = 255


@dataclass
class MaskMap:
    name: str
    lut: np.ndarray                      # 256 uint8: dataset value -> stack class (255 = ignore)
    known: np.ndarray                    # 256 bool: mapped or explicitly ignored
    image_suffix: str = ""
    mask_suffix: str = ""
    unknown: Counter[int] = field(default_factory=Counter)
    sets: np.ndarray | None = None       # S×S bool (Sample.seg_sets): mapped class v may be any c with sets[v, c]

    def mask_path(self, masks_dir: Path, image_file: str) -> Path:
        """``<stem>.png`` with the dataset's suffix swap (Cityscapes: _leftImg8bit -> _gtFine_labelIds)."""
        stem = Path(image_file).stem
        if self.image_suffix and stem.endswith(self.image_suffix):
            stem = stem[: -len(self.image_suffix)] + self.mask_suffix
        nested = masks_dir / Path(image_file).parent / f"{stem}.png"   # the images' folder layout, else flat
        return nested if nested.is_file() else masks_dir / f"{stem}.png"

    def apply(self, mask: np.ndarray) -> np.ndarray:
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise ConfigError(f"label map {self.name}: masks must be single-channel uint8, got {mask.dtype} {mask.shape}")
        bad = ~self.known[mask]
        if bad.any():
            values, counts = np.unique(mask[bad], return_counts=True)
            self.unknown.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
        return self.lut[mask]


def load_mask_map(name: str, labels: LabelSpace | None = None, path: Path | None = None) -> MaskMap:
    space = labels or LabelSpace.load()
    path = path or config_dir() / "label_maps.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    if name not in doc:
        raise ConfigError(f"unknown label map {name!r}; {path} has: {', '.join(sorted(doc))}")
    spec = doc[name]
    lut = np.full(256, IGNORE, np.uint8)
    known = np.zeros(256, bool)
    for cls, values in (spec.get("map") or {}).items():
        if cls not in space.segmentation:
            raise ConfigError(f"label map {name}: {cls!r} is not a segmentation class of config/labels.yaml")
        for v in values:
            if not 0 <= int(v) <= 255 or known[int(v)]:
                raise ConfigError(f"label map {name}: value {v} is out of 0..255 or mapped twice")
            lut[int(v)], known[int(v)] = space.segmentation.index(cls), True
    for v in spec.get("ignore") or []:
        known[int(v)] = True
    sets = None
    if spec.get("contains"):
        sets = np.eye(len(space.segmentation), dtype=bool)
        for cls, inside in spec["contains"].items():
            for c in [cls, *inside]:
                if c not in space.segmentation:
                    raise ConfigError(f"label map {name}: contains names {c!r}, not a segmentation class")
            for c in inside:
                sets[space.segmentation.index(cls), space.segmentation.index(c)] = True
    names = spec.get("mask_name") or {}
    return MaskMap(name, lut, known, str(names.get("image_suffix", "")), str(names.get("mask_suffix", "")), sets=sets)
