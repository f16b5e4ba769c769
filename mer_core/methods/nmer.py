"""NMER (Liu et al., arXiv 2311.16114): noise-robust MER with a noise scheduler and a conditional VAE.

Two stages inside one run (docs/methods.md §4):

- Stage 1 (`pretrain`, NMER's `utt_shared_002`, §4.2): per modality an *invariant* and a *specific* encoder
  (LSTM / TextCNN); the shared encoder S maps the invariant embeddings to invariant features; the classifier
  reads [specific..., S(invariant)...]. Loss `CE + cmd_weight x CMD` (IF-MMIN's pairwise CMD) `+
  denoise_weight x` an auxiliary term: the specific features are noised at a random step of a DDPM schedule
  (1000 steps, β 0.00085–0.012, scaled_linear, as the official DDPMScheduler) and fed to a `ConditionalDenoiser`
  conditioned on the invariant features; the term on its output (`mer_core.losses.denoise_term`) is the official
  one, MSE(x_0, output + x_0) = mean(output²) (`pretrain.denoise_term: official`), or a real denoising loss,
  MSE(x_t + output, x_0) (`denoiser`). Trained on full modalities, epoch selected on full-modality validation UA.
- Stage 2 (`train`, `NMER_model`, §4.3): students (all encoders and S') from stage 1, a frozen teacher copy.
  x = [specific embeddings], c = [S'(invariant embeddings)] of the input, where the modalities a condition
  removes are *noised* by the `NoiseScheduler` (params `noise`; NMER: Gaussian or Impulse, T = 100), not
  zero-filled, in training and validation. `ConditionalVAE(x, c)` -> x̂; the classifier (BatchNorm on) reads
  x̂. Loss `ce_weight x CE + invariant_weight x MSE(c, c_teacher) + vae_weight x (MSE(x̂, x_teacher) + KL)`,
  where the teacher's targets come from the clean, full input. Trained on one condition with a modality
  missing per clip, selected on the validation UA of those conditions (noised, seeded). In evaluation the VAE
  samples z as in training (`eval_latent: sample`, official) or takes z = mu (`mean`); its transformer reads
  each clip as its own sequence (`vae_attention: per_clip`) or the batch as one sequence (`across_batch`,
  official).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [nmer] stage-1 auxiliary network. Official: a diffusers UNet on the batch reshaped into one 1 x 4 x 64 x 96
  image, which hard-wires the batch size to 64 (a partial batch crashes) and needs `diffusers`. Here: a small
  conditional MLP on each clip's features (`ConditionalDenoiser`), t drawn per clip; weight
  `pretrain.denoise_weight` (official 100; 0 disables it). Why: runs at any batch size without `diffusers`.
  Restore: not switchable. Test: tests/golden/test_nmer.py::test_stage1_losses_match_official_from_the_embeddings.
- [nmer] stage-1 auxiliary term. Official: the UNet's output is added to the clean input and compared with that
  clean input, so the term is mean(UNet(x_t)²) and trains no denoiser. Here: the same by default
  (`pretrain.denoise_term: official`); `denoiser` trains a real denoiser, MSE(x_t + output, x_0). Why: the
  official term as released; the real denoiser is the paper's description, a study variant. Restore:
  `methods.<run>.pretrain.denoise_term: official`.
  Test: tests/golden/test_nmer.py::test_stage1_official_denoise_term_is_the_mean_square_of_the_net_output.
- [nmer] VAE transformer input. Official: a 2-D (B, D) tensor, i.e. one unbatched sequence whose self-attention
  runs across the clips of a batch. Here: each clip is its own sequence. Why: a clip's prediction must not depend
  on its batch. Restore: `methods.<run>.vae_attention: across_batch`.
  Test: tests/golden/test_nmer.py::test_cvae_posterior_matches_official_with_attention_across_the_batch.
- [nmer] VAE decoder. Official: the class is missing at HEAD (NameError). Here: the decoder of commit cd20f9a,
  with its sigmoid output (`decoder_output: sigmoid`, although the LSTM embeddings lie in (-1, 1); `linear`
  removes it) and the KL summed over batch and latent dims (`kl_reduction: sum`; `mean` averages it). Why: the
  released code does not run. Restore: bug fixed.
  Test: tests/golden/test_nmer.py::test_cvae_eval_sampling_matches_official_with_the_recorded_noise.
- [nmer] evaluation latent. Official: z is sampled in evaluation too, from the unseeded global generator. Here:
  sampled as well by default (`eval_latent: sample`), with eps from a generator seeded afresh at every call;
  `eval_latent: mean` takes z = mu. Why: the official sampling, with predictions that stay deterministic.
  Restore: `methods.<run>.eval_latent: sample`.
  Test: tests/golden/test_nmer.py::test_cvae_eval_sampling_matches_official_with_the_recorded_noise.
- [nmer] VAE loss weight. Official: unweighted (1). Here: `vae_weight`, 1 by default. Why: ablations. Restore:
  `methods.<run>.vae_weight: 1`. Test: tests/test_nmer.py::test_stage2_loss_is_the_weighted_sum_of_its_terms.
- [nmer] scripts. Official: `train_miss.py` imports the deleted `draw.py`; `scripts/impu` calls a missing
  `train_miss_impu.py`. Here: one training loop; `noise.type: impulse` selects the second noise. Why: the
  released scripts do not run. Restore: bug fixed.
  Test: tests/test_nmer.py::test_run_method_trains_both_stages_and_is_reproducible.
- [nmer] test protocol. Official: a condition's missing modalities are noised in training, validation and test
  alike, never zero-filled. Here: noised in training and validation; the clean test grid zero-fills them for
  every method, and the robustness grid noises them, also for every method (`robustness.noise_types`). Why: every
  method is compared on the same inputs. Restore: not switchable.
  Test: tests/test_robustness.py::test_feature_noise_settings_are_types_times_intensities_in_order.

Beyond the paper: the task loss is the study task's (cross-entropy, or sum of 1 - CCC for regression), and a
training clip that lacks a modality (partly unpaired data) has no teacher target for its slots (`slot_mse`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mer_core.data.batches import Batch
from mer_core.layers import ConditionalDenoiser, ConditionalVAE, MLPClassifier, SharedEncoder, frozen, kaiming_init_
from mer_core.losses import denoise_term, pairwise_cmd, slot_mse, vae_loss
from mer_core.methods.baselines import Encoding, make_encoder
from mer_core.methods.mmin import RowCache
from mer_core.methods.registry import ModelContext
from mer_core.noise.scheduler import NoiseScheduler

# the official stage-1 DDPMScheduler of the auxiliary diffusion branch (docs/methods.md §4.2)
DENOISER_SCHEDULE = NoiseScheduler("gaussian", 1000, "scaled_linear", 0.00085, 0.012, per_sample=True)


class InvariantSpecific(nn.ModuleDict):
    """NMER's six encoders and S: `<modality>_invariant` and `<modality>_specific` (LSTM / TextCNN) per modality
    and `shared`. A ModuleDict, so that gradients are clipped per encoder as the official `net*`s are."""

    def __init__(self, ctx: ModelContext, hidden: int, encoding: Encoding = Encoding()):
        nets = {
            f"{m}_{kind}": make_encoder(m, ctx.dims[m], hidden, encoding)
            for m in ctx.modalities
            for kind in ("invariant", "specific")
        }
        super().__init__({**nets, "shared": SharedEncoder(hidden)})
        self.modalities = ctx.modalities

    def forward(self, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x = [specific embeddings] (B, M x hidden) and the invariant features [S(e_m)] per modality."""
        specific = torch.cat([self[f"{m}_specific"](batch.x[m], batch.lengths[m]) for m in self.modalities], 1)
        invariant = [self["shared"](self[f"{m}_invariant"](batch.x[m], batch.lengths[m])) for m in self.modalities]
        return specific, invariant


