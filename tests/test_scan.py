"""Every selective-scan backend against the sequential reference, forward and backward.

Backends that cannot run here are skipped with the reason. Triton runs through its CPU
interpreter when there is no GPU (TRITON_INTERPRET=1, set per test so other test modules are
unaffected); its interpreter scans element by element in Python, so ``_fast_interpreter_scan``
replaces that one routine with a version vectorised over the non-scanned axes, which keeps the
interpreted kernel the same code and the tests fast.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deblurcli.ssm import resolve_backend, selective_scan_reference, selective_scan_torch

SCAN_DIR = Path(__file__).parent / "fixtures" / "conformance" / "scan"
FIXTURES = sorted(json.loads((SCAN_DIR / "cases.json").read_text())) if (SCAN_DIR / "cases.json").is_file() else []
HAS_CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None


def _numba_ok() -> bool:
    from deblurcli.ssm import numba_scan

    return numba_scan.available()


def _mamba_ok() -> bool:
    if not HAS_CUDA:
        return False
    from deblurcli.ssm import cuda

    return cuda.available()


@pytest.fixture
def triton_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        _fast_interpreter_scan(monkeypatch)
    from deblurcli.ssm import triton_scan

    if not triton_scan.available():
        pytest.skip(f"triton cannot run here: {triton_scan._IMPORT_ERROR}")
    if not HAS_CUDA:
        import triton.language as tl

        # triton decorates its own library when imported; imported earlier without the
        # interpreter (by other code in this process), it cannot run interpreted kernels.
        stdlib_sum = getattr(getattr(tl, "standard", None), "sum", None)
        if (stdlib_sum is not None and not _is_interpreted(stdlib_sum)) or (
            triton_scan._scan_kernel is not None and not _is_interpreted(triton_scan._scan_kernel)
        ):
            pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process")
    yield


def _is_interpreted(kernel: Any) -> bool:
    return type(kernel).__name__ == "InterpretedFunction"


def _fast_interpreter_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the interpreter's generic associative scan loop over the scanned axis only."""
    try:
        from triton.runtime.interpreter import ScanOps
    except ImportError:
        return

    def generic_scan(self: Any, inputs: Any) -> list[Any]:
        data = [np.ascontiguousarray(x.handle.data) for x in inputs]
        out = [np.empty_like(x) for x in data]
        axis = self.axis

        def at(i: int) -> tuple[Any, ...]:
            return (slice(None),) * axis + (i,)

        acc = [x[at(0)] for x in data]
        for o, a in zip(out, acc, strict=True):
            o[at(0)] = a
        for i in range(1, data[0].shape[axis]):
            args = [self.to_tensor(np.ascontiguousarray(a), x.dtype) for a, x in zip(acc, inputs, strict=True)]
            args += [self.to_tensor(np.ascontiguousarray(d[at(i)]), x.dtype) for d, x in zip(data, inputs, strict=True)]
            ret = self.combine_fn.fn(*args)
            acc = [r.handle.data for r in (ret if isinstance(ret, tuple) else (ret,))]
            for o, a in zip(out, acc, strict=True):
                o[at(i)] = a
        return [self.to_tensor(o, x.dtype) for o, x in zip(out, inputs, strict=True)]

    if hasattr(ScanOps, "generic_scan") and hasattr(ScanOps, "to_tensor"):
        monkeypatch.setattr(ScanOps, "generic_scan", generic_scan)


def _numba_fn() -> Callable[..., Any]:
    if not _numba_ok():
        pytest.skip("numba is not installed")
    from deblurcli.ssm.numba_scan import selective_scan_numba

    return selective_scan_numba


def _triton_fn() -> Callable[..., Any]:
    from deblurcli.ssm.triton_scan import selective_scan_triton

    return selective_scan_triton


def _cuda_fn() -> Callable[..., Any]:
    if not _mamba_ok():
        pytest.skip("mamba-ssm's CUDA kernel is not available")
    from deblurcli.ssm.cuda import selective_scan_cuda

    return selective_scan_cuda


