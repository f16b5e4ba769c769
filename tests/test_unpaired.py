"""Partly unpaired training data: `mer_core.data.batches.unpair` / `load_fold(unpaired=...)`, the run key
`unpaired` (validated with the run, `fit_run`), `mer_core.losses.slot_mse`, and the MMIN family on unpaired clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import CTX, OPTIM, make_batch, masked_slot_mse
from helpers import resolved_run
from torch.nn import functional as F

from mer_core.config import ConfigError, resolve_runs, validate_params
from mer_core.data.batches import load_fold, subset, unpair
from mer_core.losses import slot_mse
from mer_core.methods.lookup import method_spec
from mer_core.tasks import study_task
from mer_core.train import run_seed, training_view

AUDIO_ONLY, VISUAL_ONLY, BOTH = (True, False), (False, True), (True, True)
UTT_FUSION = {
    "method": "utt_fusion",
    "optim": OPTIM,
    "hidden": 8,
    "classifier": [8],
    "dropout": 0.0,
    "encoder_pooling": "valid",
    "text_windows": "valid",
}


def validate_run(name: str, entry: dict) -> dict:
    """Run `name` written as `entry`, validated as params.yaml's runs are; its complete method params."""
    params = validate_params(
        {"methods": {name: entry}, "extended": {"other_task": {"methods": []}, "unpaired": {"methods": []}}}
    )
    return resolve_runs(params)[name]["entry"]


def stages(method: str, entry: dict):
    """(stage-1 model, stage-2 model) of a two-stage method, built as the training loop builds them."""
    torch.manual_seed(0)
    spec = method_spec(method)
    first = spec.stages[0].build(entry, CTX, None)
    return first, spec.stages[1].build(entry, CTX, first)


@pytest.fixture
def methods(tiny_store, tiny_params) -> dict:
    """The tiny runs of conftest: {run (= method): its complete entry}."""
    return {name: run["entry"] for name, run in resolve_runs(tiny_params(tiny_store, epochs=1)).items()}


@pytest.fixture
def train(tiny_store):
    return load_fold(tiny_store, 0)["train"]


def kinds(split) -> list[tuple[bool, bool]]:
    return [tuple(row) for row in split.has.tolist()]


# ================================================================================================ unpair


@pytest.mark.parametrize("only", [{"visual": 0.3}, {"audio": 0.25, "visual": 0.25}, {"audio": 0.5, "visual": 0.4}])
def test_unpair_respects_the_shares_per_class(train, only):
    out = unpair(train, only, seed=0)
    labels = train.y.numpy()
    before, after = kinds(train), kinds(out)
    for label in np.unique(labels):
        in_class = labels == label
        paired = sum(1 for k, c in zip(before, in_class) if c and k == BOTH)
        for modality, keeps in (("audio", AUDIO_ONLY), ("visual", VISUAL_ONLY)):
            share = only.get(modality, 0.0)
            made = sum(1 for k0, k1, c in zip(before, after, in_class) if c and k0 == BOTH and k1 == keeps)
            assert abs(made - share * paired) <= 0.5 + 1e-9, (label, modality, made, share * paired)
    # over the whole split, the shares of the paired clips are met within the per-class rounding
    paired_total = before.count(BOTH)
    n_classes = len(np.unique(labels))
    for modality, keeps in (("audio", AUDIO_ONLY), ("visual", VISUAL_ONLY)):
        made = sum(1 for k0, k1 in zip(before, after) if k0 == BOTH and k1 == keeps)
        assert abs(made - only.get(modality, 0.0) * paired_total) <= 0.5 * n_classes


def test_unpair_removes_the_modalities_it_unpairs_and_leaves_the_rest(train):
    out = unpair(train, {"audio": 0.25, "visual": 0.25}, seed=0)
    assert out.y is train.y and out.norm is train.norm and (out.rows == train.rows).all()
    assert out.task == train.task
    changed = (out.has != train.has).any(1)
    assert int(changed.sum()) > 0
    for k, m in enumerate(train.modalities):
        removed = train.has[:, k] & ~out.has[:, k]
        assert (out.x[m][removed] == 0).all() and (out.lengths[m][removed] == 0).all()
        kept = ~removed
        assert torch.equal(out.x[m][kept], train.x[m][kept])
        assert torch.equal(out.lengths[m][kept], train.lengths[m][kept])
        assert not (~train.has[:, k] & out.has[:, k]).any()  # nothing is ever added
    assert out.has.any(1).all()  # every clip keeps a modality
    assert train.has.sum() > out.has.sum()  # the input split is untouched
    # batches of the unpaired split carry the new presence and frames
    for batch in out.batches(16, torch.Generator().manual_seed(0)):
        index = {r: i for i, r in enumerate(out.rows.tolist())}
        rows = [index[r] for r in batch.rows.tolist()]
        assert torch.equal(batch.present, out.has[rows])
        assert (batch.lengths["visual"][~batch.present[:, 1]] == 0).all()


