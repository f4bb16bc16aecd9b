"""Progress of long work: a rich bar on a terminal, a log line every ~10 s anywhere else.

Under DVC, CI or nohup, stdout is not a terminal and a rich bar shows nothing until the work
ends; there the same progress is logged instead, e.g.
``extract: 1024/12936 (8%), 412.3 img/s, ETA 0:00:29``.
A background thread also writes the line when one step runs longer than the interval (a kNN
search, a compiled Jaccard loop): anything that releases the GIL (numpy, numba ``nogil``,
faiss, torch) gets its line on time; Infomap's C++ run holds the GIL and is logged around.
"""
from __future__ import annotations

import datetime
import logging
import sys
import threading
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger("calr.progress")


class progress:
    showing = False  # a rich bar is on screen (rich shows one live display at a time)

    """``with progress("extract", n, unit="img") as p: ... p.advance(b, loss=...)``.

    ``start``: work already done (a resumed round). ``fields``: values shown after the rate
    (numbers, e.g. the running loss, or text, e.g. the current step), updated by ``advance``.
    ``enabled=False`` shows nothing.
    """

    def __init__(self, what: str, total: int, *, unit: str = "it", start: int = 0,
                 enabled: bool = True, every: float = 10.0, **fields: float | str):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done = self.start = start
        self.fields = dict(fields)
        self.live = enabled and sys.stdout.isatty() and not progress.showing  # one bar at a time
        self.logged = enabled and not self.live
        self.bar: Progress | None = None
        self.lock, self.stop = threading.Lock(), threading.Event()

    def __enter__(self) -> "progress":
        self.t0 = self.last = time.monotonic()
        if self.live:
            extra = [TextColumn(f"{k} {{task.fields[{k}]{'' if isinstance(v, str) else ':.3f'}}}")
                     for k, v in self.fields.items()]
            self.bar = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), *extra,
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            progress.showing = True
            self.task = self.bar.add_task(self.what, total=self.total, completed=self.start, **self.fields)
        elif self.logged and self.every > 0:
            threading.Thread(target=self._tick, daemon=True).start()
        return self

    def _tick(self) -> None:
        while not self.stop.wait(self.every / 4):
            self._log_if_due()

    def _log_if_due(self) -> None:
        with self.lock:
            if time.monotonic() - self.last >= self.every:
                self.last = time.monotonic()
                log.info("%s", self.line())

    def advance(self, n: int = 1, **fields: float | str) -> None:
        with self.lock:
            self.done += n
            self.fields.update(fields)
        if self.bar is not None:
            self.bar.update(self.task, advance=n, **fields)
        elif self.logged:
            self._log_if_due()

    def line(self) -> str:
        """'what: done/total (pct%), rate unit/s, ETA h:mm:ss[, field value ...]'."""
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.start) / elapsed
        eta = datetime.timedelta(seconds=round((self.total - self.done) / rate)) if rate > 0 else "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        extra = "".join(f", {k} {v}" if isinstance(v, str) else f", {k} {v:.4g}" for k, v in self.fields.items())
        return f"{self.what}: {self.done}/{self.total} ({pct:.0f}%), {rate:.1f} {self.unit}/s, ETA {eta}{extra}"

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.bar is not None:
            self.bar.stop()
            progress.showing = False
