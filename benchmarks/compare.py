"""CALR against its Cluster-Contrast-style baseline, the ablations between them and the supervised
upper bound, on several seed pairs of synthetic worlds (`make compare`).

    python -m benchmarks.compare [--seeds 1:7 2:8 3:9] [--variants baseline ... supervised]
        [--dbscan-eps 0.5 0.6 0.7] [-S section.key=value ...] [--out FILE]

Each seed pair D:S renders the target world `data.synth_seed=D` and pretrains on the source world
`source.synth_seed=S`; every variant of that pair starts from the same source model and the same
phase-1 local labels. The stages run in-process, as the very functions `dvc repro` calls, with
params.yaml plus the variant's overrides:

    baseline   DBSCAN on the Jaccard distance, no refinement, no cluster weights, no camera alignment
    infomap    + Infomap instead of DBSCAN
    refine     + camera-aware refinement
    weights    + camera-entropy cluster weights
    calr       + camera alignment (full CALR)
    supervised the true identities as labels, same rounds and iterations (upper bound)

The baseline's DBSCAN eps is tuned first on the first seed pair (the value with the best
last-round mAP is kept for all pairs). Writes benchmarks/results/compare.json: {"runs": [{variant,
seed, mAP, rank1, pl_f, nmi, round, rounds: [...]}, ...], "dbscan_eps": {...}, ...} and prints
a table of means +- std.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS: dict[str, list[str]] = {
    "baseline": ["cluster.method=dbscan", "cluster.refine=false", "train.weights_from=-1",
                 "train.camera_rounds=0"],
    "infomap": ["cluster.refine=false", "train.weights_from=-1", "train.camera_rounds=0"],
    "refine": ["train.weights_from=-1", "train.camera_rounds=0"],
    "weights": ["train.camera_rounds=0"],
    "calr": [],
    "supervised": ["train.weights_from=-1", "train.camera_rounds=0"],
}


def call(fn, **kwargs) -> None:
    """Run a stage function in-process with its command-line defaults for what is not given."""
    for name, prm in inspect.signature(fn).parameters.items():
        if name not in kwargs:
            default = getattr(prm.default, "default", prm.default)
            kwargs[name] = None if default is ... else default
    fn(**kwargs)


class Run:
    """One artifacts folder, one params file, one list of overrides: the DAG's stages in order."""

    def __init__(self, artifacts: Path, params: Path, overrides: list[str]):
        self.kw = dict(artifacts=artifacts, params=params, set_=overrides)
        from calr_core.config import load_params
        self.p = load_params(params, overrides)
        self.artifacts = artifacts

    def shared(self, world: Path) -> None:
        """synth, prepare, pretrain, phase 1, the phase-2 start model and its evaluation."""
        from calr_stages import cluster_intra as ci
        from calr_stages import evaluate as ev
        from calr_stages import extract, init, prepare, pretrain, synth, train
        call(synth.synth, out=world, **{k: v for k, v in self.kw.items() if k != "artifacts"})
        call(prepare.prepare, **self.kw)
        call(pretrain.pretrain, **self.kw)
        for cam in self.p.data.cameras:
            call(init.init, cam=cam, **self.kw)
            for r in self.p.intra.rounds:
                call(extract.extract, rnd=r.id, cam=cam, **self.kw)
                call(ci.cluster_intra, cam=cam, rnd=r.id, **self.kw)
                call(train.train, rnd=r.id, cam=cam, **self.kw)
            call(ci.select_local, cam=cam, **self.kw)
        call(init.init, **self.kw)
        call(ev.evaluate, source=True, **self.kw)

    def phase2(self, supervised: bool = False) -> list[dict]:
        """Every phase-2 round; returns the rounds' metrics and cluster summaries."""
        from calr_stages import cluster_global as cg
        from calr_stages import evaluate as ev
        from calr_stages import extract, train
        layout_rows = []
        for r in self.p.rounds:
            call(extract.extract, rnd=r.id, **self.kw)
            if supervised:
                self._true_labels(r.id)
            else:
                call(cg.cluster_global, rnd=r.id, **self.kw)
            call(train.train, rnd=r.id, **self.kw)
            call(ev.evaluate, rnd=r.id, **self.kw)
            m = json.loads((self.artifacts / "metrics" / f"round{r.id}.json").read_text())
            summary = self.artifacts / "phase2" / f"round{r.id}" / "cluster_summary.json"
            if summary.is_file():
                m["summary"] = json.loads(summary.read_text())
            layout_rows.append(m)
        return layout_rows

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
            "source_mAP": source["mAP"], **extra,
            "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", default=["1:7", "2:8", "3:9"], help="target:source world seeds")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--dbscan-eps", nargs="+", type=float, default=[0.5, 0.6, 0.7],
                    help="baseline eps values tried on the first seed pair")
    ap.add_argument("--set", "-S", dest="overrides", action="append", default=[])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--out", type=Path, default=RESULTS / "compare.json")
    ap.add_argument("--keep", type=Path, default=None, help="keep the artifacts under this folder")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: reuse a seed pair's kept source model and phase 1")
    args = ap.parse_args()
    os.environ.setdefault("CALR_LOG", "WARNING")
    t_all = time.perf_counter()
    runs, eps_scores = [], {}
    work = Path(args.keep or tempfile.mkdtemp(prefix="calr-compare-"))
    try:
        for k, pair in enumerate(args.seeds):
            target, source = pair.split(":")
            base = work / f"seed{target}-{source}"
            common = [*args.overrides, f"data.synth_seed={target}", f"source.synth_seed={source}",
                      f"data.root={base / 'world'}"]
            t0 = time.perf_counter()
            shared = Run(base / "shared", args.params, common)
            if not (args.reuse and (base / "shared" / "metrics" / "source.json").is_file()):
                shared.shared(base / "world")
            src = json.loads((base / "shared" / "metrics" / "source.json").read_text())
            print(f"[{pair}] source model: mAP {100 * src['mAP']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            todo = [(v, VARIANTS[v]) for v in args.variants]
            if "baseline" in args.variants and k == 0 and len(args.dbscan_eps) > 1:
                todo = [(f"baseline@{e}", [*VARIANTS["baseline"], f"cluster.dbscan_eps={e}"])
                        for e in args.dbscan_eps] + [t for t in todo if t[0] != "baseline"]
            for name, extra in todo:
                t0 = time.perf_counter()
                art = base / name
                shutil.rmtree(art, ignore_errors=True)
                shutil.copytree(base / "shared", art)
                rounds = Run(art, args.params, common + extra).phase2(supervised=name == "supervised")
                variant, info = name, {}
                if name.startswith("baseline@"):
                    variant, info = "baseline", {"dbscan_eps": float(name.split("@")[1])}
                    eps_scores[info["dbscan_eps"]] = rounds[-1]["mAP"]
                runs.append(row(variant, pair, rounds, src, seconds=round(time.perf_counter() - t0, 1), **info))
                print(f"[{pair}] {name}: mAP by round " + ", ".join(f"{100 * r['mAP']:.1f}" for r in rounds)
                      + (f"; pseudo-label F " + ", ".join(f"{100 * r['pl_pairwise_f']:.1f}" for r in rounds)
                         if rounds[0].get("pl_pairwise_f") is not None else "")
                      + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
                if not args.keep and name != "shared":
                    shutil.rmtree(art, ignore_errors=True)
            if eps_scores and k == 0:  # keep the best eps only, for this and the other pairs
                best = max(eps_scores, key=eps_scores.get)
                runs = [r for r in runs if r["variant"] != "baseline" or r.get("dbscan_eps") == best]
                VARIANTS["baseline"] = [*VARIANTS["baseline"], f"cluster.dbscan_eps={best}"]
                print(f"baseline: dbscan_eps {best} kept (last-round mAP by eps: "
                      + ", ".join(f"{e}: {100 * m:.1f}" for e, m in eps_scores.items()) + ")", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "dbscan_eps_tried": eps_scores,
                                    "overrides": args.overrides, "seconds": round(time.perf_counter() - t_all)},
                                   indent=1) + "\n")
    print(table(runs))
    print(f"wrote {args.out} ({time.perf_counter() - t_all:.0f} s)")


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
