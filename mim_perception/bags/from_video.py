"""``mim-perception bag-from-video VIDEO|DIR``: a camera bag from a video file or an image folder.

Each frame becomes a ``sensor_msgs/Image`` (bgr8) or ``CompressedImage`` (JPEG/PNG) plus a
``CameraInfo`` with the same stamp and frame_id, at a fixed rate. ROS-free: messages are built with
the rosbags typestore classes and serialized with ``typestore.serialize_cdr``.

Default intrinsics: a pinhole camera with square pixels, horizontal field of view ``fov_deg``
(60°) → fx = fy = (width / 2) / tan(fov / 2), principal point at the image centre (width / 2,
height / 2), no distortion (plumb_bob, d = 0). ``fx/fy/cx/cy`` override any of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from mim_perception.bags.io import STORAGES, BagWriter, make_typestore
from mim_perception.core.errors import BadImageError, BagError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
CODECS = ("jpeg", "png")
FALLBACK_FPS = 30.0  # image folders, and videos that do not report a frame rate


@dataclass(frozen=True)
class VideoBagOptions:
    """Every knob of bag-from-video; the CLI takes its defaults from here."""

    fps: float | None = None  # Hz; default: the video's own rate, 30 for image folders
    storage: str = "mcap"
    compressed: bool = True  # CompressedImage (True) or raw bgr8 Image
    codec: str = "jpeg"
    jpeg_quality: int = 90  # 0..100
    width: int | None = None  # px; resize (one of width/height keeps the aspect ratio)
    height: int | None = None
    fov_deg: float = 60.0  # horizontal field of view for the default intrinsics
    fx: float | None = None  # px
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    frame_id: str = "camera_optical_frame"
    image_topic: str | None = None  # default /camera/image_raw, or /camera/image_raw/compressed
    info_topic: str = "/camera/camera_info"
    start_time: float | None = None  # s since the epoch of the first frame's stamp; default: now
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise BagError(f"fps must be > 0, got {self.fps}")
        if self.storage not in STORAGES or self.codec not in CODECS:
            raise BagError(f"storage must be one of {STORAGES} and codec one of {CODECS}")
        if not 0 <= self.jpeg_quality <= 100:
            raise BagError(f"jpeg_quality must be in [0, 100], got {self.jpeg_quality}")
        if not 0 < self.fov_deg < 180:
            raise BagError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if any(v is not None and v <= 0 for v in (self.width, self.height, self.max_frames)):
            raise BagError("width, height and max_frames must be > 0")

    @property
    def topic(self) -> str:
        return self.image_topic or ("/camera/image_raw/compressed" if self.compressed else "/camera/image_raw")


@dataclass(frozen=True)
class VideoBagStats:
    path: Path
    frames: int
    width: int
    height: int
    fps: float
    image_topic: str
    info_topic: str
    k: tuple[float, ...]  # row-major 3×3 intrinsics written to CameraInfo


def intrinsics(width: int, height: int, opts: VideoBagOptions) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy): explicit values where given, else the documented pinhole defaults."""
    f = (width / 2) / math.tan(math.radians(opts.fov_deg) / 2)
    fx = opts.fx if opts.fx is not None else (opts.fy if opts.fy is not None else f)
    fy = opts.fy if opts.fy is not None else fx
    cx = opts.cx if opts.cx is not None else width / 2
    cy = opts.cy if opts.cy is not None else height / 2
    return fx, fy, cx, cy


def _natural_key(p: Path) -> list[Any]:
    # frame2.png before frame10.png
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]


def _folder_frames(folder: Path) -> tuple[Iterator[np.ndarray], int, float | None]:

    files = sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:
        raise BagError(f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTS))})")

    def gen() -> Iterator[np.ndarray]:
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise BadImageError(f"cannot read image {f}")
            yield img

    return gen(), len(files), None


def _video_frames(video: Path) -> tuple[Iterator[np.ndarray], int, float | None]:

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise BadImageError(f"cannot open video {video} (unsupported format or codec?)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = cap.get(cv2.CAP_PROP_FPS)

    def gen() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return gen(), max(count, 0), (fps if fps and math.isfinite(fps) and fps > 0 else None)


def _resize(img: np.ndarray, opts: VideoBagOptions) -> np.ndarray:

    if opts.width is None and opts.height is None:
        return img
    h, w = img.shape[:2]
    nw = opts.width or round(w * (opts.height or h) / h)
    nh = opts.height or round(h * nw / w)
    return img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)


def _encode(img: np.ndarray, opts: VideoBagOptions) -> np.ndarray:

    params = [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality] if opts.codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if opts.codec == "jpeg" else ".png", img, params)
    if not ok:
        raise BadImageError(f"{opts.codec} encoding failed for a {img.shape} frame")
    return np.asarray(buf, dtype=np.uint8).reshape(-1)


