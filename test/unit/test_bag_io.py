"""Bag I/O without ROS: write/read round trips, custom types, replay planning, bag-from-video, errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from mim_perception import cli
from mim_perception.bags.from_video import VideoBagOptions, bag_from_video, intrinsics
from mim_perception.bags.info import bag_info
from mim_perception.bags.io import (
    BagMessage,
    BagWriter,
    bag_summary,
    has_leading_header,
    header_stamp_ns,
    iter_messages,
    make_typestore,
    open_reader,
    register_msg_dirs,
    topic_types,
    with_header_stamp,
)
from mim_perception.core.errors import BadImageError, BagError
from mim_perception.ros.replay import ReplayOptions, loop_period_ns, parse_remap, plan, replay_bag

T0 = 1_700_000_000_000_000_000
IMG = "sensor_msgs/msg/CompressedImage"
INFO = "sensor_msgs/msg/CameraInfo"


def _cimg(store, stamp_ns: int, payload: bytes) -> object:
    T = store.types
    stamp = T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return T[IMG](header=T["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"), format="jpeg",
                  data=np.frombuffer(payload, np.uint8))


def _write_bag(path: Path, storage: str = "mcap", n: int = 10, period_ns: int = 100_000_000) -> list[bytes]:
    store = make_typestore()
    raws = []
    with BagWriter(path, storage, store) as w:
        for i in range(n):
            ts = T0 + i * period_ns
            raw = bytes(store.serialize_cdr(_cimg(store, ts, bytes([i]) * (i + 1)), IMG))
            raws.append(raw)
            w.write("/cam/image/compressed", IMG, ts, raw)
            if i % 2 == 0:
                w.write_msg("/status", "std_msgs/msg/String", ts + 1, store.types["std_msgs/msg/String"](data=f"s{i}"))
    return raws


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_read_round_trip_keeps_bytes_order_and_types(tmp_path, storage):
    bag = tmp_path / "bag"
    raws = _write_bag(bag, storage)
    s = bag_summary(bag)
    assert s.storage == storage and s.message_count == 15
    assert topic_types(bag) == {"/cam/image/compressed": IMG, "/status": "std_msgs/msg/String"}
    msgs = list(iter_messages(bag, ["/cam/image/compressed"]))
    assert [m.data for m in msgs] == raws
    assert [m.timestamp_ns for m in msgs] == [T0 + i * 100_000_000 for i in range(10)]
    everything = [m.timestamp_ns for m in iter_messages(bag)]
    assert everything == sorted(everything) and len(everything) == 15
    # header stamp read straight from the CDR bytes equals the deserialised one
    store = make_typestore()
    assert header_stamp_ns(raws[3]) == T0 + 300_000_000
    assert store.deserialize_cdr(raws[3], IMG).header.stamp.nanosec == 300_000_000


def test_start_duration_window_and_bare_mcap_file(tmp_path):
    _write_bag(tmp_path / "bag")
    window = list(iter_messages(tmp_path / "bag", ["/cam/image/compressed"], start=0.25, duration=0.3))
    assert [m.timestamp_ns - T0 for m in window] == [300_000_000, 400_000_000, 500_000_000]
    bare = next((tmp_path / "bag").glob("*.mcap"))
    assert len(list(iter_messages(bare))) == 15
    (tmp_path / "bag" / "metadata.yaml").unlink()  # a crashed recorder: lone .mcap in a folder
    assert len(list(iter_messages(tmp_path / "bag"))) == 15


def test_with_header_stamp_patches_only_the_stamp(tmp_path):
    store = make_typestore()
    raw = bytes(store.serialize_cdr(_cimg(store, T0, b"xyz"), IMG))
    patched = with_header_stamp(raw, T0 + 5_123_456_789)
    msg = store.deserialize_cdr(patched, IMG)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == ((T0 + 5_123_456_789) // 10**9, 123_456_789)
    assert bytes(msg.data) == b"xyz" and msg.header.frame_id == "cam" and len(patched) == len(raw)
    assert has_leading_header(IMG, "", store) and not has_leading_header("std_msgs/msg/String", "", store)
    assert has_leading_header("x/msg/Y", "# comment\nstd_msgs/Header header\nint32 a")


def test_register_msg_dirs_custom_types_and_write_them(tmp_path):
    pkg = tmp_path / "interfaces" / "my_msgs" / "msg"
    pkg.mkdir(parents=True)
    (pkg / "Thing.msg").write_text("std_msgs/Header header\nPart[] parts\nfloat32 score  # 0..1\n")
    (pkg / "Part.msg").write_text("string name\nint32 id\n")
    store = make_typestore()
    names = register_msg_dirs(store, [tmp_path / "interfaces"])
    assert names == ["my_msgs/msg/Part", "my_msgs/msg/Thing"]
    T = store.types
    thing = T["my_msgs/msg/Thing"](header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
        sec=3, nanosec=4), frame_id="f"), parts=[T["my_msgs/msg/Part"](name="a", id=7)], score=0.5)
    with BagWriter(tmp_path / "bag", "sqlite3", msg_dirs=[pkg]) as w:
        w.write_msg("/things", "my_msgs/msg/Thing", 10, thing)
    (m,) = iter_messages(tmp_path / "bag")
    assert m.msgtype == "my_msgs/msg/Thing" and header_stamp_ns(m.data) == 3_000_000_004
    assert store.deserialize_cdr(m.data, "my_msgs/msg/Thing").parts[0].id == 7
    with pytest.raises(BagError, match="does not exist"):
        register_msg_dirs(store, [tmp_path / "nope"])


def test_unknown_type_is_a_clear_error(tmp_path):
    with BagWriter(tmp_path / "bag") as w, pytest.raises(BagError, match="no_such_msgs/msg/X is unknown"):
        w.add_topic("/x", "no_such_msgs/msg/X")


def test_bad_bag_paths_raise_bag_error(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        open_reader(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BagError, match="not a bag"):
        bag_summary(tmp_path / "empty_dir")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="not a bag"):
        list(iter_messages(tmp_path / "notes.txt"))
    (tmp_path / "junk.mcap").write_bytes(b"\x00" * 64)
    with pytest.raises(BagError, match="not a readable bag"):
        bag_summary(tmp_path / "junk.mcap")
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "empty_dir")


def test_missing_topic_names_it_and_lists_available(tmp_path):
    _write_bag(tmp_path / "bag")
    with pytest.raises(BagError, match=r"no topic /front/image.*available topics: /cam/image/compressed, /status"):
        list(iter_messages(tmp_path / "bag", ["/front/image"]))
    # replay checks before touching ROS
    with pytest.raises(BagError, match="/front/image"):
        replay_bag(tmp_path / "bag", topics=("/front/image",))
    with pytest.raises(BagError, match="/nope"):
        replay_bag(tmp_path / "bag", remaps=(("/nope", "/x"),))


# ------------------------------------------------------------------------------------- planning

def _msgs(n: int, period_ns: int = 100_000_000, topic: str = "/a") -> list[BagMessage]:
    return [BagMessage(topic, IMG, T0 + i * period_ns, bytes([i])) for i in range(n)]


def test_plan_rate_scaling_and_remaps():
    events = list(plan(lambda: _msgs(5), ReplayOptions(rate=2.0, clock=False, remaps=(("/a", "/b"),))))
    assert [e.due_ns for e in events] == [0, 50_000_000, 100_000_000, 150_000_000, 200_000_000]
    assert {e.topic for e in events} == {"/b"} and all(e.clock_ns is None for e in events)


def test_plan_loops_keep_clock_and_stamps_monotonic():
    events = list(plan(lambda: _msgs(4), ReplayOptions(loops=3, clock_hz=0)))
    msgs = [e for e in events if e.topic]
    assert len(msgs) == 12 and [e.play for e in msgs] == [0] * 4 + [1] * 4 + [2] * 4
    period = loop_period_ns(T0, T0 + 300_000_000, 4)
    assert period == 400_000_000  # span + one mean gap
    clocks = [e.clock_ns for e in events if e.clock_ns is not None]
    assert all(b > a for a, b in itertools.pairwise(clocks)) and len(clocks) == 12
    assert [e.stamp_shift_ns for e in msgs][4::4] == [period, 2 * period]
    dues = [e.due_ns for e in events]
    assert dues == sorted(dues) and dues[-1] == 11 * 100_000_000
    # two topics sharing stamps (image + CameraInfo): the loop still advances by one frame period
    both = lambda: sorted(_msgs(4) + _msgs(4, topic="/info"), key=lambda m: m.timestamp_ns)  # noqa: E731
    two = [e for e in plan(both, ReplayOptions(loops=2, clock=False)) if e.play == 1]
    assert two[0].stamp_shift_ns == 400_000_000 and len(two) == 8


def test_plan_clock_ticks_fill_gaps_and_stop_is_honoured():
    events = list(plan(lambda: _msgs(2, period_ns=1_000_000_000), ReplayOptions(clock_hz=10)))
    ticks = [e for e in events if e.topic is None]
    assert len(ticks) == 9 and all(e.clock_ns is not None for e in ticks)
    calls = iter(range(1000))
    forever = plan(lambda: _msgs(3), ReplayOptions(loops=0, clock=False), stop=lambda: next(calls) > 20)
    assert 3 < len(list(forever)) < 40


def test_parse_remap_and_options_validation():
    assert parse_remap("/a:=/b") == ("/a", "/b") and parse_remap("/a=/b") == ("/a", "/b")
    with pytest.raises(BagError):
        parse_remap("a-b")
    with pytest.raises(BagError, match="rate"):
        ReplayOptions(rate=0)
    with pytest.raises(BagError, match="qos"):
        ReplayOptions(qos="fast")


# -------------------------------------------------------------------------------- bag-from-video

def _png_frames(folder: Path, n: int, w: int = 64, h: int = 48) -> None:
    folder.mkdir()
    for i in range(n):  # names sort wrongly as strings (frame10 < frame2): natural order is expected
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((h, w, 3), (i * 20, 100, 255 - i * 20), np.uint8))


def test_bag_from_png_folder_raw_images_with_camera_info(tmp_path):
    _png_frames(tmp_path / "frames", 12)
    stats = bag_from_video(tmp_path / "frames", tmp_path / "bag", compressed=False, fps=10, start_time=100.0,
                           storage="sqlite3")
    assert (stats.frames, stats.width, stats.height, stats.image_topic) == (12, 64, 48, "/camera/image_raw")
    store = make_typestore()
    imgs = [store.deserialize_cdr(m.data, m.msgtype) for m in iter_messages(tmp_path / "bag", ["/camera/image_raw"])]
    infos = [store.deserialize_cdr(m.data, m.msgtype) for m in iter_messages(tmp_path / "bag", [stats.info_topic])]
    assert len(imgs) == len(infos) == 12
    assert [int(im.data[0]) for im in imgs] == [i * 20 for i in range(12)]  # natural sort, bgr8 order
    assert imgs[0].encoding == "bgr8" and imgs[0].step == 64 * 3 and imgs[0].header.frame_id == "camera_optical_frame"
    stamps = [im.header.stamp.sec + im.header.stamp.nanosec * 1e-9 for im in imgs]
    assert stamps == pytest.approx([100.0 + i / 10 for i in range(12)])
    assert [i.header.stamp for i in infos] == [im.header.stamp for im in imgs]
    fx = 32 / math.tan(math.radians(30))
    assert list(infos[0].k) == pytest.approx([fx, 0, 32, 0, fx, 24, 0, 0, 1])
    assert infos[0].width == 64 and infos[0].distortion_model == "plumb_bob" and list(infos[0].d) == [0] * 5


def test_bag_from_folder_compressed_resized_with_explicit_intrinsics(tmp_path):
    _png_frames(tmp_path / "frames", 3)
    stats = bag_from_video(tmp_path / "frames", tmp_path / "bag", width=32, jpeg_quality=95, fx=50.0, cy=7.0)
    assert (stats.width, stats.height) == (32, 24) and stats.k == (50.0, 0.0, 16.0, 0.0, 50.0, 7.0, 0.0, 0.0, 1.0)
    store = make_typestore()
    msgs = list(iter_messages(tmp_path / "bag", [stats.image_topic]))
    img = store.deserialize_cdr(msgs[2].data, IMG)
    assert "jpeg" in img.format
    decoded = cv2.imdecode(np.asarray(img.data), cv2.IMREAD_COLOR)
    assert decoded.shape == (24, 32, 3) and abs(int(decoded[5, 5, 0]) - 40) <= 3
    assert intrinsics(640, 480, VideoBagOptions(fov_deg=90))[0] == pytest.approx(320.0)


def test_bag_from_video_file(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG/AVI")
    for i in range(8):
        writer.write(np.full((48, 64, 3), i * 30, np.uint8))
    writer.release()
    stats = bag_from_video(path, tmp_path / "bag", start_time=0.0)
    assert stats.frames == 8 and stats.fps == pytest.approx(15.0)
    info = bag_info(tmp_path / "bag")
    rates = {t.name: t.rate_hz for t in info.topics}
    assert rates["/camera/image_raw/compressed"] == pytest.approx(15.0, rel=1e-3)


def test_bag_from_video_bad_sources(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        bag_from_video(tmp_path / "missing.mp4", tmp_path / "bag")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no images"):
        bag_from_video(tmp_path / "empty", tmp_path / "bag")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(BadImageError, match="cannot open video"):
        bag_from_video(tmp_path / "broken.mp4", tmp_path / "bag2")


# ------------------------------------------------------------------------------------------- CLI

def test_cli_bag_info_and_errors(tmp_path, capsys):
    _write_bag(tmp_path / "bag", n=11)
    assert cli.main(["bag-info", str(tmp_path / "bag")]) == 0
    out = capsys.readouterr().out
    assert "/cam/image/compressed" in out and "10.00 Hz" in out and "duration:   1.000 s" in out
    assert cli.main(["bag-info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    frames = tmp_path / "frames"
    _png_frames(frames, 2)
    assert cli.main(["bag-from-video", str(frames), "-o", str(tmp_path / "v"), "--raw", "--no-progress"]) == 0
    assert topic_types(tmp_path / "v")["/camera/image_raw"] == "sensor_msgs/msg/Image"


def test_replay_and_record_cli_defaults_come_from_the_options():
    from mim_perception.ros.record import RecordOptions

    parser = cli.build_parser({"replay": cli.VERBS["replay"], "record": cli.VERBS["record"]})
    a = parser.parse_args(["replay", "b"])
    d = ReplayOptions()
    assert (a.loops, a.rate, a.qos, a.clock, a.clock_hz, a.delay) == (d.loops, d.rate, d.qos, d.clock, d.clock_hz,
                                                                      d.delay)
    assert parser.parse_args(["replay", "b", "--loop"]).loops == 0
    assert parser.parse_args(["replay", "b", "--no-clock", "--remap", "/a:=/b"]).clock is False
    r = parser.parse_args(["record", "/a", "/b", "--storage", "sqlite3"])
    assert r.topics == ["/a", "/b"] and r.storage == "sqlite3" and r.stamp == RecordOptions().stamp
