"""Frame-level feature extraction for every corpus.

Audio: WAV read with soundfile (torchaudio.load needs torchcodec), mixed to mono, resampled to 16 kHz, then
- `logmel`: log mel filterbank energies (torchaudio's Kaldi-compatible `fbank`), the default;
- `compare`: openSMILE ComParE_2016 low-level descriptors + deltas (65 + 65 = 130-d), the features the
  MMIN / IF-MMIN / NMER code trains on (methods.md §1.1).
An optional frame-rate reduction averages non-overlapping groups of `rate_reduction` frames (the MMIN
preprocessing downsamples ComParE x10 with a polyphase filter; averaging is our simpler stand-in).

Visual: OpenFace 2.0 CSV columns (`mer_core.data.openface`), with the same optional rate reduction.

`features.corruptions` sets the signal-level corruptions (noisy audio, face-tracking dropout) that the prepare
step extracts beside the clean features for testing (`mer_core.noise.signal`, `mer_core.data.prepare`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from mer_core.config import Field, Section
from mer_core.data.openface import COLUMN_GROUPS, openface_columns, read_openface_csv

SAMPLE_RATE = 16000

FEATURES_SCHEMA = Section(
    {
        "audio": Section(
            {
                "extractor": Field(str, choices=("logmel", "compare")),
                "n_mels": Field(int, low=8, high=128),
                "win_ms": Field(float, low=5, high=100),
                "hop_ms": Field(float, low=2, high=50),
                "rate_reduction": Field(int, low=1, high=20),
            }
        ),
        "visual": Section(
            {
                "groups": Field(list, low=1, item=Field(str, choices=tuple(COLUMN_GROUPS))),
                "fps": Field(float, low=1, high=120),
                "rate_reduction": Field(int, low=1, high=20),
            }
        ),
        "n_jobs": Field(int, low=1, high=64),
        "corruptions": Section(  # signal-level corruptions of the test media (mer_core.data.prepare)
            {
                "seed": Field(int, low=0),
                "audio_noises": Field(list, item=Field(str, choices=("babble", "white"))),
                "audio_snr_db": Field(list, item=Field(float, low=-30.0, high=60.0)),
                "babble_talkers": Field(int, low=1, high=32),
                "visual_dropout": Field(list, item=Field(float, low=0.0, high=1.0)),
                "dropout_burst_s": Field(float, low=0.001, high=60.0),
            }
        ),
    }
)


class AudioError(ValueError):
    """A WAV file is unreadable, empty or holds non-finite samples; the message names the file."""


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`."""
    path = Path(path)
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err
    if wave.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: non-finite samples")
    wave = wave.mean(axis=1)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, sample_rate).numpy()
    return wave


def reduce_rate(frames: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping groups of `factor` frames (the last, shorter group included)."""
    if factor == 1 or len(frames) == 0:
        return frames
    starts = np.arange(0, len(frames), factor)
    sums = np.add.reduceat(frames.astype(np.float64), starts, axis=0)  # in frame order, as np.add.at did
    counts = np.diff(np.append(starts, len(frames)))
    return (sums / counts[:, None]).astype(np.float32)


@lru_cache(maxsize=None)
def _compare_extractor():
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016,
                           feature_level=opensmile.FeatureLevel.LowLevelDescriptors), opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors_Deltas)


def audio_features(wave: np.ndarray, cfg: dict) -> np.ndarray:
    """Frame features (T, D) of a 16 kHz mono signal under `features.audio` settings `cfg`."""
    if cfg["extractor"] == "logmel":
        frames = torchaudio.compliance.kaldi.fbank(
            torch.from_numpy(np.ascontiguousarray(wave))[None] * 32768.0,  # Kaldi's int16 scale
            num_mel_bins=cfg["n_mels"], frame_length=cfg["win_ms"], frame_shift=cfg["hop_ms"],
            sample_frequency=SAMPLE_RATE, dither=0.0, energy_floor=1.0,
        ).numpy()
    else:
        lld, deltas = _compare_extractor()
        a = lld.process_signal(wave, SAMPLE_RATE).to_numpy()
        d = deltas.process_signal(wave, SAMPLE_RATE).to_numpy()
        n = min(len(a), len(d))
        frames = np.concatenate([a[:n], d[:n]], axis=1)
    return reduce_rate(frames.astype(np.float32), cfg["rate_reduction"])


def audio_dim(cfg: dict) -> int:
    return cfg["n_mels"] if cfg["extractor"] == "logmel" else 130


def audio_frame_rate(cfg: dict) -> float:
    hop_ms = cfg["hop_ms"] if cfg["extractor"] == "logmel" else 10.0  # ComParE_2016 LLDs use a 10 ms hop
    return 1000.0 / hop_ms / cfg["rate_reduction"]


def wave_features(wave: np.ndarray, cfg: dict, source: str | Path) -> np.ndarray:
    """Checked frame features (T, D) of a 16 kHz mono signal; `source` names the file in an `AudioError`."""
    window_ms = cfg["win_ms"] if cfg["extractor"] == "logmel" else 60.0  # ComParE's longest LLD window
    if len(wave) < window_ms * SAMPLE_RATE / 1000:
        raise AudioError(f"{source}: {len(wave) / SAMPLE_RATE * 1000:.1f} ms is shorter than one {window_ms} ms frame")
    frames = audio_features(wave, cfg)
    if len(frames) == 0:
        raise AudioError(f"{source}: no feature frame")
    if not np.isfinite(frames).all():
        raise AudioError(f"{source}: features contain NaN or inf")
    return frames


def extract_audio(path: str | Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, D) of one audio file and its valid-frame mask (all True)."""
    frames = wave_features(read_wav(path), cfg, path)
    return frames, np.ones(len(frames), dtype=bool)


def reduce_visual(frames: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Rate reduction of face frames (T, D) with their valid mask: a reduced frame is the mean of its group's
    valid frames, and valid if any of them was (zero otherwise)."""
    if factor == 1:
        return frames, valid
    reduced = reduce_rate(frames * valid[:, None], factor)
    counts = reduce_rate(valid[:, None].astype(np.float32), factor)[:, 0]
    ok = counts > 0
    reduced[ok] /= counts[ok, None]
    return reduced, ok


def extract_visual(path: str | Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, D) of one OpenFace CSV and its valid-frame mask (a reduced frame is valid if any was)."""
    return reduce_visual(*read_openface_csv(path, cfg["groups"]), cfg["rate_reduction"])


def visual_dim(cfg: dict) -> int:
    return len(openface_columns(cfg["groups"]))
