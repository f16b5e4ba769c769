"""Evaluation metrics, through scikit-learn where it has them.

WA = accuracy; UA = balanced accuracy (unweighted average recall, UAR); macro- and micro-F1; confusion
matrix; CCC (Lin's concordance correlation coefficient) for attribute regression.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


def classification_metrics(y_true, y_pred, n_classes: int) -> dict[str, float]:
    """WA, UA, F1-macro and F1-micro over the classes 0..n_classes-1.

    UA averages the recall of the classes present in `y_true` (as balanced accuracy does); macro-F1 counts a
    class absent from both `y_true` and `y_pred` as F1 = 0.
    """
    labels = np.arange(n_classes)
    present = np.unique(y_true)
    return {
        "wa": float(accuracy_score(y_true, y_pred)),
        # UA over the classes present in y_true, as balanced accuracy does
        "ua": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
    }


def confusion(y_true, y_pred, n_classes: int, normalize: str | None = None) -> np.ndarray:
    """Confusion matrix (rows true, columns predicted); `normalize='true'` gives per-class recall rows."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes), normalize=normalize)


def ccc(x, y) -> float:
    """Lin's concordance correlation coefficient: 2 cov / (var_x + var_y + (mean_x - mean_y)^2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denominator = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denominator) if denominator > 0 else 0.0
