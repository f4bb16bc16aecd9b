"""calr_core.labelling: the two labelling steps, per camera (docs/method.md "Phase 1: intra-camera training")
and global + refinement + weights (docs/method.md "Phase 2: inter-camera training"), checked against
plain loops written here."""
import math
import re

import numpy as np
import pandas as pd
import pytest

from calr_core.labelling import (
    best_round,
    class_weights,
    cluster_camera,
    cluster_global,
    gather_local_labels,
    summarize,
)
from tests.cluster.reference import reference_jaccard


def blobs(n_blobs: int = 6, per: int = 20, d: int = 32, noise: float = 0.05, seed: int = 0):
    """(N, d) float32 L2-normalised rows around orthonormal centres, in shuffled order, and the
    (N,) blob of each row."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((d, n_blobs)))[0].T  # (n_blobs, d) orthonormal
    truth = np.repeat(np.arange(n_blobs), per)
    x = centres[truth] + noise * rng.standard_normal((len(truth), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(len(truth))
    return x[perm].astype(np.float32), truth[perm]


def same_partition(a, b) -> bool:
    """Brute force: i and j share a label in ``a`` exactly when they share one in ``b``."""
    n = len(a)
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(n) for j in range(i + 1, n))


def refines(fine, coarse) -> bool:
    """Brute force: every pair together in ``fine`` is together in ``coarse``."""
    n = len(fine)
    return all(coarse[i] == coarse[j] for i in range(n) for j in range(i + 1, n) if fine[i] == fine[j])


def brute_silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of (b - a) / max(a, b); 0 for a sample alone in its cluster."""
    n = len(labels)
    scores = []
    for i in range(n):
        own = [j for j in range(n) if labels[j] == labels[i] and j != i]
        if not own:
            scores.append(0.0)
            continue
        a = sum(float(dist[i, j]) for j in own) / len(own)
        b = min(sum(float(dist[i, j]) for j in range(n) if labels[j] == other)
                / sum(1 for j in range(n) if labels[j] == other)
                for other in set(labels.tolist()) - {labels[i]})
        scores.append((b - a) / max(a, b))
    return sum(scores) / n


# ----------------------------------------------------------------------------- best_round


def rounds(scores):
    return [pd.DataFrame({"image_id": ["a", "b"], "local_label": [0, r], "silhouette": [s, s]})
            for r, s in enumerate(scores)]


@pytest.mark.parametrize("scores,best", [([0.2, 0.5, 0.1, 0.4], 1),
                                         ([0.2, 0.5, 0.1, 0.5], 1),  # tie: the earliest
                                         ([-0.3, -0.1, -0.1, -0.2], 1),
                                         ([0.1, 0.1, 0.1], 0),
                                         ([0.0, 0.3, 0.7], 2),
                                         ([0.4], 0)])
def test_best_round_highest_silhouette_earliest_on_ties(scores, best):
    tables = rounds(scores)
    assert best_round(tables) is tables[best]


def test_best_round_empty_or_nan():
    with pytest.raises(ValueError):
        best_round([])
    with pytest.raises(ValueError, match="silhouette: NaN in round 1"):  # argmax would pick it
        best_round(rounds([0.2, float("nan"), 0.1]))


# ----------------------------------------------------------------------------- class_weights


def test_class_weights_against_loop():
    pseudo = pd.DataFrame({"label": [1, -1, 0, 1, 4, 3, 0, 3, -1],  # outlier weights must not count
                           "weight": [0.5, 0.9, 0.2, 0.5, 0.0, 0.7, 0.2, 0.7, 0.3]})
    expect = [0.0] * (max(pseudo.label) + 1)  # cluster 2 has no member: weight 0
    for label, weight in zip(pseudo.label, pseudo.weight):
        if label >= 0:
            expect[label] = weight
    got = class_weights(pseudo)
    assert got.dtype == np.float32 and got.shape == (5,)
    np.testing.assert_allclose(got, np.array(expect, np.float32), rtol=0, atol=0)


# ----------------------------------------------------------------------------- gather_local_labels


