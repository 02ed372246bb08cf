"""Choose the trust rule's thresholds on images that nothing else scores.

    python benchmarks/realshake/calibrate_trust.py                 # measure, then choose
    python benchmarks/realshake/calibrate_trust.py --choose-only   # choose again from the saved rows

`default_hybrid.py` scores the rule on evaluate.py's five photos and on Levin's set; thresholds
picked there would be measured on the images they were fitted to. This calibration set shares no
photo, seed or kernel with them. Two generators, 122 images in all, 255x255 off-centre crops
(Levin's size) of scikit-image pictures evaluate.py does not use:

`calibration_set` (seed `SEED`, 54 images): ``camera``, ``coins``, ``brick``, ``gravel`` (grey
fed as RGB, Levin's kind), ``hubble_deep_field`` and ``immunohistochemistry`` (colour), with

- ``shake`` (positives): four `deblurcli.synth.random_kernel` kernels per photo, sizes drawn from
  9-17, 13-27, 19-29 and 31-41 px, alternately in linear light and on sRGB values;
- ``gopro``: `default_hybrid.gopro_like` (rotating camera and a crossing object);
- ``varying``: three kernels blended across the frame (`spatially_varying_blur`);
- ``split``: the left half blurred by one kernel and the right half by another (two shakes in
  one photo, as a moving subject gives);
- ``defocus``: a disk of radius 3-7 px in linear light;
- ``sharp``: no blur;

`hand_set` (seed `SEED_HAND`, 68 images; added because the rule chosen on the first set rejected
most of Levin's real shakes): the same six photos and ``moon``, ``grass``, ``cell`` (grey) and
``retina`` (colour), with three `deblurcli.synth.hand_shake_kernel` shakes per photo (a hand's
path: speed that ramps and lingers, turns that can curl into a compact knot; written from that
description, fitted to no recorded kernel), two defocus disks (3-5 and 5-7 px), ``varying_agree``
(a kernel and two copies turned by 8-20 degrees blended: corners that nearly agree, yet no single
kernel), and on the four new photos one `random_kernel` shake and a sharp copy.

Then noise (sigma 0.002 / 0.005 / 0.01 rotating) and 8-bit saving. Each image is measured with
`default_hybrid.measure` (every trust feature, the PSNR of input, network and deconvolution).
On 15 images (every ``cell`` and ``retina`` crop, faint and low in contrast, and one ``brick``
blend) the estimator gave back an all-zero kernel, which crashed the default's path with a
ValueError; it is now a `KernelError` (`deconv.trust.blur_light`) and the network runs. No rule
can trust those rows.

Three families of rules are searched, each over a grid: ``thresholds`` (plain thresholds on the
kernel's isotropy, the corner features and the referee, `GRID`; `CALIBRATED_RULE`), ``corner_trust``
(the referee relaxed to one veto where the corners agree under a stroke-like kernel, `GRID_CORNER_TRUST`)
and ``disk_corner`` (`GRID_DISK`: the same, with `disk_likeness` in the defocus test and in the
stroke condition, and a least length for the corner trust). `deblurcli.deconv.TRUST_RULE` is the
second family's choice on the first 54 images; the third family's choice here is
`HAND_CALIBRATED_RULE`, which was scored once and broke the guarantees there (below), so it is
not the default. In each, `choose` takes the rule with the highest mean gain on the shake
images among those that (a) never put a non-shake image more than 0.1 dB below the network, (b)
deconvolve at most 1 in 20 shake images into something worse than its input (the rule's own
doing: where the network alone is worse than the input, no rule can help); among equals, the one
farthest inside the grid's passing region. Results: results/calibrate_trust.json (rows; per family
the grid, the chosen rule, how many rules passed, the summary; and `TRUST_RULE`'s outcome here).

Measured on all 122 (58 shake; network alone +1.19 dB, deconvolving every estimate +3.16 dB but
with 33 non-shake images below the network and 11 shake images worse than their input):
``disk_corner`` chose isotropy > 0.7 with disk likeness >= 0.8 as defocus, corner trust at
agreement >= 0.8 and second misfit <= 0.3 for a kernel of isotropy <= 0.6, disk likeness <= 0.85
and extent >= 8 px, veto 2.0: +2.51 dB, no non-shake image below the network, none worse than its
input (`TRUST_RULE` +2.19 dB here, 2 worse than their input; ``corner_trust``'s choice +2.48,
``thresholds``' +2.41).
What binds: one ``varying`` blend on ``brick`` whose corners agree (0.92, second misfit 0.09)
under a 25 px stroke; its deconvolution is 2.7 dB below the network, and any corner-trust veto
above 2.0 trusts it. With it allowed, the grid reaches +2.77 dB; with two, +3.13.

Honest history: the first family was scored first and broke the non-shake guarantee there; the
second (and its stroke condition, after a unit test's 13 px defocus disk) was designed after
seeing that result and the scored rows' features; the hand-shake kernels, the disk test and the
third family after the brief's description of the rows Levin's set rejects (compact, blob-like
shakes; the referee far from a network that barely moves grey photos). Thresholds were chosen
here only, and the scored sets were measured before the choice but looked at only after it.
A stricter criterion was tried first for the third family (every one-step grid neighbour must
pass too): it leaves the corner trust off, +1.90 dB (recorded as ``interior_choice``); the plain
criterion, the one every family uses, was then kept. The rows were measured once on a shared CPU
(the run was interrupted by the first all-zero estimate and resumed with ``--resume-log``; both
parts are the same code, and the rows are reused by ``--choose-only``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"
SEED = 90210
NOISE = (0.002, 0.005, 0.01)
GREY = ("camera", "coins", "brick", "gravel")
COLOUR = ("hubble_deep_field", "immunohistochemistry")
SHAKE_BANDS = ((9, 17), (13, 27), (19, 29), (31, 41))
SEED_HAND = 90211
NEW_GREY = ("moon", "grass", "cell")
NEW_COLOUR = ("retina",)
HAND_BANDS = ((11, 19), (17, 27), (23, 33))


def load_calibration_photos(grey: tuple[str, ...] = GREY, colour: tuple[str, ...] = COLOUR
                            ) -> list[tuple[str, np.ndarray]]:
    """Off-centre 255x255 crops (a third of the way in), grey ones repeated as RGB."""
    from skimage import data

    out = []
    for name in grey + colour:
        img = getattr(data, name)().astype(np.float32) / 255.0
        side = 255
        h, w = img.shape[:2]
        y0, x0 = (h - side) // 3, (w - side) // 3
        crop = img[y0:y0 + side, x0:x0 + side]
        out.append((name, np.repeat(crop[..., None], 3, axis=2) if crop.ndim == 2 else crop[..., :3]))
    return out


def split_blur(sharp: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Left half blurred by ``a``, right half by ``b`` (in linear light): two shakes in one photo."""
    from deblurcli.synth import blur_image

    left, right = blur_image(sharp, a), blur_image(sharp, b)
    out = left.copy()
    out[:, sharp.shape[1] // 2:] = right[:, sharp.shape[1] // 2:]
    return out


def calibration_set():
    """(info, blurred, truth) for every calibration image, from `SEED`."""
    from default_hybrid import _u8, disk, gopro_like

    from deblurcli.synth import blur_image, random_kernel, spatially_varying_blur

    rng = np.random.default_rng(SEED)
    photos = load_calibration_photos()
    for p, (name, sharp) in enumerate(photos):
        other = photos[(p + 1) % len(photos)][1]
        cases = []
        for i, (lo, hi) in enumerate(SHAKE_BANDS):
            ks = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1
            domain = "linear" if (i + p) % 2 == 0 else "srgb"
            cases.append(("shake", {"kind": domain, "kernel_size": ks},
                          blur_image(sharp, random_kernel(ks, rng), linear_light=domain == "linear"), sharp))
        g, t = gopro_like(sharp, other, rng)
        cases.append(("nonshake", {"kind": "gopro"}, g, t))
        ks3 = [random_kernel(int(rng.integers(7, 15)) * 2 + 1, rng) for _ in range(3)]
        cases.append(("nonshake", {"kind": "varying"}, spatially_varying_blur(sharp, ks3, rng), sharp))
        ka, kb = (random_kernel(int(rng.integers(8, 14)) * 2 + 1, rng) for _ in range(2))
        cases.append(("nonshake", {"kind": "split"}, split_blur(sharp, ka, kb), sharp))
        radius = float(rng.uniform(3, 7))
        cases.append(("nonshake", {"kind": "defocus", "radius": round(radius, 2)},
                      blur_image(sharp, disk(radius), linear_light=True), sharp))
        cases.append(("nonshake", {"kind": "sharp"}, sharp, sharp))
        for c, (kind_set, extra, blurred, truth) in enumerate(cases):
            noise = NOISE[(p + c) % len(NOISE)]
            b = blurred + rng.normal(0, noise, sharp.shape).astype(np.float32)
            yield ({"set": kind_set, "photo": name, **extra, "noise": noise},
                   _u8(b).astype(np.float32) / 255.0, truth)


def _turned(kernel: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """``kernel`` rotated about its centre and scaled: the same shake seen a little differently,
    as a slight camera rotation or depth gives another part of the frame."""
    import cv2

    n = kernel.shape[0]
    m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), degrees, scale)
    k = np.clip(cv2.warpAffine(kernel.astype(np.float32), m, (n, n), flags=cv2.INTER_LINEAR), 0, None)
    return (k / k.sum()).astype(np.float32)


