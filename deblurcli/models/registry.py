"""Named models: what each one is, where its weights live, and how to check them.

A name stands for one trained network: architecture, constructor config and test-time variant,
the data it was trained on, the paper it comes from, and where its weights can be had: inside
the package (``embedded``), or as a converted ``.safetensors`` file in a Hugging Face repo whose
organisation is configurable (:func:`deblurcli.settings.hub_org`), so a mirror can re-host it.

The authors publish their checkpoints on Google Drive only; ``source_url`` and
``convert_command`` say how to install them by hand when no Hub copy can be reached
(``deblur convert FILE --install NAME``, see :mod:`deblurcli.installed`).
``revision`` and ``sha256`` pin a published file. They stay None until someone publishes
converted files; the hub module then downloads with a warning and checks the file against the
Hub's own sha256 only.

Catalogue data only: nothing here imports huggingface_hub or reads weights beyond a safetensors
header (:mod:`deblurcli.safetensors_header`), so listing models costs no network and no model
loading; the embedded file's pin comes from :mod:`deblurcli.manifest`.
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import json
import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import manifest, settings
from ..errors import CheckpointError, ModelNotAvailable
from ..safetensors_header import read_safetensors_header
from .archs import get_arch

DEFAULT_NAME = "default"
#: File name of the embedded default model inside ``deblurcli._weights``.
EMBEDDED_DEFAULT_FILE = "default.safetensors"


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    url: str = ""

    def __str__(self) -> str:
        return f"{self.title} ({self.venue})"


@dataclass(frozen=True)
class ModelEntry:
    """One named model. ``config``/``settings`` are what :func:`deblurcli.models.create` takes."""

    name: str
    arch: str
    variant: str
    config: dict[str, Any]
    description: str
    trained_on: str
    aliases: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    paper: Paper | None = None
    #: Test set (a ``deblur eval --dataset`` name) -> the paper's figures for this trained network:
    #: ``{"trained_on": ..., "psnr": dB, "ssim": 0..1, ...}`` plus any other metric the table prints
    #: (kid, fid, lpips, niqe, lpips_shift_tolerant). Copied from the papers' own tables
    #: (shared/docs/PAPERS.md); a test set or metric the paper does not state is absent, never filled in.
    paper_numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The model those figures belong to, as the paper names it. It differs from this entry's
    #: network for XYScanNetP: the paper measured XYScanNet, the authors released XYScanNetP.
    paper_model: str = ""
    #: Said wherever the figures are shown beside this entry, when they are not its own network's.
    paper_note: str = ""
    #: The paper's published speed/cost: seconds per image, the image, the GPU (None: not named).
    paper_cost: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    #: File name inside the package's weights folder, or None.
    embedded: str | None = None
    #: Repo *name* on the Hub; the organisation comes from settings.hub_org().
    hf_repo: str | None = None
    hf_filename: str | None = None
    #: A 40-hex commit the file is pinned to, or None (then the branch ``main``).
    revision: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    #: The authors' own checkpoint download page.
    source_url: str | None = None
    #: How to turn the authors' checkpoint into our format.
    convert_command: str | None = None
    params: int | None = None
    #: No network and no weights: the classical engine (``deblurcli.deconv``) runs instead.
    classical: bool = False
    #: Figures measured by this project (not a paper's), each with the benchmark file that holds them.
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)

    def hf_repo_id(self) -> str | None:
        """``ORG/REPO`` with the organisation configured now (env, config file, default)."""
        return f"{settings.hub_org()}/{self.hf_repo}" if self.hf_repo else None

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (a deep copy), with the repo id the current org gives."""
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        data["paper"] = asdict(self.paper) if self.paper else None
        data["hf_repo_id"] = self.hf_repo_id()
        return json.loads(json.dumps(data))


# --------------------------------------------------------------------------------------------- #
# The published models
# --------------------------------------------------------------------------------------------- #

_ALGNET = Paper(
    "Learning Enriched Features via Selective State Spaces Model for Efficient Image Deblurring",
    "ACM Multimedia 2024", "https://arxiv.org/abs/2403.20106",
)
_EVSSM = Paper("Efficient Visual State Space Model for Image Deblurring", "CVPR 2025", "https://arxiv.org/abs/2405.14343")
_XYSCAN = Paper(
    "XYScanNet: An Interpretable State Space Model for Perceptual Image Deblurring", "CVPR 2025 Workshops",
    "https://arxiv.org/abs/2412.10338",
)

# Full-size constructor kwargs of the released checkpoints: each architecture keeps them beside
# its code (ArchSpec.configs); deep copies, so an entry's dict is its own.
def _config(arch: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(get_arch(arch).configs[name]))


