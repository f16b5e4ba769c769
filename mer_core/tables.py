"""Result tables of a study's units, and the confusion figure: what the training notebook shows of one run and the
analysis of every run.

- `grid_table`: MMIN-style table, one row per run (column `method`), one column per condition; cells "mean ± std"
  over folds x seeds (the sample standard deviation, as every summary of the study; the mean alone when there is a
  single unit).
- `modality_table`: VAVL's layout (docs/methods.md §5.4), `<condition> <metric>` columns.
- `mean_table`: the means alone, as numbers.
- `confusion_grid`: row-normalised confusion matrices of one run, one panel per condition, pooled over units.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mer_core.metrics import confusion


def grid_table(per_condition: pd.DataFrame, metric: str, columns: list[str], precision: int = 3) -> pd.DataFrame:
    """Rows = methods (in order of appearance), columns = conditions; cells 'mean ± std' over runs."""
    methods = list(dict.fromkeys(per_condition["method"]))
    stats = per_condition.groupby(["method", "condition"])[metric].agg(["mean", "std"])

    def cell(m, c) -> str:
        if (m, c) not in stats.index:
            return "–"
        mean, std = stats.loc[(m, c), "mean"], stats.loc[(m, c), "std"]
        return f"{mean:.{precision}f}" + ("" if np.isnan(std) else f" ± {std:.{precision}f}")

    return pd.DataFrame([[cell(m, c) for c in columns] for m in methods], index=methods, columns=columns)


def modality_table(
    per_condition: pd.DataFrame, metrics: list[str], conditions: list[str], precision: int = 3
) -> pd.DataFrame:
    """VAVL's table layout (docs/methods.md §5.4): rows = runs, columns `<condition> <metric>` for each condition
    (a, v, av) and metric (F1-macro, F1-micro; CCC per attribute for regression); cells 'mean ± std' over runs."""
    tables = {metric: grid_table(per_condition, metric, conditions, precision) for metric in metrics}
    return pd.DataFrame(
        {f"{condition} {metric}": tables[metric][condition] for condition in conditions for metric in metrics}
    )


def mean_table(per_condition: pd.DataFrame, metric: str, columns: list[str]) -> pd.DataFrame:
    """Numeric version of `grid_table` (means only)."""
    table = per_condition.groupby(["method", "condition"])[metric].mean().unstack("condition")
    return table.reindex(index=list(dict.fromkeys(per_condition["method"])), columns=columns)


def confusion_grid(predictions: pd.DataFrame, method: str, conditions: list[str], classes: list[str]) -> plt.Figure:
    """Row-normalised confusion matrices of `method`, one panel per condition, pooled over runs."""
    part = predictions[predictions["method"] == method]
    index = {c: k for k, c in enumerate(classes)}
    figure, axes = plt.subplots(1, len(conditions), figsize=(3.4 * len(conditions), 3.4), squeeze=False)
    for ax, condition in zip(axes[0], conditions):
        rows = part[part["condition"] == condition]
        matrix = confusion(rows["label"].map(index), rows["pred"].map(index), len(classes), normalize="true")
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value > 0.6 else "black"
            )
        ax.set_xticks(range(len(classes)), [c[:3] for c in classes], fontsize=8)
        ax.set_yticks(range(len(classes)), [c[:3] for c in classes], fontsize=8)
        ax.set_title(f"{method}: {condition}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    figure.tight_layout()
    return figure
