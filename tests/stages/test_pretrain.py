"""`pretrain` and the `model.weights: source` start, through the real Typer app and processes."""
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from calr_core.io import load_checkpoint
from calr_stages.cli import app
from tests.kill import kill_when_written

runner = CliRunner()
PARAMS = """\
model: {arch: resnet18, weights: source, height: 32, width: 16}
source: {synth_size: tiny, synth_seed: 5, iters: ITERS, batch_size: 16, num_instances: 4, save_every: 2}
train: {device: cpu, workers: 0}
"""


def _params(tmp_path: Path, iters: int = 6) -> Path:
    f = tmp_path / "params.yaml"
    f.write_text(PARAMS.replace("ITERS", str(iters)))
    return f


def _pretrain(tmp_path: Path, artifacts: Path, *extra: str):
    return runner.invoke(app, ["pretrain", "--params", str(_params(tmp_path)), "--artifacts",
                               str(artifacts), *extra])


def test_placeholder_unless_model_weights_is_source(tmp_path):
    res = _pretrain(tmp_path, tmp_path / "a", "-S", "model.weights=none")
    assert res.exit_code == 0, res.output
    assert "not used" in res.output
    assert load_checkpoint(tmp_path / "a/source/checkpoint.pt")["kind"] == "unused"
    # and the start model refuses it with a message that says what to run
    res = runner.invoke(app, ["init", "--params", str(_params(tmp_path)), "--artifacts", str(tmp_path / "a")])
    assert res.exit_code == 2 and "run `calr-stage pretrain`" in res.output


def test_source_of_another_architecture_is_refused_naming_the_file_and_keys(tmp_path):
    art = tmp_path / "a"
    res = _pretrain(tmp_path, art, "--iters", "2")
    assert res.exit_code == 0, res.output
    src = load_checkpoint(art / "source/checkpoint.pt")
    assert src["kind"] == "source" and src["model_args"]["arch"] == "resnet18"
    res = runner.invoke(app, ["init", "--params", str(_params(tmp_path)), "--artifacts", str(art),
                              "-S", "model.arch=resnet50"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and str(art / "source/checkpoint.pt") in line
    assert "does not fit the model" in line and "missing ['backbone.layer1.0.conv3.weight'" in line


@pytest.fixture
def one_thread():
    """Bitwise equality needs the same thread count in the killed process and in this one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_killed_pretraining_resumes_to_identical_weights(tmp_path, one_thread):
    """kill -9 after the first recovery checkpoint; the re-run ends where an unbroken run ends."""
    params, killed = _params(tmp_path), tmp_path / "killed"
    cmd = [sys.executable, "-m", "stages.cli", "pretrain", "--params", str(params), "--artifacts", str(killed)]
    recovery = killed / ".recovery/pretrain-round0.pt"
    kill_when_written(cmd, recovery)
    assert not (killed / "source/checkpoint.pt").exists()
    assert (killed / ".recovery/source-tiny-seed5").is_dir()  # the rendered world, for the re-run
    res = _pretrain(tmp_path, killed)
    assert res.exit_code == 0, res.output
    assert not recovery.exists() and not (killed / ".recovery/source-tiny-seed5").exists()
    res = _pretrain(tmp_path, tmp_path / "straight")
    assert res.exit_code == 0, res.output
    a = load_checkpoint(killed / "source/checkpoint.pt")
    b = load_checkpoint(tmp_path / "straight/source/checkpoint.pt")
    for key, value in b["model"].items():
        assert torch.equal(value, a["model"][key]), f"{key} differs after resume"
