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
    assert summary["config"]["init"] == [f"{pre / 'mim.pt'}: backbone (" + summary["config"]["init"][0].split("(")[1]]
    assert "backbone" in summary["config"]["init"][0] and (ft / "best.pt").is_file()
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


@pytest.mark.timeout(300)
def test_real_data_pipeline_on_a_few_frames(realdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """import teacher -> pseudo-label 4 CamVid frames -> MIM from the teacher -> fine-tune on CamVid masks + pseudo
    boxes + KITTI boxes -> export -> evaluate-real beside the teacher, all through the CLI on a handful of frames."""
    cmap = str(Path(__file__).resolve().parents[2] / "config" / "class_maps" / "coco_to_driving.yaml")
    teacher = realdata / "teachers" / "yolox_nano_coco.onnx"
    assert main(["import-model", str(teacher), "--adapter", "yolox", "--classes", "coco", "--class-map", cmap,
                 "--out", str(tmp_path / "t")]) == 0
    cam = tmp_path / "camvid" / "train"
    for sub in ("images", "labels"):   # a 4-frame CamVid split
        (cam / sub).mkdir(parents=True)
        for f in sorted((realdata / "camvid" / "train" / sub).iterdir())[:4]:
            (cam / sub / f.name).symlink_to(f)
    pl = tmp_path / "pl.json"
    assert main(["pseudo-label", "--teacher", str(tmp_path / "t"), "--data", f"camvid:{tmp_path / 'camvid'}:train",
                 "--out", str(pl)]) == 0
    small = ["--set", "train.arch=yolox_nano", "--set", "train.batch_size=2", "--set", "train.workers=0",
             "--set", "train.log_every=1"]
    assert main(["pretrain", "--data", f"camvid:{tmp_path / 'camvid'}:train", "--init", str(teacher),
                 "--out", str(tmp_path / "pre"), *small, "--set", "pretrain.max_steps=2", "--set", "pretrain.height=64",
                 "--set", "pretrain.width=96"]) == 0
    data = ["--data", f"boxes:{pl}", "--data", f"kitti:{realdata / 'kitti'}:0-3"]
    assert main(["finetune", *data, "--val-data", f"boxes:{pl}", "--init", str(teacher),
                 "--init", str(tmp_path / "pre" / "mim.pt"), "--out", str(tmp_path / "ft"), *small,
                 "--set", "finetune.max_steps=2", "--set", "augment.height=64", "--set", "augment.width=96"]) == 0
    init = json.loads((tmp_path / "ft" / "summary.json").read_text())["config"]["init"]
    assert "det_head" in init[0] and "backbone" in init[1]
    assert main(["export", "--checkpoint", str(tmp_path / "ft" / "best.pt"), "--out", str(tmp_path / "b"),
                 "--data", f"kitti:{realdata / 'kitti'}:0-3", "--data", f"camvid:{tmp_path / 'camvid'}:train",
                 "--frames", "8", "--no-int8", "--height", "96",
                 "--width", "160"]) == 0
    capsys.readouterr()
    out = tmp_path / "real.json"
    assert main(["evaluate-real", "--model", str(tmp_path / "b"), "--model", str(tmp_path / "t"),
                 "--kitti", f"{realdata / 'kitti'}:60-61", "--camvid", f"{tmp_path / 'camvid'}:train",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())["models"]
    assert set(res) == {"b", "t"} and "camvid" in res["b"] and "camvid" not in res["t"]
    assert res["t"]["forward_ms"] > 0 and 0 <= res["t"]["kitti"]["AP50"]["car"] <= 1


@pytest.mark.timeout(180)
def test_lr_scale_zero_freezes_weights_and_norm_statistics(tmp_path: Path) -> None:
    """finetune.backbone/detector_lr_scale=0 (the real recipe's segmentation stage): backbone, neck and detection
    head come out bit-identical, batch-norm running statistics included; the segmentation head trains."""
    import torch

    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["finetune", "--data", str(FIXTURE), "--val-data", str(FIXTURE), "--out", str(first), *TINY,
                 "--set", "finetune.max_steps=2", "--set", "finetune.epochs=1"]) == 0
    assert main(["finetune", "--data", str(FIXTURE), "--val-data", str(FIXTURE), "--init", str(first / "best.pt"),
                 "--out", str(second), *TINY, "--set", "finetune.max_steps=3", "--set", "finetune.epochs=2",
                 "--set", "finetune.backbone_lr_scale=0", "--set", "finetune.detector_lr_scale=0",
                 "--set", "finetune.ema_decay=0"]) == 0
    a = torch.load(first / "best.pt", weights_only=True)
    b = torch.load(second / "best.pt", weights_only=True)
    frozen = [k for k in a if not k.startswith("seg_head.")]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    assert any("running_mean" in k for k in frozen)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("seg_head.") and a[k].is_floating_point())
