"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on the path)."""
from __future__ import annotations

from pathlib import Path

from mer_core.config import resolve_runs
from mer_core.train import train_run


def run_method(name: str, params: dict, out_dir: str | Path, checkpoint_dir: str | Path, jobs: int = 1) -> dict:
    """Train run `name` of validated `params` (e.g. `tiny_params(store)`) as its stage would, with `jobs` processes;
    returns its summary."""
    return train_run(resolve_runs(params)[name], out_dir, checkpoint_dir, jobs)
