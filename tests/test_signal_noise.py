"""Signal-level corruptions (mer_core.noise.signal): white and babble noise, mixing at an exact SNR, and
face-tracking dropout in bursts."""

from __future__ import annotations

import numpy as np
import pytest

from mer_core.noise.signal import babble_noise, mix_at_snr, tracking_dropout, white_noise

RATE = 16000


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def talker(seed: int, seconds: float = 2.0) -> np.ndarray:
    """A speech-like signal: a harmonic voice with a drifting F0, switched on and off at a syllabic rate."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(h * phase) / h for h in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.2 * voice * syllables).astype(np.float32)


def spectral_flatness(x: np.ndarray) -> float:
    """Geometric over arithmetic mean of the power spectrum, averaged over 512-sample frames (1 = white)."""
    frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)[:, 1:-1]) ** 2 + 1e-20
    return float(np.mean(np.exp(np.log(power).mean(1)) / power.mean(1)))


def envelope_variation(x: np.ndarray) -> float:
    """Coefficient of variation of the 25 ms frame RMS (how much the loudness moves)."""
    frames = x[: len(x) // 400 * 400].reshape(-1, 400)
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(1))
    return float(level.std() / level.mean())


# ================================================================================================ noises


def test_white_noise_is_unit_rms_flat_and_seeded():
    noise = white_noise(32000, np.random.default_rng(0))
    assert noise.shape == (32000,) and rms(noise) == pytest.approx(1.0, abs=1e-12)
    assert spectral_flatness(noise) > 0.5
    np.testing.assert_array_equal(noise, white_noise(32000, np.random.default_rng(0)))
    assert not np.array_equal(noise, white_noise(32000, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="n must be at least 1"):
        white_noise(0, np.random.default_rng(0))


def test_babble_is_unit_rms_and_not_white():
    talkers = [talker(k) for k in range(4)]
    babble = babble_noise(talkers, 48000, np.random.default_rng(0))
    white = white_noise(48000, np.random.default_rng(0))
    assert babble.shape == (48000,) and rms(babble) == pytest.approx(1.0, abs=1e-12)
    assert spectral_flatness(babble) < 0.2 * spectral_flatness(white)  # a voiced, low-pass spectrum
    assert envelope_variation(babble) > 2 * envelope_variation(white)  # loudness follows the syllables
    np.testing.assert_array_equal(babble, babble_noise(talkers, 48000, np.random.default_rng(0)))
    assert not np.array_equal(babble, babble_noise(talkers, 48000, np.random.default_rng(1)))  # other offsets


def test_babble_loops_short_talkers_and_makes_every_talker_equally_loud():
    short = talker(0, seconds=0.05)  # 800 samples, looped to 4000
    single = babble_noise([short], 4000, np.random.default_rng(3))
    np.testing.assert_allclose(single[:3200], single[800:], rtol=1e-12, atol=1e-12)
    offset = int(np.random.default_rng(3).integers(len(short)))  # the offset drawn first
    np.testing.assert_allclose(single[: len(short) - offset], short[offset:] / rms(short), rtol=1e-6, atol=1e-7)
    a, b = talker(1), talker(2)
    np.testing.assert_allclose(
        babble_noise([a, b], 20000, np.random.default_rng(5)),
        babble_noise([a, 100 * b], 20000, np.random.default_rng(5)),
        atol=1e-6,
    )


def test_babble_errors():
    with pytest.raises(ValueError, match="no talker waveform"):
        babble_noise([], 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match="talker 1 is silent"):
        babble_noise([talker(0), np.zeros(500, np.float32)], 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match="talker 0 is silent"):
        babble_noise([np.zeros(0, np.float32)], 100, np.random.default_rng(0))


# ================================================================================================ mixing


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0, 37.5])
@pytest.mark.parametrize("kind", ["white", "babble"])
def test_mix_hits_the_snr_exactly(snr_db, kind):
    speech = talker(7).astype(np.float64)
    rng = np.random.default_rng(1)
    noise = white_noise(len(speech), rng) if kind == "white" else babble_noise([talker(8), talker(9)], len(speech), rng)
    noise = 0.37 * noise  # the level of the noise given does not matter
    mixed = mix_at_snr(speech, noise, snr_db)
    assert mixed.dtype == np.float64 and mixed.shape == speech.shape
    measured = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
    assert abs(measured - snr_db) < 1e-6
    gain = np.dot(mixed - speech, noise) / np.dot(noise, noise)
    np.testing.assert_allclose(mixed - speech, gain * noise, atol=1e-12)  # the noise, scaled


def test_mix_keeps_float32_speech_in_float32():
    speech = talker(3)
    mixed = mix_at_snr(speech, white_noise(len(speech), np.random.default_rng(0)), 10.0)
    assert mixed.dtype == np.float32
    exact = speech.astype(np.float64)
    measured = 10 * np.log10(np.mean(exact**2) / np.mean((mixed - exact) ** 2))
    assert abs(measured - 10.0) < 1e-3
    lower = mix_at_snr(speech, white_noise(len(speech), np.random.default_rng(0)), 0.0)
    assert np.abs(lower - speech).mean() > 3 * np.abs(mixed - speech).mean()


def test_mix_errors_name_the_silent_signal():
    speech, noise = talker(1)[:1000], white_noise(1000, np.random.default_rng(0))
    with pytest.raises(ValueError, match="speech is silent"):
        mix_at_snr(np.zeros(1000, np.float32), noise, 10.0)
    with pytest.raises(ValueError, match="noise is silent"):
        mix_at_snr(speech, np.zeros(1000), 10.0)
    with pytest.raises(ValueError, match="differ in shape"):
        mix_at_snr(speech, noise[:999], 10.0)
    with pytest.raises(ValueError, match="finite"):
        mix_at_snr(speech, noise, float("inf"))


# ================================================================================================ dropout


def runs_of(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of False in `mask`."""
    padded = np.concatenate([[True], mask, [True]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return edges[1::2] - edges[0::2]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75])
