"""XYScanNet (Liu et al., CVPR 2025 Workshops): its description for deblurcli; the network is in ``network``.

No torch here (see deblurcli.models.contract): import ``network`` for the network's own names.
"""

from __future__ import annotations

from typing import Any

from ..contract import SCAN_MIN_TILE, ArchSpec, TrainRecipe, network_hooks, width_memory
from .variants import DEFAULT_VARIANT, VARIANTS

ARCH = "xyscannet"
INPUT_RANGE = "[-0.5, 0.5]"

#: The released XYScanNetP (XYScanNet+, dim 144), as ``infer_config`` reads it from the authors'
#: checkpoint keys and shapes.
CONFIGS: dict[str, dict[str, Any]] = {
    "xyscannetp": {"inp_channels": 3, "out_channels": 3, "dim": 144, "num_blocks": [3, 3, 6],
                   "vssm_expansion_factor": 1, "ffn_expansion_factor": 1, "bias": False,
                   "LayerNorm_type": "WithBias"},
}

SPEC = ArchSpec(
    name=ARCH, title="XYScanNet", variants=VARIANTS, default_variant=DEFAULT_VARIANT, input_range=INPUT_RANGE,
    **network_hooks(__name__),
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
