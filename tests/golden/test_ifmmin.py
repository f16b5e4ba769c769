"""Golden tests, IF-MMIN (ZhuoYulang/IF-MMIN f4d65fc, IF-IM autoencoder also at a4b6ef4): CMD, the shared
encoder, both IF-IM autoencoders and our IF-MMIN stage 2 against the official outputs."""

from __future__ import annotations

import pytest
import torch

from golden.official import (
    CONTEXT,
    STAGE2,
    assert_differs,
    assert_matches,
    classifier_rules,
    encoder_rules,
    joint_order,
    load_fixture,
    load_official,
    rename,
    reorder_residual_ae,
    residual_ae_rules,
    step0_batches,
)
from mer_core.layers import ResidualAE, SharedEncoder
from mer_core.losses import cmd_loss, pairwise_cmd
from mer_core.methods.mmin import IFMMIN, UttShared

SHARED_RULES = [("netshared.shared_1.", "net.0."), ("netshared.shared_2.", "net.2.")]  # Linear, LeakyReLU, x2
COMMIT = {"published": "a4b6ef4", "head": "f4d65fc"}  # our `ae_version` -> the official commit of autoencoder_2.py


# ------------------------------------------------------------------------------------------------ CMD


@pytest.mark.parametrize("moments", [1, 2])
def test_cmd_with_fewer_moments_matches_official(moments):
    fixture = load_fixture("ifmmin_cmd")
    got = cmd_loss(fixture.inputs["x1"], fixture.inputs["x2"], moments)
    assert_matches(got, fixture.outputs[f"cmd_K{moments}"], f"CMD, K = {moments}")


def test_cmd_default_is_the_official_five_moments():
    fixture = load_fixture("ifmmin_cmd")
    assert_matches(cmd_loss(fixture.inputs["x1"], fixture.inputs["x2"]), fixture.outputs["cmd_K5"], "CMD, default K")
    assert_differs(
        cmd_loss(fixture.inputs["x1"], fixture.inputs["x2"], 4), fixture.outputs["cmd_K5"], "CMD, K = 4", at_least=1e-4
    )


def test_pairwise_cmd_is_the_official_mean_over_the_three_pairs():
    fixture = load_fixture("ifmmin_cmd")
    features = [fixture.inputs[f"feat_shared_{letter}"] for letter in "AVL"]  # our order; the mean is symmetric
    present = torch.ones(len(features[0]), 3, dtype=torch.bool)
    assert_matches(pairwise_cmd(features, present), fixture.outputs["pairwise_cmd_loss"], "get_cmd_loss")


# ------------------------------------------------------------------------------------------------ shared encoder


def test_shared_encoder_matches_official():
    fixture = load_fixture("ifmmin_shared_encoder")
    model = load_official(SharedEncoder(128), fixture.params, SHARED_RULES)
    with torch.no_grad():
        assert_matches(model(fixture.inputs["x"]), fixture.outputs["feat"], "invariant features")


# ------------------------------------------------------------------------------------------------ IF-IM


def ifim(version: str):
    fixture = load_fixture("ifmmin_ifim_autoencoder")
    model = load_official(ResidualAE(48, [32, 16, 8], 5, f"ifim_{version}"), fixture.params, residual_ae_rules("", ""))
    with torch.no_grad():
        return model(fixture.inputs["x"], fixture.inputs["shared"]), fixture


@pytest.mark.parametrize("version", ["published", "head"])
def test_ifim_autoencoder_versions_match_their_official_commits(version):
    (recon, latents), fixture = ifim(version)
    commit = COMMIT[version]
    assert_matches(recon, fixture.outputs[f"{commit}.recon"], f"IF-IM {version} reconstruction")
    assert_matches(latents, fixture.outputs[f"{commit}.latents"], f"IF-IM {version} block latents")


def test_ifim_versions_differ_from_each_other_on_the_same_weights():
    """What the switch changes: the two commits' outputs on the same weights and inputs are far apart, so the
    version matters (the published one is our default, `methods.<run>.ae_version`)."""
    (published, _), fixture = ifim("published")
    (head, _), _ = ifim("head")
    assert_differs(published, head, "published vs HEAD reconstruction", at_least=0.1)
    assert_differs(published, fixture.outputs["f4d65fc.recon"], "published vs official HEAD", at_least=0.1)


