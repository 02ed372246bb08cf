"""Should the default model deconvolve? Per image: input, network alone, deconvolution alone, hybrid.

    python benchmarks/realshake/default_hybrid.py [--sets shake,nonshake,levin] [--levin DIR]

Sets (all scored as PSNR on 8-bit RGB, all pixels, as `benchmarks/default_model/evaluate.py`):

- ``shake``: exactly `benchmarks/default_model/evaluate.py`'s images (its photos, seed, kernel bands,
  noise rotation and 8-bit saving; linear-light and sRGB-applied blur), 60 images;
- ``nonshake``: blur that is not uniform shake, on the same photos: a GoPro-style average of 9
  frames of a camera rotating about the centre while an object crosses the scene, a blend of
  three kernels across the frame (`deblurcli.synth.spatially_varying_blur`), a defocus disk
  (radius 3-7 px, linear light), and the sharp photo itself; noise and 8-bit as above;
- ``levin``: Levin et al. 2009's 32 real shakes (academic-only data, read from ``--levin``), grey
  fed as RGB, scored by Levin's protocol (`levin.py`).

"Network" is ``Deblurrer("default")``; "deconv" is `deblurcli.deconv.restore_rgb` (blind);
"hybrid" is deconv when `deblurcli.deconv.assess` trusts the estimate, else the network. Every
row keeps every feature the rule reads (`trust_features`, the corner kernels'
`region_features`, the referee's `referee_features`), so a rule can be re-checked from the JSON
(``--rescore FILE...``) without estimating again. The rule's thresholds are chosen on
calibrate_trust.py's images, none of which is scored here. Results: results/default_hybrid.json
(`TRUST_RULE`), results/default_hybrid_hand.json (`HAND_CALIBRATED_RULE`, scored once: it broke
the guarantees, so it is not the default) and results/default_hybrid_calibrated.json
(`CALIBRATED_RULE`), all from the same rows, made on one shared CPU by one run
(``--save-kernels`` keeps the estimated kernels outside the repository, so a kernel-shape
feature can be tried on them without estimating again; Levin's are never committed):

    python benchmarks/realshake/default_hybrid.py --sets shake,nonshake,levin --levin DIR \
        --out /tmp/trust_scored.json --save-kernels /tmp/trust_scored_kernels.npz
    python benchmarks/realshake/default_hybrid.py --rescore /tmp/trust_scored.json
    python benchmarks/realshake/default_hybrid.py --rescore /tmp/trust_scored.json --rule hand \
        --out benchmarks/realshake/results/default_hybrid_hand.json
    python benchmarks/realshake/default_hybrid.py --rescore /tmp/trust_scored.json --rule calibrated \
        --out benchmarks/realshake/results/default_hybrid_calibrated.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "default_model"))
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    d = _u8(a).astype(np.float64) - _u8(b).astype(np.float64)
    mse = float(np.mean(d * d))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def shake_set(size: int, kernels: int):
    """evaluate.py's images, drawn in its order from its seed (so the inputs are identical)."""
    import evaluate as ev

    from deblurcli.synth import blur_image, random_kernel

    rng = np.random.default_rng(ev.SEED)
    bands = list(ev.BANDS.values())
    for p, (name, sharp) in enumerate(ev.load_photos(size)):
        for domain in ev.DOMAINS:
            for k in range(kernels):
                lo, hi = bands[k % len(bands)]
                ks = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1
                kernel = random_kernel(ks, rng)
                noise = ev.NOISE[(k + p) % len(ev.NOISE)]
                blurred = blur_image(sharp, kernel, linear_light=domain == "linear")
                blurred = blurred + rng.normal(0, noise, sharp.shape).astype(np.float32)
                yield ({"set": "shake", "photo": name, "kind": domain, "kernel_size": ks, "noise": noise},
                       _u8(blurred).astype(np.float32) / 255.0, sharp)


