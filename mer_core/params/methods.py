"""Each method's params, with its official settings as defaults, and the catalogue of methods (`CATALOG`).

A run of the study (`params.yaml: methods.<run>`) names a method and states only what differs from the method's
defaults, or names a base run and the dotted keys it sets (`mer_core.config.resolve_runs`). The defaults here are the
official effective settings (docs/methods.md: MMIN §2, IF-MMIN §3, NMER §4, VAVL §5): schedules, sizes, loss weights,
and the switches that restore an official behaviour where ours deviates (the deviations table says which is which).
The MMIN family's runs also accept options beyond the official code, off by default: each frame modality's LSTM
encoder (`encoder`), openSMILE functionals in place of the audio frames (`audio_input`) and training-batch
augmentation (`augment`); `functionals_svm` is the classical speech baseline (a fitted stage, no gradient training).

`MethodInfo` says what a method is without importing torch: its params model, the module that builds its models, its
training stages (what each trains on and selects on), the modalities it needs, whether it has a joint representation,
which keys `train.preset: paper` resets, and the named variants (ablations and switches) that the analysis and the
papers' claims refer to. The torch side (`mer_core.methods.registry`) adds each stage's model builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Callable, Literal

from pydantic import Field, model_validator

from mer_core.params.data import FUNCTIONAL_SETS
from mer_core.params.training import Optim
from mer_core.schema import Params

MODALITIES = ("audio", "visual", "text")
AUDIO_INPUTS = ("frames", *FUNCTIONAL_SETS)
Weight = Annotated[float, Field(ge=0.0, le=1e6)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Width = Annotated[int, Field(ge=1, le=4096)]


def optim(**values) -> Callable[[], Optim]:
    return lambda: Optim(**values)


# official schedules (docs/methods.md §2, §3.1, §3.2, §4.2, §4.3, §5.3); MMIN's utt_fusion clips gradient norms at
# 5.0 (AIM3-RUC/MMIN master; IF-MMIN's copy of the model clips at 0.5, as its utt_shared does)
UTT_FUSION_OPTIM = dict(epochs=10, epochs_decay=10, lr=2e-4, beta1=0.9, grad_clip=5.0, batch_size=128)
SHARED_OPTIM = dict(epochs=10, epochs_decay=10, lr=2e-4, beta1=0.9, grad_clip=0.5, batch_size=64)


class NoiseParams(Params):
    """NMER's noise scheduler (docs/methods.md §4.1)."""

    type: Literal["gaussian", "impulse"] = "gaussian"
    """gaussian | impulse (NMER's two scripts)."""
    steps: int = Field(100, ge=1, le=100000)
    """T, the noise intensity (both scripts: 100)."""
    schedule: Literal["scaled_linear", "linear", "cosine"] = "scaled_linear"
    """The beta schedule (official: scaled_linear)."""
    beta_start: float = Field(0.01, ge=0.0, le=1.0)
    """First beta (scaled_linear and linear)."""
    beta_end: float = Field(0.5, ge=0.0, le=1.0)
    """Last beta."""
    impulse_density: Share = 0.3
    """Fraction of +-1 entries of impulse noise (official occur_freq 0.7 -> 30%)."""
    per_sample: bool = False
    """false: one t per batch and modality (official) | true: one t per clip."""


class RunParams(Params):
    """What every method accepts."""

    unpaired: dict[Literal[MODALITIES], Share] = Field(default_factory=dict)
    """Partly unpaired training data: {modality: share} of the training clips keep only that modality
    (`mer_core.data.batches.unpair`); empty: every clip keeps every modality it has."""

    @model_validator(mode="after")
    def _some_paired(self):
        if sum(self.unpaired.values()) >= 1 - 1e-9:
            raise ValueError(
                f"unpaired: the shares sum to {sum(self.unpaired.values()):g}, leaving no paired training "
                "clip; keep their sum below 1"
            )
        return self


class LSTMOptions(Params):
    """One modality's LSTM utterance encoder (`mer_core.layers.LSTMEncoder`); the defaults are the official encoder."""

    pooling: Literal["max", "attention", "mean", "stats"] = "max"
    """max over the LSTM outputs (official) | attention: additive attention over the frames | mean | stats: their mean
    and standard deviation, projected back to the encoder width (statistics pooling)."""
    layers: int = Field(1, ge=1, le=8)
    """Stacked LSTM layers (official: 1)."""
    bidirectional: bool = False
    """Two directions of hidden / 2 units each, so the embedding keeps its width (official: one direction)."""
    conv: int = Field(0, ge=0, le=31)
    """Kernel width of a 1-D convolution (ReLU, `hidden` channels) over the frames before the LSTM; 0 = none
    (official)."""


