"""Constant-velocity Kalman filter on boxes, vectorised over all tracks (ByteTrack ``kalman_filter.py`` style).

State per track: ``[cx, cy, a, h]`` — box centre (px), aspect ``w/h``, height (px) — and their velocities per
*second*; measurement: ``[cx, cy, a, h]``. The filter is stateless: callers keep the arrays and every call
works on all tracks at once.

Time is continuous: ``dt`` is the stamp difference in seconds and the process noise is a random walk whose
variance grows linearly with ``dt``, so 10 Hz and 30 Hz streams carry the same uncertainty after one second.
Noise standard deviations scale with the box height (ByteTrack), so one setting fits near and far objects.

Layout, and why it is not N×8 / N×8×8: F couples each component only with its own velocity, H reads the four
components, and P₀, Q and R are diagonal — so P stays block-diagonal with four 2×2 blocks
``[[pp, pv], [pv, vv]]`` (one per component) forever. So the mean is 2×4×N (components; velocities) and the
covariance 3×4×N (pp; pv; vv), component-major. Predict and update become a few element-wise operations on
contiguous rows instead of batched matrix products and inverses, and that is what keeps a 100-object frame
within its budget. It is exactly the 8×8 filter: ``full_state`` / ``full_covariance`` rebuild the usual form and the
tests check every step against ``filterpy.kalman.KalmanFilter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mim_perception.core.config import rng

NDIM = 4              # measured components: cx, cy, a, h
PP, PV, VV = 0, 1, 2  # covariance planes: var(component), cov(component, velocity), var(velocity)


@dataclass(frozen=True)
class KalmanConfig:
    """Noise model; "h" below is the track's current box height in pixels."""

    pos_noise: float = field(metadata=rng(0.0, 100.0, unit="h/sqrt(s)"))
    vel_noise: float = field(metadata=rng(0.0, 1000.0, unit="h/s/sqrt(s)"))
    aspect_noise: float = field(metadata=rng(0.0, 100.0, unit="1/sqrt(s)"))
    aspect_vel_noise: float = field(metadata=rng(0.0, 100.0, unit="1/s/sqrt(s)"))
    meas_pos: float = field(metadata=rng(1e-6, 100.0, unit="h"))
    meas_aspect: float = field(metadata=rng(1e-6, 100.0))
    init_pos: float = field(metadata=rng(1e-6, 100.0, unit="h"))
    init_vel: float = field(metadata=rng(1e-6, 1000.0, unit="h/s"))
    init_aspect: float = field(metadata=rng(1e-6, 100.0))
    init_aspect_vel: float = field(metadata=rng(1e-6, 100.0, unit="1/s"))


# Linear maps between corner form and centre/size form; with the product a·h done separately, each conversion
# is one small matrix product (fewer numpy calls than column-by-column arithmetic).
_XYXY_TO_CWH = np.array([[0.5, 0, 0.5, 0], [0, 0.5, 0, 0.5], [-1, 0, 1, 0], [0, -1, 0, 1]])
_CWH_TO_XYXY = np.array([[1, 0, -0.5, 0], [0, 1, 0, -0.5], [1, 0, 0.5, 0], [0, 1, 0, 0.5]])


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """N×4 ``x1 y1 x2 y2`` -> 4×N rows ``cx, cy, a, h`` (float64, component-major like the filter state)."""
    out = _XYXY_TO_CWH @ np.asarray(boxes, np.float64).T               # cx, cy, w, h
    out[2] /= out[3]
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """4×N rows ``cx, cy, a, h`` -> N×4 ``x1 y1 x2 y2`` (float64)."""
    cwh = xyah.copy()
    cwh[2] *= cwh[3]                                                   # w = a·h
    return (_CWH_TO_XYXY @ cwh).T


def transition(dt: float) -> np.ndarray:
    """8×8 constant-velocity transition F for ``dt`` seconds (the textbook form, for tests and reference)."""
    f = np.eye(2 * NDIM)
    f[:NDIM, NDIM:] = dt * np.eye(NDIM)
    return f


def full_state(mean: np.ndarray) -> np.ndarray:
    """2×4×N mean -> N×8 ``[cx, cy, a, h, vcx, vcy, va, vh]``."""
    return np.concatenate([mean[0], mean[1]]).T


