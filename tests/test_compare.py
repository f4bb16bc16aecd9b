"""benchmarks/compare.py's kept runs: the key of a run, the store that a killed comparison
restarts from, and the grids' edge rule."""
import json
from dataclasses import replace

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
    assert step_out(("clean", "reference"), "clean", None) is None
