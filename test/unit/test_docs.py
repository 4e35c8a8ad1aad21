"""The README's and docs/'s generated tables are current (`mim-perception docs`), and the generator reads config right."""

from __future__ import annotations

from pathlib import Path

import pytest

from mim_perception.cli import main
from mim_perception.core.errors import ConfigError
from mim_perception.evaluation.docs_tables import parameter_rows, splice

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["docs", "--check", "--root", str(ROOT)])
    assert rc == 0, capsys.readouterr().out + "\n(run `mim-perception docs` and commit the result)"


def test_parameter_rows_nesting_and_continued_comments(tmp_path: Path) -> None:
    f = tmp_path / "x.param.yaml"
    f.write_text("""# header comment
/**:
  ros__parameters:
    tracker:
      high: 0.5        # first line
                       #   second line
      sort:
        max_age: 1     # nested
      name: "a # b"  # value with a hash
    other:
      flag: true
""")
    assert parameter_rows(f) == [("tracker.high", "0.5", "first line second line"), ("tracker.sort.max_age", "1", "nested"),
                                 ("tracker.name", '"a # b"', "value with a hash"), ("other.flag", "true", "")]


def test_every_shipped_parameter_is_documented() -> None:
    rows = [r for p in sorted((ROOT / "config").glob("*.param.yaml")) for r in parameter_rows(p)]
    assert len(rows) > 60 and all(comment for _, _, comment in rows), [n for n, _, c in rows if not c]
    with pytest.raises(ConfigError):
        splice("no markers", "nodes", "x")
