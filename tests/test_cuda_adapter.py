"""The mamba-ssm adapter (``deblurcli.ssm.cuda``) against a stand-in for mamba-ssm, on CPU.

The stand-in behaves as mamba-ssm's ``selective_scan_fn`` does where it matters to us (from its
``selective_scan_interface.py`` and ``csrc/selective_scan/selective_scan.cpp``): its kernel
checks dtypes and layouts instead of converting (u float32/float16/bfloat16; delta, B, C, z in
u's dtype; A, D, delta_bias float32; last dimension contiguous; state <= 256), returns y in the
input dtype and the last state in float32, and its backward ignores the last state's gradient.
A second stand-in imitates a mamba-ssm installed without its compiled extension: it imports,
and raises when called. The real kernel is tested against the reference in tests/test_gpu.py.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from test_scan import assert_close, make_inputs

import deblurcli.ssm as ssm
from deblurcli.ssm import cuda as cuda_adapter
from deblurcli.ssm import selective_scan, selective_scan_reference


def _check_like_the_kernel(u, delta, A, B, C, D, z, delta_bias) -> None:
    io = u.dtype
    assert io in (torch.float32, torch.float16, torch.bfloat16), f"u dtype {io}"
    assert A.dtype == torch.float32, f"A dtype {A.dtype}"
    for name, t in (("delta", delta), ("B", B), ("C", C), ("z", z)):
        if t is not None:
            assert t.dtype == io, f"{name} dtype {t.dtype} != u's {io}"
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            assert t.dtype == torch.float32, f"{name} dtype {t.dtype}"
    for name, t in (("u", u), ("delta", delta), ("B", B), ("C", C), ("z", z), ("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            assert t.stride(-1) == 1 or t.size(-1) == 1, f"{name} last dimension not contiguous"
            assert t.device.type == "cpu", f"{name} on {t.device}"  # the stand-in's "GPU"
    assert A.shape[1] <= 256


class _StandInScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):  # type: ignore[override]
        _check_like_the_kernel(u, delta, A, B, C, D, z, delta_bias)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.softplus = softplus
        with torch.no_grad():
            y, last = selective_scan_reference(u.float(), delta.float(), A, B.float(), C.float(), D,
                                               None if z is None else z.float(), delta_bias, softplus, True)
        return y.to(u.dtype), last.float()

    @staticmethod
    def backward(ctx, gy, glast):  # type: ignore[override]
        # Like mamba-ssm's: dL/d(last state) is dropped.
        saved = [None if t is None else t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            u, delta, A, B, C, D, z, bias = saved
            y = selective_scan_reference(u.float(), delta.float(), A, B.float(), C.float(), D,
                                         None if z is None else z.float(), bias, ctx.softplus)
            wrt = [t for t in saved if t is not None]
            grads = iter(torch.autograd.grad(y, wrt, gy.to(y.dtype)))
        return (*[None if t is None else next(grads).to(t.dtype) for t in saved], None)


def _stand_in_fn(calls: list[dict[str, Any]]) -> Callable[..., Any]:
    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
        calls.append({"u": u.dtype, "B": tuple(B.shape)})
        y, last = _StandInScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return (y, last) if return_last_state else y

    return selective_scan_fn


def _broken_fn(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("selective_scan_cuda is not installed. To use Mamba-1, reinstall with: ...")


def _install(monkeypatch: pytest.MonkeyPatch, fn: Callable[..., Any]) -> None:
    iface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    iface.selective_scan_fn = fn  # type: ignore[attr-defined]
    ops = types.ModuleType("mamba_ssm.ops")
    ops.selective_scan_interface = iface  # type: ignore[attr-defined]
    pkg = types.ModuleType("mamba_ssm")
    pkg.ops = ops  # type: ignore[attr-defined]
    for name, mod in (("mamba_ssm", pkg), ("mamba_ssm.ops", ops), ("mamba_ssm.ops.selective_scan_interface", iface)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(cuda_adapter, "_DEVICE_TYPE", "cpu")


def _forget() -> None:
    cuda_adapter._kernel.cache_clear()
    cuda_adapter.probe.cache_clear()
    ssm._cache.pop("cuda", None)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    _forget()
    _install(monkeypatch, _stand_in_fn(calls))
    yield calls
    _forget()


@pytest.fixture
def broken_install(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _forget()
    _install(monkeypatch, _broken_fn)
    yield
    _forget()


def _call(inputs: dict[str, Any], last: bool = True, backend: str = "cuda") -> Any:
    return selective_scan(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
                          inputs["z"], inputs["delta_bias"], delta_softplus=True, return_last_state=last,
                          backend=backend)


# -- 1. the last state's gradient ------------------------------------------------------------------


def test_last_state_gradient_is_not_dropped(stand_in: list) -> None:
    """selective_scan_fn's backward ignores dL/d(last); through our adapter the gradient is right."""
    inputs = make_inputs(2, 4, 8, 40, None)
    results = []
    for backend in ("reference", "cuda"):
        t = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
        y, last = _call(t, backend=backend)
        (y.sum() * 0.1 + (last * torch.linspace(-1, 1, last.numel()).view_as(last)).sum()).backward()
        results.append({k: v.grad for k, v in t.items() if v is not None})
    assert stand_in, "the stand-in kernel was not called"
    for key, want in results[0].items():
        assert_close(results[1][key], want, torch.float32)


