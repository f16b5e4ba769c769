"""Golden tests, VAVL (ilucasgoncalves/VAVL c128439, its vendored sooftware Conformer): the attention module, a
Conformer block and the whole model against the official outputs, with our switches set to the released code's
behaviour (`attention_scale: d_model`, `positions: absolute_shift`, `pooling: padded`, `axes: official`)."""

from __future__ import annotations

import pytest
import torch

from golden.official import assert_differs, assert_matches, block_rules, load_fixture, load_official, rename
from mer_core.conformer import ConformerBlock, RelativeMultiHeadAttention
from mer_core.data.batches import Batch, subset
from mer_core.methods.registry import ModelContext
from mer_core.methods.vavl import VAVL
from mer_core.tasks import Task

OFFICIAL = {"attention_scale": "d_model", "positions": "absolute_shift", "pooling": "padded", "axes": "official"}
DEFAULT = {"attention_scale": "d_model", "positions": "relative", "pooling": "valid", "axes": "per_clip"}
ATTENTION_RULES = [
    ("layer_norm.", "norm."),
    ("attention.u_bias", "content_bias"),
    ("attention.v_bias", "position_bias"),
    ("attention.query_proj.linear.", "query."),
    ("attention.key_proj.linear.", "key."),
    ("attention.value_proj.linear.", "value."),
    ("attention.pos_proj.linear.", "position."),
    ("attention.out_proj.linear.", "output."),
]
# the fixture's avmodel widths: wav2vec2 16 (stub), faces 24, 1x1 conv 8, Conformer / MLP 32; 8 heads, 6 classes
CONTEXT = ModelContext(
    ("audio", "visual"), {"audio": 16, "visual": 24}, {}, Task("classification", tuple(f"c{k}" for k in range(6)))
)
ENTRY = {
    "projection": 8,
    "subsample": 1,
    "d_model": 32,
    "heads": 8,
    "ffn_expansion": 4,
    "kernel": 31,
    "branch_blocks": 3,
    "shared_blocks": 2,
    "dropout": 0.1,
    "head_dropout": 0.2,
    "shared": True,
    "residual": True,
    "rec_weight": "auto",
}
MODES = {"audio": "acoustic", "visual": "visual"}  # our modality -> the official feed_forward mode


def attention(scale: str, positions: str):
    fixture = load_fixture("vavl_conformer_mhsa")
    model = load_official(RelativeMultiHeadAttention(32, 8, 0.1, scale, positions), fixture.params, ATTENTION_RULES)
    x = fixture.inputs["x"]
    with torch.no_grad():
        return model(x, torch.ones(x.shape[:2], dtype=torch.bool)), fixture


# ------------------------------------------------------------------------------------------------ attention


def test_attention_matches_official_with_official_switches():
    y, fixture = attention("d_model", "absolute_shift")
    assert_matches(y, fixture.outputs["y"], "MHSA, scores / sqrt(d_model), absolute positions + relative shift")


def test_attention_scaled_by_sqrt_d_head_is_the_fixtures_diagnostic_not_the_official_output():
    """`attention_scale: d_head` reproduces the fixture's sqrt(d_head) diagonstic call and so differs from the
    official output: a model that divided by sqrt(d_head) would fail the test above."""
    y, fixture = attention("d_head", "absolute_shift")
    assert_matches(y, fixture.aux["y_if_scaled_by_sqrt_d_head"], "MHSA scaled by sqrt(d_head)")
    assert_differs(y, fixture.outputs["y"], "MHSA scaled by sqrt(d_head)")


def test_attention_default_relative_positions_differ_from_official():
    """The documented deviation: exact relative distances instead of absolute positions through the shift."""
    y, fixture = attention("d_model", "relative")
    assert_differs(y, fixture.outputs["y"], "MHSA with exact relative distances")


# ------------------------------------------------------------------------------------------------ block


def test_conformer_block_matches_official():
    """A whole block (half-step FFNs, MHSA, convolution module with a bias-free depthwise conv and eval-mode
    batch norm, final LayerNorm) with the official attention switches."""
    fixture = load_fixture("vavl_conformer_block")
    model = load_official(
        ConformerBlock(32, 8, 4, 31, 0.1, "d_model", "absolute_shift"), fixture.params, block_rules("", "")
    )
    x = fixture.inputs["x"]
    with torch.no_grad():
        assert_matches(model(x, torch.ones(x.shape[:2], dtype=torch.bool)), fixture.outputs["y"], "Conformer block")
    assert model.convolution.depthwise.bias is None


# ------------------------------------------------------------------------------------------------ whole model


def stack_rules(official: str, ours: str, blocks: int) -> list[tuple[str, str | None]]:
    """A vendored ConformerEncoder (`encoder.input_projection`, `encoder.layers.<i>`; its Conv2d subsampling is
    built but never called) onto our `Conformer` (`projection`, `blocks.<i>`)."""
    rules = [
        (f"{official}encoder.conv_subsample.", None),
        (f"{official}encoder.input_projection.0.linear.", f"{ours}projection.0."),
    ]
    for i in range(blocks):
        rules += block_rules(f"{official}encoder.layers.{i}.", f"{ours}blocks.{i}.")
    return rules


