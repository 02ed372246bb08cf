"""``deblur doctor``: what this installation can do, and the one command that fixes each gap.

Why: most trouble reports come down to the environment (a CPU build of torch on a GPU machine, a
missing compiled scan, no HEIC plug-in, weights that are not where the user thinks). The facts
are asked of the modules that own them (`ssm`, `imageio.formats`, `video`, `models.registry`,
`settings`), never restated here, and each probe is fenced: one broken piece shows as a problem
in the report, it does not stop the report.

Gaps come in two kinds: ``problems`` (a declared dependency missing or unusable, a GPU torch
cannot use: the installation is broken or slow, and ``deblur doctor`` exits 1) and ``optional``
(an extra not installed, such as HEIC: everything else works).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["report"]


def _probe(section: str, fn: Callable[[], Any], problems: list[str]) -> Any:
    try:
        return fn()
    except Exception as exc:  # a broken optional piece must not hide the rest of the report
        problems.append(f"{section}: could not be inspected ({type(exc).__name__}: {exc})")
        return None


def _torch(problems: list[str]) -> dict[str, Any]:
    import torch

    from .hardware import cpu_has_native_bf16

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                         "capability": f"{p.major}.{p.minor}"})
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_gpus": gpus,
        "mps": mps,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_threads": torch.get_num_threads(),
    }
    nvidia = Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
    if nvidia and torch.version.cuda is None:
        problems.append("an NVIDIA GPU is present but this torch is a CPU build: install a CUDA build of torch "
                        "(https://pytorch.org/get-started/locally/)")
    elif nvidia and not gpus:
        problems.append("an NVIDIA GPU is present but torch cannot use it (driver too old for this torch's "
                        f"CUDA {torch.version.cuda}?): check nvidia-smi")
    return info


def _scan(torch_info: dict[str, Any] | None, problems: list[str]) -> dict[str, Any]:
    import torch

    from . import ssm

    available = ssm.available_backends()
    cpu_pick = ssm.resolve_backend("auto", torch.empty(1))
    info: dict[str, Any] = {"available": available, "cpu": cpu_pick,
                            "mamba_ssm_installed": importlib.util.find_spec("mamba_ssm") is not None}
    if cpu_pick != "numba":
        problems.append("the compiled CPU scan (numba) is unavailable, so models run on the slower torch scan: "
                        "pip install numba")
    if torch_info and torch_info["cuda_gpus"]:
        info["cuda"] = ssm.resolve_backend("auto", torch.empty(1, device="cuda"))
        if info["cuda"] == "torch":
            problems.append("on the GPU the scan falls back to plain torch (slow): pip install 'deblurcli[cuda]' "
                            "(Triton; or mamba-ssm, see the README's GPU section)")
    return info


def _formats(optional: list[str]) -> list[dict[str, Any]]:
    from .imageio.formats import FORMATS, usable

    rows = []
    for f in FORMATS:
        ok = usable(f)
        rows.append({"format": f.label, "extensions": list(f.extensions), "read": ok,
                     "write": ok and f.writer is not None, "needs": None if ok else f.needs})
        if not ok:
            optional.append(f"{f.label} photos cannot be read or written: install {f.needs}")
    return rows


def _video(problems: list[str], optional: list[str]) -> dict[str, Any]:
    from .video import capabilities

    info = capabilities()
    if info.get("pyav") is None:
        problems.append(info.get("problem") or "video needs PyAV: pip install av")
    else:
        missing = [family for family, enc in info["encoders"].items() if enc is None]
        if missing:
            optional.append(f"this PyAV cannot encode {', '.join(missing)}: a video in those codecs needs "
                            "--codec with one it can (or --lossless); PyPI's av wheels have them all")
    return info


def _models(problems: list[str]) -> dict[str, Any]:
    from . import installed as inst
    from .models import registry

    default = registry.default_entry()
    path = registry.embedded_path(default)
    if path is None:
        problems.append("the embedded default model is missing from the installed package: reinstall deblurcli")
    installed = [e.name for e in registry.entries() if e.embedded is None and _quiet(lambda e=e: inst.find(e))]
    return {"default": str(path) if path else None, "default_sha256": default.sha256,
            "installed": installed, "installed_dir": str(inst.models_dir())}


def _quiet(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _settings(optional: list[str]) -> dict[str, Any]:
    from . import settings

    cfg = settings.config_path()
    data = settings.data_dir()
    info = {
        "config_file": str(cfg) if cfg.is_file() else None,
        "data_dir": str(data),
        "hf_cache": str(settings.hf_cache_dir()),
        "hub": f"{settings.hf_endpoint()}/{settings.hub_org()}",
        "offline": settings.offline_reason() if settings.offline() else None,
    }
    probe = data
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        optional.append(f"{data}: the data folder is not writable, so `deblur convert --install` cannot "
                        "install models: set DEBLUR_DATA_DIR to a writable folder")
    return info


def report() -> dict[str, Any]:
    """Everything ``deblur doctor`` shows, as plain data (its ``--json``); ``problems`` and
    ``optional`` list each gap as one line ending in its fix."""
    problems: list[str] = []
    optional: list[str] = []
    out: dict[str, Any] = {
        "deblurcli": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "package": str(Path(__file__).resolve().parent),
    }
    out["torch"] = _probe("torch", lambda: _torch(problems), problems)
    out["scan"] = _probe("scan backends", lambda: _scan(out["torch"], problems), problems)
    out["formats"] = _probe("image formats", lambda: _formats(optional), problems)
    out["video"] = _probe("video", lambda: _video(problems, optional), problems)
    out["models"] = _probe("models", lambda: _models(problems), problems)
    out["settings"] = _probe("settings", lambda: _settings(optional), problems)
    out["problems"] = problems
    out["optional"] = optional
    return out


def report_lines(r: dict[str, Any]) -> list[str]:
    """`report` as plain lines, one fact per line: what ``deblur doctor`` prints, for a terminal or a bug report."""
    lines = [f"deblurcli {r['deblurcli']} (Python {r['python']}, {r['platform']}, {r['cpu_cores']} cores)",
             f"  package: {r['package']}"]
    t = r.get("torch")
    if t:
        gpus = ", ".join(f"cuda:{g['index']} {g['name']} ({g['memory_gb']} GB)" for g in t["cuda_gpus"])
        build = f"CUDA {t['cuda_build']}" if t["cuda_build"] else "CPU build"
        lines.append(f"torch {t['version']} ({build}; CPU {t['cpu_capability']}, {t['cpu_threads']} threads)")
        if t["cpu_native_bf16"]:
            lines.append("  this CPU computes bf16 natively: --precision bf16 runs about 1.5x faster "
                         "(float32 is the CPU default)")
        lines.append(f"  GPU: {gpus or ('Apple MPS' if t['mps'] else 'none')}")
    sc = r.get("scan")
    if sc:
        where = f"CPU: {sc['cpu']}" + (f", GPU: {sc['cuda']}" if "cuda" in sc else "")
        lines.append(f"scan backends: {', '.join(sc['available'])} (auto picks {where})")
    fm = r.get("formats")
    if fm:
        lines.append("image formats: " + ", ".join(f["format"] + ("" if f["read"] else " (missing)") for f in fm))
    v = r.get("video")
    if v and v.get("pyav"):
        enc = ", ".join(k for k, e in v["encoders"].items() if e)
        lines.append(f"video: PyAV {v['pyav']} (libavcodec {v['libavcodec']}); writes {enc}")
    m = r.get("models")
    if m:
        lines.append(f"default model: {m['default'] or 'MISSING'}")
        lines.append(f"installed models: {', '.join(m['installed']) or 'none'} ({m['installed_dir']})")
    st = r.get("settings")
    if st:
        lines.append(f"config file: {st['config_file'] or 'none'}; data: {st['data_dir']}")
        lines.append(f"Hub: {st['hub']}; cache: {st['hf_cache']}" + (f"; offline ({st['offline']})" if st["offline"]
                                                                     else ""))
    lines.append("problems: none" if not r["problems"] else "problems:")
    lines.extend(f"  - {p}" for p in r["problems"])
    if r["optional"]:
        lines.append("optional, not installed:")
        lines.extend(f"  - {p}" for p in r["optional"])
    return lines
