"""The whole DAG on a tiny synthetic world, in a real git + DVC repository in tmp."""
import json

import pandas as pd
import pytest
import yaml

from calr_core.config import load_params
from calr_core.paths import Layout
from tests.project import TINY, make_project, run

pytestmark = pytest.mark.slow

CAMERAS = {0: 0, 1: 2, 2: 5}  # the synthetic world's cameras as a network's non-contiguous ids


def _world_manifest(scratch, seed) -> dict:
    """A user's own camera network: scratch/world/ holds a tiny synthetic world's images and
    scratch/world.csv lists them, with cameras renumbered by CAMERAS. Returns the data section
    that points the project at it (no dvc.yaml edit; test_configure has data outside the project)."""
    from calr_core.data.datasets import read_dataset
    from calr_core.data.synth import render_world
    render_world(scratch / "world", seed=seed, size="tiny")
    frame = read_dataset("market1501", scratch / "world", check_images=False)
    frame = frame.assign(path="world/" + frame.path, camid=frame.camid.map(CAMERAS))
    frame[["image_id", "path", "camid", "split", "pid"]].to_csv(scratch / "world.csv", index=False)
    return {"data": {**TINY["data"], "cameras": list(CAMERAS.values()), "dataset": "manifest",
                     "root": "world.csv"}}


# Loaded into every Python process of the repro (PYTHONPATH): a calr-stage process appends its
# command and the project files it loaded to $CALR_IMPORT_LOG when it exits.
IMPORT_RECORDER = """
import atexit, json, os, sys
from pathlib import Path

def _record():
    if not sys.argv[0].endswith("calr-stage"):
        return
    from calr_stages.code import PACKAGES  # import name -> project folder
    files = []
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if top in PACKAGES and getattr(module, "__file__", None):
            root = Path(sys.modules[top].__file__).parent
            files.append(f"{PACKAGES[top]}/{Path(module.__file__).relative_to(root).as_posix()}")
    with open(os.environ["CALR_IMPORT_LOG"], "a") as fh:
        fh.write(json.dumps({"command": sys.argv[1], "files": sorted(files)}) + "\\n")

atexit.register(_record)
"""


def imports_log(repo):
    return repo.with_name(f"{repo.name}-imports.jsonl")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("dag")
    world = _world_manifest(repo, seed=1)
    env, dvc = make_project(repo, {**TINY, **world})
    assert load_params(repo / "params.yaml").data.synth_seed == 1
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(IMPORT_RECORDER)
    recorded = {**env, "PYTHONPATH": str(site), "CALR_IMPORT_LOG": str(imports_log(repo))}
    out = run(dvc + ["repro"], repo, recorded)
    return repo, env, dvc, out


def test_every_artifact_is_where_the_layout_says(repo):
    path, _, _, _ = repo
    p, lay = load_params(path / "params.yaml"), Layout(path / "artifacts")
    expected = [lay.manifest, lay.curves, lay.source_checkpoint, lay.metrics("source"),
                lay.ranked_list("init")]
    for cam in p.data.cameras:
        expected += [lay.intra_checkpoint(cam, "init"), lay.local_labels(cam)]
        for r in p.intra.rounds:
            expected += [lay.intra_features(cam, r.id), lay.intra_labels(cam, r.id),
                         lay.intra_checkpoint(cam, r.id), lay.train_curve(r.id, cam),
                         lay.train_metrics(r.id, cam)]
    for r in p.rounds:
        expected += [lay.features(r.id), lay.pseudo_labels(r.id), lay.cluster_summary(r.id),
                     lay.checkpoint(r.id), lay.ranked_list(r.id), lay.metrics(r.id),
                     lay.train_curve(r.id), lay.train_metrics(r.id)]
    expected += [lay.train_curves, lay.code_list("round")]
    missing = [str(e.relative_to(path)) for e in expected if not e.is_file()]
    assert not missing
    assert not (lay.root / ".recovery").exists() or not any((lay.root / ".recovery").iterdir())


