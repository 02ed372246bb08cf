"""The compiled numba scan is cached across runs even where the package folder is read-only.

Compiling the scan takes tens of seconds; a system install or a container's site-packages is
often read-only, and then every run compiled again. This runs the real package from a read-only
copy (a read-only bind mount as root, else a folder without write permission) in two fresh
processes: the first must say it is compiling and leave the kernel in the user cache folder, the
second must load it from there and say nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

SCRIPT = """
import sys, torch
from deblurcli import ssm
ssm.set_notice(lambda m: print("NOTICE", m, file=sys.stderr))
import deblurcli.ssm.numba_scan as ns
assert ns.__file__.startswith(sys.argv[1]), ns.__file__
print("CACHE_DIR", ns.CACHE_DIR, file=sys.stderr)
g = torch.Generator().manual_seed(0)
u, dt = torch.randn(1, 4, 16, generator=g), torch.rand(1, 4, 16, generator=g)
A, B, C = -torch.rand(4, 2, generator=g), torch.randn(1, 2, 16, generator=g), torch.randn(1, 2, 16, generator=g)
y = ssm.selective_scan(u, dt, A, B, C, backend="numba")
ref = ssm.selective_scan(u, dt, A, B, C, backend="reference")
assert torch.allclose(y, ref, atol=1e-5)
print("HITS", ns._forward_kernel.stats.cache_hits and sum(ns._forward_kernel.stats.cache_hits.values()),
      file=sys.stderr)
"""


def _read_only_copy(tmp_path: Path) -> Path:
    src = Path(__import__("deblurcli").__file__).parent
    site = tmp_path / "site"
    shutil.copytree(src, site / "deblurcli", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    if os.geteuid() == 0:  # root writes through permission bits: only a read-only mount stops it
        ro = tmp_path / "ro-site"
        ro.mkdir()
        p = subprocess.run(["mount", "--bind", str(site), str(ro)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"needs a read-only folder; as root that takes a bind mount, refused: {p.stderr.strip()}")
        p = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True, text=True)
        if p.returncode != 0:
            subprocess.run(["umount", str(ro)], capture_output=True)
            pytest.skip(f"needs a read-only folder; remounting read-only was refused: {p.stderr.strip()}")
        return ro
    for root, dirs, files in os.walk(site):
        for name in dirs + files:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(site, 0o555)
    return site


def test_scan_cached_in_user_folder_when_package_is_read_only(tmp_path: Path) -> None:
    site = _read_only_copy(tmp_path)
    try:
        assert not os.access(site / "deblurcli" / "ssm", os.W_OK) or os.geteuid() == 0
        cache_home = tmp_path / "cache"
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
        env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(cache_home), OMP_NUM_THREADS="1",
                   NUMBA_NUM_THREADS="1")

        def run() -> str:
            p = subprocess.run([sys.executable, "-c", SCRIPT, str(site)], capture_output=True, text=True,
                               env=env, cwd=tmp_path, timeout=600)
            assert p.returncode == 0, p.stderr
            return p.stderr

        first = run()
        assert f"CACHE_DIR {cache_home / 'deblurcli' / 'numba'}" in first
        assert "NOTICE compiling the selective-scan kernel" in first and "once" in first
        assert list((cache_home / "deblurcli" / "numba").rglob("*.nbi")), "nothing cached"
        assert not list(site.rglob("*.nbi"))
        second = run()
        assert "NOTICE" not in second, second
        assert "HITS 0" not in second and "HITS None" not in second, second  # loaded from the cache
    finally:
        if os.geteuid() == 0 and site.name == "ro-site":
            subprocess.run(["umount", str(site)], capture_output=True)
        else:
            for root, dirs, _files in os.walk(site):
                for name in dirs:
                    os.chmod(Path(root) / name, 0o755)
            os.chmod(site, 0o755)
