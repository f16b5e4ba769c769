"""The CMU-MOSEI adapter (docs/datasets.md "CMU-MOSEI"): tiny computational sequences written with h5py in the SDK's
layout (4 listed videos, a listed video without labels, a labelled video in no list; -inf in COVAREP; a video
absent from the FACET file; a segment beyond every feature row), a `standard_folds.json` (or a stand-in SDK
module), read back exactly; each bad input named; `prepare` into a store; a regression task on its targets."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mer_core.config import ConfigError, load_params
from mer_core.data.batches import load_fold
from mer_core.data.corpora.base import CorpusError, FeaturePackage
from mer_core.data.corpora.cmu_mosei import (
    EMOTIONS,
    LABELS,
    TARGETS,
    class_of,
    json_folds,
    open_csd,
    overlapping,
    read_entry,
    read_labels,
    read_package,
    sdk_folds,
    segment_frames,
    segment_table,
    sentiment7,
    standard_folds,
)
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.prepare import manifest_of, prepare
from mer_core.data.store import Sequences
from mer_core.tasks import study_task

ROOT = Path(__file__).resolve().parents[1]
STEP = {"audio": 0.125, "visual": 0.25}  # row lengths (s): binary fractions, so boundaries compare exactly
WIDTH = {"audio": 74, "visual": 35, "text": 300}
FILES = {
    "audio": "CMU_MOSEI_COVAREP.csd",
    "visual": "CMU_MOSEI_VisualFacet42.csd",
    "text": "CMU_MOSEI_TimestampedWordVectors.csd",
}
ROOT_NAMES = {"audio": "COVAREP", "visual": "FACET 4.2", "text": "glove_vectors"}
FOLDS = {"train": ["-3g5yACwYnA", "208416"], "valid": ["aBcD_EfGh12"], "test": ["zZtop-9x_Q0", "7l3BNtSE0xc"]}
NO_LABELS = "7l3BNtSE0xc"  # listed in the test fold, absent from the labels (as in the real SDK lists)
UNLISTED = "-9YyBTjo1zo"  # labelled, in no list
NO_FACE = "aBcD_EfGh12"  # absent from the FACET file
# per video: (start, end, sentiment, six emotions)
SEGMENTS = {
    "-3g5yACwYnA": [
        (0.5, 1.3, -2.5, [0, 1.0, 0.3, 0, 0, 0]),
        (2.0, 3.0, 1.0, [2.0, 0, 0, 0, 0.5, 0]),
        (3.3, 4.7, 0.0, [0, 0, 0, 0, 0, 0]),
    ],
    "208416": [(0.0, 2.0, 0.3, [0.6, 0, 0, 0.6, 0, 0]), (2.1, 5.0, -1.0, [0, 0, 1.3, 0, 0, 0.3])],
    "aBcD_EfGh12": [(1.0, 2.5, 2.2, [1.6, 0, 0, 0, 0, 0]), (3.0, 4.0, -0.4, [0, 0.3, 0, 0, 0, 1.0])],
    "zZtop-9x_Q0": [
        (0.25, 1.75, -1.5, [0, 0, 0, 0, 2.0, 0]),
        (2.0, 3.5, 2.0, [1.0, 0, 0, 1.0, 0, 0]),
        (50.0, 52.0, 0.6, [0.3, 0, 0, 0, 0, 0]),
    ],  # beyond every feature row: no frames
    UNLISTED: [(0.0, 1.0, 0.5, [0.3, 0, 0, 0, 0, 0])],
}
WORDS = [(0.1, 0.4), (0.4, 0.9), (1.0, 1.0), (1.2, 1.6), (2.05, 2.6), (2.6, 3.4), (3.5, 4.1), (4.2, 5.9)]


def write_csd(path: Path, root_name: str, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A computational sequence as the SDK's write_CSD lays it out (metadata as JSON strings)."""
    with h5py.File(path, "w") as handle:
        group = handle.create_group(root_name)
        data = group.create_group("data")
        for video, (features, intervals) in entries.items():
            data.create_group(video).create_dataset("features", data=features)
            data[video].create_dataset("intervals", data=intervals)
        metadata = group.create_group("metadata")
        metadata.create_dataset("root name", (1,), dtype=h5py.special_dtype(vlen=str))
        metadata["root name"][0] = json.dumps(root_name)


