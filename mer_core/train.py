"""Training and model selection for every registered method, over folds x seeds.

One run = (fold, seed): build the method's model, train for `methods.<name>.epochs` epochs with Adam,
evaluate the pooled validation UA after each epoch (validation speakers only; the test fold is never
looked at), keep the best epoch's weights (earliest on ties), save that checkpoint, and predict the test
clips under every condition. Runs are independent and seeded from (seed, fold), and each uses
`train.threads_per_run` threads, so metrics are identical whatever `train.n_jobs` is.

Outputs of `run_method` (each written atomically; `metrics.json` last): in `out_dir` (committed to git)
`history.csv`, `predictions.csv`, `per_condition.csv`, `metrics.json`; in `checkpoint_dir` (DVC cache)
`fold{f}-seed{s}.pt`. Checkpoints live apart from `results/` so that a clone without the DVC cache still
holds every dependency of the analysis stage.
"""
from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from mer_core.conditions import random_presence
from mer_core.config import ConfigError, Field, Section
from mer_core.data.batches import load_fold
from mer_core.data.prepare import store_path
from mer_core.data.store import read_store
from mer_core.evaluate import grid_metrics, pooled_ua, predict, summarise
from mer_core.methods import ModelContext, method_spec
from mer_core.runtime import seed_everything, select_device, write_atomic

TRAIN_SCHEMA = Section(
    {
        "seeds": Field(list, low=1, item=Field(int, low=0)),
        "folds": Field((str, list), choices=("all",), low=1, item=Field(int, low=0)),
        "batch_size": Field(int, low=1, high=65536),
        "beta1": Field(float, low=0.0, high=0.999),
        "weight_decay": Field(float, low=0.0, high=1.0),
        "grad_clip": Field(float, low=0.0),
        "device": Field(str, choices=("auto", "cpu", "cuda")),
        "n_jobs": Field(int, low=1, high=64),
        "threads_per_run": Field(int, low=1, high=64),
    }
)


@dataclass
class RunOutput:
    fold: int
    seed: int
    best_epoch: int
    history: pd.DataFrame
    predictions: pd.DataFrame
    seconds: float


def run_seed(seed: int, fold: int) -> int:
    """The seed of run (seed, fold): distinct per fold, identical across methods."""
    return seed * 1000 + fold


