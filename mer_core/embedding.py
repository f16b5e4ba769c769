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

Output `results/<run>/embedding.csv` (written atomically), one row per (condition, clip): run, fold, seed, row
(meta.csv index), clip_id, label (the emotion class), condition, projection, x, y, pred (the predicted class;
empty for `task: regression`), cos_to_full, dist_to_full. CLI (the DVC stage `embedding@<run>`):
`python -m mer_core.embedding --params params.yaml --run <run> --out results/<run>/embedding.csv`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mer_core.conditions import all_conditions, apply_condition, condition_name
from mer_core.config import ConfigError, Field, Section, load_params
from mer_core.data.batches import Split, load_fold
from mer_core.data.prepare import store_path
from mer_core.data.store import read_store
from mer_core.frame_encoder import FrameEncoded
from mer_core.methods import REGISTRY, ModelContext, method_spec
from mer_core.runtime import write_atomic
from mer_core.train import checkpoint_path, load_model

PROJECTIONS = ("pca", "tsne")
RANDOM_STATE = 0  # t-SNE's random state and the seed of the `max_clips` subset (fixed: not a knob)
COLUMNS = ["run", "fold", "seed", "row", "clip_id", "label", "condition", "projection", "x", "y", "pred",
           "cos_to_full", "dist_to_full"]
EMBEDDING_SCHEMA = Section(
    {
        "runs": Field(list, low=1, item=Field(str)),  # runs of `methods` whose method has a joint representation
        "fold": Field(int, low=0),
        "seed": Field(int, low=0),  # a training seed of `train.seeds` (which checkpoint)
        "projection": Field(str, choices=PROJECTIONS),
        "perplexity": Field(float, low=2.0, high=100.0),  # t-SNE only; lowered to (n - 1) / 3 for few points
        "max_clips": Field(int, low=4, optional=True),  # null: every test clip of the fold
    }
)


def joint_methods() -> list[str]:
    """The registered methods whose model has a joint representation."""
    return [name for name, spec in REGISTRY.items() if spec.joint is not None]


def check_embedding(params: dict) -> None:
    """Cross-checks of `analysis.embedding` against the rest of params (its schema is checked before): every run
    is a run of `methods` whose method has a joint representation, the seed is trained, the fold exists (where
    params alone tell; `run_embedding` checks against the feature store's folds)."""
    cfg, key = params["analysis"]["embedding"], "analysis.embedding"
    for run in cfg["runs"]:
        if run not in params["methods"]:
            raise ConfigError(f"{key}.runs: {run!r} is not a run of `methods` (runs: {', '.join(params['methods'])})")
        method = params["methods"][run]["method"]
        if method_spec(method).joint is None:
            with_joint = [r for r, e in params["methods"].items() if method_spec(e["method"]).joint is not None]
            raise ConfigError(f"{key}.runs: run {run!r} (method {method}) has no joint representation to embed; "
                              f"runs that have one: {', '.join(with_joint)}")
    duplicates = sorted({r for r in cfg["runs"] if cfg["runs"].count(r) > 1})
    if duplicates:
        raise ConfigError(f"{key}.runs: {duplicates[0]!r} is listed twice")
    if cfg["seed"] not in params["train"]["seeds"]:
        raise ConfigError(f"{key}.seed: {cfg['seed']} is not a trained seed (train.seeds: {params['train']['seeds']})")
    folds = params["train"]["folds"]
    if folds != "all" and cfg["fold"] not in folds:
        raise ConfigError(f"{key}.fold: fold {cfg['fold']} is not trained (train.folds: {folds})")
    if params["folds"]["protocol"] == "kfold" and params["data"]["corpus"] not in ("iemocap_mmin", "cmu_mosei") \
            and cfg["fold"] >= params["folds"]["n_folds"]:
        raise ConfigError(f"{key}.fold: fold {cfg['fold']} does not exist; folds.n_folds is "
                          f"{params['folds']['n_folds']} (folds 0..{params['folds']['n_folds'] - 1})")


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
    return dataclasses.replace(split, x={m: v[idx] for m, v in split.x.items()},
                               lengths={m: v[idx] for m, v in split.lengths.items()}, has=split.has[idx],
                               y=split.y[idx], rows=split.rows[index])


def clip_subset(n: int, max_clips: int | None) -> np.ndarray:
    """Positions of the clips kept: all, or a fixed seeded subset of `max_clips`, in their original order."""
    if max_clips is None or n <= max_clips:
        return np.arange(n)
    return np.sort(np.random.default_rng(RANDOM_STATE).choice(n, max_clips, replace=False))


