"""How far supervised training with the TRUE identities gets on a synthetic world: an upper bound
for any unsupervised method with the same model, input size and budget.

    python -m benchmarks.learnability [--device cuda] [--size demo] [--seed 1] [--arch resnet18]
        [--height 64 --width 32] [--rounds 10 --iters 200] [--batch 128 --instances 8] [--lr 3.5e-4]

Renders the world into a temporary folder, then runs ``rounds`` rounds of ``train_round`` on the
training split with the true identities as labels (memory seeded with the round's features, as
in the pipeline) and evaluates on query/gallery after each. Writes
benchmarks/results/learnability_<arch>_<H>x<W>_<device>.json and prints one line a round.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from calr_core.data.datasets import read_dataset
from calr_core.data.manifest import split
from calr_core.data.synth import render_world
from calr_core.device import resolve_device
from calr_core.model.backbone import build_model
from calr_core.model.extract import extract_features
from calr_core.eval.model import evaluate_model
from calr_core.train.loop import train_round
from calr_core.config import Data, Model, Train
from calr_core.train.settings import RoundData, RoundSettings

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", default="demo", help="synthetic world size: tiny, demo, market")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3.5e-4)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    common = dict(height=args.height, width=args.width, workers=args.workers, device=dev.type, cache_mb=Data().cache_mb)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        render_world(tmp, seed=args.seed, size=args.size)
        frame = read_dataset("market1501", tmp, check_images=False)
        train, query, gallery = (split(frame, s) for s in ("train", "query", "gallery"))
        labels = np.unique(train.pid.to_numpy(), return_inverse=True)[1]  # true ids -> 0..K-1
        model = build_model(args.arch, weights="none", seed=1)
        state = None
        for rnd in range(args.rounds + 1):
            t0 = time.perf_counter()
            if rnd:
                feats = extract_features(model, Path(tmp), train.path.tolist(), progress=False, **common)
                data = RoundData(root=tmp, paths=train.path.tolist(), labels=labels,
                                 camids=train.camid.to_numpy(), init_features=feats)
                settings = RoundSettings.from_params(Train(), Model(), Data(), iters=args.iters, batch_size=args.batch,
                                         num_instances=args.instances, lr=args.lr, epoch=rnd - 1,
                                         seed=rnd, **common)
                state = train_round(model, data, settings, resume_state=state, progress=False)
            m = evaluate_model(model, tmp, query, gallery, **common)
            row = {"round": rnd, "iters_done": rnd * args.iters, "mAP": m["mAP"], "rank1": m["Rank-1"],
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = RESULTS / f"learnability_{args.arch}_{args.height}x{args.width}_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "device": str(dev), "rounds": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
