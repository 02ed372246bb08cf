"""Benchmark evaluation: find a test set's pairs, restore them, score them as the papers do.

Typical use (the CLI's ``deblur eval`` does exactly this)::

    from deblurcli.eval import find_pairs, evaluate, write_json
    pairs = find_pairs("gopro", "~/data/GOPRO_Large")
    result = evaluate(deblurrer.restore, pairs, dataset="gopro", protocol="auto")
    result["model"] = "evssm"
    write_json(result, "-")

See ``deblurcli.eval.metrics`` for how each number is computed and how it relates to the
official MATLAB / RealBlur scripts.
"""

from .datasets import DATASETS, DatasetScan, Pair, default_protocol, find_pairs, scan_dataset
from .metrics import PROTOCOLS, psnr, score_image, ssim_2d, ssim_matlab, to_uint8
from .runner import evaluate, write_csv, write_json

__all__ = [
    "DATASETS",
    "PROTOCOLS",
    "DatasetScan",
    "Pair",
    "default_protocol",
    "evaluate",
    "find_pairs",
    "psnr",
    "scan_dataset",
    "score_image",
    "ssim_2d",
    "ssim_matlab",
    "to_uint8",
    "write_csv",
    "write_json",
]
