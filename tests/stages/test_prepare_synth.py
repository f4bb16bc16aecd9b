"""`synth` and `prepare` through the real Typer app on tmp folders of real JPEGs."""
import pandas as pd
import pytest
from typer.testing import CliRunner

from calr_core.io import read_table
from calr_stages.cli import app
from tests.data.test_datasets import MARKET, make_folders

runner = CliRunner()


@pytest.fixture
def params(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("data:\n  cameras: [0, 1, 2, 3, 4, 5]\n  dataset: market1501\n")
    return f


def test_prepare_writes_the_manifest_with_counts_per_split(tmp_path, params):
    root = make_folders(tmp_path / "market", MARKET)
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["prepare", "--root", str(root), "--out", str(out), "--params", str(params),
                              "-S", "data.cameras=[0, 1, 2, 5]"])
    assert res.exit_code == 0, res.output
    m = read_table("manifest", out)
    assert m.groupby("split").size().to_dict() == {"train": 4, "query": 2, "gallery": 4}
    assert m.attrs["dataset"] == "market1501" and (m.pid >= 0).all()
    assert pd.read_parquet(out).columns.tolist() == ["image_id", "path", "camid", "split", "pid"]


def test_prepare_says_which_cameras_to_set(tmp_path, params):
    root = make_folders(tmp_path / "market", MARKET)
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["prepare", "--root", str(root), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 2
    assert "set `data.cameras: [0, 1, 2, 5]`" in res.output and not out.exists()


def test_badly_named_file_fails_with_its_name_and_no_output(tmp_path, params):
    root = make_folders(tmp_path / "market", {**MARKET, "query": MARKET["query"] + ["person7.jpg"]})
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["prepare", "--root", str(root), "--out", str(out), "--params", str(params),
                              "-S", "data.cameras=[0, 1, 2, 5]"])
    assert res.exit_code == 2 and "person7.jpg" in res.output
    assert len(res.output.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["market", "params.yaml"]


def test_bad_params_fail_with_the_key(tmp_path, params):
    res = runner.invoke(app, ["prepare", "--params", str(params), "-S", "data.cameras=three"])
    assert res.exit_code == 2 and "data.cameras: expected a list of int" in res.output


def test_synth_renders_a_readable_world_and_never_clobbers_a_users_folder(tmp_path, params):
    out = tmp_path / "world"
    res = runner.invoke(app, ["synth", "--out", str(out), "--size", "tiny", "--seed", "3", "--params", str(params)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["prepare", "--root", str(out), "--out", str(tmp_path / "m.parquet"),
                              "--params", str(params), "-S", "data.cameras=[0, 1, 2]"])
    assert res.exit_code == 0, res.output
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    res = runner.invoke(app, ["synth", "--out", str(mine), "--size", "tiny", "--params", str(params)])
    assert res.exit_code == 2 and "not written by calr" in res.output
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]


def test_synth_and_prepare_run_outside_a_project(tmp_path, monkeypatch):
    """No params.yaml here: the documented defaults; prepare checks cameras only for a DAG."""
    from calr_core.config import Params
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["synth", "--out", "world", "--size", "tiny", "--seed", "3"])
    assert res.exit_code == 0, res.output
    root = make_folders(tmp_path / "market", MARKET)  # cameras [0, 1, 2, 5], not the default list
    assert Params().data.cameras != [0, 1, 2, 5]
    res = runner.invoke(app, ["prepare", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert read_table("manifest", tmp_path / "artifacts/manifest.parquet").attrs["dataset"] == "market1501"
    res = runner.invoke(app, ["prepare", "--params", "elsewhere.yaml"])  # a named file must exist
    assert res.exit_code == 2 and "elsewhere.yaml: params file not found" in res.output
