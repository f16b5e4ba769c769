"""Signal-level corruptions in the prepare step and the feature store: noisy audio and face-tracking dropout
variants of every clip, stored beside the clean features (`corruptions/<variant>.npz`, `manifest["corruptions"]`)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_core.config import ConfigError, load_params
from mer_core.data.media import AudioError
from mer_core.data.prepare import babble_talkers, corruption_specs, prepare
from mer_core.data.store import Sequences, StoreError, read_store, write_store
from mer_core.data.synthetic import generate_corpus
from mer_core.params.data import Features
from mer_core.schema import check

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    "audio_babble_20db",
    "audio_babble_0db",
    "audio_white_20db",
    "audio_white_0db",
    "visual_dropout_25",
    "visual_dropout_75",
]


@pytest.fixture(scope="module")
def base_params() -> dict:
    params = load_params(ROOT / "params.yaml")
    params["data"]["synthetic"].update(n_actors=4, sentences=["DFA", "ITS"])
    params["features"]["corruptions"].update(
        seed=0,
        audio_noises=["babble", "white"],
        audio_snr_db=[20.0, 0.0],
        babble_talkers=3,
        visual_dropout=[0.25, 0.75],
        dropout_burst_s=0.5,
    )
    params["folds"].update(n_folds=2, n_val_speakers=1)
    return params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, base_params) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "builtin"
    generate_corpus(root, base_params["data"]["synthetic"])
    return root


def params_for(base_params: dict, corpus: Path, features_dir: Path, **corruptions) -> dict:
    params = copy.deepcopy(base_params)
    params["data"].update(root=str(corpus), features_dir=str(features_dir), cache_dir=f"{features_dir}-cache")
    params["features"]["corruptions"].update(corruptions)
    return params


@pytest.fixture(scope="module")
def store(tmp_path_factory, base_params, corpus):
    return prepare(params_for(base_params, corpus, tmp_path_factory.mktemp("features")))


# ================================================================================================ prepare


def test_variants_are_listed_stored_and_hashed(store):
    assert [c["name"] for c in store.corruptions] == VARIANTS  # params order: noise-major, then SNR, then visual
    first, last = store.corruptions[0], store.corruptions[-1]
    assert first == {
        "name": "audio_babble_20db",
        "modality": "audio",
        "kind": "babble",
        "level": 20.0,
        "unit": "dB",
        "settings": {"seed": 0, "talkers": 3},
    }
    assert last == {
        "name": "visual_dropout_75",
        "modality": "visual",
        "kind": "tracking_dropout",
        "level": 0.75,
        "unit": "fraction",
        "settings": {"seed": 0, "burst_s": 0.5, "burst_frames": 15.0},
    }
    assert store.corruptions[2]["settings"] == {"seed": 0}
    assert sorted(p.name for p in (store.root / "corruptions").iterdir()) == sorted(f"{v}.npz" for v in VARIANTS)
    assert {f"corruptions/{v}.npz" for v in VARIANTS} <= set(store.manifest["files"])
    assert not (store.root.parent / "builtin.partial").exists()


def test_variants_have_the_clean_clips_and_frame_counts(store):
    for entry in store.corruptions:
        modality, seq = store.corruption(entry["name"])
        clean = store.sequences[modality]
        assert modality == entry["modality"] and seq.dim == clean.dim and seq.data.dtype == np.float32
        np.testing.assert_array_equal(seq.clip_ids, store.meta["clip_id"].to_numpy())
        np.testing.assert_array_equal(seq.offsets, clean.offsets)
        assert np.isfinite(seq.data).all()
        if modality == "audio":
            assert seq.valid.all()
        assert store.corruption(entry["name"])[1] is seq  # read once, then kept


def _mean_abs_diff(store, name: str) -> float:
    modality, seq = store.corruption(name)
    return float(np.abs(seq.data - store.sequences[modality].data).mean())


def test_audio_departs_more_from_clean_as_snr_falls(store):
    for noise in ("babble", "white"):
        high, low = _mean_abs_diff(store, f"audio_{noise}_20db"), _mean_abs_diff(store, f"audio_{noise}_0db")
        assert 0.0 < high < low
    # white noise fills the high bands that babble (voices) leaves quiet: the two differ
    assert not np.allclose(store.corruption("audio_babble_0db")[1].data, store.corruption("audio_white_0db")[1].data)


def test_visual_dropout_grows_with_the_fraction(store):
    clean = store.sequences["visual"]
    invalid = {name: 1 - store.corruption(name)[1].valid.mean() for name in ("visual_dropout_25", "visual_dropout_75")}
    assert 1 - clean.valid.mean() < invalid["visual_dropout_25"] < invalid["visual_dropout_75"]
    for name in invalid:
        seq = store.corruption(name)[1]
        assert not (seq.valid & ~clean.valid).any()  # a frame OpenFace lost stays lost
        assert (seq.data[~seq.valid] == 0).all()  # dropped frames are zero, as success = 0 rows
        for i in range(len(seq.clip_ids)):  # every clip keeps a tracked frame
            if clean.clip(i)[1].any():
                assert seq.clip(i)[1].any()
        same = seq.valid & clean.valid
        assert np.isclose(seq.data[same], clean.data[same], atol=1e-6).mean() > 0.5  # untouched groups unchanged


def test_prepare_is_deterministic_whatever_n_jobs(store, tmp_path, base_params, corpus):
    again = prepare(params_for(base_params, corpus, tmp_path / "one"))
    assert again.manifest["files"] == store.manifest["files"]
    parallel = params_for(base_params, corpus, tmp_path / "two")
    assert prepare(parallel, jobs=2).manifest["files"] == store.manifest["files"]


def test_seed_changes_the_corruptions_not_the_clean_features(store, tmp_path, base_params, corpus):
    other = prepare(
        params_for(base_params, corpus, tmp_path / "seed", seed=1, audio_noises=["white"], visual_dropout=[0.25])
    )
    files, before = other.manifest["files"], store.manifest["files"]
    assert all(files[name] == before[name] for name in ("audio.npz", "visual.npz", "meta.csv", "splits.csv"))
    assert files["corruptions/audio_white_0db.npz"] != before["corruptions/audio_white_0db.npz"]
    assert files["corruptions/visual_dropout_25.npz"] != before["corruptions/visual_dropout_25.npz"]
    assert [c["name"] for c in other.corruptions] == ["audio_white_20db", "audio_white_0db", "visual_dropout_25"]


def test_no_corruption_set_gives_none(tmp_path, base_params, corpus):
    store = prepare(params_for(base_params, corpus, tmp_path, audio_noises=[], visual_dropout=[]))
    assert store.corruptions == [] and not (store.root / "corruptions").exists()
    with pytest.raises(StoreError, match="available: none"):
        store.corruption("audio_white_0db")


def test_corruptions_are_extracted_only_when_the_robustness_grid_tests_on_them(tmp_path, base_params, corpus):
    params = params_for(base_params, corpus, tmp_path / "off", audio_noises=["white"], visual_dropout=[0.5])
    params["robustness"]["signal"] = False
    assert prepare(params).corruptions == []
    stage = {key: params[key] for key in ("data", "features", "folds")}  # the prepare stage's resolved params
    stage["data"]["features_dir"] = str(tmp_path / "on")
    on = prepare({**stage, "corruptions": True})
    assert [c["name"] for c in on.corruptions] == ["audio_white_20db", "audio_white_0db", "visual_dropout_50"]
    stage["data"]["features_dir"] = str(tmp_path / "flag_off")
    assert prepare({**stage, "corruptions": False}).corruptions == []


def test_a_skipped_modality_has_no_variants(tmp_path, base_params, corpus):
    root = tmp_path / "raw"
    shutil.copytree(corpus, root)
    wav = sorted((root / "AudioWAV").glob("*.wav"))[5]
    wav.write_bytes(b"not a wav")
    params = params_for(base_params, root, tmp_path / "features", audio_snr_db=[10.0], visual_dropout=[0.5])
    params["data"]["on_error"] = "skip"
    store = prepare(params)
    row = list(store.meta["clip_id"]).index(wav.stem)  # the clip stays, with its face only
    assert not store.meta["has_audio"][row] and store.meta["has_visual"][row]
    for entry in store.corruptions:
        modality, variant = store.corruption(entry["name"])
        assert variant.lengths[row] == store.sequences[modality].lengths[row]
        assert (variant.lengths[row] > 0) == (modality == "visual")


def test_a_silent_clip_stops_the_run_naming_the_file(tmp_path, base_params, corpus):
    root = tmp_path / "raw"
    shutil.copytree(corpus, root)
    wav = sorted((root / "AudioWAV").glob("*.wav"))[3]
    sf.write(wav, np.zeros(16000, np.float32), 16000)  # readable, but no SNR can be set: rejected on reading
    params = params_for(base_params, root, tmp_path / "features", audio_noises=["white"], visual_dropout=[])
    with pytest.raises(AudioError, match=f"{wav.name}: silent"):
        prepare(params)
    assert not (tmp_path / "features" / "builtin").exists()


# ================================================================================================ settings


def test_corruption_params_are_validated(base_params):
    features = copy.deepcopy(base_params["features"])
    check(Features, features, "features")
    for key, value, message in [
        (
            "audio_noises",
            ["pink"],
            r"features\.corruptions\.audio_noises\[0\]: got 'pink'; Input should be 'babble' "
            r"or 'white'",
        ),
        ("visual_dropout", [1.5], r"features\.corruptions\.visual_dropout\[0\]: got 1\.5"),
        ("babble_talkers", 0, r"features\.corruptions\.babble_talkers: got 0"),
    ]:
        bad = copy.deepcopy(features)
        bad["corruptions"][key] = value
        with pytest.raises(ConfigError, match=message):
            check(Features, bad, "features")
    features["corruptions"].update(audio_snr_db=[10, 10.0])
    with pytest.raises(ConfigError, match=r"features\.corruptions\.audio_noises / audio_snr_db: .*'audio_babble_10db'"):
        corruption_specs(features, ("audio", "visual"))
    features["corruptions"].update(audio_snr_db=[10], visual_dropout=[0.251, 0.249])
    with pytest.raises(ConfigError, match=r"features\.corruptions\.visual_dropout: .*'visual_dropout_25'"):
        corruption_specs(features, ("audio", "visual"))
    features["corruptions"].update(visual_dropout=[0.5], dropout_burst_s=0.01)
    with pytest.raises(ConfigError, match=r"features\.corruptions\.dropout_burst_s: .*at least one frame"):
        corruption_specs(features, ("audio", "visual"))
    assert [s["name"] for s in corruption_specs(features, ("audio",))] == ["audio_babble_10db", "audio_white_10db"]
    features["corruptions"].update(audio_snr_db=[-2.5, 7], dropout_burst_s=0.5)
    assert [s["name"] for s in corruption_specs(features, ("visual", "audio"))][:2] == [
        "audio_babble_-2.5db",
        "audio_babble_7db",
    ]


def test_babble_talkers_are_other_speakers_one_each_first():
    pool = {"a": [0, 1, 2], "b": [3, 4], "c": [5], "d": [6, 7, 8]}
    talkers = babble_talkers(0, "a", pool, 3, seed=0)
    speaker = {j: s for s, clips in pool.items() for j in clips}
    assert len(talkers) == 3 and sorted(speaker[j] for j in talkers) == ["b", "c", "d"]
    assert talkers == babble_talkers(0, "a", pool, 3, seed=0)
    draws = {tuple(babble_talkers(i, "a", pool, 3, seed=0)) for i in range(20)}
    assert len(draws) > 3  # each clip has its own talkers
    many = babble_talkers(1, "a", pool, 10, seed=0)
    assert sorted(many) == [3, 4, 5, 6, 7, 8]  # every clip of the others at most once, then no more
    with pytest.raises(ConfigError, match="babble needs clips of other speakers"):
        babble_talkers(0, "a", {"a": [0, 1]}, 2, seed=0)


# ================================================================================================ store


def _parts():
    meta = pd.DataFrame(
        {"clip_id": ["c0", "c1"], "speaker": ["1", "2"], "label": ["sad", "sad"], "has_audio": [True, True]}
    )
    splits = pd.DataFrame({"fold": [0, 0], "speaker": ["1", "2"], "role": ["train", "test"]})
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 2)]
    clean = Sequences.from_list(["c0", "c1"], frames, [np.ones(len(f), bool) for f in frames], 3)
    noisy = Sequences.from_list(["c0", "c1"], [f + 1 for f in frames], [np.ones(len(f), bool) for f in frames], 3)
    entry = {
        "name": "audio_white_5db",
        "modality": "audio",
        "kind": "white",
        "level": 5.0,
        "unit": "dB",
        "settings": {"seed": 0},
    }
    manifest = {"corpus": "toy", "modalities": ["audio"], "classes": ["sad"], "corruptions": [entry]}
    return meta, splits, {"audio": clean}, manifest, noisy


def test_store_round_trip_with_a_variant(tmp_path):
    meta, splits, sequences, manifest, noisy = _parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest, corruptions={"audio_white_5db": noisy})
    store = read_store(root)
    assert store.corruptions == manifest["corruptions"]
    modality, seq = store.corruption("audio_white_5db")
    assert modality == "audio"
    for name in ("data", "offsets", "valid", "clip_ids"):
        np.testing.assert_array_equal(getattr(seq, name), getattr(noisy, name))
    with pytest.raises(StoreError) as info:
        store.corruption("audio_pink_5db")
    assert str(root / "corruptions" / "audio_pink_5db.npz") in str(info.value)
    assert "available: audio_white_5db" in str(info.value)


def test_corrupted_variant_file_is_detected(tmp_path):
    meta, splits, sequences, manifest, noisy = _parts()
    root = write_store(tmp_path / "toy", meta, splits, sequences, manifest, None, {"audio_white_5db": noisy})
    path = root / "corruptions" / "audio_white_5db.npz"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(StoreError, match=f"{path}: content does not match manifest.json"):
        read_store(root)
    store = read_store(root, verify=False)  # opened before the file goes
    path.unlink()
    for verify in (True, False):
        with pytest.raises(StoreError, match=f"{path}: missing"):
            read_store(root, verify=verify)
    with pytest.raises(StoreError, match=f"{path}: missing"):
        store.corruption("audio_white_5db")


def test_write_store_checks_the_variants_against_the_manifest_and_the_clean_features(tmp_path):
    meta, splits, sequences, manifest, noisy = _parts()
    with pytest.raises(StoreError, match=r"the manifest lists \['audio_white_5db'\] but \[\] were given"):
        write_store(tmp_path / "a", meta, splits, sequences, manifest)
    short = Sequences.from_list(
        ["c0", "c1"], [noisy.clip(0)[0][:3], noisy.clip(1)[0]], [np.ones(3, bool), np.ones(2, bool)], 3
    )
    with pytest.raises(StoreError, match="frame counts differ from audio.npz"):
        write_store(tmp_path / "b", meta, splits, sequences, manifest, corruptions={"audio_white_5db": short})
    visual = dict(manifest, corruptions=[dict(manifest["corruptions"][0], modality="visual")])
    with pytest.raises(StoreError, match="a modality the store lacks"):
        write_store(tmp_path / "c", meta, splits, sequences, visual, corruptions={"audio_white_5db": noisy})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written


def test_a_store_without_corruptions_still_reads(tiny_store):
    assert "corruptions" not in tiny_store.manifest  # written before corruptions existed
    assert tiny_store.corruptions == []
    with pytest.raises(StoreError, match="no corruption variant 'visual_dropout_50'.*available: none"):
        tiny_store.corruption("visual_dropout_50")
    manifest = json.loads((tiny_store.root / "manifest.json").read_text())
    assert not any(name.startswith("corruptions/") for name in manifest["files"])
