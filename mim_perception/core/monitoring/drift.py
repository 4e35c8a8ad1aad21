"""Embedding drift: a two-sample test between a sliding window of recent embeddings and a reference.

Reference (built at export time from validation frames, shipped next to the model as ``drift_reference.npz``):
the embeddings are projected onto their top-k principal directions (whitened), a reference sample is kept,
and the null distribution of the test statistic for the runtime window size is estimated by drawing
windows from held-out reference embeddings. At run time the statistic is the unbiased squared MMD with
a Gaussian kernel (median-heuristic bandwidth); its p-value comes from that null distribution, so the
score is calibrated per model without hand-tuned thresholds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mim_perception.core.errors import ConfigError, ModelLoadError


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """Unbiased MMD² between samples x (n×k) and y (m×k) with kernel exp(-gamma·|a−b|²)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least 2 samples on each side")
    kxx = np.exp(-gamma * _sqdist(x, x))
    kyy = np.exp(-gamma * _sqdist(y, y))
    kxy = np.exp(-gamma * _sqdist(x, y))
    return float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2.0 * kxy.mean())


@dataclass(frozen=True)
class DriftReference:
    mean: np.ndarray          # D
    components: np.ndarray    # D×k, whitening projection
    sample: np.ndarray        # m×k projected reference sample
    gamma: float
    window: int
    null: np.ndarray          # sorted MMD² of reference windows (calibration)

    def project(self, emb: np.ndarray) -> np.ndarray:
        return (np.asarray(emb, np.float64) - self.mean) @ self.components

    @classmethod
    def build(cls, embeddings: np.ndarray, *, window: int, dims: int = 16, sample: int = 256, null_draws: int = 200,
              seed: int = 0, sequential: bool = False, stride: int = 1) -> DriftReference:
        """``embeddings`` N×D from clean validation frames (N ≥ sample + window, the rest calibrates the null).

        ``sequential``: the embeddings are in temporal order (frames of drives) and null windows are runs of
        consecutive frames, like the runtime window. Consecutive frames share a scene, lighting and weather, so
        their windows differ from the pooled reference far more than random draws do; a null of random draws
        would then call every clean drive drifted. ``stride``: the runtime takes one embedding every ``stride``
        frames (perception.drift_every), so null windows take every ``stride``-th frame of a run too."""
        e = np.asarray(embeddings, np.float64)
        if e.ndim != 2 or not np.isfinite(e).all():
            raise ValueError("reference embeddings must be a finite N×D array")
        if stride < 1 or len(e) < sample + window * stride:
            raise ValueError(f"need stride >= 1 and at least sample + window × stride = {sample + window * stride} "
                             f"reference embeddings, got {len(e)} (stride {stride})")
        rng = np.random.default_rng(seed)
        order = np.arange(len(e))
        pick = np.zeros(len(e), bool)
        pick[rng.choice(len(e), sample, replace=False)] = True
        # reference sample first, then the held-out frames (in their original order when sequential)
        e = e[np.concatenate([order[pick], order[~pick] if sequential else rng.permutation(order[~pick])])]
        mean = e.mean(0)
        _, s, vt = np.linalg.svd(e - mean, full_matrices=False)
        k = min(dims, vt.shape[0])
        comps = vt[:k].T / np.maximum(s[:k] / np.sqrt(len(e) - 1), 1e-8)   # whiten: unit variance per direction
        proj = (e - mean) @ comps
        ref, held = proj[:sample], proj[sample:]
        d = _sqdist(ref, ref)
        gamma = 1.0 / max(float(np.median(d[d > 0])) if (d > 0).any() else 1.0, 1e-12)
        if sequential:
            span = (window - 1) * stride + 1
            starts = rng.integers(0, len(held) - span + 1, null_draws)
            draws = [held[s0:s0 + span:stride] for s0 in starts]
        else:
            draws = [held[rng.choice(len(held), window, replace=len(held) < window)] for _ in range(null_draws)]
        null = np.sort([mmd2_unbiased(d, ref, gamma) for d in draws])
        return cls(mean, comps, ref, gamma, window, np.asarray(null))

    def p_value(self, stat: float) -> float:
        """P(null ≥ stat): empirical inside the calibrated range; beyond its largest value, the tail of a gamma
        fitted to the null by moments (the empirical p-value cannot go below 1 / (draws + 1), yet alarm
        thresholds sit far below that)."""
        n = len(self.null)
        greater = n - int(np.searchsorted(self.null, stat, side="left"))
        if greater > 0:
            return float((greater + 1) / (n + 1))
        from scipy.stats import gamma

        shift = float(self.null[0]) - 1e-12
        x = self.null - shift
        mean, var = float(x.mean()), float(x.var()) + 1e-30
        tail = float(gamma.sf(stat - shift, mean * mean / var, scale=var / mean))
        return min(1.0 / (n + 1), tail)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, sample=self.sample, gamma=self.gamma,
                 window=self.window, null=self.null)

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["mean"], z["components"], z["sample"], float(z["gamma"]), int(z["window"]), z["null"])
        except (OSError, KeyError, ValueError) as e:
            raise ModelLoadError(f"drift reference {path} cannot be read: {e}") from e


@dataclass(frozen=True)
class DriftResult:
    statistic: float      # MMD²
    p_value: float
    score: float          # 1 − p: 0 = like the reference, → 1 = drifted
    samples: int          # embeddings in the window


class DriftDetector:
    """Feed one embedding every ``every`` frames; ``result()`` once the window is full (None before)."""

    def __init__(self, reference: DriftReference, every: int = 1) -> None:
        if every < 1:
            raise ConfigError("drift: every must be >= 1")
        self.ref = reference
        self.every = every
        self.window: deque[np.ndarray] = deque(maxlen=reference.window)
        self._frames = 0
        self.rejected = 0     # non-finite embeddings (counted, never used)

    def wants(self) -> bool:
        """Whether the next frame's embedding is needed (so the caller can skip computing it)."""
        return self._frames % self.every == 0

    def add(self, embedding: np.ndarray) -> bool:
        take = self.wants()
        self._frames += 1
        if not take:
            return False
        e = np.asarray(embedding, np.float64).reshape(-1)
        if e.shape != self.ref.mean.shape or not np.isfinite(e).all():
            self.rejected += 1
            return False
        self.window.append(self.ref.project(e[None])[0])
        return True

    def reset(self) -> None:
        """Clock jump / new episode: old frames no longer describe the input."""
        self.window.clear()
        self._frames = 0

    def result(self) -> DriftResult | None:
        if len(self.window) < self.ref.window:
            return None
        stat = mmd2_unbiased(np.stack(self.window), self.ref.sample, self.ref.gamma)
        p = self.ref.p_value(stat)
        return DriftResult(stat, p, 1.0 - p, len(self.window))
