"""Debounced drift alarm, OOD levels and the background OOD monitor (ROS-free)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError
from mim_perception.core.monitoring.health import Level, MonitorConfig, drift_alarm, ood_alarm
from mim_perception.core.monitoring.ood import OodMonitor, OodReference

WAIT_S = 5.0


@pytest.fixture()
def cfg() -> MonitorConfig:
    return replace(load_config(MonitorConfig, None, prefix="monitor."), drift_p_warn=1e-3, drift_p_error=1e-4,
                   drift_persist=4)


def test_error_needs_a_sustained_run_of_low_p(cfg: MonitorConfig) -> None:
    a = drift_alarm(cfg)
    assert a.update(0.5) == Level.OK and a.finding() == (Level.OK, "")
    assert a.update(5e-4) == Level.WARN
    assert [a.update(1e-6) for _ in range(3)] == [Level.WARN] * 3, "a short dip is WARN only"
    assert a.update(0.2) == Level.OK and a.run == 0, "one normal window ends the run"
    levels = [a.update(1e-9) for _ in range(6)]
    assert levels[:3] == [Level.WARN] * 3 and levels[3:] == [Level.ERROR] * 3
    lvl, msg = a.finding()
    assert lvl == Level.ERROR and "6 evaluations" in msg and "input drift" in msg
    a.reset()
    assert a.level == Level.OK and a.run == 0 and math.isnan(a.p_value)
    assert a.update(float("nan")) == Level.OK, "no evidence is not an alarm"


def test_persist_one_is_the_plain_threshold(cfg: MonitorConfig) -> None:
    a = drift_alarm(replace(cfg, drift_persist=1))
    assert a.update(5e-5) == Level.ERROR


def test_ood_alarm_thresholds_are_scores(cfg: MonitorConfig) -> None:
    a = ood_alarm(replace(cfg, ood_warn=0.99, ood_error=0.999, ood_persist=2))
    assert a.update(float("nan")) == Level.OK and a.update(0.5) == Level.OK
    assert a.update(0.005) == Level.WARN, "score 0.995: above ood_warn"
    assert a.update(0.0005) == Level.WARN and a.update(0.0002) == Level.ERROR
    assert "out-of-distribution" in a.finding()[1]


def _until(cond: object, what: str) -> None:
    t0 = time.monotonic()
    while not cond():   # type: ignore[operator]
        if time.monotonic() - t0 > WAIT_S:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_ood_monitor_samples_off_the_frame_path_and_skips_when_busy() -> None:
    ref = OodReference.build(np.exp(np.random.default_rng(0).normal(0.0, 1.0, 400)))
    gate = threading.Event()
    seen: list[float] = []

    def slow_error(frame: np.ndarray) -> float:
        gate.wait(WAIT_S)
        seen.append(float(frame.mean()))
        return float(np.e ** 2)   # two robust standard deviations above the median (log scale)

    mon = OodMonitor(slow_error, ref, every=2)
    try:
        frames = [np.full((1, 3, 4, 4), v, np.uint8) for v in range(6)]
        t0 = time.perf_counter()
        for f in frames:
            mon.offer(f)
        assert time.perf_counter() - t0 < 1.0, "offer never waits for the scorer"
        assert math.isnan(mon.latest()) and mon.skipped_busy == 2, "frames 2 and 4 were sampled while frame 0 scored"
        gate.set()
        _until(lambda: not math.isnan(mon.latest()), "the first score")
        assert mon.p_value == pytest.approx(0.046, abs=0.02) and mon.scored == 1 and seen == [0.0]
        assert mon.take_fresh() == mon.p_value and mon.take_fresh() is None, "each score feeds an alarm once"
        frames[0][...] = 200   # the monitor scored a copy, not the caller's buffer
        mon.offer(frames[0])   # frame 6: sampled again
        _until(lambda: (mon.latest(), mon.scored)[1] == 2, "the second score")
        assert seen == [0.0, 200.0]
    finally:
        mon.close()


def test_ood_monitor_counts_failures_and_nonfinite_errors() -> None:
    ref = OodReference.build(np.arange(1, 101, dtype=float))
    results = iter([float("nan"), RuntimeError("ORT failed")])

    def flaky(frame: np.ndarray) -> float:
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r

    mon = OodMonitor(flaky, ref, every=1)
    try:
        mon.offer(np.zeros((1, 3, 2, 2), np.uint8))
        _until(lambda: mon._pending is not None and mon._pending.done(), "the scorer")
        mon.offer(np.zeros((1, 3, 2, 2), np.uint8))
        _until(lambda: mon._pending is not None and mon._pending.done(), "the scorer")
        mon.latest()
        assert mon.rejected == 2 and mon.scored == 0 and "ORT failed" in mon.last_error and math.isnan(mon.score)
    finally:
        mon.close()
    with pytest.raises(ConfigError):
        OodMonitor(flaky, ref, every=0)


def test_recalibrate_from_a_node_sampled_replay(tiny_bundle, tmp_path) -> None:
    import json
    import shutil

    from mim_perception.core.monitoring.drift import DriftReference
    from mim_perception.inference.manifest import load_manifest
    from mim_perception.training.export import recalibrate_drift_from_replay

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    m = load_manifest(bundle)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(600, m.embed_dim)).astype(np.float32)
    meta = {"model_sha256": m.sha256[m.files["onnx"]], "every": 5, "minutes": 2.0, "hz": 30.0, "seed": 20000}
    times = np.arange(600) / 6.0
    np.savez(tmp_path / "r.npz", embeddings=emb, time=times, meta=json.dumps(meta))
    stats = rng.normal(size=(600, 4))
    np.savez(tmp_path / "r.img.npz", image_stats=stats, time=times, meta=json.dumps(meta))   # the sidecar
    m2 = recalibrate_drift_from_replay(bundle, tmp_path / "r.npz", null_draws=300)
    ref = DriftReference.load(bundle / m2.files["drift_reference"])
    assert len(ref.null) == 300 and ref.window == 32 and "node-sampled" in m2.training["drift_reference"]
    image_ref = DriftReference.load(bundle / m2.files["image_reference"])
    assert image_ref.mean.shape == (4,) and image_ref.window == 32 and "image statistics" in m2.training["drift_reference"]
    load_manifest(bundle)   # re-signed: every sha256 still verifies
    np.savez(tmp_path / "r.img.npz", image_stats=stats, time=times + 1, meta=json.dumps(meta))
    with pytest.raises(ConfigError, match="camera times differ"):
        recalibrate_drift_from_replay(bundle, tmp_path / "r.npz", null_draws=300)
    np.savez(tmp_path / "plain.npz", embeddings=emb, meta=json.dumps(meta))   # no image statistics: none shipped
    m3 = recalibrate_drift_from_replay(bundle, tmp_path / "plain.npz", null_draws=300)
    assert "image_reference" not in m3.files and not (bundle / "image_reference.npz").exists()
    load_manifest(bundle)
    np.savez(tmp_path / "other.npz", embeddings=emb, meta=json.dumps(meta | {"model_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="another model"):
        recalibrate_drift_from_replay(bundle, tmp_path / "other.npz")
    np.savez(tmp_path / "every.npz", embeddings=emb, meta=json.dumps(meta | {"every": 3}))
    with pytest.raises(ConfigError, match="drift_every"):
        recalibrate_drift_from_replay(bundle, tmp_path / "every.npz")
