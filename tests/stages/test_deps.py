"""Every DVC stage depends on all the project code its command can run.

dvc.yaml's stages depend on `calr-stage code`'s lists (artifacts/code/<command>.txt), which
read each command's import closure from the source (stages/code.py). These tests check the
wiring in dvc.yaml, the lists against the source, and that an edit changes exactly the lists of
the commands that run the edited file. tests/stages/test_dag.py checks the lists against a run:
every module a real `dvc repro` loads is listed.
"""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calr_core.paths import Layout
from calr_stages.cli import app
from calr_stages.code import closure

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
COMMANDS = sorted(c.name for c in app.registered_commands)


def stage_commands(st: dict) -> list[str]:
    """A dvc.yaml stage's calr-stage sub-commands."""
    cmds = st["cmd"] if isinstance(st["cmd"], list) else [st["cmd"]]
    return [c.split()[1] for c in cmds if c.startswith("calr-stage ")]


def run_code(root: Path, artifacts: Path) -> dict[str, str]:
    res = CliRunner().invoke(app, ["code", "--root", str(root), "--artifacts", str(artifacts)])
    assert res.exit_code == 0, res.output
    return {f.stem: f.read_text() for f in sorted(Layout(artifacts).code_dir.glob("*.txt"))}


def test_the_closure_reader_follows_function_level_imports_and_packages():
    files = {f.as_posix() for f in closure("round", ROOT)}
    # train.py imports calr_core.train.loop inside its function; loop imports data.transforms
    assert {"stages/train.py", "calr_core/train/loop.py", "calr_core/data/transforms.py",
            "calr_core/__init__.py", "calr_core/data/__init__.py", "stages/_common.py"} <= files
    # search's function body is not run by `round`; its module is (cli imports it)
    assert "stages/search.py" in files and "calr_core/search.py" not in files
    assert "calr_core/train/loop.py" not in {f.as_posix() for f in closure("report", ROOT)}
    # search takes pairwise_distance from calr_core.eval, which loads eval/evaluate.py on first use
    assert "calr_core/eval/evaluate.py" in {f.as_posix() for f in closure("search", ROOT)}


@pytest.mark.parametrize("stage", sorted(set(STAGES) - {"code"}))
def test_each_stage_depends_on_its_commands_code_lists_and_no_code_file_directly(stage):
    st = STAGES[stage]
    commands = stage_commands(st)
    assert commands, f"{stage}: no calr-stage command found"
    deps = set(st.get("deps", []))
    wanted = {Layout().code_list(c).as_posix() for c in commands}
    assert wanted <= deps, f"dvc.yaml stage {stage!r} misses {sorted(wanted - deps)}"
    direct = sorted(d for d in deps if d.split("/")[0] in ("calr_core", "stages"))
    assert not direct, f"{stage}: code deps belong in artifacts/code lists, not {direct}"


def test_the_code_stage_reads_all_the_code_and_writes_the_lists():
    st = STAGES["code"]
    assert stage_commands(st) == ["code"]
    assert set(st["deps"]) == {"calr_core", "stages"} and st["outs"] == [Layout().code_dir.as_posix()]


def test_the_lists_name_each_commands_closure_with_its_md5s(tmp_path):
    lists = run_code(ROOT, tmp_path / "a")
    assert sorted(lists) == COMMANDS
    for command, text in lists.items():
        rows = [line.split("  ") for line in text.splitlines()]
        assert [Path(p) for _, p in rows] == closure(command, ROOT)
        assert all(md5 == hashlib.md5((ROOT / p).read_bytes()).hexdigest() for md5, p in rows)


def test_an_edit_changes_the_lists_of_exactly_the_commands_that_run_the_file(tmp_path):
    src = tmp_path / "src"
    for name in ("calr_core", "stages"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    before = run_code(src, tmp_path / "a")
    for edited in ("calr_core/data/transforms.py", "calr_core/report.py"):
        with open(src / edited, "a") as fh:
            fh.write("# an edit\n")
        after = run_code(src, tmp_path / "a")
        changed = {c for c in COMMANDS if after[c] != before[c]}
        runs = {c for c in COMMANDS if Path(edited) in closure(c, src)}
        assert changed == runs and runs, (edited, changed, runs)
        before = after
    assert "round" not in runs and "report" in runs  # calr_core/report.py: the report only


def test_a_syntax_error_is_one_line_naming_the_file_and_writes_no_list(tmp_path):
    src = tmp_path / "src"
    for name in ("calr_core", "stages"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "calr_core" / "labelling.py").write_text("def broken(:\n")
    res = CliRunner().invoke(app, ["code", "--root", str(src), "--artifacts", str(tmp_path / "a")])
    assert res.exit_code == 2 and "calr_core/labelling.py, line 1" in res.output, res.output
    assert not Layout(tmp_path / "a").code_dir.exists()


def test_a_command_that_is_gone_loses_its_list_and_a_wrong_root_is_refused(tmp_path):
    stale = Layout(tmp_path / "a").code_list("old-command")
    stale.parent.mkdir(parents=True)
    stale.write_text("x\n")
    run_code(ROOT, tmp_path / "a")
    assert not stale.exists()
    res = CliRunner().invoke(app, ["code", "--root", str(tmp_path), "--artifacts", str(tmp_path / "b")])
    assert res.exit_code == 2 and "no stages/cli.py" in res.output
    assert not (tmp_path / "b").exists()


def test_the_committed_lock_holds_exactly_the_dags_stages():
    """`dvc repro` keeps the lock entries of stages that are gone from dvc.yaml: the committed
    dvc.lock (the demo's run) must hold no entry of an earlier DAG shape."""
    res = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(res.stdout.split()), sorted(set(locked) ^ set(res.stdout.split()))
