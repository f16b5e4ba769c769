"""Extraction chunks that fail the way processes fail, for the interruption cases (a module, not a test file). It
imports nothing heavy, so that the spawned workers that unpickle these functions start in a moment."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def sleeping_chunk(jobs, *args):
    """Record this worker's pid in $MER_TEST_PIDS, then block (until killed)."""
    (Path(os.environ["MER_TEST_PIDS"]) / str(os.getpid())).touch()
    time.sleep(120)
    return [], []


def suicidal_chunk(jobs, *args):
    """SIGKILL this worker, as the kernel's out-of-memory killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
