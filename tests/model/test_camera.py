import math

import pytest
import torch

from calr_core.model.camera import CameraClassifier, GradReverse, camera_loss


@pytest.mark.parametrize("lambd", [1.0, 0.3])
def test_grad_reverse_negates_and_scales(lambd):
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 7, dtype=torch.float64)
    y = GradReverse.apply(x, lambd)
    torch.testing.assert_close(y, x)  # identity forward
    (y * w).sum().backward()
    g_rev = x.grad.clone()
    x.grad = None
    (x * w).sum().backward()  # autograd of the identity
    torch.testing.assert_close(g_rev, -lambd * x.grad)
    # numerical derivative of the forward is +w: reversal is a backward-only effect
    e = torch.zeros_like(x)
    e[1, 2] = 1e-6
    num = ((GradReverse.apply(x + e, lambd) * w).sum() - (GradReverse.apply(x - e, lambd) * w).sum()) / 2e-6
    assert math.isclose(num.item(), w[1, 2].item(), rel_tol=1e-6)


def test_classifier_shape_layers_and_reversal():
    torch.manual_seed(0)
    clf = CameraClassifier(in_dim=16, n_cams=5)
    linears = [m for m in clf.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 100), (100, 100), (100, 5)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in clf.modules()) == 2
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in clf.modules()) == 1
    f = torch.randn(8, 16, requires_grad=True)
    clf.eval()
    logits = clf(f)
    assert logits.shape == (8, 5)
    logits.sum().backward()
    g = f.grad.clone()
    f.grad = None
    clf.net(f).sum().backward()  # same network without the GRL
    torch.testing.assert_close(g, -f.grad)


def test_classifier_needs_cameras():
    with pytest.raises(ValueError, match="n_cams"):
        CameraClassifier(in_dim=16)


def test_camera_loss_forms_by_hand():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=torch.float64)
    cams = torch.tensor([0, 1])

    def ce(rows, ys):  # mean of -log softmax(row)[y]
        return sum(math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(rows, ys)) / len(ys)

    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits.tolist()]
    clean = ce(logits.tolist(), cams.tolist())
    ref = ce(probs, cams.tolist())
    assert math.isclose(camera_loss(logits, cams).item(), clean, rel_tol=1e-9)
    assert math.isclose(camera_loss(logits, cams, form="reference").item(), ref, rel_tol=1e-9)
    assert ref <= math.log(2 + math.e) and ref != pytest.approx(clean)  # quirk is bounded and differs
    with pytest.raises(ValueError, match="form='x'"):
        camera_loss(logits, cams, form="x")
