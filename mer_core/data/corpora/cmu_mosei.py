"""CMU-MOSEI as CMU Multimodal SDK computational sequences (docs/datasets.md "CMU-MOSEI"; Zadeh et al., ACL 2018).

Files under `root` (the names the SDK downloads them as, `mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSEI`):

```
CMU_MOSEI_COVAREP.csd                   audio: COVAREP, 74 values per frame
CMU_MOSEI_VisualFacet42.csd             visual (data.cmu_mosei.visual: facet42): FACET 4.2, 35 values per frame
CMU_MOSEI_VisualOpenFace2.csd           visual (openface2): OpenFace 2.0; its width is taken from the file
CMU_MOSEI_TimestampedWordVectors.csd    text: 300-d GloVe vectors, one row per word
CMU_MOSEI_Labels.csd                    per labelled segment: sentiment, happiness, sadness, anger, surprise,
                                        disgust, fear (the SDK's MOSEI README: sentiment in [-3, 3], emotions in [0, 3])
standard_folds.json                     only without the SDK: {"train": [...], "valid": [...], "test": [...]}
```

A `.csd` file is HDF5 as the SDK writes it (`computational_sequence/file_ops.py`, write_CSD / read_CSD):

```
/<root name>/                      one top-level group named after the sequence ("COVAREP", "FACET 4.2",
                                   "OpenFace_2", "glove_vectors", "All Labels"); any name is accepted
    data/<video_id>/features       (T, D) one row per frame, word or labelled segment
    data/<video_id>/intervals      (T, 2) start and end time (s) of each row
    metadata/<key>                 (1,) JSON-encoded strings (description, dimension names, ...); not read
```

Segments and features: each row of a video in the labels file is one clip, `<video_id>[<k>]` with k the row's
index (the SDK's own naming of aligned segments). A clip's frames in a modality are the rows of its video whose
interval overlaps the segment's for a positive duration, min(end, seg_end) > max(start, seg_start) (the rows the
SDK's alignment intersects with a segment): the unaligned features, each modality at its own rate, a row
straddling a segment boundary kept whole. A video absent from a feature file, or a segment that no row of it
overlaps, has no frames there (`has_<modality>` False); a segment with no frames in any modality is dropped
and counted. Non-finite values (COVAREP holds -inf) are set to 0; the manifest counts them per modality
(`features.<modality>.non_finite_zeroed`: values and frames). The files carry no tracking flag: every frame is
valid. Frame rates are None: a `.csd` gives each row's interval, not a rate.

Speaker: MOSEI's video ids are YouTube ids or numbers, from which the channel (the speaker) is not recoverable,
so `speaker` is the video id; a speaker who appears in several videos counts as several speakers.

Folds: the SDK's standard train/valid/test lists of video ids (`mmdatasdk.cmu_mosei.standard_folds`: the SDK's
python source, not the `.csd` files), read from the SDK when it is importable, else from `standard_folds.json`
in `root`; nothing is embedded here. One fold (fold 0), clip-level roles train/val/test (a video's segments share
its role). A listed video without labels is left out and named in the manifest: the SDK's lists name two such
test videos (CMU-MultimodalSDK issue #89: "safe to remove them from the folds"); labelled videos that no list
names (unlabelled-fold material, issue #128) stay out of the store and are counted.

Targets and labels: `meta.csv` holds the seven values as columns, the regression targets in the order above
(`FeaturePackage.attributes`; metrics `ccc_sentiment`, ..., `ccc_fear`, `ccc_mean`). The classification label
(`data.cmu_mosei.label`): `sentiment2`: negative (< 0) | non-negative (>= 0), the usual Acc-2; `sentiment7`: the
SDK README's 7 bins of the sentiment, -3 (< -2), -2 [-2, -1), -1 [-1, 0), 0 (= 0), 1 (0, 1], 2 (1, 2], 3 (> 2);
`emotion`: the emotion of highest intensity (the first in the order above on a tie), clips with no emotion
above 0 dropped and counted. MOSEI's emotions co-occur; multi-label emotion classification is not in scope.
"""

from __future__ import annotations

import importlib
import json
import math
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mer_core.console import progress
from mer_core.data.corpora.base import CorpusError, FeaturePackage, open_hdf5
from mer_core.data.store import Sequences

