"""The IEMOCAP adapter for the MMIN feature package (docs/methods.md §1.1): a tiny package in the real layout
(3 sessions x 2 speakers x 4 utterances, one per class; 3 fold folders, leave-one-session-out), read back
exactly, each bad input named, and `prepare` + `load_fold` on the store it gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mer_core.config import load_params
from mer_core.data.batches import load_fold
from mer_core.data.corpora.base import CorpusError
from mer_core.data.corpora.iemocap_mmin import CLASSES, parse_name, read_package
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.prepare import prepare, store_path
from mer_core.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {"A/comparE.h5": 130, "V/denseface.h5": 342, "L/bert_large.h5": 1024}
UNLISTED = "Ses01F_impro09_F009"  # in the feature files, in no fold: stays out of the store


def utterances(n_classes: int = len(CLASSES)) -> list[tuple[str, int]]:
    """(name, class index): per session, each speaker says one utterance of each class; the dialogue's
    gender letter differs from the speaker's in half of them."""
    out = []
    for session in (1, 2, 3):
        for speaker in "FM":
            for k in range(n_classes):
                dialogue = "FM"[k % 2]
                out.append((f"Ses0{session}{dialogue}_impro0{k + 1}_{speaker}00{k}", k))
    return out


def fold_lists(n_classes: int = len(CLASSES)) -> dict[int, dict[str, list[tuple[str, int]]]]:
    """Folder k (1..3): test = session k, val = the next session, train = the third."""
    by_session = {s: [u for u in utterances(n_classes) if u[0].startswith(f"Ses0{s}")] for s in (1, 2, 3)}
    return {
        k: {"tst": by_session[k], "val": by_session[k % 3 + 1], "trn": by_session[(k + 1) % 3 + 1]} for k in (1, 2, 3)
    }


def write_package(
    root: Path, widths: dict[str, int] = WIDTHS, n_classes: int = len(CLASSES)
) -> dict[str, dict[str, np.ndarray]]:
    """Write the tiny package at `root` (feature `widths` per file, `n_classes` one-hot columns); return the arrays
    written, per file and utterance."""
    rng = np.random.default_rng(0)
    arrays = {}
    for file, width in widths.items():
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        arrays[file] = {}
        with h5py.File(root / file, "w") as handle:
            for i, name in enumerate([u for u, _ in utterances(n_classes)] + [UNLISTED]):
                x = rng.normal(size=(3 + i % 5, width)).astype(np.float32)
                if file == "V/denseface.h5" and i % 3 == 0:
                    x[1] = 0.0  # no face in that frame
                handle.create_dataset(name, data=x)
                arrays[file][name] = x
    for k, lists in fold_lists(n_classes).items():
        folder = root / "target" / str(k)
        folder.mkdir(parents=True)
        for prefix, items in lists.items():
            names = [n for n, _ in items]
            # the official files hold (N, 1) bytes; folder 2 uses (N,) str to check both are read
            int2name = np.array(names) if k == 2 else np.array(names, dtype="S")[:, None]
            np.save(folder / f"{prefix}_int2name.npy", int2name)
            np.save(folder / f"{prefix}_label.npy", np.eye(n_classes, dtype=np.float32)[[c for _, c in items]])
    return arrays


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("package") / "IEMOCAP_features_2021"
    return root, write_package(root)


@pytest.fixture
def package(tmp_path, pristine):
    """A fresh copy of the tiny package (tests may break it) and the arrays it holds."""
    root = tmp_path / "package"
    shutil.copytree(pristine[0], root)
    return root, pristine[1]


def test_parse_name_takes_speaker_and_gender_from_the_last_field():
    assert parse_name("Ses03M_impro03_M001") == {"session": 3, "speaker": "Ses03_M", "gender": "Male"}
    assert parse_name("Ses05M_script01_1b_F012") == {"session": 5, "speaker": "Ses05_F", "gender": "Female"}
    with pytest.raises(ValueError, match="Ses03M_M001"):
        parse_name("Ses03M_M001")


