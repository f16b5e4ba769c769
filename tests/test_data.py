"""mer_core.data: feature store, OpenFace import, feature extraction, folds, batches, the CREMA-D adapter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from mer_core.data import features
from mer_core.data.batches import Normaliser, load_fold, make_split
from mer_core.data.corpora import crema_d
from mer_core.data.corpora.registry import CORPORA, Corpus
from mer_core.data.features import extract_audio, extract_visual, reduce_rate
from mer_core.data.folds import FoldError, check_classes, make_splits
from mer_core.data.media import AudioError, read_wav
from mer_core.data.openface import AU_INTENSITY, BOUNDS, GAZE, POSE, OpenFaceError, read_openface_csv
from mer_core.data.store import Sequences, StoreError, read_store, write_store

# ================================================================================================ store


def small_store_parts():
    meta = pd.DataFrame(
        {
            "clip_id": ["c0", "c1", "c2"],
            "speaker": ["007", "007", "012"],
            "label": ["anger", "sad", "sad"],
            "gender": ["Female", "Female", "Male"],
            "has_audio": [True, True, True],
            "has_visual": [True, False, True],
        }
    )
    splits = pd.DataFrame({"fold": [0, 0], "speaker": ["007", "012"], "role": ["train", "test"]})
    rng = np.random.default_rng(1)
    audio = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 2, 5)]
    visual = [rng.normal(size=(n, 2)).astype(np.float32) for n in (3, 0, 2)]
    sequences = {
        "audio": Sequences.from_list(["c0", "c1", "c2"], audio, [np.ones(len(a), bool) for a in audio], 3),
        "visual": Sequences.from_list(
            ["c0", "c1", "c2"], visual, [np.array([True, False, True]), np.zeros(0, bool), np.array([True, True])], 2
        ),
    }
    manifest = {
        "corpus": "toy",
        "modalities": ["audio", "visual"],
        "classes": ["anger", "sad"],
        "dims": {"audio": 3, "visual": 2},
    }
    return meta, splits, sequences, manifest, audio, visual


def test_sequences_from_list():
    *_, sequences, _, audio, visual = small_store_parts()
    seq = sequences["visual"]
    assert seq.offsets.tolist() == [0, 3, 3, 5]
    assert seq.lengths.tolist() == [3, 0, 2] and seq.dim == 2
    frames, valid = seq.clip(2)
    np.testing.assert_array_equal(frames, visual[2])
    assert valid.tolist() == [True, True]
    assert seq.clip(1)[0].shape == (0, 2)
    empty = Sequences.from_list([], [], [], 4)
    assert empty.data.shape == (0, 4) and empty.offsets.tolist() == [0]


def test_store_round_trip(tmp_path):
    meta, splits, sequences, manifest, *_ = small_store_parts()
    skipped = pd.DataFrame({"clip_id": ["c9"], "modality": ["audio"], "path": ["x.wav"], "error": ["bad"]})
    root = write_store(tmp_path / "features" / "toy", meta, splits, sequences, manifest, skipped)
    assert root == tmp_path / "features" / "toy"
    store = read_store(root)
    pd.testing.assert_frame_equal(store.meta, meta)  # "007" keeps its leading zeros, bools stay bools
    pd.testing.assert_frame_equal(store.splits, splits)
    assert store.modalities == ("audio", "visual") and store.classes == ["anger", "sad"]
    for m, seq in sequences.items():
        for name in ("data", "offsets", "valid", "clip_ids"):
            np.testing.assert_array_equal(getattr(store.sequences[m], name), getattr(seq, name))
        assert store.sequences[m].data.dtype == np.float32 and store.sequences[m].valid.dtype == bool
    assert {k: store.manifest[k] for k in manifest} == manifest
    assert sorted(store.manifest["files"]) == ["audio.npz", "meta.csv", "skipped.csv", "splits.csv", "visual.npz"]
    assert pd.read_csv(root / "skipped.csv")["clip_id"].tolist() == ["c9"]
    assert store.folds == [0]
    index = store.fold_indices(0)
    assert index["train"].tolist() == [0, 1] and index["test"].tolist() == [2] and index["val"].tolist() == []
    with pytest.raises(StoreError, match=r"splits\.csv: no fold 3"):
        store.fold_indices(3)


def test_clip_level_splits_assign_roles_by_clip_and_leave_unlisted_clips_out(tmp_path):
    meta, _, sequences, manifest, *_ = small_store_parts()
    splits = pd.DataFrame(
        {"fold": [0, 0, 1, 1], "clip_id": ["c2", "c0", "c1", "c2"], "role": ["train", "test", "val", "test"]}
    )
    store = read_store(write_store(tmp_path / "toy", meta, splits, sequences, manifest))
    pd.testing.assert_frame_equal(store.splits, splits)
    assert {r: v.tolist() for r, v in store.fold_indices(0).items()} == {"train": [2], "val": [], "test": [0]}
    assert {r: v.tolist() for r, v in store.fold_indices(1).items()} == {"train": [], "val": [1], "test": [2]}


def test_write_is_atomic_and_replaces_old_store(tmp_path):
    meta, splits, sequences, manifest, *_ = small_store_parts()
    root = tmp_path / "toy"
    stale = tmp_path / "toy.partial"  # left behind by an interrupted run
    stale.mkdir()
    (stale / "junk").write_text("x")
    write_store(root, meta, splits, sequences, manifest)
    (root / "old_file.txt").write_text("from a previous store")
    write_store(root, meta, splits, {"audio": sequences["audio"]}, dict(manifest, modalities=["audio"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # no .partial sibling
    assert sorted(p.name for p in root.iterdir()) == ["audio.npz", "manifest.json", "meta.csv", "splits.csv"]
    assert read_store(root).modalities == ("audio",)


def test_write_rejects_misordered_sequences_and_keeps_old_store(tmp_path):
    meta, splits, sequences, manifest, *_ = small_store_parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest)
    shuffled = meta.iloc[[1, 0, 2]].reset_index(drop=True)
    with pytest.raises(StoreError, match="clip order differs from meta.csv"):
        write_store(root, shuffled, splits, sequences, manifest)
    assert read_store(root).meta["clip_id"].tolist() == ["c0", "c1", "c2"]


@pytest.mark.parametrize("name", ["meta.csv", "splits.csv", "audio.npz", "visual.npz"])
def test_corrupted_file_is_detected_and_named(tmp_path, name):
    meta, splits, sequences, manifest, *_ = small_store_parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest)
    path = root / name
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(StoreError) as info:
        read_store(root)
    assert str(path) in str(info.value) and "does not match manifest.json" in str(info.value)


def test_verify_false_skips_the_hash_check(tmp_path):
    meta, splits, sequences, manifest, *_ = small_store_parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest)
    with open(root / "meta.csv", "a") as handle:
        handle.write("c3,012,sad,Male,True,True\n")
    assert len(read_store(root, verify=False).meta) == 4
    with pytest.raises(StoreError, match="meta.csv"):
        read_store(root)


def test_missing_manifest_or_file(tmp_path):
    with pytest.raises(StoreError) as info:
        read_store(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "manifest.json") in str(info.value) and "missing" in str(info.value)
    meta, splits, sequences, manifest, *_ = small_store_parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest)
    (root / "visual.npz").unlink()
    with pytest.raises(StoreError, match=str(root / "visual.npz")):
        read_store(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="manifest.json: corrupt JSON"):
        read_store(root)


# ================================================================================================ OpenFace

GROUPS = ["au_r", "pose", "gaze"]
COLUMNS = AU_INTENSITY + POSE + GAZE


def write_openface(path, features: np.ndarray, success, columns=None, extra_rows: str = ""):
    """An OpenFace 2.0 FeatureExtraction CSV: ', ' separated header and values."""
    columns = COLUMNS if columns is None else columns
    header = ["frame", "face_id", "timestamp", "confidence", "success", *columns]
    lines = [", ".join(header)]
    for t, (row, ok) in enumerate(zip(features, success)):
        values = [
            str(t + 1),
            "0",
            f"{t / 30:.3f}",
            "0.98" if ok else "0",
            str(int(ok)),
            *("nan" if np.isnan(v) else f"{v:.6f}" for v in row),
        ]
        lines.append(", ".join(values))
    path.write_text("\n".join(lines) + "\n" + extra_rows)
    return path


def random_face(n: int, seed: int = 0) -> np.ndarray:
    """Values within each column's OpenFace range (AU intensities 0 to 1.5, the others -1.5 to 1.5)."""
    low = [max(BOUNDS[c].low, -1.5) for c in COLUMNS]
    high = [min(BOUNDS[c].high, 1.5) for c in COLUMNS]
    return np.random.default_rng(seed).uniform(low, high, (n, len(COLUMNS))).round(6).astype(np.float32)


