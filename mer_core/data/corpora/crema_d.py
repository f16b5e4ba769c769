"""CREMA-D layout (Cao et al., IEEE TAC 2014; datasets.md): `AudioWAV/*.wav` + per-clip OpenFace CSVs.

File names are `{ActorID}_{Sentence}_{Emotion}_{Level}` (e.g. `1001_DFA_ANG_XX`); the label is the intended
emotion from the file name. Gender and age come from `VideoDemographics.csv`. The built-in corpus writes
this layout with the face stream as OpenFace 2.0 CSVs under `OpenFace/`, which is also where a user's own
OpenFace output for CREMA-D's videos goes; `attributes.csv` (arousal/valence/dominance) exists only in the
built-in corpus.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mer_core.data.corpora.base import CorpusError

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CLASSES = tuple(EMOTIONS.values())
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
LEVELS = ("LO", "MD", "HI", "XX")
NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


def parse_name(stem: str) -> dict:
    """Split a CREMA-D file stem into actor, sentence, emotion code and level; ValueError when malformed."""
    match = NAME.match(stem)
    if not match or match["emotion"] not in EMOTIONS or match["level"] not in LEVELS or match["sentence"] not in SENTENCES:
        raise ValueError(f"{stem!r} is not a CREMA-D clip name ActorID_Sentence_Emotion_Level")
    return match.groupdict()


def list_clips(root: str | Path) -> pd.DataFrame:
    """One row per clip of a CREMA-D-layout corpus at `root` (audio required; face CSV when present)."""
    root = Path(root)
    audio_dir = root / "AudioWAV"
    if not audio_dir.is_dir():
        raise CorpusError(f"{audio_dir}: corpus folder not found (data.root = {root}); for the built-in corpus "
                          f"run `dvc repro corpus`, for CREMA-D point data.root at your copy")
    rows = []
    for wav in sorted(audio_dir.glob("*.wav")):
        try:
            parts = parse_name(wav.stem)
        except ValueError as err:
            raise CorpusError(f"{wav}: {err}") from err
        csv = root / "OpenFace" / f"{wav.stem}.csv"
        rows.append({
            "clip_id": wav.stem, "speaker": parts["actor"], "label": EMOTIONS[parts["emotion"]],
            "sentence": parts["sentence"], "level": parts["level"],
            "audio_path": str(wav), "visual_path": str(csv) if csv.is_file() else None,
        })
    if not rows:
        raise CorpusError(f"{audio_dir}: no .wav files")
    clips = pd.DataFrame(rows)
    demographics = root / "VideoDemographics.csv"
    if demographics.is_file():
        demo = pd.read_csv(demographics, dtype={"ActorID": str})
        clips = clips.merge(demo.rename(columns={"ActorID": "speaker", "Sex": "gender", "Age": "age"})
                            [["speaker", "gender", "age"]], on="speaker", how="left")
    attributes = root / "attributes.csv"
    if attributes.is_file():
        attr = pd.read_csv(attributes).rename(columns={"FileName": "clip_id"})
        clips = clips.merge(attr[["clip_id", "arousal", "valence", "dominance"]], on="clip_id", how="left")
    return clips
