"""Multi-process training under ``torchrun``: who am I, and which device and backend do I use.

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and the rendezvous address) for each
process; a plain ``deblur train`` has none of them and runs as a world of one, with no process
group at all, so single-process runs pay nothing for this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone logs, validates, checkpoints and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer (set by torchrun?)") from None


def detect_world() -> World:
    return World(_env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))


def pick_device(setting: str, world: World) -> torch.device:
    """``auto`` means this rank's GPU if there is one, else the CPU."""
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"device {setting!r} asked for but CUDA is not available; use {{device}}=cpu",
                         names=("device",))
    if setting.startswith("cuda:"):
        index = int(setting.split(":", 1)[1])
    else:
        index = world.local_rank if world.distributed else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UsageError(f"device cuda:{index} does not exist (this machine has {torch.cuda.device_count()} GPU(s))")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_process_group(world: World, device: torch.device) -> None:
    """NCCL between GPUs, gloo between CPU processes; the rendezvous comes from torchrun's env."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()

