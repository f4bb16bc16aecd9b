"""Every crash point of a stage: a SIGKILL at each state-changing system call, by strace.

    python -m benchmarks.faults --part sweep [--stages prepare intra@0 round@rnd0] [--minutes 30]

For each swept stage S of the tiny DAG (tests/project.py):

1. A fresh project runs the stages S depends on (`dvc repro <its upstream>`): the state "before S".
   Each kill point works on a copy of it (hard links, but for the files DVC rewrites in place).
2. A traced, uninterrupted `dvc repro S` is the reference and lists the kill points. Two
   processes are traced, each as its own timeline: DVC's own process (its main thread: dvc.lock,
   .dvc/tmp/rwlock, the cache and the run cache), and the stage's `calr-stage` process with every
   thread and child (a `calr-stage` wrapper first in PATH runs it under `strace -f`). A point is a
   call that changes a file of the project: openat for writing or creating, write, pwrite64,
   ftruncate, fsync, fdatasync, rename, renameat, renameat2, unlink, unlinkat, mkdir, mkdirat,
   rmdir.
3. Each point kills at that call: `strace -e inject=SYSCALL:signal=SIGKILL:when=N`, N counting
   that syscall's calls in the traced process. The signal comes on the call's entry, so the call
   does not happen. A kill inside the stage's process kills the whole tree at once (the wrapper
   kills its process group before DVC can notice), as a power cut or kill -9 would.
4. Then `dvc repro S` runs until it finishes; when it stops on a cut dvc.lock or rwlock,
   `calr-stage doctor` mends it first. The project must then equal the reference under the crash
   campaign's snapshot rules (benchmarks/faults.py).

When a stage has more points than fit in --minutes, they are sampled evenly ("N of M"). Each
finished point is kept in benchmarks/results/sweep-points.jsonl: a killed sweep resumes where it
stopped. Needs strace (Debian package `strace`); without it the sweep says so and skips.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.faults import LOCK_CUT, RWLOCK_CUT, differences, snapshot
from tests.project import TINY, make_project, run

POINTS_FILE = Path(__file__).parent / "results" / "sweep-points.jsonl"
SYSCALLS = ("openat", "write", "pwrite64", "ftruncate", "fsync", "fdatasync", "rename", "renameat",
            "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir")
TRACE = ",".join(SYSCALLS)
# a line of `strace -f -y` output: [pid] name(args) = result (or <unfinished ...>)
CALL = re.compile(r"^(?:(\d+) +)?(\w+)\((.*)$")
WRITING = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
# what DVC rewrites in place (with every .gitignore): copied, not linked, for each kill point
COPIED = ("dvc.lock", "params.yaml", "dvc.yaml", ".dvc/tmp", ".dvc/config")
WRAPPER = """#!/bin/bash
# calr-stage under strace, for benchmarks/sweep.py
if [ -n "$SWEEP_INJECT" ]; then
  strace -f -qq -y -o "$SWEEP_LOG" -e trace={trace} $SWEEP_ONLY -e inject="$SWEEP_INJECT" -- {real} "$@"
  rc=$?
  # the stage died at the injected call: take DVC down with it before it can react, as a power cut would
  if grep -q "killed by SIGKILL" "$SWEEP_LOG"; then kill -KILL 0; fi
  exit $rc
elif [ -n "$SWEEP_LOG" ]; then
  exec strace -f -qq -y -o "$SWEEP_LOG" -e trace={trace} -- {real} "$@"
