"""Drift (MMD with a calibrated null) and OOD normalisation on controlled distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mim_perception.core.monitoring.drift import DriftDetector, DriftReference, mmd2_unbiased
from mim_perception.core.monitoring.ood import OodReference

D, W = 48, 32


def _gauss(rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    # Correlated features, like pooled CNN embeddings: a low-rank structure plus noise.
    basis = np.random.default_rng(123).normal(size=(8, D))
    z = rng.normal(size=(n, 8)) * scale + shift
    return z @ basis + 0.3 * rng.normal(size=(n, D))


@pytest.fixture(scope="module")
def ref() -> DriftReference:
    return DriftReference.build(_gauss(np.random.default_rng(0), 1200), window=W, dims=8, sample=256, null_draws=300)


def _p_values(ref: DriftReference, seed: int, shift: float, scale: float = 1.0, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        det = DriftDetector(ref)
        for e in _gauss(rng, W, shift, scale):
            det.add(e)
        r = det.result()
        assert r is not None and r.samples == W
        out.append(r.p_value)
    return np.array(out)


def test_clean_windows_rarely_alarm(ref: DriftReference) -> None:
    p = _p_values(ref, 1, 0.0)
    assert (p < 0.01).mean() <= 0.05
    assert 0.2 < np.median(p) < 0.8, "calibrated: clean p-values spread over (0, 1)"


def test_shift_and_scale_are_detected(ref: DriftReference) -> None:
    assert (_p_values(ref, 2, 0.6) < 0.01).mean() >= 0.9
    assert (_p_values(ref, 3, 0.0, scale=1.8) < 0.01).mean() >= 0.9


def test_mmd_zero_for_same_sample_and_positive_for_shift() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    assert abs(mmd2_unbiased(x[:100], x[100:], 0.5)) < 0.05
    assert mmd2_unbiased(x[:100], x[100:] + 2, 0.5) > 0.1


def test_every_nth_bad_embeddings_reset_and_round_trip(ref: DriftReference, tmp_path: Path) -> None:
    det = DriftDetector(ref, every=3)
    took = [det.add(np.zeros(D)) for _ in range(9)]
    assert took == [True, False, False] * 3
    det.add(np.full(D, np.nan))
    det.add(np.zeros(D + 1))
    assert det.rejected == 1
    while not det.wants():
        det.add(np.zeros(D))
    det.add(np.zeros(D + 1))
    assert det.rejected == 2 and det.result() is None
    det.reset()
    assert len(det.window) == 0
    ref.save(tmp_path / "ref.npz")
    back = DriftReference.load(tmp_path / "ref.npz")
    assert np.array_equal(back.null, ref.null) and back.window == W
    with pytest.raises(ValueError, match="at least"):
        DriftReference.build(np.zeros((10, D)), window=W)


def test_ood_score_is_two_sided_and_extrapolates(tmp_path: Path) -> None:
    clean = np.exp(np.random.default_rng(0).normal(1.0, 0.3, 500))   # log-normal, like reconstruction errors
    ref = OodReference.build(clean)
    assert ref.score(float(np.median(clean))) < 0.05, "a typical error scores ~0"
    assert ref.score(float(np.exp(1.0 + 6 * 0.3))) > 0.999, "far above: noise-like"
    assert ref.score(float(np.exp(1.0 - 6 * 0.3))) > 0.999, "far below: blur/fog remove what the decoder restores"
    assert ref.p_value(1e9) < 1e-12, "beyond the validation range the tail still resolves small p-values"
    p = np.array([ref.p_value(float(e)) for e in np.exp(np.random.default_rng(1).normal(1.0, 0.3, 2000))])
    assert 0.005 < np.mean(p < 0.01) < 0.02, "calibrated on new clean errors"
    assert np.isnan(ref.score(float("nan")))
    ref.save(tmp_path / "ood.npy")
    assert np.array_equal(OodReference.load(tmp_path / "ood.npy").errors, ref.errors)


def test_p_value_extrapolates_beyond_the_calibrated_range(ref: DriftReference) -> None:
    p = _p_values(ref, 4, 3.0, n=3)
    assert (p < 1.0 / (len(ref.null) + 1)).all() and (p < 1e-4).all(), "strong drift reaches ERROR thresholds"
    assert ref.p_value(float(ref.null[0])) == 1.0


def _drives(rng: np.random.Generator, n_episodes: int, frames: int) -> np.ndarray:
    """Drives: each "episode" has its own offset (lighting, weather) shared by its consecutive frames."""
    basis = np.random.default_rng(123).normal(size=(8, D))
    return np.concatenate([(rng.normal(size=(frames, 8)) + rng.normal(0, 0.7, 8)) @ basis
                           + 0.3 * rng.normal(size=(frames, D)) for _ in range(n_episodes)])


def test_sequential_reference_tolerates_scene_correlation() -> None:
    rng = np.random.default_rng(7)
    train = _drives(rng, 40, 40)
    iid = DriftReference.build(train, window=W, dims=8, sample=256, null_draws=300)
    seq = DriftReference.build(train, window=W, dims=8, sample=256, null_draws=300, sequential=True)
    new = _drives(rng, 10, 40)   # unseen clean drives, windows of consecutive frames
    p_iid = [iid.p_value(mmd2_unbiased(iid.project(new[i:i + W]), iid.sample, iid.gamma)) for i in range(0, 400 - W, 40)]
    p_seq = [seq.p_value(mmd2_unbiased(seq.project(new[i:i + W]), seq.sample, seq.gamma)) for i in range(0, 400 - W, 40)]
    assert np.mean(np.array(p_iid) < 0.01) > 0.5, "a null of random draws calls clean drives drifted"
    assert np.mean(np.array(p_seq) < 0.01) <= 0.2, "a null of consecutive runs does not"


def test_strided_null_matches_strided_runtime_windows() -> None:
    # The node samples one embedding every `drift_every` frames: a window then spans more of a drive and is closer
    # to the pooled reference than a run of consecutive frames. A null built with the same stride is calibrated for
    # those windows (median p near 0.5); a consecutive-run null is far too lenient for them (p near 1: blind).
    rng = np.random.default_rng(3)
    train, new = _drives(rng, 60, 40), _drives(rng, 20, 40)
    stride = 5
    consecutive = DriftReference.build(train, window=W, dims=8, sample=256, null_draws=300, sequential=True)
    strided = DriftReference.build(train, window=W, dims=8, sample=256, null_draws=300, sequential=True, stride=stride)
    span = (W - 1) * stride + 1
    windows = [new[i:i + span:stride] for i in range(0, len(new) - span, 20)]

    def median_p(ref: DriftReference) -> float:
        return float(np.median([ref.p_value(mmd2_unbiased(ref.project(w), ref.sample, ref.gamma)) for w in windows]))

    assert median_p(consecutive) > 0.8
    assert 0.1 < median_p(strided) < 0.9
    with pytest.raises(ValueError, match="stride"):
        DriftReference.build(train[:300], window=W, dims=8, sample=256, sequential=True, stride=stride)


def test_image_statistics_see_blur_and_contrast_but_not_transport_jpeg() -> None:
    import cv2

    from mim_perception.core.errors import BadImageError
    from mim_perception.core.monitoring.image_stats import FEATURES, image_statistics
    from mim_perception.sim.synthetic import SceneConfig, SyntheticScene

    img = SyntheticScene(SceneConfig(seed=3)).render()[0]
    f = image_statistics(img)
    assert f.shape == (len(FEATURES),) and np.isfinite(f).all()
    blur = image_statistics(cv2.GaussianBlur(img, (0, 0), 3))
    assert (blur[2:] < f[2:] - 0.3).all(), "sharpness at both scales drops on blur"
    flat = image_statistics(((img.astype(np.float32) - 128) * 0.2 + 128).astype(np.uint8))
    assert flat[1] < f[1] - 1.0, "log contrast drops"
    q90 = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)
    assert np.abs(image_statistics(q90) - f).max() < 0.1, "camera transport JPEG is not a fault"
    for bad in (img[..., 0], img.astype(np.float32), img[:4]):
        with pytest.raises(BadImageError):
            image_statistics(bad)


def test_image_channel_is_combined_with_a_bonferroni_bound(ref: DriftReference) -> None:
    from mim_perception.core.errors import ConfigError

    rng = np.random.default_rng(5)
    image_ref = DriftReference.build(rng.normal(size=(900, 4)), window=W, sample=256, null_draws=300)
    with pytest.raises(ConfigError, match="window"):
        DriftDetector(ref, image_reference=DriftReference.build(rng.normal(size=(900, 4)), window=W // 2))
    emb = _gauss(rng, W)
    for shift, drifted in ((0.0, False), (3.0, True)):   # the embedding alone is clean; only the images change
        det = DriftDetector(ref, image_reference=image_ref)
        for e in emb:
            det.add(e, rng.normal(size=4) + shift)
        r = det.result()
        assert r is not None and r.p_value == min(1.0, 2 * min(r.p_embedding, r.p_image))
        assert (r.p_value < 1e-3) == drifted and r.p_embedding > 1e-3
    det.add(emb[0], np.full(4, np.nan))   # a non-finite statistic is counted, the embedding still taken
    assert det.rejected == 1 and len(det.window) == W
    plain = DriftDetector(ref)
    for e in emb:
        plain.add(e, np.zeros(4))   # no image reference: statistics ignored, p is the embedding's
    r = plain.result()
    assert r is not None and r.p_value == r.p_embedding and np.isnan(r.p_image)


def test_wide_kernels_keep_growing_with_the_shift_where_one_gaussian_saturates(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    clean = rng.normal(size=(800, 4))
    one = DriftReference.build(clean, window=W, sample=256, null_draws=100)
    multi = DriftReference.build(clean, window=W, sample=256, null_draws=100, scales=(1.0, 10.0, 100.0))
    window = rng.normal(size=(W, 4))

    def stat(ref: DriftReference, shift: float) -> float:
        return mmd2_unbiased(ref.project(window + shift), ref.sample, ref.gamma)

    assert stat(one, 50.0) == pytest.approx(stat(one, 10.0), rel=1e-6), "one kernel: every far window looks alike"
    assert stat(multi, 50.0) > stat(multi, 10.0) * 1.05 > stat(multi, 3.0)
    assert multi.p_value(stat(multi, 50.0)) <= multi.p_value(stat(multi, 10.0)) < 1e-3
    multi.save(tmp_path / "m.npz")
    back = DriftReference.load(tmp_path / "m.npz")
    assert back.gamma.shape == (3,) and stat(back, 10.0) == stat(multi, 10.0)
