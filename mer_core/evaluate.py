"""The evaluation grid (MMIN protocol, methods.md §1.2; DESIGN.md "Modalities and conditions").

Each test clip is replicated under every condition (absent modalities zero-filled). Metrics are reported
per condition, on the pooled replicated set ("pooled", MMIN's "Average" column, confirmed by its
maintainer in AIM3-RUC/MMIN#7) and as the plain mean of the per-condition values ("mean").
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from mer_core.conditions import all_conditions, apply_condition, condition_name
from mer_core.data.batches import Split
from mer_core.metrics import classification_metrics

METRICS = ("wa", "ua", "f1_macro", "f1_micro")


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int, device: torch.device,
            conditions: list[tuple[str, ...]] | None = None) -> pd.DataFrame:
    """Class probabilities of every clip of `split` under every condition (or the given `conditions`).

    Returns one row per (condition, clip): condition, row (index into meta.csv), label, pred, loss, p0..pK-1.
    """
    model.eval()
    tables = []
    for condition in conditions or all_conditions(split.modalities):
        frames = []
        for batch in split.batches(batch_size):
            batch = apply_condition(batch.to(device), condition)
            logits = model(batch)
            probs = logits.softmax(-1).cpu().numpy()
            frame = pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])
            frame.insert(0, "loss", F.cross_entropy(logits, batch.y, reduction="none").cpu().numpy())
            frame.insert(0, "pred", probs.argmax(1))
            frame.insert(0, "label", batch.y.cpu().numpy())
            frame.insert(0, "row", batch.rows.numpy())
            frame.insert(0, "condition", condition_name(condition))
            frames.append(frame)
        tables.append(pd.concat(frames).sort_values("row", kind="stable"))  # batches come in order of length
    return pd.concat(tables, ignore_index=True)


def grid_metrics(predictions: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """Metrics per condition plus `pooled` (on all replicated rows) and `mean` (of the condition rows)."""
    rows = []
    for condition, part in predictions.groupby("condition", sort=False):
        rows.append({"condition": condition, "n": len(part), "loss": part["loss"].mean(),
                     **classification_metrics(part["label"], part["pred"], n_classes)})
    table = pd.DataFrame(rows)
    pooled = {"condition": "pooled", "n": len(predictions), "loss": predictions["loss"].mean(),
              **classification_metrics(predictions["label"], predictions["pred"], n_classes)}
    mean = {"condition": "mean", "n": len(predictions), **table[["loss", *METRICS]].mean().to_dict()}
    return pd.concat([table, pd.DataFrame([pooled, mean])], ignore_index=True)


def condition_order(modalities: tuple[str, ...]) -> list[str]:
    """Column order of grid tables: the conditions, then pooled and mean."""
    return [condition_name(c) for c in all_conditions(modalities)] + ["pooled", "mean"]


def summarise(per_run: pd.DataFrame) -> dict:
    """Mean and std over runs (folds x seeds) of every metric under every condition, as nested dicts."""
    summary = {}
    for condition, part in per_run.groupby("condition", sort=False):
        summary[condition] = {}
        for metric in METRICS:
            summary[condition][f"{metric}_mean"] = float(part[metric].mean())
            summary[condition][f"{metric}_std"] = float(part[metric].std(ddof=0))
    return summary


def pooled_ua(predictions: pd.DataFrame, n_classes: int) -> float:
    """Model-selection criterion: UA on the pooled replicated set."""
    return classification_metrics(predictions["label"], predictions["pred"], n_classes)["ua"]

