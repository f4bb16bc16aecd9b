"""Camera-aware P x K identity sampler (docs/method.md "Shared settings";
docs/method.md "Phase 2: inter-camera training", step 10).

Each batch holds P = batch_size / K pseudo-identities x K instances. Per identity: a random
anchor, then K-1 more images of that identity taken from the cameras other than the anchor's
(reference behaviour: only from those when any exist; from the identity's other images when
none; without replacement when there are enough, else with). Outliers (-1) are never sampled.

Identities are visited as in the reference (each pass a fresh permutation of all identities,
cut into whole batches, the remainder dropped), passes following each other until ``iters``. Every
batch is a pure function of (seed, epoch, iteration), so a resumed run (``start_iter``) sees
exactly the batches the interrupted run would have, and ranks can split a batch without talking.
Under DDP rank r of W takes identities [r P/W, (r+1) P/W) of each global batch: whole
identities, batch_size / W images.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class CameraPKSampler:
    """Batch sampler yielding ``iters - start_iter`` lists of dataset indices (P x K each)."""

    def __init__(self, labels, camids, *, num_instances: int = 16, batch_size: int = 256,
                 iters: int = 400, seed: int = 1, epoch: int = 0, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0) -> None:
        labels, camids = np.asarray(labels).astype(np.int64), np.asarray(camids).astype(np.int64)
        if labels.ndim != 1 or camids.shape != labels.shape:
            raise ValueError(f"camids: expected shape {labels.shape} like labels, got {camids.shape}")
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch_size: {batch_size} is not a multiple of num_instances={num_instances}")
        self.num_pids = batch_size // num_instances
        if self.num_pids % world_size:
            raise ValueError(f"world_size: {world_size} does not divide the {self.num_pids} identities per batch")
        if not 0 <= start_iter <= iters:
            raise ValueError(f"start_iter: expected 0..{iters}, got {start_iter}")
        self.pids = np.unique(labels[labels >= 0])  # (P_all,)
        if self.pids.size == 0:
            raise ValueError("labels: no cluster (every sample is an outlier); nothing to sample")
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], self.pids, side="left"), np.searchsorted(labels[order], self.pids, side="right")
        self.members = [order[a:b] for a, b in zip(*bounds)]  # per pid, sorted dataset indices
        self.camids = camids
        self.k, self.batch_size, self.iters = num_instances, batch_size, iters
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_iter = start_iter
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.iters - self.start_iter

    def state_dict(self) -> dict[str, int]:
        """Everything needed to rebuild this sampler at its position (with the same labels)."""
        return {"seed": self.seed, "epoch": self.epoch, "iters": self.iters, "start_iter": self.start_iter}

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start_iter, self.iters):
            yield self.batch(it)

    def _pid_slots(self, it: int) -> np.ndarray:
        """Positions (into ``self.pids``) of the P identities of global batch ``it``.

        As the reference: each pass shuffles all identities and cuts them into n // P batches,
        dropping the rest (no identity twice in a batch). With fewer than P identities a batch
        repeats them.
        """
        n, p = self.pids.size, self.num_pids
        per_pass = max(n // p, 1)
        cycle, j = divmod(it, per_pass)
        if cycle not in self._perms:
            self._perms = {cycle: np.random.default_rng([self.seed, self.epoch, 0, cycle]).permutation(n)}
        perm = self._perms[cycle]
        return perm[j * p:(j + 1) * p] if n >= p else np.resize(perm, p)

    def batch(self, it: int) -> list[int]:
        """This rank's share of global batch ``it``: P/W identities x K indices."""
        slots = self._pid_slots(it)
        per_rank = self.num_pids // self.world_size
        rng = np.random.default_rng([self.seed, self.epoch, 1, it])
        out: list[int] = []
        for i, slot in enumerate(slots):
            picks = self._instances(self.members[slot], rng)  # draw for every id: ranks stay in step
            if i // per_rank == self.rank:
                out.extend(picks)
        return out

    def _instances(self, members: np.ndarray, rng: np.random.Generator) -> list[int]:
        anchor = members[rng.integers(members.size)]
        rest = members[members != anchor]
        other_cam = rest[self.camids[rest] != self.camids[anchor]]
        pool = other_cam if other_cam.size else rest
        if pool.size == 0:  # a one-image identity: repeat it
            pool = members
        need = self.k - 1
        extra = rng.choice(pool, size=need, replace=pool.size < need)
        return [int(anchor), *map(int, extra)]
