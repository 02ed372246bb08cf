"""``deblur train`` and ``deblur synth``: making models and the pairs they learn from.

Registered on the app by ``deblurcli/cli.py``, which fixes their place in ``deblur --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..options import RESUME_HELP, SET_HELP, TRAIN_FLAGS, with_options
from .common import DebugOpt, QuietOpt, err, handle_errors, out, say


@handle_errors
@with_options(TRAIN_FLAGS, dict, param="flags")  # the same declaration as python -m deblurcli.train
def train(
    flags: dict[str, Any] = {},  # noqa: B006 - replaced by the TRAIN_FLAGS options
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
    print_cfg: str | None = typer.Option(None, "--print-config", metavar="ARCH",
                                         help="Print a commented starting config for ARCH and exit"),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
    debug: bool = DebugOpt,
) -> None:
    """Train or fine-tune a model (multi-GPU: torchrun -m deblurcli.train with the same options)."""
    from ..train import load_config, print_config
    from ..train import run as run_training

    if print_cfg:
        sys.stdout.write(print_config(print_cfg))
        return
    cfg = load_config(flags.pop("config"), overrides, **flags)
    from .. import ssm

    ssm.set_notice(lambda msg: say("[yellow]note:[/] ", msg))  # the scan's first-run compile
    try:
        folder = run_training(cfg, resume=resume, console=err)
    except KeyboardInterrupt:  # the workers are already stopped (Trainer.close); say how to go on
        ckpt = Path(cfg["out"]).expanduser() / "last.pt"
        how = (f"continue from its last checkpoint with --resume --out {ckpt.parent}" if ckpt.is_file()
               else "no checkpoint was saved yet (train.checkpoint.every)")
        err.print(escape(f"interrupted; {how}"), highlight=False)
        raise typer.Exit(130) from None
    out.print(escape(str(folder)), highlight=False, soft_wrap=True)


@handle_errors
def synth(
    sharp_dir: Path = typer.Argument(..., help="Folder of sharp photos (or of frame folders with --frames)"),
    out_dir: Path = typer.Argument(..., help="Output folder (GoPro layout: <seq>/blur|sharp)"),
    count: int = typer.Option(1, "--count", min=1, help="Blurred versions per photo"),
    seed: int = typer.Option(0, "--seed", help="Same seed, same pairs"),
    frames: bool = typer.Option(False, "--frames", help="Subfolders are video frames: average 7-13 of them"),
    crop: int | None = typer.Option(None, "--crop", help="Random crops of this size instead of whole photos"),
    dead_leaves: int = typer.Option(0, "--dead-leaves-pairs", min=0, metavar="N",
                                    help="Also write N dead-leaves pairs (train's --dead-leaves is a fraction)"),
    old_dead_leaves: int | None = typer.Option(None, "--dead-leaves", hidden=True),  # its name before
    quiet: bool = QuietOpt,
    debug: bool = DebugOpt,
) -> None:
    """Make blurred/sharp training pairs from sharp photos (or video frames)."""
    from ..synth import write_pairs

    def progress(p: Any) -> None:
        if p.error:
            say("[bold red]failed:[/] ", str(p.error))

    dead_leaves = dead_leaves if old_dead_leaves is None else old_dead_leaves
    n = write_pairs(sharp_dir, out_dir, count_per_image=count, seed=seed, frames=frames, crop=crop,
                    progress=progress)
    if dead_leaves:
        from ..synth import write_dead_leaves_pairs

        n += write_dead_leaves_pairs(out_dir, dead_leaves, seed=seed, size=crop or 512)
    if not quiet:
        say("", f"wrote {n} pairs to {out_dir}")
