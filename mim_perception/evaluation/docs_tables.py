"""The README's and docs/'s generated tables (what `mim-perception docs` writes), each from its one source:

* node / topic table  <- mim_perception/ros/interfaces.py (a graph test checks it against the running nodes)
* parameter tables    <- config/*.param.yaml (values and their comments: the one source of defaults)
* measured results    <- docs/results/*.json (written by `mim-perception evaluate`, evaluate-real and the benches;
                         each carries the command that produced it)

Generated text sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mim_perception.core.config import config_dir
from mim_perception.core.errors import ConfigError
from mim_perception.evaluation.ablation import ablation_markdown
from mim_perception.evaluation.real_frames import real_frames_markdown
from mim_perception.ros.interfaces import NODES

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")


def split_comment(rest: str) -> tuple[str, str]:
    """``' 0.5   # why'`` -> (``'0.5'``, ``'why'``); a ``#`` inside quotes or not after a space is part of the value."""
    quote = ""
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


def parameter_rows(path: Path) -> list[tuple[str, str, str]]:
    """(dotted name, default, comment) of every parameter under ``ros__parameters`` in a .param.yaml file."""
    rows: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    inside = False
    base = last_indent = -1
    pending = ""   # a comment line just above a parameter, at its indent, describes it
    for line in path.read_text().splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if rows and inside and indent > last_indent:
                name, value, comment = rows[-1]   # aligned under the comment column: it continues
                rows[-1] = (name, value, f"{comment} {text}".strip())
            elif inside:
                pending = f"{pending} {text}".strip()
            continue
        m = _KEY.match(line)
        if not m:
            continue
        key = m["key"]
        value, comment = split_comment(m["rest"])
        if key == "ros__parameters":
            inside, base, stack = True, indent, []
            continue
        if not inside or indent <= base:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if value == "":
            stack.append((indent, key))
            pending = ""
            continue
        rows.append((".".join([k for _, k in stack] + [key]), value, comment or pending))
        pending, last_indent = "", indent
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def parameters_markdown(cdir: Path | None = None) -> str:
    cdir = cdir or config_dir()
    out = []
    for path in sorted(cdir.glob("*.param.yaml")):
        rows = parameter_rows(path)
        if not rows:
            continue
        out += [f"### `config/{path.name}`", "", "| parameter | default | meaning |", "|---|---|---|"]
        out += [f"| `{n}` | `{_cell(v)}` | {_cell(c)} |" for n, v, c in rows]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def nodes_markdown() -> str:
    out = ["| node | direction | topic | type | QoS | what |", "|---|---|---|---|---|---|"]
    for node, (what, ports) in NODES.items():
        out.append(f"| **{node}** | | | | | {_cell(what)} |")
        for p in ports:
            out.append(f"| | {p.direction} | `{p.topic}` | `{p.msgtype.replace('/msg/', '/')}` | {p.qos} | "
                       f"{_cell(p.description)} |")
    out.append("")
    out.append("`~/` is the node's namespace and name, e.g. `/front/perception/out/detections` for camera `front`.")
    return "\n".join(out) + "\n"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def results_markdown(rdir: Path) -> str:
    """One table row per results file; files are written by the tools, never by hand."""
    rows = ["| what | model | result | command |", "|---|---|---|---|"]
    for path in sorted(rdir.glob("*.json")):
        doc = json.loads(path.read_text())
        kind = doc.get("kind") if isinstance(doc, dict) else None   # other result files (e.g. raw rows) are skipped
        if kind == "evaluate":
            h = doc["headline"]
            res = (f"{doc['frames']['answered']}/{doc['frames']['total']} frames answered; AP50 {_num(h.get('detection.AP50'))}, "
                   f"mAP {_num(h.get('detection.mAP'))}, mIoU {_num(h.get('segmentation.mIoU'))}, HOTA "
                   f"{_num(h.get('tracking.HOTA'))}, IDF1 {_num(h.get('tracking.IDF1'))}; end-to-end p50 "
                   f"{_num(h.get('latency.end_to_end_ms.p50'), '{:.1f}')} ms, p99 "
                   f"{_num(h.get('latency.end_to_end_ms.p99'), '{:.1f}')} ms; inference p50 "
                   f"{_num(h.get('latency.inference_ms.p50'), '{:.1f}')} ms; drops {_num(h.get('drops.total'), '{:.0f}')}")
        elif kind == "soak":
            v = doc["verdict"]
            res = (f"{doc['minutes']:.0f} min at {doc['rate_hz']:.0f} Hz: RSS growth after warm-up "
                   f"{v['rss_growth_after_warmup_mb']:.1f} MB; latency p50 {v['latency_p50_q2_ms']:.1f} → "
                   f"{v['latency_p50_q4_ms']:.1f} ms (2nd → last quarter); "
                   f"{'no creep' if not v['latency_creep'] else 'CREEP'}")
            if "p99_ms_median_of_intervals" in doc:
                res += (f"; p99 per 10-s interval median {doc['p99_ms_median_of_intervals']:.0f} ms, max "
                        f"{doc['p99_ms_max_of_intervals']:.0f} ms; {doc['processed']} frames processed, "
                        f"{doc['dropped']} dropped (counted)")
        else:
            continue
        model = str(doc.get("model", "–")).split("@")[0]
        rows.append(f"| {_cell(doc.get('title', path.stem))} | {model} | {_cell(res)} | `{_cell(doc.get('command', '?'))}` |")
    return "\n".join(rows) + "\n"


