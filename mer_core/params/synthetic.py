"""Params of the built-in corpus (`data.synthetic`, `mer_core.data.synthetic`): calibrated once, then left alone."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mer_core.schema import Params

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
EMOTION_CODES = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")  # CREMA-D's, which the built-in corpus uses
SENTENCE_CODES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


class VocalProfile(Params):
    """How a displayed emotion changes a voice (Banse & Scherer 1996; Juslin & Laukka 2003; docs/datasets.md)."""

    f0_st: float = Field(ge=-12.0, le=12.0)
    """F0 shift, semitones."""
    f0_range: float = Field(ge=0.1, le=4.0)
    """Factor on F0 excursions."""
    loudness_db: float = Field(ge=-20.0, le=20.0)
    """Level change, dB."""
    rate: float = Field(ge=0.3, le=3.0)
    """Syllable-rate factor."""
    tilt_db: float = Field(ge=-12.0, le=12.0)
    """Spectral slope change, dB per octave (+ = more high-frequency energy)."""
    jitter: float = Field(ge=0.1, le=10.0)
    """Factor on the speaker's jitter."""
    breathiness: float = Field(ge=0.1, le=10.0)
    """Factor on the speaker's breathiness."""
    formant_shift: float = Field(ge=0.8, le=1.25)
    """Factor on every formant."""


def _profiles() -> dict[str, VocalProfile]:
    keys = ("f0_st", "f0_range", "loudness_db", "rate", "tilt_db", "jitter", "breathiness", "formant_shift")
    values = {
        "ANG": (5.5, 1.4, 12.0, 1.15, 6.0, 1.3, 0.5, 1.04),
        "DIS": (-5.0, 0.75, -3.0, 0.7, -2.0, 4.0, 1.7, 0.91),
        "FEA": (9.0, 0.75, 4.0, 1.5, 3.5, 4.0, 1.4, 1.03),
        "HAP": (5.5, 2.2, 7.0, 1.15, 3.0, 1.0, 1.0, 1.15),
        "NEU": (0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0),
        "SAD": (-3.0, 0.3, -8.0, 0.6, -5.5, 1.4, 3.5, 0.96),
    }
    return {code: VocalProfile(**dict(zip(keys, row))) for code, row in values.items()}


class SyntheticAudio(Params):
    sample_rate: int = Field(16000, ge=8000, le=48000)
    """Hz, as CREMA-D's AudioWAV."""
    snr_db: list[float] = Field(default_factory=lambda: [15.0, 35.0], min_length=2, max_length=2)
    """Background-noise SNR range, drawn uniformly per clip (studio-like; evaluation noise comes later)."""
    noise_types: list[Literal["white", "pink"]] = Field(default_factory=lambda: ["white", "pink"], min_length=1)
    """Background-noise colours, one drawn per clip."""
    speech_rate: float = Field(4.5, ge=1.0, le=10.0)
    """Neutral syllables per second (scaled by speaker and profile rate)."""
    breath_level: float = Field(0.08, ge=0.0, le=1.0)
    """Aspiration-to-voicing amplitude of a neutral voice (HNR about 22 dB)."""
    jitter: float = Field(0.01, ge=0.0, le=0.1)
    """Mean period-to-period F0 perturbation (fraction), before speaker and profile factors."""
    shimmer: float = Field(0.05, ge=0.0, le=0.5)
    """Mean period amplitude perturbation (fraction)."""
    profiles: dict[Literal[EMOTION_CODES], VocalProfile] = Field(default_factory=_profiles)
    """The voice per displayed emotion (one profile for each of ANG, DIS, FEA, HAP, NEU, SAD)."""

    @model_validator(mode="after")
    def _complete(self):
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db: expected [low, high] with low <= high, got {list(self.snr_db)}")
        missing = [code for code in EMOTION_CODES if code not in self.profiles]
        if missing:
            raise ValueError(f"profiles: missing the emotion {missing[0]} (one profile per {', '.join(EMOTION_CODES)})")
        return self