fi
exec {real} "$@"
"""


@dataclass(frozen=True)
class Point:
    stage: str       # the DVC stage swept, e.g. round@rnd0
    process: str     # "dvc" (DVC's own process) or "stage" (the calr-stage process tree)
    syscall: str
    n: int           # the call's number among that syscall's calls in its process (strace's when=)
    file: str        # the file it changes, relative to the project
    k: int           # ... among that syscall's calls on that file (when= under strace -P), if stable

    @property
    def key(self) -> str:
        return f"{self.stage}|{self.process}|{self.syscall}|{self.n}|{self.k}|{self.file}"


# temp names with a random part (calr's atomic writes, DVC's cache and lock files): another run
# names them differently, so a kill there is found by the syscall's count alone
RANDOM_NAME = re.compile(r"(^|/)\.[^/]*\.tmp$|\.tmp-[^/]*$|(^|/)\.[\w-]{22}\.tmp$")


def parse(trace: str, root: Path) -> list[tuple[str, int, str, int]]:
    """(syscall, n, file, k) of each state-changing call in a `strace -y` log, in order: n counts
    that syscall's calls by the same thread, k its calls on the same file (0 for a temp name)."""
    counts: dict[tuple, int] = {}
    out = []
    prefix = str(root) + "/"
    for line in trace.splitlines():
        m = CALL.match(line)
        if not m or m.group(2) not in SYSCALLS:
            continue  # "<... write resumed>", "+++ exited", signals
        pid, name, args = m.group(1) or "", m.group(2), m.group(3)
        counts[(pid, name)] = n = counts.get((pid, name), 0) + 1
        path = path_of(name, args, root)
        counts[(pid, name, path)] = k = counts.get((pid, name, path), 0) + 1
        if (name == "openat" and not WRITING.search(args)) or not path.startswith(prefix):
            continue
        file = path[len(prefix):]
        out.append((name, n, file, 0 if RANDOM_NAME.search(file) else k))
    return out


def path_of(name: str, args: str, root: Path) -> str:
    """The absolute path a traced call works on (its fd's, under -y), relative ones taken from
    the project's root (every traced process works there)."""
    if name in ("write", "pwrite64", "ftruncate", "fsync", "fdatasync"):
        m = re.match(r"\d+<([^>]*)>", args)
        return m.group(1) if m else ""
    found = re.findall(r'<([^>]*)>, "([^"]*)"|(?:^|, )"([^"]*)"', args)
    paths = [p if p.startswith("/") else f"{d}/{p}" for d, p, q in found if p] + [q for d, p, q in found if q]
    paths = [p if p.startswith("/") else f"{root}/{p}" for p in paths]
    return paths[0] if paths else ""


