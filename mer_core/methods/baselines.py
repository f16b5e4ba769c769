"""Baselines: unimodal, early, late and utterance-level fusion (MMIN's `utt_fusion` and `utt_dataaug`).

Every model here takes a `Batch` whose absent modalities are zero-filled (MMIN protocol) and returns
the task's outputs (logits, or attribute values for regression); `loss(batch, full)` returns (the task's loss,
outputs). All are built from the MMIN family's layers and
initialised as it does (`kaiming_init_`); their official settings (the defaults of
`mer_core.params.methods.Baseline`) are MMIN's `utt_fusion` IEMOCAP script's (docs/methods.md §2.1).

- `audio_only`, `visual_only`: one modality's encoder + classifier; trained and tested on that modality
  (under conditions without it the model sees zeros, as every method does).
- `utt_fusion`: MMIN's stage-1 "modality encoder network" (docs/methods.md §2): one encoder per modality (LSTM
  for frame features, TextCNN for text), concatenated, MLP classifier; trained on full modalities.
- `utt_dataaug`: the same network trained with one random condition per clip (MMIN's baseline): one with at
  least one modality missing (`conditions: missing`, official), or any non-empty one, the full set included
  (`conditions: any`).
- `early_fusion`: frame-level fusion: every modality stretched (nearest earlier frame) onto a common time
  grid of the clip's longest stream, concatenated per frame, one LSTM encoder, classifier. Streams are aligned
  by their relative position in the clip, so no frame rate is needed (text tokens align too).
- `late_fusion`: decision-level fusion: one encoder + classifier per modality, each trained with its own
  loss on the clips that have its modality; the prediction averages the class probabilities (regression: the
  predicted values) of the modalities present.

Every method of the MMIN family encodes with these LSTM / TextCNN encoders; `encoder_pooling` and `text_windows`
(`Encoding`) choose whether their max-pools skip the padding (`valid`, ours) or run over it (`padded`, official), and
a run's `encoder.<modality>` block sets each frame modality's LSTM (summary over time, layers, direction, a
convolution in front: `mer_core.layers.LSTMEncoder`; the defaults are the official encoder).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [late_fusion] decision-level fusion. Official: not in the MMIN repository. Here: the mean of the present
  modalities' class probabilities. Why: the standard decision-level baseline. Restore: no official counterpart.
  Test: tests/test_methods.py::test_late_fusion_probabilities.
- [early_fusion] frame-level fusion. Official: not in the MMIN repository. Here: streams stretched onto the
  longest one by relative position. Why: no frame rate is needed, so text tokens align too. Restore: no official
  counterpart. Test: tests/test_methods.py::test_align_frames_known_values.
- [utt_dataaug] training conditions. Official: one condition per clip with at least one modality missing (the full
  condition is never drawn). Here: the same by default (`conditions: missing`); `conditions: any` also draws the
  full condition. Why: as the official sampler; `any` keeps the full condition in
  training as well, a study variant. Restore:
  `methods.<run>.conditions: missing`.
  Test: tests/test_methods.py::test_utt_dataaug_trains_on_the_conditions_its_entry_names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mer_core.data.batches import Batch
from mer_core.layers import LSTMEncoder, MLPClassifier, TextCNN, kaiming_init_
from mer_core.methods.registry import ModelContext
from mer_core.tasks import Task


@dataclass(frozen=True)
class Encoding:
    """How the MMIN-family encoders pool: the LSTM's max over the valid frames or all frames (`pooling`), the
    TextCNN's max over the windows inside the clip or every window (`windows`); `valid` (ours) or `padded`
    (official). `lstm`: each frame modality's LSTM options (a run's `encoder` block; absent: the official encoder)."""

    pooling: str = "valid"
    windows: str = "valid"
    lstm: dict = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: dict) -> "Encoding":
        """From a run entry's `encoder_pooling`, `text_windows` and `encoder`."""
        return cls(entry["encoder_pooling"], entry["text_windows"], entry.get("encoder", {}))

    def lstm_options(self, modality: str) -> dict:
        """`mer_core.layers.LSTMEncoder`'s keyword arguments for `modality`."""
        options = self.lstm.get(modality, {})
        return {
            "summary": options.get("pooling", "max"),
            "layers": options.get("layers", 1),
            "bidirectional": options.get("bidirectional", False),
            "conv": options.get("conv", 0),
        }


def make_encoder(modality: str, in_dim: int, hidden: int, encoding: Encoding = Encoding()) -> nn.Module:
    """The MMIN-family encoder of a modality: TextCNN for text, an LSTM for frame features (max-pooled unless the
    run's `encoder` block says otherwise)."""
    if modality == "text":
        return TextCNN(in_dim, out_dim=hidden, windows=encoding.windows)
    return LSTMEncoder(in_dim, hidden, encoding.pooling, **encoding.lstm_options(modality))


class TaskModel(nn.Module):
    """Base for models trained with the task's loss alone (cross-entropy or sum of 1 - CCC) on their output."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self(batch)
        return self.task.loss(outputs, batch.y), outputs


class UttFusion(TaskModel):
    """Per-modality encoders -> concatenation -> MLP classifier (MMIN `utt_fusion`, docs/methods.md §2)."""

    def __init__(
        self,
        modalities: tuple[str, ...],
        ctx: ModelContext,
        hidden: int,
        classifier: list[int],
        dropout: float,
        encoding: Encoding = Encoding(),
    ):
        super().__init__(ctx.task)
        self.modalities = modalities
        self.encoders = nn.ModuleDict({m: make_encoder(m, ctx.dims[m], hidden, encoding) for m in modalities})
        self.classifier = MLPClassifier(hidden * len(modalities), classifier, ctx.n_outputs, dropout)

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: the encoders' utterance embeddings concatenated in
        the corpus's modality order, (B, modalities x hidden) (MMIN's stage-1 h, docs/methods.md §2 "Stage 1")."""
        return torch.cat([self.encoders[m](batch.x[m], batch.lengths[m]) for m in self.modalities], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]


