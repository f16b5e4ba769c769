"""Losses shared by the method families.

- `cmd_loss`: central moment discrepancy (Zellinger et al., ICLR 2017) as IF-MMIN's code computes it
  (docs/methods.md §3.1): the Euclidean norm of the difference of the batch means plus, for k = 2..K, the norm of
  the difference of the k-th central moments, with no range scaling. `span = b - a` restores the original
  CMD's scaling (term k divided by span^k) for features bounded in [a, b].
- `pairwise_cmd`: the mean CMD over every pair of modalities (IF-MMIN's CMD term, §3.1), each pair computed
  on the clips that have both modalities.
- `slot_mse`: the MSE between joint vectors (B, M x width), over the modality slots of the clips that have
  the modality (partly unpaired training data: a clip without video has no target for the video slot); equal to
  the plain MSE when every clip has every modality.
- `gaussian_kl`: the VAE's KL term (NMER stage 2, docs/methods.md §4.3), summed (official) or averaged; `vae_loss`:
  NMER's VAE loss, the reconstruction MSE (`slot_mse`) plus that KL.
- `denoise_term`: NMER stage 1's auxiliary term (docs/methods.md §4.2) on a denoising network's output, in the
  official form (the network's output added to the clean input and compared with that clean input, i.e. the
  mean square of the output) or as a real denoising loss.
"""

from __future__ import annotations

from itertools import combinations

import torch


def cmd_loss(x: torch.Tensor, y: torch.Tensor, moments: int = 5, span: float | None = None) -> torch.Tensor:
    """CMD between two batches of features (B_x, D) and (B_y, D); a scalar, 0 for identical distributions."""
    if moments < 1:
        raise ValueError(f"cmd_loss: moments must be >= 1, got {moments}")
    scale = 1.0 if span is None else float(span)
    mean_x, mean_y = x.mean(0), y.mean(0)
    total = torch.linalg.vector_norm(mean_x - mean_y) / scale
    centred_x, centred_y = x - mean_x, y - mean_y
    for k in range(2, moments + 1):
        difference = (centred_x**k).mean(0) - (centred_y**k).mean(0)
        total = total + torch.linalg.vector_norm(difference) / scale**k
    return total


def pairwise_cmd(
    features: list[torch.Tensor], present: torch.Tensor, moments: int = 5, span: float | None = None
) -> torch.Tensor:
    """Mean `cmd_loss` over the modality pairs of `features` (list of (B, D)); `present` (B, M) restricts each
    pair to the clips holding both modalities (pairs with fewer than two such clips count as 0)."""
    pairs = list(combinations(range(len(features)), 2))
    if not pairs:
        return features[0].new_zeros(())
    total = features[0].new_zeros(())
    for i, j in pairs:
        both = present[:, i] & present[:, j]
        if int(both.sum()) >= 2:
            total = total + cmd_loss(features[i][both], features[j][both], moments, span)
    return total / len(pairs)


def slot_mse(prediction: torch.Tensor, target: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the slots of (B, M x width) joint vectors where `has` (B, M) is True."""
    if bool(has.all()):
        return torch.nn.functional.mse_loss(prediction, target)
    mask = has.repeat_interleave(prediction.shape[1] // has.shape[1], dim=1).to(prediction.dtype)
    return (((prediction - target) ** 2) * mask).sum() / mask.sum().clamp(min=1)


KL_REDUCTIONS = ("sum", "mean")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2) (Kingma & Welling 2014, App. B).

    `sum`: over the batch and the latent dimensions, as NMER's VAE loss (docs/methods.md §4.3), so its weight against
    the (mean) reconstruction MSE grows with the batch size and the latent size; `mean`: averaged over both.
    """
    terms = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    raise ValueError(f"KL reduction must be one of {KL_REDUCTIONS}, got {reduction!r}")


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    has: torch.Tensor,
    reduction: str = "sum",
) -> torch.Tensor:
    """NMER's VAE loss (docs/methods.md §4.3): MSE(recon, target) over the slots of the clips that have the modality
    (`slot_mse`, the plain mean when every clip has every modality) + `gaussian_kl(mu, logvar, reduction)`."""
    return slot_mse(recon, target, has) + gaussian_kl(mu, logvar, reduction)


DENOISE_TERMS = ("official", "denoiser")


def denoise_term(
    output: torch.Tensor, noised: torch.Tensor, clean: torch.Tensor, form: str = "official"
) -> torch.Tensor:
    """NMER stage 1's auxiliary term on a network's `output` for the `noised` version of `clean` (same shapes).

    `official`: MSE(clean, output + clean), as `utt_shared_002_model.py` computes it; it equals mean(output^2), so
    it only pulls the network's output to zero and trains no denoiser. `denoiser`: MSE(noised + output, clean),
    the network's output read as the correction that turns x_t back into x_0.
    """
    if form == "official":
        return torch.nn.functional.mse_loss(output + clean, clean)
    if form == "denoiser":
        return torch.nn.functional.mse_loss(noised + output, clean)
    raise ValueError(f"denoise term must be one of {DENOISE_TERMS}, got {form!r}")
