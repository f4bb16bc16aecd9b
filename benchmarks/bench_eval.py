"""Evaluation speed and memory at real dataset sizes.

    python -m benchmarks.bench_eval [--quick] [--device auto|cpu|cuda]

1. ``rank_metrics`` against a per-query loop (full stable argsort per query, the same tie rule)
   on a Market-1501-sized distance matrix (3,368 x 15,913; 750 query ids, 751 gallery ids plus
   distractors, 6 cameras), both timed in this run; the results must agree.
2. ``evaluate_features`` at MSMT17 size (11,659 x 82,161, D=2048) in a fresh subprocess:
   wall time and peak resident memory (ru_maxrss), with the features' own size beside it.
Features are random but identity-structured (id centre + noise), so the rankings look like a
trained model's rather than like noise. ``--quick``: 1/4 of the queries and D=128 (CI smoke run).
Writes benchmarks/results/eval.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from calr_core.eval import evaluate_features, rank_metrics
from calr_core.io.atomic import atomic_write_text

RESULTS = Path(__file__).parent / "results"
MARKET = dict(Q=3368, G=15913, q_ids=750, g_ids=751, cams=6, distractors=2798)
MSMT = dict(Q=11659, G=82161, q_ids=3060, g_ids=3060, cams=15, distractors=0)


def loop_metrics(dist, q_pids, g_pids, q_camids, g_camids, max_rank=50) -> dict:
    """The usual per-query loop: full stable argsort of each row, drop junk, read the ranks."""
    aps, inps, cmc, n_valid = [], [], np.zeros(max_rank), 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        match = (g_pids[order] == q_pids[i])[~junk]
        if not match.any():
            continue
        n_valid += 1
        ranks = np.flatnonzero(match) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
        cmc[ranks[0] - 1:] += 1
    return {"mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)), "cmc": cmc / n_valid}


def world(size: dict, dim: int, seed: int = 0, q_frac: float = 1.0):
    """Identity-structured random features and ids of a dataset's query/gallery sizes."""
    rng = np.random.default_rng(seed)
    Q, G = int(size["Q"] * q_frac), size["G"]
    g_pids = np.concatenate([rng.integers(1, size["g_ids"] + 1, G - size["distractors"]),
                             np.zeros(size["distractors"], np.int64)])
    q_pids = rng.integers(1, size["q_ids"] + 1, Q)
    q_cams, g_cams = rng.integers(0, size["cams"], Q), rng.integers(0, size["cams"], G)
    centres = rng.standard_normal((size["g_ids"] + 1, dim), dtype=np.float32)
    noise = np.float32(1.6 * (dim / 128) ** 0.25)  # keeps mAP near 50 % whatever the dimension

    def feats(pids):
        out = np.empty((len(pids), dim), np.float32)
        for s in range(0, len(pids), 8192):  # chunked: no float64 (N, D) temporary
            p = pids[s:s + 8192]
            out[s:s + len(p)] = centres[p] + noise * rng.standard_normal((len(p), dim), dtype=np.float32)
        return out
    return feats(q_pids), feats(g_pids), q_pids, g_pids, q_cams, g_cams


def bench_market(dim: int, q_frac: float, device: str) -> dict:
    q, g, qp, gp, qc, gc = world(MARKET, dim, q_frac=q_frac)
    qn, gn = (torch.nn.functional.normalize(torch.from_numpy(x), dim=1) for x in (q, g))
    dist = (2 - 2 * qn @ gn.T).clamp_(min=0).numpy()  # (Q, G)
    rank_metrics(dist[:8], qp[:8], gp, qc[:8], gc)  # warm-up: numba's compiled-code cache
    t0 = time.perf_counter()
    fast = rank_metrics(dist, qp, gp, qc, gc)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = loop_metrics(dist, qp, gp, qc, gc)
    t_loop = time.perf_counter() - t0
    assert abs(fast["mAP"] - slow["mAP"]) < 1e-9 and np.allclose(fast["cmc"], slow["cmc"])
    row = {"Q": len(q), "G": len(g), "rank_metrics_s": t_fast, "loop_s": t_loop,
           "speedup": t_loop / t_fast, "mAP": fast["mAP"], "rank1": float(fast["cmc"][0])}
    if torch.cuda.is_available() and device != "cpu":
        d = torch.from_numpy(dist).cuda()
        rank_metrics(d, qp, gp, qc, gc)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        rank_metrics(d, qp, gp, qc, gc)
        torch.cuda.synchronize()
        row["rank_metrics_cuda_s"] = time.perf_counter() - t0
    return row


def msmt_child(dim: int, q_frac: float, device: str) -> None:
    """Runs in a fresh process: prints one JSON line with time and peak memory."""
    q, g, qp, gp, qc, gc = world(MSMT, dim, q_frac=q_frac)
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = evaluate_features(q, g, qp, gp, qc, gc, device=device)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out = {"Q": len(q), "G": len(g), "dim": dim, "seconds": time.perf_counter() - t0,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_eval_mb": base_mb, "features_mb": (q.nbytes + g.nbytes) / 2**20,
           "mAP": res["mAP"], "rank1": float(res["cmc"][0]),
           "device": "cuda" if (device != "cpu" and torch.cuda.is_available()) else "cpu"}
    if out["device"] == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--msmt-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, default=2048, help=argparse.SUPPRESS)
    ap.add_argument("--q-frac", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.msmt_child:
        return msmt_child(args.dim, args.q_frac, args.device)
    dim, q_frac = (128, 0.25) if args.quick else (2048, 1.0)
    market = bench_market(128, q_frac, args.device)  # the distance matrix's D does not matter
    child = subprocess.run([sys.executable, "-m", "benchmarks.bench_eval", "--msmt-child",
                            "--dim", str(dim), "--q-frac", str(q_frac), "--device", args.device],
                           capture_output=True, text=True, check=True)
    msmt = json.loads(child.stdout.strip().splitlines()[-1])
    result = {"market_rank_metrics": market, "msmt_evaluate_features": msmt, "quick": args.quick,
              "torch_threads": torch.get_num_threads()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "eval.json", json.dumps(result, indent=2) + "\n")
    print("| benchmark | size | time (s) | reference loop (s) | speed-up | peak memory (MB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| rank_metrics, Market | {market['Q']} x {market['G']} | {market['rank_metrics_s']:.2f} | "
          f"{market['loop_s']:.2f} | {market['speedup']:.1f}x | |")
    print(f"| evaluate_features ({msmt['device']}), MSMT17 D={msmt['dim']} | {msmt['Q']} x {msmt['G']} | "
          f"{msmt['seconds']:.1f} | | | {msmt['peak_rss_mb']:.0f} (features {msmt['features_mb']:.0f}) |")


if __name__ == "__main__":
    main()
