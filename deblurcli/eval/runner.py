"""Run a restoration function over benchmark pairs and collect the papers' numbers.

The runner owns everything between "here are the pairs" and "here is a JSON-ready result": it
reads, restores, quantises to 8 bits (so the scores describe exactly what a saved PNG holds),
scores, times and optionally saves. One image that cannot be read, restored to the right size or
aligned is recorded as failed with its reason; the other images still count.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeblurError, ImageError, OptionError, UsageError
from ..fsutil import atomic_write
from ..imageio import read_image, save_png
from .datasets import Pair, default_protocol
from .metrics import PROTOCOLS, LpipsMetric, load_lpips, score_image, to_uint8

__all__ = ["DEFINITIONS", "evaluate", "save_png", "write_csv", "write_json"]

#: The protocol of a set without ground truth (`find_pairs` gives its pairs ``sharp=None``).
NO_REFERENCE = "no-reference"

RestoreFn = Callable[[np.ndarray], np.ndarray]
#: called after every image with (images done, images in total, that image's record)
ProgressFn = Callable[[int, int, dict[str, Any]], None]

DEFINITIONS: dict[str, dict[str, str | None]] = {
    "matlab": {
        "psnr": "RGB PSNR over all pixels, peak 255, no crop (MATLAB psnr on uint8)",
        "ssim": "MATLAB ssim on the HxWx3 uint8 volume (11x11x11 Gaussian, sigma 1.5, replicate padding)",
        "ssim_2d": "per-channel 2-D Gaussian SSIM, valid windows (BasicSR / scikit-image), secondary",
    },
    "realblur": {
        "psnr": "RealBlur: scale-matched, ECC-homography-aligned, masked PSNR (evaluation_RealBlur_ecc.py)",
        "ssim": "RealBlur: masked per-channel Gaussian SSIM with 5-pixel crop (evaluation_RealBlur_ecc.py)",
        "ssim_2d": None,
    },
    NO_REFERENCE: {
        "psnr": None, "ssim": None, "ssim_2d": None,
        "edge_px": "no ground truth: edge width in px of the blurred input and of the 8-bit restoration "
                   "(deblurcli.quality; lower is sharper), sharpness = 1 / edge width",
    },
}


def evaluate(
    restore_fn: RestoreFn,
    pairs: Sequence[Pair],
    *,
    dataset: str,
    protocol: str | None = "auto",
    limit: int | None = None,
    save_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    lpips: bool | str = "auto",
) -> dict[str, Any]:
    """Restore and score ``pairs``; returns the JSON-ready result (``"model"`` is left for the caller).

    ``restore_fn`` takes and returns an HxWx3 float32 image in [0, 1]. ``protocol`` is ``"matlab"``
    (GoPro/HIDE/pairs), ``"realblur"``, or ``"auto"``/None for the dataset's own. ``lpips`` is
    ``"auto"`` (score LPIPS only if it can run offline), True (require it) or False.
    """
    protocol = default_protocol(dataset) if protocol in (None, "auto") else str(protocol)
    todo = list(pairs)[: limit if limit is not None else None]
    no_reference = bool(todo) and all(p.sharp is None for p in todo)
    if any(p.sharp is None for p in todo) and not no_reference:
        raise UsageError("some pairs have ground truth and some do not; evaluate them separately")
    if no_reference:
        protocol, lpips = NO_REFERENCE, False
    elif protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}: expected auto, {', '.join(PROTOCOLS)}")
    if lpips not in (True, False, "auto"):
        raise UsageError(f"lpips must be True, False or 'auto', got {lpips!r}")
    if limit is not None and limit < 1:
        raise OptionError("limit", "must be at least 1", value=limit)
    if not todo:
        raise DeblurError(f"no image pairs to evaluate for {dataset}; check the data folder")
    out_dir = Path(save_dir).expanduser() if save_dir is not None else None

    lpips_metric: LpipsMetric | None = None
    lpips_note: str | None = None
    if lpips:
        lpips_metric, lpips_note = load_lpips()
        if lpips_metric is None and lpips is True:
            raise DeblurError(f"{lpips_note}; run without LPIPS or make it available offline")
    else:
        lpips_note = "no ground truth" if no_reference else "LPIPS not requested"

    cuda = _cuda_module()
    if cuda is not None:
        cuda.reset_peak_memory_stats()

    records: list[dict[str, Any]] = []
    for done, pair in enumerate(todo, start=1):
        record = _evaluate_one(restore_fn, pair, protocol, out_dir, lpips_metric)
        records.append(record)
        if progress is not None:
            progress(done, len(todo), record)

    return {
        "dataset": dataset,
        "model": None,
        "protocol": protocol,
        "definitions": DEFINITIONS[protocol],
        "summary": _summary(records, lpips_metric is not None, lpips_note, cuda),
        "images": records,
    }


def _evaluate_one(
    restore_fn: RestoreFn, pair: Pair, protocol: str, out_dir: Path | None, lpips_metric: LpipsMetric | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"name": pair.name, "status": "ok", "psnr": None, "ssim": None, "ssim_2d": None}
    if lpips_metric is not None:
        record["lpips"] = None
    record.update(seconds=None, megapixels=None)
    try:
        blurred = _read_pixels(pair.blur)
        reference = None if pair.sharp is None else to_uint8(_read_pixels(pair.sharp))
        record["megapixels"] = blurred.shape[0] * blurred.shape[1] / 1e6
        start = time.perf_counter()
        restored = restore_fn(blurred)
        record["seconds"] = time.perf_counter() - start
        if not isinstance(restored, np.ndarray) or restored.shape != blurred.shape:
            got = getattr(restored, "shape", type(restored).__name__)
            raise DeblurError(f"the model returned {got} for an input of shape {blurred.shape}")
        quantised = to_uint8(restored)
        if out_dir is not None:
            save_png(quantised, out_dir / Path(pair.name).with_suffix(".png"))
        if reference is None:
            record.update(_no_reference_scores(blurred, quantised))
            return record
        record.update(score_image(quantised, reference, protocol))
        if lpips_metric is not None:
            record["lpips"] = lpips_metric(quantised, reference)
    except DeblurError as exc:
        record["status"] = "failed"
        record["error"] = str(exc)
    return record


def _no_reference_scores(blurred: np.ndarray, restored: np.ndarray) -> dict[str, Any]:
    """Edge width before and after (`deblurcli.quality`); None for a photo too small to measure."""
    from ..quality import edge_width

    try:
        before, after = edge_width(blurred), edge_width(restored)
    except ValueError:
        return {"edge_px_before": None, "edge_px_after": None, "sharpness_before": None, "sharpness_after": None}
    return {"edge_px_before": before.width_px, "edge_px_after": after.width_px,
            "sharpness_before": before.sharpness, "sharpness_after": after.sharpness}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _summary(
    records: list[dict[str, Any]], with_lpips: bool, lpips_note: str | None, cuda: Any
) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == "ok"]
    timed = [r for r in records if r["seconds"] is not None]
    seconds = sum(r["seconds"] for r in timed)
    megapixels = sum(r["megapixels"] for r in timed)
    summary: dict[str, Any] = {
        "psnr": _mean([r["psnr"] for r in ok if r["psnr"] is not None]),  # None without ground truth
        "ssim": _mean([r["ssim"] for r in ok if r["ssim"] is not None]),
        "ssim_2d": _mean([r["ssim_2d"] for r in ok if r["ssim_2d"] is not None]),
        "count": len(ok),
        "failed": len(records) - len(ok),
        "seconds_per_image": seconds / len(timed) if timed else None,
        "megapixels_per_second": megapixels / seconds if seconds > 0 else None,
        "peak_memory_mb": _peak_rss_mb(),
    }
    for key in ("edge_px_before", "edge_px_after", "sharpness_before", "sharpness_after"):
        if any(key in r for r in records):
            summary[key] = _mean([r[key] for r in ok if r.get(key) is not None])
    if any("edge_px_after" in r for r in records):
        summary["sharper"] = sum(1 for r in ok if r.get("edge_px_after") is not None
                                 and r["edge_px_after"] < r["edge_px_before"])
    if with_lpips:
        summary["lpips"] = _mean([r["lpips"] for r in ok])
    else:
        summary["lpips"] = None
        summary["lpips_skipped"] = lpips_note
    if cuda is not None:
        summary["peak_cuda_memory_mb"] = cuda.max_memory_allocated() / 2**20
    return summary


def _peak_rss_mb() -> float | None:
    """Process peak RSS; it includes everything loaded before the run (the model, torch itself)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _cuda_module() -> Any:
    """torch.cuda if the caller already uses CUDA; the runner never imports torch just to ask."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda
    except Exception:  # no usable driver: nothing to measure
        return None
    return None


# --------------------------------------------------------------------------- image files


def _read_pixels(path: Path) -> np.ndarray:
    """HxWx3 float32 in [0, 1] through the package's reader, so eval sees what ``deblur`` sees."""
    return np.asarray(read_image(path).pixels, dtype=np.float32)


# --------------------------------------------------------------------------- reports


def _json_safe(value: Any) -> Any:
    """Strict JSON: NaN/inf (PSNR of identical images) become null; numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _emit(text: str, path: str | Path) -> None:
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write(Path(path).expanduser(), text, make_parents=True, error=ImageError)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Write the result as strict JSON to ``path`` ("-" for stdout)."""
    _emit(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n", path)


def write_csv(result: dict[str, Any], path: str | Path) -> None:
    """One row per image (full-precision numbers, empty cells for none) to ``path`` ("-" for stdout)."""
    images = result.get("images", [])
    columns = ["name", "status", "psnr", "ssim", "ssim_2d"]
    optional = ["lpips", "ecc", "edge_px_before", "edge_px_after", "sharpness_before", "sharpness_after"]
    columns += [c for c in optional if any(c in r for r in images)]
    columns += ["seconds", "megapixels", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in images:
        writer.writerow({c: _csv_cell(r.get(c)) for c in columns})
    _emit(buf.getvalue(), path)


def _csv_cell(value: Any) -> Any:
    value = _json_safe(value)
    return "" if value is None else repr(value) if isinstance(value, float) else value
