"""Randomness as a pure function of (seed, epoch, iteration), for exact resume.

Each global batch's augmentations are drawn from one seed of (seed, epoch, iteration), every
rank taking its rows of the same draws, and the global torch RNG (dropout) is reseeded per
iteration and per BatchNorm group of the global batch, so one process with groups equals
several processes, and a resumed round replays the interrupted one.
"""
from __future__ import annotations

import numpy as np

_AUG, _STEP = 2, 3  # stream tags, so the derived seeds never collide with the sampler's


def step_seed(seed: int, epoch: int, it: int, part: int = 0) -> int:
    """Seed of the global torch RNG for ``part`` (e.g. a BatchNorm group) of iteration ``it``."""
    key = [seed, epoch, _STEP, it, part + 2**31]  # entropy must be non-negative
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)


def augmentation_seed(seed: int, epoch: int, it: int) -> int:
    """Seed of every augmentation draw of global batch ``it`` (calr_core.data.transforms.augment)."""
    return int(np.random.SeedSequence([seed, epoch, _AUG, it]).generate_state(1, np.uint64)[0] >> 1)
