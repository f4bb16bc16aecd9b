"""Randomness as a pure function of (seed, epoch, iteration, position), for exact resume.

DataLoader workers draw their seeds from the parent's RNG and advance them in an order that
depends on scheduling, so a resumed run could not replay the augmentations. Instead every
sample's augmentation is seeded from (seed, epoch, iteration, position in the global batch), and
the global torch RNG (dropout) is reseeded per iteration and per BatchNorm group of the
global batch, so one process with groups equals several processes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

_AUG, _STEP = 2, 3  # stream tags, so the derived seeds never collide with the sampler's


def step_seed(seed: int, epoch: int, it: int, part: int = 0) -> int:
    """Seed of the global torch RNG for ``part`` (e.g. a BatchNorm group) of iteration ``it``."""
    key = [seed, epoch, _STEP, it, part + 2**31]  # entropy must be non-negative
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)


def augmentation_seeds(seed: int, epoch: int, it: int, n: int) -> np.ndarray:
    """(n,) seeds of the n samples of global batch ``it``, one per position."""
    return np.random.default_rng([seed, epoch, _AUG, it]).integers(0, 2**62, size=n)


class SeededBatches:
    """Wrap a batch sampler: yield [(index, augmentation seed), ...] for this rank's share.

    ``offset`` is this rank's first position in the global batch of ``global_size`` images.
    """

    def __init__(self, batches: Iterable[list[int]], *, seed: int, epoch: int, start_iter: int,
                 global_size: int, offset: int = 0) -> None:
        self.batches, self.seed, self.epoch = batches, seed, epoch
        self.start_iter, self.global_size, self.offset = start_iter, global_size, offset

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for it, batch in enumerate(self.batches, start=self.start_iter):
            seeds = augmentation_seeds(self.seed, self.epoch, it, self.global_size)
            yield [(int(i), int(s)) for i, s in zip(batch, seeds[self.offset:self.offset + len(batch)])]


class SeededImages(Dataset):
    """``dataset[(i, s)]`` is ``base[i]`` with the torch RNG seeded from ``s`` (and then restored)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        i, s = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            return self.base[i]