def test_ifim_published_block_inputs_accumulate_the_invariant_features():
    """The a4b6ef4 recurrence: block k (1-based) reads x + k x H', so its latent is the block encoder of that;
    checked on the official weights block by block against the official latents."""
    fixture = load_fixture("ifmmin_ifim_autoencoder")
    model = load_official(ResidualAE(48, [32, 16, 8], 5, "ifim_published"), fixture.params, residual_ae_rules("", ""))
    x, shared = fixture.inputs["x"], fixture.inputs["shared"]
    official = fixture.outputs["a4b6ef4.latents"].split(8, dim=1)
    with torch.no_grad():
        for k, encoder in enumerate(model.encoders, start=1):
            assert_matches(encoder(x + k * shared), official[k - 1], f"block {k} latent")


# ------------------------------------------------------------------------------------------------ stage 2


def ifmmin(version: str, fixture) -> IFMMIN:
    """Our IF-MMIN stage 2 (built from a stage-1 UttShared, as in training) with the official weights; the AE in
    `version`, its [A, L, V] joint vectors reordered to ours."""
    stage1 = UttShared(CONTEXT, 16, [16, 16], 0.3, cmd_weight=1.0, cmd_moments=5, cmd_span=None)
    entry = {
        **STAGE2,
        "inject": True,
        "ae_version": version,
        "ce_weight": 1.0,
        "mse_weight": 1.0,
        "invariant_weight": 100.0,
    }
    model = IFMMIN(stage1, entry)
    rules = [
        *encoder_rules("", "encoders."),
        *encoder_rules("pretrained_encoder.", "teacher."),
        *[(f"netinvariant.{old}", f"shared.{new}") for old, new in SHARED_RULES],
        *[(f"pretrained_encoder.netShared.{old}", f"teacher_shared.{new}") for old, new in SHARED_RULES],
        ("pretrained_encoder.netC.", None),  # the teacher's classifier: not used by stage 2
        *classifier_rules("netC.", "classifier."),
        *residual_ae_rules("netAE.", "ae."),
    ]
    assert set(rename(fixture.params, rules)) == set(model.state_dict())
    load_official(model, fixture.params, rules)
    reorder_residual_ae(model.ae, 16)
    return model


@pytest.mark.parametrize("version", ["published", "head"])
def test_ifmmin_stage2_step0_losses_match_official(version):
    """Our IF-MMIN with each AE version gives that commit's imagination, latents, logits and losses (CE 1,
    imagination MSE 1, invariant MSE 100), and the version-independent embeddings, H', H and targets."""
    fixture = load_fixture("ifmmin_stage2_loss_step0")
    model = ifmmin(version, fixture)
    full, batch = step0_batches(fixture)
    order, out, commit = joint_order(16), fixture.outputs, COMMIT[version]
    with torch.no_grad():
        h, imagination, latents, invariant = model.imagine(batch)
        assert_matches(h, out["feat_fusion_miss"][:, order], "student embeddings of the masked input")
        assert_matches(invariant, out["invariant_miss"][:, order], "H' of the masked input")
        teacher = torch.cat([model.teacher_shared(e) for e in model.embed(model.teacher, full)], 1)
        assert_matches(teacher, out["invariant"][:, order], "H, the teacher's invariant features of the full input")
        assert_matches(model.imagination_target(batch, full), out["T_embds"][:, order], "imagination target")
        assert_matches(imagination, out[f"{commit}.recon_fusion"][:, order], "imagination")
        assert_matches(latents, out[f"{commit}.latent"], "block latents")
        assert_matches(model.classifier(latents)[0], out[f"{commit}.logits"], "logits")
        base, _, _ = model.base_loss(batch, full)
        total, _ = model.loss(batch, full)
    assert_matches(base, out[f"{commit}.loss_CE"] + out[f"{commit}.loss_mse"], "CE + imagination MSE")
    assert_matches(total - base, out[f"{commit}.loss_invariant"], "100 x invariant MSE")
    assert_matches(total, out[f"{commit}.loss_total"], "total loss")


def test_ifmmin_without_injection_is_not_either_official_autoencoder():
    """`inject: false` (MMIN's AE, the no-H' ablation) is neither commit's IF-IM: a model that forgot to inject
    H' would fail the tests above."""
    fixture = load_fixture("ifmmin_ifim_autoencoder")
    model = load_official(ResidualAE(48, [32, 16, 8], 5, "mmin"), fixture.params, residual_ae_rules("", ""))
    with torch.no_grad():
        recon, _ = model(fixture.inputs["x"])
    for commit in COMMIT.values():
        assert_differs(recon, fixture.outputs[f"{commit}.recon"], f"MMIN's AE vs IF-IM {commit}")
