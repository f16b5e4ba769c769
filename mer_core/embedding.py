"""2-D embeddings of the joint representations: how a missing modality moves a clip (`analysis.embedding`).

For one run, fold and seed (`analysis.embedding`): the run's final checkpoint (`mer_core.train.load_model`), the
fold's test clips (`load_fold`; at most `max_clips` of them, a fixed seeded subset), and under every condition
(absent modalities zero-filled, as in evaluation) the model's joint representation, `joint(batch) -> (B, D)`:
the vector its classifier reads (each method's docstring says what it is; `MethodSpec.joint` names it; late
fusion has none). All (clip, condition) vectors of the run are standardised per dimension and projected
together by ONE projection (`pca`, or `tsne` with `init='pca'` and a fixed random state), so that positions are
comparable across conditions. Deterministic: the same checkpoint and params give the same file.

Two measures of displacement are computed in the joint space itself (not the projection), per clip and condition:
- `cos_to_full`: cosine similarity between the clip's raw joint vector under the condition and under the full
  condition (1 for the full condition itself; `av` on an audio-visual corpus);
- `dist_to_full`: Euclidean distance between the two standardised vectors, divided by the mean distance between
  two different clips under the full condition (0 = not moved; 1 = as far as another clip lies on average).

Output `results/embeddings/<run>.csv` for every trained run whose method has a joint representation (written
atomically), one row per (condition, clip): run, fold, seed, row (meta.csv index), clip_id, label (the emotion
class), condition, projection, x, y, pred (the predicted class; empty for `task: regression`), cos_to_full,
dist_to_full. CLI (the DVC stage `embedding`): `python -m mer_core.embedding`, reading its resolved params
`data/params/embedding.json` (`mer_core.config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mer_core.conditions import all_conditions, apply_condition, condition_name
from mer_core.console import progress
from mer_core.data.batches import Split, load_fold
from mer_core.data.store import FeatureStore, read_store
from mer_core.frame_encoder import FrameEncoded
from mer_core.methods.registry import ModelContext
from mer_core.runtime import write_atomic
from mer_core.schema import ConfigError
from mer_core.train import checkpoint_path, fold_options, load_model, run_view

PROJECTIONS = ("pca", "tsne")
DISPLACEMENT = ("cos_to_full", "dist_to_full")  # how far each condition moves a clip from its full-condition twin
RANDOM_STATE = 0  # t-SNE's random state and the seed of the `max_clips` subset (fixed: not a knob)
COLUMNS = [
    "run",
    "fold",
    "seed",
    "row",
    "clip_id",
    "label",
    "condition",
    "projection",
    "x",
    "y",
    "pred",
    "cos_to_full",
    "dist_to_full",
]
CHECKPOINTS = Path("data/checkpoints")
CACHE = Path("data/cache/embedding")


def has_joint(model: nn.Module) -> bool:
    """Whether `model` (or the model a `FrameEncoded` wraps) has `joint(batch)`."""
    return hasattr(model.model if isinstance(model, FrameEncoded) else model, "joint")


def joint_of(model: nn.Module, batch) -> torch.Tensor:
    """`model.joint(batch)`, (B, D); through a `FrameEncoded` wrapper, on the batch with its frames encoded."""
    if isinstance(model, FrameEncoded):
        return joint_of(model.model, model.encode(batch, model.encoder))
    return model.joint(batch)


def take(split: Split, index: np.ndarray) -> Split:
    """The clips of `split` at positions `index`."""
    idx = torch.as_tensor(index, dtype=torch.long)
    return dataclasses.replace(
        split,
        x={m: v[idx] for m, v in split.x.items()},
        lengths={m: v[idx] for m, v in split.lengths.items()},
        has=split.has[idx],
        y=split.y[idx],
        rows=split.rows[index],
    )


def clip_subset(n: int, max_clips: int | None) -> np.ndarray:
    """Positions of the clips kept: all, or a fixed seeded subset of `max_clips`, in their original order."""
    if max_clips is None or n <= max_clips:
        return np.arange(n)
    return np.sort(np.random.default_rng(RANDOM_STATE).choice(n, max_clips, replace=False))


@torch.no_grad()
def joint_vectors(
    model: nn.Module, split: Split, batch_size: int, desc: str = "conditions"
) -> tuple[pd.DataFrame, np.ndarray]:
    """The joint representation of every clip of `split` under every condition (absent modalities zero-filled).

    Returns (table with columns condition, row, output index of the predicted class or -1 for regression;
    (N x conditions, D) float64 vectors in the table's order: conditions in `all_conditions` order, clips by row).
    """
    model.eval()
    tables, vectors = [], []
    for condition in progress(all_conditions(split.modalities), desc=desc, leave=False):
        rows, joints, preds = [], [], []
        for full in split.batches(batch_size):
            batch = apply_condition(full, condition)
            joints.append(joint_of(model, batch))
            out = model(batch)
            preds.append(out.argmax(-1) if split.task.name == "classification" else torch.full((len(out),), -1))
            rows.append(batch.rows.numpy())
        rows = np.concatenate(rows)
        order = np.argsort(rows, kind="stable")  # batches come in order of length
        tables.append(
            pd.DataFrame(
                {
                    "condition": condition_name(condition),
                    "row": rows[order],
                    "pred_index": torch.cat(preds).numpy()[order],
                }
            )
        )
        vectors.append(torch.cat(joints).double().numpy()[order])
    return pd.concat(tables, ignore_index=True), np.concatenate(vectors)


def project(vectors: np.ndarray, projection: str, perplexity: float = 30.0) -> np.ndarray:
    """(N, 2) positions of the standardised `vectors` (N, D): PCA, or t-SNE (Barnes-Hut, `init='pca'`, random
    state `RANDOM_STATE`, one thread so that the result does not depend on the machine), with the perplexity
    lowered to (N - 1) / 3 when there are too few points for it."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if projection not in PROJECTIONS:
        raise ValueError(f"projection {projection!r}; allowed: {', '.join(PROJECTIONS)}")
    if len(vectors) < 4:
        raise ValueError(f"{len(vectors)} points: too few to project")
    z = StandardScaler().fit_transform(vectors)
    with threadpool_limits(1):
        if projection == "pca":
            return PCA(2, svd_solver="full").fit_transform(z)
        perplexity = min(perplexity, (len(z) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=RANDOM_STATE, n_jobs=1).fit_transform(z)


def displacement(table: pd.DataFrame, vectors: np.ndarray, full: str) -> pd.DataFrame:
    """`cos_to_full` and `dist_to_full` (see the module docstring) for every row of `table` (condition, row)."""
    from scipy.spatial.distance import pdist
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(vectors)
    is_full = (table["condition"] == full).to_numpy()
    position = pd.Series(np.flatnonzero(is_full), index=table["row"].to_numpy()[is_full])
    ref = position.loc[table["row"].to_numpy()].to_numpy()  # each row's full-condition twin
    a, b = vectors, vectors[ref]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, (a * b).sum(1) / norms, np.nan)
    cos = np.where(ref == np.arange(len(table)), 1.0, np.clip(cos, -1.0, 1.0))
    spread = pdist(z[is_full]).mean() if is_full.sum() > 1 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # no spread (one clip, or identical vectors): NaN
        dist = np.where(spread > 0, np.linalg.norm(z - z[ref], axis=1) / spread, np.nan)
    return pd.DataFrame(dict(zip(DISPLACEMENT, (cos, dist))), index=table.index)


def run_embedding(cfg: dict, run: str, store: FeatureStore, checkpoint_dir: str | Path) -> pd.DataFrame:
    """The embedding table of run `run` (see the module docstring) from its checkpoint in `checkpoint_dir`, for the
    fold and seed of `cfg` (`analysis.embedding`)."""
    if cfg["fold"] not in store.folds:
        raise ConfigError(
            f"analysis.embedding.fold: fold {cfg['fold']} does not exist in {store.root} (folds: {store.folds})"
        )
    path = checkpoint_path(Path(checkpoint_dir), cfg["fold"], cfg["seed"], None)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint of run {run} for fold {cfg['fold']}, seed {cfg['seed']} "
            f"(train it first: dvc repro train@{run})"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = load_model(checkpoint)
    if not has_joint(model):
        raise ConfigError(
            f"run {run!r} (method {checkpoint['method']}): its model "
            f"{type(getattr(model, 'model', model)).__name__} has no joint representation "
            "(joint(batch))"
        )
    task = ModelContext.from_dict(checkpoint["context"]).task
    inputs = checkpoint.get("inputs", {})  # the store as the run reads it
    test = load_fold(run_view(store, inputs), cfg["fold"], task, **fold_options(inputs))["test"]
    test = take(test, clip_subset(len(test), cfg["max_clips"]))
    last = checkpoint["stages"][-1]["key"]
    block = checkpoint["params"] if last is None else checkpoint["params"][last]
    batch_size = block["optim"]["batch_size"] if "optim" in block else 256
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every training unit (machine.threads_per_job: 1), whatever the machine
    try:
        table, vectors = joint_vectors(model, test, batch_size, desc=f"{run}: conditions")
    finally:
        torch.set_num_threads(threads)
    if not np.isfinite(vectors).all():
        raise FloatingPointError(f"run {run}: non-finite values in the joint representation ({path})")
    xy = project(vectors, cfg["projection"], cfg["perplexity"])
    meta = store.meta
    classes = list(task.targets) if task.name == "classification" else None
    out = pd.DataFrame(
        {
            "run": run,
            "fold": cfg["fold"],
            "seed": cfg["seed"],
            "row": table["row"],
            "clip_id": meta["clip_id"].to_numpy()[table["row"]],
            "label": meta["label"].to_numpy()[table["row"]],
            "condition": table["condition"],
            "projection": cfg["projection"],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "pred": [classes[k] for k in table["pred_index"]] if classes else "",
        }
    )
    full = condition_name(all_conditions(test.modalities)[-1])
    return pd.concat([out, displacement(table, vectors, full)], axis=1)[COLUMNS]


def write_embedding(table: pd.DataFrame, out: str | Path) -> Path:
    """Write the table as CSV, atomically."""
    return write_atomic(out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def cached_embedding(cfg: dict, run: str, store: FeatureStore, checkpoint_dir: Path, cache: Path) -> pd.DataFrame:
    """`run_embedding`, reusing the table computed for the same checkpoint, store and settings (a stage rerun after
    another run was retrained recomputes only what changed). The cache lies outside every DVC output."""
    path = checkpoint_path(checkpoint_dir, cfg["fold"], cfg["seed"], None)
    settings = {k: cfg[k] for k in ("fold", "seed", "projection", "perplexity", "max_clips")}
    key = (
        hashlib.sha256(
            path.read_bytes() + json.dumps([settings, store.manifest["files"]], sort_keys=True).encode()
        ).hexdigest()[:16]
        if path.is_file()
        else None
    )
    cached = cache / f"{run}-{key}.csv"
    if key is None or not cached.is_file():
        write_embedding(run_embedding(cfg, run, store, checkpoint_dir), cached)
    return read_embedding(cached)


def read_embedding(path: Path) -> pd.DataFrame:
    """A table `write_embedding` wrote: identifiers and predicted labels as text (a class may be named "NA"), the
    displacements as floats (NaN where undefined)."""
    return pd.read_csv(
        path, dtype={"clip_id": str, "pred": str}, keep_default_na=False, na_values={c: [""] for c in DISPLACEMENT}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="2-D embeddings of the runs' joint representations (the embedding stage)"
    )
    parser.add_argument("--params", default="data/params/embedding.json", help="the stage's resolved params")
    parser.add_argument("--out", default="results/embeddings", help="folder of the <run>.csv tables")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.params).read_text())
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    store = read_store(cfg["store"])
    for run in cfg["runs"]:
        if not checkpoint_path(CHECKPOINTS / run, cfg["fold"], cfg["seed"], None).is_file():
            print(
                f"{run}: no checkpoint for fold {cfg['fold']}, seed {cfg['seed']} (not trained on this store): "
                "no embedding"
            )
            continue
        table = cached_embedding(cfg, run, store, CHECKPOINTS / run, CACHE)
        write_embedding(table, out / f"{run}.csv")
        summary = table.groupby("condition", sort=False)[list(DISPLACEMENT)].mean().round(3)
        print(
            f"{run}: {table['row'].nunique()} clips x {table['condition'].nunique()} conditions, "
            f"{cfg['projection']}\n{summary.to_string()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