def write_corpus(root: Path, folds: bool = True) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Write the tiny corpus at `root`; return {modality: {video: (features, intervals)}} as written."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {m: {} for m in FILES}
    for video in SEGMENTS:
        for modality, step in STEP.items():
            if modality == "visual" and video == NO_FACE:
                continue
            n = int(6.0 / step)
            starts = np.arange(n) * step
            features = rng.normal(size=(n, WIDTH[modality])).astype(np.float32)
            if modality == "audio":
                features[3, [0, 5]] = -np.inf  # COVAREP's -inf
                features[7, 2] = np.nan
            written[modality][video] = (features, np.stack([starts, starts + step], 1))
        words = np.array(WORDS)
        written["text"][video] = (rng.normal(size=(len(words), 300)).astype(np.float32), words)
    for modality, file in FILES.items():
        write_csd(root / file, ROOT_NAMES[modality], written[modality])
    labels = {
        video: (
            np.array([[s, *e] for _, _, s, e in segments], dtype=np.float64),
            np.array([[a, b] for a, b, _, _ in segments]),
        )
        for video, segments in SEGMENTS.items()
    }
    write_csd(root / "CMU_MOSEI_Labels.csd", "All Labels", labels)
    if folds:
        (root / "standard_folds.json").write_text(json.dumps(FOLDS))
    return written


@pytest.fixture
def no_sdk(monkeypatch):
    """The SDK is not importable (whether or not it is installed here)."""
    monkeypatch.setitem(sys.modules, "mmsdk", None)
    monkeypatch.setitem(sys.modules, "mmsdk.mmdatasdk", None)


@pytest.fixture
def corpus(tmp_path, no_sdk):
    root = tmp_path / "mosei"
    return root, write_corpus(root)


def stand_in_sdk(monkeypatch, lists: dict[str, list[str]]) -> None:
    """Make `mmsdk.mmdatasdk.cmu_mosei.standard_folds` importable with `lists` (train, valid, test)."""
    folds = types.SimpleNamespace(**{f"standard_{name}_fold": videos for name, videos in lists.items()})
    package = types.ModuleType("mmsdk.mmdatasdk")
    package.cmu_mosei = types.SimpleNamespace(standard_folds=folds)
    monkeypatch.setitem(sys.modules, "mmsdk", types.ModuleType("mmsdk"))
    monkeypatch.setitem(sys.modules, "mmsdk.mmdatasdk", package)


# ================================================================================================ labels


def test_sentiment7_follows_the_sdk_bins():
    cases = {
        -3.0: -3,
        -2.5: -3,
        -2.0001: -3,
        -2.0: -2,
        -1.5: -2,
        -1.0: -1,
        -0.2: -1,
        0.0: 0,
        0.1: 1,
        1.0: 1,
        1.0001: 2,
        2.0: 2,
        2.3: 3,
        3.0: 3,
    }
    assert {v: sentiment7(v) for v in cases} == cases


def test_class_of_each_label():
    row = np.array([-0.4, 0.3, 0.0, 0.0, 0.0, 0.0, 1.0])
    assert class_of(row, "sentiment2") == "negative" and class_of(row, "sentiment7") == "-1"
    assert class_of(row, "emotion") == "fear"
    zero = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert class_of(zero, "sentiment2") == "non-negative" and class_of(zero, "sentiment7") == "0"
    assert class_of(zero, "emotion") is None
    tie = np.array([2.0, 0.6, 0.0, 0.0, 0.6, 0.0, 0.0])
    assert class_of(tie, "emotion") == "happiness"  # the first of the tied emotions
    for label, classes in LABELS.items():
        assert class_of(np.array([1.7, *([0.2] * 6)]), label) in classes


