"""MSP-IMPROV (Busso et al., IEEE TAC 2017; licence from UT Dallas): audio + video, attributes and a category.

Its layout, as far as we know it, is in docs/datasets.md ("MSP-IMPROV"); this adapter is written against that,
and each assumption below is marked. A missing or malformed file raises a `CorpusError` naming it.

- Label file: `Evalution.txt` (sic, the release's spelling) or `Evaluation.txt` at `root`. [assumed location]
  Per turn, a summary line `UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:2.500000; V:2.000000; D:3.500000; N:3.000000;`
  (file, consensus category, then `key:value` averages of arousal A, valence V, dominance D, naturalness N),
  followed by one line per rater and a blank line. Summary lines are recognised by `.avi;`; the other lines are
  not read. The keys are read by name, so their order does not matter; A, V and D are required, N is optional.
  [assumed format] The `UTD-` prefix of the label file's names stands for the media files' `MSP-`.
- Categories: A angry, H happy, S sad, N neutral; O (other) and X (no agreement) are not one of the four
  [assumed codes]. `data.msp_improv.no_consensus`: `drop` (those turns are dropped and counted: the usual four
  classes) or `other` (kept with the label `other`, a fifth class; e.g. for attribute regression on every turn, as
  VAVL, docs/methods.md §5.4). Any other code raises.
- Media: `MSP-IMPROV-*.wav` (audio) and `MSP-IMPROV-*.avi` (video) anywhere under `root` (the release has
  `Audio/session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav` and the same under `Video/`) [assumed layout]; a turn
  with neither file is dropped and counted, one without one of them lacks that modality.
- Name `MSP-IMPROV-S01A-F01-P-FM01`: sentence 01 written for target emotion A (A/H/S/N); speaking actor F01
  (gender letter + session 01-06); scenario P (R read, S improvised target sentence, T other improvised turn,
  P natural interaction [assumed meanings: only the letters are checked]); dyad FM and turn number 01.
  speaker = `F01`, session = 1, gender from the letter.
- Attributes on 1-5: `arousal` = 6 - A (VAVL flips the arousal scale, docs/methods.md §5.4), `valence` = V,
  `dominance` = D; `naturalness` = N when given. Standard protocol: session-disjoint, one session held out for
  test and another for validation per partition (VAVL: 4/1/1 sessions).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import pandas as pd

from mer_core.data.corpora.base import CorpusError

LABEL_FILES = ("Evalution.txt", "Evaluation.txt")
CATEGORIES = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
NO_CONSENSUS = {"O": "other", "X": "no agreement"}
CLASSES = ("neutral", "happy", "angry", "sad")
NAME = re.compile(
    r"^(?:MSP|UTD)-IMPROV-S(?P<sentence>\d{2})(?P<target>[AHSN])-(?P<gender>[FM])(?P<session>0[1-6])"
    r"-(?P<scenario>[RSTP])-(?P<dyad>[FM]{2})(?P<turn>\d+)$"
)
GENDERS = {"F": "Female", "M": "Male"}
SCALE = (1.0, 5.0)


def parse_name(stem: str) -> dict:
    """Fields of an MSP-IMPROV turn name (MSP- or UTD- prefix); ValueError when malformed."""
    match = NAME.match(stem)
    if not match:
        raise ValueError(f"{stem!r} is not an MSP-IMPROV turn name like MSP-IMPROV-S01A-F01-P-FM01")
    parts = match.groupdict()
    return {
        **parts,
        "clip_id": "MSP-" + stem.split("-", 1)[1],
        "speaker": parts["gender"] + parts["session"],
        "session": int(parts["session"]),
    }


def classes(options: Mapping) -> tuple[str, ...]:
    """The four categories, and `other` when turns without one of them are kept."""
    return CLASSES + (("other",) if options["no_consensus"] == "other" else ())


def label_file(root: Path) -> Path:
    """The evaluation file at `root`; CorpusError naming both spellings when there is none."""
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise CorpusError(
        f"{root / LABEL_FILES[0]}: missing (nor {LABEL_FILES[1]}); point data.root at the MSP-IMPROV "
        f"folder that holds the evaluation file"
    )


def parse_summary(line: str, where: str) -> dict:
    """File name, category and attributes of one summary line; CorpusError naming `where` (file:line)."""
    fields = [f.strip() for f in line.strip().split(";")]
    if fields and fields[-1] == "":
        fields = fields[:-1]
    if len(fields) < 5 or not fields[0].endswith(".avi"):
        raise CorpusError(f"{where}: expected '<turn>.avi; <category>; A:<x>; V:<x>; D:<x>; [N:<x>;]', got {line!r}")
    try:
        parts = parse_name(fields[0][: -len(".avi")])
    except ValueError as err:
        raise CorpusError(f"{where}: {err}") from err
    values = {}
    for item in fields[2:]:
        key, sep, value = item.partition(":")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise CorpusError(f"{where}: {item!r} is not a <key>:<number> pair") from None
        if not sep or key.strip() not in ("A", "V", "D", "N"):
            raise CorpusError(f"{where}: unknown attribute {item!r} (A, V, D, N)")
    for key in ("A", "V", "D"):
        if key not in values:
            raise CorpusError(f"{where}: attribute {key} missing in {line.strip()!r}")
    bad = [k for k, v in values.items() if not SCALE[0] <= v <= SCALE[1]]
    if bad:
        raise CorpusError(f"{where}: {bad[0]}:{values[bad[0]]} is outside the rating scale {SCALE[0]:g}-{SCALE[1]:g}")
    category = fields[1]
    if category not in CATEGORIES and category not in NO_CONSENSUS:
        raise CorpusError(f"{where}: category {category!r} is not one of {', '.join([*CATEGORIES, *NO_CONSENSUS])}")
    return {"parts": parts, "category": category, "values": values}


def read_evaluations(path: Path) -> list[dict]:
    """The summary lines of the evaluation file, in file order; CorpusError on a malformed or repeated one."""
    try:
        lines = path.read_text(errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: unreadable ({err})") from err
    turns, seen = [], {}
    for number, line in enumerate(lines, start=1):
        if ".avi;" not in line:
            continue
        turn = parse_summary(line, f"{path}:{number}")
        clip_id = turn["parts"]["clip_id"]
        if clip_id in seen:
            raise CorpusError(f"{path}:{number}: {clip_id} already rated at line {seen[clip_id]}")
        seen[clip_id] = number
        turns.append(turn)
    if not turns:
        raise CorpusError(f"{path}: no summary line ('<turn>.avi; <category>; A:..; V:..; D:..;')")
    return turns


def media_files(root: Path, suffix: str) -> dict[str, Path]:
    """{clip_id: path} of the MSP-IMPROV-*`suffix` files under `root`; CorpusError on a bad or repeated name."""
    files = {}
    for path in sorted(root.rglob(f"MSP-IMPROV-*{suffix}")):
        try:
            clip_id = parse_name(path.stem)["clip_id"]
        except ValueError as err:
            raise CorpusError(f"{path}: {err}") from err
        if clip_id in files:
            raise CorpusError(f"{path}: the same turn also at {files[clip_id]}")
        files[clip_id] = path
    return files


def list_clips(root: str | Path, options: Mapping) -> pd.DataFrame:
    """One row per rated turn with media under `root`, under `options` (`data.msp_improv`; module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found (data.root); point it at your MSP-IMPROV folder")
    path = label_file(root)
    turns = read_evaluations(path)
    audio, video = media_files(root, ".wav"), media_files(root, ".avi")
    rows, no_media, no_class = [], 0, 0
    for turn in turns:
        parts, values, category = turn["parts"], turn["values"], turn["category"]
        clip_id = parts["clip_id"]
        if clip_id not in audio and clip_id not in video:
            no_media += 1
            continue
        if category in NO_CONSENSUS and options["no_consensus"] == "drop":
            no_class += 1
            continue
        rows.append(
            {
                "clip_id": clip_id,
                "speaker": parts["speaker"],
                "label": CATEGORIES.get(category, "other"),
                "gender": GENDERS[parts["gender"]],
                "session": parts["session"],
                "sentence": parts["sentence"],
                "target": CATEGORIES[parts["target"]],
                "scenario": parts["scenario"],
                "category": category,
                "arousal": 6.0 - values["A"],
                "valence": values["V"],
                "dominance": values["D"],
                "naturalness": values.get("N"),
                "audio_path": str(audio[clip_id]) if clip_id in audio else None,
                "visual_path": str(video[clip_id]) if clip_id in video else None,
            }
        )
    if not rows:
        raise CorpusError(
            f"{path}: none of its {len(turns)} rated turns has a MSP-IMPROV-*.wav or .avi file under "
            f"{root} (with no_consensus: {options['no_consensus']})"
        )
    clips = pd.DataFrame(rows).sort_values("clip_id", ignore_index=True)
    unrated = len((set(audio) | set(video)) - {t["parts"]["clip_id"] for t in turns})
    clips.attrs["notes"] = [
        f"{path.name}: {len(turns)} rated turns; {len(clips)} kept, {no_class} dropped without a "
        f"category of the four (O, X), {no_media} dropped without media; {unrated} media "
        f"turns unrated"
    ]
    return clips