BACKENDS = ["torch", "numba", "triton", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, Callable[..., Any], str]:
    """(name, function, device) for each backend that can run here."""
    name = request.param
    if name == "torch":
        return name, selective_scan_torch, "cpu"
    if name == "numba":
        return name, _numba_fn(), "cpu"
    if name == "triton":
        request.getfixturevalue("triton_mode")
        return name, _triton_fn(), "cuda" if HAS_CUDA else "cpu"
    if not HAS_CUDA:
        pytest.skip("no CUDA device")
    return name, _cuda_fn(), "cuda"


def make_inputs(
    b: int, d: int, n: int, l: int, groups: int | None, dtype: torch.dtype = torch.float32,
    D: bool = True, z: bool = True, bias: bool = True, seed: int = 0,
) -> dict[str, Any]:
    """Random inputs in the ranges Mamba sees: A = -(0.5..n + 0.5), delta in (0, 1.5].

    delta stays positive so that cases without softplus decay too (negative steps grow the state
    exponentially and every backend overflows the same way).
    """
    g = torch.Generator().manual_seed(seed)
    shape_bc = (b, n, l) if groups is None else (b, groups, n, l)

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    return {
        "u": r(b, d, l),
        "delta": (torch.rand(b, d, l, generator=g, dtype=torch.float64) * 1.5 + 1e-3).to(dtype),
        "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * n + 0.5).to(dtype),
        "B": r(*shape_bc),
        "C": r(*shape_bc),
        "D": r(d) if D else None,
        "z": r(b, d, l) if z else None,
        "delta_bias": r(d, scale=0.5) if bias else None,
    }


def run(fn: Callable[..., Any], inputs: dict[str, Any], softplus: bool, device: str = "cpu") -> Any:
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    return fn(
        moved["u"], moved["delta"], moved["A"], moved["B"], moved["C"], moved["D"], moved["z"],
        moved["delta_bias"], softplus, True,
    )


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """Relative to the output's scale: the state sums n terms, so absolute errors scale with it."""
    tol = 2e-5 if dtype == torch.float32 else 1e-11
    scale = want.abs().max().item() if want.numel() else 1.0
    torch.testing.assert_close(got.cpu().to(want.dtype), want, rtol=tol, atol=tol * max(scale, 1.0))


# (b, d, n, l, groups, D, z, delta_bias, softplus): every option on and off somewhere, lengths
# that cross the torch backend's chunk borders (one chunk up to 256, chunks of 48..128 above).
CASES = [
    (2, 3, 4, 1, None, True, True, True, True),
    (2, 6, 8, 37, 2, True, False, True, True),
    (1, 5, 16, 300, None, False, True, False, False),
    (1, 4, 8, 1000, 1, True, True, False, True),
    (2, 8, 32, 257, 2, False, False, True, True),
]
# The interpreter pays Python per scan step and per program: lengths up to 1000 for triton on CPU.
SLOW_UNDER_INTERPRETER = 1000