# ================================================================================================ .csd files


def test_overlapping_keeps_rows_that_overlap_for_a_positive_duration():
    intervals = np.array([[0.0, 0.5], [0.5, 1.0], [1.0, 1.0], [1.0, 1.5], [1.5, 2.0], [2.5, 3.0]])
    np.testing.assert_array_equal(overlapping(intervals, 0.5, 1.5), [1, 3])  # touching rows and the point left out
    np.testing.assert_array_equal(overlapping(intervals, 0.7, 1.2), [1, 3])  # straddling rows kept whole
    np.testing.assert_array_equal(overlapping(intervals, 2.0, 2.5), [])
    np.testing.assert_array_equal(overlapping(intervals, -1.0, 9.0), [0, 1, 3, 4, 5])


def test_open_csd_and_read_entry(tmp_path):
    path = tmp_path / "x.csd"
    features, intervals = np.arange(6, dtype=np.float64).reshape(3, 2), np.array([[0, 1], [1, 2], [2, 3.0]])
    write_csd(path, "Some Root", {"v1": (features, intervals)})
    with open_csd(path) as data:
        assert list(data) == ["v1"]
        got, times = read_entry(data, path, "v1", 2)
        assert got.dtype == np.float32 and times.dtype == np.float64
        np.testing.assert_array_equal(got, features)
        np.testing.assert_array_equal(times, intervals)
        assert read_entry(data, path, "v1", None)[0].shape == (3, 2)
        with pytest.raises(CorpusError, match=r"video 'v1' has features of shape \(3, 2\); expected \(rows, 5\)"):
            read_entry(data, path, "v1", 5)


@pytest.mark.parametrize("case", ["missing", "not hdf5", "two roots", "no data group"])
def test_open_csd_names_a_bad_file(tmp_path, case):
    path = tmp_path / "x.csd"
    if case == "not hdf5":
        path.write_text("not hdf5")
    elif case != "missing":
        with h5py.File(path, "w") as handle:
            handle.create_group("A").create_group("data" if case == "two roots" else "other")
            if case == "two roots":
                handle.create_group("B")
    message = {
        "missing": "missing",
        "not hdf5": "not a readable HDF5",
        "two roots": r"top-level groups \['A', 'B'\]",
        "no data group": r"top-level groups \['A'\]",
    }[case]
    with pytest.raises(CorpusError, match=message) as info:
        with open_csd(path):
            pass
    assert str(path) in str(info.value)


@pytest.mark.parametrize("case", ["intervals shape", "no intervals", "nan time"])
def test_read_entry_names_the_file_and_video(tmp_path, case):
    path = tmp_path / "x.csd"
    with h5py.File(path, "w") as handle:
        video = handle.create_group("R").create_group("data").create_group("vid")
        video.create_dataset("features", data=np.zeros((3, 2)))
        if case != "no intervals":
            times = np.zeros((2, 2)) if case == "intervals shape" else np.array([[0, 1], [1, np.nan], [2, 3]])
            video.create_dataset("intervals", data=times)
    message = {
        "intervals shape": r"intervals of shape \(2, 2\) for 3 feature rows",
        "no intervals": "lacks the datasets features and intervals",
        "nan time": "non-finite interval",
    }[case]
    with open_csd(path) as data, pytest.raises(CorpusError, match=message) as info:
        read_entry(data, path, "vid", 2)
    assert str(path) in str(info.value) and "'vid'" in str(info.value)