TARGETS = ("sentiment", "happiness", "sadness", "anger", "surprise", "disgust", "fear")  # the labels' column order
EMOTIONS = TARGETS[1:]
LABELS = {  # data.cmu_mosei.label -> class names, in index order
    "sentiment2": ("negative", "non-negative"),
    "sentiment7": ("-3", "-2", "-1", "0", "1", "2", "3"),
    "emotion": EMOTIONS,
}
LABELS_FILE = "CMU_MOSEI_Labels.csd"
AUDIO = ("CMU_MOSEI_COVAREP.csd", 74, "COVAREP acoustic features")
VISUAL = {  # data.cmu_mosei.visual -> file, width (None: the file's), what it holds
    "facet42": ("CMU_MOSEI_VisualFacet42.csd", 35, "FACET 4.2 facial expression features"),
    "openface2": ("CMU_MOSEI_VisualOpenFace2.csd", None, "OpenFace 2.0 facial features"),
}
TEXT = ("CMU_MOSEI_TimestampedWordVectors.csd", 300, "GloVe word vectors, one row per word")
FOLDS_FILE = "standard_folds.json"
FOLD_ROLES = {"train": "train", "valid": "val", "test": "test"}  # list name -> store role
SDK_FOLDS = {"train": "standard_train_fold", "valid": "standard_valid_fold", "test": "standard_test_fold"}
HINT = "point data.root at the folder holding the CMU-MOSEI .csd files"


# ================================================================================================ labels


def sentiment7(value: float) -> int:
    """The SDK README's 7-class bin of a sentiment score: sign(v) x min(3, ceil(|v|)), i.e. -3 (< -2),
    -2 [-2, -1), -1 [-1, 0), 0, 1 (0, 1], 2 (1, 2], 3 (> 2)."""
    return int(math.copysign(min(3, math.ceil(abs(value))), value)) if value else 0


def class_of(values: np.ndarray, label: str) -> str | None:
    """The class name of one segment's seven values under `label` (module docstring); None for `emotion`
    when no emotion is above 0."""
    sentiment, emotions = float(values[0]), values[1:]
    if label == "sentiment2":
        return "negative" if sentiment < 0 else "non-negative"
    if label == "sentiment7":
        return str(sentiment7(sentiment))
    return EMOTIONS[int(np.argmax(emotions))] if emotions.max() > 0 else None


# ================================================================================================ .csd files


@contextmanager
def open_csd(path: Path):
    """Yield the `data` group of the computational sequence at `path`; CorpusError naming the file when it is
    missing, not HDF5, or not in the SDK's layout."""
    with open_hdf5(path, HINT) as handle:
        groups = list(handle.keys())
        if len(groups) != 1 or not isinstance(handle[groups[0]].get("data"), h5py.Group):
            raise CorpusError(
                f"{path}: top-level groups {groups}; a computational sequence has one group "
                f"holding data/<video_id>/{{features, intervals}}"
            )
        yield handle[groups[0]]["data"]


