"""VAVL (mer_core.methods.vavl, docs/methods.md §5): outputs for every condition, per-clip computation, the three
optimiser steps per batch, the ablations, `mer_core.conformer.subsample`, and training through the loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import CTX, OPTIM, REG_CTX, make_batch
from helpers import resolved_run

from mer_core.conditions import all_conditions, apply_condition
from mer_core.conformer import Conformer, MaskedBatchNorm1d, masked_mean, subsample
from mer_core.data.batches import Batch, load_fold, subset
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.methods.vavl import REC_WEIGHT_AUTO, VAVL
from mer_core.params.methods import CATALOG
from mer_core.params.methods import VAVL as VAVLParams
from mer_core.schema import check
from mer_core.tasks import ccc_loss, study_task
from mer_core.train import fit_run, update_steps

ENTRY = {
    "method": "vavl",
    "optim": OPTIM,
    "projection": 6,
    "subsample": 2,
    "d_model": 8,
    "heads": 2,
    "ffn_expansion": 2,
    "kernel": 3,
    "branch_blocks": 1,
    "shared_blocks": 1,
    "dropout": 0.0,
    "head_dropout": 0.0,
    "shared": True,
    "residual": True,
    "rec_weight": "auto",
    "attention_scale": "d_model",
    "positions": "relative",
    "pooling": "valid",
    "axes": "per_clip",
}
ATOL = 1e-5


def validate_run(method: str, entry: dict) -> dict:
    """`entry` (a run of `method`, written as in params.yaml) validated by the method's params model, complete."""
    written = {k: v for k, v in entry.items() if k != "method"}
    return check(CATALOG[method].params, written, f"methods.{method}").model_dump(mode="json")


