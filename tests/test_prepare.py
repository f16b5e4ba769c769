"""The prepare step on bad input: each case gives a clear error naming the file or key, or (with
`data.on_error: skip`) a written list of skipped items; no case leaves a store that looks complete."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mer_core.config import ConfigError, load_params
from mer_core.data.corpora.crema_d import CorpusError
from mer_core.data.folds import FoldError
from mer_core.data.media import AudioError
from mer_core.data.openface import OpenFaceError
from mer_core.data.prepare import prepare, store_path
from mer_core.data.store import StoreError, read_store
from mer_core.data.synthetic import generate_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_params() -> dict:
    params = load_params(ROOT / "params.yaml")
    params["data"]["synthetic"].update(n_actors=4, sentences=["DFA", "ITS"])
    params["features"]["corruptions"].update(
        audio_noises=["babble"], audio_snr_db=[10.0], babble_talkers=2, visual_dropout=[0.5]
    )  # one of each kind keeps the tests short
    params["folds"].update(n_folds=2, n_val_speakers=1)
    return params


@pytest.fixture(scope="module")
def pristine_corpus(tmp_path_factory, base_params) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "builtin"
    generate_corpus(root, base_params["data"]["synthetic"])
    return root


@pytest.fixture
def setup(tmp_path, base_params, pristine_corpus):
    """A fresh copy of the tiny corpus and params pointing at it and at a store under tmp_path."""
    import shutil

    root = tmp_path / "raw"
    shutil.copytree(pristine_corpus, root)
    params = copy.deepcopy(base_params)
    params["data"].update(root=str(root), features_dir=str(tmp_path / "features"), cache_dir=str(tmp_path / "cache"))
    return root, params


def first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def test_clean_corpus_prepares(setup):
    root, params = setup
    store = prepare(params)
    assert len(store.meta) == 4 * 12
    assert store.manifest["counts"]["skipped"] == 0
    assert not (store.root / "skipped.csv").exists()


def test_missing_corpus_folder_names_the_folder(setup, tmp_path):
    _, params = setup
    params["data"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="nowhere"):
        prepare(params)
    assert not store_path(params).exists()


def test_corrupt_wav_raises_naming_the_file(setup):
    root, params = setup
    wav = first(root / "AudioWAV", "*.wav")
    wav.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match=wav.name):
        prepare(params)
    assert not store_path(params).exists()


def test_corrupt_wav_with_skip_is_listed(setup):
    root, params = setup
    wav = first(root / "AudioWAV", "*.wav")
    wav.write_bytes(b"garbage")
    params["data"]["on_error"] = "skip"
    store = prepare(params)
    skipped = pd.read_csv(store.root / "skipped.csv")
    assert skipped[["clip_id", "modality", "action"]].values.tolist() == [[wav.stem, "audio", "modality dropped"]]
    assert skipped["reason"][0].startswith("not a readable audio file")
    kept = store.meta.set_index("clip_id").loc[wav.stem]  # the clip keeps its face
    assert not kept["has_audio"] and kept["has_visual"]
    assert store.manifest["counts"]["skipped"] == 0 and store.manifest["counts"]["modalities_dropped"] == {
        "audio": 1,
        "visual": 0,
    }
    read_store(store.root)  # skipped.csv is part of the verified manifest


@pytest.mark.parametrize(
    "content, message",
    [
        ("this is not, a csv\n\x00\x01", "missing OpenFace columns"),
        ("frame, face_id, timestamp, confidence, success\n", "missing OpenFace columns|no frames"),
    ],
)
def test_corrupt_or_empty_openface_csv_names_the_file(setup, content, message):
    root, params = setup
    csv = first(root / "OpenFace", "*.csv")
    csv.write_text(content)
    with pytest.raises(OpenFaceError, match=csv.name):
        prepare(params)


def test_clip_with_no_frames_names_the_file(setup):
    root, params = setup
    csv = first(root / "OpenFace", "*.csv")
    header = csv.read_text().splitlines()[0]
    csv.write_text(header + "\n")
    with pytest.raises(OpenFaceError, match=f"{csv.name}.*no frames"):
        prepare(params)


def test_nan_features_name_the_file(setup):
    root, params = setup
    csv = first(root / "OpenFace", "*.csv")
    table = pd.read_csv(csv, skipinitialspace=True)
    ok = table.index[table["success"] == 1][0]
    table.loc[ok, "AU12_r"] = np.nan
    table.to_csv(csv, index=False)
    with pytest.raises(OpenFaceError, match=f"{csv.name}.*NaN"):
        prepare(params)


def test_fold_with_a_missing_class_names_fold_and_class(setup):
    root, params = setup
    for wav in (root / "AudioWAV").glob("*_SAD_*.wav"):
        if not wav.name.startswith("1001"):
            wav.unlink()
            (root / "OpenFace" / f"{wav.stem}.csv").unlink()  # a face alone would keep the clip
    with pytest.raises(FoldError, match=r"fold \d: class 'sad' missing"):
        prepare(params)
    assert not store_path(params).exists()


def test_corrupt_store_file_is_detected(setup):
    _, params = setup
    store = prepare(params)
    with open(store.root / "audio.npz", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(StoreError, match="audio.npz"):
        read_store(store.root)


def test_bad_params_name_the_key(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["audio"]["extractor"] = "mfcc"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError,
        match=r"features\.audio\.extractor: got 'mfcc'; Input should be 'logmel', "
        r"'compare' or 'wav2vec2'",
    ):
        load_params(path)
