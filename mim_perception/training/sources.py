"""Data sources yielding :class:`~mim_perception.training.data.Sample`: generated scenes and users' own data.

Every source is indexable, knows each item's episode (for splits by episode) and reads files lazily, so a
DataLoader worker only decodes what it serves. Malformed files raise typed errors naming the file.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mim_perception.bags.io import iter_messages, make_typestore, topic_types
from mim_perception.core import imageconv
from mim_perception.core.errors import BadImageError, BagError, ConfigError, DatasetError
from mim_perception.core.labels import LabelSpace
from mim_perception.sim import synthetic
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene
from mim_perception.training.data import Sample
from mim_perception.training.label_maps import MaskMap

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise BadImageError(f"cannot read image {path} (missing or not a decodable image)")
    return img


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise BadImageError(f"cannot read label mask {path}")
    if m.dtype != np.uint8 or m.shape != shape[:2]:
        raise DatasetError(f"label mask {path} must be {shape[1]}×{shape[0]} single-channel uint8, got {m.dtype} {m.shape}")
    return m


def _filter(boxes: np.ndarray, keep: np.ndarray, min_size: float) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return keep & (w >= max(min_size, 1e-3)) & (h >= max(min_size, 1e-3))


class SyntheticSource:
    """Procedural scenes (``sim.synthetic``): episode ``e`` is a drive with seed ``seed + e``.

    An episode renders ``frames_per_episode × stride`` frames and keeps every ``stride``-th (neighbouring
    frames are near-duplicates). Episodes are generated on first use and cached under ``cache_dir`` as
    JPEG + PNG + labels.json, keyed by the scene settings and a hash of the generator's source, so training
    runs share them and a changed generator never serves stale frames. Items are always read from the
    cache, so a sample is identical whether its episode was generated now or earlier. Boxes with visibility
    below ``min_visibility`` or a side below ``min_size`` pixels are dropped at load (the cache keeps them).
    """

    labelled = True

    # Positional order mirrors the scene settings it forwards (SceneConfig); the rest is keyword-only.
    def __init__(self, episodes: int, frames_per_episode: int, seed: int, width: int, height: int, stride: int, *,
                 cache_dir: Path | str, jpeg_quality: int, min_visibility: float = 0.0, min_size: float = 0.0) -> None:

        if episodes < 1 or frames_per_episode < 1 or stride < 1:
            raise ConfigError(f"SyntheticSource: episodes, frames_per_episode and stride must be >= 1, "
                              f"got {episodes}, {frames_per_episode}, {stride}")
        self.name = "synthetic"
        self.n_episodes, self.fpe, self.stride, self.seed = episodes, frames_per_episode, stride, seed
        self.min_visibility, self.min_size, self.quality = min_visibility, min_size, jpeg_quality
        self.base = SceneConfig(width=width, height=height, frames=frames_per_episode * stride, seed=seed)
        gen = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:10]
        settings = {k: v for k, v in asdict(self.base).items() if k != "seed"}
        key = hashlib.sha256(json.dumps([settings, stride, jpeg_quality, gen], sort_keys=True).encode()).hexdigest()[:12]
        self.root = Path(cache_dir) / f"synth-{width}x{height}-{key}"
        self._ready: set[int] = set()
        self._labels: dict[int, list[dict[str, Any]]] = {}
        self._episodes = [f"synth-{seed + k // frames_per_episode}" for k in range(len(self))]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return self.n_episodes * self.fpe

    def episode_dir(self, episode: int) -> Path:
        return self.root / f"seed{self.seed + episode}"

    def prepare(self) -> None:
        """Generate every missing episode now (otherwise each is generated on first access)."""
        for e in range(self.n_episodes):
            self._ensure(e)

    def _ensure(self, e: int) -> None:
        if e in self._ready:
            return
        final = self.episode_dir(e)
        if not (final / "labels.json").is_file():
            self._generate(e, final)
        self._ready.add(e)

    def _generate(self, e: int, final: Path) -> None:


        # Written to a private directory then renamed: concurrent workers may race, the first rename wins.
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            labels = []
            for f in SyntheticScene(replace(self.base, seed=self.seed + e)).frames():
                if f.index % self.stride:
                    continue
                k = f.index // self.stride
                cv2.imwrite(str(tmp / f"{k:06d}.jpg"), f.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                cv2.imwrite(str(tmp / f"{k:06d}.png"), f.seg)
                labels.append({"boxes": f.boxes.tolist(), "labels": f.labels.tolist(), "track_ids": f.track_ids.tolist(),
                               "visibility": [round(float(v), 4) for v in f.visibility]})
            (tmp / "labels.json").write_text(json.dumps(labels))
            try:
                tmp.rename(final)
            except OSError:
                if not (final / "labels.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _episode_labels(self, e: int) -> list[dict[str, Any]]:
        if e not in self._labels:
            path = self.episode_dir(e) / "labels.json"
            try:
                self._labels[e] = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                raise DatasetError(f"synthetic cache {path} is unreadable ({err}); delete {path.parent} to regenerate") from err
        return self._labels[e]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        e, k = divmod(i, self.fpe)
        self._ensure(e)
        d = self.episode_dir(e)
        image = read_image(d / f"{k:06d}.jpg")
        seg = read_mask(d / f"{k:06d}.png", image.shape)
        lab = self._episode_labels(e)[k]
        boxes = np.asarray(lab["boxes"], np.float32).reshape(-1, 4)
        keep = _filter(boxes, np.asarray(lab["visibility"], np.float32) >= self.min_visibility, self.min_size)
        return Sample(image, boxes[keep], np.asarray(lab["labels"], np.int64)[keep], seg, self._episodes[i], k)


class MotFolderSource:
    """MOTChallenge-layout sequences as written by ``mim-perception synth OUT --mot --images``.

    ``root`` is one sequence (``seqinfo.ini``, ``img1/``, ``gt/gt.txt``, optional ``seg/*.png``) or a folder
    of such sequences; each sequence is an episode. gt.txt rows: frame, id, x, y, w, h, conf, class + 1,
    visibility, with class in the stack's detection space; rows with conf 0 (MOT's "ignore") or an unknown
    class are dropped. Without ``seg/`` the mask is all-ignore.
    """

    labelled = True

    def __init__(self, root: Path | str, *, min_visibility: float = 0.0, min_size: float = 0.0,
                 labels: LabelSpace | None = None) -> None:
        root = Path(root)
        seqs = [root] if (root / "seqinfo.ini").is_file() else sorted(p.parent for p in root.glob("*/seqinfo.ini"))
        if not seqs:
            raise DatasetError(f"{root} holds no MOT sequence (no seqinfo.ini in it or its subfolders)")
        self.name = f"mot:{root.name}"
        n_cls = len((labels or LabelSpace.load()).detection)
        self.min_visibility, self.min_size = min_visibility, min_size
        self._items: list[tuple[Path, Path | None, np.ndarray]] = []
        self._episodes: list[str] = []
        for seq in seqs:
            self._add_sequence(seq, n_cls)

    def _add_sequence(self, seq: Path, n_cls: int) -> None:
        ini = seq / "seqinfo.ini"
        cp = configparser.ConfigParser()
        try:
            cp.read_string(ini.read_text())
            info = cp["Sequence"]
            name, im_dir, ext = info.get("name", seq.name), info["imDir"], info.get("imExt", ".jpg")
            length = int(info["seqLength"])
        except (OSError, configparser.Error, KeyError, ValueError) as e:
            raise DatasetError(f"{ini}: not a MOT seqinfo.ini ({e})") from e
        gt_path = seq / "gt" / "gt.txt"
        try:
            rows = np.loadtxt(gt_path, delimiter=",", ndmin=2, dtype=np.float64) if gt_path.stat().st_size else np.zeros((0, 9))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{gt_path}: cannot read MOT ground truth ({e})") from e
        if rows.shape[1] < 8:
            raise DatasetError(f"{gt_path}: expected >= 8 columns (frame,id,x,y,w,h,conf,class), got {rows.shape[1]}")
        vis = rows[:, 8] if rows.shape[1] > 8 else np.ones(len(rows))
        cls = rows[:, 7].astype(np.int64) - 1
        rows = rows[(rows[:, 6] != 0) & (cls >= 0) & (cls < n_cls) & (vis >= self.min_visibility)]
        frame_of = rows[:, 0].astype(np.int64)
        order = np.argsort(frame_of, kind="stable")
        rows, frame_of = rows[order], frame_of[order]
        bounds = np.searchsorted(frame_of, np.arange(1, length + 2))
        for n in range(1, length + 1):
            r = rows[bounds[n - 1]:bounds[n]]
            # per frame: x0, y0, x1, y1, label
            lab = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5], r[:, 7] - 1])
            seg = seq / "seg" / f"{n:06d}.png"
            self._items.append((seq / im_dir / f"{n:06d}{ext}", seg if seg.is_file() else None, lab))
            self._episodes.append(name)

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> Sample:
        img_path, seg_path, lab = self._items[i]
        image = read_image(img_path)
        h, w = image.shape[:2]
        seg = read_mask(seg_path, image.shape) if seg_path else np.full((h, w), 255, np.uint8)
        boxes = np.clip(lab[:, :4], 0, [w, h, w, h]).astype(np.float32)
        keep = _filter(boxes, np.ones(len(boxes), bool), self.min_size)
        return Sample(image, boxes[keep], lab[keep, 4].astype(np.int64), seg, self._episodes[i], int(img_path.stem))


