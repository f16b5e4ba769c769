"""The built-in corpus: speakers, the clip plan, and writing a CREMA-D-like folder (`generate_corpus`).

For every clip the voice and the face each *display* an emotion drawn independently from CREMA-D's human
confusion row of the intended emotion for that modality (`perception.py`); the audio is synthesised from the
displayed audio emotion (`voice.py`), the OpenFace CSV from the displayed visual emotion (`face.py`). The
intensity level scales how far both displays depart from neutral. Continuous arousal / valence / dominance
come from the intended emotion's PAD coordinates. Every clip draws from its own generator, keyed by the seed
and the clip's identity, so the files do not depend on `n_jobs` or on which other clips are generated.
"""

from __future__ import annotations

import csv
import functools
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

import mer_core
from mer_core import console
from mer_core.data.corpora.crema_d import LEVELS, SENTENCES
from mer_core.data.synthetic.face import AU_INTENSITY, Face, synthesize_openface, write_openface_csv
from mer_core.data.synthetic.perception import (
    EMOTIONS,
    FACE_CONFUSION,
    VOICE_CONFUSION,
    clip_levels,
    clip_name,
    draw_display,
)
from mer_core.data.synthetic.voice import VocalProfile, Voice, synthesize_utterance
from mer_core.params.synthetic import Synthetic
from mer_core.schema import check

# Speaker population. F0 bands: docs/datasets.md; female/male formant ratio ~1.17 (Peterson & Barney 1952);
# race and ethnicity drawn with CREMA-D's VideoDemographics.csv frequencies (91 actors), ages 20–74 as there.
F0_BAND_HZ = {"Male": (85.0, 155.0), "Female": (165.0, 255.0)}
FEMALE_FORMANT_SCALE = 1.17
RACES = {"Caucasian": 61, "African American": 22, "Asian": 7, "Unknown": 1}
HISPANIC_SHARE = 10 / 91
AGE_RANGE = (20, 74)

_SEXES, _SPEAKER, _CLIP = 0, 1, 2  # generator streams: spawn_key[0]


@dataclass(frozen=True)
class Speaker:
    actor_id: int
    sex: str
    age: int
    race: str
    ethnicity: str
    voice: Voice
    face: Face


@dataclass(frozen=True)
class ClipSpec:
    actor_index: int
    sentence: str
    emotion: str
    level: str


def default_config() -> dict:
    """The calibrated defaults of `data.synthetic` (`mer_core.params.data.Synthetic`, documented in docs/params.md):
    vocal profiles after the vocal-cue table of docs/datasets.md (Banse & Scherer 1996; Juslin & Laukka 2003), PAD
    coordinates after the ALMA / Mehrabian values there. The share of the intended emotion's cues mixed into each
    display (`intended_trace`, 0.3) is a modelling assumption of the built-in corpus, not a CREMA-D measurement:
    the displayed emotion alone (drawn from CREMA-D's human confusions) bounds UA at 0.46 voice / 0.69 face / 0.75
    both, too close together for fusion to show a clear gain."""
    return Synthetic().model_dump(mode="json")


def draw_speakers(cfg: dict) -> list[Speaker]:
    """The actors (ids from 1001): round(n_actors x female_fraction) women, the rest men, each with a voice and
    a resting face whose spreads scale with `speaker_variability`."""
    n_actors, spread = cfg["n_actors"], cfg["speaker_variability"]
    n_female = int(round(n_actors * cfg["female_fraction"]))
    female = set(_generator(cfg["seed"], _SEXES).permutation(n_actors)[:n_female].tolist())
    races, race_counts = list(RACES), np.array(list(RACES.values()), dtype=float)
    speakers = []
    for index in range(n_actors):
        rng = _generator(cfg["seed"], _SPEAKER, index)
        sex = "Female" if index in female else "Male"
        voice = Voice(
            f0_hz=float(rng.uniform(*F0_BAND_HZ[sex])),
            f0_range=float(rng.lognormal(0.0, 0.2 * spread)),
            formant_scale=(FEMALE_FORMANT_SCALE if sex == "Female" else 1.0) * float(rng.lognormal(0.0, 0.04 * spread)),
            rate=float(rng.lognormal(0.0, 0.1 * spread)),
            tilt_db=float(rng.normal(0.0, 1.0 * spread)),
            breathiness=(1.3 if sex == "Female" else 1.0) * float(rng.lognormal(0.0, 0.3 * spread)),
            jitter=cfg["audio"]["jitter"] * float(rng.lognormal(0.0, 0.3 * spread)),
            shimmer=cfg["audio"]["shimmer"] * float(rng.lognormal(0.0, 0.3 * spread)),
            gain_db=float(rng.normal(0.0, 1.5 * spread)),
            expressivity=float(rng.lognormal(0.0, 0.15 * spread)),
        )
        face = Face(
            au_bias=np.abs(rng.normal(0.0, 0.35 * spread, len(AU_INTENSITY))),
            expressivity=float(rng.lognormal(0.0, 0.25 * spread)),
            head_pose=np.array([0.0, -10.0, 600.0, 0.05, 0.0, 0.0])
            + rng.normal(0.0, 1.0, 6) * np.array([20.0, 15.0, 60.0, 0.08, 0.1, 0.05]) * spread,
            gaze=rng.normal(0.0, 0.08 * spread, 2),
            mouth_gain=float(rng.lognormal(0.0, 0.2 * spread)),
            blink_factor=float(rng.lognormal(0.0, 0.3 * spread)),
        )
        speakers.append(
            Speaker(
                actor_id=1001 + index,
                sex=sex,
                age=int(rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1)),
                race=races[rng.choice(len(races), p=race_counts / race_counts.sum())],
                ethnicity="Hispanic" if rng.random() < HISPANIC_SHARE else "Not Hispanic",
                voice=voice,
                face=face,
            )
        )
    return speakers