def test_meta_labels_and_speakers(package):
    root, _ = package
    meta = read_package(root).meta
    expected = sorted(utterances())
    assert meta["clip_id"].tolist() == [n for n, _ in expected]
    assert meta["label"].tolist() == [CLASSES[k] for _, k in expected]
    assert meta.loc[meta.clip_id == "Ses01M_impro02_F001", ["speaker", "gender", "session"]].values.tolist() == [
        ["Ses01_F", "Female", 1]
    ]
    assert sorted(meta["speaker"].unique()) == [f"Ses0{s}_{g}" for s in (1, 2, 3) for g in "FM"]
    assert meta[["has_audio", "has_visual", "has_text"]].all().all()
    assert UNLISTED not in set(meta["clip_id"])


def test_sequences_equal_the_h5_arrays_and_faceless_frames_are_invalid(package):
    root, arrays = package
    pkg = read_package(root)
    for modality, file in zip(("audio", "visual", "text"), WIDTHS):
        seq = pkg.sequences[modality]
        assert seq.clip_ids.tolist() == pkg.meta["clip_id"].tolist() and seq.dim == WIDTHS[file]
        for i, name in enumerate(seq.clip_ids):
            frames, valid = seq.clip(i)
            np.testing.assert_array_equal(frames, arrays[file][name])
            expected = arrays[file][name].any(1) if modality == "visual" else np.ones(len(frames), bool)
            assert valid.tolist() == expected.tolist()
    assert not pkg.sequences["visual"].valid.all()
    assert pkg.frame_rates == {"audio": 10.0, "visual": None, "text": None}


def test_folds_are_the_package_lists(package):
    root, _ = package
    splits = read_package(root).splits
    assert list(splits.columns) == ["fold", "clip_id", "role"]
    roles = {"trn": "train", "val": "val", "tst": "test"}
    for k, lists in fold_lists().items():
        part = splits[splits.fold == k - 1]
        for prefix, items in lists.items():
            assert part.loc[part.role == roles[prefix], "clip_id"].tolist() == [n for n, _ in items]


def break_h5(file: str, name: str, data: np.ndarray | None = None):
    def edit(root: Path):
        with h5py.File(root / file, "a") as handle:
            del handle[name]
            if data is not None:
                handle.create_dataset(name, data=data)

    return edit


def save(path: str, array):
    return lambda root: np.save(root / path, array)


def add_listed(name: str):
    """Append `name`, labelled happy, to target/1/trn (both files, so their lengths still agree)."""

    def edit(root: Path):
        folder = root / "target" / "1"
        names = np.load(folder / "trn_int2name.npy")
        np.save(folder / "trn_int2name.npy", np.concatenate([names, np.array([[name]], dtype="S")]))
        labels = np.load(folder / "trn_label.npy")
        np.save(folder / "trn_label.npy", np.concatenate([labels, np.eye(4, dtype=np.float32)[[0]]]))

    return edit


def relabel_first(path: str, label: int):
    """Give the first row of a label file (FIRST in target/2/trn, whose true class is 0) another class."""

    def edit(root: Path):
        labels = np.load(root / path)
        labels[0] = np.eye(4)[label]
        np.save(root / path, labels)

    return edit