def build(ctx=CTX, seed: int = 0, **changes) -> VAVL:
    torch.manual_seed(seed)
    entry = validate_run("vavl", {**ENTRY, **changes})
    model = method_spec("vavl").stages[0].build(entry, ctx, None)
    assert isinstance(model, VAVL)
    for module in model.modules():  # non-trivial running statistics: eval-mode batch norm is not the identity
        if isinstance(module, MaskedBatchNorm1d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def paired_batch(ctx=CTX, n: int = 6, seed: int = 0) -> Batch:
    """A batch in which every clip has every modality (lengths 2..11, zero padding)."""
    batch = make_batch(ctx, n, seed)
    g = torch.Generator().manual_seed(seed + 100)
    lengths = {**batch.lengths, "visual": torch.randint(2, 12, (n,), generator=g)}
    t = int(lengths["visual"].max())
    inside = (torch.arange(t) < lengths["visual"][:, None])[..., None]
    visual = torch.randn(n, t, ctx.dims["visual"], generator=g) * inside
    return batch.replace(
        x={**batch.x, "visual": visual}, lengths=lengths, present=torch.ones(n, len(ctx.modalities), dtype=torch.bool)
    )


def log_probs(model: VAVL, batch: Batch) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-modality representations, the heads' outputs (B, M, out) and the fusion head's output."""
    reps = [model.represent(batch, m) for m in model.modalities]
    unimodal = torch.stack([model.heads[m](r) for m, r in zip(model.modalities, reps)], 1)
    return reps, unimodal, model.fusion(torch.cat(reps, 1))


# ================================================================================================ registry


def test_registered_with_one_stage_and_official_settings():
    spec = method_spec("vavl")
    assert [(s.name, s.train_conditions, s.select_on, s.key) for s in spec.stages] == [("train", "full", "full", None)]
    paper = VAVLParams().model_dump()  # the defaults are the official settings
    assert paper["optim"] == {
        "epochs": 20,
        "epochs_decay": 0,
        "lr": 5e-5,
        "beta1": 0.95,
        "grad_clip": 0.0,
        "batch_size": 32,
    }
    assert (paper["d_model"], paper["heads"], paper["branch_blocks"], paper["shared_blocks"]) == (512, 8, 3, 2)
    assert (paper["projection"], paper["subsample"], paper["kernel"], paper["ffn_expansion"]) == (50, 1, 31, 4)
    assert (paper["shared"], paper["residual"], paper["rec_weight"]) == (True, True, "auto")
    assert {"optim", "d_model", "heads", "projection", "subsample"} <= set(CATALOG["vavl"].paper_keys)
    assert not {"shared", "residual", "rec_weight"} & set(CATALOG["vavl"].paper_keys)  # the preset keeps ablations


def test_schema_rejects_bad_values():
    from mer_core.config import ConfigError

    for key, value in (
        ("rec_weight", "half"),
        ("rec_weight", -1.0),
        ("subsample", 0),
        ("shared", "yes"),
        ("heads", 3),
        ("kernel", 4),
    ):
        with pytest.raises(ConfigError, match=rf"^methods\.vavl\.{key}: "):
            validate_run("vavl", {**ENTRY, key: value})
    assert validate_run("vavl", {**ENTRY, "rec_weight": 0.5})["rec_weight"] == 0.5


# ================================================================================================ outputs


@pytest.mark.parametrize("ctx, width", [(CTX, 6), (REG_CTX, 3)])
def test_forward_shapes_for_every_condition(ctx, width):
    model = build(ctx).eval()
    batch = make_batch(ctx, n=5)
    for condition in all_conditions(ctx.modalities):
        seen = apply_condition(batch, condition)
        out = model(seen)
        assert out.shape == (5, width) and torch.isfinite(out).all()
        some = seen.present.any(1)  # under `v`, clip 1 (no visual stream) has nothing left
        if ctx.task.name == "classification":  # log-probabilities
            torch.testing.assert_close(out[some].exp().sum(1), torch.ones(int(some.sum())))
    assert model.fusion[0].in_features == 2 * 8 and model.heads["audio"][-1].out_features == width
    assert model.reconstruction["audio"][-1].out_features == 5 and model.reconstruction["visual"][-1].out_features == 4


def test_combine_picks_fusion_when_all_present_and_the_unimodal_head_otherwise():
    model = build().eval()
    batch = make_batch(n=5)  # clip 1 has no visual stream
    both = apply_condition(batch, ("audio", "visual"))
    _, unimodal, fused = log_probs(model, both)
    out = model(both)
    paired = both.present.all(1)
    assert paired.tolist() == [True, False, True, True, True]
    torch.testing.assert_close(out[paired], fused[paired].log_softmax(-1), atol=ATOL, rtol=0)
    torch.testing.assert_close(out[1], unimodal[1, 0].log_softmax(-1), atol=ATOL, rtol=0)  # the audio head alone
    for condition, k in ((("audio",), 0), (("visual",), 1)):
        seen = apply_condition(batch, condition)
        head = model.heads[condition[0]](model.represent(seen, condition[0])).log_softmax(-1)
        has = seen.present[:, k]
        torch.testing.assert_close(model(seen)[has], head[has], atol=ATOL, rtol=0)
        assert not torch.allclose(model(seen)[has], fused[has].log_softmax(-1), atol=1e-3)


def test_combine_regression_values():
    model = build(REG_CTX).eval()
    batch = make_batch(REG_CTX, n=5)
    both = apply_condition(batch, ("audio", "visual"))
    _, unimodal, fused = log_probs(model, both)
    out = model(both)
    paired = both.present.all(1)
    torch.testing.assert_close(out[paired], fused[paired], atol=ATOL, rtol=0)
    torch.testing.assert_close(out[1], unimodal[1, 0], atol=ATOL, rtol=0)
    audio = apply_condition(batch, ("audio",))
    torch.testing.assert_close(model(audio), model.heads["audio"](model.represent(audio, "audio")), atol=ATOL, rtol=0)


@pytest.mark.parametrize("ctx", [CTX, REG_CTX])
def test_combine_with_two_of_three_modalities_averages_the_present_heads(ctx):
    model = build(ctx)
    g = torch.Generator().manual_seed(0)
    unimodal, fused = torch.randn(4, 3, ctx.n_outputs, generator=g), torch.randn(4, ctx.n_outputs, generator=g)
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.float32)
    out = model.combine(unimodal, fused, present)
    if ctx.task.name == "classification":
        probs = unimodal.softmax(-1)
        torch.testing.assert_close(out[0], fused[0].log_softmax(-1))
        torch.testing.assert_close(out[1], ((probs[1, 0] + probs[1, 2]) / 2).log())
        torch.testing.assert_close(out[2], unimodal[2, 1].log_softmax(-1))
        torch.testing.assert_close(out[3], ((probs[3, 0] + probs[3, 1]) / 2).log())
    else:
        torch.testing.assert_close(out[0], fused[0])
        torch.testing.assert_close(out[1], (unimodal[1, 0] + unimodal[1, 2]) / 2)
        torch.testing.assert_close(out[2], unimodal[2, 1])
        torch.testing.assert_close(out[3], (unimodal[3, 0] + unimodal[3, 1]) / 2)


# ================================================================================================ per-clip computation


def alone(batch: Batch, i: int) -> Batch:
    """Clip i on its own, cut to its own lengths."""
    x = {m: batch.x[m][i : i + 1, : max(int(batch.lengths[m][i]), 1)] for m in batch.modalities}
    return Batch(
        batch.modalities,
        x,
        {m: batch.lengths[m][i : i + 1] for m in batch.modalities},
        batch.present[i : i + 1],
        batch.y[i : i + 1],
        batch.rows[i : i + 1],
    )


def padded(batch: Batch, extra: int) -> Batch:
    """The batch with `extra` large random frames appended to every clip (beyond every length)."""
    g = torch.Generator().manual_seed(7)
    x = {m: torch.cat([v, 50 * torch.randn(v.shape[0], extra, v.shape[2], generator=g)], 1) for m, v in batch.x.items()}
    return batch.replace(x=x)


def batch_gap(model: VAVL, batch: Batch) -> float:
    """Largest change of a clip's eval-mode output between its batch and being alone, or with padding appended."""
    with torch.no_grad():
        together = model(batch)
        gaps = [(together[i] - model(alone(batch, i))[0]).abs().max().item() for i in range(len(batch.y))]
        gaps.append((model(padded(batch, 5)) - together).abs().max().item())
    return max(gaps)


@pytest.mark.parametrize("ctx", [CTX, REG_CTX])
def test_eval_predictions_do_not_depend_on_batch_neighbours_or_padding(ctx):
    model = build(ctx, dropout=0.2, head_dropout=0.2).eval()
    batch = paired_batch(ctx, n=5)
    for condition in all_conditions(ctx.modalities):
        assert batch_gap(model, apply_condition(batch, condition)) < ATOL
    batch = make_batch(ctx, n=5)  # clip 1 without visual frames
    assert batch_gap(model, batch) < ATOL
    reordered = subset(batch, torch.ones(5, dtype=torch.bool))
    reordered = reordered.replace(
        x={m: v.flip(0) for m, v in batch.x.items()},
        lengths={m: v.flip(0) for m, v in batch.lengths.items()},
        present=batch.present.flip(0),
        y=batch.y.flip(0),
        rows=batch.rows.flip(0),
    )
    with torch.no_grad():
        torch.testing.assert_close(model(reordered).flip(0), model(batch), atol=ATOL, rtol=0)


def test_the_released_codes_swapped_axes_would_fail_the_batch_check(monkeypatch):
    """Sanity check of `batch_gap`: with the released code's (T, B, D) input to a (B, T, D) Conformer, a clip's
    prediction depends on its batch neighbours, and the check above catches it."""
    model = build(dropout=0.0).eval()
    batch = paired_batch(n=5)
    assert batch_gap(model, batch) < ATOL
    original = Conformer.forward

    def swapped(self, x, lengths):
        time_major = x.transpose(0, 1)  # time becomes the batch axis, the clips the frames
        return original(self, time_major, torch.full((time_major.shape[0],), time_major.shape[1])).transpose(0, 1)

    monkeypatch.setattr(Conformer, "forward", swapped)
    assert batch_gap(model, batch) > 1e-3


# ================================================================================================ training steps


def test_steps_yield_visual_audio_fusion_losses_on_a_paired_batch():
    model = build(dropout=0.3).train()  # Conformer dropout on, heads deterministic
    batch = paired_batch()
    losses = list(model.steps(batch, batch))
    assert len(losses) == 3 and all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses)
    model.eval()
    with torch.no_grad():
        fused = model.fusion(torch.cat([model.represent(batch, m) for m in model.modalities], 1))
    # the fusion step: representations in eval mode (no Conformer dropout), the task loss of the fusion head
    torch.testing.assert_close(losses[2], torch.nn.functional.cross_entropy(fused, batch.y), atol=ATOL, rtol=0)
    losses[2].backward()  # its graph reaches the fusion head only
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {
        n for n, _ in model.named_parameters() if n.startswith("fusion.")
    }
    # the order: visual first, then audio (the official order), each its modality's loss
    model = build(dropout=0.0).eval()
    losses = list(model.steps(batch, batch))
    torch.testing.assert_close(losses[0], model.modality_loss(batch, "visual"))
    torch.testing.assert_close(losses[1], model.modality_loss(batch, "audio"))
    torch.testing.assert_close(list(update_steps(model, batch, batch)), losses)  # what train_stage steps on


