"""pretrain -> finetune -> export -> load in the runtime, through the CLI, on the committed labelled fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mim_perception.cli import main
from mim_perception.inference.manifest import load_manifest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "synth_labelled"
TINY = ["--set", "train.arch=convnext_smoke", "--set", "train.batch_size=4", "--set", "train.workers=0",
        "--set", "train.log_every=1", "--set", "augment.height=96", "--set", "augment.width=160"]


@pytest.mark.timeout(240)
def test_pretrain_finetune_export_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pre, ft, bundle = tmp_path / "pre", tmp_path / "ft", tmp_path / "bundle"
    assert main(["pretrain", "--data", str(FIXTURE), "--out", str(pre), *TINY, "--set", "pretrain.epochs=4",
                 "--set", "pretrain.height=96", "--set", "pretrain.width=160", "--set", "pretrain.lr=0.003"]) == 0
    hist = json.loads((pre / "summary.json").read_text())["history"]
    first, last = np.mean([h["loss"] for h in hist[:3]]), np.mean([h["loss"] for h in hist[-3:]])
    assert last < first, f"MIM loss did not fall: {first:.4f} -> {last:.4f}"
    assert (pre / "reconstruction.png").stat().st_size > 0
    assert main(["finetune", "--data", str(FIXTURE), "--val-data", str(FIXTURE), "--init", str(pre / "mim.pt"),
                 "--out", str(ft), *TINY, "--set", "finetune.epochs=3"]) == 0
    summary = json.loads((ft / "summary.json").read_text())
    losses = [h["total"] for h in summary["history"] if "total" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), "detection+segmentation loss did not fall"
    assert summary["config"]["init"] == str(pre / "mim.pt") and (ft / "best.pt").is_file()
    assert {"mAP", "AP50", "mIoU", "per_class_IoU"} <= set(summary["best"]["metrics"])
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(ft / "best.pt"), "--mim", str(pre / "mim.pt"), "--data", str(FIXTURE),
                 "--out", str(bundle), "--frames", "20"]) == 0
    m = load_manifest(bundle)   # every file's sha256 verifies
    assert set(m.files) == {"onnx", "onnx_int8", "torch", "drift_reference", "ood", "ood_reference"}
    assert m.parity["max_abs_diff_embed"] < 1e-3 and m.parity["seg_agreement"] > 0.99
    assert (m.input_height, m.input_width) == (96, 160)
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes()[:-1] + b"\0")
    from mim_perception.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="sha256"):
        load_manifest(bundle, roles=("onnx",))
