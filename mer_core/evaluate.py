"""The evaluation grid (MMIN protocol, methods.md §1.2; DESIGN.md "Modalities and conditions").

Each test clip is replicated under every condition (absent modalities zero-filled). Metrics are reported
per condition, on the pooled replicated set ("pooled", MMIN's "Average" column, confirmed by its
maintainer in AIM3-RUC/MMIN#7) and as the plain mean of the per-condition values ("mean"). With a
`NoiseScheduler`, the removed modalities are noised instead of zero-filled (NMER protocol, methods.md §4.1),
from a generator seeded per condition, so the same seed gives the same noise, hence the same metrics, every run.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from mer_core.conditions import all_conditions, apply_condition, condition_name
from mer_core.data.batches import Split
from mer_core.metrics import classification_metrics
from mer_core.noise.scheduler import NoiseScheduler

METRICS = ("wa", "ua", "f1_macro", "f1_micro")


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int, device: torch.device,
            conditions: list[tuple[str, ...]] | None = None, noise: NoiseScheduler | None = None,
            noise_seed: int = 0) -> pd.DataFrame:
    """Class probabilities of every clip of `split` under every condition (or the given `conditions`); with
    `noise`, removed modalities are noised (generator seeded by `noise_seed` and the condition's index).

    Returns one row per (condition, clip): condition, row (index into meta.csv), label, pred, loss, p0..pK-1.
    """
    model.eval()
    tables = []
    for k, condition in enumerate(conditions or all_conditions(split.modalities)):
        generator = torch.Generator().manual_seed(noise_seed * 1000 + k) if noise is not None else None
        parts = {"row": [], "label": [], "loss": [], "probs": []}
        for full in split.batches(batch_size):
            full = full.to(device)
            batch = apply_condition(full, condition)
            if noise is not None:
                batch = noise.replace_missing(batch, full, generator)
            logits = model(batch)
            parts["row"].append(batch.rows.numpy())
            parts["label"].append(batch.y.cpu().numpy())
            parts["loss"].append(F.cross_entropy(logits, batch.y, reduction="none").cpu().numpy())
            parts["probs"].append(logits.softmax(-1).cpu().numpy())
        probs = np.concatenate(parts["probs"])
        table = pd.DataFrame({"condition": condition_name(condition), "row": np.concatenate(parts["row"]),
                              "label": np.concatenate(parts["label"]), "pred": probs.argmax(1),
                              "loss": np.concatenate(parts["loss"]),
                              **{f"p{j}": probs[:, j] for j in range(probs.shape[1])}})
        tables.append(table.sort_values("row", kind="stable"))  # batches come in order of length
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

