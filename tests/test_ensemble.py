"""``--ensemble N``: the model averaged over mirrored/transposed copies of each tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deblurcli import api
from deblurcli.errors import OptionError


def _dihedral_copies(x: np.ndarray, n: int) -> list[tuple[np.ndarray, object]]:
    """(copy, undo) pairs written out independently of the library's own helper."""
    ops = [(lambda a: a, lambda a: a),
           (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
           (lambda a: a[::-1], lambda a: a[::-1]),
           (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
           (lambda a: a.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)),
           (lambda a: a[:, ::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[:, ::-1]),
           (lambda a: a[::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[::-1]),
           (lambda a: a[::-1, ::-1].transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)[::-1, ::-1])]
    return [(np.ascontiguousarray(f(x)), g) for f, g in ops[:n]]


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ensemble_is_the_mean_of_the_model_on_mirrored_copies(tiny_model: Path, n: int) -> None:
    x = np.random.default_rng(n).random((48, 80, 3), dtype=np.float32)
    one = api.Deblurrer(tiny_model, device="cpu", tile=0, progress=False)
    many = api.Deblurrer(tiny_model, device="cpu", tile=0, ensemble=n, progress=False)
    # unclipped model outputs, as the ensemble averages them
    raw = [undo(one._tiled(c, None)) for c, undo in _dihedral_copies(x, n)]  # type: ignore[operator]
    expected = np.clip(np.mean(raw, axis=0), 0, 1)
    np.testing.assert_allclose(many.restore(x), expected, atol=1e-5)
    assert not np.allclose(many.restore(x), one.restore(x), atol=1e-4)  # the copies do differ


def test_ensemble_composes_with_tiles(tiny_model: Path) -> None:
    x = np.random.default_rng(0).random((100, 140, 3), dtype=np.float32)
    whole = api.Deblurrer(tiny_model, device="cpu", tile=0, ensemble=2, progress=False).restore(x)
    tiled = api.Deblurrer(tiny_model, device="cpu", tile=64, tile_overlap=16, ensemble=2, progress=False).restore(x)
    assert whole.shape == tiled.shape == x.shape
    assert float(np.mean((whole - tiled) ** 2)) < 1e-3  # a tiny random model: tiles agree roughly


def test_ensemble_accepts_only_whole_dihedral_sets(tiny_model: Path) -> None:
    for bad in (0, 3, 16):
        with pytest.raises(OptionError, match="^ensemble="):
            api.Deblurrer(tiny_model, ensemble=bad, progress=False)
