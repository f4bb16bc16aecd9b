"""The warm worker behind `calr-stage`: imports paid once, not once per DVC stage.

A stage process spends 2-4 s importing torch, torchvision, pandas and the library before it
does anything, and the paper's DAG runs hundreds of them. So `calr-stage` is a thin client
(this module's top half, standard library only): it hands its arguments, folder, umask,
environment and its stdin/stdout/stderr to a server that has imported everything once, and the
server forks one child per run. The child *is* the stage run: it works in the client's folder
with the client's environment, writes straight to the client's terminal or pipe, and its exit
status becomes the client's. Killing the client (Ctrl-C, a kill -9 of `dvc repro`) kills the
child and its data-loader workers at once; Ctrl-C and SIGTERM are passed on as such.

One server serves one Python, one copy of the code, one setting of the environment variables
that libraries read at import, and one set of credentials (``key``). It exits when a source file
of calr_core or calr_stages changes, or what a folder on sys.path holds (a package installed or
upgraded): the next run starts a fresh one, so a run never uses stale code. It also exits after
CALR_WORKER_IDLE seconds (default 300) without runs. Its socket lives in a folder only the user
can open; its log is next to it. ``CALR_WORKER=off`` runs each stage in its own process as
before; so do torchrun ranks. Nothing about a stage's result depends on the path taken.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

# Environment variables that libraries read once, at import or library load (thread pools,
# allocators, search paths): runs that differ in them get different servers.
IMPORT_ENV = ("OMP_", "MKL_", "KMP_", "OPENBLAS_", "NUMBA_", "TORCH", "PYTORCH_", "CUDA_", "CUBLAS_",
              "NVIDIA_", "LD_", "PYTHONPATH", "PYTHONHASHSEED", "MALLOC_", "ARROW_")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
START_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------------------
# client

def main() -> None:
    """The `calr-stage` command."""
    env = dict(os.environ)
    direct = env.get("CALR_WORKER", "on").lower() in ("off", "0", "no", "false") or "RANK" in env
    rc = None if direct else _via_worker(sys.argv, env)
    if rc is None:  # no worker (off, a torchrun rank, or it could not start): run here
        from calr_stages.cli import app
        app(prog_name="calr-stage")
    elif rc < 0:  # the stage died of a signal: so does the client, for the caller to see
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    sys.exit(rc)


def code_roots() -> list[str]:
    return [str(Path(find_spec(name).origin).parent) for name in ("calr_core", "calr_stages")]


def key(env: dict) -> str:
    """What a server's imports depend on (the interpreter, its path, the code, the import-time
    env) and what its runs inherit from it (credentials, capabilities, resource limits)."""
    parts = [sys.executable, sys.version, *sys.path[1:], *code_roots(),
             *sorted(f"{k}={v}" for k, v in env.items() if k.startswith(IMPORT_ENV)), *credentials()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def credentials() -> list[str]:
    """Who a run is: ids, groups, capabilities (e.g. a root shell under `setpriv` without
    CAP_DAC_OVERRIDE must not be served by a server that has it) and resource limits."""
    import resource

    ids = [f"{os.getuid()}:{os.getgid()}:{sorted(os.getgroups())}"]
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        ids += [line for line in status if line.startswith(("Cap", "NoNewPrivs", "Seccomp"))]
    except OSError:
        pass
    limits = [n for n in dir(resource) if n.startswith("RLIMIT_")]
    return ids + [f"{n}={resource.getrlimit(getattr(resource, n))}" for n in sorted(limits)]


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"calr-worker-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise OSError(f"{folder}: not a private folder of this user")
    return folder


def _via_worker(argv: list[str], env: dict) -> int | None:
    """Run through a server (started if needed): the exit status (-N: killed by signal N), or
    None when no server could take the run and it has not started."""
    try:
        path = runtime_dir() / f"{key(env)}.sock"
        failed = path.with_suffix(".failed")
        if failed.exists() and failed.read_text() == sources(code_roots(), sys.path[1:]):
            return None  # a server failed to start on this code (its .log says why): don't retry
        for attempt in range(2):  # a server whose code changed says so: start a fresh one, once
            conn = _connect(path) or _start(path, env)
            if conn is None:
                print(f"calr-stage: the worker did not start (its log: {path.with_suffix('.log')}); "
                      "running in this process", file=sys.stderr)
                return None
            with conn:
                try:
                    rc = _run(conn, argv, env)
                except OSError:  # the server went away before the run began: so does its code
                    if attempt:
                        raise
                    rc = "stale"
            if rc != "stale":
                return rc
        print("calr-stage: the worker's code keeps changing; running in this process", file=sys.stderr)
    except OSError as exc:
        print(f"calr-stage: no worker ({exc}); running in this process", file=sys.stderr)
    return None


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
        return conn
    except OSError:
        conn.close()
        return None


def _start(path: Path, env: dict) -> socket.socket | None:
    """Start a server for ``path`` and connect once it listens; None if it did not come up."""
    if env.get("PYTHONPATH"):  # the server starts in /: a relative entry must mean what it means here
        env = {**env, "PYTHONPATH": os.pathsep.join(map(os.path.abspath, env["PYTHONPATH"].split(os.pathsep)))}
    log = open(path.with_suffix(".log"), "ab")
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; del sys.path[0]; from calr_stages.worker import serve; serve()",
         str(path)], env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is not None:
            return conn
        if server.poll() not in (None, 0):  # it failed (its log says why); 0: another one won
            path.with_suffix(".failed").write_text(sources(code_roots(), sys.path[1:]))
            return None
        time.sleep(0.05)
    return None


def _run(conn: socket.socket, argv: list[str], env: dict) -> int | str:
    umask = os.umask(0)
    os.umask(umask)
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env, "umask": umask}).encode()
    fds = [fd if _is_open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    socket.send_fds(conn, [len(request).to_bytes(8, "big") + request], fds)
    started = False

    def forward(signum, _frame):  # Ctrl-C / SIGTERM: to the stage, which decides how to stop
        if started:
            conn.sendall(json.dumps({"signal": signum}).encode() + b"\n")
        else:
            raise KeyboardInterrupt
    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        for line in conn.makefile("rb"):
            msg = json.loads(line)
            if msg.get("stale"):
                return "stale"
            if "pid" in msg:
                started = True
            if "status" in msg:
                return msg["status"]
    except OSError:
        if not started:
            raise  # the run never began: the caller may try again
    if not started:  # e.g. a server that stopped, idle, as this client connected
        raise ConnectionError("the worker closed the connection before the run began")
    print("calr-stage: the worker stopped before the stage finished; run it again (CALR_WORKER=off "
          "runs it in this process)", file=sys.stderr)
    return 1


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# server

PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "PIL.Image", "scipy.sparse", "numba", "torch", "calr_core.compat",
           "calr_stages.cli", "calr_core.model.state", "calr_core.model.extract", "calr_core.train.loop",
           "calr_core.train.pretrain", "calr_core.recipe", "calr_core.labelling", "calr_core.eval.model",
           "calr_core.eval.quality", "calr_core.io", "calr_core.data.datasets", "calr_core.report")


def sources(roots: list[str], paths: list[str]) -> str:
    """A fingerprint of the code a server runs: the text of every .py file under the code roots,
    and the names and mtime of every folder on sys.path (a package installed, upgraded or removed
    adds, renames or removes names there). Texts and names, not only mtimes: a file system may
    round a timestamp, or leave a folder's mtime as it was."""
    digest = hashlib.sha256()
    for root in roots:
        for file in sorted(Path(root).rglob("*.py")):
            digest.update(f"{file}\0".encode() + file.read_bytes() + b"\0")
    for entry in paths:
        if entry and os.path.isdir(entry):
            names = sorted(name for name in os.listdir(entry) if name != "__pycache__")
            digest.update("\0".join([entry, str(os.stat(entry).st_mtime_ns), *names, ""]).encode())
    return digest.hexdigest()


