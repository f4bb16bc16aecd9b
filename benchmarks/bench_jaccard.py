"""Speed and scale of the k-reciprocal Jaccard distance (calr_core.cluster.jaccard).

    python -m benchmarks.bench_jaccard [--quick]

1. At N=12,936 (Market-1501 train), D=2048, k1=30, k2=6: ``jaccard_distance`` vs one N x N
   float32 matmul, three ways (numpy ``x @ x.T``, which numpy turns into a symmetric syrk of half
   the flops; the general sgemm ``x @ y.T``; torch ``x @ x.T``), vs the dense loop-by-loop reference
   (tests/cluster/reference.py, given the same kNN list, whose time is included). After a warm-up,
   numpy's ``x @ x.T`` and ``jaccard_distance`` are timed in 5 interleaved pairs (medians, and
   the median and range of the per-pair ratio); the other products are the best of 3. The first
   call's numba compile (a one-off: numba caches it on disk) is reported apart.
2. Wall time and peak memory (VmHWM of a fresh subprocess; see _hwm_gb) from N=10k to 200k at D=128.
Data: Gaussian clusters on the sphere (~17 samples per identity, like Market-1501), so the
reciprocal sets are realistic. Threads: 2. Writes benchmarks/results/jaccard.json (--quick:
jaccard_quick.json).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
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


def best_of(fn, repeat: int = 3):
    """Output and the fastest (wall, cpu) of ``repeat`` calls, after one untimed warm-up call:
    the steady state, with page faults of first allocations and JIT loading excluded for both sides."""
    fn()
    runs = [timed(fn) for _ in range(repeat)]
    return runs[-1][0], min(r[1] for r in runs), min(r[2] for r in runs)


def general_products(x: np.ndarray) -> tuple[float, float]:
    """Best-of-3 wall time of the general N x N product: numpy sgemm ``x @ y.T`` (y a copy, so no
    syrk), and torch ``x @ x.T`` (torch.mm, as the reference code forms its distances)."""
    y, xt = x.copy(), torch.from_numpy(x)
    return best_of(lambda: x @ y.T)[1], best_of(lambda: xt @ xt.T)[1]


def speed(n: int, d: int, k1: int, k2: int, with_reference: bool, pairs_n: int = 5) -> dict:
    from tests.cluster.reference import reference_jaccard

    x = clustered_sphere(n, d)
    _, jit_s, _ = timed(lambda: jaccard_distance(x[:500].copy(), k1=k1, k2=k2))  # compile, or load numba's cache
    gemm_wall, torch_wall = general_products(x)
    knn_s = {b: best_of(lambda b=b: knn(x, k1, backend=b), repeat=1)[1] for b in ("blas", "faiss", "torch")}
    # numpy sees that x and x.T share memory and runs syrk (half the flops): the strictest yardstick.
    # This machine's speed drifts by +-15% over minutes, so the two are timed in interleaved pairs.
    x @ x.T, jaccard_distance(x, k1=k1, k2=k2)  # warm-up
    pairs = []
    for _ in range(pairs_n):
        _, mm_wall, mm_cpu = timed(lambda: x @ x.T)
        jac, j_wall, j_cpu = timed(lambda: jaccard_distance(x, k1=k1, k2=k2))
        pairs.append((mm_wall, j_wall, mm_cpu, j_cpu))
    mm_wall, j_wall, mm_cpu, j_cpu = (float(np.median(c)) for c in zip(*pairs))
    ratios = [j / m for m, j, *_ in pairs]
    row = {"N": n, "D": d, "k1": k1, "k2": k2, "jit_first_call_s": jit_s, "pairs": pairs,
           "matmul_s": mm_wall, "matmul_cpu_s": mm_cpu, "gemm_s": gemm_wall, "torch_mm_s": torch_wall,
           **{f"knn_{b}_s": t for b, t in knn_s.items()}, "jaccard_s": j_wall, "jaccard_cpu_s": j_cpu,
           "stored_per_row": jac.nnz / n, "ratio_to_matmul": float(np.median(ratios)),
           "ratio_to_matmul_range": [min(ratios), max(ratios)], "ratio_to_gemm": j_wall / gemm_wall,
           "ratio_to_torch_mm": j_wall / torch_wall}
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
          f"| matmul x @ x.T (numpy: syrk; median) | {s['matmul_s']:.2f} | {s['matmul_cpu_s']:.2f} |\n"
          f"| matmul x @ y.T (sgemm) / torch x @ x.T | {s['gemm_s']:.2f} / {s['torch_mm_s']:.2f} | |\n"
          f"| knn k1 (blas / faiss / torch) | {s['knn_blas_s']:.2f} / {s['knn_faiss_s']:.2f} / {s['knn_torch_s']:.2f} | |\n"
          f"| jaccard_distance (auto; median) | {s['jaccard_s']:.2f} | {s['jaccard_cpu_s']:.2f} |\n"
          f"| dense loop reference | {s['reference_s']:.2f} | {s['reference_cpu_s']:.2f} |\n\n"
          f"ratio to matmul {s['ratio_to_matmul']:.2f} (pairs {s['ratio_to_matmul_range'][0]:.2f}-"
          f"{s['ratio_to_matmul_range'][1]:.2f}; to sgemm {s['ratio_to_gemm']:.2f}, to torch {s['ratio_to_torch_mm']:.2f}), speed-up vs reference {s['speedup_vs_reference']:.1f}x, "
          f"max |diff| {s['max_abs_diff']:.2e}, {s['stored_per_row']:.0f} stored pairs per row\n", flush=True)
    print("| N (D=128) | wall s | cpu s | peak RSS GB | RSS before call GB | output GB | stored/row |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for size in sizes:
        r = scale(size, 128)
        result["scale"].append(r)
        print(f"| {size} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_gb']:.2f} | "
              f"{r['before_call_rss_gb']:.2f} | {r['output_gb']:.2f} | {r['stored_per_row']:.0f} |", flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    out = RESULTS.with_name("jaccard_quick.json") if args.quick else RESULTS  # a smoke run keeps the real figures
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nload average {result['load_avg_start']:.1f} -> {result['load_avg_end']:.1f}; wrote {out}")


if __name__ == "__main__":
    main()
