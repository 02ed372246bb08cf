"""Synthetic motion-blur training data.

Real blurred/sharp pairs are scarce, so the embedded default model is trained on pairs made here
from sharp photos (or from procedurally drawn "dead leaves" images), and users can make their own
with ``deblur synth SHARP_DIR OUT_DIR``. Two recipes are provided:

* **Kernel recipe** (:func:`degrade`): convolve a sharp image with a random camera-shake kernel
  (optionally several, blended spatially), then add sensor noise and JPEG compression.
* **Frame recipe** (:func:`average_frames`): average consecutive high-frame-rate video frames, as the
  GoPro dataset was made, with the middle frame as target.

Blur is physically a sum of light, so every blending step (convolution, kernel blending, frame
averaging, sensor noise) happens in linear light; images enter and leave as sRGB in ``[0, 1]``.
All randomness flows from an explicit :class:`numpy.random.Generator`, so every pair can be
regenerated from a seed.

Two modules, one job each: `recipes` (the blur itself, arrays in and out, no files) and `pairs`
(``deblur synth``'s folder job: reading the photos, writing the pairs). Both are re-exported here.
"""

from ..imageio.formats import IMAGE_EXTENSIONS
from .pairs import SynthProgress, write_dead_leaves_pairs, write_pairs
from .recipes import (
    add_noise,
    average_frames,
    blur_image,
    dead_leaves,
    degrade,
    hand_shake_kernel,
    jpeg,
    largest_kernel,
    linear_to_srgb,
    random_kernel,
    random_kernel_size,
    spatially_varying_blur,
    srgb_to_linear,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SynthProgress",
    "add_noise",
    "average_frames",
    "blur_image",
    "dead_leaves",
    "degrade",
    "hand_shake_kernel",
    "jpeg",
    "largest_kernel",
    "linear_to_srgb",
    "random_kernel",
    "random_kernel_size",
    "spatially_varying_blur",
    "srgb_to_linear",
    "write_dead_leaves_pairs",
    "write_pairs",
]
