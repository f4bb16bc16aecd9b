"""Cluster memory: one L2-normalised centroid per pseudo-identity
(docs/method.md "Phase 2: inter-camera training", step 8).

The loss is a class-weighted cross-entropy of the features against all centroids (logits
f . M^T / tau); after each optimiser step the centroids of the classes in the batch move toward
the batch features (momentum update, then renormalise). The centroids are a buffer, so a
checkpoint's ``state_dict`` carries them. Mode ``learned`` makes the centroids a trained
parameter instead (a scaled-cosine classifier with no momentum update): supervised training with
true identities (the ``pretrain`` stage) uses it. Under ``torch.distributed`` the update uses the
features of all ranks (all-gathered in rank order), as the reference's DataParallel did.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from calr_core.train import distributed as dist_utils

MemoryMode = Literal["mean", "hard", "learned"]


def check_labels(labels: torch.Tensor, n: int | None = None) -> int:
    """Validate pseudo labels (0..K-1, -1 outliers) and return K; ValueError otherwise."""
    if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
        raise ValueError(f"labels: expected shape ({n},), got {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < -1:
        raise ValueError(f"labels: values must be >= -1 (-1 = outlier), got min {int(labels.min())}")
    kept = labels[labels >= 0]
    if kept.numel() == 0:
        raise ValueError("labels: no cluster (every sample is an outlier); nothing to train on")
    k = int(kept.max()) + 1
    if torch.unique(kept).numel() != k:
        raise ValueError(f"labels: cluster ids must be consecutive 0..K-1, got {torch.unique(kept).numel()} ids with max {k - 1}")
    return k


class ClusterMemory(nn.Module):
    """Centroid memory built from ``features`` (N, D) and ``labels`` (N,) (-1 = outlier, ignored)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, *, temp: float = 0.05,
                 momentum: float = 0.1, mode: MemoryMode = "mean") -> None:
        super().__init__()
        if features.ndim != 2:
            raise ValueError(f"features: expected shape (N, D), got {tuple(features.shape)}")
        if mode not in ("mean", "hard", "learned"):
            raise ValueError(f"mode: expected 'mean', 'hard' or 'learned', got {mode!r}")
        labels = torch.as_tensor(labels, device=features.device).long()
        k = check_labels(labels, features.shape[0])
        keep = labels >= 0
        sums = features.new_zeros(k, features.shape[1]).float()  # (K, D)
        sums.index_add_(0, labels[keep], features[keep].float())
        if mode == "learned":  # a classifier initialised at the class means, trained by the optimiser
            self.centroids = nn.Parameter(F.normalize(sums, dim=1))  # (K, D)
        else:
            self.register_buffer("centroids", F.normalize(sums, dim=1))  # (K, D)
        self.temp, self.momentum, self.mode = temp, momentum, mode

    @property
    def num_classes(self) -> int:
        return self.centroids.shape[0]

    def forward(self, feats: torch.Tensor, targets: torch.Tensor,
                class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted-mean cross-entropy of ``feats`` (B, D) against the centroids.

        Equals ``F.cross_entropy(logits, targets, weight=class_weights)``; under torch.distributed
        the weight sum is the global one (all-reduced), so the ranks' averaged gradients are those
        of the whole batch's weighted mean. A batch whose weights are all zero gives loss 0.
        """
        centroids = F.normalize(self.centroids, dim=1) if self.mode == "learned" else self.centroids
        logits = feats.float() @ centroids.t() / self.temp  # (B, K)
        ce = F.cross_entropy(logits, targets, reduction="none")  # (B,)
        w = torch.ones_like(ce) if class_weights is None else class_weights.to(ce)[targets]  # (B,)
        total = dist_utils.all_reduce_sum(w.sum().detach())
        return (w * ce).sum() * dist_utils.world_size() / total.clamp_min(1e-12)

    @torch.no_grad()
    def update(self, feats: torch.Tensor, targets: torch.Tensor) -> None:
        """Momentum update m_y <- mom * m_y + (1 - mom) * f, renormalised, samples in batch order.

        ``mean`` uses every sample (a class with several samples is updated once per sample, in
        order); ``hard`` uses, per class, only its least similar sample to the current centroid;
        ``learned`` centroids are moved by the optimiser only.
        """
        if self.mode == "learned":
            return
        feats = dist_utils.all_gather_cat(feats.detach().float())  # (B_all, D)
        targets = dist_utils.all_gather_cat(targets.detach())  # (B_all,)
        if self.mode == "hard":
            sim = (feats * self.centroids[targets]).sum(1)  # (B_all,)
            order = torch.argsort(sim, stable=True)  # least similar first
            first = _rank_within_class(targets[order]) == 0  # one sample per class
            feats, targets = feats[order[first]], targets[order[first]]
        # Samples of one class must be applied in order; different classes are independent,
        # so apply the j-th sample of every class together (K instances -> K vectorised steps).
        rank = _rank_within_class(targets)  # (B_all,)
        for j in range(int(rank.max()) + 1 if rank.numel() else 0):
            sel = rank == j
            y = targets[sel]
            m = self.centroids[y] * self.momentum + feats[sel] * (1.0 - self.momentum)  # (b, D)
            self.centroids[y] = F.normalize(m, dim=1)


def _rank_within_class(targets: torch.Tensor) -> torch.Tensor:
    """Occurrence number of each sample within its class, in batch order (0 for the first)."""
    order = torch.argsort(targets, stable=True)
    t = targets[order]
    pos = torch.arange(t.numel(), device=t.device)
    start = torch.ones_like(t, dtype=torch.bool)
    start[1:] = t[1:] != t[:-1]
    first_pos = torch.cummax(torch.where(start, pos, torch.zeros_like(pos)), 0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - first_pos
    return rank