def test_a_missing_artifact_names_the_step_command_that_writes_it(repo):
    """Each artifact's writer (the command a missing-input error names) is the DVC stage's own
    command, or one of the steps its `intra` / `round` command runs, for the same camera/round."""
    from calr_stages._common import writer_of
    from calr_stages.rounds import INTRA_STEPS, ROUND_STEPS
    steps = {"intra": {"init", "select-local", *(f.__name__.replace("_", "-") for f in INTRA_STEPS)},
             "round": {f.__name__.replace("_", "-") for f in ROUND_STEPS}}
    path = repo[0]
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    checked = 0
    for name, st in lock.items():
        files = [path / o["path"] for o in st.get("outs", [])]
        files = [f for d in files for f in ([d] if d.is_file() else sorted(d.rglob("*")))]
        for f in files:
            if f.suffix not in (".parquet", ".pt", ".json") or name in ("report", "synth"):
                continue
            writer = writer_of(f)
            assert writer, (name, f)
            if writer != st["cmd"]:
                stage_cmd, args = st["cmd"].split()[1], st["cmd"].split()[2:]
                assert writer.split()[1] in steps[stage_cmd], (name, f, writer)
                # the stage's --cam / --round fixes the step's: same values
                assert " ".join(args) in writer, (name, f, writer)
            checked += 1
    assert checked >= 40 and writer_of(path / "artifacts/plots/curves.csv") is None


def test_pseudo_labels_open_in_pandas_and_are_consistent(repo):
    path = repo[0]
    pl = pd.read_parquet(path / "artifacts/phase2/round1/pseudo_labels.parquet")
    assert list(pl.columns) == ["image_id", "camid", "global_label", "label", "is_pivot",
                                "density", "weight", "refined"]
    manifest = pd.read_parquet(path / "artifacts/manifest.parquet")
    assert sorted(pl.image_id) == sorted(manifest[manifest.split == "train"].image_id)
    assert sorted(set(pl.camid)) == sorted(CAMERAS.values())  # the network's own camera ids
    # refinement only ever turns labels into outliers; pivots are never removed
    changed = pl.label != pl.global_label
    assert (pl.label[changed] == -1).all() and (changed == pl.refined).all()
    assert not (pl.is_pivot & pl.refined).any()


def test_metrics_are_read_by_dvc(repo):
    path, env, dvc, _ = repo
    shown = json.loads(run(dvc + ["metrics", "show", "--json"], path, env))
    flat = json.dumps(shown)
    for key in ("mAP", "Rank-1", "mINP", "pl_pairwise_f"):
        assert key in flat
    m = json.loads((path / "artifacts/metrics/round1.json").read_text())
    assert 0 <= m["mAP"] <= 1 and 0 <= m["Rank-1"] <= 1 and m["round"] == 1
    curves = pd.read_csv(path / "artifacts/plots/curves.csv")
    assert curves["round"].tolist() == [-1, 0, 1]  # the start model (direct transfer) first
    source = json.loads((path / "artifacts/metrics/source.json").read_text())
    assert source["round"] == "source" and set(source) == set(m)  # a round's keys
    assert source["pl_pairwise_f"] is None and 0 <= source["mAP"] <= 1
    path, _, _, out = repo
    (printed,) = [line for line in out.splitlines() if line.startswith("| source")]  # report's table
    assert "nan" not in printed and printed.count("|") == len(curves.columns) + 1


def test_dvc_plots_draw_the_training_loss_across_rounds(repo):
    path, env, dvc, _ = repo
    lay, p = Layout(path / "artifacts"), load_params(path / "params.yaml")
    shown = json.loads(run(dvc + ["plots", "show", "--json"], path, env))
    assert not shown.get("errors"), shown.get("errors")
    values = shown["data"]["training loss (phase 2)"][0]["content"]["data"]["values"]
    assert {v["field"] for v in values} == {"loss", "memory_loss", "camera_loss"}
    joined = pd.read_csv(lay.train_curves)  # report's join of the rounds' curves
    iters = p.train.iters
    assert joined.step.tolist() == list(range(len(p.rounds) * iters))
    for r in p.rounds:
        curve = pd.read_csv(lay.train_curve(r.id))
        assert curve.equals(joined[joined["round"] == r.id].reset_index(drop=True))
        m = json.loads(lay.train_metrics(r.id).read_text())
        assert m["train_iters"] == iters and m["train_loss"] == pytest.approx(curve.loss.mean())
        assert m["train_seconds"] > 0 and m["train_img_per_s"] > 0
        camera = r.id < p.train.camera_rounds  # the camera loss is on in the first rounds only
        assert (curve.camera_loss > 0).all() if camera else (curve.camera_loss == 0).all()
    shown = json.loads(run(dvc + ["metrics", "show", "--json"], path, env))
    assert "train_img_per_s" in json.dumps(shown)
    # exactly the files with wall-clock fields are the ones faults.py compares without them
    from calr_core.paths import TIMED_FIELDS, timed
    for f in list(lay.root.rglob("*.csv")) + list(lay.root.rglob("*.json")):
        fields = pd.read_csv(f).columns if f.suffix == ".csv" else json.loads(f.read_text())
        assert timed(f) == any(k in fields for k in TIMED_FIELDS), f


