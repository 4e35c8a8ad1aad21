"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without ROS and without cv_bridge.

Works on the plain message fields so it is testable (and fuzzable) with no ROS installed; the thin
``mim_perception.ros.image_msgs`` wrapper feeds it real messages.

Native layouts returned by :func:`decode_raw` (what OpenCV expects for each encoding):

* 1-channel encodings (mono8, mono16, 8UC1, 16UC1, 32FC1, bayer_*8): ``H×W``
* multi-channel (bgr8, rgb8, bgra8, rgba8, 8UC3): ``H×W×C``
* packed 4:2:2 (uyvy/yuv422, yuyv/yuv422_yuy2): ``H×W×2`` uint8
* semi-planar 4:2:0 (nv12, nv21): ``(H·3/2)×W`` uint8 — Y plane then interleaved chroma; ``step`` is the
  Y-plane row stride and ``data`` must hold ``step·H·3/2`` bytes.

Choices for :func:`to_bgr8` on non-8-bit data (deterministic, no per-frame normalisation, so brightness is
stable from frame to frame and identical across runs):

* mono16 / 16UC1: value / 256, rounded (the high byte; cv_bridge's 16 → 8 bit scaling).
* 32FC1: intensity in [0, 1] (cv_bridge's float-image convention) × 255, clipped; NaN → 0, +inf → 255.
"""

from __future__ import annotations

import array
import operator
import struct
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from mim_perception.core.errors import BadImageError

Buffer = bytes | bytearray | memoryview | array.array

_HOST_BIG = sys.byteorder == "big"
# A compressed frame may claim any size in a few header bytes; refuse decompression bombs before decoding.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class _Layout:
    dtype: str  # numpy base type of one value
    channels: int  # values per pixel in the native array; 1 → 2-D array
    kind: str  # "plain" | "yuv422" | "yuv420sp"
    to_bgr: int | None  # cv2.cvtColor code; None = already BGR, -1 = special-cased below


_ENCODINGS: dict[str, _Layout] = {
    "bgr8": _Layout("u1", 3, "plain", None),
    "8UC3": _Layout("u1", 3, "plain", None),  # OpenCV's channel order is BGR
    "rgb8": _Layout("u1", 3, "plain", cv2.COLOR_RGB2BGR),
    "bgra8": _Layout("u1", 4, "plain", cv2.COLOR_BGRA2BGR),
    "rgba8": _Layout("u1", 4, "plain", cv2.COLOR_RGBA2BGR),
    "mono8": _Layout("u1", 1, "plain", cv2.COLOR_GRAY2BGR),
    "8UC1": _Layout("u1", 1, "plain", cv2.COLOR_GRAY2BGR),
    "mono16": _Layout("u2", 1, "plain", -1),
    "16UC1": _Layout("u2", 1, "plain", -1),
    "32FC1": _Layout("f4", 1, "plain", -1),
    "uyvy": _Layout("u1", 2, "yuv422", cv2.COLOR_YUV2BGR_UYVY),
    "yuv422": _Layout("u1", 2, "yuv422", cv2.COLOR_YUV2BGR_UYVY),  # ROS: deprecated alias of uyvy
    "yuyv": _Layout("u1", 2, "yuv422", cv2.COLOR_YUV2BGR_YUY2),
    "yuv422_yuy2": _Layout("u1", 2, "yuv422", cv2.COLOR_YUV2BGR_YUY2),  # ROS: deprecated alias of yuyv
    "nv12": _Layout("u1", 1, "yuv420sp", cv2.COLOR_YUV2BGR_NV12),
    "nv21": _Layout("u1", 1, "yuv420sp", cv2.COLOR_YUV2BGR_NV21),
    # ROS names the 2×2 tile from the top-left pixel; OpenCV's legacy names (BayerBG…) start one pixel in,
    # so bayer_rggb8 is COLOR_BayerBG2BGR. The 4-letter aliases follow the ROS convention (tested).
    "bayer_rggb8": _Layout("u1", 1, "plain", cv2.COLOR_BayerRGGB2BGR),
    "bayer_bggr8": _Layout("u1", 1, "plain", cv2.COLOR_BayerBGGR2BGR),
    "bayer_gbrg8": _Layout("u1", 1, "plain", cv2.COLOR_BayerGBRG2BGR),
    "bayer_grbg8": _Layout("u1", 1, "plain", cv2.COLOR_BayerGRBG2BGR),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)


def _layout(encoding: object) -> _Layout:
    lay = _ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if lay is None:
        raise BadImageError(f"unknown encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    return lay


def _as_int(name: str, value: object) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]  # ints only: 2.5 rows is not a size
    except TypeError:
        raise BadImageError(f"{name} must be an integer, got {value!r}") from None


def _check_dims(lay: _Layout, encoding: str, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise BadImageError(f"empty image: height={height} width={width} (both must be ≥ 1)")
    if lay.kind == "yuv422" and width % 2:
        raise BadImageError(f"{encoding} needs an even width (2 pixels share chroma), got width={width}")
    if lay.kind == "yuv420sp" and (width % 2 or height % 2):
        raise BadImageError(f"{encoding} needs even width and height, got {width}×{height}")


def _byte_view(data: object) -> memoryview:
    try:
        mv = memoryview(data)  # type: ignore[arg-type]
        return mv if mv.ndim == 1 and mv.itemsize == 1 else mv.cast("B")
    except (TypeError, ValueError) as e:
        raise BadImageError(f"data is not a contiguous bytes-like buffer ({type(data).__name__}): {e}") from None


# Positional parameters mirror the sensor_msgs/Image field order on purpose.
def decode_raw(
        encoding: str, height: int, width: int, step: int, is_bigendian: bool | int, data: Buffer) -> np.ndarray:
    """Image fields → array in the encoding's native layout (module docstring).

    Zero-copy: the result is a view of ``data`` (read-only when ``data`` is immutable ``bytes``; rows may be
    strided when ``step`` has padding) unless multi-byte values need byte-swapping, which copies.
    Bytes beyond ``step·rows`` are ignored. Raises BadImageError naming the problem.
    """
    lay = _layout(encoding)
    height, width, step = _as_int("height", height), _as_int("width", width), _as_int("step", step)
    _check_dims(lay, encoding, height, width)
    dt = np.dtype(lay.dtype)
    pixel_bytes = dt.itemsize * lay.channels
    if step < width * pixel_bytes:
        raise BadImageError(f"step {step} < width*bytes_per_pixel = {width}*{pixel_bytes} for {encoding}")
    rows = height * 3 // 2 if lay.kind == "yuv420sp" else height
    mv = _byte_view(data)
    if mv.nbytes < step * rows:
        raise BadImageError(f"data too short: {mv.nbytes} bytes < step*rows = {step}*{rows} for {encoding}")
    swap = dt.itemsize > 1 and bool(is_bigendian) != _HOST_BIG
    view_dt = dt.newbyteorder() if swap else dt
    shape: tuple[int, ...] = (rows, width) if lay.channels == 1 else (rows, width, lay.channels)
    strides = (step, pixel_bytes) if lay.channels == 1 else (step, pixel_bytes, dt.itemsize)
    arr = np.ndarray(shape, dtype=view_dt, buffer=mv, strides=strides)
    return arr.astype(dt) if swap else arr


def _bgr_from_native(lay: _Layout, encoding: str, arr: np.ndarray) -> np.ndarray:
    if lay.to_bgr is None:
        return np.ascontiguousarray(arr)
    if arr.strides[0] % arr.itemsize:
        # cv2 reads a row stride that is not a whole number of elements wrongly (odd padding of 16-bit rows)
        arr = np.ascontiguousarray(arr)
    if lay.to_bgr != -1:
        return cv2.cvtColor(arr, lay.to_bgr)
    if arr.dtype.kind == "u":  # 16-bit: round(v / 256), saturating
        return cv2.cvtColor(cv2.convertScaleAbs(arr, alpha=1.0 / 256.0), cv2.COLOR_GRAY2BGR)
    if arr.dtype.kind == "f":  # clip keeps NaN; cv2's saturating round then maps NaN to 0 (tested)
        return cv2.cvtColor(cv2.convertScaleAbs(np.clip(arr, 0.0, 1.0), alpha=255.0), cv2.COLOR_GRAY2BGR)
    raise BadImageError(f"no BGR conversion for {encoding}")  # unreachable: every table entry is handled


def to_bgr8(
        encoding: str, height: int, width: int, step: int, is_bigendian: bool | int, data: Buffer) -> np.ndarray:
    """Image fields → C-contiguous ``H×W×3`` uint8 BGR, what the model consumes.

    A zero-copy view when the input is unpadded bgr8/8UC3; otherwise one conversion (cv2) into a new array.
    """
    lay = _layout(encoding)
    arr = decode_raw(encoding, height, width, step, is_bigendian, data)
    try:
        return _bgr_from_native(lay, encoding, arr)
    except cv2.error as e:  # defensive: the checks above should make every conversion valid
        raise BadImageError(f"cannot convert {encoding} {width}×{height} to bgr8: {e}") from None


def _expected_shape(lay: _Layout, arr: np.ndarray, encoding: str) -> tuple[int, int]:
    """(height, width) of ``arr`` if its shape fits ``encoding``'s native layout."""
    a_shape = arr.shape
    if lay.channels == 1 and arr.ndim == 3 and a_shape[2] == 1:
        a_shape = a_shape[:2]
    ok = len(a_shape) == (2 if lay.channels == 1 else 3) and (lay.channels == 1 or a_shape[2] == lay.channels)
    if not ok:
        want = "H×W" if lay.channels == 1 else f"H×W×{lay.channels}"
        if lay.kind == "yuv420sp":
            want = "(H·3/2)×W"
        raise BadImageError(f"array of shape {arr.shape} does not fit {encoding} (want {want})")
    rows, width = int(a_shape[0]), int(a_shape[1])
    if lay.kind == "yuv420sp":
        if rows % 3:
            raise BadImageError(f"{encoding} array needs H·3/2 rows (a multiple of 3), got {rows}")
        rows = rows * 2 // 3
    _check_dims(lay, encoding, rows, width)
    return rows, width


def encode_raw_array(array_: np.ndarray, encoding: str) -> tuple[int, int, int, np.ndarray]:
    """Like :func:`encode_raw` but returns the C-contiguous little-endian array instead of bytes.

    Lets a caller copy straight into its own buffer (one copy fewer than ``tobytes``).
    """
    lay = _layout(encoding)
    if not isinstance(array_, np.ndarray):
        raise BadImageError(f"expected a numpy array, got {type(array_).__name__}")
    want = np.dtype(lay.dtype)
    if array_.dtype.kind != want.kind or array_.dtype.itemsize != want.itemsize:
        raise BadImageError(f"{encoding} needs dtype {want.name}, got {array_.dtype}")
    height, width = _expected_shape(lay, array_, encoding)
    out = np.ascontiguousarray(array_, dtype=want.newbyteorder("<"))
    return height, width, width * want.itemsize * lay.channels, out


def encode_raw(array_: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """Native-layout array → (height, width, step, data) for an Image: little-endian, no row padding."""
    height, width, step, out = encode_raw_array(array_, encoding)
    return height, width, step, out.tobytes()


# --- compressed ------------------------------------------------------------------------------------------

_CODECS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def parse_compressed_format(fmt: str) -> tuple[str, bool]:
    """ROS CompressedImage.format → (codec, bytes_hold_rgb).

    Accepts "jpeg", "png" and image_transport's "<orig encoding>; <codec> compressed <stored encoding>".
    image_transport stores colour as bgr8 whatever the original encoding was, so only a *stored* rgb
    encoding ("… compressed rgb8") means the decoded channels must be swapped.
    """
    if not isinstance(fmt, str):
        raise BadImageError(f"compressed format must be a string, got {type(fmt).__name__}")
    words = fmt.rsplit(";", 1)[-1].lower().split()
    codec = words[0] if words else ""
    if codec == "compresseddepth":
        raise BadImageError(f"unsupported compressed format {fmt!r}: compressedDepth transport is not supported")
    if codec not in _CODECS:
        raise BadImageError(f"unknown compressed format {fmt!r}; supported codecs: jpeg, png")
    stored = words[2] if len(words) >= 3 and words[1] == "compressed" else "bgr8"
    return codec, stored.startswith("rgb")


def compressed_format(codec: str = "jpeg", mono: bool = False) -> str:
    """The format string image_transport writes for bgr8 (or mono8) frames, e.g. "bgr8; jpeg compressed bgr8"."""
    enc = "mono8" if mono else "bgr8"
    return f"{enc}; {codec} compressed {enc}"


def peek_compressed_size(buf: memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or JPEG SOF header, without decoding; None if not found."""
    b = bytes(buf[:65536])  # headers sit at the start; bounded so a huge payload is not copied
    if b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) >= 24 and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return int(w), int(h)
    if not b.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # stand-alone markers carry no length
            i += 2
            continue
        (seg_len,) = struct.unpack(">H", b[i + 2:i + 4])
        if marker in _JPEG_SOF and i + 9 <= len(b):
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return int(w), int(h)
        if marker == 0xDA or seg_len < 2:  # start of scan before any frame header
            return None
        i += 2 + seg_len
    return None


def decode_compressed(fmt: str, data: Buffer, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """CompressedImage fields → ``H×W×3`` uint8 BGR (cv2.imdecode). Raises BadImageError on any bad input."""
    _, rgb = parse_compressed_format(fmt)
    buf = _byte_view(data)
    if buf.nbytes == 0:
        raise BadImageError(f"empty compressed image ({fmt!r}): no data")
    size = peek_compressed_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadImageError(f"compressed image too large: {size[0]}×{size[1]} > max_pixels={max_pixels}")
    try:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise BadImageError(f"corrupt compressed image ({fmt!r}, {buf.nbytes} bytes): {e}") from None
    if img is None or img.size == 0:
        raise BadImageError(f"corrupt compressed image ({fmt!r}, {buf.nbytes} bytes): cv2.imdecode failed")
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if rgb else img


def encode_compressed(array_bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """``H×W×3`` BGR (or ``H×W`` mono) uint8 → JPEG/PNG bytes. ``quality`` (0–100) applies to JPEG only."""
    codec, _ = parse_compressed_format(fmt)
    a = array_bgr
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise BadImageError(f"encode_compressed needs an H×W×3 or H×W uint8 array, got {desc}")
    if a.size == 0:
        raise BadImageError(f"empty image: shape {a.shape}")
    if not 0 <= quality <= 100:
        raise BadImageError(f"JPEG quality must be in [0, 100], got {quality}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if _CODECS[codec] == ".jpg" else []
    ok, enc = cv2.imencode(_CODECS[codec], a, params)
    if not ok:
        raise BadImageError(f"cv2.imencode failed for {codec} {a.shape}")
    return enc.tobytes()
