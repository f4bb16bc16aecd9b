"""The crash and bad-input matrix, on the tiny DAG of tests/project.py (real git + DVC projects).

    python -m benchmarks.faults [--campaigns 3] [--part all|determinism|crashes|bad|sweep]

- determinism: two uninterrupted `dvc repro` runs of fresh projects; every file under
  artifacts/ and data/ and dvc.lock must be byte-identical.
- crashes: each campaign runs `dvc repro` and kill -9s the whole process group at a random
  moment inside the first stage of a kind hit fewer than --kills-per-kind times in that campaign
  (the delay is uniform over that stage's duration in the reference run, so a kill inside an
  `intra` or `round` stage lands in any of its steps), then re-runs, until `dvc repro` finishes
  with no kill. The finished project must equal the uninterrupted one byte for byte. A kill
  inside DVC's own rewrite of dvc.lock can leave it empty, and `dvc repro` then refuses to run;
  the campaign does what docs/reliability.md tells a user (delete dvc.lock, run again: DVC's run cache
  restores the finished stages) and records it as ``lock_lost_after``; a kill inside DVC's write
  of ``.dvc/tmp/rwlock`` (its lock of running stages) makes every later `dvc repro` refuse with
  "Unable to read RWLock-file": the campaign deletes that file (no stage runs after a kill) and
  records ``rwlock_lost_after``.
- bad inputs: each case damages one input of a finished project (a hard-linked copy: damage
  replaces files, never edits them in place), runs one stage, and checks exit code 2, exactly
  one line on stderr naming the file or key, no new or changed artifact.
- sweep: a kill at every state-changing system call of a few stages (benchmarks/sweep.py).
Writes benchmarks/results/faults.json and prints the tables (docs/reliability.md "Crashes and resuming").
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from calr_core.paths import TIMED_FIELDS, timed
from tests.project import TINY, make_project

RESULTS = Path(__file__).parent / "results" / "faults.json"
RUNNING = re.compile(r"Running stage '([^']+)'")
LOCK_CUT = "dvc.lock' validation failed"  # DVC rewrites dvc.lock in place: a kill can leave it empty
RWLOCK_CUT = "Unable to read RWLock-file"  # so it does .dvc/tmp/rwlock, its lock of running stages


def kind(stage: str) -> str:
    """'round@rnd3' -> 'round'."""
    return stage.split("@")[0]


def snapshot(repo: Path, known: dict | None = None) -> dict[str, str]:
    """md5 of every file the pipeline writes (artifacts/, data/) and of dvc.lock. The training
    curves and their metrics are hashed without their wall-clock fields (paths.TIMED_FIELDS),
    and so are dvc.lock's hashes of them and of the folders that hold them. ``known``: md5s by
    (inode, size, mtime), filled as it goes, so that hard-linked copies are read once."""
    files = [p for top in ("artifacts", "data") for p in (repo / top).rglob("*")
             if p.is_file() and ".recovery" not in p.parts]
    files.append(repo / "dvc.lock")
    known = {} if known is None else known
    out = {}
    for p in sorted(files):
        st, rel = p.stat(), str(p.relative_to(repo))
        key = (st.st_ino, st.st_size, st.st_mtime_ns, rel)
        if key not in known:
            known[key] = hashlib.md5(_untimed(repo, p)).hexdigest()
        out[rel] = known[key]
    return out


def _untimed(repo: Path, path: Path) -> bytes:
    rel = path.relative_to(repo).as_posix()
    if path.suffix == ".csv" and timed(rel):
        frame = pd.read_csv(path)
        return frame.drop(columns=[c for c in TIMED_FIELDS if c in frame]).to_csv(index=False).encode()
    if path.suffix == ".json" and timed(rel):
        return json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k not in TIMED_FIELDS}).encode()
    if rel == "dvc.lock":
        timed_files = [f.relative_to(repo).as_posix() for f in (repo / "artifacts").rglob("*") if timed(f)]
        lock = yaml.safe_load(path.read_text())
        for stage in lock["stages"].values():
            for entry in stage.get("deps", []) + stage.get("outs", []):
                if any(f == entry["path"] or f.startswith(entry["path"] + "/") for f in timed_files):
                    for key in ("md5", "hash", "size", "nfiles"):
                        entry.pop(key, None)
        return yaml.safe_dump(lock, sort_keys=True).encode()
    return path.read_bytes()


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def repro(repo: Path, env: dict, dvc: list[str], pick: Callable[[str], bool] | None = None,
          durations: dict[str, float] | None = None, rng: random.Random | None = None):
    """`dvc repro`; with ``pick``, SIGKILL its process group at a random moment inside the first
    stage ``pick`` accepts. Returns (kill record or None, seconds per stage, output)."""
    proc = subprocess.Popen(dvc + ["repro"], cwd=repo, env={**env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(x) for x in proc.stdout], lines.put(None)), daemon=True).start()
    current, started, kill_at, log, times = None, 0.0, None, [], {}
    while True:
        try:
            line = lines.get(timeout=0.02)
        except queue.Empty:
            line = ""
        now = time.monotonic()
        if line is None:
            break
        if line:
            log.append(line)
            m = RUNNING.search(line)
            if m:
                if current:
                    times[current] = now - started
                current, started = m.group(1), now
                if pick is not None and kill_at is None and pick(current):
                    kill_at = now + rng.uniform(0.0, 1.0) * durations.get(current, 1.0)
        if kill_at is not None and now >= kill_at:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"stage": current, "kind": kind(current), "after_s": round(now - started, 2)}, times, "".join(log)
    proc.wait()
    if current:
        times[current] = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro failed (rc {proc.returncode}):\n{''.join(log)[-3000:]}")
    return None, times, "".join(log)


def uninterrupted(scratch: Path, name: str) -> tuple[Path, dict[str, str], float, dict[str, float]]:
    """A fresh project run through: (folder, snapshot, seconds, seconds per stage)."""
    repo = scratch / name
    repo.mkdir()
    env, dvc = make_project(repo, TINY)
    t0 = time.monotonic()
    _, times, _ = repro(repo, env, dvc)
    return repo, snapshot(repo), time.monotonic() - t0, times


def determinism(scratch: Path, first: tuple) -> dict:
    _, a, secs, times = first
    _, b, _, _ = uninterrupted(scratch, "second")
    return {"files": len(a), "differing": differences(a, b), "seconds_per_run": round(secs, 1),
            "stages": len(times)}


def crashes(scratch: Path, reference: dict[str, str], durations: dict[str, float], campaigns: int,
            per_kind: int = 1) -> dict:
    kinds = sorted({kind(s) for s in durations})
    out = []
    for c in range(campaigns):
        repo = scratch / f"campaign{c}"
        repo.mkdir()
        env, dvc = make_project(repo, TINY)
        rng, hit, kills, failures, lock_lost, rwlock_lost = random.Random(c), {k: 0 for k in kinds}, [], [], [], []
        t0 = time.monotonic()
        for _ in range(3 * per_kind * len(kinds)):
            try:
                killed, _, _ = repro(repo, env, dvc, lambda s: hit[kind(s)] < per_kind, durations, rng)
            except RuntimeError as exc:  # a re-run that does not finish: the fault we look for
                if LOCK_CUT in str(exc) and len(lock_lost) < len(kills):
                    # the kill landed in DVC's own rewrite of dvc.lock: do what docs/reliability.md says
                    lock_lost.append(kills[-1]["stage"])
                    (repo / "dvc.lock").unlink()
                    continue
                if RWLOCK_CUT in str(exc) and len(rwlock_lost) < len(kills):
                    # the kill landed in DVC's write of its rwlock file: no stage runs any more
                    rwlock_lost.append(kills[-1]["stage"])
                    (repo / ".dvc" / "tmp" / "rwlock").unlink()
                    continue
                failures.append(str(exc)[-1500:])
                break
            if killed is None:
                break
            hit[killed["kind"]] += 1
            kills.append(killed)
            print(f"campaign {c}: killed {killed['stage']} after {killed['after_s']} s", flush=True)
        diff = differences(reference, snapshot(repo))
        if diff or failures:  # keep what went wrong for a look
            kept = Path(tempfile.gettempdir()) / f"calr-faults-campaign{c}"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(repo, kept, symlinks=True)
            print(f"campaign {c}: {len(diff)} file(s) differ; the project is kept in {kept}", flush=True)
        out.append({"campaign": c, "kills": kills, "lock_lost_after": lock_lost,
                    "rwlock_lost_after": rwlock_lost, "failures": failures, "differing": diff,
                    "seconds": round(time.monotonic() - t0, 1)})
        shutil.rmtree(repo)
    per_kind = {k: sum(kl["kind"] == k for o in out for kl in o["kills"]) for k in kinds}
    return {"campaigns": out, "kills_per_kind": per_kind,
            "all_equal": all(not o["differing"] and not o["failures"] for o in out)}


# ---- bad inputs ---------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    command: list[str]            # calr-stage arguments
    names: str                    # what the error line must contain ({repo}-relative path or key)
    damage: Callable[[Path], None] = lambda repo: None
    remove: list[str] = field(default_factory=list)  # the stage's own outputs, removed first
    unprivileged: bool = False    # run without root's file-permission override
    mount: str | None = None      # a folder to put on a tiny tmpfs (disk full)


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _cut(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        data = (repo / rel).read_bytes()
        _replace(repo / rel, data[: int(len(data) * keep)])
    return damage


def _bad_features(rel: str, value: float) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pq.read_table(repo / rel)
        feats = np.stack(table.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
        feats[3, 7] = value
        col = pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel()), feats.shape[1])
        (repo / rel).unlink()
        pq.write_table(table.set_column(2, "feature", col), repo / rel)
    return damage


def _all_outliers(repo: Path) -> None:
    import pandas as pd
    rel = repo / "artifacts/phase2/round0/pseudo_labels.parquet"
    frame = pd.read_parquet(rel).assign(label=-1, global_label=-1, weight=0.0)
    rel.unlink()
    frame.to_parquet(rel, index=False)


def _foreign(repo: Path) -> None:
    import pandas as pd
    rel = repo / "artifacts/phase2/round0/pseudo_labels.parquet"
    rel.unlink()
    pd.DataFrame({"person": ["a", "b"], "score": [0.5, 0.7]}).to_parquet(rel)


def _params_typo(repo: Path) -> None:
    import yaml
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["lrr"] = params["train"].pop("lr")  # a typo in the user's edit
    _replace(repo / "params.yaml", yaml.safe_dump(params, sort_keys=False).encode())


def _first_image(repo: Path) -> str:
    """The project's first training image (of data.root, a folder or a manifest), relative to it."""
    from calr_core.config import load_params
    from calr_core.data.datasets import read_dataset
    data = load_params(repo / "params.yaml").data
    root = repo / data.root
    frame = read_dataset(data.dataset, root, check_images=False)
    base = root.parent if data.dataset == "manifest" else root
    return str((base / frame.path.iloc[0]).relative_to(repo))