def test_unpair_is_deterministic_per_seed(train):
    only = {"audio": 0.2, "visual": 0.3}
    first, again, other = unpair(train, only, 0), unpair(train, only, 0), unpair(train, only, 1)
    assert torch.equal(first.has, again.has)
    for m in train.modalities:
        assert torch.equal(first.x[m], again.x[m]) and torch.equal(first.lengths[m], again.lengths[m])
    assert not torch.equal(first.has, other.has)
    assert (first.has.sum(0) == other.has.sum(0)).all()  # the same counts, other clips


def test_unpair_chooses_only_paired_clips(tiny_store, train):
    no_visual = np.flatnonzero(~tiny_store.meta["has_visual"].to_numpy()[train.rows])
    assert len(no_visual) == 1  # conftest's NO_VISUAL_CLIP is a training clip of fold 0
    no_visual = int(no_visual[0])
    assert kinds(train)[no_visual] == AUDIO_ONLY
    for seed in range(5):  # a clip without visual is never picked to keep visual alone (it would keep nothing)
        out = unpair(train, {"visual": 0.9}, seed)
        assert kinds(out)[no_visual] == AUDIO_ONLY
        assert out.has.any(1).all()
        assert kinds(out).count(BOTH) == kinds(train).count(BOTH) - sum(
            round(0.9 * n) for n in np.bincount(train.y.numpy()[train.has.all(1).numpy()])
        )


def test_unpair_rejects_shares_summing_over_one(train):
    with pytest.raises(ValueError, match="sum to 1.1"):
        unpair(train, {"audio": 0.6, "visual": 0.5}, 0)
    unchanged = unpair(train, {"visual": 0.0}, 0)
    assert torch.equal(unchanged.has, train.has)


def test_unpair_regression_draws_over_the_whole_split(tiny_attribute_store):
    task = study_task("regression", tiny_attribute_store.manifest)
    train = load_fold(tiny_attribute_store, 0, task)["train"]
    out = unpair(train, {"visual": 0.5}, 0)
    paired = kinds(train).count(BOTH)
    made = sum(1 for a, b in zip(kinds(train), kinds(out)) if a == BOTH and b == VISUAL_ONLY)
    assert made == round(0.5 * paired)
    assert torch.equal(out.y, train.y)


def test_load_fold_unpairs_only_the_training_clips_after_normalising(tiny_store):
    paired = load_fold(tiny_store, 0)
    splits = load_fold(tiny_store, 0, unpaired={"visual": 0.3}, seed=4)
    for role in ("val", "test"):
        assert torch.equal(splits[role].has, paired[role].has)
        assert all(torch.equal(splits[role].x[m], paired[role].x[m]) for m in tiny_store.modalities)
    for m in tiny_store.modalities:  # statistics of every training clip, before unpairing
        np.testing.assert_array_equal(splits["train"].norm.mean[m], paired["train"].norm.mean[m])
        np.testing.assert_array_equal(splits["train"].norm.std[m], paired["train"].norm.std[m])
    expected = unpair(paired["train"], {"visual": 0.3}, 4)
    assert torch.equal(splits["train"].has, expected.has)
    assert not torch.equal(splits["train"].has, paired["train"].has)
    zero = load_fold(tiny_store, 0, unpaired={"visual": 0.0, "audio": 0.0})
    assert torch.equal(zero["train"].has, paired["train"].has)


