"""One GPU session's proof of the CUDA path, in at most ten minutes: run by benchmarks/gpu_check.sh.

Steps, each recorded as ok / failed / skipped (with why) and timed, so that one broken step
never costs the others:

1. ``env``     torch, triton, GPU, which optional packages import, which scan backend ``auto`` takes
               (mamba-ssm only counts after its test call).
2. ``tests``   ``pytest -m gpu`` (every CUDA test of the suite), counts and failures.
3. ``scan``    the Triton scan against the torch scan on odd shapes (lengths off the 32-step
               chunks, grouped B/C, n up to 64), fp32 and bf16, forward and every gradient.
4. ``memory``  peak memory and time of a Triton forward + backward at ALGNet's level-1 shape for a
               training batch (8 crops of 256 px: b=8, d=64, n=32, l=65536) beside the torch
               scan's at b=1, and of an inference forward at full 1280x720 resolution.
5. ``train``   20 training steps of the default model on CUDA (``deblurcli.train``, dead-leaves
               data, so no dataset is needed; the scans' backward is Triton's or mamba-ssm's):
               every step's loss finite, seconds per step.
6. ``oom``     a forced out-of-memory: the process is capped so that a 4096x4096 photo cannot run
               whole, and the retry with smaller tiles must finish.
7. ``bench``   what ``deblur bench`` measures (``Deblurrer`` + ``deblurcli.bench.bench_model``,
               in this process to spare a start-up per run), for every architecture of the
               registry with random weights of its exact configuration (the default with its
               real weights) at 1280x720 in fp32/fp16/bf16, beside the papers' published runtimes.

``--dry-run`` runs the same steps on the CPU on tiny shapes (Triton through its interpreter),
to check this script end to end where there is no GPU; the out-of-memory step then simulates the
error, since a CPU cannot be capped the same way. Weights are named by path (the checkout's
``weights/default.safetensors``): the package's weights folder imports only when installed.
Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = ROOT / "weights" / "default.safetensors"

# The papers' own runtime figures (docs/PAPERS.md); None where the paper states none. Only a
# fallback: the registry's ``paper_cost`` is read first.
PAPER_RUNTIMES: dict[str, dict[str, Any] | None] = {
    "algnet": {"seconds": 0.237, "note": "ALGNet (width 32), one 1280x720 image, GPU not named (its Table 6)"},
    "evssm": None,
    "xyscannet": {"seconds": 0.165, "note": "the paper's XYScanNet (not XYScanNetP), one GoPro test image "
                  "(1280x720), RTX 3090, 4.51 GB"},
}
OPTIONAL = ("numba", "mamba_ssm", "pytest", "safetensors", "typer", "rich", "cv2", "PIL", "yaml")


class Budget:
    """Wall-clock budget shared by the steps; a step asks before each piece of work."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, need: float = 0.0) -> None:
        if self.left() < need:
            raise TimeoutError(f"time budget spent ({need:.0f} s more needed)")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:300]


# ------------------------------------------------------------------------------------------------ steps


def step_env(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from deblurcli import ssm
    from deblurcli.ssm import cuda as cuda_adapter

    dev = ctx["device"]
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "device": str(dev), "modules": {m: importlib.util.find_spec(m) is not None for m in OPTIONAL},
    }
    with contextlib.suppress(Exception):
        import triton

        info["triton"] = triton.__version__
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", memory_gb=round(p.total_memory / 2**30, 1),
                    sms=p.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    info["mamba_ssm"] = cuda_adapter.probe() or "kernel runs and agrees with the reference"
    info["backends"] = ssm.available_backends()
    info["auto_backend"] = ssm.resolve_backend("auto", torch.zeros(1, 1, 1, device=dev))
    from deblurcli.doctor import report  # its GPU branches run only on a machine like this one

    info["doctor"] = report()
    return info


