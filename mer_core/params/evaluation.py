"""Params of evaluation and reporting: the robustness grid, the analysis, the explorer and the extended study."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mer_core.schema import Params

Share = Annotated[float, Field(ge=0.0, le=1.0)]
NOISE_TYPES = ("gaussian", "impulse")
SIGNAL_KINDS = ("babble", "white", "tracking_dropout")
TASKS = ("classification", "regression")


class Robustness(Params):
    """The noise grid every run is tested on, beside the clean grid (`mer_core.robustness`)."""

    noise_types: list[Literal[NOISE_TYPES]] = Field(default_factory=lambda: ["gaussian", "impulse"])
    """Feature noise replacing the removed modalities (NMER protocol)."""
    intensities: list[Annotated[int, Field(ge=1, le=100000)]] = Field(default_factory=lambda: [20, 40, 60, 80, 100])
    """T values, NMER's "noise intensity" axis."""
    schedule: Literal["scaled_linear", "linear", "cosine"] = "scaled_linear"
    """Beta schedule of the scheduler (NMER's)."""
    beta_start: float = Field(0.01, ge=0.0, le=1.0)
    """First beta of the schedule."""
    beta_end: float = Field(0.5, ge=0.0, le=1.0)
    """Last beta of the schedule."""
    impulse_density: Share = 0.3
    """Fraction of +-1 entries of impulse noise."""
    per_sample: bool = True
    """true: one t per clip | false: one t per batch and modality (NMER; with a few test batches per condition and fold
    the metric then hangs on a few draws of t)."""
    batch_size: int = Field(128, ge=1, le=65536)
    """Evaluation batch size, the same for every run (so every run sees the same noisy inputs)."""
    seed: int = Field(0, ge=0)
    """Evaluation noise seed (per fold and setting, never per run)."""
    signal: bool = True
    """Also test on signal-level corruptions of the recordings (`features.corruptions`, extracted by prepare only when
    this is true)."""


class Calibration(Params):
    """Difficulty targets of the built-in corpus (checked in the analysis)."""

    audio_ua: list[Share] = Field(default_factory=lambda: [0.35, 0.65], min_length=2, max_length=2)
    """Range of the best audio-only UA."""
    visual_ua: list[Share] = Field(default_factory=lambda: [0.45, 0.80], min_length=2, max_length=2)
    """Range of the best visual-only UA."""
    fusion_margin: Share = 0.05
    """The best audio-visual UA is at least the best single modality + this..."""
    fusion_max: Share = 0.95
    """... and below this."""


class Embedding(Params):
    """The 2-D maps of each run's joint representation (what its classifier reads) under every condition
    (`mer_core.embedding`), for every run whose method has one."""

    fold: int | None = Field(None, ge=0)
    """Which fold's test clips and checkpoint; null: the first trained fold (of train.folds; 0 with all)."""
    seed: int | None = Field(None, ge=0)
    """Which training seed's checkpoint (one of train.seeds); null: the first of train.seeds."""
    projection: Literal["tsne", "pca"] = "tsne"
    """tsne (init pca, fixed random state, on standardised vectors) | pca."""
    perplexity: float = Field(30.0, ge=2.0, le=100.0)
    """t-SNE only (lowered to (points - 1) / 3 when there are few points)."""
    max_clips: int | None = Field(None, ge=4)
    """null: every test clip of the fold | a fixed seeded subset of this many."""


class Analysis(Params):
    """The analysis notebooks (03, 05): table precision, the claims' family-wise error rate, the built-in corpus's
    calibration targets and the 2-D maps of the joint representations."""

    precision: int = Field(3, ge=1, le=6)
    """Decimals in tables."""
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    """Family-wise error rate of the claims' tests (Holm-adjusted p-values are compared with it)."""
    calibration: Calibration = Field(default_factory=Calibration)
    embedding: Embedding = Field(default_factory=Embedding)


class Explore(Params):
    """The explorer notebook's first view (the one `dvc repro` commits; `make lab` opens its widget panel)."""

    run: str | None = None
    """A run of `methods`; null: the first trained run of a noise-robust method (NMER), else of a missing-modality
    method, else the first trained run."""
    fold: int | None = Field(None, ge=0)
    """A fold of the feature store: the clips are its test clips; null: the first trained fold (of train.folds; 0
    with all)."""
    seed: int | None = Field(None, ge=0)
    """A training seed of train.seeds; null: the first of them."""
    emotion: str | None = None
    """The first test clip of this class (a class of the corpus, or `any`; null: the first class in the corpus's
    order that has a test clip, of `speaker` when given) ..."""
    speaker: str | int | None = None
    """... and of this speaker id (null: any test speaker)."""
    clip: str | None = None
    """Or a test clip_id (overrides emotion and speaker)."""
    condition: str | None = None
    """The modalities present (a | v | av ...); null: the corpus's first single-modality condition."""
    noise: Literal["none", "gaussian", "impulse", "babble", "white", "tracking_dropout"] = "gaussian"
    """none (zero-filled) | gaussian | impulse: feature noise in place of the removed modalities | babble | white |
    tracking_dropout: a signal corruption the feature store holds."""
    level: float = Field(60.0, ge=0.0)
    """T for feature noise (an integer >= 1); the SNR (dB) or the fraction of a corruption."""
    draws: int = Field(16, ge=1, le=1024)
    """Feature-noise draws per setting (each its own t and noise), averaged."""

    @model_validator(mode="after")
    def _level(self):
        if self.noise in NOISE_TYPES and (self.level < 1 or self.level != int(self.level)):
            raise ValueError(f"level: feature noise {self.noise!r} takes T, an integer >= 1, got {self.level}")
        return self


class RunEntry(Params):
    """A run: `method` and the keys it changes from the method's defaults, or `base` (another run) and `set`
    (dotted keys it changes from that run); `task` overrides the study's task for this run."""

    method: str | None = None
    base: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    task: Literal[TASKS] | None = None
    model_config = {**Params.model_config, "extra": "allow"}

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.method is None) == (self.base is None):
            raise ValueError("give exactly one of `method` (a registered method) and `base` (another run)")
        if self.base is not None and self.model_extra:
            key = next(iter(self.model_extra))
            raise ValueError(
                f"unknown key {key!r} beside `base`: a run with a base changes keys through `set` "
                f"(e.g. set: {{{key}: ...}})"
            )
        return self


class OtherTask(Params):
    task: Literal[TASKS] = "regression"
    """The task the runs below are also trained for (the other one than the study's)."""
    methods: list[str] = Field(default_factory=lambda: ["vavl", "audio_only", "visual_only", "utt_fusion"])
    """Methods whose base run is retrained for it (stage task@<method>); absent methods are skipped."""


class Unpaired(Params):
    methods: list[str] = Field(default_factory=lambda: ["vavl", "utt_dataaug", "ifmmin"])
    """Methods whose base run is retrained on partly unpaired data (stage unpaired@<method>-<paired>)."""
    paired: list[Annotated[float, Field(ge=0.01, le=0.99)]] = Field(default_factory=lambda: [0.75, 0.5, 0.25])
    """Paired fractions of the training clips (the rest keep one modality, split evenly); 1 = the study's own run."""


class Extended(Params):
    """The extended study (extended/dvc.yaml, `make repro-extended`) on the default study's feature store."""

    runs: dict[str, RunEntry] = Field(default_factory=dict)
    """Runs of the extended study (stage run@<name>), in the form of `methods`; `base` may name a default-study run."""
    other_task: OtherTask = Field(default_factory=OtherTask)
    unpaired: Unpaired = Field(default_factory=Unpaired)
