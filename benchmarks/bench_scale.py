"""Global clustering at scale: the exact kNN against the approximate ones, 50k to 1M features.

    python -m benchmarks.bench_scale [--runs exact:50000 ivf:1000000 ...] [--demo]

Each run (index:N[:float16]) is a fresh subprocess: identity-structured unit-norm features of
D = 2048 (what ResNet-50 emits) are generated (not timed), then the kNN (k = 15) and Infomap on
its graph (``infomap_on_knn``) are timed, and the peak resident memory (ru_maxrss) recorded.
Recall@15 against the exact search is measured on 1,000 random queries by brute force; pairwise
F of the clusters against the generating identities. A float16 run keeps the features in
float16 (half the memory); its labels are compared with the float32 run of the same index and N.
``--demo``: raw-Infomap pairwise F of each index on the demo DAG's phase-2 features (artifacts/).
Results accumulate in benchmarks/results/scale.json (a run already there is kept unless
re-asked); a markdown table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "scale.json"
DIM, K = 2048, 15
DEFAULT_RUNS = ["exact:50000", "exact:100000", "ivf:50000", "ivf:100000", "ivf:200000",
                "ivf:200000:float16", "ivf:500000:float16", "ivf:1000000:float16",
                "hnsw:50000", "hnsw:100000", "hnsw:200000"]


def features(n: int, dtype=np.float32, dim: int = DIM, per_id: int = 20, groups: int = 1000,
             spread: float = 0.2, noise: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) unit-norm features and their ids: look-alike groups (clothing, viewpoint) of ids,
    an image = its id's centre + noise. Tuned so that about 90 % of an image's 15 nearest
    neighbours share its id and their cosine is near 0.6, as with a trained re-ID model, rather
    than the easy case of well-separated ids."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // per_id)
    group_c = rng.standard_normal((groups, dim), dtype=np.float32)
    id_c = group_c[rng.integers(0, groups, n_ids)]
    id_c += spread * rng.standard_normal(id_c.shape, dtype=np.float32)  # (n_ids, dim)
    ids = np.sort(rng.integers(0, n_ids, n))
    out = np.empty((n, dim), dtype)
    for a in range(0, n, 8192):
        f = id_c[ids[a:a + 8192]] + noise * rng.standard_normal((len(ids[a:a + 8192]), dim), dtype=np.float32)
        out[a:a + len(f)] = f / np.linalg.norm(f, axis=1, keepdims=True)
    return out, ids


def exact_top(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute force: the k most similar rows of each query (itself included), float32."""
    q = x[queries].astype(np.float32)  # (Q, D)
    sims = np.empty((len(q), len(x)), np.float32)
    for a in range(0, len(x), 65536):
        sims[:, a:a + 65536] = q @ x[a:a + 65536].astype(np.float32).T
    return np.argpartition(-sims, k, axis=1)[:, :k]


def child(index: str, n: int, dtype: str, labels_out: str) -> None:
    from calr_core.cluster.clusterers import infomap_on_knn
    from calr_core.cluster.knn import knn
    from calr_core.eval import label_quality

    x, ids = features(n, np.dtype(dtype))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    sims, idx = knn(x, K, index=index)
    t1 = time.perf_counter()
    labels = infomap_on_knn(sims, idx, eps=0.5, min_size=4).labels
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {"index": index, "n": n, "dtype": dtype, "knn_s": round(t1 - t0, 1),
           "infomap_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
           "peak_rss_gb": round(peak, 2), "rss_before_gb": round(rss0, 2),
           "features_gb": round(x.nbytes / 2**30, 2)}
    if index != "exact":
        queries = np.sort(np.random.default_rng(1).choice(n, 1000, replace=False))
        truth = exact_top(x, queries, K)
        out["recall"] = round(float(np.mean([len(set(a) & set(b)) / K for a, b in zip(idx[queries], truth)])), 4)
    q = label_quality(labels, ids)
    out.update(pairwise_f=round(q["pairwise_f"], 4), clusters=int(q["n_clusters"]),
               outliers=int(q["n_outliers"]), same_id_neighbours=round(float(
                   (ids[idx[:, 1:]] == ids[:, None]).mean()), 3))
    np.save(labels_out, labels)
    print(json.dumps(out), flush=True)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How far two labelings of the same images agree: the ARI with each outlier its own
    cluster, and the share of images with the same label number (1.0 only for identical
    clusterings; clusters are numbered by their lowest member, so one split or merge renumbers
    every later cluster: read the ARI)."""
    from sklearn.metrics import adjusted_rand_score

    def singletons(x):
        return np.where(x < 0, -1 - np.arange(len(x)), x)
    return {"same_labels": round(float((a == b).mean()), 4),
            "ari": round(float(adjusted_rand_score(singletons(a), singletons(b))), 4)}


def demo() -> dict:
    """Raw Infomap pairwise F of each kNN index on the demo's phase-2 features."""
    from calr_core.cluster.clusterers import infomap_cluster
    from calr_core.data.manifest import train_pids
    from calr_core.eval import label_quality
    from calr_core.io import read_features, read_table
    from calr_core.paths import Layout

    lay, out = Layout(), {}
    manifest = read_table("manifest", lay.manifest)
    for rnd in range(10):
        if not lay.features(rnd).is_file():
            break
        frame, feats = read_features(lay.features(rnd))
        pids = train_pids(manifest, frame.image_id)
        row = {"n": len(feats)}
        exact = infomap_cluster(feats, k=K).labels
        for index in ("exact", "ivf", "hnsw"):
            labels = exact if index == "exact" else infomap_cluster(feats.astype(np.float16), k=K, knn_index=index).labels
            row[f"{index}_pairwise_f"] = round(label_quality(labels, pids)["pairwise_f"], 4)
            row[f"{index}_same_labels"] = bool((labels == exact).all())
        out[f"round{rnd}"] = row
        print(f"demo round {rnd}: {row}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="*", default=DEFAULT_RUNS)
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        index, n, dtype, labels_out = args.child
        return child(index, int(n), dtype, labels_out)
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    result["machine"] = f"{os.cpu_count()} CPU cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB"
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            index, n, dtype = (run.split(":") + ["float32"])[:3]
            labels = Path(tmp) / f"{run.replace(':', '_')}.npy"
            proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--child", index, n, dtype,
                                   str(labels)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{run}: failed\n{proc.stderr[-2000:]}", flush=True)
                result["runs"][run] = {"failed": proc.stderr.strip().splitlines()[-1:]}
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            twin = Path(tmp) / f"{index}_{n}.npy"  # the float32 run of the same index and N
            if dtype == "float16" and twin.is_file():
                row["vs_float32"] = agreement(np.load(labels), np.load(twin))
            result["runs"][run] = row
            print(json.dumps(row), flush=True)
            RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    if args.demo:
        result["demo"] = demo()
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print("| index | N | dtype | kNN s | Infomap s | total s | peak GB | recall@15 | pairwise F |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["runs"].values():
        if "failed" not in r:
            print(f"| {r['index']} | {r['n']:,} | {r['dtype']} | {r['knn_s']} | {r['infomap_s']} | "
                  f"{r['total_s']} | {r['peak_rss_gb']} | {r.get('recall', 1.0)} | {r['pairwise_f']} |")


if __name__ == "__main__":
    main()
