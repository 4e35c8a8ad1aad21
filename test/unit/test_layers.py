"""The layer contract (scripts/check_layers.py, run by `make lint`): the package passes, and a wrong-way import
built in a temporary package — at module level or inside a function — fails it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts" / "check_layers.py")
assert spec is not None and spec.loader is not None
check_layers = importlib.util.module_from_spec(spec)
sys.modules["check_layers"] = check_layers
spec.loader.exec_module(check_layers)


def test_the_package_keeps_its_layers() -> None:
    assert check_layers.violations(ROOT / "mim_perception") == []


def test_a_wrong_way_import_fails(tmp_path: Path) -> None:
    pkg = tmp_path / "mim_perception"
    for layer in ("core", "ros", "nets", "tools"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "core" / "ok.py").write_text("import numpy\n")
    (pkg / "nets" / "fine.py").write_text("from mim_perception.core import ok\n")        # downward: allowed
    (pkg / "core" / "bad.py").write_text("from mim_perception.ros import qos\n")
    (pkg / "core" / "hidden.py").write_text("def f():\n    import mim_perception.nets.fine\n")
    (pkg / "tools" / "verb.py").write_text("from mim_perception.ros import qos\n\n\ndef register(sub, verb):\n    pass\n")
    (pkg / "tools" / "other.py").write_text("from mim_perception.tools.verb import x\n")    # library code, no verb
    (pkg / "ros" / "node.py").write_text("from mim_perception.tools import verb\n")
    bad = check_layers.violations(pkg, known=set())
    assert len(bad) == 5 and any("bad.py:1: core imports mim_perception.ros" in b for b in bad)
    assert any("other.py:1: tools imports mim_perception.tools.verb" in b for b in bad)
    assert any("node.py:1: ros imports mim_perception.tools" in b for b in bad)
    assert any("other.py:1: tools holds CLI verbs only" in b for b in bad)
    assert any("hidden.py:2: core imports mim_perception.nets.fine" in b for b in bad)
    assert check_layers.main(["check_layers.py", str(pkg)]) == 1
