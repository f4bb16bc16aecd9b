"""`calr-stage configure`: presets at the paper's settings, cameras read from the data, the old
params.yaml kept; then `dvc repro` on real dataset layouts of real JPEG files with no dvc.yaml edit."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from calr_core import presets
from calr_core.config import load_params
from calr_stages.cli import app
from tests.data.test_datasets import MARKET, make_folders
from tests.project import ROOT, TINY, make_project, run

runner = CliRunner()


def chained(n):
    return [{"id": i, "prev": "init" if i == 0 else f"round{i - 1}"} for i in range(n)]


def test_the_repository_params_are_the_demo_preset():
    assert (ROOT / "params.yaml").read_text() == presets.render("demo")


@pytest.mark.parametrize("name", [n for n in presets.PRESETS if n not in presets.DEMOS])
def test_presets_carry_the_papers_settings(name):
    """METHOD: ResNet-50 from ImageNet, 256 x 128 (224 x 224 for vehicles), phase 1 = 20 rounds of
    100 iterations at batch 64 = 16 x 4, phase 2 = 50 rounds at batch 256 = 16 x 16, 400 iterations
    (200 on Market-1501), cluster weights from round 5, camera alignment in rounds 0-2; the authors
    fixed 600 clusters per camera on Market-1501 and DukeMTMC."""
    t = presets.values(name)
    assert t["rounds"] == chained(50) and t["intra"]["rounds"] == chained(20)
    assert (t["model"]["arch"], t["model"]["weights"]) == ("resnet50", "imagenet")
    assert (t["model"]["height"], t["model"]["width"]) == ((224, 224) if name == "veri776" else (256, 128))
    assert (t["intra"]["iters"], t["intra"]["batch_size"], t["intra"]["num_instances"]) == (100, 64, 4)
    assert (t["train"]["batch_size"], t["train"]["num_instances"]) == (256, 16)
    assert t["train"]["iters"] == (200 if name == "market1501" else 400)
    assert (t["train"]["weights_from"], t["train"]["camera_rounds"], t["train"]["lr"]) == (5, 3, 3.5e-4)
    assert t["intra"]["n_clusters"] == (600 if name in ("market1501", "dukemtmc") else 0)
    assert (t["cluster"]["method"], t["cluster"]["eps"], t["cluster"]["k1"], t["cluster"]["k2"]) == ("infomap", 0.5, 15, 4)
    assert t["data"]["dataset"] == name
    assert "# paper:" not in presets.render(name)  # nothing differs from the paper's
    changed = presets.render(name, {**t, "train": {**t["train"], "iters": 7}})
    assert re.search(r"^  iters: 7 +# paper: %d$" % t["train"]["iters"], changed, re.M)


def test_demo_usl_is_the_demo_world_from_imagenet_at_its_chosen_schedule():
    """The paper's setting (no label anywhere: ImageNet weights, nothing pretrained) on the demo's
    world, at ~33 passes a camera in phase 1 and ~100 passes in phase 2 (docs/benchmarks.md)."""
    usl, demo = presets.values("demo-usl"), presets.values("demo")
    assert (usl["model"]["arch"], usl["model"]["weights"], usl["model"]["height"], usl["model"]["width"]) == \
        ("mobilenet_v2", "imagenet", 64, 32)
    assert usl["data"] == demo["data"]
    tuned = json.loads((ROOT / "benchmarks" / "results" / "calr-tuning-usl.json").read_text())["chosen"]
    for key, value in tuned.items():  # CALR's knobs as tuned on world 4
        if "." in key:
            section, name = key.split(".")
            assert usl[section][name] == value, key
    assert usl["intra"]["rounds"] == chained(5) and usl["rounds"] == chained(15)
    phase1 = 5 * usl["intra"]["iters"] * usl["intra"]["batch_size"] / (962 / 4)
    phase2 = 15 * usl["train"]["iters"] * usl["train"]["batch_size"] / 962
    assert 30 <= phase1 <= 36 and 95 <= phase2 <= 105, (phase1, phase2)
    assert "# paper: imagenet" not in presets.render("demo-usl")


def test_list_names_every_preset_and_what_it_sets():
    res = runner.invoke(app, ["configure", "--list"])
    assert res.exit_code == 0
    lines = {ln.split(":")[0]: ln for ln in res.output.splitlines()}
    assert set(presets.PRESETS) <= set(lines)
    assert "train.iters=200" in lines["market1501"] and "model.height=224" in lines["veri776"]
    assert "model.arch=resnet50" in res.output.splitlines()[0]


def test_configure_reads_the_cameras_and_keeps_the_old_params(tmp_path, monkeypatch):
    data = make_folders(tmp_path / "Market-1501", MARKET)  # training cameras c1, c2, c3, c6
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(mine := "# my own settings\n" + (ROOT / "params.yaml").read_text())
    res = runner.invoke(app, ["configure", "--preset", "market1501", "--root", str(data)])
    assert res.exit_code == 0, res.output
    p = load_params("params.yaml")
    assert p.data.cameras == [0, 1, 2, 5] and p.data.root == str(data) and p.data.dataset == "market1501"
    assert len(p.rounds) == 50 and p.train.iters == 200
    assert Path("params.yaml.bak").read_text() == mine
    # a second preset keeps the first backup and adds another; the same preset again adds none
    res = runner.invoke(app, ["configure", "--preset", "dukemtmc", "--root", str(data), "--rounds", "3"])
    assert res.exit_code != 0  # Market file names do not parse as DukeMTMC's
    assert Path("params.yaml").read_text() == presets.render("market1501", load_tree("params.yaml"))
    res = runner.invoke(app, ["configure", "--preset", "market1501", "--root", str(data), "--rounds", "3",
                              "--intra-rounds", "2", "-S", "model.arch=resnet18"])
    assert res.exit_code == 0, res.output
    p = load_params("params.yaml")
    assert [r.id for r in p.rounds] == [0, 1, 2] and len(p.intra.rounds) == 2 and p.model.arch == "resnet18"
    assert Path("params.yaml.bak").read_text() == mine and Path("params.yaml.bak1").is_file()
    before = sorted(Path().glob("params.yaml*"))
    assert runner.invoke(app, ["configure", "--preset", "market1501", "--root", str(data), "--rounds", "3",
                               "--intra-rounds", "2", "-S", "model.arch=resnet18"]).exit_code == 0
    assert sorted(Path().glob("params.yaml*")) == before


def load_tree(path):
    import yaml
    return yaml.safe_load(Path(path).read_text())


@pytest.mark.parametrize("args,message", [
    (["--preset", "market1501"], "--root: missing"),
    (["--preset", "market1501", "--root", "nowhere"], "nowhere/bounding_box_train: missing folder"),
    (["--preset", "market"], "--preset 'market': expected one of market1501, dukemtmc"),
    (["--preset", "demo", "-S", "train.iterz=3"], "--set: train.iterz: unknown key"),
    (["--preset", "demo", "-S", "train.iters=many"], "--set: train.iters: expected int"),
    (["--preset", "demo", "--rounds", "0"], "--rounds 0: expected at least 1"),
    (["--preset", "demo", "--root", "x"], "--root: the demo preset renders its own"),
    (["--preset", "demo-usl", "--root", "x"], "--root: the demo-usl preset renders its own"),
])
def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("mine: {}\n")
    res = runner.invoke(app, ["configure", *args])
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    assert Path("params.yaml").read_text() == "mine: {}\n"


# ---------------------------------------------------------------- dvc repro on real layouts
def _world(scratch: Path) -> pd.DataFrame:
    """A tiny synthetic world of real JPEG files (Market-1501 layout, with distractors) and its table."""
    from calr_core.data.datasets import read_dataset
    from calr_core.data.synth import render_world
    render_world(scratch, seed=3, size="tiny")
    return read_dataset("market1501", scratch, check_images=False)


def market(scratch: Path) -> Path:
    root = scratch / "Market-1501-v15.09.15"
    frame = _world(root)
    gallery = root / frame[frame.split == "gallery"].path.iloc[0]
    for i, cam in enumerate((1, 3)):  # junk boxes: dropped at load
        shutil.copy(gallery, root / "bounding_box_test" / f"-1_c{cam}s1_00000{i}_01.jpg")
    assert (frame.pid == 0).any()  # distractors: kept in the gallery
    return root


def msmt17_v1(scratch: Path) -> Path:
    world, root = scratch / "world", scratch / "MSMT17_V1"
    frame = _world(world)
    frame = frame[frame.pid > 0]  # MSMT17 has no distractors
    lists = {"train": ([], []), "query": ([], []), "gallery": ([], [])}
    for k, row in enumerate(frame.itertuples()):
        folder = "train" if row.split == "train" else "test"
        rel = f"{row.pid:04d}/{row.pid:04d}_{k:03d}_{row.camid + 1:02d}_0303morning_{k:04d}_0.jpg"
        (root / folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(world / row.path, root / folder / rel)
        lists[row.split][k % 2 if row.split == "train" else 0].append(f"{rel} {row.pid}")
    for name, lines in [("list_train.txt", lists["train"][0]), ("list_val.txt", lists["train"][1]),
                        ("list_query.txt", lists["query"][0]), ("list_gallery.txt", lists["gallery"][0])]:
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def manifest(scratch: Path) -> Path:
    frame = _world(scratch / "cams")
    frame = frame.assign(path="cams/" + frame.path, camid=frame.camid.map({0: 1, 1: 4, 2: 6}))
    frame[["path", "camid", "split", "pid"]].to_csv(scratch / "network.csv", index=False)
    return scratch / "network.csv"


@pytest.mark.slow
@pytest.mark.parametrize("preset,layout,cameras", [("market1501", market, [0, 1, 2]),
                                                   ("msmt17", msmt17_v1, [0, 1, 2]),
                                                   ("manifest", manifest, [1, 4, 6])])
def test_a_real_layout_runs_with_one_configure_and_no_dvc_yaml_edit(tmp_path, preset, layout, cameras):
    root = layout(tmp_path / "data")
    repo = tmp_path / "project"
    repo.mkdir()
    env, dvc = make_project(repo)
    tiny = [f"{s}.{k}={json.dumps(v)}" for s, values in TINY.items() if isinstance(values, dict)
            for k, v in values.items() if s not in ("data", "source") and k != "rounds"]
    run([str(Path(dvc[0]).parent / "calr-stage"), "configure", "--preset", preset, "--root", str(root),
         "--rounds", "1", "--intra-rounds", "1", "-S", "model.arch=resnet18", "-S", "model.weights=none",
         "-S", "intra.n_clusters=0",
         *sum((["-S", t] for t in tiny if not t.startswith("model.weights")), [])], repo, env)
    assert (repo / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()
    p = load_params(repo / "params.yaml")
    assert p.data.cameras == cameras and p.data.dataset == preset and p.data.root == str(root)
    run(dvc + ["repro"], repo, env)
    m = json.loads((repo / "artifacts" / "metrics" / "round0.json").read_text())
    assert 0 < m["mAP"] <= 1 and m["round"] == 0
    assert not any((repo / "data" / "synth").glob("*/*.jpg"))  # no synthetic world rendered
    man = pd.read_parquet(repo / "artifacts" / "manifest.parquet")
    assert sorted(man.camid[man.split == "train"].unique()) == cameras and (man.pid >= 0).all()
    if preset == "market1501":
        assert (man.pid[man.split == "gallery"] == 0).any() and not man.path.str.startswith("bounding_box_test/-1_").any()
    assert "up to date" in run(dvc + ["status"], repo, env).lower() or "nothing" in run(dvc + ["status"], repo, env).lower()