class Sweep:
    def __init__(self, scratch: Path, minutes: float):
        self.scratch, self.minutes = scratch, minutes
        self.kept = self._load()
        self.known: dict = {}  # md5s of hard-linked files, read once
        self.real = shutil.which("calr-stage", path=str(Path(sys.executable).parent))
        bindir = scratch / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        (bindir / "calr-stage").write_text(WRAPPER.format(trace=TRACE, real=self.real))
        (bindir / "calr-stage").chmod(0o755)
        self.bindir = bindir

    def _load(self) -> dict[str, dict]:
        if not POINTS_FILE.is_file():
            return {}
        kept = {}
        for line in POINTS_FILE.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            kept[rec["key"]] = rec
        return kept

    def _keep(self, rec: dict) -> None:
        self.kept[rec["key"]] = rec
        POINTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with POINTS_FILE.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")

    def env(self, base: dict, **extra) -> dict:
        return {**base, "PATH": f"{self.bindir}{os.pathsep}{base['PATH']}", "PYTHONUNBUFFERED": "1", **extra}

    def before(self, stage: str) -> tuple[Path, dict, list[str]]:
        """A project that has run everything ``stage`` depends on, and nothing else."""
        repo = self.scratch / f"before-{stage.replace('@', '-')}"
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        env, dvc = make_project(repo, TINY)
        upstream = _upstream(repo, env, stage)
        if upstream:
            run(dvc + ["repro", *upstream], repo, env)
        return repo, env, dvc

    def copy(self, src: Path, name: str) -> Path:
        """``src`` as hard links, but for the files DVC rewrites in place (copied)."""
        dest = self.scratch / name
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-al", str(src), str(dest)], check=True)
        for rel in [*COPIED, *(str(g.relative_to(dest)) for g in dest.rglob(".gitignore"))]:
            p = dest / rel
            if p.is_dir():
                shutil.rmtree(p)
                shutil.copytree(src / rel, p)
            elif p.is_file():
                p.unlink()
                shutil.copy2(src / rel, p)
        return dest

    def reference(self, stage: str, before: Path, env: dict, dvc: list[str]) -> tuple[dict, list[Point], float]:
        """The traced uninterrupted run: (snapshot, kill points, seconds)."""
        repo = self.copy(before, "reference")
        logs = self.scratch / "logs"
        logs.mkdir(exist_ok=True)
        t0 = time.monotonic()
        run(["strace", "-qq", "-y", "-o", str(logs / "dvc.trace"), "-e", f"trace={TRACE}", "--", *dvc, "repro", stage],
            repo, self.env(env, SWEEP_LOG=str(logs / "stage.trace")))
        secs = time.monotonic() - t0
        points = [Point(stage, proc, name, n, file, k)
                  for proc in ("dvc", "stage")
                  for name, n, file, k in parse((logs / f"{proc}.trace").read_text(), repo.resolve())]
        return snapshot(repo, self.known), points, secs

    def run_point(self, point: Point, before: Path, env: dict, dvc: list[str], ref: dict) -> dict:
        repo = self.copy(before, "point")
        log = self.scratch / "logs" / "kill.trace"
        inject = f"{point.syscall}:signal=SIGKILL:when={point.k or point.n}"
        only = ["-P", str(repo.resolve() / point.file), "-P", point.file] if point.k else []  # calls on that file
        if point.process == "dvc":
            cmd = ["strace", "-qq", "-y", "-o", str(log), "-e", f"trace={TRACE}", *only, "-e", f"inject={inject}",
                   "--", *dvc, "repro", point.stage]
            run_env = self.env(env)
        else:
            cmd = [*dvc, "repro", point.stage]
            run_env = self.env(env, SWEEP_LOG=str(log), SWEEP_INJECT=inject, SWEEP_ONLY=" ".join(only))
        with open(self.scratch / "logs" / "kill.out", "w") as out:
            proc = subprocess.Popen(cmd, cwd=repo, env=run_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            proc.wait()
        with_kill = log.is_file() and "killed by SIGKILL" in log.read_text()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the kill left running
        landed = _killed_call(log.read_text(), repo.resolve()) if with_kill else None
        mended, tries, failure = [], 0, None
        while tries < 4:
            tries += 1
            res = subprocess.run(dvc + ["repro", point.stage], cwd=repo, env=env, capture_output=True, text=True)
            if res.returncode == 0:
                break
            text = res.stdout + res.stderr
            if LOCK_CUT in text or RWLOCK_CUT in text:
                doc = subprocess.run([self.real, "doctor"], cwd=repo, env=env, capture_output=True, text=True)
                mended.append(doc.stdout.strip().splitlines()[0] if doc.stdout.strip() else doc.stderr.strip())
                continue
            failure = text[-1500:]
            break
        diff = differences(ref, snapshot(repo, self.known))
        shutil.rmtree(repo, ignore_errors=True)
        return {"key": point.key, **asdict(point), "killed": with_kill, "landed": landed,
                "as_planned": as_planned(point, landed),
                "mended": mended, "failure": failure, "differing": diff[:20]}

    def stage(self, stage: str) -> dict:
        """Kill at the stage's points in an order whose every prefix spreads evenly over them,
        until --minutes are spent; kept points are not run again."""
        before, env, dvc = self.before(stage)
        untouched = snapshot(before, self.known)
        ref, points, secs = self.reference(stage, before, env, dvc)
        todo = [points[i] for i in spread(len(points)) if points[i].key not in self.kept]
        print(f"sweep {stage}: {len(points)} kill points ({sum(p.process == 'dvc' for p in points)} in DVC's "
              f"process), {len(points) - len(todo)} kept; reference run {secs:.0f} s", flush=True)
        t0 = time.monotonic()
        for i, p in enumerate(todo):
            if time.monotonic() - t0 > self.minutes * 60:
                break
            rec = self.run_point(p, before, env, dvc, ref)
            self._keep(rec)
            bad = "" if not rec["differing"] and not rec["failure"] else \
                f"  DIFFERS: {rec['differing'][:3]} {(rec['failure'] or '')[-300:]}"
            mended = f" mended: {'; '.join(rec['mended'])}" if rec["mended"] else ""
            print(f"  [{i + 1}/{len(todo)}] {p.process} {p.syscall}#{p.n} {p.file}: "
                  f"{'killed' if rec['killed'] else 'NOT KILLED'} (at {rec['landed']}){mended}{bad}", flush=True)
        touched = differences(untouched, snapshot(before, self.known))  # hard links must not leak writes back
        shutil.rmtree(before, ignore_errors=True)
        recs = [self.kept[p.key] for p in points if p.key in self.kept]
        return {"stage": stage, "points": len(points), "run": len(recs), "seconds_reference": round(secs, 1),
                "before_touched": touched, "records": recs}


def as_planned(point: Point, landed: str | None) -> bool:
    """Whether the kill landed on the planned call: same syscall and file (for a temp name, a
    temp name in the same folder)."""
    if not landed:
        return False
    name, _, file = landed.partition(" ")
    if point.k:
        return name == point.syscall and file == point.file
    return name == point.syscall and bool(RANDOM_NAME.search(file)) and \
        Path(file).parent == Path(point.file).parent


def spread(m: int) -> list[int]:
    """0..m-1 in bit-reversed order: any prefix of it is spread evenly over the range."""
    bits = max(1, (m - 1).bit_length())
    return sorted(range(m), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))