def test_both_phases_start_from_the_pretrained_source_model(repo):
    import torch

    from calr_core.io import load_checkpoint
    from calr_core.model.state import load_model
    path = repo[0]
    lay = Layout(path / "artifacts")
    src = load_checkpoint(lay.source_checkpoint)
    assert src["kind"] == "source" and src["resolved_params"]["source"]["synth_seed"] == 5
    for ckpt in (lay.checkpoint("init"), lay.intra_checkpoint(0, "init")):
        model = load_model(ckpt).state_dict()
        assert all(torch.equal(v, src["model"][k]) for k, v in model.items())


def test_every_module_a_stage_loaded_is_in_its_commands_code_list(repo):
    """The runtime check of stages/code.py's closure from the source: each calr-stage process of
    the repro recorded the project modules it had loaded when it exited."""
    path = repo[0]
    runs = [json.loads(line) for line in imports_log(path).read_text().splitlines()]
    assert {r["command"] for r in runs} >= {"code", "synth", "prepare", "pretrain", "intra", "init",
                                           "evaluate", "round", "report"}
    for r in runs:
        listed = {line.split("  ")[1] for line in Layout(path / "artifacts").code_list(r["command"]).read_text().splitlines()}
        assert "calr_core/train/loop.py" in r["files"] or r["command"] not in ("round", "intra")
        assert set(r["files"]) <= listed, (r["command"], sorted(set(r["files"]) - listed))


def test_a_code_edit_reruns_exactly_the_stages_whose_command_runs_it(repo):
    """The edit that once left a finished demo stale: a line added to data/transforms.py."""
    path, env, dvc, _ = repro_clean(repo)
    edited = path / "calr_core" / "data" / "transforms.py"
    text = edited.read_text()
    command = {name: st["cmd"].split()[1] for name, st in yaml.safe_load((path / "dvc.lock").read_text())["stages"].items()}
    runs = {name for name, c in command.items() if name != "code"  # `dvc repro code` below runs it
            and "calr_core/data/transforms.py" in Layout(path / "artifacts").code_list(c).read_text()}
    assert {"intra@0", "round@rnd0", "evaluate-source"} <= runs and "report" not in runs
    try:
        edited.write_text(text + "# an edit\n")
        assert set(json.loads(run(dvc + ["status", "--json"], path, env))) == {"code"}
        run(dvc + ["repro", "code"], path, env)
        stale = set(json.loads(run(dvc + ["status", "--json"], path, env)))
        assert stale == runs, stale
    finally:
        edited.write_text(text)
        run(dvc + ["repro", "code"], path, env)
    assert json.loads(run(dvc + ["status", "--json"], path, env)) == {}


def test_second_repro_is_a_no_op_and_lr_change_reruns_only_training_onwards(repo):
    path, env, dvc, _ = repo
    out = run(dvc + ["repro"], path, env)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in out
    status = run(dvc + ["status", "--json"], path, env)
    assert json.loads(status) == {}
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["train"]["lr"] = 0.0001
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = set(json.loads(run(dvc + ["status", "--json"], path, env)))
    assert stale, "changing train.lr must invalidate training"
    assert stale == {f"round@rnd{r}" for r in range(2)}, stale  # phase 1 does not read train.lr


def test_a_lost_dvc_lock_comes_back_from_the_run_cache_without_running_a_stage(repo):
    """A kill inside DVC's own rewrite of dvc.lock can leave it empty (DVC writes it in place).
    The remedy docs/reliability.md gives: delete it and run `dvc repro`; every output is cached, so DVC's run
    cache restores each stage instead of running it, and the lock comes back the same."""
    from benchmarks.faults import snapshot
    path, env, dvc, _ = repro_clean(repo)
    before = snapshot(path)
    (path / "dvc.lock").write_text("")
    assert "dvc.lock' validation failed" in _fails(dvc + ["status"], path, env)
    (path / "dvc.lock").unlink()
    out = run(dvc + ["repro"], path, env)
    stages = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    assert "Running stage" not in out and out.count("skipping run") == len(stages), out[-2000:]
    assert snapshot(path) == before


