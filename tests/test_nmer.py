"""NMER (mer_core.methods.nmer, docs/methods.md §4): its layers, its KL term, both stages, and the training loop."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
from fakes import CTX, make_batch, masked_slot_mse
from helpers import run_method
from torch import nn
from torch.nn import functional as F

from mer_core.conditions import apply_condition
from mer_core.config import ConfigError, resolve_runs
from mer_core.layers import EVAL_NOISE_SEED, ConditionalDenoiser, ConditionalVAE, timestep_embedding
from mer_core.losses import gaussian_kl, pairwise_cmd
from mer_core.methods.lookup import method_spec
from mer_core.methods.nmer import DENOISER_SCHEDULE, NMER, InvariantSpecific, NMERPretrain
from mer_core.noise import NoiseScheduler
from mer_core.params.methods import CATALOG
from mer_core.params.methods import NMER as NMERParams
from mer_core.schema import check
from mer_core.train import subnetworks, training_view


@pytest.fixture
def entry(tiny_store, tiny_params) -> dict:
    """The tiny `methods.nmer` entry of conftest (hidden 8, latent 4, one VAE layer of 2 heads)."""
    return copy.deepcopy(resolve_runs(tiny_params(tiny_store, epochs=1))["nmer"]["entry"])


def stages(entry: dict, ctx=CTX, **changes):
    """(stage-1 model, stage-2 model) built through the registry as the training loop builds them."""
    torch.manual_seed(0)
    entry = check(NMERParams, {**entry, **changes}, "methods.nmer").model_dump(mode="json")
    spec = method_spec("nmer")
    first = spec.stages[0].build(entry, ctx, None)
    return first, spec.stages[1].build(entry, ctx, first)


def pretrain_block(entry: dict, **changes) -> dict:
    return {**entry["pretrain"], **changes}


# ================================================================================================ layers


def test_timestep_embedding_shape_bounds_and_known_values():
    t = torch.tensor([0, 1, 5, 99, 999])
    emb = timestep_embedding(t, 16)
    assert emb.shape == (5, 16) and emb.dtype == torch.float32
    assert emb.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(8), torch.zeros(8)]))  # t = 0: cos 0, sin 0
    # the first frequency is 1: cos(t), sin(t)
    torch.testing.assert_close(emb[:, 0], t.float().cos())
    torch.testing.assert_close(emb[:, 8], t.float().sin())
    # each (cos, sin) pair lies on the unit circle
    torch.testing.assert_close(emb[:, :8] ** 2 + emb[:, 8:] ** 2, torch.ones(5, 8))
    distinct = torch.cdist(emb, emb) + torch.eye(5)
    assert (distinct > 1e-3).all()  # different steps, different embeddings


def test_timestep_embedding_odd_dim_is_zero_padded():
    emb = timestep_embedding(torch.tensor([3, 7]), 7)
    assert emb.shape == (2, 7)
    assert emb[:, -1].abs().sum() == 0
    torch.testing.assert_close(emb[:, :6], timestep_embedding(torch.tensor([3, 7]), 6))
    assert timestep_embedding(torch.arange(4), 32).shape == (4, 32)


def test_conditional_denoiser_shape_and_residual_form():
    torch.manual_seed(0)
    net = ConditionalDenoiser(6, 5, hidden=12, time_dim=8)
    x, c, t = torch.randn(4, 6), torch.randn(4, 5), torch.tensor([0, 10, 500, 999])
    out = net(x, t, c)
    assert out.shape == (4, 6) and torch.isfinite(out).all()
    assert net.net[0].in_features == 6 + 5 + 8
    assert not torch.allclose(out, x)
    last = net.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    torch.testing.assert_close(net(x, t, c), x)  # x_hat_0 = x_t + correction; no correction -> x_t


def test_conditional_denoiser_reads_the_condition_and_the_step():
    torch.manual_seed(0)
    net = ConditionalDenoiser(6, 5, hidden=12)
    x, t = torch.randn(3, 6), torch.tensor([1, 2, 3])
    c = torch.randn(3, 5, requires_grad=True)
    out = net(x, t, c)
    out.pow(2).sum().backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        assert not torch.allclose(net(x, t, c), net(x, t + 100, c))
        assert not torch.allclose(net(x, t, c), net(x, t, c + 1))
        # per clip: a clip's output does not depend on the others
        torch.testing.assert_close(net(x, t, c)[1:2], net(x[1:2], t[1:2], c[1:2]))


def vae(
    attention: str = "per_clip", output: str = "sigmoid", seed: int = 0, eval_latent: str = "mean", **kw
) -> ConditionalVAE:
    torch.manual_seed(seed)
    args = {"layers": 2, "heads": 2, "ffn": 16, "decoder_hidden": 12, **kw}
    return ConditionalVAE(6, 4, 3, output=output, attention=attention, eval_latent=eval_latent, **args)


def test_conditional_vae_shapes_and_output_ranges():
    x, c = torch.randn(5, 6) * 3, torch.randn(5, 4) * 3
    model = vae()
    recon, mu, logvar = model(x, c)
    assert recon.shape == (5, 6) and mu.shape == (5, 3) and logvar.shape == (5, 3)
    assert ((recon >= 0) & (recon <= 1)).all()
    assert model.decoder[0].in_features == 3 + 4 and model.mu.in_features == 10
    linear = vae(output="linear").eval()
    with torch.no_grad():
        linear.decoder[-1].weight.zero_()
        linear.decoder[-1].bias.fill_(5.0)
        sigmoid = vae().eval()
        sigmoid.decoder[-1].weight.zero_()
        sigmoid.decoder[-1].bias.fill_(5.0)
        torch.testing.assert_close(linear(x, c)[0], torch.full((5, 6), 5.0))  # unbounded
        torch.testing.assert_close(sigmoid(x, c)[0], torch.full((5, 6), torch.sigmoid(torch.tensor(5.0)).item()))


def test_conditional_vae_argument_errors():
    with pytest.raises(ValueError, match="heads"):
        ConditionalVAE(5, 4, 3, heads=2)  # width 9
    with pytest.raises(ValueError, match="output"):
        ConditionalVAE(6, 4, 3, heads=2, output="tanh")
    with pytest.raises(ValueError, match="attention must be one of"):
        ConditionalVAE(6, 4, 3, heads=2, attention="faithful")
    with pytest.raises(ValueError, match="eval_latent must be one of"):
        ConditionalVAE(6, 4, 3, heads=2, eval_latent="mode")
    ConditionalVAE(5, 3, 2, heads=8, layers=1)  # width 8: fine


def test_conditional_vae_eval_latent_mean_uses_mu_and_training_samples():
    model = vae(eval_latent="mean")
    x, c = torch.randn(5, 6), torch.randn(5, 4)
    model.eval()
    with torch.no_grad():
        a, mu, logvar = model(x, c)
        b, mu2, _ = model(x, c)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(mu, mu2)
        torch.testing.assert_close(a, model.decoder(torch.cat([mu, c], 1)).sigmoid())  # z = mu
    model.train()
    torch.manual_seed(1)
    first = model(x, c)[0]
    second = model(x, c)[0]
    assert not torch.allclose(first, second)


def test_conditional_vae_eval_sampling_is_deterministic_and_leaves_the_global_generator_alone():
    """`eval_latent: sample` (official): z = mu + sigma eps in eval too, eps from a generator seeded afresh at each
    call, so two calls agree, the global generator is not consumed, and z is not mu."""
    model = vae(eval_latent="sample").eval()
    x, c = torch.randn(5, 6), torch.randn(5, 4)
    state = torch.get_rng_state()
    with torch.no_grad():
        a, mu, logvar = model(x, c)
        b = model(x, c)[0]
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(EVAL_NOISE_SEED))
        expected = model.decoder(torch.cat([mu + eps * (0.5 * logvar).exp(), c], 1)).sigmoid()
        at_mean = model.decoder(torch.cat([mu, c], 1)).sigmoid()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, expected)
    assert (a - at_mean).abs().max() > 1e-4
    assert torch.equal(torch.get_rng_state(), state)


def test_conditional_vae_clips_are_independent_unless_attention_runs_across_the_batch():
    """Each clip is its own one-token sequence; `attention="across_batch"` passes the 2-D batch as the official
    code does, one sequence of B tokens, so attention mixes the clips of a batch (the bug the switch reproduces)."""
    x, c = torch.randn(6, 6), torch.randn(6, 4)
    model = vae().eval()
    with torch.no_grad():
        together = model(x, c)[0]
        alone = torch.cat([model(x[k : k + 1], c[k : k + 1])[0] for k in range(6)])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
        perm = torch.tensor([5, 3, 0, 1, 4, 2])
        torch.testing.assert_close(model(x[perm], c[perm])[0], together[perm], atol=1e-5, rtol=1e-5)
        others = x.clone()
        others[1:] = torch.randn(5, 6) * 5
        torch.testing.assert_close(model(others, c)[0][0], together[0], atol=1e-5, rtol=1e-5)

    faithful = vae(attention="across_batch").eval()
    faithful.load_state_dict(model.state_dict())
    with torch.no_grad():
        base = faithful(x, c)[0]
        changed = faithful(others, c)[0]
        assert (base[0] - changed[0]).abs().max() > 1e-4  # clip 0's output moves with the other clips
        single = faithful(x[:1], c[:1])[0]
        torch.testing.assert_close(single, together[:1], atol=1e-5, rtol=1e-5)  # one clip: the same computation
        assert (faithful(x[:2], c[:2])[0][0] - together[0]).abs().max() > 1e-4


def test_conditional_vae_gradients_reach_encoder_and_condition():
    model = vae().train()
    x = torch.randn(4, 6, requires_grad=True)
    c = torch.randn(4, 4, requires_grad=True)
    recon, mu, logvar = model(x, c)
    (recon.sum() + gaussian_kl(mu, logvar)).backward()
    assert x.grad.abs().sum() > 0 and c.grad.abs().sum() > 0
    assert model.mu.weight.grad.abs().sum() > 0 and model.logvar.weight.grad.abs().sum() > 0


# ================================================================================================ gaussian_kl


def test_gaussian_kl_known_values():
    zeros = torch.zeros(3, 4)
    assert gaussian_kl(zeros, zeros).item() == 0.0 and gaussian_kl(zeros, zeros, "mean").item() == 0.0
    assert gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(0.5)
    assert gaussian_kl(torch.ones(3, 4), torch.zeros(3, 4)).item() == pytest.approx(6.0)  # 0.5 per element
    # sigma^2 = 2, mu = 0: -1/2 (1 + ln 2 - 2)
    logvar = torch.full((2, 2), torch.log(torch.tensor(2.0)).item())
    assert gaussian_kl(torch.zeros(2, 2), logvar, "mean").item() == pytest.approx(0.5 * (1 - 0.6931471805599453))


def test_gaussian_kl_sum_is_mean_times_numel_and_nonnegative():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 5, generator=g) * 2, torch.randn(7, 5, generator=g)
    total, mean = gaussian_kl(mu, logvar), gaussian_kl(mu, logvar, "mean")
    assert total.item() == pytest.approx(mean.item() * 35, rel=1e-5)
    assert total.item() > 0 and total.dim() == 0
    assert gaussian_kl(mu[:3], logvar[:3]) < total  # the sum grows with the batch


def test_gaussian_kl_gradient():
    mu = torch.tensor([[0.5, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 1.0]], requires_grad=True)
    gaussian_kl(mu, logvar).backward()
    torch.testing.assert_close(mu.grad, mu.detach())  # d/dmu = mu
    torch.testing.assert_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1))  # d/dlogvar = (sigma^2 - 1) / 2
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_gaussian_kl_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        gaussian_kl(torch.zeros(2), torch.zeros(2), "none")


# ================================================================================================ stage 1


def test_registered_stages_and_their_protocol(entry):
    spec = method_spec("nmer")
    first, second = spec.stages
    assert (first.name, first.train_conditions, first.select_on, first.key) == ("pretrain", "full", "full", "pretrain")
    assert (second.name, second.train_conditions, second.select_on, second.key) == ("train", "missing", "missing", None)
    assert first.params(entry) is entry["pretrain"] and second.params(entry) is entry
    assert first.training_noise(entry) is None
    noise = second.training_noise(entry)
    assert isinstance(noise, NoiseScheduler)
    assert (noise.type, noise.steps, noise.schedule, noise.per_sample) == ("gaussian", 100, "scaled_linear", False)
    impulse = second.training_noise({**entry, "noise": {**entry["noise"], "type": "impulse", "steps": 20}})
    assert (impulse.type, impulse.steps, impulse.impulse_density) == ("impulse", 20, 0.3)
    official = NMERParams().model_dump()
    assert official["optim"]["epochs"] == 40 and official["latent"] == 64
    assert {"optim", "latent", "pretrain.optim"} <= set(CATALOG["nmer"].paper_keys)
    assert "noise" not in CATALOG["nmer"].paper_keys  # the paper preset never changes the training noise


def test_entry_is_validated(entry):
    assert check(NMERParams, entry, "methods.nmer").model_dump(mode="json") == entry
    with pytest.raises(
        ConfigError,
        match=r"^methods\.nmer\.noise\.type: got 'salt'; Input should be 'gaussian' or "
        r"'impulse'",
    ):
        check(NMERParams, {**entry, "noise": {**entry["noise"], "type": "salt"}}, "methods.nmer")
    with pytest.raises(ConfigError, match=r"^methods\.nmer\.decoder_output: got 'tanh'"):
        check(NMERParams, {**entry, "decoder_output": "tanh"}, "methods.nmer")
    with pytest.raises(ConfigError, match=r"^methods\.nmer\.pretrain\.denoise_weight: got -1\.0"):
        check(NMERParams, {**entry, "pretrain": pretrain_block(entry, denoise_weight=-1.0)}, "methods.nmer")


def test_pretrain_forward_shapes(entry):
    first, _ = stages(entry)
    assert isinstance(first, NMERPretrain) and isinstance(first.encoders, InvariantSpecific)
    batch = make_batch(n=5)
    logits = first(batch)
    assert logits.shape == (5, CTX.n_outputs) and torch.isfinite(logits).all()
    specific, invariant = first.encoders(batch)
    assert specific.shape == (5, 16) and [f.shape for f in invariant] == [(5, 8), (5, 8)]
    assert first.classifier.hidden[0].in_features == 32  # [specific (2 x 8), S(invariant) (2 x 8)]
    assert isinstance(first.denoiser, ConditionalDenoiser) and first.denoiser.net[-1].out_features == 16
    # two encoders per modality, distinct
    assert set(first.encoders) == {f"{m}_{k}" for m in CTX.modalities for k in ("invariant", "specific")} | {"shared"}
    assert first.encoders["audio_invariant"] is not first.encoders["audio_specific"]
    # gradients are clipped per encoder, as the official nets are (docs/methods.md §1.3)
    groups = subnetworks(first)
    encoder_groups = [g for g in groups if any(p is q for p in g for q in first.encoders.parameters())]
    assert len(encoder_groups) == 2 * len(CTX.modalities) + 1


def test_pretrain_loss_is_ce_plus_cmd_plus_the_weighted_denoising_loss(entry):
    first, _ = stages(entry, pretrain=pretrain_block(entry, denoise_weight=3.0, cmd_weight=2.0))
    first.eval()
    batch = make_batch(n=6)
    torch.manual_seed(11)
    loss, logits = first.loss(batch, batch)
    specific, invariant = first.encoders(batch)
    torch.testing.assert_close(logits, first(batch))
    torch.manual_seed(11)  # the denoiser draws t and the noise from the global RNG (seeded per run)
    denoise = first.denoising_loss(specific, torch.cat(invariant, 1))
    expected = F.cross_entropy(logits, batch.y) + 2.0 * pairwise_cmd(invariant, batch.present) + 3.0 * denoise
    torch.testing.assert_close(loss, expected)
    assert denoise > 0


def test_pretrain_without_denoiser(entry):
    first, _ = stages(entry, pretrain=pretrain_block(entry, denoise_weight=0.0))
    assert first.denoiser is None
    assert not any(k.startswith("denoiser") for k in first.state_dict())
    first.eval()
    batch = make_batch(n=6)
    loss, logits = first.loss(batch, batch)
    _, invariant = first.encoders(batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.y) + pairwise_cmd(invariant, batch.present))
    only_ce, _ = stages(entry, pretrain=pretrain_block(entry, denoise_weight=0.0, cmd_weight=0.0))
    only_ce.eval()
    loss, logits = only_ce.loss(batch, batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch.y))


def test_pretrain_denoising_gradients_reach_the_denoiser_and_the_encoders(entry):
    first, _ = stages(entry, pretrain=pretrain_block(entry, cmd_weight=0.0))
    batch = make_batch(n=6)
    specific, invariant = first.encoders(batch)
    first.denoising_loss(specific, torch.cat(invariant, 1)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in first.denoiser.parameters())
    assert first.denoiser.net[-1].weight.grad.abs().sum() > 0
    for kind in ("specific", "invariant"):
        grads = [p.grad for m in CTX.modalities for p in first.encoders[f"{m}_{kind}"].parameters()]
        assert sum(g.abs().sum() for g in grads if g is not None) > 0
    assert all(p.grad is None for p in first.classifier.parameters())


def test_denoiser_schedule_is_the_official_ddpm_one():
    assert (DENOISER_SCHEDULE.steps, DENOISER_SCHEDULE.schedule) == (1000, "scaled_linear")
    assert (DENOISER_SCHEDULE.beta_start, DENOISER_SCHEDULE.beta_end) == (0.00085, 0.012)
    assert DENOISER_SCHEDULE.per_sample and DENOISER_SCHEDULE.type == "gaussian"


# ================================================================================================ stage 2


def test_stage2_students_start_from_stage1_and_the_teacher_is_frozen(entry):
    first, model = stages(entry)
    assert isinstance(model, NMER)
    for a, b, c in zip(first.encoders.parameters(), model.encoders.parameters(), model.teacher.parameters()):
        assert torch.equal(a, b) and torch.equal(a, c)
        assert a.data_ptr() != b.data_ptr() and b.data_ptr() != c.data_ptr()  # copies, not shared
    assert all(p.requires_grad for p in model.encoders.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert model.training and model.encoders.training and model.vae.training
    assert not model.teacher.training and not any(m.training for m in model.teacher.modules())
    model.eval()
    assert not model.teacher.training and not model.encoders.training


def test_stage2_sizes_and_batchnorm_classifier(entry):
    _, model = stages(entry)
    width = 2 * entry["hidden"]
    assert model.vae.mu.in_features == 2 * width and model.vae.mu.out_features == entry["latent"]
    assert model.vae.decoder[-1].out_features == width
    assert len(model.vae.encoder.layers) == entry["vae_layers"]
    assert model.vae.encoder.layers[0].self_attn.num_heads == entry["vae_heads"]
    assert model.vae.output == "sigmoid" and (model.vae.attention, model.vae.eval_latent) == ("per_clip", "sample")
    assert model.classifier.hidden[0].in_features == width
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.classifier.modules())
    _, official = stages(entry, vae_attention="across_batch", eval_latent="mean", decoder_output="linear")
    assert (official.vae.attention, official.vae.eval_latent, official.vae.output) == ("across_batch", "mean", "linear")


def test_stage2_forward_and_backward(entry):
    _, model = stages(entry)
    model.train()
    full = make_batch(n=6)
    seen = NoiseScheduler("gaussian", 100).replace_missing(
        apply_condition(full, ("audio",)), full, torch.Generator().manual_seed(0)
    )
    assert model(seen).shape == (6, CTX.n_outputs)
    loss, logits = model.loss(seen, full)
    assert logits.shape == (6, CTX.n_outputs) and loss.dim() == 0 and torch.isfinite(loss)
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    for part in (*model.encoders.values(), model.vae, model.classifier):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    with torch.no_grad():  # a plain gradient step (creating a torch optimiser costs seconds on first use)
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model.teacher.parameters(), model.encoders.parameters()))


def test_stage2_loss_is_the_weighted_sum_of_its_terms(entry):
    _, model = stages(entry, ce_weight=2.0, invariant_weight=3.0, vae_weight=0.5)
    model.eval()  # no dropout, z = mu, BatchNorm running statistics: every term is deterministic
    full = make_batch(n=6)
    seen = apply_condition(full, ("visual",))
    loss, logits = model.loss(seen, full)
    x, c = model.encode(seen)
    recon, mu, logvar = model.vae(x, c)
    torch.testing.assert_close(logits, model.classifier(recon)[0])
    torch.testing.assert_close(logits, model(seen))
    x_target, invariant = model.teacher(full)  # the teacher reads the clean, full input
    c_target = torch.cat(invariant, 1)
    # clip 1 has no visual stream: its visual slots have no teacher target (partly unpaired data)
    expected = (
        2.0 * F.cross_entropy(logits, full.y)
        + 3.0 * masked_slot_mse(c, c_target, full.present)
        + 0.5 * (masked_slot_mse(recon, x_target, full.present) + gaussian_kl(mu, logvar, "sum"))
    )
    torch.testing.assert_close(loss, expected)
    # the teacher's view differs from the student's (the student sees the condition)
    assert not torch.allclose(x, x_target)


def test_stage2_loss_with_only_ce_or_only_the_invariant_term(entry):
    full = make_batch(n=6)
    seen = apply_condition(full, ("audio",))
    _, ce_only = stages(entry, invariant_weight=0.0, vae_weight=0.0)
    ce_only.train()  # stochastic z and dropout: the loss is still the CE of the logits it returns
    loss, logits = ce_only.loss(seen, full)
    torch.testing.assert_close(loss, F.cross_entropy(logits, full.y))

    _, inv_only = stages(entry, ce_weight=0.0, vae_weight=0.0)
    inv_only.eval()
    loss, _ = inv_only.loss(seen, full)
    _, c = inv_only.encode(seen)
    torch.testing.assert_close(loss, masked_slot_mse(c, torch.cat(inv_only.teacher(full)[1], 1), full.present))


def test_stage2_loss_with_only_the_vae_term_or_none(entry):
    full = make_batch(n=6)
    seen = apply_condition(full, ("audio",))
    _, vae_only = stages(entry, ce_weight=0.0, invariant_weight=0.0, kl_reduction="mean")
    vae_only.eval()
    loss, _ = vae_only.loss(seen, full)
    recon, mu, logvar = vae_only.vae(*vae_only.encode(seen))
    torch.testing.assert_close(
        loss, masked_slot_mse(recon, vae_only.teacher(full)[0], full.present) + gaussian_kl(mu, logvar, "mean")
    )

    _, zero = stages(entry, ce_weight=0.0, invariant_weight=0.0, vae_weight=0.0)
    assert zero.loss(seen, full)[0].item() == 0.0

    _, full_model = stages(entry)
    full_model.eval()
    with_all = full_model.loss(seen, full)[0]
    _, no_vae = stages(entry, vae_weight=0.0)
    no_vae.eval()
    assert with_all > no_vae.loss(seen, full)[0]  # MSE + KL are non-negative and here positive


def test_stage2_kl_sum_grows_with_the_batch_mean_does_not(entry):
    _, model = stages(entry, ce_weight=0.0, invariant_weight=0.0)
    model.eval()
    small, large = make_batch(n=4, seed=1), make_batch(n=12, seed=1)
    _, mu_s, lv_s = model.vae(*model.encode(small))
    _, mu_l, lv_l = model.vae(*model.encode(large))
    assert gaussian_kl(mu_l, lv_l, "sum") > 2 * gaussian_kl(mu_s, lv_s, "sum")
    assert gaussian_kl(mu_l, lv_l, "mean") < 3 * gaussian_kl(mu_s, lv_s, "mean")


# ================================================================================================ training view


def test_training_view_with_noise_noises_instead_of_zero_filling(entry):
    noise = method_spec("nmer").stages[1].training_noise(entry)
    full = make_batch(n=40, seed=3)
    zero_filled = training_view(full, "missing", torch.Generator().manual_seed(0))
    noised = training_view(full, "missing", torch.Generator().manual_seed(0), noise)
    both = full.present.all(1)
    assert both.sum() > 10
    # without noise, every clip with both modalities loses one (zero-filled, absent)
    assert not zero_filled.present[both].all(1).any()
    for i, m in enumerate(full.modalities):
        gone = full.present[:, i] & ~zero_filled.present[:, i]
        assert zero_filled.x[m][gone].abs().sum() == 0
    # with noise, every clip keeps all its modalities, the removed ones noised
    assert torch.equal(noised.present, full.present)
    removed = 0
    for i, m in enumerate(full.modalities):
        for j in range(len(full.y)):
            if not full.present[j, i]:
                assert noised.x[m][j].abs().sum() == 0
            elif torch.equal(noised.x[m][j], full.x[m][j]):
                continue  # kept clean
            else:
                removed += 1
                assert noised.x[m][j].abs().sum() > 0
    assert removed == int(both.sum())  # exactly one modality noised per clip that has both
    assert training_view(full, "full", torch.Generator(), noise) is full


# ================================================================================================ end to end


def test_run_method_trains_both_stages_and_is_reproducible(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=1, folds=[0])
    params["robustness"].update(noise_types=["impulse"], intensities=[20])
    outputs = []
    for k in range(2):
        out, ckpt = tmp_path / f"out{k}", tmp_path / f"ckpt{k}"
        summary = run_method("nmer", params, out, ckpt)
        assert set(summary["best_epochs"]) == {"pretrain", "train"} and summary["method"] == "nmer"
        written = json.loads((out / "summary.json").read_text())
        assert written["best_epochs"] == {"pretrain": [1], "train": [1]}
        assert list(written["conditions"]) == ["a", "v", "av", "pooled", "mean"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["noise_wa"] == pytest.approx(
            pd.read_csv(out / "robustness.csv").query("condition == 'pooled'")["wa"].mean(), abs=1e-5
        )
        assert sorted(p.name for p in ckpt.iterdir()) == ["fold0-seed0-pretrain.pt", "fold0-seed0.pt"]
        stage1 = torch.load(ckpt / "fold0-seed0-pretrain.pt")
        stage2 = torch.load(ckpt / "fold0-seed0.pt")
        assert (stage1["stage"], stage2["stage"]) == ("pretrain", "train")
        assert any(k.startswith("denoiser.") for k in stage1["state_dict"])
        assert any(k.startswith("vae.") for k in stage2["state_dict"]) and any(
            k.startswith("teacher.") for k in stage2["state_dict"]
        )
        robustness = pd.read_csv(out / "robustness.csv")
        assert set(robustness["noise"]) == {"impulse"} and set(robustness["level"]) == {20.0}
        # the full condition is not noised
        assert robustness["condition"].tolist() == ["a", "v", "pooled", "mean"]
        history = pd.read_csv(out / "history.csv")
        assert history["stage"].tolist() == ["pretrain", "train"]
        outputs.append(
            {
                name: (out / name).read_text()
                for name in ("predictions.csv", "robustness.csv", "history.csv", "metrics.json")
            }
        )
    assert outputs[0] == outputs[1]  # seeded training and seeded noise


def test_stage2_trains_when_a_training_batch_holds_a_single_clip(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=1, folds=[0], methods={"nmer": {"optim": {"batch_size": 59}}})
    assert len(tiny_store.fold_indices(0)["train"]) == 60
    params["robustness"].update(noise_types=[], signal=False)
    summary = run_method("nmer", params, tmp_path / "out", tmp_path / "ckpt")
    assert set(summary["best_epochs"]) == {"pretrain", "train"}