def test_gather_local_labels_aligns_by_image_id():
    image_ids = pd.Series([f"c{i % 3}/img{i:02d}.jpg" for i in range(14)])
    rng = np.random.default_rng(3)
    covered = {0: [0, 3, 6, 9, 12], 1: [1, 4, 7, 10], 2: [2, 5, 8]}  # 11 and 13: no table
    tables = []
    for cam, rows in covered.items():
        t = pd.DataFrame({"image_id": image_ids[rows].to_numpy(), "local_label": rng.integers(0, 3, len(rows))})
        tables.append(t.iloc[rng.permutation(len(t))].reset_index(drop=True))  # shuffled rows
    expect = {}
    for t in tables:
        for image_id, local in zip(t.image_id, t.local_label):
            expect[image_id] = local
    got = gather_local_labels(tables, image_ids, ["cam0.csv", "cam1.csv", "cam2.csv"])
    assert got.shape == (14,)
    assert got.tolist() == [expect.get(i, -1) for i in image_ids]
    assert got[11] == -1 and got[13] == -1
    # the same tables in another order give the same answer: position plays no part
    again = gather_local_labels(tables[::-1], image_ids, ["cam2.csv", "cam1.csv", "cam0.csv"])
    assert again.tolist() == got.tolist()


def test_gather_local_labels_unknown_image_names_the_file():
    image_ids = pd.Series(["a.jpg", "b.jpg", "c.jpg"])
    good = pd.DataFrame({"image_id": ["b.jpg", "a.jpg"], "local_label": [1, 0]})
    bad = pd.DataFrame({"image_id": ["c.jpg", "ghost.jpg"], "local_label": [0, 1]})
    with pytest.raises(ValueError, match=re.escape("labels/cam_7.csv")):
        gather_local_labels([good, bad], image_ids, ["labels/cam_3.csv", "labels/cam_7.csv"])


# ----------------------------------------------------------------------------- cluster_camera


def test_cluster_camera_recovers_blobs():
    x, truth = blobs()
    labels, score = cluster_camera(x, n_clusters=6)
    assert labels.shape == (120,) and len(np.unique(labels)) == 6 and (labels >= 0).all()
    assert same_partition(labels, truth)
    assert -1.0 <= score <= 1.0 and score > 0.6
    # the score is the silhouette of those labels on the (brute-force) Jaccard distance
    ref = reference_jaccard(x, k1=15, k2=4)
    np.fill_diagonal(ref, 0.0)
    assert score == pytest.approx(brute_silhouette(ref, labels), abs=1e-5)


@pytest.mark.parametrize("ratio", [5, 10])
def test_cluster_camera_default_count_is_n_over_ratio(ratio):
    x, truth = blobs(seed=1)
    labels, score = cluster_camera(x, ratio=ratio)
    assert len(np.unique(labels)) == 120 // ratio and (labels >= 0).all()
    assert refines(labels, truth)  # more clusters than blobs: each one inside a blob
    assert -1.0 <= score <= 1.0


@pytest.mark.parametrize("n", [15, 8])
def test_cluster_camera_too_few_images(n):
    x, _ = blobs()
    with pytest.raises(ValueError, match=re.escape("intra.k1")):
        cluster_camera(x[:n], k1=15)


# ----------------------------------------------------------------------------- cluster_global

COLUMNS = ["global_label", "label", "is_pivot", "density", "weight", "refined"]


def camera_world(seed=0):
    x, truth = blobs(n_blobs=6, per=20, seed=seed)
    camids = np.random.default_rng(seed + 10).integers(0, 3, len(x))
    return x, truth, camids


def run_global(x, camids, local, **kw):
    return cluster_global(x, camids, local, n_cams=3, rnd=3, n_rounds=50, method="infomap",
                          pivot_rule="argmax", decay_schedule="constant", **kw)


def brute_pivots(global_label, density) -> dict:
    """cluster -> member with the highest density, ties to the lowest index."""
    members = {}
    for i, k in enumerate(global_label):
        if k >= 0:
            members.setdefault(k, []).append(i)
    return {k: min(rows, key=lambda i: (-float(density[i]), i)) for k, rows in members.items()}


def brute_refine(global_label, pivots, camids, local):
    label, refined = list(global_label), [False] * len(global_label)
    for i, k in enumerate(global_label):
        if k < 0:
            continue
        q = pivots[k]
        if camids[i] == camids[q] and local[i] != local[q]:
            label[i], refined[i] = -1, True
    return label, refined


def brute_weights(label, camids, n_cams=3) -> list:
    out = []
    for i, k in enumerate(label):
        if k < 0:
            out.append(0.0)
            continue
        cams = [camids[j] for j in range(len(label)) if label[j] == k]
        shares = [cams.count(c) / len(cams) for c in range(n_cams) if cams.count(c)]
        out.append(math.log(1 + -sum(p * math.log(p) for p in shares)))
    return out