_ALGNET_CONFIG = _config("algnet", "algnet")
_ALGNET_B_CONFIG = _config("algnet", "algnet-b")
_EVSSM_CONFIG = _config("evssm", "evssm")
_XYSCANP_CONFIG = _config("xyscannet", "xyscannetp")
# The test-time forms behind the papers' numbers: ALGNet's TLC pooling sized for 256 px training
# crops, EVSSM's 384/192/96 px scan windows (the defaults of those variants, spelled out here).
_ALGNET_LOCAL = {"local_pool": {"train_size": [256, 256], "base_size": [384, 384], "fast_imp": False}}
_EVSSM_WINDOWS = {"scan_window": [384, 192, 96]}

_ALGNET_DRIVE = "https://drive.google.com/drive/folders/1WOYuuvGCDOJWo0U6PizE4780EmkxbDya?usp=sharing"
_EVSSM_DRIVE = "https://drive.google.com/drive/folders/1_G0hf1KX_SAwyK41bdGm2q0q63B6wN40?usp=drive_link"
_XYSCAN_DRIVE = {
    "gopro": "https://drive.google.com/drive/folders/10nu5WiA05Dv4q12A0XiISGMmXd6gyiYE?usp=drive_link",
    "realblur-j": "https://drive.google.com/drive/folders/1LEBIHQpqZAzudPwkHVQiVkrTwI4jtJOq?usp=drive_link",
    "realblur-r": "https://drive.google.com/drive/folders/10TXboH85HMfp_9TjBLm3Xw-jN1Q-Z9Bi?usp=drive_link",
}
#: How the catalogue, ``deblur models`` and ``deblur eval`` spell the test sets the papers report on.
TEST_SET_NAMES = {"gopro": "GoPro", "hide": "HIDE", "realblur-j": "RealBlur-J", "realblur-r": "RealBlur-R"}
_SHORT = {"gopro": "gopro", "realblur-j": "realj", "realblur-r": "realr"}

# The papers' published figures, from their own tables (shared/docs/PAPERS.md): model as the paper
# names it -> training set -> test set -> metrics. PSNR in dB, SSIM with the digits printed.
# Cells the papers leave empty ("not stated") are simply absent.
_PAPER_FIGURES: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "ALGNet": {  # ACM MM 2024, width 32
        "GoPro": {"gopro": {"psnr": 33.49, "ssim": 0.964}, "hide": {"psnr": 31.64, "ssim": 0.947},
                  "realblur-r": {"psnr": 36.35, "ssim": 0.961}, "realblur-j": {"psnr": 29.12, "ssim": 0.886}},
        "RealBlur-R": {"realblur-r": {"psnr": 41.16, "ssim": 0.981}},
        "RealBlur-J": {"realblur-j": {"psnr": 32.94, "ssim": 0.946}},
    },
    "ALGNet-B": {  # same paper, width 64
        "GoPro": {"gopro": {"psnr": 34.05, "ssim": 0.969}, "hide": {"psnr": 31.68, "ssim": 0.952}},
    },
    "EVSSM": {  # CVPR 2025
        "GoPro": {"gopro": {"psnr": 34.51, "ssim": 0.9713}, "hide": {"psnr": 31.99, "ssim": 0.9503}},
        "RealBlur-R": {"realblur-r": {"psnr": 41.27, "ssim": 0.9776}},
        "RealBlur-J": {"realblur-j": {"psnr": 34.34, "ssim": 0.9456}},
    },
    "XYScanNet": {  # CVPR 2025 Workshops; KID and FID per clean-fid, normalised to [0, 1]
        "GoPro": {
            "gopro": {"psnr": 33.91, "ssim": 0.968, "kid": 0.073, "fid": 0.138, "lpips": 0.067, "niqe": 4.05},
            "hide": {"psnr": 31.74, "ssim": 0.947, "kid": 0.035, "fid": 0.118, "lpips": 0.091, "niqe": 3.52},
        },
        # On RealBlur the paper gives no PSNR/SSIM, only shift-tolerant LPIPS and NIQE.
        "RealBlur-J": {"realblur-j": {"lpips_shift_tolerant": 0.041, "niqe": 3.71}},
        "RealBlur-R": {"realblur-r": {"lpips_shift_tolerant": 0.012, "niqe": 5.21}},
    },
}
_PAPER_COSTS: dict[str, dict[str, Any]] = {
    # Its Table 6, for width 32 only: ALGNet-B's cost is not stated.
    "ALGNet": {"seconds_per_image": 0.237, "image": "1280x720 image", "gpu": None, "gflops": 17,
               "gflops_input": "256x256"},
    # The paper's hybrid intra/inter XYScanNet of its ablation tables, not the released XYScanNetP.
    "XYScanNet": {"seconds_per_image": 0.165, "image": "GoPro test image", "gpu": "RTX 3090", "memory_gb": 4.51},
}
_XYSCANP_NOTE = "the paper's figures are for its XYScanNet, not this released XYScanNetP (dim 144)"


