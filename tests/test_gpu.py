"""The CUDA path: what runs only on a GPU, behind the ``gpu`` marker, plus its CPU-checkable parts.

Tests marked ``gpu`` run wherever torch sees a CUDA device and are skipped with a reason
elsewhere (tests/conftest.py), so ``pytest -m gpu`` on a GPU machine checks the whole CUDA path:
mamba-ssm's kernel and our Triton kernel against the reference, the model in fp32/fp16/bf16,
the fp32 recompute of a non-finite half-precision tile, the out-of-memory retry with smaller
tiles, the automatic tile from free GPU memory and the automatic scan backend.
The unmarked tests check on CPU what of that logic does not need a GPU (the retry frees the
failed attempt's memory before asking CUDA to release it).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_scan import assert_close, make_inputs

import deblurcli.api as api
from deblurcli import ssm
from deblurcli.api import Deblurrer
from deblurcli.errors import DeblurError
from deblurcli.ssm import selective_scan_reference

gpu = pytest.mark.gpu


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3), dtype=np.float32)


# -- out-of-memory retry (CPU-checkable) --------------------------------------------------------------


def _fake_oom_tiling(monkeypatch: pytest.MonkeyPatch, fits: int) -> tuple[list[int], list[weakref.ref]]:
    """restore_tiled that runs out of memory above ``fits`` px, holding a tensor when it does."""
    tiles: list[int] = []
    held: list[weakref.ref] = []

    def restore_tiled(image: np.ndarray, fn: Any, *, tile: int, **kw: Any) -> np.ndarray:
        tiles.append(tile)
        if tile == 0 or tile > fits:
            work = torch.empty(1 << 16)  # what a failed tile leaves behind in its frames
            held.append(weakref.ref(work))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return image.copy()

    monkeypatch.setattr(api.tiling, "restore_tiled", restore_tiled)
    return tiles, held


def test_oom_retry_halves_the_tile_and_frees_the_failed_one_first(tiny_model: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    d = Deblurrer(tiny_model, device="cpu", tile=0, progress=False, on_note=notes.append)
    d.device = torch.device("cuda")  # restore() decides on the retry by the device alone
    tiles, held = _fake_oom_tiling(monkeypatch, fits=200)
    alive_at_empty_cache: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache",
                        lambda: alive_at_empty_cache.append(sum(r() is not None for r in held)))
    out = d.restore(_image(400, 600))
    assert out.shape == (400, 600, 3)
    assert tiles == [0, 288, 144]  # whole image, then halves rounded to the model's multiple of 16
    assert alive_at_empty_cache == [0, 0], "empty_cache() ran while the failed tile's tensors were alive"
    assert any("retrying with 288 px" in n for n in notes) and any("retrying with 144 px" in n for n in notes)


def test_oom_retry_gives_up_below_128_px(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Deblurrer(tiny_model, device="cpu", tile=0, progress=False, on_note=lambda m: None)
    d.device = torch.device("cuda")
    _fake_oom_tiling(monkeypatch, fits=64)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(DeblurError, match="even with 128 px tiles; run on the CPU"):
        d.restore(_image(256, 256))


def test_oom_on_cpu_is_a_clear_error(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Deblurrer(tiny_model, device="cpu", tile=0, progress=False)
    _fake_oom_tiling(monkeypatch, fits=0)
    with pytest.raises(DeblurError, match="out of memory on the CPU; use smaller tiles"):
        d.restore(_image(64, 64))


# -- the scan kernels on CUDA ----------------------------------------------------------------------------


def _scan_with_grads(fn: Any, inputs: dict[str, Any], device: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    t = {k: (v.clone().to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y, last = fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], True, True)
    g = torch.Generator().manual_seed(5)
    wy = torch.randn(y.shape, generator=g).to(device, y.dtype)
    wl = torch.randn(last.shape, generator=g).to(device, last.dtype)
    ((y * wy).float().sum() + (last * wl).float().sum()).backward()
    return y.detach().cpu(), last.detach().cpu(), {k: v.grad.cpu() for k, v in t.items() if v is not None}


@gpu
@pytest.mark.parametrize("shape", [(2, 6, 8, 1000, 2), (1, 5, 16, 4099, None), (3, 4, 64, 257, 1)], ids=str)
def test_triton_on_cuda_matches_reference_forward_and_backward(shape: tuple) -> None:
    from deblurcli.ssm.triton_scan import selective_scan_triton

    inputs = make_inputs(*shape)
    y, last, grads = _scan_with_grads(selective_scan_triton, inputs, "cuda")
    y_ref, last_ref, grads_ref = _scan_with_grads(selective_scan_reference, inputs, "cpu")
    assert_close(y, y_ref, torch.float32)
    assert_close(last, last_ref, torch.float32)
    for key, want in grads_ref.items():
        assert_close(grads[key], want, torch.float32)


@gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_bf16_scan_on_cuda(backend: str) -> None:
    if backend not in ssm.available_backends():
        pytest.skip(f"scan backend {backend} is not available here")
    inputs = {k: (v.to(torch.bfloat16) if v is not None and v.dim() == 3 else v)
              for k, v in make_inputs(2, 8, 16, 777, None).items()}
    cuda_in = {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}
    y, last = ssm.selective_scan(*(cuda_in[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                                 delta_softplus=True, return_last_state=True, backend=backend)
    y_ref, last_ref = selective_scan_reference(*(inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z",
                                                                      "delta_bias")), delta_softplus=True,
                                               return_last_state=True)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    torch.testing.assert_close(y.cpu().float(), y_ref.float(), atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(last.cpu(), last_ref, atol=2e-3, rtol=2e-3)


@gpu
def test_mamba_kernel_last_state_gradient_on_cuda() -> None:
    if "cuda" not in ssm.available_backends():
        pytest.skip(f"mamba-ssm's kernel is not available: {ssm.cuda.probe()}")
    inputs = make_inputs(2, 4, 16, 300, None)
    y, last, grads = _scan_with_grads(ssm.cuda.selective_scan_cuda, inputs, "cuda")
    y_ref, last_ref, grads_ref = _scan_with_grads(selective_scan_reference, inputs, "cpu")
    for key, want in grads_ref.items():
        torch.testing.assert_close(grads[key], want, atol=1e-3 * max(1.0, want.abs().max().item()), rtol=1e-3)


@gpu
def test_auto_scan_choice_on_cuda() -> None:
    """mamba-ssm's kernel when its test call passes, else Triton; float64 never goes to mamba-ssm."""
    from deblurcli.ssm import cuda as cuda_adapter
    from deblurcli.ssm import triton_scan

    want = "cuda" if cuda_adapter.available() else "triton" if triton_scan.available() else "torch"
    assert ssm.resolve_backend("auto", torch.zeros(1, 1, 1, device="cuda")) == want
    assert ssm.resolve_backend("auto", torch.zeros(1, 1, 1, device="cuda", dtype=torch.float64)) != "cuda"


