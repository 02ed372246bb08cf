"""XYScanNet (Liu et al., CVPR 2025 Workshops): its description for deblurcli; the network is in ``network``.

This file imports no torch, so listing architectures and printing training configs stay instant;
the network's code is imported on first use, and its names (``XYScanNet``, ``build``, ...) are
reachable from here as before.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..contract import SCAN_MIN_TILE, ArchSpec, TrainRecipe, lazy, width_memory

ARCH = "xyscannet"
VARIANTS: tuple[str, ...] = ("plain",)
DEFAULT_VARIANT = "plain"
INPUT_RANGE = "[-0.5, 0.5]"

#: The released XYScanNetP (XYScanNet+, dim 144), as ``infer_config`` reads it from the authors'
#: checkpoint keys and shapes.
CONFIGS: dict[str, dict[str, Any]] = {
    "xyscannetp": {"inp_channels": 3, "out_channels": 3, "dim": 144, "num_blocks": [3, 3, 6],
                   "vssm_expansion_factor": 1, "ffn_expansion_factor": 1, "bias": False,
                   "LayerNorm_type": "WithBias"},
}

_net = f"{__name__}.network"

SPEC = ArchSpec(
    name=ARCH, title="XYScanNet", variants=VARIANTS, default_variant=DEFAULT_VARIANT, input_range=INPUT_RANGE,
    build=lazy(__name__, "build"), detect=lazy(__name__, "detect"), infer_config=lazy(__name__, "infer_config"),
    pad_multiple=lazy(__name__, "pad_multiple"), restore=lazy(__name__, "restore"),
    training_outputs=lazy(__name__, "training_outputs"),
    min_tile=SCAN_MIN_TILE,
    bytes_per_pixel=width_memory("dim"),
    configs=CONFIGS,
    recipe=TrainRecipe(
        # The paper's base XYScanNet (dim 72); XYScanNetP doubles the width.
        model={"inp_channels": 3, "out_channels": 3, "dim": 72, "num_blocks": [3, 3, 6],
               "vssm_expansion_factor": 1, "ffn_expansion_factor": 1, "bias": False},
        variant="plain",
        overrides={
            "train": {"optimizer": "adam", "lr": 2.0e-4, "betas": [0.9, 0.999], "weight_decay": 0.0,
                      "patch_size": 256, "batch_size": 8},
            "loss": {"pixel": "charbonnier", "edge": 0.05, "fft": 0.0, "contrastive": 0.0},
        },
        comments={
            "arch": "XYScanNet (Liu et al.): Charbonnier + 0.05 edge (+ optional VGG contrastive), Adam",
            "variant": "plain (its only form)",
            "train.lr": "peak learning rate (stage 1 of the paper: 2e-4, cosine to 1e-7)",
        },
    ),
)


def __getattr__(name: str) -> Any:
    """The network module's names (``XYScanNet``, ``build``, ...), imported on first use."""
    if name.startswith("__") or name == "network":
        raise AttributeError(name)
    return getattr(importlib.import_module(_net), name)
