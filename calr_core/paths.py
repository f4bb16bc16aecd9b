"""Where every artifact lives: the one place that derives paths from (phase, camera, round).

dvc.yaml spells the same paths with templates; tests/stages/test_dag.py checks the two agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def round_dir(rnd: int | str) -> str:
    """Folder name of a round: 0 -> 'round0'; 'init' (the initial model) stays 'init'."""
    return rnd if isinstance(rnd, str) else f"round{rnd}"


def _train_folder(cam: int | None) -> str:
    """Where a training stage's curve and metrics go: phase 2, or camera ``cam``'s phase 1."""
    return "train" if cam is None else f"train-intra/cam{cam}"


@dataclass(frozen=True)
class Layout:
    root: Path = Path("artifacts")

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def code_dir(self) -> Path:
        """The `code` stage's lists of the files each calr-stage command runs."""
        return self.root / "code"

    def code_list(self, command: str) -> Path:
        return self.code_dir / f"{command}.txt"

    @property
    def source_checkpoint(self) -> Path:
        """The `pretrain` stage's model (the start of both phases when model.weights: source)."""
        return self.root / "source" / "checkpoint.pt"

    # phase 1: one model per camera
    def intra(self, cam: int, rnd: int | str) -> Path:
        return self.root / "phase1" / f"cam{cam}" / round_dir(rnd)

    def intra_features(self, cam: int, rnd: int) -> Path:
        return self.intra(cam, rnd) / "features.parquet"

    def intra_checkpoint(self, cam: int, rnd: int | str) -> Path:
        return self.intra(cam, rnd) / "checkpoint.pt"

    def intra_labels_dir(self, cam: int) -> Path:
        return self.root / "phase1" / f"cam{cam}" / "labels"

    def intra_labels(self, cam: int, rnd: int) -> Path:
        return self.intra_labels_dir(cam) / f"{round_dir(rnd)}.parquet"

    @property
    def local_labels_dir(self) -> Path:
        return self.root / "phase1" / "selected"

    def local_labels(self, cam: int) -> Path:
        return self.local_labels_dir / f"cam{cam}.parquet"

    # phase 2: one model for all cameras
    def inter(self, rnd: int | str) -> Path:
        return self.root / "phase2" / round_dir(rnd)

    def features(self, rnd: int) -> Path:
        return self.inter(rnd) / "features.parquet"

    def pseudo_labels(self, rnd: int) -> Path:
        return self.inter(rnd) / "pseudo_labels.parquet"

    def cluster_summary(self, rnd: int) -> Path:
        return self.inter(rnd) / "cluster_summary.json"

    def checkpoint(self, rnd: int | str) -> Path:
        return self.inter(rnd) / "checkpoint.pt"

    def ranked_list(self, rnd: int) -> Path:
        return self.inter(rnd) / "ranked_list.png"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    def metrics(self, rnd: int) -> Path:
        return self.metrics_dir / f"{round_dir(rnd)}.json"

    @property
    def curves(self) -> Path:
        return self.root / "plots" / "curves.csv"

    # training curves: per-iteration rows and the round's means, wall-clock timings included
    def train_curve(self, rnd: int, cam: int | None = None) -> Path:
        return self.root / "plots" / _train_folder(cam) / f"{round_dir(rnd)}.csv"

    @property
    def train_curves(self) -> Path:
        """Every phase-2 round's train_curve in one file (the `report` stage)."""
        return self.root / "plots" / "train.csv"

    def train_metrics(self, rnd: int, cam: int | None = None) -> Path:
        return self.metrics_dir / _train_folder(cam) / f"{round_dir(rnd)}.json"

    def recovery(self, phase: str, rnd: int, cam: int | None = None) -> Path:
        """Mid-round recovery checkpoint: outside every DVC output, so a re-run finds it."""
        name = f"{phase}-cam{cam}-{round_dir(rnd)}.pt" if cam is not None else f"{phase}-{round_dir(rnd)}.pt"
        return self.root / ".recovery" / name


def previous(rounds, rnd: int, where: str = "rounds") -> str:
    """The folder (``init`` or ``roundN``) whose checkpoint round ``rnd`` starts from."""
    for r in rounds:
        if r.id == rnd:
            return r.prev
    raise ValueError(f"round {rnd} is not in params {where} (ids: {[r.id for r in rounds]})")


# The training curves and their metrics hold wall-clock fields, so identical runs differ there
# and only there; benchmarks/faults.py compares these files without them.
TIMED_FIELDS = ("img_per_s", "train_seconds", "train_img_per_s")
_TIMED = re.compile(r"(^|/)(plots/train(-intra/|/|\.csv$)|metrics/train(-intra)?/)")


def timed(path: str | Path) -> bool:
    """Whether the artifact at ``path`` holds TIMED_FIELDS (a training curve or its metrics)."""
    return bool(_TIMED.search(Path(path).as_posix()))
