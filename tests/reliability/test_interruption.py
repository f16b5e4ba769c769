"""Reliability: interrupted and killed stages. A SIGKILLed prepare step leaves no store and no living worker, and a
rerun resumes from the extraction cache to the very store an uninterrupted run writes; a worker killed on its own
stops the run with a clear error; an interrupted store write leaves nothing that looks complete. An interrupted or
killed training stage leaves no result and no checkpoint (`train_run` writes both only once every unit succeeded):
only its finished units, in `.resume/` beside the checkpoint folder, which a rerun reads back, to the very results
and checkpoints of an uninterrupted run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_workers import suicidal_chunk
from helpers import resolved_run, run_method

from mer_core import train as train_module
from mer_core.data import prepare as prepare_module
from mer_core.data import store as store_module
from mer_core.data.prepare import WorkerError, cache_path, prepare, store_path
from mer_core.train import RESULT_FILES
from mer_core.workers import spawn_pool

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Runs prepare(params from the JSON file argv[1], jobs argv[4]) with the extraction chunk argv[2] (<module>.<function>
# of this folder) and CHUNK argv[3] jobs per chunk, so that the test can kill it at a known point; as if the machine
# had at least `jobs` cores (prepare uses no more workers than cores).
PREPARE = f"""
import importlib, json, os, sys
sys.path[:0] = [{str(PROJECT)!r}, {str(HERE)!r}]
from mer_core.data import prepare as prepare_module
module, function = sys.argv[2].split(".")
prepare_module._extract_chunk = getattr(importlib.import_module(module), function)
prepare_module.CHUNK = int(sys.argv[3])
params = json.loads(open(sys.argv[1]).read())
jobs = int(sys.argv[4])
os.cpu_count = lambda: jobs
prepare_module.prepare(params, jobs)
"""

# Trains the resolved run in the JSON file argv[1] into argv[2] (results) and argv[3] (checkpoints), one unit at a
# time; the unit of fold 1 blocks (as a long unit would) until the test SIGKILLs the process.
TRAIN = f"""
import json, sys, time
sys.path[:0] = [{str(PROJECT)!r}]
import torch
torch.set_num_threads(1)
from mer_core import train as train_module

fit_unit = train_module.fit_unit
def blocked_on_fold_1(run, fold, *rest):
    if fold == 1:
        time.sleep(300)
    return fit_unit(run, fold, *rest)
