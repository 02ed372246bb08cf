"""Test-wide settings: one thread, no spinning OpenMP pool, and a Hugging Face client that can
only ever reach the local stand-in Hub (huggingface_hub reads these variables at import)."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # a stray request fails at once, locally
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="deblur-test-hf-")
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="deblur-test-cfg-")  # not the developer's config
for _var in ("HF_HUB_OFFLINE", "DEBLUR_OFFLINE", "DEBLUR_HUB_ORG", "DEBLUR_CONFIG", "HF_TOKEN", "HF_HUB_CACHE"):
    os.environ.pop(_var, None)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
if not torch.cuda.is_available():
    # Triton reads this when first imported: without a GPU its interpreter runs our kernel on CPU
    # tensors, so the GPU scan is tested in CPU-only CI (tests/test_scan.py).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_ALGNET = {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1],
               "d_state": 4}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random ALGNet in our format: fast enough for CLI tests, real in every code path."""
    from deblurcli.models import create
    from deblurcli.weights import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(create("algnet", TINY_ALGNET, "plain"), path, arch="algnet", config=TINY_ALGNET, variant="plain")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need CUDA: run them where torch sees a GPU, skip them with why elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (on a GPU machine `pytest -m gpu` runs every CUDA test)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
