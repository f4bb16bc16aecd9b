"""CALR against its Cluster-Contrast-style baseline, the ablations between them and the supervised
upper bound, on several seeds of synthetic worlds (`make compare`, `make compare-usl`); the
tuning grids and learning curves behind their settings.

    python -m benchmarks.compare [--setting uda|usl] [--seeds 1:7 2:8 3:9] [--variants ...]
        [--ablation-seeds ...] [-S section.key=value ...]
    python -m benchmarks.compare --tune baseline|calr [--setting ...]    (on the tuning seed 4:10)
    python -m benchmarks.compare --curves [--setting ...]                 (on the tuning seed 4:10)

A setting is the argument list of `calr-stage configure` that writes its params.yaml
(SETTINGS: `--preset demo` for UDA, `--preset demo-usl` for the paper's setting, USL from
ImageNet with no label anywhere). Each seed pair D:S renders the target world `data.synth_seed=D`
and, in UDA, pretrains on the source world `source.synth_seed=S`. Every variant of a seed starts
from the same model and the same phase-1 local labels. The stages run in-process, as the very
functions `dvc repro` calls (`calr-stage intra`, then `calr-stage round` for each round):

    baseline   DBSCAN on the Jaccard distance, no refinement, no cluster weights, no camera alignment
    infomap    + Infomap instead of DBSCAN
    refine     + camera-aware refinement
    weights    + camera-entropy cluster weights
    calr       + camera alignment (full CALR)
    supervised the true identities as labels, same rounds and iterations (upper bound)

**Every finished run is kept** in benchmarks/results/runs-<setting>.jsonl, one line each, keyed by
(variant, resolved params): seed, schedule and every knob are in the params, so a killed
comparison, grid or curve restarts at its first unfinished run and never retrains a finished
one (`--fresh` ignores what is kept). A run of R rounds also answers any shorter schedule of the
same params: rounds never look ahead. Inside a run, finished rounds are kept under --work.
The result files are assembled from the kept runs:

- compare[-usl].json: {configure, overrides, baseline, runs: [{variant, seed, mAP, rank1, pl_f,
  nmi, round, source_mAP, rounds: [...]}, ...]} and a table of means +- std;
- baseline-tuning[-usl].json, calr-tuning[-usl].json: {tuning_seed, configure, grid: [{knobs...,
  mAP, pl_f, mAP_by_round}, ...], chosen: {...}}: the comparison reads both "chosen";
- curves[-usl].json and .png: mAP and pseudo-label F against phase-2 iterations.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from calr_core.config import Params

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS: dict[str, list[str]] = {"uda": ["--preset", "demo"], "usl": ["--preset", "demo-usl"]}
VARIANTS: dict[str, list[str]] = {
    "baseline": ["cluster.method=dbscan", "cluster.refine=false", "train.weights_from=-1",
                 "train.camera_rounds=0"],
    "infomap": ["cluster.refine=false", "train.weights_from=-1", "train.camera_rounds=0"],
    "refine": ["train.weights_from=-1", "train.camera_rounds=0"],
    "weights": ["train.camera_rounds=0"],
    "calr": [],
    "supervised": ["train.weights_from=-1", "train.camera_rounds=0"],
}
HEADLINE = ("baseline", "calr", "supervised")
TUNING_SEED = "4:10"
# Params that change where or how fast a run goes, never its numbers: not part of a run's key.
NOT_RESULTS = {"data": ("root", "cache_mb"), "extract": ("workers", "device"),
               "train": ("workers", "device", "save_every"), "source": ("save_every",)}
# What the world, the start model and phase 1 depend on: one shared start per value of these.
SHARED = ("data", "model", "source", "extract", "intra")


def baseline_overrides(g: dict) -> list[str]:
    return [f"cluster.dbscan_k1={g['k1']}", f"cluster.dbscan_k2={g['k2']}",
            f"cluster.dbscan_eps={g['eps']}", f"cluster.dbscan_min_samples={g['min_samples']}"]


def knob_overrides(g: dict) -> list[str]:
    """CALR's tuned knobs ("section.key": value) as overrides."""
    return [f"{k}={v}" for k, v in g.items() if "." in k]


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_key(variant: str, p) -> tuple[str, int]:
    """(key, rounds): the key of (variant, params) apart from how many chained rounds there are."""
    from calr_core.presets import chain
    tree = dataclasses.asdict(p)
    for section, keys in NOT_RESULTS.items():
        for k in keys:
            tree[section].pop(k, None)
    rounds = tree.pop("rounds")
    n = len(rounds)
    if rounds != chain(n):
        tree["rounds"] = rounds
    return digest({"variant": variant, "params": tree}), n


