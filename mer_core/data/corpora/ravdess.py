"""RAVDESS (Livingstone & Russo, PLoS ONE 2018; Zenodo record 1188976; docs/datasets.md "RAVDESS").

The Zenodo zips unpack to `Actor_01/` .. `Actor_24/` folders (one zip per actor for video, one zip per channel for
audio); `root` is searched recursively, so any arrangement of those folders under it works. A file name is seven
two-digit fields `MM-VV-EE-II-SS-RR-AA.ext`: modality (01 full-AV `.mp4`, 02 video-only `.mp4`, 03 audio-only
`.wav`), vocal channel (01 speech, 02 song), emotion (01 neutral .. 08 surprised), intensity (01 normal, 02 strong;
neutral has only normal), statement (01, 02), repetition (01, 02), actor (01-24; odd = male). Every field is
validated, and so are the extension and the `Actor_XX` folder when the file sits in one: a malformed name raises
a `CorpusError` naming the file. Song has no disgust or surprised.

Options (`data.ravdess`):
- `source`: `av`, the full-AV `.mp4` gives both streams (audio_path = visual_path = the mp4), or `separate`,
  the audio-only `03-*.wav` and the video-only `02-*.mp4` matched on the other six fields (a clip that has only
  one of them lacks the other modality);
- `channel`: `speech` or `song` (clips of the other channel are not listed);
- `merge_calm`: calm counted as neutral (7 classes for speech), as is common, or kept (8 classes).

`clip_id` is the name without its modality field (`01-03-02-01-01-12`), the same for both sources; speaker =
actor (`12`), gender from the actor number. The corpus has no protocol of its own beyond speaker-independent
folds (`folds.protocol: kfold`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import pandas as pd

from mer_core.data.corpora.base import CorpusError

MODALITIES = {"01": "audio-visual", "02": "video-only", "03": "audio-only"}
EXTENSIONS = {"01": ".mp4", "02": ".mp4", "03": ".wav"}
CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = ("01", "02")
ACTORS = tuple(f"{a:02d}" for a in range(1, 25))
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")
SOURCES = {"av": {"01": "av"}, "separate": {"03": "audio", "02": "visual"}}  # modality field -> role


def parse_name(stem: str) -> dict:
    """The seven fields of a RAVDESS file stem, validated; ValueError naming the bad field."""
    match = NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not a RAVDESS name of seven two-digit fields MM-VV-EE-II-SS-RR-AA")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = [
        ("modality", modality, MODALITIES),
        ("vocal channel", channel, CHANNELS),
        ("emotion", emotion, EMOTIONS),
        ("intensity", intensity, INTENSITIES),
        ("statement", statement, STATEMENTS),
        ("repetition", repetition, REPETITIONS),
        ("actor", actor, ACTORS),
    ]
    for field, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{stem!r}: {field} {value!r} is not one of {', '.join(allowed)}")
    if emotion == "01" and intensity != "01":
        raise ValueError(f"{stem!r}: neutral (emotion 01) has only normal intensity (01), not {intensity!r}")
    if channel == "02" and emotion not in SONG_EMOTIONS:
        raise ValueError(f"{stem!r}: song (channel 02) has no {EMOTIONS[emotion]} (emotion {emotion})")
    return {
        "modality": modality,
        "channel": channel,
        "emotion": emotion,
        "intensity": intensity,
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
    }


def classes(options: Mapping) -> tuple[str, ...]:
    """The labels under `options`: the channel's emotions, calm removed when merged into neutral."""
    codes = SONG_EMOTIONS if options["channel"] == "song" else tuple(EMOTIONS)
    return tuple(EMOTIONS[c] for c in codes if not (options["merge_calm"] and c == "02"))


def parsed_file(path: Path) -> dict:
    """`parse_name` of a media file, with its extension and `Actor_XX` folder checked; CorpusError naming it."""
    try:
        parts = parse_name(path.stem)
    except ValueError as err:
        raise CorpusError(f"{path}: {err}") from err
    if path.suffix != EXTENSIONS[parts["modality"]]:
        raise CorpusError(
            f"{path}: modality {parts['modality']} ({MODALITIES[parts['modality']]}) files are "
            f"{EXTENSIONS[parts['modality']]}, not {path.suffix}"
        )
    folder = ACTOR_FOLDER.match(path.parent.name)
    if folder and folder[1] != parts["actor"]:
        raise CorpusError(f"{path}: actor {parts['actor']} in the name but the folder is {path.parent.name}")
    return parts


def list_clips(root: str | Path, options: Mapping) -> pd.DataFrame:
    """One row per clip of the RAVDESS copy at `root` under `options` (`data.ravdess`; see module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(
            f"{root}: folder not found (data.root); point it at the folder holding the unpacked "
            f"Actor_XX/ folders of RAVDESS"
        )
    roles = SOURCES[options["source"]]
    channel = {v: k for k, v in CHANNELS.items()}[options["channel"]]
    found: dict[str, dict] = {}
    for path in sorted(p for suffix in (".wav", ".mp4") for p in root.rglob(f"*{suffix}")):
        parts = parsed_file(path)
        if parts["modality"] not in roles or parts["channel"] != channel:
            continue
        clip_id = path.stem[3:]
        entry = found.setdefault(clip_id, {"parts": parts})
        role = roles[parts["modality"]]
        if role in entry:
            raise CorpusError(f"{path}: the same file name also at {entry[role]}")
        entry[role] = path
    if not found:
        wanted = " and ".join(f"{m}-{channel}-*{EXTENSIONS[m]}" for m in roles)
        raise CorpusError(
            f"{root}: no {wanted} file under it (data.ravdess.source: {options['source']}, "
            f"channel: {options['channel']})"
        )
    rows = []
    for clip_id in sorted(found):
        entry, parts = found[clip_id], found[clip_id]["parts"]
        emotion = "01" if options["merge_calm"] and parts["emotion"] == "02" else parts["emotion"]
        audio, visual = (entry["av"], entry["av"]) if "av" in entry else (entry.get("audio"), entry.get("visual"))
        rows.append(
            {
                "clip_id": clip_id,
                "speaker": parts["actor"],
                "label": EMOTIONS[emotion],
                "gender": "Male" if int(parts["actor"]) % 2 else "Female",
                "emotion_code": parts["emotion"],
                "intensity": INTENSITIES[parts["intensity"]],
                "statement": parts["statement"],
                "repetition": parts["repetition"],
                "audio_path": str(audio) if audio else None,
                "visual_path": str(visual) if visual else None,
            }
        )
    clips = pd.DataFrame(rows)
    clips.attrs["notes"] = [
        f"{options['source']} media, {options['channel']} channel: {len(clips)} clips, "
        f"{int(clips['audio_path'].isna().sum())} without audio, "
        f"{int(clips['visual_path'].isna().sum())} without video"
    ]
    return clips
