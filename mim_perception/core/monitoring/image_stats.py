"""Image-quality statistics of a camera frame: the cheap input-drift channel beside the embedding.

The backbone's pooled embedding is built to ignore nuisance: on blur, defocus and heavy JPEG it barely moves
(drift AUROC 0.54-0.60 at severity 3), yet those are the faults a dirty, misfocused or badly compressed
camera produces. Four numbers per frame see them directly, in the spirit of Autoware's image_diagnostics:
brightness, contrast and sharpness at two scales. Sharpness is measured on 320- and 160-px-wide copies, not
at native resolution, so it follows image content and focus rather than the sensor's noise floor or the
transport's 8×8 JPEG blocks (camera JPEG at quality 80-95 moves it by < 0.6 clean standard deviations).
Windows of these statistics go through the same MMD test as the embeddings (a ``DriftReference`` built from
them, shipped as ``image_reference.npz``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mim_perception.core.errors import BadImageError

FEATURES = ("brightness", "log_contrast", "log_sharpness_320", "log_sharpness_160")
WIDTH = 320   # analysis width (px): the cost is fixed whatever the camera resolution (~1 ms)
# Kernel bandwidths² of the image reference's MMD, × the median heuristic: faults move these statistics by tens
# of clean standard deviations, far past where one Gaussian kernel saturates (see DriftReference.build).
KERNEL_SCALES = (1.0, 10.0, 100.0)


def image_statistics(bgr: np.ndarray) -> np.ndarray:
    """``FEATURES`` of an H×W×3 uint8 BGR frame, float64."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3 or min(bgr.shape[:2]) < 8:
        raise BadImageError(f"image statistics need an H×W×3 uint8 frame of at least 8×8, got {bgr.dtype} "
                            f"{bgr.shape}")
    h, w = bgr.shape[:2]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    big = cv2.resize(grey, (WIDTH, max(4, round(WIDTH * h / w))), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = cv2.resize(big, (WIDTH // 2, max(2, big.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    sharp_big = float(np.abs(cv2.Laplacian(big, cv2.CV_32F, ksize=1)).mean())
    sharp_small = float(np.abs(cv2.Laplacian(small, cv2.CV_32F, ksize=1)).mean())
    return np.array([float(big.mean()) / 255.0, np.log1p(float(big.std())),
                     np.log(sharp_big + 1e-3), np.log(sharp_small + 1e-3)])
