"""Typed params: ``params.yaml`` loaded once into frozen dataclasses, one per stage section.

Unknown keys and wrong types fail with one line naming the key and the expected type. Library
functions never see these objects: stages unpack them into explicit keyword arguments.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


CpuMode = Literal["auto", "fp32", "channels_last", "bf16", "bf16_channels_last"]  # calr_core.device


class ParamsError(ValueError):
    """params.yaml (or a --set override) has an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Round:
    id: int
    prev: str  # the folder whose checkpoint this round starts from ("init" or "roundN")


@dataclass(frozen=True)
class Data:
    dataset: Literal["market1501", "dukemtmc", "msmt17", "veri776", "manifest"] = "market1501"
    root: str = "data/synth"             # dataset folder (or manifest file)
    cameras: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # 0-based ids the DAG runs
    synth_size: Literal["tiny", "demo", "market"] = "demo"
    synth_seed: int = 1
    check_images: bool = True
    cache_mb: float = 4096               # decoded images kept in memory up to this size; more are streamed


@dataclass(frozen=True)
class Model:
    arch: Literal["resnet50", "resnet18", "resnet50_ibn_a", "mobilenet_v2"] = "resnet50"
    pooling: Literal["gem", "avg"] = "gem"
    weights: str = "imagenet"            # imagenet | none | source (the pretrain stage) | a file
    height: int = 256
    width: int = 128
    seed: int = 1


@dataclass(frozen=True)
class Source:
    """The `pretrain` stage: supervised training on a labelled source (when model.weights: source)."""
    dataset: Literal["synth", "market1501", "dukemtmc", "msmt17", "veri776", "manifest"] = "synth"
    root: str = ""                       # dataset folder or manifest file (unused for synth)
    synth_size: Literal["tiny", "demo", "market"] = "demo"
    synth_seed: int = 7                  # synth: another world than the target's (data.synth_seed)
    weights: str = "none"                # where pretraining starts: none | imagenet | a file
    iters: int = 300
    batch_size: int = 64
    num_instances: int = 4
    lr: float = 1e-3
    temp: float = 0.05                   # scaled-cosine classifier: logits = cos / temp
    save_every: int = 50


@dataclass(frozen=True)
class Extract:
    batch_size: int = 128
    workers: int = 2                     # processes decoding images that do not fit in data.cache_mb
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_mode: CpuMode = "auto"           # on a CPU: memory format and bf16 (auto: the arch's fastest)


@dataclass(frozen=True)
class Intra:
    """Phase 1: per-camera clustering and training."""
    rounds: list[Round] = field(default_factory=lambda: [Round(0, "init")])
    k1: int = 15
    k2: int = 4
    n_clusters: int = 0                  # 0: N_c // ratio (the authors fixed 600 on Market)
    ratio: int = 5
    iters: int = 100
    batch_size: int = 64
    num_instances: int = 4
    lr: float = 3.5e-4


DBSCAN_REFINE = ("cluster.refine: true does nothing with cluster.method: dbscan (DBSCAN gives no "
                 "density, so no cluster has a pivot to refine by); set cluster.refine: false")


