"""Does the refiner improve a blind deconvolution? Deconvolution alone vs deconvolution + refiner.

    python benchmarks/refiner/evaluate.py --weights runs/refiner/best.safetensors --levin DIR \
        [--trusted benchmarks/realshake/results/default_hybrid.json] [--cache /tmp/refiner_deconv.npz]

Sets: `benchmarks/realshake/default_hybrid.py`'s ``shake`` (evaluate.py's 60 images, 8-bit PSNR)
and ``levin`` (Levin et al. 2009's 32 real shakes, academic-only data read from ``--levin``,
Levin's protocol). None of these photos is a training photo of the refiner. Each image is
deconvolved blind (`deblurcli.deconv.restore_rgb`, exactly what the hybrid deconvolves); the
deconvolutions are cached (``--cache``) so that another checkpoint is scored in seconds. The
refiner runs as the hybrid runs it (`deblurcli.api.Deblurrer` on the deconvolved photo).

Reported per set and light: mean PSNR of deconvolution and of deconvolution + refiner, how
many the refiner makes worse, and the same over the images ``--trusted``'s rows trust (the only
ones the hybrid refines). Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "realshake"))
sys.path.insert(0, str(HERE.parent / "default_model"))


def _key(info: dict) -> str:
    return "/".join(str(info[k]) for k in ("set", "photo", "kind")) + f"/{info.get('kernel_size', '')}"


def deconvolutions(levin_dir: Path, cache: Path | None) -> tuple[list[dict], list[np.ndarray], list]:
    """(infos, deconvolved photos, truths) of both sets, from ``cache`` when it has them."""
    import default_hybrid as dh

    from deblurcli.deconv import restore_rgb

    stored = dict(np.load(cache, allow_pickle=False)) if cache is not None and cache.exists() else {}
    infos, outs, truths = [], [], []
    fresh = {}
    for gen in (dh.shake_set(256, 6), dh.levin_set(levin_dir)):
        for i, (info, blurred, truth) in enumerate(gen):
            key = f"{info['set']}{i:03d}"
            if key not in stored:
                fresh[key] = restore_rgb(blurred)[0]
                print(key, _key(info), flush=True)
            infos.append({**info, "key": key})
            outs.append(stored.get(key, fresh.get(key)))
            truths.append(truth)
    if cache is not None and fresh:
        np.savez(cache, **{**stored, **fresh})
    return infos, outs, truths


def score(info: dict, x: np.ndarray, truth) -> float:
    import default_hybrid as dh

    if info["set"] == "levin":
        import levin

        return levin.score(x.mean(axis=2).astype(np.float64), truth, info["image"], info["kernel"])["psnr"]
    return dh.psnr8(x, truth)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True, help="the refiner's safetensors")
    ap.add_argument("--levin", type=Path, required=True, help="Levin_data/ folder (FWen/deblur-pmp)")
    ap.add_argument("--trusted", type=Path, help="a default_hybrid.py results JSON: report its trusted rows too")
    ap.add_argument("--cache", type=Path, help="npz of the deconvolutions (made if missing)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    import torch

    from deblurcli.api import Deblurrer

    torch.set_num_threads(1)
    infos, outs, truths = deconvolutions(args.levin, args.cache)
    trusted = None
    if args.trusted:
        rows = [r for r in json.loads(args.trusted.read_text())["per_image"] if r["set"] in ("shake", "levin")]
        if len(rows) != len(infos):
            raise SystemExit(f"{args.trusted}: {len(rows)} shake/levin rows, expected {len(infos)}")
        trusted = [bool(r["trusted"]) for r in rows]
    net = Deblurrer(str(args.weights), device="cpu", tile=0, threads=1, progress=False)
    rows = []
    for n, (info, out, truth) in enumerate(zip(infos, outs, truths, strict=True)):
        refined = net.restore(np.ascontiguousarray(out, dtype=np.float32))
        row = {**info, "deconv": score(info, out, truth), "refined": score(info, refined, truth)}
        if trusted is not None:
            row["trusted"] = trusted[n]
        rows.append(row)
    summary = {}
    groups = {"shake/linear": lambda r: r["set"] == "shake" and r["kind"] == "linear",
              "shake/srgb": lambda r: r["set"] == "shake" and r["kind"] == "srgb",
              "levin": lambda r: r["set"] == "levin"}
    for name, pick in groups.items():
        for subset in ("all", "trusted"):
            rs = [r for r in rows if pick(r) and (subset == "all" or r.get("trusted"))]
            if not rs:
                continue
            summary[f"{name}/{subset}"] = {
                "images": len(rs), "deconv": round(float(np.mean([r["deconv"] for r in rs])), 3),
                "refined": round(float(np.mean([r["refined"] for r in rs])), 3),
                "gain_db": round(float(np.mean([r["refined"] - r["deconv"] for r in rs])), 3),
                "refiner_worse": sum(r["refined"] < r["deconv"] for r in rs)}
    print(json.dumps(summary, indent=1))
    if args.out:
        payload = {"weights": args.weights.name, "trusted_from": args.trusted.name if args.trusted else None,
                   "summary": summary, "per_image": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
