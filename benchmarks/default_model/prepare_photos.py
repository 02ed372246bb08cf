"""Collect the photographs the embedded default model may be trained on.

Only images whose licences allow it and that are NOT in the evaluation set: scikit-learn's
china.jpg and flower.jpg (CC-BY 2.0, credited in weights/README.md), imgaug's quokka
(CC0), and PyWavelets' aero and ascent (greyscale). PyWavelets' ``camera`` is the same
cameraman photograph scikit-image ships, and scikit-image's and matplotlib's photos are
reserved for evaluation, so none of them is used here. The rest of the training data is dead
leaves, generated on the fly.

    pip install scikit-learn imgaug PyWavelets
    python benchmarks/default_model/prepare_photos.py runs/photos
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(out: str) -> None:
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    for name, img in zip(sample.filenames, sample.images, strict=True):
        Image.fromarray(img).save(dst / f"sklearn_{Path(name).stem}.png")
    import importlib.util

    spec = importlib.util.find_spec("imgaug")  # located, not imported: imgaug fails on NumPy 2
    assert spec is not None and spec.origin is not None, "pip install imgaug"
    Image.open(Path(spec.origin).parent / "quokka.jpg").convert("RGB").save(dst / "imgaug_quokka.png")
    import pywt.data

    for name in ("aero", "ascent"):
        grey = np.asarray(getattr(pywt.data, name)(), dtype=np.uint8)
        Image.fromarray(np.stack([grey] * 3, axis=-1)).save(dst / f"pywt_{name}.png")
    print(f"wrote {len(list(dst.glob('*.png')))} photos to {dst}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/photos")
