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
    ood_warn: float = field(metadata=rng(0.0, 1.0))
    ood_error: float = field(metadata=rng(0.0, 1.0))

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


def judge_drift(cfg: MonitorConfig, p_value: float, ood: float) -> tuple[Level, str]:
    """Level of the input-distribution signals (NaN = not evaluated yet: OK)."""
    if p_value < cfg.drift_p_error or ood > cfg.ood_error:
        return Level.ERROR, f"input drift (p={p_value:.2g}, ood={ood:.2f})"
    if p_value < cfg.drift_p_warn or ood > cfg.ood_warn:
        return Level.WARN, f"possible input drift (p={p_value:.2g}, ood={ood:.2f})"
    return Level.OK, ""


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
