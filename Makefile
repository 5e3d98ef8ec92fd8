# Omni Workbench. Two commands on a fresh machine (see README):
#   make reports   -> .venv, sample data, every notebook executed, HTML in reports/<run_id>/
#   make test      -> .venv, sample data, unit tests + nbval over notebooks/
# Needs only Python >= 3.11 with venv and pip; no conda.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SAMPLE := data/sample/meta.json

.PHONY: help install sample reports test test-fast bench lab clean-reports browser screenshots

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

# The sample is rebuilt when the generator changes, never committed (data/README.md).
$(SAMPLE): $(STAMP) omni_lib/sample.py
	$(BIN)/omni sample --out data/sample

sample: $(SAMPLE)  ## generate the bundled Toko Nusantara sample if missing

reports: $(STAMP) $(SAMPLE)  ## run every notebook on the configured data -> reports/<run_id>/index.html
	$(BIN)/omni run

browser:  ## install headless Chromium for the report browser test (Debian/Ubuntu package, needs root or sudo)
	.ci/install-browser

test: $(STAMP) $(SAMPLE) browser  ## unit tests + nbval over every notebook + report lint and browser checks
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

test-fast: $(STAMP) $(SAMPLE)  ## unit tests only, slow ones deselected
	$(BIN)/python -m pytest tests -m 'not slow'

screenshots: $(STAMP) $(SAMPLE) browser  ## run the reports and refresh docs/screenshots/ (small PNGs of the latest run)
	$(BIN)/python docs/screenshots/make_screenshots.py

bench: $(STAMP)  ## run the benchmarks in benchmarks/ (long)
	@# bench_attribution needs the benchmark-only peer ChannelAttribution (GPL-3, not a dependency):
	@# .venv/bin/pip install ChannelAttribution
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || echo "!! $$b failed"; done

lab: $(STAMP) $(SAMPLE)  ## open JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

clean-reports:  ## delete every report run (reports/*), keeps reports/README.md
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
