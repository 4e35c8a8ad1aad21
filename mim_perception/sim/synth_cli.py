"""`mim-perception synth`: write procedural driving sequences as a bag, MOTChallenge ground truth and images.

    mim-perception synth OUT --frames 90 --fps 15 --seed 0 [--bag] [--mot] [--images]

OUT/bag/            rosbag2 (mcap): CompressedImage/Image + CameraInfo + ground-truth detections/segmentation
OUT/gt/gt.txt       MOTChallenge ground truth (frame, id, x, y, w, h, 1, class+1, visibility) + OUT/seqinfo.ini
OUT/img1/, OUT/seg/ JPEG frames (MOT layout) and PNG label masks in the stack's label space
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene, SynthFrame
from mim_perception.sim.to_bag import frames_to_bag


def write_mot(frames: Iterable[SynthFrame], out: Path, *, fps: float, width: int, height: int,
              name: str = "synth") -> Iterator[SynthFrame]:
    """Write MOTChallenge ``gt/gt.txt`` + ``seqinfo.ini`` while passing frames through (1-based frame numbers)."""
    (out / "gt").mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out / "gt" / "gt.txt", "w") as gt:
        for f in frames:
            n = f.index + 1
            for (x0, y0, x1, y1), label, tid, vis in zip(f.boxes, f.labels, f.track_ids, f.visibility, strict=True):
                gt.write(f"{n},{tid},{x0:.1f},{y0:.1f},{x1 - x0:.1f},{y1 - y0:.1f},1,{label + 1},{vis:.3f}\n")
            yield f
    (out / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={n}\nimWidth={width}\n"
        f"imHeight={height}\nimExt=.jpg\n")


def write_images(frames: Iterable[SynthFrame], out: Path, quality: int = 90, *, with_seg: bool = True
                 ) -> Iterator[SynthFrame]:
    """JPEG frames to OUT/img1 and PNG label masks to OUT/seg (1-based names, MOT layout)."""
    (out / "img1").mkdir(parents=True, exist_ok=True)
    if with_seg:
        (out / "seg").mkdir(parents=True, exist_ok=True)
    for f in frames:
        name = f"{f.index + 1:06d}"
        if not cv2.imwrite(str(out / "img1" / f"{name}.jpg"), f.image, [cv2.IMWRITE_JPEG_QUALITY, quality]) or (
                with_seg and not cv2.imwrite(str(out / "seg" / f"{name}.png"), f.seg)):
            raise OSError(f"could not write frame {name} under {out} (disk full or not writable?)")
        yield f


def _progress(frames: Iterable[SynthFrame], total: int) -> Iterator[SynthFrame]:
    tty = sys.stderr.isatty()
    for f in frames:
        if tty:
            print(f"\rsynth: frame {f.index + 1}/{total}", end="", file=sys.stderr, flush=True)
        yield f
    if tty:
        print(file=sys.stderr)


def generate(out: Path, cfg: SceneConfig, *, bag: bool, mot: bool, images: bool, compressed: bool = True,
             camera: str = "front", gt_segmentation: bool = True, jpeg_quality: int = 90) -> dict[str, int]:
    labels = LabelSpace.load()
    frames: Iterable[SynthFrame] = _progress(SyntheticScene(cfg, labels).frames(), cfg.frames)
    if mot:
        frames = write_mot(frames, out, fps=cfg.fps, width=cfg.width, height=cfg.height, name=out.name)
    if images:
        frames = write_images(frames, out)
    out.mkdir(parents=True, exist_ok=True)
    if bag:

        return frames_to_bag(frames, out / "bag", labels.detection, camera=camera, compressed=compressed,
                             gt_segmentation=gt_segmentation, jpeg_quality=jpeg_quality)
    count = 0
    for _ in frames:
        count += 1
    return {"frames": count}


def _main(args: argparse.Namespace) -> int:
    if not (args.bag or args.mot or args.images):
        raise ConfigError("nothing to write: pass at least one of --bag, --mot, --images")
    out = Path(args.out)
    if args.bag and (out / "bag").exists():
        raise ConfigError(f"{out / 'bag'} already exists; choose another OUT or remove it")
    cfg = replace(SceneConfig(), frames=args.frames, fps=args.fps, seed=args.seed, width=args.width, height=args.height,
                  n_objects=args.objects, stamp_jitter=args.jitter)
    counts = generate(out, cfg, bag=args.bag, mot=args.mot, images=args.images, compressed=not args.raw,
                      camera=args.camera, gt_segmentation=not args.no_gt_segmentation, jpeg_quality=args.quality)
    for topic, n in sorted(counts.items()):
        print(f"{n:6d}  {topic}")
    print(f"synth: wrote {cfg.frames} frames to {out}")
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="write procedural driving sequences (bag, MOT ground truth, images)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SceneConfig()   # the one place the generator's defaults live
    p.add_argument("out", help="output directory")
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--objects", type=int, default=d.n_objects, help="objects kept alive in the scene")
    p.add_argument("--jitter", type=float, default=d.stamp_jitter, help="± seconds of random jitter on each stamp")
    p.add_argument("--camera", default="front", help="camera name in topic names (/camera/NAME/...)")
    p.add_argument("--bag", action="store_true", help="write OUT/bag (mcap)")
    p.add_argument("--raw", action="store_true", help="bag carries sensor_msgs/Image bgr8 instead of JPEG")
    p.add_argument("--no-gt-segmentation", action="store_true", help="leave the (large, raw mono8) label masks out of the bag")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of compressed images")
    p.add_argument("--mot", action="store_true", help="write MOTChallenge ground truth")
    p.add_argument("--images", action="store_true", help="write JPEG frames and PNG label masks")
    p.set_defaults(func=_main)
