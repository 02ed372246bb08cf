"""The registry's published figures are the papers' own, and nothing the papers do not state.

``shared/docs/PAPERS.md`` (beside the repository, in the project's shared folder) holds the three
papers' tables as printed. When it is present, every entry's ``paper_numbers`` and ``paper_cost``
must equal what it says for that entry's network and training set, cell for cell; a cell the
document marks "not stated" must be absent. Without the document, the consistency test still runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deblurcli.eval.datasets import DATASETS
from deblurcli.models import registry

PAPERS = Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "PAPERS.md"
_TEST_SETS = {"gopro": "gopro", "hide": "hide", "realblur-j": "realblur-j", "realblur-r": "realblur-r"}


def _published() -> list[registry.ModelEntry]:
    return [e for e in registry.entries() if e.paper is not None]


def _number(text: str) -> float:
    return float(text.strip())


def _parse_papers(text: str) -> tuple[dict[tuple[str, str], dict[str, dict[str, float]]], dict[str, str]]:
    """(paper model, trained on) -> test set -> metrics, and the cost lines per section's model.

    Tables: the first two columns are the test set and the training set; a column headed
    "[MODEL ]PSNR / SSIM" holds that model's pair (MODEL defaults to the section's model), any
    other column one metric. RealBlur figures given as prose ("RealBlur-J shift-tolerant LPIPS
    0.041, NIQE 3.71", trained and tested on each) are read too.
    """
    figures: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    costs: dict[str, str] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.splitlines()[0]
        model = title.split("—")[0].strip()
        if not model or " " in model:
            continue  # "What the papers compare against": other people's models
        rows = [line for line in section.splitlines() if line.startswith("|")]
        if rows:
            header = [c.strip() for c in rows[0].strip("|").split("|")]
            for line in rows[2:]:
                cells = [c.strip() for c in line.strip("|").split("|")]
                test_set, trained_on = _TEST_SETS[cells[0].lower()], cells[1]
                for head, cell in zip(header[2:], cells[2:], strict=True):
                    if cell == "not stated":
                        continue
                    if head.endswith("PSNR / SSIM"):
                        who = head[: -len("PSNR / SSIM")].strip() or model
                        psnr, ssim = cell.split("/")
                        figures.setdefault((who, trained_on), {}).setdefault(test_set, {}).update(
                            psnr=_number(psnr), ssim=_number(ssim))
                    else:
                        figures.setdefault((model, trained_on), {}).setdefault(test_set, {})[head.lower()] = \
                            _number(cell)
        for m in re.finditer(r"(RealBlur-[JR]) shift-tolerant LPIPS (\d+\.\d+), NIQE (\d+\.\d+)", section):
            figures.setdefault((model, m.group(1)), {})[m.group(1).lower()] = {
                "lpips_shift_tolerant": _number(m.group(2)), "niqe": _number(m.group(3))}
        cost = re.search(r"^- Cost \(.*?(?=^- |\Z)", section, flags=re.M | re.S)
        if cost:
            costs[model] = " ".join(cost.group(0).split())
    return figures, costs


@pytest.mark.skipif(not PAPERS.is_file(), reason=f"{PAPERS} not present (the project's shared docs folder)")
def test_every_entry_carries_exactly_the_papers_figures() -> None:
    text = PAPERS.read_text(encoding="utf-8")
    figures, costs = _parse_papers(text)
    assert ("ALGNet-B", "GoPro") in figures and ("XYScanNet", "RealBlur-J") in figures  # the parser read it all
    for entry in _published():
        want = figures.get((entry.paper_model, entry.trained_on), {})
        got = {ds: {k: v for k, v in nums.items() if k != "trained_on"} for ds, nums in entry.paper_numbers.items()}
        assert got == want, entry.name
        assert all(nums["trained_on"] == entry.trained_on for nums in entry.paper_numbers.values()), entry.name
        cost = costs.get(entry.paper_model)
        if cost is None:
            assert entry.paper_cost == {}, entry.name  # the paper states none for this model
            continue
        # Every figure of the entry's cost is in the paper's cost line; a GPU it does not name is None.
        assert f"{entry.paper_cost['seconds_per_image']} s per {entry.paper_cost['image']}" in cost, entry.name
        for key, value in entry.paper_cost.items():
            assert (str(value) in cost) if value is not None else (key == "gpu" and "not named" in cost), entry.name
    # Every model a table names is in the registry under that name, with each training set it was
    # published for that the authors released weights of (ALGNet's RealBlur models are not).
    assert {(e.paper_model, e.trained_on) for e in _published()} >= {
        k for k in figures if k[0] != "ALGNet" or k[1] == "GoPro"}


def test_paper_figures_are_consistent_without_the_document() -> None:
    """Shape checks that hold whatever the figures are: a typo'd key or a mislabelled set fails here."""
    known = {"trained_on", "psnr", "ssim", "kid", "fid", "lpips", "niqe", "lpips_shift_tolerant"}
    for entry in _published():
        assert entry.paper_model, entry.name
        assert set(entry.paper_numbers) <= set(DATASETS), entry.name
        assert entry.paper_numbers, f"{entry.name}: every published model has figures in its paper"
        for ds, nums in entry.paper_numbers.items():
            assert set(nums) <= known and nums["trained_on"] == entry.trained_on, (entry.name, ds)
            if "psnr" in nums:
                assert 20 < nums["psnr"] < 50 and 0.8 < nums["ssim"] < 1, (entry.name, ds)
        # The figures of XYScanNetP entries are the paper's XYScanNet: always said beside them.
        if entry.paper_model.lower() != entry.description.split()[0].lower():
            assert entry.paper_note and entry.paper_model in entry.paper_note, entry.name
    # One training set per paper model gives one set of figures, shared by every entry of it.
    seen: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for entry in _published():
        key = (entry.paper_model, entry.trained_on)
        assert seen.setdefault(key, entry.paper_numbers) == entry.paper_numbers, entry.name
    a, b = registry.get("algnet"), registry.get("algnet-b")
    assert (a.config["width"], b.config["width"]) == (32, 64)
    assert {k: v for k, v in a.config.items() if k != "width"} == {k: v for k, v in b.config.items() if k != "width"}
    assert a.settings == b.settings and a.source_url == b.source_url
    assert registry.default_entry().paper_numbers == {}  # our own model has no paper
