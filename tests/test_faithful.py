"""The switches that restore the official MMIN / IF-MMIN data pipeline (docs/faithfulness.md): which modalities are
normalised, random batches in training and evaluation, the paper preset that implies them, the teacher cache that
must not be used once the encoders pool over padding, and the checkpoint that records how its inputs were read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import resolved_run

from mer_core.conditions import all_conditions, condition_name
from mer_core.config import load_params, resolve_runs
from mer_core.data.batches import load_fold
from mer_core.evaluate import predict
from mer_core.methods.lookup import method_spec
from mer_core.methods.mmin import RowCache
from mer_core.methods.registry import ModelContext
from mer_core.params.methods import CATALOG
from mer_core.schema import ConfigError, check
from mer_core.tasks import study_task
from mer_core.train import fit_unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = {"data.corpus": "iemocap_mmin", "data.root": "/nowhere"}
OPTIM = {"epochs": 1, "epochs_decay": 0, "lr": 0.01, "beta1": 0.9, "grad_clip": 0.5, "batch_size": 16}


def valid_frames(split, modality: str) -> np.ndarray:
    """The frames t < length of every clip of `split` (padding left out)."""
    x, lengths = split.x[modality].numpy(), split.lengths[modality].numpy()
    return x[np.arange(x.shape[1])[None, :] < lengths[:, None]]


def test_only_the_named_modalities_are_normalised(tiny_store):
    fold = load_fold(tiny_store, 0, normalise=["audio"])
    audio = valid_frames(fold["train"], "audio")
    np.testing.assert_allclose(audio.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(audio.std(0), 1.0, atol=1e-3)
    raw = tiny_store.sequences["visual"]
    for j, row in enumerate(fold["train"].rows):  # faces as the store holds them (invalid frames zero)
        frames, valid = raw.clip(row)
        expected = np.where(valid[:, None], frames, 0.0)
        np.testing.assert_array_equal(fold["train"].x["visual"][j, : len(frames)].numpy(), expected)
    everything = load_fold(tiny_store, 0)
    np.testing.assert_allclose(valid_frames(everything["train"], "audio"), audio, atol=1e-6)
    visual = valid_frames(everything["train"], "visual")
    assert np.abs(visual[np.abs(visual).sum(1) > 0].mean(0)).max() < 1e-4  # ours: faces standardised too
    assert np.abs(valid_frames(fold["train"], "visual").mean(0)).max() > 1.0  # the store's faces are not centred


def test_random_batches_are_a_fresh_permutation_every_epoch(tiny_store):
    split = load_fold(tiny_store, 0, batching="random")["train"]
    generator = torch.Generator().manual_seed(0)
    epochs = [[b.rows.tolist() for b in split.batches(16, generator)] for _ in range(2)]
    for batches in epochs:
        assert [len(b) for b in batches] == [16] * (len(split) // 16) + ([len(split) % 16] if len(split) % 16 else [])
        assert sorted(sum(batches, [])) == sorted(split.rows.tolist())
    assert epochs[0] != epochs[1]
    expected = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))  # the loader's order, cut
    assert sum(epochs[0], []) == split.rows[expected.numpy()].tolist()
    bucketed = load_fold(tiny_store, 0)["train"]
    position = {row: k for k, row in enumerate(split.rows)}

    def spread(batches):  # mean range of clip lengths within a batch
        lengths = split.lengths["audio"].numpy()
        return np.mean([np.ptp([lengths[position[r]] for r in b]) for b in batches])

    ours = [b.rows.tolist() for b in bucketed.batches(16, torch.Generator().manual_seed(0))]
    assert spread(epochs[0]) > spread(ours)


class PaddingProbe(torch.nn.Module):
    """A 'model' (constant logits) that records each batch's conditions and padded length."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes, self.seen, self.widths = n_classes, [], []

    def forward(self, batch):
        self.seen.append({tuple(p.tolist()) for p in batch.present})
        self.widths += [batch.x["audio"].shape[1] + batch.x["visual"].shape[1]] * len(batch.y)
        return torch.zeros(len(batch.y), self.n_classes)


