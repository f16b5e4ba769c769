"""MMIN (Zhao et al., ACL 2021) and IF-MMIN (Zuo et al., ICASSP 2023): missing-modality imagination.

Both train in two stages inside one run (docs/methods.md §2, §3):

- `mmin`. Stage 1 (`pretrain`): MMIN's modality encoder network, i.e. `utt_fusion` (`UttFusion`, reused),
  trained on full modalities; the epoch is selected on full-modality validation UA. Stage 2: student
  encoders initialised from stage 1 and trained further; a frozen copy of the stage-1 encoders (the teacher)
  gives the imagination target, its embeddings of the *missing* modalities (present ones zero-filled, so
  their slots hold the teacher's embedding of zeros, as in the official code); a `ResidualAE` (MMIN variant)
  imagines the joint embedding from the student's, a cycle AE maps the imagination back; the classifier
  reads the concatenated block latents. Loss `ce_weight * CE + mse_weight * MSE(target, imagination) +
  cycle_weight * MSE(h.detach(), cycle)` (IEMOCAP: 1 / 4 / 2). `cycle_weight: 0` drops the cycle AE
  (MMIN's `mmin_AE` / `mmin_no_cycle` ablation).
- `ifmmin`. Stage 1: encoders plus the `SharedEncoder` S, classifier on [e_m..., S(e_m)...], loss
  `CE + cmd_weight * CMD` (the mean CMD over modality pairs of the invariant features S(e_m), K moments).
  Stage 2: students (encoders and S') from stage 1; invariant features H' = [S'(e_m)...] of the masked
  input are injected at every block of the IF-IM `ResidualAE`, in the version released with the paper
  (`ae_version: published`: added to a running input) or in the 2024 rewrite (`head`: added to the previous
  block's output); loss `ce_weight * CE + mse_weight * MSE(imagination target, imagination) + invariant_weight *
  MSE(H, H')`, H = the teacher's invariant features of the full input. Ablations by params:
  `pretrain.cmd_weight: 0` (no CMD), `inject: false` (MMIN's AE, no H' injection), `invariant_weight: 0`.

Stage-2 training draws one condition with at least one modality missing per clip, and its epoch is selected
on the validation UA pooled over those conditions (MMIN protocol, §1.2); a clip that lacks a modality
altogether (partly unpaired training data) treats it as missing: that modality is imagined but, having no
teacher embedding, adds nothing to the imagination and invariant losses (`slot_mse`). The task loss is the
study task's (cross-entropy, or sum of 1 - CCC for regression).

Kept as official: β1 0.5 in stage 2 and gradient clipping per sub-network; the study's defaults shorten the
schedule (`train.preset: paper` restores the official one). Both stages build their encoders with the run's
`encoder_pooling` and `text_windows` (`mer_core.methods.baselines.Encoding`).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [mmin, ifmmin] modality order in the joint vectors. Official: A, L, V. Here: the corpus's order (audio, visual,
  text). Why: a fixed permutation of the AE's and classifier's inputs, with no effect on what the model can
  learn. Restore: equivalent. Test: tests/golden/test_mmin.py::test_mmin_stage2_step0_losses_match_official.
- [mmin, ifmmin] AE sizes. Official: 384 -> 256 -> 128 -> 64, 5 blocks (three modalities x 128). Here: joint
  width = modalities x encoder width, layers = `ae_widths` x encoder width (MMIN's are widths 2, 1, 0.5). Why:
  works for any number of modalities. Restore: `train.preset: paper`.
  Test: tests/test_mmin.py::test_paper_settings_are_the_effective_official_ones.
- [ifmmin] IF-IM autoencoder version. Official: two versions of `autoencoder_2.py`: the one current when the
  paper appeared (a4b6ef4, 2022) adds H' to a running input (block k reads x + k H'), ignores the outputs of
  decoders 1 to 4 and returns transition(input + output of the last block); HEAD (f4d65fc, rewritten in 2024)
  feeds block k the previous decoder's output + H' and returns transition(last decoder output). Here: the 2022
  version (`ae_version: published`). Why: it was the released code when the paper appeared (arXiv 2022-10, ICASSP
  2023), so the paper's numbers came from it unless the authors ran unreleased code; the 2024 rewrite came later.
  The two differ by up to 73 on the same weights (golden fixture). Restore: `methods.<run>.ae_version: head`.
  Test: tests/golden/test_ifmmin.py::test_ifim_autoencoder_versions_match_their_official_commits.
- [ifmmin] `invariant_weight`. Official: the released script passes the nonexistent `--consistent_weight=100`,
  which the strict option parser rejects; without it the released code runs the default 1.0. Here: 100. Why: the
  intended value (a fork's fix and the NMER authors' script use it). Restore: `methods.<run>.invariant_weight: 1`.
  Test: tests/golden/test_ifmmin.py::test_ifmmin_stage2_step0_losses_match_official.
- [mmin, ifmmin] stage-2 weight decay. Official: `--weight_decay=1e-5` is passed but never given to Adam.
  Here: `train.weight_decay` (0). Why: the effective value. Restore: `train.weight_decay: 0`.
  Test: tests/test_mmin.py::test_adam_gets_the_study_weight_decay.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from mer_core.conditions import with_presence
from mer_core.data.batches import Batch
from mer_core.layers import MLPClassifier, ResidualAE, SharedEncoder, frozen, kaiming_init_
from mer_core.losses import pairwise_cmd, slot_mse
from mer_core.methods.baselines import Encoding, UttFusion
from mer_core.methods.registry import ModelContext


class RowCache:
    """Per-clip memo of a frozen teacher's outputs on a training clip (keyed by the clip's row in meta.csv, and
    by anything else the outputs depend on, e.g. the modalities removed): computed the first time a key is seen,
    reused in every later epoch. Exact because the teacher is frozen and deterministic (eval mode) and the
    encoders ignore padding and the other clips of a batch; not used when they pool over the padding
    (`encoder_pooling` or `text_windows: padded`, `exact_teacher_cache`), where a clip's output depends on its
    batch."""

    def __init__(self):
        self.values: dict = {}

    def __call__(self, keys: list, compute) -> tuple[torch.Tensor, ...]:
        """The cached outputs for `keys` (one per clip of the batch), calling `compute()` (a tuple of (B, ...)
        tensors) if any is new."""
        if any(k not in self.values for k in keys):
            for k, value in zip(keys, zip(*compute())):
                self.values.setdefault(k, value)
        return tuple(torch.stack(parts) for parts in zip(*(self.values[k] for k in keys)))


def exact_teacher_cache(entry: dict) -> bool:
    """Whether a `RowCache` of the teacher's outputs is exact: the encoders ignore the padding of the batch (their
    LSTM options do not change that: padded frames are zero, as a convolution's own padding is)."""
    encoding = Encoding.from_entry(entry)
    return (encoding.pooling, encoding.windows) == ("valid", "valid")


