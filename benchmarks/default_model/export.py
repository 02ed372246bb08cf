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


def _largest_blur(config: Path) -> int | None:
    """The run's largest shake, for weights saved before deblur train recorded it."""
    if not config.is_file():
        return None
    import yaml

    from deblurcli.train.config import trained_blur_px

    return trained_blur_px(yaml.safe_load(config.read_text()))


def main(src: str, dst: str = "weights/default.safetensors") -> None:
    model, spec = load_model(src)
    log = Path(src).parent / "log.jsonl"
    step = spec.metadata.get("train_steps")  # deblur train records the step it saved at
    if step is None and log.is_file():
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        validated = [x for x in lines if "val_psnr" in x]
        if Path(src).name == "best.safetensors" and validated:  # written at the best validation so far
            step = max(validated, key=lambda x: x["val_psnr"]).get("step")
        else:
            step = (validated or lines)[-1].get("step") if lines else None
    extra = {
        "trained_on": "synthetic camera shake (7-41 px, half in linear light, half on sRGB values; sensor and "
                      "sRGB noise, JPEG) on dead leaves and 35 licensed photographs from Debian's wallpaper "
                      "packages plus scikit-learn's two sample photos (credits in weights/README.md)",
        "description": f"{spec.arch} ({json.dumps(spec.config, sort_keys=True)}) trained on CPU "
                       "with deblur train; see weights/README.md",
        "license": "MIT (deblurcli)",
        "training_steps": str(step),
        "source_sha256": sha256_file(src),
    }
    blur = spec.metadata.get("train_blur_px") or _largest_blur(Path(src).parent / "config.yaml")
    if blur:  # what `--scale auto` goes by
        extra["train_blur_px"] = str(blur)
    save_model(model, dst, arch=spec.arch, config=spec.config, variant=spec.variant, settings=spec.settings,
               extra_metadata=extra)
    # The package pins what it ships: deblurcli refuses an embedded file that does not match.
    manifest_path = Path(dst).parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[Path(dst).name] = {"sha256": sha256_file(dst), "size": Path(dst).stat().st_size}
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{src} (step {step}) -> {dst} ({Path(dst).stat().st_size / 1e6:.1f} MB); pinned in {manifest_path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
