"""The `calr-stage` command: one sub-command per pipeline stage."""
from __future__ import annotations

import typer

from stages.prepare import prepare
from stages.synth import synth

app = typer.Typer(
    name="calr-stage",
    help="CALR (camera-aware label refinement) for unsupervised re-ID, one resumable stage at a "
         "time. Every option defaults from params.yaml; `dvc repro` runs the whole schedule.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for command in (synth, prepare):
    app.command(command.__name__.replace("_", "-"))(command)

if __name__ == "__main__":
    app()