FIRST, SECOND = (name for name, _ in sorted(utterances())[:2])
BAD_INPUTS = {
    "missing feature file": (lambda r: (r / "A" / "comparE.h5").unlink(), "A/comparE.h5", "missing"),
    "missing fold folder": (lambda r: shutil.rmtree(r / "target" / "2"), "target/2", "fold folder missing"),
    "no target folder": (lambda r: shutil.rmtree(r / "target"), "target", "folder not found"),
    "missing list file": (
        lambda r: (r / "target" / "3" / "tst_label.npy").unlink(),
        "target/3/tst_label.npy",
        "missing",
    ),
    "missing utterance key": (break_h5("V/denseface.h5", FIRST), "V/denseface.h5", f"no array for utterance '{FIRST}'"),
    "width differs between utterances": (
        break_h5("L/bert_large.h5", FIRST, np.zeros((4, 768))),
        "L/bert_large.h5",
        f"'{SECOND}' has shape .*width 1024, but '{FIRST}' has width 768",
    ),
    "not frames x width": (
        break_h5("A/comparE.h5", FIRST, np.zeros(5)),
        "A/comparE.h5",
        rf"'{FIRST}' has shape \(5,\); expected \(frames, width\)",
    ),
    "class count differs between label files": (
        save("target/3/val_label.npy", np.eye(5, dtype=np.float32)[[0] * 8]),
        "target/3/val_label.npy",
        "5 classes .* but .*target/1/trn_label.npy has 4",
    ),
    "length mismatch": (
        save("target/1/val_int2name.npy", np.array([b"Ses02F_impro01_F000"])),
        "target/1/val_int2name.npy",
        "1 names but val_label.npy has 8 rows",
    ),
    "label not one-hot": (
        save("target/2/trn_label.npy", np.full((8, 4), 0.25)),
        "target/2/trn_label.npy",
        r"row 0 is \[0.25, 0.25, 0.25, 0.25\], not one-hot",
    ),
    "listed but absent from the features": (
        add_listed("Ses01F_impro07_M007"),
        "A/comparE.h5",
        "no array for utterance 'Ses01F_impro07_M007'.*target/1/trn_int2name",
    ),
    "label differs between folds": (
        relabel_first("target/2/trn_label.npy", 3),
        "target/2/trn_int2name.npy",
        "labelled 'neutral' here .*but 'happy' in .*target/1/tst_int2name.npy",
    ),
    "listed twice in a fold": (
        add_listed(FIRST),
        "target/1/tst_int2name.npy",
        f"'{FIRST}' is listed twice .*also in trn_int2name.npy",
    ),
    "malformed name": (add_listed("utterance_7"), "target/1/trn_int2name.npy", "not an IEMOCAP utterance name"),
    "NaN features": (break_h5("A/comparE.h5", FIRST, np.full((3, 130), np.nan)), "A/comparE.h5", "NaN or inf"),
    "not HDF5": (
        lambda r: (r / "L" / "bert_large.h5").write_bytes(b"not hdf5"),
        "L/bert_large.h5",
        "not a readable HDF5 file",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_file(package, case):
    root, _ = package
    edit, file, message = BAD_INPUTS[case]
    edit(root)
    with pytest.raises(CorpusError, match=message) as info:
        read_package(root)
    assert str(root / file) in str(info.value)


def test_any_number_of_classes_and_feature_widths_are_read_from_the_package(tmp_path):
    widths = {"A/comparE.h5": 88, "V/denseface.h5": 31, "L/bert_large.h5": 768}
    root = tmp_path / "six"
    arrays = write_package(root, widths, n_classes=6)
    pkg = read_package(root)
    assert {m: s.dim for m, s in pkg.sequences.items()} == {"audio": 88, "visual": 31, "text": 768}
    assert [pkg.features[m]["width"] for m in ("audio", "visual", "text")] == [88, 31, 768]
    assert pkg.classes == tuple(f"class_{k}" for k in range(6))
    expected = dict(utterances(6))
    assert pkg.meta["label"].tolist() == [f"class_{expected[n]}" for n in pkg.meta["clip_id"]]
    frames, _ = pkg.sequences["visual"].clip(0)
    np.testing.assert_array_equal(frames, arrays["V/denseface.h5"][pkg.meta["clip_id"][0]])
    names = ["hap", "ang", "sad", "neu", "exc", "fru"]
    assert read_package(root, classes=names).meta["label"].tolist() == [names[expected[n]] for n in pkg.meta["clip_id"]]
    with pytest.raises(CorpusError, match=r"target/1/trn_label.npy: 6 classes .* data.iemocap_mmin.classes names 4"):
        read_package(root, classes=["a", "b", "c", "d"])


def test_prepare_takes_class_names_and_widths_from_the_package(tmp_path):
    root = tmp_path / "five"
    write_package(root, {"A/comparE.h5": 7, "V/denseface.h5": 31, "L/bert_large.h5": 9}, n_classes=5)
    params = load_params(
        ROOT / "params.yaml",
        {
            "data.corpus": "iemocap_mmin",
            "data.root": str(root),
            "data.features_dir": str(tmp_path / "features"),
            "data.iemocap_mmin.classes": ["a", "b", "c", "d", "e"],
        },
    )
    store = prepare(params)
    assert store.classes == ["a", "b", "c", "d", "e"]
    assert store.manifest["dims"] == {"audio": 7, "visual": 31, "text": 9}
    fold = load_fold(store, 0)
    assert fold["train"].x["visual"].shape[2] == 31 and set(fold["test"].y.tolist()) == set(range(5))


def test_a_fold_and_seed_subset_needs_no_companion_setting(package, tmp_path):
    root, _ = package
    overrides = {
        "data.corpus": "iemocap_mmin",
        "data.root": str(root),
        "train.folds": [1],
        "train.seeds": [3, 4],
        "data.features_dir": str(tmp_path / "features"),
    }
    params = load_params(ROOT / "params.yaml", overrides)
    for block in (params["explore"], params["analysis"]["embedding"]):
        assert (block["fold"], block["seed"]) == (1, 3)
    assert prepare(params).folds == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"explore.fold: fold 0 is not trained \(train.folds: \[1\]\)"):
        load_params(ROOT / "params.yaml", {**overrides, "explore.fold": 0})
    with pytest.raises(ConfigError, match=r"analysis.embedding.seed: 0 is not one of train.seeds \[3, 4\]"):
        load_params(ROOT / "params.yaml", {**overrides, "analysis.embedding.seed": 0})
    everything = load_params(ROOT / "params.yaml", {k: v for k, v in overrides.items() if k != "train.folds"})
    assert everything["explore"]["fold"] == 0 and everything["analysis"]["embedding"]["fold"] == 0


def test_missing_root_is_named(tmp_path):
    with pytest.raises(CorpusError, match=f"{tmp_path / 'nowhere'}: folder not found"):
        read_package(tmp_path / "nowhere")


def test_prepare_builds_the_store_and_fold_0_is_normalised_on_its_training_clips(package, tmp_path):
    root, _ = package
    params = load_params(
        ROOT / "params.yaml",
        {"data.corpus": "iemocap_mmin", "data.root": str(root), "data.features_dir": str(tmp_path / "features")},
    )
    assert CORPORA["iemocap_mmin"].kind == "package"
    store = prepare(params)
    assert store.root == store_path(params) and store.modalities == ("audio", "visual", "text")
    assert store.manifest["dims"] == {"audio": 130, "visual": 342, "text": 1024}
    assert store.manifest["frame_rates"] == {"audio": 10.0, "visual": None, "text": None}
    assert store.manifest["folds"]["folders"] == {"0": "target/1", "1": "target/2", "2": "target/3"}
    assert store.manifest["unused_params"] == ["features", "folds", "data.on_error", "features.corruptions"]
    assert store.corruptions == [] and store.manifest["corruptions"] == []
    assert store.folds == [0, 1, 2] and store.classes == list(CLASSES)
    index = store.fold_indices(0)
    assert {role: sorted(store.meta["clip_id"].iloc[rows]) for role, rows in index.items()} == {
        role: sorted(n for n, _ in fold_lists()[1][prefix])
        for role, prefix in (("train", "trn"), ("val", "val"), ("test", "tst"))
    }
    fold = load_fold(store, 0)
    for modality, x in fold["train"].x.items():
        lengths = fold["train"].lengths[modality]
        mask = np.arange(x.shape[1])[None, :] < lengths.numpy()[:, None]
        frames = x.numpy()[mask]
        if modality == "visual":  # faceless frames are zero after normalisation and left out of the stats
            frames = frames[np.abs(frames).sum(1) > 0]
        np.testing.assert_allclose(frames.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(frames.std(0), 1.0, atol=1e-3)
    assert len(fold["test"]) == 8 and fold["test"].y.tolist() == [
        CLASSES.index(c) for c in store.meta["label"].iloc[index["test"]]
    ]
    assert pd.read_csv(store.root / "splits.csv").columns.tolist() == ["fold", "clip_id", "role"]
