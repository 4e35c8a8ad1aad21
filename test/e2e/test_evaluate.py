"""End to end: `mim-perception evaluate` replays a labelled bag through the real node graph, and its numbers equal
the offline evaluators' (training.metrics, tools.evaluate_tracking) run on the same frames without ROS."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mim_perception.bags.io import bag_summary, make_typestore, repo_msg_dirs
from mim_perception.cli import main
from mim_perception.core.config import load_config
from mim_perception.core.labels import LabelSpace
from mim_perception.core.pipeline import Perceiver, PerceptionConfig
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig
from mim_perception.evaluation.graph_driver import ReportConfig, analyse
from mim_perception.evaluation.media import decode_image
from mim_perception.evaluation.mot import score
from mim_perception.evaluation.records import FrameLog, gt_from_bag, gt_topics, read_frames
from mim_perception.evaluation.scoring import mot_table
from mim_perception.inference.backends import BackendConfig, load_backend
from mim_perception.training.metrics import SegMeter, evaluate_detections

FRAMES = 16
TOPIC = "/camera/front/image_raw/compressed"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("evaluate")
    assert main(["synth", str(root / "synth"), "--frames", str(FRAMES), "--fps", "5", "--seed", "21", "--bag",
                 "--quality", "85"]) == 0
    bag, out = root / "synth" / "bag", root / "run"
    assert main(["evaluate", str(bag), "--out", str(out), "--fast"]) == 0
    return bag, out, json.loads((out / "report.json").read_text())


def offline(bag: Path) -> dict[str, Any]:
    """The shipped model through Perceiver (same configs as the node) on the bag's frames, scored offline."""
    backend, _, _ = load_backend(load_config(BackendConfig, None, prefix="backend."))
    perceiver = Perceiver(backend, load_config(PerceptionConfig, None, prefix="perception."),
                          Tracker(load_config(TrackerConfig, None, prefix="tracker.")))
    labels = LabelSpace.load()
    store = make_typestore(repo_msg_dirs())
    frames = read_frames(bag, TOPIC)
    det_topic, seg_topic = gt_topics(TOPIC)
    gts = gt_from_bag(bag, [f[0] for f in frames], det_topic, seg_topic, labels)
    assert gts is not None
    preds, tracks = [], []
    meter = SegMeter(len(labels.segmentation), labels.segmentation)
    for (stamp, data, msgtype), gt in zip(frames, gts, strict=True):
        r = perceiver.process(decode_image(data, msgtype, store), stamp / 1e9)
        preds.append((r.detections.boxes, r.detections.scores, r.detections.labels))
        c = r.tracks.confirmed()
        tracks.append((c.ids, c.boxes, c.labels))
        assert gt.seg is not None
        seg = cv2.resize(r.seg, gt.seg.shape[::-1], interpolation=cv2.INTER_NEAREST)
        meter.update(np.where(seg < len(labels.segmentation), seg, len(labels.segmentation) - 1), gt.seg)
    det = evaluate_detections(preds, [(g.boxes, g.labels) for g in gts], labels.detection)
    trk = score(mot_table([(g.ids, g.boxes, g.labels) for g in gts]), mot_table(tracks), len(gts))
    return {"detection": det, "segmentation": meter.compute(), "tracking": trk}


@pytest.mark.timeout(240)
def test_graph_numbers_equal_offline_evaluators(evaluated: tuple[Path, Path, dict[str, Any]]) -> None:
    bag, _, report = evaluated
    assert report["frames"] == {"total": FRAMES, "answered": FRAMES, "answered_fraction": 1.0, "mode": "fast",
                                "rate": 1.0}
    assert report["drops"]["total"] == 0
    ref = offline(bag)
    for key in ("mAP", "AP50", "AP75"):
        assert report["detection"][key] == pytest.approx(ref["detection"][key], abs=1e-6), key
    for name, ap in ref["detection"]["per_class_AP50"].items():
        got = report["detection"]["per_class_AP50"][name]
        assert (got is None and math.isnan(ap)) or got == pytest.approx(ap, abs=1e-6), name
    assert report["segmentation"]["mIoU"] == pytest.approx(ref["segmentation"]["mIoU"], abs=1e-9)
    for key in ("HOTA", "MOTA", "IDF1", "IDSW"):
        assert report["tracking"][key] == pytest.approx(ref["tracking"][key], abs=1e-6), key
    # the model sees something: a report of zeros would also "match"
    assert report["detection"]["AP50"] > 0.02 and report["segmentation"]["mIoU"] > 0.2


def test_report_artifacts(evaluated: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, report = evaluated
    page = (out / "report.html").read_text()
    for section in ("Latency per stage", "Detection PR curves", "Segmentation", "Tracking", "Sample frames"):
        assert section in page, section
    assert report["latency"]["end_to_end_ms"]["n"] == FRAMES and report["latency"]["inference_ms"]["p50"] > 0
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    ok, first = video.read()
    assert ok and first.shape == (384, 640, 3)
    topics = bag_summary(out / "foxglove").topics
    assert topics["/front/perception/annotations"].count == FRAMES
    assert topics["/front/perception/annotations"].msgtype == "foxglove_msgs/msg/ImageAnnotations"
    assert topics[TOPIC].count == FRAMES


def test_baseline_and_thresholds_gate(evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, out, report = evaluated
    shutil.copytree(out / "outputs", tmp_path / "outputs")
    (tmp_path / "base.json").write_text(json.dumps({**report, "headline": {**report["headline"], "detection.AP50": 0.0}}))
    gate = tmp_path / "gate.yaml"
    gate.write_text("detection.AP50: {min: 0.99}\ndrops.total: {max: 0}\nsegmentation.mIoU: {min: 0.0, max: 1.0}\n")
    log = FrameLog.load(out / "frames.json")
    again = analyse(bag, tmp_path, log, "front", ReportConfig(baseline=tmp_path / "base.json", thresholds=gate, video=False,
                                                        foxglove=False))
    assert again["violations"] == [f"detection.AP50 = {report['headline']['detection.AP50']:.4g} < min 0.99"]
    assert again["baseline"]["detection.AP50"]["delta"] == pytest.approx(report["headline"]["detection.AP50"])
    assert "Against baseline" in (tmp_path / "report.html").read_text()


@pytest.mark.timeout(120)
def test_cli_gate_exit_status(evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    bag, _, _ = evaluated
    gate = tmp_path / "gate.yaml"
    gate.write_text("frames.answered_fraction: {min: 1.0}\ndetection.AP50: {min: 0.999}\n")
    rc = main(["evaluate", str(bag), "--out", str(tmp_path / "run"), "--max-frames", "3", "--no-video",
               "--thresholds", str(gate)])
    assert rc == 3
    assert main(["evaluate", str(bag), "--out", str(tmp_path / "run")]) == 2   # refuses to overwrite a run


def test_rerun_recording_when_rerun_sdk_is_installed(evaluated: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    pytest.importorskip("rerun", reason="optional extra: pip install -r requirements/viz.txt")
    from mim_perception.evaluation.records import outputs_from_bag
    from mim_perception.evaluation.rerun_log import write_rerun

    _, out, _ = evaluated
    log = FrameLog.load(out / "frames.json")
    outs, drift = outputs_from_bag(out / "outputs", "/front/perception/out", log.stamps_ns, LabelSpace.load())
    n = write_rerun(tmp_path / "run.rrd", out / "outputs", log, outs, drift, LabelSpace.load(), "front")
    data = (tmp_path / "run.rrd").read_bytes()
    assert n == FRAMES and data[:4] == b"RRF2" and len(data) > FRAMES * 10_000   # a JPEG frame each, at least