def test_stand_in_really_drops_the_last_state_gradient(stand_in: list) -> None:
    """The test above can fail: calling the stand-in directly loses the last state's gradient."""
    inputs = make_inputs(1, 2, 4, 10, None)
    fn = sys.modules["mamba_ssm.ops.selective_scan_interface"].selective_scan_fn
    u = inputs["u"].clone().requires_grad_()
    _, last = fn(u, inputs["delta"], inputs["A"], inputs["B"], inputs["C"], return_last_state=True)
    last.sum().backward()
    assert u.grad is not None and not u.grad.any()


# -- 2. availability is a test call, not an import ---------------------------------------------------


def test_installed_without_extension_is_not_available(broken_install: None) -> None:
    reason = cuda_adapter.probe()
    assert reason is not None and "failed a test call" in reason and "selective_scan_cuda" in reason
    assert "cuda" not in ssm.available_backends()
    fake_gpu_tensor = types.SimpleNamespace(is_cuda=True, dtype=torch.float32, device=torch.device("cuda"))
    assert ssm.resolve_backend("auto", fake_gpu_tensor) in ("triton", "torch")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not available"):
        _call(make_inputs(1, 2, 4, 8, None), backend="cuda")


def test_working_kernel_is_available_and_picked_on_gpu(stand_in: list, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cuda_adapter.probe() is None
    assert "cuda" in ssm.available_backends()
    monkeypatch.setattr(ssm, "_default", "auto")
    gpu32 = types.SimpleNamespace(is_cuda=True, dtype=torch.float32, device=torch.device("cuda"))
    assert ssm.resolve_backend("auto", gpu32) == "cuda"  # type: ignore[arg-type]
    gpu64 = types.SimpleNamespace(is_cuda=True, dtype=torch.float64, device=torch.device("cuda"))
    assert ssm.resolve_backend("auto", gpu64) != "cuda"  # type: ignore[arg-type]


def test_kernel_with_wrong_results_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget()
    _install(monkeypatch, lambda u, *a, **k: torch.zeros_like(u))
    try:
        assert cuda_adapter.probe() == "mamba-ssm's kernel gave wrong results on a test call"
    finally:
        _forget()


# -- 3. dtypes, layouts, devices ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_every_argument_cast_as_the_kernel_checks(stand_in: list, dtype: torch.dtype) -> None:
    """Half u with float32 delta/B/C (autocast's mix), grouped B/C, strided views, float64 D."""
    inputs = make_inputs(2, 6, 8, 33, 2)
    mixed = dict(inputs)
    mixed["u"] = inputs["u"].to(dtype)
    mixed["z"] = inputs["z"].to(dtype)
    mixed["delta"] = inputs["delta"].transpose(1, 2).contiguous().transpose(1, 2)  # time-major view
    mixed["B"] = inputs["B"].transpose(-1, -2).contiguous().transpose(-1, -2)
    mixed["D"] = inputs["D"].double()
    mixed["delta_bias"] = inputs["delta_bias"].half()
    mixed["A"] = inputs["A"].double()
    y, last = _call(mixed)
    assert stand_in[-1]["u"] == (dtype if dtype == torch.float32 else torch.float32)  # widest input type
    assert y.dtype == dtype and last.dtype == torch.float32
    want = {k: (v.float() if v is not None else None) for k, v in mixed.items()}
    y_ref, last_ref = _call(want, backend="reference")
    torch.testing.assert_close(y.float(), y_ref, atol=2e-2, rtol=2e-2)
    assert_close(last, last_ref, torch.float32)


def test_half_inputs_stay_half(stand_in: list) -> None:
    inputs = {k: (v.half() if v is not None and v.dim() == 3 else v) for k, v in make_inputs(1, 4, 4, 16, None).items()}
    y = _call(inputs, last=False)
    assert stand_in[-1]["u"] == torch.float16 and y.dtype == torch.float16
    assert stand_in[-1]["B"] == (1, 1, 4, 16)  # ungrouped B arrives with its group axis


def test_refusals_are_one_line(stand_in: list) -> None:
    inputs = make_inputs(1, 4, 4, 16, None)
    with pytest.raises(ValueError, match="float32, float16 and bfloat16, not torch.float64"):
        _call({k: (v.double() if v is not None else None) for k, v in inputs.items()})
    with pytest.raises(ValueError, match=r"needs CUDA tensors, but B is on meta"):
        _call({**inputs, "B": inputs["B"].to("meta")})
    with pytest.raises(ValueError, match="multiple of the B/C groups"):
        _call(make_inputs(1, 5, 4, 8, 2))