def test_openface_reads_stripped_columns_in_group_order(tmp_path):
    face = random_face(5)
    path = write_openface(tmp_path / "clip.csv", face, [1] * 5)
    assert ", AU01_r" in path.read_text().splitlines()[0]
    frames, valid = read_openface_csv(path, GROUPS)
    assert frames.shape == (5, 17 + 6 + 8) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, face, atol=1e-6)
    assert valid.dtype == bool and valid.all()
    pose_first, _ = read_openface_csv(path, ["pose", "au_r"])  # order follows `groups`
    np.testing.assert_allclose(pose_first, np.concatenate([face[:, 17:23], face[:, :17]], 1), atol=1e-6)


def test_openface_failed_frames_are_zeroed_and_invalid(tmp_path):
    face = random_face(6)
    face[2, 4] = np.nan  # a NaN in a failed frame is fine: the frame is dropped anyway
    success = [1, 1, 0, 1, 0, 1]
    frames, valid = read_openface_csv(write_openface(tmp_path / "clip.csv", face, success), GROUPS)
    assert valid.tolist() == [bool(s) for s in success]
    assert (frames[~valid] == 0).all()
    np.testing.assert_allclose(frames[valid], face[valid], atol=1e-6)


def test_openface_missing_column(tmp_path):
    columns = [c for c in COLUMNS if c != "pose_Rx"]
    path = write_openface(tmp_path / "clip.csv", random_face(3)[:, : len(columns)], [1] * 3, columns=columns)
    with pytest.raises(OpenFaceError) as info:
        read_openface_csv(path, GROUPS)
    assert str(path) in str(info.value) and "pose_Rx" in str(info.value)
    assert read_openface_csv(path, ["au_r", "gaze"])[0].shape == (3, 25)  # not needed: no error


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "not a readable OpenFace CSV"),
        (", ".join(["frame", "success", *COLUMNS]).encode() + b"\n", "no frames"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\xff\xfe\xfa", ""),
        (b"this is not a csv file\njust some text\n", "missing OpenFace columns"),
    ],
)
def test_openface_unreadable_files(tmp_path, content, reason):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(OpenFaceError) as info:
        read_openface_csv(path, GROUPS)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_openface_missing_file(tmp_path):
    with pytest.raises(OpenFaceError, match="absent.csv"):
        read_openface_csv(tmp_path / "absent.csv", GROUPS)