train_module.fit_unit = blocked_on_fold_1
run = json.loads(open(sys.argv[1]).read())
train_module.train_run(run, sys.argv[2], sys.argv[3], {{"jobs": 1, "device": "cpu"}})
"""


def params_at(base_params: dict, root: Path, out: Path) -> dict:
    params = copy.deepcopy(base_params)
    params["data"].update(root=str(root), features_dir=str(out / "features"), cache_dir=str(out / "cache"))
    return params


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base_params, pristine_corpus) -> bytes:
    """manifest.json (the sha256 of every file of the store) of an uninterrupted run on the pristine corpus."""
    store = prepare(params_at(base_params, pristine_corpus, tmp_path_factory.mktemp("reference")))
    return (store.root / "manifest.json").read_bytes()


def start_prepare(
    params: dict, tmp_path: Path, chunk: str, chunk_size: int, jobs: int = 1
) -> tuple[subprocess.Popen, Path]:
    """Start PREPARE in a subprocess; returns it and the folder where its chunks leave their marks."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "params.json").write_text(json.dumps(params))
    env = dict(os.environ, MER_TEST_PIDS=str(marks))
    process = subprocess.Popen(
        [sys.executable, "-c", PREPARE, str(tmp_path / "params.json"), chunk, str(chunk_size), str(jobs)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, marks


def wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_sigkill_of_prepare_leaves_no_worker_alive(tmp_path, base_params, pristine_corpus):
    params = params_at(base_params, pristine_corpus, tmp_path)
    process, marks = start_prepare(params, tmp_path, "fault_workers.sleeping_chunk", 64, jobs=2)
    try:
        wait_for(lambda: len(list(marks.iterdir())) == 2, "two workers blocked in their chunks")
        workers = [int(p.name) for p in marks.iterdir()]
        assert all(alive(pid) for pid in workers)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to die with their parent", 10.0)
    finally:
        process.kill()
        for pid in [int(p.name) for p in marks.iterdir()]:
            if alive(pid):  # an orphan (the bug): end it, the assertion above has failed already
                os.kill(pid, signal.SIGKILL)
    assert not store_path(params).exists()


def test_sigkill_mid_prepare_then_a_rerun_writes_the_same_store(tmp_path, base_params, pristine_corpus, reference):
    params = params_at(base_params, pristine_corpus, tmp_path)
    process, marks = start_prepare(params, tmp_path, "corpus_damage.slow_chunk", 8)
    try:
        wait_for(lambda: len(list(marks.iterdir())) >= 3, "three chunks of extraction")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    store = store_path(params)
    assert not store.exists() and not store.with_name(store.name + ".partial").exists()
    assert len(list(cache_path(params).glob("*.npz"))) >= 16  # two chunks of 8 finished before the kill
    assert not list(cache_path(params).glob("*.tmp"))
    prepare(params)  # resumes
    assert (store / "manifest.json").read_bytes() == reference
    assert not cache_path(params).exists()


def test_a_killed_worker_stops_the_run_clearly_and_a_rerun_recovers(
    tmp_path, base_params, pristine_corpus, reference, monkeypatch
):
    params = params_at(base_params, pristine_corpus, tmp_path)
    monkeypatch.setattr(prepare_module, "_extract_chunk", suicidal_chunk)
    monkeypatch.setattr(prepare_module, "worker_pool", lambda n_jobs: spawn_pool(2))
    with pytest.raises(
        WorkerError,
        match="^features: a worker process ended abruptly \\(killed, or out of memory\\?"
        "\\); nothing was written; rerun the step",
    ):
        prepare(params)
    assert not store_path(params).exists()
    monkeypatch.undo()
    prepare(params)
    assert (store_path(params) / "manifest.json").read_bytes() == reference


def test_an_interrupted_store_write_leaves_no_store_and_resumes(
    tmp_path, base_params, pristine_corpus, reference, monkeypatch
):
    params = params_at(base_params, pristine_corpus, tmp_path)
    real = store_module._save_sequences
    calls = []

    def interrupted(path, seq):  # Ctrl-C while the second file is written
        calls.append(path)
        if len(calls) == 2:
            path.write_bytes(b"PK\x03\x04 half")
            raise KeyboardInterrupt
        real(path, seq)

    monkeypatch.setattr(store_module, "_save_sequences", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(params)
    store = store_path(params)
    assert not store.exists() and not store.with_name(store.name + ".partial").exists()
    assert len(list(cache_path(params).glob("*.npz"))) == 2 * 88 + 88  # every item extracted is kept
    monkeypatch.undo()
    monkeypatch.setattr(prepare_module, "_extract_chunk", None)  # nothing left to extract: never called
    monkeypatch.setattr(prepare_module, "_corrupt_audio_chunk", None)
    prepare(params)
    assert (store / "manifest.json").read_bytes() == reference


def test_an_interrupted_training_leaves_no_results_and_resumes(tiny_store, tiny_params, tmp_path, monkeypatch):
    params = tiny_params(tiny_store, epochs=1, folds=[0, 1])
    out, checkpoints = tmp_path / "results", tmp_path / "checkpoints" / "utt_fusion"
    real = train_module.train_stage
    trained = []

    def interrupted(model, stage, *args):
        desc = args[6]  # conditions, optim, weight_decay, data, generator, device, desc, ...
        if "fold 1" in desc:  # Ctrl-C in the second fold
            raise KeyboardInterrupt
        trained.append(desc)
        return real(model, stage, *args)

    monkeypatch.setattr(train_module, "train_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_method("utt_fusion", params, out, checkpoints)
    assert not any((out / name).exists() for name in RESULT_FILES)
    assert not checkpoints.exists()  # not even fold 0's: checkpoints are written once every unit succeeded
    [finished] = (tmp_path / "checkpoints" / ".resume").glob("utt_fusion-*/*.pkl")
    assert finished.name == "fold0-seed0.pkl"  # fold 0's unit, waiting for the rerun
    monkeypatch.setattr(
        train_module, "train_stage", lambda model, stage, *args: trained.append(args[6]) or real(model, stage, *args)
    )
    summary = run_method("utt_fusion", params, out, checkpoints)
    assert trained == ["run utt_fusion, fold 0, seed 0, stage train", "run utt_fusion, fold 1, seed 0, stage train"]
    assert summary["folds"] == [0, 1] and all((out / name).is_file() for name in RESULT_FILES)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["fold0-seed0.pt", "fold1-seed0.pt"]
    assert not list((tmp_path / "checkpoints" / ".resume").iterdir())


def test_sigkill_mid_training_then_a_rerun_resumes_to_the_uninterrupted_results(
    tiny_store, tiny_params, tmp_path, monkeypatch
):
    run = resolved_run("utt_fusion", tiny_params(tiny_store, epochs=2, folds=[0, 1]))
    straight = tmp_path / "straight"
    train_module.train_run(run, straight / "results", straight / "checkpoints", {"jobs": 1, "device": "cpu"})
    out, checkpoints = tmp_path / "killed" / "results", tmp_path / "killed" / "checkpoints"
    resume = checkpoints.parent / ".resume"
    (tmp_path / "run.json").write_text(json.dumps(run))
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(tmp_path / "run.json"), str(out), str(checkpoints)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: list(resume.glob("utt_fusion-*/fold0-seed0.pkl")), "fold 0's unit to finish")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists() or not any((out / name).exists() for name in RESULT_FILES)
    assert not checkpoints.exists()
    assert [p.name for p in resume.glob("*/*")] == ["fold0-seed0.pkl"]  # nothing half-written beside it
    fit_unit, trained = train_module.fit_unit, []
    monkeypatch.setattr(
        train_module, "fit_unit", lambda run, fold, *rest: trained.append(fold) or fit_unit(run, fold, *rest)
    )
    train_module.train_run(run, out, checkpoints, {"jobs": 1, "device": "cpu"})  # the rerun
    assert trained == [1]  # fold 0 read back from .resume
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (straight / "results" / name).read_bytes(), name
    assert sorted(p.name for p in checkpoints.iterdir()) == ["fold0-seed0.pt", "fold1-seed0.pt"]
    for path in checkpoints.iterdir():
        assert path.read_bytes() == (straight / "checkpoints" / path.name).read_bytes(), path.name
    assert not list(resume.iterdir())
