"""CREMA-D (Cao et al., IEEE TAC 2014; docs/datasets.md "CREMA-D"): the real corpus and the built-in one in its layout.

Layout under `root` (the official repository's, plus an optional OpenFace folder):

```
AudioWAV/<stem>.wav              16 kHz mono speech
VideoFlash/<stem>.flv            480x360 video at 30 fps (its audio track is the same speech)
OpenFace/<stem>.csv              OpenFace 2.0 output for the clip's video, when the user ran OpenFace
VideoDemographics.csv            ActorID, Age, Sex, Race, Ethnicity (91 actors)
processedResults/summaryTable.csv, processedResults/tabulatedVotes.csv   the crowd's ratings
attributes.csv                   arousal/valence/dominance per FileName: the built-in corpus only
```

File names are `{ActorID}_{Sentence}_{Emotion}_{Level}` (e.g. `1001_DFA_ANG_XX`). A clip is any stem of
`AudioWAV/*.wav`, `VideoFlash/*.flv` or `OpenFace/*.csv`; `audio_path` is its WAV (None without one). The face
stream is the OpenFace CSV when the folder `OpenFace/` exists (for every clip, so that one extractor reads every
face), else the FLV; when both folders exist the listing's notes say that the CSVs were preferred. A clip without
a file for a modality (a CSV without its WAV, a WAV without its CSV) is listed with None there, which the prepare
step records in `skipped.csv` (`no audio file`, `no visual file`): it is never left out silently. The metadata
CSVs are read from the root or from `processedResults/`; they must cover every listed clip (`CorpusError` naming
the file and the actor or clip otherwise): `VideoDemographics.csv` one row with a `Sex` per actor (the folds are
stratified by it; without the file they are not), `attributes.csv` one row of finite values in [-1, 1] per clip.

Labels (`data.crema_d.labels`): `intended`, the emotion the actor was asked to show (file name; the built-in
corpus always reads these), or `consensus`, the crowd's majority label from `tabulatedVotes.csv`: the rows of
one presentation (`consensus_votes`: the first column's id is 1xxxxx for audio alone, 2xxxxx for video alone,
3xxxxx for audio-visual, checked against summaryTable.csv's VoiceLevel / FaceLevel / MultiModalLevel) and the
emotion that more than half of that clip's raters chose. Every rater picks one of the six classes, so there is
no other-than-class vote; a tie or a plurality short of half the raters gives no consensus. Clips without a
consensus label (or without ratings) are dropped and counted in the listing's notes. With the audio-visual votes
this keeps 5,913 of the 7,442 clips (N 1651, H 1192, A 902, D 894, F 874, S 400); VAVL's consensus lists
(docs/methods.md §5.4) hold 5,820 clips in the same class order, so their exact rule ("label rule M") differs
slightly and is unknown. The intended label is kept in the column `intended`.

`human_recognition` reads `summaryTable.csv` into the human per-modality recognition rates (docs/datasets.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from mer_core.data.corpora.base import ATTRIBUTES, CorpusError

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
VOTE_LETTERS = {"A": "anger", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
VOTE_ROWS = {"audio": 1, "visual": 2, "audiovisual": 3}  # tabulatedVotes.csv: first column // 100000
SUMMARY_VOTES = {"a": "VoiceVote", "v": "FaceVote", "av": "MultiModalVote"}  # summaryTable.csv, per condition
METADATA_FOLDERS = ("", "processedResults")

DEFAULT_OPTIONS = {"labels": "intended", "consensus_votes": "audiovisual"}


def parse_name(stem: str) -> dict:
    """Split a CREMA-D file stem into actor, sentence, emotion code and level; ValueError when malformed."""
    match = NAME.match(stem)
    if (
        not match
        or match["emotion"] not in EMOTIONS
        or match["level"] not in LEVELS
        or match["sentence"] not in SENTENCES
    ):
        raise ValueError(f"{stem!r} is not a CREMA-D clip name ActorID_Sentence_Emotion_Level")
    return match.groupdict()


def metadata_file(root: Path, name: str) -> Path | None:
    """`root/name` or `root/processedResults/name`, whichever exists first; None when neither does."""
    for folder in METADATA_FOLDERS:
        path = root / folder / name
        if path.is_file():
            return path
    return None


def read_csv_with(path: Path, columns: list[str], **kwargs) -> pd.DataFrame:
    """`pandas.read_csv(path)`, with a CorpusError naming the file when it is unreadable or lacks `columns`."""
    try:
        table = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: not a readable CSV ({err})") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CorpusError(f"{path}: missing column {missing[0]!r} (expected {', '.join(columns)})")
    return table


def media_files(folder: Path, suffix: str) -> dict[str, Path]:
    """{stem: path} of the `suffix` files in `folder` ({} when it does not exist), names checked."""
    files = {}
    for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        try:
            parse_name(path.stem)
        except ValueError as err:
            raise CorpusError(f"{path}: {err}") from err
        files[path.stem] = path
    return files


def check_covers(table: pd.DataFrame, key: str, needed: str, listed: pd.Series, path: Path, what: str) -> None:
    """CorpusError naming `path` and the `what` (actor, clip) when `table` (a metadata CSV) repeats a `key`, or
    lacks a row, or a `needed` value, for one of the `listed` keys (the listing's speakers or clip ids)."""
    keys = table[key].astype(str)
    twice = keys[keys.duplicated()]
    if len(twice):
        raise CorpusError(
            f"{path}: {what} {twice.iloc[0]} has {int((keys == twice.iloc[0]).sum())} rows; each {key} must appear once"
        )
    absent = sorted(set(listed) - set(keys))
    if absent:
        raise CorpusError(
            f"{path}: no row for {what} {absent[0]}, whose clips the corpus lists ({len(absent)} such "
            f"{what}s: {', '.join(absent[:5])}{'...' if len(absent) > 5 else ''}); add its row ({key}, "
            f"{needed}, ...), or remove the file"
        )
    empty = sorted(set(keys[table[needed].isna().to_numpy()]) & set(listed))
    if empty:
        raise CorpusError(f"{path}: {what} {empty[0]} has no {needed} value; fill it in, or remove the file")


def consensus_labels(path: Path, votes: str) -> pd.Series:
    """{fileName: class name or None} from tabulatedVotes.csv: the emotion chosen by more than half of the raters
    of presentation `votes` (audio | visual | audiovisual), None on a tie or a plurality short of half."""
    table = read_csv_with(path, [*VOTE_LETTERS, "fileName"])
    ids = pd.to_numeric(table.iloc[:, 0], errors="coerce")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise CorpusError(
            f"{path}: row {row + 1} has no numeric id in the first column (1xxxxx audio, 2xxxxx "
            f"visual, 3xxxxx audio-visual ratings)"
        )
    rows = table[(ids // 100000).to_numpy() == VOTE_ROWS[votes]]
    if rows.empty:
        raise CorpusError(f"{path}: no {votes} ratings (rows whose id is {VOTE_ROWS[votes]}xxxxx)")
    twice = rows["fileName"].duplicated()
    if twice.any():
        raise CorpusError(f"{path}: {rows['fileName'][twice].iloc[0]!r} has two rows of {votes} ratings")
    counts = rows[list(VOTE_LETTERS)].to_numpy(dtype=float)
    if np.isnan(counts).any() or (counts < 0).any():
        raise CorpusError(f"{path}: vote counts must be non-negative numbers (columns {', '.join(VOTE_LETTERS)})")
    winner = np.array(list(VOTE_LETTERS.values()), dtype=object)[counts.argmax(1)]
    majority = 2 * counts.max(1) > counts.sum(1)
    return pd.Series(np.where(majority, winner, None), index=rows["fileName"].to_numpy(), dtype=object)


def list_clips(root: str | Path, options: Mapping = DEFAULT_OPTIONS) -> pd.DataFrame:
    """One row per clip of a CREMA-D-layout corpus at `root` (see module docstring); `options` is
    `data.crema_d` (labels, consensus_votes). `attrs["notes"]` says what was preferred or dropped, `attrs["sources"]`
    where each modality's files were looked for."""
    root = Path(root)
    audio_dir, video_dir, face_dir = root / "AudioWAV", root / "VideoFlash", root / "OpenFace"
    if not audio_dir.is_dir() and not video_dir.is_dir():
        raise CorpusError(
            f"{audio_dir}: corpus folder not found, nor {video_dir.name}/ (data.root = {root}); for "
            f"the built-in corpus run `dvc repro corpus`, for CREMA-D point data.root at your copy"
        )
    wavs, flvs, csvs = media_files(audio_dir, ".wav"), media_files(video_dir, ".flv"), media_files(face_dir, ".csv")
    notes = []
    if face_dir.is_dir() and flvs:
        notes.append(f"visual: OpenFace CSVs from {face_dir} (preferred over {video_dir}/*.flv)")
    rows = []
    for stem in sorted(set(wavs) | set(flvs) | set(csvs)):
        parts = parse_name(stem)
        if face_dir.is_dir():
            visual = str(csvs[stem]) if stem in csvs else None
        else:
            visual = str(flvs[stem]) if stem in flvs else None
        rows.append(
            {
                "clip_id": stem,
                "speaker": parts["actor"],
                "label": EMOTIONS[parts["emotion"]],
                "sentence": parts["sentence"],
                "level": parts["level"],
                "audio_path": str(wavs[stem]) if stem in wavs else None,
                "visual_path": visual,
            }
        )
    if not rows:
        raise CorpusError(f"{audio_dir}: no .wav files (and no .flv files in {video_dir})")
    clips = pd.DataFrame(rows)
    demographics = metadata_file(root, "VideoDemographics.csv")
    if demographics is not None:
        demo = read_csv_with(demographics, ["ActorID", "Age", "Sex"], dtype={"ActorID": str})
        check_covers(demo, "ActorID", "Sex", clips["speaker"], demographics, "actor")
        clips = clips.merge(
            demo.rename(columns={"ActorID": "speaker", "Sex": "gender", "Age": "age"})[["speaker", "gender", "age"]],
            on="speaker",
            how="left",
            validate="many_to_one",
        )
    attributes = root / "attributes.csv"
    if attributes.is_file():
        attr = read_csv_with(attributes, ["FileName", *ATTRIBUTES])
        check_covers(attr, "FileName", ATTRIBUTES[0], clips["clip_id"], attributes, "clip")
        values = attr[list(ATTRIBUTES)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(values) <= 1.0)
        if bad.any():
            row, k = np.argwhere(bad)[0]
            raise CorpusError(
                f"{attributes}: column {ATTRIBUTES[k]!r}, row {row} (line {row + 2}): "
                f"{attr[ATTRIBUTES[k]].iloc[row]} is not a number in [-1, 1]"
            )
        attr = attr.assign(clip_id=attr["FileName"], **{a: values[:, k] for k, a in enumerate(ATTRIBUTES)})
        clips = clips.merge(attr[["clip_id", *ATTRIBUTES]], on="clip_id", how="left", validate="one_to_one")
    if options["labels"] == "consensus":
        clips, note = with_consensus_labels(clips, root, options["consensus_votes"])
        notes.append(note)
    clips.attrs["notes"] = notes
    clips.attrs["sources"] = media_sources(audio_dir, video_dir, face_dir)
    return clips


def media_sources(audio_dir: Path, video_dir: Path, face_dir: Path) -> dict[str, str]:
    """Where `list_clips` looks for each modality's files (for the prepare step's line about a missing modality)."""
    visual = f"{face_dir}/<clip>.csv" if face_dir.is_dir() else f"{face_dir}/<clip>.csv or {video_dir}/<clip>.flv"
    return {"audio": f"{audio_dir}/<clip>.wav", "visual": visual}


def with_consensus_labels(clips: pd.DataFrame, root: Path, votes: str) -> tuple[pd.DataFrame, str]:
    """`clips` relabelled with the consensus of `votes` (the intended label moved to `intended`), the clips
    without one dropped, and a note that counts them."""
    path = metadata_file(root, "tabulatedVotes.csv")
    if path is None:
        raise CorpusError(
            f"{root / 'processedResults' / 'tabulatedVotes.csv'}: missing (nor at the root); "
            f"data.crema_d.labels: consensus needs it, or set labels: intended"
        )
    consensus = consensus_labels(path, votes)
    rated = clips["clip_id"].isin(consensus.index)
    label = clips["clip_id"].map(consensus)
    keep = label.notna().to_numpy()
    clips = clips.assign(intended=clips["label"], label=label)[keep].reset_index(drop=True)
    note = (
        f"labels: consensus of the {votes} ratings in {path}: dropped {int((rated & ~keep).sum())} clips "
        f"without a majority label and {int((~rated).sum())} without ratings; {len(clips)} kept"
    )
    if clips.empty:
        raise CorpusError(
            f"{path}: no listed clip has a {votes} consensus label (its fileName column must name the clips of {root})"
        )
    return clips, note


def human_recognition(path: str | Path) -> pd.DataFrame:
    """Human recognition per presentation from CREMA-D's summaryTable.csv (docs/datasets.md): rows a (voice alone),
    v (face alone), av (both); columns `wa` (share of clips whose crowd majority label equals the intended one;
    strict: a tie such as `A:N` never matches), `ua` (mean over the six classes of that per-class share),
    `recall_<class>` and `clips`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: CREMA-D summaryTable.csv not found")
    table = read_csv_with(path, ["FileName", *SUMMARY_VOTES.values()], dtype=str, keep_default_na=False)
    intended = []
    for name in table["FileName"]:
        try:
            intended.append(EMOTIONS[parse_name(name)["emotion"]])
        except ValueError as err:
            raise CorpusError(f"{path}: {err}") from err
    intended = pd.Series(intended)
    rows = {}
    for condition, column in SUMMARY_VOTES.items():
        correct = table[column].str.strip().map(VOTE_LETTERS).to_numpy() == intended.to_numpy()
        recall = {c: float(correct[(intended == c).to_numpy()].mean()) for c in CLASSES if (intended == c).any()}
        rows[condition] = {
            "wa": float(correct.mean()),
            "ua": float(np.mean(list(recall.values()))),
            **{f"recall_{c}": r for c, r in recall.items()},
            "clips": len(table),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