def test_update_steps_of_a_model_without_steps_is_its_single_loss():
    torch.manual_seed(0)
    entry = {
        "method": "utt_fusion",
        "optim": OPTIM,
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.0,
        "encoder_pooling": "valid",
        "text_windows": "valid",
    }
    model = method_spec("utt_fusion").stages[0].build(validate_run("utt_fusion", entry), CTX, None).eval()
    batch = make_batch()
    losses = list(update_steps(model, batch, batch))
    assert len(losses) == 1
    torch.testing.assert_close(losses[0], model.loss(batch, batch)[0])


def test_steps_use_the_clips_that_have_each_modality():
    model = build().eval()
    batch = make_batch(n=5)  # clip 1 has no visual stream
    losses = list(model.steps(batch, batch))
    assert len(losses) == 3
    has_visual = batch.present[:, 1]
    torch.testing.assert_close(losses[0], model.modality_loss(subset(batch, has_visual), "visual"))
    torch.testing.assert_close(losses[1], model.modality_loss(batch, "audio"))
    paired = subset(batch, has_visual)
    _, _, fused = log_probs(model, paired)
    torch.testing.assert_close(losses[2], torch.nn.functional.cross_entropy(fused, paired.y), atol=ATOL, rtol=0)
    assert losses[0].item() != pytest.approx(model.modality_loss(batch, "visual").item())  # the subset matters