def serve() -> None:
    """The server: ``python -c ... <socket path>`` (started by the client)."""
    import fcntl
    import importlib
    import selectors

    path = Path(sys.argv[1])
    roots, paths = code_roots(), list(sys.path)
    loaded = sources(roots, paths)  # before the imports: a file changed while they ran is caught
    for name in PRELOAD:
        importlib.import_module(name)
    if sys.modules["torch"].cuda.is_initialized():  # a forked child could not use the GPU
        raise SystemExit("CUDA was initialised while importing the stages; not serving")
    with open(path.with_suffix(".lock"), "w") as lock:  # one server binds at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        other = _connect(path)
        if other is not None:  # another server already serves this key
            other.close()
            return
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(64)
        inode = path.stat().st_ino
    print(f"[{time.ctime()}] pid {os.getpid()} serving {path}", flush=True)
    idle = float(os.environ.get("CALR_WORKER_IDLE", "300"))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop: its runs are killed on the way out
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    runs: dict[int, tuple] = {}  # child pid -> (its client's connection, start time, command)
    last = time.monotonic()
    try:
        while listener.fileno() >= 0 or runs:
            timeout = None if runs else max(0.0, last + idle - time.monotonic())
            events = sel.select(timeout)
            if not events and not runs:
                break  # idle
            for sel_key, _ in events:
                if sel_key.data == "accept":
                    conn, _ = listener.accept()
                    # the whole request first: a connection closed with it unread would reach the
                    # client as a reset or a broken pipe, not as the answer
                    request, fds = _receive(conn)
                    if request is None:
                        continue
                    if sources(roots, paths) != loaded:  # the code changed: stop serving it, then say so
                        print(f"[{time.ctime()}] pid {os.getpid()}: code changed, not serving it", flush=True)
                        sel.unregister(listener)
                        _unlink_if(path, inode)
                        listener.close()
                        for fd in fds:
                            os.close(fd)
                        _tell(conn, stale=True)
                        conn.close()
                        continue
                    pid, command = _fork_run(conn, listener, runs, request, fds)
                    runs[pid] = (conn, time.monotonic(), command)
                    sel.register(conn, selectors.EVENT_READ, pid)
                elif sel_key.data == "child":
                    os.read(wake_r, 4096)
                    _reap(runs, sel)
                else:  # a client spoke: a signal to pass on, or EOF (it died: the run dies too)
                    pid, conn = sel_key.data, sel_key.fileobj
                    try:
                        data = conn.recv(4096)
                        signals = [json.loads(line)["signal"] for line in data.splitlines()] if data else [9]
                    except (OSError, ValueError, KeyError, TypeError):  # a reset or nonsense: as if it died
                        data, signals = b"", [9]
                    for signum in signals:
                        _signal_group(pid, signum)
                    if not data:
                        sel.unregister(conn)
            last = time.monotonic()
    finally:
        for pid in runs:
            _signal_group(pid, signal.SIGKILL)
        if listener.fileno() >= 0:
            _unlink_if(path, inode)


