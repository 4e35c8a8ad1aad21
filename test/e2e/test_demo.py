"""End to end: the bundled demo bag replays through the graph (what `make demo` runs) and every frame is processed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from mim_perception.bags.io import bag_summary
from mim_perception.cli import main
from mim_perception.tools.demo import default_demo_bag


def test_demo_bag_is_bundled_and_small() -> None:
    bag = default_demo_bag()
    topics = bag_summary(bag).topics
    assert topics["/camera/front/image_raw/compressed"].count >= 30
    assert topics["/camera/front/ground_truth/detections"].count == topics["/camera/front/image_raw/compressed"].count
    assert sum(p.stat().st_size for p in bag.iterdir()) < 5_000_000


@pytest.mark.timeout(120)
def test_demo_accounts_for_every_frame(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # With the shipped model the CPU pipeline may not keep up with 15 Hz on a loaded machine: frames are then
    # dropped (busy / superseded). What must hold is that every frame is processed, counted as dropped, or
    # reported as sent before the node could receive it.
    rc = main(["demo", "--rate", "1", "--min-fraction", "0.2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    m = re.search(r"frames processed: (\d+)/90; drops \(superseded, busy, malformed\): \((\d+), (\d+), (\d+)\); "
                  r"never received \(sent before the node's subscription matched\): (\d+); outputs seen by the demo: "
                  r"(\d+)", out)
    assert m, out
    processed, superseded, busy, malformed, unseen, seen = map(int, m.groups())
    assert processed + superseded + busy + malformed + unseen == 90 and malformed == 0, out
    # Only frames before the node's first one can escape its count (no earlier stamp to see a gap from); the
    # demo's own subscriptions may miss the first outputs while they match.
    assert unseen <= 3 and processed - 2 <= seen <= processed, out
    assert "/front/camera_monitor/out/latency" in out or "/front/perception/out/latency" in out
    # the video and the report of the run (the shipped model is in models/)
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 90
    assert "Detection PR curves" in (tmp_path / "report.html").read_text()
    assert processed - 2 <= json.loads((tmp_path / "report.json").read_text())["frames"]["answered"] <= processed
