"""Training samples, the torch-facing dataset, batching, and episode-level splits.

A *source* (``sources.py``) maps an item index to a :class:`Sample` and knows each item's episode. The
dataset wraps a source with a transform and a per-item random generator seeded by (seed, epoch, item), so
augmentation is reproducible whatever the number of DataLoader workers. Splits are made by episode, never by
frame: consecutive frames of one drive are near-duplicates and would leak between train and test.

torch is imported only inside :func:`collate`; this module stays importable without it (the perception
node reuses ``augment.letterbox``, which needs :class:`Sample`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import IGNORE

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset
else:
    _T = TypeVar("_T")

    class Dataset(Generic[_T]):
        """Runtime stand-in for ``torch.utils.data.Dataset``: DataLoader only needs ``__getitem__``/``__len__``
        of a map-style dataset (it type-checks against ``IterableDataset`` only), so torch stays un-imported."""




@dataclass
class Sample:
    """One training frame (the model contract). Arrays are coerced to the contract dtypes on construction."""

    image: np.ndarray                 # H×W×3 uint8 BGR
    boxes: np.ndarray                 # N×4 float32 xyxy, pixels of `image`
    labels: np.ndarray                # N int64 detection class index
    seg: np.ndarray                   # H×W uint8 segmentation label, 255 = ignore
    episode: str = ""                 # provenance, for splits and error messages
    frame: int = -1
    # Partial labels (real datasets). None = fully annotated in the stack's label space.
    det_classes: np.ndarray | None = None   # C bool: classes whose boxes this frame annotates (all False: no boxes
    #                                         at all, the detection loss skips the frame)
    ignore_boxes: np.ndarray | None = None  # M×4 float32 xyxy regions neither positive nor negative (KITTI DontCare)
    seg_sets: np.ndarray | None = None      # S×S bool: label v may truly be any class c with seg_sets[v, c]
    #                                         (CamVid "road" includes lane markings and crosswalks)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int64).reshape(-1)
        if self.ignore_boxes is not None:
            self.ignore_boxes = np.asarray(self.ignore_boxes, np.float32).reshape(-1, 4)
        im, seg = self.image, self.seg
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"Sample {self.episode}:{self.frame}: image must be H×W×3 uint8, got {im.dtype} {im.shape}")
        if seg.dtype != np.uint8 or seg.shape != im.shape[:2]:
            raise ValueError(f"Sample {self.episode}:{self.frame}: seg must be uint8 {im.shape[:2]}, got {seg.dtype} {seg.shape}")
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"Sample {self.episode}:{self.frame}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    @classmethod
    def unlabelled(cls, image: np.ndarray, episode: str = "", frame: int = -1) -> Sample:
        """A frame without labels: no boxes, every seg pixel ignored."""
        return cls(image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                   np.full(image.shape[:2], IGNORE, np.uint8), episode, frame)


class Source(Protocol):
    """What the sources in ``sources.py`` provide: indexable Samples plus each item's episode id."""

    name: str
    labelled: bool                    # False: boxes empty and seg all-ignore (MIM pretraining pools)

    @property
    def episodes(self) -> Sequence[str]: ...          # episode id of item i, len == len(source)

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...


Transform = Callable[[Sample, np.random.Generator], Sample]


