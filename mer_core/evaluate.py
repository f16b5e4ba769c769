"""The evaluation grid (MMIN protocol, docs/methods.md §1.2; docs/design.md, "Modalities and conditions").

Each test clip is replicated under every condition (absent modalities zero-filled). Metrics are reported
per condition, on the whole replicated set ("pooled", every condition, the full one included) and as the plain
mean of the per-condition values ("mean"). MMIN's "Average" column is the metric on the replicated set of the
conditions with a modality missing, the full condition left out: the analysis's `missing`
(`mer_core.report.with_missing_average`), not `pooled`. With a
`NoiseScheduler`, the removed modalities are noised instead of zero-filled (NMER protocol, docs/methods.md §4.1),
from a generator seeded per condition, so the same seed gives the same noise, hence the same metrics, every run.
The metrics are the study task's (`mer_core.tasks`): WA, UA, F1 for classification, CCC for regression.
A model output that is NaN or infinite raises `NonFiniteError` (a metric of NaN probabilities need not be NaN:
an argmax still picks a class), so no metric is ever computed from one.

A split batched `random` (`train.batches: random`, the official data loaders) is evaluated as the official code
does: the replicated set of (clip, condition) pairs in shuffled batches that mix conditions (from a generator seeded
by `noise_seed`, so the order is the same every call); this matters only to encoders whose output depends on the
padding of the batch (`encoder_pooling: padded`). Otherwise every condition is evaluated on its own, in batches of
clips of similar length.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

from mer_core.conditions import all_conditions, apply_condition, condition_name, with_presence
from mer_core.data.batches import Split
from mer_core.noise.scheduler import NoiseScheduler
from mer_core.tasks import Task


class NonFiniteError(ArithmeticError):
    """A loss, gradient norm or model output is NaN or infinite; the message says where (run, fold, seed, stage,
    epoch, condition)."""


@contextmanager
def reuse_encodings(model: nn.Module):
    """Within the block, every frame encoder of `model` (a module whose class sets `pure_in_eval`: in eval mode its
    output depends on its two inputs, frames and lengths, alone) returns its earlier output when called again, without
    gradient, on the same two tensor objects. Evaluation reads the same batches for every condition and setting
    (`Split.batches`) and a condition passes a modality every clip keeps on as the same tensor (`with_presence`), so
    the clean frames of a modality are encoded once per batch, not once per condition and noise setting. Exact (the
    very same computation is skipped, not approximated); an entry is dropped when its frames are freed."""
    modules = [m for m in model.modules() if getattr(type(m), "pure_in_eval", False) and "forward" not in vars(m)]
    memo: dict[tuple[int, int, int], tuple] = {}
    for module in modules:
        module.forward = _reusing(module, module.forward, memo)  # shadows the class's forward until the block ends
    try:
        yield
    finally:
        for module in modules:
            del module.forward
        memo.clear()  # the outputs go now, not when the (cached) frames they were keyed by are freed


def _reusing(module: nn.Module, forward, memo: dict):
    def call(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if module.training or torch.is_grad_enabled():
            return forward(x, lengths)
        key = (id(module), id(x), id(lengths))
        entry = memo.get(key)
        if entry is not None and entry[0]() is x and entry[1]() is lengths:
            return entry[2]
        out = forward(x, lengths)
        memo[key] = (weakref.ref(x, lambda _: memo.pop(key, None)), weakref.ref(lengths), out)
        return out

    return call


@torch.no_grad()
def predict(
    model: nn.Module,
    split: Split,
    batch_size: int,
    device: torch.device,
    conditions: list[tuple[str, ...]] | None = None,
    noise: NoiseScheduler | None = None,
    noise_seed: int = 0,
) -> pd.DataFrame:
    """Predictions for every clip of `split` under every condition (or the given `conditions`); with `noise`,
    removed modalities are noised (generator seeded by `noise_seed` and the condition's index).

    Returns one row per (condition, clip): condition, row (index into meta.csv), the task's label and prediction
    columns (`Task.columns` of `split.task`: label, pred / label_<a>, pred_<a>), loss, then the class probabilities
    p0..pK-1.
    Raises NonFiniteError when a model output is NaN or infinite.
    """
    model.eval()
    conditions = conditions or all_conditions(split.modalities)
    if split.batching == "random":
        return _predict_mixed(model, split, batch_size, device, conditions, noise, noise_seed)
    with reuse_encodings(model):
        return _predict(model, split, batch_size, device, conditions, noise, noise_seed)


def _predict(
    model: nn.Module,
    split: Split,
    batch_size: int,
    device: torch.device,
    conditions: list[tuple[str, ...]],
    noise: NoiseScheduler | None,
    noise_seed: int,
) -> pd.DataFrame:
    tables = []
    for k, condition in enumerate(conditions):
        generator = torch.Generator().manual_seed(noise_seed * 1000 + k) if noise is not None else None
        rows, labels, losses, outputs = [], [], [], []
        for full in split.batches(batch_size):
            full = full.to(device)
            batch = apply_condition(full, condition)
            if noise is not None:
                batch = noise.replace_missing(batch, full, generator)
            out = model(batch).float()  # bfloat16 under `train.precision: bf16`
            rows.append(batch.rows.numpy())
            labels.append(batch.y.cpu().numpy())
            losses.append(split.task.clip_losses(out, batch.y).cpu().numpy())
            outputs.append(out)
        outputs = torch.cat(outputs)
        check_finite(outputs, f"under condition {condition_name(condition)}")
        targets, extras = split.task.columns(np.concatenate(labels), outputs)
        table = pd.DataFrame(
            {
                "condition": condition_name(condition),
                "row": np.concatenate(rows),
                **targets,
                "loss": np.concatenate(losses),
                **extras,
            }
        )
        tables.append(table.sort_values("row", kind="stable"))  # batches come in order of length
    return pd.concat(tables, ignore_index=True)


def check_finite(outputs: torch.Tensor, where: str) -> None:
    """NonFiniteError when a row of `outputs` holds NaN or inf."""
    finite = torch.isfinite(outputs.reshape(len(outputs), -1)).all(1)
    if not finite.all():
        raise NonFiniteError(
            f"model outputs {where}: NaN or infinite for {int((~finite).sum())} of {len(finite)} clips"
        )


def _predict_mixed(
    model: nn.Module,
    split: Split,
    batch_size: int,
    device: torch.device,
    conditions: list[tuple[str, ...]],
    noise: NoiseScheduler | None,
    noise_seed: int,
) -> pd.DataFrame:
    """`predict` as the official evaluation batches: pair p of the replicated set is clip p // C under condition
    p % C (C conditions), the pairs shuffled and cut into batches of `batch_size` (see the module docstring)."""
    keep = torch.tensor([[m in c for m in split.modalities] for c in conditions])
    generator = torch.Generator().manual_seed(noise_seed)
    order = torch.randperm(len(split) * len(conditions), generator=generator)
    pairs, labels, losses, outputs = [], [], [], []
    for chunk in order.split(batch_size):
        full = split.batch(chunk // len(conditions)).to(device)
        batch = with_presence(full, keep[chunk % len(conditions)].to(device))
        if noise is not None:
            batch = noise.replace_missing(batch, full, generator)
        out = model(batch).float()  # bfloat16 under `train.precision: bf16`
        pairs.append(chunk.numpy())
        labels.append(batch.y.cpu().numpy())
        losses.append(split.task.clip_losses(out, batch.y).cpu().numpy())
        outputs.append(out)
    outputs = torch.cat(outputs)
    check_finite(outputs, "on the replicated set")
    pairs = np.concatenate(pairs)
    targets, extras = split.task.columns(np.concatenate(labels), outputs)
    table = pd.DataFrame(
        {
            "condition": [condition_name(conditions[k]) for k in pairs % len(conditions)],
            "row": split.rows[pairs // len(conditions)],
            **targets,
            "loss": np.concatenate(losses),
            **extras,
        }
    )
    table["order"] = pairs % len(conditions)
    table = table.sort_values(["order", "row"], kind="stable").drop(columns="order")
    return table.reset_index(drop=True)


def grid_metrics(predictions: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The task's metrics per condition plus `pooled` (on all replicated rows) and `mean` (of the condition
    rows)."""
    rows = []
    for condition, part in predictions.groupby("condition", sort=False):
        rows.append({"condition": condition, "n": len(part), "loss": part["loss"].mean(), **task.score(part)})
    table = pd.DataFrame(rows)
    pooled = {
        "condition": "pooled",
        "n": len(predictions),
        "loss": predictions["loss"].mean(),
        **task.score(predictions),
    }
    mean = {"condition": "mean", "n": len(predictions), **table[["loss", *task.metrics]].mean().to_dict()}
    return pd.concat([table, pd.DataFrame([pooled, mean])], ignore_index=True)


def condition_order(modalities: tuple[str, ...]) -> list[str]:
    """Column order of grid tables: the conditions, then pooled and mean."""
    return [condition_name(c) for c in all_conditions(modalities)] + ["pooled", "mean"]


def sample_std(values) -> float | None:
    """The sample standard deviation (ddof = 1), the convention of every table and summary of the study; None with
    fewer than two values."""
    values = pd.Series(values, dtype=float)
    return float(values.std(ddof=1)) if len(values) >= 2 else None


def summarise(per_run: pd.DataFrame, metrics: tuple[str, ...]) -> dict:
    """Mean and sample std (`sample_std`) over units (folds x seeds) of every metric under every condition, as
    nested dicts."""
    summary = {}
    for condition, part in per_run.groupby("condition", sort=False):
        summary[condition] = {}
        for metric in metrics:
            summary[condition][f"{metric}_mean"] = float(part[metric].mean())
            summary[condition][f"{metric}_std"] = sample_std(part[metric])
    return summary


def selection_score(predictions: pd.DataFrame, task: Task) -> float:
    """Model-selection criterion: the task's selection metric (UA, mean CCC) on the pooled replicated set."""
    return task.score(predictions)[task.selection_metric]
