"""Fixtures of the reliability suite (`docs/reliability.md`): a tiny built-in corpus (4 actors, sentences IEO and DFA:
88 clips), generated once, and a fresh damageable copy of it per test with params that point at it. Every test
under this folder carries the `reliability` marker (`pytest -m reliability` runs the suite alone)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

from mer_core.config import load_params
from mer_core.data.synthetic import generate_corpus

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def base_params() -> dict:
    """params.yaml with the tiny corpus, one corruption variant of each kind, 2 folds (prepare runs with one process
    unless a test asks for more)."""
    params = load_params(PROJECT / "params.yaml")
    params["data"]["synthetic"].update(n_actors=4, sentences=["IEO", "DFA"])
    params["features"]["corruptions"].update(
        audio_noises=["babble"], audio_snr_db=[10.0], babble_talkers=2, visual_dropout=[0.5]
    )
    params["folds"].update(n_folds=2, n_val_speakers=1)
    return params


@pytest.fixture(scope="session")
def pristine_corpus(tmp_path_factory, base_params) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "builtin"
    generate_corpus(root, base_params["data"]["synthetic"])
    return root


@pytest.fixture
def damaged(tmp_path, base_params, pristine_corpus) -> tuple[Path, dict]:
    """(root, params): a fresh copy of the tiny corpus to damage, and params reading it into tmp_path."""
    root = tmp_path / "raw"
    shutil.copytree(pristine_corpus, root)
    params = copy.deepcopy(base_params)
    params["data"].update(root=str(root), features_dir=str(tmp_path / "features"), cache_dir=str(tmp_path / "cache"))
    return root, params
