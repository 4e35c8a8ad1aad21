"""OOD score from the MIM decoder: reconstruction error of a fixed masked pattern, normalised on clean frames.

The decoder is trained to fill masked patches of *in-distribution* frames. Measured on the shipped model, frames
it does not understand move the error in *both* directions: noise raises it, while fog, blur and defocus remove
the detail it would have to restore and lower it. So the score is two-sided: the error is compared with the
validation-frame errors on a log scale (robust centre and spread), and the p-value is the chance of an error at
least that far from typical in either direction (a log-normal tail, so it extrapolates past the validation
range). ``score = 1 - p``: ~0 typical, -> 1 beyond anything seen clean.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mim_perception.core.errors import ConfigError, ModelLoadError


@dataclass(frozen=True)
class OodReference:
    errors: np.ndarray     # sorted reconstruction errors of clean validation frames

    @classmethod
    def build(cls, errors: np.ndarray) -> OodReference:
        e = np.asarray(errors, np.float64).reshape(-1)
        if len(e) < 10 or not np.isfinite(e).all():
            raise ValueError("OOD reference needs at least 10 finite validation errors")
        return cls(np.sort(e))

    @cached_property
    def _log_fit(self) -> tuple[float, float]:
        """(median, robust sd) of the log errors: computed once, not per scored frame."""
        logs = np.log(np.maximum(self.errors, 1e-12))
        centre = float(np.median(logs))
        return centre, max(1.4826 * float(np.median(np.abs(logs - centre))), 1e-6)

    def _z(self, error: float) -> float:
        centre, spread = self._log_fit
        return (math.log(max(error, 1e-12)) - centre) / spread

    def p_value(self, error: float) -> float:
        """Two-sided: P(a clean frame's log error is at least as far from the median as this one's); NaN if
        ``error`` is not finite."""
        if not math.isfinite(error):
            return float("nan")
        return math.erfc(abs(self._z(error)) / math.sqrt(2.0))

    def score(self, error: float) -> float:
        """1 - p_value: ~0 for a typical frame, -> 1 for one unlike any clean frame (either direction)."""
        return 1.0 - self.p_value(error)

    def save(self, path: Path) -> None:
        np.save(path, self.errors)

    @classmethod
    def load(cls, path: Path) -> OodReference:
        try:
            return cls.build(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"OOD reference {path} cannot be read: {e}") from e


class OodMonitor:
    """Every ``every``-th frame, the two-sided MIM reconstruction OOD score of the model-input frame, off the frame path.

    Scoring costs about one more backbone forward, so it runs on one background thread: a frame never waits for
    it, and a sampled frame that arrives while the previous one is still being scored is skipped (counted).
    ``error_fn`` maps a uint8 1×3×H×W frame to its reconstruction error (the bundle's ``ood`` model)."""

    def __init__(self, error_fn: Callable[[np.ndarray], float], reference: OodReference, every: int) -> None:
        if every < 1:
            raise ConfigError("ood: every must be >= 1")
        self.error_fn, self.ref, self.every = error_fn, reference, every
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ood")
        self._pending: Future[float] | None = None
        self._lock = threading.Lock()    # the frame callback and the diagnostics timer both collect
        self._frames = 0
        self.p_value = math.nan        # two-sided p-value of the latest finite score (NaN before the first)
        self.fresh = False             # a new score arrived since the last take_fresh()
        self.scored = 0
        self.skipped_busy = 0
        self.rejected = 0              # non-finite errors or scorer failures (counted, never used)
        self.last_error = ""

    def offer(self, frame: np.ndarray) -> None:
        """Called for every frame with the letterboxed model input; samples every ``every``-th."""
        with self._lock:
            self._offer(frame)

    def _offer(self, frame: np.ndarray) -> None:
        self._collect()
        take = self._frames % self.every == 0
        self._frames += 1
        if not take:
            return
        if self._pending is not None:
            self.skipped_busy += 1
            return
        self._pending = self._pool.submit(self.error_fn, np.array(frame, np.uint8, copy=True))

    @property
    def score(self) -> float:
        """1 - p of the latest score (NaN before the first)."""
        return 1.0 - self.p_value

    def latest(self) -> float:
        with self._lock:
            self._collect()
            return self.score

    def _collect(self) -> None:
        f = self._pending
        if f is None or not f.done():
            return
        self._pending = None
        try:
            p = self.ref.p_value(float(f.result()))
        except Exception as e:  # noqa: BLE001 — a failing scorer must not take the camera pipeline down
            self.rejected += 1
            self.last_error = f"{type(e).__name__}: {e}"
            return
        if math.isnan(p):
            self.rejected += 1
            return
        self.p_value, self.fresh = p, True
        self.scored += 1

    def take_fresh(self) -> float | None:
        """The p-value of a score that arrived since the last call (None if none): feeds an alarm once per score."""
        with self._lock:
            self._collect()
            if not self.fresh:
                return None
            self.fresh = False
            return self.p_value

    def reset(self) -> None:
        with self._lock:
            self._frames = 0
            self.p_value = math.nan
            self.fresh = False

    def close(self) -> None:
        """Never blocks: a scoring run in progress finishes on its own and the thread exits."""
        self._pool.shutdown(wait=False, cancel_futures=True)