def plan_clips(cfg: dict) -> list[ClipSpec]:
    """Every clip, in CREMA-D's SentenceFilenames.csv order: actor, sentence, emotion (NEU HAP SAD ANG FEA DIS),
    level. Only IEO has LO/MD/HI (neutral XX); with all 12 sentences that is 82 clips per actor."""
    sentences = list(SENTENCES) if cfg["sentences"] == "all" else [s for s in SENTENCES if s in cfg["sentences"]]
    return [
        ClipSpec(actor, sentence, emotion, level)
        for actor in range(cfg["n_actors"])
        for sentence in sentences
        for emotion, levels in clip_levels(sentence).items()
        for level in levels
    ]


def generate_corpus(root: str | Path, cfg: dict, jobs: int = 1) -> dict:
    """Write the corpus described by `cfg` (the `data.synthetic` block; validated here) to `root` with `jobs` worker
    processes; return a summary.

    The folder is built as `<root>.partial` and renamed to `<root>` (replacing it) only when complete.
    The same cfg gives byte-identical files whatever `jobs`.
    """
    cfg = check(Synthetic, cfg, "data.synthetic").model_dump(mode="json")
    started = time.perf_counter()
    root = Path(root)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        (partial / "AudioWAV").mkdir(parents=True)
        (partial / "OpenFace").mkdir()
        speakers = draw_speakers(cfg)
        plan = plan_clips(cfg)
        rows = _render_all(partial, cfg, speakers, plan, jobs)
        _write_tables(partial, cfg, speakers, rows)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)
    return {
        "n_clips": len(plan),
        "n_actors": len(speakers),
        "seconds": round(time.perf_counter() - started, 2),
        "path": str(root),
    }


def render_clip(out_dir: Path, cfg: dict, speaker: Speaker, spec: ClipSpec) -> dict:
    """Draw the two displays, synthesise and write one clip's WAV and OpenFace CSV; return its hidden truth."""
    rng = _generator(
        cfg["seed"],
        _CLIP,
        spec.actor_index,
        list(SENTENCES).index(spec.sentence),
        EMOTIONS.index(spec.emotion),
        LEVELS.index(spec.level),
    )
    audio, face, attributes = cfg["audio"], cfg["face"], cfg["attributes"]
    name = clip_name(speaker.actor_id, spec.sentence, spec.emotion, spec.level)
    shown_audio = draw_display(spec.emotion, VOICE_CONFUSION, rng)
    shown_visual = draw_display(spec.emotion, FACE_CONFUSION, rng)
    strength = cfg["level_gain"][spec.level] * cfg["display_strength"]

    profiles = {emotion: VocalProfile(**values) for emotion, values in audio["profiles"].items()}
    amount = strength * speaker.voice.expressivity
    trace = cfg["intended_trace"]
    profile = (
        profiles["NEU"]
        .toward(profiles[shown_audio], amount)
        .toward(profiles["NEU"].toward(profiles[spec.emotion], amount), trace)
    )
    snr_db = float(rng.uniform(*audio["snr_db"]))
    noise_type = str(audio["noise_types"][rng.integers(len(audio["noise_types"]))])
    utterance = synthesize_utterance(
        spec.sentence,
        speaker.voice,
        profile,
        rng,
        sample_rate=audio["sample_rate"],
        speech_rate=audio["speech_rate"],
        breath_level=audio["breath_level"],
        snr_db=snr_db,
        noise_type=noise_type,
    )
    n_frames = int(round(utterance.duration * face["fps"]))
    table = synthesize_openface(
        n_frames,
        face["fps"],
        shown_visual,
        strength,
        attributes["pad"][shown_visual][1] * strength,
        speaker.face,
        utterance.envelope,
        utterance.control_rate,
        rng,
        trace=(spec.emotion, trace),
        au_noise=face["au_noise"],
        head_motion=face["head_motion"],
        blink_rate=face["blink_rate"],
        failure_rate=face["tracking_failure_rate"],
    )
    sf.write(out_dir / "AudioWAV" / f"{name}.wav", utterance.wave, audio["sample_rate"], subtype="PCM_16")
    write_openface_csv(out_dir / "OpenFace" / f"{name}.csv", table)

    pleasure, arousal, dominance = np.clip(
        np.asarray(attributes["pad"][spec.emotion]) * cfg["level_gain"][spec.level]
        + rng.normal(0.0, attributes["jitter"], 3),
        -1.0,
        1.0,
    )
    return {
        "FileName": name,
        "ActorID": speaker.actor_id,
        "Sentence": spec.sentence,
        "intended": spec.emotion,
        "displayed_audio": shown_audio,
        "displayed_visual": shown_visual,
        "level": spec.level,
        "strength": strength,
        "snr_db": snr_db,
        "noise_type": noise_type,
        "duration_s": utterance.duration,
        "f0_median_hz": utterance.f0_median,
        "syllable_rate": utterance.syllable_rate,
        "n_frames": n_frames,
        "failed_frames": int(np.sum(table[:, 4] == 0)),
        "arousal": float(arousal),
        "valence": float(pleasure),
        "dominance": float(dominance),
    }


