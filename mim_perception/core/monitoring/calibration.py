"""Drift references from node-sampled replays of clean drives (``bench/drift_replay.py``): the numpy side of
calibrating the drift monitor, shared by `export --recalibrate-drift` and the false-alarm bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.errors import ConfigError
from mim_perception.core.monitoring.drift import DriftReference

DRIFT_WINDOW = 32             # embeddings in the runtime drift window (stored in the reference, read by the node)
REPLAY_NULL_DRAWS = 4000      # null windows drawn from an hour-long replay (~one per 5 evaluations)


def reference_from_replay(embeds: np.ndarray, *, window: int = DRIFT_WINDOW, null_draws: int = REPLAY_NULL_DRAWS,
                          scales: tuple[float, ...] = (1.0,)) -> DriftReference:
    """Drift reference from node-sampled embeddings (or image statistics) of long clean drives in drive order
    (every row is one runtime sample, so null windows are runs of consecutive ones)."""
    return DriftReference.build(embeds, window=window, null_draws=null_draws, sequential=True, scales=scales)


def load_replay(path: Path) -> dict[str, Any]:
    """A replay of ``bench/drift_replay.py`` (arrays + ``meta``), with the image statistics of its ``.img.npz``
    sidecar (``--image-stats-only`` on the same drives; its meta as ``image_meta``) when the replay has none."""
    with np.load(path, allow_pickle=False) as z:
        d: dict[str, Any] = {k: z[k] for k in z.files if k != "meta"} | {"meta": json.loads(str(z["meta"]))}
    sidecar = path.with_suffix(".img.npz")
    if len(d.get("image_stats", ())) != len(d["embeddings"]) and sidecar.is_file():
        with np.load(sidecar, allow_pickle=False) as z:
            if "time" not in d or not np.array_equal(z["time"], d["time"]):
                raise ConfigError(f"{sidecar} does not hold the frames of {path} (camera times differ)")
            d["image_stats"], d["image_meta"] = z["image_stats"], json.loads(str(z["meta"]))
    return d
