"""Data-parallel training with torch.distributed (DDP): one process per GPU, or gloo processes on CPU.

`train.nproc: N` makes the train stage start itself N times under torchrun; a stage started by
torchrun directly (`torchrun --nproc_per_node N -m bigmodel_core.cli stage train`) works the same.
Every rank sees each global batch and takes rows rank::world of it; gradients are averaged by DDP.
Only rank 0 logs, checkpoints and writes outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> DistInfo:
        """Set by torchrun (RANK, WORLD_SIZE, LOCAL_RANK); a plain process is rank 0 of 1."""
        return cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )


def init(info: DistInfo, device_type: str) -> None:
    import torch.distributed as dist

    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    # rank 0 may spend a while encoding the data before the first collective: be patient
    dist.init_process_group(backend=backend, timeout=timedelta(hours=2))


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run` (torchrun) on this machine, starting `python -m <args>` per rank."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", *args]


def launch(nproc: int, args: list[str], cwd: str | None = None) -> int:
    """Run the command under torchrun and wait; the ranks' output goes straight to ours."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env["PYTHONUNBUFFERED"] = "1"
    env["BIGMODEL_RANK_OF_STAGE"] = "1"
    return subprocess.call(torchrun_command(nproc, args), cwd=cwd, env=env)
