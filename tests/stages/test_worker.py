"""The warm worker behind `calr-stage` (stages/worker.py), run for real: a server process, a
Unix socket, forked stage runs, signals. Each test gets its own socket folder and servers."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from calr_stages import worker

ROOT = Path(__file__).resolve().parents[2]
CALR_STAGE = [sys.executable, "-c", "import sys; sys.argv[0] = 'calr-stage'; "
              "from calr_stages.worker import main; main()"]


@pytest.fixture
def env():
    run_dir = tempfile.mkdtemp(prefix="w", dir="/tmp")  # short: a socket path has ~107 bytes
    env = {**os.environ, "XDG_RUNTIME_DIR": run_dir, "CALR_WORKER_IDLE": "30", "CALR_LOG": "WARNING"}
    env.pop("CALR_WORKER", None)
    yield env
    for pid in server_pids(env):
        _kill(pid, signal.SIGTERM)
    shutil.rmtree(run_dir, ignore_errors=True)


def server_pids(env: dict) -> list[int]:
    """Every server that has started under this env's socket folder, from the servers' log lines."""
    logs = Path(env["XDG_RUNTIME_DIR"]).glob("calr-worker-*/*.log")
    return [int(m) for log in logs for m in re.findall(r"pid (\d+) serving", log.read_text())]


def logs(env: dict) -> str:
    return "".join(log.read_text() for log in Path(env["XDG_RUNTIME_DIR"]).glob("calr-worker-*/*.log"))


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().split(") ")[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def stage(args: list[str], env: dict, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CALR_STAGE + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


def test_a_run_through_the_worker_equals_a_run_in_its_own_process(env, tmp_path):
    direct = stage(["synth", "--size", "tiny", "--out", "direct"], {**env, "CALR_WORKER": "off"}, tmp_path)
    warm = stage(["synth", "--size", "tiny", "--out", "warm"], env, tmp_path)
    again = stage(["synth", "--size", "tiny", "--out", "again"], env, tmp_path)
    assert direct.returncode == warm.returncode == again.returncode == 0, warm.stderr
    assert "running in this process" not in warm.stderr + again.stderr
    assert len(server_pids(env)) == 1  # one server, started by the first warm run and reused
    assert not list(Path(env["XDG_RUNTIME_DIR"]).glob("*/*.failed"))
    assert digest(tmp_path / "direct") == digest(tmp_path / "warm") == digest(tmp_path / "again")
    # the output went to the client's own stdout, in the client's folder
    untimed = lambda out: re.sub(r"seconds=[0-9.]+", "", out)  # noqa: E731
    assert untimed(warm.stdout.replace("warm", "direct")) == untimed(direct.stdout) and "in warm" in warm.stdout


def test_bad_input_fails_the_same_way_as_in_its_own_process(env, tmp_path):
    args = ["synth", "--size", "huge", "--out", "x"]
    direct = stage(args, {**env, "CALR_WORKER": "off"}, tmp_path)
    warm = stage(args, env, tmp_path)
    assert warm.returncode == direct.returncode == 2
    assert warm.stderr == direct.stderr and warm.stderr.count("\n") == 1 and "--size 'huge'" in warm.stderr
    assert not (tmp_path / "x").exists() and server_pids(env)


def test_killing_the_client_kills_the_run_and_ctrl_c_reaches_it(env, tmp_path):
    stage(["--help"], env, tmp_path)  # a warm server, so that the runs below start at once
    (server,) = server_pids(env)
    # kill -9 the client (what a crashed or killed `dvc repro` does): the run dies with it
    client = subprocess.Popen(CALR_STAGE + ["synth", "--size", "market", "--out", "killed"], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: children(server), 30), "no run started"
    (run,) = children(server)
    time.sleep(1.0)
    client.kill()
    client.wait()
    assert wait_for(lambda: not alive(run), 10), "the run outlived its client"
    assert not (tmp_path / "killed").exists()
    # Ctrl-C: the stage sees a KeyboardInterrupt, cleans up its temp folder, and exits 130 (as
    # `calr-stage` does in its own process)
    client = subprocess.Popen(CALR_STAGE + ["synth", "--size", "market", "--out", "stopped"], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: children(server), 30), "no run started"
    time.sleep(1.0)
    client.send_signal(signal.SIGINT)
    client.communicate(timeout=60)
    assert client.returncode == 130
    assert not list(tmp_path.glob("*stopped*")), "the interrupted run left files behind"
    assert alive(server) and not children(server)


def keep_mtime(path: Path, change) -> None:
    before = path.stat()
    change()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_server_never_runs_code_that_changed_under_it(env, tmp_path):
    code = tmp_path / "code"
    for name in ("calr_core", "stages"):
        shutil.copytree(ROOT / name, code / name, ignore=shutil.ignore_patterns("__pycache__"))
    (code / "calr_stages").symlink_to("stages")
    env = {**env, "PYTHONPATH": "code"}  # relative, as `PYTHONPATH=. calr-stage ...` is: to the run's folder
    assert stage(["synth", "--size", "tiny", "--out", "a"], env, tmp_path).returncode == 0
    (first,) = server_pids(env)
    # Changes a file system may not stamp (coarse or unchanged mtimes): a server goes by what
    # the files and folders hold, so each change below keeps the old mtime.
    synth = code / "stages" / "synth.py"
    keep_mtime(synth, lambda: synth.write_text(synth.read_text().replace("Render pedestrians", "Render NEW pedestrians")))
    second = stage(["synth", "--help"], env, tmp_path)
    assert second.returncode == 0 and "Render NEW pedestrians" in second.stdout
    assert "running in this process" not in second.stderr  # a fresh server ran it, not the client
    pids = server_pids(env)
    assert len(pids) == 2 and pids[0] == first
    assert wait_for(lambda: not alive(first), 10), "the stale server did not stop"
    keep_mtime(code, lambda: (code / "newly_installed.py").write_text(""))  # installed into a sys.path folder
    third = stage(["--help"], env, tmp_path)
    assert third.returncode == 0 and "running in this process" not in third.stderr, third.stderr
    assert len(server_pids(env)) == 3, logs(env)
    assert "code changed, not serving it" in logs(env)


def test_an_idle_server_stops_and_removes_its_socket(env, tmp_path):
    env = {**env, "CALR_WORKER_IDLE": "1"}
    assert stage(["--help"], env, tmp_path).returncode == 0
    (server,) = server_pids(env)
    assert wait_for(lambda: not alive(server), 30)
    assert not list(Path(env["XDG_RUNTIME_DIR"]).glob("*/*.sock"))


def test_a_client_without_a_servers_privileges_gets_its_own_server(env, tmp_path):
    """A root shell that dropped its capabilities (setpriv) must not be served by a full root
    server: its runs would read and write what it cannot."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    (tmp_path / "secret").mkdir(mode=0o000)
    args = ["synth", "--size", "tiny", "--out", "secret/world"]
    assert stage(["--help"], env, tmp_path).returncode == 0  # a full-privilege server is warm
    dropped = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", *CALR_STAGE, *args],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert dropped.returncode == 2 and "Permission denied" in dropped.stderr, dropped.stderr
    assert len(server_pids(env)) == 2 and not (tmp_path / "secret" / "world").exists()


def test_the_server_key_follows_import_time_settings_only():
    base = {"PATH": "/bin", "HOME": "/root"}
    assert worker.key(base) == worker.key({**base, "CALR_LOG": "DEBUG", "PYTHONUNBUFFERED": "1", "DVC_STAGE": "x"})
    for var in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "PYTHONPATH", "MKL_NUM_THREADS"):
        assert worker.key({**base, var: "1"}) != worker.key(base), var
