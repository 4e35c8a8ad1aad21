"""Turn per-camera statistics into an OK / WARN / ERROR verdict with key/values (ROS-free).

The ROS layer only copies the verdict into ``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from mim_perception.core.config import rng
from mim_perception.core.monitoring.latency import STAGES, CameraStats


class Level(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class MonitorConfig:
    PARAM_FILE: ClassVar[str] = "monitor.param.yaml"
    window: int = field(metadata=rng(1, 100000, unit="frames"))
    diagnostics_period: float = field(metadata=rng(0.05, 60.0, unit="s"))
    expected_rate_hz: float = field(metadata=rng(0.0, 1000.0, unit="Hz"))
    latency_budget_ms: float = field(metadata=rng(0.1, 60000.0, unit="ms"))
    silence_warn: float = field(metadata=rng(0.0, 3600.0, unit="s"))
    silence_error: float = field(metadata=rng(0.0, 3600.0, unit="s"))
    p99_warn_ratio: float = field(metadata=rng(0.0, 1000.0))
    p99_error_ratio: float = field(metadata=rng(0.0, 1000.0))
    drop_rate_warn: float = field(metadata=rng(0.0, 1.0))
    drop_rate_error: float = field(metadata=rng(0.0, 1.0))
    min_frames_for_rates: int = field(metadata=rng(0, 100000, unit="frames"))
    drift_p_warn: float = field(metadata=rng(0.0, 1.0))
    drift_p_error: float = field(metadata=rng(0.0, 1.0))
    drift_persist: int = field(metadata=rng(1, 100000, unit="evaluations"))
    ood_warn: float = field(metadata=rng(0.0, 1.0))
    ood_error: float = field(metadata=rng(0.0, 1.0))
    ood_persist: int = field(metadata=rng(1, 100000, unit="scores"))

    def __post_init__(self) -> None:
        for lo, hi in (("silence_warn", "silence_error"), ("p99_warn_ratio", "p99_error_ratio"),
                       ("drop_rate_warn", "drop_rate_error"), ("ood_warn", "ood_error"),
                       ("drift_p_error", "drift_p_warn")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"monitor.{lo} must not exceed monitor.{hi}")

    def new_stats(self) -> CameraStats:
        period = 1.0 / self.expected_rate_hz if self.expected_rate_hz > 0 else 0.0
        return CameraStats(self.window, period, self.latency_budget_ms)


@dataclass
class Verdict:
    level: Level
    message: str
    values: dict[str, str]


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


class SustainedAlarm:
    """Debounced level of a p-value stream (drift windows, OOD scores). Consecutive drift evaluations share all
    but one embedding of their window, and consecutive OOD scores often one scene, so one unusual stretch of clean
    road gives a run of low p-values that a per-evaluation threshold turns into an alarm. ERROR needs
    p < ``p_error`` in ``persist`` consecutive evaluations; until then, and for p < ``p_warn``, WARN."""

    def __init__(self, p_warn: float, p_error: float, persist: int, what: str) -> None:
        self.p_warn, self.p_error, self.persist, self.what = p_warn, p_error, persist, what
        self.run = 0           # consecutive evaluations below p_error
        self.p_value = math.nan
        self.level = Level.OK

    def update(self, p_value: float) -> Level:
        self.p_value = p_value
        low = math.isfinite(p_value) and p_value < self.p_error
        self.run = self.run + 1 if low else 0
        if self.run >= self.persist:
            self.level = Level.ERROR
        elif low or (math.isfinite(p_value) and p_value < self.p_warn):
            self.level = Level.WARN
        else:
            self.level = Level.OK
        return self.level

    def reset(self) -> None:
        """Clock jump / new drive: the window restarts, and so does the evidence."""
        self.run, self.p_value, self.level = 0, math.nan, Level.OK

    def finding(self) -> tuple[Level, str]:
        if self.level == Level.ERROR:
            return Level.ERROR, f"{self.what} (p={self.p_value:.2g} for {self.run} evaluations)"
        if self.level == Level.WARN:
            return Level.WARN, f"possible {self.what} (p={self.p_value:.2g})"
        return Level.OK, ""


def drift_alarm(cfg: MonitorConfig) -> SustainedAlarm:
    return SustainedAlarm(cfg.drift_p_warn, cfg.drift_p_error, cfg.drift_persist, "input drift")


def ood_alarm(cfg: MonitorConfig) -> SustainedAlarm:
    """OOD thresholds are given as scores (1 - p) in the parameters."""
    return SustainedAlarm(1.0 - cfg.ood_warn, 1.0 - cfg.ood_error, cfg.ood_persist, "out-of-distribution input")


def judge(stats: CameraStats, cfg: MonitorConfig, now: float, extra_errors: tuple[str, ...] = (),
          findings: tuple[tuple[Level, str], ...] = ()) -> Verdict:
    """Worst of: input silence, p99 latency over budget, drop rate, errors reported by the node and other
    findings (drift, model warnings)."""
    problems: list[tuple[Level, str]] = [(Level.ERROR, e) for e in extra_errors]
    problems += [(lvl, m) for lvl, m in findings if lvl != Level.OK]
    silence = stats.silence(now)
    if silence >= cfg.silence_error:
        problems.append((Level.ERROR, f"no input for {silence:.2f} s" if math.isfinite(silence) else "no input yet"))
    elif silence >= cfg.silence_warn:
        problems.append((Level.WARN, f"no input for {silence:.2f} s"))
    q = stats.pipeline_ms.quantiles()
    enough = stats.drops.received >= cfg.min_frames_for_rates
    if enough and math.isfinite(q["p99"]):
        ratio = q["p99"] / cfg.latency_budget_ms
        if ratio > cfg.p99_error_ratio:
            problems.append((Level.ERROR, f"p99 latency {q['p99']:.1f} ms > {cfg.p99_error_ratio:g}x budget"))
        elif ratio > cfg.p99_warn_ratio:
            problems.append((Level.WARN, f"p99 latency {q['p99']:.1f} ms over budget {cfg.latency_budget_ms:g} ms"))
    drop_rate = stats.drops.rate()
    if enough and drop_rate > cfg.drop_rate_error:
        problems.append((Level.ERROR, f"drop rate {drop_rate:.1%}"))
    elif enough and drop_rate > cfg.drop_rate_warn:
        problems.append((Level.WARN, f"drop rate {drop_rate:.1%}"))
    level = max((lvl for lvl, _ in problems), default=Level.OK)
    message = "; ".join(m for lvl, m in problems if lvl == level) if problems else "ok"
    values = {
        "rate_hz": _fmt(stats.rate_hz()),
        "input_silence_s": _fmt(silence),
        "latency_p50_ms": _fmt(q["p50"]),
        "latency_p90_ms": _fmt(q["p90"]),
        "latency_p99_ms": _fmt(q["p99"]),
        "latency_max_ms": _fmt(q["max"]),
        "deadline_misses": str(stats.deadline_misses),
        "frames_received": str(stats.drops.received),
        "dropped_superseded": str(stats.drops.superseded),
        "dropped_busy": str(stats.drops.busy),
        "dropped_malformed": str(stats.drops.malformed),
        "drop_rate": _fmt(drop_rate),
        "timeline_resets": str(stats.resets),
    }
    for s in STAGES:
        p50 = stats.stage_ms[s].quantiles((0.5,))["p50"]
        if math.isfinite(p50):
            values[f"{s}_p50_ms"] = _fmt(p50)
    return Verdict(level, message, values)
