"""`mim-perception pretrain`: masked image modeling (FCMAE/SparK-style) on unlabelled driving frames.

    mim-perception pretrain --data synthetic:200:50 --data images:~/drives --out runs/pre [--set pretrain.epochs=20]

Saves ``OUT/mim.pt`` (backbone + decoder: the decoder is kept for the OOD monitor), ``OUT/mim.json`` (run
config, loss curve), ``OUT/reconstruction.png`` (input | masked | reconstruction rows). AMP on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.nets import build_mim
from mim_perception.training import distributed as dist
from mim_perception.training.augment import Compose, RandomHFlip, RandomScaleCrop
from mim_perception.training.checkpoint import save_checkpoint
from mim_perception.training.common import (
    PretrainConfig,
    TrainConfig,
    add_common_args,
    cosine_lr,
    open_sources,
    param_groups,
    parse_overrides,
    seed_everything,
    set_lr,
)
from mim_perception.training.data import SampleDataset, collate
from mim_perception.training.init import apply_init


def _loader(specs: Sequence[str], cfg: PretrainConfig, train: TrainConfig, cache_dir: Path, d: dist.Dist,
            micro: int) -> tuple[DataLoader[Any], SampleDataset, Any]:
    size = (cfg.height, cfg.width)
    # Geometry only: colour statistics are what the model must learn to predict from context.
    tf = Compose((RandomScaleCrop(size, (0.8, 1.25), 0.0, 0.0), RandomHFlip(0.5)))
    data = SampleDataset(open_sources(specs, cache_dir=cache_dir, labelled=False), tf, train.seed)
    if len(data) < micro * d.world:
        raise ConfigError(f"pretraining data has {len(data)} frames, fewer than one batch ({micro * d.world})")
    g = torch.Generator().manual_seed(train.seed)
    samp = dist.sampler(data, d, train.seed)
    return DataLoader(data, batch_size=micro, shuffle=samp is None, sampler=samp, drop_last=True,
                      num_workers=train.workers, collate_fn=collate, generator=g,
                      persistent_workers=train.workers > 0), data, samp


def reconstruction_grid(mae: Any, images: torch.Tensor, path: Path, seed: int = 0) -> None:
    """Rows of input | visible patches | reconstruction, for a human look at what pretraining learned."""
    g = torch.Generator().manual_seed(seed)
    mae.eval()
    rec = mae.reconstruct(images, generator=g)
    g = torch.Generator().manual_seed(seed)   # same mask again for the "visible" column
    _, _, mask = mae(images, generator=g)
    vis = images * torch.nn.functional.interpolate(mask.float(), scale_factor=mae.patch).to(torch.uint8)
    rows = [np.concatenate([t[i].permute(1, 2, 0).numpy() for t in (images, vis, rec)], axis=1) for i in range(len(images))]
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))


def pretrain(specs: Sequence[str], out: Path, overrides: dict[str, Any], params_file: str | None = None,
             cache_dir: Path = Path("build/data_cache"), init: Sequence[str] = ()) -> dict[str, Any]:
    d = dist.setup()
    try:
        return _pretrain(specs, out, overrides, params_file, cache_dir, d, init)
    finally:
        dist.teardown(d)


def _pretrain(specs: Sequence[str], out: Path, overrides: dict[str, Any], params_file: str | None, cache_dir: Path,
              d: dist.Dist, init: Sequence[str]) -> dict[str, Any]:
    train = load_config(TrainConfig, params_file, overrides, prefix="train.")
    cfg = load_config(PretrainConfig, params_file, overrides, prefix="pretrain.")
    seed_everything(train.seed, train.threads)   # same init on every rank (DDP also broadcasts rank 0's)
    device = d.device()
    micro, accum = dist.micro_batching(train.batch_size, train.micro_batch, d.world)
    mae = build_mim(train.arch, mask_ratio=cfg.mask_ratio).to(device)
    # continued pretraining: start from published weights (domain adaptation) instead of random ones
    init_log = apply_init(mae, list(init), LabelSpace.load(), backbone_only=True)
    loader, data, samp = _loader(specs, cfg, train, cache_dir, d, micro)
    total = cfg.epochs * (len(loader) // accum)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(param_groups(mae, cfg.weight_decay, {"backbone.": cfg.backbone_lr_scale}), lr=cfg.lr,
                            betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    out.mkdir(parents=True, exist_ok=True)
    step, epoch, history = dist.resume(out, mae, opt, d)   # e.g. torchrun restarted the workers after one died
    model = dist.wrap(mae, d)
    t0, seen = time.perf_counter(), 0
    # masks differ per rank (different images anyway) and per resume point, reproducibly
    gen = torch.Generator(device=device).manual_seed(train.seed + 1000 * d.rank + step)
    preview: torch.Tensor | None = None
    while step < total:
        data.set_epoch(epoch)   # new augmentation draws each epoch
        if samp is not None:
            samp.set_epoch(epoch)   # and a new shard order
        epoch += 1
        for group in dist.groups(loader, accum):
            if dist.stop_requested(out, d):
                total = step
            if step >= total:
                break
            preview = group[0][0][:4].clone() if preview is None else preview
            set_lr(opt, cosine_lr(step, total, cfg.lr, cfg.warmup_fraction))
            opt.zero_grad(set_to_none=True)
            model.train()
            running = 0.0
            for i, (images, _, _) in enumerate(group):
                with dist.no_sync(model, i < accum - 1), torch.autocast(device.type, dtype=torch.float16,
                                                                         enabled=device.type == "cuda"):
                    loss, _, _ = model(images.to(device, non_blocking=True), generator=gen)   # raises if non-finite
                    scaler.scale(loss / accum).backward()
                running += float(loss.detach()) / accum
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += micro * accum * d.world
            if step % train.log_every == 0 or step == total:
                history.append(_log(step, total, dist.mean_across(running, d), seen / (time.perf_counter() - t0), d))
            dist.checkpoint(out, model, opt, d, step=step, epoch=epoch - 1, history=history, every=train.checkpoint_every)
    checksums = dist.param_checksums(model, d)
    config = {"train": asdict(train), "pretrain": asdict(cfg), "data": list(specs), "init": init_log, "processes": d.world,
              "micro_batch": micro, "accumulation": accum}
    result = {"history": history, "steps": step, "seconds": round(time.perf_counter() - t0, 1), "device": str(device),
              "rank_param_checksums": checksums}
    if d.main:
        save_checkpoint(out / "mim.pt", mae.cpu(), config, result)
        if preview is not None:
            reconstruction_grid(mae, preview, out / "reconstruction.png", train.seed)
    d.barrier()
    return {"config": config, **result}


def _log(step: int, total: int, loss: float, rate: float, d: dist.Dist) -> dict[str, float]:
    if d.main:
        print(f"pretrain: step {step}/{total} loss {loss:.4f} ({rate:.1f} img/s)", flush=True)
    return {"step": step, "loss": loss, "images_per_s": round(rate, 1)}


def _main(args: argparse.Namespace) -> int:
    rec = pretrain(args.data, Path(args.out), parse_overrides(args.set), args.params_file, Path(args.cache_dir),
                   args.init or ())
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    h = rec["history"]
    print(f"pretrain: {rec['steps']} steps in {rec['seconds']} s on {rec['device']}; "
          f"loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}; wrote {args.out}/mim.pt")
    (Path(args.out) / "summary.json").write_text(json.dumps(rec, indent=1))
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="masked image modeling on unlabelled frames", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--init", action="append", metavar="PATH",
                   help="start the backbone from a YOLOX ONNX or a checkpoint (training/init.py); default: random")
    p.set_defaults(func=_main)
