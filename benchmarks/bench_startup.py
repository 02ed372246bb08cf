"""Start-up of `deblur run` on one photo: first run (cold numba cache) and later runs.

Each measurement is a fresh child process running the real command. Reported per run:

- ``first_pixel_s``: wall time from starting the process to the model's first forward call
  (imports, argument parsing, reading the image, loading the weights): what a user waits before
  any work on the photo starts.
- ``model_s``: from the model's first forward call to the end of its last one (the model's own
  time, first-call warm-up included); ``after_s``: from then to the process's end (blending,
  encoding, writing, exit).
- ``total_s``: the whole command, wall time; ``cpu_s``: its user + system CPU time.

The photo is examples/blurry.jpg, or with ``--megapixels N`` a textured N MP JPEG made here (the
issue's "1 MP photo": ``--megapixels 1``). To compare with an older checkout, run this script
with ``PYTHONPATH`` pointing at that checkout.

Wall times depend on how busy the machine is, so the CPU time is printed beside them. "Cold"
points numba at an empty cache folder, as on a fresh install; "warm" reuses the cache that the
cold run wrote. ``--help`` start-up is measured too (no torch, no numba).

    python benchmarks/bench_startup.py [--repeat 3] [--json benchmarks/results/startup_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "blurry.jpg"

# Runs the real CLI and prints the wall clock at the model's first forward call; the parent
# subtracts its own clock at spawn (both are time.time(), the same clock).
CHILD = """
import sys, time, torch
_first = []
def _hook(module, args):
    if not _first:
        _first.append(time.time())
        sys.stderr.write(f"FIRST_PIXEL {_first[0]!r} {time.process_time()!r}\\n")
_last = [0.0]
def _done(module, args, output):
    _last[0] = time.time()
import atexit
atexit.register(lambda: sys.stderr.write(f"MODEL_END {_last[0]!r}\\n"))
torch.nn.modules.module.register_module_forward_pre_hook(_hook)
torch.nn.modules.module.register_module_forward_hook(_done)
from deblurcli.cli import main
sys.argv = ["deblur"] + sys.argv[1:]
main()
"""

# The child imports torch first only to register the hook; the command needs torch before any
# model work anyway, so the first-pixel time still covers everything the command loads.


def _child_usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


def run_once(args: list[str], env: dict[str, str], *, hook: bool) -> dict[str, float]:
    before = _child_usage()
    t0 = time.time()
    cmd = [sys.executable, "-c", CHILD, *args] if hook else [sys.executable, "-m", "deblurcli", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.time() - t0
    after = _child_usage()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    out = {"total_s": round(total, 3), "cpu_s": round(sum(after) - sum(before), 3)}
    first = end = None
    for line in p.stderr.splitlines():
        if line.startswith("FIRST_PIXEL "):
            first = float(line.split()[1])
            out["first_pixel_s"] = round(first - t0, 3)
            out["first_pixel_cpu_s"] = round(float(line.split()[2]), 3)
        if line.startswith("MODEL_END "):
            end = float(line.split()[1])
        if "compiling" in line:
            out["said"] = line.strip()
    if first is not None and end is not None:
        out["model_s"] = round(end - first, 3)
        out["after_s"] = round(t0 + total - end, 3)
    return out


def make_photo(path: Path, megapixels: float) -> Path:
    """A JPEG of about ``megapixels`` MP: a licence-clean sample photo resized, so it has real texture."""
    from PIL import Image

    side = int(round((megapixels * 1e6) ** 0.5))
    with Image.open(EXAMPLE) as im:
        im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="warm runs (median reported)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--megapixels", type=float, help="a photo of this size instead of the example")
    a = ap.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "NUMBA_NUM_THREADS": str(a.threads),
           "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("NUMBA_CACHE_DIR", None)
    with tempfile.TemporaryDirectory(prefix="deblur-startup-") as tmp:
        out_file = Path(tmp) / "out.jpg"
        photo = make_photo(Path(tmp) / "photo.jpg", a.megapixels) if a.megapixels else EXAMPLE
        env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba-cache")  # empty: a fresh install's first run
        args = ["run", str(photo), "-o", str(out_file), "--overwrite", "--device", "cpu",
                "--threads", str(a.threads)]
        help_runs = [run_once(["run", "--help"], env, hook=False) for _ in range(a.repeat)]
        cold = run_once(args, env, hook=True)
        warm = [run_once(args, env, hook=True) for _ in range(a.repeat)]

    def med(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
                   f"load {os.getloadavg()[0]:.1f}",
        "image": f"{a.megapixels:g} MP JPEG" if a.megapixels else f"{EXAMPLE.relative_to(ROOT)}",
        "help": {"total_s": med(help_runs, "total_s"), "cpu_s": med(help_runs, "cpu_s")},
        "cold": cold,
        "warm": {k: med(warm, k) for k in ("first_pixel_s", "first_pixel_cpu_s", "model_s", "after_s", "total_s",
                                           "cpu_s")},
        "warm_runs": warm,
    }
    print(f"machine: {result['machine']}")
    print(f"image: {result['image']}")
    print(f"{'':22}{'first pixel s':>14}{'(cpu s)':>9}{'model s':>9}{'after s':>9}{'total s':>10}{'(cpu s)':>9}")
    h = result["help"]
    print(f"{'deblur run --help':22}{'':>14}{'':>9}{'':>9}{'':>9}{h['total_s']:>10.2f}{h['cpu_s']:>9.2f}")
    for label, r in (("first run (cold)", cold), ("later runs (median)", result["warm"])):
        print(f"{label:22}{r['first_pixel_s']:>14.2f}{r['first_pixel_cpu_s']:>9.2f}{r.get('model_s', 0):>9.2f}"
              f"{r.get('after_s', 0):>9.2f}{r['total_s']:>10.2f}{r['cpu_s']:>9.2f}")
    if cold.get("said"):
        print(f"first run said: {cold['said']}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
