"""Where a stage's independent units run (`machine.executor`, docs/scale.md): in this process, in a local pool of
`machine.jobs` spawned processes, or as Ray tasks on a local or an existing Ray cluster.

Every executor gives the same results: a unit is a pure function of its arguments (its seed is one of them, and
its torch threads are fixed by `machine.threads_per_job`), so where it runs changes nothing.

A finished unit's result is kept in `resume_dir` (written atomically) until the caller's stage completes: when a
stage is stopped part way (a killed job, a lost node, a failing unit) and run again, the units that finished are
read back instead of run again. The caller names each unit by a key that changes whenever its inputs do.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from pathlib import Path

from mer_core import console
from mer_core.runtime import write_atomic
from mer_core.workers import spawn_pool


def run_units(
    fn: Callable,
    units: Sequence[tuple],
    keys: Sequence[str],
    machine: dict,
    resume_dir: Path | None = None,
    desc: str = "units",
) -> list:
    """`[fn(*unit) for unit in units]`, run on `machine["executor"]`; results in the order of `units`. `keys` names
    each unit (a file name) for the progress bar and for `resume_dir`, where finished units are kept and read back."""
    if len(keys) != len(units) or len(set(keys)) != len(keys):
        raise ValueError("run_units: one distinct key per unit")
    results: dict[str, object] = {}
    if resume_dir is not None:
        for key in keys:
            path = resume_dir / f"{key}.pkl"
            if path.is_file():
                results[key] = pickle.loads(path.read_bytes())
    pending = [(key, unit) for key, unit in zip(keys, units) if key not in results]
    progress = console.progress(total=len(units), initial=len(results), desc=desc, unit="unit")

    def finished(key: str, result) -> None:
        if resume_dir is not None:
            write_atomic(resume_dir / f"{key}.pkl", functools.partial(Path.write_bytes, data=pickle.dumps(result)))
        results[key] = result
        progress.set_postfix_str(f"done: {key}", refresh=False)
        progress.update()

    executor = machine["executor"]
    if executor == "ray":
        _on_ray(fn, pending, machine, finished)
    elif machine["jobs"] == 1 or len(pending) <= 1:
        for key, unit in pending:
            finished(key, fn(*unit))
    else:
        with spawn_pool(min(machine["jobs"], len(pending))) as pool:
            futures = {pool.submit(fn, *unit): key for key, unit in pending}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    progress.close()
    return [results[key] for key in keys]


def _on_ray(fn: Callable, pending: list[tuple[str, tuple]], machine: dict, finished: Callable) -> None:
    """Each pending unit as one Ray task with `machine.ray`'s resources; a task whose worker dies is retried
    `max_retries` times (an exception the unit raises is not retried: it would raise again)."""
    import ray  # an optional dependency (`pip install -e .[scale]`)

    settings = machine["ray"]
    if not ray.is_initialized():
        address = settings["address"] or os.environ.get("RAY_ADDRESS")
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            **({} if address else {"num_cpus": machine["jobs"] * settings["cpus_per_unit"]}),
        )
    task = ray.remote(
        num_cpus=settings["cpus_per_unit"], num_gpus=settings["gpus_per_unit"], max_retries=settings["max_retries"]
    )(_ray_unit)
    cwd = os.getcwd()
    refs = {task.remote(cwd, fn, unit): key for key, unit in pending}
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        finished(refs.pop(done[0]), ray.get(done[0]))


def _ray_unit(cwd: str, fn: Callable, unit: tuple):
    """A unit on a Ray worker, run from the driver's working directory: the relative paths in a unit (its feature
    store) must name the same files on every node (a shared file system, docs/scale.md)."""
    try:
        os.chdir(cwd)
    except OSError as err:
        raise FileNotFoundError(
            f"Ray node {socket.gethostname()}: the study's directory {cwd} does not exist here; "
            "every node must see the project at the same path (docs/scale.md)"
        ) from err
    return fn(*unit)


def remove_resumed(resume_dir: Path) -> None:
    """Forget the finished units of a stage that completed."""
    shutil.rmtree(resume_dir, ignore_errors=True)