def bag_from_video(source: Path | str, output: Path | str, options: VideoBagOptions | None = None, *,
                   progress: bool = False, **overrides: Any) -> VideoBagStats:
    """Write a camera bag at ``output`` from a video file or a folder of images (natural sort order)."""

    opts = dataclasses.replace(options or VideoBagOptions(), **overrides)
    src = Path(source)
    if not src.exists():
        raise BagError(f"video or image folder {src} does not exist")
    frames, count, native_fps = _folder_frames(src) if src.is_dir() else _video_frames(src)
    fps = opts.fps or native_fps or FALLBACK_FPS
    if opts.max_frames is not None:
        count = min(count, opts.max_frames) if count else opts.max_frames
    store = make_typestore()
    start_ns = round((time.time() if opts.start_time is None else opts.start_time) * 1e9)
    bar = None
    if progress:

        bar = tqdm(total=count or None, unit="frame", desc="bag-from-video")
    n, shape, k = 0, (0, 0), (0.0,) * 9
    try:
        with BagWriter(output, opts.storage, store) as writer:
            for frame in frames:
                if opts.max_frames is not None and n >= opts.max_frames:
                    break
                img = np.ascontiguousarray(_resize(frame, opts))
                h, w = img.shape[:2]
                if n == 0:
                    shape = (w, h)
                    fx, fy, cx, cy = intrinsics(w, h, opts)
                    k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
                elif (w, h) != shape:
                    raise BadImageError(f"frame {n} is {w}×{h} but the first frame was {shape[0]}×{shape[1]}; "
                                        "pass --width/--height to resize every frame")
                _write_frame(writer, opts, img, start_ns + round(n * 1e9 / fps), k)
                n += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        raise BagError(f"{src} yielded no frames")
    return VideoBagStats(Path(output), n, shape[0], shape[1], fps, opts.topic, opts.info_topic, k)


def _write_frame(writer: BagWriter, opts: VideoBagOptions, img: np.ndarray, ts: int, k: tuple[float, ...]) -> None:
    """Image or CompressedImage + CameraInfo, both stamped ``ts`` (also the bag time)."""
    T = writer.typestore.types
    h, w = img.shape[:2]
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ts // 1_000_000_000, nanosec=ts % 1_000_000_000),
        frame_id=opts.frame_id)
    if opts.compressed:
        fmt = f"bgr8; {opts.codec} compressed bgr8"  # image_transport's format string
        msg = T["sensor_msgs/msg/CompressedImage"](header=header, format=fmt, data=_encode(img, opts))
        writer.write_msg(opts.topic, "sensor_msgs/msg/CompressedImage", ts, msg)
    else:
        msg = T["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                                         step=w * 3, data=img.reshape(-1))
        writer.write_msg(opts.topic, "sensor_msgs/msg/Image", ts, msg)
    writer.write_msg(opts.info_topic, "sensor_msgs/msg/CameraInfo", ts, _camera_info(T, header, w, h, k))


def _camera_info(T: Any, header: Any, w: int, h: int, k: tuple[float, ...]) -> Any:
    fx, _, cx, _, fy, cy = k[:6]
    return T["sensor_msgs/msg/CameraInfo"](
        header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array(k), r=np.eye(3).reshape(-1), p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


# -------------------------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction, verb: str) -> None:
    d = VideoBagOptions()
    p = subparsers.add_parser(verb, help="turn a video file or image folder into a camera bag (+ CameraInfo)")
    p.add_argument("source", help="video file (anything OpenCV opens) or folder of images")
    p.add_argument("-o", "--output", required=True, help="bag directory to create")
    p.add_argument("--fps", type=float, default=d.fps, help="Hz (default: the video's rate; 30 for folders)")
    p.add_argument("--storage", choices=STORAGES, default=d.storage, help="default %(default)s")
    p.add_argument("--raw", action="store_true", help="write sensor_msgs/Image bgr8 instead of CompressedImage")
    p.add_argument("--codec", choices=CODECS, default=d.codec, help="CompressedImage codec (default %(default)s)")
    p.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality, help="0..100 (default %(default)s)")
    p.add_argument("--width", type=int, default=d.width, help="resize to this width (px)")
    p.add_argument("--height", type=int, default=d.height, help="resize to this height (px)")
    p.add_argument("--fov-deg", type=float, default=d.fov_deg,
                   help="horizontal FOV for default intrinsics fx=fy=(w/2)/tan(fov/2) (default %(default)s)")
    for name in ("fx", "fy", "cx", "cy"):
        p.add_argument(f"--{name}", type=float, default=getattr(d, name), help=f"{name} in px (overrides --fov-deg)")
    p.add_argument("--frame-id", default=d.frame_id, help="default %(default)s")
    p.add_argument("--image-topic", default=d.image_topic,
                   help="default /camera/image_raw/compressed (or /camera/image_raw with --raw)")
    p.add_argument("--info-topic", default=d.info_topic, help="default %(default)s")
    p.add_argument("--start-time", type=float, default=d.start_time, help="first stamp, s since epoch (default now)")
    p.add_argument("--max-frames", type=int, default=d.max_frames)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    opts = VideoBagOptions(fps=args.fps, storage=args.storage, compressed=not args.raw, codec=args.codec,
                           jpeg_quality=args.jpeg_quality, width=args.width, height=args.height,
                           fov_deg=args.fov_deg, fx=args.fx, fy=args.fy, cx=args.cx, cy=args.cy,
                           frame_id=args.frame_id, image_topic=args.image_topic, info_topic=args.info_topic,
                           start_time=args.start_time, max_frames=args.max_frames)
    s = bag_from_video(args.source, args.output, opts, progress=not args.no_progress)
    print(f"wrote {s.frames} frames {s.width}×{s.height} at {s.fps:g} Hz to {s.path}: "
          f"{s.image_topic} + {s.info_topic} (fx={s.k[0]:.1f} fy={s.k[4]:.1f} cx={s.k[2]:.1f} cy={s.k[5]:.1f})")
    return 0
