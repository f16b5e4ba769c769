"""The machine a study runs on: processes, threads, device, executor (`params.yaml: machine`).

These settings never change a result (CPU runs are deterministic whatever `jobs` is; see docs/params.md), so no
stage declares them as a dependency and changing them reruns nothing. A stage reads them when it starts, from
params.yaml directly (`machine_settings`), not from its resolved params (`data/params/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from mer_core.schema import ConfigError, Params, check


class Ray(Params):
    """The Ray executor (`machine.executor: ray`, docs/scale.md)."""

    address: str | None = None
    """null: start a local Ray cluster | auto or host:port: join an existing cluster (`RAY_ADDRESS` also works)."""
    cpus_per_unit: float = Field(1.0, gt=0.0, le=1024)
    """CPUs Ray reserves for one (run, fold, seed) training unit."""
    gpus_per_unit: float = Field(0.0, ge=0.0, le=64)
    """GPUs Ray reserves for one unit (fractions share a GPU)."""
    max_retries: int = Field(2, ge=0, le=100)
    """Times a unit whose worker died is retried."""


class Machine(Params):
    """The machine a study runs on: processes, threads, device and executor; never part of a result."""

    jobs: int = Field(2, ge=1, le=256)
    """Worker processes: corpus generation, feature extraction, and training units run in parallel."""
    threads_per_job: int = Field(1, ge=1, le=256)
    """Torch threads per worker (fixed, so that results do not depend on `jobs`)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present | cpu | cuda (an error when no GPU is visible)."""
    deterministic: bool = True
    """On CUDA: deterministic algorithms where PyTorch has them (cuDNN without autotuning, cuBLAS workspace
    config); an op without one warns (docs/scale.md). CPU runs are deterministic anyway."""
    pin_memory: bool = True
    """On CUDA: batches copied to the GPU from pinned host memory, without blocking."""
    executor: Literal["local", "ray"] = "local"
    """local: a process pool on this machine | ray: each training unit is a Ray task (docs/scale.md)."""
    ray: Ray = Field(default_factory=Ray)


def machine_settings(path: str | Path = "params.yaml") -> dict:
    """The validated `machine` section of the params file (defaults where absent)."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return check(Machine, (params or {}).get("machine", {}), "machine").model_dump()
