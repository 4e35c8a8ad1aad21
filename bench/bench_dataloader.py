"""Benchmark the training data path: synthetic generation, cached reads, augmentation, collate.

For each size (H×W) prints samples/s on one core of:
  generate   SyntheticSource episodes rendered and written to the cache (JPEG + PNG + labels.json)
  cached     samples read back from the cache (JPEG + PNG decode, label filtering)
  letterbox  the evaluation transform
  augment    the full training transform (scale-crop, flip, colour jitter, 50 % corruptions)
  loader     DataLoader(batch 16, num_workers=0) over cached source + training transform + collate

    .venv/bin/python bench/bench_dataloader.py [--episodes 2 --frames 8 --sizes 384x640 192x320]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np

from mim_perception.training import corruptions
from mim_perception.training.augment import AugmentConfig, eval_transform, train_transform
from mim_perception.training.data import SampleDataset, collate
from mim_perception.training.sources import SyntheticSource


def rate(n: int, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8, help="frames kept per episode")
    ap.add_argument("--sizes", nargs="+", default=["384x640", "192x320"])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"{'size':>8} {'generate':>9} {'cached':>8} {'letterbox':>9} {'augment':>8} {'loader':>8}   (samples/s)")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        cfg = AugmentConfig(height=h, width=w, scale_min=0.5, scale_max=1.5, flip_p=0.5, brightness=0.3, contrast=0.3,
                            saturation=0.3, hue=0.03, corruption_p=0.5, corruption_max_severity=5,
                            corruptions=corruptions.NAMES, min_box_size=2.0, min_box_visible=0.3)
        with tempfile.TemporaryDirectory() as cache:
            src = SyntheticSource(args.episodes, args.frames, 0, w, h, 1, cache_dir=cache, jpeg_quality=95)
            n = len(src)
            gen = rate(n, src.prepare)
            samples: list = []
            cached = rate(n, lambda: samples.extend(src[i] for i in range(n)))   # noqa: B023 - called at once
            lb = eval_transform((h, w))
            letter = rate(n, lambda: [lb(s, None) for s in samples])  # noqa: B023
            tf = train_transform(cfg)
            rng = np.random.default_rng(0)
            aug = rate(n, lambda: [tf(s, rng) for s in samples])  # noqa: B023
            loader = torch.utils.data.DataLoader(SampleDataset(src, tf, seed=0), batch_size=16, collate_fn=collate)
            load = rate(n, lambda: list(loader))  # noqa: B023
        print(f"{size:>8} {gen:9.1f} {cached:8.1f} {letter:9.1f} {aug:8.1f} {load:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
