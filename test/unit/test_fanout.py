"""Fan-out semantics without Ray: order kept, failures retried then reported (never dropped), dead workers survived."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mim_perception.core.errors import ConfigError
from mim_perception.scale.fanout import run_tasks


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def die_on_two(x: int) -> int:
    if x == 2:
        os._exit(9)   # the worker process dies (OOM killer, segfault in a native library)
    return x


def flaky(path: str) -> str:
    """Fails the first time it runs for a path, succeeds the second time."""
    p = Path(path)
    if not p.exists():
        p.write_text("tried")
        raise RuntimeError("transient")
    return "ok"


@pytest.mark.parametrize("workers", [1, 2])
def test_order_and_reported_failures(workers: int) -> None:
    out = run_tasks(fail_on_three, range(5), workers=workers, retries=1)
    assert [o.index for o in out] == [0, 1, 2, 3, 4]
    assert [o.value for o in out if o.ok] == [0, 1, 2, 4]
    bad = [o for o in out if not o.ok]
    assert len(bad) == 1 and bad[0].index == 3 and "three is bad" in bad[0].error and bad[0].attempts == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_transient_failure_is_retried(tmp_path: Path, workers: int) -> None:
    out = run_tasks(flaky, [str(tmp_path / "a"), str(tmp_path / "b")], workers=workers, retries=1)
    assert all(o.ok and o.value == "ok" and o.attempts == 2 for o in out)


def test_a_dead_worker_fails_only_its_task_after_retries() -> None:
    seen = []
    out = run_tasks(die_on_two, range(4), workers=2, retries=1, on_done=seen.append)
    assert [o.ok for o in out] == [True, True, False, True]
    assert "died" in out[2].error and out[2].attempts == 2
    assert sorted(o.index for o in seen) == [0, 1, 2, 3]


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        run_tasks(square, [1], workers=0)
    assert [o.value for o in run_tasks(square, [1, 2, 3])] == [1, 4, 9]
