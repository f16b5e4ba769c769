"""Source–filter speech synthesis for the built-in corpus (16 kHz, one sentence per clip).

A Rosenberg glottal pulse train (its derivative, which folds in lip radiation) follows an F0 contour with
declination, pitch accents and a final fall; jitter and shimmer perturb it period by period. A syllable-rate
energy envelope follows the sentence's vowels, and the vocal tract is a cascade of formant resonators that
glide between the vowels' Peterson & Barney targets, applied frame by frame in the STFT domain together with
a spectral tilt (vocal effort), aspiration noise (breathiness) and frication between syllables. Background
noise (white or pink) is added at a given SNR.

Emotion enters only through a `VocalProfile` (F0 level, F0 range, loudness, speech rate, spectral tilt,
jitter, breathiness, formant shift), whose defaults follow the vocal-cue table of docs/datasets.md
(Banse & Scherer 1996; Juslin & Laukka 2003).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

# Peterson & Barney (1952), averages for adult male speakers: F1, F2, F3 in Hz; F4 set to a nominal 3500 Hz.
VOWEL_FORMANTS = {
    "iy": (270, 2290, 3010, 3500),
    "ih": (390, 1990, 2550, 3500),
    "eh": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500),
    "ah": (520, 1190, 2390, 3500),
    "aa": (730, 1090, 2440, 3500),
    "ao": (570, 840, 2410, 3500),
    "uh": (440, 1020, 2240, 3500),
    "uw": (300, 870, 2240, 3500),
    "er": (490, 1350, 1690, 3500),
}
# Diphthongs glide between two of the monophthong targets above.
DIPHTHONGS = {"ay": ("aa", "iy"), "ey": ("eh", "iy"), "ow": ("ao", "uw"), "aw": ("aa", "uw"), "oy": ("ao", "iy")}
# Typical formant bandwidths (Hz) of F1–F4 for a male tract; scaled with the tract like the formants.
FORMANT_BANDWIDTHS = np.array([60.0, 90.0, 120.0, 170.0])

# The vowel of each syllable of the CREMA-D sentences (ARPAbet-style, one entry per syllable).
SENTENCE_VOWELS = {
    "IEO": "ih ih eh ah ah aa",  # It's e-le-ven o'-clock
    "TIE": "ae ih ih ae iy ah ae ah",  # That is ex-act-ly what hap-pened
    "IOM": "ay aa ay ey uw ah iy ih",  # I'm on my way to the mee-ting
    "IWW": "ay ah er ah ih ih ah aw",  # I won-der what this is a-bout
    "TAI": "ah eh ey ih ao ow uh",  # The air-plane is al-most full
    "MTI": "ey iy ah aa ow ih ih iy ow",  # May-be to-mor-row it will be cold
    "IWL": "ay uh ay ah uw ah aa aa",  # I would like a new a-larm clock
    "ITH": "ay ih ay ae ah aa er ah oy ah",  # I think I have a doc-tor's ap-point-ment
    "DFA": "ow er eh ah ae ih",  # Don't for-get a jack-et
    "ITS": "ay ih ay iy ih ih ao",  # I think I've seen this be-fore
    "TSI": "ah er ih ih ih",  # The sur-face is slick
    "WSI": "iy aa ih ah ah ah ah ih ih",  # We'll stop in a cou-ple of mi-nutes
}

REFERENCE_LEVEL_DBFS = -26.0  # active speech level of neutral speech at 0 dB speaker gain (ITU-T P.56 style)
CONTROL_RATE_HZ = 125.0
PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)  # control tracks and STFT frames: 8 ms hop


@dataclass(frozen=True)
class VocalProfile:
    """How a displayed emotion moves the voice away from the speaker's neutral speech.

    f0_st: F0 level shift in semitones; f0_range: factor on the F0 excursions (accents, declination);
    loudness_db: active speech level change; rate: factor on the syllable rate; tilt_db: change of spectral
    slope in dB per octave around 1 kHz (vocal effort); jitter, breathiness: factors on the speaker's values;
    formant_shift: factor on all formants (e.g. lip spreading when smiling raises them).
    """

    f0_st: float = 0.0
    f0_range: float = 1.0
    loudness_db: float = 0.0
    rate: float = 1.0
    tilt_db: float = 0.0
    jitter: float = 1.0
    breathiness: float = 1.0
    formant_shift: float = 1.0

    def toward(self, target: "VocalProfile", amount: float) -> "VocalProfile":
        """The profile `amount` of the way from this (neutral) one to `target`: additive settings are
        interpolated linearly, multiplicative ones (factors) geometrically. amount > 1 exaggerates."""
        return VocalProfile(
            f0_st=self.f0_st + amount * (target.f0_st - self.f0_st),
            f0_range=self.f0_range * (target.f0_range / self.f0_range) ** amount,
            loudness_db=self.loudness_db + amount * (target.loudness_db - self.loudness_db),
            rate=self.rate * (target.rate / self.rate) ** amount,
            tilt_db=self.tilt_db + amount * (target.tilt_db - self.tilt_db),
            jitter=self.jitter * (target.jitter / self.jitter) ** amount,
            breathiness=self.breathiness * (target.breathiness / self.breathiness) ** amount,
            formant_shift=self.formant_shift * (target.formant_shift / self.formant_shift) ** amount,
        )


@dataclass(frozen=True)
class Voice:
    """A speaker's neutral voice.

    f0_hz: mean F0 (male ~85–155 Hz, female ~165–255 Hz, docs/datasets.md); f0_range: factor on F0
    excursions; formant_scale: inverse vocal-tract length factor (1 = Peterson & Barney male averages);
    rate: factor on the syllable rate; tilt_db: spectral slope offset (dB/octave); breathiness: aspiration
    factor; jitter: period-to-period F0 perturbation (fraction); shimmer: period amplitude perturbation
    (fraction); gain_db: recording level offset; expressivity: how far the speaker's displays go.
    """

    f0_hz: float
    f0_range: float
    formant_scale: float
    rate: float
    tilt_db: float
    breathiness: float
    jitter: float
    shimmer: float
    gain_db: float
    expressivity: float


@dataclass(frozen=True)
class Utterance:
    """A synthesised clip: waveform in [-1, 1], its syllable energy envelope and F0 at `control_rate` Hz."""

    wave: np.ndarray
    sample_rate: int
    envelope: np.ndarray
    f0: np.ndarray
    control_rate: float
    syllable_rate: float

    @property
    def duration(self) -> float:
        return len(self.wave) / self.sample_rate

    @property
    def f0_median(self) -> float:
        return float(np.median(self.f0[self.envelope > 0.3]))


def synthesize_utterance(
    sentence: str,
    voice: Voice,
    profile: VocalProfile,
    rng: np.random.Generator,
    *,
    sample_rate: int,
    speech_rate: float,
    breath_level: float,
    snr_db: float,
    noise_type: str,
) -> Utterance:
    """Synthesise one sentence spoken by `voice` with the (already level-scaled) `profile`.

    speech_rate: neutral syllables per second; breath_level: aspiration-to-voicing amplitude ratio of a
    neutral voice; snr_db, noise_type ("white" or "pink"): the background noise added at the end.
    """
    vowels = SENTENCE_VOWELS[sentence].split()
    hop = int(round(sample_rate / CONTROL_RATE_HZ))
    control_rate = sample_rate / hop
    timing = _syllable_timing(len(vowels), speech_rate * voice.rate * profile.rate, rng)
    n_samples = int(round(timing.total * sample_rate))
    times = np.arange(n_samples // hop + 1) / control_rate
    syllable, phase, speaking = timing.locate(times)

    stress = rng.uniform(0.6, 1.0, len(vowels))
    stress[rng.integers(len(vowels))] = 1.0
    envelope = np.where(speaking, stress[syllable] * np.sin(np.pi * phase) ** 0.6, 0.0)

    f0 = _f0_contour(times, timing, syllable, phase, speaking, voice, profile, rng)
    open_quotient = float(np.clip(0.6 + 0.08 * np.log2(voice.breathiness * profile.breathiness), 0.4, 0.8))
    source = _glottal_source(
        f0,
        envelope,
        control_rate,
        n_samples,
        sample_rate,
        open_quotient,
        jitter=voice.jitter * profile.jitter,
        shimmer=voice.shimmer,
        rng=rng,
    )

    n_fft = 4 * hop
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    formants = _formant_tracks(vowels, timing, times, voice.formant_scale * profile.formant_shift)
    tract = _vocal_tract_gain(freqs, formants, voice.formant_scale)
    tilt = 10.0 ** ((voice.tilt_db + profile.tilt_db) * np.log2(np.maximum(freqs, 125.0) / 1000.0) / 20.0)
    voiced = _stft(source.astype(np.float32), n_fft, hop, len(times)) * (tract * tilt.astype(np.float32))
    frame_power = np.mean(np.abs(voiced) ** 2, axis=1, keepdims=True)

    active_power = float(np.mean(frame_power[envelope > 0.3]))
    aspiration_shape = tract * tilt * freqs / (freqs + 1500.0)
    aspiration = aspiration_shape * (
        breath_level * voice.breathiness * profile.breathiness * np.sqrt(frame_power) / _rms(aspiration_shape, axis=1)
    )
    frication = 0.3 * np.sqrt(active_power) * _frication(freqs, tilt, timing, syllable, phase, speaking, rng)
    noise_shape = np.sqrt(aspiration**2 + frication**2)  # two independent Gaussian noises, one draw
    noise_spectrum = noise_shape * (
        rng.standard_normal(voiced.shape, dtype=np.float32) + 1j * rng.standard_normal(voiced.shape, dtype=np.float32)
    )

    speech = _istft(voiced + noise_spectrum / np.sqrt(2.0), n_fft, hop, n_samples)
    active = np.interp(np.arange(n_samples) / sample_rate, times, envelope) > 0.3
    level_db = REFERENCE_LEVEL_DBFS + profile.loudness_db + voice.gain_db
    speech *= 10.0 ** (level_db / 20.0) / (_rms(speech[active]) + 1e-12)

    noise = _background_noise(noise_type, n_samples, rng)
    wave = speech + noise * 10.0 ** ((level_db - snr_db) / 20.0)
    peak = np.max(np.abs(wave))
    if peak > 0.98:  # a recording engineer would have lowered the gain: keep clear of int16 clipping
        wave *= 0.98 / peak
    return Utterance(wave, sample_rate, envelope, f0, control_rate, timing.syllable_rate)


@dataclass(frozen=True)
class _Timing:
    starts: np.ndarray
    durations: np.ndarray
    total: float

    @property
    def syllable_rate(self) -> float:
        return len(self.durations) / float(self.durations.sum())

    def locate(self, times: np.ndarray):
        """Syllable index, phase within it (0–1) and a speaking mask for each time."""
        index = np.clip(np.searchsorted(self.starts, times, side="right") - 1, 0, len(self.starts) - 1)
        phase = (times - self.starts[index]) / self.durations[index]
        speaking = (phase >= 0.0) & (phase < 1.0)
        return index, np.clip(phase, 0.0, 1.0), speaking


def _syllable_timing(n_syllables: int, rate: float, rng: np.random.Generator) -> _Timing:
    """Syllable durations around 1/rate (log-normal spread), phrase-final lengthening, leading/trailing silence."""
    durations = np.maximum(rng.lognormal(np.log(1.0 / rate), 0.2, n_syllables), 0.08)
    durations[-1] *= 1.4
    lead, tail = rng.uniform(0.25, 0.55), rng.uniform(0.3, 0.6)
    starts = lead + np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    return _Timing(starts, durations, float(starts[-1] + durations[-1] + tail))


def _f0_contour(times, timing, syllable, phase, speaking, voice, profile, rng) -> np.ndarray:
    """F0 (Hz) per control frame: declination, pitch accents on syllables, a final fall and slow wander,
    all in semitones and scaled by the speaker's and the profile's F0 range (Banse & Scherer 1996)."""
    spread = voice.f0_range * profile.f0_range
    speech_start, speech_end = timing.starts[0], timing.starts[-1] + timing.durations[-1]
    progress = np.clip((times - speech_start) / (speech_end - speech_start), 0.0, 1.0)
    declination = 2.0 * (1.0 - 2.0 * progress)
    accents = rng.uniform(0.5, 3.0, len(timing.starts))[syllable] * np.sin(np.pi * phase) * speaking
    final_fall = -2.0 * np.where(syllable == len(timing.starts) - 1, phase, 0.0) * speaking
    wander = lfilter([0.15], [1.0, -0.95], rng.standard_normal(len(times)))
    semitones = profile.f0_st + spread * (declination + accents + final_fall) + wander
    return voice.f0_hz * 2.0 ** (semitones / 12.0)


def _glottal_source(f0, envelope, control_rate, n_samples, sample_rate, open_quotient, *, jitter, shimmer, rng):
    """Rosenberg glottal flow derivative with per-period jitter and shimmer, shaped by the syllable envelope."""
    control_times = np.arange(len(f0)) / control_rate
    sample_times = np.arange(n_samples) / sample_rate
    f0_samples = np.interp(sample_times, control_times, f0)
    n_periods = int(np.sum(f0_samples) / sample_rate) + 2
    period = np.floor(np.cumsum(f0_samples) / sample_rate).astype(int)
    f0_samples = f0_samples * (1.0 + jitter * rng.standard_normal(n_periods))[period]
    cycles = np.cumsum(f0_samples) / sample_rate
    period = np.minimum(np.floor(cycles).astype(int), n_periods - 1)
    phi = cycles - np.floor(cycles)
    rise = 2.0 / 3.0 * open_quotient
    fall = open_quotient - rise
    derivative = np.where(
        phi < rise,
        np.pi / (2 * rise) * np.sin(np.pi * phi / rise),
        np.where(phi < open_quotient, -np.pi / (2 * fall) * np.sin(np.pi * (phi - rise) / (2 * fall)), 0.0),
    )
    amplitude = np.maximum(1.0 + shimmer * rng.standard_normal(n_periods), 0.2)[period]
    return derivative * amplitude * np.interp(sample_times, control_times, envelope)


def _formant_tracks(vowels, timing, times, scale) -> np.ndarray:
    """F1–F4 per control frame gliding through each syllable's vowel target(s), smoothed over ~50 ms."""
    anchor_times, anchor_values = [], []
    for start, duration, vowel in zip(timing.starts, timing.durations, vowels):
        if vowel in DIPHTHONGS:
            first, second = DIPHTHONGS[vowel]
            anchor_times += [start + 0.3 * duration, start + 0.75 * duration]
            anchor_values += [VOWEL_FORMANTS[first], VOWEL_FORMANTS[second]]
        else:
            anchor_times.append(start + 0.5 * duration)
            anchor_values.append(VOWEL_FORMANTS[vowel])
    anchors = np.asarray(anchor_values, dtype=float) * scale
    tracks = np.stack([np.interp(times, anchor_times, anchors[:, k]) for k in range(4)], axis=1)
    kernel = np.hanning(9)[1:-1]
    kernel /= kernel.sum()
    padded = np.pad(tracks, ((3, 3), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)


def _vocal_tract_gain(freqs: np.ndarray, formants: np.ndarray, scale: float) -> np.ndarray:
    """Magnitude of a cascade of two-pole resonators (unit gain at 0 Hz), frames x frequency bins."""
    f = freqs.astype(np.float32)[None, :]
    gain = np.ones((len(formants), len(freqs)), dtype=np.float32)
    for centre, half_bw in zip(formants.T.astype(np.float32), FORMANT_BANDWIDTHS * scale / 2.0):
        centre, half_bw_sq = centre[:, None], np.float32(half_bw**2)
        gain *= (centre**2 + half_bw_sq) / np.sqrt(((f - centre) ** 2 + half_bw_sq) * ((f + centre) ** 2 + half_bw_sq))
    return gain


def _frication(freqs, tilt, timing, syllable, phase, speaking, rng) -> np.ndarray:
    """Frication magnitude (frames x bins) at syllable boundaries: a band around 3.5–6.5 kHz whose strength is
    drawn per boundary (some boundaries are voiced stops or nasals and get none)."""
    n_boundaries = len(timing.starts) + 1
    strength = rng.uniform(0.2, 1.0, n_boundaries) * (rng.random(n_boundaries) < 0.6)
    boundary = syllable + (phase >= 0.5)
    distance = np.minimum(phase, 1.0 - phase) * timing.durations[syllable]
    envelope = strength[boundary] * np.exp(-((distance / 0.035) ** 2)) * speaking
    centre = rng.uniform(3500.0, 6500.0)
    band = np.exp(-0.5 * (np.log2(np.maximum(freqs, 50.0) / centre) / 0.4) ** 2) * tilt
    return envelope[:, None] * band[None, :] / _rms(band)


def _background_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white or pink noise (pink: P. Kellet's 3-pole approximation of a 1/f power spectrum)."""
    noise = rng.standard_normal(n_samples)
    if kind == "pink":
        noise = lfilter(PINK_B, PINK_A, noise)
    return noise / _rms(noise)


def _rms(x: np.ndarray, axis=None) -> np.ndarray:
    return np.sqrt(np.mean(np.square(x), axis=axis, keepdims=axis is not None))


def _window(n_fft: int) -> np.ndarray:
    """Square root of a periodic Hann window: analysis x synthesis windows sum to 2 at 75% overlap."""
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft))


def _stft(x: np.ndarray, n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """Frames centred on multiples of `hop` (frame k at sample k * hop)."""
    padded = np.pad(x, (n_fft // 2, n_fft))
    frames = sliding_window_view(padded, n_fft)[::hop][:n_frames]
    return np.fft.rfft(frames * _window(n_fft).astype(x.dtype), axis=1)


def _istft(spectrum: np.ndarray, n_fft: int, hop: int, n_samples: int) -> np.ndarray:
    """Weighted overlap-add inverse of `_stft` (hop = n_fft / 4)."""
    n_frames = spectrum.shape[0]
    overlap = n_fft // hop
    blocks = (np.fft.irfft(spectrum, n=n_fft, axis=1) * _window(n_fft)).reshape(n_frames, overlap, hop)
    out = np.zeros((n_frames + overlap - 1, hop))
    for j in range(overlap):
        out[j : j + n_frames] += blocks[:, j]
    start = n_fft // 2
    return out.ravel()[start : start + n_samples] / 2.0
