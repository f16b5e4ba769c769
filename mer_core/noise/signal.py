"""Signal-level corruptions of real recordings, applied to the media before feature extraction.

Audio: additive noise at a set signal-to-noise ratio, white (Gaussian) or *babble* (several other talkers
speaking at once, the standard noise of noise-robust speech recognition, e.g. NOISEX-92 "babble"). Visual:
face-tracking dropout, contiguous bursts of frames in which OpenFace lost the face (turned away, occluded,
motion blur) and writes `success = 0`. Pure numpy; every draw comes from the `np.random.Generator` passed in.
"""

from __future__ import annotations

import numpy as np


def _power(x: np.ndarray) -> float:
    """Mean square, in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return float(np.einsum("i,i->", x, x) / x.size) if x.size else 0.0  # not np.dot: BLAS threads in workers


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(_power(x)))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of Gaussian white noise scaled to unit RMS (float64)."""
    if n < 1:
        raise ValueError(f"white noise: n must be at least 1, got {n}")
    noise = rng.standard_normal(n)
    return noise / _rms(noise)


def babble_noise(waves: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Babble of `n` samples (float64, unit RMS): the sum of the talkers' `waves`, each looped or cropped to `n`
    samples from a random offset and scaled to unit RMS first, so that every talker is equally loud."""
    if n < 1:
        raise ValueError(f"babble noise: n must be at least 1, got {n}")
    if not waves:
        raise ValueError("babble noise: no talker waveform given")
    total = np.zeros(n, dtype=np.float64)
    for k, wave in enumerate(waves):
        wave = np.asarray(wave, dtype=np.float64).reshape(-1)
        if len(wave) == 0 or _rms(wave) == 0.0:
            raise ValueError(f"babble noise: talker {k} is silent (no sample or all zero)")
        offset = int(rng.integers(len(wave)))
        part = np.resize(np.roll(wave, -offset), n)  # from the offset on, looped when shorter than n
        level = _rms(part)
        if level == 0.0:
            raise ValueError(f"babble noise: talker {k} is silent over the {n} samples taken")
        total += part / level
    level = _rms(total)
    if level == 0.0:  # only when the talkers cancel exactly
        raise ValueError("babble noise: the talkers cancel out (zero sum)")
    return total / level


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech + g * noise` with g such that 10 log10(P_speech / P(g * noise)) = `snr_db`, powers taken over the
    whole clip; in the dtype of `speech` (computed in float64). No clipping: features are taken on floats."""
    speech = np.asarray(speech)
    noise = np.asarray(noise)
    if speech.shape != noise.shape:
        raise ValueError(f"mix at SNR: speech {speech.shape} and noise {noise.shape} differ in shape")
    if not np.isfinite(snr_db):
        raise ValueError(f"mix at SNR: snr_db must be finite, got {snr_db}")
    p_speech, p_noise = _power(speech), _power(noise)
    if not p_speech > 0.0:
        raise ValueError("mix at SNR: the speech is silent (zero power); no SNR can be set")
    if not p_noise > 0.0:
        raise ValueError("mix at SNR: the noise is silent (zero power); no SNR can be set")
    gain = np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    mixed = speech.astype(np.float64) + gain * noise.astype(np.float64)
    return mixed.astype(speech.dtype if np.issubdtype(speech.dtype, np.floating) else np.float64)


def _burst_lengths(k: int, burst_frames: float, rng: np.random.Generator) -> np.ndarray:
    """Geometric lengths (mean `burst_frames`, at least 1) drawn until they cover `k` frames; the last is cut."""
    p = 1.0 / burst_frames
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < k:
        lengths = np.concatenate([lengths, rng.geometric(p, size=int(np.ceil(k * p)) + 4)])
    ends = np.cumsum(lengths)
    m = int(np.searchsorted(ends, k)) + 1  # bursts needed to reach k
    lengths = lengths[:m].copy()
    lengths[-1] -= ends[m - 1] - k
    return lengths


def tracking_dropout(valid: np.ndarray, fraction: float, burst_frames: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of the valid-frame mask `valid` (T,) with round(`fraction` x T) frames turned into tracking failures.

    The failures come in contiguous bursts of geometric length (mean `burst_frames`, the last one cut to the
    count), separated by at least one frame and placed at uniformly random positions (a random composition of
    the remaining frames into the gaps); where there are too few frames to separate them, the last bursts merge.
    Frames already invalid stay invalid (so the invalid fraction is at least `fraction`). When the clip had a
    valid frame and none is left, one of its valid frames, drawn at random, is kept: OpenFace's importer rejects
    a clip whose face was never tracked, and a real failure seldom covers a whole clip.
    """
    valid = np.asarray(valid)
    if valid.ndim != 1 or valid.dtype != bool:
        raise ValueError(f"tracking dropout: valid must be a 1-D bool mask, got {valid.dtype} {valid.shape}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"tracking dropout: fraction must be in [0, 1], got {fraction}")
    if not burst_frames >= 1.0:
        raise ValueError(f"tracking dropout: burst_frames must be at least 1 frame, got {burst_frames}")
    n = len(valid)
    k = round(fraction * n)
    out = valid.copy()
    if k == 0:
        return out
    lengths = _burst_lengths(k, burst_frames, rng)
    free = n - k  # frames left for the gaps
    if len(lengths) - 1 > free:  # not enough frames to keep every burst apart: merge the last ones
        lengths = np.concatenate([lengths[:free], [lengths[free:].sum()]])
    m = len(lengths)
    # m + 1 gaps (before, between, after the bursts); the m - 1 inner gaps hold at least one frame each
    spare = free - (m - 1)
    cuts = np.sort(rng.choice(spare + m, size=m, replace=False))  # stars and bars: a uniform composition
    gaps = np.diff(np.concatenate([[-1], cuts, [spare + m]])) - 1
    gaps[1:-1] += 1
    runs = np.empty(2 * m + 1, dtype=np.int64)
    runs[0::2], runs[1::2] = gaps, lengths
    dropped = np.repeat(np.arange(2 * m + 1) % 2 == 1, runs)
    out &= ~dropped
    if valid.any() and not out.any():
        out[rng.choice(np.flatnonzero(valid))] = True
    return out
