"""Checkpoint -> verified model bundle (what `mim-perception export` runs; its --help lists the steps): ONNX export
and parity, optional int8, drift / image-statistics / OOD references, and the signed manifest; plus rebuilding an
existing bundle's drift reference (from frames or a node-sampled replay) and attaching an OOD scorer to it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.calibration import (
    DRIFT_WINDOW,
    REPLAY_NULL_DRAWS,
    load_replay,
    reference_from_replay,
)
from mim_perception.core.monitoring.drift import DriftReference
from mim_perception.core.monitoring.image_stats import KERNEL_SCALES as IMAGE_KERNEL_SCALES
from mim_perception.core.monitoring.image_stats import image_statistics
from mim_perception.core.monitoring.ood import OodReference
from mim_perception.core.pipeline import PerceptionConfig
from mim_perception.core.preprocess import letterbox
from mim_perception.inference.manifest import INPUT_NAME, OUTPUT_NAMES, Manifest, load_manifest, write_manifest
from mim_perception.inference.onnx_export import export_onnx, latency_ms, parity, quantize_int8
from mim_perception.inference.ort_backend import cpu_session
from mim_perception.nets import build_mim, build_model
from mim_perception.nets.mim import random_mask
from mim_perception.nets.model import ExportModule
from mim_perception.training.checkpoint import load_into, load_state
from mim_perception.training.common import open_sources


def _frames(specs: list[str], n: int, size: tuple[int, int], cache_dir: Path) -> np.ndarray:
    """n letterboxed uint8 1×3×H×W frames (spread over the data) for parity, calibration and references."""
    return _frames_and_stats(specs, n, size, cache_dir)[0]


def _frames_and_stats(specs: list[str], n: int, size: tuple[int, int], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The frames of :func:`_frames` and the image statistics of the camera frames they came from (what the node
    computes for its image-statistics drift channel)."""
    src = open_sources(specs, cache_dir=cache_dir, labelled=False)
    idx = np.linspace(0, len(src) - 1, min(n, len(src))).round().astype(int)
    images = [src[int(i)].image for i in idx]
    return (np.stack([letterbox(im, size)[0].transpose(2, 0, 1) for im in images]),
            np.stack([image_statistics(im) for im in images]))


