"""Real driving data as Sources: CamVid folders, KITTI ``label_2``, video files, and boxes attached from a COCO JSON.

Partial labels are explicit (``Sample.det_classes``, ``ignore_boxes``, ``seg_sets``): CamVid gives masks but no
boxes, KITTI boxes but no masks and no bus or traffic-cone class, pseudo-labels boxes of the teacher's classes only.
Every item has a stable ``key`` (its file relative to the source root, or ``VIDEO#frame``) by which pseudo-labels
are attached (``mim-perception pseudo-label`` writes one COCO image per key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mim_perception.core import imageconv
from mim_perception.core.errors import BadImageError, ConfigError, DatasetError
from mim_perception.core.labels import IGNORE, LabelSpace
from mim_perception.training.data import Sample
from mim_perception.training.label_maps import load_mask_map
from mim_perception.training.sources import read_image, read_mask

# KITTI label_2 types -> the stack's detection classes. Van is counted as car (the KITTI-benchmark convention the
# evaluation follows); Tram, Misc and DontCare become ignore regions, Person_sitting a pedestrian.
KITTI_CLASSES = {"Car": "car", "Van": "car", "Truck": "truck", "Pedestrian": "pedestrian", "Person_sitting": "pedestrian",
                 "Cyclist": "cyclist"}
KITTI_IGNORE = ("DontCare", "Misc", "Tram")
CAMVID_SPLITS = ("train", "val", "test")


def parse_range(text: str) -> tuple[int, int]:
    """``"0-59"`` -> (0, 59) inclusive; ConfigError otherwise."""
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise ConfigError(f"frame range must be FIRST-LAST, got {text!r}") from None
    if lo < 0 or hi < lo:
        raise ConfigError(f"frame range {text!r} is empty or negative")
    return lo, hi


class _Indexed:
    """Shared plumbing: per-item episode ids and keys."""

    name: str
    _episodes: list[str]
    keys: list[str]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self.keys)


class CamVidSource(_Indexed):
    """``ROOT/SPLIT/images/*.jpg|png`` + ``ROOT/SPLIT/labels/<stem>.png`` (CamVid 11-class ids, mapped through the
    ``camvid`` table of config/label_maps.yaml). Episode = the CamVid sequence (file name prefix, e.g. 0016E5)."""

    labelled = True

    def __init__(self, root: Path | str, split: str, labels: LabelSpace | None = None) -> None:
        if split not in CAMVID_SPLITS:
            raise ConfigError(f"CamVid split must be one of {CAMVID_SPLITS}, got {split!r}")
        self.root = Path(root)
        d = self.root / split
        self._images = sorted(p for p in (d / "images").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self._images:
            raise DatasetError(f"no CamVid images under {d / 'images'}")
        self.name = f"camvid:{split}"
        self.map = load_mask_map("camvid", labels)
        self.num_det = len((labels or LabelSpace.load()).detection)
        self.keys = [str(p.relative_to(self.root)) for p in self._images]
        self._episodes = [p.stem.split("_")[0] for p in self._images]

    def __getitem__(self, i: int) -> Sample:
        p = self._images[i]
        image = read_image(p)
        seg = self.map.apply(read_mask(p.parent.parent / "labels" / f"{p.stem}.png", image.shape))
        return Sample(image, np.zeros((0, 4)), np.zeros(0), seg, self._episodes[i], i,
                      det_classes=np.zeros(self.num_det, bool), seg_sets=self.map.sets)


class KittiSource(_Indexed):
    """KITTI object ``ROOT/image_2/NNNNNN.{png,jpg}`` + ``ROOT/label_2/NNNNNN.txt``, frames ``first..last``.

    Boxes of KITTI_CLASSES; DontCare / Misc / Tram become ignore regions. Frames annotate every class but bus and
    traffic_cone (KITTI has neither), so those two are never trained as negatives here. Each frame is its own episode
    (the object benchmark's frames are independent)."""

    labelled = True

    def __init__(self, root: Path | str, frames: tuple[int, int] | None = None, labels: LabelSpace | None = None) -> None:
        self.root = Path(root)
        space = labels or LabelSpace.load()
        files = sorted(p for p in (self.root / "image_2").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if frames is not None:
            files = [p for p in files if p.stem.isdigit() and frames[0] <= int(p.stem) <= frames[1]]
        if not files:
            raise DatasetError(f"no KITTI images under {self.root / 'image_2'} (frames {frames})")
        self.name = "kitti" if frames is None else f"kitti:{frames[0]}-{frames[1]}"
        self._images = files
        self.keys = [str(p.relative_to(self.root)) for p in files]
        self._episodes = [p.stem for p in files]
        self._cls = {k: space.det_index(v) for k, v in KITTI_CLASSES.items()}
        self.det_classes = np.zeros(len(space.detection), bool)
        self.det_classes[list(set(self._cls.values()))] = True
        self._labels = [parse_kitti_label(self.root / "label_2" / f"{p.stem}.txt") for p in files]

    def rows(self, i: int) -> list[dict[str, Any]]:
        """The parsed label_2 rows of item ``i`` (type, truncated, occluded, box)."""
        return self._labels[i]

    def annotation(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes N×4, labels N, ignore regions M×4) of item ``i`` in image pixels."""
        rows = self._labels[i]
        keep = [r for r in rows if r["type"] in self._cls]
        boxes = np.array([r["box"] for r in keep], np.float32).reshape(-1, 4)
        labels = np.array([self._cls[r["type"]] for r in keep], np.int64)
        ignore = np.array([r["box"] for r in rows if r["type"] in KITTI_IGNORE], np.float32).reshape(-1, 4)
        return boxes, labels, ignore

    def __getitem__(self, i: int) -> Sample:
        image = read_image(self._images[i])
        boxes, labels, ignore = self.annotation(i)
        h, w = image.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h])
        return Sample(image, boxes, labels, np.full((h, w), IGNORE, np.uint8), self._episodes[i], i,
                      det_classes=self.det_classes, ignore_boxes=ignore)


def parse_kitti_label(path: Path) -> list[dict[str, Any]]:
    """KITTI label_2 rows -> [{"type", "truncated", "occluded", "box": [x0, y0, x1, y1]}]; DatasetError if malformed."""
    rows = []
    try:
        text = path.read_text()
    except OSError as e:
        raise DatasetError(f"KITTI label {path} is unreadable ({e})") from e
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if not f:
            continue
        try:
            if len(f) < 8:
                raise ValueError(f"{len(f)} fields")
            box = [float(v) for v in f[4:8]]
            rows.append({"type": f[0], "truncated": float(f[1]), "occluded": int(float(f[2])), "box": box})
        except ValueError as e:
            raise DatasetError(f"{path}:{n}: not a KITTI label_2 row ({e})") from e
    return rows


class VideoSource(_Indexed):
    """Every ``stride``-th frame of a video file (at most ``max_frames``), unlabelled; the video is one episode.
    Frames are decoded once and kept JPEG-encoded in memory (quality 95), like ``BagSource``."""

    labelled = False

    def __init__(self, path: Path | str, stride: int = 1, max_frames: int | None = None) -> None:
        if stride < 1:
            raise ConfigError(f"video stride must be >= 1, got {stride}")
        self.path = Path(path)
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DatasetError(f"cannot open video {self.path}")
        self._frames: list[bytes] = []
        self.keys = []
        k = 0
        try:
            while max_frames is None or len(self._frames) < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                if k % stride == 0:
                    self._frames.append(imageconv.encode_compressed(frame, "jpeg", 95))
                    self.keys.append(f"{self.path.name}#{k:06d}")
                k += 1
        finally:
            cap.release()
        if not self._frames:
            raise DatasetError(f"video {self.path} has no decodable frames")
        self.name = f"video:{self.path.stem}"
        self._episodes = [self.path.stem] * len(self._frames)

    def __getitem__(self, i: int) -> Sample:
        try:
            image = imageconv.decode_compressed("jpeg", self._frames[i])
        except BadImageError as e:
            raise BadImageError(f"{self.name} frame {i}: {e}") from e
        return Sample.unlabelled(image, self._episodes[i], i)


class WithBoxes:
    """A source with boxes attached from a COCO JSON whose ``images[].file_name`` are the source's keys (what
    ``mim-perception pseudo-label`` writes). Frames keep their own labels (e.g. CamVid masks, KITTI boxes); boxes
    are added for the JSON's categories, which become annotated classes of every frame the JSON lists."""

    def __init__(self, source: Any, coco_json: Path | str, labels: LabelSpace | None = None,
                 doc: dict[str, Any] | None = None) -> None:
        space = labels or LabelSpace.load()
        path = Path(coco_json)
        try:
            doc = doc if doc is not None else json.loads(path.read_text())   # ``doc``: the file, already read
            cats = {int(c["id"]): space.det_index(str(c["name"])) for c in doc["categories"]}
            ids = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
            anns = doc.get("annotations", [])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}: not a COCO detection file ({e})") from e
        self.source, self.name, self.labelled = source, f"{source.name}+{path.stem}", True
        index = {k: i for i, k in enumerate(source.keys)}
        unknown = sorted(set(ids.values()) - set(index))
        if unknown:
            raise DatasetError(f"{path}: {len(unknown)} images are not items of {source.name} (e.g. {unknown[0]!r})")
        self.covered = np.zeros(len(source), bool)
        self.covered[[index[k] for k in ids.values()]] = True
        self.classes = np.zeros(len(space.detection), bool)
        self.classes[list(cats.values())] = True
        per: dict[int, list[list[float]]] = {}
        crowd: dict[int, list[list[float]]] = {}
        for a in anns:
            x, y, w, h = (float(v) for v in a["bbox"])
            item = index[ids[int(a["image_id"])]]
            if a.get("iscrowd", 0):    # uncertain: an ignore region
                crowd.setdefault(item, []).append([x, y, x + w, y + h])
            else:
                per.setdefault(item, []).append([x, y, x + w, y + h, cats[int(a["category_id"])]])
        self._boxes = {i: np.asarray(v, np.float32).reshape(-1, 5) for i, v in per.items()}
        self._crowd = {i: np.asarray(v, np.float32).reshape(-1, 4) for i, v in crowd.items()}

    @property
    def episodes(self) -> Sequence[str]:
        return self.source.episodes

    @property
    def keys(self) -> list[str]:
        return list(self.source.keys)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Sample:
        s = self.source[i]
        if not self.covered[i]:
            return s
        extra = self._boxes.get(i, np.zeros((0, 5), np.float32))
        own = s.det_classes if s.det_classes is not None else np.zeros_like(self.classes)
        # where both label a class (GT and teacher), the GT wins: the teacher's boxes of that class are dropped
        add = extra[~own[extra[:, 4].astype(int)]] if len(extra) else extra
        ignore = [r for r in (s.ignore_boxes, self._crowd.get(i)) if r is not None]
        return Sample(s.image, np.concatenate([s.boxes, add[:, :4]]), np.concatenate([s.labels, add[:, 4].astype(np.int64)]),
                      s.seg, s.episode, s.frame, det_classes=own | self.classes,
                      ignore_boxes=np.concatenate(ignore) if ignore else None, seg_sets=s.seg_sets)


def open_real_source(kind: str, parts: list[str]) -> Any:
    """``camvid:ROOT:SPLIT`` · ``kitti:ROOT[:FIRST-LAST]`` · ``video:FILE[:STRIDE]`` · ``boxes:JSON`` (the JSON's
    ``info.source`` spec, with its boxes attached)."""
    if kind == "camvid":
        return CamVidSource(parts[0], parts[1] if len(parts) > 1 else "train")
    if kind == "kitti":
        return KittiSource(parts[0], parse_range(parts[1]) if len(parts) > 1 else None)
    if kind == "video":
        return VideoSource(parts[0], int(parts[1]) if len(parts) > 1 else 1)
    if kind == "boxes":
        path = Path(":".join(parts))
        try:
            doc = json.loads(path.read_text())
            spec = doc["info"]["source"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}: no info.source spec (write it with `mim-perception pseudo-label`): {e}") from e
        k, _, rest = spec.partition(":")
        return WithBoxes(open_real_source(k, rest.split(":")), path, doc=doc)
    raise ConfigError(f"unknown real data kind {kind!r}")