class LSTMEncoders(Params):
    """The LSTM encoder of each frame modality (text keeps its TextCNN)."""

    audio: LSTMOptions = Field(default_factory=LSTMOptions)
    visual: LSTMOptions = Field(default_factory=LSTMOptions)


class Augment(Params):
    """Augmentation of one modality's training frames (`mer_core.augment`), drawn per clip from the unit's seeded
    generator; validation and test clips are never augmented. All off by default (the official training)."""

    speed: list[Annotated[float, Field(ge=0.25, le=4.0)]] = Field(
        default_factory=lambda: [1.0, 1.0], min_length=2, max_length=2
    )
    """[low, high]: the frames resampled in time by a factor drawn from this range (> 1: faster, fewer frames), as
    speed perturbation; [1, 1] = off."""
    time_masks: int = Field(0, ge=0, le=20)
    """Time masks per clip (SpecAugment): runs of frames set to the training mean."""
    time_mask: Share = 0.0
    """Longest time mask, as a fraction of the clip's frames."""
    freq_masks: int = Field(0, ge=0, le=20)
    """Feature masks per clip (SpecAugment's frequency masks): runs of feature dimensions set to the training mean."""
    freq_mask: Share = 0.0
    """Widest feature mask, as a fraction of the feature dimensions."""
    noise: float = Field(0.0, ge=0.0, le=10.0)
    """Standard deviation of Gaussian noise added to the (standardised) frames; 0 = none."""

    @model_validator(mode="after")
    def _range(self):
        if self.speed[0] > self.speed[1]:
            raise ValueError(f"speed: [low, high] with low <= high, got {self.speed}")
        return self


class Augmentations(Params):
    """Training-batch augmentation of each frame modality."""

    audio: Augment = Field(default_factory=Augment)
    visual: Augment = Field(default_factory=Augment)


class EncoderParams(RunParams):
    """The MMIN family's utterance encoders (docs/methods.md §1.3)."""

    hidden: Width = 128
    """Encoder width (LSTM hidden size, TextCNN output)."""
    encoder_pooling: Literal["valid", "padded"] = "valid"
    """LSTM pooling over the valid frames (ours) | over every frame, zero padding included (official)."""
    text_windows: Literal["valid", "padded"] = "valid"
    """TextCNN max over the windows inside the clip (ours) | over every window, padding included (official)."""
    encoder: LSTMEncoders = Field(default_factory=LSTMEncoders)
    """The LSTM encoders' options per modality (pooling, layers, direction, a convolution in front)."""
    audio_input: Literal[AUDIO_INPUTS] = "frames"
    """What the audio encoder reads: frames (the feature store's audio frames, official) | an openSMILE functionals
    set (ComParE_2016, 6373-d; eGeMAPSv02, 88-d): one vector per clip, a sequence of one frame (the params stage asks
    prepare to extract it)."""
    augment: Augmentations = Field(default_factory=Augmentations)
    """Augmentation of the training batches, per modality (every stage of the run)."""


class Classifier(Params):
    classifier: list[Width] = Field(default_factory=lambda: [128, 128])
    """Hidden widths of the MLP classifier (FcClassifier)."""
    dropout: float = Field(0.3, ge=0.0, le=0.95)
    """Dropout after each hidden layer."""


class Baseline(EncoderParams, Classifier):
    """Unimodal, early, late and utterance-level fusion (MMIN's utt_fusion script, docs/methods.md §2)."""

    optim: Optim = Field(default_factory=optim(**UTT_FUSION_OPTIM))


class EarlyFusion(Baseline):
    """Frame-level fusion: one LSTM over the concatenated frames of every modality."""

    @model_validator(mode="after")
    def _one_encoder(self):
        if self.encoder != LSTMEncoders():
            raise ValueError(
                "encoder: early_fusion encodes the concatenated frames of every modality with one LSTM, "
                "so the per-modality encoder options do not apply; leave `encoder` at its defaults"
            )
        return self


class UttDataaug(Baseline):
    conditions: Literal["missing", "any"] = "missing"
    """Training conditions drawn per clip: missing: only those with a modality missing (official) | any: the full
    condition too."""


