"""What ``deblur eval`` says about a result: the paper's figures beside it, the summary's rows and notes.

Kept apart from the CLI so that a notebook or a report gets the same comparison and the same
wording; everything here returns data or strings and prints nothing.
"""

from __future__ import annotations

from typing import Any

from ..catalog_text import describe_figures
from ..models.registry import TEST_SET_NAMES

#: The summary table's columns, in order (the first left-aligned, the rest right-aligned).
SUMMARY_COLUMNS = ("metric", "measured", "paper", "difference")


def paper_comparison(result: dict[str, Any], entry: Any) -> dict[str, Any]:
    """The paper's figures for this model on this test set, the measured minus published, and why none.

    Only the figures of the same trained network on the same test set are comparable; anything
    else (a local file, a test set the paper does not report) says so instead of showing a number.
    """
    dataset = result["dataset"]
    where = TEST_SET_NAMES.get(dataset, dataset)
    if entry is None:
        return {"figures": None, "why_none": "the weights are not a registry model, so no paper figure applies"}
    if entry.paper is None:
        return {"figures": None, "why_none": f"{entry.name} has no paper to compare with"}
    figures = dict(entry.paper_numbers.get(dataset) or {})
    cmp: dict[str, Any] = {"model": entry.paper_model, "note": entry.paper_note or None, "figures": figures or None}
    if not figures:
        stated = ", ".join(TEST_SET_NAMES.get(k, k) for k in entry.paper_numbers) or "none"
        cmp["why_none"] = (f"the paper states no figure for {entry.paper_model} trained on {entry.trained_on} "
                           f"on {where} (it states: {stated})")
        return cmp
    s = result["summary"]
    cmp["difference"] = {k: round(s[k] - figures[k], 4) for k in ("psnr", "ssim", "lpips")
                         if isinstance(s.get(k), (int, float)) and isinstance(figures.get(k), (int, float))}
    if "psnr" not in figures:
        cmp["why_none"] = (f"the paper gives no PSNR/SSIM for {entry.paper_model} on {where}, only: "
                           + describe_figures(dataset, figures).split(": ", 1)[1])
    return cmp


def summary_title(result: dict[str, Any]) -> str:
    """``evssm on gopro (matlab protocol, 1111 images)``: what was measured, and how."""
    return (f"{result['model']} on {result['dataset']} "
            f"({result['protocol']} protocol, {result['summary'].get('count')} images)")


def _num(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"


def _signed(v: Any, digits: int) -> str:
    return f"{v:+.{digits}f}" if isinstance(v, (int, float)) else "-"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """One row per figure under `SUMMARY_COLUMNS`; a row only for what this run measured."""
    s = result["summary"]
    cmp = result.get("paper") or {}
    paper = cmp.get("figures") or {}
    diff = cmp.get("difference") or {}
    rows = [("PSNR (dB)", _num(s.get("psnr"), 2), _num(paper.get("psnr"), 2), _signed(diff.get("psnr"), 2)),
            ("SSIM", _num(s.get("ssim"), 4), f"{paper['ssim']:g}" if "ssim" in paper else "-",
             _signed(diff.get("ssim"), 4))]
    if s.get("ssim_2d") is not None:
        rows.append(("SSIM 2-D per channel (not the papers')", _num(s.get("ssim_2d"), 4), "-", ""))
    if s.get("lpips") is not None:
        rows.append(("LPIPS", _num(s.get("lpips"), 4), _num(paper.get("lpips"), 3), _signed(diff.get("lpips"), 4)))
    if s.get("edge_px_after") is not None:  # no ground truth: the no-reference measure, before -> after
        rows.append(("edge width, px (input -> output)",
                     f"{_num(s.get('edge_px_before'), 2)} -> {_num(s.get('edge_px_after'), 2)}", "", ""))
        rows.append(("images sharper than their input", f"{s.get('sharper')} of {s.get('count')}", "", ""))
    rows.append(("seconds / image", _num(s.get("seconds_per_image"), 2), "", ""))
    rows.append(("megapixels / s", _num(s.get("megapixels_per_second"), 3), "", ""))
    rows.append(("peak memory (MB)", _num(s.get("peak_memory_mb"), 0), "", ""))
    if s.get("failed"):
        rows.append(("failed images", str(s["failed"]), "", ""))
    return rows


def summary_notes(result: dict[str, Any]) -> list[str]:
    """The lines under the table: whose figures the paper column holds, why there are none, the caveat."""
    cmp = result.get("paper") or {}
    paper = cmp.get("figures") or {}
    notes = []
    if paper and "psnr" in paper:
        trained = f", trained on {paper['trained_on']}" if paper.get("trained_on") else ""
        notes.append(f"paper: {cmp.get('model')}'s published figures{trained}")
    if cmp.get("why_none"):
        notes.append(f"paper: {cmp['why_none']}")
    if cmp.get("note"):
        notes.append(f"note: {cmp['note']}")
    return notes