def ae_layers(width: int, widths: list[float]) -> list[int]:
    """AE layer sizes: each factor times the encoder width (at least 1)."""
    return [max(1, round(f * width)) for f in widths]


class UttShared(UttFusion):
    """IF-MMIN's stage 1 (`utt_shared`, docs/methods.md §3.1): encoders + shared encoder S; the classifier reads
    [e_m..., S(e_m)...]; loss CE + cmd_weight x pairwise CMD of the invariant features."""

    def __init__(
        self,
        ctx: ModelContext,
        hidden: int,
        classifier: list[int],
        dropout: float,
        cmd_weight: float,
        cmd_moments: int,
        cmd_span: float | None,
        encoding: Encoding = Encoding(),
    ):
        super().__init__(ctx.modalities, ctx, hidden, classifier, dropout, encoding)
        self.shared = SharedEncoder(hidden)
        self.classifier = MLPClassifier(2 * hidden * len(ctx.modalities), classifier, ctx.n_outputs, dropout)
        self.cmd = (cmd_weight, cmd_moments, cmd_span)

    def features(self, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Joint embedding h and the per-modality invariant features S(e_m)."""
        embeddings = [self.encoders[m](batch.x[m], batch.lengths[m]) for m in self.modalities]
        return torch.cat(embeddings, 1), [self.shared(e) for e in embeddings]

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: [h, S(e_m)...], the concatenated embeddings and
        invariant features, (B, 2 x modalities x hidden) (docs/methods.md §3.1)."""
        h, invariant = self.features(batch)
        return torch.cat([h, *invariant], 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        h, invariant = self.features(batch)
        logits = self.classifier(torch.cat([h, *invariant], 1))[0]
        weight, moments, span = self.cmd
        loss = self.task.loss(logits, batch.y)
        if weight > 0:
            loss = loss + weight * pairwise_cmd(invariant, batch.present, moments, span)
        return loss, logits


class Imagination(nn.Module):
    """What MMIN and IF-MMIN's stage 2 share: student encoders from stage 1, a frozen teacher, the
    imagination target, the residual AE and the classifier on its block latents."""

    def __init__(self, stage1: UttFusion, entry: dict, variant: str):
        super().__init__()
        self.modalities, self.task = stage1.modalities, stage1.task
        width = entry["hidden"]
        self.encoders = copy.deepcopy(stage1.encoders)
        self.teacher = frozen(stage1.encoders)
        self.ae = kaiming_init_(
            ResidualAE(width * len(self.modalities), ae_layers(width, entry["ae_widths"]), entry["ae_blocks"], variant)
        )
        self.classifier = kaiming_init_(
            MLPClassifier(self.ae.latent_dim, entry["classifier"], self.task.n_outputs, entry["dropout"])
        )
        self.weights = {k: entry[k] for k in ("ce_weight", "mse_weight")}
        self.imagination_targets = RowCache() if exact_teacher_cache(entry) else None  # per (clip, removed)

    def train(self, mode: bool = True) -> "Imagination":
        super().train(mode)
        self.teacher.eval()
        return self

    def embed(self, encoders: nn.ModuleDict, batch: Batch) -> list[torch.Tensor]:
        return [encoders[m](batch.x[m], batch.lengths[m]) for m in self.modalities]

    @torch.no_grad()
    def imagination_target(self, batch: Batch, full: Batch) -> torch.Tensor:
        """The teacher's embeddings of the modalities missing from `batch` (present ones zero-filled), cached per
        training clip and set of missing modalities."""
        missing = ~batch.present

        def compute():
            return (torch.cat(self.embed(self.teacher, with_presence(full, missing)), 1),)

        if self.imagination_targets is None:
            return compute()[0]
        return self.imagination_targets(list(zip(full.rows.tolist(), map(tuple, missing.tolist()))), compute)[0]

    def imagine(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(h, imagination, block latents, per-modality student embeddings)."""
        raise NotImplementedError

    def joint(self, batch: Batch) -> torch.Tensor:
        """The joint representation its classifier reads: the residual AE's block latents, concatenated,
        (B, ae_blocks x last AE width) (`imagine(batch)[2]`; docs/methods.md §2.2, forward pass 2 and 4)."""
        return self.imagine(batch)[2]

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.classifier(self.joint(batch))[0]

    def base_loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """ce_weight x CE + mse_weight x MSE(target, imagination); returns the loss, logits and imagine()."""
        imagined = self.imagine(batch)
        logits = self.classifier(imagined[2])[0]
        loss = self.weights["ce_weight"] * self.task.loss(logits, batch.y)
        if self.weights["mse_weight"] > 0:
            loss = loss + self.weights["mse_weight"] * slot_mse(
                imagined[1], self.imagination_target(batch, full), full.present
            )
        return loss, logits, imagined


class MMIN(Imagination):
    """MMIN's stage 2 (docs/methods.md §2): forward imagination AE + cycle AE (when cycle_weight > 0)."""

    def __init__(self, stage1: UttFusion, entry: dict):
        super().__init__(stage1, entry, "mmin")
        self.cycle_weight = entry["cycle_weight"]
        self.cycle_ae = None
        if self.cycle_weight > 0:
            self.cycle_ae = kaiming_init_(
                ResidualAE(
                    entry["hidden"] * len(self.modalities),
                    ae_layers(entry["hidden"], entry["ae_widths"]),
                    entry["ae_blocks"],
                    "mmin",
                )
            )

    def imagine(self, batch: Batch):
        embeddings = self.embed(self.encoders, batch)
        h = torch.cat(embeddings, 1)
        imagination, latents = self.ae(h)
        return h, imagination, latents, embeddings

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits, (h, imagination, _, _) = self.base_loss(batch, full)
        if self.cycle_ae is not None:
            loss = loss + self.cycle_weight * F.mse_loss(self.cycle_ae(imagination)[0], h.detach())
        return loss, logits


class IFMMIN(Imagination):
    """IF-MMIN's stage 2 (docs/methods.md §3.2): invariant features H' injected at every IF-IM block (`ae_version`:
    the published or the HEAD autoencoder; `inject: false`: MMIN's)."""

    def __init__(self, stage1: UttShared, entry: dict):
        super().__init__(stage1, entry, f"ifim_{entry['ae_version']}" if entry["inject"] else "mmin")
        self.shared = copy.deepcopy(stage1.shared)
        self.teacher_shared = frozen(stage1.shared)
        self.invariant_weight = entry["invariant_weight"]
        self.targets = RowCache() if exact_teacher_cache(entry) else None

    def train(self, mode: bool = True) -> "IFMMIN":
        super().train(mode)
        self.teacher_shared.eval()
        return self

    def imagine(self, batch: Batch):
        embeddings = self.embed(self.encoders, batch)
        h = torch.cat(embeddings, 1)
        invariant = torch.cat([self.shared(e) for e in embeddings], 1)
        imagination, latents = self.ae(h, None if self.ae.variant == "mmin" else invariant)
        return h, imagination, latents, invariant

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        loss, logits, (_, _, _, invariant) = self.base_loss(batch, full)
        if self.invariant_weight > 0:
            with torch.no_grad():

                def compute():
                    return (torch.cat([self.teacher_shared(e) for e in self.embed(self.teacher, full)], 1),)

                (target,) = compute() if self.targets is None else self.targets(full.rows.tolist(), compute)
            loss = loss + self.invariant_weight * slot_mse(invariant, target, full.present)
        return loss, logits


def _build_utt(entry: dict, ctx: ModelContext, previous: None) -> nn.Module:
    block = entry["pretrain"]
    return kaiming_init_(
        UttFusion(
            ctx.modalities, ctx, entry["hidden"], block["classifier"], block["dropout"], Encoding.from_entry(entry)
        )
    )


def _build_utt_shared(entry: dict, ctx: ModelContext, previous: None) -> nn.Module:
    block = entry["pretrain"]
    return kaiming_init_(
        UttShared(
            ctx,
            entry["hidden"],
            block["classifier"],
            block["dropout"],
            block["cmd_weight"],
            block["cmd_moments"],
            block["cmd_span"],
            Encoding.from_entry(entry),
        )
    )


BUILDERS = {
    "mmin": {"pretrain": _build_utt, "train": lambda entry, ctx, stage1: MMIN(stage1, entry)},
    "ifmmin": {"pretrain": _build_utt_shared, "train": lambda entry, ctx, stage1: IFMMIN(stage1, entry)},
}
