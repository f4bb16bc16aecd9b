"""What a stage costs besides its compute, and what the paper's 578-stage DAG pays for it.

    python -m benchmarks.bench_overhead [--cams 3] [--intra-rounds 10] [--rounds 10]

1. Start costs (medians of 5): a bare Python, `import torch`, `calr-stage --help` (the CLI,
   whose stage bodies import their libraries lazily).
2. A minimal run of a paper-shaped DAG on the tiny world, 1 iteration per round (phase 1 with
   ``--cams`` cameras x ``--intra-rounds`` rounds, phase 2 with ``--rounds`` rounds): `dvc repro`
   timed stage by stage, then the no-op `dvc repro` of the finished project, and `dvc status`.
   Per stage kind: the mean wall time, which at 1 iteration is almost all overhead (process
   start, imports, reading inputs, writing outputs, DVC's own bookkeeping).
3. The paper's schedule, 6 cameras x 20 intra rounds + 50 rounds = 578 stages, estimated from the
   per-kind means (the DAG has the same kinds; only their counts change).
Writes benchmarks/results/overhead.json and prints the tables.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.faults import kind, repro
from tests.project import TINY, make_project, run

RESULTS = Path(__file__).parent / "results" / "overhead.json"
BIN = Path(sys.executable).parent


def median_seconds(cmd: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def chain(n: int) -> list[dict]:
    return [{"id": i, "prev": "init" if i == 0 else f"round{i - 1}"} for i in range(n)]


def paper_counts(cams: int = 6, intra: int = 20, rounds: int = 50) -> dict[str, int]:
    """Stages of each kind in the DAG of that schedule (dvc.yaml's matrices)."""
    return {"synth": 1, "prepare": 1, "pretrain": 1, "init-intra": cams, "extract-intra": cams * intra,
            "cluster-intra": cams * intra, "train-intra": cams * intra, "select-local": cams, "init": 1,
            "evaluate-source": 1, "extract": rounds, "cluster-global": rounds, "train": rounds,
            "evaluate": rounds, "report": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cams", type=int, default=3)  # the tiny world has 3 cameras
    ap.add_argument("--intra-rounds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    starts = {"python": median_seconds([sys.executable, "-c", "pass"]),
              "import torch": median_seconds([sys.executable, "-c", "import torch"]),
              "calr-stage --help": median_seconds([str(BIN / "calr-stage"), "--help"])}
    print("start costs (s):", starts, flush=True)
    p = copy.deepcopy(TINY)
    p["data"] = {"synth_size": "tiny", "cameras": list(range(args.cams))}
    p["intra"] = {**p["intra"], "rounds": chain(args.intra_rounds), "iters": 1}
    p["rounds"] = chain(args.rounds)
    p["train"] = {**p["train"], "iters": 1, "weights_from": 5, "camera_rounds": 3}
    p["source"] = {**p["source"], "iters": 1}
    with tempfile.TemporaryDirectory(prefix="calr-overhead-") as tmp:
        repo = Path(tmp)
        env, dvc = make_project(repo, p)
        t0 = time.perf_counter()
        _, times, _ = repro(repo, env, dvc)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = run(dvc + ["repro"], repo, env)
        noop = time.perf_counter() - t0
        assert "Running stage" not in out
        t0 = time.perf_counter()
        run(dvc + ["status"], repo, env)
        status = time.perf_counter() - t0
    per_kind: dict[str, list[float]] = {}
    for stage, secs in times.items():
        per_kind.setdefault(kind(stage), []).append(secs)
    means = {k: round(statistics.mean(v), 2) for k, v in sorted(per_kind.items())}
    counts = paper_counts()
    paper = sum(means[k] * n for k, n in counts.items())
    result = {"machine": f"{os.cpu_count()} CPU cores", "start_costs_s": starts,
              "subset": {"stages": len(times), "cams": args.cams, "intra_rounds": args.intra_rounds,
                         "rounds": args.rounds, "repro_s": round(total, 1), "noop_repro_s": round(noop, 1),
                         "status_s": round(status, 1), "stage_sum_s": round(sum(times.values()), 1)},
              "mean_stage_s": means, "paper_stages": sum(counts.values()),
              "paper_minimal_run_estimate_s": round(paper), "paper_counts": counts}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["subset"]), flush=True)
    print("| stage kind | mean s (1 iteration) | in the paper DAG | estimate s |")
    print("|---|---|---|---|")
    for k, n in counts.items():
        print(f"| {k} | {means[k]} | {n} | {means[k] * n:.0f} |")
    print(f"| all | | {sum(counts.values())} | {paper:.0f} |")


if __name__ == "__main__":
    main()
