"""benchmarks/compare.py's kept runs: the key of a run, the store that a killed comparison
restarts from, and the grids' edge rule."""
import functools
import json
from dataclasses import replace

import pytest

from benchmarks.compare import Store, run_key, step_out
from calr_core.config import Round, load_params


def test_a_run_key_is_its_variant_and_the_params_that_change_its_numbers():
    p = load_params(None, ["data.root=/a", "train.workers=0"])
    assert run_key("calr", p) == run_key("calr", load_params(None, ["data.root=/b", "train.workers=4"]))
    assert run_key("calr", p)[0] != run_key("weights", p)[0]
    assert run_key("calr", p)[0] != run_key("calr", load_params(None, ["cluster.eps=0.6"]))[0]
    assert run_key("calr", p)[0] != run_key("calr", load_params(None, ["data.synth_seed=2"]))[0]
    # the number of chained rounds is apart from the key; rounds that are not a chain are in it
    three = replace(p, rounds=[Round(0, "init"), Round(1, "round0"), Round(2, "round1")])
    assert run_key("calr", three) == (run_key("calr", p)[0], 3)
    odd = replace(p, rounds=[Round(0, "init"), Round(1, "init")])
    assert run_key("calr", odd)[0] != run_key("calr", p)[0]


def test_the_store_answers_shorter_schedules_and_survives_a_cut_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    store = Store(path)
    rounds = [{"round": i, "mAP": i / 10} for i in range(4)]
    store.add({"key": "k", "rounds": rounds})
    store.add({"key": "j", "rounds": rounds[:2]})
    again = Store(path)
    assert again.find("k", 4)["rounds"] == rounds
    assert again.find("k", 2)["rounds"] == rounds[:2]   # a shorter schedule of the same params
    assert again.find("j", 3) is None                    # a longer one runs
    assert again.find("x", 1) is None
    assert Store(path, fresh=True).find("k", 4) is None
    # a kill while a line was written: the cut line is ignored, the next add rewrites the file whole
    path.write_text(path.read_text() + '{"key": "cut", "rou')
    cut = Store(path)
    assert [r["key"] for r in cut.runs] == ["k", "j"]
    cut.add({"key": "n", "rounds": rounds})
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["k", "j", "n"]


def test_a_winning_edge_of_a_grid_is_extended_one_step():
    assert step_out((0.3, 0.4, 0.5), 0.3, (0.1, 0.9, 0.1)) == 0.2
    assert step_out((0.3, 0.4, 0.5), 0.5, (0.1, 0.9, 0.1)) == 0.6
    assert step_out((0.3, 0.4, 0.5), 0.4, (0.1, 0.9, 0.1)) is None      # inside: done
    assert step_out((0.1, 0.2), 0.1, (0.1, 0.9, 0.1)) is None            # at the bound
    assert step_out((2, 4, 8), 8, (1, 16, None)) == 16 and step_out((2, 4, 8), 2, (1, 16, None)) == 1
    assert step_out((3, 6, 10), 3, (2, 20, None)) == 2  # halving stops at the bound, not short of it
    assert step_out((2, 6, 10), 2, (2, 20, None)) is None and step_out((3, 6, 12), 12, (2, 20, None)) == 20
    assert step_out(("clean", "reference"), "clean", None) is None


def tiny_configure() -> list[str]:
    """`calr-stage configure` arguments for the tests' tiny world (tests/project.py TINY)."""
    from tests.project import TINY
    args = ["--preset", "demo", "--rounds", "2", "--intra-rounds", "2"]
    for section, values in TINY.items():
        if isinstance(values, dict):
            args += [a for k, v in values.items() if k != "rounds" for a in ("-S", f"{section}.{k}={json.dumps(v)}")]
    return args


