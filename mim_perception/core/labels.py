"""The stack's label space (config/labels.yaml): detection classes, segmentation classes and colours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from mim_perception.core.config import config_dir
from mim_perception.core.errors import ConfigError

IGNORE = 255


@dataclass(frozen=True)
class LabelSpace:
    detection: tuple[str, ...]
    segmentation: tuple[str, ...]
    colors_bgr: np.ndarray            # S×3 uint8
    det_to_seg: tuple[int, ...]       # detection class index -> segmentation class index

    @classmethod
    def load(cls, path: str | Path | None = None) -> LabelSpace:
        p = Path(path) if path else config_dir() / "labels.yaml"
        try:
            doc = yaml.safe_load(p.read_text())
            det = tuple(str(c) for c in doc["detection_classes"])
            seg_map = doc["segmentation_classes"]
            seg = tuple(str(k) for k in seg_map)
            colors = np.array([seg_map[k] for k in seg], np.uint8).reshape(len(seg), 3)
            d2s = tuple(seg.index(doc["detection_to_segmentation"][c]) for c in det)
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"label space {p}: {e}") from e
        if len(set(det)) != len(det) or len(seg) >= IGNORE:
            raise ConfigError(f"label space {p}: duplicate detection classes or too many segmentation classes")
        return cls(det, seg, colors, d2s)

    def det_index(self, name: str) -> int:
        try:
            return self.detection.index(name)
        except ValueError:
            raise ConfigError(f"unknown detection class {name!r}; known: {list(self.detection)}") from None

    def seg_index(self, name: str) -> int:
        try:
            return self.segmentation.index(name)
        except ValueError:
            raise ConfigError(f"unknown segmentation class {name!r}; known: {list(self.segmentation)}") from None

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """H×W label mask -> H×W×3 BGR (ignore -> black)."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: len(self.colors_bgr)] = self.colors_bgr
        return lut[mask]