@dataclass(frozen=True)
class Cluster:
    """Phase 2 steps 2-7: global clustering, refinement and camera weights."""
    method: Literal["infomap", "dbscan"] = "infomap"
    k1: int = 15                         # kNN size of the Infomap graph
    k2: int = 4                          # clusters of <= k2 members become outliers
    eps: float = 0.5                     # Infomap edge threshold on 1 - cos
    dbscan_eps: float = 0.6
    dbscan_k1: int = 30                  # Jaccard k1/k2 for the DBSCAN baseline
    dbscan_k2: int = 6
    dbscan_min_samples: int = 4          # DBSCAN's min_samples (Cluster-Contrast: 4)
    refine: bool = True
    pivot_rule: Literal["reference", "argmax"] = "reference"
    decay: Literal["constant", "cosine"] = "constant"
    decay_rounds: int = 50               # cosine: R of 0.5 (1 + cos(pi r / 3R)), the paper's schedule length
    seed: int = 1                        # Infomap's --seed and refinement's; the reference leaves Infomap at its own 123
    knn: Literal["exact", "ivf", "hnsw"] = "exact"  # approximate (faiss) for 100k+ images
    knn_nprobe: int = 16                 # ivf: cells scanned per query
    knn_ef: int = 128                    # hnsw: search beam

    def __post_init__(self):
        if self.method == "dbscan" and self.refine:
            raise ParamsError(DBSCAN_REFINE)
        if self.method == "dbscan" and self.knn != "exact":
            raise ParamsError(f"cluster.knn: {self.knn} applies to method infomap; dbscan's Jaccard "
                              f"distance uses the exact kNN (set cluster.knn: exact)")
        if self.decay_rounds < 1:
            raise ParamsError(f"cluster.decay_rounds: {self.decay_rounds}: expected a positive number of rounds")
        if self.knn_nprobe < 1 or self.knn_ef < self.k1:
            raise ParamsError(f"cluster.knn_nprobe: {self.knn_nprobe}, knn_ef: {self.knn_ef}: expected "
                              f"knn_nprobe >= 1 and knn_ef >= cluster.k1 ({self.k1})")


@dataclass(frozen=True)
class Train:
    """Phase 2 steps 8-10: one round of training."""
    iters: int = 400
    batch_size: int = 256
    num_instances: int = 16
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    temp: float = 0.05
    momentum: float = 0.1
    memory: Literal["mean", "hard"] = "mean"
    weights_from: int = 5                # camera-entropy class weights from this round on (-1: never)
    camera_rounds: int = 3               # camera alignment in rounds 0..camera_rounds-1
    camera_weight: float = 1.0
    camera_loss: Literal["clean", "reference"] = "clean"
    bn_group: int = 0                    # >0: BatchNorm statistics over groups of this many images
    save_every: int = 50                 # recovery checkpoint every this many iterations
    workers: int = 2                     # processes decoding images that do not fit in data.cache_mb
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_mode: CpuMode = "auto"           # on a CPU: memory format and bf16 (auto: the arch's fastest)
    seed: int = 1


@dataclass(frozen=True)
class Evaluate:
    max_rank: int = 50
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    rerank_form: Literal["zhong", "cluster-contrast"] = "zhong"  # published | the clustering's Jaccard
    picture_queries: int = 6


@dataclass(frozen=True)
class Params:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    source: Source = field(default_factory=Source)
    extract: Extract = field(default_factory=Extract)
    intra: Intra = field(default_factory=Intra)
    cluster: Cluster = field(default_factory=Cluster)
    train: Train = field(default_factory=Train)
    evaluate: Evaluate = field(default_factory=Evaluate)
    rounds: list[Round] = field(default_factory=lambda: [Round(0, "init")])  # phase 2


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    bad = ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ParamsError:
                pass
        raise bad
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise bad
    return value


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ParamsError(f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown key "
                          f"(known keys: {', '.join(hints)})")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        raise ParamsError(f"{prefix}: missing key {missing[0]!r}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in raw.items()}
    return cls(**kwargs)


def parse_params(raw: dict | None) -> Params:
    """Build checked Params from a plain dict (missing keys take the defaults above)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return _build(Params, raw, "")
    except ParamsError as exc:
        raise ParamsError(f"params: {exc}") from None


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...], where: str = "params") -> dict:
    """``raw`` (plain params data, changed in place) with each ``section.key=value`` set, the
    value parsed as YAML; checking is parse_params's."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2:
            raise ParamsError(f"--set {item!r}: expected section.key=value, e.g. train.lr=0.0001")
        raw.setdefault(parts[0], {})
        if not isinstance(raw[parts[0]], dict):
            raise ParamsError(f"{where}: section {parts[0]!r} must be a mapping")
        raw[parts[0]][parts[1]] = yaml.safe_load(value)
    return raw


def load_params(path: str | Path | None = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Load ``path`` (None: the defaults above) and apply ``section.key=value`` overrides
    (values parsed as YAML)."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ParamsError(f"{path}: params file not found (run from the project folder or pass --params)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    path = path or "defaults"
    raw = apply_overrides(raw, overrides, str(path))
    try:
        return parse_params(raw)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {str(exc).removeprefix('params: ')}") from None