def _paper_fields(model: str, trained_on: str, note: str = "") -> dict[str, Any]:
    """The figures ``model`` trained on ``trained_on`` has in its paper, each labelled with its training set."""
    figures = _PAPER_FIGURES[model].get(trained_on, {})
    return {
        "paper_model": model,
        "paper_numbers": {ds: {"trained_on": trained_on, **nums} for ds, nums in figures.items()},
        "paper_note": note,
        "paper_cost": dict(_PAPER_COSTS.get(model, {})),
    }


def _hub_fields(name: str, authors_file: str) -> dict[str, Any]:
    return {
        "hf_repo": name,
        "hf_filename": f"{name}.safetensors",
        "convert_command": f"deblur convert {authors_file} --install {name}",
    }


def _published() -> tuple[ModelEntry, ...]:
    out = [
        ModelEntry(
            name="algnet-gopro", aliases=("algnet",), arch="algnet", variant="local",
            config=_ALGNET_CONFIG, settings=_ALGNET_LOCAL, trained_on="GoPro",
            description="ALGNet (width 32) trained on GoPro, run with its local (TLC) pooling as in the paper",
            paper=_ALGNET, license="none stated (the authors' repository has no license file)",
            source_url=_ALGNET_DRIVE, params=54_642_252, **_paper_fields("ALGNet", "GoPro"),
            # The Drive folder's file names are not documented; any of its ALGNet-32 .pth files.
            **_hub_fields("algnet-gopro", "AUTHORS_ALGNET_GOPRO.pth"),
        ),
        ModelEntry(
            name="algnet-b-gopro", aliases=("algnet-b",), arch="algnet", variant="local",
            config=_ALGNET_B_CONFIG, settings=_ALGNET_LOCAL, trained_on="GoPro",
            description="ALGNet-B (width 64) trained on GoPro, run with its local (TLC) pooling as in the paper",
            paper=_ALGNET, license="none stated (the authors' repository has no license file)",
            source_url=_ALGNET_DRIVE, params=213_823_628, **_paper_fields("ALGNet-B", "GoPro"),
            # Same Drive folder as ALGNet; its width-64 file (names undocumented).
            **_hub_fields("algnet-b-gopro", "AUTHORS_ALGNET_B_GOPRO.pth"),
        ),
    ]
    for ds in ("gopro", "realblur-j", "realblur-r"):
        name = f"evssm-{ds}"
        out.append(ModelEntry(
            name=name, aliases=("evssm",) if ds == "gopro" else (f"evssm-{_SHORT[ds]}",),
            arch="evssm", variant="windowed", config=_EVSSM_CONFIG, settings=_EVSSM_WINDOWS,
            trained_on=TEST_SET_NAMES[ds],
            description=f"EVSSM trained on {TEST_SET_NAMES[ds]}, run with the windowed scans the paper tests with",
            paper=_EVSSM, license="MIT (kkkls/EVSSM code)", source_url=_EVSSM_DRIVE, params=17_129_472,
            **_paper_fields("EVSSM", TEST_SET_NAMES[ds]),
            # The authors' test script names the GoPro file net_g_GoPro.pth (BasicSR 'params' inside).
            **_hub_fields(name, "net_g_GoPro.pth" if ds == "gopro" else f"AUTHORS_EVSSM_{_SHORT[ds].upper()}.pth"),
        ))
    for ds in ("gopro", "realblur-j", "realblur-r"):
        name = f"xyscannetp-{ds}"
        aliases = ("xyscannetp", "xyscannet", "xyscannet-gopro") if ds == "gopro" else (
            f"xyscannetp-{_SHORT[ds]}", f"xyscannet-{ds}")
        out.append(ModelEntry(
            name=name, aliases=aliases, arch="xyscannet", variant="plain", config=_XYSCANP_CONFIG,
            trained_on=TEST_SET_NAMES[ds],
            description=f"XYScanNetP (XYScanNet+, dim 144) trained on {TEST_SET_NAMES[ds]}",
            paper=_XYSCAN, license="MIT (HanzhouLiu/XYScanNet code)", source_url=_XYSCAN_DRIVE[ds],
            params=63_514_368, **_paper_fields("XYScanNet", TEST_SET_NAMES[ds], _XYSCANP_NOTE),
            # The authors' predict scripts load results/<job>/models/best_XYScanNet_stage2.pth.
            **_hub_fields(name, "best_XYScanNet_stage2.pth"),
        ))
    return tuple(out)


SHAKE_NAME = "shake"


