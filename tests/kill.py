"""kill -9 a command as soon as it has written a given file (its first recovery checkpoint)."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def kill_when_written(cmd: list[str], path: Path, timeout: float = 240) -> None:
    """Run ``cmd`` (one torch thread) from the repository root; SIGKILL it once ``path`` exists."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"{' '.join(cmd[1:4])} exited (rc {proc.returncode}) before writing {path}: "
                        f"{proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"{path} not written within {timeout:.0f} s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
