"""Seeding, device selection, atomic file writes, and worker processes that die with their parent."""
from __future__ import annotations

import ctypes
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
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


def spawn_pool(n_jobs: int) -> ProcessPoolExecutor:
    """`n_jobs` spawned worker processes that end when this process ends, however it ends (`die_with_parent`): a
    SIGKILLed prepare or training step leaves no orphaned worker blocked on its pipe. Start it from a thread that
    outlives it (on Linux the kernel signals a worker when the thread that started it ends)."""
    return ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when process `parent` ends. On Linux the kernel sends SIGKILL on the
    parent's death (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent pid once a second."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


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