def step_tests(ctx: dict[str, Any]) -> dict[str, Any]:
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "why": "pytest is not installed"}
    xml = ctx["out"] / "gpu_tests.xml"
    # The dry run collects only the files that hold gpu tests: collecting the whole suite costs a CPU
    # half a minute of imports, and every gpu test is skipped there anyway.
    where = [str(ROOT / "tests" / f) for f in ("test_gpu.py", "test_scan.py")] if ctx["dry"] else [str(ROOT / "tests")]
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *where]
    timeout = max(10.0, min(ctx["limits"]["tests"], ctx["budget"].left() - 5))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "why": f"pytest -m gpu ran past {timeout:.0f} s"}
    (ctx["out"] / "gpu_tests.log").write_text(proc.stdout + proc.stderr)
    res: dict[str, Any] = {"exit_code": proc.returncode, "command": " ".join(cmd[1:])}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert suite is not None
        res.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
        res["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                         if c.find("failure") is not None or c.find("error") is not None]
    # exit 5: nothing collected/selected; a run where every test skipped (no GPU) exits 0
    res["status"] = "ok" if proc.returncode == 0 else "failed"
    return res


def _rel(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def step_scan(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from deblurcli.ssm import selective_scan_torch
    from deblurcli.ssm.triton_scan import available, selective_scan_triton

    if not available():
        return {"status": "skipped", "why": "triton cannot run here"}
    dev, budget = ctx["device"], ctx["budget"]
    shapes = ([(2, 4, 8, 33, 2)] if ctx["dry"] else
              [(1, 5, 16, 4099, None), (3, 6, 8, 1000, 2), (2, 7, 64, 333, None), (2, 48, 16, 16411, 4),
               (1, 64, 32, 65536, None)])
    rows, worst = [], {"fp32": 0.0, "bf16": 0.0}
    tol = {"fp32": 1e-4, "bf16": 5e-2}
    for b, d, n, l, g in shapes:
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            budget.check(5)
            gen = torch.Generator().manual_seed(b * 1000 + l)
            bc = (b, n, l) if g is None else (b, g, n, l)
            base = {
                "u": torch.randn(b, d, l, generator=gen), "delta": torch.randn(b, d, l, generator=gen) * 0.5,
                "A": -torch.exp(torch.randn(d, n, generator=gen) * 0.5), "B": torch.randn(*bc, generator=gen),
                "C": torch.randn(*bc, generator=gen), "D": torch.randn(d, generator=gen),
                "z": torch.randn(b, d, l, generator=gen), "delta_bias": torch.randn(d, generator=gen) * 0.1,
            }
            results = []
            for fn in (selective_scan_triton, selective_scan_torch):
                t = {k: (v.to(dev, dtype if v.dim() == 3 or k in ("B", "C") else torch.float32)
                         .requires_grad_()) for k, v in base.items()}
                _sync(dev)
                t0 = time.perf_counter()
                y, last = fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], True, True)
                w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dev, y.dtype)
                ((y * w).float().sum() + last.float().sum()).backward()
                _sync(dev)
                results.append((time.perf_counter() - t0, y.detach(), last.detach(),
                                {k: v.grad for k, v in t.items()}))
            (s_tri, y1, l1, g1), (s_torch, y2, l2, g2) = results
            errs = {"y": _rel(y1, y2), "last": _rel(l1, l2), **{f"d{k}": _rel(g1[k], g2[k]) for k in g2}}
            worst[prec] = max(worst[prec], max(errs.values()))
            rows.append({"shape": [b, d, n, l, g], "precision": prec, "max_rel_error": max(errs.values()),
                         "errors": errs, "triton_s": s_tri, "torch_s": s_torch})
            del results, y1, y2, l1, l2, g1, g2
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    ok = all(worst[p] <= tol[p] for p in worst)
    return {"status": "ok" if ok else "failed", "tolerance": tol, "worst": worst, "cases": rows}


def step_memory(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from deblurcli.ssm import selective_scan_torch
    from deblurcli.ssm.triton_scan import available, selective_scan_triton

    if not available():
        return {"status": "skipped", "why": "triton cannot run here"}
    dev = ctx["device"]
    cuda = dev.type == "cuda"
    # (label, backend, b, d, n, l, backward)
    cases = ([("train b=2 (dry run)", "triton", 2, 2, 4, 40, True), ("train b=1 torch", "torch", 1, 2, 4, 40, True),
              ("infer (dry run)", "triton", 1, 2, 4, 70, False)] if ctx["dry"] else
             [("ALGNet L1, 8 crops of 256 px: triton fwd+bwd", "triton", 8, 64, 32, 65536, True),
              ("ALGNet L1, 1 crop of 256 px: torch fwd+bwd", "torch", 1, 64, 32, 65536, True),
              ("ALGNet L1, 1280x720 inference: triton fwd", "triton", 1, 64, 32, 1280 * 720, False)])
    rows = []
    for label, backend, b, d, n, l, backward in cases:
        ctx["budget"].check(10)
        fn = selective_scan_triton if backend == "triton" else selective_scan_torch
        gen = torch.Generator(device=dev).manual_seed(0)
        shape = (b, d, l)
        t = {"u": torch.randn(shape, device=dev, generator=gen), "delta": torch.randn(shape, device=dev, generator=gen),
             "A": -torch.rand(d, n, device=dev, generator=gen) - 0.5,
             "B": torch.randn(b, n, l, device=dev, generator=gen), "C": torch.randn(b, n, l, device=dev, generator=gen),
             "D": torch.randn(d, device=dev, generator=gen), "z": torch.randn(shape, device=dev, generator=gen),
             "bias": torch.zeros(d, device=dev)}
        if backward:
            for v in t.values():
                v.requires_grad_()
        inputs_mb = sum(v.numel() * v.element_size() for v in t.values()) / 2**20
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"case": label, "backend": backend, "shape": [b, d, n, l], "inputs_mb": round(inputs_mb)}
        try:
            with torch.set_grad_enabled(backward):
                y = fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["bias"], True)
                if backward:
                    y.float().sum().backward()
            _sync(dev)
            row["seconds"] = time.perf_counter() - t0
            row["peak_mb_over_inputs"] = round((torch.cuda.max_memory_allocated(dev) - base) / 2**20) if cuda else None
            row["states_mb"] = round(b * d * n * l * 4 / 2**20)
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = _err(exc)
        rows.append(row)
        del t
        if cuda:
            torch.cuda.empty_cache()
    return {"status": "ok" if all("error" not in r or r["backend"] == "torch" for r in rows) else "failed",
            "cases": rows}