def _rotate(img: np.ndarray, deg: float, shift: tuple[float, float]) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def gopro_like(sharp: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """9 frames: the camera rotates by up to +-3 degrees (blur grows from the centre outward) and
    drifts a little, while a disc cut from another photo crosses 30-60 px; averaged in linear light."""
    from deblurcli.synth import average_frames

    h, w = sharp.shape[:2]
    n = 9
    total = float(rng.uniform(3.0, 6.0)) * (1 if rng.random() < 0.5 else -1)
    drift = rng.uniform(-4, 4, 2)
    travel = float(rng.uniform(30, 60))
    ang = float(rng.uniform(0, 2 * math.pi))
    r = min(h, w) // 6
    cy, cx = int(rng.integers(r + 10, h - r - 10)), int(rng.integers(r + 10, w - r - 10))
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for i in range(n):
        t = i / (n - 1) - 0.5
        f = _rotate(sharp, total * t, (drift[0] * t, drift[1] * t))
        oy, ox = cy + travel * t * math.sin(ang), cx + travel * t * math.cos(ang)
        disc = (yy - oy) ** 2 + (xx - ox) ** 2 < r * r
        f = np.where(disc[..., None], other[(yy - int(oy - cy)) % h, (xx - int(ox - cx)) % w], f)
        frames.append(f.astype(np.float32))
    return average_frames(frames)


def disk(radius: float) -> np.ndarray:
    n = 2 * int(math.ceil(radius)) + 1
    yy, xx = np.mgrid[:n, :n] - n // 2
    k = np.clip(radius + 0.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    return k / k.sum()


def nonshake_set(size: int):
    import evaluate as ev

    from deblurcli.synth import blur_image, random_kernel, spatially_varying_blur

    rng = np.random.default_rng(ev.SEED + 1)
    photos = ev.load_photos(size)
    for p, (name, sharp) in enumerate(photos):
        noise = ev.NOISE[p % len(ev.NOISE)]
        other = photos[(p + 1) % len(photos)][1]
        blurred, target = gopro_like(sharp, other, rng)
        cases = [("gopro", blurred, target)]
        ks = [random_kernel(int(rng.integers(7, 15)) * 2 + 1, rng) for _ in range(3)]
        cases.append(("varying", spatially_varying_blur(sharp, ks, rng), sharp))
        cases.append(("defocus", blur_image(sharp, disk(float(rng.uniform(3, 7))), linear_light=True), sharp))
        cases.append(("sharp", sharp, sharp))
        for kind, b, t in cases:
            b = b + rng.normal(0, noise, sharp.shape).astype(np.float32)
            yield ({"set": "nonshake", "photo": name, "kind": kind, "noise": noise},
                   _u8(b).astype(np.float32) / 255.0, t)


def levin_set(data_dir: Path):
    import levin

    for i in range(1, 5):
        for j in range(1, 9):
            pair = levin.load_pair(data_dir, i, j)
            y = np.repeat(pair["y"].astype(np.float32)[..., None], 3, axis=2)
            yield {"set": "levin", "photo": f"im0{i}", "kind": f"ker0{j}", "image": i, "kernel": j}, y, pair


def measure(gens, refine: bool = False, kernels: list | None = None, skip: int = 0) -> list[dict]:
    """Score every (info, blurred, truth) of ``gens``: input, network, blind deconvolution, and
    every trust feature (`trust_features`, `region_features`, `referee_features`) with the
    verdict of the current `TRUST_RULE`. calibrate_trust.py measures its own images with it.
    ``kernels``: a list to append each row's estimated kernel to (None where there is none), so
    a new shape feature can be tried without estimating again. ``skip``: leave out the first
    this many images (already measured by an interrupted run)."""
    import torch

    from deblurcli.api import Deblurrer
    from deblurcli.deconv import referee_features, restore_rgb, trust_features, verdict_from_features
    from deblurcli.deconv.trust import region_features
    from deblurcli.errors import KernelError
    from deblurcli.inspect import judge

    torch.set_num_threads(1)
    net = Deblurrer("default", device="cpu", tile=0, threads=1, progress=False)
    rows = []
    seen = 0
    for gen in gens:
        for info, blurred, truth in gen:
            seen += 1
            if seen <= skip:
                continue
            t0 = time.perf_counter()
            out_net = net.restore(blurred)
            t_net = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                out_dec, est = restore_rgb(blurred)
                feats = trust_features(est)
                feats.update(region_features(blurred, est))
                feats.update(referee_features(blurred, out_net, out_dec, est))
                verdict = verdict_from_features(feats)
                trusted, reason = verdict.trusted, verdict.reason
            except (KernelError, ValueError) as exc:
                # ValueError: an estimate the engine itself cannot deconvolve with (seen once, on
                # a calibration image; the default would fail on it too, reported to the engine).
                out_dec, feats, trusted, reason, est = blurred, {}, False, f"{type(exc).__name__}: {exc}", None
            if kernels is not None:
                kernels.append(None if est is None else np.asarray(est.kernel, np.float32))
            t_dec = time.perf_counter() - t0
            def sc(x: np.ndarray, _info: dict = info, _truth=truth) -> float:
                if _info["set"] == "levin":
                    import levin

                    return levin.score(x.mean(axis=2).astype(np.float64), _truth, _info["image"],
                                       _info["kernel"])["psnr"]
                return psnr8(x, _truth)
            seen_blurred = judge(blurred)
            row = {**info, "input": sc(blurred), "network": sc(out_net), "deconv": sc(out_dec),
                   "trusted": trusted, "reason": reason, "features": feats,
                   "judged_blurred": seen_blurred.blurred, "blur_px": round(seen_blurred.blur_px, 3),
                   "network_seconds": round(t_net, 3), "deconv_seconds": round(t_dec, 3)}
            if refine:
                row["deconv_then_network"] = sc(net.restore(out_dec))
            row["hybrid"] = hybrid_of(row)
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    sets = args.sets.split(",")
    gens = []
    if "shake" in sets:
        gens.append(shake_set(args.size, args.kernels))
    if "nonshake" in sets:
        gens.append(nonshake_set(args.size))
    if "levin" in sets:
        gens.append(levin_set(args.levin))
    kernels: list | None = [] if args.save_kernels else None
    done = [] if args.resume_log is None else \
        [json.loads(line) for line in args.resume_log.read_text().splitlines() if line.startswith("{")]
    rows = done + measure(gens, args.refine, kernels, skip=len(done))
    if args.save_kernels:
        np.savez_compressed(args.save_kernels, **{f"k{i}": k for i, k in enumerate(kernels) if k is not None})
    return rows


def hybrid_of(row: dict) -> float:
    """The default's (``--deconv auto``) score on a row: the input where `deblurcli.inspect.judge`
    calls the photo sharp (``judged_blurred``; rows measured before that gate lack it), else the
    deconvolution where the rule trusts the estimate, else the network."""
    if row.get("judged_blurred") is False:
        return row["input"]
    return row["deconv"] if row["trusted"] else row["network"]


def summarise(rows: list[dict], rule: dict | None = None) -> dict:
    """Per set and kind: mean gains over the input, images worse than the input, and how often
    the hybrid is worse than the network alone. With ``rule``, the verdicts are recomputed."""
    from deblurcli.deconv import verdict_from_features

    for r in rows:
        if rule is not None and r["features"]:
            v = verdict_from_features(r["features"], rule)
            r["trusted"], r["reason"] = v.trusted, v.reason
        r["hybrid"] = hybrid_of(r)
    out: dict = {}
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["set"], []).append(r)
        groups.setdefault(f"{r['set']}/{r['kind']}" if r["set"] != "levin" else "levin", [])
        if r["set"] != "levin":
            groups[f"{r['set']}/{r['kind']}"].append(r)
    for name, rs in groups.items():
        if not rs:
            continue
        methods = ["network", "deconv", "hybrid"] + (["deconv_then_network"] if "deconv_then_network" in rs[0] else [])
        mean = {m: float(np.mean([r[m] for r in rs])) for m in ["input", *methods]}
        out[name] = {"images": len(rs), "mean_psnr": {k: round(v, 3) for k, v in mean.items()},
                     "gain_db": {m: round(mean[m] - mean["input"], 3) for m in methods},
                     "trusted": sum(r["trusted"] for r in rs),
                     "hybrid_worse_than_input": sum(r["hybrid"] < r["input"] for r in rs),
                     "hybrid_worse_than_network_by_0.1dB": sum(r["hybrid"] < r["network"] - 0.1 for r in rs),
                     "deconv_seconds": round(float(np.mean([r["deconv_seconds"] for r in rs])), 3)}
    return out


def _printable(rule: dict) -> dict:
    """The rule as strict JSON: a threshold switched off (infinite) is written "off"."""
    return {k: "off" if isinstance(v, float) and math.isinf(v) else v for k, v in rule.items()}


def add_set_arguments(ap: argparse.ArgumentParser) -> None:
    """The image sets' flags, shared with default_public_path.py (which scores the same sets)."""
    ap.add_argument("--sets", default="shake,nonshake,levin")
    ap.add_argument("--levin", type=Path, default=Path("Levin_data"), help="Levin_data/ folder (FWen/deblur-pmp)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--kernels", type=int, default=6)


def levin_missing(args: argparse.Namespace) -> bool:
    """Say so (and return True) when the Levin set is asked for but its folder does not hold it."""
    if "levin" in args.sets and not (args.levin / "im01_ker01.mat").is_file():
        print(f"{args.levin}: no im01_ker01.mat here; give Levin_data/ of FWen/deblur-pmp, or drop 'levin' "
              "from --sets", file=sys.stderr)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_set_arguments(ap)
    ap.add_argument("--refine", action="store_true", help="also score the network applied after deconvolution")
    ap.add_argument("--rescore", type=Path, nargs="+",
                    help="recompute verdicts (the current TRUST_RULE) and the summary from results JSONs; "
                         "their rows are merged and written to --out")
    ap.add_argument("--rule", choices=("trust", "calibrated", "hand"), default="trust",
                    help="with --rescore: TRUST_RULE (the default's), CALIBRATED_RULE (calibrate_trust.py's first "
                         "family) or HAND_CALIBRATED_RULE (its choice after the hand-shake images)")
    ap.add_argument("--out", type=Path, default=RESULTS / "default_hybrid.json")
    ap.add_argument("--save-kernels", type=Path, help="also save the estimated kernels (npz, k<row>) here")
    ap.add_argument("--resume-log", type=Path,
                    help="the stdout of an interrupted run: its rows (one JSON per line) are kept and their images "
                         "not measured again")
    args = ap.parse_args(argv)
    from deblurcli.deconv.trust import CALIBRATED_RULE, HAND_CALIBRATED_RULE, TRUST_RULE
    from deblurcli.fsutil import atomic_write

    if args.rescore:
        rule = {"trust": TRUST_RULE, "calibrated": CALIBRATED_RULE, "hand": HAND_CALIBRATED_RULE}[args.rule]
        rows = [r for f in args.rescore for r in json.loads(f.read_text())["per_image"]]
        s = summarise(rows, rule)
        print(json.dumps(s, indent=1))
        payload = {"rule": _printable(rule), "rule_name": args.rule, "rescored_from": [f.name for f in args.rescore],
                   "summary": s, "per_image": rows}
        atomic_write(args.out, json.dumps(payload, indent=1) + "\n", make_parents=True)
        return 0
    if levin_missing(args):
        return 2
    rows = run(args)
    s = summarise(rows)
    print(json.dumps(s, indent=1))
    payload = {"rule": _printable(TRUST_RULE), "threads": os.environ.get("OMP_NUM_THREADS"), "summary": s,
               "per_image": rows}
    atomic_write(args.out, json.dumps(payload, indent=1) + "\n", make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
