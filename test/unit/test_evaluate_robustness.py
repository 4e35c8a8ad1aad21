"""evaluate-robustness on the tiny bundle and the committed fixture: every condition reported, files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mim_perception.cli import main
from mim_perception.evaluation.robustness import auroc

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "synth_labelled"


def test_auroc() -> None:
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.ones(5), np.ones(5)) == 0.5
    assert np.isnan(auroc(np.array([]), np.ones(3)))


def test_report_on_fixture(tiny_bundle, tmp_path: Path) -> None:
    out = tmp_path / "rob"
    assert main(["evaluate-robustness", "--data", str(FIXTURE), "--model", str(tiny_bundle), "--out", str(out),
                 "--frames", "12", "--corruptions", "fog,night"]) == 0
    rep = json.loads((out / "robustness.json").read_text())
    conds = [(r["corruption"], r["severity"]) for r in rep["rows"]]
    assert conds == [("clean", 0), ("fog", 1), ("fog", 3), ("fog", 5), ("night", 1), ("night", 3), ("night", 5)]
    assert all(0 <= r["drift_auroc"] <= 1 for r in rep["rows"][1:])
    assert (out / "robustness.png").stat().st_size > 0 and "| fog | 5 |" in (out / "robustness.md").read_text()