def test_subset_keeps_the_chosen_clips():
    batch = make_batch(n=5)
    keep = torch.tensor([True, False, True, False, True])
    part = subset(batch, keep)
    assert part.rows.tolist() == [0, 2, 4] and part.y.tolist() == batch.y[keep].tolist()
    assert torch.equal(part.present, batch.present[keep])
    for m in batch.modalities:
        assert torch.equal(part.x[m], batch.x[m][keep]) and torch.equal(part.lengths[m], batch.lengths[m][keep])


# ================================================================================================ the run key


def test_validate_run_accepts_unpaired_for_any_method(methods):
    for name, entry in (
        ("utt_unpaired", UTT_FUSION),
        ("mmin_u", {"method": "mmin", **methods["mmin"]}),
        ("vavl", {"method": "vavl", **methods["vavl"]}),
    ):
        assert validate_run(name, {**entry, "unpaired": {"visual": 0.3, "audio": 0.2}})["unpaired"] == {
            "visual": 0.3,
            "audio": 0.2,
        }
        assert validate_run(name, {**entry, "unpaired": {"visual": 0}})["unpaired"] == {"visual": 0}
    assert validate_run("utt_unpaired", UTT_FUSION)["unpaired"] == {}  # the default: every clip paired


@pytest.mark.parametrize(
    "unpaired, where, words",
    [
        ({"video": 0.2}, "methods.run.unpaired.video", "not an allowed key"),
        ({"audio": 0.5, "visual": 0.5}, "methods.run.unpaired", "sum to 1"),
        ({"audio": 0.7, "visual": 0.6}, "methods.run.unpaired", "sum to 1.3"),
        ({"visual": 1.0}, "methods.run.unpaired", "below 1"),
        ({"visual": -0.1}, "methods.run.unpaired.visual", "greater than or equal to 0"),
        ({"visual": 1.5}, "methods.run.unpaired.visual", "less than or equal to 1"),
        ({"visual": "0.2"}, "methods.run.unpaired.visual", "valid number"),
        ([0.2], "methods.run.unpaired", "valid dictionary"),
    ],
)
def test_validate_run_rejects_bad_unpaired_naming_the_key(unpaired, where, words):
    with pytest.raises(ConfigError) as info:
        validate_run("run", {**UTT_FUSION, "unpaired": unpaired})
    message = str(info.value)
    assert message.startswith(where + ":") and words in message, message


def test_fit_run_trains_on_the_unpaired_shares_of_its_entry(tiny_store, tiny_params, tmp_path, monkeypatch):
    import mer_core.train as train_module

    seen = []
    real = train_module.load_fold

    def spy(store, fold, task=None, unpaired=None, seed=0, **options):
        splits = real(store, fold, task, unpaired, seed, **options)
        seen.append((fold, task, unpaired, seed, splits["train"].has.clone()))
        return splits

    monkeypatch.setattr(train_module, "load_fold", spy)
    params = tiny_params(tiny_store, epochs=1, folds=[1], methods={"late_fusion": {"unpaired": {"audio": 0.3}}})
    train_module.fit_run(resolved_run("late_fusion", params), 1, 0, tmp_path, show_progress=False)
    ((fold, task, unpaired, seed, has),) = seen
    assert (fold, unpaired, seed) == (1, {"audio": 0.3}, run_seed(0, 1))
    assert task == study_task("classification", tiny_store.manifest)
    assert int((has == torch.tensor(AUDIO_ONLY)).all(1).sum()) > 1  # the audio-only clips made by unpair


# ================================================================================================ slot_mse


def test_slot_mse_equals_mse_when_every_clip_has_every_modality():
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(4, 12, generator=g), torch.randn(4, 12, generator=g)
    has = torch.ones(4, 3, dtype=torch.bool)
    torch.testing.assert_close(slot_mse(prediction, target, has), F.mse_loss(prediction, target))


