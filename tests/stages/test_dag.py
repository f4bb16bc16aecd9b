"""The whole DAG on a tiny synthetic world, in a real git + DVC repository in tmp."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from calr_core.config import load_params
from calr_core.paths import Layout

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

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


def _run(cmd, cwd, env):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("dag")
    for name in ("calr_core", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "CALR_LOG": "WARNING"}
    dvc = [sys.executable, "-m", "dvc"]
    _run(["git", "init", "-q"], repo, env)
    _run(dvc + ["init", "-q"], repo, env)
    _run(dvc + ["config", "core.analytics", "false"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny"], repo, env)
    out = _run(dvc + ["repro"], repo, env)
    return repo, env, dvc, out


def test_every_artifact_is_where_the_layout_says(repo):
    path, _, _, _ = repo
    p, lay = load_params(path / "params.yaml"), Layout(path / "artifacts")
    expected = [lay.manifest, lay.curves, lay.source_checkpoint, lay.metrics("source"),
                lay.ranked_list("init")]
    for cam in p.data.cameras:
        expected += [lay.intra_checkpoint(cam, "init"), lay.local_labels(cam)]
        for r in p.intra.rounds:
            expected += [lay.intra_features(cam, r.id), lay.intra_labels(cam, r.id),
                         lay.intra_checkpoint(cam, r.id)]
    for r in p.rounds:
        expected += [lay.features(r.id), lay.pseudo_labels(r.id), lay.cluster_summary(r.id),
                     lay.checkpoint(r.id), lay.ranked_list(r.id), lay.metrics(r.id)]
    missing = [str(e.relative_to(path)) for e in expected if not e.is_file()]
    assert not missing
    assert not (lay.root / ".recovery").exists() or not any((lay.root / ".recovery").iterdir())


def test_pseudo_labels_open_in_pandas_and_are_consistent(repo):
    path = repo[0]
    pl = pd.read_parquet(path / "artifacts/phase2/round1/pseudo_labels.parquet")
    assert list(pl.columns) == ["image_id", "camid", "global_label", "label", "is_pivot",
                                "density", "weight", "refined"]
    manifest = pd.read_parquet(path / "artifacts/manifest.parquet")
    assert sorted(pl.image_id) == sorted(manifest[manifest.split == "train"].image_id)
    # refinement only ever turns labels into outliers; pivots are never removed
    changed = pl.label != pl.global_label
    assert (pl.label[changed] == -1).all() and (changed == pl.refined).all()
    assert not (pl.is_pivot & pl.refined).any()


def test_metrics_are_read_by_dvc(repo):
    path, env, dvc, _ = repo
    shown = json.loads(_run(dvc + ["metrics", "show", "--json"], path, env))
    flat = json.dumps(shown)
    for key in ("mAP", "Rank-1", "mINP", "pl_pairwise_f"):
        assert key in flat
    m = json.loads((path / "artifacts/metrics/round1.json").read_text())
    assert 0 <= m["mAP"] <= 1 and 0 <= m["Rank-1"] <= 1 and m["round"] == 1
    curves = pd.read_csv(path / "artifacts/plots/curves.csv")
    assert curves["round"].tolist() == [-1, 0, 1]  # the start model (direct transfer) first
    source = json.loads((path / "artifacts/metrics/source.json").read_text())
    assert source["round"] == "source" and set(source) == set(m)  # a round's keys
    assert source["pl_pairwise_f"] is None and 0 <= source["mAP"] <= 1


def test_both_phases_start_from_the_pretrained_source_model(repo):
    import torch

    from calr_core.model.state import load_model
    path = repo[0]
    lay = Layout(path / "artifacts")
    src = torch.load(lay.source_checkpoint, weights_only=False)
    assert src["kind"] == "source" and src["resolved_params"]["source"]["synth_seed"] == 5
    for ckpt in (lay.checkpoint("init"), lay.intra_checkpoint(0, "init")):
        model = load_model(ckpt).state_dict()
        assert all(torch.equal(v, src["model"][k]) for k, v in model.items())


def test_second_repro_is_a_no_op_and_lr_change_reruns_only_training_onwards(repo):
    path, env, dvc, _ = repo
    out = _run(dvc + ["repro"], path, env)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in out
    status = _run(dvc + ["status", "--json"], path, env)
    assert json.loads(status) == {}
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["train"]["lr"] = 0.0001
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(_run(dvc + ["status", "--json"], path, env)))
    assert stale, "changing train.lr must invalidate training"
    assert stale == {f"train@rnd{r}" for r in range(2)}, stale  # phase 1 does not read train.lr
