"""EVSSM (Kong et al., CVPR 2025): its description for deblurcli; the network is in ``network``.

No torch here (see deblurcli.models.contract): import ``network`` for the network's own names.
"""

from __future__ import annotations

from typing import Any

from ..contract import SCAN_MIN_TILE, ArchSpec, TrainRecipe, network_hooks, width_memory
from .variants import DEFAULT_VARIANT, VARIANTS

ARCH = "evssm"
INPUT_RANGE = "[0, 1]"

#: The released EVSSM, as ``infer_config`` reads it from the authors' checkpoint keys and shapes.
CONFIGS: dict[str, dict[str, Any]] = {
    "evssm": {"inp_channels": 3, "out_channels": 3, "dim": 48, "num_blocks": [6, 6, 12],
              "ffn_expansion_factor": 3, "bias": False},
}

SPEC = ArchSpec(
    name=ARCH, title="EVSSM", variants=VARIANTS, default_variant=DEFAULT_VARIANT, input_range=INPUT_RANGE,
    **network_hooks(__name__),
    min_tile=SCAN_MIN_TILE,
    bytes_per_pixel=width_memory("dim"),
    configs=CONFIGS,
    recipe=TrainRecipe(
        model=CONFIGS["evssm"],
        variant="global",
        overrides={
            "train": {"optimizer": "adamw", "lr": 1.0e-3, "betas": [0.9, 0.9], "weight_decay": 1.0e-3,
                      "grad_clip": 0.01, "patch_size": 256, "batch_size": 8,
                      "progressive": [[0.5, 128, 8], [1.0, 256, 4]]},
            "loss": {"pixel": "l1", "edge": 0.0, "fft": 0.1, "contrastive": 0.0},
        },
        comments={
            "arch": "EVSSM (Kong et al.): L1 + 0.1 FFT, AdamW(lr 1e-3, betas 0.9/0.9, wd 1e-3), 128 -> 256 crops",
            "variant": "global (the scan covers the whole crop, as trained); exported as windowed",
            "train.grad_clip": "clip the gradient norm to this (0 = off); EVSSM's BasicSR code clips at 0.01",
            "train.progressive": (
                "the paper grows crops 128 -> 256; [[until, patch, batch], ...], until a step or a "
                "fraction of steps if written with a decimal point"
            ),
        },
    ),
)
