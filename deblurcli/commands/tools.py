"""``deblur download``, ``deblur convert`` and ``deblur doctor``: getting models, and checking the installation.

Registered on the app by ``deblurcli/cli.py``, which fixes their place in ``deblur --help``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from ..errors import DeblurError
from ..models import arch_names
from ..options import EngineOptions
from .common import DebugOpt, QuietOpt, err, handle_errors, out, say, stderr_is_tty

#: The architectures' names for help texts (deblurcli.models.ARCH_NAMES and any registered ones).
_ARCH_CHOICES = " | ".join(arch_names())
# convert's --variant is the EngineOptions one: the same flag and help as run's.
VariantOpt = next(s for s in EngineOptions.specs() if s.name == "variant").typer_option()


@handle_errors
def download(
    names: list[str] = typer.Argument(..., help="Model names or hf: references"),
    force: bool = typer.Option(False, "--force", help="Download again even if cached"),
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Fetch models into the Hugging Face cache, for later offline use."""
    from ..hub import download as hub_download

    for res in hub_download(names, force=force, progress=not quiet and stderr_is_tty(),
                            console=None if quiet else err):
        # soft_wrap: a path is never folded at the console width (scripts read these lines)
        out.print(escape(f"{res.ref}: {res.path}"), highlight=False, soft_wrap=True)


@handle_errors
def convert(
    src: Path = typer.Argument(..., help="The authors' checkpoint (.pth/.pt/.safetensors)"),
    dst: Path | None = typer.Argument(None, help="Output .safetensors (not with --install)"),
    install: str | None = typer.Option(None, "--install", metavar="NAME",
                                       help="Install as registry model NAME, for --model NAME (offline too)"),
    arch: str | None = typer.Option(None, "--arch", help=f"{_ARCH_CHOICES} (default: detected)"),
    variant: str | None = VariantOpt,
    half: bool = typer.Option(False, "--fp16", help="Store weights in float16 (half the size)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file"),
    json_out: bool = typer.Option(False, "--json", help='Print {"arch", "config", ...} on stdout'),
    debug: bool = DebugOpt,
) -> None:
    """Convert a checkpoint to deblurcli's format: deblur convert SRC DST, or deblur convert SRC --install NAME."""
    import torch

    from ..errors import UsageError

    dtype = torch.float16 if half else None
    if install is not None:
        if dst is not None or arch or variant:
            raise UsageError("--install NAME writes where --model NAME finds it and takes architecture and variant "
                             "from the registry: drop DST, --arch and --variant")
        from ..installed import install as do_install

        inst, spec = do_install(src, install, overwrite=overwrite, dtype=dtype)
        if json_out:
            print(json.dumps({"arch": spec.arch, "config": spec.config, "variant": spec.variant,
                              "settings": spec.settings, "installed": inst.to_dict()}))
        else:
            say("", f"{src} -> {inst.path} (sha256 {inst.sha256}): installed as {inst.name}; "
                    f"run it with --model {inst.name}")
        return
    if dst is None:
        raise UsageError("give an output file (deblur convert SRC DST) or a registry name (--install NAME)")

    from ..weights import convert as do_convert

    if dst.exists() and not overwrite:
        raise DeblurError(f"{dst}: already exists; pass --overwrite to replace it")
    spec = do_convert(src, dst, arch=arch, variant=variant, dtype=dtype)
    if json_out:
        print(json.dumps({"arch": spec.arch, "config": spec.config, "variant": spec.variant,
                          "settings": spec.settings}))
    else:
        say("", f"{src} -> {dst}: {spec.arch} ({spec.variant}) {json.dumps(spec.config)}")


@handle_errors
def doctor(
    json_out: bool = typer.Option(False, "--json", help="The report as JSON on stdout"),
) -> None:
    """What this installation can do (GPU, scan backends, image formats, video, models), and the fix
    for each gap. Exit code 1 when something is broken (not for a missing optional extra)."""
    from ..doctor import report, report_lines

    r = report()
    if json_out:
        print(json.dumps(r, indent=1))
    else:
        print("\n".join(report_lines(r)))
    if r["problems"]:
        raise typer.Exit(1)
