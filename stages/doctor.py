"""`calr-stage doctor`: find and mend what a kill leaves cut in DVC's own files.

DVC rewrites dvc.lock and .dvc/tmp/rwlock in place, so a kill during either write leaves a file
that stops every later `dvc repro` (docs/reliability.md "A kill can cut DVC's own files: calr-stage doctor"). The
doctor, while no DVC process runs:

- removes a .dvc/tmp/rwlock that is not DVC's JSON (it only lists running stages);
- sets a cut dvc.lock aside (.dvc/tmp/dvc.lock.cut-N) and rebuilds it from DVC's run cache: each
  stage, in `dvc repro`'s order, whose finished run the cache holds for its current deps and
  params gets its outputs checked out (the same bytes) and its lock entry written. Nothing runs:
  a stage the cache does not hold stays out of the lock, for `dvc repro` to run;
- adds to a whole dvc.lock the stages it lacks that the run cache holds (a cut that ended at an
  entry's end leaves a lock that parses).

A healthy project is left untouched.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import typer

from calr_stages._common import echo, fail, stage

LOCK, RWLOCK = "dvc.lock", Path(".dvc", "tmp", "rwlock")


@dataclass
class Findings:
    rwlock: str | None = None      # what is wrong with .dvc/tmp/rwlock, if anything
    lock: str | None = None        # what is wrong with dvc.lock, if anything
    missing: list[str] = field(default_factory=list)  # stages a whole lock lacks


def rwlock_problem(root: Path) -> str | None:
    """Why DVC could not read .dvc/tmp/rwlock, or None when it can (or there is none)."""
    from dvc.rwlock import SCHEMA
    path = root / RWLOCK
    if not path.is_file():
        return None
    try:
        SCHEMA(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, voluptuous.Invalid
        return f"{RWLOCK} is cut ({path.stat().st_size} bytes, not DVC's JSON: {str(exc).splitlines()[0]})"
    except Exception as exc:  # noqa: BLE001 - voluptuous' Invalid is no ValueError
        return f"{RWLOCK} is not in DVC's format ({exc})"
    return None


def lock_problem(root: Path) -> str | None:
    """Why dvc.lock is cut, or None when it is whole (or absent).

    Cut: empty, not YAML, not DVC's lock schema, not ended by a newline (DVC's writer ends every
    file with one), or an entry without a hash for each dependency and output.
    """
    import yaml
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    path = root / LOCK
    if not path.is_file():
        return None
    text = path.read_bytes()
    if not text.strip():
        return f"{LOCK} is empty ({len(text)} bytes)"
    if not text.endswith(b"\n"):
        return f"{LOCK} is cut: {len(text)} bytes, its last line unfinished"
    try:
        data = COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(text))
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError, voluptuous.Invalid, TypeError
        return f"{LOCK} is cut: {str(exc).splitlines()[0]} ({len(text)} bytes)"
    for name, entry in (data.get("stages") or {}).items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind) or []:
                if not any(k in item for k in ("md5", "hash", "etag", "checksum")) or \
                        len(str(item.get("md5", "0" * 32)).removesuffix(".dir")) != 32:
                    return f"{LOCK} is cut: stage {name}'s {kind} entry {item.get('path')} has no whole hash"
    return None


def dvc_processes(root: Path) -> list[str]:
    """'PID: command' of each running DVC process of this project: the live writers and readers
    an intact rwlock names, and any process running dvc whose working folder is in the project."""
    import psutil
    found = {}
    try:
        lock = json.loads((root / RWLOCK).read_text(encoding="utf-8"))
        infos = [*lock.get("write", {}).values(), *(i for v in lock.get("read", {}).values() for i in v)]
        for info in infos:
            if psutil.pid_exists(info["pid"]) and info["pid"] != os.getpid():
                found[info["pid"]] = info["cmd"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmd, cwd = proc.info.get("cmdline") or [], proc.info.get("cwd")
        if proc.info["pid"] == os.getpid() or not cwd or not cmd:
            continue
        is_dvc = Path(cmd[0]).name == "dvc" or any(a == "-m" and b == "dvc" for a, b in zip(cmd, cmd[1:])) \
            or (len(cmd) > 1 and Path(cmd[1]).name == "dvc")
        if is_dvc and Path(cwd).resolve().is_relative_to(root):
            found[proc.info["pid"]] = " ".join(cmd)
    return [f"{pid}: {cmd}" for pid, cmd in sorted(found.items())]


def repro_order(repo) -> list:
    """The pipeline's stages in the order `dvc repro` runs them."""
    from dvc.repo.reproduce import get_active_graph, plan_repro
    return [s for s in plan_repro(get_active_graph(repo.index.graph)) if getattr(s, "cmd", None)]