def test_steps_skip_the_visual_step_when_no_clip_has_visual():
    model = build().train()
    batch = make_batch(n=5)
    no_visual = batch.replace(
        present=batch.present & torch.tensor([True, False]),
        x={**batch.x, "visual": torch.zeros_like(batch.x["visual"])},
        lengths={**batch.lengths, "visual": torch.zeros(5, dtype=torch.long)},
    )
    losses = list(model.steps(no_visual, no_visual))
    assert len(losses) == 1  # the audio step only: no visual step, no paired clip for the fusion step
    losses[0].backward()
    reached = {n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if p.grad is not None}
    assert reached == {"branches.audio", "shared.shared", "norms.shared", "heads.audio", "reconstruction.audio"}


GROUPS = (
    "branches.audio",
    "branches.visual",
    "shared.shared",
    "norms.shared",
    "heads.audio",
    "heads.visual",
    "reconstruction.audio",
    "reconstruction.visual",
    "fusion",
)


def group_of(name: str) -> str:
    return next(g for g in GROUPS if name == g or name.startswith(g + "."))


def run_steps(model: VAVL, batch: Batch) -> list[dict]:
    """One optimiser step per yielded loss, each with a fresh Adam (as train_stage zeroes gradients to None):
    per step, the parameters its loss reached, those it changed, the buffers its forward pass and update changed
    and the train / eval mode of every module while its loss is stepped."""
    records, steps = [], model.steps(batch, batch)
    while True:
        before = {k: v.clone() for k, v in model.state_dict().items()}  # before the step's forward pass
        loss = next(steps, None)
        if loss is None:
            break
        params = dict(model.named_parameters())
        optimiser = torch.optim.Adam(params.values(), lr=0.01)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        reached = {n for n, p in params.items() if p.grad is not None}
        optimiser.step()
        after = model.state_dict()
        changed = {n for n in params if not torch.equal(before[n], after[n])}
        buffers = {n for n in before if n not in params and not torch.equal(before[n], after[n])}
        records.append(
            {
                "reached": reached,
                "changed": changed,
                "buffers": buffers,
                "modes": {name: module.training for name, module in model.named_modules()},
            }
        )
    return records


