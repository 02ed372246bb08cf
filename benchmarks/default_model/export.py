"""Ship a training run's EMA weights as the embedded default model (weights/default.safetensors).

    python benchmarks/default_model/export.py runs/default/best.safetensors

The file keeps the run's architecture/config/variant metadata (what `deblur run` needs) and
adds what `deblur models info default` shows: training data, step, licence.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deblurcli.weights import load_model, save_model, sha256_file


def main(src: str, dst: str = "weights/default.safetensors") -> None:
    model, spec = load_model(src)
    log = Path(src).parent / "log.jsonl"
    step = None
    if log.is_file():
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        validated = [x for x in lines if "val_psnr" in x]  # best.safetensors comes from a validation step
        step = (validated or lines)[-1].get("step") if lines else None
    extra = {
        "trained_on": "synthetic camera shake (7-31 px, linear light, noise, JPEG) on dead leaves and "
                      "licensed photos (scikit-learn china/flower CC-BY 2.0, imgaug quokka, PyWavelets aero/ascent)",
        "description": "scaled-down ALGNet (width 8, d_state 16, one block per level) trained on CPU with "
                       "deblur train; see weights/README.md",
        "license": "MIT (deblurcli)",
        "training_steps": str(step),
        "source_sha256": sha256_file(src),
    }
    save_model(model, dst, arch=spec.arch, config=spec.config, variant=spec.variant, settings=spec.settings,
               extra_metadata=extra)
    print(f"{src} (step {step}) -> {dst} ({Path(dst).stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(*sys.argv[1:])
