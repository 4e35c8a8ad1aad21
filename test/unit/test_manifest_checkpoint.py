"""Model bundles are verified (sha256, schema) before use; checkpoints load strictly and only as tensors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from mim_perception.core.errors import ModelLoadError
from mim_perception.inference.manifest import Manifest, load_manifest, write_manifest
from mim_perception.training.checkpoint import load_into, load_state, save_checkpoint


def _bundle(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes")
    (tmp_path / "model.pt").write_bytes(b"torch bytes")
    m = Manifest(name="t", architecture="tiny", input_height=192, input_width=320, input_format="uint8 NCHW BGR",
                 detection_classes=["car"], segmentation_classes=["road", "sky"], segmentation_palette_bgr=[[1, 2, 3], [4, 5, 6]],
                 seg_stride=4, topk=100, embed_dim=64, files={"onnx": "model.onnx", "torch": "model.pt"}, sha256={})
    write_manifest(tmp_path, m)
    return tmp_path


def test_manifest_round_trip_and_tamper(tmp_path: Path) -> None:
    b = _bundle(tmp_path)
    m = load_manifest(b)
    assert m.input_width == 320 and set(m.sha256) == {"model.onnx", "model.pt"}
    (b / "model.pt").write_bytes(b"evil")
    assert load_manifest(b, roles=("onnx",)).name == "t", "only the files asked for are checked"
    with pytest.raises(ModelLoadError, match="sha256"):
        load_manifest(b)
    (b / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_manifest(b, roles=("onnx",))
    with pytest.raises(ModelLoadError, match="no 'tensorrt' file"):
        load_manifest(b, roles=("tensorrt",))


def test_manifest_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="malformed"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"schema": 99}')
    with pytest.raises(ModelLoadError, match="schema"):
        load_manifest(tmp_path)


def test_checkpoint_strict_and_tensors_only(tmp_path: Path) -> None:
    a = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    save_checkpoint(tmp_path / "w.pt", a, {"lr": 0.1})
    assert (tmp_path / "w.json").is_file()
    b = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    load_into(b, load_state(tmp_path / "w.pt"))
    assert torch.equal(a[0].weight, b[0].weight)
    bigger = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(ModelLoadError, match="missing"):
        load_into(bigger, load_state(tmp_path / "w.pt"))
    load_into(bigger, load_state(tmp_path / "w.pt"), allow_missing=("2.",))   # a new head may be missing
    with pytest.raises(ModelLoadError, match="unexpected"):
        load_into(nn.Sequential(nn.Linear(3, 4)), load_state(tmp_path / "w.pt"))

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ModelLoadError, match="cannot be read as tensors"):
        load_state(tmp_path / "evil.pt")
