"""Source pretraining: the start model of both phases when ``model.weights: source``.

Supervised training with the true identities of a labelled source dataset (docs/method.md "Start model"):
the UDA setting of MMT / SpCL / OpenUnReID, where a model trained on another labelled
set is then adapted to the unlabelled target cameras. The loss is a scaled-cosine classifier
(cross-entropy of cos(f, w_y) / temp), its weights initialised at the class means of the start
model's features; it runs through ``train_round`` (memory mode ``learned``), so sampling,
augmentation, recovery after a kill and determinism are those of a CALR round.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
from torch import nn

from calr_core.data.datasets import read_dataset
from calr_core.data.manifest import split
from calr_core.data.synth import render_world
from calr_core.model.extract import extract_features
from calr_core.train.loop import train_round
from calr_core.config import CpuMode, Data, Model, Train
from calr_core.train.settings import RoundData, RoundSettings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def labelled_source(dataset: str, root: str | Path, *, synth_size: str = "demo", synth_seed: int = 7,
                    workdir: str | Path | None = None) -> Iterator[tuple[pd.DataFrame, Path]]:
    """Yield (training rows with path/pid/camid, image root) of the source dataset.

    ``dataset="synth"`` renders the synthetic world of ``synth_seed`` into a folder under
    ``workdir``, deleted once the caller is done (a killed run leaves it for its resumed run;
    rendering is deterministic anyway); any other name is read from ``root`` with the
    project's reader.
    """
    if dataset != "synth":
        if not str(root):
            raise ValueError(f"source.root: empty; set it to the {dataset} folder (or manifest file)")
        frame = read_dataset(dataset, root, check_images=False)
        train = split(frame, "train")
        if (train.pid < 0).any():
            raise ValueError(f"source.root={root}: {int((train.pid < 0).sum())} training images have no "
                             f"identity (pid); pretraining needs a labelled source")
        root = Path(root)
        yield train, root.parent if root.is_file() else root  # manifest paths are relative to its folder
        return
    world = Path(workdir if workdir is not None else tempfile.gettempdir()) / f"source-{synth_size}-seed{synth_seed}"
    if not world.is_dir():  # rendered atomically: a folder that exists is complete
        world.parent.mkdir(parents=True, exist_ok=True)
        render_world(world, seed=synth_seed, size=synth_size)
    yield split(read_dataset("market1501", world, check_images=False), "train"), world
    shutil.rmtree(world, ignore_errors=True)  # kept after a crash, for the resumed run


def pretrain(model: nn.Module, *, root: str | Path, paths: list[str], pids, camids, iters: int = 300,
             batch_size: int = 64, num_instances: int = 4, lr: float = 1e-3, temp: float = 0.05,
             weight_decay: float = 5e-4, height: int = 256, width: int = 128,
             recovery_path: str | Path | None = None, save_every: int = 50, seed: int = 1,
             device: Literal["auto", "cpu", "cuda"] = "auto", cpu_mode: CpuMode = "auto",
             batch_size_extract: int = 128, workers: int = 2, cache_mb: float) -> dict[str, Any]:
    """Train ``model`` in place on true identities ``pids`` (N,) for ``iters`` steps; return the
    checkpoint dict of ``train_round`` (its ``memory`` holds the classifier)."""
    pids = np.asarray(pids)
    if pids.shape != (len(paths),) or (pids < 0).any():
        raise ValueError(f"pids: expected {len(paths)} known identities (>= 0), one per path")
    labels = np.unique(pids, return_inverse=True)[1]  # identities -> 0..K-1
    log.info("pretraining on %d images of %d identities", len(paths), int(labels.max()) + 1)
    feats = extract_features(model, Path(root), paths, height=height, width=width,
                             batch_size=batch_size_extract, workers=workers, cache_mb=cache_mb,
                             device=device, cpu_mode=cpu_mode)  # (N, D)
    data = RoundData(root=root, paths=paths, labels=labels, camids=camids, init_features=feats)
    settings = RoundSettings.from_params(Train(), Model(), Data(), iters=iters, batch_size=batch_size, num_instances=num_instances,
                             height=height, width=width, lr=lr, weight_decay=weight_decay,
                             step_size=max(iters, 1), temp=temp, memory_mode="learned",
                             save_every=save_every, seed=seed, device=device, cpu_mode=cpu_mode,
                             workers=workers, cache_mb=cache_mb)
    return train_round(model, data, settings, recovery_path=recovery_path)
