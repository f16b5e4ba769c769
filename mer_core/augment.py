"""Training-time augmentation of frame features, per modality (a run's `augment: {audio: {...}, visual: {...}}`,
`mer_core.params.methods.Augment`).

The training loop (`mer_core.train.train_stage`) augments every training batch before it draws the batch's training
condition, never a validation or test batch; every draw comes from the unit's seeded generator, so a run is
reproducible. The frames are already standardised (`mer_core.data.batches`), so 0 is the training mean. Per clip, on
its frames t < length and only where the clip has the modality:

- `speed: [low, high]`: the frames resampled in time by a factor drawn uniformly from [low, high] (linear
  interpolation between neighbouring frames; a factor > 1 is faster speech, fewer frames), as speed perturbation
  (Ko et al., Interspeech 2015) does to the waveform; [1, 1] = off;
- `time_masks` masks of up to `time_mask` x length consecutive frames, and `freq_masks` masks of up to `freq_mask` x
  dim consecutive feature dimensions, set to 0 (SpecAugment, Park et al., Interspeech 2019, without time warping);
- `noise`: Gaussian noise of this standard deviation added to the frames.

All off by default: the official methods train on their inputs as they are.
"""

from __future__ import annotations

import torch

from mer_core.data.batches import Batch


def is_active(options: dict) -> bool:
    """Whether one modality's `augment` block changes anything."""
    return (
        list(options["speed"]) != [1.0, 1.0]
        or (options["time_masks"] > 0 and options["time_mask"] > 0)
        or (options["freq_masks"] > 0 and options["freq_mask"] > 0)
        or options["noise"] > 0
    )


def resample_time(x: torch.Tensor, length: int, factor: float) -> torch.Tensor:
    """The first `length` frames of `x` (T, D) resampled to round(length / factor) frames (at least 1) by linear
    interpolation at the times k x factor (the last frame repeated beyond the clip's end)."""
    n = max(1, int(round(length / factor)))
    if length <= 1:
        return x[:1].expand(n, -1).clone() if length == 1 else x[:0]
    t = (torch.arange(n, dtype=torch.float32, device=x.device) * factor).clamp(max=length - 1)
    low = t.floor().long().clamp(max=length - 2)
    frac = (t - low.float())[:, None].to(x.dtype)
    return x[low] * (1 - frac) + x[low + 1] * frac


def _speed(
    x: torch.Tensor, lengths: torch.Tensor, present: torch.Tensor, low: float, high: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, lengths) with each present clip resampled by its drawn factor, padded with zeros."""
    factors = low + (high - low) * torch.rand(len(lengths), generator=generator)
    clips = []
    for k in range(len(lengths)):
        n = int(lengths[k])
        clips.append(resample_time(x[k], n, float(factors[k])) if bool(present[k]) and n > 0 else x[k, :n])
    lengths = torch.tensor([len(c) for c in clips], dtype=lengths.dtype, device=lengths.device)
    out = x.new_zeros(len(clips), max(int(lengths.max()), 1), x.shape[2])
    for k, frames in enumerate(clips):
        out[k, : len(frames)] = frames
    return out, lengths


def _runs(
    count: int, size: torch.Tensor, widest: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, width) of one run per clip: width drawn from [0, widest], start from [0, size - width]."""
    width = (torch.rand(count, generator=generator) * widest).long()
    start = (torch.rand(count, generator=generator) * (size - width + 1).clamp(min=1)).long()
    return start, width


def augment_modality(
    x: torch.Tensor, lengths: torch.Tensor, present: torch.Tensor, options: dict, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, lengths) of one modality of a batch, augmented per clip as `options` (its `augment` block) says."""
    low, high = options["speed"]
    if (low, high) != (1.0, 1.0):
        x, lengths = _speed(x, lengths, present, low, high, generator)
    else:
        x = x.clone()
    steps = torch.arange(x.shape[1], device=x.device)
    inside = (steps[None, :] < lengths[:, None]) & present[:, None].to(x.device)  # (B, T)
    n_clips, cpu_lengths = len(lengths), lengths.cpu()
    if options["time_masks"] > 0 and options["time_mask"] > 0:
        for _ in range(options["time_masks"]):
            start, width = _runs(n_clips, cpu_lengths, options["time_mask"] * cpu_lengths, generator)
            start, width = start.to(x.device), width.to(x.device)
            masked = (steps[None, :] >= start[:, None]) & (steps[None, :] < (start + width)[:, None])
            x = x.masked_fill((masked & inside)[..., None], 0.0)
    if options["freq_masks"] > 0 and options["freq_mask"] > 0:
        dims = torch.arange(x.shape[2], device=x.device)
        size = torch.full((n_clips,), x.shape[2])
        for _ in range(options["freq_masks"]):
            start, width = _runs(n_clips, size, options["freq_mask"] * size, generator)
            start, width = start.to(x.device), width.to(x.device)
            band = (dims[None, :] >= start[:, None]) & (dims[None, :] < (start + width)[:, None])
            x = x.masked_fill(band[:, None, :] & inside[..., None], 0.0)
    if options["noise"] > 0:
        noise = torch.randn(tuple(x.shape), generator=generator).to(x.device, x.dtype) * options["noise"]
        x = x + noise * inside[..., None]
    return x, lengths


def augment_batch(batch: Batch, augment: dict, generator: torch.Generator) -> Batch:
    """`batch` with each modality augmented as the run's `augment` block says (the batch itself when it says
    nothing)."""
    active = [(k, m) for k, m in enumerate(batch.modalities) if m in augment and is_active(augment[m])]
    if not active:
        return batch
    x, lengths = dict(batch.x), dict(batch.lengths)
    for k, m in active:
        x[m], lengths[m] = augment_modality(batch.x[m], batch.lengths[m], batch.present[:, k], augment[m], generator)
    return batch.replace(x=x, lengths=lengths)
