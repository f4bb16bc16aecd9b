import math

import numpy as np
import pytest

from calr_core.cluster.refine import camera_weights, decay, refine_labels, select_pivots

#                    0    1    2    3    4    5    6    7    8
LABELS = np.array([0, 0, 0, 1, 1, -1, 0, 1, 2])
DENSITY = np.array([5., 1., 4., 9., 9., 50., 4., 2., 1.])  # mean = 85 / 9 = 9.44...


def test_select_pivots_hand_made():
    # reference: mean density 9.44; only row 5 (an outlier) exceeds it, so no cluster has a pivot
    np.testing.assert_array_equal(select_pivots(LABELS, DENSITY), [-1, -1, -1])
    dens = DENSITY.copy()
    dens[5] = 10.0  # mean = 45 / 9 = 5: cluster 0 -> {} ; cluster 1 -> {3, 4} -> 4
    dens[0] = 6.0  # mean = 46 / 9 = 5.11: cluster 0 -> {0} -> 0
    np.testing.assert_array_equal(select_pivots(LABELS, dens), [0, 4, -1])
    # argmax: cluster 0 {5, 1, 4, 4} -> 0; cluster 1 {9, 9, 2} tie -> 3; cluster 2 -> 8
    np.testing.assert_array_equal(select_pivots(LABELS, DENSITY, rule="argmax"), [0, 3, 8])
    with pytest.raises(ValueError, match="rule"):
        select_pivots(LABELS, DENSITY, rule="median")


def test_select_pivots_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 12, 300)
    density = rng.integers(0, 6, 300).astype(float)  # many ties
    ref, arg = select_pivots(labels, density), select_pivots(labels, density, "argmax")
    for k in range(labels.max() + 1):
        members = [i for i in range(300) if labels[i] == k]
        above = [i for i in members if density[i] > density.mean()]
        assert ref[k] == (max(above) if above else -1)
        assert arg[k] == min(members, key=lambda i: (-density[i], i))


def test_decay():
    assert decay("constant", 7, 50) == 1.0
    assert decay("cosine", 0, 50) == 1.0
    assert decay("cosine", 50, 50) == pytest.approx(0.75)  # 0.5 * (1 + cos(pi / 3))
    assert decay("cosine", 25, 50) == pytest.approx(0.5 * (1 + math.cos(math.pi / 6)))
    with pytest.raises(ValueError, match="schedule"):
        decay("linear", 1, 5)


def test_refine_hand_made():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, -1, 0])
    camids = np.array([0, 0, 0, 1, 0, 2, 2, 2, 0, 0])
    local = np.array([7, 7, 3, 5, -1, 4, 4, 9, 3, 7])
    pivots = np.array([1, -1])  # cluster 0: pivot 1 (camera 0, local 7); cluster 1: no pivot
    refined, mask = refine_labels(labels, pivots, camids, local, p=1.0)
    # cluster 0, camera 0: rows 0, 1, 9 keep local 7; 2 (local 3) and 4 (local -1) dropped; 3 other camera
    np.testing.assert_array_equal(refined, [0, 0, -1, 0, -1, 1, 1, 1, -1, 0])
    np.testing.assert_array_equal(mask, [0, 0, 1, 0, 1, 0, 0, 0, 0, 0])
    # pivot with local label -1 gives no evidence
    refined, mask = refine_labels(labels, np.array([4, -1]), camids, local)
    np.testing.assert_array_equal(refined, labels)
    assert not mask.any()
    # p = 0 drops nothing
    assert not refine_labels(labels, pivots, camids, local, p=0.0)[1].any()


def test_refine_brute_force_and_seeded():
    rng = np.random.default_rng(1)
    n = 400
    labels, camids, local = rng.integers(-1, 15, n), rng.integers(0, 4, n), rng.integers(-1, 6, n)
    pivots = select_pivots(labels, rng.random(n), "argmax")
    pivots[3] = -1
    refined, mask = refine_labels(labels, pivots, camids, local, p=0.5, seed=3)
    cand = [i for i in range(n) if labels[i] >= 0 and pivots[labels[i]] >= 0
            and camids[i] == camids[pivots[labels[i]]] and local[pivots[labels[i]]] >= 0
            and local[i] != local[pivots[labels[i]]]]
    draws = np.random.default_rng(3).random(len(cand))
    expect = labels.copy()
    expect[[i for i, u in zip(cand, draws) if u < 0.5]] = -1
    np.testing.assert_array_equal(refined, expect)
    np.testing.assert_array_equal(mask, expect != labels)
    assert 0 < mask.sum() < len(cand)
    np.testing.assert_array_equal(refine_labels(labels, pivots, camids, local, p=0.5, seed=3)[0], refined)


def test_camera_weights_hand_made():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, -1, 2])
    camids = np.array([0, 1, 0, 1, 2, 2, 0, 1, 3])
    w = camera_weights(labels, camids, n_cams=4, n_clusters=4)
    # cluster 0: half/half -> H = log 2; cluster 1: one camera -> 0; cluster 2: half/half; 3: empty
    np.testing.assert_allclose(w, [math.log(1 + math.log(2)), 0, math.log(1 + math.log(2)), 0], rtol=1e-6)
    assert not np.signbit(w).any()  # one-camera and empty clusters weigh +0.0, never -0.0
    assert w.dtype == np.float32
    three = camera_weights(np.zeros(4, np.int64), np.array([0, 1, 2, 2]), 3)
    h = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    np.testing.assert_allclose(three, [math.log(1 + h)], rtol=1e-6)
    with pytest.raises(ValueError, match="camids"):
        camera_weights(labels, camids, n_cams=3)
