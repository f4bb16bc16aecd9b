from pathlib import Path

import pytest
import yaml

from calr_core.config import Params, ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_load_and_cover_every_section():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    # params.yaml holds every setting: each dataclass field is spelled out in the file
    for section in ("data", "model", "extract", "intra", "cluster", "train", "evaluate"):
        assert set(raw[section]) == set(getattr(p, section).__dataclass_fields__), section
    assert [r.id for r in p.rounds] == list(range(len(p.rounds)))
    assert p.rounds[0].prev == "init" and all(r.prev == f"round{r.id - 1}" for r in p.rounds[1:])


@pytest.mark.parametrize("raw, needle", [
    ({"train": {"lrr": 1}}, "train.lrr: unknown key"),
    ({"train": {"lr": "fast"}}, "train.lr: expected float, got 'fast'"),
    ({"train": {"iters": 1.5}}, "train.iters: expected int"),
    ({"train": {"iters": True}}, "train.iters: expected int"),
    ({"model": {"arch": "vgg16"}}, "model.arch: expected one of 'resnet50'"),
    ({"data": {"cameras": [0, "c1"]}}, "data.cameras[1]: expected int"),
    ({"rounds": [{"id": 0}]}, "rounds[0]"),
    ({"bogus": {}}, "bogus: unknown key"),
])
def test_bad_params_name_the_key(raw, needle):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert needle in str(err.value)


def test_params_are_frozen_and_ints_widen_to_float():
    p = parse_params({"train": {"lr": 1}})
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)
    with pytest.raises(Exception):
        p.train.lr = 2.0  # type: ignore[misc]


def test_overrides_are_typed_like_the_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  lr: 0.1\n")
    assert load_params(f, ["train.lr=0.5", "model.arch=resnet18"]).train.lr == 0.5
    with pytest.raises(ParamsError, match="train.iters: expected int"):
        load_params(f, ["train.iters=many"])
    with pytest.raises(ParamsError, match="expected section.key=value"):
        load_params(f, ["lr=0.1"])
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
