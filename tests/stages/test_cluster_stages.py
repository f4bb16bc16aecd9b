"""`cluster-intra`, `select-local`, `cluster-global` and `train` on hand-made artifacts."""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calr_core.io import read_table, write_features, write_table
from calr_core.paths import Layout
from stages.cli import app

runner = CliRunner()
N_IDS, PER_CAM, CAMS = 8, 4, 2


def _blobs(seed=0, spread=0.05):
    """N_IDS identities x CAMS cameras x PER_CAM images: tight blobs, one per identity."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_IDS, 32))
    pid = np.repeat(np.arange(N_IDS), CAMS * PER_CAM)
    cam = np.tile(np.repeat(np.arange(CAMS), PER_CAM), N_IDS)
    f = centres[pid] + spread * rng.standard_normal((len(pid), 32))
    return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32), pid, cam


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    feats, pid, cam = _blobs()
    ids = [f"img{i:03d}.jpg" for i in range(len(pid))]
    lay = Layout()
    write_table("manifest", pd.DataFrame({"image_id": ids, "path": ids, "camid": cam, "split": "train",
                                          "pid": pid}), lay.manifest, {"root": "."})
    (tmp_path / "params.yaml").write_text(
        "data: {cameras: [0, 1]}\nintra: {k1: 5, k2: 2, n_clusters: 8, rounds: [{id: 0, prev: init}]}\n"
        "cluster: {k1: 6, k2: 2}\nrounds: [{id: 0, prev: init}]\n"
        "model: {arch: resnet18, weights: none, height: 32, width: 16}\n")
    for c in range(CAMS):
        m = cam == c
        write_features(lay.intra_features(c, 0), np.array(ids)[m], cam[m], feats[m])
    write_features(lay.features(0), ids, cam, feats)
    return lay, feats, pid, cam, ids


def test_phase1_then_global_clustering_recover_the_identities(world):
    lay, feats, pid, cam, ids = world
    for c in range(CAMS):
        assert runner.invoke(app, ["cluster-intra", "--cam", str(c), "--round", "0"]).exit_code == 0
        res = runner.invoke(app, ["select-local", "--cam", str(c)])
        assert res.exit_code == 0, res.output
        local = read_table("local_labels", lay.local_labels(c))
        truth = pid[cam == c]
        # tight blobs: local clusters are exactly the identities inside the camera
        assert len(set(zip(local.local_label, truth))) == N_IDS == local.local_label.nunique()
    res = runner.invoke(app, ["cluster-global", "--round", "0"])
    assert res.exit_code == 0, res.output
    pl = pd.read_parquet(lay.pseudo_labels(0))
    assert pl.image_id.tolist() == ids
    assert len(set(zip(pl.label, pid))) == N_IDS == pl.label.nunique()  # one cluster per identity
    # reference pivot rule: the highest-index member whose density beats the mean over all N
    assert not pl.refined.any() and 1 <= pl.is_pivot.sum() <= N_IDS
    assert (pl.density[pl.is_pivot] > pl.density.mean()).all()
    for _, members in pl.groupby("label"):
        above = members.index[members.density > pl.density.mean()]
        assert members.is_pivot.sum() == (len(above) > 0) and (len(above) == 0 or members.is_pivot[above.max()])
    np.testing.assert_allclose(pl.weight, np.log(1 + np.log(2)), rtol=1e-5)  # 2 cameras, 50/50
    summary = json.loads(lay.cluster_summary(0).read_text())
    assert summary["clusters"] == N_IDS and summary["refined"]["pairwise_f"] == 1.0


def test_nan_features_fail_with_one_line(world):
    lay, feats, pid, cam, ids = world
    feats = feats.copy()
    feats[5, 3] = np.nan  # a file written by someone else's tool: our writer refuses NaN
    col = pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel()), feats.shape[1])
    pq.write_table(pa.table({"image_id": ids, "camid": pa.array(cam, pa.int32()), "feature": col}),
                   lay.features(0))
    res = runner.invoke(app, ["cluster-global", "--round", "0", "--no-refine"])
    assert res.exit_code == 2 and "features: row 5 contains NaN or inf" in res.output
    assert not lay.pseudo_labels(0).exists()


def test_too_few_images_for_k1(world):
    res = runner.invoke(app, ["cluster-intra", "--cam", "0", "--round", "0", "-S", "intra.k1=40"])
    assert res.exit_code == 2 and "camera has 32 images, not more than intra.k1=40" in res.output


def test_no_cluster_is_a_warning_and_a_well_formed_artifact_then_training_refuses(world):
    lay, feats, pid, cam, ids = world
    eye = np.eye(len(ids), 512, dtype=np.float32)  # orthogonal features: no edge, all singletons
    write_features(lay.features(0), ids, cam, eye)
    res = runner.invoke(app, ["cluster-global", "--round", "0", "--no-refine"])
    assert res.exit_code == 0 and "found no cluster" in res.output
    pl = read_table("pseudo_labels", lay.pseudo_labels(0))
    assert (pl.label == -1).all() and len(pl) == len(ids)
    (lay.root / "phase2" / "init").mkdir(parents=True)
    res = runner.invoke(app, ["init"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--round", "0"])
    assert res.exit_code == 2 and "no cluster" in res.output
