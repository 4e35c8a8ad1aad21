"""Accuracy and monitoring signals under corruptions (what `mim-perception evaluate-robustness` runs).

For clean frames and each corruption at severities 1, 3, 5 (training/corruptions.py): detection AP50, segmentation
mIoU, the drift monitor's p-values over windows of consecutive frames and the MIM OOD score; then the AUROC of
separating corrupted from clean (per window for drift, per frame and per window for OOD) and the false-alarm
rate of the drift alarm on clean windows. Writes robustness.json, robustness.md and robustness.png.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import rankdata

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.drift import DriftReference
from mim_perception.core.monitoring.health import MonitorConfig
from mim_perception.core.monitoring.image_stats import image_statistics
from mim_perception.core.postprocess import select_detections
from mim_perception.inference.backends import BackendConfig
from mim_perception.inference.manifest import load_manifest
from mim_perception.inference.ood_model import load_ood
from mim_perception.inference.ort_backend import OrtBackend
from mim_perception.training import corruptions
from mim_perception.training.augment import Letterbox
from mim_perception.training.common import open_sources
from mim_perception.training.metrics import SegMeter, evaluate_detections

SEVERITIES = (1, 3, 5)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / (n·m))."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    neg, pos = neg[np.isfinite(neg)], pos[np.isfinite(pos)]
    if not len(neg) or not len(pos):
        return float("nan")
    ranks = rankdata(np.concatenate([neg, pos]))
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(neg) * len(pos)))


def _windows(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[i:i + size] for i in range(0, len(values) - size + 1, max(1, size // 2))]


def _run(frames: list[Any], backend: OrtBackend, ood: Any, labels: LabelSpace, cond: tuple[str, int] | None,
         seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    hw = backend.input_hw
    preds, gts, embeds, errors, stats = [], [], [], [], []
    meter = SegMeter(len(labels.segmentation), labels.segmentation)
    to_input = Letterbox(hw)   # same geometry as the runtime; masks resized nearest, border ignored
    for frame in frames:
        # the camera sees the corruption: apply it before resizing
        seen = frame if cond is None else replace(frame, image=corruptions.apply(frame.image, cond[0], cond[1], rng))
        stats.append(image_statistics(seen.image))
        s = to_input(seen, rng)
        x = np.ascontiguousarray(s.image.transpose(2, 0, 1))[None]
        out = backend.infer(x)
        if out.seg is None or out.embed is None:
            raise ConfigError("evaluate-robustness needs a det+seg bundle (segmentation and embedding outputs)")
        d = select_detections(out.boxes[0], out.scores[0], out.classes[0], score_threshold=0.01, nms_iou=0.6,
                              max_detections=100)
        preds.append((d.boxes, d.scores, d.labels))
        gts.append((s.boxes, s.labels))
        meter.update(cv2.resize(out.seg[0].astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)[None],
                     s.seg[None])
        embeds.append(out.embed[0])
        if ood is not None:
            errors.append(ood(x))
    det = evaluate_detections(preds, gts, labels.detection)
    return {"AP50": det["AP50"], "mAP": det["mAP"], "mIoU": meter.compute()["mIoU"], "embeds": np.stack(embeds),
            "ood_errors": np.array(errors), "image_stats": np.array(stats)}


def _window_p(ref: DriftReference, values: np.ndarray) -> np.ndarray:
    proj = ref.project(values)
    return np.array([ref.p_value(ref.statistic(w)) for w in _windows(proj, ref.window)])


def evaluate(specs: list[str], bundle: Path, out: Path, *, max_frames: int, names: tuple[str, ...], seed: int = 0,
             cache_dir: Path = Path("build/data_cache"), int8: bool = False) -> dict[str, Any]:
    manifest = load_manifest(bundle)
    cfg = load_config(BackendConfig, None, {"backend.model": str(bundle), "backend.warmup_runs": 0,
                                            "backend.int8_onnx": int8}, prefix="backend.")
    backend = OrtBackend(bundle, manifest, cfg)
    ood, ood_ref = load_ood(bundle, manifest, threads=2) if "ood" in manifest.files else (None, None)
    ref = DriftReference.load(bundle / manifest.files["drift_reference"])
    image_ref = DriftReference.load(bundle / manifest.files["image_reference"]) if "image_reference" in manifest.files \
        else None
    monitor = load_config(MonitorConfig, None, prefix="monitor.")
    labels = LabelSpace.load()
    src = open_sources(specs, cache_dir=cache_dir, labelled=True)
    frames = [src[i] for i in range(min(len(src), max_frames))]   # consecutive frames: windows are real sequences
    conditions: list[tuple[str, int] | None] = [None] + [(n, s) for n in names for s in SEVERITIES]
    rows: list[dict[str, Any]] = []
    clean: dict[str, Any] = {}
    for cond in conditions:
        r = _run(frames, backend, ood, labels, cond, seed)
        emb_p = win_p = _window_p(ref, r["embeds"])
        img_p = _window_p(image_ref, r["image_stats"]) if image_ref is not None else None
        if img_p is not None:   # as the node combines the channels
            win_p = np.minimum(1.0, 2.0 * np.minimum(emb_p, img_p))
        ood_scores = np.array([ood_ref.score(e) for e in r["ood_errors"]]) if ood_ref is not None else np.array([])
        row = {"corruption": "clean" if cond is None else cond[0], "severity": 0 if cond is None else cond[1],
               "AP50": r["AP50"], "mAP": r["mAP"], "mIoU": r["mIoU"], "drift_p_median": float(np.median(win_p)),
               "drift_alarm_rate": float((win_p < monitor.drift_p_error).mean()),
               "ood_score_mean": float(ood_scores.mean()) if len(ood_scores) else float("nan")}
        if cond is None:
            clean = {"p": win_p, "ood": ood_scores, "emb_p": emb_p, "img_p": img_p}
        else:
            row["drift_auroc"] = auroc(-np.log(clean["p"]), -np.log(win_p))
            row["drift_auroc_embedding"] = auroc(-np.log(clean["emb_p"]), -np.log(emb_p))
            if img_p is not None:
                row["drift_auroc_image"] = auroc(-np.log(clean["img_p"]), -np.log(img_p))
            row["ood_auroc_frame"] = auroc(clean["ood"], ood_scores) if len(ood_scores) else float("nan")
            row["ood_auroc_window"] = auroc(np.array([w.mean() for w in _windows(clean["ood"], ref.window)]),
                                            np.array([w.mean() for w in _windows(ood_scores, ref.window)])) \
                if len(ood_scores) >= ref.window else float("nan")
        rows.append(row)
        print(f"robustness: {row['corruption']:>14s} s{row['severity']}  AP50 {row['AP50']:.3f}  mIoU {row['mIoU']:.3f}  "
              f"drift AUROC {row.get('drift_auroc', float('nan')):.3f}  OOD AUROC {row.get('ood_auroc_frame', float('nan')):.3f}",
              flush=True)
    report = {"model": manifest.name + (" (int8)" if int8 else ""), "frames": len(frames), "window": ref.window,
              "image_statistics": image_ref is not None,
              "rows": rows, "data": specs,
              "clean_false_alarm_rate": rows[0]["drift_alarm_rate"]}
    _write(out, report)
    return report


def _write(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(report, indent=1, default=float))
    both = "embedding + image statistics" if report.get("image_statistics") else "embedding only"
    lines = [f"# Robustness of {report['model']} ({report['frames']} frames, drift window {report['window']})", "",
             f"Drift AUROC: the node's drift p-value ({both}); the embedding's alone in its own column.", "",
             "| corruption | sev | AP50 | mIoU | drift AUROC | drift AUROC (embedding) | OOD AUROC (frame) | "
             "OOD AUROC (window) | drift alarms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['corruption']} | {r['severity']} | {r['AP50']:.3f} | {r['mIoU']:.3f} | "
                     f"{r.get('drift_auroc', float('nan')):.3f} | {r.get('drift_auroc_embedding', float('nan')):.3f} | "
                     f"{r.get('ood_auroc_frame', float('nan')):.3f} | "
                     f"{r.get('ood_auroc_window', float('nan')):.3f} | {r['drift_alarm_rate']:.2f} |")
    (out / "robustness.md").write_text("\n".join(lines) + "\n")
    import matplotlib  # noqa: PLC0415 -- matplotlib (eval extra) loads only to draw the figure

    matplotlib.use("Agg")   # before pyplot: no display on a vehicle or in CI
    import matplotlib.pyplot as plt  # noqa: PLC0415 -- after the backend is chosen

    rows = [r for r in report["rows"] if r["severity"]]
    names = sorted({r["corruption"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key in zip(axes, ("AP50", "drift_auroc", "ood_auroc_frame"), strict=True):
        for sev in SEVERITIES:
            ax.plot(names, [next((r[key] for r in rows if r["corruption"] == n and r["severity"] == sev), np.nan)
                            for n in names], "o-", label=f"severity {sev}")
        if key == "AP50":
            ax.axhline(report["rows"][0]["AP50"], color="k", ls="--", label="clean")
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=45)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=90)
    plt.close(fig)
