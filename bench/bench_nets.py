"""CPU latency of the det+seg models: eager torch vs ONNX Runtime, plus export parity.

For every model × input size: median ms over ``--runs`` calls of ``DetSegModel.export_forward`` in eager torch
(``torch.inference_mode``), then torch.onnx.export(dynamo=True, opset 18, external_data=False) of the same graph and
the median ms of an ORT CPU session with the same thread count (uint8 input, fixed top-k K=300 pre-NMS outputs).

Parity on a synthetic driving frame: the export_forward graph gives sorted top-k scores, embedding and seg labels
(candidate *boxes* are not compared there: at random init many scores tie to 1e-9 and either side may pick another
tied candidate). The raw ``forward`` (det B×A×(5+C), seg logits, embed) is exported as well at the first size and
compared element-wise: that is the parity number (target ≤ 4e-6 on logits).

    .venv/bin/python bench/bench_nets.py [--models convnext_atto convnext_atto_cpu] [--threads 2] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mim_perception.core.timing import median_ms
from mim_perception.nets import DetSegModel, ExportModule, build_model
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene

SIZES = ((192, 320), (256, 448), (384, 640))


class RawModule(torch.nn.Module):
    """DetSegModel.forward as a tuple (det, seg logits, embed), for element-wise parity."""

    def __init__(self, model: DetSegModel) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out["det"], out["seg"], out["embed"]


def frame(h: int, w: int) -> torch.Tensor:
    f = next(SyntheticScene(SceneConfig(width=w, height=h, frames=1, seed=7)).frames())
    return torch.from_numpy(f.image).permute(2, 0, 1).unsqueeze(0).contiguous()     # 1×3×H×W uint8 BGR


def session(module: torch.nn.Module, x: torch.Tensor, path: Path, names: list[str], threads: int):
    import onnx
    import onnxruntime as ort

    prog = torch.onnx.export(module, (x,), dynamo=True, opset_version=18, external_data=False, input_names=["image"],
                             output_names=names, verbose=False)
    assert prog is not None
    prog.save(str(path))
    onnx.checker.check_model(str(path))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["convnext_atto", "convnext_atto_cpu"])
    ap.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in SIZES], help="HxW, multiples of 32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-ort", action="store_true", help="eager torch only (no export)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    rows, parity = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = build_model(name, 6, 10).eval()
            params = sum(p.numel() for p in model.parameters()) / 1e6
            for i, (h, w) in enumerate(sizes):
                x = frame(h, w)
                with torch.inference_mode():
                    t_ms = median_ms(lambda: model.export_forward(x), args.runs)  # noqa: B023 - called in this iteration
                    ref = [t.numpy() for t in model.export_forward(x)]
                row = {"model": name, "params": params, "size": f"{h}x{w}", "torch": t_ms}
                if not args.no_ort:
                    t0 = time.perf_counter()
                    sess = session(ExportModule(model), x, Path(tmp) / f"{name}_{h}x{w}.onnx",
                                   list(ExportModule.output_names), args.threads)
                    row["export_s"] = time.perf_counter() - t0
                    feed = {"image": x.numpy()}
                    got = sess.run(None, feed)
                    row["ort"] = median_ms(lambda: sess.run(None, feed), args.runs)  # noqa: B023
                    row["d_scores"] = float(np.abs(ref[1] - got[1]).max())
                    row["d_embed"] = float(np.abs(ref[4] - got[4]).max())
                    row["seg_diff"] = float((ref[3] != got[3]).mean())
                    if i == 0:
                        raw = session(RawModule(model), x, Path(tmp) / f"{name}_raw.onnx", ["det", "seg", "embed"], args.threads)
                        with torch.inference_mode():
                            want = [t.numpy() for t in RawModule(model)(x)]
                        have = raw.run(None, feed)
                        parity[name] = (f"{h}x{w}", *(float(np.abs(a - b).max()) for a, b in zip(want, have, strict=True)),
                                        float(np.abs(want[0][..., 4:] - have[0][..., 4:]).max()))
                rows.append(row)
                print(row, flush=True)
    load = os.getloadavg()[0]
    print(f"\nmedian ms over {args.runs} runs, {args.threads} threads, torch {torch.__version__}, export_forward "
          f"(K=300 pre-NMS), 1-min load average at the end {load:.1f}")
    print(f"{'model':20s} {'params':>7s} {'HxW':>8s} {'torch':>8s} {'ORT':>8s} {'ORT/torch':>9s} {'export s':>8s} "
          f"{'d_score':>8s} {'d_embed':>8s} {'seg%':>6s}")
    for r in rows:
        ort_cols = (f"{r['ort']:8.1f} {r['ort'] / r['torch']:9.2f} {r['export_s']:8.1f} {r['d_scores']:8.1e} "
                    f"{r['d_embed']:8.1e} {100 * r['seg_diff']:6.3f}") if "ort" in r else ""
        print(f"{r['model']:20s} {r['params']:6.2f}M {r['size']:>8s} {r['torch']:8.1f} {ort_cols}")
    if parity:
        print("\nraw forward parity, max abs diff ORT vs torch: det (ltrb px | logits), seg logits, embed")
        for name, (size, d_det, d_seg, d_emb, d_logit) in parity.items():
            print(f"{name:20s} {size:>8s} det {d_det:.1e} | {d_logit:.1e}  seg {d_seg:.1e}  embed {d_emb:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
