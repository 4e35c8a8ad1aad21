"""Run independent tasks (episodes to generate, bags to evaluate) in parallel: Ray when asked, else a process pool.

``ray_address``: ``None`` = local process pool of ``workers`` (1 = in this process); ``"local"`` = start a Ray
instance on this machine with ``workers`` CPUs; ``"auto"`` = join the running cluster (``ray start``); anything
else = that cluster address. Each task is a Ray task with ``num_cpus`` and ``memory_mb`` reserved, retried
``retries`` times (a Python exception or a dead worker process); a task that still fails is returned as a failed
outcome with its error. Nothing is dropped: callers report failures and exit non-zero.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from mim_perception.core.errors import ConfigError, MimPerceptionError

RETRIES = 1   # default retries of a failed task (the CLIs' default too)


class FanoutFailed(MimPerceptionError):
    """Some tasks still failed after their retries (they are listed in the run's output)."""


@dataclass
class Outcome:
    index: int
    ok: bool
    value: Any = None
    error: str = ""
    attempts: int = 1


def run_tasks(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int = 1, ray_address: str | None = None,
              retries: int = RETRIES, num_cpus: float = 1.0, memory_mb: int = 0,
              on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """``fn(item)`` for every item; outcomes in item order. ``fn`` must be importable (a module-level function)."""
    if workers < 1 or retries < 0:
        raise ConfigError(f"workers must be >= 1 and retries >= 0, got {workers}, {retries}")
    if ray_address is not None:
        return _ray(fn, items, ray_address, workers, retries, num_cpus, memory_mb, on_done)
    if workers == 1:
        return [_inline(fn, i, item, retries, on_done) for i, item in enumerate(items)]
    return _pool(fn, items, workers, retries, on_done)


def _error(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _inline(fn: Callable[[Any], Any], i: int, item: Any, retries: int, on_done: Callable[[Outcome], None] | None
            ) -> Outcome:
    out = Outcome(i, False)
    for attempt in range(1, retries + 2):
        try:
            out = Outcome(i, True, fn(item), attempts=attempt)
            break
        except Exception as e:   # noqa: BLE001 - a task failure is data for the report, not a crash of the fan-out
            out = Outcome(i, False, error=_error(e), attempts=attempt)
    if on_done:
        on_done(out)
    return out


def _pool(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, retries: int,
          on_done: Callable[[Outcome], None] | None) -> list[Outcome]:
    results: dict[int, Outcome] = {}
    attempts = dict.fromkeys(range(len(items)), 0)
    pending = list(range(len(items)))
    isolated = False
    while pending:
        # A worker that dies breaks the whole pool and every unfinished task with it. From then on the remaining
        # tasks run one per pool, so a crash is charged to the task that caused it and to no other.
        batches = [[i] for i in pending] if isolated else [pending]
        pending = []
        for batch in batches:
            # spawn, not fork: the caller may hold DDS / Ray / torch threads, and a forked copy of those deadlocks
            with ProcessPoolExecutor(max_workers=1 if isolated else workers,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                futures: dict[int, Future[Any]] = {i: pool.submit(fn, items[i]) for i in batch}
                for i, fut in futures.items():
                    try:
                        results[i] = Outcome(i, True, fut.result(), attempts=attempts[i] + 1)
                    except BrokenProcessPool as e:
                        if isolated:
                            attempts[i] += 1
                        if attempts[i] <= retries:
                            pending.append(i)
                        else:
                            results[i] = Outcome(i, False, error=f"worker process died: {_error(e)}", attempts=attempts[i])
                        isolated = True
                    except Exception as e:   # noqa: BLE001 - recorded, retried, reported
                        attempts[i] += 1
                        if attempts[i] <= retries:
                            pending.append(i)
                        else:
                            results[i] = Outcome(i, False, error=_error(e), attempts=attempts[i])
                    if i in results and on_done:
                        on_done(results[i])
    return [results[i] for i in range(len(items))]


def _ray(fn: Callable[[Any], Any], items: Sequence[Any], address: str, workers: int, retries: int, num_cpus: float,
         memory_mb: int, on_done: Callable[[Outcome], None] | None) -> list[Outcome]:
    try:
        import ray  # noqa: PLC0415 -- Ray is optional (--ray-address)
    except ImportError as e:
        raise ConfigError("--ray-address needs Ray: pip install 'ray>=2.9'") from e
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        opts: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": retries, "retry_exceptions": True}
        if memory_mb:
            opts["memory"] = memory_mb * 1024 * 1024
        task = ray.remote(**opts)(fn)
        refs = [task.remote(item) for item in items]
        out: list[Outcome] = []
        for i, ref in enumerate(refs):
            try:
                o = Outcome(i, True, ray.get(ref))
            except Exception as e:   # noqa: BLE001 - RayTaskError / WorkerCrashedError after the retries: reported
                o = Outcome(i, False, error=_error(e), attempts=retries + 1)
            out.append(o)
            if on_done:
                on_done(o)
        return out
    finally:
        if started:
            ray.shutdown()