class UttPretrain(Classifier):
    """MMIN's stage 1: utt_fusion on full modalities."""

    optim: Optim = Field(default_factory=optim(**UTT_FUSION_OPTIM))


class CMD(Params):
    cmd_weight: Weight = 1.0
    """Weight of the CMD term over modality pairs (0 = no CMD)."""
    cmd_moments: int = Field(5, ge=1, le=10)
    """K central moments (official 5)."""
    cmd_span: float | None = Field(None, ge=1e-6)
    """null: no range scaling (official) | b - a: the original CMD's 1 / (b - a)^k."""


class SharedPretrain(CMD, Classifier):
    """IF-MMIN's stage 1 (utt_shared): encoders + shared encoder, CE + CMD."""

    optim: Optim = Field(default_factory=optim(**SHARED_OPTIM))


class Imagination(EncoderParams, Classifier):
    dropout: float = Field(0.5, ge=0.0, le=0.95)
    """Dropout of the stage-2 classifier on the AE's block latents."""
    ae_widths: list[Annotated[float, Field(ge=0.01, le=64.0)]] = Field(
        default_factory=lambda: [2.0, 1.0, 0.5], min_length=1
    )
    """AE layers as multiples of the encoder width (MMIN: 256, 128, 64 for width 128)."""
    ae_blocks: int = Field(5, ge=1, le=32)
    """Residual AE blocks."""
    ce_weight: Weight = 1.0
    """Weight of the cross-entropy (the task loss)."""
    mse_weight: Weight
    """Weight of the imagination MSE."""


class MMIN(Imagination):
    """MMIN (docs/methods.md §2)."""

    optim: Optim = Field(
        default_factory=optim(epochs=30, epochs_decay=30, lr=2e-4, beta1=0.5, grad_clip=1.0, batch_size=128)
    )
    mse_weight: Weight = 4.0
    """Weight of the imagination MSE (MMIN's IEMOCAP script: 4)."""
    cycle_weight: Weight = 2.0
    """Weight of the cycle AE's MSE; 0 = no cycle AE (MMIN's mmin_AE ablation)."""
    pretrain: UttPretrain = Field(default_factory=UttPretrain)


class IFMMIN(Imagination):
    """IF-MMIN (docs/methods.md §3)."""

    optim: Optim = Field(
        default_factory=optim(epochs=20, epochs_decay=20, lr=2e-4, beta1=0.5, grad_clip=1.0, batch_size=128)
    )
    mse_weight: Weight = 1.0
    """Weight of the imagination MSE (IF-MMIN's script: 1)."""
    inject: bool = True
    """Re-inject the invariant features H' at every AE block (false: MMIN's AE)."""
    ae_version: Literal["published", "head"] = "published"
    """The IF-IM autoencoder: published (commit a4b6ef4, current when the paper appeared) | head (f4d65fc, 2024)."""
    invariant_weight: Weight = 100.0
    """MSE(H, H'); 100 is the intended value (the released script's flag is rejected, so the released code runs 1)."""
    pretrain: SharedPretrain = Field(default_factory=SharedPretrain)


class NMERPretrain(CMD, Classifier):
    """NMER's stage 1 (utt_shared_002)."""

    optim: Optim = Field(default_factory=optim(**SHARED_OPTIM))
    dropout: float = Field(0.2, ge=0.0, le=0.95)
    """Dropout of the stage-1 classifier (NMER's script: 0.2)."""
    denoise_weight: Weight = 100.0
    """Weight of the auxiliary diffusion term (official 100); 0 = off."""
    denoise_hidden: int = Field(256, ge=1, le=8192)
    """Width of the conditional denoiser that stands in for the official UNet."""
    denoise_term: Literal["official", "denoiser"] = "official"
    """official: MSE(x_0, net(x_t) + x_0) = mean(net(x_t)^2), what the released code computes | denoiser: a real
    denoising loss MSE(x_t + net(x_t), x_0)."""