def hand_set():
    """The second calibration set (seed `SEED_HAND`), made after the first rule failed on Levin's
    real shakes: (info, blurred, truth) as `calibration_set`.

    Positives are `deblurcli.synth.hand_shake_kernel` paths (speed that ramps and lingers, turns
    that can curl into a compact knot), three per photo in bands `HAND_BANDS`, alternately in
    linear light and on sRGB values. Negatives near the boundary: two defocus disks per photo
    (radius 3-5 and 5-7 px) and ``varying_agree``, one kernel and two copies turned by 8-20 degrees
    and scaled by 0.85-1.15 blended across the frame (every corner looks nearly alike, yet no
    single kernel fits). The photos `NEW_GREY` and `NEW_COLOUR`, unused before, also get one
    `random_kernel` shake and a sharp copy.
    """
    from default_hybrid import _u8, disk

    from deblurcli.synth import blur_image, hand_shake_kernel, random_kernel, spatially_varying_blur

    rng = np.random.default_rng(SEED_HAND)
    old = set(GREY + COLOUR)
    photos = load_calibration_photos(GREY + NEW_GREY, COLOUR + NEW_COLOUR)
    for p, (name, sharp) in enumerate(photos):
        cases = []
        for i, (lo, hi) in enumerate(HAND_BANDS):
            ks = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1
            domain = "linear" if (i + p) % 2 == 0 else "srgb"
            cases.append(("shake", {"kind": domain, "family": "hand", "kernel_size": ks},
                          blur_image(sharp, hand_shake_kernel(ks, rng), linear_light=domain == "linear"), sharp))
        for lo, hi in ((3.0, 5.0), (5.0, 7.0)):
            radius = float(rng.uniform(lo, hi))
            cases.append(("nonshake", {"kind": "defocus", "radius": round(radius, 2)},
                          blur_image(sharp, disk(radius), linear_light=True), sharp))
        ks = int(rng.integers(6, 13)) * 2 + 1
        base = hand_shake_kernel(ks, rng) if p % 2 else random_kernel(ks, rng)
        turned = [_turned(base, float(rng.uniform(8, 20)) * sign, float(rng.uniform(0.85, 1.15)))
                  for sign in (-1, 1)]
        cases.append(("nonshake", {"kind": "varying_agree"}, spatially_varying_blur(sharp, [base, *turned], rng),
                      sharp))
        if name not in old:
            ks = int(rng.integers(6, 14)) * 2 + 1
            domain = "linear" if p % 2 == 0 else "srgb"
            cases.append(("shake", {"kind": domain, "family": "random", "kernel_size": ks},
                          blur_image(sharp, random_kernel(ks, rng), linear_light=domain == "linear"), sharp))
            cases.append(("nonshake", {"kind": "sharp"}, sharp, sharp))
        for c, (kind_set, extra, blurred, truth) in enumerate(cases):
            noise = NOISE[(p + c) % len(NOISE)]
            b = blurred + rng.normal(0, noise, sharp.shape).astype(np.float32)
            yield ({"set": kind_set, "photo": name, "calibration": "hand", **extra, "noise": noise},
                   _u8(b).astype(np.float32) / 255.0, truth)