def _render_all(out_dir: Path, cfg: dict, speakers: list[Speaker], plan: list[ClipSpec], jobs: int) -> list[dict]:
    progress = functools.partial(console.progress, total=len(plan), desc="synthetic corpus", unit="clip")
    if jobs == 1:
        return [render_clip(out_dir, cfg, speakers[spec.actor_index], spec) for spec in progress(plan)]
    render = functools.partial(_render_task, out_dir, cfg)
    tasks = [(speakers[spec.actor_index], spec) for spec in plan]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(progress(pool.map(render, tasks, chunksize=16)))


def _render_task(out_dir: Path, cfg: dict, task: tuple[Speaker, ClipSpec]) -> dict:
    return render_clip(out_dir, cfg, *task)


def _write_tables(out_dir: Path, cfg: dict, speakers: list[Speaker], rows: list[dict]) -> None:
    with open(out_dir / "VideoDemographics.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        writer.writerows([s.actor_id, s.age, s.sex, s.race, s.ethnicity] for s in speakers)
    with open(out_dir / "SentenceFilenames.csv", "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(["Stimulus_Number", "Filename"])
        writer.writerows([number, row["FileName"]] for number, row in enumerate(rows, start=1))
    table = pd.DataFrame(rows)
    attribute_columns = ["FileName", "arousal", "valence", "dominance"]
    table[attribute_columns].to_csv(out_dir / "attributes.csv", index=False, float_format="%.4f")
    table.drop(columns=attribute_columns[1:]).to_csv(out_dir / "generator_truth.csv", index=False, float_format="%.4f")
    (out_dir / "README.md").write_text(_readme(cfg, speakers, table))


def _readme(cfg: dict, speakers: list[Speaker], table: pd.DataFrame) -> str:
    n_female = sum(s.sex == "Female" for s in speakers)
    levels = table["level"].value_counts().reindex(list(LEVELS), fill_value=0)
    return f"""# Built-in synthetic audio-visual emotion corpus

Generated by `mer_core` {mer_core.__version__} (`mer_core.data.synthetic`), seed {cfg["seed"]}. Not real
people: speech comes from a source–filter synthesiser, faces from per-frame action-unit trajectories.
Regenerate it with `python -m mer_core.data.synthetic --params params.yaml` (knobs under `data.synthetic`).

Layout follows CREMA-D:

- `AudioWAV/{{ActorID}}_{{Sentence}}_{{Emotion}}_{{Level}}.wav`: {cfg["audio"]["sample_rate"]} Hz mono, 16-bit PCM.
- `OpenFace/<same name>.csv`: OpenFace 2.0 FeatureExtraction columns at {cfg["face"]["fps"]} fps (gaze, head pose,
  action-unit intensities `_r` and presences `_c`). The 2D/3D landmark and shape-parameter columns are omitted.
  Frames with `success = 0` are tracking failures (all feature columns zero).
- `VideoDemographics.csv`, `SentenceFilenames.csv`: as in CREMA-D.
- `attributes.csv`: per-clip arousal, valence, dominance in [-1, 1] (intended emotion's PAD coordinates x level
  gain + jitter).
- `generator_truth.csv`: hidden truth per clip: intended emotion, the emotion each modality displays (drawn from
  CREMA-D's human voice / face confusion rows), level, display strength, SNR, noise type, F0, syllable rate.

Counts: {len(table)} clips, {len(speakers)} actors ({n_female} female, {len(speakers) - n_female} male),
{table["Sentence"].nunique()} sentences; levels LO {levels["LO"]}, MD {levels["MD"]}, HI {levels["HI"]}, \
XX {levels["XX"]}; {table["duration_s"].sum() / 60:.1f} minutes of audio.
"""


def _generator(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one stream (speaker, clip, ...) identified by `key`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
