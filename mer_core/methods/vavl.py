"""VAVL (Goncalves et al., "Versatile audio-visual learning for emotion recognition"): one model for audio,
video or both, trained modality by modality (docs/methods.md §5).

Architecture (§5.2): per modality a 1x1 convolution (no bias) to `projection` channels, optionally averaged
over groups of `subsample` frames (the time subsampling a Conformer encoder normally starts with, which VAVL's
copy builds but leaves unused; 1 = none, official), and a modality-specific `Conformer` (`branch_blocks` blocks); a
**shared** Conformer stack (`shared_blocks`) that every modality goes through, with a residual connection over it,
LayerNorm and masked mean pooling -> the modality's utterance representation; per modality a prediction head and a
reconstruction head (target: the clip's mean input features); a fusion head on the concatenated representations. Heads:
Linear(d, d), ReLU, dropout, Linear(d, d/2), Linear(d/2, out), as the official MLPs (512 -> 512 -> 256 -> out).

Training (§5.3), per batch, three optimiser steps (`steps`): a visual step and an audio step (each: the task
loss of its unimodal head + `rec_weight` x MSE of its reconstruction, reaching its branch, the shared layers
and its heads), then a fusion step (representations computed in eval mode without gradient; only the fusion
head learns). A clip without a modality (partly unpaired data, `unpaired` run key) skips that modality's step,
and the fusion step uses the clips that have every modality. Predictions come from the same model: the
unimodal head when one modality is present, the fusion head when all are (with three modalities and two
present, the mean of the present unimodal heads' probabilities or values). Ablations: `shared: false` (each
modality gets its own copy of the "shared" stack: same depth, nothing shared), `residual: false`,
`rec_weight: 0`.

`rec_weight: auto` is the official 2 for classification, 1 for regression.

Switches to the released code's behaviour (each pinned by a golden test, tests/golden/test_vavl.py):
`attention_scale` (`d_model`, official and default | `d_head`), `positions` (`relative` | `absolute_shift`,
official; `mer_core.conformer`), `pooling` (`valid` | `padded`, official: the utterance representation and the
reconstruction target average over every frame of the padded batch) and `axes` (`per_clip` | `official`: the
(T, B, D) tensor fed to Conformers that read (B, T, D), so that each frame position is one sequence running over
the clips of the batch, unmasked). With all four official, the model computes what the released code computes.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [vavl] Conformer axes. Official: (T, B, D) tensors fed to a Conformer expecting (B, T, D), so attention and
  convolution run across the clips of a batch. Here: each clip over its own valid frames (masked attention,
  convolution and batch norm, `mer_core.conformer`). Why: a clip's prediction must not depend on its batch
  (tested). Restore: `methods.<run>.axes: official`.
  Test: tests/golden/test_vavl.py::test_vavl_model_matches_official_with_official_switches.
- [vavl] pooling and reconstruction target. Official: the utterance representation and the reconstruction target
  are means over every frame of the padded batch, padding included. Here: means over the clip's valid frames.
  Why: a clip's representation must not depend on the length of the longest clip in its batch. Restore:
  `methods.<run>.pooling: padded`.
  Test: tests/golden/test_vavl.py::test_vavl_model_matches_official_with_official_switches.
- [vavl] inputs. Official: wav2vec2-large-robust (top 12 layers removed, the authors' fine-tuned checkpoint) and
  EfficientNet-B2 face embeddings. Here: the feature store's frames (log-mel, OpenFace); optionally a frozen
  torchaudio wav2vec2 (`features.audio.extractor: wav2vec2`). Why: the checkpoints cannot be obtained offline.
  Restore: unavailable offline. Test: tests/test_wav2vec2_frontend.py::test_layer_truncation.
- [vavl] optimisers. Official: one Adam per module, each stepped by the steps that reach it; weight decay 5e-7;
  autocast. Here: one Adam, each step updating only the parameters its loss reaches; `train.weight_decay`; no
  autocast. Why: identical updates (Adam's state is per parameter); CPU-first. Restore: equivalent.
  Test: tests/test_vavl.py::test_each_step_updates_only_its_own_parameters.
- [vavl] model selection. Official: the fusion output's validation loss. Here: the fusion output's validation UA
  (mean CCC for regression). Why: the project's selection rule for every method. Restore: not switchable.
  Test: tests/test_vavl.py::test_registered_with_one_stage_and_official_settings.
- [vavl] data loading. Official: `shuffle=False`, no seed set. Here: shuffled length-sorted batches, seeded.
  Why: the project's batching; reproducible. Restore: not switchable.
  Test: tests/test_data.py::test_training_batches_are_bucketed_by_length.
- [vavl] size (study). Official: d_model 512, 3 + 2 blocks, 20 epochs, lr 5e-5, batch 32, no time subsampling.
  Here: d_model 32, 1 + 1 blocks, 8 epochs, lr 1e-3, batch 64, frames averaged in pairs. Why: the study's CPU
  budget. Restore: `train.preset: paper`.
  Test: tests/test_vavl.py::test_registered_with_one_stage_and_official_settings.
- [vavl] partly unpaired training. Official: not exercised (only paired clips are used). Here: the `unpaired` run
  key: a share of the clips keeps one modality and skips the other modality's step. Why: the paper's claim,
  tested in the extended study. Restore: no official counterpart.
  Test: tests/test_vavl.py::test_steps_skip_the_visual_step_when_no_clip_has_visual.
- [vavl] reconstruction target with face crops. Official: no face-crop frames (fixed EfficientNet embeddings).
  Here: with face-crop features the visual frames are learnt encodings (`mer_core.frame_encoder`) and the target,
  their mean, is held fixed in each step (no gradient). Why: the official target, the mean input features, is
  fixed; so is this one within a step. Restore: no official counterpart.
  Test: tests/test_frame_encoder.py::test_vavl_reconstruction_target_of_learnt_frames_takes_no_gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mer_core.conformer import Conformer, masked_mean, pointwise, subsample
from mer_core.data.batches import Batch, subset
from mer_core.methods.registry import ModelContext

STEP_ORDER = ("visual", "audio", "text")  # the official visual step first, then the audio step
POOLING = ("valid", "padded")  # means over the valid frames | over every frame of the padded batch (official)
AXES = ("per_clip", "official")  # each clip on its own axes | the released code's (T, B, D) swap
REC_WEIGHT_AUTO = {"classification": 2.0, "regression": 1.0}


def head(in_dim: int, width: int, out_dim: int, dropout: float) -> nn.Sequential:
    """VAVL's MLP: Linear(in, width), ReLU, dropout, Linear(width, width / 2), Linear(width / 2, out)."""
    return nn.Sequential(
        nn.Linear(in_dim, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, max(width // 2, 1)),
        nn.Linear(max(width // 2, 1), out_dim),
    )


def conformer_stack(in_dim: int, blocks: int, entry: dict) -> Conformer:
    """A Conformer of the entry's width, heads, kernel, dropout and attention switches."""
    return Conformer(
        in_dim,
        entry["d_model"],
        blocks,
        entry["heads"],
        entry["ffn_expansion"],
        entry["kernel"],
        entry["dropout"],
        entry["attention_scale"],
        entry["positions"],
    )


def run_conformer(conformer: Conformer, frames: torch.Tensor, lengths: torch.Tensor, axes: str) -> torch.Tensor:
    """(B, T, D) frames -> (B, T, d): each clip over its valid frames (`per_clip`), or, as the released code, the
    time-major (T, B, D) tensor read as (batch, time) (`official`): every frame position is one unmasked sequence
    over the clips of the batch."""
    if axes == "per_clip":
        return conformer(frames, lengths)
    time_major = frames.transpose(0, 1)
    everything = torch.full((time_major.shape[0],), time_major.shape[1], device=frames.device)
    return conformer(time_major, everything).transpose(0, 1)


class Branch(nn.Module):
    """A modality's 1x1 convolution (no bias), time subsampling and modality-specific Conformer (run on the axes
    `axes` says); returns the frames (B, T', d) and their lengths."""

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(self, in_dim: int, entry: dict):
        super().__init__()
        self.project = nn.Conv1d(in_dim, entry["projection"], 1, bias=False)
        self.factor, self.axes = entry["subsample"], entry["axes"]
        self.conformer = conformer_stack(entry["projection"], entry["branch_blocks"], entry)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = subsample(pointwise(self.project, x), lengths, self.factor)
        return run_conformer(self.conformer, frames, lengths, self.axes), lengths


class VAVL(nn.Module):
    """Modality branches, shared layers (+ residual, LayerNorm, masked mean), unimodal, reconstruction and
    fusion heads; `steps` trains it as the official code does, `forward` predicts for any condition."""

    def __init__(self, ctx: ModelContext, entry: dict):
        super().__init__()
        self.modalities, self.task = ctx.modalities, ctx.task
        d, dropout = entry["d_model"], entry["head_dropout"]
        self.branches = nn.ModuleDict({m: Branch(ctx.dims[m], entry) for m in self.modalities})
        stacks = ("shared",) if entry["shared"] else self.modalities
        self.shared = nn.ModuleDict({k: conformer_stack(d, entry["shared_blocks"], entry) for k in stacks})
        self.norms = nn.ModuleDict({k: nn.LayerNorm(d) for k in stacks})
        self.heads = nn.ModuleDict({m: head(d, d, ctx.n_outputs, dropout) for m in self.modalities})
        self.reconstruction = nn.ModuleDict({m: head(d, d, ctx.dims[m], dropout) for m in self.modalities})
        self.fusion = head(d * len(self.modalities), d, ctx.n_outputs, dropout)
        self.residual = entry["residual"]
        weight = entry["rec_weight"]
        self.rec_weight = REC_WEIGHT_AUTO[self.task.name] if weight == "auto" else float(weight)
        self.step_order = [m for m in STEP_ORDER if m in self.modalities]
        self.pooling, self.axes = entry["pooling"], entry["axes"]

    def pool(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D): the mean over each clip's valid frames, or over all T frames (`pooling: padded`)."""
        return masked_mean(frames, lengths) if self.pooling == "valid" else frames.mean(1)

    def represent(self, batch: Batch, modality: str) -> torch.Tensor:
        """(B, d) utterance representation of `modality`: branch -> shared stack (+ residual) -> LayerNorm ->
        mean over time (`pool`)."""
        h, lengths = self.branches[modality](batch.x[modality], batch.lengths[modality])
        key = "shared" if "shared" in self.shared else modality
        out = run_conformer(self.shared[key], h, lengths, self.axes)
        if self.residual:
            out = out + h
        return self.pool(self.norms[key](out), lengths)

    def reconstruction_target(self, batch: Batch, modality: str) -> torch.Tensor:
        """The clip's mean input frames (`pool`), without gradient (learnt frames: a fixed target)."""
        return self.pool(batch.x[modality], batch.lengths[modality]).detach()

    def combine(self, unimodal: torch.Tensor, fused: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Per clip: the fusion output when every modality is present, else the mean of the present modalities'
        unimodal outputs (B, M, out): probabilities (returned as log-probabilities) or values."""
        weights = (present / present.sum(1, keepdim=True).clamp(min=1))[..., None]
        if self.task.name == "classification":
            partial = torch.log((unimodal.softmax(-1) * weights).sum(1).clamp(min=1e-12))
            fused = fused.log_softmax(-1)
        else:
            partial = (unimodal * weights).sum(1)
        return torch.where(present.all(1)[:, None], fused, partial)

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its fusion head reads: the modalities' utterance representations
        (`represent`) concatenated in the corpus's order, (B, modalities x d_model) (docs/methods.md §5.2, "Fusion
        head"). Its slices are what the unimodal heads read."""
        return torch.cat([self.represent(batch, m) for m in self.modalities], 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        joint = self.joint(batch)
        reps = [r.contiguous() for r in joint.chunk(len(self.modalities), 1)]
        unimodal = torch.stack([self.heads[m](r) for m, r in zip(self.modalities, reps)], dim=1)
        return self.combine(unimodal, self.fusion(joint), batch.present.float())

    def modality_loss(self, batch: Batch, modality: str) -> torch.Tensor:
        """Task loss of the modality's head + rec_weight x MSE(reconstruction, the clip's mean input frames)."""
        rep = self.represent(batch, modality)
        loss = self.task.loss(self.heads[modality](rep), batch.y)
        if self.rec_weight > 0:
            target = self.reconstruction_target(batch, modality)
            loss = loss + self.rec_weight * F.mse_loss(self.reconstruction[modality](rep), target)
        return loss

    def steps(self, batch: Batch, full: Batch):
        """The official update order: one step per modality on the clips that have it, then the fusion step on
        the clips that have every modality (each loss computed after the previous step's update)."""
        for modality in self.step_order:
            has = batch.present[:, self.modalities.index(modality)]
            if bool(has.any()):
                yield self.modality_loss(subset(batch, has), modality)
        paired = batch.present.all(1)
        if bool(paired.any()):
            paired_batch = subset(batch, paired)
            frozen = [self.branches, self.shared, self.norms]
            for module in frozen:
                module.eval()
            with torch.no_grad():
                reps = [self.represent(paired_batch, m) for m in self.modalities]
            for module in frozen:
                module.train(self.training)
            yield self.task.loss(self.fusion(torch.cat(reps, 1)), paired_batch.y)


def _build(entry: dict, ctx: ModelContext, previous: None) -> nn.Module:
    return VAVL(ctx, entry)


BUILDERS = {"vavl": {"train": _build}}