def _paper_runtime(entry: Any) -> dict[str, Any] | None:
    """The registry's ``paper_cost`` when it has the field (empty: not stated), else our table."""
    if not hasattr(entry, "paper_cost"):
        return PAPER_RUNTIMES.get(entry.arch)
    cost = entry.paper_cost or {}
    if not cost.get("seconds_per_image"):
        return None
    note = f"{getattr(entry, 'paper_model', '') or entry.arch}: {cost.get('image', '?')}, " \
           f"GPU {cost.get('gpu') or 'not named'}"
    if cost.get("memory_gb"):
        note += f", {cost['memory_gb']} GB"
    if getattr(entry, "paper_note", ""):
        note += f" ({entry.paper_note})"
    return {"seconds": float(cost["seconds_per_image"]), "note": note}


def _bench_models(ctx: dict[str, Any]) -> list[tuple[str, str, Path, dict[str, Any] | None]]:
    """(name, arch, weights path, paper runtime) for the default and one entry per registry architecture."""
    import torch

    from deblurcli.models import create
    from deblurcli.models.registry import entries
    from deblurcli.weights import load_model, save_model

    out = []
    if DEFAULT_WEIGHTS.is_file():
        _, spec = load_model(DEFAULT_WEIGHTS)
        out.append(("default", spec.arch, DEFAULT_WEIGHTS, None))
    seen: set[str] = set()
    folder = ctx["work"] / "weights"  # not under $OUT: hundreds of MB that need not come back
    folder.mkdir(exist_ok=True)
    for e in entries():
        if e.name == "default" or e.arch in seen:
            continue
        seen.add(e.arch)
        path = folder / f"{e.name}-random.safetensors"
        if not path.is_file():
            torch.manual_seed(0)
            net = create(e.arch, e.config, e.variant, **e.settings)
            save_model(net, path, arch=e.arch, config=e.config, variant=e.variant, settings=e.settings)
            del net
        out.append((e.name, e.arch, path, _paper_runtime(e)))
    return out