def repro_clean(repo):
    """The finished project with its committed params (earlier tests edit them)."""
    path, env, dvc, out = repo
    run(["git", "checkout", "params.yaml"], path, env)
    assert json.loads(run(dvc + ["status", "--json"], path, env)) == {}
    return path, env, dvc, out


def _fails(cmd, cwd, env) -> str:
    import subprocess
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode != 0
    return res.stdout + res.stderr


def _stale_after(repo, edit) -> set[str]:
    """The stages `dvc status` calls changed once ``edit`` (a function of the params dict) has
    been applied to params.yaml; params.yaml is put back after."""
    path, env, dvc, _ = repo
    before = (path / "params.yaml").read_text()
    params = yaml.safe_load(before)
    edit(params)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(json.loads(run(dvc + ["status", "--json"], path, env)))
    finally:
        (path / "params.yaml").write_text(before)


def test_a_round_added_to_the_schedule_runs_only_that_round_and_the_report(repo):
    stale = _stale_after(repo, lambda p: p["rounds"].append({"id": 2, "prev": "round1"}))
    assert stale == {"round@rnd2", "report"}, stale


def test_a_phase2_setting_leaves_phase1_cached_and_an_intra_setting_reruns_it(repo):
    stale = _stale_after(repo, lambda p: p["cluster"].update(eps=0.55))
    assert stale == {"round@rnd0", "round@rnd1"}, stale
    stale = _stale_after(repo, lambda p: p["intra"].update(k1=7))
    assert {f"intra@{c}" for c in CAMERAS.values()} <= stale  # a camera's phase 1 is one stage
    assert not {s for s in stale if s.startswith("round@")}  # re-run, but not yet changed outputs


def test_a_step_run_by_hand_writes_what_the_dag_wrote(repo, tmp_path):
    """`calr-stage round` is its steps run in order: the same steps run one by one, by hand, on
    a copy of the finished project write byte-identical artifacts."""
    import hashlib
    import shutil

    from calr_core.paths import timed
    path, env, _, _ = repro_clean(repo)
    shutil.copytree(path, tmp_path / "by-hand", ignore=shutil.ignore_patterns(".git", ".dvc"))
    copy = tmp_path / "by-hand" / "artifacts"
    lay, ref = Layout(copy), Layout(path / "artifacts")
    made = [lay.features(1), lay.pseudo_labels(1), lay.cluster_summary(1), lay.checkpoint(1),
            lay.metrics(1), lay.intra_labels(2, 1)]
    for f in made:
        f.unlink()
    for step in (["extract"], ["cluster-global"], ["train"], ["evaluate"], ["cluster-intra", "--cam", "2"]):
        run(["calr-stage", *step, "--round", "1"], copy.parent, env)
    for f in made:
        assert not timed(f)
        twin = ref.root / f.relative_to(copy)
        assert hashlib.md5(f.read_bytes()).digest() == hashlib.md5(twin.read_bytes()).digest(), f


def test_bad_inputs_fail_in_one_line_and_touch_nothing(repo, tmp_path):
    """benchmarks/faults.py's bad-input cases on a copy of this finished project: exit code 2,
    one line naming the file or key, no new or changed artifact."""
    from benchmarks.faults import bad_inputs
    path, env, _, _ = repo
    results = bad_inputs(path, tmp_path, env)
    failed = [r for r in results if not r.get("ok") and "skipped" not in r]
    assert not failed, json.dumps(failed, indent=1)
    assert sum("ok" in r for r in results) >= 13  # the root-only ones may be skipped


@pytest.mark.parametrize("section,value", [
    ("data", {**TINY["data"], "cameras": [0, "1; touch {marker}"]}),
    ("rounds", [{"id": 0, "prev": "init"}, {"id": "1 && touch {marker}", "prev": "round0"}]),
])
def test_a_params_value_dvc_puts_in_a_command_cannot_run_code(tmp_path, section, value):
    """dvc.yaml builds commands from data.cameras and the round ids: a value that is not an integer
    stops `dvc repro` at its first stage (every stage checks params.yaml) before any such command."""
    marker = tmp_path / "pwned"
    value = yaml.safe_load(yaml.safe_dump(value).replace("{marker}", str(marker)))
    repo = tmp_path / "p"
    repo.mkdir()
    env, dvc = make_project(repo, {**TINY, section: value})
    import subprocess
    res = subprocess.run(dvc + ["repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and not marker.exists()
    key = "data.cameras[1]" if section == "data" else "rounds[1].id"
    assert f"{key}: expected int" in res.stderr + res.stdout, res.stderr[-2000:]
    assert not (repo / "artifacts").exists()
