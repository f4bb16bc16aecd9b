"""What one training round is given: its data and its settings, each one frozen object."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

import numpy as np

from calr_core.train.memory import MemoryMode

if TYPE_CHECKING:
    from calr_core.config import CpuMode, Data, Model, Train


@dataclass(frozen=True)
class RoundData:
    """The images of a round and what training knows of them, one entry per path.

    labels: (N,) pseudo labels 0..K-1, -1 = outlier (not trained on); camids: (N,) 0-based;
    init_features: (N, D) features of the model at the start of the round (they seed the
    memory); class_weights: (K,) or None (unweighted).
    """
    root: str | Path
    paths: Sequence[str]
    labels: Any
    camids: Any
    init_features: Any
    class_weights: Any = None


@dataclass(frozen=True)
class RoundSettings:
    """How one round trains. No defaults of its own: ``from_params`` fills it from the typed
    params (calr_core.config holds every default), and RECORDED names the fields kept in the
    checkpoint's ``params`` (with world_size and the compute mode), which guard a resumed round."""
    n_cams: int | None                   # build a camera head (kept in the optimiser in every round)
    camera_alignment: bool               # add its loss (behind gradient reversal)
    camera_weight: float
    camera_loss_form: Literal["clean", "reference"]
    iters: int
    batch_size: int
    num_instances: int
    height: int
    width: int
    lr: float                            # the StepLR schedule's base rate
    weight_decay: float
    step_size: int
    gamma: float
    temp: float
    momentum: float
    memory_mode: MemoryMode
    bn_group: int                        # BatchNorm statistics over chunks of this many images (0: batch)
    epoch: int                           # the round number: seeds the sampler and every step
    seed: int
    save_every: int                      # recovery checkpoint every this many iterations
    device: Literal["auto", "cpu", "cuda"]
    cpu_mode: CpuMode                    # memory format and bf16 on a CPU (calr_core.device)
    workers: int                         # DataLoader processes decoding images that are streamed
    cache_mb: float                      # decoded images kept in memory up to this size (data.cache_mb)

    RECORDED: ClassVar[tuple[str, ...]] = (
        "n_cams", "camera_alignment", "camera_weight", "camera_loss_form", "iters", "batch_size",
        "num_instances", "height", "width", "lr", "weight_decay", "step_size", "gamma", "temp",
        "momentum", "memory_mode", "bn_group", "epoch", "seed")

    @classmethod
    def from_params(cls, train: "Train", model: "Model", data: "Data", **fields: Any) -> "RoundSettings":
        """The settings of params sections ``train``, ``model`` and ``data`` (config.Train /
        config.Model / config.Data), with ``fields`` on top (a phase's iters, lr, n_cams, epoch,
        ...): no camera head, no camera alignment and epoch 0 unless given."""
        t = train
        base = dict(n_cams=None, camera_alignment=False, camera_weight=t.camera_weight,
                    camera_loss_form=t.camera_loss, iters=t.iters, batch_size=t.batch_size,
                    num_instances=t.num_instances, height=model.height, width=model.width, lr=t.lr,
                    weight_decay=t.weight_decay, step_size=t.step_size, gamma=t.gamma, temp=t.temp,
                    momentum=t.momentum, memory_mode=t.memory, bn_group=t.bn_group, epoch=0,
                    seed=t.seed, save_every=t.save_every, device=t.device, cpu_mode=t.cpu_mode,
                    workers=t.workers, cache_mb=data.cache_mb)
        unknown = set(fields) - set(base)
        if unknown:
            raise TypeError(f"RoundSettings has no field(s) {sorted(unknown)}")
        return cls(**{**base, **fields})

    def recorded(self, world_size: int, compute: str) -> dict[str, Any]:
        """The checkpoint's ``params``: the settings that shape the result, with the resolved
        compute mode (calr_core.device.Compute.name)."""
        return {**{k: getattr(self, k) for k in self.RECORDED}, "world_size": world_size, "compute": compute}

    def check(self, data: RoundData, world_size: int) -> None:
        """Refuse settings that cannot train on ``data`` in one line naming the field."""
        if self.camera_alignment and self.n_cams is None:
            raise ValueError("n_cams: camera_alignment=True needs the number of cameras")
        if self.batch_size % world_size:
            raise ValueError(f"batch_size: {self.batch_size} is not divisible by world_size={world_size}")
        local = self.batch_size // world_size
        if self.bn_group < 0 or (self.bn_group and local % self.bn_group):
            raise ValueError(f"bn_group: {self.bn_group} must be 0 or divide the per-rank batch {local}")
        if self.save_every < 1:
            raise ValueError(f"save_every: expected a positive number of iterations, got {self.save_every}")


def as_arrays(data: RoundData, dim: int | None):
    """(labels, camids, init_features, class_weights) as CPU tensors, checked against each
    other; ``dim``: the model's feature size (None: whatever the features have)."""
    import torch

    from calr_core.train.memory import check_labels

    labels = torch.as_tensor(np.array(data.labels)).long()
    camids = torch.as_tensor(np.array(data.camids)).long()
    feats = torch.as_tensor(data.init_features).float().cpu()  # (N, D)
    n = len(data.paths)
    if labels.shape != (n,) or camids.shape != (n,):
        raise ValueError(f"labels/camids: expected {n} values (one per path), got {tuple(labels.shape)} and {tuple(camids.shape)}")
    dim = feats.shape[-1] if dim is None else dim
    if feats.ndim != 2 or feats.shape != (n, dim):
        raise ValueError(f"init_features: expected shape ({n}, {dim}) (one model feature per path), got {tuple(feats.shape)}")
    if not torch.isfinite(feats).all():
        raise ValueError("init_features: NaN or inf in the features that seed the memory")
    k = check_labels(labels, n)
    cw = None if data.class_weights is None else torch.as_tensor(np.asarray(data.class_weights)).float()
    if cw is not None and cw.shape != (k,):
        raise ValueError(f"class_weights: expected {k} values (one per cluster), got {tuple(cw.shape)}")
    return labels, camids, feats, cw
