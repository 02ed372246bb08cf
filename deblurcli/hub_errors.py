"""Why the Hugging Face Hub could not give us a file, said in one line with what to do instead.

huggingface_hub reports failures as a zoo of exception classes (gated, missing repo, revision
or file, offline mode, transport errors of whichever HTTP client it uses, cut-short transfers);
:mod:`deblurcli.hub` hands each one here. For a registry model the Hub cannot give, the way out
is always the same two steps: the authors' checkpoint, then one ``deblur convert`` command.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from . import settings
from .errors import ModelNotAvailable
from .models.registry import ModelEntry


def by_hand_steps(entry: ModelEntry | None) -> str | None:
    """The way to a registry model the Hub cannot give: the authors' page, then one convert command."""
    if entry is None or not entry.source_url or not entry.convert_command:
        return None
    return (f"install it from the authors' checkpoint in two steps: 1) download {entry.name}'s checkpoint from "
            f"{entry.source_url}; 2) run `{entry.convert_command}`")


def fallback_hint(label: str, entry: ModelEntry | None, cache_dir: Path) -> str:
    """What to do when the Hub is out of reach: the two steps, or a copy of a connected machine's cache."""
    return by_hand_steps(entry) or (f"on a connected machine run `deblur download {label}` and copy its "
                                    f"Hugging Face cache into {cache_dir}")


def explain(exc: Exception, *, label: str, entry: ModelEntry | None, repo_id: str, filename: str | None,
            revision: str, endpoint: str, cache_dir: Path) -> ModelNotAvailable:
    """``exc`` from a request for ``repo_id/filename@revision`` as one line; an unknown error is re-raised."""
    from huggingface_hub import errors as hf_errors

    what = f"{repo_id}/{filename}" if filename else repo_id
    steps = by_hand_steps(entry)
    if isinstance(exc, hf_errors.GatedRepoError):
        msg = (f"{repo_id} on {endpoint} is gated or private; log in with `hf auth login` (or set HF_TOKEN) "
               "with an account that has access")
    elif isinstance(exc, hf_errors.RepositoryNotFoundError):
        msg = f"repository {repo_id} not found on {endpoint}{_org_hint(entry, steps)}"
    elif isinstance(exc, hf_errors.RevisionNotFoundError):
        msg = f"revision {revision!r} not found in {repo_id} on {endpoint}; check the branch, tag or commit after '@'"
    elif isinstance(exc, hf_errors.EntryNotFoundError):
        hint = f"; {steps}" if steps else _listing_hint(repo_id, revision, endpoint)
        msg = f"file {filename!r} not found in {repo_id}@{revision} on {endpoint}{hint}"
    elif isinstance(exc, hf_errors.OfflineModeIsEnabled):
        msg = (f"huggingface_hub is in offline mode (HF_HUB_OFFLINE) and {what} is not cached; "
               f"{fallback_hint(label, entry, cache_dir)}")
    elif isinstance(exc, _network_errors()):
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        msg = (f"could not reach {endpoint} to fetch {what} ({reason}); check the connection or HF_ENDPOINT, "
               f"or {fallback_hint(label, entry, cache_dir)}")
    elif isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        msg = (f"{endpoint} answered HTTP {status} for {what}; try again later, "
               f"or {fallback_hint(label, entry, cache_dir)}")
    elif isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        msg = (f"the download of {what} was cut short (the file arrived incomplete and was discarded); "
               "run the command again")
    elif isinstance(exc, getattr(hf_errors, "FileMetadataError", ())):
        msg = f"{endpoint} did not answer like a Hugging Face Hub for {what} ({str(exc)[:120]}); check HF_ENDPOINT"
    elif isinstance(exc, OSError):
        msg = (f"could not store {what} in the cache {cache_dir} ({exc.strerror or exc}); "
               "check free space and permissions")
    else:
        raise exc
    return ModelNotAvailable(f"{label}: {msg}")


def _org_hint(entry: ModelEntry | None, steps: str | None) -> str:
    """A missing registry repo most often means the organisation is wrong: name it, and the setting that chose it."""
    org = settings.hub_org()
    if steps:
        source = ("DEBLUR_HUB_ORG" if os.environ.get("DEBLUR_HUB_ORG", "").strip() else
                  f"hub_org in {settings.config_path()}" if settings.load_config().get("hub_org") else "the default")
        return f" (Hub organisation {org!r}, from {source}); {steps}"
    if entry is not None:
        return (f" (organisation {org!r}: set DEBLUR_HUB_ORG or hub_org in {settings.config_path()} "
                "to one that hosts it)")
    return "; check the name, and HF_ENDPOINT"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection failures as huggingface_hub's HTTP client raises them (httpx2 from 2.0, httpx in 1.x)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _listing_hint(repo_id: str, revision: str, endpoint: str) -> str:
    """The repo's .safetensors files, best effort, so a wrong file name comes with the right ones."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, timeout=settings.hub_timeout())
    except Exception:
        return ""
    names = [s.rfilename for s in (info.siblings or []) if s.rfilename.endswith(".safetensors")]
    return f"; it has: {', '.join(names)}" if names else "; it has no .safetensors file"