def read_entry(data: h5py.Group, path: Path, video: str, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(features (T, D) float32, intervals (T, 2) float64) of `video` in an open `data` group; CorpusError
    naming the file and the video when the entry is malformed or D differs from `width` (None: any)."""
    entry = data[video]
    features, intervals = (
        (entry.get("features"), entry.get("intervals")) if isinstance(entry, h5py.Group) else (None, None)
    )
    if not isinstance(features, h5py.Dataset) or not isinstance(intervals, h5py.Dataset):
        raise CorpusError(f"{path}: video {video!r} lacks the datasets features and intervals")
    if features.ndim != 2 or (width is not None and features.shape[1] != width):
        raise CorpusError(
            f"{path}: video {video!r} has features of shape {features.shape}; expected "
            f"(rows, {width if width is not None else 'D'})"
        )
    if intervals.shape != (features.shape[0], 2):
        raise CorpusError(
            f"{path}: video {video!r} has intervals of shape {intervals.shape} for "
            f"{features.shape[0]} feature rows; expected ({features.shape[0]}, 2)"
        )
    times = np.asarray(intervals[()], dtype=np.float64)
    if not np.isfinite(times).all():
        raise CorpusError(f"{path}: video {video!r} has non-finite interval times")
    return np.asarray(features[()], dtype=np.float32), times


def overlapping(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Indices of the rows of `intervals` (T, 2) that overlap [start, end] for a positive duration."""
    overlap = np.minimum(intervals[:, 1], end) - np.maximum(intervals[:, 0], start)
    return np.flatnonzero(overlap > 0)


def read_labels(path: Path, videos: list[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], int]:
    """({video: (values (S, 7), intervals (S, 2))} of the `videos` the labels file holds, the `videos` it lacks
    or holds with no segment, and how many videos it holds that `videos` does not name); CorpusError naming the
    file and the video for a malformed or non-finite entry."""
    found, missing = {}, []
    with open_csd(path) as data:
        for video in videos:
            if video not in data:
                missing.append(video)
                continue
            values, intervals = read_entry(data, path, video, len(TARGETS))
            if not np.isfinite(values).all():
                raise CorpusError(f"{path}: video {video!r} has non-finite labels")
            if len(values):
                found[video] = (values, intervals)
            else:
                missing.append(video)
        unlisted = len(set(data.keys()) - set(videos))
    return found, missing, unlisted


# ================================================================================================ folds


def sdk_folds() -> dict[str, list[str]]:
    """The SDK's standard lists, {train, valid, test: video ids}; ImportError when the SDK is not importable."""
    folds = importlib.import_module("mmsdk.mmdatasdk").cmu_mosei.standard_folds
    return {name: [str(v) for v in getattr(folds, attribute)] for name, attribute in SDK_FOLDS.items()}


def json_folds(path: Path) -> dict[str, list[str]]:
    """The lists of a `standard_folds.json`, validated; CorpusError naming the file otherwise."""
    try:
        folds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(folds, dict) or sorted(folds) != sorted(FOLD_ROLES):
        keys = sorted(folds) if isinstance(folds, dict) else type(folds).__name__
        raise CorpusError(f"{path}: keys {keys}; expected exactly {list(FOLD_ROLES)}, each a list of video ids")
    for name, videos in folds.items():
        if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
            raise CorpusError(f"{path}: {name!r} must be a list of video ids (strings)")
    return {name: folds[name] for name in FOLD_ROLES}


def standard_folds(root: Path) -> tuple[dict[str, list[str]], str]:
    """({train, valid, test: video ids}, where they come from): the SDK when importable, else
    `<root>/standard_folds.json`; CorpusError naming both options when neither is there, or when a video is
    listed twice."""
    try:
        folds, source = sdk_folds(), "mmsdk.mmdatasdk.cmu_mosei.standard_folds (CMU Multimodal SDK)"
    except ImportError as err:
        path = root / FOLDS_FILE
        if not path.is_file():
            raise CorpusError(
                f"{path}: missing, and the CMU Multimodal SDK is not importable ({err}); install the "
                f"SDK (mmsdk) or write its standard fold lists to {path} as "
                '{"train": [...], "valid": [...], "test": [...]} (video ids)'
            ) from err
        folds, source = json_folds(path), str(path)
    seen: dict[str, str] = {}
    for name, videos in folds.items():
        for video in videos:
            if video in seen:
                raise CorpusError(f"{source}: video {video!r} is listed in {seen[video]!r} and in {name!r}")
            seen[video] = name
    return folds, source


# ================================================================================================ segments


def segment_table(
    labels: dict[str, tuple[np.ndarray, np.ndarray]], role_of: dict[str, str], label: str
) -> tuple[pd.DataFrame, int]:
    """One row per labelled segment of the videos in `labels` (sorted by video, then row): clip_id, speaker,
    segment, start, end, label, the seven targets, role; and the number dropped for lacking an emotion."""
    rows, dropped = [], 0
    for video in sorted(labels):
        values, intervals = labels[video]
        for k, (row, (start, end)) in enumerate(zip(values, intervals)):
            name = class_of(row, label)
            if name is None:
                dropped += 1
                continue
            rows.append(
                {
                    "clip_id": f"{video}[{k}]",
                    "speaker": video,
                    "segment": k,
                    "start": float(start),
                    "end": float(end),
                    "label": name,
                    **dict(zip(TARGETS, row.astype(float))),
                    "role": role_of[video],
                }
            )
    columns = ["clip_id", "speaker", "segment", "start", "end", "label", *TARGETS, "role"]
    return pd.DataFrame(rows, columns=columns), dropped


def segment_frames(path: Path, segments: pd.DataFrame, width: int | None, desc: str) -> tuple[list, int, dict]:
    """The frames of every segment (`segments`: speaker = video, start, end; in its row order) from the
    computational sequence at `path`, the feature width (`width`, or the file's when None), and the counts for
    the manifest: non-finite values zeroed and the frames holding them, videos absent from the file."""
    segments = segments.reset_index(drop=True)
    frames: list[np.ndarray | None] = [None] * len(segments)
    zeroed = {"values": 0, "frames": 0}
    absent = []
    with open_csd(path) as data:
        for video, part in progress(segments.groupby("speaker", sort=False), desc=desc, unit="video", mininterval=2):
            if video not in data:
                absent.append(video)
                continue
            features, intervals = read_entry(data, path, video, width)
            width = features.shape[1] if width is None else width
            bad = ~np.isfinite(features)
            if bad.any():
                zeroed["values"] += int(bad.sum())
                zeroed["frames"] += int(bad.any(1).sum())
                features[bad] = 0.0
            for i, start, end in zip(part.index, part["start"], part["end"]):
                frames[i] = features[overlapping(intervals, start, end)]
    if width is None:
        raise CorpusError(f"{path}: none of the {segments['speaker'].nunique()} listed, labelled videos is in it")
    empty = np.zeros((0, width), np.float32)
    return [empty if f is None else f for f in frames], width, {"non_finite_zeroed": zeroed, "videos_absent": absent}


# ================================================================================================ the package


def check_roles(segments: pd.DataFrame, source: str, what: str) -> None:
    """CorpusError naming the fold lists' `source` when a role has no segment."""
    for role in FOLD_ROLES.values():
        if role not in set(segments["role"]):
            raise CorpusError(
                f"{source}: no {what} among the {role} videos; the fold lists and the .csd files "
                f"must come from the same release"
            )


def read_package(root: str | Path, *, visual: str, label: str) -> FeaturePackage:
    """Read CMU-MOSEI at `root` with the visual features `visual` and the classification label `label`
    (params `data.cmu_mosei`; see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found (data.root); {HINT}")
    if visual not in VISUAL:
        raise CorpusError(f"data.cmu_mosei.visual: got {visual!r}; allowed values: {', '.join(VISUAL)}")
    if label not in LABELS:
        raise CorpusError(f"data.cmu_mosei.label: got {label!r}; allowed values: {', '.join(LABELS)}")
    sources = {"audio": AUDIO, "visual": VISUAL[visual], "text": TEXT}
    for file in [LABELS_FILE] + [file for file, _, _ in sources.values()]:
        if not (root / file).is_file():
            raise CorpusError(f"{root / file}: missing; {HINT}")
    folds, fold_source = standard_folds(root)
    role_of = {video: FOLD_ROLES[name] for name, videos in folds.items() for video in videos}
    labels, unlabelled, unlisted = read_labels(root / LABELS_FILE, list(role_of))
    segments, without_emotion = segment_table(labels, role_of, label)
    check_roles(segments, fold_source, "labelled segment")
    frames, dims, features = {}, {}, {}
    for modality, (file, width, what) in sources.items():
        frames[modality], dims[modality], counts = segment_frames(root / file, segments, width, file)
        features[modality] = {"file": file, "description": what, **counts}
    has = {m: np.array([len(f) > 0 for f in clips], dtype=bool) for m, clips in frames.items()}
    kept = np.logical_or.reduce(list(has.values()))
    segments = segments[kept].reset_index(drop=True)
    check_roles(segments, fold_source, "labelled segment with features")
    meta = segments.drop(columns="role")
    for m in frames:
        meta[f"has_{m}"] = has[m][kept]
    clip_ids = list(meta["clip_id"])
    sequences = {}
    for m, clips in frames.items():
        clips = [f for f, k in zip(clips, kept) if k]
        sequences[m] = Sequences.from_list(clip_ids, clips, [np.ones(len(f), bool) for f in clips], dims[m])
    return FeaturePackage(
        meta=meta,
        splits=pd.DataFrame({"fold": 0, "clip_id": clip_ids, "role": segments["role"]}),
        sequences=sequences,
        frame_rates={m: None for m in sources},
        features=features,
        folds={
            "source": fold_source,
            "roles": dict(FOLD_ROLES),
            "listed_videos": {name: len(videos) for name, videos in folds.items()},
            "listed_without_labels": sorted(unlabelled),
            "labelled_unlisted_videos": unlisted,
        },
        classes=LABELS[label],
        attributes=TARGETS,
        labels={
            "label": label,
            "classes": list(LABELS[label]),
            "dropped_without_emotion": without_emotion,
            "dropped_without_frames": int((~kept).sum()),
        },
    )
