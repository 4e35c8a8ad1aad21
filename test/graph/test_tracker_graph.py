"""Real rclpy nodes in-process: the runner brings up the standalone tracker; Detection2DArray in -> tracks out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mim_perception_msgs.msg import Track, TrackArray
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from mim_perception.core.errors import MimPerceptionError
from mim_perception.ros import qos
from mim_perception.ros.detection_msgs import arrays_to_detections
from mim_perception.ros.runner import GraphRunner, graph_from_args

CAMERA = "test"
DETECTIONS = f"/{CAMERA}/perception/out/detections"  # what the graph description remaps ~/in/detections to
TRACKS = f"/{CAMERA}/tracker/out/tracks"
TRACK_DETS = f"/{CAMERA}/tracker/out/detections"

PARAMS = ("/**:\n  ros__parameters:\n    graph:\n      camera_monitor: false\n      perception: false\n"
          "      standalone_tracker: true\n"
          "    tracker_node:\n      diagnostics_period: 0.2\n")


def _detections(stamp_s: float, objects: list[tuple[float, float, str]]) -> Detection2DArray:
    """objects: (x, y, class) of 40×80 boxes, score 0.9."""
    boxes = np.array([[x, y, x + 40, y + 80] for x, y, _ in objects], float)
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = int(stamp_s), round((stamp_s % 1) * 1e9)
    return arrays_to_detections(header, boxes, np.full(len(boxes), 0.9), [c for _, _, c in objects])


def _stamp(msg: object) -> float:
    s = msg.header.stamp  # type: ignore[attr-defined]
    return s.sec + s.nanosec * 1e-9


@pytest.fixture
def graph(ros_context, probe, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS)
    _, specs = graph_from_args(str(params), [f"{CAMERA}=/cam/{CAMERA}/image_raw"], None)
    assert [s.name for s in specs] == ["tracker"]
    runner = GraphRunner(specs, context=ros_context, threads=2).start()
    try:
        yield runner, *probe
    finally:
        runner.stop()


def test_tracks_keep_ids_stamps_and_classes_and_resets_are_diagnosed(graph):
    runner, probe, spin = graph
    tracks: list[TrackArray] = []
    track_dets: list[Detection2DArray] = []
    diags: list[DiagnosticStatus] = []
    probe.create_subscription(TrackArray, TRACKS, tracks.append, qos.RELIABLE)
    probe.create_subscription(Detection2DArray, TRACK_DETS, track_dets.append, qos.RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics",
                              lambda m: diags.extend(s for s in m.status if s.hardware_id == CAMERA), qos.RELIABLE)
    pub = probe.create_publisher(Detection2DArray, DETECTIONS, qos.RELIABLE)
    node = runner.nodes[0]
    wait_for(lambda: pub.get_subscription_count() > 0, 10, spin, "the tracker to subscribe")
    # discovery is two-sided: also wait until the tracker's publishers see the probe, or early messages are lost
    wait_for(lambda: node.tracks_pub.get_subscription_count() > 0 and node.det_pub.get_subscription_count() > 0, 10,
             spin, "the probe to be matched by the tracker's publishers")

    t0, n = 1000.0, 30
    sent = []
    for k in range(n):
        stamp = t0 + k / 15  # two objects crossing paths in x at 15 Hz; a car and a pedestrian
        sent.append(stamp)
        pub.publish(_detections(stamp, [(100 + 6 * k, 100, "car"), (400 - 6 * k, 110, "pedestrian")]))
        # lock-step: the probe's keep-last-10 queues must not overflow while it spins one callback at a time
        wait_for(lambda k=k: len(tracks) > k and len(track_dets) > k, 5, spin, f"outputs of frame {k}")
    assert [round(_stamp(m), 6) for m in tracks] == [round(s, 6) for s in sent]
    assert all(m.header.frame_id == "cam_optical" for m in tracks + track_dets)
    ids_by_class: dict[str, set[int]] = {}
    for m in tracks:
        for t in m.tracks:
            assert t.state == Track.CONFIRMED  # both seen every frame: nothing tentative or lost
            ids_by_class.setdefault(t.class_id, set()).add(t.id)
    assert {k: len(v) for k, v in ids_by_class.items()} == {"car": 1, "pedestrian": 1}
    car = next(t for t in tracks[-1].tracks if t.class_id == "car")
    assert car.velocity_x == pytest.approx(6 * 15, rel=0.15) and car.hits == n
    assert car.age == pytest.approx((n - 1) / 15, abs=1e-3)
    assert {d.id for d in track_dets[-1].detections} == {str(t.id) for t in tracks[-1].tracks}
    assert all(math.isclose(d.results[0].hypothesis.score, 0.9, rel_tol=1e-6) for d in track_dets[-1].detections)

    # a bag loop: the stamp jumps back -> reset, counted and explained; garbage boxes are dropped and counted
    diags.clear()
    bad = _detections(t0 + 0.5, [(100, 100, "car")])
    bad.detections[0].bbox.size_x = float("nan")
    pub.publish(bad)
    wait_for(lambda: len(tracks) > n, 5, spin, "tracks of the bag-loop frame")
    pub.publish(_detections(t0 + 0.6, [(100, 100, "car")]))
    wait_for(lambda: any(d.level == DiagnosticStatus.WARN and "backwards" in d.message for d in diags), 5, spin,
             "a WARN diagnostic about the reset")
    values = {kv.key: kv.value for kv in next(d for d in diags if "backwards" in d.message).values}
    assert values["resets_backwards"] == "1" and values["dropped_invalid"] == "1" and int(values["frames"]) > n
    pub.publish(_detections(t0 + 0.7, [(101, 100, "car")]))  # second hit: the new track is confirmed
    wait_for(lambda: len(tracks) >= n + 3, 5, spin, "tracks after the reset")
    new_ids = {t.id for t in tracks[-1].tracks}
    assert new_ids and new_ids.isdisjoint(set().union(*ids_by_class.values()))  # ids are never reused
    assert node.tracker.stats.resets_backwards == 1


def test_typo_in_tracker_parameters_fails_configure_with_its_name(ros_context, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text(PARAMS + "    tracker:\n      hihg_score: 0.5\n")
    _, specs = graph_from_args(str(params), [f"{CAMERA}=/cam/{CAMERA}/image_raw"], None)
    with pytest.raises(MimPerceptionError, match="hihg_score"):
        GraphRunner(specs, context=ros_context).start()


def test_track_messages_carry_boxes_classes_and_ids():
    from mim_perception.core.tracking.tracker import Tracks
    from mim_perception.ros.track_msgs import ClassVocabulary, tracks_to_detections, tracks_to_msg

    vocab = ClassVocabulary()
    assert vocab.labels(["car", "bus", "car"]).tolist() == [0, 1, 0] and vocab.name(1) == "bus" and vocab.name(7) == "7"
    tracks = Tracks(ids=np.array([5, 9]), boxes=np.array([[10, 20, 50, 100], [0, 0, 4, 2]], np.float32),
                    velocities=np.array([[3, -1], [0, 0]], np.float32), scores=np.array([0.9, 0.4], np.float32),
                    labels=np.array([1, 0], np.int32), states=np.array([1, 2], np.uint8), hits=np.array([4, 1], np.int32),
                    ages=np.array([0.5, 0.0], np.float32), det_index=np.array([0, -1]))
    header = Header(frame_id="cam")
    msg = tracks_to_msg(header, tracks, vocab)
    t = msg.tracks[0]
    assert (t.id, t.class_id, t.state, t.hits) == (5, "bus", Track.CONFIRMED, 4) and msg.tracks[1].state == Track.LOST
    assert (t.bbox.center.position.x, t.bbox.center.position.y, t.bbox.size_x, t.bbox.size_y) == (30, 60, 40, 80)
    assert (t.velocity_x, t.velocity_y) == (3, -1) and t.age == pytest.approx(0.5) and t.score == pytest.approx(0.9)
    dets = tracks_to_detections(header, tracks, vocab)
    assert [d.id for d in dets.detections] == ["5", "9"] and dets.header.frame_id == "cam"
    assert [d.results[0].hypothesis.class_id for d in dets.detections] == ["bus", "car"]
