"""``python -m deblurcli.train``: the same options as ``deblur train``, for torchrun.

torchrun launches a module or script per process, not a console entry point, hence this twin::

    torchrun --nproc_per_node 4 -m deblurcli.train --config algnet.yaml --out runs/a
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DeblurError
from ..options import RESUME_HELP, SET_HELP, TRAIN_FLAGS
from .config import FLAG_KEYS


def build_parser() -> argparse.ArgumentParser:
    """The options of ``deblur train`` (options.TRAIN_FLAGS); only --print-config is spelt differently here."""
    p = argparse.ArgumentParser(prog="python -m deblurcli.train", description="Train a deblurring network.")
    for s in TRAIN_FLAGS:
        p.add_argument(*s.flags, dest=s.name, type=s.cli_type, help=s.help, metavar=s.metavar)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--print-config", action="store_true", help="print a commented starting config for --arch and exit")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import load_config, print_config, run
    from .config import default_arch

    try:
        if args.print_config:
            sys.stdout.write(print_config(args.arch or default_arch(args.device or "auto")))
            return 0
        cfg = load_config(args.config, args.overrides, **{k: getattr(args, k) for k in FLAG_KEYS})
        out = run(cfg, resume=args.resume)
    except DeblurError as exc:
        from ..options import flag_for

        print(f"error: {exc.cli_message(flag_for)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; continue later with --resume (from the last checkpoint)", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
