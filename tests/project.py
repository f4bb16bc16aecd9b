"""A real git + DVC project of this repository's pipeline in a scratch folder, with small params:
the harness of the DAG tests and of benchmarks/faults.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Seconds on 2 cores for the whole DAG: a world of a few hundred 64 x 32 images, 2 + 2 rounds.
TINY = {
    "data": {"synth_size": "tiny", "cameras": [0, 1, 2]},
    "model": {"height": 64, "width": 32, "weights": "source"},
    "source": {"synth_size": "tiny", "synth_seed": 5, "iters": 4, "batch_size": 16, "num_instances": 4,
               "save_every": 2},
    "intra": {"rounds": [{"id": 0, "prev": "init"}, {"id": 1, "prev": "round0"}], "k1": 6,
              "k2": 2, "iters": 2, "batch_size": 8, "num_instances": 2},
    "cluster": {"k1": 8, "k2": 1},
    "train": {"iters": 3, "batch_size": 16, "num_instances": 4, "save_every": 2,
              "weights_from": 1, "camera_rounds": 1},
    "rounds": [{"id": 0, "prev": "init"}, {"id": 1, "prev": "round0"}],
}


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> str:
    """Run a command; fail with its output's tail unless it exits 0."""
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def make_project(dest: Path, overrides: dict | None = None) -> tuple[dict, list[str]]:
    """Copy the code, dvc.yaml and params.yaml (updated by ``overrides``, section by section)
    into ``dest``, then `git init` + `dvc init` + commit. Returns (env, dvc command prefix)."""
    for name in ("calr_core", "stages"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, dest)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "CALR_LOG": "WARNING"}
    dvc = [sys.executable, "-m", "dvc"]
    run(["git", "init", "-q"], dest, env)
    run(dvc + ["init", "-q"], dest, env)
    run(dvc + ["config", "core.analytics", "false"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-qm", "tiny"], dest, env)
    return env, dvc