@torch.no_grad()
def joint_vectors(model: nn.Module, split: Split, batch_size: int, desc: str = "conditions"
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """The joint representation of every clip of `split` under every condition (absent modalities zero-filled).

    Returns (table with columns condition, row, output index of the predicted class or -1 for regression;
    (N x conditions, D) float64 vectors in the table's order: conditions in `all_conditions` order, clips by row).
    """
    model.eval()
    tables, vectors = [], []
    for condition in tqdm(all_conditions(split.modalities), desc=desc, leave=False):
        rows, joints, preds = [], [], []
        for full in split.batches(batch_size):
            batch = apply_condition(full, condition)
            joints.append(joint_of(model, batch))
            out = model(batch)
            preds.append(out.argmax(-1) if split.task.name == "classification" else torch.full((len(out),), -1))
            rows.append(batch.rows.numpy())
        rows = np.concatenate(rows)
        order = np.argsort(rows, kind="stable")  # batches come in order of length
        tables.append(pd.DataFrame({"condition": condition_name(condition), "row": rows[order],
                                    "pred_index": torch.cat(preds).numpy()[order]}))
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
    spread = pdist(z[is_full]).mean() if is_full.sum() > 1 else np.nan
    dist = np.linalg.norm(z - z[ref], axis=1) / spread
    return pd.DataFrame({"cos_to_full": cos, "dist_to_full": dist}, index=table.index)


def run_embedding(params: dict, run: str, checkpoint_dir: str | Path | None = None) -> pd.DataFrame:
    """The embedding table of run `run` (see the module docstring) from its checkpoint in `checkpoint_dir`
    (default data/checkpoints/<run>), for `params["analysis"]["embedding"]`'s fold and seed."""
    cfg = params["analysis"]["embedding"]
    if run not in params["methods"]:
        raise ConfigError(f"--run {run}: not a run of `methods` (runs: {', '.join(params['methods'])})")
    store = read_store(store_path(params))
    if cfg["fold"] not in store.folds:
        raise ConfigError(f"analysis.embedding.fold: fold {cfg['fold']} does not exist in {store.root} "
                          f"(folds: {store.folds})")
    path = checkpoint_path(Path(checkpoint_dir or Path("data/checkpoints") / run), cfg["fold"], cfg["seed"], None)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint of run {run} for fold {cfg['fold']}, seed {cfg['seed']} "
                                f"(train it first: dvc repro train@{run})")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = load_model(checkpoint)
    if not has_joint(model):
        raise ConfigError(f"run {run!r} (method {checkpoint['method']}): its model "
                          f"{type(getattr(model, 'model', model)).__name__} has no joint representation "
                          f"(joint(batch)); methods with one: {', '.join(joint_methods())}")
    task = ModelContext.from_dict(checkpoint["context"]).task
    test = load_fold(store, cfg["fold"], task)["test"]
    test = take(test, clip_subset(len(test), cfg["max_clips"]))
    batch_size = method_spec(checkpoint["method"]).stages[-1].params(checkpoint["params"])["optim"]["batch_size"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every training run (train.threads_per_run: 1), whatever the machine
    try:
        table, vectors = joint_vectors(model, test, batch_size, desc=f"{run}: conditions")
    finally:
        torch.set_num_threads(threads)
    if not np.isfinite(vectors).all():
        raise FloatingPointError(f"run {run}: non-finite values in the joint representation ({path})")
    xy = project(vectors, cfg["projection"], cfg["perplexity"])
    meta = store.meta
    classes = list(task.targets) if task.name == "classification" else None
    out = pd.DataFrame({
        "run": run, "fold": cfg["fold"], "seed": cfg["seed"], "row": table["row"],
        "clip_id": meta["clip_id"].to_numpy()[table["row"]], "label": meta["label"].to_numpy()[table["row"]],
        "condition": table["condition"], "projection": cfg["projection"], "x": xy[:, 0], "y": xy[:, 1],
        "pred": [classes[k] for k in table["pred_index"]] if classes else "",
    })
    full = condition_name(all_conditions(test.modalities)[-1])
    return pd.concat([out, displacement(table, vectors, full)], axis=1)[COLUMNS]


def write_embedding(table: pd.DataFrame, out: str | Path) -> Path:
    """Write the table as CSV, atomically."""
    return write_atomic(out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="2-D embedding of a run's joint representations (analysis.embedding)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", required=True, help="a run of params.yaml: methods")
    parser.add_argument("--out", required=True, help="the CSV to write, e.g. results/<run>/embedding.csv")
    parser.add_argument("--checkpoint-dir", default=None, help="default: data/checkpoints/<run>")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    params = load_params(args.params)
    table = run_embedding(params, args.run, args.checkpoint_dir)
    write_embedding(table, args.out)
    summary = table.groupby("condition", sort=False)[["cos_to_full", "dist_to_full"]].mean().round(3)
    print(f"{args.run}: {table['row'].nunique()} clips x {table['condition'].nunique()} conditions, "
          f"{params['analysis']['embedding']['projection']}, {time.perf_counter() - start:.1f} s -> {args.out}")
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
