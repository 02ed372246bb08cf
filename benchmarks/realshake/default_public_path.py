"""The default model through its public path: ``Deblurrer("default", deconv="auto")`` against ``"off"``.

    python benchmarks/realshake/default_public_path.py [--sets shake,nonshake,levin] [--levin DIR]

`default_hybrid.py` scores the engine's functions directly; this script scores what a user gets
(`deblurcli.api.Deblurrer.restore`, which is what ``deblur run`` calls), on the same images, read
from that script's generators: ``shake`` (`benchmarks/default_model/evaluate.py`'s 60 images,
linear-light and sRGB-applied blur), ``nonshake`` (GoPro-style moving frames, spatially varying
blur, defocus, the sharp photo) and ``levin`` (Levin et al. 2009's 32 real shakes, academic-only
data read from ``--levin``, scored by Levin's protocol).

It answers whether ``auto`` may become the default: better than ``off`` on average, never worse
than the network alone on blur that is not uniform shake, and at most 1 image in 20 worse than
its input. Every row is printed as a JSON line as it is made (``--from-log`` summarises such a
log, so an interrupted run is not lost). Results: results/default_public_path.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
#: A loss smaller than this (dB) is noise of 8-bit rounding, not a worse result.
TOLERANCE_DB = 0.1


def run(args: argparse.Namespace) -> list[dict]:
    import default_hybrid as dh
    import torch

    from deblurcli.api import Deblurrer

    torch.set_num_threads(1)
    engines = {m: Deblurrer("default", device="cpu", threads=1, progress=False, deconv=m) for m in ("off", "auto")}
    gens = {"shake": lambda: dh.shake_set(args.size, args.kernels), "nonshake": lambda: dh.nonshake_set(args.size),
            "levin": lambda: dh.levin_set(args.levin)}
    rows = []
    for name in args.sets.split(","):
        for i, (info, blurred, truth) in enumerate(gens[name]()):
            if i % args.every:
                continue
            def score(x: np.ndarray, _info: dict = info, _truth=truth) -> float:
                if _info["set"] == "levin":
                    import levin

                    return levin.score(x.mean(axis=2).astype(np.float64), _truth, _info["image"],
                                       _info["kernel"])["psnr"]
                return dh.psnr8(x, _truth)

            row = {**info, "input": score(blurred)}
            for mode, d in engines.items():
                t0 = time.perf_counter()
                out = d.restore(blurred)
                row[f"{mode}_seconds"] = round(time.perf_counter() - t0, 3)
                row[mode] = score(out)
            outcome = engines["auto"].last_outcome
            row["path"] = outcome.path if outcome is not None else None
            row["note"] = outcome.note if outcome is not None else None
            row = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per set and kind: mean PSNR, gains over the input, losses against the input and against
    ``off``, how many photos took the deconvolution path, and the verdict on the three conditions."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["set"], []).append(r)
        if r["set"] != "levin":
            groups.setdefault(f"{r['set']}/{r['kind']}", []).append(r)
    out: dict = {}
    for name, rs in sorted(groups.items()):
        mean = {m: float(np.mean([r[m] for r in rs])) for m in ("input", "off", "auto")}
        out[name] = {"images": len(rs), "mean_psnr": {k: round(v, 3) for k, v in mean.items()},
                     "gain_db": {m: round(mean[m] - mean["input"], 3) for m in ("off", "auto")},
                     "deconvolved": sum(r["path"] == "deconvolved" for r in rs),
                     "auto_worse_than_input": sum(r["auto"] < r["input"] - TOLERANCE_DB for r in rs),
                     "off_worse_than_input": sum(r["off"] < r["input"] - TOLERANCE_DB for r in rs),
                     "auto_worse_than_off": sum(r["auto"] < r["off"] - TOLERANCE_DB for r in rs),
                     "seconds": {m: round(float(np.mean([r[f"{m}_seconds"] for r in rs])), 3) for m in ("off", "auto")}}
    nonshake = [r for r in rows if r["set"] == "nonshake"]
    shakes = [r for r in rows if r["set"] != "nonshake"]
    verdict = {
        "auto_better_on_average": bool(rows) and float(np.mean([r["auto"] - r["off"] for r in rows])) > 0,
        "never_worse_than_network_on_nonshake": all(r["auto"] >= r["off"] - TOLERANCE_DB for r in nonshake),
        "at_most_1_in_20_worse_than_input": sum(r["auto"] < r["input"] - TOLERANCE_DB for r in shakes)
        <= len(shakes) / 20,
    }
    verdict["auto_may_be_default"] = all(verdict.values())
    out["decision"] = verdict
    return out


def main(argv: list[str] | None = None) -> int:
    import default_hybrid as dh

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dh.add_set_arguments(ap)
    ap.add_argument("--every", type=int, default=1,
                    help="score every N-th image of each set only (4: a quarter, bands and kinds still mixed)")
    ap.add_argument("--from-log", type=Path, help="summarise the JSON lines an earlier run printed")
    ap.add_argument("--out", type=Path, default=RESULTS / "default_public_path.json")
    args = ap.parse_args(argv)
    from deblurcli.fsutil import atomic_write

    if args.from_log:
        rows = [json.loads(line) for line in args.from_log.read_text().splitlines() if line.startswith("{\"set\"")]
    else:
        if dh.levin_missing(args):
            return 2
        rows = run(args)
    s = summarise(rows)
    print(json.dumps(s, indent=1))
    payload = {"every": args.every, "threads": os.environ.get("OMP_NUM_THREADS"), "tolerance_db": TOLERANCE_DB,
               "summary": s,
               "per_image": rows}
    atomic_write(args.out, json.dumps(payload, indent=1) + "\n", make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
