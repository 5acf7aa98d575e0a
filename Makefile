# aunet: every target depends on the project's virtual environment (.venv), so on a fresh clone
# `make train EXP=reparam` and `make test` are the whole set-up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where pip finds the torch 2.13.0 build. Empty = pip's configured indexes (a local CPU wheel
# here); CI on GitHub sets https://download.pytorch.org/whl/cpu; a CUDA cluster sets its own
# (e.g. https://download.pytorch.org/whl/cu128: README, "A cluster, several GPUs, W&B").
TORCH_INDEX ?=
TORCH_INDEX_FLAG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

# albumentations checks PyPI for a newer release on import; runs must never touch the network.
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

# Experiment knobs (see README): make train EXP=reparam DATA=synthetic FOLD=1 FAN=path RESUME=1
EXP ?= reparam
DATA ?= synthetic
FOLD ?=
FAN ?=
RESUME ?=
LAUNCH ?= local
ROOT ?=
ARGS ?=
QUICK ?=
SEEDS ?= 1
# make curve: the numbers of training subjects, and the folds (empty: the dataset's default).
SUBJECTS ?= 1 2 4 9 all
FOLDS ?=

.PHONY: help install test test-slow rehearse lint format train cv prep fan bench bench-complexity \
	bench-gpu table curve robustness clean

# In the `## ` texts that `make help` lists, a bare VAR=value is VAR's default above (the same
# value: tests/cli/test_cli_quiet.py checks), [VAR=...] an optional setting and VAR=<...> a
# placeholder.
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

# torch goes in first, alone and pinned, so that nothing installed later can choose another build;
# the check after the install fails loudly if another torch, or CUDA wheels beside the CPU build,
# got in anyway (a CUDA build from a cluster's TORCH_INDEX brings its own: aunet/environment.py).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_INDEX_FLAG) torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,prep]"
	$(PY) -m aunet.environment
	touch $(STAMP)

install: $(STAMP)  ## create .venv with torch 2.13.0 and aunet[dev,prep] (no-op when up to date)

test: $(STAMP)  ## the fast test suite (what CI runs)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)  ## the slow tests (SLURM cluster, kill/resume, 256x256 models)
	$(PY) -m pytest -m "slow and not rehearsal" -q

rehearse: $(STAMP)  ## the paper's recipe (prep, table on SLURM, robustness, predict) on stand-in data [ONLY=disfa|bp4d]
	@# pytest creates --basetemp itself but not its parent, which a fresh clone lacks.
	mkdir -p runs
	$(PY) -m pytest -m rehearsal -q -s --basetemp=runs/rehearsal $(if $(ONLY),-k $(ONLY))

lint: $(STAMP)  ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

train: $(STAMP)  ## train one experiment: EXP=reparam DATA=synthetic [FOLD=k] [FAN=path] [RESUME=1] [ARGS=...]
	$(PY) -m aunet.launch train --exp $(EXP) --data $(DATA) $(if $(FOLD),--fold $(FOLD)) \
		$(if $(FAN),--fan $(FAN)) $(if $(RESUME),--resume) -- $(ARGS)

cv: $(STAMP)  ## cross-validate: EXP=reparam DATA=synthetic [FAN=path] [SEEDS=n] [LAUNCH=local|slurm] [ARGS=...]
	$(PY) -m aunet.launch cv --exp $(EXP) --data $(DATA) --launch $(LAUNCH) --seeds $(SEEDS) \
		$(if $(FAN),--fan $(FAN)) -- $(ARGS)

prep: $(STAMP)  ## convert a dataset to HDF5: DATA=synthetic (drawn; a real one needs ROOT=<its folder>) [ARGS=...]
	$(PY) -m data_prep $(DATA) $(if $(ROOT),--root $(ROOT)) --out data/$(DATA).h5 $(ARGS)

fan: $(STAMP)  ## pre-train a FAN: [FAN_DATA=data/300w-lp.h5] (default: synthetic landmark faces) [ARGS=...]
	$(PY) -m aunet.launch fan $(if $(FAN_DATA),--data $(FAN_DATA)) -- $(ARGS)

bench: $(STAMP)  ## run the benchmarks in bench/ ([QUICK=1] for a short run)
	$(PY) -m bench $(if $(QUICK),--quick)

bench-gpu: $(STAMP)  ## one-shot GPU benchmark (under 8 min on one CUDA GPU; rows in bench/BENCHMARKS.md) [QUICK=1: the CPU dry run, nothing recorded] [ARGS=...]
	$(PY) -m bench.gpu $(if $(QUICK),--device cpu --quick --no-record) $(ARGS)

bench-complexity: $(STAMP)  ## parameters and GFLOPs of every experiment -> bench/results/complexity.json
	$(PY) -m bench.complexity

table: $(STAMP)  ## reproduce Table 2: DATA=synthetic [FAN=path] [EXPS="scratch adapt ..."] [SEEDS=n] [LAUNCH=local|slurm] [ARGS=...]
	$(PY) -m aunet.launch table --data $(DATA) --launch $(LAUNCH) $(if $(FAN),--fan $(FAN)) \
		--seeds $(SEEDS) $(if $(EXPS),--exps $(EXPS)) -- $(ARGS)

# EXP given on the command line picks the curve's methods; else scratch finetune adapt reparam.
curve: $(STAMP)  ## data-efficiency study, ICC against training subjects: [EXP="scratch finetune adapt reparam"] DATA=synthetic [SUBJECTS="1 2 4 9 all"] [FOLDS=1] [SEEDS=n] [LAUNCH=local|slurm] [ARGS=...]
	$(PY) -m aunet.launch curve --data $(DATA) --launch $(LAUNCH) --seeds $(SEEDS) \
		--subjects $(SUBJECTS) $(if $(filter command line,$(origin EXP)),--exps $(EXP)) \
		$(if $(FOLDS),--folds $(FOLDS)) $(if $(FAN),--fan $(FAN)) -- $(ARGS)

robustness: $(STAMP)  ## ICC/MSE under test-time crop noise: EXP=reparam DATA=synthetic [FAN=path] [ARGS=...]
	$(PY) -m aunet.launch robustness --exp $(EXP) --data $(DATA) $(if $(FAN),--fan $(FAN)) -- $(ARGS)

clean:  ## remove caches (keeps .venv, data, runs and checkpoints)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