def step_bench(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from deblurcli.api import Deblurrer
    from deblurcli.bench import bench_model

    dev = ctx["device"]
    w, h = (64, 64) if ctx["dry"] else (1280, 720)
    precisions = ("fp32", "bf16") if dev.type == "cpu" else ("fp32", "fp16", "bf16")
    rows = []
    for name, arch, path, paper in _bench_models(ctx):
        for prec in precisions:
            row: dict[str, Any] = {"model": name, "arch": arch, "precision": prec, "size": f"{w}x{h}",
                                   "paper": paper}
            try:
                ctx["budget"].check(5 if ctx["dry"] else 20)
                d = Deblurrer(path, device=dev.type, precision=prec, tile=0, progress=False,
                              scan_backend="torch" if ctx["dry"] else "auto", on_note=lambda m: None)
                r = bench_model(d, w, h, repeat=1 if ctx["dry"] else 3)
                row.update(seconds=r["seconds"], peak_memory_mb=round(r["peak_memory_mb"]),
                           scan_backend=r["scan_backend"], megapixels_per_second=r["megapixels_per_second"])
                if paper and paper.get("seconds") and not ctx["dry"]:  # a CPU at 64 px is no comparison
                    row["vs_paper"] = r["seconds"] / paper["seconds"]
                del d
            except TimeoutError as exc:
                row["skipped"] = str(exc)
            except Exception as exc:  # one model failing must not hide the others
                row["error"] = _err(exc)
            rows.append(row)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    bad = [r for r in rows if "error" in r]
    return {"status": "failed" if bad else "ok", "rows": rows}


def step_train(ctx: dict[str, Any]) -> dict[str, Any]:
    from deblurcli.train import load_config, run
    from deblurcli.weights import load_model

    if not DEFAULT_WEIGHTS.is_file():
        return {"status": "skipped", "why": f"{DEFAULT_WEIGHTS} is missing"}
    _, spec = load_model(DEFAULT_WEIGHTS)
    dev = ctx["device"]
    steps, patch, batch = (2, 64, 1) if ctx["dry"] else (20, 256, 8)
    folder = ctx["work"] / "train_run"
    overrides = [f"model.{k}={json.dumps(v)}" for k, v in spec.config.items()]
    overrides += [f"train.init={DEFAULT_WEIGHTS}", "data.dead_leaves=1.0", "val.count=1", f"val.size={patch}",
                  f"val.every={steps}", "log.every=1", f"checkpoint.every={steps}", "data.num_workers=0"]
    cfg = load_config(None, overrides, arch=spec.arch, steps=steps, patch_size=patch, batch_size=batch,
                      out=str(folder), device=dev.type, seed=0)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as sink:
        from rich.console import Console

        run(cfg, console=Console(file=sink))
    seconds = time.perf_counter() - t0
    log = [json.loads(x) for x in (folder / "log.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["loss"] for r in log if "loss" in r]
    ok = len(losses) >= steps and all(math.isfinite(v) for v in losses)
    return {"status": "ok" if ok else "failed", "steps": steps, "patch": patch, "batch": batch, "seconds": seconds,
            "seconds_per_step": seconds / steps, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "logged_steps": len(losses)}


def step_oom(ctx: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from deblurcli.api import Deblurrer

    dev = ctx["device"]
    notes: list[str] = []
    d = Deblurrer(DEFAULT_WEIGHTS, device=dev.type, precision="fp32", tile=0, progress=False,
                  on_note=notes.append, scan_backend="torch" if ctx["dry"] else "auto")
    h, w = (128, 256) if ctx["dry"] else (4096, 4096)  # dry run: whole fails, then three 128 px tiles
    img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    res: dict[str, Any] = {"image": f"{w}x{h}"}
    t0 = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(dev).total_memory
        cap = torch.cuda.memory_reserved(dev) + (1 << 30)
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), dev)
        res["cap_mb"] = round(cap / 2**20)
        try:
            out = d.restore(img)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, dev)
    else:
        # A CPU cannot be capped like a GPU: raise CUDA's out-of-memory error above 128 px tiles,
        # and let restore() believe it runs on CUDA for its retry decision.
        real_run, real_device = d.run_batch, d.device
        res["simulated"] = True

        def run_batch(x: Any) -> Any:
            if max(x.shape[-2:]) > 160:
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
            d.device = real_device
            try:
                return real_run(x)
            finally:
                d.device = torch.device("cuda")

        d.run_batch = run_batch  # type: ignore[method-assign]
        d.device = torch.device("cuda")
        try:
            out = d.restore(img)
        finally:
            d.device = real_device
    res["seconds"] = time.perf_counter() - t0
    res["notes"] = notes
    retried = any("retrying with" in n for n in notes)
    ok = retried and bool(np.isfinite(out).all()) and out.shape == img.shape
    res["status"] = "ok" if ok else "failed"
    if not retried:
        res["why"] = "no out-of-memory happened under the cap, so the retry was not exercised"
    return res


STEPS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("env", step_env), ("tests", step_tests), ("scan", step_scan), ("memory", step_memory),
    ("train", step_train), ("oom", step_oom), ("bench", step_bench),  # bench last: it stops row by row
]
# Most seconds each step may take on a GPU (the sum stays under the ten-minute limit).
LIMITS = {"env": 30, "tests": 150, "scan": 60, "memory": 60, "bench": 150, "train": 60, "oom": 40}