def fit_run(name: str, params: dict, fold: int, seed: int, checkpoint: Path, show_progress: bool) -> RunOutput:
    """Train method `name` on `fold` with `seed`; save the selected checkpoint; predict the test fold."""
    start = time.perf_counter()
    cfg, method_params = params["train"], params["methods"][name]
    spec = method_spec(name)
    torch.set_num_threads(cfg["threads_per_run"])
    generator = seed_everything(run_seed(seed, fold))
    device = select_device(cfg["device"])
    store = read_store(store_path(params), verify=False)
    data = load_fold(store, fold)
    context = ModelContext.from_manifest(store.manifest)
    model = spec.build(method_params, context).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=method_params["lr"], betas=(cfg["beta1"], 0.999),
                                 weight_decay=cfg["weight_decay"])
    best = (-1.0, 0, None)
    rows = []
    epochs = tqdm(range(1, method_params["epochs"] + 1), desc=f"{name} fold {fold} seed {seed}",
                  disable=not show_progress, leave=False)
    for epoch in epochs:
        model.train()
        total, count = 0.0, 0
        for batch in data["train"].batches(cfg["batch_size"], generator):
            batch = batch.to(device)
            if spec.train_conditions == "random":
                batch = random_presence(batch, generator)
            loss, _ = model.loss(batch)
            optimiser.zero_grad()
            loss.backward()
            if cfg["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            optimiser.step()
            total += loss.item() * len(batch.y)
            count += len(batch.y)
        val = predict(model, data["val"], cfg["batch_size"], device)
        val_ua = pooled_ua(val, context.n_classes)
        rows.append({"epoch": epoch, "train_loss": total / count, "val_loss": val["loss"].mean(), "val_ua": val_ua})
        if val_ua > best[0]:
            best = (val_ua, epoch, copy.deepcopy(model.state_dict()))
        epochs.set_postfix(val_ua=f"{val_ua:.3f}")
    model.load_state_dict(best[2])
    write_atomic(checkpoint, lambda tmp: torch.save(
        {"method": name, "params": method_params, "fold": fold, "seed": seed, "epoch": best[1],
         "val_ua": best[0], "context": asdict(context), "state_dict": model.state_dict()}, tmp))
    test = predict(model, data["test"], cfg["batch_size"], device)
    history = pd.DataFrame(rows).assign(fold=fold, seed=seed)
    return RunOutput(fold, seed, best[1], history, test.assign(fold=fold, seed=seed),
                     time.perf_counter() - start)


def _fit_run_worker(args) -> RunOutput:
    return fit_run(*args, show_progress=False)


def selected_folds(params: dict, available: list[int]) -> list[int]:
    folds = params["train"]["folds"]
    if folds == "all":
        return available
    unknown = [f for f in folds if f not in available]
    if unknown:
        raise ConfigError(f"train.folds: fold {unknown[0]} does not exist; available folds: {available}")
    return list(folds)


def run_method(name: str, params: dict, out_dir: str | Path, checkpoint_dir: str | Path) -> dict:
    """Train and evaluate method `name` on every selected fold x seed; write its results to `out_dir` and
    the selected checkpoints to `checkpoint_dir`.

    Returns the summary written to metrics.json (mean and std over runs per condition).
    """
    out_dir = Path(out_dir)
    store = read_store(store_path(params))  # verifies the hashes once, up front
    folds = selected_folds(params, store.folds)
    runs = [(name, params, fold, seed, Path(checkpoint_dir) / f"fold{fold}-seed{seed}.pt")
            for seed in params["train"]["seeds"] for fold in folds]
    n_jobs = min(params["train"]["n_jobs"], len(runs))
    progress = tqdm(total=len(runs), desc=f"{name}: runs", unit="run")
    outputs = []
    if n_jobs == 1:
        for run in runs:
            outputs.append(fit_run(*run, show_progress=True))
            progress.update()
    else:
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
            for output in pool.map(_fit_run_worker, runs):
                outputs.append(output)
                progress.update()
    progress.close()
    return write_results(name, params, store, outputs, out_dir)


def write_results(name: str, params: dict, store, outputs: list[RunOutput], out_dir: Path) -> dict:
    classes = store.classes
    meta = store.meta
    per_run = pd.concat([grid_metrics(o.predictions, len(classes)).assign(fold=o.fold, seed=o.seed)
                         for o in outputs], ignore_index=True)
    predictions = pd.concat([o.predictions for o in outputs], ignore_index=True)
    predictions.insert(0, "clip_id", meta["clip_id"].to_numpy()[predictions["row"]])
    predictions.insert(1, "speaker", meta["speaker"].to_numpy()[predictions["row"]])
    predictions["label"] = [classes[k] for k in predictions["label"]]
    predictions["pred"] = [classes[k] for k in predictions["pred"]]
    predictions = predictions.drop(columns="row").rename(columns={f"p{k}": f"p_{c}" for k, c in enumerate(classes)})
    history = pd.concat([o.history for o in outputs], ignore_index=True)
    summary = {
        "method": name,
        "classes": classes,
        "modalities": list(store.modalities),
        "n_runs": len(outputs),
        "folds": sorted({o.fold for o in outputs}),
        "seeds": sorted({o.seed for o in outputs}),
        "best_epochs": [o.best_epoch for o in outputs],
        "train_seconds_total": round(sum(o.seconds for o in outputs), 1),
        "conditions": summarise(per_run),
    }
    lead = ["fold", "seed"]
    write_atomic(out_dir / "history.csv", lambda p: history[lead + [c for c in history if c not in lead]]
                 .to_csv(p, index=False, float_format="%.5f"))
    write_atomic(out_dir / "predictions.csv", lambda p: predictions[
        ["fold", "seed", "condition"] + [c for c in predictions if c not in ("fold", "seed", "condition")]]
        .to_csv(p, index=False, float_format="%.4f"))
    write_atomic(out_dir / "per_condition.csv", lambda p: per_run[lead + [c for c in per_run if c not in lead]]
                 .to_csv(p, index=False, float_format="%.5f"))
    write_atomic(out_dir / "metrics.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
