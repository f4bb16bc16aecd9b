"""benchmarks/sweep.py's kill points, checked on a real strace of a small writer."""
import shutil
import subprocess
import sys

import pytest

from benchmarks.sweep import TRACE, Point, _killed_call, as_planned, parse, spread

# writes a.txt atomically through a temp name, then makes a folder and removes b.txt
WRITER = """
import os, tempfile
fd, tmp = tempfile.mkstemp(prefix=".a.txt.", suffix=".tmp", dir=".")
os.write(fd, b"one"); os.write(fd, b"two"); os.fsync(fd); os.close(fd)
os.replace(tmp, "a.txt")
open("a.txt").read()
os.mkdir("d")
os.unlink("b.txt")
"""


def test_spread_is_a_permutation_whose_prefixes_cover_the_range():
    for m in (1, 2, 7, 16, 250):
        order = spread(m)
        assert sorted(order) == list(range(m))
    order = spread(64)
    for size in (2, 4, 8, 16):  # each prefix has one point in each of `size` equal slices
        assert sorted(i * size // 64 for i in order[:size]) == list(range(size))


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_points_found_in_a_real_trace_and_a_kill_lands_on_each(tmp_path):
    (tmp_path / "w.py").write_text(WRITER)
    (tmp_path / "b.txt").write_text("old")
    log = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(log), "-e", f"trace={TRACE}", sys.executable, "w.py"],
                   cwd=tmp_path, check=True)
    root = tmp_path.resolve()
    points = parse(log.read_text(), root)
    names = [(name, file) for name, _, file, _ in points]
    temp = next(f for n, f in names if n == "openat")
    assert temp.startswith(".a.txt.") and temp.endswith(".tmp")
    # the reading openat of a.txt is no point; every change is, in order
    assert [n for n, _ in names] == ["openat", "write", "write", "fsync", "rename", "mkdir", "unlink"]
    assert names[-3:] == [("rename", temp), ("mkdir", "d"), ("unlink", "b.txt")]
    assert [k for *_, k in points] == [0, 0, 0, 0, 0, 1, 1]  # temp names: counted by syscall alone

    # kill before each change: the files show that the call never happened, and _killed_call names it
    for name, n, file, k in points:
        work = tmp_path / f"kill-{name}-{n}"
        work.mkdir()
        (work / "b.txt").write_text("old")
        only = ["-P", str(work.resolve() / file), "-P", file] if k else []
        log = work / "trace"
        res = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(log), "-e", f"trace={TRACE}", *only,
                              "-e", f"inject={name}:signal=SIGKILL:when={k or n}", sys.executable, str(tmp_path / "w.py")],
                             cwd=work)
        assert res.returncode != 0, name
        landed = _killed_call(log.read_text(), work.resolve())
        assert as_planned(Point("s", "stage", name, n, file, k), landed), (name, landed)
        assert (work / "b.txt").is_file()  # the unlink, last, never ran
        assert not (work / "d").exists() or name == "unlink"
        assert (work / "a.txt").exists() == (name in ("mkdir", "unlink"))
