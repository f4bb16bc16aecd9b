"""The `calr-stage` command: one sub-command per pipeline stage."""
from __future__ import annotations

import typer

from calr_stages.cluster_global import cluster_global
from calr_stages.cluster_intra import cluster_intra, select_local
from calr_stages.code import code
from calr_stages.configure import configure
from calr_stages.doctor import doctor
from calr_stages.evaluate import evaluate
from calr_stages.export import export
from calr_stages.extract import extract
from calr_stages.init import init
from calr_stages.prepare import prepare
from calr_stages.pretrain import pretrain
from calr_stages.report import report
from calr_stages.rounds import intra, round_
from calr_stages.search import search
from calr_stages.synth import synth
from calr_stages.train import train

app = typer.Typer(
    name="calr-stage",
    help="CALR (camera-aware label refinement) for unsupervised re-ID, one resumable stage at a "
         "time. Every option defaults from params.yaml; `dvc repro` runs the whole schedule "
         "(`intra` per camera, `round` per phase-2 round: the units DVC caches).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for command in (configure, synth, prepare, pretrain, intra, round_, init, extract, cluster_intra, select_local,
                cluster_global, train, evaluate, report, search, export, code, doctor):
    app.command(command.__name__.strip("_").replace("_", "-"))(command)


def main() -> None:
    """The `calr-stage` command."""
    app(prog_name="calr-stage")


if __name__ == "__main__":
    main()
