"""The training curve tables against sums written out by hand."""
import pytest

from calr_core.train.curves import curve_frame, curve_summary

HISTORY = [{"iter": i, "loss": 1.0 + i, "memory_loss": 0.5 + i, "camera_loss": 0.5, "lr": 3.5e-4,
            "seconds": 0.25 * (i + 1)} for i in range(4)]


def test_curve_rows_are_iterations_with_a_step_across_rounds():
    f = curve_frame(HISTORY, rnd=2, iters=4, batch_size=16)
    assert list(f.columns) == ["step", "round", "iter", "loss", "memory_loss", "camera_loss", "lr", "img_per_s"]
    assert f.step.tolist() == [8, 9, 10, 11] and (f["round"] == 2).all()
    assert f.img_per_s.tolist() == pytest.approx([16 / 0.25, 16 / 0.5, 16 / 0.75, 16 / 1.0])
    assert f.loss.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_summary_means_and_throughput():
    s = curve_summary(HISTORY, batch_size=16)
    assert s["train_iters"] == 4 and s["train_batch_size"] == 16
    assert s["train_loss"] == pytest.approx(2.5) and s["train_memory_loss"] == pytest.approx(2.0)
    assert s["train_camera_loss"] == pytest.approx(0.5) and s["train_lr"] == 3.5e-4
    assert s["train_seconds"] == pytest.approx(2.5)
    assert s["train_img_per_s"] == pytest.approx(4 * 16 / 2.5, abs=0.05)
