"""`mim-perception finetune`: detection + segmentation training from a MIM-pretrained or a random backbone.

    mim-perception finetune --data data/labelled --init runs/pre/mim.pt --out runs/ft [--set finetune.label_fraction=0.1]

Validation: ``--val-data`` or, by default, 10 % of the training data's episodes (never frames of a training
episode). Every ``eval_every`` epochs: COCO mAP/AP50 per class and per-class IoU/mIoU on the (EMA) model; the
best checkpoint by (AP50 + mIoU) / 2 is kept as ``OUT/best.pt`` with ``OUT/best.json`` (config + metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.nets import build_model
from mim_perception.nets.model import DetSegBase
from mim_perception.nets.postprocess import decode
from mim_perception.training import distributed as dist
from mim_perception.training.augment import AugmentConfig, eval_transform, train_transform
from mim_perception.training.checkpoint import save_checkpoint
from mim_perception.training.common import (
    Ema,
    FinetuneConfig,
    TrainConfig,
    add_common_args,
    cosine_lr,
    open_sources,
    param_groups,
    parse_overrides,
    seed_everything,
    set_lr,
)
from mim_perception.training.data import SampleDataset, collate, label_subset, split_by_episode
from mim_perception.training.init import apply_init
from mim_perception.training.metrics import SegMeter, credit_label_sets, evaluate_detections


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader[Any], cfg: FinetuneConfig, labels: LabelSpace,
             device: torch.device) -> dict[str, Any]:
    """COCO box metrics + segmentation IoU over ``loader`` (letterboxed frames; boxes compared in model pixels)."""
    model.eval()
    preds, gts = [], []
    meter = SegMeter(len(labels.segmentation), labels.segmentation)
    for images, targets, seg in loader:
        out = model(images.to(device))
        for (b, s, c), t in zip(decode(out, cfg.eval_score_threshold, 1000, cfg.eval_nms_iou, cfg.eval_max_detections),
                                targets, strict=True):
            preds.append((b.cpu().numpy(), s.cpu().numpy(), c.cpu().numpy()))
            gts.append((t["boxes"].numpy(), t["labels"].numpy()))
        up = nn.functional.interpolate(out["seg"], size=seg.shape[-2:], mode="bilinear", align_corners=False)
        if cfg.seg_exclude:   # as the exported model: classes no label shows are never predicted
            up[:, [labels.seg_index(c) for c in cfg.seg_exclude]] = float("-inf")
        pred, target = up.argmax(1).cpu().numpy(), seg.numpy()
        for i, tg in enumerate(targets):   # credited as evaluate-real scores it (a road pixel called lane_marking is road)
            pred[i] = credit_label_sets(pred[i], target[i], tg["seg_sets"].numpy() if "seg_sets" in tg else None)
        meter.update(pred, target)
    det = evaluate_detections(preds, gts, labels.detection, max_dets=cfg.eval_max_detections)
    return {**det, **{k: v for k, v in meter.compute().items()}, "frames": len(preds)}


def _score(m: dict[str, Any]) -> float:
    vals = [v for v in (m.get("AP50"), m.get("mIoU")) if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else -1.0


def _loaders(specs: list[str], val_specs: list[str] | None, train: TrainConfig, cfg: FinetuneConfig, aug: AugmentConfig,
             cache_dir: Path, d: dist.Dist, micro: int) -> tuple[SampleDataset, DataLoader[Any], DataLoader[Any], Any]:
    src = open_sources(specs, cache_dir=cache_dir, labelled=True)
    if val_specs:
        val_src = open_sources(val_specs, cache_dir=cache_dir, labelled=True)
        train_idx, val_idx = np.arange(len(src)), np.arange(len(val_src))
    else:
        split = split_by_episode(src.episodes, (0.9, 0.1, 0.0), train.seed)
        val_src, train_idx, val_idx = src, split.train, split.val
    train_ds = label_subset(SampleDataset(src, train_transform(aug), train.seed, train_idx), cfg.label_fraction, train.seed)
    val_ds = SampleDataset(val_src, eval_transform((aug.height, aug.width)), train.seed, val_idx)
    g = torch.Generator().manual_seed(train.seed)
    batch = min(micro, len(train_ds) // d.world)
    if batch < 1:
        raise ConfigError(f"{len(train_ds)} training frames cannot be shared by {d.world} processes")
    samp = dist.sampler(train_ds, d, train.seed)
    loader = DataLoader(train_ds, batch_size=batch, shuffle=samp is None, sampler=samp, drop_last=True,
                        num_workers=train.workers, collate_fn=collate, generator=g, persistent_workers=train.workers > 0)
    val_loader = DataLoader(val_ds, batch_size=train.batch_size, num_workers=train.workers, collate_fn=collate)
    return train_ds, loader, val_loader, samp


def finetune(specs: list[str], out: Path, overrides: dict[str, Any], *, init: list[str] | None = None,
             val_specs: list[str] | None = None, params_file: str | None = None,
             cache_dir: Path = Path("build/data_cache")) -> dict[str, Any]:
    d = dist.setup()
    try:
        return _finetune(specs, out, overrides, init, val_specs, params_file, cache_dir, d)
    finally:
        dist.teardown(d)


def _optimiser(net: DetSegBase, cfg: FinetuneConfig, labels: LabelSpace) -> tuple[torch.optim.Optimizer, tuple[str, ...]]:
    """AdamW with the per-part lr scales; a part at scale 0 is frozen outright (no gradients; its batch-norm
    statistics are kept by putting it in eval mode each epoch: the returned prefixes). Also applies seg_exclude."""
    if cfg.seg_exclude:
        net.loss_cfg = replace(net.loss_cfg, seg_exclude=tuple(labels.seg_index(c) for c in cfg.seg_exclude))
    scales = {"backbone.": cfg.backbone_lr_scale, "neck.": cfg.detector_lr_scale, "det_head.": cfg.detector_lr_scale}
    frozen = tuple(prefix for prefix, s in scales.items() if s == 0)
    for name, p in net.named_parameters():
        if name.startswith(frozen):
            p.requires_grad_(False)
    return torch.optim.AdamW(param_groups(net, cfg.weight_decay, scales), lr=cfg.lr), frozen


def _finetune(specs: list[str], out: Path, overrides: dict[str, Any], init: list[str] | None, val_specs: list[str] | None,
              params_file: str | None, cache_dir: Path, d: dist.Dist) -> dict[str, Any]:
    train = load_config(TrainConfig, params_file, overrides, prefix="train.")
    cfg = load_config(FinetuneConfig, params_file, overrides, prefix="finetune.")
    aug = load_config(AugmentConfig, params_file, overrides, prefix="augment.")
    seed_everything(train.seed, train.threads)
    labels = LabelSpace.load()
    device = d.device()
    micro, accum = dist.micro_batching(train.batch_size, train.micro_batch, d.world)
    train_ds, loader, val_loader, samp = _loaders(specs, val_specs, train, cfg, aug, cache_dir, d, micro)

    net = build_model(train.arch, len(labels.detection), len(labels.segmentation)).to(device)
    init_log = apply_init(net, init or [], labels)   # MIM checkpoint: backbone only; ONNX / model: whole detector
    for line in init_log:
        if d.main:
            print(f"finetune: init {line}", flush=True)
    opt, frozen = _optimiser(net, cfg, labels)
    ema = Ema(net, cfg.ema_decay) if cfg.ema_decay > 0 and d.main else None   # only rank 0 evaluates and saves
    total = cfg.epochs * (len(loader) // accum)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    out.mkdir(parents=True, exist_ok=True)
    config = {"train": asdict(train), "finetune": asdict(cfg), "augment": asdict(aug), "data": specs,
              "val_data": val_specs or "10% of training episodes", "init": init_log or "scratch",
              "train_frames": len(train_ds), "val_frames": len(val_loader.dataset),  # type: ignore[arg-type]
              "processes": d.world, "micro_batch": micro, "accumulation": accum}
    step, epoch, history = dist.resume(out, net, opt, d, ema.model if ema is not None else None)
    model = dist.wrap(net, d)
    best: dict[str, Any] = json.loads((out / "best_state.json").read_text()) if step and (out / "best_state.json").exists() \
        else {}
    t0 = time.perf_counter()
    while step < total:
        train_ds.set_epoch(epoch)
        if samp is not None:
            samp.set_epoch(epoch)
        model.train()
        for prefix in frozen:
            net.get_submodule(prefix.rstrip(".")).eval()
        for group in dist.groups(loader, accum):
            if dist.stop_requested(out, d):
                total = step
            if step >= total:
                break
            set_lr(opt, cosine_lr(step, total, cfg.lr, cfg.warmup_fraction))
            opt.zero_grad(set_to_none=True)
            for i, (images, targets, seg) in enumerate(group):
                with dist.no_sync(model, i < accum - 1):
                    losses = net.loss(model(images.to(device)), [{k: v.to(device) for k, v in t.items()} for t in targets],
                                      seg.to(device))
                    (losses["total"] / accum).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            if ema is not None:
                ema.update(net)
            step += 1
            if step % train.log_every == 0:
                history.append({"step": step, **{k: dist.mean_across(float(v.detach()), d) for k, v in losses.items()}})
                if d.main:
                    print(f"finetune: step {step}/{total} " + " ".join(f"{k} {v:.3f}" for k, v in history[-1].items()
                                                                       if k != "step"), flush=True)
            dist.checkpoint(out, model, opt, d, step=step, epoch=epoch, history=history, every=train.checkpoint_every,
                            ema=ema.model if ema is not None else None)
        epoch += 1
        if epoch % cfg.eval_every == 0 or step >= total:
            best = _evaluate_and_keep(ema.model if ema is not None else net, val_loader, cfg, labels, device, out,
                                      config, history, best, epoch, step, d)
    checksums = dist.param_checksums(model, d)
    result = {"config": config, "best": best, "history": history, "steps": step,
              "seconds": round(time.perf_counter() - t0, 1), "device": str(device), "rank_param_checksums": checksums}
    if d.main:
        (out / "summary.json").write_text(json.dumps(result, indent=1, default=float))
    return result


def _evaluate_and_keep(evaluated: nn.Module, val_loader: DataLoader[Any], cfg: FinetuneConfig, labels: LabelSpace,
                       device: torch.device, out: Path, config: dict[str, Any], history: list[dict[str, Any]],
                       best: dict[str, Any], epoch: int, step: int, d: dist.Dist) -> dict[str, Any]:
    """Rank 0 evaluates and keeps the best checkpoint by (AP50 + mIoU) / 2; the other ranks wait."""
    if d.main:
        m = evaluate(evaluated, val_loader, cfg, labels, device)
        history.append({"step": step, "epoch": epoch, "AP50": m["AP50"], "mAP": m["mAP"], "mIoU": m["mIoU"]})
        print(f"finetune: epoch {epoch} val mAP {m['mAP']:.4f} AP50 {m['AP50']:.4f} mIoU {m['mIoU']:.4f}", flush=True)
        if _score(m) > _score(best.get("metrics", {})):
            best = {"metrics": m, "epoch": epoch, "step": step}
            save_checkpoint(out / "best.pt", evaluated, config, {"metrics": m, "epoch": epoch, "arch": config["train"]["arch"]})
            (out / "best_state.json").write_text(json.dumps(best, default=float))
    d.barrier()
    return best


def _main(args: argparse.Namespace) -> int:
    r = finetune(args.data, Path(args.out), parse_overrides(args.set), init=args.init, val_specs=args.val_data,
                 params_file=args.params_file, cache_dir=Path(args.cache_dir))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    m = r["best"].get("metrics", {})
    print(f"finetune: {r['steps']} steps in {r['seconds']} s; best epoch {r['best'].get('epoch')}: "
          f"mAP {m.get('mAP', float('nan')):.4f} AP50 {m.get('AP50', float('nan')):.4f} mIoU {m.get('mIoU', float('nan')):.4f}"
          f" -> {args.out}/best.pt")
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="train detection + segmentation (from a MIM checkpoint or scratch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--init", action="append", metavar="PATH",
                   help="MIM checkpoint (backbone), YOLOX ONNX or model checkpoint (whole detector); repeatable, "
                        "later ones override (training/init.py); default: random init")
    p.add_argument("--val-data", action="append", metavar="SPEC", help="validation data (default: 10%% of the episodes)")
    p.set_defaults(func=_main)
