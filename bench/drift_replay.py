"""Long clean (or corrupted) procedural drives, embedded exactly as the perception node samples them.

The node feeds one frame in ``perception.drift_every`` to the drift window, so an hour of camera time needs only
that fraction of the frames rendered and run through the model: this script steps each procedural scene at the
camera rate, renders only the sampled frames (camera size, optionally corrupted on the camera frame like the
robustness report), letterboxes them like the node and keeps the model's pooled embedding. The result, an ``.npz``
of embeddings in drive order with their episode index and camera time (and, every ``perception.ood_every``-th
frame, the bundle's MIM OOD reconstruction error; and the image-quality statistics of every drift-sampled frame),
is what ``bench_drift_false_alarms.py`` replays through the
drift detector, the OOD score and the node's alarm rules.

    .venv/bin/python bench/drift_replay.py --minutes 60 --hz 30 --seed 30000 --out build/drift/test_clean.npz

``--image-stats-only`` renders the same frames (same corruption draws) without the model and writes only the image
statistics, to ``OUT`` with ``.img.npz`` for ``.npz``: the cheap way to add them to an existing replay.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mim_perception.core.config import load_config
from mim_perception.core.monitoring.image_stats import image_statistics
from mim_perception.core.pipeline import PerceptionConfig
from mim_perception.core.preprocess import letterbox
from mim_perception.inference.manifest import INPUT_NAME, OUTPUT_NAMES, Manifest, load_manifest
from mim_perception.inference.ood_model import load_ood
from mim_perception.inference.ort_backend import cpu_session
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene
from mim_perception.training import corruptions


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/mim_convnext_atto_cpu")
    ap.add_argument("--minutes", type=float, default=60.0, help="camera time to replay")
    ap.add_argument("--hz", type=float, default=30.0, help="camera rate")
    ap.add_argument("--episode-s", type=float, default=20.0, help="seconds per procedural scene (a new look each)")
    ap.add_argument("--seed", type=int, default=30000, help="first scene seed (keep calibration and test disjoint)")
    ap.add_argument("--every", type=int, help="drift: one frame in N (default: perception.drift_every; 0 = no drift)")
    ap.add_argument("--ood-every", type=int, help="OOD: one frame in N (default: perception.ood_every; 0 = no OOD)")
    ap.add_argument("--corruption", help="NAME:SEVERITY applied to every sampled camera frame")
    ap.add_argument("--transport-jpeg", type=int, nargs="+", metavar="Q",
                    help="JPEG round trip at quality Q after any corruption (a CompressedImage camera topic); "
                         "several: one per scene in turn, 0 = raw")
    ap.add_argument("--image-stats-only", action="store_true", help="no model: image statistics only (.img.npz)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    return ap.parse_args()


@dataclass
class Replay:
    """What one replay collects, in drive order."""

    embs: list[np.ndarray] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    ood_errors: list[float] = field(default_factory=list)
    ood_times: list[float] = field(default_factory=list)
    stats: list[np.ndarray] = field(default_factory=list)


class Camera:
    """A sampled camera frame as the node would see it: optional corruption, then the camera's JPEG transport."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.jpeg = args.transport_jpeg
        self.corrupt: Callable[[np.ndarray], np.ndarray] | None = None
        if args.corruption:
            name, sev = args.corruption.split(":")
            crng = np.random.default_rng(args.seed)
            self.corrupt = lambda img: corruptions.apply(img, name, int(sev), crng)

    def frame(self, scene: SyntheticScene, ep: int) -> np.ndarray:
        img = scene.render()[0]
        if self.corrupt is not None:
            img = self.corrupt(img)
        q = self.jpeg[ep % len(self.jpeg)] if self.jpeg else 0
        if q:
            img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
        return img


def _drive(args: argparse.Namespace, m: Manifest, sess: Any, ood: Any, every: int, ood_every: int) -> tuple[Replay, int]:
    """Step the procedural scenes at the camera rate; render, embed and score only the frames the node samples."""
    k = OUTPUT_NAMES.index("embed")
    per_episode = max(1, round(args.episode_s * args.hz))
    total = round(args.minutes * 60 * args.hz)
    camera, r = Camera(args), Replay()
    t0 = time.perf_counter()
    frame = ep = 0
    while frame < total:
        scene = SyntheticScene(replace(SceneConfig(), fps=args.hz, frames=per_episode, seed=args.seed + ep))
        for i in range(min(per_episode, total - frame)):
            if i:
                scene._step(1.0 / args.hz)
            want_drift = every > 0 and frame % every == 0
            want_ood = ood is not None and frame % ood_every == 0
            if want_drift or want_ood:
                img = camera.frame(scene, ep)
                if want_drift:
                    r.stats.append(image_statistics(img))
                    r.episodes.append(ep)
                    r.times.append(frame / args.hz)
                if not args.image_stats_only:
                    x = np.ascontiguousarray(letterbox(img, (m.input_height, m.input_width))[0].transpose(2, 0, 1)[None])
                    if want_drift:
                        r.embs.append(sess.run(None, {INPUT_NAME: x})[k][0].astype(np.float32))
                    if want_ood and ood is not None:
                        r.ood_errors.append(ood(x))
                        r.ood_times.append(frame / args.hz)
            frame += 1
        ep += 1
        if ep % 10 == 0:
            print(f"{frame / total:6.1%}  {len(r.times)} drift frames  {len(r.ood_errors)} OOD  "
                  f"{time.perf_counter() - t0:7.1f} s", flush=True)
    return r, ep


def _save(args: argparse.Namespace, m: Manifest, r: Replay, meta: dict[str, Any]) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_stats = np.array(r.stats).reshape(len(r.stats), -1)
    if args.image_stats_only:
        out = out.with_suffix(".img.npz")
        np.savez(out, image_stats=image_stats, episode=np.array(r.episodes, np.int32), time=np.array(r.times),
                 meta=json.dumps(meta))
        print(json.dumps(meta | {"image_stats": len(r.stats), "out": str(out)}))
        return
    np.savez(out, image_stats=image_stats,
             embeddings=np.stack(r.embs) if r.embs else np.zeros((0, m.embed_dim), np.float32),
             episode=np.array(r.episodes, np.int32), time=np.array(r.times), ood_errors=np.array(r.ood_errors),
             ood_time=np.array(r.ood_times), meta=json.dumps(meta))
    print(json.dumps(meta | {"embeddings": len(r.embs), "ood_scores": len(r.ood_errors)}))


def main() -> int:
    args = _args()
    bundle = Path(args.model)
    m = load_manifest(bundle)
    sess = cpu_session(m.path(bundle, "onnx"), args.threads)
    pcfg = load_config(PerceptionConfig, None, prefix="perception.")
    every = pcfg.drift_every if args.every is None else args.every
    ood_every = pcfg.ood_every if args.ood_every is None else args.ood_every
    ood = load_ood(bundle, m, threads=args.threads)[0] if ood_every and not args.image_stats_only else None
    t0 = time.perf_counter()
    replay, episodes = _drive(args, m, sess, ood, every, ood_every)
    meta = {"model": str(bundle), "model_sha256": m.sha256[m.files["onnx"]],
            "minutes": args.minutes, "hz": args.hz, "every": every, "ood_every": ood_every,
            "episode_s": args.episode_s, "seed": args.seed,
            "episodes": episodes, "corruption": args.corruption or "none", "transport_jpeg": args.transport_jpeg,
            "seconds": round(time.perf_counter() - t0, 1)}
    _save(args, m, replay, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
