"""Reliability: training that goes non-finite, and what a failed run leaves. A NaN or infinite training loss, gradient
norm or model output stops the run at once with an error naming run, fold, seed, stage and epoch, and no result of
that run is left (no metrics.json, no tables, no checkpoint of the failed fold and seed). Runs on the tiny random
store of tests/conftest.py; values are injected into the store behind the readers' backs (as an older or edited
store would hold them), since the prepare step no longer lets one through."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from helpers import resolved_run, run_method
from torch.nn import functional as F

from mer_core.data.store import Sequences, StoreError, write_store
from mer_core.evaluate import NonFiniteError
from mer_core.tasks import Task
from mer_core.train import RESULT_FILES, train_run

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # from the injected values


def inject(store, modality: str, row: int, value: float) -> None:
    """Set the first valid frame of clip `row` of `modality` to `value` in the store's file, and re-hash it in the
    manifest (so that the store still verifies)."""
    path = store.root / f"{modality}.npz"
    seq = store.sequences[modality]
    data = seq.data.copy()
    data[seq.offsets[row] + np.flatnonzero(seq.clip(row)[1])[0]] = value
    np.savez(path, data=data, offsets=seq.offsets, valid=seq.valid, clip_ids=seq.clip_ids)
    manifest = json.loads((store.root / "manifest.json").read_text())
    manifest["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    (store.root / "manifest.json").write_text(json.dumps(manifest))


def fails_leaving_nothing(params_or_run: dict, run: str, tmp_path, pattern: str) -> None:
    """Train `run` (of validated params, or the resolved run itself) and expect `pattern`: no result file (an
    earlier run's removed), no checkpoint folder, no finished unit to resume."""
    out, checkpoints = tmp_path / "results" / run, tmp_path / "checkpoints" / run
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("{}\n")  # an earlier run's results: not this run's
    (out / "predictions.csv").write_text("fold,seed\n")
    resolved = params_or_run if "entry" in params_or_run else resolved_run(run, params_or_run)
    with pytest.raises(NonFiniteError, match=pattern):
        train_run(resolved, out, checkpoints, {"jobs": 1})
    assert not any((out / name).exists() for name in RESULT_FILES)
    assert not checkpoints.exists()
    assert not list((checkpoints.parent / ".resume").glob("*/*.pkl"))


def test_inf_in_a_training_clip_stops_at_the_first_loss(tiny_store, tiny_params, tmp_path):
    inject(tiny_store, "audio", tiny_store.fold_indices(0)["train"][3], np.inf)  # fold 0's statistics become NaN
    fails_leaving_nothing(
        tiny_params(tiny_store, epochs=2),
        "utt_fusion",
        tmp_path,
        "^run utt_fusion, fold 0, seed 0, stage train, epoch 1: the training loss is nan",
    )


def test_nan_in_a_validation_clip_stops_at_the_first_validation(tiny_store, tiny_params, tmp_path):
    inject(tiny_store, "visual", tiny_store.fold_indices(0)["val"][0], np.nan)
    # condition a, the first evaluated: zero-filling multiplies the absent face by 0, and NaN x 0 is NaN
    fails_leaving_nothing(
        tiny_params(tiny_store, epochs=2),
        "late_fusion",
        tmp_path,
        "^run late_fusion, fold 0, seed 0, stage train, epoch 1: validation model outputs under "
        "condition a: NaN or infinite for 1 of 12 clips",
    )


def test_inf_in_a_test_clip_stops_before_any_metric(tiny_store, tiny_params, tmp_path):
    inject(tiny_store, "audio", tiny_store.fold_indices(0)["test"][0], np.inf)
    fails_leaving_nothing(
        tiny_params(tiny_store, epochs=1),
        "utt_fusion",
        tmp_path,
        "^run utt_fusion, fold 0, seed 0, stage train, test: model outputs under condition a: NaN "
        "or infinite for 1 of \\d+ clips",
    )


def test_a_huge_learning_rate_stops_naming_the_stage(tiny_store, tiny_params, tmp_path):
    run = resolved_run("mmin", tiny_params(tiny_store, epochs=2))
    run["entry"]["optim"]["lr"] = 1e30  # stage 2 (the pretrained stage 1 is fine), in a hand-edited resolved run:
    fails_leaving_nothing(
        run,
        "mmin",
        tmp_path,  # params.yaml allows at most 1 (test_bad_params.py)
        "^run mmin, fold 0, seed 0, stage train, epoch 1: the training loss is nan",
    )


def test_a_non_finite_gradient_with_a_finite_loss_stops_the_step(tiny_store, tiny_params, tmp_path, monkeypatch):
    def loss(self, outputs, y):  # finite, but sqrt's derivative at 0 is infinite (fault injection)
        return F.cross_entropy(outputs, y) + torch.sqrt((outputs * 0.0).sum())

    monkeypatch.setattr(Task, "loss", loss)
    fails_leaving_nothing(
        tiny_params(tiny_store, epochs=1),
        "audio_only",
        tmp_path,
        "^run audio_only, fold 0, seed 0, stage train, epoch 1: a gradient norm is not finite \\(\\[nan",
    )


def test_the_store_refuses_non_finite_features(tiny_store, tmp_path):
    seq = tiny_store.sequences["audio"]
    data = seq.data.copy()
    data[seq.offsets[5] + 2, 1] = -np.inf
    root = tmp_path / "features" / "other"
    with pytest.raises(StoreError, match=f"^audio.npz: clip '{seq.clip_ids[5]}', frame 2: non-finite feature values"):
        write_store(
            root,
            tiny_store.meta,
            tiny_store.splits,
            {**tiny_store.sequences, "audio": Sequences(data, seq.offsets, seq.valid, seq.clip_ids)},
            tiny_store.manifest,
        )
    assert not root.exists() and not root.with_name("other.partial").exists()


def test_checkpoints_are_byte_identical_whatever_n_jobs(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=1, folds=[0, 1])
    for jobs in (1, 2):  # two spawned workers unpickle the params: equal data, other objects
        run_method("utt_fusion", params, tmp_path / f"results{jobs}", tmp_path / f"checkpoints{jobs}", jobs=jobs)
    for name in ("fold0-seed0.pt", "fold1-seed0.pt"):
        assert (tmp_path / "checkpoints1" / name).read_bytes() == (tmp_path / "checkpoints2" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "checkpoints2").iterdir()) == ["fold0-seed0.pt", "fold1-seed0.pt"]