def test_slot_mse_ignores_the_slots_of_missing_modalities():
    g = torch.Generator().manual_seed(1)
    prediction = torch.randn(4, 8, generator=g, requires_grad=True)
    target = torch.randn(4, 8, generator=g)
    has = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    loss = slot_mse(prediction, target, has)
    torch.testing.assert_close(loss, masked_slot_mse(prediction, target, has))
    # by hand: the 6 present slots of width 4
    cells = [(0, 0), (0, 1), (1, 0), (2, 1), (3, 0), (3, 1)]
    by_hand = sum(((prediction[i, 4 * k : 4 * k + 4] - target[i, 4 * k : 4 * k + 4]) ** 2).sum() for i, k in cells) / 24
    torch.testing.assert_close(loss, by_hand)
    # whatever sits in a masked slot does not matter, and gets no gradient
    garbage = target.clone()
    garbage[1, 4:] = 1e3
    garbage[2, :4] = -1e3
    torch.testing.assert_close(slot_mse(prediction, garbage, has), loss)
    loss.backward()
    assert (prediction.grad[1, 4:] == 0).all() and (prediction.grad[2, :4] == 0).all()
    assert (prediction.grad[0] != 0).all()
    assert slot_mse(prediction, target, torch.zeros(4, 2, dtype=torch.bool)).item() == 0.0


# ======================================================================================== methods on unpaired clips


def unpaired_batch(n: int = 6):
    """A batch with an audio-only clip (1) and a visual-only clip (3), as `unpair` leaves them."""
    batch = make_batch(n=n)
    has = batch.present.clone()
    has[3, 0] = False
    x = {**batch.x, "audio": batch.x["audio"].clone()}
    x["audio"][3] = 0.0
    lengths = {**batch.lengths, "audio": batch.lengths["audio"].clone()}
    lengths["audio"][3] = 0
    batch = batch.replace(x=x, lengths=lengths, present=has)
    assert [tuple(r) for r in batch.present.tolist()].count(AUDIO_ONLY) == 1
    assert [tuple(r) for r in batch.present.tolist()].count(VISUAL_ONLY) == 1
    return batch


@pytest.mark.parametrize("name", ["mmin", "ifmmin"])
def test_imagination_stage2_loss_is_finite_on_unpaired_clips(name, methods):
    _, model = stages(name, methods[name])
    model.train()
    full = unpaired_batch()
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        seen = training_view(full, "missing", generator)
        assert not seen.present.all(1).any()
        loss, logits = model.loss(seen, full)
        assert torch.isfinite(loss) and torch.isfinite(logits).all() and logits.shape == (6, 6)
        model.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    # the imagination MSE leaves out the slots the clips lack: the visual-only clip's audio slot and vice versa
    model.eval()
    seen = training_view(full, "missing", torch.Generator().manual_seed(1))
    _, imagination, _, _ = model.imagine(seen)
    target = model.imagination_target(seen, full)
    expected = masked_slot_mse(imagination, target, full.present)
    torch.testing.assert_close(slot_mse(imagination, target, full.present), expected)


def test_nmer_stage2_loss_is_finite_on_unpaired_clips(methods):
    _, model = stages("nmer", methods["nmer"])
    model.train()
    full = unpaired_batch()
    seen = training_view(full, "missing", torch.Generator().manual_seed(0))
    loss, logits = model.loss(seen, full)
    assert torch.isfinite(loss) and torch.isfinite(logits).all()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_training_on_the_tiny_store_with_unpaired_clips_stays_finite(tiny_store, tiny_params, tmp_path):
    from mer_core.train import fit_run

    params = tiny_params(tiny_store, epochs=1, methods={"mmin": {"unpaired": {"audio": 0.3, "visual": 0.3}}})
    output = fit_run(resolved_run("mmin", params), 0, 0, tmp_path, show_progress=False)
    assert np.isfinite(output.history[["train_loss", "val_loss", "val_ua"]].to_numpy()).all()
    assert list(output.history["stage"]) == ["pretrain", "train"]


# ================================================================================================ edge cases


def test_validate_run_rejects_three_shares_that_sum_to_one():
    with pytest.raises(ConfigError, match=r"methods\.run\.unpaired: the shares sum to 1"):
        validate_run("run", {**UTT_FUSION, "unpaired": {"audio": 0.2, "visual": 0.7, "text": 0.1}})


def test_unpaired_modality_the_corpus_lacks_is_named(tiny_store, tiny_params, tmp_path):
    from mer_core.train import fit_run

    params = tiny_params(tiny_store, epochs=1, methods={"late_fusion": {"unpaired": {"text": 0.2}}})
    run = resolved_run("late_fusion", params)  # accepted: the params allow every modality
    assert run["entry"]["unpaired"] == {"text": 0.2}
    with pytest.raises((ConfigError, ValueError), match="text"):
        fit_run(run, 0, 0, tmp_path, show_progress=False)
