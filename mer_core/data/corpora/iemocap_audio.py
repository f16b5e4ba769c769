"""IEMOCAP's raw audio (Busso et al., LREC-J 2008; docs/datasets.md "IEMOCAP"), listed by `torchaudio.datasets.IEMOCAP`.

Layout (torchaudio's): `root/IEMOCAP/Session{1..5}/sentences/wav/<dialogue>/<utterance>.wav` and the labels in
`root/IEMOCAP/Session{n}/dialog/EmoEvaluation/*.txt` (lines `[start - end]\\t<utterance>\\t<label>\\t[v, a, d]`).
`data.root` is the folder that holds `IEMOCAP/` (rename or link the release's `IEMOCAP_full_release` to
`IEMOCAP`); the sessions present are read. Only torchaudio's metadata is used (`get_metadata`: path, name,
label), never its waveform loader; torchaudio keeps the utterances labelled neu, hap, ang, sad, exc or fru.

Classes (`data.iemocap_audio`): MMIN's four, happy, angry, sad, neutral; `excited`: `merge` (into happy, the usual
4-class set of MMIN and most papers), `drop`, or `keep` (its own class); `frustrated`: `drop` or `keep`.
Speaker: session + the gender letter of the utterance's last field (`Ses01F_impro01_M003` -> `Ses01M`, the actor
speaking; torchaudio's own speaker field is the dialogue prefix `Ses01F`, which names the other actor for half
the utterances); `session` (1-5) and `gender` are kept. Standard protocol: leave-one-session-out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import pandas as pd

from mer_core.data.corpora.base import CorpusError

LABELS = {"hap": "happy", "ang": "angry", "sad": "sad", "neu": "neutral", "exc": "excited", "fru": "frustrated"}
CLASSES = ("happy", "angry", "sad", "neutral")
SESSIONS = (1, 2, 3, 4, 5)
NAME = re.compile(r"^Ses(?P<session>0[1-5])[FM]_(?P<dialogue>impro|script)[^_]*(_[^_]+)*_(?P<gender>[FM])\d+$")
GENDERS = {"F": "Female", "M": "Male"}


def parse_name(name: str) -> dict:
    """Session, speaker, gender and dialogue type of an IEMOCAP utterance name; ValueError when malformed."""
    match = NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an IEMOCAP utterance name like Ses01F_impro01_F000")
    return {
        "session": int(match["session"]),
        "speaker": f"Ses{match['session']}{match['gender']}",
        "gender": GENDERS[match["gender"]],
        "dialogue": "improvised" if match["dialogue"] == "impro" else "scripted",
    }


def classes(options: Mapping) -> tuple[str, ...]:
    """The labels under `options`: MMIN's four, then excited and frustrated when kept as classes."""
    return CLASSES + tuple(c for c in ("excited", "frustrated") if options[c] == "keep")


def class_of(label: str, options: Mapping) -> str | None:
    """Class name of a torchaudio label code under `options`, None when the clip is dropped."""
    name = LABELS[label]
    if name == "excited" and options["excited"] != "keep":
        return "happy" if options["excited"] == "merge" else None
    if name == "frustrated" and options["frustrated"] == "drop":
        return None
    return name


def list_clips(root: str | Path, options: Mapping) -> pd.DataFrame:
    """One row per labelled utterance of the sessions present under `root/IEMOCAP` (see module docstring)."""
    from torchaudio.datasets import IEMOCAP

    root = Path(root)
    corpus = root / "IEMOCAP"
    sessions = tuple(s for s in SESSIONS if (corpus / f"Session{s}").is_dir())
    if not sessions:
        raise CorpusError(
            f"{corpus}/Session1..5: not found (data.root = {root}); point data.root at the folder "
            f"that holds IEMOCAP/ (rename or link IEMOCAP_full_release to IEMOCAP)"
        )
    dataset = IEMOCAP(root, sessions=sessions)
    rows, dropped = [], {}
    for n in range(len(dataset)):
        relative, _, name, label, _ = dataset.get_metadata(n)
        path = corpus / relative
        if not path.is_file():  # torchaudio cuts each path at its first "Session", which may lie above IEMOCAP/
            raise CorpusError(
                f"{path}: not found; torchaudio.datasets.IEMOCAP cuts paths at the first 'Session' "
                f"in them: move the corpus to a folder whose path has no 'Session' above IEMOCAP/"
            )
        try:
            parts = parse_name(name)
        except ValueError as err:
            raise CorpusError(f"{path}: {err}") from err
        label_name = class_of(label, options)
        if label_name is None:
            dropped[LABELS[label]] = dropped.get(LABELS[label], 0) + 1
            continue
        rows.append(
            {
                "clip_id": name,
                "speaker": parts["speaker"],
                "label": label_name,
                "gender": parts["gender"],
                "session": parts["session"],
                "dialogue": parts["dialogue"],
                "original_label": LABELS[label],
                "audio_path": str(path),
            }
        )
    if not rows:
        raise CorpusError(
            f"{corpus}: no utterance with a wav under Session*/sentences/wav/ and a label "
            f"({', '.join(LABELS)}) in Session*/dialog/EmoEvaluation/*.txt"
        )
    clips = pd.DataFrame(rows).sort_values("clip_id", ignore_index=True)
    clips.attrs["notes"] = [
        f"sessions {', '.join(map(str, sessions))}: {len(clips)} utterances"
        + "".join(f"; dropped {n} {label}" for label, n in sorted(dropped.items()))
    ]
    return clips
