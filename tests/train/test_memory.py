"""Cluster memory (docs/method.md "Phase 2: inter-camera training", step 8) against loop-based
hand computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from calr_core.train.memory import ClusterMemory


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    feats = _unit(rng.normal(size=(20, 8))).astype(np.float32)
    labels = np.array([0, 1, 2, -1, 3] * 4)
    return feats, labels


def test_centroids_are_normalised_member_means(data):
    feats, labels = data
    mem = ClusterMemory(torch.from_numpy(feats), torch.from_numpy(labels))
    for k in range(4):
        acc = np.zeros(8)
        for f, y in zip(feats, labels):
            if y == k:
                acc += f
        np.testing.assert_allclose(mem.centroids[k].numpy(), acc / np.linalg.norm(acc), atol=1e-6)
    assert "centroids" in mem.state_dict()


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_is_weighted_mean_cross_entropy(data, weighted):
    feats, labels = data
    mem = ClusterMemory(torch.from_numpy(feats), torch.from_numpy(labels), temp=0.05)
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(6, 8))).astype(np.float32)
    y = np.array([0, 0, 1, 3, 2, 3])
    w = np.array([0.5, 0.0, 1.2, 2.0]) if weighted else np.ones(4)
    num = den = 0.0
    cent = mem.centroids.numpy()
    for xi, yi in zip(x, y):
        logits = [float(xi @ c) / 0.05 for c in cent]
        lse = math.log(sum(math.exp(v) for v in logits))
        num += w[yi] * (lse - logits[yi])
        den += w[yi]
    loss = mem(torch.from_numpy(x), torch.from_numpy(y), torch.tensor(w, dtype=torch.float32) if weighted else None)
    assert loss.item() == pytest.approx(num / den, rel=1e-5)
    ref = F.cross_entropy(torch.from_numpy(x) @ mem.centroids.T / 0.05, torch.from_numpy(y),
                          weight=torch.tensor(w, dtype=torch.float32))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_all_zero_weights_give_zero_loss_not_nan(data):
    feats, labels = data
    mem = ClusterMemory(torch.from_numpy(feats), torch.from_numpy(labels))
    x = torch.from_numpy(feats[:2]).requires_grad_()
    loss = mem(x, torch.tensor([0, 1]), torch.zeros(4))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mode", ["mean", "hard"])
def test_momentum_update_matches_hand_computation(data, mode):
    feats, labels = data
    mem = ClusterMemory(torch.from_numpy(feats), torch.from_numpy(labels), momentum=0.1, mode=mode)
    expected = mem.centroids.numpy().astype(np.float64).copy()
    rng = np.random.default_rng(2)
    x = _unit(rng.normal(size=(9, 8)))
    y = np.array([2, 0, 2, 1, 2, 0, 3, 3, 2])
    if mode == "mean":
        for xi, yi in zip(x, y):  # in batch order, renormalising each time
            m = 0.1 * expected[yi] + 0.9 * xi
            expected[yi] = m / np.linalg.norm(m)
    else:
        before = expected.copy()
        for k in np.unique(y):
            members = [i for i in range(len(y)) if y[i] == k]
            worst = min(members, key=lambda i: x[i] @ before[k])
            m = 0.1 * before[k] + 0.9 * x[worst]
            expected[k] = m / np.linalg.norm(m)
    mem.update(torch.tensor(x, dtype=torch.float32), torch.from_numpy(y))
    np.testing.assert_allclose(mem.centroids.numpy(), expected, atol=1e-5)
    if mode == "mean":  # class 2 appears 4 times: the order matters, the last sample dominates
        assert expected[2] @ x[8] > 0.9


def test_bad_labels_are_clear_errors(data):
    feats, _ = data
    with pytest.raises(ValueError, match="no cluster"):
        ClusterMemory(torch.from_numpy(feats), torch.full((20,), -1))
    with pytest.raises(ValueError, match="consecutive"):
        ClusterMemory(torch.from_numpy(feats), torch.tensor([0, 2] * 10))
    with pytest.raises(ValueError, match="labels"):
        ClusterMemory(torch.from_numpy(feats), torch.zeros(5, dtype=torch.long))


def test_learned_mode_is_a_trained_scaled_cosine_classifier(data):
    feats, labels = data
    f, y = torch.from_numpy(feats), torch.from_numpy(labels)
    mem = ClusterMemory(f, y, temp=0.1, mode="learned")
    params = list(mem.parameters())
    assert len(params) == 1 and params[0] is mem.centroids  # trained by the optimiser
    with torch.no_grad():
        mem.centroids.mul_(torch.arange(1, 5).float()[:, None])  # unnormalised weights
    keep = y >= 0
    loss = mem(f[keep], y[keep])
    w = mem.centroids.detach().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)  # the classifier uses the weights' directions
    expected = 0.0
    for x, t in zip(feats[labels >= 0], labels[labels >= 0]):
        logits = [float(x @ w[k]) / 0.1 for k in range(4)]
        expected += -logits[t] + math.log(sum(math.exp(v) for v in logits))
    assert loss.item() == pytest.approx(expected / keep.sum().item(), rel=1e-5)
    loss.backward()
    assert mem.centroids.grad is not None and mem.centroids.grad.abs().sum() > 0
    before = mem.centroids.detach().clone()
    mem.update(f[keep], y[keep])  # no momentum update in this mode
    assert torch.equal(mem.centroids.detach(), before)
    assert "centroids" in mem.state_dict()
