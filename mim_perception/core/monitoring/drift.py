"""Embedding drift: a two-sample test between a sliding window of recent embeddings and a reference.

Reference (built at export time from validation frames, shipped next to the model as ``drift_reference.npz``):
the embeddings are projected onto their top-k principal directions (whitened), a reference sample is kept,
and the null distribution of the test statistic for the runtime window size is estimated by drawing
windows from held-out reference embeddings. At run time the statistic is the unbiased squared MMD with
a Gaussian kernel (median-heuristic bandwidth); its p-value comes from that null distribution, so the
score is calibrated per model without hand-tuned thresholds. An optional second reference does the same for
cheap image-quality statistics of the frames (``image_stats``), which see blur and compression the embedding
is trained to ignore.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.special import gammaincc  # imported with the module: a first import inside a frame took 2.6 s

from mim_perception.core.errors import ConfigError, ModelLoadError


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _kernel(d2: np.ndarray, gamma: float | np.ndarray) -> np.ndarray:
    g = np.atleast_1d(np.asarray(gamma, np.float64))
    if len(g) == 1:
        return np.exp(-g[0] * d2)
    return np.mean([np.exp(-gk * d2) for gk in g], axis=0)


def _self_term(y: np.ndarray, gamma: float | np.ndarray) -> float:
    m = len(y)
    return float((_kernel(_sqdist(y, y), gamma).sum() - m) / (m * (m - 1)))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, gamma: float | np.ndarray, y_term: float | None = None) -> float:
    """Unbiased MMD² between samples x (n×k) and y (m×k) with kernel exp(-gamma·|a−b|²), averaged over the
    values of ``gamma`` when it is an array (several bandwidths). ``y_term``: y's own term, when y is a fixed
    reference sample (it is most of the cost: m² kernel values)."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least 2 samples on each side")
    yy = _self_term(y, gamma) if y_term is None else y_term
    return _self_term(x, gamma) + yy - 2.0 * float(_kernel(_sqdist(x, y), gamma).mean())


@dataclass(frozen=True)
class DriftReference:
    mean: np.ndarray          # D
    components: np.ndarray    # D×k, whitening projection
    sample: np.ndarray        # m×k projected reference sample
    gamma: np.ndarray         # kernel parameter(s): one per bandwidth
    window: int
    null: np.ndarray          # sorted MMD² of reference windows (calibration)

    def project(self, emb: np.ndarray) -> np.ndarray:
        return (np.asarray(emb, np.float64) - self.mean) @ self.components

    @cached_property
    def _sample_term(self) -> float:
        return _self_term(self.sample, self.gamma)

    def statistic(self, window: np.ndarray) -> float:
        """MMD² of a window of projected samples against the reference sample."""
        return mmd2_unbiased(window, self.sample, self.gamma, self._sample_term)

    @classmethod
    def build(cls, embeddings: np.ndarray, *, window: int, dims: int = 16, sample: int = 256, null_draws: int = 200,
              seed: int = 0, sequential: bool = False, stride: int = 1,
              scales: tuple[float, ...] = (1.0,)) -> DriftReference:
        """``embeddings`` N×D from clean validation frames (N ≥ sample + window, the rest calibrates the null).

        ``sequential``: the embeddings are in temporal order (frames of drives) and null windows are runs of
        consecutive frames, like the runtime window. Consecutive frames share a scene, lighting and weather, so
        their windows differ from the pooled reference far more than random draws do; a null of random draws
        would then call every clean drive drifted. ``stride``: the runtime takes one embedding every ``stride``
        frames (perception.drift_every), so null windows take every ``stride``-th frame of a run too.
        ``scales``: kernel bandwidths² as multiples of the median heuristic. One Gaussian kernel saturates when a
        window lies far from the reference (every cross term ~0, so MMD² only measures the window's own spread
        and a larger shift can score *lower*); wider kernels keep growing with the shift."""
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
        gamma = 1.0 / max(float(np.median(d[d > 0])) if (d > 0).any() else 1.0, 1e-12) / np.asarray(scales, np.float64)
        if sequential:
            span = (window - 1) * stride + 1
            starts = rng.integers(0, len(held) - span + 1, null_draws)
            draws = [held[s0:s0 + span:stride] for s0 in starts]
        else:
            draws = [held[rng.choice(len(held), window, replace=len(held) < window)] for _ in range(null_draws)]
        yy = _self_term(ref, gamma)
        null = np.sort([mmd2_unbiased(d, ref, gamma, yy) for d in draws])
        return cls(mean, comps, ref, gamma, window, np.asarray(null))

    def p_value(self, stat: float) -> float:
        """P(null ≥ stat): empirical inside the calibrated range; beyond its largest value, the tail of a gamma
        fitted to the null by moments (the empirical p-value cannot go below 1 / (draws + 1), yet alarm
        thresholds sit far below that)."""
        n = len(self.null)
        greater = n - int(np.searchsorted(self.null, stat, side="left"))
        if greater > 0:
            return float((greater + 1) / (n + 1))
        shift = float(self.null[0]) - 1e-12
        x = self.null - shift
        mean, var = float(x.mean()), float(x.var()) + 1e-30
        tail = float(gammaincc(mean * mean / var, max(stat - shift, 0.0) * mean / var))   # gamma survival
        return min(1.0 / (n + 1), tail)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, sample=self.sample, gamma=self.gamma,
                 window=self.window, null=self.null)

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        try:
            with np.load(path, allow_pickle=False) as z:
                gamma = np.atleast_1d(z["gamma"]).astype(np.float64)   # older files: one scalar bandwidth
                return cls(z["mean"], z["components"], z["sample"], gamma, int(z["window"]), z["null"])
        except (OSError, KeyError, ValueError) as e:
            raise ModelLoadError(f"drift reference {path} cannot be read: {e}") from e