def test_openface_all_failed(tmp_path):
    path = write_openface(tmp_path / "clip.csv", random_face(4), [0] * 4)
    with pytest.raises(OpenFaceError) as info:
        read_openface_csv(path, GROUPS)
    assert str(path) in str(info.value) and "no frame with success = 1" in str(info.value)


def test_openface_nan_in_valid_frame(tmp_path):
    face = random_face(4)
    face[2, 3] = np.nan
    path = write_openface(tmp_path / "clip.csv", face, [1, 1, 1, 1])
    with pytest.raises(OpenFaceError) as info:
        read_openface_csv(path, GROUPS)
    assert str(path) in str(info.value) and "NaN" in str(info.value) and "row 2" in str(info.value)


def test_openface_non_numeric(tmp_path):
    face = random_face(2)
    path = write_openface(tmp_path / "clip.csv", face, [1, 1])
    path.write_text(path.read_text().replace(f"{face[1, 0]:.6f}", "oops", 1))
    with pytest.raises(OpenFaceError, match=f"{path}: column 'AU01_r', row 1 \\(line 3\\): 'oops' is not a number"):
        read_openface_csv(path, GROUPS)


# ================================================================================================ features

LOGMEL = {"extractor": "logmel", "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0, "rate_reduction": 1}


def sine(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_wav_mono_stereo_and_resampling(tmp_path):
    wave = sine(0.5, 16000)
    sf.write(tmp_path / "mono.wav", wave, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_wav(tmp_path / "mono.wav"), wave)
    stereo = np.stack([wave, 0.5 * wave], 1)
    sf.write(tmp_path / "stereo.wav", stereo, 16000, subtype="FLOAT")
    mixed = read_wav(tmp_path / "stereo.wav")
    assert mixed.shape == (8000,) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, 0.75 * wave, atol=1e-7)
    sf.write(tmp_path / "low.wav", sine(0.5, 8000), 8000, subtype="FLOAT")
    up = read_wav(tmp_path / "low.wav")
    assert up.dtype == np.float32 and abs(len(up) - 8000) <= 2
    spectrum = np.abs(np.fft.rfft(up))
    assert np.fft.rfftfreq(len(up), 1 / 16000)[spectrum.argmax()] == pytest.approx(440.0, abs=4.0)


@pytest.mark.parametrize("content", [b"", b"RIFF\x24\x00\x00\x00WAVEgarbage", b"not audio at all" * 10])
def test_read_wav_corrupt(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=str(path)):
        read_wav(path)


def test_read_wav_empty_and_missing(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=f"{path}: no samples"):
        read_wav(path)
    with pytest.raises(AudioError, match="gone.wav"):
        read_wav(tmp_path / "gone.wav")


def test_logmel_shape_and_frame_count(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, sine(1.2, 16000), 16000)
    frames, valid = extract_audio(path, LOGMEL)
    expected = 1 + (19200 - 400) // 160  # Kaldi frames with snip_edges: 1 + (N - window) // hop
    assert frames.shape == (expected, 40) and frames.dtype == np.float32
    assert abs(len(frames) - 1.2 / 0.010) <= 0.025 / 0.010 + 1
    assert valid.dtype == bool and valid.all() and len(valid) == len(frames)
    assert np.isfinite(frames).all()
    reduced, _ = extract_audio(path, dict(LOGMEL, n_mels=23, rate_reduction=3))
    assert reduced.shape == (-(-expected // 3), 23)
    assert features.audio_dim(LOGMEL) == 40
    assert features.audio_frame_rate(dict(LOGMEL, rate_reduction=3)) == pytest.approx(100 / 3)


def test_audio_shorter_than_one_window_raises_audio_error(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, sine(0.005, 16000), 16000)  # 80 samples < 400-sample window
    with pytest.raises(AudioError, match=str(path)):
        extract_audio(path, LOGMEL)


def test_compare_gives_130_dims():
    frames = features.audio_features(sine(0.5, 16000), dict(LOGMEL, extractor="compare"))
    assert frames.shape[1] == 130 == features.audio_dim(dict(LOGMEL, extractor="compare"))
    assert abs(len(frames) - 50) <= 6 and np.isfinite(frames).all()
    assert features.audio_frame_rate(dict(LOGMEL, extractor="compare", hop_ms=20.0)) == 100.0


def test_reduce_rate_known_values():
    frames = np.arange(14, dtype=np.float32).reshape(7, 2)
    reduced = reduce_rate(frames, 3)
    expected = np.array([[(0 + 2 + 4) / 3, (1 + 3 + 5) / 3], [(6 + 8 + 10) / 3, (7 + 9 + 11) / 3], [12, 13]])
    np.testing.assert_allclose(reduced, expected, rtol=1e-6)
    assert reduced.dtype == np.float32
    np.testing.assert_allclose(reduce_rate(frames, 2), [[1, 2], [5, 6], [9, 10], [12, 13]])
    np.testing.assert_array_equal(reduce_rate(frames, 1), frames)
    np.testing.assert_allclose(reduce_rate(frames, 10), [[6, 7]])
    assert reduce_rate(np.zeros((0, 2), np.float32), 3).shape == (0, 2)


def test_extract_visual_rate_reduction_and_valid_mask(tmp_path):
    face = random_face(7)
    success = [1, 0, 1, 0, 0, 0, 1]
    path = write_openface(tmp_path / "clip.csv", face, success)
    cfg = {"extractor": "openface", "groups": ["pose"], "fps": 30.0, "rate_reduction": 1}
    frames, valid = extract_visual(path, cfg)
    assert frames.shape == (7, 6) and valid.tolist() == [bool(s) for s in success]
    reduced, ok = extract_visual(path, dict(cfg, rate_reduction=3))
    pose = face[:, 17:23]
    assert ok.tolist() == [True, False, True]
    np.testing.assert_allclose(reduced[0], (pose[0] + pose[2]) / 2, atol=1e-5)  # mean of the valid frames only
    assert (reduced[1] == 0).all()
    np.testing.assert_allclose(reduced[2], pose[6], atol=1e-5)  # ragged tail
    assert features.visual_dim(cfg) == 6
    assert features.visual_dim({"extractor": "openface", "groups": ["au_r", "au_c"]}) == 35


# ================================================================================================ folds

FOLDS = {"n_folds": 4, "n_val_speakers": 2, "seed": 0}


def fold_meta(n_speakers: int = 12, genders: bool = True) -> pd.DataFrame:
    rows = [
        {"speaker": f"{1001 + s}", "label": label, "gender": "Female" if s % 2 else "Male"}
        for s in range(n_speakers)
        for label in crema_d.CLASSES
        for _ in range(2)
    ]
    meta = pd.DataFrame(rows)
    return meta if genders else meta.drop(columns="gender")


def test_folds_are_speaker_disjoint_and_test_each_speaker_once():
    meta = fold_meta()
    splits = make_splits(meta, FOLDS)
    assert list(splits.columns) == ["fold", "speaker", "role"]
    assert sorted(splits["fold"].unique()) == [0, 1, 2, 3]
    everyone = set(meta["speaker"])
    for fold, part in splits.groupby("fold"):
        roles = {role: set(part.loc[part.role == role, "speaker"]) for role in ("train", "val", "test")}
        assert roles["train"] | roles["val"] | roles["test"] == everyone
        assert len(part) == len(everyone)  # each speaker has exactly one role
        assert not roles["train"] & roles["val"] and not roles["train"] & roles["test"]
        assert not roles["val"] & roles["test"]
        assert len(roles["val"]) == FOLDS["n_val_speakers"] and len(roles["test"]) == 3
    assert splits.loc[splits.role == "test", "speaker"].value_counts().to_dict() == {s: 1 for s in everyone}


def test_folds_deterministic_under_seed():
    meta = fold_meta()
    first = make_splits(meta, FOLDS)
    pd.testing.assert_frame_equal(first, make_splits(meta.copy(), FOLDS))
    others = [make_splits(meta, dict(FOLDS, seed=seed)) for seed in (1, 2, 3)]
    assert any(not other.equals(first) for other in others)  # the seed matters


def test_both_genders_in_every_test_fold():
    meta = fold_meta(16)
    gender = dict(zip(meta["speaker"], meta["gender"]))
    for seed in (0, 1, 2):
        splits = make_splits(meta, dict(FOLDS, seed=seed))
        for _, part in splits[splits.role == "test"].groupby("fold"):
            assert {gender[s] for s in part["speaker"]} == {"Female", "Male"}
    assert len(make_splits(fold_meta(genders=False), FOLDS)) == 4 * 12  # no gender column needed


def test_missing_class_names_fold_role_and_class():
    meta = fold_meta(3)
    splits = pd.DataFrame({"fold": [0, 0, 0], "speaker": ["1001", "1002", "1003"], "role": ["train", "val", "test"]})
    assert check_classes(meta, splits) == {}
    # a test or validation speaker without a class is recorded, not refused (EmoDB's speaker 08 has no disgust)
    lacking = meta[
        ~((meta.speaker == "1003") & (meta.label == "fear"))
        & ~((meta.speaker == "1002") & meta.label.isin(["sad", "anger"]))
    ]
    assert check_classes(lacking, splits) == {0: {"val": ["anger", "sad"], "test": ["fear"]}}
    # a training partition without a class is refused, naming fold, role and class
    meta = meta[~((meta.speaker == "1001") & (meta.label == "fear"))]
    with pytest.raises(FoldError) as info:
        check_classes(meta, splits)
    assert str(info.value).startswith("fold 0: class 'fear' missing from the train speakers ['1001']")
    # through make_splits: one speaker alone holds 'sad' -> the fold that tests that speaker cannot train on it
    meta = fold_meta(8)
    meta = meta[(meta.label != "sad") | (meta.speaker == "1001")]
    with pytest.raises(FoldError, match=r"fold \d+: class 'sad' missing from the train speakers"):
        make_splits(meta, {"n_folds": 4, "n_val_speakers": 1, "seed": 0})


def test_missing_class_in_clip_level_splits_names_fold_role_and_class():
    meta = fold_meta(2)  # speakers 1001, 1002; two clips of each class each
    clips = meta.assign(clip_id=[f"c{i}" for i in range(len(meta))])
    train = clips[clips.speaker == "1001"]["clip_id"].tolist()
    test = clips[(clips.speaker == "1002") & (clips.label != "fear")]["clip_id"].tolist()
    splits = pd.DataFrame({"fold": 0, "clip_id": train + test, "role": ["train"] * len(train) + ["test"] * len(test)})
    assert check_classes(clips, splits) == {0: {"test": ["fear"]}}
    swapped = splits.assign(role=splits.role.map({"train": "test", "test": "train"}))
    with pytest.raises(FoldError) as info:
        check_classes(clips, swapped)
    assert str(info.value).startswith(
        "fold 0: class 'fear' missing from the train clips (10 clips of speakers ['1002'])"
    )


def test_too_few_speakers():
    with pytest.raises(FoldError, match=r"folds\.n_folds: 4 folds need at least 4 speakers; the corpus has 3"):
        make_splits(fold_meta(3), FOLDS)
    with pytest.raises(FoldError, match=r"folds\.n_val_speakers: 6 leaves no training speaker"):
        make_splits(fold_meta(8), {"n_folds": 4, "n_val_speakers": 6, "seed": 0})


def test_too_few_training_speakers_in_a_large_test_fold():
    with pytest.raises(FoldError, match="folds.n_val_speakers"):
        make_splits(fold_meta(5, genders=False), {"n_folds": 2, "n_val_speakers": 2, "seed": 0})


# ================================================================================================ batches


def valid_frames(seq, rows):
    return np.concatenate([seq.clip(i)[0][seq.clip(i)[1]] for i in rows])


def test_normaliser_uses_training_clips_valid_frames_only(tiny_store):
    index = tiny_store.fold_indices(0)
    norm = Normaliser.fit(tiny_store, index["train"])
    for m, seq in tiny_store.sequences.items():
        frames = valid_frames(seq, index["train"])
        np.testing.assert_allclose(norm.mean[m], frames.mean(0), rtol=1e-5)
        np.testing.assert_allclose(norm.std[m], frames.std(0), rtol=1e-5)
    assert (
        not tiny_store.sequences["visual"]
        .valid[np.concatenate([np.arange(*tiny_store.sequences["visual"].offsets[i : i + 2]) for i in index["train"]])]
        .all()
    )
    # changing the test clips (or the invalid training frames) leaves the statistics unchanged
    for m, seq in tiny_store.sequences.items():
        for i in index["test"]:
            a, b = seq.offsets[i], seq.offsets[i + 1]
            seq.data[a:b] += 100.0
        seq.data[~seq.valid] = 1e6
    again = Normaliser.fit(tiny_store, index["train"])
    for m in tiny_store.sequences:
        np.testing.assert_array_equal(again.mean[m], norm.mean[m])
        np.testing.assert_array_equal(again.std[m], norm.std[m])


def test_split_is_normalised_with_zero_invalid_and_padding(tiny_store):
    index = tiny_store.fold_indices(0)
    norm = Normaliser.fit(tiny_store, index["train"])
    rows = index["test"]
    split = make_split(tiny_store, rows, norm)
    assert len(split) == len(rows) and split.modalities == ("audio", "visual")
    for k, m in enumerate(split.modalities):
        seq = tiny_store.sequences[m]
        assert split.x[m].shape == (len(rows), int(seq.lengths[rows].max()), seq.dim)
        assert split.lengths[m].tolist() == seq.lengths[rows].tolist()
        for j, i in enumerate(rows):
            frames, valid = seq.clip(i)
            x = split.x[m][j].numpy()
            n = len(frames)
            np.testing.assert_allclose(x[:n][valid], (frames[valid] - norm.mean[m]) / norm.std[m], rtol=1e-5, atol=1e-5)
            assert (x[:n][~valid] == 0).all() and (x[n:] == 0).all()
        assert split.has[:, k].tolist() == tiny_store.meta[f"has_{m}"].to_numpy()[rows].tolist()
    classes = tiny_store.classes
    assert [classes[k] for k in split.y.tolist()] == tiny_store.meta["label"].to_numpy()[rows].tolist()
    fold = load_fold(tiny_store, 0)
    assert {role: len(s) for role, s in fold.items()} == {role: len(r) for role, r in index.items()}
    torch.testing.assert_close(fold["test"].x["audio"], split.x["audio"])
    # training clips are centred by their own statistics
    train = fold["train"]
    seq = tiny_store.sequences["audio"]
    mask = torch.arange(train.x["audio"].shape[1])[None, :] < train.lengths["audio"][:, None]
    assert train.x["audio"][mask].mean(0).abs().max() < 1e-4
    assert tiny_store.meta.loc[train.rows, "clip_id"].tolist() == list(seq.clip_ids[index["train"]])


def _longest(split, idx):
    return torch.stack([split.lengths[m][idx] for m in split.modalities]).amax(0)


def test_batches_are_trimmed_and_cover_the_split(tiny_store):
    split = load_fold(tiny_store, 0)["train"]
    position = {row: k for k, row in enumerate(split.rows)}
    for generator in (None, torch.Generator().manual_seed(0)):
        batches = list(split.batches(7, generator))
        rows = torch.cat([b.rows for b in batches]).tolist()
        assert sorted(rows) == sorted(split.rows.tolist())  # every clip exactly once
        assert sorted(len(b.y) for b in batches)[1:] == [7] * (len(batches) - 1)
        for batch in batches:
            idx = torch.tensor([position[r] for r in batch.rows.tolist()])
            for m in split.modalities:
                assert batch.x[m].shape[1] == max(int(batch.lengths[m].max()), 1)  # cut to its longest clip
                torch.testing.assert_close(batch.x[m], split.x[m][idx, : batch.x[m].shape[1]])
            assert torch.equal(batch.present, split.has[idx]) and torch.equal(batch.y, split.y[idx])
    evaluation = list(split.batches(7))  # no generator: in order of length
    longest = torch.cat([_longest(split, torch.tensor([position[r] for r in b.rows.tolist()])) for b in evaluation])
    assert torch.equal(longest, longest.sort().values)
    for batch in split.batches(1):  # one clip per batch: cut to that clip's own length
        for m in split.modalities:
            assert batch.x[m].shape[1] == max(int(batch.lengths[m][0]), 1)


def test_training_batches_are_bucketed_by_length(tiny_store):
    split = load_fold(tiny_store, 0)["train"]
    position = {row: k for k, row in enumerate(split.rows)}
    batches = list(split.batches(4, torch.Generator().manual_seed(1)))
    padded = sum(
        int(_longest(split, torch.tensor([position[r] for r in b.rows.tolist()])).max()) * len(b.y) for b in batches
    )
    generator = torch.Generator().manual_seed(1)
    shuffled = torch.randperm(len(split), generator=generator).split(4)  # plain shuffled batches for comparison
    plain = sum(int(_longest(split, idx).max()) * len(idx) for idx in shuffled)
    assert padded < plain
    assert [b.rows.tolist() for b in batches] != [
        b.rows.tolist() for b in split.batches(4, torch.Generator().manual_seed(2))
    ]


def test_evaluation_batches_are_cut_once_per_batch_size_training_batches_every_epoch(tiny_store):
    split = load_fold(tiny_store, 0)["test"]
    first, again = list(split.batches(8)), list(split.batches(8))
    assert len(first) > 1 and all(a is b for a, b in zip(first, again))  # the same Batch objects: cut once
    assert [len(b.y) for b in split.batches(5)] != [len(b.y) for b in first]  # per batch size
    train = load_fold(tiny_store, 0)["train"]
    epochs = [list(train.batches(8, torch.Generator().manual_seed(0))) for _ in range(2)]
    assert all(a is not b for a, b in zip(*epochs))
    assert all(torch.equal(a.rows, b.rows) for a, b in zip(*epochs))  # same seed, same batches, cut anew


def test_shuffled_batches_are_deterministic_under_a_seeded_generator(tiny_store):
    split = load_fold(tiny_store, 0)["train"]

    def order(seed):
        return torch.cat([b.rows for b in split.batches(8, torch.Generator().manual_seed(seed))]).tolist()

    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(split.rows.tolist())
    assert order(3) != list(split.rows) and order(3) != order(4)
    for batch in split.batches(8, torch.Generator().manual_seed(3)):
        index = [list(split.rows).index(r) for r in batch.rows.tolist()]
        assert torch.equal(batch.y, split.y[index])
        assert torch.equal(batch.lengths["visual"], split.lengths["visual"][index])


# ================================================================================================ CREMA-D


def test_parse_name():
    assert crema_d.parse_name("1001_DFA_ANG_XX") == {
        "actor": "1001",
        "sentence": "DFA",
        "emotion": "ANG",
        "level": "XX",
    }
    assert crema_d.parse_name("1091_WSI_SAD_HI")["emotion"] == "SAD"


@pytest.mark.parametrize(
    "stem",
    [
        "1001_DFA_ANG",
        "101_DFA_ANG_XX",
        "1001_DFA_ANG_XX_1",
        "1001_DFA_XXX_XX",
        "1001_ABC_ANG_XX",
        "1001_DFA_ANG_ZZ",
        "1001_dfa_ang_xx",
        "1001-DFA-ANG-XX",
        "",
        "1001_DFA_ANG_XX.wav",
    ],
)
def test_parse_name_rejects_malformed(stem):
    with pytest.raises(ValueError, match="not a CREMA-D clip name"):
        crema_d.parse_name(stem)


def crema_folder(root, stems=("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO"), faces=2):
    (root / "AudioWAV").mkdir(parents=True)
    (root / "OpenFace").mkdir()
    for stem in stems:
        sf.write(root / "AudioWAV" / f"{stem}.wav", sine(0.1, 16000), 16000)
    for stem in stems[:faces]:
        write_openface(root / "OpenFace" / f"{stem}.csv", random_face(3), [1, 1, 1])
    (root / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Caucasian","Not Hispanic"\n'
    )
    return root


def test_list_clips(tmp_path):
    root = crema_folder(tmp_path / "crema")
    clips = crema_d.list_clips(root)
    assert clips["clip_id"].tolist() == ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO"]
    assert clips["speaker"].tolist() == ["1001", "1001", "1002"]
    assert clips["label"].tolist() == ["anger", "happy", "sad"]
    assert clips["sentence"].tolist() == ["DFA", "IEO", "TIE"] and clips["level"].tolist() == ["XX", "HI", "LO"]
    assert clips["gender"].tolist() == ["Male", "Male", "Female"] and clips["age"].tolist() == [51, 51, 21]
    assert clips["audio_path"].tolist() == [str(root / "AudioWAV" / f"{c}.wav") for c in clips["clip_id"]]
    assert clips["visual_path"].tolist()[:2] == [str(root / "OpenFace" / f"{c}.csv") for c in clips["clip_id"][:2]]
    assert not isinstance(clips["visual_path"].iloc[2], str) and pd.isna(clips["visual_path"].iloc[2])
    assert CORPORA["builtin"].list_clips is crema_d.list_clips
    assert CORPORA["builtin"].classes == ("anger", "disgust", "fear", "happy", "neutral", "sad")


def test_a_corpus_is_either_media_or_a_feature_package():
    assert CORPORA["builtin"].kind == "media" and CORPORA["iemocap_mmin"].kind == "package"
    with pytest.raises(ValueError, match="exactly one of list_clips"):
        Corpus("neither", ("audio",), ("a", "b"), "no reader")


def test_list_clips_errors(tmp_path):
    with pytest.raises(crema_d.CorpusError) as info:
        crema_d.list_clips(tmp_path / "absent")
    assert str(tmp_path / "absent" / "AudioWAV") in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(crema_d.CorpusError, match="no .wav files"):
        crema_d.list_clips(tmp_path / "empty")
    root = crema_folder(tmp_path / "bad", stems=("1001_DFA_ANG_XX", "1001_DFA_ANGRY_XX"))
    with pytest.raises(crema_d.CorpusError, match="1001_DFA_ANGRY_XX.wav"):
        crema_d.list_clips(root)
