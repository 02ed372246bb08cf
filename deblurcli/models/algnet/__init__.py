"""ALGNet (Gao & Dang, ACM MM 2024): its description for deblurcli; the network is in ``network``.

No torch here (see deblurcli.models.contract): import ``network`` for the network's own names.
"""

from __future__ import annotations

from typing import Any

from ..contract import SCAN_MIN_TILE, ArchSpec, TrainRecipe, network_hooks, width_memory
from .variants import DEFAULT_VARIANT, VARIANTS

ARCH = "algnet"
INPUT_RANGE = "[0, 1]"

#: The released ALGNet (width 32) and ALGNet-B (width 64), as ``infer_config`` reads them from the
#: authors' checkpoint keys and shapes (tests/fixtures/conformance/official_state_dicts.json).
_ALGNET = {"img_channel": 3, "width": 32, "middle_blk_num": 8, "enc_blk_nums": [2, 2, 4, 8],
           "dec_blk_nums": [8, 4, 2, 2]}
CONFIGS: dict[str, dict[str, Any]] = {"algnet": _ALGNET, "algnet-b": {**_ALGNET, "width": 64}}


def export_settings(variant: str, settings: dict[str, Any], train_patch: int) -> dict[str, Any]:
    """The local (TLC) form's pooling windows are sized from the crop the network was trained on."""
    if variant == "local":
        settings.setdefault("local_pool", {"train_size": [train_patch, train_patch]})
    return settings


SPEC = ArchSpec(
    name=ARCH, title="ALGNet", variants=VARIANTS, default_variant=DEFAULT_VARIANT, input_range=INPUT_RANGE,
    **network_hooks(__name__),
    # Every block has a global Mamba branch scanning whole rows of the feature map: a scan model.
    min_tile=SCAN_MIN_TILE,
    bytes_per_pixel=width_memory("width"),
    configs=CONFIGS,
    export_settings=export_settings,
    recipe=TrainRecipe(
        model={**CONFIGS["algnet"], "d_state": 32},
        variant="plain",
        overrides={
            "train": {"optimizer": "adam", "lr": 2.0e-4, "betas": [0.9, 0.999], "weight_decay": 0.0,
                      "patch_size": 256, "batch_size": 8},
            "loss": {"pixel": "charbonnier", "edge": 0.05, "fft": 0.1, "contrastive": 0.0, "all_scales": True},
        },
        comments={
            "arch": "ALGNet (Gao & Dang): Charbonnier + 0.05 edge + 0.1 FFT on all four outputs, Adam",
            "variant": "plain (global average pooling, how it is trained); exported as local (TLC)",
            "train.lr": "peak learning rate (Adam, cosine decay to min_lr as in the paper; value ours)",
        },
    ),
)
