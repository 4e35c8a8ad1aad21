"""Image payload <-> numpy conversion: round trips, colour maths, zero-copy, malformed input, ROS wrapper."""

from __future__ import annotations

import array
import struct

import cv2
import numpy as np
import pytest

from mim_perception.core import imageconv as ic
from mim_perception.core.errors import BadImageError

H, W = 6, 4  # even so every encoding (nv12, yuv422) accepts it
RNG = np.random.default_rng(0)


def native_sample(encoding: str, h: int = H, w: int = W) -> np.ndarray:
    """A random array in ``encoding``'s native layout."""
    shapes = {1: (h, w), 2: (h, w, 2), 3: (h, w, 3), 4: (h, w, 4)}
    if encoding in ("nv12", "nv21"):
        return RNG.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    if encoding in ("mono16", "16UC1"):
        return RNG.integers(0, 65536, (h, w), dtype=np.uint16)
    if encoding == "32FC1":
        return RNG.standard_normal((h, w)).astype(np.float32)
    channels = {"bgr8": 3, "rgb8": 3, "8UC3": 3, "bgra8": 4, "rgba8": 4,
                "uyvy": 2, "yuv422": 2, "yuyv": 2, "yuv422_yuy2": 2}.get(encoding, 1)
    return RNG.integers(0, 256, shapes[channels], dtype=np.uint8)


def pad_rows(data: bytes, rows: int, row_bytes: int, pad: int) -> bytes:
    """Insert ``pad`` junk bytes after every row."""
    return b"".join(data[r * row_bytes:(r + 1) * row_bytes] + b"\xee" * pad for r in range(rows))


# --- round trips ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ic.SUPPORTED_ENCODINGS)
def test_round_trip_every_encoding(encoding):
    a = native_sample(encoding)
    h, w, step, data = ic.encode_raw(a, encoding)
    assert (h, w) == (H, W)
    assert len(data) == step * a.shape[0]
    out = ic.decode_raw(encoding, h, w, step, False, data)
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)
    assert ic.to_bgr8(encoding, h, w, step, False, data).shape == (H, W, 3)


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "mono16", "32FC1", "uyvy", "nv12", "bayer_grbg8"])
@pytest.mark.parametrize("pad", [1, 3, 64])
def test_padded_step_decodes_to_a_strided_view(encoding, pad):
    a = native_sample(encoding)
    h, w, step, data = ic.encode_raw(a, encoding)
    padded = bytearray(pad_rows(data, a.shape[0], step, pad))
    out = ic.decode_raw(encoding, h, w, step + pad, False, padded)
    np.testing.assert_array_equal(out, a)
    assert np.shares_memory(out, np.frombuffer(padded, np.uint8))
    bgr = ic.to_bgr8(encoding, h, w, step + pad, False, padded)
    assert bgr.flags.c_contiguous
    np.testing.assert_array_equal(bgr, ic.to_bgr8(encoding, h, w, step, False, data))


@pytest.mark.parametrize(("encoding", "be_dtype"), [("mono16", ">u2"), ("16UC1", ">u2"), ("32FC1", ">f4")])
def test_big_endian_multibyte_is_swapped(encoding, be_dtype):
    a = native_sample(encoding)
    data = a.astype(be_dtype).tobytes()
    out = ic.decode_raw(encoding, H, W, W * a.itemsize, True, data)
    np.testing.assert_array_equal(out, a)
    assert out.dtype.isnative
    # the flag must matter: reading those bytes as little-endian gives different numbers
    assert not np.array_equal(ic.decode_raw(encoding, H, W, W * a.itemsize, False, data), a)


def test_big_endian_flag_is_irrelevant_for_8_bit_and_keeps_the_view():
    a = native_sample("bgr8")
    data = a.tobytes()
    out = ic.decode_raw("bgr8", H, W, W * 3, 1, data)
    np.testing.assert_array_equal(out, a)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


