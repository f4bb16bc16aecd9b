import numpy as np
import pytest
import torch

from calr_core.eval import cmc_table, evaluate_features, pairwise_distance, rank_metrics


def loop_metrics(dist, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query reference: stable argsort (ties by gallery index), drop junk, read ranks."""
    aps, inps, cmc, n_valid = [], [], np.zeros(max_rank), 0
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        match = (g_pids[order] == q_pids[i])[~junk]
        if not match.any():
            continue
        n_valid += 1
        hits = 0
        precisions = []
        for rank, m in enumerate(match, start=1):
            if m:
                hits += 1
                precisions.append(hits / rank)
                last = rank
        aps.append(sum(precisions) / hits)
        inps.append(hits / last)
        first = int(np.argmax(match)) + 1
        for k in range(1, max_rank + 1):
            cmc[k - 1] += first <= k
    return {"mAP": np.mean(aps), "mINP": np.mean(inps), "cmc": cmc / n_valid, "n_queries": n_valid}


def random_case(rng, Q, G, n_ids, n_cams, ties):
    q_pids, g_pids = rng.integers(0, n_ids, Q), rng.integers(0, n_ids, G)
    q_cams, g_cams = rng.integers(0, n_cams, Q), rng.integers(0, n_cams, G)
    dist = rng.integers(0, 4, (Q, G)).astype(np.float64) if ties else rng.random((Q, G))
    return dist, q_pids, g_pids, q_cams, g_cams


def assert_same(got, ref):
    assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    assert got["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
    np.testing.assert_allclose(got["cmc"], ref["cmc"], atol=1e-12)
    assert got["n_queries"] == ref["n_queries"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [True, False])
def test_rank_metrics_matches_loop(seed, ties):
    rng = np.random.default_rng(seed)
    case = random_case(rng, Q=int(rng.integers(5, 40)), G=int(rng.integers(5, 80)), n_ids=6,
                       n_cams=3, ties=ties)
    max_rank = 100  # larger than the gallery
    got = rank_metrics(*case, max_rank=max_rank)
    assert_same(got, loop_metrics(*case, max_rank))
    assert got["cmc"].shape == (max_rank,)
    assert got["cmc"][-1] == 1.0


def test_many_ties_and_blocks():
    """Integer distances over > 256 queries (several stats blocks), every row full of ties."""
    rng = np.random.default_rng(7)
    case = random_case(rng, Q=600, G=300, n_ids=20, n_cams=4, ties=True)
    assert_same(rank_metrics(*case, max_rank=20), loop_metrics(*case, 20))


@pytest.mark.parametrize("ties", [True, False])
def test_the_gpu_path_gives_the_cpu_kernels_per_query_stats(ties):
    """The sorted-rows path CUDA takes, run on CPU tensors, against the compiled CPU pass."""
    from calr_core.eval.metrics import GalleryIndex, _query_stats, query_stats
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = (torch.as_tensor(a) for a in random_case(rng, 70, 150, 8, 3, ties))
    gal = GalleryIndex.build(gp, gc)
    for got, want in zip(query_stats(dist, qp, qc, gal), _query_stats(dist, qp, qc, gal)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_skipped_queries_and_known_values():
    # query 0: gallery = [same pid same cam (junk), other pid, same pid other cam]
    # query 1: its only same-pid entry is junk -> skipped
    dist = np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    q_pids, g_pids = np.array([1, 3]), np.array([1, 2, 1])
    q_cams, g_cams = np.array([0, 1]), np.array([0, 0, 1])
    g_pids2 = np.array([1, 2, 1])
    res = rank_metrics(dist, q_pids, g_pids2, q_cams, g_cams, max_rank=3)
    assert res["n_queries"] == 1 and res["n_skipped"] == 1
    assert res["mAP"] == pytest.approx(0.5)  # true match at kept rank 2
    assert res["mINP"] == pytest.approx(0.5)
    np.testing.assert_array_equal(res["cmc"], [0.0, 1.0, 1.0])
    table = cmc_table(res)
    assert set(table) == {"mAP", "Rank-1", "mINP"}  # a 3-long CMC has no Rank-5/10
    with pytest.raises(ValueError, match="no query has a true match"):
        rank_metrics(dist[1:], q_pids[1:], g_pids, q_cams[1:], g_cams)


def test_bad_input():
    dist = np.zeros((2, 3))
    ids2, ids3 = np.zeros(2, int), np.zeros(3, int)
    with pytest.raises(ValueError, match="g_pids"):
        rank_metrics(dist, ids2, ids2, ids2, ids3)
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.full((2, 3), np.nan), ids2, ids3, ids2, ids3 + 1)
    with pytest.raises(ValueError, match="q_pids"):
        rank_metrics(dist, np.zeros(2), ids3, ids2, ids3)
    with pytest.raises(ValueError, match="q_camids"):
        rank_metrics(dist, ids2, ids3, np.array(["a", "b"]), ids3)
    with pytest.raises(ValueError, match="max_rank"):
        rank_metrics(dist, ids2, ids3, ids2, ids3, max_rank=0)


def test_cmc_table_keys():
    rng = np.random.default_rng(1)
    res = rank_metrics(*random_case(rng, 30, 60, 5, 3, False))
    table = cmc_table(res)
    assert list(table) == ["mAP", "Rank-1", "Rank-5", "Rank-10", "mINP"]
    assert table["Rank-5"] == res["cmc"][4] and isinstance(table["Rank-1"], float)


def make_features(rng, Q, G, D, n_ids, n_cams):
    centres = rng.normal(size=(n_ids, D))
    q_pids, g_pids = rng.integers(0, n_ids, Q), rng.integers(0, n_ids, G)
    q = centres[q_pids] + 0.8 * rng.normal(size=(Q, D))
    g = centres[g_pids] + 0.8 * rng.normal(size=(G, D))
    return (q.astype(np.float32), g.astype(np.float32), q_pids, g_pids,
            rng.integers(0, n_cams, Q), rng.integers(0, n_cams, G))


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_evaluate_features_equals_full_matrix(chunk):
    rng = np.random.default_rng(3)
    q, g, qp, gp, qc, gc = make_features(rng, Q=70, G=300, D=16, n_ids=25, n_cams=4)
    full = pairwise_distance(q, g, device="cpu")
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(full, ((qn[:, None] - gn[None]) ** 2).sum(-1), atol=1e-5)
    ref = rank_metrics(full, qp, gp, qc, gc)
    got = evaluate_features(q, g, qp, gp, qc, gc, chunk=chunk)  # GPU when present
    assert got["mAP"] == ref["mAP"] and got["mINP"] == ref["mINP"]
    np.testing.assert_array_equal(got["cmc"], ref["cmc"])
    assert_same(got, loop_metrics(full, qp, gp, qc, gc, 50))
    assert 0.2 < got["mAP"] < 1.0  # informative features: far above chance


def test_evaluate_features_torch_input_and_errors():
    rng = np.random.default_rng(4)
    q, g, qp, gp, qc, gc = make_features(rng, Q=20, G=50, D=8, n_ids=6, n_cams=3)
    a = evaluate_features(torch.from_numpy(q), torch.from_numpy(g), qp, gp, qc, gc)
    b = evaluate_features(q.astype(np.float64), g, qp, gp, qc, gc)
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-9)
    with pytest.raises(ValueError, match="g_feats"):
        evaluate_features(q, g[:, :4], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="device"):
        evaluate_features(q, g, qp, gp, qc, gc, device="tpu")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_rank_metrics_on_torch_tensors(device):
    rng = np.random.default_rng(11)
    dist, qp, gp, qc, gc = random_case(rng, Q=50, G=120, n_ids=8, n_cams=3, ties=True)
    got = rank_metrics(torch.from_numpy(dist).to(device), torch.from_numpy(qp), gp, qc, gc)
    assert_same(got, loop_metrics(dist, qp, gp, qc, gc, 50))
