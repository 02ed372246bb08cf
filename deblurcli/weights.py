"""Checkpoint files: read any of the authors' formats safely, recognise them, write our own.

Reading never executes code: ``.safetensors`` holds only tensors, and pickled ``.pth``/``.pt``
files go through ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. A refused pickle is reported, not retried unsafely.

Our own format is a ``.safetensors`` file whose metadata (architecture, constructor config,
variant and its settings, input range, padding rule, source hash) is enough to rebuild the
network, so a converted or trained file runs with no other knowledge.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError
from .fsutil import atomic_output, input_as_output, sha256_file
from .models import arch_names, create, detect_arch, get_arch
from .models.contract import strip_module_prefix

FORMAT_NAME = "deblurcli"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # terminal colour/style sequences
FORMAT_VERSION = "1"
# Keys under which training frameworks nest the weights, most specific first: BasicSR's EMA
# weights are the ones its authors evaluate, so they win over plain `params`.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "net", "generator")


@dataclass
class ModelSpec:
    """Everything needed to rebuild and drive a network, as stored in our file's metadata."""

    arch: str
    config: dict[str, Any]
    variant: str
    settings: dict[str, Any] = field(default_factory=dict)
    input_range: str = "[0, 1]"
    pad_multiple: int = 16
    metadata: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        meta = dict(self.metadata)
        meta.update(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            arch=self.arch,
            config=json.dumps(self.config, sort_keys=True),
            variant=self.variant,
            settings=json.dumps(self.settings, sort_keys=True),
            input_range=self.input_range,
            pad_multiple=str(self.pad_multiple),
        )
        return meta


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such weights file; check the path or use a model name (deblur models)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a weights file; name the .safetensors/.pth file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty; download it again")


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
    # A PyTorch file is a zip archive (PK..) or, in the legacy format, a pickle (0x80 protocol byte).
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(
            f"{path}: not a weights file (neither safetensors nor a PyTorch checkpoint); "
            "give a .safetensors/.pth file or a model name (deblur models)"
        )
    try:
        with warnings.catch_warnings():
            # torch's own warnings (legacy formats, storages) speak to developers, not to the user here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {_refusal(str(exc))}") from None
    except Exception as exc:  # torch.load on arbitrary bytes raises nearly anything
        # torch's text is a page of advice about its own flags; only what it says about the file is kept.
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_damage(exc)}); "
                              "it may be truncated or damaged: download it again") from None


def _refusal(text: str) -> str:
    """Why torch's safe loader refused a pickle, in one clause of ours: the object it would have
    called, when there is one (that is what could run code), else that the pickle is malformed."""
    text = _ANSI.sub("", text)
    found = re.search(r"GLOBAL:? ([A-Za-z_][\w.]*)", text)
    if found:
        return (f"refused to load: it asks for {found.group(1)}, and a checkpoint should hold only tensors "
                "(loading it could run code); if you trust its source, re-save its state_dict with safetensors")
    return ("not a readable PyTorch checkpoint (its pickle is malformed or holds more than tensors); "
            "it may be damaged: download it again")


def _damage(exc: BaseException) -> str:
    """What was wrong with a checkpoint that could not be read, without quoting torch's advice."""
    text = _ANSI.sub("", str(exc))
    if "zip archive" in text or "central directory" in text:
        return "its zip archive is incomplete"
    if isinstance(exc, EOFError):
        return "it ends too early"
    if isinstance(exc, (RecursionError, MemoryError)):
        return "its contents are nested or sized implausibly"
    return f"{type(exc).__name__}"


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The raw state dict (unwrapped, ``module.`` stripped) and any safetensors metadata."""
    path = Path(path)
    _check_file(path)
    meta: dict[str, str] = {}
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte header length, then the JSON header; anything else is a pickle/zip.
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as sf:
                meta = dict(sf.metadata() or {})
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: not a valid safetensors file ({str(exc)[:120]}); it may be truncated: download it again"
            ) from None
        return unwrap(tensors, path), meta
    return unwrap(_load_pickle(path), path), meta


def unwrap(obj: Any, path: Path | str = "checkpoint") -> dict[str, Tensor]:
    """Find the state dict inside the containers training frameworks wrap it in."""
    for _ in range(4):
        if isinstance(obj, dict) and not _is_state_dict(obj):
            for key in WRAPPER_KEYS:
                if key in obj and isinstance(obj[key], dict):
                    obj = obj[key]
                    break
            else:
                break
        else:
            break
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: found no weights in this file (top-level: {keys})")
    return strip_module_prefix({k: v for k, v in obj.items() if isinstance(v, Tensor)})


def _is_state_dict(d: dict[Any, Any]) -> bool:
    return bool(d) and sum(isinstance(v, Tensor) for v in d.values()) >= max(1, len(d) // 2)


def spec_from_state_dict(
    sd: dict[str, Tensor], meta: dict[str, str] | None = None, *, arch: str | None = None,
    variant: str | None = None, settings: dict[str, Any] | None = None,
) -> ModelSpec:
    """Our metadata when present, else the architecture and config inferred from keys and shapes."""
    meta = dict(meta or {})
    if meta.get("format") == FORMAT_NAME and not arch:
        arch = meta["arch"]
        config = json.loads(meta["config"])
        stored_variant = meta.get("variant")
        stored_settings = json.loads(meta.get("settings") or "{}")
    else:
        arch = arch or detect_arch(sd)
        if not get_arch(arch).detect(sd):
            raise CheckpointError(f"these weights are not {arch}'s (detected: {_safe_detect(sd)}); check {{arch}}",
                                  names=("arch",))
        config = get_arch(arch).infer_config(sd)
        stored_variant, stored_settings = None, {}
    mod = get_arch(arch)
    v = variant or stored_variant or mod.default_variant
    if v not in mod.variants:
        raise CheckpointError(f"{arch} has no variant {v!r}: choose {', '.join(mod.variants)}")
    s = dict(stored_settings if v == stored_variant else {})
    s.update(settings or {})
    return ModelSpec(
        arch=arch, config=config, variant=v, settings=s, input_range=mod.input_range,
        pad_multiple=int(mod.pad_multiple(config, v)),
        metadata={k: val for k, val in meta.items() if k not in ("config", "settings")},
    )


def _check_detectable(sd: dict[str, Tensor], path: str | os.PathLike[str]) -> None:
    """Unrecognised weights met by run/batch/eval, which take no --arch: the way out is convert's --arch."""
    found = [name for name in arch_names() if get_arch(name).detect(sd)]
    if len(found) == 1:
        return
    what = (f"these weights look like several architectures ({', '.join(found)})" if found else
            f"could not recognise the architecture of these weights (first keys: {', '.join(list(sd)[:5])})")
    raise CheckpointError(f"{path}: {what}; if you know it, convert them naming it: "
                          f"deblur convert {path} OUT.safetensors --arch {'|'.join(arch_names())}")