def test_each_step_updates_only_its_own_parameters():
    model = build(dropout=0.1, head_dropout=0.1).train()
    names = [n for n, _ in model.named_parameters()]
    visual, audio, fusion = run_steps(model, paired_batch())
    by_group = lambda names_: {group_of(n) for n in names_}  # noqa: E731
    # visual step: the visual branch, the shared stack and its norm, the visual heads; nothing of audio or fusion
    assert (
        by_group(visual["reached"])
        == by_group(visual["changed"])
        == {"branches.visual", "shared.shared", "norms.shared", "heads.visual", "reconstruction.visual"}
    )
    assert visual["reached"] == {n for n in names if group_of(n) in by_group(visual["reached"])}  # all of them
    assert by_group(audio["changed"]) == {
        "branches.audio",
        "shared.shared",
        "norms.shared",
        "heads.audio",
        "reconstruction.audio",
    }
    assert audio["reached"] == {n for n in names if group_of(n) in by_group(audio["reached"])}
    # fusion step: only the fusion head learns, and the running statistics of the frozen parts stay
    assert by_group(fusion["reached"]) == by_group(fusion["changed"]) == {"fusion"}
    assert fusion["reached"] == {n for n in names if n.startswith("fusion.")}
    assert fusion["buffers"] == set()
    assert visual["buffers"] and all(b.startswith(("branches.visual", "shared.")) for b in visual["buffers"])
    # while its loss is stepped, and after it, the model is back in train mode
    assert all(fusion["modes"].values())
    assert model.training and all(m.training for m in model.modules())


def test_steps_in_eval_mode_leave_the_model_in_eval_mode():
    model = build().eval()
    list(model.steps(paired_batch(), paired_batch()))
    assert not any(m.training for m in model.modules())


# ================================================================================================ ablations


def test_shared_false_builds_one_stack_per_modality():
    model = build(shared=False)
    assert set(model.shared) == set(model.norms) == {"audio", "visual"}
    assert model.shared["audio"] is not model.shared["visual"]
    assert all(len(stack.blocks) == ENTRY["shared_blocks"] for stack in model.shared.values())
    shared = build()
    stack = sum(p.numel() for p in shared.shared["shared"].parameters()) + sum(
        p.numel() for p in shared.norms["shared"].parameters()
    )
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(model) == total(shared) + stack
    # the visual step reaches the visual stack only
    batch = paired_batch()
    visual = next(model.train().steps(batch, batch))
    visual.backward()
    assert all(p.grad is None for p in model.shared["audio"].parameters())
    assert all(p.grad is not None for p in model.shared["visual"].parameters())
    assert torch.isfinite(model.eval()(batch)).all()