def head_rules(official: str, ours: str) -> list[tuple[str, str | None]]:
    """VAVL's MLP (projav1, ReLU, dropout, projav2, out_layer) onto our `head` Sequential (0, 3, 4)."""
    return [
        (f"{official}projav1.", f"{ours}0."),
        (f"{official}projav2.", f"{ours}3."),
        (f"{official}out_layer.", f"{ours}4."),
    ]


MODEL_RULES = [
    ("acoustic_model.conv_1d_a.", "branches.audio.project."),
    *stack_rules("acoustic_model.x_acoustic.", "branches.audio.conformer.", 3),
    ("visual_model.conv_1d_v.", "branches.visual.project."),
    *stack_rules("visual_model.x_visual.", "branches.visual.conformer.", 3),
    *stack_rules("shared_model.x_shared.", "shared.shared.", 2),
    ("shared_model.layer_norm.", "norms.shared."),
    *head_rules("MLP_a.", "heads.audio."),
    *head_rules("MLP_v.", "heads.visual."),
    *head_rules("weights.", "fusion."),
    *head_rules("MLP_rec_a.", "reconstruction.audio."),
    *head_rules("MLP_rec_v.", "reconstruction.visual."),
    ("MLP_av.", None),  # built and stored by the official wrapper, never used
]


def vavl(switches: dict):
    fixture = load_fixture("vavl_model_forward")
    model = VAVL(CONTEXT, {**ENTRY, **switches})
    assert set(rename(fixture.params, MODEL_RULES)) == set(model.state_dict())
    x = {"audio": fixture.inputs["xa"], "visual": fixture.inputs["xv"]}
    n = len(x["audio"])
    batch = Batch(
        CONTEXT.modalities,
        x,
        {m: torch.full((n,), v.shape[1]) for m, v in x.items()},
        torch.ones(n, 2, dtype=torch.bool),
        torch.zeros(n, dtype=torch.long),
        torch.arange(n),
    )
    return load_official(model, fixture.params, MODEL_RULES), batch, fixture


@pytest.mark.parametrize("modality", MODES)
def test_vavl_model_matches_official_with_official_switches(modality):
    """One modality's branch (in the official (T, B, D) layout), representation, prediction, reconstruction
    target and reconstruction, and the fusion head on both representations."""
    model, batch, fixture = vavl(OFFICIAL)
    out, mode = fixture.outputs, MODES[modality]
    with torch.no_grad():
        branch, _ = model.branches[modality](batch.x[modality], batch.lengths[modality])
        rep = model.represent(batch, modality)
        assert_matches(branch.transpose(0, 1), out[f"{mode}.branch_feats"], f"{mode} branch, (T, B, D)")
        assert_matches(rep, out[f"{mode}.rep"], f"{mode} representation")
        assert_matches(model.heads[modality](rep), out[f"{mode}.pred"], f"{mode} prediction")
        assert_matches(model.reconstruction_target(batch, modality), out[f"{mode}.target_mean"], "target")
        assert_matches(model.reconstruction[modality](rep), out[f"{mode}.rec_pred"], f"{mode} reconstruction")
        assert_matches(model.heads[modality](rep), out[f"both.pred_{modality[0]}"], f"both: {mode} prediction")
        fused = model.fusion(model.joint(batch))
    assert_matches(fused, out["both.pred_av"], "fusion head")


def test_vavl_official_axes_make_a_clip_depend_on_its_batch_and_ours_do_not():
    """The released code's axis swap: clip 0 fed alone gets another prediction (the fixture's
    `pred_clip0_alone`, which our official switches reproduce); our default axes give the same either way."""
    model, batch, fixture = vavl(OFFICIAL)
    alone = subset(batch, torch.arange(4) == 0)
    with torch.no_grad():
        official_alone = model.heads["audio"](model.represent(alone, "audio"))
        ours, _, _ = vavl(DEFAULT)
        ours_alone = ours.heads["audio"](ours.represent(alone, "audio"))
        ours_batch = ours.heads["audio"](ours.represent(batch, "audio"))
    assert_matches(official_alone, fixture.aux["acoustic.pred_clip0_alone"], "clip 0 alone, official axes")
    assert_differs(official_alone, fixture.outputs["acoustic.pred"][:1], "clip 0 alone vs in its batch")
    assert_matches(ours_alone, ours_batch[:1], "clip 0 alone vs in its batch, our axes")


def test_vavl_default_switches_differ_from_official():
    model, batch, fixture = vavl(DEFAULT)
    with torch.no_grad():
        pred = model.heads["audio"](model.represent(batch, "audio"))
    assert_differs(pred, fixture.outputs["acoustic.pred"], "acoustic prediction with our default switches")