class SampleDataset(Dataset[Sample]):
    """Map-style dataset over ``source[indices]`` with ``transform(sample, rng)``.

    The generator of item ``i`` is seeded by (seed, epoch, source index): the same frame gets the same
    augmentation in a given epoch regardless of subset, worker count or order. Call :meth:`set_epoch` per epoch.
    """

    def __init__(self, source: Source, transform: Transform | None, seed: int,
                 indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ConfigError(f"indices out of range for source {source.name} of {len(source)} items")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def subset(self, indices: Sequence[int] | np.ndarray) -> SampleDataset:
        """Same source/transform/seed over other source indices (e.g. a split)."""
        return SampleDataset(self.source, self.transform, self.seed, indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        idx = int(self.indices[i])
        sample = self.source[idx]
        if self.transform is None:
            return sample
        return self.transform(sample, np.random.default_rng([self.seed, self.epoch, idx]))


def collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
    """Samples of one size -> (images uint8 B×3×H×W BGR, targets [{"boxes" float32 N×4, "labels" int64 N}], seg uint8 B×H×W)."""
    import torch  # noqa: PLC0415 -- data sources work without torch (model extra); only batching for training needs it

    if not samples:
        raise ValueError("collate: empty batch")
    shapes = {s.image.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"collate: samples differ in size {sorted(shapes)}; resize/letterbox them in the transform")
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
    seg = torch.from_numpy(np.stack([s.seg for s in samples]))
    targets = []
    for s in samples:
        t = {"boxes": torch.from_numpy(np.ascontiguousarray(s.boxes, np.float32)),
             "labels": torch.from_numpy(np.ascontiguousarray(s.labels, np.int64))}
        # optional keys only where a source has partial labels (the loss treats a missing key as "fully annotated")
        if s.det_classes is not None:
            t["det_classes"] = torch.from_numpy(np.asarray(s.det_classes, bool))
        if s.ignore_boxes is not None and len(s.ignore_boxes):
            t["ignore_boxes"] = torch.from_numpy(np.ascontiguousarray(s.ignore_boxes, np.float32))
        if s.seg_sets is not None:
            t["seg_sets"] = torch.from_numpy(np.asarray(s.seg_sets, bool))
        targets.append(t)
    return images, targets, seg


class Split(NamedTuple):
    """Source item indices of each part (sorted)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _rank(key: str, seed: int) -> str:
    # A hash, not Python's salted hash(): the order must be the same in every process and run.
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split_by_episode(episodes: Sequence[str], fractions: tuple[float, float, float], seed: int) -> Split:
    """Assign whole episodes to train/val/test in the given proportions (of episodes), deterministically.

    ``episodes`` is the per-item episode id (``source.episodes``). Episodes are ordered by a seeded hash of
    their id and cut by count; every part with a positive fraction gets at least one episode.
    """
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = sorted(set(episodes), key=lambda e: _rank(e, seed))
    n = len(ids)
    need = int((f > 0).sum())
    if n < need:
        raise ConfigError(f"{n} episode(s) cannot be split into {need} non-empty parts {fractions}")
    lo_val, lo_test = int(f[1] > 0), int(f[2] > 0)
    n_val, n_test = max(round(f[1] * n), lo_val), max(round(f[2] * n), lo_test)
    while n - n_val - n_test < int(f[0] > 0):   # rounding up val/test left train short: give back one at a time
        if n_val > lo_val and (n_val >= n_test or n_test == lo_test):
            n_val -= 1
        else:
            n_test -= 1
    n_train = n - n_val - n_test
    part = {e: 0 if k < n_train else 1 if k < n_train + n_val else 2 for k, e in enumerate(ids)}
    which = np.array([part[e] for e in episodes], np.int64)
    return Split(*(np.flatnonzero(which == p) for p in range(3)))


def label_subset(dataset: SampleDataset, fraction: float, seed: int) -> SampleDataset:
    """A fixed, seeded ``fraction`` of ``dataset``'s labelled frames (at least one), spread over its episodes.

    Frames are shuffled within each episode and then interleaved across (shuffled) episodes, and the first
    ``round(fraction × N)`` are kept: 1 % holds frames from as many episodes as possible, and with the same
    seed the subsets are nested (1 % ⊂ 10 % ⊂ 100 %), which keeps label-fraction runs comparable. Several sources
    (``ConcatSource``) are sampled each on its own: a source of many one-frame episodes (KITTI) would otherwise fill
    a small fraction on its own and leave out a source of few long ones (CamVid's four sequences).
    """
    if not dataset.source.labelled:
        raise ConfigError(f"label_subset: source {dataset.source.name} has no labels")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    eps = dataset.source.episodes
    source_of = getattr(dataset.source, "source_index", None)
    strata: dict[int, list[int]] = {}
    for idx in dataset.indices.tolist():
        strata.setdefault(source_of(idx) if source_of is not None else 0, []).append(idx)
    chosen: list[int] = []
    for key in sorted(strata):
        groups: dict[str, list[int]] = {}
        for idx in strata[key]:
            groups.setdefault(eps[idx], []).append(idx)
        lists = [list(rng.permutation(groups[e])) for e in sorted(groups)]
        lists = [lists[k] for k in rng.permutation(len(lists))]
        interleaved = [lst[r] for r in range(max(map(len, lists), default=0)) for lst in lists if r < len(lst)]
        chosen += interleaved[:max(1, round(fraction * len(interleaved))) if interleaved else 0]
    return dataset.subset(np.sort(np.asarray(chosen, np.int64)))
