"""Test-wide settings: one thread, and no spinning OpenMP pool on a shared machine."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
