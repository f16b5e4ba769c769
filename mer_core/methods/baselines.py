"""Baselines: unimodal, early, late and utterance-level fusion (MMIN's `utt_fusion` and `utt_dataaug`).

Every model here takes a `Batch` whose absent modalities are zero-filled (MMIN protocol) and returns
logits; `loss(batch)` returns (cross-entropy, logits).

- `audio_only`, `visual_only`: one modality's encoder + classifier; trained and tested on that modality
  (under conditions without it the model sees zeros, as every method does).
- `utt_fusion`: MMIN's stage-1 "modality encoder network" (methods.md §2): one encoder per modality (LSTM
  for frame features, TextCNN for text), concatenated, MLP classifier; trained on full modalities.
- `utt_dataaug`: the same network trained with one random non-empty condition per clip (MMIN's baseline).
- `early_fusion`: frame-level fusion: every modality resampled (nearest frame) onto the time grid of the
  first one, concatenated per frame, one LSTM encoder, classifier.
- `late_fusion`: decision-level fusion: one encoder + classifier per modality, each trained with its own
  cross-entropy; the prediction averages the class probabilities of the modalities present.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mer_core.config import Field, Section
from mer_core.data.batches import Batch
from mer_core.layers import LSTMEncoder, MLPClassifier, TextCNN
from mer_core.methods.registry import COMMON_KEYS, MethodSpec, ModelContext, register

MODEL_KEYS = {
    **COMMON_KEYS,
    "hidden": Field(int, low=1, high=4096),
    "classifier": Field(list, low=0, item=Field(int, low=1, high=4096)),
    "dropout": Field(float, low=0.0, high=0.95),
}
SCHEMA = Section(MODEL_KEYS)


def make_encoder(modality: str, in_dim: int, hidden: int) -> nn.Module:
    """The MMIN-family encoder of a modality: TextCNN for text, a max-pooled LSTM for frame features."""
    return TextCNN(in_dim, out_dim=hidden) if modality == "text" else LSTMEncoder(in_dim, hidden)


class CrossEntropyModel(nn.Module):
    """Base for models trained with plain cross-entropy on their fused logits."""

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return F.cross_entropy(logits, batch.y), logits


class UttFusion(CrossEntropyModel):
    """Per-modality encoders -> concatenation -> MLP classifier (MMIN `utt_fusion`, methods.md §2)."""

    def __init__(self, modalities: tuple[str, ...], ctx: ModelContext, hidden: int, classifier: list[int],
                 dropout: float):
        super().__init__()
        self.modalities = modalities
        self.encoders = nn.ModuleDict({m: make_encoder(m, ctx.dims[m], hidden) for m in modalities})
        self.classifier = MLPClassifier(hidden * len(modalities), classifier, ctx.n_classes, dropout)

    def embed(self, batch: Batch) -> torch.Tensor:
        return torch.cat([self.encoders[m](batch.x[m], batch.lengths[m]) for m in self.modalities], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.embed(batch))[0]


def align_frames(x: torch.Tensor, lengths: torch.Tensor, rate: float, target_rate: float,
                 target_len: int) -> torch.Tensor:
    """Resample (B, T, D) frames at `rate` onto a grid of `target_len` frames at `target_rate` (nearest
    earlier frame); clips of length 0 give zeros."""
    t = torch.arange(target_len, device=x.device)
    source = torch.floor(t * (rate / target_rate)).long()[None, :]
    source = torch.minimum(source, (lengths[:, None] - 1).clamp(min=0))
    aligned = torch.gather(x, 1, source[..., None].expand(-1, -1, x.shape[2]))
    return aligned * (lengths > 0)[:, None, None]


class EarlyFusion(CrossEntropyModel):
    """Frame-level concatenation of all modalities on the first modality's time grid, one LSTM encoder."""

    def __init__(self, ctx: ModelContext, hidden: int, classifier: list[int], dropout: float):
        super().__init__()
        self.modalities = ctx.modalities
        self.rates = ctx.frame_rates
        self.encoder = LSTMEncoder(sum(ctx.dims.values()), hidden)
        self.classifier = MLPClassifier(hidden, classifier, ctx.n_classes, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        grid_rate = self.rates[self.modalities[0]]
        # float64 and a tolerance: 27 frames at 30 fps are exactly 30 frames at 33.3 fps, not 31
        grid_lengths = torch.stack([torch.ceil(batch.lengths[m].double() * (grid_rate / self.rates[m]) - 1e-6).long()
                                    for m in self.modalities]).amax(0)
        grid_len = max(int(grid_lengths.max()), 1)
        frames = torch.cat([align_frames(batch.x[m], batch.lengths[m], self.rates[m], grid_rate, grid_len)
                            for m in self.modalities], dim=2)
        return self.classifier(self.encoder(frames, grid_lengths))[0]


class LateFusion(nn.Module):
    """One encoder + classifier per modality; prediction = mean of the present modalities' probabilities."""

    def __init__(self, ctx: ModelContext, hidden: int, classifier: list[int], dropout: float):
        super().__init__()
        self.modalities = ctx.modalities
        self.branches = nn.ModuleDict({m: UttFusion((m,), ctx, hidden, classifier, dropout) for m in ctx.modalities})

    def branch_logits(self, batch: Batch) -> torch.Tensor:
        """(B, M, C) logits of each modality's classifier."""
        return torch.stack([self.branches[m](batch) for m in self.modalities], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        probs = self.branch_logits(batch).softmax(-1)
        weights = batch.present.float()
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1)
        return torch.log((probs * weights[..., None]).sum(1).clamp(min=1e-12))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.branch_logits(batch)
        present = batch.present
        per_branch = F.cross_entropy(logits.flatten(0, 1), batch.y.repeat_interleave(len(self.modalities)),
                                     reduction="none").view_as(present)
        loss = (per_branch * present).sum() / present.sum().clamp(min=1)
        probs = logits.softmax(-1) * (present / present.sum(1, keepdim=True).clamp(min=1))[..., None]
        return loss, torch.log(probs.sum(1).clamp(min=1e-12))


def _utt(modalities: tuple[str, ...] | None):
    def build(params: dict, ctx: ModelContext) -> nn.Module:
        return UttFusion(modalities or ctx.modalities, ctx, params["hidden"], params["classifier"], params["dropout"])

    return build


def _fusion(cls):
    def build(params: dict, ctx: ModelContext) -> nn.Module:
        return cls(ctx, params["hidden"], params["classifier"], params["dropout"])

    return build


register(MethodSpec("audio_only", _utt(("audio",)), SCHEMA, "full", "LSTM on audio frames only"))
register(MethodSpec("visual_only", _utt(("visual",)), SCHEMA, "full", "LSTM on face frames only"))
register(MethodSpec("early_fusion", _fusion(EarlyFusion), SCHEMA, "full", "frame-level concatenation, one LSTM"))
register(MethodSpec("late_fusion", _fusion(LateFusion), SCHEMA, "full", "mean of unimodal class probabilities"))
register(MethodSpec("utt_fusion", _utt(None), SCHEMA, "full", "MMIN's full-modality encoder network (MEN)"))
register(MethodSpec("utt_dataaug", _utt(None), SCHEMA, "random",
                    "utt_fusion trained with one random non-empty condition per clip"))