def _shake() -> ModelEntry:
    """The classical engine as a model name, so ``--model shake`` works wherever a model does."""
    return ModelEntry(
        name=SHAKE_NAME, aliases=("deconv",), arch="classical", variant="", config={},
        trained_on="no training",
        description="classical blind deconvolution for uniform camera shake only: the kernel is estimated "
                    "coarse to fine with an L0 gradient prior on the photo's luminance, then the whole photo is "
                    "deconvolved (masked TV, in linear light; colour at half resolution from 1 MP); CPU, no "
                    "weights. Moving "
                    "objects, defocus and other blur that varies across the photo are not what it models",
        license="MIT (deblurcli)", classical=True,
        # benchmarks/realshake: Levin et al. 2009's 32 photos, Levin's protocol, same flags for all,
        # one thread of the project's 2-core machine.
        measured={"levin": {"psnr": 32.35, "error_ratio_at_most_3": 0.969, "seconds_per_image": 1.09,
                            "threads": 1, "source": "benchmarks/realshake/results/levin_shake.json"}},
    )


#: The fixed entries; tests may replace this tuple (entries() reads it on every call).
_BUILTIN: tuple[ModelEntry, ...] = (*_published(), _shake())


# --------------------------------------------------------------------------------------------- #
# The embedded default: its description is the file's own metadata
# --------------------------------------------------------------------------------------------- #


def weights_dir() -> Path | None:
    """The package's weights folder (``deblurcli._weights``), or None if it is not installed."""
    try:
        return Path(str(importlib.resources.files("deblurcli._weights")))
    except (ModuleNotFoundError, TypeError):
        return None


def embedded_path(entry: ModelEntry) -> Path | None:
    """The embedded file of ``entry`` if this installation has it, else None."""
    if not entry.embedded:
        return None
    folder = weights_dir()
    if folder is None:
        return None
    path = folder / entry.embedded
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _default_from_file(path: str, mtime_ns: int, size: int) -> ModelEntry:
    meta, params = read_safetensors_header(path)
    try:
        config = json.loads(meta.get("config") or "{}")
        stored_settings = json.loads(meta.get("settings") or "{}")
    except ValueError:
        raise CheckpointError(f"{path}: the embedded default model's metadata is not valid JSON") from None
    base = _default_placeholder()
    return replace(
        base,
        arch=meta.get("arch", base.arch),
        variant=meta.get("variant", base.variant),
        config=config,
        settings=stored_settings,
        trained_on=meta.get("trained_on", base.trained_on),
        description=_readable(meta.get("description", base.description)),
        license=meta.get("license", base.license),
        size_bytes=size,
        params=params,
    )


_JSON_IN_PARENS = re.compile(r"\s*\((\{.*?\})\)")


def _readable(description: str) -> str:
    """The description without a JSON object in parentheses: the export wrote the configuration
    there, which ``models info`` shows as its own field; a person reading the description should
    get a sentence, not a dump."""
    def drop(m: re.Match[str]) -> str:
        try:
            return "" if isinstance(json.loads(m.group(1)), dict) else m.group(0)
        except ValueError:
            return m.group(0)

    return _JSON_IN_PARENS.sub(drop, description).strip()


def _default_placeholder() -> ModelEntry:
    return ModelEntry(
        name=DEFAULT_NAME, aliases=("embedded",), arch="unknown", variant="", config={},
        trained_on="unknown", description="the model shipped inside the package (used when no --model is given)",
        license="MIT (deblurcli)", embedded=EMBEDDED_DEFAULT_FILE,
    )


def default_entry() -> ModelEntry:
    """The embedded default, described by its own file's metadata when the file is present."""
    placeholder = _default_placeholder()
    path = embedded_path(placeholder)
    if path is None:
        return placeholder
    st = path.stat()
    pin = manifest.pinned_sha256(weights_dir(), placeholder.embedded)
    return replace(_default_from_file(str(path), st.st_mtime_ns, st.st_size), sha256=pin)


# --------------------------------------------------------------------------------------------- #
# Lookup
# --------------------------------------------------------------------------------------------- #


def entries() -> list[ModelEntry]:
    """Every named model, the embedded default first."""
    return [default_entry(), *_BUILTIN]


def _index() -> dict[str, ModelEntry]:
    index: dict[str, ModelEntry] = {}
    for entry in entries():
        for key in (entry.name, *entry.aliases):
            index.setdefault(key.lower(), entry)
    return index


def find(name: str) -> ModelEntry | None:
    """The entry called ``name`` (case-insensitive, aliases too), or None."""
    return _index().get(name.strip().lower())


def get(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name names the closest ones."""
    entry = find(name)
    if entry is not None:
        return entry
    raise ModelNotAvailable(unknown_name_message(name), exit_code=2)


def suggestions(name: str, n: int = 3) -> list[str]:
    """Registry names and aliases that look like ``name``, best first."""
    return difflib.get_close_matches(name.strip().lower(), list(_index()), n=n, cutoff=0.6)


def unknown_name_message(name: str) -> str:
    close = suggestions(name)
    hint = f": did you mean {' or '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (deblur models lists them)"
