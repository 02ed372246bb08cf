"""Independent reference implementations the tests hold the library to.

Each is written the slow, obvious way from the definition, so that a test comparing the library
against it can fail when the library's faster formulation drifts; keeping one copy means a fix
to an oracle reaches every test that uses it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def volumetric_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB's volumetric SSIM (``ssim`` on an RGB array): one 3-D Gaussian over rows, columns
    and channels, edge-replicating, on 0-255 values."""
    x, y = x.astype(np.float64), y.astype(np.float64)

    def g(v: np.ndarray) -> np.ndarray:
        # radius = int(truncate * sigma + 0.5) = int(3.34 * 1.5 + 0.5) = 5 -> 11 taps on every axis;
        # 'nearest' extends edges as far as needed, also along the 3-long channel axis.
        return ndimage.gaussian_filter(v, sigma=1.5, truncate=3.34, mode="nearest")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))))
