"""Blind deconvolution of camera shake: estimate the blur kernel, then undo it.

A classical engine, no network and no weights: coarse-to-fine kernel estimation with an L0
gradient prior (`estimate_kernel`), robust non-blind deconvolution of each colour channel (from 1 MP
as brightness plus half-resolution colour: `deconvolve`), and both in one call (`deblur_shake`;
`restore_rgb` for colour photos).
`assess` says whether an estimate is trustworthy uniform camera shake. Images are HxW or HxWx3 float32 sRGB in
[0, 1]; kernels are convolution kernels (odd squares summing to 1). ``progress`` is an optional
``callable(fraction, text)`` for anything that takes seconds.

Pure library: numpy and torch only, nothing from the CLI or the model API.
"""

from .engine import Diagnostics, KernelEstimate, choose_region, deblur_shake, estimate_kernel, kernel_similarity
from .estimate import EstimatorSettings
from .kernels import KernelStats, kernel_image, kernel_stats, load_kernel
from .nonblind import deconvolve
from .trust import (
    TRUST_RULE,
    Verdict,
    assess,
    referee_features,
    restore_rgb,
    trust_features,
    verdict_from_features,
)

__all__ = ["TRUST_RULE", "Diagnostics", "EstimatorSettings", "KernelEstimate", "KernelStats", "Verdict", "assess",
           "choose_region", "deblur_shake", "deconvolve", "estimate_kernel", "kernel_image", "kernel_similarity",
           "kernel_stats", "load_kernel", "referee_features", "restore_rgb", "trust_features", "verdict_from_features"]
