"""Reliability: interrupted and killed stages. A SIGKILLed prepare step leaves no store and no living worker, and a
rerun resumes from the extraction cache to the very store an uninterrupted run writes; a worker killed on its own
stops the run with a clear error; an interrupted store write or training leaves nothing that looks complete."""
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

from mer_core import train as train_module
from mer_core.data import prepare as prepare_module
from mer_core.data import store as store_module
from mer_core.data.prepare import WorkerError, cache_path, prepare, store_path
from mer_core.train import RESULT_FILES, checkpoint_path, run_method
from mer_core.workers import spawn_pool

from conftest import HERE, PROJECT

# Runs prepare(params from the JSON file argv[1]) with the extraction chunk argv[2] (<module>.<function> of this
# folder) and CHUNK argv[3] jobs per chunk, so that the test can kill it at a known point; as if the machine had at
# least features.n_jobs cores (prepare uses no more workers than cores).
PREPARE = f"""
import importlib, json, os, sys
sys.path[:0] = [{str(PROJECT)!r}, {str(HERE)!r}]
from mer_core.data import prepare as prepare_module
module, function = sys.argv[2].split(".")
prepare_module._extract_chunk = getattr(importlib.import_module(module), function)
prepare_module.CHUNK = int(sys.argv[3])
params = json.loads(open(sys.argv[1]).read())
os.cpu_count = lambda: params["features"]["n_jobs"]
prepare_module.prepare(params)
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


def start_prepare(params: dict, tmp_path: Path, chunk: str, jobs: int) -> tuple[subprocess.Popen, Path]:
    """Start PREPARE in a subprocess; returns it and the folder where its chunks leave their marks."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "params.json").write_text(json.dumps(params))
    env = dict(os.environ, MER_TEST_PIDS=str(marks))
    process = subprocess.Popen([sys.executable, "-c", PREPARE, str(tmp_path / "params.json"), chunk, str(jobs)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    params["features"]["n_jobs"] = 2
    process, marks = start_prepare(params, tmp_path, "fault_workers.sleeping_chunk", 64)
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


def test_a_killed_worker_stops_the_run_clearly_and_a_rerun_recovers(tmp_path, base_params, pristine_corpus,
                                                                    reference, monkeypatch):
    params = params_at(base_params, pristine_corpus, tmp_path)
    monkeypatch.setattr(prepare_module, "_extract_chunk", suicidal_chunk)
    monkeypatch.setattr(prepare_module, "worker_pool", lambda n_jobs: spawn_pool(2))
    with pytest.raises(WorkerError, match="^features: a worker process ended abruptly \\(killed, or out of memory\\?"
                                          "\\); nothing was written; rerun the step"):
        prepare(params)
    assert not store_path(params).exists()
    monkeypatch.undo()
    prepare(params)
    assert (store_path(params) / "manifest.json").read_bytes() == reference


def test_an_interrupted_store_write_leaves_no_store_and_resumes(tmp_path, base_params, pristine_corpus, reference,
                                                                monkeypatch):
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


def test_an_interrupted_training_leaves_no_results(tiny_store, tiny_params, tmp_path, monkeypatch):
    params = tiny_params(tiny_store, epochs=1, folds=[0, 1])
    out, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    real = train_module.train_stage

    def interrupted(model, stage, optim, weight_decay, data, generator, device, desc, *args):
        if "fold 1" in desc:  # Ctrl-C in the second fold
            raise KeyboardInterrupt
        return real(model, stage, optim, weight_decay, data, generator, device, desc, *args)

    monkeypatch.setattr(train_module, "train_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_method("utt_fusion", params, out, checkpoints)
    assert not any((out / name).exists() for name in RESULT_FILES)
    assert checkpoint_path(checkpoints, 0, 0, None).is_file()  # fold 0 finished: its own, complete checkpoint
    assert not checkpoint_path(checkpoints, 1, 0, None).exists()
    monkeypatch.undo()
    summary = run_method("utt_fusion", params, out, checkpoints)
    assert summary["folds"] == [0, 1] and all((out / name).is_file() for name in RESULT_FILES)
