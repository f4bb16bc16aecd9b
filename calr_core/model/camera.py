"""Camera alignment: a camera classifier behind gradient reversal
(docs/method.md "Phase 2: inter-camera training", step 9).

The classifier learns to tell the camera from the feature; the reversed gradient pushes the
backbone the other way, so features lose what identifies the camera. Used in rounds 0-2 only.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class GradReverse(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the incoming gradient by ``-lambd``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


class CameraClassifier(nn.Module):
    """GRL -> Linear(in,h)-BN-ReLU-Dropout -> Linear(h,h)-BN-ReLU -> Linear(h, n_cams) logits."""

    def __init__(self, in_dim: int = 2048, n_cams: int | None = None, hidden: int = 100,
                 lambd: float = 1.0, dropout: float = 0.5):
        super().__init__()
        if n_cams is None or n_cams < 2:  # required; a default would hide a missing camera count
            raise ValueError(f"n_cams={n_cams!r}: camera alignment needs at least 2 cameras")
        self.lambd = lambd
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, n_cams))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, n_cams)
        return self.net(GradReverse.apply(feats, self.lambd))


def camera_loss(logits: torch.Tensor, camids: torch.Tensor,
                form: Literal["clean", "reference"] = "clean") -> torch.Tensor:
    """Cross-entropy of the camera id. ``"reference"`` reproduces the reference code's quirk of
    feeding softmax probabilities (not logits) to cross-entropy, which caps and flattens the loss."""
    if form == "clean":
        return F.cross_entropy(logits, camids)
    if form == "reference":
        return F.cross_entropy(logits.softmax(dim=1), camids)
    raise ValueError(f"form={form!r}: expected 'clean' or 'reference'")