def _skip_slow(name: str, l: int) -> None:
    if name == "triton" and not HAS_CUDA and l > SLOW_UNDER_INTERPRETER:
        pytest.skip("long sequences are slow in triton's CPU interpreter (run on a GPU)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[f"b{c[0]}d{c[1]}n{c[2]}l{c[3]}g{c[4]}" for c in CASES])
def test_matches_reference(backend: tuple[str, Callable[..., Any], str], case: tuple, dtype: torch.dtype) -> None:
    name, fn, device = backend
    b, d, n, l, groups, D, z, bias, softplus = case
    _skip_slow(name, l)
    if name == "cuda" and dtype == torch.float64:
        pytest.skip("mamba-ssm's kernel has no float64")
    inputs = make_inputs(b, d, n, l, groups, dtype, D, z, bias)
    y, last = run(fn, inputs, softplus, device)
    y_ref, last_ref = run(selective_scan_reference, inputs, softplus)
    assert y.dtype == dtype and y.shape == (b, d, l)
    assert last.shape == (b, d, n)
    assert_close(y, y_ref, dtype)
    assert_close(last, last_ref, dtype)


def test_float32_grads_match_reference(backend: tuple[str, Callable[..., Any], str]) -> None:
    name, fn, device = backend
    inputs = make_inputs(2, 6, 8, 45, 2)
    ref_in = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    got_in = {k: (v.clone().to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
    w = torch.randn(2, 6, 45, generator=torch.Generator().manual_seed(1))
    w_last = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(2))
    for f, args, dev in ((selective_scan_reference, ref_in, "cpu"), (fn, got_in, device)):
        y, last = f(args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"], args["z"],
                    args["delta_bias"], True, True)
        ((y * w.to(dev)).sum() + (last * w_last.to(dev)).sum()).backward()
    for key, ref_t in ref_in.items():
        assert ref_t is not None
        got = got_in[key].grad
        assert got is not None, f"no gradient for {key}"
        assert_close(got, ref_t.grad, torch.float32)


@pytest.mark.parametrize("case", FIXTURES)
def test_conformance_fixture(backend: tuple[str, Callable[..., Any], str], case: str) -> None:
    name, fn, device = backend
    t = load_file(str(SCAN_DIR / f"{case}.safetensors"))
    info = json.loads((SCAN_DIR / "cases.json").read_text())[case]
    _skip_slow(name, info["l"])
    t["z"], t["delta_bias"] = t.get("z"), t.get("delta_bias")
    y, last = run(fn, t, info.get("delta_softplus", True), device)
    torch.testing.assert_close(y.cpu().to(t["y"].dtype), t["y"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last.cpu().to(t["last_state"].dtype), t["last_state"], atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- numba specifics


@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
def test_numba_gradcheck(grouped: bool) -> None:
    fn = _numba_fn()
    inputs = make_inputs(1, 4, 3, 6, 2 if grouped else None, torch.float64)
    names = list(inputs)
    tensors = [inputs[k].clone().requires_grad_() for k in names]

    def f(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(names, args, strict=True))
        return fn(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"], kw["delta_bias"],
                  delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 6, 8, 600, 2), (1, 7, 16, 300, None), (2, 9, 5, 33, 3)], ids=str)
def test_numba_task_splits(monkeypatch: pytest.MonkeyPatch, parts: int, shape: tuple) -> None:
    """Forward and gradients when a group's channels are split over several tasks.

    With one thread the kernels never split; forced splits check the slice bounds, the per-slice
    B/C gradients torch sums, and (l > 255 at n <= 16) the chunk checkpoints between slices.
    """
    fn = _numba_fn()
    from deblurcli.ssm import numba_scan

    monkeypatch.setattr(numba_scan, "_FORCE_PARTS", parts)
    inputs = make_inputs(*shape)
    ref_in = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    got_in = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    w = torch.randn(shape[0], shape[1], shape[3], generator=torch.Generator().manual_seed(1))
    outs = []
    for f, args in ((selective_scan_reference, ref_in), (fn, got_in)):
        y, last = run(f, args, True)
        ((y * w).sum() + last.sum()).backward()
        outs.append((y.detach(), last.detach()))
    for got, want in zip(outs[1], outs[0], strict=True):
        assert_close(got, want, torch.float32)
    for key, ref_t in ref_in.items():
        if ref_t is not None:
            assert_close(got_in[key].grad, ref_t.grad, torch.float32)


@pytest.mark.parametrize("gate", ["D+z", "D", "z", "none"])
def test_numba_strided_layouts(gate: str) -> None:
    """Inputs laid out as the Mamba block passes them, read in place by the kernels.

    z, delta, B and C are channel-major views of time-major projections (and B/C of one shared
    tensor); gradients must reach those tensors through the views, for every gate combination.
    """
    fn = _numba_fn()
    b, d, n, l = 2, 6, 8, 300
    g = torch.Generator().manual_seed(3)
    leaves = {
        "u": torch.randn(b, d, l, generator=g),
        "xz": torch.randn(b, l, 2 * d, generator=g),
        "x_dbl": torch.randn(b, l, 3 + 2 * n, generator=g),
        "delta": torch.randn(b, l, d, generator=g) * 0.5,
        "A": -(torch.rand(d, n, generator=g) * n + 0.5),
        "D": torch.randn(d, generator=g),
        "bias": torch.randn(d, generator=g) * 0.5,
    }
    w = torch.randn(b, d, l, generator=g)
    grads = []
    for f in (selective_scan_reference, fn):
        t = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        z = t["xz"].transpose(1, 2).chunk(2, dim=1)[1] if "z" in gate else None
        _, Bm, Cm = torch.split(t["x_dbl"], [3, n, n], dim=-1)
        y, last = f(t["u"], t["delta"].transpose(1, 2), t["A"], Bm.transpose(1, 2), Cm.transpose(1, 2),
                    t["D"] if "D" in gate else None, z, t["bias"], True, True)
        ((y * w).sum() + last.sum()).backward()
        grads.append((y.detach(), last.detach(), {k: v.grad for k, v in t.items()}))
    (y_ref, last_ref, g_ref), (y_got, last_got, g_got) = grads
    assert_close(y_got, y_ref, torch.float32)
    assert_close(last_got, last_ref, torch.float32)
    for key, want in g_ref.items():
        if want is None:
            assert g_got[key] is None or not g_got[key].any(), key
        else:
            assert g_got[key] is not None, key
            assert_close(g_got[key], want, torch.float32)


def test_numba_exp_accuracy() -> None:
    _numba_fn()
    from deblurcli.ssm.numba_scan import _exp_array

    for dtype, tol in ((np.float32, 3e-7), (np.float64, 1e-15)):
        x = np.concatenate([np.linspace(-80, 20, 100_001), [0.0, -1e-30]]).astype(dtype)
        out = np.empty_like(x)
        _exp_array(x, out)
        want = np.exp(x.astype(np.float64))
        assert np.max(np.abs(out - want) / want) < tol
        assert out[-2] == 1.0
    x = np.array([-200.0, -81.0], dtype=np.float32)
    out = np.empty_like(x)
    _exp_array(x, out)
    assert np.allclose(out, np.exp(np.float32(-80.0)))  # clamped, not a denormal or garbage


def test_numba_softplus_accuracy() -> None:
    """The kernels' softplus and its derivative against torch's, to an ulp or so."""
    _numba_fn()
    from deblurcli.ssm.numba_scan import _softplus_array

    for dtype, tol in ((np.float32, 5e-7), (np.float64, 2e-15)):
        x = np.concatenate([np.linspace(-79, 30, 100_001), [0.0, 20.0, 20.5, -1e-30]]).astype(dtype)
        out, grad = np.empty_like(x), np.empty_like(x)
        _softplus_array(x, out, grad)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        want = torch.nn.functional.softplus(xt)
        want.sum().backward()
        assert np.max(np.abs(out - want.detach().numpy()) / want.detach().numpy()) < tol
        assert np.max(np.abs(grad - xt.grad.numpy()) / xt.grad.numpy()) < tol
        assert out[-2] == x[-2] and grad[-2] == 1.0  # above torch's threshold: the identity


def test_numba_broadcast_grads() -> None:
    """Gradients that arrive expanded (stride 0), as from ``y.sum()``, read in place."""
    fn = _numba_fn()
    inputs = make_inputs(2, 4, 8, 40, None)
    grads = []
    for f in (selective_scan_reference, fn):
        t = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
        y, last = run(f, t, True)
        (y.sum() + last.sum()).backward()
        grads.append({k: v.grad for k, v in t.items() if v is not None})
    for key, want in grads[0].items():
        assert_close(grads[1][key], want, torch.float32)


def test_numba_odd_inputs() -> None:
    """Non-contiguous views, half precision, an empty sequence, and tensors off the CPU."""
    fn = _numba_fn()
    inputs = make_inputs(2, 6, 4, 30, None)
    strided = {k: (v.transpose(-1, -2).contiguous().transpose(-1, -2) if v is not None and v.dim() == 3 else v)
               for k, v in inputs.items()}
    assert not strided["u"].is_contiguous()
    y, last = run(fn, strided, True)
    y_ref, last_ref = run(selective_scan_reference, inputs, True)
    assert_close(y, y_ref, torch.float32)

    half = {k: (v.to(torch.bfloat16) if v is not None else None) for k, v in inputs.items()}
    y, last = run(fn, half, True)
    y_ref, last_ref = run(selective_scan_reference, half, True)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, atol=2e-2, rtol=2e-2)

    empty = make_inputs(2, 6, 4, 0, None)
    y, last = run(fn, empty, True)
    assert y.shape == (2, 6, 0) and torch.equal(last, torch.zeros(2, 6, 4))

    with pytest.raises(ValueError, match="CPU tensors only"):
        fn(*(v.to("meta") for v in (inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])))
    with pytest.raises(ValueError, match="multiple of the B/C groups"):
        bad = make_inputs(1, 5, 4, 8, 2)
        run(fn, bad, True)


