"""``python -m deblurcli.train``: the same options as ``deblur train``, for torchrun.

torchrun launches a module or script per process, not a console entry point, hence this twin::

    torchrun --nproc_per_node 4 -m deblurcli.train --config algnet.yaml --out runs/a
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DeblurError
from ..models import arch_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deblurcli.train", description="Train a deblurring network.")
    p.add_argument("--config", help="YAML or TOML configuration (see --print-config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, value read as YAML); repeatable")
    p.add_argument("--print-config", action="store_true", help="print a commented starting config and exit")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--arch", help=" | ".join(arch_names()))
    p.add_argument("--data", help="folder of blurred/sharp pairs")
    p.add_argument("--synthetic", help="folder of sharp photos, blurred on the fly")
    p.add_argument("--dead-leaves", type=float, help="fraction of synthetic samples drawn as dead leaves")
    p.add_argument("--val-data", help="folder of held-out blurred/sharp pairs for validation")
    p.add_argument("--steps", type=int, help="optimizer steps in total")
    p.add_argument("--patch-size", type=int, help="training crop side (replaces any progressive schedule)")
    p.add_argument("--batch-size", type=int, help="crops per step per process (replaces any progressive schedule)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--out", help="run folder")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--num-workers", type=int, help="data loader worker processes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import load_config, print_config, run
    from .config import DEFAULT_ARCH

    try:
        if args.print_config:
            sys.stdout.write(print_config(args.arch or DEFAULT_ARCH))
            return 0
        flags = {k: getattr(args, k) for k in ("arch", "data", "synthetic", "dead_leaves", "val_data", "steps",
                                                "patch_size", "batch_size", "lr", "out", "seed", "device", "threads",
                                                "num_workers")}
        cfg = load_config(args.config, args.overrides, **flags)
        out = run(cfg, resume=args.resume)
    except DeblurError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; continue later with --resume (from the last checkpoint)", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
