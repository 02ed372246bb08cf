"""End-to-end seconds per megapixel for every registry model, through `Deblurrer.restore`.

Speed does not depend on the weights' values, so models whose weights are not on this machine run
with random weights of exactly their registry configuration and variant (the embedded default
uses its real file). Each model restores one synthetic WxH image, whole (no tiling), after a
warm-up; the median of the repeats is reported with megapixels per second and peak memory.

    python benchmarks/bench_models.py --size 512x512 --threads 2 [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from deblurcli.api import Deblurrer
from deblurcli.bench import bench_model, parse_size
from deblurcli.hub import cached_path
from deblurcli.models import create, registry
from deblurcli.weights import save_model


def weights_for(entry: registry.ModelEntry, tmp: Path) -> str:
    real = registry.embedded_path(entry) or cached_path(entry)
    if real is not None:
        return str(real)
    torch.manual_seed(0)
    net = create(entry.arch, entry.config, entry.variant, **entry.settings)
    path = tmp / f"{entry.name}.safetensors"
    save_model(net, path, arch=entry.arch, config=entry.config, variant=entry.variant, settings=entry.settings)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=None, help="names (default: one per architecture/variant)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    w, h = parse_size(args.size)
    names = args.models or ["default", "algnet-gopro", "evssm-gopro", "xyscannetp-gopro"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            entry = registry.get(name)
            d = Deblurrer(weights_for(entry, Path(tmp)), device=args.device, precision=args.precision, tile=0,
                          threads=args.threads, progress=False)
            r = bench_model(d, w, h, repeat=args.repeat)
            r["model"] = name
            rows.append(r)
            print(f"{name:18s} {entry.arch:9s} {w}x{h} {r['device']} {r['precision']}: {r['seconds']:.2f} s "
                  f"= {r['seconds_per_megapixel']:.2f} s/MP ({r['megapixels_per_second']:.3f} MP/s), "
                  f"peak {r['peak_memory_mb']:.0f} MB, scan {r['scan_backend']}, {r['threads']} threads", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
