"""train_round: StepLR/Adam carry across rounds, BatchNorm groups, camera head, bad input."""
import copy

import numpy as np
import pytest
import torch

from calr_core.model.backbone import build_model
from calr_core.train.loop import grouped_forward
from tests.train.world import round_of

FAST = dict(batch_size=8, num_instances=4, height=64, width=32, workers=0, device="cpu")


@pytest.fixture
def model():
    return build_model("resnet18", weights="none", seed=1)


def test_steplr_and_adam_state_carry_across_rounds(world, model):
    lrs, steps, state = [], [], None
    for rnd in range(3):
        state = round_of(model, world, iters=1, step_size=2, gamma=0.1, epoch=rnd,
                         resume_state=state, **FAST)
        lrs.append(state["optimizer"]["param_groups"][0]["lr"])
        steps.append(float(state["optimizer"]["state"][0]["step"]))
        assert state["scheduler"]["last_epoch"] == rnd + 1
    assert lrs == pytest.approx([3.5e-4, 3.5e-5, 3.5e-5])  # after the step at the end of each round
    assert steps == [1.0, 2.0, 3.0]
    assert state["memory"]["centroids"].shape == (10, 512) and state["epoch"] == 2


def test_grouped_forward_is_per_chunk_batchnorm(model):
    x = torch.randn(8, 3, 64, 32)
    a, b, c, d = (copy.deepcopy(model).train() for _ in range(4))
    whole = grouped_forward(b, x, 0)
    assert torch.equal(grouped_forward(d, x, 8), whole)
    halves = torch.cat([c(x[:4]), c(x[4:])])
    grouped = grouped_forward(a, x, 4)
    assert torch.equal(grouped, halves)
    assert not torch.allclose(grouped, whole, atol=1e-4)  # grouping changes the statistics
    torch.testing.assert_close(a.state_dict(), c.state_dict(), rtol=0, atol=0)  # running stats too


def test_bn_group_of_whole_batch_equals_no_grouping(world):
    states = [round_of(build_model("resnet18", weights="none", seed=1), world, iters=2,
                       bn_group=g, **FAST)["model"] for g in (0, 8, 4)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_camera_head_trains_only_with_alignment(world, model):
    off = round_of(model, world, iters=1, n_cams=3, camera_alignment=False, **FAST)
    on = round_of(model, world, iters=1, n_cams=3, camera_alignment=True, resume_state=off, **FAST)
    w0 = off["camera_head"]["net.0.weight"]
    fresh = round_of(model, world, iters=1, n_cams=3, **FAST)["camera_head"]["net.0.weight"]
    assert torch.equal(w0, fresh)  # untouched (seeded init) without alignment
    assert not torch.equal(w0, on["camera_head"]["net.0.weight"])


def test_the_curve_holds_each_iteration_and_its_loss_parts(world, model):
    off, on = [], []
    state = round_of(model, world, iters=2, n_cams=3, history=off, **FAST)
    round_of(model, world, iters=3, n_cams=3, camera_alignment=True, camera_weight=0.5,
                history=on, resume_state=state, **FAST)
    assert [r["iter"] for r in off] == [0, 1] and [r["iter"] for r in on] == [0, 1, 2]
    assert all(r["camera_loss"] == 0 and r["loss"] == r["memory_loss"] for r in off)
    assert all(r["camera_loss"] > 0 for r in on)
    for r in on:  # total = memory + camera_weight x camera, in float32
        assert r["loss"] == pytest.approx(r["memory_loss"] + 0.5 * r["camera_loss"], rel=1e-6)
    assert state["loss"] == pytest.approx(np.mean([r["loss"] for r in off]))
    assert all(r["lr"] == 3.5e-4 and r["seconds"] > 0 for r in off + on)
    assert "history" not in state  # wall-clock seconds stay out of the checkpoint


def test_bad_input_is_a_clear_value_error(world, model):
    with pytest.raises(ValueError, match="no cluster"):
        round_of(model, {**world, "labels": np.full(60, -1)}, iters=1, **FAST)
    with pytest.raises(ValueError, match="class_weights"):
        round_of(model, world, class_weights=np.ones(3), iters=1, **FAST)
    with pytest.raises(ValueError, match="n_cams"):
        round_of(model, world, camera_alignment=True, iters=1, **FAST)
    with pytest.raises(ValueError, match="init_features"):
        round_of(model, {**world, "init_features": world["init_features"][:5]}, iters=1, **FAST)


def test_an_explicit_schedule_overrides_the_restored_one(world, model):
    """Round 1 resumes Adam + StepLR from round 0; lr/weight decay/step/gamma given for round 1
    still apply: lr is the schedule's base, so after s scheduler steps the rate is
    lr * gamma ** (s // step_size)."""
    r0 = round_of(model, world, iters=1, lr=3.5e-4, step_size=2, gamma=0.1, **FAST)
    kept = round_of(copy.deepcopy(model), world, iters=1, lr=3.5e-4, step_size=2, gamma=0.1,
                    epoch=1, resume_state=r0, **FAST)
    assert kept["optimizer"]["param_groups"][0]["lr"] == 3.5e-4 * 0.1  # the restored chain, untouched
    new = round_of(copy.deepcopy(model), world, iters=1, lr=1e-3, weight_decay=0.0, step_size=1,
                   gamma=0.5, epoch=1, resume_state=r0, **FAST)
    group = new["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(1e-3 * 0.5 ** 2) and group["weight_decay"] == 0.0
    assert new["scheduler"]["base_lrs"] == [1e-3] and new["params"]["lr"] == 1e-3
    assert (new["scheduler"]["step_size"], new["scheduler"]["gamma"]) == (1, 0.5)
