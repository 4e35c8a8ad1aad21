"""`mim-perception pretrain`: masked image modeling (FCMAE/SparK-style) on unlabelled driving frames.

    mim-perception pretrain --data synthetic:200:50 --data images:~/drives --out runs/pre [--set pretrain.epochs=20]

Saves ``OUT/mim.pt`` (backbone + decoder: the decoder is kept for the OOD monitor), ``OUT/mim.json`` (run
config, loss curve), ``OUT/reconstruction.png`` (input | masked | reconstruction rows). AMP on CUDA.
"""

from __future__ import annotations

import argparse
import json
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
from mim_perception.nets import build_mim
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


def _loader(specs: Sequence[str], cfg: PretrainConfig, train: TrainConfig, cache_dir: Path
            ) -> tuple[DataLoader[Any], SampleDataset]:
    size = (cfg.height, cfg.width)
    # Geometry only: colour statistics are what the model must learn to predict from context.
    tf = Compose((RandomScaleCrop(size, (0.8, 1.25), 0.0, 0.0), RandomHFlip(0.5)))
    data = SampleDataset(open_sources(specs, cache_dir=cache_dir, labelled=False), tf, train.seed)
    if len(data) < train.batch_size:
        raise ConfigError(f"pretraining data has {len(data)} frames, fewer than one batch ({train.batch_size})")
    g = torch.Generator().manual_seed(train.seed)
    return DataLoader(data, batch_size=train.batch_size, shuffle=True, drop_last=True, num_workers=train.workers,
                      collate_fn=collate, generator=g, persistent_workers=train.workers > 0), data


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
             cache_dir: Path = Path("build/data_cache")) -> dict[str, Any]:
    train = load_config(TrainConfig, params_file, overrides, prefix="train.")
    cfg = load_config(PretrainConfig, params_file, overrides, prefix="pretrain.")
    seed_everything(train.seed, train.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mae = build_mim(train.arch, mask_ratio=cfg.mask_ratio).to(device)
    loader, data = _loader(specs, cfg, train, cache_dir)
    total = cfg.epochs * len(loader)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(param_groups(mae, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, float]] = []
    step, t0, seen = 0, time.perf_counter(), 0
    gen = torch.Generator(device=device).manual_seed(train.seed)
    preview: torch.Tensor | None = None
    epoch = 0
    while step < total:
        data.set_epoch(epoch)   # new augmentation draws each epoch
        epoch += 1
        for images, _, _ in loader:
            if (out / "STOP").exists():   # graceful early stop: `touch OUT/STOP`
                total = step
            if step >= total:
                break
            if preview is None:
                preview = images[:4].clone()
            mae.train()
            set_lr(opt, cosine_lr(step, total, cfg.lr, cfg.warmup_fraction))
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss, _, _ = mae(images.to(device, non_blocking=True), generator=gen)   # raises on non-finite loss
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += len(images)
            if step % train.log_every == 0 or step == total:
                rate = seen / (time.perf_counter() - t0)
                history.append({"step": step, "loss": float(loss.detach()), "images_per_s": round(rate, 1)})
                print(f"pretrain: step {step}/{total} loss {history[-1]['loss']:.4f} ({rate:.1f} img/s)", flush=True)
    config = {"train": asdict(train), "pretrain": asdict(cfg), "data": list(specs)}
    result = {"history": history, "steps": step, "seconds": round(time.perf_counter() - t0, 1), "device": str(device)}
    save_checkpoint(out / "mim.pt", mae.cpu(), config, result)
    record = {"config": config, **result}
    if preview is not None:
        reconstruction_grid(mae, preview, out / "reconstruction.png", train.seed)
    return record


def _main(args: argparse.Namespace) -> int:
    rec = pretrain(args.data, Path(args.out), parse_overrides(args.set), args.params_file, Path(args.cache_dir))
    h = rec["history"]
    print(f"pretrain: {rec['steps']} steps in {rec['seconds']} s on {rec['device']}; "
          f"loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}; wrote {args.out}/mim.pt")
    (Path(args.out) / "summary.json").write_text(json.dumps(rec, indent=1))
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="masked image modeling on unlabelled frames", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.set_defaults(func=_main)
