"""Did each training stage converge? The convergence table, from the runs' per-epoch histories.

For every (run, stage, fold, seed): the epochs trained, why training stopped (history.csv's `stopped`, written by
`mer_core.stopping`: `plateau`: the validation criterion had not improved for `train.stopping.patience` epochs;
`max`: the stage's last phase ran to its maximum, the method's official epoch count; `grid`: a fitted stage, the
classical baseline's, tried every point of its hyper-parameter grid, which counts as converged), the best epoch (the
one kept), and the criterion's `gain` over the last `patience` epochs (the best value among them minus the best before
them; > 0 means still improving). A stage `converged` unless it stopped at `max`
while still improving by more than `train.stopping.min_delta`: the papers' claims are given no verdict where one of
their runs has such a stage (`mer_core.findings`). With `train.stopping.rule: fixed` every stage runs its maximum;
it then counts as converged when its criterion had stopped improving over its last epochs anyway.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["run", "stage", "fold", "seed", "epochs", "max_epochs", "stopped", "best_epoch", "gain", "converged"]


def convergence_table(history: pd.DataFrame, max_epochs: dict[str, dict[str, int]], stopping: dict) -> pd.DataFrame:
    """One row per (run, stage, fold, seed) of `history` (history.csv of the runs, with a `method` column naming
    the run); `max_epochs`: {run: {stage: its maximum epochs}}; `stopping`: `train.stopping`."""
    criteria = [c for c in history.columns if c.startswith("val_") and c != "val_loss"]
    patience, min_delta = stopping["patience"], stopping["min_delta"]
    rows = []
    for (run, stage, fold, seed), part in history.groupby(["method", "stage", "fold", "seed"], sort=False):
        metric = next(c for c in criteria if part[c].notna().all())  # val_ua, or val_ccc_mean for regression
        scores = part.sort_values("epoch")[metric].to_numpy()
        epochs = len(scores)
        limit = max_epochs.get(run, {}).get(stage, epochs)
        recent, before = scores[-patience:], scores[:-patience]
        gain = float(recent.max() - before.max()) if len(before) else float("nan")
        stopped = part["stopped"].iloc[-1] if "stopped" in part else "max" if epochs >= limit else "plateau"
        improving = gain == gain and gain > min_delta
        rows.append(
            {
                "run": run,
                "stage": stage,
                "fold": int(fold),
                "seed": int(seed),
                "epochs": epochs,
                "max_epochs": limit,
                "stopped": stopped,
                "best_epoch": int(part.loc[part[metric].idxmax(), "epoch"]),
                "gain": gain,
                "converged": not (stopped == "max" and improving),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def unconverged_runs(table: pd.DataFrame) -> set[str]:
    """The runs with at least one stage that did not converge."""
    return set(table.loc[~table["converged"], "run"])


def convergence_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per run and stage: units, how many stopped on a plateau, how many hit the maximum while still improving, the
    mean epochs trained and the maximum."""
    grouped = table.groupby(["run", "stage"], sort=False)
    return pd.DataFrame(
        {
            "units": grouped.size(),
            "plateau": grouped["stopped"].apply(lambda s: int((s == "plateau").sum())),
            "max, still improving": grouped["converged"].apply(lambda s: int((~s).sum())),
            "epochs (mean)": grouped["epochs"].mean().round(1),
            "max epochs": grouped["max_epochs"].max(),
        }
    )
