"""Box Kalman filter: hand-computed steps, and every step equal to filterpy's KalmanFilter on the same model."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter

from mim_perception.core.config import load_config
from mim_perception.core.tracking.kalman import (
    BoxKalmanFilter,
    KalmanConfig,
    full_covariance,
    full_state,
    transition,
    xyah_to_xyxy,
    xyxy_to_xyah,
)
from mim_perception.core.tracking.tracker import TrackerConfig

# Round numbers so the expected values below can be worked out by hand.
SIMPLE = KalmanConfig(pos_noise=0.1, vel_noise=0.2, aspect_noise=0.01, aspect_vel_noise=0.001, meas_pos=0.05,
                      meas_aspect=0.1, init_pos=0.1, init_vel=1.0, init_aspect=0.01, init_aspect_vel=0.001)


def test_box_conversions_round_trip():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 1.0, 4.0]])
    xyah = xyxy_to_xyah(boxes)  # component-major: 4×N
    np.testing.assert_allclose(xyah.T, [[20, 40, 0.5, 40], [0.5, 2, 0.25, 4]])
    np.testing.assert_allclose(xyah_to_xyxy(xyah), boxes)


def test_initiate_predict_update_by_hand():
    kf = BoxKalmanFilter(SIMPLE)
    mean, cov = kf.initiate(np.array([[100.0, 50.0, 0.5, 40.0]]).T)
    p = full_covariance(cov)[0]
    # h = 40: position-like std 0.1·40 = 4 (var 16), velocity std 1.0·40 = 40 (var 1600); aspect absolute
    np.testing.assert_allclose(np.diag(p), [16, 16, 1e-4, 16, 1600, 1600, 1e-6, 1600])
    assert np.count_nonzero(p - np.diag(np.diag(p))) == 0
    np.testing.assert_allclose(full_state(mean)[0], [100, 50, 0.5, 40, 0, 0, 0, 0])

    mean[1, 0, 0] = 20.0  # velocity of component cx of track 0: 20 px/s
    mean, cov = kf.predict(mean, cov, 0.5)
    assert mean[0, 0, 0] == pytest.approx(110.0)  # 100 + 0.5 s · 20 px/s
    p = full_covariance(cov)[0]
    # pp = 16 + dt²·1600 + (0.1·40)²·dt = 16 + 400 + 8; pv = dt·1600; vv = 1600 + (0.2·40)²·dt
    assert p[0, 0] == pytest.approx(424.0)
    assert p[0, 4] == p[4, 0] == pytest.approx(800.0)
    assert p[4, 4] == pytest.approx(1632.0)
    assert p[2, 2] == pytest.approx(1e-4 + 0.25 * 1e-6 + 1e-4 * 0.5)

    mean, cov = kf.update(mean, cov, np.array([[114.0, 50.0, 0.5, 40.0]]).T)
    s = 424.0 + (0.05 * 40) ** 2  # innovation variance of cx
    assert mean[0, 0, 0] == pytest.approx(110.0 + 424.0 / s * 4.0)
    assert mean[1, 0, 0] == pytest.approx(20.0 + 800.0 / s * 4.0)
    p = full_covariance(cov)[0]
    assert p[0, 0] == pytest.approx(424.0 - 424.0**2 / s)
    assert p[0, 4] == pytest.approx(800.0 - 424.0 * 800.0 / s)
    assert p[4, 4] == pytest.approx(1632.0 - 800.0**2 / s)


def _filterpy(kf: BoxKalmanFilter, mean: np.ndarray, cov: np.ndarray) -> list[KalmanFilter]:
    out = []
    for i in range(mean.shape[2]):
        f = KalmanFilter(dim_x=8, dim_z=4)
        f.x = full_state(mean)[i].reshape(8, 1).copy()
        f.P = full_covariance(cov)[i].copy()
        f.H = np.hstack([np.eye(4), np.zeros((4, 4))])
        out.append(f)
    return out


@pytest.mark.parametrize("cfg", [SIMPLE, load_config(TrackerConfig, prefix="tracker.").kalman], ids=["simple", "shipped"])
def test_every_step_matches_filterpy(cfg):
    rng = np.random.default_rng(3)
    kf = BoxKalmanFilter(cfg)
    z0 = np.column_stack([rng.uniform(0, 1000, 5), rng.uniform(0, 600, 5), rng.uniform(0.3, 2, 5), rng.uniform(10, 200, 5)])
    mean, cov = kf.initiate(z0.T)
    refs = _filterpy(kf, mean, cov)
    for dt in (1 / 30, 0.1, 0.0667, 0.02, 0.3, 1 / 15):
        h = mean[0, 3].copy()
        mean, cov = kf.predict(mean, cov, dt)
        q_pos, q_vel = kf.process_noise(h, dt)
        for i, f in enumerate(refs):
            f.F = transition(dt)
            f.Q = np.diag(np.concatenate([q_pos[:, i], q_vel[:, i]]))
            f.predict()
        z = mean[0] + (rng.normal(0, 1, (5, 4)) * [3, 3, 0.02, 2]).T
        observed = rng.random(5) > 0.3
        r = kf.measurement_noise(mean[0, 3])
        mean, cov = kf.update(mean, cov, z, observed)
        for i, f in enumerate(refs):
            if observed[i]:
                f.update(z[:, i].reshape(4, 1), R=np.diag(r[:, i]))
        np.testing.assert_allclose(full_state(mean), np.hstack([f.x for f in refs]).T, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(full_covariance(cov), np.stack([f.P for f in refs]), rtol=1e-7, atol=1e-9)


def test_dt_zero_and_unobserved_rows_leave_state_exactly():
    kf = BoxKalmanFilter(SIMPLE)
    mean, cov = kf.initiate(np.array([[1.0, 2.0, 0.5, 10.0], [5.0, 6.0, 1.0, 20.0]]).T)
    m2, c2 = kf.predict(mean, cov, 0.0)
    assert np.array_equal(m2, mean) and np.array_equal(c2, cov) and m2 is not mean
    z = np.array([[9.0, 9.0, 0.5, 10.0], [0.0, 0.0, 1.0, 1.0]]).T
    m3, c3 = kf.update(mean, cov, z, np.array([False, True]))
    assert np.array_equal(m3[..., 0], mean[..., 0]) and np.array_equal(c3[..., 0], cov[..., 0])
    assert not np.array_equal(m3[..., 1], mean[..., 1])


@pytest.mark.parametrize("rate", [10.0, 15.0, 30.0])
def test_velocity_is_per_second_at_any_frame_rate(rate):
    """The same motion sampled at different rates converges to the same velocity in px/s."""
    kf = BoxKalmanFilter(load_config(TrackerConfig, prefix="tracker.").kalman)
    v = np.array([120.0, -30.0])
    mean, cov = kf.initiate(np.array([[100.0, 300.0, 0.5, 60.0]]).T)
    t = 0.0
    for _ in range(int(3 * rate)):
        t += 1 / rate
        mean, cov = kf.predict(mean, cov, 1 / rate)
        mean, cov = kf.update(mean, cov, np.array([[100.0 + v[0] * t, 300.0 + v[1] * t, 0.5, 60.0]]).T)
    np.testing.assert_allclose(mean[1, :2, 0], v, rtol=0.03)
    assert mean[0, 0, 0] == pytest.approx(100.0 + v[0] * t, abs=1.0)