def full_covariance(cov: np.ndarray) -> np.ndarray:
    """3×4×N covariance -> the N×8×8 matrix it stands for."""
    n = cov.shape[2]
    p = np.zeros((n, 2 * NDIM, 2 * NDIM))
    i = np.arange(NDIM)
    p[:, i, i] = cov[PP].T
    p[:, i, i + NDIM] = p[:, i + NDIM, i] = cov[PV].T
    p[:, i + NDIM, i + NDIM] = cov[VV].T
    return p


class BoxKalmanFilter:
    """Stateless vectorised filter; arrays in, new arrays out (inputs are never modified).

    Noise variances are ``(std · h)²`` for cx, cy, h and ``std²`` for the aspect; they are added row by row
    (component-major layout), which avoids numpy broadcasting over a short axis — several times slower.
    """

    def __init__(self, cfg: KalmanConfig) -> None:
        self.cfg = cfg
        self._q = (cfg.pos_noise**2, cfg.aspect_noise**2, cfg.vel_noise**2, cfg.aspect_vel_noise**2)
        self._r = (cfg.meas_pos**2, cfg.meas_aspect**2)
        self._p0 = (cfg.init_pos**2, cfg.init_aspect**2, cfg.init_vel**2, cfg.init_aspect_vel**2)

    @staticmethod
    def _add_var(out: np.ndarray, h2: np.ndarray, var_h: float, var_a: float) -> None:
        """out (4×N) += variance: var_h · h² on cx, cy, h; var_a on the aspect (in place)."""
        vh = h2 * var_h
        out[0] += vh
        out[1] += vh
        out[2] += var_a
        out[3] += vh

    def process_noise(self, h: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """4×N variances added to the components and to their velocities over ``dt`` s (random walk: ∝ dt)."""
        h2 = np.square(h)
        q_pos, q_vel = np.zeros((NDIM, len(h))), np.zeros((NDIM, len(h)))
        self._add_var(q_pos, h2, self._q[0] * dt, self._q[1] * dt)
        self._add_var(q_vel, h2, self._q[2] * dt, self._q[3] * dt)
        return q_pos, q_vel

    def measurement_noise(self, h: np.ndarray) -> np.ndarray:
        """4×N diagonal of R for heights ``h``."""
        r = np.zeros((NDIM, len(h)))
        self._add_var(r, np.square(h), *self._r)
        return r

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tracks from 4×N xyah measurements: zero velocity, diagonal covariance -> (2×4×N, 3×4×N)."""
        n = z.shape[1]
        mean = np.zeros((2, NDIM, n))
        mean[0] = z
        cov = np.zeros((3, NDIM, n))
        h2 = np.square(z[3])
        self._add_var(cov[PP], h2, self._p0[0], self._p0[1])
        self._add_var(cov[VV], h2, self._p0[2], self._p0[3])
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """x' = F x and P' = F P Fᵀ + Q(h, dt), block by block."""
        new_mean, new_cov = mean.copy(), cov.copy()
        if dt == 0.0 or mean.shape[2] == 0:
            return new_mean, new_cov
        h2 = np.square(mean[0, 3])
        new_mean[0] += dt * mean[1]
        dvv = dt * cov[VV]
        new_cov[PP] += dt * (2.0 * cov[PV] + dvv)
        new_cov[PV] += dvv
        self._add_var(new_cov[PP], h2, self._q[0] * dt, self._q[1] * dt)
        self._add_var(new_cov[VV], h2, self._q[2] * dt, self._q[3] * dt)
        return new_mean, new_cov

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray,
               observed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Correct N tracks with 4×N xyah measurements (column i updates track i); S is diagonal: no inverse.

        ``observed`` (N bool) limits the correction to those columns: the others get zero gain, which leaves
        their mean and covariance exactly as they were (``z`` there only has to be finite). Updating every track
        with a mask is cheaper than gathering and scattering the matched ones.
        """
        pp, pv, vv = cov
        s = pp.copy()                                                # 4×N innovation variances S = P + R
        self._add_var(s, np.square(mean[0, 3]), *self._r)
        inv_s = 1.0 / s if observed is None else observed / s       # unobserved: 0, i.e. zero gain
        kp, kv = pp * inv_s, pv * inv_s                              # Kalman gains of component and velocity
        y = z - mean[0]
        new_mean, new_cov = np.empty_like(mean), np.empty_like(cov)
        new_mean[0] = mean[0] + kp * y
        new_mean[1] = mean[1] + kv * y
        new_cov[PP] = pp - kp * pp                                   # P - K S Kᵀ, block by block
        new_cov[PV] = pv - kp * pv
        new_cov[VV] = vv - kv * pv
        return new_mean, new_cov