def test_big_endian_with_padding():
    a = native_sample("mono16")
    data = pad_rows(a.astype(">u2").tobytes(), H, W * 2, 3)
    np.testing.assert_array_equal(ic.decode_raw("mono16", H, W, W * 2 + 3, 1, data), a)


@pytest.mark.parametrize("encoding", ["mono16", "32FC1"])
def test_unaligned_buffer_start_converts_like_an_aligned_one(encoding):
    a = native_sample(encoding)
    unaligned = memoryview(b"x" + a.tobytes())[1:]
    step = W * a.itemsize
    out = ic.decode_raw(encoding, H, W, step, 0, unaligned)
    np.testing.assert_array_equal(out.view(np.uint8), a.view(np.uint8))
    np.testing.assert_array_equal(ic.to_bgr8(encoding, H, W, step, 0, unaligned),
                                  ic.to_bgr8(encoding, H, W, step, 0, a.tobytes()))


def test_trailing_bytes_are_ignored():
    a = native_sample("rgb8")
    _, _, step, data = ic.encode_raw(a, "rgb8")
    np.testing.assert_array_equal(ic.decode_raw("rgb8", H, W, step, 0, data + b"junk"), a)


def test_encode_accepts_big_endian_and_strided_input_and_writes_little_endian():
    a = native_sample("mono16")
    _, _, step, data = ic.encode_raw(a.astype(">u2"), "mono16")
    assert data == a.astype("<u2").tobytes() and step == W * 2
    big = native_sample("bgr8", H, 2 * W)
    _, w, _, data = ic.encode_raw(big[:, ::2], "bgr8")
    assert w == W and data == np.ascontiguousarray(big[:, ::2]).tobytes()
    assert ic.encode_raw(native_sample("mono8")[..., None], "mono8")[:2] == (H, W)


# --- zero copy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: array.array("B", b)])
def test_decode_is_zero_copy_for_every_buffer_type(wrap):
    a = native_sample("bgr8", 384 // 16, 640 // 16)
    buf = wrap(a.tobytes())
    out = ic.decode_raw("bgr8", a.shape[0], a.shape[1], a.shape[1] * 3, 0, buf)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    bgr = ic.to_bgr8("bgr8", a.shape[0], a.shape[1], a.shape[1] * 3, 0, buf)
    assert np.shares_memory(bgr, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(bgr, a)


def test_mutable_buffer_gives_writable_view_and_bytes_a_read_only_one():
    a = native_sample("mono8")
    buf = bytearray(a.tobytes())
    ic.decode_raw("mono8", H, W, W, 0, buf)[0, 0] = 7
    assert buf[0] == 7
    assert not ic.decode_raw("mono8", H, W, W, 0, bytes(buf)).flags.writeable


# --- colour conversions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("encoding", "pixel"), [
    ("rgb8", (255, 0, 0)), ("bgr8", (0, 0, 255)), ("8UC3", (0, 0, 255)),
    ("rgba8", (255, 0, 0, 9)), ("bgra8", (0, 0, 255, 9))])
def test_pure_red_becomes_bgr_0_0_255(encoding, pixel):
    a = np.tile(np.array(pixel, np.uint8), (H, W, 1))
    bgr = ic.to_bgr8(encoding, *ic.encode_raw(a, encoding)[:3], False, a.tobytes())
    assert bgr.dtype == np.uint8 and bgr.shape == (H, W, 3)
    assert (bgr == (0, 0, 255)).all()


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_becomes_grey(encoding):
    a = native_sample(encoding)
    bgr = ic.to_bgr8(encoding, H, W, W, 0, a.tobytes())
    for c in range(3):
        np.testing.assert_array_equal(bgr[..., c], a)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16_bit_scales_by_256(encoding):
    a = np.array([[0, 255, 0x8000, 0xFF00, 0xFFFF, 1000]], np.uint16)
    bgr = ic.to_bgr8(encoding, 1, 6, 12, 0, a.tobytes())
    np.testing.assert_array_equal(bgr[0, :, 1], [0, 1, 128, 255, 255, 4])