def test_a_killed_comparison_resumes_without_retraining_and_ends_as_an_unbroken_one(tmp_path, monkeypatch):
    """Real stages on a tiny world: a run killed after its first round resumes at the second and
    ends with the numbers of a run never killed; a kept run (or a shorter schedule of it) trains
    nothing."""
    from benchmarks import compare
    from calr_stages import rounds

    def runner(work, store):
        return compare.Runner("uda", tiny_configure(), [], tmp_path / work, Store(tmp_path / store))

    unbroken = runner("a", "a.jsonl").run("weights", "1:5")
    assert [r["round"] for r in unbroken["rounds"]] == [0, 1] and len(unbroken["phase1"]) == 3

    real_round = rounds.round_

    @functools.wraps(real_round)  # call() reads the step's options from its signature
    def killed_at_round_1(rnd, **kw):
        if rnd == 1:
            raise KeyboardInterrupt("kill")
        real_round(rnd=rnd, **kw)

    monkeypatch.setattr(rounds, "round_", killed_at_round_1)
    try:
        runner("b", "b.jsonl").run("weights", "1:5")
    except KeyboardInterrupt:
        pass
    assert not (tmp_path / "b.jsonl").exists()
    calls = []

    @functools.wraps(real_round)
    def counted(rnd, **kw):
        calls.append(rnd)
        real_round(rnd=rnd, **kw)

    monkeypatch.setattr(rounds, "round_", counted)
    resumed = runner("b", "b.jsonl").run("weights", "1:5")
    assert calls == [1]  # round 0 was finished before the kill
    assert [r["mAP"] for r in resumed["rounds"]] == [r["mAP"] for r in unbroken["rounds"]]
    assert resumed["key"] == unbroken["key"]

    @functools.wraps(real_round)
    def refused(**kw):
        pytest.fail("a kept run trained again")

    monkeypatch.setattr(rounds, "round_", refused)
    again = runner("b", "b.jsonl")
    assert again.run("weights", "1:5")["rounds"] == resumed["rounds"]
    shorter = compare.Runner("uda", [*tiny_configure(), "--rounds", "1"], [], tmp_path / "b", Store(tmp_path / "b.jsonl"))
    assert shorter.run("weights", "1:5")["rounds"] == resumed["rounds"][:1]


class Scored:
    """A stand-in for the runner in the grid logic's test: each run's last-round mAP is a known
    function of its knobs (no training)."""

    def __init__(self, tmp_path, score):
        from benchmarks.compare import SETTINGS
        self.setting, self.configure_args, self.overrides, self.work = "usl", SETTINGS["usl"], [], tmp_path
        self.score, self.runs = score, []

    def run(self, variant, seed, extra=(), configure_extra=(), name=""):
        knobs = dict(o.split("=", 1) for o in extra)
        self.runs.append(knobs)
        return {"rounds": [{"mAP": self.score(knobs)}], "seconds": 0.0}


def test_the_grids_find_an_optimum_past_their_edges_and_calr_gets_at_least_the_baselines_runs(tmp_path):
    from benchmarks.compare import grid_table, tune
    # the baseline's best: eps 0.2 (below the grid), min_samples 2, k1 20, k2 6
    base = Scored(tmp_path, lambda k: -abs(float(k["cluster.dbscan_eps"]) - 0.2) - abs(int(k["cluster.dbscan_min_samples"]) - 2)
                  - abs(int(k["cluster.dbscan_k1"]) - 20) / 100 - abs(int(k["cluster.dbscan_k2"]) - 6) / 100)
    result = tune(base, "baseline", "4:10")
    assert {k: result["chosen"][k] for k in ("k1", "k2", "eps", "min_samples")} == {"k1": 20, "k2": 6, "eps": 0.2, "min_samples": 2}
    assert {0.1, 0.2} <= {g["eps"] for g in result["grid"]}  # extended until the best is inside
    assert len(base.runs) == len(result["grid"]) == len({tuple(sorted(r.items())) for r in base.runs})
    assert len(grid_table(result).splitlines()) == 2 + len(base.runs) and "| eps |" in grid_table(result)
    # CALR: the best eps 0.7 is an upper edge (0.8 is tried), the hard memory wins, the rest is flat
    calr = Scored(tmp_path, lambda k: -abs(float(k["cluster.eps"]) - 0.7) + (k["train.memory"] == "hard"))
    chosen = tune(calr, "calr", "4:10")["chosen"]
    assert chosen["cluster.eps"] == 0.7 and chosen["train.memory"] == "hard"
    assert 0.8 in {float(r["cluster.eps"]) for r in calr.runs}
    assert len(calr.runs) >= len(base.runs)