def test_random_evaluation_mixes_conditions_in_shuffled_batches(tiny_store):
    task = study_task("classification", tiny_store.manifest)
    test = load_fold(tiny_store, 0, task, batching="random")["test"]
    probe = PaddingProbe(len(task.targets))
    table = predict(probe, test, 8, torch.device("cpu"))
    conditions = [condition_name(c) for c in all_conditions(test.modalities)]
    assert table["condition"].tolist() == [c for c in conditions for _ in range(len(test))]
    assert all(
        sorted(part["row"]) == part["row"].tolist() == sorted(test.rows.tolist())
        for _, part in table.groupby("condition")
    )
    assert max(len(seen) for seen in probe.seen) > 1  # a batch holds clips under several conditions
    again = PaddingProbe(len(task.targets))
    predict(again, test, 8, torch.device("cpu"))
    assert again.seen == probe.seen and again.widths == probe.widths  # the order is seeded
    ours_probe = PaddingProbe(len(task.targets))
    predict(ours_probe, load_fold(tiny_store, 0, task)["test"], 8, torch.device("cpu"))
    assert all(len(seen) == 1 for seen in ours_probe.seen)  # ours: one condition at a time, clips sorted by length
    assert np.mean(ours_probe.widths) < np.mean(probe.widths)  # hence less padding than the shuffled batches


def test_random_evaluation_equals_ours_when_padding_is_ignored(tiny_store, tiny_params):
    params = tiny_params(tiny_store)
    run = resolved_run("utt_fusion", params)
    task = study_task("classification", tiny_store.manifest)
    ctx = ModelContext.from_manifest(tiny_store.manifest, task)
    torch.manual_seed(0)
    model = method_spec("utt_fusion").stages[0].build(run["entry"], ctx, None).eval()
    mixed = predict(model, load_fold(tiny_store, 0, task, batching="random")["test"], 8, torch.device("cpu"))
    ours = predict(model, load_fold(tiny_store, 0, task)["test"], 8, torch.device("cpu"))
    assert (mixed[["condition", "row", "label"]] == ours[["condition", "row", "label"]]).all().all()
    np.testing.assert_allclose(mixed["p0"], ours["p0"], atol=1e-5)
    padded = method_spec("utt_fusion").stages[0].build({**run["entry"], "encoder_pooling": "padded"}, ctx, None)
    padded.load_state_dict(model.state_dict())
    padded.eval()
    mixed = predict(padded, load_fold(tiny_store, 0, task, batching="random")["test"], 8, torch.device("cpu"))
    ours = predict(padded, load_fold(tiny_store, 0, task)["test"], 8, torch.device("cpu"))
    assert not np.allclose(mixed["p0"], ours["p0"], atol=1e-5)  # padded pooling: the batches matter


def test_paper_preset_implies_the_official_switches_unless_written():
    def resolved(overrides):
        params = load_params(ROOT / "params.yaml", overrides)
        runs = {name: run["entry"] for name, run in resolve_runs(params).items()}
        return params["train"], runs

    train, runs = resolved({})
    assert (train["batches"], train["normalise_modalities"]) == ("bucketed", "all")
    assert {runs[n]["encoder_pooling"] for n in ("mmin", "ifmmin", "nmer", "utt_fusion", "audio_only")} == {"valid"}
    train, runs = resolved({"train.preset": "paper"})
    assert (train["batches"], train["normalise_modalities"]) == ("random", "all")  # built-in: features unscaled
    for name in ("mmin", "ifmmin", "nmer", "utt_fusion", "audio_only", "ifmmin_no_inject"):
        assert (runs[name]["encoder_pooling"], runs[name]["text_windows"]) == ("padded", "padded"), name
    assert runs["vavl"]["pooling"] == "valid"  # VAVL's own switches are not implied
    train, runs = resolved({"train.preset": "paper", **PACKAGE})
    assert train["normalise_modalities"] == ["audio"]
    train, runs = resolved(
        {
            "train.preset": "paper",
            **PACKAGE,
            "train.batches": "bucketed",
            "train.normalise_modalities": "all",
            "methods.ifmmin.encoder_pooling": "valid",
        }
    )
    assert (train["batches"], train["normalise_modalities"]) == ("bucketed", "all")
    assert (runs["ifmmin"]["encoder_pooling"], runs["ifmmin"]["text_windows"]) == ("valid", "padded")
    assert runs["ifmmin_no_inject"]["encoder_pooling"] == "valid"  # a run inherits what its base writes
    with pytest.raises(ConfigError, match=r"train.normalise_modalities: 'text' is not a modality of corpus builtin"):
        load_params(ROOT / "params.yaml", {"train.normalise_modalities": ["audio", "text"]})