@dataclass(frozen=True)
class DriftResult:
    statistic: float      # MMD² of the embedding window
    p_value: float        # the window's p-value: the embedding's, or both channels' combined (Bonferroni)
    score: float          # 1 − p: 0 = like the reference, → 1 = drifted
    samples: int          # embeddings in the window
    p_embedding: float = float("nan")
    p_image: float = float("nan")   # image-statistics channel (NaN: no image reference)


class DriftDetector:
    """Feed one embedding every ``every`` frames; ``result()`` once the window is full (None before).

    With an ``image_reference`` (``core.monitoring.image_stats`` of the same frames), a second window of image
    statistics is tested the same way and the two p-values are combined with a Bonferroni bound,
    p = min(1, 2·min(p_embedding, p_image)): the false-alarm rate of either test alone holds for the pair."""

    def __init__(self, reference: DriftReference | None, every: int = 1,
                 image_reference: DriftReference | None = None) -> None:
        if every < 1:
            raise ConfigError("drift: every must be >= 1")
        if reference is None and image_reference is None:
            raise ConfigError("drift: needs an embedding reference, an image reference or both")
        if reference is not None and image_reference is not None and image_reference.window != reference.window:
            raise ConfigError(f"drift: image reference window {image_reference.window} differs from the embedding "
                              f"reference's {reference.window}")
        self.ref = reference                  # None: image statistics only (models without an embedding output)
        self.image_ref = image_reference
        self.size = (reference or image_reference).window   # type: ignore[union-attr]
        self.every = every
        self.window: deque[np.ndarray] = deque(maxlen=self.size)
        self.image_window: deque[np.ndarray] = deque(maxlen=self.size)
        self._frames = 0
        self.rejected = 0     # non-finite embeddings or image statistics (counted, never used)

    def wants(self) -> bool:
        """Whether the next frame's embedding is needed (so the caller can skip computing it)."""
        return self._frames % self.every == 0

    def add(self, embedding: np.ndarray | None, image_stats: np.ndarray | None = None) -> bool:
        take = self.wants()
        self._frames += 1
        if not take:
            return False
        if self.ref is not None:
            e = np.asarray(embedding if embedding is not None else [], np.float64).reshape(-1)
            if e.shape != self.ref.mean.shape or not np.isfinite(e).all():
                self.rejected += 1
                return False
            self.window.append(self.ref.project(e[None])[0])
        if self.image_ref is not None and image_stats is not None:
            f = np.asarray(image_stats, np.float64).reshape(-1)
            if f.shape == self.image_ref.mean.shape and np.isfinite(f).all():
                self.image_window.append(self.image_ref.project(f[None])[0])
            else:
                self.rejected += 1
                return self.ref is not None
        return self.ref is not None or image_stats is not None

    def reset(self) -> None:
        """Clock jump / new episode: old frames no longer describe the input."""
        self.window.clear()
        self.image_window.clear()
        self._frames = 0

    def result(self) -> DriftResult | None:
        p_img = float("nan")
        if self.image_ref is not None and len(self.image_window) == self.size:
            ref = self.image_ref
            img_stat = ref.statistic(np.stack(self.image_window))
            p_img = ref.p_value(img_stat)
        if self.ref is None:   # image statistics only
            if len(self.image_window) < self.size:
                return None
            return DriftResult(img_stat, p_img, 1.0 - p_img, len(self.image_window), float("nan"), p_img)
        if len(self.window) < self.size:
            return None
        stat = self.ref.statistic(np.stack(self.window))
        p_emb = p = self.ref.p_value(stat)
        if not np.isnan(p_img):
            p = min(1.0, 2.0 * min(p_emb, p_img))
        return DriftResult(stat, p, 1.0 - p, len(self.window), p_emb, p_img)