def test_32fc1_is_unit_intensity_clipped_with_nan_black():
    a = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf, -np.inf]], np.float32)
    bgr = ic.to_bgr8("32FC1", 1, 8, 32, 0, a.tobytes())
    np.testing.assert_array_equal(bgr[0, :, 2], [0, 0, 128, 255, 255, 0, 255, 0])


BAYER_RGB = {"r": 200, "g": 100, "b": 30}


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"])
def test_bayer_of_a_flat_colour_demosaics_to_that_colour(encoding):
    tile = encoding.removeprefix("bayer_").removesuffix("8")  # e.g. "rggb": top-left, top-right, …
    mosaic = np.zeros((8, 10), np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[dy::2, dx::2] = BAYER_RGB[tile[k]]
    bgr = ic.to_bgr8(encoding, 8, 10, 10, 0, mosaic.tobytes())
    inner = bgr[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(inner - (30, 100, 200)).max() <= 2, (encoding, inner[:4])


def bgr_to_uyvy_like(bgr: np.ndarray, code: int) -> bytes:
    return cv2.cvtColor(bgr, code).tobytes()


@pytest.mark.parametrize(("encoding", "code"), [("uyvy", cv2.COLOR_BGR2YUV_UYVY), ("yuv422", cv2.COLOR_BGR2YUV_UYVY),
                                                ("yuyv", cv2.COLOR_BGR2YUV_YUY2),
                                                ("yuv422_yuy2", cv2.COLOR_BGR2YUV_YUY2)])
def test_packed_yuv422(encoding, code):
    grey = np.zeros((H, W, 2), np.uint8)
    grey[...] = 128  # Y = U = V = 128 in both byte orders
    out = ic.to_bgr8(encoding, H, W, W * 2, 0, grey.tobytes())
    assert np.abs(out.astype(int) - 128).max() <= 2
    red = np.tile(np.array([0, 0, 255], np.uint8), (H, W, 1))
    back = ic.to_bgr8(encoding, H, W, W * 2, 0, bgr_to_uyvy_like(red, code))
    assert np.abs(back.astype(int) - (0, 0, 255)).max() <= 6
    # the two byte orders are not interchangeable: the wrong one must give a different colour
    other = "yuyv" if code == cv2.COLOR_BGR2YUV_UYVY else "uyvy"
    assert np.abs(ic.to_bgr8(other, H, W, W * 2, 0, bgr_to_uyvy_like(red, code)).astype(int) - (0, 0, 255)).max() > 50


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_nv12_of_a_flat_colour(encoding):
    bgr = np.tile(np.array([40, 160, 220], np.uint8), (H, W, 1))
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)  # Y plane, U plane, V plane
    n = H * W
    u, v = i420[n:n + n // 4], i420[n + n // 4:]
    uv = np.stack([u, v] if encoding == "nv12" else [v, u], axis=1).reshape(-1)
    out = ic.to_bgr8(encoding, H, W, W, 0, np.concatenate([i420[:n], uv]).tobytes())
    assert np.abs(out.astype(int) - (40, 160, 220)).max() <= 6


# --- malformed input ------------------------------------------------------------------------------------

GOOD = {"encoding": "bgr8", "height": H, "width": W, "step": W * 3, "is_bigendian": 0, "data": bytes(H * W * 3)}


@pytest.mark.parametrize(("changes", "keyword"), [
    ({"encoding": "bgr9"}, "unknown encoding"),
    ({"encoding": None}, "unknown encoding"),
    ({"height": 0}, "empty image"),
    ({"width": 0, "step": 0}, "empty image"),
    ({"height": -3}, "empty image"),
    ({"width": 2.5}, "integer"),
    ({"step": W * 3 - 1}, "step"),
    ({"data": bytes(H * W * 3 - 1)}, "too short"),
    ({"data": b""}, "too short"),
    ({"data": [0] * (H * W * 3)}, "bytes-like"),
    ({"data": "x" * (H * W * 3)}, "bytes-like"),
    ({"encoding": "uyvy", "width": 3, "step": 6}, "even width"),
    ({"encoding": "nv12", "height": 5, "step": W}, "even width and height"),
    ({"encoding": "nv12", "step": W, "data": bytes(H * W)}, "too short"),  # Y plane without chroma
    ({"encoding": "mono16", "step": W}, "step"),
])
def test_malformed_raw_raises_bad_image_error(changes, keyword):
    fields = {**GOOD, **changes}
    for fn in (ic.decode_raw, ic.to_bgr8):
        with pytest.raises(BadImageError, match=keyword):
            fn(**fields)


def test_unknown_encoding_lists_supported_ones():
    with pytest.raises(BadImageError) as e:
        ic.decode_raw("yuv420", 2, 2, 2, 0, bytes(8))
    assert all(enc in str(e.value) for enc in ("bgr8", "nv12", "bayer_rggb8"))


@pytest.mark.parametrize(("array_", "encoding", "keyword"), [
    (np.zeros((H, W, 3), np.float32), "bgr8", "dtype"),
    (np.zeros((H, W), np.uint8), "bgr8", "shape"),
    (np.zeros((H, W, 3), np.uint8), "mono8", "shape"),
    (np.zeros((H + 1, W), np.uint8), "nv12", "multiple of 3"),
    (np.zeros((0, W, 3), np.uint8), "bgr8", "empty"),
    (np.zeros((H, 3, 2), np.uint8), "yuyv", "even width"),
    (np.zeros((H, W), np.uint8), "foo", "unknown encoding"),
])
def test_encode_raw_rejects_mismatched_arrays(array_, encoding, keyword):
    with pytest.raises(BadImageError, match=keyword):
        ic.encode_raw(array_, encoding)


# --- compressed -----------------------------------------------------------------------------------------

def smooth_bgr(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8"])
def test_jpeg_round_trip(fmt):
    img = smooth_bgr()
    out = ic.decode_compressed(fmt, ic.encode_compressed(img, "jpeg", quality=95))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 3


def test_png_round_trip_is_exact_and_mono_becomes_grey_bgr():
    img = smooth_bgr()
    np.testing.assert_array_equal(ic.decode_compressed("png", ic.encode_compressed(img, "png")), img)
    mono = img[..., 0].copy()
    out = ic.decode_compressed("mono8; png compressed mono8", ic.encode_compressed(mono, "png"))
    np.testing.assert_array_equal(out, np.stack([mono] * 3, axis=-1))


def test_stored_rgb_is_swapped_to_bgr():
    img = smooth_bgr()
    data = ic.encode_compressed(img[..., ::-1].copy(), "png")  # bytes hold RGB order
    np.testing.assert_array_equal(ic.decode_compressed("rgb8; png compressed rgb8", data), img)


def test_compressed_format_matches_image_transport():
    assert ic.compressed_format("jpeg") == "bgr8; jpeg compressed bgr8"
    assert ic.parse_compressed_format(ic.compressed_format("png", mono=True)) == ("png", False)


def png_header(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)


@pytest.mark.parametrize(("fmt", "data", "keyword"), [
    ("jpeg", b"", "empty"),
    ("jpeg", b"\xff\xd8\xff\xe0 definitely not a jpeg", "corrupt"),
    ("png", b"hello world", "corrupt"),
    ("png", png_header(100_000, 100_000) + bytes(20), "too large"),
    ("tiff", b"\x00", "unknown compressed format"),
    ("", b"\x00", "unknown compressed format"),
    ("16UC1; compressedDepth png", b"\x00" * 20, "compressedDepth"),
    ("jpeg", 12, "bytes-like"),
])
def test_malformed_compressed_raises_bad_image_error(fmt, data, keyword):
    with pytest.raises(BadImageError, match=keyword):
        ic.decode_compressed(fmt, data)


def test_huge_jpeg_header_is_refused_before_decoding():
    data = bytearray(ic.encode_compressed(smooth_bgr(16, 16), "jpeg"))
    assert ic.peek_compressed_size(memoryview(data)) == (16, 16)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(BadImageError, match="too large"):
        ic.decode_compressed("jpeg", bytes(data))


@pytest.mark.parametrize(("array_", "fmt", "quality", "keyword"), [
    (np.zeros((4, 4, 3), np.float32), "jpeg", 90, "uint8"),
    (np.zeros((4, 4, 4), np.uint8), "jpeg", 90, "H×W×3"),
    (np.zeros((0, 4, 3), np.uint8), "png", 90, "empty"),
    (np.zeros((4, 4, 3), np.uint8), "jpeg", 101, "quality"),
    (np.zeros((4, 4, 3), np.uint8), "bmp", 90, "unknown compressed format"),
])
def test_encode_compressed_rejects_bad_input(array_, fmt, quality, keyword):
    with pytest.raises(BadImageError, match=keyword):
        ic.encode_compressed(array_, fmt, quality)


# --- ROS wrapper over real sensor_msgs messages ---------------------------------------------------------

@pytest.fixture
def msgs():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    from mim_perception.ros import image_msgs
    return sensor_msgs, image_msgs


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono16", "32FC1", "nv12", "yuyv", "bayer_rggb8"])
def test_ros_numpy_image_round_trip(msgs, encoding):
    sensor_msgs, im = msgs
    a = native_sample(encoding)
    msg = im.numpy_to_image(a, encoding, frame_id="cam0")
    assert isinstance(msg, sensor_msgs.Image) and isinstance(msg.data, array.array)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (H, W, encoding, 0)
    assert msg.header.frame_id == "cam0"
    np.testing.assert_array_equal(im.image_to_numpy(msg), a)
    assert im.image_to_bgr8(msg).shape == (H, W, 3)


def test_ros_received_message_decodes_as_a_view(msgs):
    sensor_msgs, im = msgs
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    a = native_sample("bgr8")
    header = Header(frame_id="cam1")
    header.stamp.sec = 5
    wire = serialize_message(im.numpy_to_image(a, "bgr8", header=header))
    msg = deserialize_message(wire, sensor_msgs.Image)  # what a subscription callback receives
    assert isinstance(msg.data, array.array)
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("cam1", 5)
    out = im.image_to_bgr8(msg)
    np.testing.assert_array_equal(out, a)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_ros_big_endian_message(msgs):
    sensor_msgs, im = msgs
    a = native_sample("16UC1")
    msg = sensor_msgs.Image(height=H, width=W, encoding="16UC1", is_bigendian=1, step=W * 2)
    msg.data = a.astype(">u2").tobytes()
    np.testing.assert_array_equal(im.image_to_numpy(msg), a)


def test_ros_compressed_round_trip(msgs):
    sensor_msgs, im = msgs
    from rclpy.serialization import deserialize_message, serialize_message

    img = smooth_bgr()
    msg = im.bgr8_to_compressed(img, fmt="png")
    assert msg.format == "bgr8; png compressed bgr8"
    back = deserialize_message(serialize_message(msg), sensor_msgs.CompressedImage)
    np.testing.assert_array_equal(im.compressed_to_bgr8(back), img)
    assert im.bgr8_to_compressed(img[..., 0].copy()).format == "mono8; jpeg compressed mono8"


def test_ros_malformed_message_raises_bad_image_error(msgs):
    sensor_msgs, im = msgs
    msg = sensor_msgs.Image(height=H, width=W, encoding="bgr8", step=W * 3)
    msg.data = bytes(10)
    with pytest.raises(BadImageError, match="too short"):
        im.image_to_bgr8(msg)
    with pytest.raises(BadImageError, match="corrupt"):
        im.compressed_to_bgr8(sensor_msgs.CompressedImage(format="jpeg", data=b"\xff\xd8garbage"))
