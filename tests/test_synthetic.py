"""Unit tests of the built-in synthetic corpus (mer_core.data.synthetic)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_core.config import ConfigError, load_params, resolve_runs, stage_params
from mer_core.data.corpora.crema_d import SENTENCES
from mer_core.data.synthetic import generate_corpus
from mer_core.data.synthetic.corpus import default_config, draw_speakers, plan_clips
from mer_core.data.synthetic.face import OPENFACE_COLUMNS, Face, synthesize_openface, write_openface_csv
from mer_core.data.synthetic.perception import (
    AUDIOVISUAL_CONFUSION,
    EMOTIONS,
    FACE_CONFUSION,
    VOICE_CONFUSION,
    bayes_limit,
    human_bayes_limits,
)
from mer_core.data.synthetic.voice import VocalProfile, Voice, synthesize_utterance
from mer_core.params.synthetic import Synthetic
from mer_core.schema import check

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)$")


def tiny_config(**changes) -> dict:
    cfg = default_config()
    cfg.update(n_actors=2, sentences=["IEO", "DFA"])
    cfg.update(changes)
    return cfg


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    generate_corpus(root, tiny_config())
    return root


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def voice(f0_hz: float, formant_scale: float = 1.0) -> Voice:
    return Voice(
        f0_hz=f0_hz,
        f0_range=1.0,
        formant_scale=formant_scale,
        rate=1.0,
        tilt_db=0.0,
        breathiness=1.0,
        jitter=0.005,
        shimmer=0.03,
        gain_db=0.0,
        expressivity=1.0,
    )


def speak(profile: VocalProfile, seed: int, f0_hz: float = 120.0, sentence: str = "ITH", snr_db: float = 40.0):
    return synthesize_utterance(
        sentence,
        voice(f0_hz),
        profile,
        np.random.default_rng(seed),
        sample_rate=16000,
        speech_rate=4.5,
        breath_level=0.08,
        snr_db=snr_db,
        noise_type="pink",
    )


def profile(emotion: str) -> VocalProfile:
    return VocalProfile(**default_config()["audio"]["profiles"][emotion])


# --- perception -------------------------------------------------------------------------------------------


def test_confusion_rows_are_distributions_matching_datasets_md():
    for matrix in (VOICE_CONFUSION, FACE_CONFUSION, AUDIOVISUAL_CONFUSION):
        assert matrix.shape == (6, 6)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    ang, hap, neu, sad = (EMOTIONS.index(e) for e in ("ANG", "HAP", "NEU", "SAD"))
    assert VOICE_CONFUSION[ang, ang] == pytest.approx(0.635, abs=0.002)
    assert VOICE_CONFUSION[hap, neu] == pytest.approx(0.556, abs=0.002)
    assert FACE_CONFUSION[hap, hap] == pytest.approx(0.961, abs=0.002)
    assert FACE_CONFUSION[sad, neu] == pytest.approx(0.499, abs=0.002)
    assert AUDIOVISUAL_CONFUSION[neu, neu] == pytest.approx(0.967, abs=0.002)


def test_bayes_limits_match_the_issue():
    limits = human_bayes_limits()
    assert limits["voice"] == pytest.approx(0.46, abs=0.02)
    assert limits["face"] == pytest.approx(0.69, abs=0.02)
    assert limits["both"] == pytest.approx(0.75, abs=0.02)
    assert bayes_limit(np.eye(6)) == pytest.approx(1.0)
    assert bayes_limit(np.full((6, 6), 1 / 6)) == pytest.approx(1 / 6)


# --- config -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_actors", 0),
        ("female_fraction", 1.5),
        ("sentences", ["IEO", "XYZ"]),
        ("sentences", "some"),
        ("audio.snr_db", [30.0, 5.0]),
        ("audio.profiles.ANG.rate", -1.0),
        ("face.tracking_failure_rate", "often"),
        ("level_gain.XX", None),
    ],
)
def test_bad_knob_raises_config_error_naming_the_key(key, value):
    cfg = default_config()
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match="^" + re.escape(f"data.synthetic.{key}")):
        check(Synthetic, cfg, "data.synthetic")
    with pytest.raises(ConfigError, match="^" + re.escape(f"data.synthetic.{key}")):
        generate_corpus(Path("never-written"), cfg)  # validated before anything is written
    assert not Path("never-written").exists()


def test_unknown_knob_is_rejected_and_defaults_validate():
    assert check(Synthetic, default_config(), "data.synthetic").model_dump(mode="json") == default_config()
    cfg = default_config()
    cfg["face"]["sparkle"] = 1.0
    with pytest.raises(ConfigError, match=r"data\.synthetic\.face\.sparkle: unknown key"):
        check(Synthetic, cfg, "data.synthetic")
    assert "seed" in Synthetic.model_fields


def test_the_project_generates_the_calibrated_defaults():
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert load_params(params)["data"]["synthetic"] == default_config()


# --- plan and speakers ------------------------------------------------------------------------------------


def test_default_plan_follows_crema_d_level_structure():
    plan = plan_clips(default_config())
    assert len(plan) == 24 * 82 == 1968
    per_actor = [c for c in plan if c.actor_index == 0]
    levelled = [c for c in per_actor if c.level != "XX"]
    assert {c.sentence for c in levelled} == {"IEO"} and len(levelled) == 15
    assert all(c.level == "XX" for c in per_actor if c.emotion == "NEU")
    assert len({(c.sentence, c.emotion, c.level) for c in per_actor}) == 82


def test_speakers_have_both_genders_and_gendered_f0():
    speakers = draw_speakers(default_config())
    assert [s.actor_id for s in speakers] == list(range(1001, 1025))
    assert sum(s.sex == "Female" for s in speakers) == 12
    for s in speakers:
        low, high = (165, 255) if s.sex == "Female" else (85, 155)
        assert low <= s.voice.f0_hz <= high
    scale = {sex: np.mean([s.voice.formant_scale for s in speakers if s.sex == sex]) for sex in ("Female", "Male")}
    assert scale["Female"] > 1.1 * scale["Male"]  # shorter vocal tract


# --- voice ------------------------------------------------------------------------------------------------


def autocorrelation_f0(utterance) -> float:
    wave, sr = utterance.wave, utterance.sample_rate
    loud = (
        np.interp(
            np.arange(len(wave)) / sr, np.arange(len(utterance.envelope)) / utterance.control_rate, utterance.envelope
        )
        > 0.5
    )
    estimates = []
    for start in range(0, len(wave) - 640, 320):
        if loud[start : start + 640].all():
            segment = wave[start : start + 640] - wave[start : start + 640].mean()
            ac = np.correlate(segment, segment, "full")[639:]
            low, high = sr // 400, sr // 60
            estimates.append(sr / (low + np.argmax(ac[low:high])))
    return float(np.median(estimates))


@pytest.mark.parametrize("f0_hz", [100.0, 220.0])
def test_f0_of_synthesised_speech_is_near_the_requested_f0(f0_hz):
    utterance = speak(VocalProfile(), seed=1, f0_hz=f0_hz)
    assert autocorrelation_f0(utterance) == pytest.approx(utterance.f0_median, rel=0.1)
    assert utterance.f0_median == pytest.approx(f0_hz, rel=0.15)


def test_aroused_profile_is_faster_and_brighter_than_sad():
    def high_band_share(utterance) -> float:
        spectrum = np.abs(np.fft.rfft(utterance.wave)) ** 2
        freqs = np.fft.rfftfreq(len(utterance.wave), 1 / utterance.sample_rate)
        return spectrum[freqs > 2000].sum() / spectrum.sum()

    angry = [speak(profile("ANG"), seed) for seed in range(3)]
    sad = [speak(profile("SAD"), seed) for seed in range(3)]
    assert np.mean([u.syllable_rate for u in angry]) > 1.3 * np.mean([u.syllable_rate for u in sad])
    assert np.mean([high_band_share(u) for u in angry]) > 2 * np.mean([high_band_share(u) for u in sad])


def test_profile_toward_interpolates_from_neutral():
    neutral, angry = VocalProfile(), profile("ANG")
    assert neutral.toward(angry, 0.0) == neutral
    assert neutral.toward(angry, 1.0).loudness_db == pytest.approx(angry.loudness_db)
    assert neutral.toward(angry, 0.5).rate == pytest.approx(np.sqrt(angry.rate))


# --- face -------------------------------------------------------------------------------------------------


def resting_face() -> Face:
    return Face(
        au_bias=np.full(17, 0.2),
        expressivity=1.0,
        head_pose=np.array([0, -10, 600, 0.05, 0, 0.0]),
        gaze=np.zeros(2),
        mouth_gain=1.0,
        blink_factor=1.0,
    )


def face_table(displayed: str, seed: int, envelope=None, failure_rate: float = 0.0) -> np.ndarray:
    envelope = np.zeros(300) if envelope is None else envelope
    n_frames = int(len(envelope) / 125.0 * 30)
    return synthesize_openface(
        n_frames,
        30,
        displayed,
        1.0,
        0.0,
        resting_face(),
        envelope,
        125.0,
        np.random.default_rng(seed),
        au_noise=0.3,
        head_motion=1.0,
        blink_rate=0.3,
        failure_rate=failure_rate,
    )


def test_au12_apex_is_higher_for_happy_than_neutral():
    column = OPENFACE_COLUMNS.index("AU12_r")
    happy = [face_table("HAP", seed)[:, column].max() for seed in range(5)]
    neutral = [face_table("NEU", seed)[:, column].max() for seed in range(5)]
    assert min(happy) > max(neutral) + 1.0


def test_mouth_opening_follows_the_audio_envelope():
    utterance = speak(VocalProfile(), seed=3)
    table = face_table("NEU", seed=3, envelope=utterance.envelope)
    times = np.arange(len(table)) / 30
    envelope = np.interp(times, np.arange(len(utterance.envelope)) / utterance.control_rate, utterance.envelope)
    assert np.corrcoef(envelope, table[:, OPENFACE_COLUMNS.index("AU25_r")])[0, 1] > 0.5
    assert np.corrcoef(envelope, table[:, OPENFACE_COLUMNS.index("AU26_r")])[0, 1] > 0.3


def test_tracking_failures_are_zero_rows_with_low_confidence(tmp_path):
    table = face_table("FEA", seed=0, envelope=np.ones(1000), failure_rate=0.2)
    lost = table[:, OPENFACE_COLUMNS.index("success")] == 0
    assert 0 < lost.sum() < len(table)
    assert np.all(table[lost, OPENFACE_COLUMNS.index("gaze_0_x") :] == 0)
    assert np.all(table[lost, OPENFACE_COLUMNS.index("confidence")] < 0.5)
    assert np.all(table[~lost, OPENFACE_COLUMNS.index("confidence")] >= 0.8)
    write_openface_csv(tmp_path / "x.csv", table)
    frame = pd.read_csv(tmp_path / "x.csv", skipinitialspace=True)
    assert (frame.loc[frame["success"] == 0, "AU12_r":] == 0).all().all()


# --- the written corpus -----------------------------------------------------------------------------------


def test_layout_names_and_level_structure(tiny_corpus):
    wavs = sorted(p.stem for p in (tiny_corpus / "AudioWAV").glob("*.wav"))
    csvs = sorted(p.stem for p in (tiny_corpus / "OpenFace").glob("*.csv"))
    assert wavs == csvs and len(wavs) == 2 * (16 + 6)
    for name in wavs:
        actor, sentence, emotion, level = NAME.match(name).groups()
        assert sentence in SENTENCES and 1001 <= int(actor) <= 1002
        assert (level == "XX") == (sentence != "IEO" or emotion == "NEU")
    assert (tiny_corpus / "VideoDemographics.csv").read_text().splitlines()[
        0
    ] == '"ActorID","Age","Sex","Race","Ethnicity"'
    listing = pd.read_csv(tiny_corpus / "SentenceFilenames.csv")
    assert list(listing.columns) == ["Stimulus_Number", "Filename"] and sorted(listing.Filename) == wavs
    assert not tiny_corpus.with_name("corpus.partial").exists()
    assert "seed 2024" in (tiny_corpus / "README.md").read_text()


def test_wav_is_16k_mono_int16_without_clipping(tiny_corpus):
    for path in sorted((tiny_corpus / "AudioWAV").glob("*.wav"))[:8]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        samples = sf.read(path, dtype="int16")[0]
        assert np.abs(samples.astype(int)).max() < 32767


def test_openface_csv_header_and_frame_count(tiny_corpus):
    path = tiny_corpus / "OpenFace" / "1001_DFA_ANG_XX.csv"
    header = path.read_text().splitlines()[0]
    assert header == ", ".join(OPENFACE_COLUMNS)
    assert header.startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    frame = pd.read_csv(path, skipinitialspace=True)
    duration = sf.info(tiny_corpus / "AudioWAV" / "1001_DFA_ANG_XX.wav").duration
    assert len(frame) == round(duration * 30)
    assert frame["frame"].iloc[0] == 1
    np.testing.assert_allclose(frame["timestamp"], (frame["frame"] - 1) / 30, atol=1e-3)
    assert frame.filter(regex="_r$").to_numpy().max() <= 5 and frame.filter(regex="_c$").isin([0, 1]).all().all()


def test_truth_and_attributes(tiny_corpus):
    truth = pd.read_csv(tiny_corpus / "generator_truth.csv")
    attributes = pd.read_csv(tiny_corpus / "attributes.csv")
    assert list(attributes.columns) == ["FileName", "arousal", "valence", "dominance"]
    assert set(truth.displayed_audio) <= set(EMOTIONS) and set(truth.displayed_visual) <= set(EMOTIONS)
    assert (attributes.iloc[:, 1:].abs() <= 1).all().all()
    merged = truth.merge(attributes, on="FileName")
    means = merged.groupby("intended").arousal.mean()
    assert means["ANG"] > means["SAD"] + 0.3


def test_same_seed_identical_bytes_other_seed_differs_and_jobs_do_not_matter(tmp_path, tiny_corpus):
    generate_corpus(tmp_path / "again", tiny_config(), jobs=2)
    assert digest(tmp_path / "again") == digest(tiny_corpus)
    generate_corpus(tmp_path / "other", tiny_config(seed=7))
    other = digest(tmp_path / "other")
    assert other.keys() == digest(tiny_corpus).keys() and other != digest(tiny_corpus)


def test_existing_root_is_replaced_and_no_partial_remains(tmp_path):
    root = tmp_path / "corpus"
    (root / "stale").mkdir(parents=True)
    summary = generate_corpus(root, tiny_config(n_actors=2, sentences=["TSI"]))
    assert not (root / "stale").exists() and not (tmp_path / "corpus.partial").exists()
    assert summary["n_clips"] == 12 and summary["n_actors"] == 2 and Path(summary["path"]) == root


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import mer_core.data.synthetic.corpus as corpus

    def broken(*args):
        raise RuntimeError("interrupted")

    root = tmp_path / "corpus"
    (root / "previous").mkdir(parents=True)
    monkeypatch.setattr(corpus, "render_clip", broken)
    with pytest.raises(RuntimeError):
        generate_corpus(root, tiny_config())
    assert (root / "previous").is_dir() and not (tmp_path / "corpus.partial").exists()


def test_cli_writes_the_corpus_only_for_the_builtin_corpus(tmp_path, monkeypatch):
    """The corpus stage reads its resolved params (data/params/corpus.json): the built-in corpus is generated into
    --out; for any other corpus the folder holds only a note (nothing is generated)."""
    from mer_core.data.synthetic.__main__ import NOTE, main

    monkeypatch.chdir(tmp_path)  # no params.yaml here: the machine settings take their defaults
    study = Path(__file__).resolve().parents[1] / "params.yaml"
    params = load_params(study, {"data.synthetic": tiny_config(sentences=["TSI"])})
    cfg = stage_params(params, resolve_runs(params))["corpus.json"]
    assert cfg == {"generate": True, "synthetic": tiny_config(sentences=["TSI"])}
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(cfg))
    summary = main(["--params", str(path), "--out", str(tmp_path / "out")])
    assert summary["n_clips"] == 12 and (tmp_path / "out" / "README.md").is_file()
    other = load_params(study, {"data.corpus": "emodb", "data.root": str(tmp_path / "emodb")})
    cfg = stage_params(other, resolve_runs(other))["corpus.json"]
    assert cfg["generate"] is False
    path.write_text(json.dumps(cfg))
    assert main(["--params", str(path), "--out", str(tmp_path / "out")]) is None
    assert [p.name for p in (tmp_path / "out").iterdir()] == [NOTE]  # the previous corpus is gone, nothing generated
    assert not (tmp_path / "emodb").exists()


def test_intended_trace_mixes_the_intended_prototype_into_the_display():
    """With trace weight w, a face displaying neutral for an intended happy clip shows w of happiness's AU12."""
    au12 = OPENFACE_COLUMNS.index("AU12_r")
    n_frames, envelope = 90, np.zeros(400)

    def apex_au12(weight: float) -> float:
        table = synthesize_openface(
            n_frames,
            30,
            "NEU",
            1.0,
            0.0,
            resting_face(),
            envelope,
            125.0,
            np.random.default_rng(3),
            au_noise=0.0,
            head_motion=0.0,
            blink_rate=0.0,
            failure_rate=0.0,
            trace=("HAP", weight),
        )
        return float(table[:, au12].max())

    assert apex_au12(0.0) < apex_au12(0.3) < apex_au12(0.6)
