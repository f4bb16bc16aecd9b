"""Feature extraction: eval mode, L2-normalised rows (docs/method.md "Phase 1: intra-camera training",
step 1; docs/method.md "Phase 2: inter-camera training", step 1).

On CUDA: bf16 autocast, channels_last, pinned host memory. On CPU: fp32 and deterministic.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from calr_core.data.images import ImageDataset
from calr_core.data.transforms import test_transform
from calr_core.device import resolve_device
from calr_core.progress import progress as show_progress

log = logging.getLogger(__name__)


@torch.inference_mode()
def embed(model: nn.Module, images: torch.Tensor, *, amp: bool = False) -> torch.Tensor:
    """Features of one batch (B, 3, H, W) already on the model's device -> (B, D) float32, unit norm."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        feats = model(images)  # (B, D)
    return F.normalize(feats.float(), dim=1)  # (B, D), renormalised in fp32 after bf16


def extract_features(model: nn.Module, root: Path, paths: Sequence[str], *, height: int = 256,
                     width: int = 128, batch_size: int = 128, workers: int = 2,
                     device: Literal["auto", "cpu", "cuda"] = "auto", amp: bool | None = None,
                     progress: bool = True) -> np.ndarray:
    """(N, D) float32 L2-normalised features of ``root / paths[i]``, row i for ``paths[i]``.

    The model runs in eval mode under inference mode and is left on ``device`` (channels_last on
    CUDA) with its previous train/eval mode restored. ``amp=None`` means bf16 autocast on CUDA only.
    """
    dev = resolve_device(device)
    amp = dev.type == "cuda" if amp is None else amp
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
    dataset = ImageDataset(Path(root), paths, test_transform(height, width))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda")
    fmt = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        with show_progress("extract", len(dataset), unit="img", enabled=progress) as bar:
            for images, index in loader:
                images = images.to(dev, non_blocking=True, memory_format=fmt)  # (B, 3, H, W)
                feats = embed(model, images, amp=amp).cpu().numpy()  # (B, D)
                if out is None:
                    out = np.empty((len(dataset), feats.shape[1]), dtype=np.float32)  # (N, D)
                out[index.numpy()] = feats
                bar.advance(len(index))
    finally:
        model.train(was_training)
    if out is None:  # no paths
        out = np.empty((0, getattr(model, "feat_dim", 0)), dtype=np.float32)
    log.info("extracted %d x %d features on %s (amp=%s)", *out.shape, dev, amp)
    return out
