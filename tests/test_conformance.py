"""Our models and scan against outputs of the authors' own code (seeded weights).

Every case folder is built from its ``case.json`` alone and loaded through the public checkpoint
reader, the same path a user's downloaded checkpoint takes. ``DEBLUR_CONFORMANCE_DIR`` points
the same test at any other folder of cases in this format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deblurcli.models import get_arch
from deblurcli.ssm import available_backends, selective_scan
from deblurcli.weights import ModelSpec, build_model, read_checkpoint

ROOT = Path(os.environ.get("DEBLUR_CONFORMANCE_DIR") or Path(__file__).parent / "fixtures" / "conformance")
MODEL_CASES = sorted(p.name for p in ROOT.iterdir() if (p / "case.json").is_file()) if ROOT.is_dir() else []
SCAN_CASES = (
    sorted(json.loads((ROOT / "scan" / "cases.json").read_text())) if (ROOT / "scan" / "cases.json").is_file() else []
)
SETTINGS_KEYS = ("local_pool", "scan_window")


def _outputs(result: object) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [r for r in result if isinstance(r, torch.Tensor)]  # type: ignore[union-attr]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_case(case: str) -> None:
    folder = ROOT / case
    spec_json = json.loads((folder / "case.json").read_text())
    arch = spec_json["arch"]
    mod = get_arch(arch)
    variant = spec_json.get("variant") or mod.default_variant
    settings = {k: spec_json[k] for k in SETTINGS_KEYS if k in spec_json}
    spec = ModelSpec(arch=arch, config=spec_json["kwargs"], variant=variant, settings=settings)
    sd, _ = read_checkpoint(folder / "weights.safetensors")
    # the loader must also recognise the checkpoint on its own
    assert mod.detect(sd)
    inferred = mod.infer_config(sd)
    for key, value in spec_json["kwargs"].items():
        assert _norm(inferred.get(key)) == _norm(value), f"inferred {key}={inferred.get(key)!r}, case says {value!r}"
    model = build_model(spec, sd, source=case)
    if "n_params" in spec_json:
        assert sum(p.numel() for p in model.parameters()) == spec_json["n_params"]
    io = load_file(str(folder / "io.safetensors"))
    with torch.no_grad():
        outs = _outputs(model(io["input"]))
    names = spec_json["outputs"]
    assert len(outs) >= len(names)
    tol = spec_json.get("tolerance", {"atol": 1e-3, "rtol": 1e-3})
    for name, ours in zip(names, outs, strict=False):
        want = io[name]
        if ours.shape != want.shape:
            assert ours.shape[:2] == want.shape[:2] and all(a >= b for a, b in zip(ours.shape, want.shape, strict=True))
            ours = ours[..., : want.shape[-2], : want.shape[-1]]
        err = (ours - want).abs().max().item()
        assert torch.allclose(ours, want, atol=tol["atol"], rtol=tol["rtol"]), f"{name}: max abs error {err:.3g}"


def _norm(v: object) -> object:
    return list(v) if isinstance(v, (list, tuple)) else v


# triton runs these fixtures in tests/test_scan.py, where its interpreter is made fast enough.
@pytest.mark.parametrize("backend", [b for b in ("reference", "torch", "numba", "cuda") if b in available_backends()])
@pytest.mark.parametrize("case", SCAN_CASES)
def test_scan_case(case: str, backend: str) -> None:
    t = load_file(str(ROOT / "scan" / f"{case}.safetensors"), device="cuda" if backend == "cuda" else "cpu")
    info = json.loads((ROOT / "scan" / "cases.json").read_text())[case]
    y, last = selective_scan(
        t["u"], t["delta"], t["A"], t["B"], t["C"], t.get("D"), z=t.get("z"), delta_bias=t.get("delta_bias"),
        delta_softplus=info.get("delta_softplus", True), return_last_state=True, backend=backend,
    )
    torch.testing.assert_close(y.to(t["y"]), t["y"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last.to(t["last_state"]), t["last_state"], atol=1e-4, rtol=1e-4)
