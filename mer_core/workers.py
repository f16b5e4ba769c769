"""Worker processes that die with their parent: the spawned pools of the prepare step (feature extraction) and of
training (`train.n_jobs`).

A pool's workers wait on a pipe for their next task; when the parent is SIGKILLed (or dies of any other cause
that runs no cleanup) nothing closes that pipe, and the workers would wait forever as orphans. Each worker
therefore arranges, as it starts, to end with its parent (`die_with_parent`). This module imports nothing heavy,
so that a worker runs that initializer before it imports the libraries its tasks need.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def spawn_pool(n_jobs: int) -> ProcessPoolExecutor:
    """`n_jobs` spawned worker processes that end when this process ends, however it ends. Start it from a thread
    that outlives it (on Linux the kernel signals a worker when the thread that started it ends)."""
    return ProcessPoolExecutor(
        n_jobs, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
    )


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