def test_numba_follows_torch_threads() -> None:
    """In a fresh process with a two-worker numba pool (this one has one, so any count would pass here)."""
    _numba_fn()
    import os
    import subprocess
    import sys

    code = (
        "import torch, numba\n"
        "from deblurcli.ssm.numba_scan import selective_scan_numba as f\n"
        "x = torch.rand(1, 4, 8); A = -torch.rand(4, 4) - 0.5; B = torch.randn(1, 4, 8)\n"
        "seen = []\n"
        "for nt in (2, 1, 2):\n"
        "    torch.set_num_threads(nt); f(x, x, A, B, B, None, None, None, False, False)\n"
        "    seen.append(numba.get_num_threads())\n"
        "print(seen)\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[2, 1, 2]"


def test_numba_cache_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no cache directory is writable numba raises at decoration; we compile uncached."""
    _numba_fn()
    from deblurcli.ssm import numba_scan

    numba_scan.preload()  # numba's own start-up decorates with njit too: not under the stand-in below
    real = numba_scan.numba.njit
    seen: list[bool] = []

    def njit(**opts: Any) -> Any:
        seen.append(bool(opts.get("cache")))
        if opts.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file")
        return real(**opts)

    monkeypatch.setattr(numba_scan.numba, "njit", njit)
    f = numba_scan._njit()(lambda x: x + 1)
    assert f(1) == 2 and seen == [True, False]


def test_auto_picks_numba_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _numba_ok():
        pytest.skip("numba is not installed")
    import deblurcli.ssm as ssm

    monkeypatch.setattr(ssm, "_default", "auto")  # whatever DEBLUR_SCAN_BACKEND says
    assert resolve_backend("auto", torch.zeros(1, 1, 1)) == "numba"


# ---------------------------------------------------------------------------- triton specifics


def _grads(fn: Callable[..., Any], inputs: dict[str, Any], device: str, seed: int = 1,
           weight_y: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """y, the last state and every input's gradient of a random weighted sum of both."""
    t = {k: (v.clone().to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y, last = run(fn, t, True, device)
    g = torch.Generator().manual_seed(seed)
    wy = torch.randn(y.shape, generator=g, dtype=y.dtype).to(device) if weight_y else torch.zeros_like(y)
    wl = torch.randn(last.shape, generator=g, dtype=last.dtype).to(device)
    ((y * wy).sum() + (last * wl).sum()).backward()
    return y.detach(), last.detach(), {k: v.grad for k, v in t.items() if v is not None}


# (b, d, n, l, groups): lengths below, at and across the kernel's 32-step chunks; n up to 64;
# groups whose channel count is odd (blocks of one channel) and even.
TRITON_GRAD_CASES = [
    (1, 3, 4, 1, None), (2, 6, 8, 31, 2), (1, 4, 16, 32, 1), (2, 4, 8, 33, 2), (1, 2, 64, 70, None),
    (1, 8, 32, 40, 4),
]


@pytest.mark.parametrize("case", TRITON_GRAD_CASES, ids=["b{}d{}n{}l{}g{}".format(*c) for c in TRITON_GRAD_CASES])
def test_triton_backward_matches_reference(triton_mode: None, case: tuple) -> None:
    """The Triton kernel's own backward (not the torch scan's) against the sequential reference."""
    from deblurcli.ssm import triton_scan

    b, d, n, l, groups = case
    calls = []
    real = triton_scan._scan_core_backward
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(triton_scan, "_scan_core_backward", lambda *a: calls.append(1) or real(*a))
        y, last, grads = _grads(_triton_fn(), make_inputs(b, d, n, l, groups), "cuda" if HAS_CUDA else "cpu")
    assert calls, "the Triton backward did not run"
    y_ref, last_ref, grads_ref = _grads(selective_scan_reference, make_inputs(b, d, n, l, groups), "cpu")
    assert_close(y, y_ref, torch.float32)
    assert_close(last, last_ref, torch.float32)
    for key, want in grads_ref.items():
        assert_close(grads[key], want, torch.float32)


def test_triton_last_state_gradient_alone(triton_mode: None) -> None:
    """Only the last state in the loss: dL/dh enters at the end and runs back through every chunk."""
    inputs = make_inputs(1, 4, 8, 77, None)
    device = "cuda" if HAS_CUDA else "cpu"
    _, _, grads = _grads(_triton_fn(), inputs, device, weight_y=False)
    _, _, grads_ref = _grads(selective_scan_reference, inputs, "cpu", weight_y=False)
    assert grads_ref["u"][..., 0].abs().max() > 0  # the first step does reach the last state
    for key, want in grads_ref.items():
        assert_close(grads[key], want, torch.float32)


def test_triton_gradcheck_float64(triton_mode: None) -> None:
    fn = _triton_fn()
    device = "cuda" if HAS_CUDA else "cpu"
    inputs = make_inputs(1, 2, 3, 34, 2, torch.float64)
    names = list(inputs)
    tensors = [inputs[k].clone().to(device).requires_grad_() for k in names]

    def f(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(names, args, strict=True))
        return fn(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"], kw["delta_bias"],
                  delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def test_triton_training_memory_is_linear_in_states(triton_mode: None) -> None:
    """What autograd keeps for the backward: O(b*d*l), not the torch scan's ~6*b*d*n*l.

    This is the memory that made a batch of 8 256 px crops not fit on a GPU; counted here on the
    tensors saved for backward, which is what stays alive between the forward and the backward.
    """
    b, d, n, l = 1, 8, 64, 40  # two chunks: the ratios below do not depend on l
    device = "cuda" if HAS_CUDA else "cpu"
    saved: dict[str, int] = {}

    def measure(fn: Callable[..., Any]) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        inputs = make_inputs(b, d, n, l, None)
        t = {k: (v.clone().to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            y, last = run(fn, t, True, device)
        (y.sum() + last.sum()).backward()
        return sum(seen.values()) // 4

    saved["triton"] = measure(_triton_fn())
    saved["torch"] = measure(selective_scan_torch)
    states = b * d * n * l
    assert saved["triton"] < 0.5 * states, saved
    assert saved["torch"] > 4 * saved["triton"], saved  # the measure can tell the two apart


def _fresh_python(code: str, env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_numba_pool_start_keeps_torch_threads() -> None:
    """--threads 2 with a one-worker numba pool: torch keeps its two threads after the first scan.

    Starting numba's pool reset the calling thread's OpenMP count to numba's, so the rest of a
    process's first forward ran on one thread, and the first photo of a run came out slightly
    unlike the same photo restored again.
    """
    _numba_fn()
    code = (
        "import torch\n"
        "from deblurcli.ssm.numba_scan import selective_scan_numba as f\n"
        "torch.set_num_threads(2)\n"
        "x = torch.rand(1, 4, 8); A = -torch.rand(4, 4) - 0.5; B = torch.randn(1, 4, 8)\n"
        "f(x, x, A, B, B, None, None, None, False, False)\n"
        "print(torch.get_num_threads())\n"
    )
    assert _fresh_python(code, {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}) == "2"


def test_numba_preload_is_the_kernel_calls_use() -> None:
    """The background preload readies the very kernel a real scan calls (no second load), without SciPy."""
    _numba_fn()
    code = (
        "import sys, torch\n"
        "from deblurcli import ssm\n"
        "from deblurcli.ssm import numba_scan as ns\n"
        "ssm.preload_in_background('auto').join()\n"
        "ready = len(ns._forward_kernel.signatures)\n"
        "u = torch.rand(2, 6, 40).transpose(1, 2).contiguous().transpose(1, 2)\n"
        "A = -torch.rand(6, 4); B = torch.rand(2, 4, 40); D = torch.rand(6)\n"
        "ns.selective_scan_numba(u, u, A, B, B, D, u, D, True, False)\n"
        "print(ready, len(ns._forward_kernel.signatures), 'scipy.linalg' in sys.modules)\n"
    )
    assert _fresh_python(code, {}) == "1 1 False"
