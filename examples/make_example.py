"""Recreate examples/blurry.jpg: scikit-image's astronaut photo (NASA, public domain), blurred
with a seeded camera-shake kernel in linear light. It is an evaluation image, never trained on.

    pip install scikit-image && python examples/make_example.py

and the README's picture, examples/before_after.jpg, after a new default model is shipped:

    deblur run examples/blurry.jpg --overwrite && python examples/make_example.py --before-after
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from deblurcli.synth import blur_image, random_kernel


def main() -> None:
    from skimage import data

    sharp = data.astronaut()[16:400, 64:448].astype(np.float32) / 255.0  # 384x384, the face and flag
    kernel = random_kernel(17, np.random.default_rng(7))
    blurred = blur_image(sharp, kernel)
    here = Path(__file__).parent
    Image.fromarray((blurred * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(here / "blurry.jpg", quality=95,
                                                                              subsampling=0)
    np.save(here / "blurry_kernel.npy", kernel)


def before_after(gap: int = 8) -> None:
    """The input and the default model's result side by side, a white gap between them."""
    here = Path(__file__).parent
    with Image.open(here / "blurry.jpg") as a, Image.open(here / "blurry_deblurred.jpg") as b:
        canvas = Image.new("RGB", (a.width + gap + b.width, max(a.height, b.height)), "white")
        canvas.paste(a.convert("RGB"), (0, 0))
        canvas.paste(b.convert("RGB"), (a.width + gap, 0))
    canvas.save(here / "before_after.jpg", quality=92)


if __name__ == "__main__":
    import sys

    before_after() if "--before-after" in sys.argv[1:] else main()
