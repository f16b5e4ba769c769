"""mer_core.convergence: did each training stage converge? On hand-made per-epoch histories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mer_core.convergence import COLUMNS, convergence_summary, convergence_table, unconverged_runs

STOPPING = {"rule": "plateau", "patience": 3, "min_epochs": 2, "min_delta": 0.0}


def history(
    run: str, scores: list[float], stage: str = "train", fold: int = 0, seed: int = 0, metric: str = "val_ua"
) -> pd.DataFrame:
    """The history.csv rows of one unit's stage (column `method` = the run, as the analysis reads it)."""
    return pd.DataFrame(
        {
            "method": run,
            "stage": stage,
            "fold": fold,
            "seed": seed,
            "epoch": np.arange(1, len(scores) + 1),
            "val_loss": 1.0,
            metric: scores,
        }
    )


def test_plateau_max_and_still_improving():
    table = convergence_table(
        pd.concat(
            [
                history("plateau", [0.3, 0.5, 0.6, 0.6, 0.59, 0.58]),  # stopped before its maximum of 10
                history(
                    "improving", [0.3, 0.4, 0.45, 0.5, 0.52, 0.55, 0.57, 0.58, 0.6, 0.61]
                ),  # at its maximum, rising
                history("flat", [0.3, 0.5, 0.62, 0.6, 0.61, 0.6, 0.59, 0.6, 0.61, 0.6]),  # at its maximum, long flat
            ],
            ignore_index=True,
        ),
        {"plateau": {"train": 10}, "improving": {"train": 10}, "flat": {"train": 10}},
        STOPPING,
    )
    assert list(table.columns) == COLUMNS
    rows = table.set_index("run")
    assert rows.loc["plateau", "stopped"] == "plateau" and rows.loc["plateau", "converged"]
    assert rows.loc["plateau", "best_epoch"] == 3 and rows.loc["plateau", "epochs"] == 6
    assert rows.loc["plateau", "gain"] == pytest.approx(0.6 - 0.6)  # best of the last 3 minus the best before
    assert rows.loc["improving", "stopped"] == "max" and not rows.loc["improving", "converged"]
    assert rows.loc["improving", "gain"] == pytest.approx(0.61 - 0.57)
    assert rows.loc["improving", "best_epoch"] == 10 and rows.loc["improving", "max_epochs"] == 10
    assert rows.loc["flat", "stopped"] == "max" and rows.loc["flat", "converged"]  # hit the max, but not improving
    assert rows.loc["flat", "gain"] == pytest.approx(0.61 - 0.62)
    assert unconverged_runs(table) == {"improving"}


def test_min_delta_decides_what_counts_as_improving():
    scores = [0.3, 0.5, 0.6, 0.6, 0.6, 0.61]  # + 0.01 in the last epochs
    strict = convergence_table(history("r", scores), {"r": {"train": 6}}, STOPPING)
    loose = convergence_table(history("r", scores), {"r": {"train": 6}}, {**STOPPING, "min_delta": 0.05})
    assert not strict.loc[0, "converged"] and loose.loc[0, "converged"]


def test_too_few_epochs_for_the_patience_have_no_gain_and_count_as_converged():
    table = convergence_table(history("short", [0.2, 0.4]), {"short": {"train": 2}}, STOPPING)
    assert table.loc[0, "stopped"] == "max" and math.isnan(table.loc[0, "gain"]) and table.loc[0, "converged"]


def test_stages_units_and_regression_criteria_are_judged_apart():
    frame = pd.concat(
        [
            history("mmin", [0.2, 0.3, 0.3, 0.3, 0.3], stage="pretrain"),  # stage 1 flat at its maximum of 5
            history("mmin", [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], stage="train"),  # stage 2 still rising at its maximum of 6
            history("mmin", [0.2, 0.3, 0.3, 0.3, 0.3], stage="pretrain", fold=1),
            history("mmin", [0.3, 0.5, 0.5, 0.5, 0.5], stage="train", fold=1),  # fold 1 plateaued early
            history("vavl_regression", [0.1, 0.2, 0.3, 0.4], metric="val_ccc_mean"),  # rising at its maximum of 4
            history("vavl_regression", [0.1, 0.3, 0.3], metric="val_ccc_mean", seed=1),  # stopped before its max
        ],
        ignore_index=True,
    )  # the regression rows have no val_ua, the classification rows no val_ccc_mean
    assert frame["val_ua"].isna().sum() == 7 and frame["val_ccc_mean"].isna().sum() == 21
    maxima = {"mmin": {"pretrain": 5, "train": 6}, "vavl_regression": {"train": 4}}
    table = convergence_table(frame, maxima, STOPPING)
    assert len(table) == 6
    keyed = table.set_index(["run", "stage", "fold", "seed"])
    assert keyed.loc[("mmin", "pretrain", 0, 0), "converged"] and keyed.loc[("mmin", "pretrain", 1, 0), "converged"]
    assert not keyed.loc[("mmin", "train", 0, 0), "converged"]
    assert keyed.loc[("mmin", "train", 1, 0), "stopped"] == "plateau"
    assert keyed.loc[("vavl_regression", "train", 0, 0), "best_epoch"] == 4
    assert not keyed.loc[("vavl_regression", "train", 0, 0), "converged"]  # judged on val_ccc_mean
    assert keyed.loc[("vavl_regression", "train", 0, 1), "stopped"] == "plateau"
    assert unconverged_runs(table) == {"mmin", "vavl_regression"}
    summary = convergence_summary(table)
    assert summary.loc[("mmin", "train")].to_dict() == {
        "units": 2,
        "plateau": 1,
        "max, still improving": 1,
        "epochs (mean)": 5.5,
        "max epochs": 6,
    }
    assert summary.loc[("mmin", "pretrain"), "max, still improving"] == 0
    assert list(summary.index) == [("mmin", "pretrain"), ("mmin", "train"), ("vavl_regression", "train")]


def test_a_fixed_schedule_counts_as_converged_when_it_had_stopped_improving():
    fixed = {**STOPPING, "rule": "fixed"}
    table = convergence_table(
        pd.concat(
            [history("done", [0.3, 0.6, 0.6, 0.6, 0.6, 0.6]), history("rising", [0.3, 0.4, 0.5, 0.55, 0.6, 0.65])],
            ignore_index=True,
        ),
        {"done": {"train": 6}, "rising": {"train": 6}},
        fixed,
    )
    assert list(table["stopped"]) == ["max", "max"] and list(table["converged"]) == [True, False]