def test_read_labels_returns_listed_videos_and_names_the_rest(tmp_path):
    path = tmp_path / "labels.csd"
    labels = {
        "a": (np.ones((2, 7)), np.array([[0, 1], [1, 2.0]])),
        "b": (np.zeros((0, 7)), np.zeros((0, 2))),
        "c": (np.ones((1, 7)), np.array([[0, 1.0]])),
    }
    write_csd(path, "All Labels", labels)
    found, missing, unlisted = read_labels(path, ["a", "b", "x"])
    assert list(found) == ["a"] and missing == ["b", "x"] and unlisted == 1  # "c"
    np.testing.assert_array_equal(found["a"][0], labels["a"][0])
    write_csd(path, "All Labels", {"a": (np.array([[0.5, np.nan, 0, 0, 0, 0, 0]]), np.array([[0, 1.0]]))})
    with pytest.raises(CorpusError, match=f"{path}: video 'a' has non-finite labels"):
        read_labels(path, ["a"])
    write_csd(path, "All Labels", {"a": (np.ones((1, 6)), np.array([[0, 1.0]]))})
    with pytest.raises(CorpusError, match=r"video 'a' has features of shape \(1, 6\); expected \(rows, 7\)"):
        read_labels(path, ["a"])


# ================================================================================================ folds