class NMER(EncoderParams, Classifier):
    """NMER (docs/methods.md §4)."""

    optim: Optim = Field(
        default_factory=optim(epochs=40, epochs_decay=40, lr=2e-4, beta1=0.5, grad_clip=1.0, batch_size=128)
    )
    dropout: float = Field(0.1, ge=0.0, le=0.95)
    """Dropout of the stage-2 classifier (BatchNorm on, official)."""
    latent: Width = 64
    """VAE latent size."""
    vae_layers: int = Field(5, ge=1, le=24)
    """Transformer encoder layers over [x, c]."""
    vae_heads: int = Field(8, ge=1, le=64)
    """Attention heads of each layer (they divide the token width [x, c])."""
    vae_ffn: int = Field(128, ge=1, le=16384)
    """Feed-forward width of each layer."""
    decoder_hidden: int = Field(128, ge=1, le=16384)
    """Hidden width of the decoder [z, c] -> x."""
    decoder_output: Literal["sigmoid", "linear"] = "sigmoid"
    """sigmoid (official; bounds the reconstruction to [0, 1]) | linear."""
    kl_reduction: Literal["sum", "mean"] = "sum"
    """sum over batch and latent dims (official) | mean."""
    vae_attention: Literal["per_clip", "across_batch"] = "per_clip"
    """per_clip: each clip its own sequence (ours) | across_batch: the official 2-D input, attention across clips."""
    eval_latent: Literal["sample", "mean"] = "sample"
    """z in evaluation: sample (official) | mean (z = mu)."""
    ce_weight: Weight = 1.0
    """Weight of the cross-entropy (NMER's script: 1)."""
    invariant_weight: Weight = 1.0
    """Weight of MSE(c, the teacher's invariant features) (NMER's script: 1)."""
    vae_weight: Weight = 1.0
    """Weight of the VAE loss (MSE + KL; official: unweighted)."""
    noise: NoiseParams = Field(default_factory=NoiseParams)
    """The noise that replaces the removed modalities in training and validation."""
    pretrain: NMERPretrain = Field(default_factory=NMERPretrain)


class VAVL(RunParams):
    """VAVL (docs/methods.md §5)."""

    optim: Optim = Field(
        default_factory=optim(epochs=20, epochs_decay=0, lr=5e-5, beta1=0.95, grad_clip=0.0, batch_size=32)
    )
    projection: Width = 50
    """1x1 convolution width in front of each branch."""
    subsample: int = Field(1, ge=1, le=16)
    """Average groups of this many frames before the Conformers (official 1: none)."""
    d_model: int = Field(512, ge=2, le=4096)
    """Conformer width."""
    heads: int = Field(8, ge=1, le=64)
    """Attention heads."""
    ffn_expansion: int = Field(4, ge=1, le=16)
    """Feed-forward width / d_model."""
    kernel: int = Field(31, ge=1, le=255)
    """Depthwise convolution kernel (odd)."""
    branch_blocks: int = Field(3, ge=0, le=32)
    """Modality-specific Conformer blocks."""
    shared_blocks: int = Field(2, ge=0, le=32)
    """Shared Conformer blocks."""
    dropout: float = Field(0.1, ge=0.0, le=0.95)
    """Dropout inside the Conformers."""
    head_dropout: float = Field(0.2, ge=0.0, le=0.95)
    """Dropout in the heads (official out_dropout)."""
    shared: bool = True
    """false: each modality its own copy of the shared stack (ablation: no shared layers)."""
    residual: bool = True
    """Residual connection over the shared stack (ablation: false)."""
    rec_weight: Literal["auto"] | Weight = "auto"
    """Reconstruction weight: auto = 2 (classification) / 1 (regression), official; 0 = none."""
    attention_scale: Literal["d_model", "d_head"] = "d_model"
    """Attention scores divided by sqrt(d_model) (official) | sqrt(d_head)."""
    positions: Literal["relative", "absolute_shift"] = "relative"
    """relative: exact relative distances (ours) | absolute_shift: absolute sinusoids with the relative-shift trick
    (official)."""
    pooling: Literal["valid", "padded"] = "valid"
    """Mean pooling and reconstruction target over the valid frames (ours) | over every frame (official)."""
    axes: Literal["per_clip", "official"] = "per_clip"
    """per_clip: each clip on its own frames (ours) | official: the released (T, B, D) swap, attention and
    convolution across the clips of a batch."""

    @model_validator(mode="after")
    def _shapes(self):
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel: the depthwise kernel must be odd (same padding), got {self.kernel}")
        if self.d_model % self.heads:
            raise ValueError(f"heads: {self.heads} must divide d_model {self.d_model}")
        return self


