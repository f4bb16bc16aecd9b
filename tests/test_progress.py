"""Progress away from a terminal (DVC, CI, nohup): log lines with done/total, rate and ETA."""
import logging
import re

from calr_core.progress import progress


def test_log_lines_carry_done_total_rate_and_eta_when_stdout_is_not_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="calr.progress"):
        with progress("extract", 8, unit="img", every=0, start=2, loss=1.5) as p:
            assert not p.live  # pytest captures stdout: not a terminal
            for i in range(3):
                p.advance(2, loss=1.0 / (i + 1))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    pattern = r"extract: (\d+)/8 \((\d+)%\), [\d.]+ img/s, ETA (\d+:\d\d:\d\d|\?), loss ([\d.]+)"
    parsed = [re.fullmatch(pattern, line) for line in lines]
    assert all(parsed), lines
    assert [int(m[1]) for m in parsed] == [4, 6, 8] and [int(m[2]) for m in parsed] == [50, 75, 100]
    assert parsed[-1][3] == "0:00:00" and float(parsed[-1][4]) == float(f"{1 / 3:.4g}")


def test_lines_come_at_most_every_interval_and_not_at_all_when_disabled(caplog):
    with caplog.at_level(logging.INFO, logger="calr.progress"):
        with progress("train", 1000, every=3600) as p:
            for _ in range(1000):
                p.advance()
        with progress("quiet", 5, every=0, enabled=False) as p:
            p.advance(5)
    assert caplog.records == []


def test_a_long_step_gets_its_line_without_calling_advance(caplog):
    """A kNN block or a compiled Jaccard loop runs for minutes between two advances: the
    background thread writes the line on time (work that releases the GIL; sleep does)."""
    import time
    with caplog.at_level(logging.INFO, logger="calr.progress"):
        with progress("jaccard", 4, unit="step", every=0.05, step="knn") as p:
            time.sleep(0.3)
            p.advance(1, step="pair distances")
            time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("jaccard: 0/4 (0%)") and line.endswith("step knn") for line in lines) >= 2
    assert any(line.startswith("jaccard: 1/4 (25%)") and line.endswith("step pair distances") for line in lines)
    n = len(caplog.records)
    time.sleep(0.2)
    assert len(caplog.records) == n  # the thread stops with the block
