"""Params of training: a stage's optimiser (`Optim`), the study-wide `train` section, and `machine`, the settings of
the machine a study runs on, which never change a result and so never invalidate one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mer_core.schema import Params

PRESETS = ("study", "paper")
BATCHES = ("bucketed", "random")
MODALITIES = ("audio", "visual", "text")


class Optim(Params):
    """A training stage's optimiser: Adam; `epochs` at the constant learning rate, then `epochs_decay` epochs of
    linear decay towards 0 (MMIN's schedule); with `train.stopping.rule: plateau` these are the maxima."""

    epochs: int = Field(ge=1, le=1000)
    """Epochs at the constant learning rate (MMIN's niter)."""
    epochs_decay: int = Field(0, ge=0, le=1000)
    """Then epochs of linear decay towards 0 (MMIN's niter_decay)."""
    lr: float = Field(ge=1e-6, le=1.0)
    """Adam learning rate."""
    beta1: float = Field(ge=0.0, le=0.999)
    """Adam beta1 (beta2 = 0.999)."""
    grad_clip: float = Field(ge=0.0)
    """Maximum gradient norm per sub-network (0 = off)."""
    batch_size: int = Field(ge=1, le=65536)
    """Clips per batch."""


class Stopping(Params):
    """When a training stage ends (docs/methods.md "Training to convergence")."""

    rule: Literal["plateau", "fixed"] = "plateau"
    """plateau: each stage trains until its validation criterion has not improved for `patience` epochs (after
    `min_epochs`), at most the stage's epochs (+ epochs_decay); the linear-decay phase starts when the constant phase
    plateaus | fixed: exactly the stage's epochs (the official schedules; `train.preset: paper` implies it)."""
    patience: int = Field(5, ge=1, le=1000)
    """Epochs without improvement that end a phase."""
    min_epochs: int = Field(5, ge=1, le=1000)
    """No stage stops on a plateau before this many epochs, nor before its criterion has risen above its first
    epoch's score by more than `min_delta` (a stage that has not begun to learn has not converged)."""
    min_delta: float = Field(0.0, ge=0.0, le=1.0)
    """An epoch improves the criterion when it beats the best by more than this."""


class FrameEncoder(Params):
    """Used only with face-crop visual features: a small CNN learnt end-to-end with every method that reads the
    visual frames (`mer_core.frame_encoder`): per entry of `channels`, 3x3 conv - GroupNorm - ReLU - 2x2 max-pool;
    global average pool; linear to `dim`."""

    dim: int = Field(64, ge=1, le=4096)
    """Width of a frame's encoding: the visual feature dimension the methods see."""
    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        default_factory=lambda: [16, 32, 64], min_length=1, max_length=8
    )
    """Conv channels per block; each block halves the crop side."""
    groups: int = Field(4, ge=1, le=1024)
    """GroupNorm groups (must divide every channel count)."""

    @model_validator(mode="after")
    def _groups_divide(self):
        bad = [c for c in self.channels if c % self.groups]
        if bad:
            raise ValueError(
                f"groups: {self.groups} does not divide the channel count {bad[0]}; choose groups "
                f"dividing every entry of channels {self.channels}"
            )
        return self


class Train(Params):
    """Shared by every run."""

    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    """One training unit per fold x seed; results are mean ± std over them."""
    folds: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    """all | a list of fold indices."""
    runs: Literal["all"] | list[str] = "all"
    """all | the runs of `methods` to train (the others are skipped, with a record), e.g. [mmin, utt_fusion]."""
    preset: Literal[PRESETS] = "study"
    """study: the runs as params.yaml states them | paper: each method's official schedule and sizes (every run's
    schedule and size keys reset to the method's defaults, docs/params.md) with fixed schedules."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32 | bf16: forward passes under bfloat16 autocast (CUDA or CPU; weights, optimiser and losses stay float32).
    Changes the numbers: a setting of the study, not of the machine."""
    normalisation: Literal["fold", "speaker"] = "fold"
    """fold: every feature standardised with the statistics of the fold's training clips | speaker: each speaker's
    clips first standardised with that speaker's own statistics (test speakers included: no label is used), a standard
    step of speaker-independent emotion recognition, then as with fold (`mer_core.data.store.FeatureStore.view`)."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    """Adam weight decay (the MMIN family's stage-2 models ignore theirs: 0 is faithful)."""
    batches: Literal[BATCHES] | None = None
    """How clips are batched (`mer_core.data.batches`): bucketed: training batches of clips of similar length,
    evaluation in order of length (ours) | random: a fresh random order every epoch, and evaluation of the replicated
    set of (clip, condition) pairs in random batches (the official data loaders); null: bucketed, random under
    `train.preset: paper`."""
    selection: Literal["validation", "test"] = "validation"
    """The clips whose score picks each stage's epoch: validation (ours) | test: the released MMIN, IF-MMIN and NMER
    scripts' (their `--verbose` overwrites the validation UAR with the test UAR before the comparison), a leak of the
    test set kept to reproduce the official numbers (docs/faithfulness.md); `train.preset: paper` does not imply it."""
    normalise_modalities: Literal["all"] | list[Literal[MODALITIES]] | None = None
    """Modalities standardised with the fold's training statistics: all (ours) | a list, the others read as the store
    holds them (the MMIN family's loader on its feature package: [audio]); null: all, [audio] under `train.preset:
    paper` on the iemocap_mmin package."""
    stopping: Stopping = Field(default_factory=Stopping)
    frame_encoder: FrameEncoder = Field(default_factory=FrameEncoder)

    @model_validator(mode="after")
    def _unique(self):
        for name in ("seeds", "folds", "runs", "normalise_modalities"):
            values = getattr(self, name)
            if isinstance(values, list) and len(set(values)) != len(values):
                raise ValueError(f"{name}: each entry may appear once, got {values}")
        return self
