"""mer_core.tables: the result tables (mean ± sample std over units) and the confusion figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mer_core.tables import confusion_grid, grid_table, mean_table, modality_table


def per_condition() -> pd.DataFrame:
    """Two runs (`b` first), two units each for `b`, one for `a`; `a` has no `v` row."""
    rows = [
        {"method": "b", "fold": f, "seed": 0, "condition": c, "ua": u, "f1_macro": u / 2}
        for f, values in enumerate(({"a": 0.4, "v": 0.6, "av": 0.8}, {"a": 0.5, "v": 0.8, "av": 0.9}))
        for c, u in values.items()
    ]
    rows += [
        {"method": "a", "fold": 0, "seed": 0, "condition": c, "ua": u, "f1_macro": u / 2}
        for c, u in {"a": 0.3, "av": 0.7}.items()
    ]
    return pd.DataFrame(rows)


def test_grid_table_cells_are_mean_and_sample_std_in_order_of_appearance():
    table = grid_table(per_condition(), "ua", ["a", "v", "av"])
    assert list(table.index) == ["b", "a"] and list(table.columns) == ["a", "v", "av"]
    std = np.std([0.4, 0.5], ddof=1)  # the sample standard deviation, as every summary of the study
    assert table.loc["b", "a"] == f"0.450 ± {std:.3f}" == "0.450 ± 0.071"
    assert table.loc["b", "v"] == "0.700 ± 0.141"
    assert table.loc["a", "a"] == "0.300"  # one unit: the mean alone
    assert table.loc["a", "v"] == "–"  # no result
    assert grid_table(per_condition(), "ua", ["av"], precision=2).loc["b", "av"] == "0.85 ± 0.07"


def test_mean_table_is_the_numeric_grid_and_modality_table_is_vavls_layout():
    means = mean_table(per_condition(), "ua", ["a", "v", "av"])
    assert list(means.index) == ["b", "a"]
    assert means.loc["b"].tolist() == pytest.approx([0.45, 0.7, 0.85])
    assert means.loc["a", "a"] == pytest.approx(0.3) and np.isnan(means.loc["a", "v"])
    layout = modality_table(per_condition(), ["f1_macro", "ua"], ["a", "av"])
    assert list(layout.columns) == ["a f1_macro", "a ua", "av f1_macro", "av ua"]
    assert layout.loc["b", "av ua"] == grid_table(per_condition(), "ua", ["av"]).loc["b", "av"]
    assert layout.loc["a", "a f1_macro"] == "0.150"


def test_confusion_grid_draws_row_normalised_matrices_pooled_over_units():
    classes = ["anger", "happy", "sad"]
    rows = []
    for fold in (0, 1):
        for condition in ("a", "av"):
            for label, pred in (("anger", "anger"), ("anger", "happy"), ("happy", "happy"), ("sad", "sad")):
                rows.append({"method": "m", "fold": fold, "condition": condition, "label": label, "pred": pred})
    rows.append({"method": "other", "fold": 0, "condition": "a", "label": "sad", "pred": "anger"})  # not drawn
    figure = confusion_grid(pd.DataFrame(rows), "m", ["a", "av"], classes)
    assert len(figure.axes) == 2 and [ax.get_title() for ax in figure.axes] == ["m: a", "m: av"]
    matrix = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(matrix, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["ang", "hap", "sad"]
    plt.close(figure)
