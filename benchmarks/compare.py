"""CALR against its Cluster-Contrast-style baseline, the ablations between them and the supervised
upper bound, on several seed pairs of synthetic worlds (`make compare`, `make compare-usl`).

    python -m benchmarks.compare [--setting uda|usl] [--seeds 1:7 2:8 3:9] [--variants ...]
        [--baseline FILE] [-S section.key=value ...] [--out FILE]
    python -m benchmarks.compare --tune [--setting uda|usl] [--seeds 4:10]

Each seed pair D:S renders the target world `data.synth_seed=D` and, in the UDA setting,
pretrains on the source world `source.synth_seed=S`; in the USL setting (the paper's) the start
is ImageNet MobileNetV2 and no label is used anywhere. Every variant of a pair starts from the
same model and the same phase-1 local labels. The stages run in-process, as the very functions
`dvc repro` calls (`calr-stage intra`, then each round's steps), with params.yaml plus the
setting's and the variant's overrides:

    baseline   DBSCAN on the Jaccard distance, no refinement, no cluster weights, no camera alignment
    infomap    + Infomap instead of DBSCAN
    refine     + camera-aware refinement
    weights    + camera-entropy cluster weights
    calr       + camera alignment (full CALR)
    supervised the true identities as labels, same rounds and iterations (upper bound)

`--tune` runs the baseline's grid (Jaccard k1 x DBSCAN eps, then k2 and min_samples around the
best) on a tuning seed pair that the comparison does not report, and writes
benchmarks/results/baseline-tuning[-usl].json: {"tuning_seed", "grid": [{k1, k2, eps,
min_samples, mAP}, ...], "chosen": {...}}. The comparison reads "chosen" from that file for its
baseline; CALR keeps the paper's defaults (params.yaml). The comparison writes
benchmarks/results/compare[-usl].json: {"runs": [{variant, seed, mAP, rank1, pl_f, nmi, round,
rounds: [...]}, ...], "overrides": [...], "baseline": {...}} and prints a table of means +- std.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The settings on top of params.yaml (which runs the UDA demo): `dvc exp run -S ...` with these
# runs the same setting through the DAG.
SETTINGS: dict[str, list[str]] = {
    "uda": [],
    "usl": ["model.arch=mobilenet_v2", "model.weights=imagenet", "model.height=64", "model.width=32"],
}
VARIANTS: dict[str, list[str]] = {
    "baseline": ["cluster.method=dbscan", "cluster.refine=false", "train.weights_from=-1",
                 "train.camera_rounds=0"],
    "infomap": ["cluster.refine=false", "train.weights_from=-1", "train.camera_rounds=0"],
    "refine": ["train.weights_from=-1", "train.camera_rounds=0"],
    "weights": ["train.camera_rounds=0"],
    "calr": [],
    "supervised": ["train.weights_from=-1", "train.camera_rounds=0"],
}
GRID_K1, GRID_EPS = (15, 20, 30), (0.4, 0.5, 0.6, 0.7)   # first pass, at k2 6, min_samples 4
GRID_K2, GRID_MIN_SAMPLES = (3, 10), (2, 8)              # second pass, around the best (k1, eps)


def baseline_overrides(g: dict) -> list[str]:
    return [f"cluster.dbscan_k1={g['k1']}", f"cluster.dbscan_k2={g['k2']}",
            f"cluster.dbscan_eps={g['eps']}", f"cluster.dbscan_min_samples={g['min_samples']}"]


class Run:
    """One artifacts folder, one params file, one list of overrides: the DAG's stages in order."""

    def __init__(self, artifacts: Path, params: Path, overrides: list[str]):
        from calr_core.config import load_params
        self.kw = dict(artifacts=artifacts, params=params, set_=overrides)
        self.p = load_params(params, overrides)
        self.artifacts = artifacts

    def shared(self, world: Path) -> None:
        """synth, prepare, pretrain, phase 1, the phase-2 start model and its evaluation."""
        from calr_stages import evaluate, init, prepare, pretrain, rounds, synth
        from calr_stages._common import call
        call(synth.synth, out=world, **{k: v for k, v in self.kw.items() if k != "artifacts"})
        for fn in (prepare.prepare, pretrain.pretrain):
            call(fn, **self.kw)
        for cam in self.p.data.cameras:
            call(rounds.intra, cam=cam, **self.kw)
        call(init.init, **self.kw)
        call(evaluate.evaluate, source=True, **self.kw)

    def phase2(self, supervised: bool = False) -> list[dict]:
        """Every phase-2 round; returns the rounds' metrics and cluster summaries."""
        from calr_stages import rounds
        from calr_stages._common import call
        from calr_stages.cluster_global import cluster_global
        out = []
        for r in self.p.rounds:
            if supervised:
                for step in rounds.ROUND_STEPS:
                    if step is cluster_global:
                        self._true_labels(r.id)
                    else:
                        call(step, rnd=r.id, **self.kw)
            else:
                call(rounds.round_, rnd=r.id, **self.kw)
            m = json.loads((self.artifacts / "metrics" / f"round{r.id}.json").read_text())
            summary = self.artifacts / "phase2" / f"round{r.id}" / "cluster_summary.json"
            if summary.is_file():
                m["summary"] = json.loads(summary.read_text())
            out.append(m)
        return out

    def _true_labels(self, rnd: int) -> None:
        """Pseudo labels = the true identities (the supervised upper bound; no clustering)."""
        import pandas as pd

        from calr_core.data.manifest import train_pids
        from calr_core.io import read_features, read_table, write_table
        from calr_core.paths import Layout
        layout = Layout(self.artifacts)
        frame, _ = read_features(layout.features(rnd))
        pids = train_pids(read_table("manifest", layout.manifest), frame.image_id)
        label = np.unique(pids, return_inverse=True)[1].astype(np.int32)
        n = len(frame)
        write_table("pseudo_labels", pd.DataFrame({
            "image_id": frame.image_id, "camid": frame.camid, "global_label": label, "label": label,
            "is_pivot": np.zeros(n, bool), "density": np.zeros(n, np.float32),
            "weight": np.zeros(n, np.float32), "refined": np.zeros(n, bool)}),
            layout.pseudo_labels(rnd), {"round": rnd})