# ------------------------------------------------------------------------------------------------ report


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.{digits}f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    env = report["steps"].get("env", {})
    lines = [f"# GPU check{' (dry run on CPU, tiny shapes)' if report['dry_run'] else ''}", "",
             f"{env.get('gpu', env.get('device', '?'))}; torch {env.get('torch')}, triton {env.get('triton', '-')}; "
             f"scan backend auto = {env.get('auto_backend')}; mamba-ssm: {env.get('mamba_ssm')}.", "",
             "| step | status | seconds | note |", "|---|---|---|---|"]
    for name, st in report["steps"].items():
        note = st.get("why") or st.get("error") or ""
        if name == "tests" and "tests" in st:
            note = f"{st['tests']} tests, {st['failures']} failed, {st['errors']} errors, {st['skipped']} skipped"
        if name == "scan" and "worst" in st:
            note = "worst relative error " + ", ".join(f"{k} {v:.1e}" for k, v in st["worst"].items())
        if name == "train" and "seconds_per_step" in st:
            note = f"{st['steps']} steps, {st['seconds_per_step']:.2f} s/step, loss {_fmt(st['first_loss'])} -> " \
                   f"{_fmt(st['last_loss'])}"
        if name == "memory" and st.get("cases"):
            note = "; ".join(f"{r['case']}: {_fmt(r.get('peak_mb_over_inputs'))} MB" for r in st["cases"])
        if name == "bench" and st.get("rows"):
            bad = [f"{r['model']} {r['precision']}" for r in st["rows"] if "error" in r]
            note = f"{len(st['rows'])} runs" + (f"; failed: {', '.join(bad)}" if bad else "")
        if name == "oom" and "notes" in st:
            note = "; ".join(st["notes"])[:200] + (" (simulated)" if st.get("simulated") else "")
        lines.append(f"| {name} | {st.get('status')} | {_fmt(st.get('step_seconds'), 1)} | {note} |")
    mem = report["steps"].get("memory", {}).get("cases")
    if mem:
        lines += ["", "## Scan memory (forward + backward where stated)", "",
                  "| case | shape (b, d, n, l) | seconds | peak MB over inputs | states MB |", "|---|---|---|---|---|"]
        for r in mem:
            lines.append(f"| {r['case']} | {tuple(r['shape'])} | {_fmt(r.get('seconds'))} | "
                         f"{_fmt(r.get('peak_mb_over_inputs', r.get('error')))} | {_fmt(r.get('states_mb'))} |")
    rows = report["steps"].get("bench", {}).get("rows")
    if rows:
        lines += ["", "## Models at " + rows[0]["size"] + " (random weights of the exact configs; default: its own)",
                  "", "| model | precision | scan | seconds | peak MB | paper seconds | ours / paper |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            paper = r.get("paper") or {}
            secs = r.get("seconds", r.get("error") or r.get("skipped"))
            lines.append(f"| {r['model']} | {r['precision']} | {r.get('scan_backend', '-')} | {_fmt(secs)} | "
                         f"{_fmt(r.get('peak_memory_mb'))} | {_fmt(paper.get('seconds')) if paper else 'not stated'} | "
                         f"{_fmt(r.get('vs_paper'), 2)} |")
        notes = {r["model"]: r["paper"]["note"] for r in rows if r.get("paper")}
        lines += [""] + [f"- {model}, paper's figure: {note}" for model, note in notes.items()]
        lines.append("- The papers' GPUs differ from this one; compare orders of magnitude, not digits.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "results" / "gpu_check"))
    p.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny shapes")
    p.add_argument("--budget", type=float, default=None, help="seconds for all steps (default 570; dry run 110)")
    p.add_argument("--steps", default=",".join(n for n, _ in STEPS), help="comma-separated subset")
    args = p.parse_args(argv)

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; use --dry-run to check the script on the CPU",
              file=sys.stderr)
        return 2
    budget = Budget(args.budget or (110.0 if args.dry_run else 570.0))
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    ctx = {"device": torch.device("cpu" if args.dry_run else "cuda"), "dry": args.dry_run, "out": out,
           "work": work, "budget": budget, "limits": LIMITS}
    report: dict[str, Any] = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "steps": {}}
    wanted = set(args.steps.split(","))
    for name, fn in STEPS:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            budget.check(5)
            res = fn(ctx)
            res.setdefault("status", "ok")
        except TimeoutError as exc:
            res = {"status": "skipped", "why": str(exc)}
        except Exception as exc:
            res = {"status": "failed", "error": _err(exc), "traceback": traceback.format_exc()[-2000:]}
        res["step_seconds"] = time.perf_counter() - t0
        report["steps"][name] = res
        why = res.get("why") or res.get("error") or ""
        print(f"gpu_check: {name} {res['status']} ({res['step_seconds']:.1f} s) {why}", file=sys.stderr, flush=True)
        _write(out, report)
    _write(out, report)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, r in report["steps"].items() if r["status"] == "failed"]
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}"
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _write(out: Path, report: dict[str, Any]) -> None:
    for name, text in (("gpu_check.json", json.dumps(report, indent=1, default=str) + "\n"),
                       ("gpu_check.md", markdown(report))):
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / name)


if __name__ == "__main__":
    sys.exit(main())
