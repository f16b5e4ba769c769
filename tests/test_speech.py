"""Real speech (issue 18): openSMILE functionals, the `functionals_svm` baseline, per-speaker normalisation,
augmentation, the LSTM encoder's options, folds whose test speaker lacks a class, audio-only preparation of a corpus
whose video is absent, corruptions extracted only when the robustness grid asks, console-only progress bars, and a short
run on the real EmoDB recordings in `$MER_SHARED/data/emodb-dev` (default `<project>/../shared`)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import CTX, make_batch
from helpers import resolved_run, run_method
from media import speech_like
from sklearn.svm import LinearSVC
from tiny import make_tiny_params

from mer_core import console
from mer_core.augment import augment_batch, resample_time
from mer_core.config import ConfigError, load_params, resolve_runs, stage_params
from mer_core.convergence import convergence_table
from mer_core.data.batches import Batch, load_fold
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.features import FUNCTIONAL_SETS, wave_functionals
from mer_core.data.folds import LeaveOneGroupOut, check_classes, draw_folds
from mer_core.data.prepare import missing_classes_entry, prepare
from mer_core.data.store import Sequences, StoreError, functionals_file, read_store, standardise_by_speaker, write_store
from mer_core.embedding import run_embedding
from mer_core.explore import Explorer
from mer_core.layers import AttentionPooling, LSTMEncoder
from mer_core.methods.baselines import Encoding, UttFusion
from mer_core.methods.classical import LinearSVM, fit_svm, svm_inputs
from mer_core.methods.lookup import method_spec
from mer_core.metrics import classification_metrics
from mer_core.params.evaluation import Embedding
from mer_core.params.methods import CATALOG
from mer_core.robustness import robustness_grid
from mer_core.train import fit_run, fit_unit, train_run

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MER_SHARED", ROOT.parent / "shared"))
EMODB_DEV = SHARED / "data" / "emodb-dev"
SVM = {"method": "functionals_svm", "feature_set": "eGeMAPSv02", "C": [0.001, 0.01, 0.1], "max_iter": 5000}
FIT = {"C": [0.001, 0.01, 0.1], "class_weight": "none", "max_iter": 5000}  # the fitted stage's block
CPU = torch.device("cpu")


# ================================================================================================ functionals


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_SETS))
def test_functionals_have_the_set_dimension_and_follow_the_signal(name):
    wave = speech_like(1.5, 16000)
    values = wave_functionals(wave, name, "generated.wav")
    assert values.shape == (FUNCTIONAL_SETS[name],) and values.dtype == np.float32
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values, wave_functionals(wave, name, "generated.wav"))  # deterministic
    assert not np.allclose(values, wave_functionals(wave * 2.0, name, "generated.wav"))  # loudness moves them


def test_unknown_functionals_set_names_the_key():
    with pytest.raises(ConfigError, match=r"functionals: got 'IS09'; allowed values: ComParE_2016, eGeMAPSv02"):
        wave_functionals(speech_like(1.0, 16000), "IS09", "x.wav")
    with pytest.raises(ConfigError, match=r"methods\.a\.audio_input: got 'IS09'"):
        load_params(ROOT / "params.yaml", {"methods.a": {"method": "audio_only", "audio_input": "IS09"}})
    with pytest.raises(ConfigError, match=r"methods\.svm\.feature_set: got 'IS09'"):
        load_params(ROOT / "params.yaml", {"methods.svm": {"method": "functionals_svm", "feature_set": "IS09"}})


# ================================================================================================ params


def test_the_functionals_prepare_extracts_follow_the_runs():
    """Adding a run that reads a set is the one change that has prepare extract it: prepare.json lists the sets of
    the runs to train, of both studies (they share the store), and of no skipped run."""

    def prepare_sets(overrides: dict) -> list[str]:
        params = load_params(ROOT / "params.yaml", overrides)
        return stage_params(params, resolve_runs(params))["prepare.json"]["functionals"]

    assert prepare_sets({}) == []
    assert prepare_sets({"methods.svm": {"method": "functionals_svm"}}) == ["ComParE_2016"]
    assert prepare_sets(
        {
            "methods.svm": {"method": "functionals_svm"},
            "extended.runs.net": {"base": "audio_only", "set": {"audio_input": "eGeMAPSv02"}},
        }
    ) == ["ComParE_2016", "eGeMAPSv02"]
    assert prepare_sets({"methods.svm": {"method": "functionals_svm"}, "train.runs": ["mmin"]}) == []
    runs = resolve_runs(
        load_params(ROOT / "params.yaml", {"methods.svm": {"method": "functionals_svm"}, "data.corpus": "iemocap_mmin"})
    )
    assert runs["svm"]["status"] == "skip" and "feature package" in runs["svm"]["reason"]
    runs = resolve_runs(
        load_params(
            ROOT / "params.yaml",
            {
                "methods.svm": {"method": "functionals_svm"},
                "task": "regression",
                "extended.other_task.task": "classification",
            },
        )
    )
    assert runs["svm"]["status"] == "skip" and "classification only" in runs["svm"]["reason"]


def test_options_are_typed_keys_of_every_lstm_method():
    params = load_params(
        ROOT / "params.yaml",
        {
            "methods.net": {
                "method": "mmin",
                "encoder": {"audio": {"pooling": "stats", "conv": 3}},
                "augment": {"audio": {"noise": 0.2}},
                "audio_input": "eGeMAPSv02",
            },
            "train.normalisation": "speaker",
        },
    )
    runs = resolve_runs(params)
    entry = runs["net"]["entry"]
    assert entry["encoder"]["audio"] == {"pooling": "stats", "layers": 1, "bidirectional": False, "conv": 3}
    assert entry["encoder"]["visual"]["pooling"] == "max" and entry["augment"]["visual"]["noise"] == 0.0
    assert runs["net"]["functionals"] == "eGeMAPSv02" and runs["mmin"]["functionals"] is None
    assert stage_params(params, runs)["runs/net.json"]["train"]["normalisation"] == "speaker"  # changes results
    for name, info in CATALOG.items():
        fields = set(info.params.model_fields)
        assert ({"encoder", "augment", "audio_input"} <= fields) == (
            info.module in ("mer_core.methods.baselines", "mer_core.methods.mmin", "mer_core.methods.nmer")
        ), name
    with pytest.raises(ConfigError, match=r"methods\.a\.encoder\.audio\.pooling: got 'sum'"):
        load_params(
            ROOT / "params.yaml", {"methods.a": {"method": "audio_only", "encoder": {"audio": {"pooling": "sum"}}}}
        )
    with pytest.raises(ConfigError, match=r"methods\.a\.augment\.audio\.speed: \[low, high\] with low <= high"):
        load_params(
            ROOT / "params.yaml", {"methods.a": {"method": "audio_only", "augment": {"audio": {"speed": [1.2, 0.9]}}}}
        )
    with pytest.raises(ConfigError, match=r"methods\.e\.encoder: early_fusion encodes the concatenated frames"):
        load_params(
            ROOT / "params.yaml", {"methods.e": {"method": "early_fusion", "encoder": {"audio": {"pooling": "mean"}}}}
        )
    with pytest.raises(ConfigError, match=r"train\.normalisation: got 'global'"):
        load_params(ROOT / "params.yaml", {"train.normalisation": "global"})


# ================================================================================================ stores


def functionals_store(
    root: Path,
    n_speakers: int = 5,
    per_class: int = 6,
    dim: int = 12,
    seed: int = 0,
    lacking: dict[str, str] | None = None,
):
    """A store of 3 classes whose audio frames are random and whose eGeMAPSv02 functionals are class-dependent
    vectors with a per-speaker offset, leave-one-speaker-out folds with one validation speaker. `lacking`:
    {speaker: class} clips left out."""
    rng = np.random.default_rng(seed)
    classes = ["anger", "neutral", "sad"]
    centres = rng.normal(0, 1.0, (len(classes), dim))
    rows, frames, vectors = [], [], []
    for s in range(n_speakers):
        speaker = f"{s + 1:02d}"
        offset = rng.normal(0, 2.0, dim)  # a speaker's own offset: what per-speaker normalisation removes
        for k, label in enumerate(classes):
            if (lacking or {}).get(speaker) == label:
                continue
            for j in range(per_class):
                rows.append(
                    {"clip_id": f"{speaker}_{label}_{j}", "speaker": speaker, "label": label, "has_audio": True}
                )
                frames.append(rng.normal(0, 1, (int(rng.integers(3, 9)), 4)).astype(np.float32))
                vectors.append((centres[k] + offset + rng.normal(0, 0.8, dim)).astype(np.float32)[None])
    meta = pd.DataFrame(rows)
    splits = draw_folds(
        meta,
        {"protocol": "standard", "n_val_speakers": 1, "seed": 0},
        "tiny",
        LeaveOneGroupOut("speaker", "speakers", "test"),
    )
    ids = list(meta["clip_id"])
    sequences = {"audio": Sequences.from_list(ids, frames, [np.ones(len(f), bool) for f in frames], 4)}
    functionals = {
        functionals_file("eGeMAPSv02"): Sequences.from_list(ids, vectors, [np.ones(1, bool)] * len(ids), dim)
    }
    manifest = {
        "corpus": "emodb",
        "modalities": ["audio"],
        "classes": classes,
        "dims": {"audio": 4},
        "frame_rates": {"audio": 100.0},
        "functionals": {"eGeMAPSv02": dim},
        "corruptions": [],
        "missing_classes": missing_classes_entry(check_classes(meta, splits)),
    }  # as prepare records them
    write_store(root, meta, splits, sequences, manifest, functionals=functionals)
    return read_store(root)


def test_a_view_replaces_the_audio_frames_by_the_functionals(tmp_path):
    store = functionals_store(tmp_path / "store")
    view = store.view("eGeMAPSv02")
    assert view.sequences["audio"].lengths.tolist() == [1] * len(store.meta)
    assert view.manifest["dims"]["audio"] == 12 and view.manifest["frame_rates"]["audio"] is None
    assert store.sequences["audio"].dim == 4 and store.manifest["dims"]["audio"] == 4  # the store is unchanged
    with pytest.raises(StoreError, match=r"no ComParE_2016 functionals \(it has: eGeMAPSv02\)"):
        store.view("ComParE_2016")


def test_the_store_refuses_functionals_that_the_manifest_does_not_list(tmp_path):
    store = functionals_store(tmp_path / "store")
    seq = store.functionals("eGeMAPSv02")
    manifest = {k: v for k, v in store.manifest.items() if k != "files"}
    with pytest.raises(StoreError, match="functionals: the manifest lists"):
        write_store(
            tmp_path / "other",
            store.meta,
            store.splits,
            store.sequences,
            manifest,
            functionals={functionals_file("ComParE_2016"): seq},
        )
    assert not (tmp_path / "other").exists()


# ================================================================================================ speaker normalisation


def test_speaker_standardisation_invariants():
    rng = np.random.default_rng(1)
    speakers = np.array(["a", "a", "b", "b", "b"])
    frames = [
        rng.normal(3.0 if s == "a" else -2.0, 2.0 if s == "a" else 0.5, (n, 3)).astype(np.float32)
        for s, n in zip(speakers, (4, 6, 5, 3, 7))
    ]
    valid = [np.ones(len(f), bool) for f in frames]
    valid[0][1] = False
    frames[0][1] = 99.0  # an invalid frame: ignored by the statistics, left as it is
    seq = Sequences.from_list(list("vwxyz"), frames, valid, 3)
    out = standardise_by_speaker(seq, speakers)
    speaker_of_frame = np.repeat(speakers, seq.lengths)
    for s in ("a", "b"):
        rows = (speaker_of_frame == s) & seq.valid
        np.testing.assert_allclose(out.data[rows].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(out.data[rows].std(0), 1.0, atol=1e-5)
    assert out.data[1, 0] == 99.0
    # invariant to an affine change of one speaker's recordings (gain, offset), and blind to the other speakers
    changed = Sequences(seq.data.copy(), seq.offsets, seq.valid, seq.clip_ids)
    b_rows = speaker_of_frame == "b"
    changed.data[b_rows] = changed.data[b_rows] * 4.0 + 7.0
    again = standardise_by_speaker(changed, speakers)
    np.testing.assert_allclose(again.data[b_rows], out.data[b_rows], atol=1e-5)
    np.testing.assert_array_equal(again.data[~b_rows], out.data[~b_rows])
    np.testing.assert_array_equal(seq.data[1], frames[0][1])  # the input is not modified


def test_speaker_normalisation_reaches_the_fold_splits(tmp_path):
    store = functionals_store(tmp_path / "store")
    test = load_fold(store.view("eGeMAPSv02", "speaker"), 0)["test"].x["audio"][:, 0]
    # the test speaker's vectors were standardised with its own statistics, then with the training statistics
    # (about 0 and 1 after the first step): its mean is near 0 whatever its offset
    assert test.mean(0).abs().max() < 0.3
    raw = load_fold(store.view("eGeMAPSv02", "fold"), 0)["test"].x["audio"][:, 0]
    assert raw.mean(0).abs().max() > 0.5  # the speaker offset that per-speaker normalisation removes


# ================================================================================================ the SVM baseline


def test_the_svm_is_a_fitted_audio_method_for_classification():
    spec = method_spec("functionals_svm")
    assert spec.needs == ("audio",) and spec.info.tasks == ("classification",) and spec.joint is None
    assert spec.info.functionals({"feature_set": "eGeMAPSv02"}) == "eGeMAPSv02"
    stage = spec.stages[0]
    assert stage.fit is fit_svm and stage.grid == "C" and stage.batch_size(SVM) == 256
    entry = resolve_runs(load_params(ROOT / "params.yaml", {"methods.svm": SVM}))["svm"]["entry"]
    assert entry == {"feature_set": "eGeMAPSv02", "C": [0.001, 0.01, 0.1], "class_weight": "none", "max_iter": 5000}


def svm_data(tmp_path: Path, fold: int = 0):
    return load_fold(functionals_store(tmp_path / "store").view("eGeMAPSv02"), fold)


def test_the_svm_fits_predicts_and_gives_probabilities(tmp_path):
    data = svm_data(tmp_path)
    task = data["train"].task
    model = LinearSVM(12, task.n_outputs)
    result = fit_svm(model, data, FIT)
    assert list(result.history["C"]) == SVM["C"] and list(result.history["epoch"]) == [1, 2, 3]
    assert result.history["solver_converged"].all() and set(result.history["stopped"]) == {"grid"}
    x, y = svm_inputs(data["train"])
    reference = LinearSVC(C=SVM["C"][result.best_epoch - 1], max_iter=5000, random_state=0, dual=True).fit(x, y)
    x_test, _ = svm_inputs(data["test"])
    batch = Batch(
        ("audio",),
        {"audio": data["test"].x["audio"]},
        {"audio": data["test"].lengths["audio"]},
        data["test"].has,
        data["test"].y,
        torch.arange(len(x_test)),
    )
    with torch.no_grad():
        logits = model(batch)
    np.testing.assert_allclose(logits.numpy(), reference.decision_function(x_test), rtol=1e-4, atol=1e-4)
    assert (logits.argmax(1).numpy() == reference.predict(x_test)).all()
    torch.testing.assert_close(logits.softmax(-1).sum(1), torch.ones(len(logits)))
    # class-dependent vectors: far above chance (3 classes) on the unseen speaker
    assert classification_metrics(data["test"].y.numpy(), logits.argmax(1).numpy(), 3)["ua"] > 0.6


def test_the_svm_selects_c_on_validation_and_never_reads_the_test_split(tmp_path):
    data = svm_data(tmp_path, fold=1)
    entry = FIT | {"C": [1e-6, 1e-4, 0.01, 1.0]}
    result = fit_svm(LinearSVM(12, 3), data, entry)
    x, y = svm_inputs(data["train"])
    x_val, y_val = svm_inputs(data["val"])
    scores = [
        classification_metrics(
            y_val, LinearSVC(C=c, max_iter=5000, random_state=0, dual=True).fit(x, y).predict(x_val), 3
        )["ua"]
        for c in entry["C"]
    ]
    np.testing.assert_allclose(result.history["val_ua"], scores)
    assert result.best_epoch == int(np.argmax(scores)) + 1  # the first best, in the order listed
    scrambled = dict(data, test=dataclasses.replace(data["test"], y=data["test"].y.flip(0)))
    again = fit_svm(LinearSVM(12, 3), scrambled, entry)
    assert again.best_epoch == result.best_epoch
    pd.testing.assert_frame_equal(again.history, result.history)


def test_the_svm_sees_the_training_mean_without_audio(tmp_path):
    model = LinearSVM(12, 3)
    fit_svm(model, svm_data(tmp_path), FIT)
    zeros = Batch(
        ("audio",),
        {"audio": torch.zeros(2, 1, 12)},
        {"audio": torch.zeros(2, dtype=torch.long)},
        torch.zeros(2, 1, dtype=torch.bool),
        torch.zeros(2, dtype=torch.long),
        torch.arange(2),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(zeros), model.intercept.expand(2, -1))  # the decision at the training mean


def speech_params(store, methods: dict, **train) -> dict:
    """Tiny params on `store` (an audio-only EmoDB-like store) with only `methods` trained, no feature noise."""
    return make_tiny_params(
        store,
        methods=methods,
        sections={"robustness": {"noise_types": [], "signal": False}},
        runs=list(methods),
        **train,
    )


def test_the_svm_runs_through_the_study_grid(tmp_path):
    store = functionals_store(tmp_path / "features" / "emodb", lacking={"03": "sad"})
    params = speech_params(store, {"svm": SVM}, folds=[2, 3])
    summary = run_method("svm", params, tmp_path / "results", tmp_path / "ckpt")
    assert summary["status"] == "trained" and summary["test_missing_classes"] == {"2": ["sad"]}  # 03 has no sad
    predictions = pd.read_csv(tmp_path / "results" / "predictions.csv")
    probabilities = predictions[["p_anger", "p_neutral", "p_sad"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=2e-4)
    assert (predictions["pred"] == np.array(["anger", "neutral", "sad"])[probabilities.argmax(1)]).all()
    fold2 = predictions[predictions.fold == 2]
    recall = [(fold2[fold2.label == c].pred == c).mean() for c in ("anger", "neutral")]
    per_fold = pd.read_csv(tmp_path / "results" / "per_condition.csv")
    ua = per_fold[(per_fold.fold == 2) & (per_fold.condition == "a")]["ua"].item()
    assert ua == pytest.approx(np.mean(recall), abs=1e-5)  # UA over the two classes the test speaker has
    history = pd.read_csv(tmp_path / "results" / "history.csv")
    assert set(history["C"]) == set(SVM["C"]) and set(history["stopped"]) == {"grid"}
    table = convergence_table(history.assign(method="svm"), {"svm": {"fit": 3}}, params["train"]["stopping"])
    assert table["converged"].all() and set(table["stopped"]) == {"grid"}
    params = speech_params(store, {"svm": SVM | {"feature_set": "ComParE_2016"}}, folds=[2])
    with pytest.raises(
        ConfigError,
        match=r"run svm: reads the ComParE_2016 functionals, which the feature store .* "
        r"lacks \(it has: eGeMAPSv02\)",
    ):
        run_method("svm", params, tmp_path / "r2", tmp_path / "c2")


def test_a_fitted_run_computes_one_seed_and_copies_it_for_the_others(tmp_path):
    """The SVM draws nothing from the seed: the units of seeds 1 and 2 are those of seed 0 (what fitting them would
    give), with their own seed in every table and checkpoint."""
    store = functionals_store(tmp_path / "features" / "emodb")
    params = speech_params(store, {"svm": SVM}, folds=[1], seeds=[0, 1, 2])
    run = resolved_run("svm", params)
    summary = train_run(run, tmp_path / "results", tmp_path / "ckpt")
    assert summary["units"] == 3 and summary["seeds"] == [0, 1, 2] and summary["conditions"]["a"]["ua_std"] == 0.0
    predictions = pd.read_csv(tmp_path / "results" / "predictions.csv")
    fitted = fit_unit(run, 1, 2)  # what the unit of seed 2 gives when it is fitted
    expected = fitted.predictions.drop(columns="row").reset_index(drop=True)
    mine = predictions[predictions.seed == 2].reset_index(drop=True)
    np.testing.assert_allclose(
        mine[[f"p_{c}" for c in store.classes]].to_numpy(), expected[[f"p{k}" for k in range(3)]].to_numpy(), atol=1e-4
    )
    checkpoint = torch.load(tmp_path / "ckpt" / "fold1-seed2.pt", weights_only=False)
    assert checkpoint["seed"] == 2 and sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "fold1-seed0.pt",
        "fold1-seed1.pt",
        "fold1-seed2.pt",
    ]
    reference = torch.load(io.BytesIO(fitted.checkpoints["fold1-seed2.pt"]), weights_only=False)
    torch.testing.assert_close(checkpoint["state_dict"], reference["state_dict"])


def test_a_one_modality_store_has_no_feature_noise_cells(tmp_path):
    store = functionals_store(tmp_path / "store")
    data = load_fold(store.view("eGeMAPSv02"), 0)
    model = LinearSVM(12, 3)
    fit_svm(model, data, FIT)
    cfg = {
        "noise_types": ["gaussian"],
        "intensities": [20],
        "schedule": "scaled_linear",
        "beta_start": 0.01,
        "beta_end": 0.5,
        "impulse_density": 0.3,
        "per_sample": True,
        "batch_size": 8,
        "seed": 0,
        "signal": True,
    }
    assert robustness_grid(model, store.view("eGeMAPSv02"), data["test"], cfg, 0, CPU).empty


# ================================================================================================ folds, metrics


def test_leave_one_speaker_out_with_a_speaker_lacking_a_class():
    rows = [
        {"speaker": s, "label": c}
        for s in ("03", "08", "09", "10")
        for c in ("anger", "disgust", "sad")
        for _ in range(2)
        if not (s == "08" and c == "disgust")
    ]
    meta = pd.DataFrame(rows)
    splits = draw_folds(
        meta, {"protocol": "standard", "n_val_speakers": 1, "seed": 0}, "emodb", CORPORA["emodb"].protocol
    )
    assert sorted(splits[splits.role == "test"].speaker) == ["03", "08", "09", "10"]
    missing = check_classes(meta, splits)
    test_of = {int(f): s for f, s in splits[splits.role == "test"][["fold", "speaker"]].to_numpy()}
    fold_08 = next(f for f, s in test_of.items() if s == "08")
    assert missing[fold_08]["test"] == ["disgust"]
    assert all("train" not in roles for roles in missing.values())


def test_ua_averages_the_classes_present():
    y_true = np.array([0, 0, 1, 1, 1, 3])  # class 2 absent from the test speaker
    y_pred = np.array([0, 2, 1, 1, 0, 3])
    metrics = classification_metrics(y_true, y_pred, 4)
    assert metrics["ua"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert metrics["wa"] == pytest.approx(4 / 6)


# ================================================================================================ encoder, augmentation


@pytest.mark.parametrize(
    "options",
    [
        {"summary": "attention"},
        {"summary": "mean"},
        {"summary": "stats", "conv": 3},
        {"summary": "attention", "bidirectional": True, "layers": 2},
        {"summary": "max", "bidirectional": True},
    ],
)
def test_pooling_ignores_padding_and_batch_neighbours(options):
    torch.manual_seed(0)
    encoder = LSTMEncoder(5, 8, **options).eval()
    x = torch.randn(4, 10, 5)
    x[3] = 0.0  # a zero-filled clip (a removed modality): encoded once for all such clips
    lengths = torch.tensor([10, 4, 7, 6])
    out = encoder(x, lengths)
    assert out.shape == (4, 8)
    garbage = x.clone()
    garbage[1, 4:] = 50.0  # whatever lies beyond a clip's length
    torch.testing.assert_close(encoder(garbage, lengths), out)
    for k in (1, 3):  # each clip alone, without padding
        torch.testing.assert_close(
            encoder(x[k : k + 1, : int(lengths[k])], lengths[k : k + 1]), out[k : k + 1], atol=1e-5, rtol=1e-5
        )


def test_attention_weights_sum_to_one_over_valid_frames():
    pooling = AttentionPooling(4)
    x = torch.randn(3, 6, 4)
    lengths = torch.tensor([6, 2, 0])
    weights = pooling.weights(x, lengths)
    torch.testing.assert_close(weights[:2].sum(1), torch.ones(2))
    assert (weights[1, 2:] == 0).all() and (weights[2] == 0).all()
    assert (pooling(x, lengths)[2] == 0).all()  # a clip without frames: a zero embedding


def test_stats_pooling_is_the_projected_mean_and_deviation_with_gradients():
    torch.manual_seed(0)
    encoder = LSTMEncoder(3, 4, summary="stats")
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    outputs = encoder.outputs(x, lengths)
    valid = outputs[1, :3]
    expected = encoder.stats(torch.cat([valid.mean(0), valid.std(0, unbiased=False)]))
    torch.testing.assert_close(encoder(x, lengths)[1], expected)
    encoder(x, lengths).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


def test_encoder_options_reach_each_modality_of_the_lstm_methods():
    entry = resolve_runs(
        load_params(
            ROOT / "params.yaml",
            {
                "methods.u": {
                    "method": "utt_fusion",
                    "hidden": 8,
                    "encoder": {"audio": {"pooling": "attention", "layers": 2}},
                }
            },
        )
    )["u"]
    entry = entry["entry"]
    model = UttFusion(CTX.modalities, CTX, 8, [8], 0.1, Encoding.from_entry(entry))
    audio, visual = model.encoders["audio"], model.encoders["visual"]
    assert audio.summary == "attention" and audio.lstm.num_layers == 2 and visual.summary == "max"
    for method in ("mmin", "nmer"):
        built = (
            method_spec(method)
            .stages[0]
            .build(
                resolve_runs(load_params(ROOT / "params.yaml", {f"methods.{method}.encoder.audio.pooling": "mean"}))[
                    method
                ]["entry"],
                CTX,
                None,
            )
        )
        assert {m.summary for m in built.modules() if isinstance(m, LSTMEncoder)} == {"mean", "max"}, method


AUGMENT = {
    "audio": {"speed": [0.8, 1.25], "time_masks": 2, "time_mask": 0.3, "freq_masks": 1, "freq_mask": 0.4, "noise": 0.1},
    "visual": {"speed": [1.0, 1.0], "time_masks": 0, "time_mask": 0.0, "freq_masks": 0, "freq_mask": 0.0, "noise": 0.0},
}


def test_augmentation_is_seeded_and_spares_absent_clips_and_padding():
    batch = make_batch(n=6)
    batch = batch.replace(present=batch.present.clone())
    batch.present[2, 0] = False  # clip 2 has no audio
    batch.x["audio"][2] = 0.0
    first = augment_batch(batch, AUGMENT, torch.Generator().manual_seed(3))
    second = augment_batch(batch, AUGMENT, torch.Generator().manual_seed(3))
    other = augment_batch(batch, AUGMENT, torch.Generator().manual_seed(4))
    torch.testing.assert_close(first.x["audio"], second.x["audio"])
    assert not torch.equal(first.x["audio"][:, :3], other.x["audio"][:, :3])
    assert (first.x["audio"][2] == 0).all() and first.lengths["audio"][2] == batch.lengths["audio"][2]
    assert first.x["visual"] is batch.x["visual"]  # nothing asked for the face
    assert first.lengths["audio"].tolist() != batch.lengths["audio"].tolist()  # speed changed some lengths
    for k in range(6):  # padding stays zero
        assert (first.x["audio"][k, int(first.lengths["audio"][k]) :] == 0).all()
    assert augment_batch(batch, {"audio": AUGMENT["visual"]}, torch.Generator()) is batch  # all off: untouched


def test_speed_resampling_interpolates_in_time():
    x = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)
    torch.testing.assert_close(resample_time(x, 10, 2.0)[:, 0], torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0]))
    torch.testing.assert_close(resample_time(x, 4, 0.5)[:, 0], torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]))


def test_augmentation_changes_training_only_when_asked(tiny_store, tiny_params, tmp_path):
    plain = tiny_params(tiny_store, epochs=1)
    augmented = tiny_params(tiny_store, epochs=1, methods={"audio_only": {"augment": {"audio": {"noise": 0.5}}}})
    histories = []
    for k, params in enumerate((plain, plain, augmented)):
        output = fit_run(resolved_run("audio_only", params), 0, 0, tmp_path / f"c{k}", show_progress=False)
        histories.append(output.history["train_loss"].to_numpy())
    np.testing.assert_array_equal(histories[0], histories[1])
    assert not np.allclose(histories[0], histories[2])


# ================================================================================================ functionals as input


def test_any_lstm_run_reads_functionals_as_its_audio_and_the_embedding_follows(tmp_path):
    store = functionals_store(tmp_path / "features" / "emodb")
    net = {"method": "audio_only", "audio_input": "eGeMAPSv02", "encoder": {"audio": {"pooling": "stats"}}}
    params = speech_params(store, {"net": net}, normalisation="speaker")
    summary = run_method("net", params, tmp_path / "results", tmp_path / "ckpt")
    checkpoint = torch.load(tmp_path / "ckpt" / "fold0-seed0.pt", weights_only=False)
    assert checkpoint["context"]["dims"]["audio"] == 12 and summary["units"] == 1  # the functionals' width
    assert checkpoint["inputs"] == {
        "audio_input": "eGeMAPSv02",
        "normalisation": "speaker",
        "normalise": "all",
        "batching": "bucketed",
    }
    table = run_embedding(Embedding(projection="pca", fold=0, seed=0).model_dump(), "net", store, tmp_path / "ckpt")
    assert len(table) == len(store.fold_indices(0)["test"]) and set(table["condition"]) == {"a"}


def test_the_explorer_feeds_each_run_as_it_was_trained(tmp_path):
    """A run that reads functionals with per-speaker normalisation is explored on its own view of the store (the SVM
    and the network each get their inputs), not on the audio frames."""
    store = functionals_store(tmp_path / "features" / "emodb")
    net = {"method": "audio_only", "audio_input": "eGeMAPSv02", "hidden": 8}
    params = speech_params(store, {"svm": SVM, "net": net}, normalisation="speaker")
    for run in ("svm", "net"):
        run_method(run, params, tmp_path / "results" / run, tmp_path / "checkpoints" / run)
    params["explore"].update(run="net", emotion="anger", condition="a", noise="gaussian", level=20, draws=2)
    explorer = Explorer.open(
        stage_params(params, resolve_runs(params))["explore.json"], checkpoints=tmp_path / "checkpoints"
    )
    view = explorer.view(explorer.selection())
    assert view["scores"].shape == (2, 3) and np.isfinite(view["scores"].to_numpy()).all()
    fed, test = explorer.run_data("svm")
    assert fed.by_speaker and fed.audio_input == "eGeMAPSv02" and test.x["audio"].shape[1:] == (1, 12)
    scores = explorer.view({**explorer.selection(), "run": "svm"})["scores"].to_numpy()
    assert scores.shape == (2, 3) and np.allclose(scores[0], scores[1])  # nothing removed, so nothing noised


# ================================================================================================ prepare


@pytest.fixture(scope="module")
def base_params(tmp_path_factory) -> dict:
    from mer_core.data.synthetic import generate_corpus

    params = load_params(ROOT / "params.yaml")
    params["data"]["synthetic"].update(n_actors=4, sentences=["DFA", "ITS"])
    params["features"]["corruptions"].update(audio_noises=["white"], audio_snr_db=[10.0], visual_dropout=[0.5])
    params["folds"].update(n_folds=2, n_val_speakers=1)
    root = tmp_path_factory.mktemp("corpus") / "builtin"
    generate_corpus(root, params["data"]["synthetic"])
    params["data"]["root"] = str(root)
    return params


def fresh(params: dict, tmp_path: Path, drop: tuple[str, ...] = ()) -> dict:
    """`params` on a copy of the tiny corpus without the folders `drop`, read as CREMA-D, with a store under
    tmp_path."""
    root = tmp_path / "raw"
    shutil.copytree(params["data"]["root"], root)
    for folder in drop:
        shutil.rmtree(root / folder)
    params = copy.deepcopy(params)
    params["data"].update(
        root=str(root), corpus="crema_d", features_dir=str(tmp_path / "features"), cache_dir=str(tmp_path / "cache")
    )
    return params


def test_a_corpus_without_video_prepares_audio_only_with_one_line(base_params, tmp_path, capsys):
    params = fresh(base_params, tmp_path, drop=("OpenFace",))
    store = prepare(params)
    lines = [line for line in capsys.readouterr().err.splitlines() if "visual" in line]
    root = params["data"]["root"]
    assert lines == [
        f"crema_d: visual: not found for any of the 48 clips (looked for {root}/OpenFace/<clip>.csv or "
        f"{root}/VideoFlash/<clip>.flv); the store holds audio only, and the runs that need visual are "
        "skipped"
    ]
    assert store.modalities == ("audio",) and "has_visual" not in store.meta
    assert set(store.manifest["frame_rates"]) == set(store.manifest["dims"]) == {"audio"}
    assert [c["modality"] for c in store.corruptions] == ["audio"]
    assert store.manifest["notes"][-1] == lines[0] and not (store.root / "skipped.csv").exists()


def test_partly_missing_video_is_counted(base_params, tmp_path, capsys):
    params = fresh(base_params, tmp_path)
    for csv in sorted((Path(params["data"]["root"]) / "OpenFace").glob("1001_*.csv")):
        csv.unlink()
    store = prepare(params)
    assert "crema_d: visual: 36 of 48 clips have a file, 12 have none" in capsys.readouterr().err
    assert store.modalities == ("audio", "visual") and int((~store.meta["has_visual"]).sum()) == 12


def test_corruptions_and_functionals_only_when_asked(base_params, tmp_path):
    params = fresh(base_params, tmp_path)
    params["robustness"]["signal"] = False
    store = prepare(params)
    assert store.corruptions == [] and not (store.root / "corruptions").exists()
    assert store.manifest["functionals"] == {} and not (store.root / "functionals").exists()
    params["robustness"]["signal"] = True
    params["functionals"] = ["eGeMAPSv02"]  # as the params stage writes it into prepare.json
    store = prepare(params)
    assert [c["name"] for c in store.corruptions] == ["audio_white_10db", "visual_dropout_50"]
    clean, noisy = store.functionals("eGeMAPSv02"), store.functionals("eGeMAPSv02", "audio_white_10db")
    assert clean.dim == noisy.dim == 88 and clean.lengths.tolist() == [1] * len(store.meta)
    assert not np.allclose(clean.data, noisy.data)
    _, view = store.view("eGeMAPSv02").corruption("audio_white_10db")
    np.testing.assert_array_equal(view.data, noisy.data)  # the SVM's view reads the noisy audio's functionals


# ================================================================================================ console


def test_progress_bars_go_to_the_console_not_to_stdout(capsys):
    assert list(console.progress(range(3), desc="work", mininterval=0)) == [0, 1, 2]
    captured = capsys.readouterr()
    assert "work" not in captured.out and "work" in captured.err
    assert console.console() is sys.stderr and not console.in_kernel()


def test_in_a_kernel_bars_reach_the_console_descriptor_and_messages_both(monkeypatch, tmp_path):
    """A kernel's stderr (recorded into the notebook) keeps a copy of the console's descriptor (its fileno): bars go
    there only, messages to both."""
    terminal = open(tmp_path / "terminal", "w+")

    class KernelStream(io.StringIO):  # what ipykernel's OutStream looks like from here
        def fileno(self):
            return terminal.fileno()

    KernelStream.__module__ = "ipykernel.iostream"
    notebook = KernelStream()
    monkeypatch.setattr(sys, "stderr", notebook)
    assert console.in_kernel() and console.console_descriptor() == terminal.fileno()
    bar = console.progress(range(2), desc="extracting", mininterval=0)
    list(bar)
    console.tell("crema_d: visual: not found")
    terminal.seek(0)
    seen = terminal.read()
    assert "extracting" in seen and "crema_d: visual: not found" in seen
    assert notebook.getvalue() == "crema_d: visual: not found\n"  # the notebook keeps the message, not the bar
    terminal.close()


# ================================================================================================ real EmoDB


@pytest.mark.skipif(
    not (EMODB_DEV / "wav").is_dir(),
    reason=f"the real EmoDB development recordings are absent ({EMODB_DEV}; set MER_SHARED to the "
    "folder that holds data/emodb-dev)",
)
def test_real_emodb_prepares_and_the_svm_beats_chance(tmp_path):
    root = tmp_path / "emodb"
    (root / "wav").mkdir(parents=True)
    for wav in sorted((EMODB_DEV / "wav").glob("*.wav")):
        if wav.name[:2] in ("08", "09", "11", "14"):  # 08 has no disgust clip
            os.symlink(wav, root / "wav" / wav.name)
    params = load_params(
        ROOT / "params.yaml",
        {
            "data.corpus": "emodb",
            "data.root": str(root),
            "data.features_dir": str(tmp_path / "features"),
            "data.cache_dir": str(tmp_path / "cache"),
            "folds.protocol": "standard",
            "folds.n_val_speakers": 1,
            "robustness.signal": False,
            "train.normalisation": "speaker",
            "methods.svm": SVM,
            "train.runs": ["svm"],
        },
    )
    prepared = stage_params(params, resolve_runs(params))["prepare.json"]
    assert prepared["functionals"] == ["eGeMAPSv02"]
    store = prepare(prepared)
    assert store.modalities == ("audio",) and store.manifest["functionals"] == {"eGeMAPSv02": 88}
    assert set(store.manifest["frame_rates"]) == {"audio"}
    tests = store.splits[store.splits.role == "test"]
    fold_08 = next(int(f) for f, s in zip(tests.fold, tests.speaker) if s == "08")
    assert store.missing_classes[fold_08] == {"test": ["disgust"]}
    params["train"].update(folds=[fold_08], seeds=[0])
    summary = run_method("svm", params, tmp_path / "results", tmp_path / "ckpt")
    assert summary["test_missing_classes"] == {str(fold_08): ["disgust"]}
    assert summary["conditions"]["a"]["ua_mean"] > 2 / 6  # twice chance over the six classes speaker 08 has
    assert json.loads((tmp_path / "results" / "metrics.json").read_text())["status"] == "trained"
