"""The study's task: emotion classification or attribute regression (`params.yaml: task`, one for the whole study).

- `classification`: the corpus's emotion classes; cross-entropy; WA, UA, F1 macro and micro; model selection
  on validation UA.
- `regression`: the corpus's continuous attributes, `manifest["attributes"]` in order: the dimensional ones
  (arousal, valence, dominance) a media corpus's `meta.csv` holds, or a corpus's own targets (CMU-MOSEI: sentiment
  and six emotion intensities); the loss is sum over attributes of (1 - CCC), CCC computed on the batch with
  population variances (VAVL's regression loss, docs/methods.md §5.3); CCC per attribute (`ccc_<attribute>`) and
  their mean (`ccc_mean`); model selection on the validation mean CCC.

A model's output has `Task.n_outputs` columns (logits, or one value per attribute); `Task.loss` is its training
loss; evaluation tables hold one `label_*` / `pred_*` column per attribute for regression (`label`, `pred` and
the class probabilities for classification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from mer_core.data.corpora.base import ATTRIBUTES
from mer_core.metrics import ccc, classification_metrics

TASKS = ("classification", "regression")
CLASSIFICATION_METRICS = ("wa", "ua", "f1_macro", "f1_micro")


def metric_columns(columns) -> list[str]:
    """The metric columns among `columns`, in reporting order: the classification metrics (in
    CLASSIFICATION_METRICS order), then the per-attribute CCCs in the order of `columns`, then `ccc_mean`."""
    columns = list(columns)
    per_attribute = [c for c in columns if c.startswith("ccc_") and c != "ccc_mean"]
    mean = ["ccc_mean"] if "ccc_mean" in columns else []
    return [m for m in CLASSIFICATION_METRICS if m in columns] + per_attribute + mean


def ccc_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over columns of 1 - CCC(outputs[:, k], targets[:, k]) on the batch (population variances)."""
    mean_o, mean_t = outputs.mean(0), targets.mean(0)
    covariance = ((outputs - mean_o) * (targets - mean_t)).mean(0)
    denominator = outputs.var(0, unbiased=False) + targets.var(0, unbiased=False) + (mean_o - mean_t) ** 2
    return (1 - 2 * covariance / denominator.clamp(min=1e-8)).sum()


@dataclass(frozen=True)
class Task:
    """What the models predict (`targets`: class names or attribute names) and how it is scored."""

    name: str
    targets: tuple[str, ...]

    def __post_init__(self):
        if self.name not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.name!r}")
        if self.name == "regression" and (len(set(self.targets)) != len(self.targets) or "mean" in self.targets):
            raise ValueError(
                f"regression attributes must be distinct and none named 'mean' (ccc_mean is their "
                f"mean), got {self.targets}"
            )

    @property
    def n_outputs(self) -> int:
        return len(self.targets)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric columns of evaluation tables."""
        if self.name == "classification":
            return CLASSIFICATION_METRICS
        return tuple(f"ccc_{a}" for a in self.targets) + ("ccc_mean",)

    @property
    def headline(self) -> tuple[str, ...]:
        """The metrics summaries lead with: WA and UA, or the mean CCC."""
        return ("wa", "ua") if self.name == "classification" else ("ccc_mean",)

    @property
    def selection_metric(self) -> str:
        """The validation metric the epoch is selected on (higher is better)."""
        return "ua" if self.name == "classification" else "ccc_mean"

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, or sum of (1 - CCC) over the attributes."""
        return F.cross_entropy(outputs, y) if self.name == "classification" else ccc_loss(outputs, y)

    def clip_losses(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) per-clip loss for tables: cross-entropy, or the squared error summed over attributes (CCC is a
        batch statistic)."""
        if self.name == "classification":
            return F.cross_entropy(outputs, y, reduction="none")
        return ((outputs - y) ** 2).sum(1)

    def columns(self, y: np.ndarray, outputs: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Prediction-table columns: (label and pred, class probabilities p0..pK-1) for classification,
        (label_<a> and pred_<a> per attribute, nothing) for regression."""
        if self.name == "classification":
            probs = outputs.softmax(-1).cpu().numpy()
            return {"label": y, "pred": probs.argmax(1)}, {f"p{j}": probs[:, j] for j in range(probs.shape[1])}
        outputs = outputs.cpu().numpy()
        return {
            **{f"label_{a}": y[:, k] for k, a in enumerate(self.targets)},
            **{f"pred_{a}": outputs[:, k] for k, a in enumerate(self.targets)},
        }, {}

    def score(self, table: pd.DataFrame) -> dict[str, float]:
        """The metrics of a prediction table (columns as `columns` writes them)."""
        if self.name == "classification":
            return classification_metrics(table["label"], table["pred"], self.n_outputs)
        scores = {f"ccc_{a}": ccc(table[f"label_{a}"], table[f"pred_{a}"]) for a in self.targets}
        return {**scores, "ccc_mean": float(np.mean(list(scores.values())))}


def study_task(name: str, manifest: dict) -> Task:
    """The task `name` on the corpus of a store manifest: its classes, or its attributes in the manifest's order
    (an error naming the corpus when it has none)."""
    if name == "classification":
        return Task(name, tuple(manifest["classes"]))
    attributes = tuple(manifest.get("attributes", []))
    if not attributes:
        raise ValueError(
            f"task: regression needs continuous attributes ({', '.join(ATTRIBUTES)}, or a corpus's "
            f"own targets); corpus {manifest.get('corpus')!r} has none: use task: classification"
        )
    return Task(name, attributes)