class CocoSource:
    """Users' own labelled images in COCO JSON; ``class_map`` maps category names to the stack's detection classes.

    Categories not in ``class_map`` and crowd annotations are dropped and counted in ``dropped`` (by name).
    ``masks_dir`` optionally holds ``<image stem>.png`` label masks, in the stack's segmentation space or, with
    ``mask_map`` (training/label_maps.py), in a public dataset's ids (Cityscapes, BDD100K). Episode: the image's
    ``video_id`` when present, else its folder in ``file_name``, else the image.
    """

    labelled = True

    def __init__(self, images_dir: Path | str, coco_json: Path | str, masks_dir: Path | str | None = None, *,
                 class_map: Mapping[str, str], labels: LabelSpace | None = None, mask_map: MaskMap | None = None) -> None:
        space = labels or LabelSpace.load()
        self.mask_map = mask_map
        target = {src: space.det_index(dst) for src, dst in class_map.items()}   # ConfigError on an unknown class
        path = Path(coco_json)
        try:
            doc = json.loads(path.read_text())
            cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            images = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
            videos = {int(im["id"]): im.get("video_id") for im in doc["images"]}
            anns = doc.get("annotations", [])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}: not a COCO detection file ({e})") from e
        self.name = f"coco:{path.stem}"
        self.images_dir, self.masks_dir = Path(images_dir), Path(masks_dir) if masks_dir else None
        self.dropped: Counter[str] = Counter()
        per_image: dict[int, list[tuple[float, float, float, float, int]]] = {i: [] for i in images}
        for a in anns:
            try:
                img_id, cat = int(a["image_id"]), cats[int(a["category_id"])]
                x, y, w, h = (float(v) for v in a["bbox"])
            except (KeyError, ValueError, TypeError) as e:
                raise DatasetError(f"{path}: malformed annotation {a.get('id', '?')} ({e!r})") from e
            if img_id not in per_image:
                raise DatasetError(f"{path}: annotation {a.get('id', '?')} refers to unknown image {img_id}")
            if cat not in target or a.get("iscrowd", 0):
                self.dropped["crowd" if cat in target else cat] += 1
                continue
            per_image[img_id].append((x, y, x + w, y + h, target[cat]))
        self._ids = sorted(images)
        self._files = [images[i] for i in self._ids]
        self._anns = [np.asarray(per_image[i], np.float64).reshape(-1, 5) for i in self._ids]
        self._episodes = [_coco_episode(videos[i], f) for i, f in zip(self._ids, self._files, strict=True)]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> Sample:
        image = read_image(self.images_dir / self._files[i])
        h, w = image.shape[:2]
        if self.masks_dir is not None and self.mask_map is not None:
            seg = self.mask_map.apply(read_mask(self.mask_map.mask_path(self.masks_dir, self._files[i]), image.shape))
        elif self.masks_dir is not None:
            seg = read_mask(self.masks_dir / (Path(self._files[i]).stem + ".png"), image.shape)
        else:
            seg = np.full((h, w), 255, np.uint8)
        a = self._anns[i]
        boxes = np.clip(a[:, :4], 0, [w, h, w, h]).astype(np.float32)
        keep = _filter(boxes, np.ones(len(boxes), bool), 0.0)
        return Sample(image, boxes[keep], a[keep, 4].astype(np.int64), seg, self._episodes[i], self._ids[i],
                      seg_sets=self.mask_map.sets if self.mask_map is not None and self.masks_dir is not None else None)


