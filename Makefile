# Two doors to the same functions: every target here only calls the onetwo CLI or a script.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROJECT ?= onetwo.toml
ONETWO := $(PY) -m onetwo --project $(PROJECT)
TORCH ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=
DEMO := examples/trio/onetwo.toml

.PHONY: install setup test test-fast lint bench demo check composites preview stage1 stage2 joint gpu-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## onetwo itself (composites, rendering, tests without training)

$(VENV)/.trainer: $(VENV)/.installed scripts/setup_trainer.py
	$(PY) scripts/setup_trainer.py --torch "$(TORCH)"
	touch $@

setup: $(VENV)/.trainer  ## + the sd-scripts submodule, torch and the training requirements

test: $(VENV)/.installed  ## the whole suite: what needs a missing piece skips, saying which (-rs)
	$(PY) -m pytest -rs

test-fast: $(VENV)/.installed  ## what needs neither torch nor sd-scripts: all but the tests marked sdscripts
	$(PY) -m pytest -rs -m "not sdscripts"

lint: $(VENV)/.installed
	$(PY) -m ruff check onetwo tests scripts benchmarks examples

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_composite.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_masks.py
	$(PY) benchmarks/bench_sample.py

demo: $(VENV)/.trainer
	$(PY) scripts/demo.py $(DEMO)

gpu-check: $(VENV)/.trainer  ## both stages with the reference GPU settings on the tiny SD1 model and Anima set; s/step, peak GPU memory
	$(PY) scripts/gpu_check.py

check: $(VENV)/.installed
	$(ONETWO) check

composites: $(VENV)/.installed
	$(ONETWO) composite

preview: $(VENV)/.installed
	$(ONETWO) preview

stage1: $(VENV)/.installed
	$(ONETWO) train stage1 $(ARGS)

stage2: $(VENV)/.installed
	$(ONETWO) train stage2 $(ARGS)

joint: $(VENV)/.installed
	$(ONETWO) train joint $(ARGS)