def test_dropout_fraction_and_bursts(fraction):
    valid = np.ones(100_000, bool)
    out = tracking_dropout(valid, fraction, 15.0, np.random.default_rng(0))
    assert out.dtype == bool and out.shape == valid.shape
    assert abs((~out).mean() - fraction) < 0.02
    bursts = runs_of(out)
    assert abs(bursts.mean() - 15.0) < 1.5  # geometric lengths with mean 15 (about 1700 to 5000 bursts)
    assert (bursts == 1).mean() == pytest.approx(1 / 15, abs=0.02)  # P(length 1) of a geometric law
    halves = (~out).reshape(2, -1).mean(1)  # spread over the clip, not piled at one end
    assert np.abs(halves - fraction).max() < 0.05


def test_dropout_on_a_short_clip_keeps_the_count():
    for seed in range(20):
        out = tracking_dropout(np.ones(60, bool), 0.5, 15.0, np.random.default_rng(seed))
        assert (~out).sum() == 30
    starts = [
        int(np.argmin(tracking_dropout(np.ones(60, bool), 0.25, 5.0, np.random.default_rng(s)))) for s in range(20)
    ]
    assert len(set(starts)) > 5  # random positions


def test_invalid_frames_stay_invalid_and_seed_decides():
    rng = np.random.default_rng(0)
    valid = rng.random(30_000) > 0.1
    out = tracking_dropout(valid, 0.5, 15.0, np.random.default_rng(1))
    assert not (out & ~valid).any()  # nothing becomes valid
    assert (~out).mean() > 0.5  # the failures that were there, plus the new ones
    assert (~out).mean() == pytest.approx(1 - 0.9 * 0.5, abs=0.02)
    np.testing.assert_array_equal(out, tracking_dropout(valid, 0.5, 15.0, np.random.default_rng(1)))
    assert not np.array_equal(out, tracking_dropout(valid, 0.5, 15.0, np.random.default_rng(2)))
    assert valid is not tracking_dropout(valid, 0.0, 15.0, np.random.default_rng(1))
    np.testing.assert_array_equal(tracking_dropout(valid, 0.0, 15.0, np.random.default_rng(1)), valid)


def test_one_valid_frame_is_kept():
    out = tracking_dropout(np.ones(50, bool), 1.0, 15.0, np.random.default_rng(0))
    assert out.sum() == 1
    valid = np.zeros(40, bool)
    valid[[7, 30]] = True
    for seed in range(10):
        out = tracking_dropout(valid, 1.0, 4.0, np.random.default_rng(seed))
        assert out.sum() == 1 and out[[7, 30]].any()
    never = np.zeros(10, bool)  # a clip never tracked stays so (the importer rejects it before)
    assert not tracking_dropout(never, 0.5, 3.0, np.random.default_rng(0)).any()
    assert tracking_dropout(np.ones(1, bool), 0.75, 15.0, np.random.default_rng(0)).tolist() == [True]


def test_dropout_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="fraction must be in"):
        tracking_dropout(np.ones(10, bool), 1.5, 3.0, rng)
    with pytest.raises(ValueError, match="burst_frames must be at least 1"):
        tracking_dropout(np.ones(10, bool), 0.5, 0.5, rng)
    with pytest.raises(ValueError, match="1-D bool mask"):
        tracking_dropout(np.ones(10), 0.5, 3.0, rng)
