"""The model catalogue in words: ``deblur models``' lines and ``deblur models info``'s values.

Beside `catalog` (which gathers the fields) and not in the CLI, so that another front end, a test
or a notebook gets the same wording; everything here returns strings and prints nothing.
"""

from __future__ import annotations

import json
from typing import Any

from .models.registry import TEST_SET_NAMES

#: How ``deblur models`` and ``deblur eval`` spell the papers' metrics (the test sets: `TEST_SET_NAMES`).
METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "kid": "KID", "fid": "FID", "lpips": "LPIPS", "niqe": "NIQE",
                "lpips_shift_tolerant": "shift-tolerant LPIPS"}


def models_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One plain line per model, at most 80 characters (tests hold it to that), whatever the terminal.

    A person chooses a model here, so each line holds only what a choice turns on; a table that
    wraps cells over several lines in a narrow terminal is unreadable, and descriptions, licences
    and links have ``deblur models info NAME``.
    """
    header = ("name", "arch", "params", "trained on", "GoPro dB", "weights")
    body = []
    marked = False
    for r in rows:
        psnr = (r.get("paper_psnr") or {}).get("gopro")
        mark = "*" if r.get("paper_note") and isinstance(psnr, (int, float)) else ""
        marked = marked or bool(mark)
        body.append((r["name"], r.get("arch") or "", _fmt_params(r.get("params")), _short_trained_on(r),
                     f"{psnr:.2f}{mark}" if isinstance(psnr, (int, float)) else "-", r.get("where") or ""))
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    right = {2, 4}

    def line(cells: tuple[str, ...]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    lines = [line(header), *(line(row) for row in body)]
    lines.append("GoPro dB: PSNR in the model's paper (all its figures: deblur models info NAME)")
    if marked:
        lines.append("* the paper's XYScanNet; the released XYScanNetP itself was not measured there")
    if any(r.get("where") == "manual" for r in rows):
        lines.append("manual: not on the Hub yet; deblur models info NAME says how to install it")
    if any(r.get("where") == "built-in" for r in rows):
        lines.append("built-in: no weights (shake: classical deconvolution of camera shake)")
    return lines


def _short_trained_on(row: dict[str, Any]) -> str:
    """The training data in a word or two: a dataset name, or the first word of a long description."""
    text = str(row.get("trained_on") or "").strip()
    if len(text) <= 12:
        return text
    return text.split()[0].strip(",;:()")[:12]


def _fmt_params(n: Any) -> str:
    return f"{n / 1e6:.1f}M" if isinstance(n, (int, float)) and n else ""


def describe_figures(test_set: str, nums: dict[str, Any]) -> str:
    """``GoPro (trained on GoPro): PSNR 33.49 dB, SSIM 0.964``, metrics as the paper prints them."""
    parts = []
    for key, value in nums.items():
        if key == "trained_on" or not isinstance(value, (int, float)):
            continue
        parts.append(f"{METRIC_NAMES.get(key, key)} {value:.2f} dB" if key == "psnr"
                     else f"{METRIC_NAMES.get(key, key)} {value:g}")
    where = TEST_SET_NAMES.get(test_set, test_set)
    trained = f" (trained on {nums['trained_on']})" if nums.get("trained_on") else ""
    return f"{where}{trained}: {', '.join(parts)}"


#: How ``models info`` names the benchmarks this project measured itself.
MEASURED_NAMES = {"levin": "Levin et al. 2009 (32 photos of real camera shake, Levin's protocol)"}


def describe_measured(test_set: str, nums: dict[str, Any]) -> str:
    """``Levin ...: PSNR 32.35 dB, error ratio <= 3 on 96.9%, 1.09 s per image (1 thread); FILE``."""
    parts = [f"PSNR {nums['psnr']:.2f} dB"] if isinstance(nums.get("psnr"), (int, float)) else []
    if isinstance(nums.get("error_ratio_at_most_3"), (int, float)):
        parts.append(f"error ratio <= 3 on {nums['error_ratio_at_most_3']:.1%}")
    if isinstance(nums.get("seconds_per_image"), (int, float)):
        threads = f" ({nums['threads']} thread{'s' if nums.get('threads', 1) != 1 else ''})" \
            if nums.get("threads") else ""
        parts.append(f"{nums['seconds_per_image']:g} s per image{threads}")
    source = f"; {nums['source']}" if nums.get("source") else ""
    return f"{MEASURED_NAMES.get(test_set, test_set)}: {', '.join(parts)}{source}"


def describe_cost(cost: dict[str, Any]) -> str:
    """``0.1 s per 1280x720 image on an A100, 4 GB``: what running the model cost its authors."""
    if not cost:
        return ""
    text = f"{cost['seconds_per_image']} s per {cost['image']}"
    text += f" on an {cost['gpu']}" if cost.get("gpu") else " (GPU not named in the paper)"
    if cost.get("memory_gb"):
        text += f", {cost['memory_gb']} GB"
    if cost.get("gflops"):
        text += f"; {cost['gflops']} GFLOPs on a {cost.get('gflops_input', '?')} input"
    return text


def info_value(key: str, value: Any, info: dict[str, Any]) -> str:
    """A person reads '{}' or 'null' as a bug; say what an empty field means instead."""
    if key == "paper_numbers" and value:
        lines = [describe_figures(ds, nums) for ds, nums in value.items()]
        return "\n".join(lines + ([f"({info['paper_note']})"] if info.get("paper_note") else []))
    if key == "paper_cost" and value:
        return describe_cost(value) + (f" ({info['paper_note']})" if info.get("paper_note") else "")
    if key == "measured" and value:
        return "\n".join(describe_measured(test_set, nums) for test_set, nums in value.items())
    if key == "paper" and value:
        return f"{value.get('title')} ({value.get('venue')}) {value.get('url') or ''}".strip()
    if key == "installed":
        if value:
            src = f"\nfrom {value.get('source_name')} (sha256 {value.get('source_sha256')})" \
                if value.get("source_name") else ""
            return f"{value.get('path')}\nsha256 {value.get('sha256') or 'unknown (no install record)'}{src}"
        if info.get("convert_command"):
            return f"no (to install: {info['convert_command']})"
        return "-"
    if value not in (None, {}, [], ""):
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if key == "paper_numbers":
        return "none (no paper)" if not info.get("paper") else "none stated in the paper"
    if key == "paper_cost" and info.get("paper"):
        return "not stated in the paper"
    if key == "download_command" and info.get("where") == "manual":
        return "none yet (not published on the Hub; see installed for the convert command)"
    if key in ("revision", "sha256", "size_bytes") and info.get("hf_repo") and not info.get("embedded"):
        return "not pinned yet (the converted weights are not published on the Hub; use source_url + convert_command)"
    return "-"


def info_lines(info: dict[str, Any]) -> list[str]:
    """``key  value`` lines, a value's further lines indented under its first.

    Plain lines, never a boxed table: links, hashes and commands are copied from here, and a table
    would fold them and mix border characters into what is copied.
    """
    width = max(len(k) for k in info)
    lines = []
    for k, v in info.items():
        first, *rest = info_value(k, v, info).split("\n")
        lines.append(f"{k.ljust(width)}  {first}")
        lines.extend(f"{'':{width}}  {more}" for more in rest)
    return lines
