"""The method's round policy: what a training round of phase 1 or 2 reads, starts from and
switches on, decided in one place from the params and the round number
(docs/method.md "Phase 1: intra-camera training"; docs/method.md "Phase 2: inter-camera training").

- phase 2, round r: the round's features and pseudo labels; starts from the previous round's
  checkpoint (``rounds[r].prev``); camera-entropy class weights from ``train.weights_from`` on;
  camera alignment in rounds ``0 .. train.camera_rounds - 1``; the ``train`` settings.
- phase 1, camera c, round r: that camera's features and local labels; its own previous
  checkpoint; no weights, no camera head; the ``intra`` settings.
This is the one library module that reads the typed params (``calr_core.config``): the round
policy is a function of them. ``train_round`` itself only sees ``RoundSettings``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calr_core.config import Params
from calr_core.paths import Layout, previous
from calr_core.train.settings import RoundData, RoundSettings


@dataclass(frozen=True)
class Recipe:
    rnd: int
    cam: int | None                      # phase 1: the camera; None: phase 2
    features: Path
    labels: Path
    start: Path                          # the checkpoint the round starts from
    out: Path
    recovery: Path
    weighted: bool                       # camera-entropy class weights (phase 2)
    settings: RoundSettings

    @property
    def label_kind(self) -> str:
        return "pseudo_labels" if self.cam is None else "local_labels"


def round_recipe(p: Params, layout: Layout, rnd: int, cam: int | None = None, *,
                 iters: int | None = None, lr: float | None = None, device: str | None = None) -> Recipe:
    """The recipe of phase-2 round ``rnd`` (or camera ``cam``'s phase-1 round); ``iters``, ``lr``,
    ``device``: command-line overrides of the params."""
    t, q = p.train, p.intra
    over = dict(epoch=rnd, **{k: v for k, v in (("iters", iters), ("lr", lr), ("device", device)) if v is not None})
    if cam is None:
        settings = RoundSettings.from_params(t, p.model, p.data, **{
            "n_cams": len(p.data.cameras), "camera_alignment": rnd < t.camera_rounds, **over})
        return Recipe(rnd, None, layout.features(rnd), layout.pseudo_labels(rnd),
                      layout.checkpoint(previous(p.rounds, rnd)), layout.checkpoint(rnd),
                      layout.recovery("phase2", rnd), 0 <= t.weights_from <= rnd, settings)
    settings = RoundSettings.from_params(t, p.model, p.data, **{  # phase 1: the intra section's schedule
        "iters": q.iters, "batch_size": q.batch_size, "num_instances": q.num_instances, "lr": q.lr, **over})
    return Recipe(rnd, cam, layout.intra_features(cam, rnd), layout.intra_labels(cam, rnd),
                  layout.intra_checkpoint(cam, previous(q.rounds, rnd, "intra.rounds")),
                  layout.intra_checkpoint(cam, rnd), layout.recovery("phase1", rnd, cam), False, settings)


def round_data(recipe: Recipe, manifest_path: Path, cameras: list[int]) -> RoundData:
    """The round's images, labels, camera ids and start features, every table put in the
    features' row order by ``image_id``: a label file sorted or filtered in pandas trains the
    same (images it omits are not trained on)."""
    from calr_core.data.manifest import align, camera_index, split
    from calr_core.io import read_features, read_table
    from calr_core.labelling import class_weights

    manifest = split(read_table("manifest", manifest_path), "train")
    labels = read_table(recipe.label_kind, recipe.labels)
    column = labels.label if recipe.cam is None else labels.local_label
    frame, feats = read_features(recipe.features)
    target = np.full(len(frame), -1, np.int64)  # (N,)
    target[align(labels.image_id, frame.image_id, str(recipe.labels))] = column
    if (target < 0).all():
        raise ValueError(f"{recipe.labels}: every image is an outlier (no cluster): nothing to train on; "
                         f"check the clustering settings or the previous round's model")
    rows = manifest.iloc[align(frame.image_id, manifest.image_id, str(manifest_path))]
    camids = rows.camid.to_numpy()
    if recipe.cam is None:  # the camera head counts cameras 0..C-1
        camids = camera_index(camids, cameras, str(manifest_path))
    return RoundData(root=manifest.attrs["root"], paths=rows.path.tolist(), labels=target,
                     camids=camids, init_features=feats,
                     class_weights=class_weights(labels, str(recipe.labels)) if recipe.weighted else None)
