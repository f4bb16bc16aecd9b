"""Exact resume: a round killed with SIGKILL mid-way and re-run ends with the same weights."""
import logging
import sys
from pathlib import Path

import pytest
import torch

from calr_core.io.checkpoint import load_checkpoint, save_checkpoint
from calr_core.model.backbone import build_model
from tests.train.world import round_of
from tests.kill import kill_when_written

ITERS, EVERY = 8, 2


def _round(world, recovery=None, workers=0, iters=ITERS, history=None):
    """The same round as `python -m tests.ddp_check` runs (ResNet-18, 3 cameras)."""
    model = build_model("resnet18", weights="none", seed=1)
    return round_of(model, world, n_cams=3, iters=iters, batch_size=8, num_instances=4,
                    height=64, width=32, recovery_path=recovery, save_every=EVERY,
                    workers=workers, device="cpu", history=history)


def _kill_after_first_recovery(world_dir: Path, out: Path, recovery: Path) -> None:
    cmd = [sys.executable, "-m", "tests.ddp_check", "--world", str(world_dir), "--out", str(out),
           "--iters", str(ITERS), "--save-every", str(EVERY), "--recovery", str(recovery),
           "--batch", "8", "--instances", "4", "--workers", "1", "--threads", "1"]
    kill_when_written(cmd, recovery, timeout=120)
    assert not (out / "rank0.pt").exists()


def test_killed_round_resumes_to_identical_weights(world, tmp_path, caplog):
    recovery = tmp_path / "recovery.pt"
    _kill_after_first_recovery(world["root"], tmp_path / "out", recovery)
    done = load_checkpoint(recovery)["iters_done"]
    assert 0 < done < ITERS and done % EVERY == 0

    with caplog.at_level(logging.INFO, logger="calr_core.train.recovery"):
        resumed = _round(world, recovery=recovery, history=(resumed_curve := []))  # 0 workers here, 1 killed
    assert f"at iteration {done}" in caplog.text
    assert not recovery.exists()  # deleted once the round completes
    straight = _round(world, history=(straight_curve := []))

    for part in ("model", "memory", "camera_head"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key} differs after resume"
    for pid, s in straight["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], resumed["optimizer"]["state"][pid]["exp_avg_sq"])
    assert straight["loss"] == pytest.approx(resumed["loss"], rel=1e-6)
    # the training curve carries over the kill: the same rows, only the wall-clock seconds differ
    curves = [[{k: v for k, v in row.items() if k != "seconds"} for row in c]
              for c in (straight_curve, resumed_curve)]
    assert curves[0] == curves[1] and [r["iter"] for r in curves[0]] == list(range(ITERS))
    # the file too: DVC hashes it, and a resumed stage must not re-run everything after it
    for name, state in (("straight", straight), ("resumed", resumed)):
        save_checkpoint(tmp_path / f"{name}.pt", state)
    assert (tmp_path / "straight.pt").read_bytes() == (tmp_path / "resumed.pt").read_bytes()


def test_stale_recovery_is_ignored(world, tmp_path, caplog):
    recovery = tmp_path / "recovery.pt"
    torch.save({"fingerprint": "other", "iters_done": 4}, recovery)
    with caplog.at_level(logging.WARNING, logger="calr_core.train.recovery"):
        state = _round(world, recovery=recovery, iters=2)
    assert "other inputs" in caplog.text and state["iters_done"] == 2 and not recovery.exists()


def test_the_same_round_writes_the_same_bytes_whatever_the_global_rngs(world, tmp_path):
    """Another process starts python's and numpy's global RNGs elsewhere; the checkpoint records
    them, so the round seeds them itself."""
    import random

    import numpy as np
    for name, seed in (("a", 1), ("b", 2)):
        random.seed(seed)
        np.random.seed(seed)
        save_checkpoint(tmp_path / f"{name}.pt", _round(world, iters=2))
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