def ifmmin_stage2(ctx: ModelContext, pooling: str):
    entry = {
        "optim": OPTIM,
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.0,
        "encoder_pooling": pooling,
        "text_windows": pooling,
        "ae_widths": [2.0, 1.0, 0.5],
        "ae_blocks": 2,
        "pretrain": {"optim": OPTIM, "classifier": [8], "dropout": 0.0},
    }
    entry = check(CATALOG["ifmmin"].params, entry, "methods.ifmmin").model_dump(mode="json")
    torch.manual_seed(0)
    first, second = method_spec("ifmmin").stages
    return second.build(entry, ctx, first.build(entry, ctx, None))


@pytest.mark.parametrize("pooling", ["valid", "padded"])
def test_ifmmin_caches_teacher_targets_only_where_padding_is_ignored(tiny_store, pooling):
    task = study_task("classification", tiny_store.manifest)
    ctx = ModelContext.from_manifest(tiny_store.manifest, task)
    model = ifmmin_stage2(ctx, pooling)
    assert isinstance(model.targets, RowCache) == (pooling == "valid")
    train = load_fold(tiny_store, 0, task)["train"]
    lengths = train.lengths["audio"]
    short, long_ = int(torch.argmin(lengths)), int(torch.argmax(lengths))
    alone, beside = train.batch(torch.tensor([short])), train.batch(torch.tensor([short, long_]))
    teacher = [
        torch.cat([model.teacher_shared(e) for e in model.embed(model.teacher, b)], 1)[0] for b in (alone, beside)
    ]
    assert torch.allclose(teacher[0], teacher[1], atol=1e-6) == (pooling == "valid")
    model.eval()  # no dropout: the losses compare the targets alone
    model.loss(alone, alone)  # the clip seen first in a batch of its own
    fresh = ifmmin_stage2(ctx, pooling).eval()
    assert torch.allclose(model.loss(beside, beside)[0], fresh.loss(beside, beside)[0], atol=1e-6)


def test_a_checkpoint_records_how_its_inputs_were_read(tiny_store, tiny_params):
    params = tiny_params(tiny_store, normalise_modalities=["audio"], batches="random")
    run = resolved_run("utt_fusion", params)
    assert (run["train"]["normalise_modalities"], run["train"]["batches"]) == (["audio"], "random")
    output = fit_unit(run, 0, 0)
    checkpoint = torch.load(io.BytesIO(output.checkpoints["fold0-seed0.pt"]), weights_only=False)
    assert checkpoint["inputs"] == {
        "audio_input": None,
        "normalisation": "fold",
        "normalise": ["audio"],
        "batching": "random",
    }
    assert json.loads(json.dumps(checkpoint["inputs"])) == checkpoint["inputs"]


def test_test_selection_keeps_the_epoch_with_the_best_test_score(tiny_store, tiny_params):
    kept = {}
    for selection in ("validation", "test"):  # a setting whose best validation and best test epochs differ
        params = tiny_params(
            tiny_store, epochs=6, selection=selection, seeds=[1], methods={"audio_only": {"optim": {"lr": 0.05}}}
        )
        run = resolved_run("audio_only", params)
        assert run["train"]["selection"] == selection
        output = fit_unit(run, 0, 1)
        kept[selection] = output.best_epochs["train"]
    history = output.history  # the test-selected run scores both splits every epoch
    best = {split: int(history.loc[history[f"{split}_ua"].idxmax(), "epoch"]) for split in ("val", "test")}
    assert best["val"] != best["test"]
    assert kept == {"validation": best["val"], "test": best["test"]}
    task = study_task("classification", tiny_store.manifest)
    assert task.score(output.predictions)["ua"] == pytest.approx(history["test_ua"].max())
    with pytest.raises(ConfigError, match="train.selection"):
        tiny_params(tiny_store, selection="val")
