"""NMER's noise scheduler (Domiss.NoiseScheduler, docs/methods.md §4.1): DDPM-style forward noising of frame features.

    x̃ = sqrt(ᾱ_t) · x + sqrt(1 − ᾱ_t) · ε,   ᾱ_t = ∏_{i ≤ t} (1 − β_i),   t ~ U{0, …, T − 1}

The number of steps T is the **noise intensity** (NMER's figure sweeps T = 20 … 100): with the `scaled_linear`
β schedule from 0.01 to 0.5, the mean signal coefficient E_t[sqrt(ᾱ_t)] falls from 0.61 (T = 20) to 0.32
(T = 100). NMER draws one t per call, i.e. per batch and modality, shared by the batch; `per_sample` draws
one t per clip instead. ε is Gaussian, or Impulse: ±1 on a fraction `impulse_density` of the entries (NMER:
`occur_freq` 0.7 zeroes 70%, so about 30% are ±1), 0 elsewhere.

Noise *replaces* a missing modality (NMER protocol): the clip's real frames of a modality the condition
removes are noised and given to the model, which is not told which modality was noised; present modalities
are unchanged. Deviations from the official scheduler: the Impulse mask is drawn on the tensor's device (the
official code calls `.cuda()` and so needs a GPU); every draw comes from an explicit `torch.Generator` (the
official evaluation noise is unseeded), and the draws are made on the CPU so that a seed gives the same noise on
CPU and GPU; frames beyond a clip's length (padding) stay zero.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [nmer] Impulse noise. Official: the mask is made with `.cuda()`, so it needs a GPU. Here: drawn on the CPU
  from a seeded generator and moved to the device. Why: runs anywhere; the same noise on CPU and GPU. Restore: bug
  fixed. Test: tests/test_noise_scheduler.py::test_replace_missing_impulse_on_cpu_gives_the_exact_impulse_values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from mer_core.data.batches import Batch

SCHEDULES = ("scaled_linear", "linear", "cosine")
NOISE_TYPES = ("gaussian", "impulse")


def betas(schedule: str, steps: int, beta_start: float = 0.01, beta_end: float = 0.5) -> torch.Tensor:
    """The β_1..β_T of a schedule (float64): `scaled_linear` (linspace of sqrt β, squared; NMER's default),
    `linear`, or `cosine` (Nichol & Dhariwal 2021, diffusers' `squaredcos_cap_v2`, β capped at 0.999; it
    ignores beta_start / beta_end)."""
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if schedule == "cosine":

        def alpha_bar(s: torch.Tensor) -> torch.Tensor:
            return torch.cos((s / steps + 0.008) / 1.008 * math.pi / 2) ** 2

        s = torch.arange(steps, dtype=torch.float64)
        return (1 - alpha_bar(s + 1) / alpha_bar(s)).clamp(max=0.999)
    raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class NoiseScheduler:
    """Forward noising with T = `steps` (the noise intensity); see the module docstring."""

    type: str = "gaussian"
    steps: int = 100
    schedule: str = "scaled_linear"
    beta_start: float = 0.01
    beta_end: float = 0.5
    impulse_density: float = 0.3
    per_sample: bool = False

    def __post_init__(self):
        if self.type not in NOISE_TYPES:
            raise ValueError(f"unknown noise type {self.type!r}; allowed: {', '.join(NOISE_TYPES)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        betas(self.schedule, 1)  # validates the schedule name

    @classmethod
    def from_params(cls, block: dict, **overrides) -> "NoiseScheduler":
        """From a validated params block (`mer_core.params.methods.NoiseParams`: keys as the fields)."""
        return cls(**{**block, **overrides})

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0 … T − 1 (float64)."""
        return torch.cumprod(1 - betas(self.schedule, self.steps, self.beta_start, self.beta_end), 0)

    def signal_fraction(self) -> float:
        """E_t[sqrt(ᾱ_t)] under uniform t: the mean weight of the clean signal in x̃."""
        return float(self.alphas_cumprod.sqrt().mean())

    def sample_t(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Steps for a batch of n clips: one shared t (NMER) or one per clip (`per_sample`)."""
        t = torch.randint(0, self.steps, (n if self.per_sample else 1,), generator=generator)
        return t.expand(n)

    def sample_noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """ε of `shape` (on the CPU): N(0, 1), or ±1 with probability `impulse_density` and 0 otherwise."""
        eps = torch.randn(shape, generator=generator)
        if self.type == "impulse":
            keep = torch.rand(shape, generator=generator) < self.impulse_density
            eps = torch.sign(eps) * keep
        return eps

    def add_noise(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x̃ = sqrt(ᾱ_t) x + sqrt(1 − ᾱ_t) ε for x of shape (B, ...) and steps t of shape (B,)."""
        abar = self.alphas_cumprod[t.cpu()].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        eps = self.sample_noise(tuple(x.shape), generator).to(x.dtype)
        return abar.sqrt().to(x.device) * x + (1 - abar).sqrt().to(x.device) * eps.to(x.device)

    def replace_missing(self, batch: Batch, full: Batch, generator: torch.Generator) -> Batch:
        """`batch` (a condition applied to `full`) with each removed modality replaced by its noised frames.

        A modality is noised for the clips that have it in `full` but not in `batch`; other clips keep
        `batch`'s frames. One t is drawn per modality (and per clip with `per_sample`), as NMER's scheduler does
        per call. The noised clips count as present: the model receives the frames without being told.
        """
        removed = full.present & ~batch.present
        x = dict(batch.x)
        for i, m in enumerate(batch.modalities):
            rows = removed[:, i]
            t = self.sample_t(len(rows), generator)
            if not rows.any():
                continue
            inside = torch.arange(full.x[m].shape[1], device=rows.device)[None, :] < full.lengths[m][:, None]
            noised = self.add_noise(full.x[m], t, generator) * inside[..., None]
            x[m] = torch.where(rows[:, None, None], noised, batch.x[m])
        return batch.replace(x=x, present=batch.present | removed)

    def label(self) -> str:
        return f"{self.type} T={self.steps}"
