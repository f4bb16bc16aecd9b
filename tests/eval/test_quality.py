from itertools import combinations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from calr_core.eval import label_quality


def brute(pred, true):
    """Pair loops over images with a known identity, conventions of the module docstring."""
    keep = true >= 0
    pred, true = pred[keep], true[keep]
    n = len(pred)
    tp = pp = tt = 0
    for i, j in combinations(range(n), 2):
        same_c = pred[i] == pred[j] != -1
        same_t = true[i] == true[j]
        tp += same_c and same_t
        pp += same_c
        tt += same_t
    bp, br = [], []
    for i in range(n):
        members = [i] if pred[i] == -1 else [j for j in range(n) if pred[j] == pred[i]]
        same = sum(true[j] == true[i] for j in members)
        if pred[i] != -1:
            bp.append(same / len(members))
        br.append(same / sum(true == true[i]))
    ratio = lambda a, b: a / b if b else 0.0
    f = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0
    p, r = ratio(tp, pp), ratio(tp, tt)
    bcp, bcr = (np.mean(bp) if bp else 0.0), np.mean(br)
    singles = pred.copy()
    singles[pred == -1] = 10_000 + np.arange((pred == -1).sum())
    return {"nmi": normalized_mutual_info_score(true, singles), "ari": adjusted_rand_score(true, singles),
            "pairwise_precision": p, "pairwise_recall": r, "pairwise_f": f(p, r),
            "bcubed_precision": bcp, "bcubed_recall": bcr, "bcubed_f": f(bcp, bcr),
            "n_clusters": len(set(pred[pred != -1].tolist())), "n_outliers": int((pred == -1).sum()),
            "n_images": n}


@pytest.mark.parametrize("seed", range(8))
def test_matches_pair_loops(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    true = rng.integers(-1, 8, n)  # -1: unknown identity
    true[0] = 3
    pred = rng.integers(-1, 6, n) * int(rng.integers(1, 5))  # sparse label values, outliers
    pred[pred < -1] = -1
    got, ref = label_quality(pred, true), brute(pred, true)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key


def test_perfect_and_all_outliers():
    true = np.array([0, 0, 1, 1, 1, 2])
    perfect = label_quality(true + 10, true)
    assert perfect["pairwise_f"] == perfect["bcubed_f"] == pytest.approx(1.0)
    assert perfect["nmi"] == pytest.approx(1.0) and perfect["n_clusters"] == 3
    none = label_quality(np.full(6, -1), true)
    assert none["pairwise_precision"] == 0.0 and none["pairwise_recall"] == 0.0
    assert none["n_outliers"] == 6 and none["n_clusters"] == 0
    # dropping the impure member raises precision; dropping a pure one costs recall
    pred = np.array([0, 0, 0, 1, 1, 2])
    impure, pure = pred.copy(), pred.copy()
    impure[2] = pure[3] = -1
    a, b, c = label_quality(pred, true), label_quality(impure, true), label_quality(pure, true)
    assert (a["pairwise_precision"], b["pairwise_precision"]) == (0.5, 1.0)
    assert a["pairwise_recall"] == b["pairwise_recall"] == 0.5 and c["pairwise_recall"] == 0.25
    assert c["bcubed_recall"] < a["bcubed_recall"] - 0.1


def test_bad_input():
    with pytest.raises(ValueError, match="pred"):
        label_quality(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="pred"):
        label_quality(np.array([0, -2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="true"):
        label_quality(np.array([0, 1]), np.array([0.5, 1.0]))
