"""The prepare step: corpus adapter -> feature extraction -> folds -> feature store (DESIGN.md, data flow).

Extraction runs on `features.n_jobs` processes with a progress bar. A file that cannot be read stops the
run with an error naming it (`data.on_error: raise`), or, with `skip`, drops the clip and lists it in
`<store>/skipped.csv`. The store is written atomically, so an interrupted run leaves nothing that looks done.
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
from mer_core.data.corpora import CORPORA
from mer_core.data.features import (AudioError, audio_dim, audio_frame_rate, extract_audio, extract_visual,
                                    visual_dim)
from mer_core.data.folds import make_splits
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
    data_cfg, feat_cfg = params["data"], params["features"]
    corpus = CORPORA[data_cfg["corpus"]]
    clips = corpus.list_clips(data_cfg["root"]).reset_index(drop=True)
    extracted, errors = extract_all(clips, corpus.modalities, feat_cfg, data_cfg["on_error"])
    root = store_path(params)
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
    manifest = {
        "corpus": corpus.name,
        "description": corpus.description,
        "root": data_cfg["root"],
        "modalities": list(corpus.modalities),
        "classes": list(corpus.classes),
        "dims": {m: dims[m] for m in corpus.modalities},
        "frame_rates": {"audio": audio_frame_rate(feat_cfg["audio"]),
                        "visual": feat_cfg["visual"]["fps"] / feat_cfg["visual"]["rate_reduction"]},
        "features": {m: feat_cfg[m] for m in corpus.modalities},
        "counts": {"clips": len(meta), "speakers": int(meta["speaker"].nunique()), "skipped": len(bad)},
        "attributes": [a for a in ("arousal", "valence", "dominance") if a in meta],
    }
    skipped = pd.DataFrame([(clips.at[i, "clip_id"], m, p, e) for i, m, p, e in errors],
                           columns=["clip_id", "modality", "path", "error"])
    write_store(root, meta, splits, sequences, manifest, skipped)
    return read_store(root)