def test_residual_false_drops_the_connection_over_the_shared_stack():
    with_residual = build().eval()
    without = build(residual=False).eval()
    without.load_state_dict(with_residual.state_dict())  # same weights: only the connection differs
    batch = paired_batch()
    h, lengths = with_residual.branches["audio"](batch.x["audio"], batch.lengths["audio"])
    out = with_residual.shared["shared"](h, lengths)
    norm = with_residual.norms["shared"]
    torch.testing.assert_close(with_residual.represent(batch, "audio"), masked_mean(norm(out + h), lengths))
    torch.testing.assert_close(without.represent(batch, "audio"), masked_mean(norm(out), lengths))
    assert not torch.allclose(with_residual(batch), without(batch), atol=1e-4)


def test_rec_weight_zero_removes_the_reconstruction_term():
    batch = paired_batch()
    for weight, expected_weight in ((0.0, 0.0), (2.5, 2.5)):
        model = build(rec_weight=weight).eval()
        assert model.rec_weight == expected_weight
        for m in model.modalities:
            rep = model.represent(batch, m)
            task_loss = torch.nn.functional.cross_entropy(model.heads[m](rep), batch.y)
            reconstruction = torch.nn.functional.mse_loss(
                model.reconstruction[m](rep), masked_mean(batch.x[m], batch.lengths[m])
            )
            torch.testing.assert_close(model.modality_loss(batch, m), task_loss + expected_weight * reconstruction)
    model = build(rec_weight=0.0).train()
    next(model.steps(batch, batch)).backward()
    assert all(p.grad is None for p in model.reconstruction.parameters())


def test_rec_weight_auto_is_two_for_classification_one_for_regression():
    assert REC_WEIGHT_AUTO == {"classification": 2.0, "regression": 1.0}
    assert build(CTX).rec_weight == 2.0 and build(REG_CTX).rec_weight == 1.0
    assert build(CTX, rec_weight=3).rec_weight == 3.0


def test_regression_modality_loss_is_the_ccc_loss_plus_reconstruction():
    model = build(REG_CTX).eval()
    batch = paired_batch(REG_CTX)
    rep = model.represent(batch, "visual")
    expected = ccc_loss(model.heads["visual"](rep), batch.y) + 1.0 * torch.nn.functional.mse_loss(
        model.reconstruction["visual"](rep), masked_mean(batch.x["visual"], batch.lengths["visual"])
    )
    torch.testing.assert_close(model.modality_loss(batch, "visual"), expected)
    assert len(list(model.steps(batch, batch))) == 3


# ================================================================================================ subsample


