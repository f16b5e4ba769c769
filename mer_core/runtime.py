"""Seeding, device selection, atomic file writes, and finding the project root (console output: `mer_core.console`)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same (for shuffling and masks)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def select_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` fails clearly when no GPU is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: 'cuda' requested but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def configure_device(device: torch.device, deterministic: bool) -> None:
    """On CUDA, make kernels deterministic where PyTorch can (`machine.deterministic`): cuDNN's deterministic
    algorithms without autotuning, a fixed cuBLAS workspace (set before cuBLAS starts), and PyTorch's deterministic
    implementations, warning (not failing) at an op that has none. Nothing to do on a CPU."""
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The forward passes' precision (`train.precision`): bfloat16 autocast for `bf16`, off for `fp32`."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` then rename onto `path`, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def enter_project_root(start: str | Path | None = None) -> Path:
    """chdir to the nearest folder (from `start`, default cwd, upwards) holding params.yaml and dvc.yaml.

    Notebooks call this first: under `dvc repro` the cwd is already the project root, in JupyterLab it is
    `notebooks/`; either way paths in params.yaml then resolve the same.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no params.yaml + dvc.yaml in {here} or its parents: open the notebook inside the project")
