"""One training round (docs/method.md "Phase 2: inter-camera training", steps 8-10; the same function runs
docs/method.md "Phase 1: intra-camera training", step 4).

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

from calr_core.data.images import DecodedImages
from calr_core.data.sampler import CameraPKSampler
from calr_core.data.transforms import augment
from calr_core.device import Compute, compute_mode, resolve_device
from calr_core.model.camera import CameraClassifier, camera_loss
from calr_core.progress import progress as show_progress
from calr_core.train import distributed as du
from calr_core.train.memory import ClusterMemory
from calr_core.train.recovery import (
    fingerprint,
    load_recovery,
    rng_states,
    save_recovery,
    set_rng_states,
)
from calr_core.train.seeding import augmentation_seed, step_seed
from calr_core.train.settings import RoundData, RoundSettings, as_arrays

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


class _Round:
    """The objects one round trains and saves: the model, the cluster memory, the camera head,
    Adam and StepLR (restored from the previous round), and the running loss and curve."""

    def __init__(self, model: nn.Module, paths: list[str], labels: torch.Tensor, camids: torch.Tensor,
                 feats0: torch.Tensor, cw: torch.Tensor | None, s: RoundSettings, dev: torch.device,
                 resume_state: dict[str, Any] | None, mode: Compute):
        self.model, self.s, self.dev = model, s, dev
        self.memory = ClusterMemory(feats0.to(dev), labels.to(dev), temp=s.temp, momentum=s.momentum,
                                    mode=s.memory_mode)
        self.head = None
        if s.n_cams is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s.seed)
                self.head = CameraClassifier(model.feat_dim, s.n_cams).to(dev)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.params += [] if self.head is None else list(self.head.parameters())
        self.params += list(self.memory.parameters())  # the classifier of memory_mode="learned"; none otherwise
        self.optimizer = torch.optim.Adam(self.params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=s.step_size, gamma=s.gamma)
        if resume_state is not None:
            if self.head is not None and resume_state.get("camera_head") is not None:
                self.head.load_state_dict(resume_state["camera_head"])
            try:
                self.optimizer.load_state_dict(resume_state["optimizer"])
            except ValueError as exc:
                raise ValueError(f"resume_state: its optimizer does not fit this model/camera head ({exc})") from None
            self.scheduler.load_state_dict(resume_state["scheduler"])
            follow_settings(self.optimizer, self.scheduler, lr=s.lr, weight_decay=s.weight_decay,
                            step_size=s.step_size, gamma=s.gamma)
        self.recorded = s.recorded(du.world_size(), mode.name)
        # what a recovery file must have been written by: same inputs, settings and start
        self.fp = fingerprint({"paths": list(paths), "labels": labels, "camids": camids,
                               "init_features": feats0, "class_weights": cw,
                               "scheduler_epoch": np.asarray(self.scheduler.last_epoch)}, self.recorded)
        self.loss_sum, self.curve = 0.0, []

    def state(self, done: int) -> dict[str, Any]:
        """The checkpoint dict after ``done`` iterations."""
        return _to_cpu({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "memory": self.memory.state_dict(),
                        "camera_head": None if self.head is None else self.head.state_dict(),
                        "epoch": self.s.epoch, "iters_done": done, "loss_sum": self.loss_sum,
                        "rng": rng_states(), "fingerprint": self.fp,
                        "sampler": {"seed": self.s.seed, "epoch": self.s.epoch, "iters": self.s.iters,
                                    "start_iter": done},  # CameraPKSampler.state_dict at ``done``
                        "params": self.recorded})

    def restore(self, rec: dict[str, Any]) -> int:
        """Continue a killed round from its recovery checkpoint; returns the iterations done."""
        self.model.load_state_dict(rec["model"])
        self.optimizer.load_state_dict(rec["optimizer"])
        self.scheduler.load_state_dict(rec["scheduler"])
        self.memory.load_state_dict(rec["memory"])
        if self.head is not None:
            self.head.load_state_dict(rec["camera_head"])
        set_rng_states(rec["rng"])
        self.loss_sum, self.curve = rec["loss_sum"], rec.get("history", [])
        return rec["iters_done"]

    def run(self, images: DecodedImages, start: int, labels: torch.Tensor, camids: torch.Tensor,
            cw: torch.Tensor | None, *, mode: Compute, recovery_path: str | Path | None,
            progress: bool) -> None:
        """Iterations ``start .. iters - 1``: sample a camera-aware P x K batch, augment it,
        forward, memory loss (+ camera loss), Adam step, memory update (``train_step``); log
        the curve, save recovery."""
        s, dev = self.s, self.dev
        rank, world = du.rank(), du.world_size()
        local_bs = s.batch_size // world
        sampler = CameraPKSampler(labels.numpy(), camids.numpy(), num_instances=s.num_instances,
                                  batch_size=s.batch_size, iters=s.iters, seed=s.seed, epoch=s.epoch,
                                  rank=rank, world_size=world, start_iter=start)
        with show_progress(f"train round {s.epoch}", s.iters, start=start,
                           enabled=progress and rank == 0, loss=float("nan")) as bar:
            tick = time.perf_counter()
            for it, (pixels, idx) in zip(range(start, s.iters), images.batches(sampler)):
                imgs = augment(pixels.to(dev, non_blocking=True), augmentation_seed(s.seed, s.epoch, it),
                               offset=rank * local_bs, global_size=s.batch_size)  # (b, 3, H, W)
                imgs = imgs.contiguous(memory_format=mode.memory_format)
                torch.manual_seed(step_seed(s.seed, s.epoch, it, -1 - rank))  # any other in-model randomness
                targets, cams = labels[idx].to(dev), camids[idx].to(dev)  # (b,), (b,)
                seeds = None
                if s.camera_alignment:  # dropout seeded per BatchNorm group of the global batch
                    groups = local_bs // s.bn_group if s.bn_group else 1
                    seeds = [step_seed(s.seed, s.epoch, it, rank * groups + j) for j in range(groups)]
                loss = train_step(self.model, self.memory, self.optimizer, self.params, imgs, targets,
                                  class_weights=cw, head=self.head if s.camera_alignment else None,
                                  cams=cams, camera_weight=s.camera_weight,
                                  camera_loss_form=s.camera_loss_form, bn_group=s.bn_group,
                                  head_seeds=seeds, amp=mode.bf16)
                total, mem, cam = (v / world for v in du.all_reduce_sum(loss).tolist())
                self.loss_sum += total
                now = time.perf_counter()
                self.curve.append({"iter": it, "loss": total, "memory_loss": mem, "camera_loss": cam,
                                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": now - tick})
                tick = now
                bar.advance(1, loss=self.loss_sum / (it + 1))
                done = it + 1
                if recovery_path is not None and done % s.save_every == 0 and done < s.iters and rank == 0:
                    save_recovery(recovery_path, {**self.state(done), "history": self.curve})


def train_round(model: nn.Module, data: RoundData, settings: RoundSettings, *,
                resume_state: dict[str, Any] | None = None, recovery_path: str | Path | None = None,
                progress: bool = True, history: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """Train ``model`` in place for one round; return the round's checkpoint dict.

    resume_state: the previous round's checkpoint (optimizer, scheduler, camera_head; the caller
    loads the model weights). recovery_path: where a killed round's progress is kept every
    ``settings.save_every`` iterations, and found again. The returned dict holds model,
    optimizer, scheduler (stepped), camera_head, memory, epoch, iters_done, rng, params, loss:
    save it with ``calr_core.io.checkpoint.save_checkpoint``. history: a list that receives the
    training curve, one row per iteration (iter, loss, memory_loss, camera_loss, lr, seconds),
    the rows before a resume included; it stays out of the checkpoint (wall-clock seconds).
    """
    s = settings
    dev = resolve_device(s.device)
    mode = compute_mode(dev, s.cpu_mode, getattr(model, "arch", None))
    labels, camids, feats0, cw = as_arrays(data, getattr(model, "feat_dim", None))
    s.check(data, du.world_size())
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev, memory_format=mode.memory_format)
    cw = None if cw is None else cw.to(dev)
    r = _Round(model, data.paths, labels, camids, feats0, cw, s, dev, resume_state, mode)
    round_seed = step_seed(s.seed, s.epoch, 2**40)  # python's and numpy's global RNGs, which the
    random.seed(round_seed)                           # checkpoint records: same run, same bytes
    np.random.seed(round_seed % 2**32)
    rec = load_recovery(recovery_path, r.fp)
    start = 0 if rec is None else r.restore(rec)
    images = DecodedImages(data.root, data.paths, s.height, s.width, cache_mb=s.cache_mb,
                           workers=s.workers, progress=progress and du.rank() == 0)
    r.run(images, start, labels, camids, cw, mode=mode, recovery_path=recovery_path,
          progress=progress)  # the paper's steps, iters times

    du.broadcast_state(model, buffers_only=True)  # BatchNorm running statistics follow rank 0
    if r.head is not None:
        du.broadcast_state(r.head, buffers_only=True)
    r.scheduler.step()  # StepLR: once per round
    state = r.state(s.iters)
    state["loss"] = r.loss_sum / max(s.iters, 1)
    if history is not None:
        history.extend(r.curve)
    du.barrier()
    if recovery_path is not None and du.rank() == 0:
        Path(recovery_path).unlink(missing_ok=True)
    log.info("round %d: %d iterations, mean loss %.4f, lr now %.2e", s.epoch, s.iters, state["loss"],
             r.optimizer.param_groups[0]["lr"])
    return state