class FunctionalsSVM(Params):
    """The classical baseline (`mer_core.methods.classical`): each clip's openSMILE functionals, standardised with the
    fold's training statistics, and a linear SVM whose C is chosen on the validation speakers."""

    feature_set: Literal[tuple(FUNCTIONAL_SETS)] = "ComParE_2016"
    """ComParE_2016 (6373 functionals) | eGeMAPSv02 (88): the set the params stage asks prepare to extract."""
    C: list[Annotated[float, Field(gt=0.0, le=1e6)]] = Field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1, max_length=50
    )
    """The grid of the SVM's C: one SVM per value on the training speakers, the best validation UA kept (earliest on
    ties)."""
    class_weight: Literal["none", "balanced"] = "none"
    """none | balanced: class weights inversely proportional to the training counts."""
    max_iter: int = Field(10000, ge=100, le=1_000_000)
    """liblinear's iteration limit (history.csv records whether it converged within it)."""


# ====================================================================================== the catalogue


@dataclass(frozen=True)
class StageInfo:
    """One training stage. `key`: None when its keys (`optim`) sit at the top of the entry, else the nested block
    that holds them (`pretrain`). `train_conditions`: full | random | missing (what each training clip shows; a
    callable of the entry where a switch decides). `select_on`: the validation conditions of the epoch kept (pooled |
    full | missing). `noise_key`: the entry's block of the noise that fills removed modalities (NMER), or None.
    `grid`: None for a stage trained by gradient descent; for a *fitted* stage (the classical baseline), the entry key
    of the hyper-parameter grid it fits one model per point of, keeping the best on validation (its "epochs")."""

    name: str
    key: str | None = None
    train_conditions: str | Callable[[dict], str] = "full"
    select_on: str = "pooled"
    noise_key: str | None = None
    grid: str | None = None

    def conditions(self, entry: dict) -> str:
        return self.train_conditions(entry) if callable(self.train_conditions) else self.train_conditions


def stage_epochs(stage: dict, entry: dict) -> int:
    """The most epochs one unit trains stage `stage` (a resolved run's stage) of `entry`: its `optim` block's epochs +
    epochs_decay; a fitted stage (`grid`): the points of its grid."""
    block = entry if stage["key"] is None else entry[stage["key"]]
    if stage.get("grid"):
        return len(block[stage["grid"]])
    return block["optim"]["epochs"] + block["optim"]["epochs_decay"]


def audio_input(entry: dict) -> str | None:
    """The openSMILE functionals set a run of the MMIN family reads as its audio (`audio_input`), or None (frames)."""
    value = entry.get("audio_input", "frames")
    return None if value == "frames" else value


@dataclass(frozen=True)
class MethodInfo:
    """A method: see the module docstring. `variants`: named changes of its entry (dotted keys), the ablations and
    switch studies the analysis and the papers' claims refer to. `paper_switches`: {dotted key: the official value}
    that `train.preset: paper` sets where the run does not write the key (the official behaviour the paper's numbers
    were produced with). `tasks`: the study tasks it can be trained for (a run of another task is skipped, with the
    reason). `functionals(entry)`: the openSMILE functionals set a run reads as its audio, or None (frames); the
    params stage asks prepare for every set the trained runs read."""

    name: str
    params: type[Params]
    module: str
    stages: tuple[StageInfo, ...]
    summary: str
    needs: tuple[str, ...] = ()
    min_modalities: int = 1
    joint: str | None = None
    paper_keys: tuple[str, ...] = ()
    variants: dict[str, dict] = field(default_factory=dict)
    family: str = "baseline"
    paper_switches: dict[str, object] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("classification", "regression")
    functionals: Callable[[dict], str | None] = audio_input


SIZE_KEYS = ("optim", "hidden", "classifier", "dropout")
# the MMIN code's encoders never see the clip lengths: their max-pools run over the padded batch (docs/methods.md §1.3)
MMIN_CODE_POOLING = {"encoder_pooling": "padded", "text_windows": "padded"}
TWO_STAGE_KEYS = (*SIZE_KEYS, "ae_widths", "ae_blocks", "pretrain.optim", "pretrain.classifier", "pretrain.dropout")
BASELINE = "mer_core.methods.baselines"
MMIN_MODULE = "mer_core.methods.mmin"


def _baseline(
    name: str,
    summary: str,
    needs=(),
    min_modalities=2,
    joint=None,
    params=Baseline,
    conditions: str | Callable = "full",
) -> MethodInfo:
    return MethodInfo(
        name,
        params,
        BASELINE,
        (StageInfo("train", train_conditions=conditions),),
        summary,
        needs,
        min_modalities,
        joint,
        SIZE_KEYS,
        paper_switches=MMIN_CODE_POOLING,
    )


