"""Benchmark sensor_msgs/Image payload -> numpy conversion (mim_perception.core.imageconv).

Prints median µs per call of decode_raw (native view) and to_bgr8 for every encoding at 640×384 and
1280×720, compressed decode/encode, the ROS message build if sensor_msgs is importable, and the ratio of
our bgr8 path against a naive ``np.array(list(msg.data))`` copy measured in the same run.

    .venv/bin/python bench/bench_imageconv.py [--budget 0.08]
"""

from __future__ import annotations

import argparse
import array
import statistics
import time
from collections.abc import Callable

import numpy as np

from mim_perception.core import imageconv as ic

SIZES = ((384, 640), (720, 1280))


def median_us(fn: Callable[[], object], budget_s: float) -> float:
    """Median over batches of the mean call time; batch size chosen so a batch lasts ~1/10 of the budget."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(budget_s / 10 / once))
    samples = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < 3 or (time.perf_counter() < deadline and len(samples) < 50):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples) * 1e6


def sample_message(encoding: str, h: int, w: int, rng: np.random.Generator) -> tuple[int, bytes]:
    """(step, data) of a random h×w image in ``encoding``, as an Image message would carry it."""
    ref = ic.decode_raw(encoding, 2, 2, 64, 0, bytes(64 * 3))  # only for the layout: dtype and channel count
    rows = h * 3 // 2 if encoding in ("nv12", "nv21") else h
    shape = (rows, w) if ref.ndim == 2 else (rows, w, ref.shape[2])
    if ref.dtype.kind == "f":
        a = rng.random(shape, dtype=np.float32)
    else:
        a = rng.integers(0, np.iinfo(ref.dtype).max, shape, dtype=ref.dtype, endpoint=True)
    _, _, step, data = ic.encode_raw(a, encoding)
    return step, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.08, help="seconds of measurement per cell")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()

    print(f"{'encoding':<13}" + "".join(f"{f'decode {w}x{h}':>17}{f'to_bgr8 {w}x{h}':>18}" for h, w in SIZES))
    for enc in ic.SUPPORTED_ENCODINGS:
        cells = []
        for h, w in SIZES:
            step, data = sample_message(enc, h, w, rng)
            buf = array.array("B", data)  # what rclpy hands a subscription callback
            cells.append(median_us(lambda e=enc, s=step, b=buf, hh=h, ww=w: ic.decode_raw(e, hh, ww, s, 0, b),
                                   args.budget))
            cells.append(median_us(lambda e=enc, s=step, b=buf, hh=h, ww=w: ic.to_bgr8(e, hh, ww, s, 0, b),
                                   args.budget))
        print(f"{enc:<13}" + "".join(f"{c:>17.1f}" if i % 2 == 0 else f"{c:>18.1f}" for i, c in enumerate(cells)))

    print("\nbgr8 -> H×W×3 uint8, ours vs baselines (median µs)")
    print(f"{'size':<10}{'ours to_bgr8':>14}{'frombuffer+copy':>17}{'np.array(list)':>16}{'ratio list/ours':>17}")
    for h, w in SIZES:
        step, data = sample_message("bgr8", h, w, rng)
        buf = array.array("B", data)
        ours = median_us(lambda b=buf, s=step, hh=h, ww=w: ic.to_bgr8("bgr8", hh, ww, s, 0, b), args.budget)
        copy = median_us(lambda b=buf, hh=h, ww=w: np.frombuffer(b, np.uint8).reshape(hh, ww, 3).copy(), args.budget)
        naive = median_us(lambda b=buf, hh=h, ww=w: np.array(list(b), np.uint8).reshape(hh, ww, 3), args.budget * 4)
        print(f"{f'{w}x{h}':<10}{ours:>14.1f}{copy:>17.1f}{naive:>16.0f}{naive / ours:>16.0f}×")

    print("\ncompressed (smooth synthetic frame, median µs)")
    print(f"{'size':<10}{'jpeg q90 enc':>14}{'jpeg dec':>10}{'png enc':>10}{'png dec':>10}")
    for h, w in SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        jpg, png = ic.encode_compressed(img, "jpeg", 90), ic.encode_compressed(img, "png")
        row = [median_us(lambda i=img: ic.encode_compressed(i, "jpeg", 90), args.budget),
               median_us(lambda d=jpg: ic.decode_compressed("bgr8; jpeg compressed bgr8", d), args.budget),
               median_us(lambda i=img: ic.encode_compressed(i, "png"), args.budget),
               median_us(lambda d=png: ic.decode_compressed("png", d), args.budget)]
        print(f"{f'{w}x{h}':<10}{row[0]:>14.0f}{row[1]:>10.0f}{row[2]:>10.0f}{row[3]:>10.0f}")

    try:
        from sensor_msgs.msg import Image

        from mim_perception.ros.image_msgs import numpy_to_image
    except ImportError:
        print("\n(sensor_msgs not importable: ROS message build skipped)")
    else:
        print("\nbuild sensor_msgs/Image from a bgr8 array (median µs)")
        print(f"{'size':<10}{'numpy_to_image':>16}{'naive msg.data=tobytes()':>26}")
        for h, w in SIZES:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

            def naive(i: np.ndarray = img) -> Image:
                m = Image(height=i.shape[0], width=i.shape[1], encoding="bgr8", step=i.shape[1] * 3)
                m.data = i.tobytes()
                return m

            ours = median_us(lambda i=img: numpy_to_image(i, "bgr8"), args.budget)
            print(f"{f'{w}x{h}':<10}{ours:>16.1f}{median_us(naive, args.budget):>26.1f}")
    print(f"\n(total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