def hand_local_labels(global_label, pivots, camids, truth):
    """Local labels: the blob, except that in every cluster but the last, in the pivot's camera,
    one other member gets another local cluster and one gets none (-1), and one member in
    another camera gets another local cluster."""
    local = truth.astype(np.int64).copy()
    changed = []
    for k, q in sorted(pivots.items())[:-1]:
        same = [i for i in range(len(local)) if global_label[i] == k and camids[i] == camids[q] and i != q]
        other = [i for i in range(len(local)) if global_label[i] == k and camids[i] != camids[q]]
        assert len(same) >= 2 and other  # the data set-up gives every case something to do
        local[same[0]] = local[q] + 100
        local[same[1]] = -1
        local[other[0]] = local[other[0]] + 50
        changed += [same[0], same[1], other[0]]
    return local, changed


@pytest.mark.parametrize("how", ["hand", "random"])
def test_cluster_global_refines_against_brute_force(how):
    x, truth, camids = camera_world()
    plain = run_global(x, camids, None, refine=False)
    assert list(plain.columns) == COLUMNS and len(plain) == len(x)
    glob = plain.global_label.to_numpy()
    assert same_partition(glob, truth) and (glob >= 0).all()  # well separated: the blobs, no outliers
    pivots = brute_pivots(glob, plain.density.to_numpy())
    if how == "hand":
        local, changed = hand_local_labels(glob, pivots, camids, truth)
    else:  # random local cluster ids 0..2 in every camera: many disagreements
        local = np.random.default_rng(5).integers(0, 3, len(x))
    assert all(local[q] >= 0 for q in pivots.values())

    got = run_global(x, camids, local, refine=True)
    assert list(got.columns) == COLUMNS and len(got) == len(x)
    # refinement never moves or merges: the raw clustering and densities are those of refine=False
    assert got.global_label.tolist() == glob.tolist()
    np.testing.assert_array_equal(got.density.to_numpy(), plain.density.to_numpy())
    # exactly one pivot per cluster, the argmax-density member (ties: lowest index)
    assert sorted(np.flatnonzero(got.is_pivot.to_numpy()).tolist()) == sorted(pivots.values())
    assert got.is_pivot.tolist() == plain.is_pivot.tolist()

    label, refined = brute_refine(glob, pivots, camids, local)
    assert got.label.tolist() == label
    assert got.refined.tolist() == refined
    assert any(refined) and not all(refined)
    for i in range(len(x)):
        q = pivots[glob[i]]
        if camids[i] != camids[q]:
            assert got.label[i] == glob[i] and not got.refined[i]  # other cameras: untouched
    if how == "hand":
        last = max(pivots)  # the one cluster left consistent: nothing refined in it
        assert not got.refined[glob == last].any()
        assert set(np.flatnonzero(got.refined.to_numpy()).tolist()) < set(changed)

    weight = got.weight.to_numpy()
    assert got.weight.dtype == np.float32
    np.testing.assert_allclose(weight, brute_weights(label, camids), rtol=1e-6, atol=1e-7)
    assert (weight[np.array(label) < 0] == 0).all()
    for k in set(label) - {-1}:
        assert len(set(weight[np.array(label) == k].tolist())) == 1  # one weight per cluster


def test_cluster_global_without_refinement():
    x, truth, camids = camera_world(seed=1)
    local = np.random.default_rng(0).integers(0, 3, len(x))  # would refine plenty if used
    got = run_global(x, camids, local, refine=False)
    assert list(got.columns) == COLUMNS
    assert got.label.tolist() == got.global_label.tolist()
    assert not got.refined.any()
    assert got.is_pivot.sum() == got.global_label.max() + 1
    glob = got.global_label.to_numpy()
    np.testing.assert_allclose(got.weight.to_numpy(), brute_weights(glob.tolist(), camids), rtol=1e-6, atol=1e-7)


def test_cluster_global_dbscan_uses_its_own_settings():
    """The baseline: DBSCAN(eps, min_samples) on the Jaccard distance of (dbscan_k1, dbscan_k2),
    none of them Infomap's k1/k2; checked against scikit-learn on the dense reference distance."""
    from sklearn.cluster import DBSCAN
    x, truth, camids = camera_world(seed=1)
    for k1, k2, eps, ms in [(20, 6, 0.6, 4), (12, 3, 0.5, 9), (20, 6, 0.6, 30)]:
        got = cluster_global(x, camids, None, n_cams=3, rnd=0, n_rounds=50, method="dbscan", k1=99,
                             k2=99, dbscan_k1=k1, dbscan_k2=k2, dbscan_eps=eps, dbscan_min_samples=ms,
                             refine=False)
        want = DBSCAN(eps=eps, min_samples=ms, metric="precomputed").fit_predict(
            reference_jaccard(x, k1=k1, k2=k2))
        assert (got.global_label.to_numpy()[:, None] == got.global_label.to_numpy()[None]).tolist() \
            == (want[:, None] == want[None]).tolist()
        assert ((got.global_label < 0) == (want < 0)).all()


