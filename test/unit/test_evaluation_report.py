"""ROS-free parts of `mim-perception evaluate`: scoring helpers, thresholds gate, baseline, parameter overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from mim_perception.core.config import override_params_file
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.evaluation.records import FrameLog, FrameOutput, GroundTruth, gt_from_dir, gt_topics
from mim_perception.evaluation.report import baseline_diff, check_thresholds, load_thresholds, write_html, write_json
from mim_perception.evaluation.scoring import HEADLINE, lookup, mot_table, score_run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "synth_labelled"


def _run(n: int = 4, answered: int = 3) -> tuple[FrameLog, list[GroundTruth], list[FrameOutput]]:
    box = np.array([[10.0, 10.0, 50.0, 40.0]])
    gts = [GroundTruth(box + i, np.array([0]), np.array([7]), np.zeros((8, 8), np.uint8)) for i in range(n)]
    outs = [FrameOutput() for _ in range(n)]
    for i in range(answered):
        outs[i] = FrameOutput(boxes=box + i, scores=np.array([0.9]), labels=np.array([0]), seg=np.zeros((4, 4), np.uint8),
                              track_ids=np.array([1]), track_boxes=box + i, track_labels=np.array([0]),
                              latency={s: 1.0 for s in ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms",
                                                         "tracking_ms", "publish_ms", "pipeline_ms")},
                              drops=(0, n - answered, 0), has_detections=True)
    stamps = [1_000_000_000 * (i + 1) for i in range(n)]
    log = FrameLog("/camera/front/image_raw", stamps, stamps, stamps,
                   [s + 5_000_000 if i < answered else None for i, s in enumerate(stamps)], "realtime", 1.0)
    return log, gts, outs


def test_score_run_counts_unanswered_frames_as_drops_and_scores_the_rest() -> None:
    log, gts, outs = _run()
    r = score_run(log, gts, outs, [], LabelSpace.load(), 1e-4)
    assert r["frames"]["answered"] == 3 and r["drops"]["without_output"] == 1 and r["drops"]["busy"] == 1
    assert r["detection"]["AP50"] == pytest.approx(1.0)
    assert r["segmentation"]["mIoU"] == pytest.approx(1.0)          # all-road prediction on all-road truth
    assert r["tracking"]["IDF1"] == pytest.approx(1.0) and r["tracking"]["IDSW"] == 0
    assert r["latency"]["end_to_end_ms"]["p50"] == pytest.approx(5.0) and r["latency"]["end_to_end_ms"]["n"] == 3
    assert set(r["headline"]) == set(HEADLINE)
    assert math.isnan(r["headline"]["drift.alarm_fraction"])         # no drift window completed


def test_score_run_without_ground_truth_still_reports_latency_and_drops() -> None:
    log, _, outs = _run()
    r = score_run(log, None, outs, [], LabelSpace.load(), 1e-4)
    assert "detection" not in r and math.isnan(r["headline"]["detection.AP50"])
    assert r["headline"]["drops.total"] == 1


def test_thresholds_gate(tmp_path: Path) -> None:
    log, gts, outs = _run()
    r = score_run(log, gts, outs, [], LabelSpace.load(), 1e-4)
    f = tmp_path / "gate.yaml"
    f.write_text("detection.AP50: {min: 0.5}\ndrops.total: {max: 0}\ntracking.HOTA: {min: 0.1, max: 1.0}\n"
                 "drift.alarm_fraction: {max: 0.1}\n")
    bad = check_thresholds(r, load_thresholds(f))
    assert bad == ["drops.total = 1 > max 0", "drift.alarm_fraction: not in this report (needs ground truth or outputs "
                                               "it did not get)"]
    for text in ("[1, 2]", "a: 3", "a: {minimum: 1}", "a: {min: x}"):
        f.write_text(text)
        with pytest.raises(ConfigError):
            load_thresholds(f)


def test_baseline_diff_reads_the_baseline_headline_and_json_is_strict(tmp_path: Path) -> None:
    log, gts, outs = _run()
    r = score_run(log, gts, outs, [], LabelSpace.load(), 1e-4)
    write_json(tmp_path / "r.json", r)
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text
    base = json.loads(text)
    base["headline"]["detection.AP50"] = 0.25
    d = baseline_diff(r, base)
    assert d["detection.AP50"] == {"value": pytest.approx(1.0), "baseline": 0.25, "delta": pytest.approx(0.75)}
    assert math.isnan(d["drift.alarm_fraction"]["baseline"])         # null in the baseline
    r["baseline"] = d
    write_html(tmp_path / "r.html", r)
    assert "Against baseline" in (tmp_path / "r.html").read_text()


def test_lookup_and_mot_table() -> None:
    assert lookup({"a": {"b": 2}}, "a.b") == 2.0
    assert math.isnan(lookup({"a": {"b": "x"}}, "a.b")) and math.isnan(lookup({}, "a.b"))
    t = mot_table([(np.array([4]), np.array([[1.0, 2.0, 11.0, 22.0]]), np.array([2])), (np.zeros(0), np.zeros((0, 4)),
                                                                                         np.zeros(0))])
    assert t.frames.tolist() == [1] and t.boxes.tolist() == [[1.0, 2.0, 10.0, 20.0]] and t.ids.tolist() == [4]


def test_gt_from_mot_directory_matches_the_fixture() -> None:
    labels = LabelSpace.load()
    gts = gt_from_dir(FIXTURE, 20, labels)
    assert len(gts) == 20 and all(g.seg is not None and g.seg.shape == (384, 640) for g in gts)
    first = [line.split(",") for line in (FIXTURE / "gt" / "gt.txt").read_text().splitlines() if line.startswith("1,")]
    assert len(gts[0].boxes) == len(first)
    assert sorted(gts[0].labels.tolist()) == sorted(int(r[7]) - 1 for r in first)


def test_gt_topics_and_params_file(tmp_path: Path) -> None:
    assert gt_topics("/camera/left/image_raw/compressed") == ("/camera/left/ground_truth/detections",
                                                               "/camera/left/ground_truth/segmentation")
    assert override_params_file(tmp_path, None, []) is None
    p = override_params_file(tmp_path, "models/x", ["perception.score_threshold=0.1", "tracker.max_age=2.5"])
    assert p is not None
    doc = yaml.safe_load(p.read_text())["/**"]["ros__parameters"]
    assert doc["perception"] == {"score_threshold": 0.1} and doc["tracker"] == {"max_age": 2.5}
    assert doc["backend"]["model"].endswith("models/x")
    for bad in ("nodot=1", "perception.x", "=3"):
        with pytest.raises(ConfigError):
            override_params_file(tmp_path, None, [bad])
