"""The model catalogue as ``deblur models`` shows it: the registry's entries plus where each is now.

Kept apart from `hub` (which turns a ``--model`` value into a file) so that what the listing
shows can change without touching how models are resolved. Never uses the network.
"""

from __future__ import annotations

from typing import Any

from . import installed, settings
from .hub import cached_path, where
from .models import registry


def models_table_rows() -> list[dict[str, Any]]:
    """One plain dict per model for ``deblur models``: every registry field, plus where it is now."""
    rows = []
    for entry in registry.entries():
        inst = installed.find(entry)
        rows.append({
            **entry.to_dict(),
            "name": entry.name,
            "aliases": list(entry.aliases),
            "arch": entry.arch,
            "variant": entry.variant,
            "params": entry.params,
            "trained_on": entry.trained_on,
            "paper_psnr": {ds: nums["psnr"] for ds, nums in entry.paper_numbers.items() if "psnr" in nums},
            "paper": str(entry.paper) if entry.paper else None,
            "paper_url": entry.paper.url if entry.paper else None,
            "where": where(entry),
            "installed": inst.to_dict() if inst else None,
            "repo": entry.hf_repo_id(),
            "pinned": entry.pinned,
            "description": entry.description,
        })
    return rows


def model_details(name: str) -> dict[str, Any]:
    """Everything known about one model, for ``deblur models info NAME`` (no network)."""
    entry = registry.get(name)
    data = entry.to_dict()
    embedded = registry.embedded_path(entry)
    cached = cached_path(entry)
    inst = installed.find(entry)
    how = where(entry)
    data.update(
        where=how,
        embedded_path=str(embedded) if embedded else None,
        installed=inst.to_dict() if inst else None,
        cached_path=str(cached) if cached else None,
        cache_dir=str(settings.hf_cache_dir()),
        endpoint=settings.hf_endpoint(),
        # Not offered where a download would only 404 (where() == "manual"): info shows the
        # authors' source and the convert command instead.
        download_command=f"deblur download {entry.name}" if entry.hf_repo and how != "manual" else None,
    )
    return data
