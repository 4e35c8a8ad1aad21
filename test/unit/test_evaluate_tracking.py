"""`mim-perception evaluate-tracking`: TrackEval metrics on MOTChallenge files, simulated comparison, bad input.

The comparison tests take the ground-truth path as a parameter: a sequence generated here in tmp_path, and the
regression fixture test/fixtures/synth_mot (skipped while it does not exist).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mim_perception import cli
from mim_perception.core.tracking.simulate import MotTable, constant_velocity_scene
from mim_perception.evaluation.mot import read_mot, write_mot

VERB = "evaluate-tracking"
FIXTURE_GT = Path(__file__).resolve().parents[1] / "fixtures" / "synth_mot" / "gt" / "gt.txt"


@pytest.fixture(autouse=True)
def _verb_registered(monkeypatch):
    # the verb table lives in cli.py; register the module here too so these tests do not depend on that line
    monkeypatch.setitem(cli.VERBS, VERB, "mim_perception.tools.evaluate_tracking")


def run(args: list[object], capsys) -> tuple[int, str, str]:
    code = cli.main([VERB, *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def write_sequence(root: Path, gt: MotTable, rate: float | None = 15.0, size: tuple[int, int] = (1280, 720)) -> Path:
    (root / "gt").mkdir(parents=True)
    write_mot(root / "gt" / "gt.txt", gt)
    if rate is not None:
        n = int(gt.frames.max())
        (root / "seqinfo.ini").write_text(f"[Sequence]\nname={root.name}\nframeRate={rate:g}\nseqLength={n}\n"
                                          f"imWidth={size[0]}\nimHeight={size[1]}\n")
    return root / "gt" / "gt.txt"


@pytest.fixture
def generated_gt(tmp_path) -> Path:
    """Objects at constant velocity with head-on crossings, 15 Hz, 12 s."""
    return write_sequence(tmp_path / "seq", constant_velocity_scene(24, 180, 15.0, (1280, 720), seed=5, crossings=4))


def scores(path: Path) -> dict:
    return json.loads(path.read_text())


def test_perfect_result_and_an_id_switch(generated_gt, tmp_path, capsys):
    gt = read_mot(generated_gt)
    code, out, _ = run(["--gt", generated_gt, "--res", generated_gt, "--json", tmp_path / "m.json"], capsys)
    assert code == 0 and "HOTA" in out and "IDF1" in out
    m = scores(tmp_path / "m.json")["gt"]
    assert m["MOTA"] == pytest.approx(1.0) and m["IDF1"] == pytest.approx(1.0) and m["HOTA"] > 0.99 and m["IDSW"] == 0
    # swap the ids of the two objects of the first crossing pair after the middle frame
    ids = gt.ids.copy()
    late = gt.frames > 90
    ids[late & (gt.ids == 1)], ids[late & (gt.ids == 2)] = 2, 1
    write_mot(tmp_path / "res.txt", MotTable(gt.frames, ids, gt.boxes, gt.conf, gt.classes, gt.vis))
    code, _, _ = run(["--gt", generated_gt, "--res", tmp_path / "res.txt", "--json", tmp_path / "s.json"], capsys)
    m = scores(tmp_path / "s.json")["res"]
    assert code == 0 and m["IDSW"] >= 2 and m["IDF1"] < 0.99 and m["MOTA"] < 1.0


def test_ignore_regions_are_not_scored(generated_gt, tmp_path, capsys):
    gt = read_mot(generated_gt)
    ignore = MotTable(np.array([10]), np.array([999]), np.array([[5.0, 5.0, 30.0, 30.0]]), np.array([0.0]),
                      np.array([1]), np.array([1.0]))
    with_ignore = MotTable(*(np.concatenate([getattr(gt, f), getattr(ignore, f)])
                             for f in ("frames", "ids", "boxes", "conf", "classes", "vis")))
    write_mot(generated_gt, with_ignore)
    res = MotTable(*(np.concatenate([getattr(gt, f), getattr(ignore, f)])
                     for f in ("frames", "ids", "boxes", "conf", "classes", "vis")))
    write_mot(tmp_path / "res.txt", res)  # the result also has a box on the ignore region: no FP for it
    run(["--gt", generated_gt, "--res", tmp_path / "res.txt", "--json", tmp_path / "m.json"], capsys)
    assert scores(tmp_path / "m.json")["res"]["MOTA"] == pytest.approx(1.0)


def tracker_beats_baseline(gt_path: Path, tmp_path: Path, capsys, seed: int = 0) -> dict:
    out_dir = tmp_path / f"res{seed}"
    code, out, err = run(["--gt", gt_path, "--simulate-detections", "--seed", seed, "--json", tmp_path / "m.json",
                          "--write-res", out_dir], capsys)
    assert code == 0, err
    assert "tracker" in out and "sort_baseline" in out
    m = scores(tmp_path / "m.json")
    for row in m.values():
        assert all(0.0 <= row[k] <= 1.0 for k in ("HOTA", "DetA", "AssA", "IDF1")) and row["MOTA"] <= 1.0
    assert read_mot(out_dir / "tracker.txt").ids.size > 0 and read_mot(out_dir / "sort_baseline.txt").ids.size > 0
    assert m["tracker"]["IDF1"] > m["sort_baseline"]["IDF1"], m
    return m


def test_generated_sequence_tracker_beats_baseline_and_runs_are_reproducible(generated_gt, tmp_path, capsys):
    first = tracker_beats_baseline(generated_gt, tmp_path, capsys)
    again = tracker_beats_baseline(generated_gt, tmp_path, capsys)
    other = tracker_beats_baseline(generated_gt, tmp_path, capsys, seed=1)
    for name in first:
        assert {k: v for k, v in first[name].items() if k != "ms_per_frame"} == \
               {k: v for k, v in again[name].items() if k != "ms_per_frame"}
    assert other["tracker"]["IDF1"] != first["tracker"]["IDF1"]  # the seed changes the simulated detections


@pytest.mark.skipif(not FIXTURE_GT.is_file(), reason=f"regression fixture {FIXTURE_GT} not generated yet "
                    "(see test/fixtures/README.md)")
def test_fixture_tracker_beats_baseline(tmp_path, capsys):
    tracker_beats_baseline(FIXTURE_GT, tmp_path, capsys)


@pytest.mark.parametrize(("content", "words"), [
    ("1,1,10,10,20,20,1,1,1\n1,2,abc,10,20,20,1,1,1\n", "gt.txt:2: not a comma-separated list"),
    ("1,1,10,10,20\n", "gt.txt:1: expected frame,id,x,y,w,h"),
    ("1,1,10,10,-5,20,1,1,1\n", "gt.txt:1: box width and height must be positive"),
    ("0,1,10,10,5,20,1,1,1\n", "gt.txt:1: frame must be an integer >= 1"),
    ("1,1,10,nan,5,20,1,1,1\n", "gt.txt:1: frame must be an integer >= 1, id an integer, all values finite"),
    ("", "has no rows"),
])
def test_malformed_ground_truth_is_a_clear_error(tmp_path, capsys, content, words):
    (tmp_path / "gt.txt").write_text(content)
    code, _, err = run(["--gt", tmp_path / "gt.txt", "--res", tmp_path / "gt.txt"], capsys)
    assert code == 2 and words in err


def test_missing_files_and_wrong_modes_are_clear_errors(generated_gt, tmp_path, capsys):
    code, _, err = run(["--gt", tmp_path / "nope.txt", "--simulate-detections"], capsys)
    assert code == 2 and "ground-truth file not found" in err
    code, _, err = run(["--gt", generated_gt, "--res", tmp_path / "nope.txt"], capsys)
    assert code == 2 and "result file not found" in err
    code, _, err = run(["--gt", generated_gt], capsys)
    assert code == 2 and "exactly one of --res" in err
    code, _, err = run(["--gt", generated_gt, "--res", generated_gt, "--simulate-detections"], capsys)
    assert code == 2 and "exactly one of --res" in err
    (generated_gt.parent.parent / "seqinfo.ini").write_text("[Sequence\nframeRate")
    code, _, err = run(["--gt", generated_gt, "--simulate-detections"], capsys)
    assert code == 2 and "malformed seqinfo.ini" in err


def test_frame_rate_from_the_command_line_when_there_is_no_seqinfo(tmp_path, capsys):
    gt = write_sequence(tmp_path / "bare", constant_velocity_scene(8, 45, 15.0, (640, 384), seed=2), rate=None)
    code, _, err = run(["--gt", gt, "--simulate-detections"], capsys)
    assert code == 2 and "--frame-rate" in err
    code, out, _ = run(["--gt", gt, "--simulate-detections", "--frame-rate", 15], capsys)
    assert code == 0 and "sort_baseline" in out
