"""What pretraining and fine-tuning share: configs, data specs, schedule, EMA, seeding, CLI overrides."""

from __future__ import annotations

import argparse
import copy
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from torch import nn

from mim_perception.core.config import rng
from mim_perception.core.errors import ConfigError
from mim_perception.training import real_sources as R
from mim_perception.training import sources as S
from mim_perception.training.data import Source
from mim_perception.training.label_maps import load_mask_map
from mim_perception.training.sources import ConcatSource

PARAMS = "training.param.yaml"
# COCO / BDD100K / Cityscapes category names -> the stack's detection classes (config/labels.yaml).
COCO_CLASS_MAP = {"car": "car", "truck": "truck", "bus": "bus", "pedestrian": "pedestrian", "person": "pedestrian",
                  "cyclist": "cyclist", "bicycle": "cyclist", "rider": "cyclist", "motorcycle": "cyclist",
                  "traffic_cone": "traffic_cone", "traffic cone": "traffic_cone"}


@dataclass(frozen=True)
class TrainConfig:
    PARAM_FILE: ClassVar[str] = PARAMS
    arch: str
    batch_size: int = field(metadata=rng(1, 4096))
    micro_batch: int = field(metadata=rng(0, 4096))
    checkpoint_every: int = field(metadata=rng(0, None))
    workers: int = field(metadata=rng(0, 64))
    threads: int = field(metadata=rng(1, 256))
    seed: int
    log_every: int = field(metadata=rng(1, 100000))


@dataclass(frozen=True)
class PretrainConfig:
    PARAM_FILE: ClassVar[str] = PARAMS
    epochs: int = field(metadata=rng(1, 100000))
    max_steps: int = field(metadata=rng(0, None))
    lr: float = field(metadata=rng(0.0, 1.0))
    weight_decay: float = field(metadata=rng(0.0, 1.0))
    warmup_fraction: float = field(metadata=rng(0.0, 1.0))
    backbone_lr_scale: float = field(metadata=rng(0.0, 10.0))   # < 1: adapt a pretrained backbone gently
    mask_ratio: float = field(metadata=rng(0.05, 0.95))
    height: int = field(metadata=rng(32, 4096, unit="px"))
    width: int = field(metadata=rng(32, 4096, unit="px"))


@dataclass(frozen=True)
class FinetuneConfig:
    PARAM_FILE: ClassVar[str] = PARAMS
    epochs: int = field(metadata=rng(1, 100000))
    max_steps: int = field(metadata=rng(0, None))
    lr: float = field(metadata=rng(0.0, 1.0))
    backbone_lr_scale: float = field(metadata=rng(0.0, 10.0))
    detector_lr_scale: float = field(metadata=rng(0.0, 10.0))   # neck + detection head (started from a detector)
    weight_decay: float = field(metadata=rng(0.0, 1.0))
    warmup_fraction: float = field(metadata=rng(0.0, 1.0))
    ema_decay: float = field(metadata=rng(0.0, 0.99999))
    label_fraction: float = field(metadata=rng(0.0001, 1.0))
    eval_every: int = field(metadata=rng(1, 100000))
    eval_score_threshold: float = field(metadata=rng(0.0, 1.0))
    eval_nms_iou: float = field(metadata=rng(0.0, 1.0))
    eval_max_detections: int = field(metadata=rng(1, 10000))
    seg_exclude: list[str]                                   # seg classes kept out of the softmax (no label shows them)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set finetune.lr=0.001 augment.flip_p=0`` -> typed values (YAML scalars, never eval)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


REAL_KINDS = ("camvid", "kitti", "video", "boxes")


