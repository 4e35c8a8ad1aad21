"""Layer contract of mim_perception, checked over every import (module level and inside functions).

Layers, lowest first: core < nets < inference < {bags, scale} < sim < training < ros < evaluation < tools.
A module may import its own layer and lower ones; peers in braces may not import each other. Why this order:
bags (the MCAP format) and scale (task fan-out) need nothing but core; sim writes bags and fans out; training
reads bags and procedural scenes; ros nodes run the model and bridge the simulator; evaluation drives the ROS
graph and scores what it publishes; tools are the CLI verbs, and no module but the CLI (mim_perception/cli.py)
may import them, nor may one verb import another; a tools module is a verb (it defines register).
Any other import fails `make lint`.
Usage: python scripts/check_layers.py [PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

RANK = {"core": 0, "nets": 1, "inference": 2, "bags": 3, "scale": 3, "sim": 4, "training": 5, "ros": 6,
        "evaluation": 7, "tools": 8}
# (importing module, imported module) pairs allowed against the order; empty: keep it so.
KNOWN: set[tuple[str, str]] = set()


def violations(package: Path, known: set[tuple[str, str]] = KNOWN) -> list[str]:
    name = package.name
    out = []
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package)
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        if layer not in RANK:
            continue
        tree = ast.parse(f.read_text(), str(f))
        if layer == "tools" and f.name != "__init__.py" and not any(
                isinstance(n, ast.FunctionDef) and n.name == "register" for n in tree.body):
            out.append(f"{f}:1: tools holds CLI verbs only (a module with register(subparsers, verb)); move library code")
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for m in mods:
                parts = m.split(".")
                if parts[0] != name or len(parts) < 2 or parts[1] not in RANK or (parts[1] == layer != "tools"):
                    continue
                if (rel.as_posix(), m) in known:
                    continue
                if parts[1] == "tools" or RANK[parts[1]] >= RANK[layer]:
                    why = "only the CLI imports a verb" if parts[1] == "tools" else f"{parts[1]} is not below {layer}"
                    out.append(f"{f}:{node.lineno}: {layer} imports {m} ({why})")
    return out


def main(argv: list[str]) -> int:
    pkg = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "mim_perception"
    bad = violations(pkg)
    for line in bad:
        print(line)
    print(f"layers: {len(bad)} wrong-way import(s)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
