"""Layer contract of mim_perception, checked over every import (module level and inside functions).

Layers, lowest first: core < nets < inference < {training, evaluation, bags, sim, scale} < ros < tools. A module
may import its own layer and lower ones; the peers in braces may not import each other. KNOWN lists the wrong-way
imports that existed when the contract was written (each to be removed by moving code to its layer); anything else
fails `make lint`. Usage: python scripts/check_layers.py [PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

RANK = {"core": 0, "nets": 1, "inference": 2, "training": 3, "evaluation": 3, "bags": 3, "sim": 3, "scale": 3,
        "ros": 4, "tools": 5}
# (importing module, imported module) pairs that predate the contract; shrink this list, never grow it.
KNOWN = {
    ("bags/replay.py", "mim_perception.ros"),
    ("evaluation/driver.py", "mim_perception.bags.io"), ("evaluation/driver.py", "mim_perception.bags.replay"),
    ("evaluation/driver.py", "mim_perception.ros"), ("evaluation/driver.py", "mim_perception.ros.interfaces"),
    ("evaluation/media.py", "mim_perception.bags.io"), ("evaluation/records.py", "mim_perception.bags.io"),
    ("evaluation/records.py", "mim_perception.ros.detection_msgs"),
    ("evaluation/scoring.py", "mim_perception.training.metrics"),
    ("evaluation/real_frames.py", "mim_perception.training.metrics"),
    ("evaluation/real_frames.py", "mim_perception.training.real_sources"),
    ("sim/simgen.py", "mim_perception.scale.fanout"), ("sim/to_bag.py", "mim_perception.bags.io"),
    ("training/sources.py", "mim_perception.bags.io"), ("training/sources.py", "mim_perception.sim"),
    ("training/sources.py", "mim_perception.sim.synthetic"),
}


def violations(package: Path, known: set[tuple[str, str]] = KNOWN) -> list[str]:
    name = package.name
    out = []
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package)
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        if layer not in RANK:
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for m in mods:
                parts = m.split(".")
                if parts[0] != name or len(parts) < 2 or parts[1] not in RANK or parts[1] == layer:
                    continue
                if RANK[parts[1]] >= RANK[layer] and (rel.as_posix(), m) not in known:
                    out.append(f"{f}:{node.lineno}: {layer} imports {m} ({parts[1]} is not below {layer})")
    return out


def main(argv: list[str]) -> int:
    pkg = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "mim_perception"
    bad = violations(pkg)
    for line in bad:
        print(line)
    print(f"layers: {len(bad)} wrong-way import(s), {len(KNOWN)} known ones still to move", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