def _upstream(repo: Path, env: dict, stage: str) -> list[str]:
    """The stages ``stage`` depends on, directly or not (DVC's graph)."""
    code = ("import sys, networkx as nx\nfrom dvc.repo import Repo\nr = Repo('.')\n"
            "s = [x for x in r.index.stages if x.addressing == sys.argv[1]]\n"
            "print(' '.join(sorted(x.addressing for x in nx.descendants(r.index.graph, s[0]))))")
    return subprocess.run([sys.executable, "-c", code, stage], cwd=repo, env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def _killed_call(trace: str, root: Path) -> str | None:
    """'syscall file' of the call the kill landed on: the traced call that never returned ("= ?")
    in the killed process, else that process's last traced call."""
    killed = re.search(r"^(?:(\d+) +)?\+\+\+ killed by SIGKILL", trace, re.M)
    if not killed:
        return None
    calls = [m for line in trace[: killed.start()].splitlines() if (m := CALL.match(line)) and m.group(2) in SYSCALLS]
    pending = [m for m in calls if m.group(3).rstrip().endswith("= ?")]
    pid = killed.group(1)
    last = pending or [m for m in calls if m.group(1) == pid]
    if not last:
        return None
    m = last[-1]
    return f"{m.group(2)} {path_of(m.group(2), m.group(3), root).removeprefix(str(root) + '/')}"


def sweep(scratch: Path, stages: list[str], minutes: float) -> dict:
    if shutil.which("strace") is None:
        print("sweep skipped: strace is not installed (Debian: apt-get install strace)", flush=True)
        return {"skipped": "strace not installed"}
    s = Sweep(scratch, minutes)
    per_stage = [s.stage(st) for st in stages]
    records = [r for st in per_stage for r in st["records"]]
    differing = [{"stage": r["stage"], "syscall": r["syscall"], "n": r["n"], "process": r["process"],
                  "file": r["file"], "what differed": r["differing"] or r["failure"]}
                 for r in records if r["differing"] or r["failure"]]
    return {"stages": [{k: v for k, v in st.items() if k != "records"} for st in per_stage],
            "points": len(records), "identical": len(records) - len(differing),
            "landed_as_planned": sum(r["as_planned"] for r in records),
            "not_killed": sum(not r["killed"] for r in records),
            "mended_by_doctor": sum(bool(r["mended"]) for r in records), "differing": differing}