def bench_node_markdown(doc: dict[str, Any]) -> str:
    """The in-node latency table of ``bench/bench_node.py --json`` (docs/results/bench_node_cpu.json)."""
    m = doc["model_only_ms"]
    peers = ", ".join(f"{k.replace('_', ' ')} {v:.1f} ms" for k, v in m.items())
    rows = [f"Model {doc.get('model', '?')}; model only, same input (median): {peers}.",
            "", "| backend | cameras | offered Hz (each) | answered | answered fps (all) | p50 ms | p99 ms | max ms | "
            "inference p50 ms | not inference |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        per_cam = r.get("answered_per_camera", {})
        spread = f" ({'/'.join(str(v) for v in per_cam.values())})" if len(per_cam) > 1 else ""
        rows.append(f"| {r['backend']} | {r['cameras']} | {r['hz']:.0f} | {r['answered']}/{r['offered']}{spread} | "
                    f"{r['answered_fps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                    f"{r['stages_p50_ms']['inference']:.1f} | {r['non_inference_share']:.0%} |")
    return "\n".join(rows) + f"\n\n`{doc['command']}`\n"


def splice(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    if begin not in text or end not in text:
        raise ConfigError(f"markers for {name!r} not found ({begin} ... {end})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def generate(root: Path) -> dict[Path, str]:
    """Every generated file's new text."""
    readme = root / "README.md"
    text = readme.read_text()
    text = splice(text, "nodes", nodes_markdown())
    text = splice(text, "results", results_markdown(root / "docs" / "results"))
    bench = root / "docs" / "results" / "bench_node_cpu.json"
    if bench.is_file():
        text = splice(text, "bench_node", bench_node_markdown(json.loads(bench.read_text())))
    ext = sorted((root / "docs" / "results").glob("bench_node_external_*.json"))
    if ext and "<!-- generated: bench_external -->" in text:
        text = splice(text, "bench_external", "\n".join(bench_node_markdown(json.loads(p.read_text())) for p in ext))
    real = root / "docs" / "results" / "real_frames.json"
    if real.is_file() and "<!-- generated: real_frames -->" in text:
        text = splice(text, "real_frames", real_frames_markdown(json.loads(real.read_text())))
    ablation = root / "docs" / "results" / "ablation_real.json"
    if ablation.is_file() and "<!-- generated: ablation_real -->" in text:
        text = splice(text, "ablation_real", ablation_markdown(json.loads(ablation.read_text())))
    params = root / "docs" / "parameters.md"
    ptext = params.read_text() if params.exists() else \
        "# Parameters\n\n<!-- generated: parameters -->\n<!-- end generated: parameters -->\n"
    return {readme: text, params: splice(ptext, "parameters", parameters_markdown(root / "config"))}
