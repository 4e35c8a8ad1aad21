"""ONNX export, ONNX Runtime parity against torch, static int8 quantisation and latency of an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mim_perception.core.timing import median_ms
from mim_perception.inference.manifest import INPUT_NAME, OUTPUT_NAMES


def export_onnx(module: Any, example: Any, path: Path, output_names: tuple[str, ...]) -> None:
    torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=18, external_data=False,
                      input_names=[INPUT_NAME], output_names=list(output_names))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def parity(module: Any, sess: Any, frames: np.ndarray) -> dict[str, float]:
    worst = dict.fromkeys(("scores", "boxes", "embed"), 0.0)
    seg_agree = []
    with torch.no_grad():
        for f in frames:
            ref = [t.numpy() for t in module(torch.from_numpy(f[None]))]
            got = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: f[None]})
            worst["scores"] = max(worst["scores"], float(np.abs(np.sort(ref[1][0]) - np.sort(got[1][0])).max()))
            worst["embed"] = max(worst["embed"], float(np.abs(ref[4] - got[4]).max()))
            worst["boxes"] = max(worst["boxes"], _matched_box_diff(ref, got))
            seg_agree.append(float((ref[3] == got[3]).mean()))
    return {f"max_abs_diff_{k}": v for k, v in worst.items()} | {"seg_agreement": float(np.mean(seg_agree))}


def _matched_box_diff(ref: list[np.ndarray], got: list[np.ndarray], min_score: float = 0.01) -> float:
    """Box difference of candidates matched by (class, score); top-k order among near-equal scores is
    arbitrary, so only candidates whose score is unambiguous (no neighbour within 1e-5) are compared."""
    rs, rb, rc = ref[1][0], ref[0][0], ref[2][0]
    gs, gb, gc = got[1][0], got[0][0], got[2][0]
    order = np.argsort(-rs)
    diff = 0.0
    for j, i in enumerate(order):
        if rs[i] < min_score:
            break
        near = [rs[order[k]] for k in (j - 1, j + 1) if 0 <= k < len(order)]
        if any(abs(rs[i] - v) < 1e-5 for v in near):
            continue
        cand = np.flatnonzero(gc == rc[i])
        if len(cand):
            k = cand[np.argmin(np.abs(gs[cand] - rs[i]))]
            diff = max(diff, float(np.abs(rb[i].astype(np.float64) - gb[k]).max()))
    return diff


def quantize_int8(fp32: Path, out: Path, frames: np.ndarray) -> None:
    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            f = next(self.it, None)
            return None if f is None else {INPUT_NAME: f[None]}

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)


def latency_ms(sess: Any, frame: np.ndarray, runs: int = 20) -> float:
    return median_ms(lambda: sess.run(None, {INPUT_NAME: frame[None]}), runs)
