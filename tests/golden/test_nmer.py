"""Golden tests, NMER (WooyoohL/Noise-robust_MER 3f8a131, VAE decoder of cd20f9a): the noise scheduler, the VAE
loss, the conditional VAE and the stage-1 losses against the official outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from golden.official import (
    MODALITIES,
    assert_differs,
    assert_matches,
    classifier_rules,
    joint_order,
    load_fixture,
    load_official,
)
from mer_core.data.batches import Batch
from mer_core.layers import ConditionalVAE
from mer_core.losses import denoise_term, gaussian_kl, pairwise_cmd, vae_loss
from mer_core.methods.nmer import NMERPretrain
from mer_core.methods.registry import ModelContext
from mer_core.noise.scheduler import NoiseScheduler, betas
from mer_core.tasks import Task

STEPS = (20, 40, 60, 80, 100)
NOISE_TYPES = {"gaussian": "Gaussian", "impulse": "Impulse"}  # ours -> the official noise_type
VAE_RULES = [
    ("encoder.layers.", "encoder.layers."),  # both nn.TransformerEncoder: the same layer names
    ("decoder.fc1.", "decoder.0."),
    ("decoder.fc2.", "decoder.2."),  # Linear, LeakyReLU, Linear
    ("fc_mu.", "mu."),
    ("fc_var.", "logvar."),
    ("fc_out.", None),
]  # built by the official ConditionVAE, never called


# ------------------------------------------------------------------------------------------------ scheduler


@pytest.mark.parametrize("steps", STEPS)
def test_noise_schedule_matches_official(steps):
    fixture = load_fixture("nmer_noise_schedule")
    scheduler = NoiseScheduler("gaussian", steps, "scaled_linear", 0.01, 0.5)
    assert_matches(betas("scaled_linear", steps, 0.01, 0.5), fixture.outputs[f"T{steps}.betas"], "betas")
    assert_matches(scheduler.alphas_cumprod, fixture.outputs[f"T{steps}.alphas_cumprod"], "alphas_cumprod")
    assert_matches(
        torch.tensor(scheduler.signal_fraction()),
        fixture.aux[f"T{steps}.mean_sqrt_alphas_cumprod"],
        "E_t[sqrt(abar_t)]",
    )


@pytest.mark.parametrize("kind", NOISE_TYPES)
def test_add_noise_matches_official_with_the_recorded_draws(kind, monkeypatch):
    """`replace_missing` noises the rows whose modality is missing (official `miss`) with the recorded step t and
    noise injected in place of our draws; `add_noise` of the present rows is the official `reverse`."""
    fixture = load_fixture("nmer_add_noise")
    official = NOISE_TYPES[kind]
    t, noise = fixture.aux[f"{official}.t"], fixture.aux[f"{official}.noise"]
    monkeypatch.setattr(NoiseScheduler, "sample_t", lambda self, n, generator: t.expand(n))
    monkeypatch.setattr(NoiseScheduler, "sample_noise", lambda self, shape, generator: noise)
    scheduler = NoiseScheduler(kind, 100, "scaled_linear", 0.01, 0.5, impulse_density=0.3)
    x, present = fixture.inputs["x"], fixture.inputs["miss_index"].bool()
    n, length = x.shape[:2]
    full = Batch(
        ("audio",),
        {"audio": x},
        {"audio": torch.full((n,), length)},
        torch.ones(n, 1, dtype=torch.bool),
        torch.zeros(n, dtype=torch.long),
        torch.arange(n),
    )
    seen = scheduler.replace_missing(full.replace(present=present[:, None]), full, torch.Generator())
    assert_matches(seen.x["audio"], fixture.outputs[f"{official}.miss"], f"{kind} noise on the missing rows")
    noised = scheduler.add_noise(x, t.expand(n), torch.Generator())
    assert_matches(noised[present], fixture.outputs[f"{official}.reverse"][present], f"{kind} noise, present rows")


# ------------------------------------------------------------------------------------------------ VAE loss


def test_vae_loss_matches_official_with_the_summed_kl():
    fixture = load_fixture("nmer_vae_loss")
    x, recon, mu, logvar = (fixture.inputs[k] for k in ("x", "x_recon", "mu", "logvar"))
    every = torch.ones(len(x), 1, dtype=torch.bool)
    assert_matches(vae_loss(recon, x, mu, logvar, every), fixture.outputs["total"], "VAE loss")
    assert_matches(
        vae_loss(recon, x, torch.zeros_like(mu), torch.zeros_like(logvar), every),
        fixture.outputs["recon_mse"],
        "reconstruction MSE",
    )
    assert_matches(gaussian_kl(mu, logvar), fixture.outputs["kl"], "KL, default reduction")
    assert_differs(gaussian_kl(mu, logvar, "mean"), fixture.outputs["kl"], "KL averaged instead of summed")


# ------------------------------------------------------------------------------------------------ conditional VAE


def cvae(attention: str, eval_latent: str = "sample"):
    fixture = load_fixture("nmer_cvae_forward")
    model = ConditionalVAE(
        24,
        24,
        8,
        layers=5,
        heads=8,
        ffn=16,
        decoder_hidden=16,
        output="sigmoid",
        attention=attention,
        eval_latent=eval_latent,
    )
    return load_official(model, fixture.params, VAE_RULES), fixture


def test_cvae_posterior_matches_official_with_attention_across_the_batch():
    model, fixture = cvae("across_batch")
    x, c, out = fixture.inputs["x"], fixture.inputs["c"], fixture.outputs
    with torch.no_grad():
        encoded = model.encode(x, c)
        _, mu, logvar = model(x, c)
    assert_matches(encoded, out["encoded"], "transformer output")
    assert_matches(mu, out["mu"], "mu")
    assert_matches(logvar, out["logvar"], "logvar")


def test_cvae_eval_sampling_matches_official_with_the_recorded_noise(monkeypatch):
    """In eval mode the official VAE still samples z = mu + eps exp(logvar / 2); with its eps injected, our
    `eval_latent: sample` gives its reconstruction (sigmoid of the cd20f9a decoder on [z, c])."""
    model, fixture = cvae("across_batch", "sample")
    monkeypatch.setattr(model, "noise", lambda mu: fixture.aux["eps"])
    with torch.no_grad():
        recon, _, _ = model(fixture.inputs["x"], fixture.inputs["c"])
        from_z = model.decoder(torch.cat([fixture.outputs["z"], fixture.inputs["c"]], 1)).sigmoid()
    assert_matches(recon, fixture.outputs["recon"], "reconstruction, z sampled in eval")
    assert_matches(from_z, fixture.outputs["recon"], "decoder on the official z")


def test_cvae_documented_defaults_differ_from_official_as_documented():
    """`vae_attention: per_clip` (each clip its own sequence) changes mu; `eval_latent: mean` reconstructs from
    z = mu, i.e. the official decoder on mu instead of on the sampled z."""
    per_clip, fixture = cvae("per_clip")
    x, c, out = fixture.inputs["x"], fixture.inputs["c"], fixture.outputs
    with torch.no_grad():
        assert_differs(per_clip(x, c)[1], out["mu"], "mu with one sequence per clip")
        mean, _ = cvae("across_batch", "mean")
        recon, mu, _ = mean(x, c)
        assert_matches(recon, mean.decoder(torch.cat([out["mu"], c], 1)).sigmoid(), "z = mu")
    assert_differs(recon, out["recon"], "reconstruction from z = mu")


# ------------------------------------------------------------------------------------------------ stage 1

WIDTH = 128  # NMER's encoder width: the stage-1 fixture needs it (its 64 x 384 batch is one 1 x 4 x 64 x 96 image)
LETTERS = {"audio": "A", "visual": "V", "text": "L"}


class Constant(nn.Module):
    """An encoder replaced by its recorded output, as in the fixture (it starts at the encoder outputs)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.value