class NMERPretrain(nn.Module):
    """NMER's stage 1 (docs/methods.md §4.2): CE + CMD + the auxiliary term on the conditional denoiser's output."""

    def __init__(self, ctx: ModelContext, hidden: int, block: dict, encoding: Encoding = Encoding()):
        super().__init__()
        self.modalities = ctx.modalities
        self.encoders = InvariantSpecific(ctx, hidden, encoding)
        width = hidden * len(ctx.modalities)
        self.task = ctx.task
        self.classifier = MLPClassifier(2 * width, block["classifier"], ctx.n_outputs, block["dropout"])
        self.denoiser = (
            ConditionalDenoiser(width, width, block["denoise_hidden"]) if block["denoise_weight"] > 0 else None
        )
        self.weights = {
            k: block[k] for k in ("cmd_weight", "cmd_moments", "cmd_span", "denoise_weight", "denoise_term")
        }

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: [specific..., S(invariant)...], (B, 2 x modalities x
        hidden) (docs/methods.md §4.2)."""
        specific, invariant = self.encoders(batch)
        return torch.cat([specific, *invariant], 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]

    def denoising_loss(self, specific: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The auxiliary term (`pretrain.denoise_term`) on the denoiser's output for the specific features noised
        at a random DDPM step."""
        t = DENOISER_SCHEDULE.sample_t(len(specific), None)
        noised = DENOISER_SCHEDULE.add_noise(specific, t, None)
        output = self.denoiser.correction(noised, t.to(specific.device), condition)
        return denoise_term(output, noised, specific, self.weights["denoise_term"])

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        specific, invariant = self.encoders(batch)
        logits = self.classifier(torch.cat([specific, *invariant], 1))[0]
        w = self.weights
        loss = self.task.loss(logits, batch.y)
        if w["cmd_weight"] > 0:
            loss = loss + w["cmd_weight"] * pairwise_cmd(invariant, batch.present, w["cmd_moments"], w["cmd_span"])
        if self.denoiser is not None:
            loss = loss + w["denoise_weight"] * self.denoising_loss(specific, torch.cat(invariant, 1))
        return loss, logits