def test_cluster_global_outliers_get_weight_zero():
    x, truth, camids = camera_world(seed=2)
    stray = np.random.default_rng(7).standard_normal((3, x.shape[1])).astype(np.float32)
    stray /= np.linalg.norm(stray, axis=1, keepdims=True)  # 3 isolated points: outliers
    x2, cams2 = np.concatenate([x, stray]), np.concatenate([camids, [0, 1, 2]])
    local = np.concatenate([truth, [0, 0, 0]])
    got = run_global(x2, cams2, local, refine=True)
    out = got.label.to_numpy() < 0
    assert (got.global_label.to_numpy()[-3:] == -1).all() and out[-3:].all()
    assert (got.weight.to_numpy()[out] == 0).all() and not got.is_pivot[out].any()
    assert (got.weight.to_numpy()[~out] > 0).all()  # every blob spans several cameras


def test_cluster_global_bad_inputs():
    x, truth, camids = camera_world()
    with pytest.raises(ValueError):
        run_global(x, camids[:-1], truth, refine=True)
    with pytest.raises(ValueError):
        run_global(x, np.concatenate([camids, [0]]), truth, refine=False)
    with pytest.raises(ValueError):
        run_global(x, camids, truth[:-1], refine=True)
    with pytest.raises(ValueError, match="local labels"):
        run_global(x, camids, None, refine=True)


# ----------------------------------------------------------------------------- summarize


def pseudo_frame():
    return pd.DataFrame({
        "global_label": [0, 0, 0, 0, 1, 1, 1, -1, 2, 2, -1],
        "label":        [0, -1, 0, 0, 1, 1, -1, -1, 2, 2, -1],
        "is_pivot":     [True, False, False, False, False, True, False, False, False, False, False],
        "density":      np.arange(11, dtype=np.float32),
        "weight":       np.zeros(11, np.float32),
        "refined":      [False, True, False, False, False, False, True, False, False, False, False]})


def brute_pair_precision(pred, true) -> float:
    pairs = [(i, j) for i in range(len(pred)) for j in range(i + 1, len(pred)) if pred[i] >= 0 and pred[i] == pred[j]]
    return sum(true[i] == true[j] for i, j in pairs) / len(pairs)


def test_summarize_counts():
    got = summarize(pseudo_frame())
    assert got == {"images": 11, "clusters": 3, "outliers_raw": 2, "outliers": 4,
                   "removed_by_refinement": 2, "pivots": 2}


def test_summarize_quality_raw_and_refined():
    frame = pseudo_frame()
    pids = np.array([0, 5, 0, 0, 1, 1, 6, 7, 2, 2, 8])  # refinement dropped the two impostors
    got = summarize(frame, pids)
    assert isinstance(got["raw"], dict) and isinstance(got["refined"], dict)
    assert got["raw"]["n_outliers"] == 2 and got["refined"]["n_outliers"] == 4
    raw = brute_pair_precision(frame.global_label.tolist(), pids)
    refined = brute_pair_precision(frame.label.tolist(), pids)
    assert (raw, refined) == (0.5, 1.0)
    assert got["raw"]["pairwise_precision"] == pytest.approx(raw)
    assert got["refined"]["pairwise_precision"] == pytest.approx(refined)
    assert got["images"] == 11 and got["removed_by_refinement"] == 2


def test_class_weights_refuses_a_cluster_with_two_weights_or_a_nan():
    merged = pd.DataFrame({"label": [0, 0, 1, 1], "weight": [0.5, 0.5, 0.25, 0.5]})  # clusters merged by hand
    with pytest.raises(ValueError, match=r"labels.parquet: cluster 1 has more than one weight \(0.25, 0.5\)"):
        class_weights(merged, "labels.parquet")
    with pytest.raises(ValueError, match="weight nan for cluster 1"):
        class_weights(merged.assign(weight=[0.5, 0.5, np.nan, np.nan]))
    assert class_weights(pd.DataFrame({"label": [-1, -1], "weight": [0.0, 0.0]})).shape == (0,)