class SyntheticFace(Params):
    fps: float = Field(30.0, ge=5.0, le=120.0)
    """OpenFace frames per second, as CREMA-D's video."""
    au_noise: float = Field(1.2, ge=0.0, le=3.0)
    """S.d. of the per-frame AU intensity noise (plus a per-clip offset of half that s.d.)."""
    head_motion: float = Field(1.0, ge=0.0, le=5.0)
    """Factor on head-pose and gaze drift (x 1.6 at full arousal)."""
    blink_rate: float = Field(0.3, ge=0.0, le=2.0)
    """Blinks per second (AU45), before the speaker's factor."""
    tracking_failure_rate: float = Field(0.02, ge=0.0, le=0.5)
    """Expected fraction of frames with success = 0 (bursts, all features zero)."""


def _pad() -> dict[str, list[float]]:
    return {
        "ANG": [-0.51, 0.59, 0.25],
        "DIS": [-0.6, 0.35, 0.11],
        "FEA": [-0.64, 0.6, -0.43],
        "HAP": [0.58, 0.35, 0.25],
        "NEU": [0.0, 0.0, 0.0],
        "SAD": [-0.52, -0.24, -0.33],
    }


class SyntheticAttributes(Params):
    pad: dict[Literal[EMOTION_CODES], list[Annotated[float, Field(ge=-1.0, le=1.0)]]] = Field(default_factory=_pad)
    """[pleasure = valence, arousal, dominance] per intended emotion (Mehrabian / ALMA, docs/datasets.md)."""
    jitter: float = Field(0.1, ge=0.0, le=1.0)
    """S.d. of the Gaussian noise added to each attribute (after x level_gain), then clipped to [-1, 1]."""

    @model_validator(mode="after")
    def _complete(self):
        for code in EMOTION_CODES:
            if code not in self.pad:
                raise ValueError(f"pad: missing the emotion {code}")
            if len(self.pad[code]) != 3:
                raise ValueError(f"pad.{code}: expected 3 values [valence, arousal, dominance]")
        return self


class Synthetic(Params):
    """The built-in corpus (`mer_core.data.synthetic`): calibrated once, then left alone."""

    seed: int = Field(2024, ge=0)
    """Every speaker and clip draws from SeedSequence(seed, clip identity)."""
    n_actors: int = Field(24, ge=2, le=1000)
    """Actors 1001..; 82 clips each with all sentences (CREMA-D's level structure)."""
    female_fraction: Probability = 0.5
    """round(n_actors x this) actors are female."""
    sentences: Literal["all"] | list[Literal[SENTENCE_CODES]] = "all"
    """all, or a list of CREMA-D sentence codes (IEO, TIE, ... WSI) for tiny corpora."""
    level_gain: dict[Literal["LO", "MD", "HI", "XX"], Annotated[float, Field(ge=0.0, le=2.0)]] = Field(
        default_factory=lambda: {"LO": 0.6, "MD": 0.85, "HI": 1.1, "XX": 1.0}
    )
    """How far a display departs from neutral, per intensity level."""
    display_strength: float = Field(1.0, ge=0.0, le=3.0)
    """Global factor on every display (voice and face), on top of level_gain."""
    intended_trace: Probability = 0.3
    """Share of the intended emotion's cues mixed into each display (0 = the displayed emotion only)."""
    speaker_variability: float = Field(0.8, ge=0.0, le=3.0)
    """Factor on every between-speaker spread (F0 range, tract, rate, tilt, gain, resting face)."""
    audio: SyntheticAudio = Field(default_factory=SyntheticAudio)
    face: SyntheticFace = Field(default_factory=SyntheticFace)
    attributes: SyntheticAttributes = Field(default_factory=SyntheticAttributes)

    @model_validator(mode="after")
    def _sentences(self):
        if isinstance(self.sentences, list):
            if not self.sentences:
                raise ValueError("sentences: give at least one sentence code, or all")
            if len(set(self.sentences)) != len(self.sentences):
                raise ValueError(f"sentences: each code may appear once, got {self.sentences}")
        missing = [level for level in ("LO", "MD", "HI", "XX") if level not in self.level_gain]
        if missing:
            raise ValueError(f"level_gain: missing the level {missing[0]} (LO, MD, HI, XX)")
        return self