#: The thresholds `choose` searches; None leaves that check out.
GRID: dict[str, list[float | None]] = {
    "max_corner_misfit": [None, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0],
    "min_corner_agreement": [None, 0.5, 0.6, 0.7, 0.8],
    "max_isotropy": [None, 0.6, 0.7, 0.8, 0.9],
    "max_dec_vs_net": [None, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
    "max_reblur_gain": [None, 0.55, 0.7, 0.8, 0.9, 1.0, 1.2],
}
#: The second family: the referee as before (1.5 / 0.55), relaxed to one veto where the corners
#: agree closely (`verdict_from_features`).
GRID_CORNER_TRUST: dict[str, list[float | None]] = {
    "corner_trust_agreement": [None, 0.8, 0.85, 0.9, 0.95],
    "corner_trust_misfit2": [0.1, 0.2, 0.3],
    "corner_trust_max_dec_vs_net": [None, 2.0, 2.5, 3.0],
    "corner_trust_max_isotropy": [None, 0.5, 0.6, 0.7],
    "max_isotropy": [None, 0.7, 0.8, 0.9],
}
#: The third family, searched after the hand-shake images were added (`hand_set`): the corner
#: trust with its stroke condition and the defocus test read by `disk_likeness` as well as by
#: isotropy (a round kernel is defocus only if it also looks like a disk), and the corner trust's
#: veto searched up to 4; the plain referee stays at 1.5 / 0.55.
GRID_DISK: dict[str, list[float | None]] = {
    "corner_trust_agreement": [None, 0.6, 0.7, 0.8, 0.9],
    "corner_trust_misfit2": [0.1, 0.2, 0.3, 0.5],
    "corner_trust_max_dec_vs_net": [None, 2.0, 2.5, 3.0, 3.5, 4.0],
    "corner_trust_max_isotropy": [None, 0.6, 0.7, 0.8],
    "corner_trust_max_disk_likeness": [None, 0.8, 0.85, 0.9, 0.95],
    "max_isotropy": [None, 0.6, 0.7, 0.8, 0.9],
    "round_min_disk_likeness": [0.0, 0.8, 0.85, 0.9, 0.95],
    "corner_trust_min_extent_px": [0.0, 8.0, 10.0, 12.0],
}
OFF = {"max_corner_misfit": math.inf, "min_corner_agreement": -math.inf, "max_isotropy": math.inf,
       "max_dec_vs_net": math.inf, "max_reblur_gain": math.inf, "corner_trust_agreement": math.inf,
       "corner_trust_max_dec_vs_net": math.inf, "corner_trust_max_isotropy": math.inf,
       "corner_trust_max_disk_likeness": math.inf, "round_min_disk_likeness": 0.0}

#: Each feature `trusted_mask` reads, with the value `verdict_from_features` assumes when a row
#: lacks it (rows measured before the feature existed).
_DEFAULTS = {"extent_px": 0.0, "components": 0.0, "border_mass": 0.0, "scale_agreement": 1.0, "residual": 0.0,
             "isotropy": 0.0, "disk_likeness": 1.0, "corner_misfit": -1.0, "corner_misfit2": -1.0,
             "corner_agreement": -1.0, "dec_vs_net": 0.0, "reblur_gain": 0.0}


class Table:
    """The rows as arrays, so a grid of rules is scored without a Python loop over images."""

    def __init__(self, rows: list[dict]) -> None:
        self.valid = np.array([bool(r["features"]) for r in rows])
        self.f = {k: np.array([float(r["features"].get(k, d)) for r in rows]) for k, d in _DEFAULTS.items()}
        self.shake = np.array([r["set"] == "shake" for r in rows])
        self.input = np.array([r["input"] for r in rows])
        self.network = np.array([r["network"] for r in rows])
        self.deconv = np.array([r["deconv"] for r in rows])

    def trusted(self, rule: dict) -> np.ndarray:
        """`verdict_from_features(row, rule).trusted` for every row (checked against it in `main`)."""
        from deblurcli.deconv.trust import TRUST_RULE

        r, f = {**TRUST_RULE, **rule}, self.f
        ok = self.valid & (f["extent_px"] >= r["min_extent_px"]) & (f["components"] <= r["max_components"])
        ok &= (f["border_mass"] < 0.05) & (f["scale_agreement"] >= r["min_scale_agreement"])
        ok &= f["residual"] <= r["max_residual"]
        ok &= ~((f["isotropy"] > r["max_isotropy"]) & (f["disk_likeness"] >= r["round_min_disk_likeness"]))
        ok &= f["corner_misfit"] <= r["max_corner_misfit"]
        ok &= ~((f["corner_agreement"] > -1.0) & (f["corner_agreement"] < r["min_corner_agreement"]))
        agreed = ((f["corner_agreement"] >= r["corner_trust_agreement"]) & (f["corner_misfit2"] >= 0.0)
                  & (f["corner_misfit2"] <= r["corner_trust_misfit2"])
                  & (np.where(self.valid, f["isotropy"], 1.0) <= r["corner_trust_max_isotropy"])
                  & (f["disk_likeness"] <= r["corner_trust_max_disk_likeness"])
                  & (f["extent_px"] >= r["corner_trust_min_extent_px"]))
        ok &= f["dec_vs_net"] <= np.where(agreed, r["corner_trust_max_dec_vs_net"], r["max_dec_vs_net"])
        ok &= agreed | (f["reblur_gain"] <= r["max_reblur_gain"])
        return ok


def outcome(rows: list[dict] | Table, rule: dict) -> dict:
    """What a rule does to the rows: mean shake gain, the guarantees' counts."""
    t = rows if isinstance(rows, Table) else Table(rows)
    trusted = t.trusted(rule)
    hybrid = np.where(trusted, t.deconv, t.network)
    n = int(t.shake.sum())
    return {"shake_gain_db": round(float(np.mean(hybrid[t.shake] - t.input[t.shake])), 3) if n else 0.0,
            "shake_images": n,
            "shake_deconvolved_worse_than_input": int((trusted & t.shake & (hybrid < t.input)).sum()),
            "nonshake_worse_than_network": int((~t.shake & (hybrid < t.network - 0.1)).sum()),
            "nonshake_trusted": int((trusted & ~t.shake).sum())}


#: What each family holds fixed (the rest of `TRUST_RULE`'s keys are the kernel's sanity checks).
#: The first two families knew no disk test and no corner-trust extent: those keys are off there.
_NO_DISK = {"round_min_disk_likeness": 0.0, "corner_trust_max_disk_likeness": math.inf,
            "corner_trust_min_extent_px": 0.0}
BASES: dict[str, dict[str, float]] = {
    "thresholds": {"corner_trust_agreement": math.inf, **_NO_DISK},
    "corner_trust": {"max_dec_vs_net": 1.5, "max_reblur_gain": 0.55, "max_corner_misfit": math.inf,
                     "min_corner_agreement": -math.inf, **_NO_DISK},
    "disk_corner": {"max_dec_vs_net": 1.5, "max_reblur_gain": 0.55, "max_corner_misfit": math.inf,
                    "min_corner_agreement": -math.inf},
}


def choose(rows: list[dict], grid: dict[str, list[float | None]], base: dict[str, float], interior: bool = False
           ) -> tuple[dict, list[dict]]:
    """The passing rule with the best shake gain (see the module docstring); and every passing rule.
    ``interior``: only among passing rules whose every one-step neighbour in the grid passes too
    (a rule one step from failing here is likely to fail on other images)."""
    names = list(grid)
    # Neighbours are neighbouring values: a check left out (None) stands for its `OFF` value, the
    # loosest (or, for ``round_min_disk_likeness``, the strictest) end of its list.
    grid = {k: sorted(v, key=lambda x, k=k: OFF[k] if x is None else x) for k, v in grid.items()}
    table = Table(rows)
    passing = []
    for values in itertools.product(*(grid[k] for k in names)):
        rule = {**base, **{k: (OFF[k] if v is None else v) for k, v in zip(names, values, strict=True)}}
        o = outcome(table, rule)
        if o["nonshake_worse_than_network"] == 0 and o["shake_deconvolved_worse_than_input"] * 20 <= o["shake_images"]:
            passing.append({"grid": dict(zip(names, values, strict=True)), **o})
    if not passing:
        raise SystemExit("no rule in the grid keeps the guarantees on the calibration set")
    passed = {tuple(p["grid"][k] for k in names) for p in passing}

    def neighbours(p: dict) -> list[tuple]:
        out = []
        for i, k in enumerate(names):
            vals = grid[k]
            at = vals.index(p["grid"][k])
            for j in (at - 1, at + 1):
                if 0 <= j < len(vals):
                    q = [p["grid"][n] for n in names]
                    q[i] = vals[j]
                    out.append(tuple(q))
        return out

    pool = [p for p in passing if all(q in passed for q in neighbours(p))] if interior else passing
    if not pool:
        raise SystemExit("no rule in the grid keeps the guarantees with every neighbour on the calibration set")
    best = max(p["shake_gain_db"] for p in pool)
    top = [p for p in pool if p["shake_gain_db"] >= best - 1e-9]

    def margin(p: dict) -> float:
        # How many grid steps each threshold could move and still pass: prefer the rule in the
        # middle of the passing region, not on its edge.
        return float(sum(q in passed for q in neighbours(p)))

    chosen = max(top, key=margin)
    return chosen, passing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--choose-only", action="store_true", help="reuse the rows in --out")
    ap.add_argument("--out", type=Path, default=RESULTS / "calibrate_trust.json")
    ap.add_argument("--save-kernels", type=Path, help="also save the estimated kernels (npz, k<row>) here")
    ap.add_argument("--resume-log", type=Path,
                    help="the stdout of an interrupted run: its rows (one JSON per line) are kept and their images "
                         "not measured again")
    args = ap.parse_args(argv)
    from default_hybrid import measure, summarise

    from deblurcli.fsutil import atomic_write

    if args.choose_only:
        rows = json.loads(args.out.read_text())["per_image"]
    else:
        kernels: list = []
        done = [] if args.resume_log is None else \
            [json.loads(line) for line in args.resume_log.read_text().splitlines() if line.startswith("{")]
        rows = done + measure([calibration_set(), hand_set()], kernels=kernels, skip=len(done))
        if args.save_kernels:
            np.savez_compressed(args.save_kernels, **{f"k{i + len(done)}": k for i, k in enumerate(kernels)
                                                      if k is not None})
        # Saved before choosing, so a failed choice never costs the measurement.
        atomic_write(args.out.with_suffix(".rows.json"), json.dumps({"per_image": rows}) + "\n", make_parents=True)
    from deblurcli.deconv import verdict_from_features
    from deblurcli.deconv.trust import TRUST_RULE

    families = {}
    for name, grid in (("thresholds", GRID), ("corner_trust", GRID_CORNER_TRUST), ("disk_corner", GRID_DISK)):
        chosen, passing = choose(rows, grid, BASES[name])
        rule = {**BASES[name], **{k: (OFF[k] if v is None else v) for k, v in chosen["grid"].items()}}
        # The vectorised verdicts must be the rule's own.
        assert list(Table(rows).trusted(rule)) == [bool(r["features"]) and verdict_from_features(r["features"], rule)
                                                   .trusted for r in rows], name
        families[name] = {"grid": grid, "chosen": chosen, "rule": {k: str(v) for k, v in rule.items()},
                          "passing_rules": len(passing), "summary": summarise([dict(r) for r in rows], rule)}
        if name == "disk_corner":
            # The stricter criterion tried first (every one-step neighbour must pass too): recorded,
            # not used; it leaves the corner trust off (see the module docstring).
            families[name]["interior_choice"] = choose(rows, grid, BASES[name], interior=True)[0]
    print(json.dumps({k: v["chosen"] for k, v in families.items()}, indent=1))
    from deblurcli.deconv.trust import HAND_CALIBRATED_RULE

    payload = {"seed": SEED, "seed_hand": SEED_HAND, "families": families,
               "default_rule_here": outcome(rows, TRUST_RULE), "hand_rule_here": outcome(rows, HAND_CALIBRATED_RULE),
               "per_image": rows}
    atomic_write(args.out, json.dumps(payload, indent=1) + "\n", make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
