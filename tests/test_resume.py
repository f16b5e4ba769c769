"""Resumable extraction (`mer_core.data.extract_cache`, `mer_core.data.prepare`): a killed prepare run restarts
where it stopped and writes the same store as an uninterrupted run; stale or broken cache entries are never used.

A kill is simulated by chunk workers that extract job by job, log each job to a file and raise
KeyboardInterrupt once the log holds `MER_TEST_KILL_AFTER` lines (module-level functions, so that the spawned
workers of `jobs=2` import them too; the environment variables reach those workers)."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mer_core.config import ConfigError, load_params
from mer_core.data import extract_cache
from mer_core.data import prepare as prepare_module
from mer_core.data.extract_cache import (
    CacheWarning,
    ExtractionCache,
    code_fingerprint,
    library_versions,
    remove_cache,
    settings_digest,
)
from mer_core.data.prepare import (
    cache_path,
    corrupt_audio,
    corruption_specs,
    extract_all,
    map_chunks,
    prepare,
    store_path,
)
from mer_core.data.synthetic import generate_corpus

ROOT = Path(__file__).resolve().parents[1]
LOG, KILL_AFTER = "MER_TEST_EXTRACTION_LOG", "MER_TEST_KILL_AFTER"
REAL_EXTRACT_CHUNK = prepare_module._extract_chunk
REAL_CORRUPT_AUDIO_CHUNK = prepare_module._corrupt_audio_chunk
CLIPS = 24  # 4 actors x 6 clips of one sentence
JOBS = 2 * CLIPS + CLIPS  # first pass: audio and visual of each clip; second pass: noisy audio of each clip


def _log(name: str, job: tuple) -> None:
    log = Path(os.environ[LOG])
    if 0 <= int(os.environ[KILL_AFTER]) <= len(log.read_text().splitlines() if log.exists() else []):
        raise KeyboardInterrupt
    with open(log, "a") as handle:
        handle.write(f"{name} {job[0]} {job[1] if name == 'features' else 'audio'}\n")


def logged_extract_chunk(jobs, *args):
    """`_extract_chunk`, one job at a time, each logged (or a KeyboardInterrupt instead)."""
    results, errors = [], []
    for job in jobs:
        _log("features", job)
        done, failed = REAL_EXTRACT_CHUNK([job], *args)
        results += done
        errors += failed
    return results, errors


def logged_corrupt_audio_chunk(jobs, *args):
    """`_corrupt_audio_chunk`, one job at a time, each logged (or a KeyboardInterrupt instead)."""
    results = []
    for job in jobs:
        _log("noisy", job)
        results += REAL_CORRUPT_AUDIO_CHUNK([job], *args)
    return results


@pytest.fixture(scope="module")
def base_params() -> dict:
    params = load_params(ROOT / "params.yaml")
    params["data"]["synthetic"].update(n_actors=4, sentences=["DFA"])
    params["features"]["corruptions"].update(
        audio_noises=["babble"], audio_snr_db=[10.0], babble_talkers=2, visual_dropout=[0.5]
    )
    params["folds"].update(n_folds=2, n_val_speakers=1)
    return params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, base_params) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "builtin"
    generate_corpus(root, base_params["data"]["synthetic"])
    return root


def params_for(base_params: dict, root: Path, out: Path) -> dict:
    params = copy.deepcopy(base_params)
    params["data"].update(root=str(root), features_dir=str(out / "features"), cache_dir=str(out / "cache"))
    return params


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base_params, corpus) -> bytes:
    """manifest.json of an uninterrupted run (it holds the sha256 of every file of the store)."""
    store = prepare(params_for(base_params, corpus, tmp_path_factory.mktemp("reference")))
    assert len(store.meta) == CLIPS
    return (store.root / "manifest.json").read_bytes()


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """Run prepare with the logging workers in chunks of 4 jobs; returns run(params, kill_after, jobs) -> logged
    jobs."""
    monkeypatch.setattr(prepare_module, "_extract_chunk", logged_extract_chunk)
    monkeypatch.setattr(prepare_module, "_corrupt_audio_chunk", logged_corrupt_audio_chunk)
    monkeypatch.setattr(prepare_module, "CHUNK", 4)

    def run(params: dict, kill_after: int = -1, jobs: int = 1) -> list[str]:
        log = tmp_path / f"log-{len(list(tmp_path.glob('log-*')))}.txt"
        monkeypatch.setenv(LOG, str(log))
        monkeypatch.setenv(KILL_AFTER, str(kill_after))
        if kill_after >= 0:
            with pytest.raises(KeyboardInterrupt):
                prepare(params, jobs)
            assert not store_path(params).exists()
        else:
            prepare(params, jobs)
        return log.read_text().splitlines() if log.exists() else []

    return run


def cached(params: dict) -> list[Path]:
    return sorted(cache_path(params).glob("*.npz"))


def manifest(params: dict) -> bytes:
    return (store_path(params) / "manifest.json").read_bytes()


# ================================================================================================ kill and resume


@pytest.mark.parametrize("kill_after, n_jobs, resume_jobs", [(10, 1, 1), (53, 2, 1)])
def test_a_killed_run_resumes_with_the_rest_and_writes_the_same_store(
    logged, tmp_path, base_params, corpus, reference, capsys, kill_after, n_jobs, resume_jobs
):
    params = params_for(base_params, corpus, tmp_path)
    first = logged(params, kill_after, n_jobs)
    assert len(first) <= kill_after + 1  # the other worker may start one more job
    kept = len(cached(params))
    if n_jobs == 1:  # in order, chunks of 4: two chunks done, the third killed on its third job
        assert kept == 8 and first == [f"features {i} audio" for i in range(10)]
    else:  # the first pass (48 jobs) finished; a kill in the second
        assert 2 * CLIPS <= kept < JOBS
    assert not list(cache_path(params).glob("*.tmp"))
    capsys.readouterr()
    second = logged(params, jobs=resume_jobs)  # jobs is not part of the key: the results do not depend on it
    assert len(second) == len(set(second)) == JOBS - kept  # only what the cache lacked
    if n_jobs == 1:
        assert "features 0 audio" not in second and "features 8 audio" in second
        err = capsys.readouterr().err  # the bar starts at the 8 jobs done
        assert "features (resumed)" in err and " 8/48" in err
    assert manifest(params) == reference
    assert not (tmp_path / "cache").exists()  # the cache, extract/ and the emptied cache_dir are gone


def test_a_changed_setting_invalidates_every_entry(logged, tmp_path, base_params, corpus):
    params = params_for(base_params, corpus, tmp_path)
    logged(params, 10)
    assert len(cached(params)) == 8
    params["features"]["visual"]["rate_reduction"] = 3
    assert len(logged(params)) == JOBS  # even the audio: the whole features section is hashed


def test_a_touched_file_invalidates_its_entry(logged, tmp_path, base_params, corpus, reference):
    root = tmp_path / "raw"
    shutil.copytree(corpus, root)
    params = params_for(base_params, root, tmp_path)
    clip = prepare_module.CORPORA["builtin"].list_clips(str(root)).reset_index(drop=True).at[3, "audio_path"]
    logged(params, 10)
    os.utime(clip, ns=(os.stat(clip).st_atime_ns, os.stat(clip).st_mtime_ns + 10**9))
    second = logged(params)
    assert len(second) == JOBS - 7 and "features 3 audio" in second and "features 2 audio" not in second
    reference_manifest = json.loads(reference)
    assert json.loads(manifest(params))["files"] == reference_manifest["files"]  # same content, another root


def test_a_truncated_entry_is_extracted_again_with_a_warning(logged, tmp_path, base_params, corpus, reference):
    params = params_for(base_params, corpus, tmp_path)
    logged(params, 10)
    entry = cached(params)[0]
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(CacheWarning, match=f"{entry.name}: unreadable cache entry.*extracting it again"):
        second = logged(params)
    assert len(second) == JOBS - 7
    assert manifest(params) == reference


def test_unreadable_files_are_listed_after_a_resume(logged, tmp_path, base_params, corpus, reference):
    root = tmp_path / "raw"
    shutil.copytree(corpus, root)
    (root / "AudioWAV" / "1001_ITS_ANG_XX.wav").write_bytes(b"not a wav")  # index 6, after the DFA clips of 1001
    with open(root / "attributes.csv", "a") as handle:  # the corpus's metadata lists the new clip
        handle.write("1001_ITS_ANG_XX,0.5,-0.5,0.1\n")
    params = params_for(base_params, root, tmp_path)
    params["data"]["on_error"] = "skip"
    logged(params, 10)
    assert len(cached(params)) == 7  # an error is not cached: the file is tried again
    second = logged(params)
    assert "features 6 audio" in second and len(second) == (2 * CLIPS + 1 + CLIPS) - 7
    skipped = (store_path(params) / "skipped.csv").read_text().splitlines()
    assert (
        len(skipped) == 3 and skipped[1].startswith("1001_ITS_ANG_XX,audio,") and skipped[1].endswith(",clip dropped")
    )  # the clip has no face CSV either: nothing left of it
    assert skipped[2] == "1001_ITS_ANG_XX,visual,,no visual file,clip dropped"
    files, clean = json.loads(manifest(params))["files"], json.loads(reference)["files"]
    for name in ("meta.csv", "splits.csv", "audio.npz", "visual.npz"):  # (the variants' draws follow the indices)
        assert files[name] == clean[name]  # the readable clips' features are the clean run's
    assert not cache_path(params).exists()


# ================================================================================================ the cache


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a
    )


def test_both_passes_give_the_same_with_or_without_a_cache(tmp_path, base_params, corpus, monkeypatch):
    clips = prepare_module.CORPORA["builtin"].list_clips(str(corpus)).reset_index(drop=True).iloc[[0, 6, 12]]
    cfg = base_params["features"]
    specs = corruption_specs(cfg, ("audio", "visual"))
    cache = ExtractionCache(tmp_path, "digest")
    plain, _, plain_visual = extract_all(clips, ("audio", "visual"), cfg, "raise", specs)
    noisy = corrupt_audio(clips, [0, 6, 12], plain, cfg, specs)
    assert len(plain) == 6 and len(plain_visual) == 3 and len(noisy) == 3  # one variant of each kind per clip
    for resumed in (False, True):  # extracted and saved, then loaded with nothing left to extract
        out, errors, visual = extract_all(clips, ("audio", "visual"), cfg, "raise", specs, cache=cache)
        assert _same(out, plain) and _same(visual, plain_visual) and errors == []
        assert _same(corrupt_audio(clips, [0, 6, 12], out, cfg, specs, cache=cache), noisy)
        assert len(list(tmp_path.glob("*.npz"))) == 6 + 3  # an entry per (clip, modality), then per noisy clip
        monkeypatch.setattr(prepare_module, "_extract_chunk", None)
        monkeypatch.setattr(prepare_module, "_corrupt_audio_chunk", None)


def test_cache_path_is_per_corpus_and_outside_the_store(base_params):
    params = copy.deepcopy(base_params)
    assert cache_path(params) == Path("data/cache/extract/builtin")
    params["data"]["cache_dir"] = "data/features/tmp"
    with pytest.raises(ConfigError, match=r"data\.cache_dir: 'data/features/tmp' is inside data\.features_dir"):
        cache_path(params)


def test_a_key_changes_with_the_file_the_item_and_the_settings(tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(b"1234")
    cache = ExtractionCache(tmp_path / "cache", "digest")
    key = cache.key(("features", 0, "audio"), [str(path)])
    assert len(key) == 64 and key == cache.key(("features", 0, "audio"), [str(path)])
    others = {
        cache.key(("features", 1, "audio"), [str(path)]),
        ExtractionCache(tmp_path / "cache", "other digest").key(("features", 0, "audio"), [str(path)]),
    }
    path.write_bytes(b"12345")  # size
    others.add(cache.key(("features", 0, "audio"), [str(path)]))
    os.utime(path, ns=(0, 10**9))  # mtime
    others.add(cache.key(("features", 0, "audio"), [str(path)]))
    assert key not in others and len(others) == 4
    assert cache.key(("features", 0, "audio"), [str(path), str(tmp_path / "missing.wav")]) is None


def test_entries_round_trip_exactly_and_atomically(tmp_path, monkeypatch):
    cache = ExtractionCache(tmp_path / "cache", "digest")
    frames = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    pairs = {
        "visual": (frames, np.array([1, 0, 1, 1, 0], bool)),
        "visual_dropout_50": (np.zeros((0, 3), np.float32), np.zeros(0, bool)),
    }
    cache.save("k", pairs)
    loaded = cache.load("k", ["visual", "visual_dropout_50"])
    for name, (f, v) in pairs.items():
        assert loaded[name][0].dtype == f.dtype and loaded[name][0].shape == f.shape
        np.testing.assert_array_equal(loaded[name][0], f)
        np.testing.assert_array_equal(loaded[name][1], v)
    assert cache.load("absent", ["visual"]) is None and cache.load(None, ["visual"]) is None
    cache.save(None, pairs)  # a file that could not be examined: nothing saved
    assert sorted(p.name for p in cache.folder.iterdir()) == ["k.npz"]

    def killed(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(extract_cache.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.save("j", pairs)
    assert sorted(p.name for p in cache.folder.iterdir()) == ["k.npz"]  # no entry, no temporary file


def test_an_entry_with_other_names_is_dropped_with_a_warning(tmp_path):
    cache = ExtractionCache(tmp_path, "digest")
    cache.save("k", {"visual": (np.ones((2, 3), np.float32), np.ones(2, bool))})
    with pytest.warns(CacheWarning, match=r"k\.npz: unreadable cache entry \(KeyError: .*visual_dropout_50"):
        assert cache.load("k", ["visual", "visual_dropout_50"]) is None
    assert not cache.path("k").exists()


def test_remove_cache_removes_the_emptied_parents_only(tmp_path):
    for corpus in ("builtin", "crema_d"):
        (tmp_path / "cache" / "extract" / corpus).mkdir(parents=True)
        (tmp_path / "cache" / "extract" / corpus / "k.npz").write_bytes(b"x")
    remove_cache(tmp_path / "cache" / "extract" / "builtin")
    assert [p.name for p in (tmp_path / "cache" / "extract").iterdir()] == ["crema_d"]
    remove_cache(tmp_path / "cache" / "extract" / "crema_d")
    assert list(tmp_path.iterdir()) == []
    remove_cache(tmp_path / "cache" / "extract" / "crema_d")  # nothing there: nothing to do


def test_the_settings_digest_covers_the_features_section_and_the_corpus(base_params, monkeypatch):
    features = copy.deepcopy(base_params["features"])
    digest = settings_digest("builtin", features)
    assert digest == settings_digest("builtin", copy.deepcopy(features))
    assert digest != settings_digest("crema_d", features)
    assert digest != settings_digest("builtin", {**features, "audio": {**features["audio"], "n_mels": 41}})
    features["corruptions"]["seed"] = 1
    assert digest != settings_digest("builtin", features)
    assert len(code_fingerprint()) == 64 and code_fingerprint() == code_fingerprint()
    monkeypatch.setattr(extract_cache, "LIBRARIES", ("numpy", "no-such-distribution"))
    assert library_versions() == {"numpy": np.__version__, "no-such-distribution": None}


def test_map_chunks_starts_its_bar_at_the_jobs_done(capsys):
    assert list(map_chunks(sum, list(range(5)), (), None, "noisy audio", done=3)) == [10]
    err = capsys.readouterr().err
    assert "noisy audio (resumed)" in err and "8/8" in err
    list(map_chunks(sum, [1], (), None, "features"))
    err = capsys.readouterr().err
    assert "resumed" not in err and "1/1" in err
