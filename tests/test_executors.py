"""Where training units run (`mer_core.executors`): serial, a local process pool, or Ray tasks, with the same results;
finished units resumed after an interruption; a Ray unit whose worker is killed is retried.

The Ray tests start a local 2-CPU Ray cluster once for the module (`pytest -k ray`); they skip when Ray is not
installed (`pip install -e .[scale]`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import resolved_run, run_method

import mer_core.train as train_module
from mer_core.executors import remove_resumed, run_units
from mer_core.machine import Machine
from mer_core.schema import check
from mer_core.train import train_run

TESTS = Path(__file__).resolve().parent
RESULT_TABLES = ("predictions.csv", "per_condition.csv", "history.csv", "robustness.csv")


def machine(**settings) -> dict:
    return check(Machine, {"jobs": 1, **settings}, "machine").model_dump()


def square(x: int) -> int:
    return x * x


def die_once(marker: str, x: int) -> int:
    """x, after killing its own process the first time it is called with this `marker` (a file)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("killed once\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def square_or_fail(x: int, fail: bool) -> int:
    if fail:
        raise RuntimeError(f"unit {x} failed")
    return x * x


KEYS = [f"unit{k}" for k in range(5)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_executor_returns_results_in_unit_order(jobs):
    assert run_units(square, [(k,) for k in range(5)], KEYS, machine(jobs=jobs)) == [0, 1, 4, 9, 16]


def test_each_unit_needs_a_distinct_key():
    with pytest.raises(ValueError, match="distinct key"):
        run_units(square, [(1,), (2,)], ["same", "same"], machine())


def test_finished_units_are_read_back_after_a_failure_and_forgotten_once_the_stage_completes(tmp_path):
    resume = tmp_path / "resume"
    with pytest.raises(RuntimeError, match="unit 3 failed"):
        run_units(square_or_fail, [(k, k == 3) for k in range(5)], KEYS, machine(), resume)
    assert sorted(p.stem for p in resume.glob("*.pkl")) == ["unit0", "unit1", "unit2"]  # serial: 0-2 finished
    calls = []
    original = square_or_fail

    def counted(x, fail):
        calls.append(x)
        return original(x, False)

    assert run_units(counted, [(k, False) for k in range(5)], KEYS, machine(), resume) == [0, 1, 4, 9, 16]
    assert calls == [3, 4]  # the finished units were not run again
    remove_resumed(resume)
    assert not resume.exists()


def test_train_run_resumes_the_units_that_finished_and_gives_the_uninterrupted_results(
    tiny_store, tiny_params, tmp_path, monkeypatch
):
    params = tiny_params(tiny_store, epochs=2, folds=[0, 1])
    run = resolved_run("utt_fusion", params)
    train_run(run, tmp_path / "straight", tmp_path / "ckpt" / "straight", machine())
    fit_unit = train_module.fit_unit
    trained = []

    def fail_on_fold_1(run, fold, *rest):
        if fold == 1:
            raise RuntimeError("killed on fold 1")
        trained.append(fold)
        return fit_unit(run, fold, *rest)

    monkeypatch.setattr(train_module, "fit_unit", fail_on_fold_1)
    out, checkpoints = tmp_path / "resumed", tmp_path / "ckpt" / "resumed"
    with pytest.raises(RuntimeError, match="killed on fold 1"):
        train_run(run, out, checkpoints, machine())
    assert not (out / "metrics.json").exists() and not checkpoints.exists()  # nothing that looks like a result
    assert len(list((tmp_path / "ckpt" / ".resume").glob("utt_fusion-*/fold0-seed0.pkl"))) == 1

    def count(run, fold, *rest):
        trained.append(fold)
        return fit_unit(run, fold, *rest)

    monkeypatch.setattr(train_module, "fit_unit", count)
    train_run(run, out, checkpoints, machine())
    assert trained == [0, 1]  # fold 0 once (before the failure), fold 1 once (after it)
    for table in RESULT_TABLES:
        assert (out / table).read_text() == (tmp_path / "straight" / table).read_text(), table
    for path in (tmp_path / "ckpt" / "straight").iterdir():
        assert (checkpoints / path.name).read_bytes() == path.read_bytes(), path.name
    assert not list((tmp_path / "ckpt" / ".resume").iterdir())  # completed: nothing left to resume


def test_a_finished_unit_is_not_resumed_when_the_runs_inputs_changed(tiny_store, tiny_params, tmp_path, monkeypatch):
    run = resolved_run("utt_fusion", tiny_params(tiny_store, epochs=2, folds=[0, 1]))
    stale = tmp_path / "ckpt" / ".resume" / "utt_fusion-0000000000000000"
    stale.mkdir(parents=True)
    (stale / "fold0-seed0.pkl").write_bytes(b"from other inputs")
    train_run(run, tmp_path / "out", tmp_path / "ckpt" / "utt_fusion", machine())
    assert not stale.exists() and (tmp_path / "out" / "metrics.json").is_file()


# ---------------------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs whose workers import this directory's modules (the test functions)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e .[scale])")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}},
    )
    yield ray
    ray.shutdown()


RAY = {"executor": "ray", "jobs": 2}


def test_ray_executor_returns_the_local_results(ray_cluster):
    assert run_units(square, [(k,) for k in range(5)], KEYS, machine(**RAY)) == [0, 1, 4, 9, 16]


def test_ray_retries_a_unit_whose_worker_was_killed(ray_cluster, tmp_path):
    markers = [str(tmp_path / f"killed{k}") for k in range(3)]
    units = [(markers[0], 10), (markers[1], 11), (markers[2], 12)]
    assert run_units(die_once, units, KEYS[:3], machine(**RAY)) == [10, 11, 12]
    assert all(Path(m).is_file() for m in markers)  # every unit's first worker was killed


def test_ray_does_not_retry_a_unit_that_raised(ray_cluster):
    with pytest.raises(Exception, match="unit 1 failed"):
        run_units(square_or_fail, [(0, False), (1, True)], KEYS[:2], machine(**RAY, ray={"max_retries": 3}))


@pytest.mark.slow
def test_ray_trains_a_tiny_studys_units_to_the_local_executors_bytes(
    ray_cluster, tiny_store, tiny_params, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # Ray workers run from the driver's directory: relative paths resolve alike
    params = tiny_params(tiny_store, epochs=2, folds=[0, 1], seeds=[0, 1])
    for name in ("mmin", "vavl"):
        run = resolved_run(name, params)
        train_run(run, f"local/{name}", f"ckpt/local/{name}", machine(jobs=2))
        train_run(run, f"ray/{name}", f"ckpt/ray/{name}", machine(**RAY))
        for table in RESULT_TABLES:
            assert Path(f"ray/{name}/{table}").read_text() == Path(f"local/{name}/{table}").read_text(), table
        local = sorted(Path(f"ckpt/local/{name}").iterdir())
        assert [p.name for p in local] == sorted(p.name for p in Path(f"ckpt/ray/{name}").iterdir())
        for path in local:
            assert Path(f"ckpt/ray/{name}/{path.name}").read_bytes() == path.read_bytes(), path.name


def ray_unit_workers() -> list[int]:
    """The pids of the Ray workers now running a unit (their process title is `ray::_ray_unit`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_ray_unit"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray workers through /proc (Linux)")
def test_a_ray_worker_killed_mid_unit_is_retried_and_the_stage_completes(
    ray_cluster, tiny_store, tiny_params, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    params = tiny_params(tiny_store, epochs=30, folds=[0, 1])
    failures = []

    def train_on_ray():
        try:
            train_run(resolved_run("utt_fusion", params), "ray", "ckpt/ray", machine(**RAY))
        except Exception as err:  # reported by the assertion below
            failures.append(err)

    stage = threading.Thread(target=train_on_ray)
    stage.start()
    killed, deadline = None, time.monotonic() + 120
    while killed is None and stage.is_alive() and time.monotonic() < deadline:
        workers = ray_unit_workers()
        if workers:
            time.sleep(0.5)  # mid-unit: some epochs trained
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.05)
    stage.join(300)
    assert killed is not None, "no Ray worker was seen running a unit"
    assert not failures, failures
    run_method("utt_fusion", params, "local", "ckpt/local")
    for table in RESULT_TABLES:
        assert Path(f"ray/{table}").read_text() == Path(f"local/{table}").read_text(), table
