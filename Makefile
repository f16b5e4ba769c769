# Two commands: `make repro` (the whole default study) and `make test` (the fast tests, about 2 minutes).
# `make repro-extended` also runs the extended study (extended/dvc.yaml: ablations, the official switches, the other
# task, partly unpaired training); `make test-full` runs every test (the end-to-end pipeline runs too: what CI runs);
# `make lint` checks the code with ruff; `make lab` opens the explorer in JupyterLab (LAB_ARGS passes options).
# `make plan-paper` prints the paper-scale study (official schedules and sizes, 5 seeds) with its cost timed on this
# machine; `make repro-paper` prints it, then runs it as the DVC experiment `paper` in a temporary workspace (`dvc exp
# show` compares it with the default study). SET adds overrides: SET="data.corpus=crema_d data.root=/data/CREMA-D".
# After `dvc repro`, README.md's Results section is regenerated from reports/ (mer_core.readme_results).
# `make speech-dev SPEECH_ROOT=/abs/path/emodb-dev` runs the real-speech recipe (docs/real-speech.md) as the DVC
# experiment `emodb-dev` in a temporary workspace: EmoDB leave-one-speaker-out, the classical baseline and the best
# neural audio run, the analysis and the HTML (`dvc exp show` lists it, `dvc exp apply emodb-dev` brings it here).
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
SPEECH_NET := {method: audio_only, audio_input: ComParE_2016, hidden: 128, classifier: [128], dropout: 0.5, \
	optim: {epochs: 30, epochs_decay: 10, lr: 0.001, beta1: 0.9, grad_clip: 0.5, batch_size: 32}, \
	augment: {audio: {noise: 0.5, freq_masks: 2, freq_mask: 0.1}}}
SPEECH_DEV := -S data.corpus=emodb -S data.root=$(abspath $(SPEECH_ROOT)) -S folds.protocol=standard \
	-S folds.n_val_speakers=1 -S robustness.signal=false -S ++train.normalisation=speaker -S train.stopping.rule=fixed \
	-S '++methods.functionals_svm={method: functionals_svm}' -S '++methods.functionals_net=$(SPEECH_NET)' \
	-S 'train.runs=[functionals_svm,functionals_net]'

.PHONY: setup repro repro-extended plan-paper repro-paper speech-dev test test-full lint lab

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

speech-dev: $(STAMP)
	@test -d "$(SPEECH_ROOT)/wav" || { echo "usage: make speech-dev SPEECH_ROOT=<folder holding EmoDB's wav/>"; exit 2; }
	dvc exp run --temp -f -n emodb-dev $(SPEECH_DEV)

test: $(STAMP)
	python -m pytest -m "not slow"

test-full: test
	python -m pytest -m slow

lint: $(STAMP)
	ruff check mer_core tests
	ruff format --check mer_core tests

lab: $(STAMP)
	jupyter lab $(LAB_ARGS) notebooks/04_explore.ipynb
