"""Presets: a whole params.yaml in one name (`calr-stage configure --preset NAME`).

A preset is the defaults of ``calr_core.config`` (the paper's values) plus the few keys it sets
here. The paper's presets carry its schedule written out: 20 intra rounds, 50 phase-2 rounds,
each starting from the one before (docs/datasets.md "Presets"). `demo` is the built-in synthetic
demo's budget: the repository's params.yaml is `render("demo")` (a test checks it).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from calr_core.config import Params, parse_params


def chain(n: int) -> list[dict]:
    """Rounds 0..n-1, round 0 from the initial model and each later one from the round before."""
    return [{"id": i, "prev": "init" if i == 0 else f"round{i - 1}"} for i in range(n)]


PAPER = {"intra": {"rounds": chain(20)}, "rounds": chain(50), "model": {"pooling": "avg"}}
# The paper's table row each preset aims at is "CALR, ResNet-50" (docs/datasets.md "Presets").
PRESETS: dict[str, dict[str, Any]] = {
    "market1501": {**PAPER, "data": {"dataset": "market1501"}, "intra": {"rounds": chain(20), "n_clusters": 600},
                   "train": {"iters": 200}},
    "dukemtmc": {**PAPER, "data": {"dataset": "dukemtmc"}, "intra": {"rounds": chain(20), "n_clusters": 600}},
    "msmt17": {**PAPER, "data": {"dataset": "msmt17"}},
    "veri776": {**PAPER, "data": {"dataset": "veri776"}, "model": {"pooling": "avg", "height": 224, "width": 224}},
    "manifest": {**PAPER, "data": {"dataset": "manifest"}},
    "demo": {
        "data": {"dataset": "market1501", "root": "data/synth", "cameras": [0, 1, 2, 3]},
        "model": {"arch": "resnet18", "weights": "source", "height": 32, "width": 16},
        "extract": {"workers": 0},
        "intra": {"rounds": chain(2), "iters": 20, "batch_size": 32},
        "train": {"iters": 60, "batch_size": 64, "num_instances": 8, "weights_from": 2, "save_every": 10,
                  "workers": 0},
        "rounds": chain(5),
    },
}
# The paper's own setting on the same synthetic world: ImageNet MobileNetV2 (an offline file), no
# label anywhere, at the schedule chosen from the learning curves (docs/benchmarks.md "The paper's
# setting"): phase 1 ~33 passes a camera (5 rounds x 50 iterations of 32), phase 2 ~100 passes
# (15 rounds x 100 iterations of 64), where CALR's curve flattens; Infomap's eps and k1 as tuned
# on world 4 (benchmarks/results/calr-tuning-usl.json).
PRESETS["demo-usl"] = {
    **PRESETS["demo"],
    "model": {"arch": "mobilenet_v2", "weights": "imagenet", "height": 64, "width": 32},
    "cluster": {"eps": 0.6, "k1": 10},
    "intra": {"rounds": chain(5), "iters": 50, "batch_size": 32},
    "train": {**PRESETS["demo"]["train"], "iters": 100, "weights_from": 5},
    "rounds": chain(15),
}
DEMOS = ("demo", "demo-usl")  # render their own synthetic world; compared with market1501's layout
# What each section drives (the comment beside it in params.yaml).
SECTIONS = {
    "data": "synth, prepare: the dataset",
    "model": "init, extract, train, evaluate: the network",
    "source": "pretrain: a supervised start on a labelled source (model.weights: source)",
    "extract": "extract, evaluate",
    "intra": "phase 1: per-camera clustering and training (`calr-stage intra --cam C`)",
    "cluster": "phase 2 steps 2-7: global clustering, refinement, weights",
    "train": "phase 2 steps 8-10: one round of training",
    "evaluate": "evaluate",
    "rounds": "phase 2: one `calr-stage round --round R` each; prev = the checkpoint it starts from",
}


def _merge(overlay: dict[str, Any]) -> dict[str, Any]:
    """The defaults' whole params tree (plain data) with ``overlay``'s keys set."""
    tree = dataclasses.asdict(Params())
    for section, value in overlay.items():
        tree[section] = {**tree[section], **value} if isinstance(value, dict) else value
    return tree


def values(name: str) -> dict[str, Any]:
    """The preset's whole params tree (plain data)."""
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r}: expected one of {', '.join(PRESETS)}")
    return _merge(PRESETS[name])


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def render(name: str, tree: dict[str, Any] | None = None, command: str = "") -> str:
    """params.yaml text for ``tree`` (default: the preset's values): every key, one section per
    stage, and ``# paper: X`` beside each value that differs from the paper's (for the demos: from
    market1501's, the layout of their synthetic world)."""
    tree = tree if tree is not None else values(name)
    parse_params(tree)  # a preset that does not load is a bug here, not the user's
    paper = _merge(PRESETS["market1501" if name in DEMOS else name])
    lines = [f"# Every setting of the pipeline, one section per stage; written by `{command or f'calr-stage configure --preset {name}'}`.",
             "# Other presets: `calr-stage configure --list`. One run's override without editing:",
             "# `dvc exp run -S train.lr=0.0001` (or a stage's --set).", ""]
    for section, value in tree.items():
        if not isinstance(value, dict):
            lines.append(f"{section}:".ljust(27) + f"# {SECTIONS[section]}")
            lines += [f"  - {_flow(r)}" for r in value]
            if value != paper[section]:
                lines.append(f"  # paper: {len(paper[section])} rounds")
            lines.append("")
            continue
        lines.append(f"{section}:".ljust(27) + f"# {SECTIONS[section]}")
        for key, v in value.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):  # intra.rounds
                lines.append(f"  {key}:" + ("" if v == paper[section][key] else f"  # paper: {len(paper[section][key])} rounds"))
                lines += [f"    - {_flow(r)}" for r in v]
                continue
            text = f"  {key}: {_flow(v)}"
            if key in paper[section] and v != paper[section][key] and section != "data":
                text = text.ljust(27) + f"# paper: {_flow(paper[section][key])}"
            lines.append(text)
        lines.append("")
    return "\n".join(lines)


def describe() -> str:
    """What each preset sets on top of the paper's defaults (`calr-stage configure --list`)."""
    d = Params()
    keys = [("model", "arch"), ("model", "weights"), ("model", "height"), ("model", "width"),
            ("intra", "iters"), ("intra", "batch_size"), ("train", "iters"), ("train", "batch_size"),
            ("train", "num_instances"), ("train", "lr"), ("train", "weights_from"), ("train", "camera_rounds"),
            ("cluster", "eps")]
    out = ["every preset but the demos: the paper's values (calr_core/config.py), e.g. "
           + ", ".join(f"{s}.{k}={_flow(getattr(getattr(d, s), k))}" for s, k in keys) + "; then:"]
    for name, sets in PRESETS.items():
        parts = []
        for section, value in sets.items():
            if isinstance(value, dict):
                parts += [f"{section}.{k}={len(v)} rounds" if isinstance(v, list) and v and isinstance(v[0], dict)
                          else f"{section}.{k}={_flow(v)}" for k, v in value.items()]
            else:
                parts.append(f"{section}={len(value)} rounds")
        out.append(f"{name}: " + ", ".join(parts))
    return "\n".join(out)
