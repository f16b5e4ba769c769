"""Golden tests, MMIN (AIM3-RUC/MMIN 69a45fe): our layers and our MMIN stage 2 against the official outputs."""

from __future__ import annotations

import torch

from golden.official import (
    CONTEXT,
    MODALITIES,
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
from mer_core.layers import LSTMEncoder, MLPClassifier, ResidualAE, TextCNN, masked_max
from mer_core.methods.baselines import UttFusion
from mer_core.methods.mmin import MMIN

LSTM_RULES = [("rnn.", "lstm.")]  # official LSTMEncoder.rnn -> our LSTMEncoder.lstm
TEXTCNN_RULES = [("conv1.", "convs.0."), ("conv2.", "convs.1."), ("conv3.", "convs.2."), ("embd.0.", "project.0.")]


def lstm_encoder(pooling: str = "valid") -> tuple[LSTMEncoder, dict]:
    fixture = load_fixture("mmin_lstm_encoder_maxpool")
    return load_official(LSTMEncoder(10, 16, pooling), fixture.params, LSTM_RULES), fixture


def textcnn(windows: str = "valid") -> tuple[TextCNN, dict, torch.Tensor]:
    """Our TextCNN with the official weights, the fixture, and each clip's length (its frames are nonzero up to
    it and zero after: the fixture pads with zero rows and stores no lengths)."""
    fixture = load_fixture("mmin_textcnn")
    model = load_official(TextCNN(12, channels=8, out_dim=16, windows=windows), fixture.params, TEXTCNN_RULES)
    lengths = (fixture.inputs["x"].abs().sum(-1) > 0).sum(1)
    return model, fixture, lengths


# ------------------------------------------------------------------------------------------------ encoders


def test_lstm_encoder_padded_pooling_matches_official():
    model, fixture = lstm_encoder("padded")
    with torch.no_grad():
        assert_matches(model(fixture.inputs["x"], fixture.inputs["lengths"]), fixture.outputs["embd"], "LSTM padded")
        assert_matches(model.lstm(fixture.inputs["x"])[0], fixture.aux["rnn_out"], "LSTM outputs")


def test_lstm_encoder_default_pools_valid_frames_only():
    """The documented deviation: our default max skips the padding, so it matches on the clips of full length
    and differs on the padded ones, where it is the max of the official LSTM outputs over the valid frames."""
    model, fixture = lstm_encoder()
    x, lengths, official = fixture.inputs["x"], fixture.inputs["lengths"], fixture.outputs["embd"]
    full = lengths == x.shape[1]
    assert 0 < int(full.sum()) < len(lengths)
    with torch.no_grad():
        ours = model(x, lengths)
    assert_matches(ours[full], official[full], "LSTM, clips of full length")
    assert_differs(ours[~full], official[~full], "LSTM, padded clips")
    assert_matches(ours, masked_max(fixture.aux["rnn_out"], lengths), "LSTM, max over the valid official outputs")


def test_textcnn_padded_windows_match_official():
    model, fixture, lengths = textcnn("padded")
    with torch.no_grad():
        assert_matches(model(fixture.inputs["x"], lengths), fixture.outputs["embd"], "TextCNN padded windows")


def test_textcnn_default_masks_windows_over_padding():
    model, fixture, lengths = textcnn()
    x, official = fixture.inputs["x"], fixture.outputs["embd"]
    full = lengths == x.shape[1]
    assert 0 < int(full.sum()) < len(lengths)
    with torch.no_grad():
        ours = model(x, lengths)
        assert_matches(model(x, torch.full_like(lengths, x.shape[1])), official, "TextCNN, lengths = T")
    assert_matches(ours[full], official[full], "TextCNN, clips of full length")
    assert_differs(ours[~full], official[~full], "TextCNN, padded clips")


# ------------------------------------------------------------------------------------------------ classifier


def test_fc_classifier_matches_official():
    fixture = load_fixture("mmin_fc_classifier")
    model = load_official(MLPClassifier(40, [16, 16], 4, dropout=0.5), fixture.params, classifier_rules("", ""))
    with torch.no_grad():
        logits, features = model(fixture.inputs["x"])
    assert_matches(logits, fixture.outputs["logits"], "logits")
    assert_matches(features, fixture.outputs["feat"], "penultimate features")


def test_fc_classifier_with_batchnorm_matches_official():
    fixture = load_fixture("mmin_fc_classifier_bn")
    model = load_official(
        MLPClassifier(40, [16, 16], 4, dropout=0.5, batchnorm=True), fixture.params, classifier_rules("", "")
    )
    with torch.no_grad():
        logits, features = model(fixture.inputs["x"])
    assert_matches(logits, fixture.outputs["logits"], "logits")
    assert_matches(features, fixture.outputs["feat"], "penultimate features")


# ------------------------------------------------------------------------------------------------ autoencoder


def test_mmin_residual_ae_matches_official():
    fixture = load_fixture("mmin_residual_ae")
    model = load_official(ResidualAE(48, [32, 16, 8], 5, "mmin"), fixture.params, residual_ae_rules("", ""))
    with torch.no_grad():
        recon, latents = model(fixture.inputs["x"])
    assert_matches(recon, fixture.outputs["recon"], "reconstruction")
    assert_matches(latents, fixture.outputs["latents"], "block latents")


# ------------------------------------------------------------------------------------------------ stage 2


def stage2_rules() -> list[tuple[str, str | None]]:
    """The official MMINModel (student net*, teacher pretrained_encoder.net*) onto our MMIN."""
    return [
        *encoder_rules("", "encoders."),
        *encoder_rules("pretrained_encoder.", "teacher."),
        ("pretrained_encoder.netC.", None),  # the teacher's classifier: not used by stage 2
        *classifier_rules("netC.", "classifier."),
        *residual_ae_rules("netAE.", "ae."),
        *residual_ae_rules("netAE_cycle.", "cycle_ae."),
    ]


def test_mmin_stage2_step0_losses_match_official():
    """Our MMIN (stage 2, built from a stage-1 UttFusion as in training) with the official weights gives the
    official embeddings, imagination, latents, logits, imagination target and the three weighted losses
    (CE 1, MSE 4, cycle 2) on every missing condition; the [A, L, V] joint vectors are reordered to ours."""
    fixture = load_fixture("mmin_stage2_loss_step0")
    stage1 = UttFusion(MODALITIES, CONTEXT, 16, [16, 16], 0.3)
    model = MMIN(stage1, {**STAGE2, "ce_weight": 1.0, "mse_weight": 4.0, "cycle_weight": 2.0})
    load_official(model, fixture.params, stage2_rules())
    reorder_residual_ae(model.ae, 16)
    reorder_residual_ae(model.cycle_ae, 16)
    full, batch = step0_batches(fixture)
    order, out = joint_order(16), fixture.outputs
    with torch.no_grad():
        h, imagination, latents, _ = model.imagine(batch)
        assert_matches(h, out["feat_fusion_miss"][:, order], "student embeddings of the masked input")
        assert_matches(model.imagination_target(batch, full), out["T_embds"][:, order], "imagination target")
        assert_matches(imagination, out["recon_fusion"][:, order], "imagination")
        assert_matches(latents, out["latent"], "block latents")
        assert_matches(model.cycle_ae(imagination)[0], out["recon_cycle"][:, order], "cycle reconstruction")
        assert_matches(model.classifier(latents)[0], out["logits"], "logits")
        base, _, _ = model.base_loss(batch, full)
        total, _ = model.loss(batch, full)
    assert_matches(base, out["loss_CE"] + out["loss_mse"], "CE + 4 x imagination MSE")
    assert_matches(total - base, out["loss_cycle"], "2 x cycle MSE")
    assert_matches(total, out["loss_total"], "total loss")


def test_mmin_stage2_name_map_covers_every_official_parameter():
    """The name map is complete: every official parameter is renamed or explicitly dropped, and the renamed
    set is exactly our MMIN's state."""
    fixture = load_fixture("mmin_stage2_loss_step0")
    model = MMIN(
        UttFusion(MODALITIES, CONTEXT, 16, [16, 16], 0.3),
        {**STAGE2, "ce_weight": 1.0, "mse_weight": 4.0, "cycle_weight": 2.0},
    )
    assert set(rename(fixture.params, stage2_rules())) == set(model.state_dict())
