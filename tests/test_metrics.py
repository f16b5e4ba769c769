"""mer_core.metrics: WA / UA / F1 on hand-computed examples, confusion matrices, CCC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from mer_core.metrics import ccc, classification_metrics, confusion


def test_known_values_three_classes():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    # recall: class 0 2/3, class 1 1/2, class 2 1/1; precision: 2/2, 1/2, 1/2
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1 / 1.5]
    out = classification_metrics(y_true, y_pred, 3)
    assert out == pytest.approx(
        {"wa": 4 / 6, "ua": (2 / 3 + 1 / 2 + 1) / 3, "f1_macro": sum(f1) / 3, "f1_micro": 4 / 6}
    )
    assert all(isinstance(v, float) for v in out.values())


def test_known_values_imbalanced_majority_guess():
    # always predicting the majority class: WA is high, UA is chance
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.zeros(10, dtype=int)
    out = classification_metrics(y_true, y_pred, 2)
    f1_class0 = 2 * (8 / 10) * 1 / (8 / 10 + 1)
    assert out == pytest.approx({"wa": 0.8, "ua": 0.5, "f1_macro": (f1_class0 + 0) / 2, "f1_micro": 0.8})


def test_perfect_and_all_wrong():
    y = np.array([0, 1, 2, 3, 4, 5, 5, 4])
    assert classification_metrics(y, y, 6) == pytest.approx({"wa": 1, "ua": 1, "f1_macro": 1, "f1_micro": 1})
    wrong = classification_metrics(y, (y + 1) % 6, 6)
    assert wrong == pytest.approx({"wa": 0, "ua": 0, "f1_macro": 0, "f1_micro": 0})


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_ua_ignores_absent_classes_like_balanced_accuracy():
    y_true = np.array([0, 0, 1, 1, 1, 1])  # classes 2 and 3 never occur
    y_pred = np.array([0, 3, 1, 1, 2, 1])
    out = classification_metrics(y_true, y_pred, 4)
    assert out["ua"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert out["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert out["wa"] == pytest.approx(4 / 6)


def test_confusion_counts_and_normalisation():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    counts = confusion(y_true, y_pred, 4)
    assert counts.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    rates = confusion(y_true, y_pred, 4, normalize="true")
    np.testing.assert_allclose(rates[:3].sum(1), 1.0)
    np.testing.assert_allclose(rates[0], [2 / 3, 1 / 3, 0, 0])
    assert (rates[3] == 0).all()  # a class absent from y_true: an all-zero row, no NaN
    np.testing.assert_allclose(np.diag(rates)[:3].mean(), classification_metrics(y_true, y_pred, 4)["ua"])


def test_ccc_identical_negated_and_constant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    assert ccc(x, x) == pytest.approx(1.0)
    centred = x - x.mean()
    assert ccc(centred, -centred) == pytest.approx(-1.0)
    assert ccc(np.full(5, 2.0), np.full(5, 2.0)) == 0.0
    assert ccc(np.full(5, 2.0), np.full(5, 3.0)) == 0.0
    assert ccc(np.full(5, 2.0), np.arange(5.0)) == pytest.approx(0.0)


def test_ccc_known_value():
    # x = 1,2,3; y = 2,4,6: means 2 and 4, cov 4/3, variances 2/3 and 8/3 (population)
    expected = 2 * (4 / 3) / (2 / 3 + 8 / 3 + (2 - 4) ** 2)
    assert expected == pytest.approx(4 / 11)
    assert ccc([1, 2, 3], [2, 4, 6]) == pytest.approx(expected)
    # a pure shift keeps Pearson's r = 1 but CCC < 1: 2 var / (2 var + shift^2)
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert ccc(x, x + 1.0) == pytest.approx(2 * 1.25 / (2 * 1.25 + 1.0))
    assert ccc(x, 2 * x) == ccc(2 * x, x)  # symmetric


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_scikit_learn(seed):
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    rng = np.random.default_rng(seed)
    n_classes = 6
    y_true = rng.integers(0, n_classes - seed % 2, 200)  # odd seeds: the last class never occurs
    y_pred = np.where(rng.random(200) < 0.5, y_true, rng.integers(0, n_classes, 200))
    labels = np.arange(n_classes)
    out = classification_metrics(y_true, y_pred, n_classes)
    assert out["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert out["ua"] == pytest.approx(
        recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0), abs=1e-12
    )
    assert out["f1_macro"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    assert out["f1_micro"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="micro"), abs=1e-12)
