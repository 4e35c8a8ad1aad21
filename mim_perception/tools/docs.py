"""`mim-perception docs [--check]`: regenerate the README's and docs/'s tables from their sources.

* node / topic table  <- mim_perception/ros/interfaces.py (a graph test checks it against the running nodes)
* parameter tables    <- config/*.param.yaml (values and their comments: the one source of defaults)
* measured results    <- docs/results/*.json (written by `mim-perception evaluate` and bench/soak.py; each
                         carries the command that produced it)

Generated text sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers;
``--check`` exits 1 when a file is stale (a unit test runs it, so the docs cannot drift).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mim_perception.evaluation.docs_tables import generate


def run(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    stale = []
    for path, text in generate(root).items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print("stale (run `mim-perception docs`): " + ", ".join(str(p.relative_to(root)) for p in stale))
        return 1
    print("docs: " + ("up to date" if not stale else "regenerated " + ", ".join(str(p.relative_to(root)) for p in stale)))
    return 0


def register(sub: Any, verb: str) -> None:
    p = sub.add_parser(verb, help="regenerate the README's and docs/ tables from config/, interfaces and results",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="repository root")
    p.set_defaults(func=run)
