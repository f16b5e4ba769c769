"""MMIN and IF-MMIN (mer_core.methods.mmin) and the multi-stage training loop (mer_core.train)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from fakes import CTX, OPTIM, make_batch, masked_slot_mse, task_context
from helpers import run_method
from torch.nn import functional as F

from mer_core.conditions import apply_condition, random_presence, with_presence
from mer_core.losses import pairwise_cmd
from mer_core.methods.baselines import UttFusion
from mer_core.methods.lookup import method_spec
from mer_core.methods.mmin import IFMMIN, MMIN, UttShared, ae_layers
from mer_core.methods.registry import ModelContext
from mer_core.params.methods import CATALOG
from mer_core.schema import check
from mer_core.stopping import lr_factor
from mer_core.train import subnetworks, training_view

STAGE2 = {
    "optim": OPTIM,
    "hidden": 8,
    "classifier": [8],
    "dropout": 0.0,
    "encoder_pooling": "valid",
    "text_windows": "valid",
    "ae_widths": [2.0, 1.0, 0.5],
    "ae_blocks": 3,
    "ce_weight": 1.0,
    "mse_weight": 4.0,
}
MMIN_ENTRY = {
    "method": "mmin",
    **STAGE2,
    "cycle_weight": 2.0,
    "pretrain": {"optim": OPTIM, "classifier": [8], "dropout": 0.0},
}
IFMMIN_ENTRY = {
    "method": "ifmmin",
    **STAGE2,
    "inject": True,
    "ae_version": "published",
    "invariant_weight": 100.0,
    "pretrain": {
        "optim": OPTIM,
        "classifier": [8],
        "dropout": 0.0,
        "cmd_weight": 1.0,
        "cmd_moments": 5,
        "cmd_span": None,
    },
}


def stages(entry: dict, ctx: ModelContext = CTX, **changes):
    """(stage-1 model, stage-2 model) of a method, built as the training loop builds them."""
    torch.manual_seed(0)
    method, entry = entry["method"], {k: v for k, v in {**entry, **changes}.items() if k != "method"}
    entry = check(CATALOG[method].params, entry, f"methods.{method}").model_dump(mode="json")
    spec = method_spec(method)
    first = spec.stages[0].build(entry, ctx, None)
    return first, spec.stages[1].build(entry, ctx, first)


def test_registered_with_two_stages_and_the_mmin_protocol():
    for name in ("mmin", "ifmmin"):
        first, second = method_spec(name).stages
        assert (first.name, first.train_conditions, first.select_on, first.key) == (
            "pretrain",
            "full",
            "full",
            "pretrain",
        )
        assert (second.name, second.train_conditions, second.select_on) == ("train", "missing", "missing")


def test_paper_settings_are_the_effective_official_ones():
    mmin, ifmmin = (CATALOG[name].params().model_dump() for name in ("mmin", "ifmmin"))  # the official settings
    assert mmin["optim"] == {
        "epochs": 30,
        "epochs_decay": 30,
        "lr": 2e-4,
        "beta1": 0.5,
        "grad_clip": 1.0,
        "batch_size": 128,
    }
    assert mmin["pretrain"]["optim"]["beta1"] == 0.9 and mmin["pretrain"]["optim"]["epochs"] == 10
    assert ifmmin["optim"]["epochs"] == 20 and ifmmin["optim"]["epochs_decay"] == 20 and ifmmin["optim"]["beta1"] == 0.5
    assert ifmmin["pretrain"]["optim"]["batch_size"] == 64 and ifmmin["pretrain"]["optim"]["beta1"] == 0.9
    for paper in (mmin, ifmmin):
        assert ae_layers(paper["hidden"], paper["ae_widths"]) == [256, 128, 64] and paper["ae_blocks"] == 5
    for name in ("mmin", "ifmmin"):  # the paper preset resets schedules and sizes, never a loss weight or a switch
        keys = set(CATALOG[name].paper_keys)
        assert {"optim", "hidden", "ae_widths", "ae_blocks", "pretrain.optim"} <= keys
        assert not {"ce_weight", "mse_weight", "cycle_weight", "invariant_weight", "inject", "ae_version"} & keys


def test_mmin_sizes_derive_from_the_modalities_and_the_encoder_width():
    first, model = stages(MMIN_ENTRY)
    assert isinstance(first, UttFusion) and isinstance(model, MMIN)
    assert model.ae.encoders[0][0].in_features == 2 * 8 and ae_layers(8, [2.0, 1.0, 0.5]) == [16, 8, 4]
    assert model.ae.latent_dim == 3 * 4 and model.classifier.hidden[0].in_features == 12
    ctx3 = task_context(("audio", "visual", "text"), {"audio": 5, "visual": 4, "text": 6}, 4)
    _, model3 = stages(MMIN_ENTRY, ctx3, hidden=128, ae_blocks=5)
    assert model3.ae.encoders[0][0].in_features == 384 and model3.ae.latent_dim == 320  # the spec's sizes


def test_mmin_students_start_from_stage_1_and_the_teacher_stays_frozen():
    first, model = stages(MMIN_ENTRY)
    for m in CTX.modalities:
        for a, b, c in zip(
            first.encoders[m].parameters(), model.encoders[m].parameters(), model.teacher[m].parameters()
        ):
            assert torch.equal(a, b) and torch.equal(a, c) and a.data_ptr() != b.data_ptr()
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training and model.encoders.training
    batch = make_batch()
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss, logits = model.loss(apply_condition(batch, ("audio",)), batch)
    assert logits.shape == (5, 6) and torch.isfinite(loss)
    loss.backward()
    optimiser.step()
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters()))
    assert all(p.grad is not None for p in model.encoders.parameters())  # the students are trained (issue #1)


def test_mmin_imagination_target_is_the_teachers_view_of_the_missing_modalities():
    _, model = stages(MMIN_ENTRY)
    batch = make_batch()
    seen = apply_condition(batch, ("audio",))  # visual missing
    target = model.imagination_target(seen, batch)
    zeros = batch.x["audio"] * 0
    torch.testing.assert_close(target[:, :8], model.teacher["audio"](zeros, batch.lengths["audio"]))
    torch.testing.assert_close(target[:, 8:], model.teacher["visual"](batch.x["visual"], batch.lengths["visual"]))
    assert target[1, 8:].abs().sum() == 0  # clip 1 has no visual stream at all: nothing to imagine


def test_mmin_loss_is_the_weighted_sum_of_its_terms():
    _, model = stages(MMIN_ENTRY)
    model.eval()  # no dropout: every term is deterministic
    batch = make_batch()
    seen = apply_condition(batch, ("visual",))
    loss, logits = model.loss(seen, batch)
    h, imagination, latents, _ = model.imagine(seen)
    torch.testing.assert_close(logits, model.classifier(latents)[0])
    torch.testing.assert_close(logits, model(seen))
    # clip 1 has no visual stream: its visual slot has no teacher target and adds nothing to the imagination MSE
    assert not batch.present[1, 1] and batch.present.sum() == 9
    target = model.imagination_target(seen, batch)
    expected = (
        F.cross_entropy(logits, batch.y)
        + 4.0 * masked_slot_mse(imagination, target, batch.present)
        + 2.0 * F.mse_loss(model.cycle_ae(imagination)[0], h)
    )
    torch.testing.assert_close(loss, expected)
    masked = masked_slot_mse(imagination, target, batch.present).item()
    assert masked != pytest.approx(F.mse_loss(imagination, target).item())  # the masking matters here


def test_mmin_no_cycle_has_no_cycle_network():
    _, model = stages(MMIN_ENTRY, cycle_weight=0.0)
    assert model.cycle_ae is None
    _, with_cycle = stages(MMIN_ENTRY)
    assert sum(p.numel() for p in with_cycle.parameters()) > sum(p.numel() for p in model.parameters())


def test_utt_shared_loss_adds_the_pairwise_cmd_of_the_invariant_features():
    first, _ = stages(IFMMIN_ENTRY)
    assert isinstance(first, UttShared)
    first.eval()
    batch = make_batch()
    h, invariant = first.features(batch)
    assert h.shape == (5, 16) and [f.shape for f in invariant] == [(5, 8), (5, 8)]
    loss, logits = first.loss(batch, batch)
    expected = F.cross_entropy(logits, batch.y) + pairwise_cmd(invariant, batch.present)
    torch.testing.assert_close(loss, expected)
    assert first.classifier.hidden[0].in_features == 32  # [e_a, e_v, S(e_a), S(e_v)]
    no_cmd, _ = stages(IFMMIN_ENTRY, pretrain={**IFMMIN_ENTRY["pretrain"], "cmd_weight": 0.0})
    no_cmd.eval()
    loss, logits = no_cmd.loss(batch, batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.y))


def test_ifmmin_injects_the_invariant_features_and_matches_them_to_the_teachers():
    first, model = stages(IFMMIN_ENTRY)
    assert isinstance(model, IFMMIN) and model.ae.variant == "ifim_published"
    assert stages(IFMMIN_ENTRY, ae_version="head")[1].ae.variant == "ifim_head"
    assert all(torch.equal(a, b) for a, b in zip(first.shared.parameters(), model.shared.parameters()))
    assert not any(p.requires_grad for p in model.teacher_shared.parameters())
    model.eval()
    batch = make_batch()
    seen = apply_condition(batch, ("audio",))
    h, imagination, latents, invariant = model.imagine(seen)
    embeddings = [model.encoders[m](seen.x[m], seen.lengths[m]) for m in CTX.modalities]
    torch.testing.assert_close(invariant, torch.cat([model.shared(e) for e in embeddings], 1))
    torch.testing.assert_close((imagination, latents), model.ae(h, invariant))
    loss, logits = model.loss(seen, batch)
    teacher = [model.teacher_shared(model.teacher[m](batch.x[m], batch.lengths[m])) for m in CTX.modalities]
    expected = (
        F.cross_entropy(logits, batch.y)
        + 4.0 * masked_slot_mse(imagination, model.imagination_target(seen, batch), batch.present)
        + 100.0 * masked_slot_mse(invariant, torch.cat(teacher, 1), batch.present)
    )  # H from the full input
    torch.testing.assert_close(loss, expected)


def test_ifmmin_ablations():
    _, no_inject = stages(IFMMIN_ENTRY, inject=False)
    assert no_inject.ae.variant == "mmin"  # falls back to MMIN's AE
    no_inject.eval()
    batch = make_batch()
    seen = apply_condition(batch, ("visual",))
    h, imagination, _, _ = no_inject.imagine(seen)
    torch.testing.assert_close(imagination, no_inject.ae(h)[0])
    _, no_inv = stages(IFMMIN_ENTRY, invariant_weight=0.0, mse_weight=0.0)
    no_inv.eval()
    loss, logits = no_inv.loss(seen, batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.y))


def test_missing_conditions_never_show_every_modality():
    batch = make_batch(n=400)
    generator = torch.Generator().manual_seed(0)
    seen = training_view(batch, "missing", generator)
    has_both = batch.present.all(1)
    assert not seen.present[has_both].all(1).any()  # clips with both modalities lose one
    assert seen.present.any(1).all()  # no clip is blanked out
    assert seen.present[~has_both].equal(batch.present[~has_both])  # clip 1 (audio only) keeps its audio
    share_audio = seen.present[has_both, 0].float().mean().item()
    assert 0.4 < share_audio < 0.6  # {a} and {v} drawn uniformly
    assert training_view(batch, "full", generator) is batch
    assert random_presence(batch, generator).present.all(1)[has_both].any()  # `random` does draw av
    single = make_batch().replace(modalities=("audio",), present=torch.ones(5, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="two or more modalities"):
        training_view(single, "missing", generator)


def test_lr_factor_follows_mmins_linear_decay():
    assert [lr_factor(e, 2, 2) for e in range(4)] == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert [lr_factor(e, 3, 0) for e in range(3)] == [1, 1, 1]


def test_gradients_are_clipped_per_subnetwork():
    _, model = stages(MMIN_ENTRY)
    groups = subnetworks(model)
    names = {id(p): n for n, p in model.named_parameters()}
    prefixes = [sorted({names[id(p)].split(".")[0] + "." + names[id(p)].split(".")[1] for p in g}) for g in groups]
    assert prefixes[:2] == [["encoders.audio"], ["encoders.visual"]]  # one group per modality encoder
    assert sum(len(g) for g in groups) == sum(p.requires_grad for p in model.parameters())  # teacher excluded


def test_run_method_trains_both_stages(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=2, folds=[0])
    for run in ("mmin", "ifmmin"):
        out, checkpoints = tmp_path / run, tmp_path / "ckpt" / run
        summary = run_method(run, params, out, checkpoints)
        assert sorted(p.name for p in checkpoints.iterdir()) == ["fold0-seed0-pretrain.pt", "fold0-seed0.pt"]
        assert set(summary["best_epochs"]) == {"pretrain", "train"} and summary["method"] == run
        history = pd.read_csv(out / "history.csv")
        assert history[["stage", "epoch"]].values.tolist() == [["pretrain", 1], ["train", 1], ["train", 2]]
        pretrain = torch.load(checkpoints / "fold0-seed0-pretrain.pt")
        assert pretrain["stage"] == "pretrain" and pretrain["epoch"] == summary["best_epochs"]["pretrain"][0]
        assert torch.load(checkpoints / "fold0-seed0.pt")["stage"] == "train"
        assert list(summary["conditions"]) == ["a", "v", "av", "pooled", "mean"]


def test_an_ablation_is_an_entry_of_the_same_method(tiny_store, tiny_params, tmp_path):
    params = tiny_params(
        tiny_store, epochs=1, folds=[0], methods={"mmin_no_cycle": {"base": "mmin", "set": {"cycle_weight": 0.0}}}
    )
    summary = run_method("mmin_no_cycle", params, tmp_path / "out", tmp_path / "ckpt")
    assert summary["run"] == "mmin_no_cycle" and summary["method"] == "mmin"
    state = torch.load(tmp_path / "ckpt" / "fold0-seed0.pt")["state_dict"]
    assert not any(k.startswith("cycle_ae") for k in state)


def test_imagination_target_reverses_presence():
    batch = make_batch()
    seen = apply_condition(batch, ("audio",))
    reverse = with_presence(batch, ~seen.present)
    assert not (reverse.present & seen.present).any()
    assert reverse.present[:, 1].equal(batch.present[:, 1])  # the missing visual stream is kept where it exists


def test_three_modalities_with_text_train_end_to_end():
    """IEMOCAP-like A/V/L input: the imagination networks size themselves and train on every condition."""
    ctx = task_context(("audio", "visual", "text"), {"audio": 5, "visual": 4, "text": 6}, 4)
    batch = make_batch(ctx, n=6)
    batch = batch.replace(lengths={**batch.lengths, "text": torch.tensor([2, 5, 3, 1, 7, 4])})
    generator = torch.Generator().manual_seed(0)
    for entry in (MMIN_ENTRY, IFMMIN_ENTRY):
        first, model = stages(entry, ctx)
        assert model.ae.latent_dim == 3 * 4 and "text" in model.encoders
        seen = training_view(batch, "missing", generator)
        assert not seen.present.all(1).any()
        loss, logits = model.train().loss(seen, batch)
        loss.backward()
        assert logits.shape == (6, 4) and torch.isfinite(loss)
        assert model.encoders["text"].convs[0].weight.grad.abs().sum() > 0
        first_loss, _ = first.loss(batch, batch)
        assert torch.isfinite(first_loss)


def test_the_loop_decays_the_lr_clips_per_subnetwork_and_selects_on_each_stages_conditions(
    tiny_store, tiny_params, tmp_path, monkeypatch
):
    import mer_core.train as train

    params = tiny_params(tiny_store, epochs=2, folds=[0], methods={"mmin": {"optim": {"epochs": 1, "epochs_decay": 2}}})
    clipped, validated = [], []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m: clipped.append(len(list(p))) or clip(p, m))
    predict = train.predict
    monkeypatch.setattr(
        train,
        "predict",
        lambda model, split, size, device, conditions=None, *noise: (
            validated.append(conditions) or predict(model, split, size, device, conditions, *noise)
        ),
    )
    run_method("mmin", params, tmp_path / "out", tmp_path / "ckpt")
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    stage2 = history[history["stage"] == "train"]
    assert stage2["lr"].tolist() == pytest.approx(
        [0.01 * lr_factor(e, 1, 2) for e in range(3)], abs=1e-5
    )  # csv: 5 decimals
    assert history[history["stage"] == "pretrain"]["lr"].tolist() == [0.01]
    # stage 1 validates on the full condition, stage 2 on the missing ones, the test on every condition
    assert validated == [[("audio", "visual")]] + [[("audio",), ("visual",)]] * 3 + [None]
    # one clip call per sub-network and step: stage 1 = 2 encoders + classifier; stage 2 adds ae and cycle_ae
    n_train = len(tiny_store.fold_indices(0)["train"])
    steps = -(-n_train // 16)
    assert len(clipped) == steps * 3 + 3 * steps * 5


def test_row_cache_computes_each_clip_once_and_returns_its_values_in_batch_order():
    from mer_core.methods.mmin import RowCache

    cache, calls = RowCache(), []
    table = torch.arange(10.0)[:, None] * torch.ones(1, 3)

    def compute(rows):
        calls.append(rows.tolist())
        return table[rows], -table[rows]

    rows = torch.tensor([3, 1, 4])
    a, b = cache(rows.tolist(), lambda: compute(rows))
    assert torch.equal(a, table[rows]) and torch.equal(b, -table[rows])
    again = torch.tensor([4, 3])
    a, b = cache(again.tolist(), lambda: compute(again))  # all seen: no call, values in the new order
    assert calls == [[3, 1, 4]] and torch.equal(a, table[again])
    mixed = torch.tensor([1, 7])
    a, _ = cache(mixed.tolist(), lambda: compute(mixed))
    assert calls[-1] == [1, 7] and torch.equal(a, table[mixed])


@pytest.mark.parametrize("weight_decay", [0.0, 1e-5])
def test_adam_gets_the_study_weight_decay(weight_decay, tiny_store, tiny_params, tmp_path, monkeypatch):
    """Both stages' Adam get `train.weight_decay` and nothing else (the official stage-2 scripts pass 1e-5 that
    never reaches Adam: 0, our default, is the effective official value)."""
    decays = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            decays.append(kwargs["weight_decay"])
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    params = tiny_params(tiny_store, epochs=1, folds=[0], weight_decay=weight_decay)
    run_method("mmin", params, tmp_path / "out", tmp_path / "ckpt")
    assert decays == [weight_decay, weight_decay]  # stage 1, stage 2


def test_imagination_targets_are_cached_per_clip_and_missing_modalities():
    _, model = stages(MMIN_ENTRY)
    batch = make_batch()
    calls = []
    embed = model.embed
    model.embed = lambda encoders, b: calls.append(encoders is model.teacher) or embed(encoders, b)
    expected = {}
    for condition in (("audio",), ("visual",)):
        seen = apply_condition(batch, condition)
        expected[condition] = torch.cat(embed(model.teacher, with_presence(batch, ~seen.present)), 1)
        torch.testing.assert_close(model.imagination_target(seen, batch), expected[condition])
    assert calls == [True, True]  # one teacher pass per set of missing modalities
    assert not torch.equal(expected[("audio",)], expected[("visual",)])
    for condition in (("visual",), ("audio",)):
        seen = apply_condition(batch, condition)
        assert torch.equal(model.imagination_target(seen, batch), expected[condition])
    assert calls == [True, True]  # seen before: no teacher pass
