"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on the path)."""

from __future__ import annotations

import json
from pathlib import Path

from mer_core.config import resolve_runs, stage_params
from mer_core.train import train_run


def resolved_run(name: str, params: dict) -> dict:
    """Run `name` of validated `params` as its training stage reads it: the content of its resolved params file
    (data/params/runs/<name>.json, or extended/<name>.json), through JSON as the stage reads it."""
    runs = resolve_runs(params)
    folder = "runs" if runs[name]["study"] == "default" else "extended"
    return json.loads(json.dumps(stage_params(params, runs)[f"{folder}/{name}.json"]))


def run_method(name: str, params: dict, out_dir: str | Path, checkpoint_dir: str | Path, jobs: int = 1) -> dict:
    """Train run `name` of validated `params` (e.g. `tiny_params(store)`) as its stage would, with `jobs` processes;
    returns its summary."""
    return train_run(resolved_run(name, params), out_dir, checkpoint_dir, {"jobs": jobs})


def entry(params: dict, name: str) -> dict:
    """The complete method params of run `name` of validated `params` (its resolved `entry`)."""
    return resolve_runs(params)[name]["entry"]
