"""Shared fixtures: the tiny random feature store and params of `tiny` (tests import from `tiny` and `helpers`,
never from a conftest: pytest loads tests/reliability/conftest.py under the same module name)."""

from __future__ import annotations

import pytest
from tiny import build_tiny_store, make_tiny_params


@pytest.fixture
def tiny_store(tmp_path):
    """A fresh tiny store at <tmp_path>/features/builtin (so `store_path(params)` finds it)."""
    return build_tiny_store(tmp_path / "features" / "builtin")


@pytest.fixture
def tiny_attribute_store(tmp_path):
    """The tiny store with arousal / valence / dominance columns (for `task: regression`)."""
    return build_tiny_store(tmp_path / "features" / "builtin", attributes=True)


@pytest.fixture
def tiny_params():
    """Factory: tiny_params(store, epochs=2, task="classification", methods=None, sections=None, **train_overrides)
    -> validated params (`make_tiny_params`)."""
    return make_tiny_params