def align_frames(x: torch.Tensor, lengths: torch.Tensor, grid_lengths: torch.Tensor, grid_len: int) -> torch.Tensor:
    """Stretch (B, T, D) frames onto a grid of `grid_lengths` steps per clip (padded to `grid_len`): grid step t
    takes frame floor(t x length / grid_length), the frame at the same relative position; clips of length 0
    and grid steps beyond a clip's end give zeros."""
    t = torch.arange(grid_len, device=x.device)[None, :]
    source = torch.div(t * lengths[:, None], grid_lengths.clamp(min=1)[:, None], rounding_mode="floor")
    source = torch.minimum(source, (lengths[:, None] - 1).clamp(min=0))
    aligned = torch.gather(x, 1, source[..., None].expand(-1, -1, x.shape[2]))
    inside = (t < grid_lengths[:, None]) & (lengths > 0)[:, None]
    return aligned * inside[..., None]


class EarlyFusion(TaskModel):
    """Frame-level concatenation of all modalities on the clip's longest stream, one LSTM encoder."""

    def __init__(
        self, ctx: ModelContext, hidden: int, classifier: list[int], dropout: float, encoding: Encoding = Encoding()
    ):
        super().__init__(ctx.task)
        self.modalities = ctx.modalities
        self.encoder = LSTMEncoder(sum(ctx.dims.values()), hidden, encoding.pooling)
        self.classifier = MLPClassifier(hidden, classifier, ctx.n_outputs, dropout)

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: the LSTM's utterance embedding of the aligned,
        concatenated frames, (B, hidden)."""
        grid_lengths = torch.stack([batch.lengths[m] for m in self.modalities]).amax(0)
        grid_len = max(int(grid_lengths.max()), 1)
        frames = torch.cat(
            [align_frames(batch.x[m], batch.lengths[m], grid_lengths, grid_len) for m in self.modalities], dim=2
        )
        return self.encoder(frames, grid_lengths)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]


class LateFusion(nn.Module):
    """One encoder + classifier per modality; prediction = mean of the present modalities' probabilities
    (regression: of their predicted values)."""

    def __init__(
        self, ctx: ModelContext, hidden: int, classifier: list[int], dropout: float, encoding: Encoding = Encoding()
    ):
        super().__init__()
        self.modalities, self.task = ctx.modalities, ctx.task
        self.branches = nn.ModuleDict(
            {m: UttFusion((m,), ctx, hidden, classifier, dropout, encoding) for m in ctx.modalities}
        )

    def branch_outputs(self, batch: Batch) -> torch.Tensor:
        """(B, M, n_outputs) outputs of each modality's classifier."""
        return torch.stack([self.branches[m](batch) for m in self.modalities], dim=1)

    def fuse(self, outputs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Mean over the present modalities of the probabilities (returned as log-probabilities) or values."""
        weights = (present / present.sum(1, keepdim=True).clamp(min=1))[..., None]
        if self.task.name == "regression":
            return (outputs * weights).sum(1)
        return torch.log((outputs.softmax(-1) * weights).sum(1).clamp(min=1e-12))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.fuse(self.branch_outputs(batch), batch.present.float())

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.branch_outputs(batch)
        present = batch.present
        if self.task.name == "classification":
            per_branch = F.cross_entropy(
                outputs.flatten(0, 1), batch.y.repeat_interleave(len(self.modalities)), reduction="none"
            ).view_as(present)
            loss = (per_branch * present).sum() / present.sum().clamp(min=1)
        else:  # batch-level CCC per branch, on the clips that have its modality
            losses = [
                self.task.loss(outputs[present[:, k], k], batch.y[present[:, k]])
                for k in range(len(self.modalities))
                if int(present[:, k].sum()) >= 2
            ]
            loss = torch.stack(losses).mean() if losses else outputs.sum() * 0
        return loss, self.fuse(outputs, present.float())


def _utt(modalities: tuple[str, ...] | None):
    def build(params: dict, ctx: ModelContext, previous: None = None) -> nn.Module:
        return kaiming_init_(
            UttFusion(
                modalities or ctx.modalities,
                ctx,
                params["hidden"],
                params["classifier"],
                params["dropout"],
                Encoding.from_entry(params),
            )
        )

    return build


def _fusion(cls):
    def build(params: dict, ctx: ModelContext, previous: None = None) -> nn.Module:
        return kaiming_init_(
            cls(ctx, params["hidden"], params["classifier"], params["dropout"], Encoding.from_entry(params))
        )

    return build


BUILDERS = {
    "audio_only": {"train": _utt(("audio",))},
    "visual_only": {"train": _utt(("visual",))},
    "early_fusion": {"train": _fusion(EarlyFusion)},
    "late_fusion": {"train": _fusion(LateFusion)},
    "utt_fusion": {"train": _utt(None)},
    "utt_dataaug": {"train": _utt(None)},
}
