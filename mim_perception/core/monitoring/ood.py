"""OOD score from the MIM decoder: reconstruction error of a fixed masked pattern, normalised on clean frames.

The decoder is trained to fill masked patches of *in-distribution* frames; on frames it does not understand
(fog, night, a sensor fault) the error rises. Raw errors depend on the model and the scene, so the score is
the error's quantile among validation-frame errors (0.5 = typical, → 1 = beyond anything seen clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mim_perception.core.errors import ModelLoadError


@dataclass(frozen=True)
class OodReference:
    errors: np.ndarray     # sorted reconstruction errors of clean validation frames

    @classmethod
    def build(cls, errors: np.ndarray) -> OodReference:
        e = np.asarray(errors, np.float64).reshape(-1)
        if len(e) < 10 or not np.isfinite(e).all():
            raise ValueError("OOD reference needs at least 10 finite validation errors")
        return cls(np.sort(e))

    def score(self, error: float) -> float:
        """Empirical CDF of the clean errors at ``error`` (mid-rank for ties); NaN for a non-finite error."""
        if not np.isfinite(error):
            return float("nan")
        lo = np.searchsorted(self.errors, error, side="left")
        hi = np.searchsorted(self.errors, error, side="right")
        return float((lo + hi) / 2 / len(self.errors))

    def save(self, path: Path) -> None:
        np.save(path, self.errors)

    @classmethod
    def load(cls, path: Path) -> OodReference:
        try:
            return cls.build(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"OOD reference {path} cannot be read: {e}") from e
