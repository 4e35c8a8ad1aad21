"""Per-camera latency statistics and drop accounting (ROS-free).

Times are seconds in and milliseconds out. Drops are inferred from header stamps, never from arrival
order: with a depth-1 sensor queue a superseded frame simply never arrives, so the only evidence is a
stamp gap larger than the camera period.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

LEARN_GAPS = 8   # inter-stamp gaps needed before a learned camera period is trusted for drop counting
STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "monitoring", "publish")


@dataclass
class RollingWindow:
    """Fixed-size window of floats with quantiles; O(1) append, O(n) query (queried ~1 Hz)."""

    size: int
    _values: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"window size must be >= 1, got {self.size}")
        self._values = deque(maxlen=self.size)

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()

    def quantiles(self, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, float]:
        """``{"p50": .., "p90": .., "p99": .., "max": ..}``; NaN when empty."""
        keys = [f"p{round(q * 100)}" for q in qs] + ["max"]
        if not self._values:
            return dict.fromkeys(keys, math.nan)
        arr = np.fromiter(self._values, dtype=np.float64, count=len(self._values))
        vals = np.quantile(arr, qs).tolist() + [float(arr.max())]
        return dict(zip(keys, vals, strict=True))


@dataclass
class DropCounter:
    """Counts frames lost before or inside the pipeline, by cause."""

    superseded: int = 0   # missing stamps between consecutive received frames
    busy: int = 0         # received while the pipeline was still processing the previous frame
    malformed: int = 0    # failed to decode/validate
    received: int = 0

    @property
    def total(self) -> int:
        return self.superseded + self.busy + self.malformed

    def rate(self) -> float:
        """Fraction of frames the camera produced that did not make it through."""
        produced = self.received + self.superseded
        return self.total / produced if produced else 0.0


class CameraStats:
    """Everything the diagnostics need about one camera pipeline.

    ``expected_period`` (s) is the camera period; 0 means "learn it" from the median inter-stamp gap.
    """

    def __init__(self, window: int, expected_period: float = 0.0, budget_ms: float = math.inf) -> None:
        self.pipeline_ms = RollingWindow(window)
        self.stage_ms = {s: RollingWindow(window) for s in STAGES}
        self._gaps = RollingWindow(window)
        self.expected_period = expected_period
        self.budget_ms = budget_ms
        self.deadline_misses = 0
        self.drops = DropCounter()
        self.last_stamp: float | None = None
        self.last_receive_time: float | None = None
        self.resets = 0
        # Gaps seen while the period is still being learned: counted once it is known, so frames lost at
        # start-up (when the pipeline is slowest) are not silently missing from the drop count.
        self._pending: list[float] = []

    def period(self) -> float:
        if self.expected_period > 0:
            return self.expected_period
        q = self._gaps.quantiles((0.5,))["p50"]
        return q if math.isfinite(q) and q > 0 else 0.0

    def on_frame(self, stamp: float, receive_time: float) -> int:
        """Register a received frame; returns the number of frames counted as lost (superseded) now."""
        self.drops.received += 1
        self.last_receive_time = receive_time
        lost = 0
        if self.last_stamp is not None:
            gap = stamp - self.last_stamp
            if gap < 0:  # bag loop or sim reset: statistics of the old timeline do not apply
                lost = self.reset_timeline()
            elif gap > 0:
                self._gaps.add(gap)
                self._pending.append(gap)
                if self.expected_period > 0 or len(self._gaps) >= LEARN_GAPS:
                    lost = self._settle(self.period())
        self.last_stamp = stamp
        return lost

    def _settle(self, period: float) -> int:
        lost = 0
        if period > 0:
            for gap in self._pending:
                # 1.5 periods of tolerance absorbs jitter without hiding a whole lost frame
                lost += max(0, round(gap / period) - 1) if gap > 1.5 * period else 0
        self._pending.clear()
        self.drops.superseded += lost
        return lost

    def on_malformed(self, receive_time: float, stamp: float | None = None) -> None:
        """A frame that failed to decode; with its stamp, it also closes the stamp gap (never counted twice)."""
        if stamp is not None:
            self.on_frame(stamp, receive_time)
        else:
            self.drops.received += 1
            self.last_receive_time = receive_time
        self.drops.malformed += 1

    def on_failed(self) -> None:
        """A frame already registered by on_frame that could not be processed (bad size, bad model output)."""
        self.drops.malformed += 1

    def on_busy(self, stamp: float, receive_time: float) -> None:
        """A frame skipped because the pipeline was busy: received (its stamp closes the gap), then dropped."""
        self.on_frame(stamp, receive_time)
        self.drops.busy += 1

    def on_done(self, stamp: float, publish_time: float, stages_ms: dict[str, float]) -> float:
        """Register a processed frame; returns its pipeline latency in ms."""
        latency_ms = (publish_time - stamp) * 1e3
        self.pipeline_ms.add(latency_ms)
        for name, ms in stages_ms.items():
            if name in self.stage_ms:
                self.stage_ms[name].add(ms)
        if latency_ms > self.budget_ms:
            self.deadline_misses += 1
        return latency_ms

    def silence(self, now: float) -> float:
        """Seconds since the last frame arrived (inf before the first)."""
        return math.inf if self.last_receive_time is None else max(0.0, now - self.last_receive_time)

    def rate_hz(self) -> float:
        p = self.period()
        return 1.0 / p if p > 0 else 0.0

    def reset_timeline(self) -> int:
        """Start a new timeline; gaps still pending are counted with the best period known (returned)."""
        lost = self._settle(self.period())
        self.last_stamp = None
        self._gaps.clear()
        self.resets += 1
        return lost
