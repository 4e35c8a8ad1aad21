"""End to end: the bundled real drive replays through the graph (what `make demo` runs) and every frame is accounted
for; the procedural drive with exact ground truth stays bundled for scoring tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from mim_perception.bags.io import bag_summary, default_demo_bag
from mim_perception.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_demo_bags_are_bundled_and_small() -> None:
    bag = default_demo_bag()
    topics = bag_summary(bag).topics
    assert bag.name == "highway_front" and topics["/camera/front/image_raw/compressed"].count == 221
    assert sum(p.stat().st_size for p in bag.iterdir()) < 8_000_000
    assert "MIT License" in (REPO / "demo" / "ATTRIBUTION.md").read_text()
    procedural = bag_summary(REPO / "demo" / "drive_front").topics
    assert procedural["/camera/front/ground_truth/detections"].count == procedural["/camera/front/image_raw/compressed"].count


@pytest.mark.timeout(180)
def test_demo_accounts_for_every_frame(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # On a loaded machine the CPU pipeline may not keep up with 25 Hz: frames are then dropped (busy / superseded).
    # What must hold is that every frame is processed, counted as dropped, or reported as sent before the node
    # could receive it.
    rc = main(["demo", "--rate", "1", "--min-fraction", "0.2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    m = re.search(r"frames processed: (\d+)/(\d+); drops \(superseded, busy, malformed\): \((\d+), (\d+), (\d+)\); "
                  r"never received \(sent before the node's subscription matched\): (\d+); outputs seen by the demo: "
                  r"(\d+)", out)
    assert m, out
    processed, total, superseded, busy, malformed, unseen, seen = map(int, m.groups())
    assert total == 221 and processed + superseded + busy + malformed + unseen == total and malformed == 0, out
    # Only frames before the node's first one can escape its count (no earlier stamp to see a gap from); the
    # demo's own subscriptions may miss the first outputs while they match.
    assert unseen <= 3 and processed - 2 <= seen <= processed, out
    assert "/front/perception/out/latency" in out
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == total
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ground_truth"] == "none" and processed - 2 <= report["frames"]["answered"] <= processed