class Store:
    """The kept runs: one JSON line each, appended once the run is finished. A line cut by a kill
    is ignored (that run simply runs again)."""

    def __init__(self, path: Path, fresh: bool = False):
        self.path, self.fresh, self.runs = path, fresh, []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    self.runs.append(json.loads(line))
                except json.JSONDecodeError:
                    print(f"{path}: a cut line ignored (its run runs again)", flush=True)

    def find(self, key: str, n: int) -> dict | None:
        """The kept run of this key with at least ``n`` rounds, cut to its first ``n``."""
        if self.fresh:
            return None
        for r in self.runs:
            if r["key"] == key and len(r["rounds"]) >= n:
                return {**r, "rounds": r["rounds"][:n]}
        return None

    def add(self, record: dict) -> None:
        """Keep ``record``: the whole file rewritten atomically (a kill leaves the old one or the new)."""
        from calr_core.io.atomic import atomic_write_text
        self.runs.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self.runs))


_RENDERED: dict[str, Path] = {}


def configure(args: list[str], work: Path) -> Path:
    """The params.yaml that `calr-stage configure ARGS` writes (rendered once a process, as the
    presets may change between processes)."""
    key = digest(args)
    if key not in _RENDERED:
        folder = work / "params"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}-{os.getpid()}.yaml"
        subprocess.run([str(Path(sys.executable).with_name("calr-stage")), "configure", *args,
                        "--params", str(path)], check=True, stdout=subprocess.DEVNULL)
        _RENDERED[key] = path
    return _RENDERED[key]


def round_record(artifacts: Path, rnd: int) -> dict:
    """A finished round's metrics, cluster summary and the cameras its trained clusters span."""
    import pandas as pd
    m = json.loads((artifacts / "metrics" / f"round{rnd}.json").read_text())
    summary = artifacts / "phase2" / f"round{rnd}" / "cluster_summary.json"
    if summary.is_file():
        m["summary"] = json.loads(summary.read_text())
    labels = artifacts / "phase2" / f"round{rnd}" / "pseudo_labels.parquet"
    if labels.is_file():
        t = pd.read_parquet(labels, columns=["label", "camid"])
        spans = t[t.label >= 0].groupby("label").camid.nunique()
        m["camera_spans"] = [int((spans == k).sum()) for k in range(1, t.camid.nunique() + 1)]
    return m


def phase1_quality(artifacts: Path) -> list[dict]:
    """Phase 1's selected local labels per camera against the true identities."""
    import pandas as pd

    from calr_core.data.manifest import train_pids
    from calr_core.eval.quality import label_quality
    from calr_core.io import read_table
    manifest = read_table("manifest", artifacts / "manifest.parquet")
    out = []
    for f in sorted((artifacts / "phase1" / "selected").glob("cam*.parquet")):
        t = pd.read_parquet(f)
        true = train_pids(manifest, t.image_id)
        q = label_quality(t.local_label.to_numpy(), true)
        out.append({"camid": int(t.camid.iloc[0]), "round": int(t["round"].iloc[0]),
                    "clusters": int(q["n_clusters"]), "identities": int(len(np.unique(true[true >= 0]))),
                    "pairwise_precision": q["pairwise_precision"], "pairwise_recall": q["pairwise_recall"]})
    return out