def _coco_episode(video_id: object, file_name: str) -> str:
    parent = Path(file_name).parent
    if video_id is not None:
        return f"video{video_id}"
    return str(parent) if parent != Path() else Path(file_name).stem


class ImageFolderSource:
    """Unlabelled images under ``root`` (recursive, sorted); each folder is an episode. For MIM pretraining."""

    labelled = False

    def __init__(self, root: Path | str) -> None:
        root = Path(root)
        self.name = f"images:{root.name}"
        self._files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not self._files:
            raise DatasetError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
        self._episodes = [str(p.parent.relative_to(root)) for p in self._files]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, i: int) -> Sample:
        return Sample.unlabelled(read_image(self._files[i]), self._episodes[i], i)


class BagSource:
    """Unlabelled frames of one image topic of any rosbag2 (mcap or sqlite3); the bag is one episode.

    The bag is read once at construction (every ``stride``-th frame, at most ``max_frames``) and the frames
    are kept compressed in memory: CompressedImage payloads verbatim, raw Images re-encoded as JPEG
    (quality ``RAW_JPEG_QUALITY``; visually lossless, ~10× smaller than raw). Decoding happens per item.
    """

    labelled = False
    RAW_JPEG_QUALITY = 95
    TYPES = ("sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image")

    def __init__(self, bag_path: Path | str, image_topic: str, *, stride: int = 1, max_frames: int | None = None) -> None:

        if stride < 1:
            raise ConfigError(f"BagSource: stride must be >= 1, got {stride}")
        path = Path(bag_path)
        types = topic_types(path)
        if image_topic not in types:
            raise BagError(f"bag {path} has no topic {image_topic}; available: {', '.join(sorted(types)) or 'none'}")
        if types[image_topic] not in self.TYPES:
            raise BagError(f"bag {path}: topic {image_topic} is {types[image_topic]}, not one of {', '.join(self.TYPES)}")
        self.name = f"bag:{path.name}"
        store = make_typestore()
        self._frames: list[tuple[str, bytes]] = []
        for k, m in enumerate(iter_messages(path, [image_topic])):
            if k % stride:
                continue
            if max_frames is not None and len(self._frames) >= max_frames:
                break
            try:
                msg: Any = store.deserialize_cdr(m.data, m.msgtype)
            except Exception as e:  # rosbags raises assorted error types on corrupt CDR; re-raised typed
                raise BagError(f"bag {path}: message {k} on {image_topic} does not deserialise as {m.msgtype}: {e}") from e
            if m.msgtype.endswith("CompressedImage"):
                self._frames.append((str(msg.format), bytes(msg.data)))
            else:
                bgr = imageconv.to_bgr8(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
                self._frames.append(("jpeg", imageconv.encode_compressed(bgr, "jpeg", self.RAW_JPEG_QUALITY)))
        if not self._frames:
            raise BagError(f"bag {path}: no messages on {image_topic}")
        self._episodes = [path.name] * len(self._frames)

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i: int) -> Sample:
        fmt, data = self._frames[i]
        try:
            image = imageconv.decode_compressed(fmt, data)
        except BadImageError as e:
            raise BadImageError(f"{self.name} frame {i}: {e}") from e
        return Sample.unlabelled(image, self._episodes[i], i)


class ConcatSource:
    """Several sources as one; episode ids are prefixed with the source name so they cannot collide."""

    def __init__(self, sources: Sequence[Any]) -> None:
        if not sources:
            raise ConfigError("ConcatSource needs at least one source")
        self.sources = list(sources)
        self.name = "+".join(s.name for s in self.sources)
        self.labelled = all(s.labelled for s in self.sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])
        self._episodes = [f"{s.name}/{e}" for s in self.sources for e in s.episodes]

    @property
    def episodes(self) -> Sequence[str]:
        return self._episodes

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def source_index(self, i: int) -> int:
        """Which of ``sources`` item ``i`` comes from."""
        return int(np.searchsorted(self._offsets, i, side="right")) - 1

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = self.source_index(i)
        return self.sources[k][i - int(self._offsets[k])]
