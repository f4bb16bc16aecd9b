"""`calr-stage doctor` on a real tiny DVC project: cut dvc.lock / rwlock files mended from DVC's
run cache with no stage re-run and no artifact changed; a healthy project left as it is; a
running DVC process refused."""
import hashlib
import re
import shutil
import subprocess
import sys
import time

import pytest

from benchmarks.faults import snapshot

from tests.project import TINY, make_project, run

pytestmark = pytest.mark.slow

CALR = [sys.executable, "-m", "calr_stages.cli"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny project after one whole `dvc repro`."""
    repo = tmp_path_factory.mktemp("doctor") / "project"
    repo.mkdir()
    env, dvc = make_project(repo, TINY)
    run(dvc + ["repro"], repo, env)
    return repo, env, dvc


@pytest.fixture
def project(finished, tmp_path):
    repo, env, dvc = finished
    copy = tmp_path / "project"
    shutil.copytree(repo, copy, symlinks=True)
    return copy, env, dvc


def files(repo) -> dict[str, str]:
    """md5 of every artifact and data file of the project."""
    return {str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
            for top in ("artifacts", "data") for p in sorted((repo / top).rglob("*")) if p.is_file()}


def doctor(repo, env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(CALR + ["doctor", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)


def assert_clean(repo, env, dvc):
    out = run(dvc + ["status"], repo, env)
    assert "up to date" in out, out


def lock_cuts(text: str) -> dict[str, str]:
    """Ways a kill cuts dvc.lock: nothing written, mid-line, at an entry's end (the rest still
    parses), and inside a hash with a newline after it."""
    entry = text.index("\n  round@rnd0:") + 1
    digest = list(re.finditer(r"md5: [0-9a-f]{32}", text))[len(text) // 2000]
    return {"empty": "", "mid-line": text[: len(text) // 2], "entry boundary": text[:entry],
            "inside a hash": text[: digest.start() + 15] + "\n"}


def test_a_healthy_project_is_left_as_it_is(project):
    repo, env, dvc = project
    lock, before = (repo / "dvc.lock").read_bytes(), files(repo)
    res = doctor(repo, env)
    assert res.returncode == 0 and res.stdout.startswith("healthy"), res.stdout + res.stderr
    assert (repo / "dvc.lock").read_bytes() == lock and files(repo) == before
    assert not list((repo / ".dvc" / "tmp").glob("dvc.lock.cut-*"))


def test_every_kind_of_cut_lock_is_mended_from_the_run_cache(project):
    repo, env, dvc = project
    whole, before = (repo / "dvc.lock").read_text(), files(repo)
    kept = 0
    for kind, cut in lock_cuts(whole).items():
        (repo / "dvc.lock").write_text(cut)
        dry = doctor(repo, env, "--dry-run")
        assert dry.returncode == 0 and "would" in dry.stdout, (kind, dry.stdout + dry.stderr)
        assert (repo / "dvc.lock").read_text() == cut, kind  # --dry-run changes nothing
        res = doctor(repo, env)
        assert res.returncode == 0, (kind, res.stdout + res.stderr)
        assert "nothing re-run" in res.stdout and "dvc repro` runs" not in res.stdout, (kind, res.stdout)
        # the lock DVC wrote after the whole run, byte for byte; no artifact touched; status clean
        assert (repo / "dvc.lock").read_text() == whole, kind
        assert files(repo) == before, kind
        assert_clean(repo, env, dvc)
        if kind != "entry boundary":  # a lock that parses is added to, not set aside
            kept += 1
            assert (repo / ".dvc" / "tmp" / f"dvc.lock.cut-{kept}").read_text() == cut, kind
    assert "calr-stage" not in run(dvc + ["repro"], repo, env)  # nothing left to run


def test_a_stage_the_run_cache_lacks_is_left_for_repro(project):
    """A stage cut mid-run has no run in the cache: the doctor leaves it (and what depends on it)
    out of the lock instead of running it, and says so; `dvc repro` then runs only those, to the
    same bytes."""
    repo, env, dvc = project
    before = snapshot(repo)  # artifacts and dvc.lock, without the wall-clock fields a re-run changes
    whole = (repo / "dvc.lock").read_text()
    runs = [p for p in (repo / ".dvc" / "cache" / "runs").rglob("*")
            if p.is_file() and "calr-stage round --round 1" in p.read_text()]
    assert runs
    for p in runs:  # the whole entry, as if DVC had never saved it
        shutil.rmtree(p.parent)
    (repo / "dvc.lock").write_text(whole[: len(whole) // 3])
    res = doctor(repo, env)
    assert res.returncode == 0, res.stdout + res.stderr
    # report's deps are round 1's outputs, whole in the workspace: its run is in the cache
    assert "11 stage(s) restored" in res.stdout and "1 not finished before the kill (round@rnd1)" \
        in res.stdout, res.stdout
    out = run(dvc + ["repro"], repo, env)
    assert "Running stage 'round@rnd1'" in out and "Running stage 'round@rnd0'" not in out, out
    assert snapshot(repo) == before  # round 1 re-run to the same bytes, but for its timings


def test_a_cut_rwlock_is_removed_and_nothing_else_changes(project):
    repo, env, dvc = project
    lock, before = (repo / "dvc.lock").read_bytes(), files(repo)
    rwlock = repo / ".dvc" / "tmp" / "rwlock"
    rwlock.write_text('{"write": {"artifacts/phase2/round1": {"pid": 12')
    dry = doctor(repo, env, "--dry-run")
    assert "rwlock is cut" in dry.stdout and rwlock.is_file(), dry.stdout
    res = doctor(repo, env)
    assert res.returncode == 0 and "removed .dvc/tmp/rwlock" in res.stdout, res.stdout + res.stderr
    assert not rwlock.exists() and (repo / "dvc.lock").read_bytes() == lock and files(repo) == before
    assert_clean(repo, env, dvc)


def test_refuses_while_a_dvc_process_runs(project):
    repo, env, dvc = project
    (repo / "dvc.lock").write_text("")
    # a live process named in the rwlock, as `dvc repro` records each running stage
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (repo / ".dvc" / "tmp" / "rwlock").write_text(
            '{"write": {"artifacts/phase2/round1": {"pid": %d, "cmd": "dvc repro"}}, "read": {}}' % sleeper.pid)
        res = doctor(repo, env)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stdout + res.stderr
        assert f"PID {sleeper.pid}" in res.stderr and (repo / "dvc.lock").read_text() == ""
    finally:
        sleeper.kill()
    (repo / ".dvc" / "tmp" / "rwlock").unlink()
    # a process holding DVC's repository lock
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dvc.repo import Repo\n"
                               "r = Repo('.'); r.lock.lock(); print('held', flush=True); time.sleep(120)"],
                              cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        res = doctor(repo, env)
        assert res.returncode == 2 and "a DVC process holds" in res.stderr, res.stdout + res.stderr
        assert time.monotonic() - t < 120 and (repo / "dvc.lock").read_text() == ""
        assert not list((repo / ".dvc" / "tmp").glob("dvc.lock.cut-*"))
    finally:
        holder.kill()


def test_refuses_a_folder_that_is_no_dvc_project(tmp_path):
    res = doctor(tmp_path, None, "--project", str(tmp_path))
    assert res.returncode == 2 and "not a DVC project" in res.stderr and str(tmp_path) in res.stderr
