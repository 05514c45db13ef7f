# Two commands on a fresh machine: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install -q -c requirements/constraints.txt

.PHONY: run test test-fast bench setup clean

setup: $(STAMP)

# torch first and alone, pinned: on a CPU machine it takes the CPU build, so no multi-GB CUDA
# build is pulled by a bare `torch` requirement further down.
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[sweep,analysis,dev]'
	touch $(STAMP)

# The quickstart sweep (a few minutes on 2 cores), then its analysis. Run again, the sweep resumes:
# finished trials are kept, nothing is redone, and the analysis is redrawn from the same tables.
HOME_DIR := drmfm-home
run: $(STAMP)
	$(VENV)/bin/drmfm sweep sweeps/quickstart.yaml --home $(HOME_DIR) \
		$$(test -f $(HOME_DIR)/ray/quickstart/drmfm-spec.json && echo --resume)
	$(VENV)/bin/drmfm analyze $(HOME_DIR)/results/quickstart
	@echo
	@echo "tables:  $(HOME_DIR)/results/quickstart/ (Parquet: replicates, curves, profiles, weights)"
	@echo "report:  $(HOME_DIR)/results/quickstart/analysis/report.md (figures/ beside it)"
	@echo "mlflow:  $(HOME_DIR)/mlflow.db; open the UI with: .venv/bin/drmfm ui --home $(HOME_DIR)"

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/drmfm bench

clean:
	rm -rf $(VENV) drmfm-home .pytest_cache
