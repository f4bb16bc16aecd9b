"""Global pooling of the backbone's feature map (docs/method.md "Shared settings": GeM or average)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling over H, W: ``(mean(clamp(x, eps) ** p)) ** (1 / p)``.

    p = 1 is average pooling, p -> inf max pooling; p starts at 3 and is learned by default.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, trainable: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=trainable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        p = self.p.float()
        x = x.float().clamp(min=self.eps).pow(p)  # (B, C, H, W), fp32 keeps x^p finite under AMP
        return x.mean(dim=(2, 3)).pow(1.0 / p)  # (B, C)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}, trainable={self.p.requires_grad}"


class AvgPool(nn.Module):
    """Global average pooling over H, W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        return x.mean(dim=(2, 3))


def build_pool(kind: Literal["gem", "avg"] = "gem") -> nn.Module:
    """The pooling layer named ``kind``: ``"gem"`` (trainable p, init 3) or ``"avg"``."""
    if kind == "gem":
        return GeM()
    if kind == "avg":
        return AvgPool()
    raise ValueError(f"pooling={kind!r}: expected 'gem' or 'avg'")