class NMER(nn.Module):
    """NMER's stage 2 (docs/methods.md §4.3): students from stage 1, conditional VAE, BatchNorm classifier on x̂."""

    def __init__(self, stage1: NMERPretrain, entry: dict):
        super().__init__()
        self.task = stage1.task
        self.encoders = copy.deepcopy(stage1.encoders)
        self.teacher = frozen(stage1.encoders)
        width = entry["hidden"] * len(stage1.modalities)
        self.vae = kaiming_init_(
            ConditionalVAE(
                width,
                width,
                entry["latent"],
                entry["vae_layers"],
                entry["vae_heads"],
                entry["vae_ffn"],
                entry["decoder_hidden"],
                entry["decoder_output"],
                entry["vae_attention"],
                entry["eval_latent"],
            )
        )
        self.classifier = kaiming_init_(
            MLPClassifier(width, entry["classifier"], self.task.n_outputs, entry["dropout"], batchnorm=True)
        )
        self.weights = {k: entry[k] for k in ("ce_weight", "invariant_weight", "vae_weight", "kl_reduction")}
        self.targets = RowCache()

    def train(self, mode: bool = True) -> "NMER":
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_targets(self, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's specific and invariant features of the clean, full input."""
        specific, invariant = self.teacher(full)
        return specific, torch.cat(invariant, 1)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        specific, invariant = self.encoders(batch)
        return specific, torch.cat(invariant, 1)

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: the conditional VAE's reconstruction x̂ of the
        specific embeddings, (B, modalities x hidden), with z sampled or z = mu in evaluation (`eval_latent`;
        docs/methods.md §4.3, forward pass 4-5)."""
        return self.vae(*self.encode(batch))[0]

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, c = self.encode(batch)
        recon, mu, logvar = self.vae(x, c)
        logits = self.classifier(recon)[0]
        w = self.weights
        with torch.no_grad():
            x_target, c_target = self.targets(full.rows.tolist(), lambda: self.teacher_targets(full))
        loss = w["ce_weight"] * self.task.loss(logits, batch.y)
        if w["invariant_weight"] > 0:
            loss = loss + w["invariant_weight"] * slot_mse(c, c_target, full.present)
        if w["vae_weight"] > 0:
            loss = loss + w["vae_weight"] * vae_loss(recon, x_target, mu, logvar, full.present, w["kl_reduction"])
        return loss, logits


def _build_pretrain(entry: dict, ctx: ModelContext, previous: None) -> nn.Module:
    return kaiming_init_(NMERPretrain(ctx, entry["hidden"], entry["pretrain"], Encoding.from_entry(entry)))


BUILDERS = {"nmer": {"pretrain": _build_pretrain, "train": lambda entry, ctx, stage1: NMER(stage1, entry)}}