def _receive(conn: socket.socket) -> tuple[dict | None, list[int]]:
    """One client's request and its three file descriptors; (None, []) if it was malformed (the
    connection is then closed)."""
    msg, fds = b"", []
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while len(msg) < 8 or len(msg) < 8 + int.from_bytes(msg[:8], "big"):
            more = conn.recv(1 << 16)
            if not more:
                break
            msg += more
        if len(fds) == 3 and len(msg) >= 8 and len(msg) == 8 + int.from_bytes(msg[:8], "big"):
            return json.loads(msg[8:]), fds
    except (OSError, ValueError):  # a client that died or spoke nonsense: not the server's end
        pass
    conn.close()
    for fd in fds:
        os.close(fd)
    return None, []


def _fork_run(conn: socket.socket, listener: socket.socket, runs: dict, request: dict,
              fds: list[int]) -> tuple[int, str]:
    """Fork the child of one request; the parent gets its pid and command line."""
    pid = os.fork()
    if pid == 0:
        listener.close()
        for other, _, _ in runs.values():
            other.close()
        conn.close()
        _child(request, fds)
    try:
        os.setpgid(pid, pid)  # as the child does: whichever runs first, signals reach the group
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    _tell(conn, pid=pid)
    return pid, " ".join(["calr-stage", *request["argv"][1:]]) + f"  (in {request['cwd']})"


def _child(request: dict, fds: list[int]) -> None:
    """Become the stage run the client asked for; never returns."""
    import atexit
    import io
    import traceback

    status = 1
    try:
        os.setpgid(0, 0)  # the run and its loader workers: one group to signal
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=os.isatty(1),
                                      write_through=unbuffered)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                      write_through=True, errors="backslashreplace")
        sys.argv = list(request["argv"])
        from calr_stages.cli import app
        try:
            app(args=sys.argv[1:], prog_name="calr-stage")
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            status = 128 + signal.SIGINT
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - report whatever it was, then exit like Python would
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing left to tell
                pass
        os._exit(status)


def _reap(runs: dict, sel) -> None:
    """Report each finished run's status to its client (-N: killed by signal N) and log it."""
    while runs:
        pid, wait = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        if pid not in runs:
            continue
        conn, start, command = runs.pop(pid)
        status = -os.WTERMSIG(wait) if os.WIFSIGNALED(wait) else os.WEXITSTATUS(wait)
        print(f"[{time.ctime()}] {command}: status {status}, {time.monotonic() - start:.3f} s", flush=True)
        try:
            sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        _tell(conn, status=status)
        conn.close()


def _tell(conn: socket.socket, **msg) -> None:
    """One line to a client; a client that has gone is not the server's failure (its EOF, seen
    by the selector, kills its run)."""
    try:
        conn.sendall(json.dumps(msg).encode() + b"\n")
    except OSError:
        pass


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _unlink_if(path: Path, inode: int) -> None:
    """Remove the socket file if it is still this server's (a newer server may have replaced it)."""
    try:
        if path.stat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