class Runner:
    """Runs (variant, seed, configure args, overrides) requests, answering from the store first."""

    def __init__(self, setting: str, configure_args: list[str], overrides: list[str], work: Path, store: Store):
        self.setting, self.configure_args, self.overrides = setting, configure_args, overrides
        self.work, self.store = work, store

    def params(self, seed: str, extra: list[str], configure_extra: list[str] = ()):
        from calr_core.config import load_params
        target, source = seed.split(":")
        path = configure([*self.configure_args, *configure_extra], self.work)
        world = self.work / self.setting / f"world{target}"
        common = [*self.overrides, f"data.synth_seed={target}", f"source.synth_seed={source}",
                  f"data.root={world}", *extra]
        return path, common, load_params(path, common)

    def run(self, variant: str, seed: str, extra: list[str] = (), configure_extra: list[str] = (),
            name: str = "") -> dict:
        """The kept run, or a new one (kept before it is returned)."""
        extra = [*extra, *VARIANTS[variant]]  # the variant's own overrides win
        path, common, p = self.params(seed, extra, list(configure_extra))
        key, n = run_key(variant, p)
        found = self.store.find(key, n)
        if found:
            return found
        t0 = time.perf_counter()
        art = self.work / self.setting / key
        done = art / "metrics" / "source.json"
        if not done.is_file():  # a fresh copy of the shared start (a cut copy is redone)
            shared = self.shared(path, common, p, seed)
            tmp = art.with_name(art.name + ".tmp")
            shutil.rmtree(art, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(shared, tmp)
            tmp.replace(art)
        rounds = self.phase2(art, path, common, p, supervised=variant == "supervised")
        seconds = time.perf_counter() - t0
        record = {"key": key, "variant": variant, "seed": seed, "name": name or variant,
                  "configure": [*self.configure_args, *configure_extra], "overrides": common[len(self.overrides):],
                  "source_mAP": json.loads(done.read_text())["mAP"],
                  "phase1": phase1_quality(art) if p.cluster.refine else None,
                  "seconds": round(seconds, 1), "rounds": rounds, "commit": commit()}
        self.store.add(record)
        print(f"[{seed}] " + describe(record), flush=True)
        shutil.rmtree(art, ignore_errors=True)
        return record

    def shared(self, path: Path, common: list[str], p, seed: str) -> Path:
        """synth, prepare, pretrain, phase 1, the phase-2 start model and its evaluation (once
        per seed and shared params)."""
        from calr_stages import evaluate, init, prepare, pretrain, rounds, synth
        from calr_stages._common import call
        tree = dataclasses.asdict(p)
        base = self.work / self.setting / f"shared-{digest([seed, {s: tree[s] for s in SHARED}])}"
        if (base / "metrics" / "source.json").is_file():
            return base
        t0 = time.perf_counter()
        shutil.rmtree(base, ignore_errors=True)
        kw = dict(artifacts=base, params=path, set_=common)
        call(synth.synth, out=Path(p.data.root), params=path, set_=common)
        for fn in (prepare.prepare, pretrain.pretrain):
            call(fn, **kw)
        for cam in p.data.cameras:
            call(rounds.intra, cam=cam, **kw)
        call(init.init, **kw)
        call(evaluate.evaluate, source=True, **kw)
        source = json.loads((base / "metrics" / "source.json").read_text())
        print(f"[{seed}] start model: mAP {100 * source['mAP']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        return base

    def phase2(self, art: Path, path: Path, common: list[str], p, supervised: bool) -> list[dict]:
        """Every phase-2 round not finished yet under ``art``; the rounds' records."""
        from calr_stages import rounds
        from calr_stages._common import call
        from calr_stages.cluster_global import cluster_global
        kw = dict(artifacts=art, params=path, set_=common)
        for r in p.rounds:
            if (art / "metrics" / f"round{r.id}.json").is_file():
                continue  # finished before a kill: its checkpoint is there too
            if supervised:
                for step in rounds.ROUND_STEPS:
                    true_labels(art, r.id) if step is cluster_global else call(step, rnd=r.id, **kw)
            else:
                call(rounds.round_, rnd=r.id, **kw)
        return [round_record(art, r.id) for r in p.rounds]


def true_labels(artifacts: Path, rnd: int) -> None:
    """Pseudo labels = the true identities (the supervised upper bound; no clustering)."""
    import pandas as pd

    from calr_core.data.manifest import train_pids
    from calr_core.io import read_features, read_table, write_table
    from calr_core.paths import Layout
    layout = Layout(artifacts)
    frame, _ = read_features(layout.features(rnd))
    pids = train_pids(read_table("manifest", layout.manifest), frame.image_id)
    label = np.unique(pids, return_inverse=True)[1].astype(np.int32)
    n = len(frame)
    write_table("pseudo_labels", pd.DataFrame({
        "image_id": frame.image_id, "camid": frame.camid, "global_label": label, "label": label,
        "is_pivot": np.zeros(n, bool), "density": np.zeros(n, np.float32),
        "weight": np.zeros(n, np.float32), "refined": np.zeros(n, bool)}),
        layout.pseudo_labels(rnd), {"round": rnd})


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def row(record: dict) -> dict:
    """A kept run as a row of compare.json: its last round's figures."""
    rounds = record["rounds"]
    last = rounds[-1]
    return {"variant": record["variant"], "seed": record["seed"], "mAP": last["mAP"], "rank1": last["Rank-1"],
            "pl_f": last.get("pl_pairwise_f"), "nmi": last.get("pl_nmi"), "round": last["round"],
            "source_mAP": record["source_mAP"], "seconds": record["seconds"], "name": record["name"],
            "phase1": record.get("phase1"), "rounds": rounds}


def describe(record: dict) -> str:
    rounds = record["rounds"]
    line = f"{record['name']}: mAP by round " + ", ".join(f"{100 * r['mAP']:.1f}" for r in rounds)
    if rounds[0].get("pl_pairwise_f") is not None:
        line += "; pseudo-label F " + ", ".join(f"{100 * r['pl_pairwise_f']:.1f}" for r in rounds)
    return line + f" ({record['seconds']:.0f} s)"


SCORE_ROUNDS = 3  # a grid scores a run by its last rounds' mean mAP: one round moves by +-5 points


def grid_entry(knobs: dict, record: dict) -> dict:
    last = record["rounds"][-1]
    score = float(np.mean([r["mAP"] for r in record["rounds"][-SCORE_ROUNDS:]]))
    return {**knobs, "score": score, "mAP": last["mAP"], "pl_f": last.get("pl_pairwise_f"),
            "mAP_by_round": [r["mAP"] for r in record["rounds"]], "seconds": record["seconds"]}


# The baseline's grid: k1 x eps, then k2 and min_samples at the best; an edge that wins is
# extended one step at a time until the best is inside the grid.
BASELINE_GRID = {"k1": (15, 20, 30), "eps": (0.3, 0.4, 0.5, 0.6), "k2": (3, 6, 10), "min_samples": (1, 2, 4, 8)}
BASELINE_START = {"k1": 15, "k2": 6, "eps": 0.4, "min_samples": 4}
BASELINE_EXTEND = {"eps": (0.1, 0.9, 0.1), "min_samples": (1, 16, None), "k2": (2, 20, None), "k1": (5, 60, None)}
# CALR's knobs, one at a time from the preset's values (coordinate descent, in this order), each
# at the best value of those before it; an edge that wins is extended one step. A second pass
# re-sweeps the knobs the first one moved, over their neighbours.
CALR_GRID = {"cluster.eps": (0.4, 0.5, 0.6, 0.7), "cluster.k1": (10, 15, 20, 30), "cluster.k2": (2, 4, 8),
             "intra.ratio": (3, 5, 8), "train.camera_loss": ("clean", "reference"),
             "train.camera_rounds": (1, 3, 6), "train.weights_from": (2, 5, 10),
             "model.pooling": ("gem", "avg"), "train.bn_group": (0, 16), "train.memory": ("mean", "hard")}
# Where CALR's descent starts: the paper's values, calr_core.config's defaults.
CALR_START = {k: getattr(getattr(Params(), k.split(".")[0]), k.split(".")[1]) for k in CALR_GRID}
# train.bn_group 16: BatchNorm over a quarter of the batch, as the paper's 256 images on 4 GPUs (64 a GPU);
# statistics over 64 images are what every run at batch 64 already has.


def neighbours(values: tuple, best) -> tuple:
    """``best`` with the values next to it in ``values`` (its order, as listed or sorted)."""
    ordered = sorted(values) if all(isinstance(v, (int, float)) for v in values) else list(values)
    if best not in ordered:
        return (best,)
    i = ordered.index(best)
    return tuple(ordered[max(0, i - 1): i + 2])


def step_out(values: tuple, best, bounds: tuple | None):
    """The next value past a winning edge of ``values`` (None: inside, or no room)."""
    if bounds is None or not isinstance(best, (int, float)) or isinstance(best, bool):
        return None
    lo, hi, step = bounds
    ordered = sorted(values)
    if best == ordered[0]:  # halving (or a step) down, but no further than the bound
        nxt = best - step if step else (max(lo, best // 2) if isinstance(best, int) else None)
        return round(nxt, 3) if nxt is not None and nxt >= lo and nxt not in values else None
    if best == ordered[-1]:
        nxt = best + step if step else min(hi, best * 2)
        return round(nxt, 3) if nxt <= hi and nxt not in values else None
    return None


def tune(runner: Runner, which: str, seed: str) -> dict:
    grid: list[dict] = []

    def score(knobs: dict) -> float:
        for g in grid:
            if all(g.get(k) == v for k, v in knobs.items()):
                return g["score"]
        if which == "baseline":
            record = runner.run("baseline", seed, baseline_overrides(knobs),
                                name="baseline-" + "-".join(f"{k}{v}" for k, v in knobs.items()))
        else:
            record = runner.run("calr", seed, knob_overrides(knobs),
                                name="calr-" + "-".join(f"{k.split('.')[1]}{v}" for k, v in knobs.items()))
        grid.append(grid_entry(knobs, record))
        return grid[-1]["score"]

    def sweep(knobs: dict, key: str, values: tuple, bounds) -> dict:
        values = tuple(values)
        while True:
            best = max(values, key=lambda v: score({**knobs, key: v}))
            nxt = step_out(values, best, bounds)
            if nxt is None:
                return {**knobs, key: best}
            values = (*values, nxt)

    if which == "baseline":
        best = dict(BASELINE_START)
        for k1 in BASELINE_GRID["k1"]:
            for eps in BASELINE_GRID["eps"]:
                score({**best, "k1": k1, "eps": eps})
        g = max(grid, key=lambda g: g["score"])
        best = {k: g[k] for k in BASELINE_START}
        best = sweep(best, "eps", BASELINE_GRID["eps"], BASELINE_EXTEND["eps"])
        for key in ("k2", "min_samples", "k1"):
            best = sweep(best, key, BASELINE_GRID[key], BASELINE_EXTEND[key])
    else:
        best = dict(CALR_START)
        bounds = {"cluster.eps": (0.1, 0.9, 0.1), "cluster.k1": (5, 60, None), "cluster.k2": (1, 16, None),
                  "intra.ratio": (2, 16, None), "train.weights_from": (0, 40, None), "train.camera_rounds": (0, 40, None)}
        for key, values in CALR_GRID.items():
            best = sweep(best, key, values, bounds.get(key))
        # a second pass over the knobs the first one moved, each at the others' chosen values
        for key in [k for k in CALR_GRID if best[k] != CALR_START[k]]:
            best = sweep(best, key, neighbours(CALR_GRID[key], best[key]), bounds.get(key))
    chosen = max(grid, key=lambda g: g["score"])
    return {"tuning_seed": seed, "setting": runner.setting, "configure": runner.configure_args,
            "overrides": runner.overrides, "grid": grid,
            "chosen": {k: v for k, v in chosen.items() if k not in ("mAP_by_round", "seconds", "pl_f")}}


def curves(runner: Runner, seed: str, plan: dict) -> dict:
    """mAP and pseudo-label F against phase-2 iterations for each (name: variant, configure extra,
    overrides) of ``plan``."""
    out = []
    for name, (variant, configure_extra, extra) in plan.items():
        record = runner.run(variant, seed, extra, configure_extra, name=name)
        p = runner.params(seed, [*extra, *VARIANTS[variant]], configure_extra)[2]
        images = record["rounds"][0]["pl_n_images"]  # the world's training images
        per_pass = p.train.batch_size / images
        out.append({"name": name, "variant": variant, "configure": record["configure"], "overrides": extra,
                    "iters": p.train.iters, "passes_per_iteration": per_pass, "source_mAP": record["source_mAP"],
                    "phase1_passes": phase1_passes(p, images), "phase1": record.get("phase1"),
                    "rounds": [{k: r.get(k) for k in ("round", "mAP", "Rank-1", "pl_pairwise_f", "pl_n_clusters",
                                                      "pl_n_outliers", "camera_spans")} for r in record["rounds"]]})
    return {"tuning_seed": seed, "setting": runner.setting, "curves": out}


def phase1_passes(p, images: float) -> float:
    """Images seen per training image of a camera in phase 1 (``images``: the world's, all cameras)."""
    return len(p.intra.rounds) * p.intra.iters * p.intra.batch_size / (images / len(p.data.cameras))


def plot(result: dict, path: Path, chosen: float | None = None) -> None:
    """curves.png: mAP (solid) and pseudo-label F (dashed) against passes per training image;
    a dotted line at ``chosen`` passes."""
    from PIL import Image, ImageDraw
    W, H, L, B = 900, 520, 60, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75)]
    xmax = max(len(c["rounds"]) * c["iters"] * (c["passes_per_iteration"] or 0) for c in result["curves"]) or 1
    X = lambda x: L + (W - L - 230) * x / xmax
    Y = lambda y: H - B - (H - B - 20) * y
    d.line([(L, 20), (L, H - B), (W - 230, H - B)], fill="black")
    for t in range(0, 11, 2):
        d.text((L - 35, Y(t / 10) - 6), f"{10 * t}%", fill="black")
        d.line([(L, Y(t / 10)), (W - 230, Y(t / 10))], fill=(230, 230, 230))
    for t in range(0, int(xmax) + 1, 25):
        d.text((X(t) - 10, H - B + 8), f"{t}", fill="black")
    if chosen:  # the preset's phase-2 passes
        for y in range(20, H - B, 8):
            d.line([(X(chosen), y), (X(chosen), y + 3)], fill="black")
        d.text((X(chosen) + 4, 22), f"demo-usl: {chosen:.0f} passes", fill="black")
    d.text((L + 150, H - 20), "phase-2 passes per training image", fill="black")
    for i, c in enumerate(result["curves"]):
        col = colours[i % len(colours)]
        step = c["iters"] * (c["passes_per_iteration"] or 0)
        pts = [(X(0), Y(c["source_mAP"]))] + [(X((j + 1) * step), Y(r["mAP"])) for j, r in enumerate(c["rounds"])]
        d.line(pts, fill=col, width=2)
        f = [(X((j + 1) * step), Y(r["pl_pairwise_f"])) for j, r in enumerate(c["rounds"]) if r["pl_pairwise_f"] is not None]
        for a, b in zip(f[::2], f[1::2]):
            d.line([a, b], fill=col, width=1)
        d.line([(W - 220, 30 + 20 * i), (W - 195, 30 + 20 * i)], fill=col, width=2)
        d.text((W - 190, 24 + 20 * i), c["name"], fill="black")
    d.text((W - 220, 40 + 20 * len(result["curves"])), "solid: mAP; dashed: pseudo-label F", fill="black")
    img.save(path)


def grid_table(result: dict) -> str:
    """Markdown: each run of a grid in the order run, its knobs that vary, score and last mAP (%)."""
    grid = result["grid"]
    knobs = [k for k in grid[0] if k not in ("score", "mAP", "pl_f", "mAP_by_round", "seconds")
             and len({str(g[k]) for g in grid}) > 1]
    lines = ["| " + " | ".join(knobs) + " | mean mAP, last 3 rounds | last mAP |", "| --- " * (len(knobs) + 2) + "|"]
    for g in grid:
        lines.append("| " + " | ".join(str(g[k]) for k in knobs) + f" | {100 * g['score']:.1f} | {100 * g['mAP']:.1f} |")
    return "\n".join(lines)


def curve_table(result: dict, every: int = 3) -> str:
    """Markdown: each curve's mAP / pseudo-label F every few rounds, against passes per image."""
    cs = result["curves"]
    lines = ["| round | iterations | passes | " + " | ".join(c["name"] for c in cs) + " |",
             "| --- " * (3 + len(cs)) + "|"]
    n = max(len(c["rounds"]) for c in cs)
    for i in [*range(every - 1, n, every)]:
        c0 = cs[0]
        cells = [f"{100 * c['rounds'][i]['mAP']:.1f} / {100 * (c['rounds'][i]['pl_pairwise_f'] or 0):.1f}"
                 if i < len(c["rounds"]) else "" for c in cs]
        lines.append(f"| {i} | {(i + 1) * c0['iters']} | {(i + 1) * c0['iters'] * c0['passes_per_iteration']:.0f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def shared_knobs(overrides: list[str]) -> list[str]:
    """Of CALR's tuned knobs, those that are not CALR's own (the network and the memory): the
    baseline runs with them too."""
    return [o for o in overrides if o.startswith(("model.", "train.bn_group", "train.memory"))]


def chosen_file(path: Path) -> dict | None:
    return json.loads(path.read_text())["chosen"] if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=list(SETTINGS), default="uda",
                    help="uda: from the source model (the demo); usl: from ImageNet, no labels (the paper's)")
    ap.add_argument("--tune", choices=("baseline", "calr"), default=None, help="run a grid on the tuning seed")
    ap.add_argument("--curves", action="store_true", help="long-schedule learning curves on the tuning seed")
    ap.add_argument("--seeds", nargs="+", default=None, help="target:source world seeds (default 1:7 2:8 3:9)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--ablation-seeds", nargs="+", default=None,
                    help="run infomap/refine/weights on these seeds only (default: every seed)")
    ap.add_argument("--set", "-S", dest="overrides", action="append", default=[])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work",
                    help="where runs keep their artifacts while they run (default benchmarks/work)")
    ap.add_argument("--fresh", action="store_true", help="ignore kept runs: run everything again")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("CALR_LOG", "WARNING")
    suffix = "" if args.setting == "uda" else f"-{args.setting}"
    store = Store(RESULTS / f"runs-{args.setting}.jsonl", args.fresh)
    calr = chosen_file(RESULTS / f"calr-tuning{suffix}.json")
    tuned = knob_overrides({k: v for k, v in calr.items() if k != "mAP"}) if calr else []
    runner = Runner(args.setting, SETTINGS[args.setting], args.overrides, args.work, store)
    t0 = time.perf_counter()
    if args.tune:
        if args.tune == "baseline":  # the baseline's grid at CALR's tuned knobs that are not CALR's own
            runner.overrides = [*runner.overrides, *shared_knobs(tuned)]
        result = tune(runner, args.tune, (args.seeds or [TUNING_SEED])[0])
        out = args.out or RESULTS / f"{args.tune}-tuning{suffix}.json"
        print(grid_table(result))
        print(f"{args.tune} chosen: {result['chosen']}")
    elif args.curves:
        baseline = chosen_file(RESULTS / f"baseline-tuning{suffix}.json") or BASELINE_START
        # every schedule key written out, so that a later preset's schedule leaves these runs kept
        long = ["--rounds", "30", "-S", "train.iters=100", "-S", "train.weights_from=5", "-S", "train.camera_rounds=3",
                "-S", "cluster.eps=0.5", "-S", "cluster.k1=15"]  # the paper's values: the curves came before tuning
        plan = {"calr, phase 1 x5": ("calr", [*long, "--intra-rounds", "2", "-S", "intra.iters=20"], []),
                "calr, phase 1 x33": ("calr", [*long, "--intra-rounds", "5", "-S", "intra.iters=50"], []),
                "baseline": ("baseline", [*long, "--intra-rounds", "2", "-S", "intra.iters=20"],
                             baseline_overrides(baseline))}
        result = curves(runner, (args.seeds or [TUNING_SEED])[0], plan)
        out = args.out or RESULTS / f"curves{suffix}.json"
        p = runner.params(TUNING_SEED, [])[2]  # the setting's own schedule, marked on the plot
        images = p.train.batch_size / result["curves"][0]["passes_per_iteration"]
        plot(result, out.with_suffix(".png"), len(p.rounds) * p.train.iters * p.train.batch_size / images)
        print(curve_table(result))
    else:
        chosen = chosen_file(RESULTS / f"baseline-tuning{suffix}.json")
        runs = []
        for seed in args.seeds or ["1:7", "2:8", "3:9"]:
            for v in args.variants:
                if v not in HEADLINE and args.ablation_seeds and seed not in args.ablation_seeds:
                    continue
                knobs = [*shared_knobs(tuned), *baseline_overrides(chosen)] if v == "baseline" and chosen else tuned
                runs.append(row(runner.run(v, seed, knobs)))
        exact = [*SETTINGS[args.setting], *[a for o in tuned for a in ("-S", o)]]
        result = {"configure": exact, "overrides": args.overrides, "baseline": chosen,
                  "calr": calr, "ablation_seeds": args.ablation_seeds, "runs": runs}
        out = args.out or RESULTS / f"compare{suffix}.json"
        print(table(runs))
    result["seconds"] = round(time.perf_counter() - t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['seconds']} s this time)")


if __name__ == "__main__":
    main()
