"""CALR learns: one phase-2 round from a source-pretrained start improves the target's pseudo labels.

Real pieces throughout: two synthetic worlds rendered as JPEGs (source and target, other
identities and other cameras), supervised source pretraining, per-camera local labels, Infomap +
refinement + cluster weights, and one CALR training round with camera alignment. The claim is
checked on the target, whose identities training never sees.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from calr_core.data.datasets import read_dataset
from calr_core.data.manifest import split
from calr_core.data.synth import render_world
from calr_core.eval.quality import label_quality
from calr_core.labelling import class_weights, cluster_camera, cluster_global
from calr_core.model.backbone import build_model
from calr_core.model.extract import extract_features
from calr_core.train.loop import train_round
from calr_core.config import Data, Model, Train
from calr_core.train.settings import RoundData, RoundSettings
from calr_core.train.pretrain import pretrain

H, W = 32, 16
WORLD = dict(n_train_ids=40, n_test_ids=8, n_cams=3, imgs_per_cam=4.0, n_distractors=0)


def _pseudo_labels(feats, camids, local, rnd):
    pl = cluster_global(feats, camids, local, n_cams=3, rnd=rnd, n_rounds=2, k1=10, k2=2, eps=0.5)
    return pl.label.to_numpy(), class_weights(pl.assign(label=pl.label))


@pytest.mark.parametrize("seeds", [(11, 21)])
def test_one_calr_round_from_a_source_start_raises_pseudo_label_f(tmp_path, seeds):
    torch.set_num_threads(2)
    target_seed, source_seed = seeds
    for name, seed in (("source", source_seed), ("target", target_seed)):
        render_world(tmp_path / name, seed=seed, size="tiny", height=64, width=32, **WORLD)
    src = split(read_dataset("market1501", tmp_path / "source", check_images=False), "train")
    tgt = split(read_dataset("market1501", tmp_path / "target", check_images=False), "train")
    common = dict(height=H, width=W, workers=0, device="cpu", cache_mb=Data().cache_mb)

    model = build_model("resnet18", weights="none", seed=1)
    pretrain(model, root=tmp_path / "source", paths=src.path.tolist(), pids=src.pid.to_numpy(),
             camids=src.camid.to_numpy(), iters=80, batch_size=32, num_instances=4, lr=1e-3,
             seed=1, **common)

    paths, camids, pids = tgt.path.tolist(), tgt.camid.to_numpy(), tgt.pid.to_numpy()
    feats0 = extract_features(model, Path(tmp_path / "target"), paths, progress=False, **common)
    local = np.full(len(paths), -1)
    for cam in range(3):  # phase-1 local labels from the start model's features
        rows = np.flatnonzero(camids == cam)
        local[rows] = cluster_camera(feats0[rows], k1=4, k2=2, ratio=3)[0]
    labels0, weights0 = _pseudo_labels(feats0, camids, local, rnd=0)
    f0 = label_quality(labels0, pids)["pairwise_f"]
    print("F0", f0, label_quality(labels0, pids))

    data = RoundData(root=tmp_path / "target", paths=paths, labels=labels0, camids=camids,
                     init_features=feats0)
    train_round(model, data, RoundSettings.from_params(Train(), Model(), Data(), n_cams=3, camera_alignment=True, iters=60, batch_size=32,
                                           num_instances=4, lr=3.5e-4, seed=1, **common), progress=False)
    feats1 = extract_features(model, Path(tmp_path / "target"), paths, progress=False, **common)
    labels1, _ = _pseudo_labels(feats1, camids, local, rnd=1)
    f1 = label_quality(labels1, pids)["pairwise_f"]
    print("F1", f1, label_quality(labels1, pids))
    assert f0 > 0.05, f"the source start should already group some target identities (F {f0:.3f})"
    assert f1 > f0 + 0.02, f"pairwise F {f0:.3f} -> {f1:.3f}: the CALR round did not improve the labels"