def in_run_cache(repo, st) -> bool:
    """Whether DVC's run cache holds a finished run of ``st`` at its current deps and params,
    with every output in the cache (reads only)."""
    from dvc.stage.cache import RunCacheNotFoundError
    try:
        st.save_deps()
        repo.stage_cache.restore(st, dry=True)
    except (RunCacheNotFoundError, FileNotFoundError):
        return False
    except Exception:  # noqa: BLE001 - a dep DVC cannot hash: not restorable
        return False
    return True


def restore(repo, stages: list) -> tuple[list, list[str]]:
    """Check out each stage the run cache holds, in order, and write their lock entries in one
    rewrite. Returns (restored, names of those left for `dvc repro`)."""
    done, left = [], []
    for st in stages:
        if not in_run_cache(repo, st):
            left.append(st.addressing)
            continue
        repo.stage_cache.restore(st)  # outputs from the cache: the run's own bytes
        st.save(run_cache=False)
        st.commit()
        done.append(st)
    if done:
        done[0].dvcfile.dump_stages(done, update_pipeline=False)
    return done, left


def set_aside(root: Path) -> Path:
    """Move the cut dvc.lock to .dvc/tmp/dvc.lock.cut-N (a new N): kept, never overwritten."""
    n = 1
    while (dest := root / ".dvc" / "tmp" / f"{LOCK}.cut-{n}").exists():
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(root / LOCK, dest)
    return dest


@stage
def doctor(
    project: Path = typer.Option(Path("."), "--project", help="The DVC project's folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be mended; change nothing."),
) -> None:
    """Find a cut dvc.lock or .dvc/tmp/rwlock (left by a kill while DVC wrote it) and mend them:
    the rwlock removed, the lock rebuilt from DVC's run cache without running any stage. Refuses
    while a DVC process runs in the project; changes nothing on a healthy project."""
    root = project.resolve()
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        fail(f"--project {project}: not a DVC project (expected {root / 'dvc.yaml'} and {root / '.dvc'}/)")
    busy = dvc_processes(root)
    if busy:
        fail(f"a DVC process runs in {root} (PID {busy[0]}); run doctor once it has ended")
    import logging

    from dvc.lock import LockError
    from dvc.repo import Repo
    logging.getLogger("dvc").setLevel(logging.WARNING)  # its per-stage "is cached" lines
    with Repo(str(root)) as repo:
        try:
            with repo.lock:  # no DVC process starts while the doctor works
                mend(root, repo, dry_run)
        except LockError:
            fail(f"a DVC process holds {root / '.dvc' / 'tmp' / 'lock'}; run doctor once it has ended")


def mend(root: Path, repo, dry_run: bool) -> None:
    """Report what is cut, and (unless ``dry_run``) mend it; the caller holds DVC's repo lock."""
    found = Findings(rwlock=rwlock_problem(root), lock=lock_problem(root))
    for problem in (found.rwlock, found.lock):
        if problem:
            echo(f"found: {problem}")
    if found.rwlock:
        if not dry_run:
            (root / RWLOCK).unlink()
        echo(f"would remove {RWLOCK}" if dry_run else f"removed {RWLOCK}")
    if found.lock:
        if dry_run:
            echo(f"would set {LOCK} aside and rebuild it from DVC's run cache (no stage runs)")
            return
        echo(f"set the cut {LOCK} aside as {set_aside(root).relative_to(root)}")
    stages = repro_order(repo)
    if not found.lock:  # a whole lock: only the stages it lacks
        from dvc.dvcfile import Lockfile
        have = (Lockfile(repo, str(root / LOCK)).load() or {}).get("stages", {})
        stages = [s for s in stages if s.name not in have]
        found.missing = [s.addressing for s in stages if in_run_cache(repo, s)]
        if found.missing:
            echo(f"found: {LOCK} lacks {len(found.missing)} stage(s) whose finished run DVC's run "
                 f"cache holds ({', '.join(found.missing[:3])}{', ...' if len(found.missing) > 3 else ''})")
        if dry_run and found.missing:
            echo(f"would add them to {LOCK} from the run cache (no stage runs)")
        stages = [s for s in stages if s.addressing in found.missing]
    if not (found.lock or found.missing or found.rwlock):
        echo(f"healthy: {LOCK} whole, {RWLOCK} readable or absent; nothing changed")
    if dry_run or not stages:
        return
    done, left = restore(repo, stages)
    echo(f"{LOCK}: {len(done)} stage(s) restored from DVC's run cache, nothing re-run"
         + (f"; {len(left)} not finished before the kill ({', '.join(left[:3])}"
            f"{', ...' if len(left) > 3 else ''}): `dvc repro` runs them" if left else ""))
