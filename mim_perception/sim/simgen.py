"""`mim-perception simgen`: labelled / unlabelled driving datasets, episode by episode, without ROS.

    mim-perception simgen OUT --episodes 40 --frames 100 [--source synthetic|metadrive] [--workers 2]
                          [--unlabelled] [--bag] [--val 0.1 --test 0.1] [--seed 0]

Layout (each episode is a MOTChallenge sequence, so MOT tools and our loaders read it directly):
  OUT/dataset.json                      label space, splits by episode, generator settings, command line
  OUT/episodes/ep_00000/img1/*.jpg      frames
                       /seg/*.png       label masks (stack label space, 255 = ignore)      [labelled]
                       /gt/gt.txt       frame,id,x,y,w,h,1,class+1,visibility             [labelled]
                       /coco.json       the same boxes as COCO (track_id per annotation)   [labelled]
                       /seqinfo.ini, /camera.json, /episode.json (written last: the "done" marker)
                       /bag/            rosbag2 mcap with camera + ground-truth topics     [--bag]
An episode is written into ``ep_xxxxx.tmp`` and renamed when complete, so a crash or a full disk
never leaves a half episode; re-running skips finished episodes (resumable). Episode ``i`` uses seed
``seed + i`` (deterministic); test episodes use a disjoint seed range, so their scenes never occur in training.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.scale.fanout import RETRIES, FanoutFailed, Outcome, run_tasks
from mim_perception.sim.synth_cli import write_images, write_mot
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene, SynthFrame
from mim_perception.sim.to_bag import frames_to_bag

TEST_SEED_OFFSET = 1_000_000
SOURCES = ("synthetic", "metadrive")


@dataclass(frozen=True)
class GenConfig:
    source: str
    episodes: int
    frames: int
    seed: int
    width: int
    height: int
    fps: float
    labelled: bool
    bag: bool
    val_fraction: float
    test_fraction: float

    def _count(self, fraction: float) -> int:
        # At least one episode for a requested split once there are enough episodes to spare one.
        n = round(self.episodes * fraction)
        return max(n, 1) if fraction > 0 and self.episodes >= 3 else n

    def split_of(self, episode: int) -> str:
        n_test, n_val = self._count(self.test_fraction), self._count(self.val_fraction)
        if episode >= self.episodes - n_test:
            return "test"
        return "val" if episode >= self.episodes - n_test - n_val else "train"

    def episode_seed(self, episode: int) -> int:
        return self.seed + episode + (TEST_SEED_OFFSET if self.split_of(episode) == "test" else 0)


def _frames(cfg: GenConfig, episode: int) -> Iterator[SynthFrame]:
    seed = cfg.episode_seed(episode)
    if cfg.source == "synthetic":
        scene = replace(SceneConfig(), frames=cfg.frames, seed=seed, width=cfg.width, height=cfg.height, fps=cfg.fps)
        yield from SyntheticScene(scene).frames()
        return
    md_env: Any = importlib.import_module("mim_perception.sim.metadrive_env")   # optional extra: [sim]
    md = md_env.MetaDriveScene(md_env.MetaDriveConfig.load(overrides={"width": cfg.width, "height": cfg.height, "seed": seed}))
    try:
        yield from md.frames(cfg.frames)
    finally:
        md.close()


def write_coco(frames: Iterable[SynthFrame], path: Path, class_names: tuple[str, ...]) -> Iterator[SynthFrame]:
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for f in frames:
        h, w = f.image.shape[:2]
        images.append({"id": f.index + 1, "file_name": f"img1/{f.index + 1:06d}.jpg", "width": w, "height": h,
                       "frame_index": f.index, "stamp": f.stamp})
        for (x0, y0, x1, y1), label, tid, vis in zip(f.boxes, f.labels, f.track_ids, f.visibility, strict=True):
            bw, bh = float(x1 - x0), float(y1 - y0)
            anns.append({"id": len(anns) + 1, "image_id": f.index + 1, "category_id": int(label) + 1,
                         "bbox": [round(float(x0), 1), round(float(y0), 1), round(bw, 1), round(bh, 1)],
                         "area": round(bw * bh, 1), "iscrowd": 0, "track_id": int(tid), "visibility": round(float(vis), 3)})
        yield f
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def generate_episode(cfg: GenConfig, out: Path, episode: int) -> dict[str, Any]:
    """Write one episode atomically; returns its metadata (also saved as episode.json)."""
    final = out / "episodes" / f"ep_{episode:05d}"
    if (final / "episode.json").is_file():
        return {**json.loads((final / "episode.json").read_text()), "skipped": True}
    tmp = final.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    labels = LabelSpace.load()
    t0 = time.perf_counter()
    counts: Counter[str] = Counter()
    camera: dict[str, float] = {}
    try:
        frames: Iterable[SynthFrame] = _frames(cfg, episode)
        if cfg.labelled:
            frames = write_mot(frames, tmp, fps=cfg.fps, width=cfg.width, height=cfg.height, name=final.name)
            frames = write_coco(frames, tmp / "coco.json", labels.detection)
        frames = write_images(frames, tmp, with_seg=cfg.labelled)
        if cfg.bag:

            frames = _tee(frames, counts, camera, labels)
            frames_to_bag(frames, tmp / "bag", labels.detection, gt_detections=cfg.labelled, gt_segmentation=cfg.labelled)
        else:
            for _ in _tee(frames, counts, camera, labels):
                pass
        n = counts.pop("__frames__", 0)
        (tmp / "camera.json").write_text(json.dumps(camera))
        if not cfg.labelled:
            (tmp / "seqinfo.ini").write_text(f"[Sequence]\nname={final.name}\nimDir=img1\nframeRate={cfg.fps:g}\n"
                                             f"seqLength={n}\nimWidth={cfg.width}\nimHeight={cfg.height}\nimExt=.jpg\n")
        meta = {"episode": episode, "split": cfg.split_of(episode), "seed": cfg.episode_seed(episode), "frames": n,
                "objects_per_class": dict(counts), "seconds": round(time.perf_counter() - t0, 2), "source": cfg.source}
        (tmp / "episode.json").write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)   # never leave a partial episode (crash, disk full, Ctrl-C)
        raise


def _tee(frames: Iterable[SynthFrame], counts: Counter[str], camera: dict[str, float], labels: LabelSpace
         ) -> Iterator[SynthFrame]:
    """Count frames and objects per class and keep the camera parameters, passing frames through."""
    for f in frames:
        counts["__frames__"] += 1
        counts.update(labels.detection[int(c)] for c in f.labels)
        camera.update(f.camera)
        yield f


def _episode_task(args: tuple[GenConfig, str, int]) -> dict[str, Any]:
    cfg, out, episode = args
    return generate_episode(cfg, Path(out), episode)


def generate_dataset(cfg: GenConfig, out: Path, workers: int = 1, command: str = "", ray_address: str | None = None,
                     retries: int = RETRIES) -> dict[str, Any]:
    """Episodes in parallel (process pool, or Ray tasks with ``ray_address``); a failed episode is retried,
    then listed under ``failed`` in dataset.json (which is then not ``complete``) and raises FanoutFailed."""
    if cfg.source not in SOURCES:
        raise ConfigError(f"unknown source {cfg.source!r}; choose one of {', '.join(SOURCES)}")
    if cfg.episodes < 1 or cfg.frames < 1:
        raise ConfigError("episodes and frames must be >= 1")
    if not 0 <= cfg.val_fraction + cfg.test_fraction < 1:
        raise ConfigError("val + test fractions must be in [0, 1)")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "dataset.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text()).get("config", {})
        if old and old != asdict(cfg):
            raise ConfigError(f"{out} holds a dataset generated with other settings ({old}); use another OUT")
    else:   # settings first, so a resumed run after a crash is checked against them too
        manifest.write_text(json.dumps({"config": asdict(cfg), "complete": False}))
    labels = LabelSpace.load()
    tasks = [(cfg, str(out), e) for e in range(cfg.episodes)]
    t0 = time.perf_counter()
    metas: list[dict[str, Any]] = []
    tty = sys.stderr.isatty()
    done = [0]

    def progress(o: Outcome) -> None:
        done[0] += 1
        state = ("skipped" if o.value.get("skipped") else "written") if o.ok else f"FAILED: {o.error}"
        line = f"simgen: episode {done[0]}/{cfg.episodes} ({state})"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    outcomes = run_tasks(_episode_task, tasks, workers=workers, ray_address=ray_address, retries=retries,
                         on_done=progress)
    if tty:
        print(file=sys.stderr)
    metas = [o.value for o in outcomes if o.ok]
    failed = [{"episode": o.index, "error": o.error, "attempts": o.attempts} for o in outcomes if not o.ok]
    seconds = time.perf_counter() - t0
    written = [m for m in metas if not m.get("skipped")]
    hist: Counter[str] = Counter()
    for m in metas:
        hist.update(m["objects_per_class"])
    splits = {s: [m["episode"] for m in metas if m["split"] == s] for s in ("train", "val", "test")}
    summary = {
        "config": asdict(cfg), "label_space": {"detection": list(labels.detection), "segmentation": list(labels.segmentation)},
        "splits": splits, "frames": sum(m["frames"] for m in metas), "objects_per_class": dict(hist),
        "generation_fps": round(sum(m["frames"] for m in written) / seconds, 2) if written else None,
        "command": command, "complete": not failed, "failed": failed,
    }
    manifest.write_text(json.dumps(summary, indent=1))
    if failed:
        raise FanoutFailed(f"{len(failed)} episode(s) failed after retries: "
                           + "; ".join(f"{f['episode']}: {f['error']}" for f in failed[:3]) + " (see dataset.json)")
    return summary


def _main(args: argparse.Namespace) -> int:
    cfg = GenConfig(source=args.source, episodes=args.episodes, frames=args.frames, seed=args.seed, width=args.width,
                    height=args.height, fps=args.fps, labelled=not args.unlabelled, bag=args.bag,
                    val_fraction=args.val, test_fraction=args.test)
    s = generate_dataset(cfg, Path(args.out), workers=args.workers, command=getattr(args, "command_line", ""),
                         ray_address=args.ray_address, retries=args.retries)
    print(f"simgen: {s['frames']} frames in {cfg.episodes} episodes -> {args.out} "
          f"(train/val/test episodes {len(s['splits']['train'])}/{len(s['splits']['val'])}/{len(s['splits']['test'])}; "
          f"{s['generation_fps']} frames/s this run)")
    print("objects per class (frame-instances): " + ", ".join(f"{k} {v}" for k, v in sorted(s["objects_per_class"].items())))
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="generate a driving dataset (episodes of frames, labels, bags)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SceneConfig()
    p.add_argument("out")
    p.add_argument("--source", choices=SOURCES, default="synthetic")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--frames", type=int, default=100, help="frames per episode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--unlabelled", action="store_true", help="frames only (MIM pretraining pool)")
    p.add_argument("--bag", action="store_true", help="also record each episode as a rosbag2 (mcap)")
    p.add_argument("--val", type=float, default=0.1, help="fraction of episodes for validation")
    p.add_argument("--test", type=float, default=0.1, help="fraction of episodes for test (disjoint seeds)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one episode each); with "
                                                          "--ray-address local: the Ray instance's CPUs")
    p.add_argument("--ray-address", help="run episodes as Ray tasks: local | auto | HOST:PORT (default: process pool)")
    p.add_argument("--retries", type=int, default=RETRIES, help="retries of a failed episode before it is reported")
    p.set_defaults(func=_main)
