"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005; docs/datasets.md "EmoDB").

Audio only: `root/wav/*.wav` (the release's `wav/` folder, 535 utterances). A name such as `03a01Fa` is speaker
(2 digits), text code (`a01`-`a07`, `b01`-`b10`), emotion letter (German initial: W Wut anger, L Langeweile
boredom, E Ekel disgust, A Angst fear, F Freude happiness, T Trauer sadness, N neutral) and version letter. A
malformed name raises a `CorpusError` naming the file.

Speakers: the ten actors with gender and age as the corpus documentation lists them ("Information about the
speakers", emodb.bilderbar.info): 03 male 31, 08 female 34, 09 female 21, 10 male 32, 11 male 26, 12 male 30,
13 female 32, 14 female 35, 15 male 25, 16 female 31. Standard protocol: leave-one-speaker-out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mer_core.data.corpora.base import CorpusError

EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}
CLASSES = tuple(EMOTIONS.values())
SPEAKERS = {
    "03": ("Male", 31),
    "08": ("Female", 34),
    "09": ("Female", 21),
    "10": ("Male", 32),
    "11": ("Male", 26),
    "12": ("Male", 30),
    "13": ("Female", 32),
    "14": ("Female", 35),
    "15": ("Male", 25),
    "16": ("Female", 31),
}
NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>a0[1-7]|b0[1-9]|b10)(?P<emotion>[A-Z])(?P<version>[a-z])$")


def parse_name(stem: str) -> dict:
    """Speaker, text code, emotion letter and version of an EmoDB file stem; ValueError when malformed."""
    match = NAME.match(stem)
    if not match or match["emotion"] not in EMOTIONS or match["speaker"] not in SPEAKERS:
        raise ValueError(
            f"{stem!r} is not an EmoDB name like 03a01Fa (speaker {'/'.join(SPEAKERS)}, text "
            f"a01-a07 or b01-b10, emotion {''.join(EMOTIONS)}, version a-z)"
        )
    return match.groupdict()


def list_clips(root: str | Path) -> pd.DataFrame:
    """One row per utterance in `root/wav` (audio only; EmoDB takes no options)."""
    folder = Path(root) / "wav"
    if not folder.is_dir():
        raise CorpusError(
            f"{folder}: folder not found (data.root = {root}); point data.root at the EmoDB folder that holds wav/"
        )
    rows = []
    for wav in sorted(folder.glob("*.wav")):
        try:
            parts = parse_name(wav.stem)
        except ValueError as err:
            raise CorpusError(f"{wav}: {err}") from err
        gender, age = SPEAKERS[parts["speaker"]]
        rows.append(
            {
                "clip_id": wav.stem,
                "speaker": parts["speaker"],
                "label": EMOTIONS[parts["emotion"]],
                "gender": gender,
                "age": age,
                "text": parts["text"],
                "version": parts["version"],
                "audio_path": str(wav),
            }
        )
    if not rows:
        raise CorpusError(f"{folder}: no .wav files")
    return pd.DataFrame(rows)