class RecordedOutput(nn.Module):
    """The stand-in UNet's recorded output, (1, 4, 64, 96) read back as the batch's (64, 3 x 128) rows in our
    modality order: what our denoiser's `correction` returns in its place."""

    def __init__(self, sample: torch.Tensor):
        super().__init__()
        self.value = sample.reshape(64, 3 * WIDTH)[:, joint_order(WIDTH)]

    def correction(self, noised: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.value


def stage1(fixture, term: str = "official") -> tuple[NMERPretrain, Batch]:
    """Our NMER stage 1 with the official classifier and shared encoder, its six encoders returning the recorded
    embeddings and its denoiser the recorded network output; and the batch (labels; the frames are unused)."""
    context = ModelContext(MODALITIES, {m: 1 for m in MODALITIES}, {}, Task("classification", ("0", "1", "2", "3")))
    block = {
        "classifier": [16, 16],
        "dropout": 0.2,
        "cmd_weight": 1.0,
        "cmd_moments": 5,
        "cmd_span": None,
        "denoise_weight": 100.0,
        "denoise_hidden": 8,
        "denoise_term": term,
    }
    model = NMERPretrain(context, WIDTH, block)
    for modality, letter in LETTERS.items():
        model.encoders[f"{modality}_specific"] = Constant(fixture.inputs[f"emb_{letter}_spec"])
        model.encoders[f"{modality}_invariant"] = Constant(fixture.inputs[f"emb_{letter}_inv"])
    model.denoiser = RecordedOutput(fixture.outputs["unet_sample"])
    official_slots = (0, 2, 1, 3, 5, 4)  # [spec A, L, V | S(inv) A, L, V] -> ours [spec A, V, L | S(inv) A, V, L]
    columns = torch.cat([torch.arange(k * WIDTH, (k + 1) * WIDTH) for k in official_slots])
    params = dict(fixture.params)
    params["netC.module.0.weight"] = params["netC.module.0.weight"][:, columns]
    load_official(
        model,
        params,
        [
            *classifier_rules("netC.", "classifier."),
            ("netShared.netshared.shared_1.", "encoders.shared.net.0."),
            ("netShared.netshared.shared_2.", "encoders.shared.net.2."),
            ("netDiff.", None),
        ],
    )  # the stand-in UNet: its recorded output is injected instead
    n = len(fixture.inputs["label"])
    frames = {m: torch.zeros(n, 1, 1) for m in MODALITIES}
    batch = Batch(
        MODALITIES,
        frames,
        {m: torch.ones(n, dtype=torch.long) for m in MODALITIES},
        torch.ones(n, 3, dtype=torch.bool),
        fixture.inputs["label"],
        torch.arange(n),
    )
    return model, batch


def official_image(fixture) -> torch.Tensor:
    """The clean stage-1 "image": the specific embeddings [A, L, V] (64 x 384) read as 1 x 4 x 64 x 96."""
    spec = torch.cat([fixture.inputs[f"emb_{letter}_spec"] for letter in "ALV"], 1)
    return spec.reshape(1, 4, 64, 96)


def test_stage1_official_denoise_term_is_the_mean_square_of_the_net_output():
    fixture = load_fixture("nmer_stage1_aux_loss")
    output, noised, clean = fixture.outputs["unet_sample"], fixture.outputs["noisy_latents"], official_image(fixture)
    official = denoise_term(output, noised, clean, "official")
    assert_matches(official, fixture.outputs["loss_Diff"], "loss_Diff")
    assert_matches(official, fixture.aux["mean_sq_unet_sample"], "mean(UNet(x_t)^2)")
    assert_differs(
        denoise_term(output, noised, clean, "denoiser"),
        fixture.outputs["loss_Diff"],
        "the real denoising loss MSE(x_t + output, x_0)",
    )


def test_stage1_losses_match_official_from_the_embeddings():
    """From the recorded encoder outputs: our classifier on [specific, S(invariant)] gives the official logits and
    CE, our pairwise CMD the official CMD, and our stage-1 loss with the recorded network output injected the
    official total CE + CMD + 100 x mean(output^2) (`denoise_term: official`)."""
    fixture = load_fixture("nmer_stage1_aux_loss")
    model, batch = stage1(fixture)
    model.eval()
    with torch.no_grad():
        specific, invariant = model.encoders(batch)
        logits = model.classifier(torch.cat([specific, *invariant], 1))[0]
        total, _ = model.loss(batch, batch)
    assert_matches(logits, fixture.outputs["logits"], "logits")
    assert_matches(model.task.loss(logits, batch.y), fixture.outputs["loss_CE"], "CE")
    assert_matches(pairwise_cmd(invariant, batch.present, 5), fixture.outputs["loss_CMD"], "CMD")
    assert_matches(total, fixture.outputs["loss_total"], "CE + CMD + 100 x diffusion term")


def test_stage1_denoiser_term_changes_the_official_total():
    fixture = load_fixture("nmer_stage1_aux_loss")
    model, batch = stage1(fixture, "denoiser")
    with torch.no_grad():
        total, _ = model.eval().loss(batch, batch)
    assert_differs(total, fixture.outputs["loss_total"], "stage-1 total with the real denoising loss")