class OodScorer:
    """torch module: uint8 1×3×H×W -> reconstruction error of a fixed mask pattern (ONNX-exportable)."""

    @staticmethod
    def build(mae: Any, hw: tuple[int, int], seed: int = 0) -> Any:
        g = torch.Generator().manual_seed(seed)
        mask = random_mask(1, hw[0] // mae.patch, hw[1] // mae.patch, mae.mask_ratio, generator=g)

        class _Scorer(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.mae = mae

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.mae.score(x, mask.expand(x.shape[0], -1, -1, -1))

        return _Scorer().eval()


def _export_ood(mim: Path, arch: str, out: Path, data: np.ndarray, *, int8: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """The MIM OOD scorer of ``mim`` (pretraining checkpoint) as ONNX, int8 by default (a quarter of the size, same
    separation of corrupted frames on the shipped model), and its reference errors on ``data``."""
    mae = build_mim(arch)
    load_into(mae, load_state(mim), source=str(mim))
    export_onnx(OodScorer.build(mae.eval(), (data.shape[2], data.shape[3])), torch.from_numpy(data[0][None]),
                out / "ood.onnx", ("error",))
    if int8:
        tmp = out / "ood_fp32.onnx"
        (out / "ood.onnx").replace(tmp)
        quantize_int8(tmp, out / "ood.onnx", data[: min(32, len(data))])
        tmp.unlink()
    ood = cpu_session(out / "ood.onnx", 2)
    errors = np.array([float(ood.run(None, {INPUT_NAME: f[None]})[0][0]) for f in data])
    OodReference.build(errors).save(out / "ood_reference.npy")
    return ({"ood": "ood.onnx", "ood_reference": "ood_reference.npy"},
            {"cpu_ort_ms_ood": latency_ms(ood, data[0], 5), "ood_precision": "int8" if int8 else "fp32"})


def attach_ood(bundle: Path, mim: Path, specs: list[str], *, frames: int, cache_dir: Path, int8: bool = True) -> Manifest:
    """Add (or replace) the OOD scorer of an existing bundle, from the MIM checkpoint its backbone was pretrained
    with, and re-sign the manifest."""
    manifest = load_manifest(bundle)
    arch = manifest.architecture
    data = _frames(specs, frames, (manifest.input_height, manifest.input_width), cache_dir)
    files, metrics = _export_ood(mim, arch, bundle, data, int8=int8)
    training = dict(manifest.training) | {"mim": str(mim), "ood_reference": f"{len(data)} frames of {specs}"}
    write_manifest(bundle, replace(manifest, files=dict(manifest.files) | files,
                                   metrics=dict(manifest.metrics) | metrics, training=training))
    return load_manifest(bundle)


def export_bundle(checkpoint: Path, out: Path, specs: list[str], *, mim: Path | None, name: str, frames: int,
                  cache_dir: Path, int8: bool = True, input_hw: tuple[int, int] | None = None,
                  seg_untrained: tuple[str, ...] = ()) -> Manifest:
    record = json.loads(checkpoint.with_suffix(".json").read_text()) if checkpoint.with_suffix(".json").is_file() else {}
    cfg = record.get("config", {})
    arch = record.get("arch") or cfg.get("train", {}).get("arch")
    aug = cfg.get("augment", {})
    if not arch or "height" not in aug:
        raise ConfigError(f"{checkpoint.with_suffix('.json')} lacks the run config (arch, input size); "
                          "export a `finetune` checkpoint")
    # A fully convolutional model runs at any size divisible by 32; the exported graph fixes one (default: training size).
    hw = input_hw or (int(aug["height"]), int(aug["width"]))
    if hw[0] % 32 or hw[1] % 32:
        raise ConfigError(f"export input size {hw} must be divisible by 32")
    labels = LabelSpace.load()
    model = build_model(arch, len(labels.detection), len(labels.segmentation))
    load_into(model, load_state(checkpoint), source=str(checkpoint))
    module = ExportModule(model.eval(), [labels.seg_index(c) for c in seg_untrained]).eval()
    out.mkdir(parents=True, exist_ok=True)
    data, stats = _frames_and_stats(specs, frames, hw, cache_dir)
    files = {"onnx": "model.onnx", "torch": "model.pt"}
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "model.pt")
    export_onnx(module, torch.from_numpy(data[0][None]), out / "model.onnx", OUTPUT_NAMES)
    sess = cpu_session(out / "model.onnx", 2)
    par = parity(module, sess, data[: min(16, len(data))])
    metrics: dict[str, Any] = {"validation": record.get("metrics", {}), "cpu_ort_ms_fp32": latency_ms(sess, data[0])}
    with torch.no_grad():
        embeds = np.concatenate([module(torch.from_numpy(f[None]))[4].numpy() for f in data])
    window = DRIFT_WINDOW if len(embeds) >= 256 + 2 * DRIFT_WINDOW else max(2, len(embeds) // 8)
    # frames come in temporal order (drives): calibrate the null on runs of consecutive frames, as at run time
    ref = DriftReference.build(embeds, window=window, sample=min(256, len(embeds) - window - 1), sequential=True)
    ref.save(out / "drift_reference.npz")
    files["drift_reference"] = "drift_reference.npz"
    if len(stats) >= 256 + 2 * window:   # the image-statistics channel, from the same clean frames in the same order
        DriftReference.build(stats, window=window, sample=256, sequential=True,
                             scales=IMAGE_KERNEL_SCALES).save(out / "image_reference.npz")
        files["image_reference"] = "image_reference.npz"
    if int8:
        quantize_int8(out / "model.onnx", out / "model_int8.onnx", data[: min(64, len(data))])
        files["onnx_int8"] = "model_int8.onnx"
        q = cpu_session(out / "model_int8.onnx", 2)
        metrics["cpu_ort_ms_int8"] = latency_ms(q, data[0])
        par |= {f"int8_{k}": v for k, v in parity(module, q, data[:8]).items()}
    if mim is not None:
        ood_files, ood_metrics = _export_ood(mim, arch, out, data, int8=int8)
        files |= ood_files
        metrics |= ood_metrics
    manifest = Manifest(
        name=name, architecture=arch, input_height=hw[0], input_width=hw[1], input_format="uint8 NCHW BGR",
        detection_classes=list(labels.detection), segmentation_classes=list(labels.segmentation),
        segmentation_palette_bgr=labels.colors_bgr.tolist(), seg_stride=4, topk=int(model.export_topk),
        embed_dim=int(embeds.shape[1]), files=files, sha256={}, metrics=metrics, parity=par,
        training={"checkpoint_record": record, "mim": str(mim) if mim else None, "export_data": specs,
                  "drift_window": window, "trained_at": [int(aug["height"]), int(aug["width"])],
                  "seg_untrained": list(seg_untrained)})
    write_manifest(out, manifest)
    return load_manifest(out)


def recalibrate_drift(bundle: Path, specs: list[str], *, frames: int, cache_dir: Path, window: int = DRIFT_WINDOW,
                      stride: int | None = None) -> Manifest:
    """Rebuild an existing bundle's drift reference from ``frames`` clean frames of ``specs`` (in drive order) with the
    bundle's own ONNX model, and re-sign the manifest. More (and more varied) validation drives than at export make
    the null wider and the monitor quieter on clean scenes it has not seen."""
    manifest = load_manifest(bundle)
    hw = (manifest.input_height, manifest.input_width)
    stride = stride or load_config(PerceptionConfig, None, prefix="perception.").drift_every   # as the node samples
    sess = cpu_session(manifest.path(bundle, "onnx"), 2)
    k = OUTPUT_NAMES.index("embed")
    data = _frames(specs, frames, hw, cache_dir)
    embeds = np.concatenate([sess.run(None, {INPUT_NAME: f[None]})[k] for f in data])
    ref = DriftReference.build(embeds, window=window, sequential=True, stride=stride)
    return _save_reference(bundle, manifest, ref, f"{len(embeds)} frames of {specs} in temporal order, {hw[0]}×{hw[1]}, "
                           f"window {window}, null of runs sampled every {stride} frames like the node "
                           "(mim-perception export --recalibrate-drift)")


def recalibrate_drift_from_replay(bundle: Path, replay: Path, *, window: int = DRIFT_WINDOW,
                                  null_draws: int = REPLAY_NULL_DRAWS) -> Manifest:
    """Rebuild the drift reference from embeddings already sampled like the node (``bench/drift_replay.py``: one
    per ``perception.drift_every`` camera frames of long clean drives, in order): the reference sample and a null of
    ``null_draws`` windows come from the same kind of input the node will judge."""
    manifest = load_manifest(bundle)
    d = load_replay(replay)
    embeds, meta, stats = d["embeddings"], d["meta"], d.get("image_stats")
    transport = d.get("image_meta", meta).get("transport_jpeg")
    if meta.get("model_sha256") != manifest.sha256.get(manifest.files["onnx"]):
        raise ConfigError(f"{replay} was embedded by another model (sha256 {str(meta.get('model_sha256'))[:12]}), "
                          f"not by {bundle}'s {manifest.files['onnx']}")
    every = load_config(PerceptionConfig, None, prefix="perception.").drift_every
    if meta.get("every") != every:
        raise ConfigError(f"{replay} samples every {meta.get('every')} frames, the node every {every} "
                          "(perception.drift_every): re-run the replay")
    ref = reference_from_replay(embeds, window=window, null_draws=null_draws)
    image_ref = None
    if stats is not None and len(stats) == len(embeds) and len(embeds):
        image_ref = reference_from_replay(stats, window=window, null_draws=null_draws, scales=IMAGE_KERNEL_SCALES)
    return _save_reference(bundle, manifest, ref, f"{len(embeds)} node-sampled embeddings of {meta['minutes']:g} min of "
                           f"clean procedural driving at {meta['hz']:g} Hz (seeds {meta['seed']}+, every {every} frames), "
                           f"window {window}, null of {null_draws} windows (export --recalibrate-drift --drift-replay)"
                           + (f"; image statistics of the same frames likewise (scales {IMAGE_KERNEL_SCALES}, camera "
                              f"JPEG transport per scene {transport or 'none'})" if image_ref else ""), image_ref)


def _save_reference(bundle: Path, manifest: Manifest, ref: DriftReference, how: str,
                    image_ref: DriftReference | None = None) -> Manifest:
    """Write the drift reference(s) and re-sign. Without a new image reference the old one is dropped: it was
    calibrated with the previous embedding reference's drives, and the pair's false-alarm bound assumes both
    come from the same clean input."""
    ref.save(bundle / "drift_reference.npz")
    files = dict(manifest.files) | {"drift_reference": "drift_reference.npz"}
    files.pop("image_reference", None)
    if image_ref is not None:
        image_ref.save(bundle / "image_reference.npz")
        files["image_reference"] = "image_reference.npz"
    elif (bundle / "image_reference.npz").is_file():
        (bundle / "image_reference.npz").unlink()
    training = dict(manifest.training) | {"drift_reference": how, "drift_window": ref.window}
    write_manifest(bundle, replace(manifest, files=files, training=training))
    return load_manifest(bundle)
