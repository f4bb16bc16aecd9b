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
from calr_stages.cli import app

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
    assert res.exit_code == 2 and f"{lay.features(0)}: 1 feature row(s) hold NaN or inf (first: row 5" in res.output
    assert "`calr-stage extract --round 0`" in res.output
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


def _jpegs(root, ids, pid):
    """One real 32 x 16 JPEG per image id, coloured by identity."""
    from PIL import Image
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (N_IDS, 3))
    for name, p in zip(ids, pid):
        pixels = np.clip(colours[p] + rng.normal(0, 20, (32, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / name, quality=90)


def _wide(feats):
    """The blobs as 512-d features (ResNet-18's width), still L2-normalised."""
    return np.pad(feats, ((0, 0), (0, 512 - feats.shape[1])))


TRAIN = ["-S", "train.iters=2", "-S", "train.batch_size=8", "-S", "train.num_instances=2",
         "-S", "train.save_every=1", "-S", "train.workers=0"]


def _train_weights(lay, *extra):
    from calr_core.io import load_checkpoint
    lay.checkpoint(0).unlink(missing_ok=True)
    res = runner.invoke(app, ["train", "--round", "0", *TRAIN, *extra])
    assert res.exit_code == 0, res.output
    return load_checkpoint(lay.checkpoint(0))


def test_a_sorted_or_filtered_label_file_trains_by_image_id(world, tmp_path):
    import torch
    lay, feats, pid, cam, ids = world
    _jpegs(tmp_path, ids, pid)
    write_features(lay.features(0), ids, cam, _wide(feats))
    assert runner.invoke(app, ["cluster-global", "--round", "0", "--no-refine"]).exit_code == 0
    assert runner.invoke(app, ["init"]).exit_code == 0
    before = _train_weights(lay)
    pl = pd.read_parquet(lay.pseudo_labels(0))
    pl.sort_values(["label", "image_id"], ascending=[True, False]).to_parquet(lay.pseudo_labels(0))
    after = _train_weights(lay)  # docs/pipeline.md invites users to open, sort and save this file
    assert all(torch.equal(before["model"][k], v) for k, v in after["model"].items())
    assert torch.equal(before["memory"]["centroids"], after["memory"]["centroids"])
    # a filtered file: images it leaves out are not trained on, the others keep their features
    kept = pl[pl.image_id != ids[0]].sample(frac=1, random_state=0)
    kept.to_parquet(lay.pseudo_labels(0))
    assert _train_weights(lay)["memory"]["centroids"].shape == before["memory"]["centroids"].shape
    # a label file that names an image the features lack is refused by name
    pl.assign(image_id=pl.image_id.where(pl.index != 3, "stranger.jpg")).to_parquet(lay.pseudo_labels(0))
    res = runner.invoke(app, ["train", "--round", "0", *TRAIN])
    assert res.exit_code == 2 and f"{lay.pseudo_labels(0)}: 1 image id(s) not found" in res.output


def test_non_contiguous_cameras_cluster_and_train(world, tmp_path):
    """Training cameras [0, 6]: the camera head and the weights count them as 0 and 1."""
    lay, feats, pid, cam, ids = world
    _jpegs(tmp_path, ids, pid)
    cam6 = np.where(cam == 1, 6, 0)
    manifest = read_table("manifest", lay.manifest).assign(camid=cam6)
    write_table("manifest", manifest, lay.manifest, {"root": "."})
    write_features(lay.features(0), ids, cam6, _wide(feats))
    for c in (0, 6):
        m = cam6 == c
        write_features(lay.intra_features(c, 0), np.array(ids)[m], cam6[m], feats[m])
    params = (tmp_path / "params.yaml").read_text().replace("cameras: [0, 1]", "cameras: [0, 6]")
    (tmp_path / "params.yaml").write_text(params)
    for c in ("0", "6"):
        for cmd in (["cluster-intra", "--cam", c, "--round", "0"], ["select-local", "--cam", c]):
            res = runner.invoke(app, cmd)
            assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["cluster-global", "--round", "0"])
    assert res.exit_code == 0, res.output
    pl = read_table("pseudo_labels", lay.pseudo_labels(0))
    assert sorted(set(pl.camid)) == [0, 6]  # the file keeps the network's own camera ids
    np.testing.assert_allclose(pl.weight, np.log(1 + np.log(2)), rtol=1e-5)  # 2 cameras, 50/50
    assert runner.invoke(app, ["init"]).exit_code == 0
    state = _train_weights(lay, "-S", "train.camera_rounds=1")
    last = [v for k, v in state["camera_head"].items() if k.endswith("weight")][-1]
    assert last.shape[0] == 2  # one output per training camera


def test_rounds_and_cameras_params_yaml_does_not_schedule_are_refused_by_name(world):
    res = runner.invoke(app, ["cluster-intra", "--cam", "9", "--round", "0"])
    assert res.exit_code == 2 and "--cam 9: not a camera of params.yaml data.cameras [0, 1]" in res.output
    res = runner.invoke(app, ["train", "--round", "7"])
    assert res.exit_code == 2 and "--round 7: not a round of params.yaml rounds (ids [0])" in res.output
    res = runner.invoke(app, ["extract", "--cam", "1", "--round", "3"])
    assert res.exit_code == 2 and "--round 3: not a round of params.yaml intra.rounds (ids [0])" in res.output


def test_a_missing_input_names_the_command_that_writes_it(world):
    lay = world[0]
    res = runner.invoke(app, ["train", "--round", "0"])
    assert res.exit_code == 2 and "run `calr-stage cluster-global --round 0` first" in res.output
    lay.intra_features(1, 0).unlink()
    res = runner.invoke(app, ["cluster-intra", "--cam", "1", "--round", "0"])
    assert res.exit_code == 2 and "run `calr-stage extract --cam 1 --round 0` first" in res.output
    res = runner.invoke(app, ["select-local", "--cam", "1"])
    assert res.exit_code == 2 and "run `calr-stage cluster-intra --cam 1 --round 0` first" in res.output


def test_dbscan_with_refinement_is_refused(world):
    res = runner.invoke(app, ["cluster-global", "--round", "0", "--method", "dbscan"])
    assert res.exit_code == 2 and "set cluster.refine: false" in res.output
    assert not world[0].pseudo_labels(0).exists()
    res = runner.invoke(app, ["cluster-global", "--round", "0", "-S", "cluster.method=dbscan"])
    assert res.exit_code == 2 and "params.yaml: cluster.refine: true does nothing with cluster.method: dbscan" in res.output
    res = runner.invoke(app, ["cluster-global", "--round", "0", "--method", "dbscan", "--no-refine"])
    assert res.exit_code == 0, res.output


def test_round_defaults_to_the_latest_with_inputs_and_says_so(world, tmp_path, caplog):
    import logging
    lay, feats, pid, cam, ids = world
    params = (tmp_path / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params.replace(
        "rounds: [{id: 0, prev: init}]\nmodel", "rounds: [{id: 0, prev: init}, {id: 1, prev: round0}]\nmodel"))
    write_features(lay.features(1), ids, cam, feats)  # round 1's features, no labels yet
    with caplog.at_level(logging.INFO, logger="calr"):
        res = runner.invoke(app, ["cluster-global", "--no-refine"])
    assert res.exit_code == 0, res.output
    assert "round 1 (latest with features)" in caplog.text and lay.pseudo_labels(1).is_file()
    assert not lay.pseudo_labels(0).exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="calr"):
        res = runner.invoke(app, ["cluster-intra", "--cam", "1"])
    assert res.exit_code == 0 and "round 0 (latest with features)" in caplog.text
    res = runner.invoke(app, ["evaluate"])
    assert res.exit_code == 2 and "no round of params rounds has a trained checkpoint yet" in res.output
