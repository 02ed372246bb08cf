"""ScanUNet (ours): the embedded default's network; its description for deblurcli.

A convolutional U-Net with selective scans only at its coarse levels, made for CPUs: see
``network`` for why. No torch here (see deblurcli.models.contract).
"""

from __future__ import annotations

from ..contract import SCAN_MIN_TILE, ArchSpec, TrainRecipe, network_hooks, width_memory
from .variants import DEFAULT_VARIANT, VARIANTS

ARCH = "scanunet"
INPUT_RANGE = "[0, 1]"

SPEC = ArchSpec(
    name=ARCH, title="ScanUNet", variants=VARIANTS, default_variant=DEFAULT_VARIANT, input_range=INPUT_RANGE,
    **network_hooks(__name__),
    # Its scans run along whole rows and columns of the 1/8 and 1/16 maps: tiles need the same
    # room as the papers' scan networks to see long blur.
    min_tile=SCAN_MIN_TILE,
    # Activations live at half resolution and below, with 4x the channels at the first level
    # after the 2x2 unshuffle: about what a full-resolution network of half the width needs.
    bytes_per_pixel=width_memory("width", fallback=24),
    recipe=TrainRecipe(
        model={"img_channel": 3, "width": 24, "enc_blk_nums": [1, 1, 2, 2], "middle_blk_num": 2,
               "dec_blk_nums": [1, 1, 1, 1], "scan_levels": [2, 3], "d_state": 8, "max_mult": 4},
        variant="plain",
        overrides={
            "train": {"optimizer": "adam", "lr": 5.0e-4, "betas": [0.9, 0.99], "weight_decay": 0.0,
                      "patch_size": 128, "batch_size": 8, "grad_clip": 1.0},
            "loss": {"pixel": "charbonnier", "edge": 0.05, "fft": 0.05, "contrastive": 0.0, "all_scales": False},
        },
        comments={
            "arch": "ScanUNet (ours, the embedded default's): Charbonnier + 0.05 edge + 0.05 FFT, Adam",
            "variant": "plain (its only form)",
            "model": "the embedded default's size; it is already CPU-sized",
        },
    ),
)
