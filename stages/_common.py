"""What every stage shares: params loading with overrides, logging, one-line errors."""
from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.logging import RichHandler

from calr_core.config import Params, load_params
from calr_core.paths import Layout

PARAMS_OPT = typer.Option(Path("params.yaml"), "--params", help="Params file every default comes from.")
SET_OPT = typer.Option(None, "--set", "-S", metavar="SECTION.KEY=VALUE",
                       help="Override one params.yaml setting for this run (repeatable), e.g. -S train.lr=1e-4.")
ARTIFACTS_OPT = typer.Option(Path("artifacts"), "--artifacts", help="Folder of the pipeline's artifacts.")

log = logging.getLogger("calr")


def setup(params_path: Path, overrides: Optional[List[str]], artifacts: Path = Path("artifacts"),
          *, rnd: Optional[int] = None, cam: Optional[int] = None, standalone: bool = False
          ) -> tuple[Params, Layout]:
    """Configure logging once and load the checked params; return them with the artifact layout.

    ``rnd`` / ``cam``: the stage's --round / --cam, refused unless params.yaml schedules them
    (``rnd`` is a phase-1 round when ``cam`` is given). ``standalone``: a stage that needs no
    pipeline runs anywhere; without a params.yaml in the current folder it takes the
    documented defaults (calr_core/config.py).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=os.environ.get("CALR_LOG", "INFO"), format="%(message)s",
                            datefmt="[%X]", handlers=[RichHandler(show_path=False, markup=False)])
        logging.getLogger("faiss").setLevel(logging.WARNING)  # its import-time chatter
    if standalone and Path(params_path) == Path("params.yaml") and not Path(params_path).is_file():
        params_path = None
    p = load_params(params_path, overrides or ())
    if cam is not None and cam not in p.data.cameras:
        fail(f"--cam {cam}: not a camera of {params_path} data.cameras {p.data.cameras}")
    if rnd is not None:
        rounds, where = schedule(p, cam)
        ids = [r.id for r in rounds]
        if rnd not in ids:
            fail(f"--round {rnd}: not a round of {params_path} {where} (ids {ids})")
    return p, Layout(Path(artifacts))


def schedule(p: Params, cam: Optional[int]) -> tuple[list, str]:
    """The rounds a stage runs over and their params key: phase 1 with a camera, else phase 2."""
    return (p.intra.rounds, "intra.rounds") if cam is not None else (p.rounds, "rounds")


def latest_round(p: Params, rnd: Optional[int], cam: Optional[int], exists: Callable[[int], bool],
                 what: str) -> int:
    """``rnd`` when given, else the latest scheduled round (phase 1 with ``cam``) whose input
    ``exists``; the choice is the stage's first log line."""
    if rnd is not None:
        return rnd
    rounds, where = schedule(p, cam)
    have = [r.id for r in rounds if exists(r.id)]
    if not have:
        fail(f"--round not given, and no round of params {where} has {what} yet: run `dvc repro` "
             f"(or the stage that writes them) first, or pass --round")
    log.info("round %d (latest with %s)", have[-1], what)
    return have[-1]


def pick(value, default):
    """A command-line value when given, else the params.yaml default."""
    return default if value is None else value


def stage(fn: Callable) -> Callable:
    """Turn expected failures (bad params, bad input files) into one red line and exit code 2.

    Set CALR_DEBUG=1 to see the full traceback instead.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, KeyError) as exc:
            if os.environ.get("CALR_DEBUG"):
                raise
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            if getattr(exc, "artifact", None) is not None:  # calr_core.io.ArtifactError
                msg = f"{msg}; {missing_hint(exc.artifact, again=exc.again)}"
            typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
    return wrapper


def call(command: Callable, **given) -> None:
    """Run a step command in this process, as `calr-stage` would: every option not ``given``
    at its command-line default."""
    kwargs = {}
    for name, par in inspect.signature(command).parameters.items():
        default = getattr(par.default, "default", par.default)  # a typer.Option's own default
        kwargs[name] = given.pop(name) if name in given else default
    if given:
        raise TypeError(f"{command.__name__}: no option(s) {sorted(given)}")
    command(**kwargs)


def fail(message: str) -> None:
    """Stop the stage with a one-line error (exit 2)."""
    raise ValueError(message)


def echo(message: str) -> None:
    typer.echo(message, file=sys.stdout)


# What writes each artifact: a missing input's error names the command to run.
_WRITERS = [
    (r"manifest\.parquet", "calr-stage prepare"),
    (r"source/checkpoint\.pt", "calr-stage pretrain"),
    (r"phase1/cam(?P<cam>\d+)/init/checkpoint\.pt", "calr-stage init --cam {cam}"),
    (r"phase1/cam(?P<cam>\d+)/round(?P<rnd>\d+)/features\.parquet", "calr-stage extract --cam {cam} --round {rnd}"),
    (r"phase1/cam(?P<cam>\d+)/labels/round(?P<rnd>\d+)\.parquet", "calr-stage cluster-intra --cam {cam} --round {rnd}"),
    (r"phase1/cam(?P<cam>\d+)/round(?P<rnd>\d+)/checkpoint\.pt", "calr-stage train --cam {cam} --round {rnd}"),
    (r"phase1/selected/cam(?P<cam>\d+)\.parquet", "calr-stage select-local --cam {cam}"),
    (r"phase2/init/checkpoint\.pt", "calr-stage init"),
    (r"phase2/round(?P<rnd>\d+)/features\.parquet", "calr-stage extract --round {rnd}"),
    (r"phase2/round(?P<rnd>\d+)/pseudo_labels\.parquet", "calr-stage cluster-global --round {rnd}"),
    (r"phase2/round(?P<rnd>\d+)/cluster_summary\.json", "calr-stage cluster-global --round {rnd}"),
    (r"phase2/round(?P<rnd>\d+)/checkpoint\.pt", "calr-stage train --round {rnd}"),
    (r"metrics/source\.json", "calr-stage evaluate --source"),
    (r"metrics/round(?P<rnd>\d+)\.json", "calr-stage evaluate --round {rnd}"),
    (r"metrics/train/round(?P<rnd>\d+)\.json", "calr-stage train --round {rnd}"),
    (r"metrics/train-intra/cam(?P<cam>\d+)/round(?P<rnd>\d+)\.json", "calr-stage train --cam {cam} --round {rnd}"),
]


def writer_of(path: str | Path) -> str | None:
    """The command that writes the artifact at ``path`` (any artifacts root), None if unknown."""
    posix = Path(path).as_posix()
    for pattern, command in _WRITERS:
        m = re.search(rf"(^|/){pattern}$", posix)
        if m:
            return command.format(**m.groupdict())
    return None


def missing_hint(path: str | Path, again: bool = False) -> str:
    """'run `<command>` first (or `dvc repro`)' for a known artifact, else a generic hint."""
    cmd, when = writer_of(path), "again" if again else "first"
    return f"run `{cmd}` {when} (or `dvc repro`)" if cmd else f"run the stage that writes it {when}"