# -- the model on CUDA -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_result(tiny_model: Path) -> tuple[np.ndarray, np.ndarray]:
    img = _image(96, 128, seed=3)
    return img, Deblurrer(tiny_model, device="cpu", tile=0, progress=False).restore(img)


@gpu
@pytest.mark.parametrize("precision,tol", [("fp32", 5e-3), ("fp16", 2e-2), ("bf16", 4e-2)])
def test_model_on_cuda_matches_cpu(tiny_model: Path, cpu_result: tuple, precision: str, tol: float) -> None:
    img, want = cpu_result
    d = Deblurrer(tiny_model, device="cuda", precision=precision, tile=0, progress=False)
    assert d.describe()["scan_backend"] == ssm.resolve_backend("auto", torch.zeros(1, device="cuda"))
    got = d.restore(img)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() < tol


@gpu
def test_non_finite_half_tile_is_recomputed_in_fp32(tiny_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                     cpu_result: tuple) -> None:
    img, want = cpu_result
    notes: list[str] = []
    d = Deblurrer(tiny_model, device="cuda", precision="fp16", tile=0, progress=False, on_note=notes.append)
    real = d._forward
    precisions: list[str] = []

    def overflowing(x: torch.Tensor, precision: str) -> torch.Tensor:
        precisions.append(precision)
        y = real(x, precision)
        return y if precision == "fp32" else y * float("inf")  # as an fp16 overflow leaves it

    monkeypatch.setattr(d, "_forward", overflowing)
    got = d.restore(img)
    assert precisions == ["fp16", "fp32"]
    assert any("recomputed it in fp32" in n for n in notes)
    assert np.abs(got - want).max() < 5e-3  # cuDNN may run fp32 convolutions in TF32


@gpu
def test_out_of_memory_retry_with_smaller_tiles(tiny_model: Path) -> None:
    """A real CUDA out-of-memory: the process is capped so a 4096 px image cannot run whole."""
    torch.cuda.empty_cache()
    notes: list[str] = []
    d = Deblurrer(tiny_model, device="cuda", precision="fp32", tile=0, progress=False, on_note=notes.append)
    total = torch.cuda.get_device_properties(d.device).total_memory
    cap = torch.cuda.memory_reserved(d.device) + (512 << 20)
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), d.device)
    try:
        out = d.restore(_image(4096, 4096))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, d.device)
    assert np.isfinite(out).all()
    assert any("GPU out of memory" in n and "retrying with" in n for n in notes), notes


@gpu
def test_auto_tile_follows_free_gpu_memory(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Deblurrer(tiny_model, device="cuda", precision="fp32", tile="auto", progress=False)
    free, total = torch.cuda.mem_get_info(d.device)
    big = d.tile_for(20000, 20000)
    assert big > 0 and big % d.spec.pad_multiple == 0
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free // 64, total))
    small = d.tile_for(20000, 20000)
    assert 0 < small < big
    assert d.tile_for(64, 64) == 0  # a small image runs whole
    monkeypatch.undo()
    out = d.restore(_image(300, 400))
    assert out.shape == (300, 400, 3) and np.isfinite(out).all()
