"""Feature extraction: eval mode, L2-normalised rows (docs/method.md "Phase 1: intra-camera training",
step 1; docs/method.md "Phase 2: inter-camera training", step 1).

On CUDA: bf16 autocast and channels_last; on a CPU the arch's CPU mode (calr_core.device).
Deterministic on one machine.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calr_core.data.images import DecodedImages
from calr_core.data.transforms import normalise
from calr_core.device import CpuMode, compute_mode, resolve_device
from calr_core.progress import progress as show_progress

log = logging.getLogger(__name__)


@torch.inference_mode()
def embed(model: nn.Module, images: torch.Tensor, *, amp: bool = False) -> torch.Tensor:
    """Features of one batch (B, 3, H, W) already on the model's device -> (B, D) float32, unit norm."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        feats = model(images)  # (B, D)
    return F.normalize(feats.float(), dim=1)  # (B, D), renormalised in fp32 after bf16


def extract_features(model: nn.Module, root: Path, paths: Sequence[str], *, height: int = 256,
                     width: int = 128, batch_size: int = 128, workers: int = 2, cache_mb: float,
                     device: Literal["auto", "cpu", "cuda"] = "auto", cpu_mode: CpuMode = "auto",
                     progress: bool = True) -> np.ndarray:
    """(N, D) float32 L2-normalised features of ``root / paths[i]``, row i for ``paths[i]``.

    The images are decoded once (kept in memory within ``cache_mb``, calr_core.data.images).
    The model runs in eval mode under inference mode in its compute mode (calr_core.device:
    bf16 and channels_last on CUDA, ``cpu_mode`` on a CPU) and is left on ``device`` with its
    previous train/eval mode restored.
    """
    dev = resolve_device(device)
    mode = compute_mode(dev, cpu_mode, getattr(model, "arch", None))
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
    images = DecodedImages(root, paths, height, width, cache_mb=cache_mb, workers=workers, progress=progress)
    model.to(dev, memory_format=mode.memory_format)
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    n = len(images)
    try:
        with show_progress("extract", n, unit="img", enabled=progress) as bar:
            for pixels, index in images.batches(range(a, min(a + batch_size, n)) for a in range(0, n, batch_size)):
                x = normalise(pixels.to(dev, non_blocking=True)).contiguous(memory_format=mode.memory_format)  # (B, 3, H, W)
                feats = embed(model, x, amp=mode.bf16).cpu().numpy()  # (B, D)
                if out is None:
                    out = np.empty((n, feats.shape[1]), dtype=np.float32)  # (N, D)
                out[index.numpy()] = feats
                bar.advance(len(index))
    finally:
        model.train(was_training)
    if out is None:  # no paths
        out = np.empty((0, getattr(model, "feat_dim", 0)), dtype=np.float32)
    log.info("extracted %d x %d features on %s (%s)", *out.shape, dev, mode.name)
    return out
