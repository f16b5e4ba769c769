"""The prepare step: corpus adapter -> feature extraction -> folds -> feature store (DESIGN.md, data flow).

It dispatches on the corpus's kind (`mer_core.data.corpora`). A *media* corpus: features are extracted on
`features.n_jobs` processes with a progress bar, and speaker-independent folds are drawn (`folds` params).
A file that cannot be read stops the run with an error naming it (`data.on_error: raise`), or, with
`skip`, drops the clip and lists it in `<store>/skipped.csv`. A *feature package* (e.g. `iemocap_mmin`)
brings its features and its own folds: the `features`, `folds` and `data.on_error` params are not used
(the manifest says so) and a bad package always raises. The store is written atomically, so an
interrupted run leaves nothing that looks done.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mer_core.config import Field, Section
from mer_core.data.corpora import CORPORA, Corpus
from mer_core.data.features import (AudioError, audio_dim, audio_frame_rate, extract_audio, extract_visual,
                                    visual_dim)
from mer_core.data.folds import check_classes, make_splits
from mer_core.data.openface import OpenFaceError
from mer_core.data.store import FeatureStore, Sequences, read_store, write_store
from mer_core.data.synthetic import SYNTHETIC_SCHEMA

DATA_SCHEMA = Section(
    {
        "corpus": Field(str, choices=tuple(CORPORA)),
        "root": Field(str),
        "features_dir": Field(str),
        "on_error": Field(str, choices=("raise", "skip")),
        "synthetic": SYNTHETIC_SCHEMA,
    }
)

EXTRACTORS = {"audio": extract_audio, "visual": extract_visual}
INPUT_ERRORS = (AudioError, OpenFaceError)


def store_path(params: dict) -> Path:
    """Where the feature store of the configured corpus lives: `<features_dir>/<corpus>`."""
    return Path(params["data"]["features_dir"]) / params["data"]["corpus"]


def _extract_chunk(jobs: list[tuple[int, str, str]], cfg: dict, on_error: str):
    """Worker: extract (index, modality, path) jobs; returns results and errors (or raises with `raise`)."""
    import torch

    torch.set_num_threads(1)
    results, errors = [], []
    for index, modality, path in jobs:
        try:
            results.append((index, modality, *EXTRACTORS[modality](path, cfg[modality])))
        except INPUT_ERRORS as err:
            if on_error == "raise":
                raise
            errors.append((index, modality, path, str(err)))
    return results, errors


def extract_all(clips: pd.DataFrame, modalities: tuple[str, ...], cfg: dict, on_error: str):
    """Extract every (clip, modality) in parallel; returns {(index, modality): (frames, valid)} and errors."""
    jobs = [(i, m, clips.at[i, f"{m}_path"]) for m in modalities for i in clips.index
            if isinstance(clips.at[i, f"{m}_path"], str)]
    n_jobs = min(cfg["n_jobs"], os.cpu_count() or 1)
    chunks = [jobs[k:k + 64] for k in range(0, len(jobs), 64)]
    out, errors = {}, []
    progress = tqdm(total=len(jobs), desc="features", unit="file", mininterval=2)
    if n_jobs == 1:
        results = (_extract_chunk(chunk, cfg, on_error) for chunk in chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"))
        results = pool.map(_extract_chunk, chunks, [cfg] * len(chunks), [on_error] * len(chunks))
    try:
        for chunk_results, chunk_errors in results:
            for index, modality, frames, valid in chunk_results:
                out[(index, modality)] = (frames, valid)
            errors += chunk_errors
            progress.update(len(chunk_results) + len(chunk_errors))
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out, errors


def prepare(params: dict) -> FeatureStore:
    """Build the feature store of `params['data']['corpus']` and return it (see module docstring)."""
    corpus = CORPORA[params["data"]["corpus"]]
    build = prepare_package if corpus.kind == "package" else prepare_media
    write_store(store_path(params), *build(corpus, params))
    return read_store(store_path(params))


def manifest_of(corpus: Corpus, root: str, meta: pd.DataFrame, dims: dict, frame_rates: dict, features: dict,
                skipped: int) -> dict:
    """The manifest entries every store has (write_store adds the files' hashes)."""
    return {
        "corpus": corpus.name,
        "description": corpus.description,
        "root": root,
        "modalities": list(corpus.modalities),
        "classes": list(corpus.classes),
        "dims": dims,
        "frame_rates": frame_rates,
        "features": features,
        "counts": {"clips": len(meta), "speakers": int(meta["speaker"].nunique()), "skipped": skipped},
        "attributes": [a for a in ("arousal", "valence", "dominance") if a in meta],
    }


def prepare_package(corpus: Corpus, params: dict):
    """`write_store` arguments for a feature package: its features and folds as they are."""
    root = params["data"]["root"]
    package = corpus.read_package(root)
    check_classes(package.meta, package.splits)
    manifest = manifest_of(corpus, root, package.meta, {m: s.dim for m, s in package.sequences.items()},
                           package.frame_rates, package.features, skipped=0)
    manifest.update(folds=package.folds, unused_params=["features", "folds", "data.on_error"])
    return package.meta, package.splits, package.sequences, manifest


def prepare_media(corpus: Corpus, params: dict):
    """`write_store` arguments for a media corpus: extracted features, folds drawn by speaker."""
    data_cfg, feat_cfg = params["data"], params["features"]
    clips = corpus.list_clips(data_cfg["root"]).reset_index(drop=True)
    extracted, errors = extract_all(clips, corpus.modalities, feat_cfg, data_cfg["on_error"])
    bad = sorted({index for index, *_ in errors})
    keep = [i for i in clips.index if i not in set(bad)]
    meta = clips.loc[keep].drop(columns=[f"{m}_path" for m in corpus.modalities]).reset_index(drop=True)
    for m in corpus.modalities:
        meta[f"has_{m}"] = [(i, m) in extracted for i in keep]
    dims = {"audio": audio_dim(feat_cfg["audio"]), "visual": visual_dim(feat_cfg["visual"])}
    sequences = {}
    for m in corpus.modalities:
        frames, valid = [], []
        for i in keep:
            f, v = extracted.get((i, m), (np.zeros((0, dims[m]), np.float32), np.zeros(0, bool)))
            frames.append(f)
            valid.append(v)
        sequences[m] = Sequences.from_list(list(meta["clip_id"]), frames, valid, dims[m])
    splits = make_splits(meta, params["folds"])
    frame_rates = {"audio": audio_frame_rate(feat_cfg["audio"]),
                   "visual": feat_cfg["visual"]["fps"] / feat_cfg["visual"]["rate_reduction"]}
    manifest = manifest_of(corpus, data_cfg["root"], meta, {m: dims[m] for m in corpus.modalities}, frame_rates,
                           {m: feat_cfg[m] for m in corpus.modalities}, skipped=len(bad))
    skipped = pd.DataFrame([(clips.at[i, "clip_id"], m, p, e) for i, m, p, e in errors],
                           columns=["clip_id", "modality", "path", "error"])
    return meta, splits, sequences, manifest, skipped
