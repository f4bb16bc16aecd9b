"""One training round (METHOD.md phase 2 steps 8-10; phase 1 step 4 with the same function).

The cluster memory is built from the round's features and pseudo labels (outliers are not
trained on); the model is trained ``iters`` steps on camera-aware P x K batches with the memory
loss (+ the camera-alignment loss behind gradient reversal in rounds 0-2). Adam and StepLR
carry across rounds through ``resume_state`` (the previous round's checkpoint); the scheduler
steps once per round. A killed round resumes exactly from its recovery checkpoint.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from calr_core.data.images import ImageDataset
from calr_core.data.sampler import CameraPKSampler
from calr_core.data.transforms import train_transform
from calr_core.device import resolve_device
from calr_core.model.camera import CameraClassifier, camera_loss
from calr_core.progress import progress as show_progress
from calr_core.train import distributed as du
from calr_core.train.memory import ClusterMemory, MemoryMode, check_labels
from calr_core.train.recovery import (
    fingerprint,
    load_recovery,
    rng_states,
    save_recovery,
    set_rng_states,
)
from calr_core.train.seeding import SeededBatches, SeededImages, step_seed

log = logging.getLogger(__name__)


def grouped_forward(module: nn.Module, x: torch.Tensor, group: int,
                    seeds: Sequence[int] | None = None) -> torch.Tensor:
    """``module(x)`` with BatchNorm statistics taken over chunks of ``group`` rows (0 = whole batch).

    One GPU with batch 256 and ``group=64`` sees the statistics of the reference's 4 GPUs x 64.
    ``seeds`` (one per chunk) reseed the torch RNG before each chunk (dropout), so a chunk's
    randomness depends on its place in the global batch, not on which process runs it.
    """
    chunks = x.split(group) if group > 0 else (x,)
    outs = []
    for j, chunk in enumerate(chunks):
        if seeds is not None:
            torch.manual_seed(seeds[j])
        outs.append(module(chunk))
    return outs[0] if len(outs) == 1 else torch.cat(outs)  # (B, D)


def train_step(model: nn.Module, memory: ClusterMemory, optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter], imgs: torch.Tensor, targets: torch.Tensor, *,
               class_weights: torch.Tensor | None = None, head: nn.Module | None = None,
               cams: torch.Tensor | None = None, camera_weight: float = 1.0,
               camera_loss_form: Literal["clean", "reference"] = "clean", bn_group: int = 0,
               head_seeds: Sequence[int] | None = None, amp: bool = False) -> torch.Tensor:
    """One optimisation step (phase 2 steps 8-9); returns the detached (3,) losses: total,
    memory, camera (0 without ``head``).

    Memory loss (+ ``camera_weight`` x camera loss when ``head`` is given), gradients averaged
    over ranks, Adam step, then the memory update with this step's features. Only the backbone
    runs under bf16 autocast; the memory logits (f . M^T / 0.05) stay in float32.
    """
    with torch.autocast(imgs.device.type, dtype=torch.bfloat16, enabled=amp):
        feats = grouped_forward(model, imgs, bn_group)  # (b, D)
    feats = feats.float()
    loss = mem = memory(feats, targets, class_weights)
    cam = torch.zeros_like(mem)
    if head is not None:
        logits = grouped_forward(head, feats, bn_group, head_seeds)  # (b, n_cams)
        cam = camera_loss(logits, cams, form=camera_loss_form)
        loss = mem + camera_weight * cam
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    du.average_gradients(params)
    optimizer.step()
    memory.update(feats, targets)
    return torch.stack([loss, mem, cam]).detach()


def follow_settings(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.StepLR, *,
                    lr: float, weight_decay: float, step_size: int, gamma: float) -> None:
    """Make a restored Adam + StepLR follow this round's settings where they differ from the
    restored ones (an explicit --lr or -S train.* override wins over the previous round's state).

    ``lr`` is the schedule's base rate: after s scheduler steps the rate is
    lr * gamma ** (s // step_size). Restored state that matches the settings is left as it is.
    """
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay
    if scheduler.base_lrs == [lr] * len(scheduler.base_lrs) and (scheduler.step_size, scheduler.gamma) == (step_size, gamma):
        return
    now = lr * gamma ** (scheduler.last_epoch // step_size)
    scheduler.base_lrs, scheduler.step_size, scheduler.gamma = [lr] * len(scheduler.base_lrs), step_size, gamma
    for group in optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, now
    scheduler._last_lr = [now] * len(optimizer.param_groups)
    log.info("lr schedule from the settings: base %.2e, step %d, gamma %g: this round %.2e",
             lr, step_size, gamma, now)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train_round(model: nn.Module, *, root: str | Path, paths: Sequence[str], labels, camids,
                init_features, class_weights=None, n_cams: int | None = None,
                camera_alignment: bool = False, camera_weight: float = 1.0,
                camera_loss_form: Literal["clean", "reference"] = "clean", iters: int = 400,
                batch_size: int = 256, num_instances: int = 16, height: int = 256, width: int = 128,
                lr: float = 3.5e-4, weight_decay: float = 5e-4, step_size: int = 20,
                gamma: float = 0.1, temp: float = 0.05, momentum: float = 0.1,
                memory_mode: MemoryMode = "mean", bn_group: int = 0, epoch: int = 0,
                resume_state: dict[str, Any] | None = None, recovery_path: str | Path | None = None,
                save_every: int = 50, seed: int = 1,
                device: Literal["auto", "cpu", "cuda"] = "auto", amp: bool | None = None,
                workers: int = 2, progress: bool = True,
                history: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """Train ``model`` in place for one round; return the round's checkpoint dict.

    labels: (N,) pseudo labels 0..K-1, -1 = outlier; camids: (N,) 0-based; init_features: (N, D)
    features of the model at the start of the round (they seed the memory). class_weights: (K,)
    or None (unweighted). n_cams: build a camera head (kept in the optimiser in every round, so
    its state carries); camera_alignment adds its loss. resume_state: the previous round's
    checkpoint (optimizer, scheduler, camera_head; the caller loads the model weights).
    bn_group: BatchNorm statistics over chunks of this many images (0 = this rank's whole batch).
    The returned dict holds model, optimizer, scheduler (stepped), camera_head, memory, epoch,
    iters_done, rng, params, loss: save it with ``calr_core.io.checkpoint.save_checkpoint``.
    history: a list that receives the training curve, one row per iteration (iter, loss,
    memory_loss, camera_loss, lr, seconds), the rows before a resume included. It stays out of
    the returned checkpoint: its wall-clock seconds differ between identical runs.
    """
    dev = resolve_device(device)
    amp = dev.type == "cuda" if amp is None else amp
    rank, world = du.rank(), du.world_size()
    labels_t, camids_t = torch.as_tensor(np.array(labels)).long(), torch.as_tensor(np.array(camids)).long()
    feats0 = torch.as_tensor(init_features).float().cpu()  # (N, D)
    n = len(paths)
    if labels_t.shape != (n,) or camids_t.shape != (n,):
        raise ValueError(f"labels/camids: expected {n} values (one per path), got {tuple(labels_t.shape)} and {tuple(camids_t.shape)}")
    dim = getattr(model, "feat_dim", feats0.shape[-1])
    if feats0.ndim != 2 or feats0.shape != (n, dim):
        raise ValueError(f"init_features: expected shape ({n}, {dim}) (one model feature per path), got {tuple(feats0.shape)}")
    if not torch.isfinite(feats0).all():
        raise ValueError("init_features: NaN or inf in the features that seed the memory")
    k = check_labels(labels_t, n)
    cw = None if class_weights is None else torch.as_tensor(np.asarray(class_weights)).float()
    if cw is not None and cw.shape != (k,):
        raise ValueError(f"class_weights: expected {k} values (one per cluster), got {tuple(cw.shape)}")
    if camera_alignment and n_cams is None:
        raise ValueError("n_cams: camera_alignment=True needs the number of cameras")
    if batch_size % world:
        raise ValueError(f"batch_size: {batch_size} is not divisible by world_size={world}")
    local_bs = batch_size // world
    if bn_group < 0 or (bn_group and local_bs % bn_group):
        raise ValueError(f"bn_group: {bn_group} must be 0 or divide the per-rank batch {local_bs}")
    if save_every < 1:
        raise ValueError(f"save_every: expected a positive number of iterations, got {save_every}")

    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev, memory_format=fmt)
    memory = ClusterMemory(feats0.to(dev), labels_t.to(dev), temp=temp, momentum=momentum, mode=memory_mode)
    cw = None if cw is None else cw.to(dev)
    head = None
    if n_cams is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = CameraClassifier(model.feat_dim, n_cams).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    params += [] if head is None else list(head.parameters())
    params += list(memory.parameters())  # the classifier of memory_mode="learned"; none otherwise
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=dev.type == "cuda" or None)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if resume_state is not None:
        if head is not None and resume_state.get("camera_head") is not None:
            head.load_state_dict(resume_state["camera_head"])
        try:
            optimizer.load_state_dict(resume_state["optimizer"])
        except ValueError as exc:
            raise ValueError(f"resume_state: its optimizer does not fit this model/camera head ({exc})") from None
        scheduler.load_state_dict(resume_state["scheduler"])
        follow_settings(optimizer, scheduler, lr=lr, weight_decay=weight_decay, step_size=step_size,
                        gamma=gamma)

    settings = dict(n_cams=n_cams, camera_alignment=camera_alignment, camera_weight=camera_weight,
                    camera_loss_form=camera_loss_form, iters=iters, batch_size=batch_size,
                    num_instances=num_instances, height=height, width=width, lr=lr,
                    weight_decay=weight_decay, step_size=step_size, gamma=gamma, temp=temp,
                    momentum=momentum, memory_mode=memory_mode, bn_group=bn_group, epoch=epoch,
                    seed=seed, world_size=world, amp=amp)
    fp = fingerprint({"paths": list(paths), "labels": labels_t, "camids": camids_t,
                      "init_features": feats0, "class_weights": cw,
                      "scheduler_epoch": np.asarray(scheduler.last_epoch)}, settings)
    start, loss_sum, curve = 0, 0.0, []
    round_seed = step_seed(seed, epoch, 2**40)  # python's and numpy's global RNGs, which the
    random.seed(round_seed)                       # checkpoint records: same run, same bytes
    np.random.seed(round_seed % 2**32)
    rec = load_recovery(recovery_path, fp)
    if rec is not None:
        model.load_state_dict(rec["model"])
        optimizer.load_state_dict(rec["optimizer"])
        scheduler.load_state_dict(rec["scheduler"])
        memory.load_state_dict(rec["memory"])
        if head is not None:
            head.load_state_dict(rec["camera_head"])
        set_rng_states(rec["rng"])
        start, loss_sum, curve = rec["iters_done"], rec["loss_sum"], rec.get("history", [])

    sampler = CameraPKSampler(labels_t.numpy(), camids_t.numpy(), num_instances=num_instances,
                              batch_size=batch_size, iters=iters, seed=seed, epoch=epoch,
                              rank=rank, world_size=world, start_iter=start)
    batches = SeededBatches(sampler, seed=seed, epoch=epoch, start_iter=start,
                            global_size=batch_size, offset=rank * local_bs)
    dataset = SeededImages(ImageDataset(Path(root), paths, train_transform(height, width)))
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(seed))

    def checkpoint(done: int) -> dict[str, Any]:
        return _to_cpu({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "memory": memory.state_dict(),
                        "camera_head": None if head is None else head.state_dict(),
                        "epoch": epoch, "iters_done": done, "loss_sum": loss_sum,
                        "rng": rng_states(), "fingerprint": fp, "sampler": {**sampler.state_dict(), "start_iter": done},
                        "params": settings})

    model.train()
    if head is not None:
        head.train()
    with show_progress(f"train round {epoch}", iters, start=start, enabled=progress and rank == 0,
                       loss=float("nan")) as bar:
        tick = time.perf_counter()
        for it, (imgs, idx) in zip(range(start, iters), loader):
            torch.manual_seed(step_seed(seed, epoch, it, -1 - rank))  # any other in-model randomness
            imgs = imgs.to(dev, non_blocking=True, memory_format=fmt)  # (b, 3, H, W)
            targets, cams = labels_t[idx].to(dev), camids_t[idx].to(dev)  # (b,), (b,)
            seeds = None
            if camera_alignment:  # dropout seeded per BatchNorm group of the global batch
                groups = local_bs // bn_group if bn_group else 1
                seeds = [step_seed(seed, epoch, it, rank * groups + j) for j in range(groups)]
            loss = train_step(model, memory, optimizer, params, imgs, targets, class_weights=cw,
                              head=head if camera_alignment else None, cams=cams,
                              camera_weight=camera_weight, camera_loss_form=camera_loss_form,
                              bn_group=bn_group, head_seeds=seeds, amp=amp)
            total, mem, cam = (v / world for v in du.all_reduce_sum(loss).tolist())
            loss_sum += total
            now = time.perf_counter()
            curve.append({"iter": it, "loss": total, "memory_loss": mem, "camera_loss": cam,
                            "lr": optimizer.param_groups[0]["lr"], "seconds": now - tick})
            tick = now
            bar.advance(1, loss=loss_sum / (it + 1))
            done = it + 1
            if recovery_path is not None and done % save_every == 0 and done < iters and rank == 0:
                save_recovery(recovery_path, {**checkpoint(done), "history": curve})

    du.broadcast_state(model, buffers_only=True)  # BatchNorm running statistics follow rank 0
    if head is not None:
        du.broadcast_state(head, buffers_only=True)
    scheduler.step()  # StepLR: once per round
    state = checkpoint(iters)
    state["loss"] = loss_sum / max(iters, 1)
    if history is not None:
        history.extend(curve)
    du.barrier()
    if recovery_path is not None and rank == 0:
        Path(recovery_path).unlink(missing_ok=True)
    log.info("round %d: %d iterations, mean loss %.4f, lr now %.2e", epoch, iters, state["loss"],
             optimizer.param_groups[0]["lr"])
    return state
