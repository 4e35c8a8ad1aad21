"""Property tests: untrusted image bytes either decode or raise BadImageError — never anything else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mim_perception.core import imageconv as ic
from mim_perception.core.errors import BadImageError

# database=None: no .hypothesis/ folder left in the checkout; failures print their reproducing example
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

BYTES_PER_PIXEL = {"mono16": 2, "16UC1": 2, "32FC1": 4, "bgr8": 3, "rgb8": 3, "8UC3": 3, "bgra8": 4, "rgba8": 4,
                   "uyvy": 2, "yuv422": 2, "yuyv": 2, "yuv422_yuy2": 2}
odd_encodings = st.sampled_from(["", "BGR8", "bgr16", "nv24", "8UC", "bayer_rggb16"]) | st.text(max_size=12)
odd_ints = st.sampled_from([0, -1, -(2**40), 2**31, 2**63, 10**6])


@st.composite
def raw_fields(draw):
    """Image fields that are often nearly consistent, so both the decode and the error paths get exercised."""
    encoding = draw(st.sampled_from(ic.SUPPORTED_ENCODINGS) if draw(st.integers(0, 9)) else odd_encodings)
    h = draw(st.integers(1, 9) if draw(st.integers(0, 9)) else odd_ints)
    w = draw(st.integers(1, 9) if draw(st.integers(0, 9)) else odd_ints)
    row = w * BYTES_PER_PIXEL.get(encoding, 1) if isinstance(w, int) else 0
    step = draw(st.integers(-2, 8).map(lambda d: row + d) | st.integers(-4, 80))
    rows = h * 3 // 2 if encoding in ("nv12", "nv21") else h
    need = max(0, step * rows) if isinstance(h, int) and abs(h) < 100 else 0
    size = draw(st.integers(-3, 5).map(lambda d: max(0, min(need + d, 4000))) | st.integers(0, 700))
    data = draw(st.binary(min_size=size, max_size=size))
    wrap = draw(st.sampled_from([bytes, bytearray, memoryview]))
    return encoding, h, w, step, draw(st.sampled_from([0, 1, 2, True, False])), wrap(data)


def reference(encoding: str, h: int, w: int) -> np.ndarray:
    """A decode of ``h``×``w`` zeros: gives the expected native shape and dtype."""
    return ic.decode_raw(encoding, h, w, w * 16, 0, bytes(w * 16 * h * 2))


@FUZZ
@given(fields=raw_fields())
def test_raw_fields_decode_or_raise_bad_image_error(fields):
    encoding, h, w, step, big, data = fields
    try:
        native = ic.decode_raw(encoding, h, w, step, big, data)
    except BadImageError as e:
        assert str(e)  # every error names its problem
        event(str(e).split()[0])
        with pytest.raises(BadImageError):
            ic.to_bgr8(encoding, h, w, step, big, data)
        return
    event("decoded")
    assert native.shape[:2] == ((h * 3 // 2, w) if encoding in ("nv12", "nv21") else (h, w))
    ref = reference(encoding, h, w)
    assert native.shape == ref.shape and native.dtype == ref.dtype
    bgr = ic.to_bgr8(encoding, h, w, step, big, data)
    assert bgr.shape == (h, w, 3) and bgr.dtype == np.uint8 and bgr.flags.c_contiguous


@st.composite
def native_arrays(draw):
    encoding = draw(st.sampled_from(ic.SUPPORTED_ENCODINGS))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    if encoding in ("nv12", "nv21", "uyvy", "yuv422", "yuyv", "yuv422_yuy2"):
        w += w % 2
        if encoding.startswith("nv"):
            h += h % 2
    ref = reference(encoding, h, w)
    shape, dtype = ref.shape, ref.dtype
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    return encoding, np.frombuffer(raw, dtype).reshape(shape)


@FUZZ
@given(sample=native_arrays(), pad=st.integers(0, 9), big=st.booleans())
def test_encode_decode_round_trip_with_padding_and_byte_order(sample, pad, big):
    encoding, a = sample
    h, w, step, data = ic.encode_raw(a, encoding)
    swapped = a.astype(a.dtype.newbyteorder(">")) if big else a
    rows = a.shape[0]
    raw = swapped.tobytes()
    padded = b"".join(raw[r * step:(r + 1) * step] + b"\x5a" * pad for r in range(rows))
    out = ic.decode_raw(encoding, h, w, step + pad, big, padded)
    # compare bit patterns so NaN payloads in 32FC1 count as equal
    np.testing.assert_array_equal(out.view(f"u{a.itemsize}"), a.view(f"u{a.itemsize}"))
    assert data == a.astype(a.dtype.newbyteorder("<")).tobytes()


@FUZZ
@given(fmt=st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "rgb8; png compressed rgb8"]) | st.text(
    max_size=20), data=st.binary(max_size=400))
def test_arbitrary_compressed_bytes_decode_or_raise(fmt, data):
    try:
        out = ic.decode_compressed(fmt, data)
    except BadImageError as e:
        assert str(e)
        event(" ".join(str(e).split()[:3]))
        return
    event("decoded")
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


@pytest.fixture(scope="module")
def valid_payloads() -> list[bytes]:
    yy, xx = np.mgrid[0:24, 0:32]
    img = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)
    return [ic.encode_compressed(img, "jpeg", 80), ic.encode_compressed(img, "png"),
            ic.encode_compressed(img[..., 0].copy(), "png")]


@FUZZ
@given(which=st.integers(0, 2), cut=st.just(1.0) | st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4))
def test_corrupted_real_jpeg_png_decode_or_raise(valid_payloads, which, cut, flips):
    # mutations of valid files reach much deeper into the decoders than random bytes do
    data = bytearray(valid_payloads[which])
    for pos, value in flips:
        data[int(pos * (len(data) - 1))] = value
    data = data[: max(1, int(cut * len(data)))]
    try:
        out = ic.decode_compressed("png" if which else "jpeg", bytes(data))
    except BadImageError as e:
        event(" ".join(str(e).split()[:3]))
        return
    event("decoded")
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
