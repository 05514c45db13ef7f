# Two commands on a fresh machine: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install -q -c requirements/constraints.txt

.PHONY: run test test-fast bench setup clean browser readme-screenshot

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
	@echo "mlflow:  $(HOME_DIR)/mlflow.db; open its runs with: .venv/bin/drmfm ui quickstart --home $(HOME_DIR) --open"

# The browser tests read the MLflow UI in Debian's Chromium, headless: installed here where it is
# missing (apt, as root); elsewhere one line says what to install, and the tests fail, never skip.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "make: installing Chromium for the browser tests (apt-get install chromium)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "make: the browser tests need Chromium: install it (Debian: apt-get install chromium)"; exit 1; fi; }

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The README's picture of the runs view, taken by the browser test.
readme-screenshot: $(STAMP) browser
	DRMFM_README_SCREENSHOT=$(CURDIR)/docs/mlflow-runs.png $(PY) -m pytest -q tests/test_mlflow_ui.py -k drmfm_ui_serves
	$(PY) -c "from PIL import Image; p = 'docs/mlflow-runs.png'; Image.open(p).convert('RGB').quantize(64).save(p, optimize=True)"

bench: $(STAMP)
	$(VENV)/bin/drmfm bench

clean:
	rm -rf $(VENV) drmfm-home .pytest_cache