def _two_stage(name, params, module, summary, joint, variants, paper_keys=TWO_STAGE_KEYS, noise_key=None, family=""):
    return MethodInfo(
        name,
        params,
        module,
        (StageInfo("pretrain", "pretrain", "full", "full"), StageInfo("train", None, "missing", "missing", noise_key)),
        summary,
        (),
        2,
        joint,
        paper_keys,
        variants,
        family,
        MMIN_CODE_POOLING,
    )


UTT_JOINT = "the concatenated encoder embeddings"
CATALOG: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        _baseline("audio_only", "LSTM on audio frames only", ("audio",), 1, "the audio encoder's embedding"),
        _baseline("visual_only", "LSTM on face frames only", ("visual",), 1, "the visual encoder's embedding"),
        _baseline(
            "early_fusion",
            "frame-level concatenation, one LSTM",
            joint="the LSTM embedding of the concatenated frames",
            params=EarlyFusion,
        ),
        _baseline("late_fusion", "mean of unimodal class probabilities"),
        _baseline("utt_fusion", "MMIN's full-modality encoder network (MEN)", joint=UTT_JOINT),
        _baseline(
            "utt_dataaug",
            "utt_fusion trained with one random condition per clip (MMIN's MEN + aug)",
            joint=UTT_JOINT,
            params=UttDataaug,
            conditions=lambda entry: "missing" if entry["conditions"] == "missing" else "random",
        ),
        _two_stage(
            "mmin",
            MMIN,
            MMIN_MODULE,
            "MMIN: utt_fusion teacher, then cascade residual AE imagining the missing modalities (+ cycle AE)",
            "the imagination AE's concatenated block latents",
            {"no_cycle": {"cycle_weight": 0.0}},
            family="mmin",
        ),
        _two_stage(
            "ifmmin",
            IFMMIN,
            MMIN_MODULE,
            "IF-MMIN: CMD-trained invariant features re-injected into every block of the imagination AE",
            "the imagination AE's concatenated block latents",
            {
                "no_cmd": {"pretrain.cmd_weight": 0.0},
                "no_inject": {"inject": False},
                "no_inv": {"invariant_weight": 0.0},
                "head_ae": {"ae_version": "head"},
                "released_inv_weight": {"invariant_weight": 1.0},
            },
            family="mmin",
        ),
        _two_stage(
            "nmer",
            NMER,
            "mer_core.methods.nmer",
            "NMER: invariant/specific encoders with a denoising auxiliary loss, then a conditional VAE trained on "
            "noised missing modalities",
            "the conditional VAE's reconstruction x̂",
            {"denoiser": {"pretrain.denoise_term": "denoiser"}, "kl_mean": {"kl_reduction": "mean"}},
            paper_keys=(
                *SIZE_KEYS,
                "latent",
                "vae_layers",
                "vae_heads",
                "vae_ffn",
                "decoder_hidden",
                "pretrain.optim",
                "pretrain.classifier",
                "pretrain.dropout",
            ),
            noise_key="noise",
            family="nmer",
        ),
        MethodInfo(
            "vavl",
            VAVL,
            "mer_core.methods.vavl",
            (StageInfo("train", None, "full", "full"),),
            "VAVL: modality branches + shared Conformer layers (residual, reconstruction), one model for audio, video "
            "or both",
            ("audio", "visual"),
            1,
            "the concatenated utterance representations (the fusion head's input)",
            (
                "optim",
                "projection",
                "subsample",
                "d_model",
                "heads",
                "ffn_expansion",
                "kernel",
                "branch_blocks",
                "shared_blocks",
                "dropout",
                "head_dropout",
            ),
            {"no_shared": {"shared": False}, "no_residual": {"residual": False}, "no_rec": {"rec_weight": 0.0}},
            family="vavl",
            functionals=lambda entry: None,
        ),
        MethodInfo(
            "functionals_svm",
            FunctionalsSVM,
            "mer_core.methods.classical",
            (StageInfo("fit", None, "full", "full", grid="C"),),
            "openSMILE functionals + standardisation + linear SVM, C chosen on the validation speakers",
            ("audio",),
            1,
            None,
            ("C", "max_iter"),
            family="classical",
            tasks=("classification",),
            functionals=lambda entry: entry["feature_set"],
        ),
    )
}
