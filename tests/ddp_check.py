"""Run one small training round on a prepared folder; used to check resume and multi-process runs.

    python -m tests.ddp_check --world DIR --out DIR [--iters 12 --save-every 3 ...]
    torchrun --nproc_per_node 2 -m tests.ddp_check --world DIR --out DIR

DIR holds the images and ``world.npz`` (paths, labels, camids, features). Each rank writes its
final round checkpoint to ``OUT/rank{r}.pt``; with ``--memory-probe`` it also checks that a
memory update on rank-specific features equals the update on all ranks' features in rank order
(written to ``OUT/probe{r}.pt``). The model is a randomly initialised ResNet-18 (seed 1).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from calr_core.io.checkpoint import save_checkpoint
from calr_core.model.backbone import build_model
from calr_core.train import distributed as du
from calr_core.train.loop import train_round
from calr_core.train.memory import ClusterMemory
from calr_core.config import Data, Model, Train
from calr_core.train.settings import RoundData, RoundSettings


def _memory_probe(dim: int, out: Path) -> None:
    """Each rank updates a shared memory with its own features; all must see every rank's."""
    g = torch.Generator().manual_seed(0)
    k, b = 3, 4
    init = torch.nn.functional.normalize(torch.randn(6, dim, generator=g), dim=1)
    labels = torch.arange(6) % k
    all_feats = torch.nn.functional.normalize(torch.randn(du.world_size() * b, dim, generator=g), dim=1)
    all_targets = torch.randint(0, k, (du.world_size() * b,), generator=g)
    r = du.rank()
    mem = ClusterMemory(init, labels)
    mem.update(all_feats[r * b:(r + 1) * b], all_targets[r * b:(r + 1) * b])
    save_checkpoint(out / f"probe{r}.pt", {"centroids": mem.centroids, "init": init, "labels": labels,
                                           "feats": all_feats, "targets": all_targets})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--recovery", type=Path, default=None)
    ap.add_argument("--bn-group", type=int, default=0)
    ap.add_argument("--camera", action="store_true", help="add the camera-alignment loss")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--memory-probe", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    rank, _, dev = du.init_distributed(args.device)
    try:
        w = np.load(args.world / "world.npz")
        model = build_model("resnet18", weights="none", seed=1)
        n_cams = int(w["camids"].max()) + 1
        data = RoundData(root=args.world, paths=[str(p) for p in w["paths"]], labels=w["labels"],
                         camids=w["camids"], init_features=w["features"])
        settings = RoundSettings.from_params(Train(), Model(), Data(), n_cams=n_cams, camera_alignment=args.camera, iters=args.iters,
                                 batch_size=args.batch, num_instances=args.instances,
                                 height=args.height, width=args.width, bn_group=args.bn_group,
                                 save_every=args.save_every, device=dev.type, workers=args.workers,
                                 cpu_mode="fp32")  # the ranks' split is checked, in one precision
        state = train_round(model, data, settings, recovery_path=args.recovery, progress=False)
        save_checkpoint(args.out / f"rank{rank}.pt", state)
        if args.memory_probe:
            _memory_probe(model.feat_dim, args.out)
    finally:
        du.cleanup()


if __name__ == "__main__":
    main()
