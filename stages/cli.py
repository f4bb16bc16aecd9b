"""The `calr-stage` command: one sub-command per pipeline stage."""
from __future__ import annotations

import typer

from stages.cluster_global import cluster_global
from stages.cluster_intra import cluster_intra, select_local
from stages.evaluate import evaluate, report
from stages.extract import extract
from stages.init import init
from stages.prepare import prepare
from stages.pretrain import pretrain
from stages.search import search
from stages.synth import synth
from stages.train import train

app = typer.Typer(
    name="calr-stage",
    help="CALR (camera-aware label refinement) for unsupervised re-ID, one resumable stage at a "
         "time. Every option defaults from params.yaml; `dvc repro` runs the whole schedule.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for command in (synth, prepare, pretrain, init, extract, cluster_intra, select_local, cluster_global, train,
                evaluate, report, search):
    app.command(command.__name__.replace("_", "-"))(command)

if __name__ == "__main__":
    app()
