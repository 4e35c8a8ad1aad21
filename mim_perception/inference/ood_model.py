"""The bundle's MIM OOD scorer (``ood`` + ``ood_reference`` files) as an error function, on ONNX Runtime.

It runs on the CPU whatever the main backend is: it scores one frame in ``perception.ood_every`` on a
background thread, and one intra-op thread keeps it from competing with the camera pipeline for cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.monitoring.ood import OodReference
from mim_perception.inference.manifest import INPUT_NAME, Manifest, load_manifest
from mim_perception.inference.ort_backend import cpu_session


def load_ood(bundle: Path, manifest: Manifest, threads: int = 1) -> tuple[Callable[[np.ndarray], float], OodReference]:
    """-> (error_fn, reference); ModelLoadError when the bundle has no OOD model or it cannot run here."""
    missing = [r for r in ("ood", "ood_reference") if r not in manifest.files]
    if missing:
        raise ModelLoadError(f"model bundle {bundle} has no {' / '.join(missing)} file (export with --mim)")
    checked = load_manifest(bundle, roles=("ood", "ood_reference"))   # sha256 checked right before use
    reference = OodReference.load(checked.path(bundle, "ood_reference"))
    session = cpu_session(checked.path(bundle, "ood"), threads)
    hw = (manifest.input_height, manifest.input_width)

    def error(frame: np.ndarray) -> float:
        if frame.shape != (1, 3, *hw) or frame.dtype != np.uint8:
            raise ValueError(f"OOD scorer expects uint8 1×3×{hw[0]}×{hw[1]}, got {frame.dtype} {frame.shape}")
        return float(np.asarray(session.run(None, {INPUT_NAME: frame})[0]).reshape(-1)[0])

    return error, reference
