"""What the DAG costs besides its compute, on a minimal run of the paper-sized schedule.

    python -m benchmarks.bench_overhead [--cams 3] [--intra-rounds 40] [--rounds 50]

1. Start costs (medians of 5): a bare Python, `import torch`, `calr-stage --help`.
2. A minimal run (tiny world, 1 iteration per round) of the paper-sized schedule: the paper's
   is 6 cameras x 20 intra rounds + 50 rounds; the tiny world has 3 cameras, so the default is
   3 x 40 intra rounds + 50 rounds, the same number of rounds of each kind. `dvc repro` is
   timed stage by stage (DVC's "Running stage" lines); each stage's command is timed by a
   `calr-stage` wrapper first on PATH (start to exit of the real command), and DVC's own share
   is the difference. Then the no-op `dvc repro` of the finished project, and `dvc status`.
Writes benchmarks/results/overhead.json and prints tables.
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


def median_seconds(cmd: list[str], env: dict | None = None, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def chain(n: int) -> list[dict]:
    return [{"id": i, "prev": "init" if i == 0 else f"round{i - 1}"} for i in range(n)]


def timing_wrapper(folder: Path, log: Path) -> None:
    """``folder``/calr-stage: runs the real one and appends its start and end times to ``log``."""
    wrapper = folder / "calr-stage"
    wrapper.write_text(f"#!/bin/sh\nt0=$(date +%s.%N)\n{BIN / 'calr-stage'} \"$@\"\nrc=$?\n"
                       f"echo \"$t0 $(date +%s.%N)\" >> {log}\nexit $rc\n")
    wrapper.chmod(0o755)


def command_runs(log: Path) -> list[float]:
    """Seconds of each calr-stage run the wrapper logged, in order."""
    return [float(b) - float(a) for a, b in (line.split() for line in log.read_text().splitlines())]


def per_kind(times: dict[str, float]) -> dict[str, dict]:
    kinds: dict[str, list[float]] = {}
    for stage, secs in times.items():
        kinds.setdefault(kind(stage), []).append(secs)
    return {k: {"stages": len(v), "mean_s": round(statistics.mean(v), 3), "total_s": round(sum(v), 1)}
            for k, v in sorted(kinds.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cams", type=int, default=3)  # the tiny world has 3 cameras
    ap.add_argument("--intra-rounds", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=50)
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
    with tempfile.TemporaryDirectory(prefix="calr-overhead-") as tmp, \
            tempfile.TemporaryDirectory(prefix="calr-wrapper-") as wrap:
        repo, log = Path(tmp), Path(wrap) / "runs.log"
        timing_wrapper(Path(wrap), log)
        env, dvc = make_project(repo, p)
        env["PATH"] = f"{wrap}{os.pathsep}{env['PATH']}"
        run(dvc + ["config", "cache.type", "hardlink"], repo, env)  # ~175 checkpoints: don't copy them
        t0 = time.perf_counter()
        _, times, _ = repro(repo, env, dvc)
        total = time.perf_counter() - t0
        commands = command_runs(log)
        lock_bytes = (repo / "dvc.lock").stat().st_size
        t0 = time.perf_counter()
        out = run(dvc + ["repro"], repo, env)
        noop = time.perf_counter() - t0
        assert "Running stage" not in out
        t0 = time.perf_counter()
        run(dvc + ["status"], repo, env)
        status = time.perf_counter() - t0
    assert len(commands) == len(times), f"{len(commands)} logged runs for {len(times)} stages"
    n = len(commands)
    result = {"machine": f"{os.cpu_count()} CPU cores", "start_costs_s": starts,
              "dag": {"stages": len(times), "cams": args.cams, "intra_rounds": args.intra_rounds,
                      "rounds": args.rounds, "repro_s": round(total, 1), "noop_repro_s": round(noop, 1),
                      "status_s": round(status, 1), "dvc_lock_bytes": lock_bytes,
                      "commands_s": round(sum(commands), 1), "dvc_own_s": round(total - sum(commands), 1)},
              "stage_s": per_kind(times), "command_s": per_kind(dict(zip(times, commands))),
              "dvc_own_s_by_quarter": [round(sum(times[s] for s in list(times)[q * n // 4:(q + 1) * n // 4])
                                             - sum(commands[q * n // 4:(q + 1) * n // 4]), 1) for q in range(4)]}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["dag"]), flush=True)
    print("| stage kind | stages | mean s a stage (DVC's clock) | mean s of its command |")
    print("|---|---|---|---|")
    for k, v in result["stage_s"].items():
        print(f"| {k} | {v['stages']} | {v['mean_s']} | {result['command_s'][k]['mean_s']} |")


if __name__ == "__main__":
    main()