def test_json_folds_validated(tmp_path):
    path = tmp_path / "standard_folds.json"
    path.write_text(json.dumps({"test": ["c"], "train": ["a"], "valid": ["b"]}))
    assert json_folds(path) == {"train": ["a"], "valid": ["b"], "test": ["c"]}
    for bad, message in [
        ({"train": [], "test": []}, r"keys \['test', 'train'\]; expected exactly"),
        ({"train": ["a"], "valid": "b", "test": []}, "'valid' must be a list of video ids"),
        ([1, 2], "keys list; expected exactly"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(CorpusError, match=message):
            json_folds(path)
    path.write_text("{train")
    with pytest.raises(CorpusError, match=f"{path}: not valid JSON"):
        json_folds(path)


def test_standard_folds_prefer_the_sdk(tmp_path, monkeypatch):
    (tmp_path / "standard_folds.json").write_text(json.dumps({"train": ["x"], "valid": ["y"], "test": ["z"]}))
    stand_in_sdk(monkeypatch, {"train": ["a", "b"], "valid": ["c"], "test": ["d"]})
    assert sdk_folds() == {"train": ["a", "b"], "valid": ["c"], "test": ["d"]}
    folds, source = standard_folds(tmp_path)
    assert folds == {"train": ["a", "b"], "valid": ["c"], "test": ["d"]} and "mmsdk" in source


def test_standard_folds_from_the_json_without_the_sdk(tmp_path, no_sdk):
    with pytest.raises(ImportError):
        sdk_folds()
    (tmp_path / "standard_folds.json").write_text(json.dumps({"train": ["x"], "valid": ["y"], "test": ["z"]}))
    assert standard_folds(tmp_path) == (
        {"train": ["x"], "valid": ["y"], "test": ["z"]},
        str(tmp_path / "standard_folds.json"),
    )


def test_standard_folds_missing_names_both_options(tmp_path, no_sdk):
    with pytest.raises(CorpusError) as info:
        standard_folds(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'standard_folds.json'}: missing" in message and "install the SDK (mmsdk)" in message


def test_standard_folds_reject_a_video_in_two_lists(tmp_path, no_sdk):
    (tmp_path / "standard_folds.json").write_text(json.dumps({"train": ["x", "y"], "valid": ["y"], "test": []}))
    with pytest.raises(CorpusError, match="video 'y' is listed in 'train' and in 'valid'"):
        standard_folds(tmp_path)


# ================================================================================================ segments


def test_segment_table_rows_and_dropped_emotionless_clips():
    labels = {
        video: (np.array([[s, *e] for _, _, s, e in segs]), np.array([[a, b] for a, b, _, _ in segs]))
        for video, segs in SEGMENTS.items()
        if video != UNLISTED
    }
    role_of = {v: {"train": "train", "valid": "val", "test": "test"}[n] for n, vs in FOLDS.items() for v in vs}
    table, dropped = segment_table(labels, role_of, "sentiment7")
    assert dropped == 0 and len(table) == 10
    assert table["clip_id"].tolist()[:3] == ["-3g5yACwYnA[0]", "-3g5yACwYnA[1]", "-3g5yACwYnA[2]"]
    assert list(table.columns) == ["clip_id", "speaker", "segment", "start", "end", "label", *TARGETS, "role"]
    first = table.iloc[0]
    assert (first["speaker"], first["segment"], first["start"], first["end"], first["label"]) == (
        "-3g5yACwYnA",
        0,
        0.5,
        1.3,
        "-3",
    )
    assert first[list(TARGETS)].tolist() == [-2.5, 0, 1.0, 0.3, 0, 0, 0]
    emotion, dropped = segment_table(labels, role_of, "emotion")
    assert dropped == 1 and "-3g5yACwYnA[2]" not in set(emotion["clip_id"])  # all six emotions are 0
    assert emotion.set_index("clip_id").loc["208416[0]", "label"] == "happiness"  # tie: the first
    assert set(emotion["role"]) == {"train", "val", "test"}


def test_segment_frames_slices_overlapping_rows_and_zeroes_non_finite(corpus):
    root, written = corpus
    segments = pd.DataFrame(
        {"speaker": ["-3g5yACwYnA", "-3g5yACwYnA", "aBcD_EfGh12"], "start": [0.5, 2.0, 1.0], "end": [1.3, 3.0, 2.5]}
    )
    frames, width, counts = segment_frames(root / FILES["audio"], segments, 74, "audio")
    audio = written["audio"]["-3g5yACwYnA"][0].copy()
    audio[~np.isfinite(audio)] = 0.0
    assert width == 74 and [len(f) for f in frames] == [7, 8, 12]  # rows 4..10 of 0.125 s overlap [0.5, 1.3]
    np.testing.assert_array_equal(frames[0], audio[4:11])
    np.testing.assert_array_equal(frames[1], audio[16:24])
    assert counts["non_finite_zeroed"] == {"values": 2 * 3, "frames": 2 * 2}  # 2 videos read, 2 rows each
    assert counts["videos_absent"] == []
    visual, width, counts = segment_frames(root / FILES["visual"], segments, None, "visual")
    assert width == 35 and [len(f) for f in visual] == [4, 4, 0] and visual[2].shape == (0, 35)
    assert counts["videos_absent"] == ["aBcD_EfGh12"]
    np.testing.assert_array_equal(visual[0], written["visual"]["-3g5yACwYnA"][0][2:6])  # straddles 0.5..1.5
    with pytest.raises(CorpusError, match="none of the 1 listed, labelled videos is in it"):
        segment_frames(root / FILES["visual"], segments.iloc[2:], None, "visual")


# ================================================================================================ the package


def test_read_package_meta_sequences_and_folds(corpus):
    root, written = corpus
    package = read_package(root, visual="facet42", label="sentiment2")
    meta = package.meta
    # 10 labelled segments of listed videos, one of them beyond every feature row
    assert len(meta) == 9 and "zZtop-9x_Q0[2]" not in set(meta["clip_id"])
    assert UNLISTED not in set(meta["speaker"]) and NO_LABELS not in set(meta["speaker"])
    assert meta["speaker"].tolist() == [c.split("[")[0] for c in meta["clip_id"]]
    assert list(meta.columns) == [
        "clip_id",
        "speaker",
        "segment",
        "start",
        "end",
        "label",
        *TARGETS,
        "has_audio",
        "has_visual",
        "has_text",
    ]
    assert meta["has_audio"].all() and meta["has_visual"].tolist() == [s != NO_FACE for s in meta["speaker"]]
    assert meta.loc[meta["clip_id"] == "208416[1]", "label"].item() == "negative"
    assert package.classes == LABELS["sentiment2"] and package.attributes == TARGETS
    # every segment's frames: exactly the overlapping rows, -inf and NaN zeroed
    for modality in FILES:
        seq = package.sequences[modality]
        assert list(seq.clip_ids) == meta["clip_id"].tolist() and seq.dim == WIDTH[modality]
        assert seq.valid.all() and np.isfinite(seq.data).all()
        for i, row in meta.iterrows():
            if row["speaker"] not in written[modality]:
                assert seq.lengths[i] == 0
                continue
            features, intervals = written[modality][row["speaker"]]
            keep = np.minimum(intervals[:, 1], row["end"]) > np.maximum(intervals[:, 0], row["start"])
            np.testing.assert_array_equal(seq.clip(i)[0], np.nan_to_num(features[keep], nan=0.0, neginf=0.0))
    # text: the zero-length word is in no segment; [2.05, 2.6] and [2.6, 3.4] straddle 2.0..3.0
    text = package.sequences["text"]
    assert text.lengths[meta.index[meta["clip_id"] == "-3g5yACwYnA[1]"][0]] == 2
    assert package.features["audio"]["non_finite_zeroed"] == {"values": 4 * 3, "frames": 4 * 2}
    assert package.features["visual"]["videos_absent"] == [NO_FACE]
    assert package.frame_rates == {"audio": None, "visual": None, "text": None}
    # folds: fold 0, by clip, each video's segments in its list's role
    splits = package.splits
    assert list(splits.columns) == ["fold", "clip_id", "role"] and set(splits["fold"]) == {0}
    assert splits["clip_id"].tolist() == meta["clip_id"].tolist()
    role_of = {v: {"train": "train", "valid": "val", "test": "test"}[n] for n, vs in FOLDS.items() for v in vs}
    assert splits["role"].tolist() == [role_of[s] for s in meta["speaker"]]
    assert package.folds["listed_without_labels"] == [NO_LABELS]
    assert package.folds["labelled_unlisted_videos"] == 1
    assert package.folds["listed_videos"] == {"train": 2, "valid": 1, "test": 2}
    assert package.labels == {
        "label": "sentiment2",
        "classes": ["negative", "non-negative"],
        "dropped_without_emotion": 0,
        "dropped_without_frames": 1,
    }


def test_read_package_emotion_label_drops_and_counts(corpus):
    root, _ = corpus
    package = read_package(root, visual="facet42", label="emotion")
    assert package.classes == EMOTIONS and package.labels["dropped_without_emotion"] == 1
    assert "-3g5yACwYnA[2]" not in set(package.meta["clip_id"]) and len(package.meta) == 8
    labels = package.meta.set_index("clip_id")["label"]
    assert labels["-3g5yACwYnA[0]"] == "sadness" and labels["zZtop-9x_Q0[0]"] == "disgust"


def test_read_package_openface2_takes_the_file_s_width(tmp_path, no_sdk):
    root = tmp_path / "mosei"
    write_corpus(root)
    rng = np.random.default_rng(1)
    write_csd(
        root / "CMU_MOSEI_VisualOpenFace2.csd",
        "OpenFace_2",
        {
            v: (rng.normal(size=(12, 9)), np.stack([np.arange(12) * 0.5, np.arange(1, 13) * 0.5], 1))
            for v in ("-3g5yACwYnA", "208416", "zZtop-9x_Q0")
        },
    )
    package = read_package(root, visual="openface2", label="sentiment7")
    assert package.sequences["visual"].dim == 9 and package.features["visual"]["file"].endswith("OpenFace2.csd")
    assert set(package.meta["label"]) <= set(LABELS["sentiment7"])


def test_read_package_with_the_sdk_s_lists(tmp_path, monkeypatch):
    root = tmp_path / "mosei"
    write_corpus(root, folds=False)
    stand_in_sdk(monkeypatch, FOLDS)
    package = read_package(root, visual="facet42", label="sentiment2")
    assert "mmsdk" in package.folds["source"] and len(package.meta) == 9


def edit_labels(root: Path, video: str, values: np.ndarray | None, intervals: np.ndarray | None = None) -> None:
    """Rewrite the labels file with `video`'s rows replaced by `values` (None: removed) and `intervals` (default:
    the first len(values) of its own)."""
    with h5py.File(root / "CMU_MOSEI_Labels.csd", "a") as handle:
        data = handle["All Labels"]["data"]
        own = data[video]["intervals"][()]
        del data[video]
        if values is not None:
            data.create_group(video).create_dataset("features", data=values)
            data[video].create_dataset("intervals", data=own[: len(values)] if intervals is None else intervals)


BAD_INPUTS = {  # case -> (edit(root), file named, message)
    "labels missing": (lambda r: (r / "CMU_MOSEI_Labels.csd").unlink(), "CMU_MOSEI_Labels.csd", "missing"),
    "covarep missing": (lambda r: (r / FILES["audio"]).unlink(), FILES["audio"], "missing"),
    "facet missing": (lambda r: (r / FILES["visual"]).unlink(), FILES["visual"], "missing"),
    "words missing": (lambda r: (r / FILES["text"]).unlink(), FILES["text"], "missing"),
    "folds missing": (
        lambda r: (r / "standard_folds.json").unlink(),
        "standard_folds.json",
        "missing, and the CMU Multimodal SDK is not importable",
    ),
    "covarep width": (
        lambda r: write_csd(
            r / FILES["audio"], "COVAREP", {"208416": (np.zeros((4, 73)), np.array([[0, 1], [1, 2], [2, 3], [3, 4.0]]))}
        ),
        FILES["audio"],
        r"video '208416' has features of shape \(4, 73\)",
    ),
    "labels not finite": (
        lambda r: edit_labels(r, "208416", np.full((2, 7), np.inf)),
        "CMU_MOSEI_Labels.csd",
        "video '208416' has non-finite labels",
    ),
    "test videos without labels": (
        lambda r: edit_labels(r, "zZtop-9x_Q0", None),
        "standard_folds.json",
        "no labelled segment among the test videos",
    ),
    "valid video without labelled rows": (
        lambda r: edit_labels(r, "aBcD_EfGh12", np.zeros((0, 7))),
        "standard_folds.json",
        "no labelled segment among the val videos",
    ),
    "test segments without frames": (
        lambda r: edit_labels(r, "zZtop-9x_Q0", np.zeros((1, 7)), np.array([[60, 61.0]])),
        "standard_folds.json",
        "no labelled segment with features among the test",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_file(corpus, case):
    root, _ = corpus
    edit, file, message = BAD_INPUTS[case]
    edit(root)
    with pytest.raises(CorpusError, match=message) as info:
        read_package(root, visual="facet42", label="sentiment2")
    assert str(root / file) in str(info.value)


def test_bad_root_and_options_are_named(tmp_path, corpus):
    with pytest.raises(CorpusError, match=f"{tmp_path / 'nowhere'}: folder not found"):
        read_package(tmp_path / "nowhere", visual="facet42", label="sentiment2")
    root, _ = corpus
    with pytest.raises(CorpusError, match="data.cmu_mosei.visual: got 'facet'; allowed values: facet42, openface2"):
        read_package(root, visual="facet", label="sentiment2")
    with pytest.raises(CorpusError, match="data.cmu_mosei.label: got 'acc2'; allowed values: sentiment2, "):
        read_package(root, visual="facet42", label="acc2")
    with pytest.raises(CorpusError, match="CMU_MOSEI_VisualOpenFace2.csd: missing"):
        read_package(root, visual="openface2", label="sentiment2")


def test_params_validate_the_options():
    assert load_params(ROOT / "params.yaml")["data"]["cmu_mosei"] == {"visual": "facet42", "label": "sentiment2"}
    with pytest.raises(
        ConfigError, match="data.cmu_mosei.label: got 'acc2'; Input should be 'sentiment2', 'sentiment7' or 'emotion'"
    ):
        load_params(ROOT / "params.yaml", {"data.cmu_mosei.label": "acc2"})


# ================================================================================================ package fields


def test_feature_package_checks_attributes_and_classes():
    meta = pd.DataFrame({"clip_id": ["a"], "speaker": ["s"], "label": ["x"], "sentiment": [0.5]})
    seq = Sequences.from_list(["a"], [np.zeros((1, 2))], [np.ones(1, bool)], 2)
    base = dict(meta=meta, splits=pd.DataFrame(), sequences={"audio": seq}, frame_rates={}, features={}, folds={})
    assert FeaturePackage(**base, classes=("x", "y"), attributes=("sentiment",)).attributes == ("sentiment",)
    assert FeaturePackage(**base).classes is None and FeaturePackage(**base).labels == {}
    with pytest.raises(ValueError, match=r"attributes \['fear'\] are not columns of meta"):
        FeaturePackage(**base, attributes=("sentiment", "fear"))
    with pytest.raises(ValueError, match=r"labels \['x'\] are not among the classes \['y'\]"):
        FeaturePackage(**base, classes=("y",))


def test_manifest_of_classes_and_attributes():
    meta = pd.DataFrame({"clip_id": ["a"], "speaker": ["s"], "label": ["x"], "valence": [0.1], "arousal": [0.2]})
    corpus = CORPORA["builtin"]
    default = manifest_of(corpus, "r", meta, {}, {}, {}, skipped=0)
    assert default["attributes"] == ["arousal", "valence"] and default["classes"] == list(corpus.classes)
    chosen = manifest_of(corpus, "r", meta, {}, {}, {}, skipped=0, classes=("x",), attributes=("valence",))
    assert chosen["attributes"] == ["valence"] and chosen["classes"] == ["x"]


# ================================================================================================ prepare + task


def test_prepare_builds_the_store_and_a_regression_task_on_its_targets(corpus, tmp_path):
    root, _ = corpus
    params = load_params(
        ROOT / "params.yaml",
        {"data.corpus": "cmu_mosei", "data.root": str(root), "data.features_dir": str(tmp_path / "features")},
    )
    assert CORPORA["cmu_mosei"].kind == "package" and CORPORA["cmu_mosei"].modalities == ("audio", "visual", "text")
    store = prepare(params)
    manifest = store.manifest
    assert store.root == tmp_path / "features" / "cmu_mosei" and store.modalities == ("audio", "visual", "text")
    assert manifest["dims"] == {"audio": 74, "visual": 35, "text": 300}
    assert manifest["classes"] == ["negative", "non-negative"] and manifest["attributes"] == list(TARGETS)
    assert manifest["labels"]["dropped_without_frames"] == 1 and manifest["folds"]["listed_without_labels"] == [
        NO_LABELS
    ]
    assert manifest["counts"] == {"clips": 9, "speakers": 4, "skipped": 0}
    assert store.folds == [0] and "208416" in set(store.meta["speaker"])  # a numeric video id stays a string
    index = store.fold_indices(0)
    assert {role: len(rows) for role, rows in index.items()} == {"train": 5, "val": 2, "test": 2}
    classification = study_task("classification", manifest)
    assert classification.targets == ("negative", "non-negative")
    task = study_task("regression", manifest)
    assert task.targets == TARGETS
    assert task.metrics == tuple(f"ccc_{t}" for t in TARGETS) + ("ccc_mean",)
    fold = load_fold(store, 0, task)
    test = fold["test"]
    assert test.y.dtype == torch.float32 and tuple(test.y.shape) == (2, 7)
    np.testing.assert_allclose(test.y.numpy(), store.meta[list(TARGETS)].to_numpy(np.float32)[index["test"]])
    val = fold["val"]
    assert not val.has[:, val.modalities.index("visual")].any()  # the valid video has no FACET rows
    y = fold["train"].y.numpy()
    columns, _ = task.columns(y, torch.from_numpy(y))
    scores = task.score(pd.DataFrame(columns))
    assert list(scores) == list(task.metrics)
    assert scores["ccc_sentiment"] == pytest.approx(1.0)
