"""Speed and scale of the k-reciprocal Jaccard distance (calr_core.cluster.jaccard).

    python -m benchmarks.bench_jaccard [--quick]

1. At N=12,936 (Market-1501 train), D=2048, k1=30, k2=6: ``jaccard_distance`` vs one N x N
   float32 matmul (features @ features.T) vs the dense loop-by-loop reference
   (tests/cluster/reference.py, given the same kNN list, whose time is included).
2. Wall time and peak memory (VmHWM of a fresh subprocess; see _hwm_gb) from N=10k to 200k at D=128.
Data: Gaussian clusters on the sphere (~17 samples per identity, like Market-1501), so the
reciprocal sets are realistic. Threads: 2. Writes benchmarks/results/jaccard.json.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from calr_core.cluster.jaccard import jaccard_distance  # noqa: E402
from calr_core.cluster.knn import knn  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "jaccard.json"


def clustered_sphere(n: int, d: int, per_id: float = 17.2, spread: float = 1.0, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit rows: identity centres on the sphere plus isotropic noise of norm ~spread."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, round(n / per_id)), d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, len(centres), n)]
    x += (spread / np.sqrt(d)) * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def speed(n: int, d: int, k1: int, k2: int, with_reference: bool) -> dict:
    from tests.cluster.reference import reference_jaccard

    x = clustered_sphere(n, d)
    _, mm_wall, mm_cpu = timed(lambda: x @ x.T)
    _, f_wall, _ = timed(lambda: knn(x, k1, backend="faiss"))
    _, t_wall, _ = timed(lambda: knn(x, k1, backend="torch"))
    jac, j_wall, j_cpu = timed(lambda: jaccard_distance(x, k1=k1, k2=k2))
    row = {"knn_faiss_s": f_wall, "knn_torch_s": t_wall, "N": n, "D": d, "k1": k1, "k2": k2, "matmul_s": mm_wall, "matmul_cpu_s": mm_cpu,
           "jaccard_s": j_wall, "jaccard_cpu_s": j_cpu, "stored_per_row": jac.nnz / n,
           "ratio_to_matmul": j_wall / mm_wall}
    if with_reference:
        def ref():
            return reference_jaccard(x, k1=k1, k2=k2, rank=knn(x, k1)[1])
        dense, r_wall, r_cpu = timed(ref)
        full = np.ones((n, n), np.float32)
        c = jac.tocoo()
        full[c.row, c.col] = c.data
        row.update(reference_s=r_wall, reference_cpu_s=r_cpu, speedup_vs_reference=r_wall / j_wall,
                   max_abs_diff=float(np.abs(full - dense).max()))
    return row


def _hwm_gb() -> float:
    """Peak RSS of this process's own address space (VmHWM). ru_maxrss is not usable here: Linux
    carries the parent's peak into an exec'd child, so it reads the parent's 3+ GB reference run."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: best effort


def scale_child(n: int, d: int) -> None:
    """Run in a fresh process: one jaccard_distance call, report time and peak RSS as JSON."""
    x = clustered_sphere(n, d)
    base = _hwm_gb()
    jac, wall, cpu = timed(lambda: jaccard_distance(x, k1=30, k2=6))
    print(json.dumps({"N": n, "D": d, "seconds": wall, "cpu_s": cpu, "peak_rss_gb": _hwm_gb(),
                      "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "before_call_rss_gb": base, "stored_per_row": jac.nnz / n,
                      "output_gb": (jac.data.nbytes + jac.indices.nbytes + jac.indptr.nbytes) / 2**30}))


def scale(n: int, d: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_jaccard", "--child", str(n), str(d)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.child:
        return scale_child(*args.child)
    n, d = (3000, 256) if args.quick else (12936, 2048)
    sizes = [5000, 10000] if args.quick else [10000, 20000, 50000, 100000, 200000]
    result = {"threads": 2, "cpu": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
              "speed": speed(n, d, 30, 6, with_reference=True), "scale": []}
    s = result["speed"]
    print(f"| N={n} D={d} k1=30 k2=6 | wall s | cpu s |\n|---|---|---|\n"
          f"| matmul x @ x.T | {s['matmul_s']:.2f} | {s['matmul_cpu_s']:.2f} |\n"
          f"| knn k1 (faiss / torch) | {s['knn_faiss_s']:.2f} / {s['knn_torch_s']:.2f} | |\n"
          f"| jaccard_distance (auto) | {s['jaccard_s']:.2f} | {s['jaccard_cpu_s']:.2f} |\n"
          f"| dense loop reference | {s['reference_s']:.2f} | {s['reference_cpu_s']:.2f} |\n\n"
          f"ratio to matmul {s['ratio_to_matmul']:.2f}, speed-up vs reference {s['speedup_vs_reference']:.1f}x, "
          f"max |diff| {s['max_abs_diff']:.2e}, {s['stored_per_row']:.0f} stored pairs per row\n", flush=True)
    print("| N (D=128) | wall s | cpu s | peak RSS GB | RSS before call GB | output GB | stored/row |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for size in sizes:
        r = scale(size, 128)
        result["scale"].append(r)
        print(f"| {size} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_gb']:.2f} | "
              f"{r['before_call_rss_gb']:.2f} | {r['output_gb']:.2f} | {r['stored_per_row']:.0f} |", flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nload average {result['load_avg_start']:.1f} -> {result['load_avg_end']:.1f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
