"""mer_core.report: the MMIN "Average" over missing conditions, paired comparisons, multi-stage curves."""

from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest

from mer_core.report import paired_comparison, training_curves, with_missing_average

matplotlib.use("Agg")


def per_condition() -> pd.DataFrame:
    rows = []
    for method, base in (("mmin", 0.6), ("ifmmin", 0.62)):
        for fold in range(3):
            for condition, shift in (("a", -0.1), ("v", 0.0), ("av", 0.1)):
                value = base + shift + 0.01 * fold + (0.02 if method == "ifmmin" and fold == 2 else 0)
                rows.append(
                    {"method": method, "fold": fold, "seed": 0, "condition": condition, "ua": value, "wa": value + 0.01}
                )
    return pd.DataFrame(rows)


def test_with_missing_average_is_the_mean_over_the_missing_conditions_per_run():
    table = with_missing_average(per_condition(), ["a", "v"])
    missing = table[table["condition"] == "missing"].set_index(["method", "fold"])
    assert len(missing) == 6
    assert missing.loc[("mmin", 1), "ua"] == pytest.approx((0.51 + 0.61) / 2)
    assert missing.loc[("mmin", 1), "wa"] == pytest.approx((0.52 + 0.62) / 2)
    assert len(table) == len(per_condition()) + 6  # the original rows are kept


def test_paired_comparison_pairs_runs():
    result = paired_comparison(per_condition(), "ifmmin", "mmin", "av", "ua")
    assert result["pairs"] == 3 and result["wins"] == 3
    assert result["difference"] == pytest.approx((0.02 + 0.02 + 0.04) / 3)
    assert 0 < result["p_value"] < 0.1  # differences 0.02, 0.02, 0.04: t = 4.0 with 2 d.o.f.
    table = per_condition()
    table = pd.concat([table, table[table["method"] == "mmin"].assign(method="copy")])
    same = paired_comparison(table, "copy", "mmin", "a", "ua")
    assert same["difference"] == 0 and same["wins"] == 0 and math.isnan(same["p_value"])


def test_training_curves_put_stages_one_after_the_other():
    history = pd.DataFrame(
        {
            "method": "mmin",
            "fold": 0,
            "seed": 0,
            "stage": ["pretrain"] * 2 + ["train"] * 3,
            "epoch": [1, 2, 1, 2, 3],
            "train_loss": [1.0, 0.9, 3.0, 2.0, 1.0],
            "val_ua": [0.5, 0.6, 0.4, 0.5, 0.55],
        }
    )
    figure = training_curves(history)
    line = figure.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5] and list(line.get_ydata()) == [1.0, 0.9, 3.0, 2.0, 1.0]


def test_calibration_check_compares_the_best_runs_with_the_targets_and_names_missing_conditions():
    from mer_core.params.evaluation import Calibration
    from mer_core.report import calibration_check

    cfg = Calibration().model_dump()  # audio [0.35, 0.65], visual [0.45, 0.80], fusion margin 0.05, max 0.95
    ua = pd.DataFrame({"a": [0.5, 0.3], "v": [0.6, 0.7], "av": [0.8, 0.74]}, index=["mmin", "audio_only"])
    check = calibration_check(ua, cfg)
    assert list(check.index) == ["best audio-only UA", "best visual-only UA", "best audio-visual UA"]
    assert check["measured"].tolist() == pytest.approx([0.5, 0.7, 0.8])
    assert check["met"].tolist() == [True, True, True] and check["method"].tolist() == ["mmin", "audio_only", "mmin"]
    weak = calibration_check(ua.assign(av=[0.72, 0.7]), cfg)  # below the best single modality + 0.05
    assert weak["met"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"the conditions a, v and av; this study has a$"):
        calibration_check(ua[["a"]], cfg)
