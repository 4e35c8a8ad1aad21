"""report.json and a self-contained report.html (plots inlined as PNG), baseline differences, regression gate.

Thresholds file (YAML), keys are ``section.key`` paths into report.json (see scoring.HEADLINE)::

    detection.AP50: {min: 0.15}
    latency.end_to_end_ms.p99: {max: 250}
    drops.total: {max: 0}
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mim_perception.core.errors import ConfigError
from mim_perception.evaluation.scoring import lookup


def load_thresholds(path: Path) -> dict[str, dict[str, float]]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"thresholds {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"thresholds {path}: expected a mapping of metric -> {{min: x, max: y}}")
    out: dict[str, dict[str, float]] = {}
    for key, bounds in doc.items():
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
            raise ConfigError(f"thresholds {path}: {key}: expected {{min: x}} and/or {{max: y}}, got {bounds!r}")
        try:
            out[str(key)] = {k: float(v) for k, v in bounds.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"thresholds {path}: {key}: bounds must be numbers ({e})") from e
    return out


def check_thresholds(report: dict[str, Any], thresholds: dict[str, dict[str, float]]) -> list[str]:
    """Violations as readable lines; a metric missing from the report (NaN) violates its bound."""
    bad = []
    for key, b in thresholds.items():
        v = lookup(report, key)
        if math.isnan(v):
            bad.append(f"{key}: not in this report (needs ground truth or outputs it did not get)")
            continue
        if "min" in b and v < b["min"]:
            bad.append(f"{key} = {v:.4g} < min {b['min']:.4g}")
        if "max" in b and v > b["max"]:
            bad.append(f"{key} = {v:.4g} > max {b['max']:.4g}")
    return bad


def baseline_diff(report: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, float]]:
    def base(k: str) -> float:
        v = baseline.get("headline", {}).get(k)
        return float(v) if isinstance(v, int | float) else math.nan
    return {k: {"value": v, "baseline": base(k), "delta": v - base(k)} for k, v in report["headline"].items()}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415 -- matplotlib (eval extra) loads only to draw the report's figures

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figures(report: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs of the report's plots (only those with data)."""
    import matplotlib  # noqa: PLC0415 -- matplotlib (eval extra) loads only to draw the report's figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 -- matplotlib (eval extra) loads only to draw the report's figures

    figs: dict[str, str] = {}
    e2e = np.array([np.nan if v is None else v for v in report["series"]["end_to_end_ms"]], np.float64)
    inf = np.array([np.nan if v is None else v for v in report["series"]["inference_ms"]], np.float64)
    if np.isfinite(e2e).any():
        fig, ax = plt.subplots(1, 2, figsize=(12, 3.2))
        ax[0].hist(e2e[np.isfinite(e2e)], bins=40, color="tab:blue")
        ax[0].set(title="end-to-end latency (publish -> node answered)", xlabel="ms", ylabel="frames")
        ax[1].plot(e2e, ".", ms=3, label="end to end")
        ax[1].plot(inf, ".", ms=3, label="inference")
        ax[1].set(title="latency per frame (gaps: dropped)", xlabel="frame", ylabel="ms")
        ax[1].legend()
        figs["Latency"] = _png(fig)
    det = report.get("detection")
    if det and "pr_curve50" in det:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        r = np.linspace(0, 1, 101)
        for name, curve in det["pr_curve50"].items():
            c = np.array(curve, np.float64)
            if np.isfinite(c).any():
                ax.plot(r, c, label=f"{name} AP50 {det['per_class_AP50'][name]:.2f}")
        ax.set(title="precision-recall at IoU 0.5", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=8)
        figs["Detection PR curves"] = _png(fig)
    seg = report.get("segmentation")
    if seg:
        names = list(seg["per_class_IoU"])
        conf = np.array(seg["confusion"], np.float64)
        norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
        ax[0].bar(names, [seg["per_class_IoU"][n] for n in names], color="tab:green")
        ax[0].set(title=f"per-class IoU (mIoU {seg['mIoU']:.3f})", ylim=(0, 1))
        ax[0].tick_params(axis="x", rotation=45)
        im = ax[1].imshow(norm, cmap="viridis", vmin=0, vmax=1)
        ax[1].set(title="confusion (rows: ground truth, normalised)", xticks=range(len(names)),
                  yticks=range(len(names)))
        ax[1].set_xticklabels(names, rotation=60, fontsize=7)
        ax[1].set_yticklabels(names, fontsize=7)
        fig.colorbar(im, ax=ax[1])
        figs["Segmentation"] = _png(fig)
    points = report["drift"]["points"]
    if points:
        fig, ax = plt.subplots(figsize=(12, 2.8))
        ax.semilogy([p["frame"] for p in points], [max(p["p_value"], 1e-12) for p in points], "o-", ms=3)
        ax.axhline(report["drift"]["p_error"], color="r", ls="--", label="ERROR threshold")
        ax.set(title="drift p-value over the drive (low = unlike the training data)", xlabel="frame", ylabel="p")
        ax.legend()
        figs["Drift"] = _png(fig)
    return figs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def write_html(path: Path, report: dict[str, Any], strip_png: bytes | None = None) -> None:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in report["headline"].items())
    parts = [f"<h1>mim-perception evaluation</h1><p>bag <code>{html.escape(str(report.get('bag', '?')))}</code>, model "
             f"<code>{html.escape(str(report.get('model', '?')))}</code>, mode {html.escape(report['frames']['mode'])}, "
             f"{report['frames']['answered']}/{report['frames']['total']} frames answered</p>",
             f"<h2>Summary</h2><table>{rows}</table>"]
    if "baseline" in report:
        b = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(d['value'])}</td><td>{_fmt(d['baseline'])}</td>"
                    f"<td>{_fmt(d['delta'])}</td></tr>" for k, d in report["baseline"].items())
        parts.append(f"<h2>Against baseline</h2><table><tr><th>metric</th><th>this run</th><th>baseline</th>"
                     f"<th>delta</th></tr>{b}</table>")
    if report.get("violations") is not None:
        v = report["violations"]
        parts.append("<h2>Gate</h2>" + ("<p class=ok>all thresholds met</p>" if not v else
                                         "<ul class=bad>" + "".join(f"<li>{html.escape(x)}</li>" for x in v) + "</ul>"))
    lat = report["latency"]
    cols = ("n", "p50", "p90", "p99", "max")
    lrows = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_fmt(s[q])}</td>" for q in cols) + "</tr>"
                    for k, s in lat.items())
    parts.append(f"<h2>Latency per stage (ms)</h2><table><tr><th>stage</th><th>n</th><th>p50</th><th>p90</th><th>p99</th>"
                 f"<th>max</th></tr>{lrows}</table>")
    parts.append("<h2>Drops</h2><p>" + ", ".join(f"{k} {v}" for k, v in report["drops"].items()) + "</p>")
    det = report.get("detection")
    if det:
        drow = "".join(f"<tr><td>{html.escape(n)}</td><td>{det['num_gt'][n]}</td><td>{_fmt(det['per_class_AP'][n])}</td>"
                       f"<td>{_fmt(det['per_class_AP50'][n])}</td></tr>" for n in det["num_gt"])
        parts.append(f"<h2>Detection</h2><p>mAP {_fmt(det['mAP'])}, AP50 {_fmt(det['AP50'])}</p><table><tr><th>class</th>"
                     f"<th>ground truth</th><th>AP</th><th>AP50</th></tr>{drow}</table>")
    if "tracking" in report:
        parts.append("<h2>Tracking</h2><p>" + ", ".join(f"{k} {_fmt(v)}" for k, v in report["tracking"].items()) + "</p>")
    for title, b64 in figures(report).items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{b64}'>")
    if strip_png:
        parts.append("<h2>Sample frames</h2><img style='max-width:100%' src='data:image/png;base64,"
                     f"{base64.b64encode(strip_png).decode()}'>")
    style = ("<style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
             ".bad{color:#b00}.ok{color:#070}</style>")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>mim-perception report</title>{style}"
                    f"</head><body>{''.join(parts)}</body></html>")


def write_json(path: Path, report: dict[str, Any]) -> None:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None   # strict JSON: NaN becomes null
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x
    path.write_text(json.dumps(clean(report), indent=1))


def load_report(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"baseline report {path}: {e}") from e
    if not isinstance(doc, dict) or "headline" not in doc:
        raise ConfigError(f"baseline report {path}: not a report.json of mim-perception evaluate")
    return doc


def _num(v: Any, sign: str = "") -> str:
    return f"{'–':>10s}" if v is None or math.isnan(v) else f"{v:{sign}10.4g}"   # NaN / null (JSON): a dash


def summary_table(report: dict[str, Any]) -> str:
    """The headline metrics as a text table (with the baseline and delta columns when there is a baseline)."""
    lines = [f"{'metric':34s} {'value':>10s}" + (f" {'baseline':>10s} {'delta':>10s}" if "baseline" in report else "")]
    for k, v in report["headline"].items():
        line = f"{k:34s} {_num(v)}"
        if "baseline" in report:
            b = report["baseline"][k]
            line += f" {_num(b['baseline'])} {_num(b['delta'], '+')}"
        lines.append(line)
    lines += [f"GATE: {v}" for v in report.get("violations") or []]
    return "\n".join(lines)
