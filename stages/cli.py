"""The `calr-stage` command: one sub-command per pipeline stage."""
from __future__ import annotations

import typer

from calr_stages.cluster_global import cluster_global
from calr_stages.cluster_intra import cluster_intra, select_local
from calr_stages.evaluate import evaluate, report
from calr_stages.export import export
from calr_stages.extract import extract
from calr_stages.init import init
from calr_stages.prepare import prepare
from calr_stages.pretrain import pretrain
from calr_stages.search import search
from calr_stages.synth import synth
from calr_stages.train import train

app = typer.Typer(
    name="calr-stage",
    help="CALR (camera-aware label refinement) for unsupervised re-ID, one resumable stage at a "
         "time. Every option defaults from params.yaml; `dvc repro` runs the whole schedule. "
         "Runs are forks of a warm worker that has imported torch once (CALR_WORKER=off: each run "
         "in its own process; README, 'The warm worker').",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for command in (synth, prepare, pretrain, init, extract, cluster_intra, select_local, cluster_global, train,
                evaluate, report, search, export):
    app.command(command.__name__.replace("_", "-"))(command)

if __name__ == "__main__":
    app()