def _safe_detect(sd: dict[str, Tensor]) -> str:
    try:
        return detect_arch(sd)
    except CheckpointError:
        return "unknown"


def build_model(spec: ModelSpec, sd: dict[str, Tensor], *, source: str = "weights") -> nn.Module:
    """Instantiate the network and load the weights strictly, naming any mismatch."""
    model = create(spec.arch, spec.config, spec.variant, **spec.settings)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            shapes = f"file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
            parts.append(f"{len(wrong)} of wrong shape (e.g. {k}: {shapes})")
        raise CheckpointError(f"{source}: weights do not fit {spec.arch} {spec.config}: " + "; ".join(parts))
    model.load_state_dict({k: sd[k].to(own[k].dtype) for k in own}, strict=True)
    return model.eval()


def load_model(
    path: str | os.PathLike[str], *, arch: str | None = None, variant: str | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Read a checkpoint in any supported format and return the ready network and its spec."""
    sd, meta = read_checkpoint(path)
    if arch is None and meta.get("format") != FORMAT_NAME:
        _check_detectable(sd, path)
    spec = spec_from_state_dict(sd, meta, arch=arch, variant=variant, settings=settings)
    return build_model(spec, sd, source=str(path)), spec


def _atomic_save(tensors: dict[str, Tensor], meta: dict[str, str], dst: Path) -> None:
    with atomic_output(dst, make_parents=True) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def save_model(
    model_or_state_dict: nn.Module | dict[str, Tensor], path: str | os.PathLike[str], *, arch: str,
    config: dict[str, Any], variant: str | None = None, settings: dict[str, Any] | None = None,
    extra_metadata: dict[str, str] | None = None, dtype: torch.dtype | None = None,
) -> ModelSpec:
    """Write weights in our self-describing safetensors format (atomically)."""
    mod = get_arch(arch)
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    tensors = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    v_name = variant or mod.default_variant
    spec = ModelSpec(
        arch=arch, config=dict(config), variant=v_name, settings=dict(settings or {}),
        input_range=mod.input_range, pad_multiple=int(mod.pad_multiple(config, v_name)),
        metadata={k: str(val) for k, val in (extra_metadata or {}).items()},
    )
    _atomic_save(tensors, spec.to_metadata(), Path(path))
    return spec


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, arch: str | None = None,
    variant: str | None = None, dtype: torch.dtype | None = None, settings: dict[str, Any] | None = None,
    extra_metadata: dict[str, str] | None = None, check: Callable[[ModelSpec], None] | None = None,
) -> ModelSpec:
    """Turn any supported checkpoint into our format, verifying that it loads strictly first.

    ``check`` sees the detected spec before anything is built or written, so a caller that
    expects one particular network (installing under a registry name) can refuse another.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the output must end in .safetensors")
    refusal = input_as_output(src, dst)
    if refusal:
        raise CheckpointError(refusal)
    sd, meta = read_checkpoint(src)
    try:
        if check is not None:  # on what the file is, before a variant it may not have is asked of it
            check(spec_from_state_dict(sd, meta, arch=arch))
        spec = spec_from_state_dict(sd, meta, arch=arch, variant=variant, settings=settings)
    except CheckpointError as exc:  # about the weights: say which file they came from
        if exc.message.startswith(str(src)):
            raise
        raise CheckpointError(f"{src}: {exc.message}", hint=exc.hint, names=exc.names) from None
    build_model(spec, sd, source=str(src))  # strict check before writing anything
    extra = {k: v for k, v in spec.metadata.items() if k not in ("format", "format_version")}
    extra.update(source_name=src.name, source_sha256=sha256_file(src), **(extra_metadata or {}))
    return save_model(
        sd, dst, arch=spec.arch, config=spec.config, variant=spec.variant, settings=spec.settings,
        extra_metadata=extra, dtype=dtype,
    )
