"""Multi-GPU training under ``torchrun`` (one process per GPU; gloo on CPU, nccl on CUDA).

No DistributedDataParallel wrapper: each rank forwards its own share of the batch (its own
BatchNorm statistics, as the reference's 4 GPUs x 64 images), gradients are averaged with one
all-reduce per step, BatchNorm running statistics follow rank 0 (as DataParallel did), and the
cluster memory is updated with the features of all ranks. This also lets a rank forward its
share in several BatchNorm groups (``bn_group``), which a DDP wrapper does not allow.
Every helper is a no-op when ``torch.distributed`` is not initialised.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group described by torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK).

    Returns (rank, world_size, device). Without those variables: (0, 1, resolved device).
    """
    from calr_core.device import resolve_device

    dev = resolve_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, dev
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not is_dist():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    log.info("rank %d/%d on %s", rank(), world_size(), dev)
    return rank(), world_size(), dev


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor; ``t`` itself when not distributed)."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shaped ``t`` (B, ...) of all ranks along dim 0, in rank order."""
    if not is_dist():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)  # (world * B, ...)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks with one flat all-reduce (params without a grad are skipped).

    Every rank must have the same set of params with grads (true here: same code path).
    """
    if not is_dist():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_state(module: nn.Module, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (unless ``buffers_only``) and buffers to every rank."""
    if not is_dist():
        return
    tensors = list(module.buffers()) if buffers_only else list(module.state_dict().values())
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t, src=0)