def open_source(spec: str, *, cache_dir: Path, labelled: bool) -> Source:
    """A data spec from the command line -> a Source.

    ``DIR`` with dataset.json (simgen) or MOT sequences · ``images:DIR`` · ``bag:PATH:TOPIC[:STRIDE]`` ·
    ``coco:IMAGES_DIR:JSON[:MASKS_DIR[:LABEL_MAP]]`` (LABEL_MAP: a table of config/label_maps.yaml, e.g.
    cityscapes_labelids) · ``synthetic:EPISODES:FRAMES[:SEED[:WIDTHxHEIGHT]]`` (generated and cached) ·
    real driving data: ``camvid:ROOT:SPLIT`` · ``kitti:ROOT[:FIRST-LAST]`` · ``video:FILE[:STRIDE]`` ·
    ``boxes:JSON`` (a `pseudo-label` output: its source with the boxes attached).
    """

    kind, _, rest = spec.partition(":") if ":" in spec and spec.split(":", 1)[0] in (
        "images", "bag", "coco", "synthetic", *REAL_KINDS) else ("dir", "", spec)
    parts = rest.split(":")
    if kind == "dir":
        return _open_dir(Path(rest), labelled)
    try:
        if kind in REAL_KINDS:
            return R.open_real_source(kind, parts)
        if kind == "synthetic":
            w, h = (int(v) for v in parts[3].split("x")) if len(parts) > 3 else (640, 384)
            return S.SyntheticSource(int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) > 2 else 0, w, h, 3,
                                     cache_dir=cache_dir, jpeg_quality=90, min_visibility=0.2, min_size=4.0)
        if kind == "images":
            return S.ImageFolderSource(rest)
        if kind == "bag":
            return S.BagSource(parts[0], parts[1], stride=int(parts[2]) if len(parts) > 2 else 1)

        return S.CocoSource(parts[0], parts[1], parts[2] if len(parts) > 2 else None, class_map=COCO_CLASS_MAP,
                            mask_map=load_mask_map(parts[3]) if len(parts) > 3 else None)
    except (IndexError, ValueError) as e:
        raise ConfigError(f"bad data spec {spec!r}: {e} (see `--help` for the forms)") from e


def _open_dir(root: Path, labelled: bool) -> Source:

    if (root / "episodes").is_dir():
        root = root / "episodes"
    if not labelled and not any(root.glob("**/gt/gt.txt")):
        return S.ImageFolderSource(root)
    return S.MotFolderSource(root, min_visibility=0.2, min_size=4.0)


def open_sources(specs: Sequence[str], *, cache_dir: Path, labelled: bool) -> Source:
    """Several data specs as one source; generated sources are prepared here, before DataLoader workers
    start (otherwise each worker would generate the same missing episode)."""

    srcs = [open_source(s, cache_dir=cache_dir, labelled=labelled) for s in specs]
    for s in srcs:
        prepare = getattr(s, "prepare", None)
        if prepare is not None:
            prepare()
    if labelled and not all(s.labelled for s in srcs):
        raise ConfigError(f"labelled data needed, but {[s.name for s in srcs if not s.labelled]} carry no labels")
    return srcs[0] if len(srcs) == 1 else ConcatSource(srcs)


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def cosine_lr(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    warm = max(1, round(total * warmup_fraction))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def param_groups(model: nn.Module, weight_decay: float, scales: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """No weight decay on norms/biases/GRN gains; per-prefix lr scales (e.g. {"backbone.": 0.5})."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((s for prefix, s in (scales or {}).items() if name.startswith(prefix)), 1.0)
        wd = 0.0 if p.ndim <= 1 or name.endswith(".bias") else weight_decay
        groups.setdefault((scale, wd), []).append(p)
    return [{"params": ps, "lr_scale": s, "weight_decay": wd} for (s, wd), ps in groups.items()]


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


class Ema:
    """Exponential moving average of a model's weights (evaluated and exported instead of the raw weights)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 200))   # ramp up: early averages would lag far behind
        for e, m in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m.detach(), alpha=1 - d)
            else:
                e.copy_(m)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", required=True, metavar="SPEC",
                   help="data: DIR (simgen/MOT) | images:DIR | bag:PATH:TOPIC[:STRIDE] | coco:IMAGES:JSON[:MASKS[:LABEL_MAP]] | "
                        "synthetic:EPISODES:FRAMES[:SEED[:WxH]]; repeatable")
    p.add_argument("--out", required=True, help="run directory (checkpoints, config, metrics, images)")
    p.add_argument("--params-file", help="training parameters overriding config/training.param.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one parameter, e.g. finetune.lr=0.001")
    p.add_argument("--cache-dir", default="build/data_cache", help="where generated/cached episodes live")
