"""Tiny test material: a random feature store (8 speakers x 12 clips, 6 classes; optionally with continuous
arousal / valence / dominance attributes) and params for training on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer_core.data.folds import make_splits
from mer_core.data.store import Sequences, read_store, write_store

# One torch thread, as every training run uses (train.threads_per_run: 1, set process-wide by the first run): the
# tiny models are far faster on one thread, and an oversubscribed machine (notebooks running beside the tests)
# made multi-threaded LSTM calls some hundred times slower.
torch.set_num_threads(1)

CLASSES = ("anger", "disgust", "fear", "happy", "neutral", "sad")
DIMS = {"audio": 5, "visual": 4}
FRAME_RATES = {"audio": 100.0 / 3.0, "visual": 30.0}
NO_VISUAL_CLIP = "1001_11"  # the one clip that lacks the visual modality altogether
BASELINES = ("audio_only", "visual_only", "early_fusion", "late_fusion", "utt_fusion", "utt_dataaug")
ATTRIBUTES = ("arousal", "valence", "dominance")


def build_tiny_store(
    root: Path, n_speakers: int = 8, clips_per_speaker: int = 12, seed: int = 0, attributes: bool = False
):
    """Write a random store with a class-dependent offset (learnable), variable lengths, a few invalid visual
    frames and one clip without visual frames; folds from `make_splits`. Returns `read_store(root)`.
    With `attributes`, meta also holds arousal / valence / dominance in [-1, 1] (a class-dependent centre plus
    noise, from a generator of their own: the frames are those of the store without them) and the manifest
    lists them."""
    rng = np.random.default_rng(seed)
    centres = {m: rng.normal(0.0, 1.5, (len(CLASSES), d)) for m, d in DIMS.items()}
    rows, frames, valid = [], {m: [] for m in DIMS}, {m: [] for m in DIMS}
    for s in range(n_speakers):
        speaker = str(1001 + s)
        for c in range(clips_per_speaker):
            k = c % len(CLASSES)
            clip_id = f"{speaker}_{c:02d}"
            lengths = {"audio": int(rng.integers(4, 20)), "visual": int(rng.integers(3, 15))}
            if clip_id == NO_VISUAL_CLIP:
                lengths["visual"] = 0
            for m, d in DIMS.items():
                x = (rng.normal(0.0, 1.0, (lengths[m], d)) + centres[m][k] + 3.0).astype(np.float32)
                ok = np.ones(lengths[m], dtype=bool)
                if m == "visual" and lengths[m] >= 4 and c % 3 == 0:
                    ok[rng.choice(lengths[m], 2, replace=False)] = False  # OpenFace tracking failures
                    x[~ok] = 0.0
                frames[m].append(x)
                valid[m].append(ok)
            rows.append(
                {
                    "clip_id": clip_id,
                    "speaker": speaker,
                    "label": CLASSES[k],
                    "gender": "Female" if s % 2 else "Male",
                    "has_audio": True,
                    "has_visual": lengths["visual"] > 0,
                }
            )
    meta = pd.DataFrame(rows)
    if attributes:
        attribute_rng = np.random.default_rng(seed + 1000)
        pad = attribute_rng.uniform(-0.7, 0.7, (len(CLASSES), len(ATTRIBUTES)))
        values = pad[[CLASSES.index(c) for c in meta["label"]]] + attribute_rng.normal(0.0, 0.1, (len(meta), 3))
        for k, a in enumerate(ATTRIBUTES):
            meta[a] = np.clip(values[:, k], -1.0, 1.0)
    sequences = {m: Sequences.from_list(list(meta["clip_id"]), frames[m], valid[m], d) for m, d in DIMS.items()}
    splits = make_splits(meta, {"n_folds": 4, "n_val_speakers": 1, "seed": 0})
    manifest = {
        "corpus": "builtin",
        "modalities": list(DIMS),
        "classes": list(CLASSES),
        "dims": dict(DIMS),
        "frame_rates": dict(FRAME_RATES),
        **({"attributes": list(ATTRIBUTES)} if attributes else {}),
    }
    write_store(root, meta, splits, sequences, manifest)
    return read_store(root)


def make_tiny_params(
    store,
    epochs: int = 2,
    task: str = "classification",
    methods: dict | None = None,
    sections: dict | None = None,
    **train,
) -> dict:
    """Validated params (every default filled in, `mer_core.config.validate_params`) whose runs train on `store` at
    tiny widths: one run per method, named after it, deep-merged with `methods` (which may also add runs); the
    study's `train` section with `train` overrides; any other section deep-merged from `sections`. Train one with
    `helpers.run_method`."""
    from mer_core.config import validate_params
    from mer_core.schema import deep_merge

    optim = {"epochs": epochs, "epochs_decay": 0, "lr": 0.01, "beta1": 0.9, "grad_clip": 0.5, "batch_size": 16}
    small = {"optim": optim, "hidden": 8, "classifier": [8], "dropout": 0.1}
    imagination = {**small, "ae_widths": [2.0, 1.0, 0.5], "ae_blocks": 2, "ce_weight": 1.0, "mse_weight": 1.0}
    pretrain = {"optim": dict(optim, epochs=1), "classifier": [8], "dropout": 0.1}
    runs = {name: {"method": name, **small} for name in BASELINES}
    runs["mmin"] = {"method": "mmin", **imagination, "cycle_weight": 1.0, "pretrain": pretrain}
    runs["ifmmin"] = {"method": "ifmmin", **imagination, "invariant_weight": 10.0, "pretrain": pretrain}
    runs["nmer"] = {
        "method": "nmer",
        **small,
        "latent": 4,
        "vae_layers": 1,
        "vae_heads": 2,
        "vae_ffn": 8,
        "decoder_hidden": 8,
        "noise": {"per_sample": False},
        "pretrain": {**pretrain, "denoise_weight": 1.0, "denoise_hidden": 8},
    }
    runs["vavl"] = {
        "method": "vavl",
        "optim": dict(optim, beta1=0.95, grad_clip=0.0),
        "projection": 6,
        "subsample": 2,
        "d_model": 8,
        "heads": 2,
        "ffn_expansion": 2,
        "kernel": 3,
        "branch_blocks": 1,
        "shared_blocks": 1,
        "head_dropout": 0.1,
    }
    first_fold = train["folds"][0] if isinstance(train.get("folds"), list) else 0
    raw = {
        "task": task,
        "data": {"corpus": store.root.name, "root": "unused", "features_dir": str(store.root.parent)},
        "train": {
            "seeds": [0],
            "folds": [0],
            "stopping": {"rule": "fixed"},
            "frame_encoder": {"dim": 6, "channels": [4, 4], "groups": 2},
            **train,
        },
        "methods": deep_merge(runs, methods or {}),
        "robustness": {"intensities": [20, 100], "batch_size": 32},
        "explore": {"fold": first_fold},
        "analysis": {"embedding": {"fold": first_fold}},  # a trained fold
        "extended": {"other_task": {"task": "regression" if task == "classification" else "classification"}},
    }
    return validate_params(deep_merge(raw, sections or {}))
