# Two commands: `make repro` (the whole default study) and `make test` (the fast tests, about 2 minutes).
# `make repro-extended` also runs the extended study (extended/dvc.yaml: ablations, the official switches, the other
# task, partly unpaired training); `make test-full` runs every test (the end-to-end pipeline runs too: what CI runs);
# `make lint` checks the code with ruff; `make lab` opens the explorer in JupyterLab (LAB_ARGS passes options).
# `make plan-paper` prints the paper-scale study (official schedules and sizes, 5 seeds) with its cost timed on this
# machine; `make repro-paper` prints it, then runs it as the DVC experiment `paper` in a temporary workspace (`dvc exp
# show` compares it with the default study). SET adds overrides: SET="data.corpus=crema_d data.root=/data/CREMA-D".
# After `dvc repro`, README.md's Results section is regenerated from reports/ (mer_core.readme_results).
# Every target creates .venv from pyproject.toml's pinned dependencies when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

export PATH := $(BIN):$(PATH)
export JUPYTER_PREFER_ENV_PATH := 1
export DVC_NO_ANALYTICS := 1

SETS := $(foreach s,$(SET),-S $(s))
PAPER := -S train.preset=paper -S 'train.seeds=[0,1,2,3,4]'

.PHONY: setup repro repro-extended plan-paper repro-paper test test-full lint lab

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,scale]'
	@touch $(STAMP)

repro: $(STAMP)
	python -m mer_core.config --check
	dvc repro dvc.yaml
	python -m mer_core.readme_results

repro-extended: $(STAMP)
	python -m mer_core.config --check
	dvc repro dvc.yaml extended/dvc.yaml
	python -m mer_core.readme_results

plan-paper: $(STAMP)
	python -m mer_core.plan --paper --measure $(SETS)

repro-paper: plan-paper
	dvc exp run --temp -n paper $(PAPER) $(SETS)

test: $(STAMP)
	python -m pytest -m "not slow"

test-full: test
	python -m pytest -m slow

lint: $(STAMP)
	ruff check mer_core tests
	ruff format --check mer_core tests

lab: $(STAMP)
	jupyter lab $(LAB_ARGS) notebooks/04_explore.ipynb
