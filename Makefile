# Two commands: `make repro` (the whole default study) and `make test` (the test suite);
# `make repro-extended` also runs the extended study (extended/dvc.yaml: VAVL's ablations, the other task,
# partly unpaired training), which the default study does not wait for.
# After `dvc repro`, README.md's Results section is regenerated from reports/ (mer_core.readme_results).
# Every target creates .venv from pyproject.toml's pinned dependencies when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export JUPYTER_PREFER_ENV_PATH := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro repro-extended test lab

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

repro: $(STAMP)
	dvc repro
	python -m mer_core.readme_results

repro-extended: $(STAMP)
	dvc repro
	dvc repro extended/dvc.yaml
	python -m mer_core.readme_results

test: $(STAMP)
	python -m pytest

lab: $(STAMP)
	jupyter lab notebooks/04_explore.ipynb