def test_subsample_known_values_and_lengths():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 99.0, -99.0]])[..., None]  # clip 1: 3 valid
    out, lengths = subsample(x, torch.tensor([5, 3]), 2)
    assert out.shape == (2, 3, 1) and lengths.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == [1.5, 3.5, 5.0]  # the last group averages its one valid frame
    assert out[1, :, 0].tolist() == [15.0, 30.0, 0.0]  # padding never enters a mean and stays zero
    same, same_lengths = subsample(x, torch.tensor([5, 3]), 1)
    assert same is x and same_lengths.tolist() == [5, 3]


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_subsample_maps_lengths_to_their_ceiling_and_averages_valid_frames(factor):
    g = torch.Generator().manual_seed(factor)
    lengths = torch.tensor([0, 1, 2, 3, 4, 5, 7, 11])
    x = torch.randn(8, 11, 3, generator=g)
    out, new = subsample(x, lengths, factor)
    assert new.tolist() == [-(-n // factor) for n in lengths.tolist()]
    assert out.shape == (8, -(-11 // factor), 3)
    for i, n in enumerate(lengths.tolist()):
        for k in range(out.shape[1]):
            frames = x[i, k * factor : min((k + 1) * factor, n)]
            expected = frames.mean(0) if len(frames) else torch.zeros(3)
            torch.testing.assert_close(out[i, k], expected)
    # appending padding changes nothing
    more, _ = subsample(torch.cat([x, 50 * torch.randn(8, 6, 3, generator=g)], 1), lengths, factor)
    torch.testing.assert_close(more[:, : out.shape[1]], out)
    assert more[:, out.shape[1] :].abs().sum() == 0


def test_branch_subsamples_before_its_conformer():
    model = build(subsample=3).eval()
    batch = paired_batch()
    frames, lengths = model.branches["audio"](batch.x["audio"], batch.lengths["audio"])
    assert lengths.tolist() == [-(-n // 3) for n in batch.lengths["audio"].tolist()]
    assert frames.shape[1] == -(-batch.x["audio"].shape[1] // 3)


# ================================================================================================ the training loop


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_vavl_trains_through_fit_run_with_unpaired_clips(task, tiny_attribute_store, tiny_params, tmp_path):
    params = tiny_params(
        tiny_attribute_store, epochs=2, task=task, methods={"vavl": {"unpaired": {"visual": 0.25, "audio": 0.2}}}
    )
    run = resolved_run("vavl", params)
    assert run["entry"]["unpaired"] == {"visual": 0.25, "audio": 0.2} and run["task"] == task
    output = fit_run(run, 0, 0, tmp_path, show_progress=False)
    metric = "val_ua" if task == "classification" else "val_ccc_mean"
    history = output.history
    assert list(history["epoch"]) == [1, 2] and output.best_epochs == {"train": int(history[metric].idxmax()) + 1}
    assert np.isfinite(history[["train_loss", "val_loss", metric]].to_numpy()).all()
    assert (tmp_path / "fold0-seed0.pt").is_file()
    checkpoint = torch.load(tmp_path / "fold0-seed0.pt")
    assert checkpoint["method"] == "vavl" and checkpoint[metric] == pytest.approx(history[metric].max())
    test_rows = tiny_attribute_store.fold_indices(0)["test"]
    assert len(output.predictions) == 3 * len(test_rows)
    pred = output.predictions.filter(like="pred").to_numpy(dtype=float)
    assert np.isfinite(pred).all() and np.isfinite(output.predictions["loss"]).all()
    assert not output.robustness.empty
    if task == "classification":  # the same run again gives the same results (seeded, unpaired clips included)
        again = fit_run(run, 0, 0, tmp_path / "again", show_progress=False)
        pd.testing.assert_frame_equal(again.predictions, output.predictions)


def test_update_steps_drive_several_optimiser_steps_in_train_stage(tiny_store):
    from mer_core.train import train_stage

    splits = load_fold(tiny_store, 0)
    task = study_task("classification", tiny_store.manifest)
    context = ModelContext.from_manifest(tiny_store.manifest, task)
    entry = validate_run("vavl", {**ENTRY, "optim": dict(OPTIM, epochs=2, lr=0.005)})
    torch.manual_seed(0)
    stage = method_spec("vavl").stages[0]
    model = stage.build(entry, context, None)
    calls = []
    original = model.steps

    def counting(batch, full):
        for loss in original(batch, full):
            calls.append(len(batch.y))
            yield loss

    model.steps = counting
    result = train_stage(
        model,
        stage,
        stage.conditions(entry),
        entry["optim"],
        0.0,
        splits,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        "vavl",
        False,
    )
    n_batches = 2 * len(list(splits["train"].batches(16, torch.Generator().manual_seed(0))))
    assert len(calls) == 3 * n_batches  # the training split is paired except one clip: every batch has 3 steps
    assert list(result.history.columns) == [
        "stage",
        "epoch",
        "phase",
        "stopped",
        "lr",
        "train_loss",
        "val_loss",
        "val_ua",
    ]
    assert np.isfinite(result.history[["train_loss", "val_loss", "val_ua"]].to_numpy()).all()
    assert result.best_score == result.history["val_ua"].max()
