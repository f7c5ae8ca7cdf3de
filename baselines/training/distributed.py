"""Distributed data-parallel plumbing for ``bench train`` under ``torchrun`` (DDP, one process per device).

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`setup` reads them and initialises the default process group — backend ``nccl`` on CUDA
(device ``cuda:LOCAL_RANK``), ``gloo`` on CPU. Without those variables (or with ``WORLD_SIZE=1``) nothing is
initialised and the trainer runs exactly as a single process.

The helpers below are no-ops (or identities) in a single process, so the trainer calls them unconditionally.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

#: how long a rank waits at a collective (e.g. while rank 0 validates or writes a checkpoint) before failing;
#: override with BENCH_DDP_TIMEOUT_MIN
DEFAULT_TIMEOUT_MIN = 60


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: this process initialised the process group (and destroys it in :func:`cleanup`)
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def env_info() -> DistInfo:
    """Rank / world size / local rank from an initialised process group, else from the torchrun variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", dist.get_rank()))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    return DistInfo(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0))


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on CUDA in a distributed job, else ``device``."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Initialise the default process group when the torchrun variables say so; returns (info, this rank's
    device). A process group the caller already initialised is used as it is."""
    info = env_info()
    if not info.enabled:
        return SINGLE, device
    device = rank_device(device, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return info, device
    timeout = datetime.timedelta(minutes=_env_int("BENCH_DDP_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN))
    kwargs: dict[str, Any] = {"backend": backend_for(device), "timeout": timeout}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    log.info("DDP: rank %d of %d (local rank %d), backend %s, device %s", info.rank, info.world_size,
             info.local_rank, kwargs["backend"], device)
    return DistInfo(info.rank, info.world_size, info.local_rank, owns_group=True), device


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def all_gather_object(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(info: DistInfo, values: dict[str, float]) -> dict[str, float]:
    """Mean of each scalar over the ranks (keys missing on a rank are averaged over the ranks that have them)."""
    if not info.enabled:
        return dict(values)
    gathered = all_gather_object(info, dict(values))
    keys = list(dict.fromkeys(k for d in gathered for k in d))
    return {k: sum(d[k] for d in gathered if k in d) / sum(1 for d in gathered if k in d) for k in keys}


def shard_size(batch_size: int, info: DistInfo) -> int:
    """Per-rank batch of a global ``batch_size`` (which must divide evenly)."""
    if batch_size % info.world_size:
        raise ValueError(f"batch_size {batch_size} (the global batch) is not divisible by the {info.world_size} "
                         f"processes; use a multiple of {info.world_size}")
    return batch_size // info.world_size
