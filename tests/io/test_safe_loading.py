"""A model file is data: every command that reads one refuses a crafted pickle before it runs.

The payload is real: unpickling it the unsafe way runs `touch MARKER` (checked first). Each command
gets it in the place it reads a model file from and must exit 2 with one line naming the file and
the global it asked for, leave the marker uncreated and change no file of the project.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from calr_core.io.checkpoint import UnsafeFileError, load_checkpoint, save_checkpoint
from calr_core.model.backbone import build_model
from calr_core.model.ibn import IBN_A_URL
from calr_stages.cli import app
from tests.project import ROOT, TINY

runner = CliRunner()


class Payload:
    """Unpickling this calls os.system: what a hostile model file does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def evil(path: Path, marker: Path) -> Path:
    """A file shaped like a calr checkpoint whose unpickling creates ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(f"touch {marker}"), "model_args": {"arch": "resnet18"}, "kind": "trained"}, path)
    return path


def test_the_payload_is_live_and_the_loader_refuses_it(tmp_path):
    marker = tmp_path / "pwned"
    evil(tmp_path / "evil.pt", marker)
    code = f"import torch; torch.load({str(tmp_path / 'evil.pt')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert marker.exists()  # the unsafe way runs the command
    marker.unlink()
    with pytest.raises(UnsafeFileError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    msg = str(err.value)
    assert str(tmp_path / "evil.pt") in msg and "posix.system" in msg and "\n" not in msg
    assert not marker.exists()


def test_the_previous_versions_files_still_load(tmp_path):
    """Training checkpoints of earlier versions hold numpy's RNG state (a uint32 array): allowed."""
    import random
    state = {"rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
             "model": build_model("resnet18", weights="none").state_dict(), "params": {"train": {"lr": 3.5e-4}}}
    torch.save(state, tmp_path / "old.pt")  # as the previous version wrote them: plain torch.save
    got = load_checkpoint(tmp_path / "old.pt")
    np.testing.assert_array_equal(got["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert got["rng"]["python"] == state["rng"]["python"] and got["params"] == state["params"]
    save_checkpoint(tmp_path / "new.pt", got)
    assert load_checkpoint(tmp_path / "new.pt")["rng"]["numpy"][0] == "MT19937"


def test_torchvision_and_ibn_net_files_still_load(tmp_path, monkeypatch):
    from calr_core.compat import torchvision
    from calr_core.model.ibn import resnet50_ibn_a
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    m = build_model("resnet18", weights="imagenet")
    torch.testing.assert_close(m.backbone.conv1.weight, net.conv1.weight)
    ibn = resnet50_ibn_a()
    torch.save(ibn.state_dict(), tmp_path / "checkpoints" / IBN_A_URL.rsplit("/", 1)[1])
    m = build_model("resnet50_ibn_a", weights="imagenet")
    torch.testing.assert_close(m.backbone.layer1[0].bn1.IN.weight, ibn.layer1[0].bn1.IN.weight)


# ------------------------------------------------------------------ every command that reads one
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A finished tiny project (1 intra round, 1 round), run in-process, command by command."""
    root = tmp_path_factory.mktemp("finished")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section] = {**params[section], **values} if isinstance(values, dict) else values
    params["intra"]["rounds"], params["rounds"] = [{"id": 0, "prev": "init"}], [{"id": 0, "prev": "init"}]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for args in [["synth"], ["prepare"], ["pretrain"], *[["intra", "--cam", str(c)] for c in params["data"]["cameras"]],
                     ["init"], ["round", "--round", "0"]]:
            res = runner.invoke(app, args)
            assert res.exit_code == 0, (args, res.output)
    finally:
        os.chdir(cwd)
    return root


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cases(root: Path) -> list[tuple[str, list[str], str]]:
    """(name, command, where the hostile file goes: a path in the project or a torch-cache file)."""
    image = sorted((root / "data/synth/query").glob("*.jpg"))[0]
    return [
        ("extract: the round's start model", ["extract", "--round", "0"], "artifacts/phase2/init/checkpoint.pt"),
        ("train: the round's start model", ["train", "--round", "0"], "artifacts/phase2/init/checkpoint.pt"),
        ("train: its recovery file", ["train", "--round", "0"], "artifacts/.recovery/phase2-round0.pt"),
        ("evaluate: the round's model", ["evaluate", "--round", "0"], "artifacts/phase2/round0/checkpoint.pt"),
        ("round: the start model", ["round", "--round", "0"], "artifacts/phase2/init/checkpoint.pt"),
        ("init --cam: the source model", ["init", "--cam", "0"], "artifacts/source/checkpoint.pt"),
        ("search --checkpoint", ["search", "--checkpoint", "hostile.pt", "--gallery", "data/synth/bounding_box_test",
                                 "--query", str(image)], "hostile.pt"),
        ("export --checkpoint", ["export", "--checkpoint", "hostile.pt", "--format", "onnx", "--out", "m.onnx"],
         "hostile.pt"),
        ("init: model.weights file", ["init", "-S", "model.weights=hostile.pt"], "hostile.pt"),
        ("pretrain: source.weights file", ["pretrain", "-S", "source.weights=hostile.pt"], "hostile.pt"),
        ("init: the ImageNet file of the torch cache", ["init", "-S", "model.weights=imagenet", "-S", "model.arch=resnet18"],
         "torch/hub/checkpoints/resnet18-f37072fd.pth"),
        ("init: the IBN-Net file of the torch cache", ["init", "-S", "model.weights=imagenet",
                                                       "-S", "model.arch=resnet50_ibn_a"],
         "torch/hub/checkpoints/" + IBN_A_URL.rsplit("/", 1)[1]),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(12))
def test_every_command_refuses_a_hostile_model_file(project, tmp_path, monkeypatch, case):
    work = tmp_path / "p"
    shutil.copytree(project, work, symlinks=True)
    name, args, where = _cases(work)[case]
    marker = tmp_path / "pwned"
    evil(work / where, marker)
    before = _digest(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("TORCH_HOME", str(work / "torch"))
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (name, res.output)
    line = res.output.strip()
    assert "\n" not in line and "refused" in line and where in line and "posix.system" in line, (name, line)
    assert not marker.exists(), name
    assert _digest(work) == before, name  # nothing written, nothing changed