def _image(how: str) -> Callable[[Path], None]:
    def damage(repo: Path) -> None:
        path = repo / _first_image(repo)
        data = path.read_bytes()
        _replace(path, b"" if how == "empty" else data[: len(data) // 2] if how == "cut" else data)
        if how == "unreadable":
            path.chmod(0)
    return damage


def cases(repo: Path) -> list[Case]:
    """The bad-input cases for the finished project at ``repo`` (its first camera and image)."""
    from calr_core.config import load_params
    cam = str(load_params(repo / "params.yaml").data.cameras[0])
    img = _first_image(repo)
    f0, pl0 = "artifacts/phase2/round0/features.parquet", "artifacts/phase2/round0/pseudo_labels.parquet"
    ck0 = "artifacts/phase2/round0/checkpoint.pt"
    out_global = [pl0, "artifacts/phase2/round0/cluster_summary.json"]
    prep = ["prepare", "--out", "artifacts/manifest-new.parquet"]
    return [
        Case("zero-byte image", prep, img, _image("empty")),
        Case("truncated JPEG", prep, img, _image("cut")),
        Case("unreadable image file", prep, img, _image("unreadable"), unprivileged=True),
        Case("truncated Parquet", ["cluster-global", "--round", "0"], f0, _cut(f0), out_global),
        Case("Parquet with a foreign schema", ["train", "--round", "0"], pl0, _foreign, [ck0]),
        Case("truncated checkpoint", ["extract", "--round", "1"], ck0, _cut(ck0),
             ["artifacts/phase2/round1/features.parquet"]),
        Case("checkpoint of another architecture", ["init", "-S", "model.arch=resnet50"],
             "artifacts/source/checkpoint.pt", remove=["artifacts/phase2/init/checkpoint.pt"]),
        Case("NaN features into clustering", ["cluster-global", "--round", "0"], f0,
             _bad_features(f0, np.nan), out_global),
        Case("Inf features into training", ["train", "--round", "0"], f0, _bad_features(f0, np.inf), [ck0]),
        Case("every image an outlier", ["train", "--round", "0"], pl0, _all_outliers, [ck0]),
        Case("camera with fewer images than intra.k1",
             ["cluster-intra", "--cam", cam, "--round", "0", "-S", "intra.k1=100000"], "intra.k1",
             remove=[f"artifacts/phase1/cam{cam}/labels/round0.parquet"]),
        Case("camera with fewer images than intra.n_clusters",
             ["cluster-intra", "--cam", cam, "--round", "0", "-S", "intra.n_clusters=100000"],
             "intra.n_clusters", remove=[f"artifacts/phase1/cam{cam}/labels/round0.parquet"]),
        Case("unknown params key", ["train", "--round", "0"], "train.lrr", _params_typo, [ck0]),
        Case("mistyped params value", ["train", "--round", "0", "-S", "train.lr=fast"], "train.lr",
             remove=[ck0]),
        Case("disk full while writing", ["train", "--round", "0"], ck0, remove=[ck0],
             mount="artifacts/phase2/round0"),
        Case("read-only artifacts folder", ["cluster-global", "--round", "0"], pl0, remove=out_global,
             unprivileged=True, damage=lambda repo: _read_only(repo / "artifacts", True)),
    ]


def _read_only(root: Path, on: bool) -> None:
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        d.chmod(0o555 if on else 0o755)


def _state(root: Path) -> dict[str, tuple]:
    """What a failed stage must leave as it was: every file's size, mtime and inode."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _tmpfs(folder: Path, spare: int):
    """``folder`` on a tmpfs that holds its files plus ``spare`` bytes (needs root)."""
    saved = Path(tempfile.mkdtemp())
    shutil.copytree(folder, saved / "x")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) + spare
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                   capture_output=True)
    try:
        shutil.copytree(saved / "x", folder, dirs_exist_ok=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        shutil.rmtree(saved)


def can_mount() -> bool:
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], check=True)
        return ok


def run_case(case: Case, finished: Path, scratch: Path, env: dict) -> dict:
    """Damage a hard-linked copy of ``finished``, run the stage, and judge what it did."""
    repo = scratch / re.sub(r"\W+", "-", case.name)
    subprocess.run(["cp", "-al", str(finished), str(repo)], check=True)
    for rel in case.remove:
        (repo / rel).unlink(missing_ok=True)
    case.damage(repo)
    cmd = [str(Path(sys.executable).parent / "calr-stage"), *case.command]
    if case.unprivileged and os.geteuid() == 0:  # root reads and writes anything: drop that power
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    mount = _tmpfs(repo / case.mount, spare=64 * 1024) if case.mount else contextlib.nullcontext()
    with mount:
        before = _state(repo / "artifacts")
        res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        after = _state(repo / "artifacts")
    if case.name.startswith("read-only"):
        _read_only(repo / "artifacts", False)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    changed = differences({k: str(v) for k, v in before.items()}, {k: str(v) for k, v in after.items()})
    result = {"case": case.name, "command": " ".join(["calr-stage", *case.command]), "exit": res.returncode,
              "stderr": lines, "changed": changed,
              "ok": res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
              and case.names in lines[0] and not changed}
    shutil.rmtree(repo, ignore_errors=True)
    return result


def bad_inputs(finished: Path, scratch: Path, env: dict) -> list[dict]:
    mountable = can_mount()
    out = []
    for case in cases(finished):
        if case.mount and not mountable:
            out.append({"case": case.name, "skipped": "needs mount (root)"})
            continue
        if case.unprivileged and os.geteuid() == 0 and not shutil.which("setpriv"):
            out.append({"case": case.name, "skipped": "root without setpriv ignores permissions"})
            continue
        out.append(run_case(case, finished, scratch, env))
        print(f"{'ok ' if out[-1]['ok'] else 'BAD'} {case.name}: {out[-1]['stderr'][:1]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--campaigns", type=int, default=3)
    ap.add_argument("--kills-per-kind", type=int, default=1)
    ap.add_argument("--part", choices=["all", "determinism", "crashes", "bad", "sweep"], default="all")
    ap.add_argument("--stages", nargs="+", default=["prepare", "intra@0", "round@rnd0"],
                    help="sweep: the DVC stages to kill at every call of")
    ap.add_argument("--minutes", type=float, default=30, help="sweep: time for each stage's points")
    args = ap.parse_args()
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="calr-faults-") as tmp:
        scratch = Path(tmp)
        t0 = time.monotonic()
        if args.part == "sweep":  # needs no reference run of the whole DAG
            from benchmarks.sweep import sweep
            result["sweep"] = sweep(scratch, args.stages, args.minutes)
            print(json.dumps({k: v for k, v in result["sweep"].items() if k != "differing"}, indent=1))
        else:
            first = uninterrupted(scratch, "reference")
            ref, reference, _, durations = first
            if args.part in ("all", "determinism"):
                result["determinism"] = determinism(scratch, first)
                print(f"determinism: {result['determinism']}", flush=True)
            if args.part in ("all", "bad"):
                env = {**os.environ, "CALR_LOG": "WARNING"}
                result["bad_inputs"] = bad_inputs(ref, scratch, env)
            if args.part in ("all", "crashes"):
                result["crashes"] = crashes(scratch, reference, durations, args.campaigns, args.kills_per_kind)
                print(json.dumps(result["crashes"]["kills_per_kind"]), "all equal:", result["crashes"]["all_equal"])
        result["machine"] = f"{os.cpu_count()} CPU cores"
        result[f"seconds_{args.part}"] = round(time.monotonic() - t0, 1)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