def row(variant: str, seed: str, rounds: list[dict], source: dict, **extra) -> dict:
    last = rounds[-1]
    return {"variant": variant, "seed": seed, "mAP": last["mAP"], "rank1": last["Rank-1"],
            "pl_f": last.get("pl_pairwise_f"), "nmi": last.get("pl_nmi"), "round": last["round"],
            "source_mAP": source["mAP"], **extra, "rounds": rounds}


def describe(name: str, rounds: list[dict], seconds: float) -> str:
    line = f"{name}: mAP by round " + ", ".join(f"{100 * r['mAP']:.1f}" for r in rounds)
    if rounds[0].get("pl_pairwise_f") is not None:
        line += "; pseudo-label F " + ", ".join(f"{100 * r['pl_pairwise_f']:.1f}" for r in rounds)
    return line + f" ({seconds:.0f} s)"


class Pair:
    """One seed pair's shared start (kept under `work`) and the variants run from it."""

    def __init__(self, work: Path, pair: str, params: Path, overrides: list[str], reuse: bool):
        target, source = pair.split(":")
        self.pair, self.base, self.params = pair, work / f"seed{target}-{source}", params
        self.common = [*overrides, f"data.synth_seed={target}", f"source.synth_seed={source}",
                       f"data.root={self.base / 'world'}"]
        t0 = time.perf_counter()
        if not (reuse and (self.base / "shared" / "metrics" / "source.json").is_file()):
            Run(self.base / "shared", params, self.common).shared(self.base / "world")
        self.source = json.loads((self.base / "shared" / "metrics" / "source.json").read_text())
        print(f"[{pair}] start model: mAP {100 * self.source['mAP']:.1f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)

    def run(self, name: str, extra: list[str], keep: bool, supervised: bool = False) -> tuple[list[dict], float]:
        t0 = time.perf_counter()
        art = self.base / name
        shutil.rmtree(art, ignore_errors=True)
        shutil.copytree(self.base / "shared", art)
        rounds = Run(art, self.params, self.common + extra).phase2(supervised=supervised)
        seconds = time.perf_counter() - t0
        print(f"[{self.pair}] " + describe(name, rounds, seconds), flush=True)
        if not keep:
            shutil.rmtree(art, ignore_errors=True)
        return rounds, seconds


def tune(pair: Pair, keep: bool, around: dict | None = None) -> tuple[dict, list[dict]]:
    """The baseline's grid on the tuning pair: k1 x eps, then k2 and min_samples at the best;
    ``around`` (another setting's choice): only eps, at its k1, k2 and min_samples."""
    grid = []

    def score(g: dict) -> None:
        if any(all(h[k] == g[k] for k in g) for h in grid):
            return
        name = "baseline-k1{k1}-k2{k2}-eps{eps}-ms{min_samples}".format(**g)
        rounds, seconds = pair.run(name, [*VARIANTS["baseline"], *baseline_overrides(g)], keep)
        grid.append({**g, "mAP": rounds[-1]["mAP"], "pl_f": rounds[-1].get("pl_pairwise_f"),
                     "mAP_by_round": [r["mAP"] for r in rounds], "seconds": round(seconds, 1)})

    def chosen() -> dict:
        best = max(grid, key=lambda g: g["mAP"])
        return {k: best[k] for k in ("k1", "k2", "eps", "min_samples", "mAP")}

    if around is not None:
        for eps in GRID_EPS:
            score({**{k: around[k] for k in ("k1", "k2", "min_samples")}, "eps": eps})
        return chosen(), grid
    for k1 in GRID_K1:
        for eps in GRID_EPS:
            score({"k1": k1, "k2": 6, "eps": eps, "min_samples": 4})
    best = chosen()
    for k2 in GRID_K2:
        score({**{k: best[k] for k in ("k1", "eps", "min_samples")}, "k2": k2})
    for ms in GRID_MIN_SAMPLES:
        score({**{k: best[k] for k in ("k1", "eps", "k2")}, "min_samples": ms})
    return chosen(), grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=list(SETTINGS), default="uda",
                    help="uda: from the source model (params.yaml's demo); usl: from ImageNet, no labels")
    ap.add_argument("--tune", action="store_true", help="tune the baseline on --seeds (one pair)")
    ap.add_argument("--tune-eps-around", type=Path, default=None,
                    help="with --tune: sweep eps only, at this tuning file's chosen k1, k2, min_samples")
    ap.add_argument("--seeds", nargs="+", default=None,
                    help="target:source world seeds (default 1:7 2:8 3:9; with --tune 4:10)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--baseline", type=Path, default=None,
                    help="the tuning file whose 'chosen' the baseline uses (default: the setting's)")
    ap.add_argument("--set", "-S", dest="overrides", action="append", default=[])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the artifacts under this folder")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: reuse a seed pair's kept start model and phase 1")
    args = ap.parse_args()
    os.environ.setdefault("CALR_LOG", "WARNING")
    suffix = "" if args.setting == "uda" else f"-{args.setting}"
    tuning_file = args.baseline or RESULTS / f"baseline-tuning{suffix}.json"
    out = args.out or (tuning_file if args.tune else RESULTS / f"compare{suffix}.json")
    seeds = args.seeds or (["4:10"] if args.tune else ["1:7", "2:8", "3:9"])
    overrides = [*SETTINGS[args.setting], *args.overrides]
    if args.tune and len(seeds) != 1:
        ap.error("--tune takes one seed pair (the tuning pair, not one the comparison reports)")
    t_all = time.perf_counter()
    work = Path(args.keep or tempfile.mkdtemp(prefix="calr-compare-"))
    try:
        if args.tune:
            around = json.loads(args.tune_eps_around.read_text())["chosen"] if args.tune_eps_around else None
            chosen, grid = tune(Pair(work, seeds[0], args.params, overrides, args.reuse), bool(args.keep), around)
            result = {"tuning_seed": seeds[0], "setting": args.setting, "overrides": overrides,
                      "grid": grid, "chosen": chosen,
                      "eps_only_around": str(args.tune_eps_around.name) if around else None}
            print(f"baseline chosen: {chosen}")
        else:
            chosen = json.loads(tuning_file.read_text())["chosen"] if tuning_file.is_file() else None
            if chosen:
                VARIANTS["baseline"] = [*VARIANTS["baseline"], *baseline_overrides(chosen)]
            elif "baseline" in args.variants:
                print(f"warning: {tuning_file} not found: the baseline runs at params.yaml's values", flush=True)
            runs = []
            for pair in seeds:
                shared = Pair(work, pair, args.params, overrides, args.reuse)
                for name in args.variants:
                    rounds, seconds = shared.run(name, VARIANTS[name], bool(args.keep), name == "supervised")
                    runs.append(row(name, pair, rounds, shared.source, seconds=round(seconds, 1)))
            result = {"runs": runs, "setting": args.setting, "overrides": overrides, "baseline": chosen}
            print(table(runs))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - t_all)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")


def table(runs: list[dict]) -> str:
    """Markdown: mean +- std over seeds of each variant's last round (percentages)."""
    lines = ["| variant | mAP | Rank-1 | pseudo-label F | NMI | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for v in VARIANTS:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        cells = []
        for key in ("mAP", "rank1", "pl_f", "nmi"):
            x = np.array([100 * r[key] for r in rs if r[key] is not None])
            cells.append(f"{x.mean():.1f} ± {x.std():.1f}" if len(x) else "-")
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {len(rs)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
