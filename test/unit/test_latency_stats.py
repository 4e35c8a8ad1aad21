"""Latency windows, drop inference from stamp gaps, and the health verdict."""

import math

import pytest

from mim_perception.core.config import load_config
from mim_perception.core.monitoring.health import Level, MonitorConfig, judge
from mim_perception.core.monitoring.latency import CameraStats, RollingWindow


def test_rolling_window_quantiles_and_bound():
    w = RollingWindow(100)
    for v in range(1000):
        w.add(float(v))
    w.add(math.nan)
    q = w.quantiles()
    assert len(w) == 100 and q["max"] == 999.0 and q["p50"] == pytest.approx(949.5)
    assert math.isnan(RollingWindow(3).quantiles()["p99"])
    with pytest.raises(ValueError):
        RollingWindow(0)


def test_superseded_frames_inferred_from_stamp_gaps_with_jitter():
    s = CameraStats(window=50, expected_period=0.1)
    t = 0.0
    for i in range(20):
        jitter = 0.02 if i % 2 else -0.02
        s.on_frame(t + jitter, t)
        t += 0.1
    assert s.drops.superseded == 0
    s.on_frame(t + 0.3, t + 0.3)  # frames at t, t+0.1, t+0.2 never arrived
    assert s.drops.superseded == 3


def test_learned_period_and_backwards_stamp_resets_timeline():
    s = CameraStats(window=50)
    for i in range(10):
        s.on_frame(i / 30, i / 30)
    assert s.rate_hz() == pytest.approx(30.0)
    s.on_frame(0.0, 1.0)  # bag loop
    assert s.resets == 1 and s.drops.superseded == 0


def test_frames_lost_while_the_period_is_learned_are_counted_once_it_is_known():
    # Start-up is when the pipeline is slowest: the first gap (frames 1-2 lost) comes before any period is known.
    s = CameraStats(window=50)
    stamps = [0.0, 0.3] + [0.3 + i * 0.1 for i in range(1, 12)] + [1.6]   # 1.4 -> 1.6: 1.5 lost
    for t in stamps:
        s.on_frame(t, t)
    assert s.drops.superseded == 3
    s2 = CameraStats(window=50)
    for t in (0.0, 0.1, 0.2, 0.4):   # too few gaps to learn: counted when the timeline ends
        s2.on_frame(t, t)
    assert s2.drops.superseded == 0
    assert s2.on_frame(0.0, 1.0) == 1 and s2.drops.superseded == 1 and s2.resets == 1


def test_verdict_levels():
    cfg = load_config(MonitorConfig, prefix="monitor.")
    s = cfg.new_stats()
    assert judge(s, cfg, now=0.0).level == Level.ERROR  # no input yet
    for i in range(30):
        s.on_frame(i / 30, i / 30)
        s.on_done(i / 30, i / 30 + 0.010, {"decode": 1.0})
    now = 29 / 30
    v = judge(s, cfg, now)
    assert v.level == Level.OK and v.values["latency_p50_ms"] == "10.000" and "decode_p50_ms" in v.values
    assert judge(s, cfg, now + 0.6).level == Level.WARN
    assert judge(s, cfg, now + 1.1).level == Level.ERROR
    for i in range(30, 60):
        s.on_frame(i / 30, i / 30)
        s.on_done(i / 30, i / 30 + 0.5, {})
    v = judge(s, cfg, 59 / 30)
    assert v.level == Level.ERROR and "p99 latency" in v.message and s.deadline_misses == 30
    assert judge(s, cfg, 59 / 30, ("model failed",)).message.startswith("model failed")


def test_busy_and_malformed_frames_are_not_also_counted_as_superseded() -> None:
    from mim_perception.core.monitoring.latency import CameraStats

    s = CameraStats(100, expected_period=0.1)
    s.on_frame(0.0, 0.0)
    s.on_busy(0.1, 0.1)             # skipped while busy
    s.on_malformed(0.2, 0.2)        # failed to decode
    s.on_frame(0.4, 0.4)            # 0.3 never arrived: superseded
    d = s.drops
    assert (d.received, d.busy, d.malformed, d.superseded) == (4, 1, 1, 1)
    assert d.received - d.busy - d.malformed + d.total == 5, "processed + dropped = produced"
