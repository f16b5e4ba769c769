"""mer_core.tasks (classification | regression): the CCC loss, `Task`, `study_task`, regression targets from a
store, the evaluation grid and late fusion for regression, and a regression run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import CLASSIFICATION, OPTIM, REG_CTX, REGRESSION, make_batch
from helpers import run_method
from torch.nn import functional as F

from mer_core.conditions import apply_condition
from mer_core.data.batches import load_fold, make_split, targets
from mer_core.evaluate import grid_metrics, predict, selection_score
from mer_core.methods.baselines import LateFusion
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.metrics import ccc, classification_metrics
from mer_core.tasks import ATTRIBUTES, CLASSIFICATION_METRICS, TASKS, Task, ccc_loss, metric_columns, study_task

CPU = torch.device("cpu")


# ================================================================================================ ccc_loss


def test_ccc_loss_perfect_prediction_is_zero_per_attribute():
    t = torch.tensor([[0.1, -0.5, 0.9], [0.4, 0.2, -0.3], [-0.7, 0.8, 0.0], [0.3, -0.1, 0.5]])
    assert ccc_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    for k in range(3):  # each attribute on its own
        assert ccc_loss(t[:, k : k + 1], t[:, k : k + 1]).item() == pytest.approx(0.0, abs=1e-6)


def test_ccc_loss_anti_correlated_is_two_per_attribute():
    t = torch.tensor([[0.1, -0.5], [0.4, 0.2], [-0.7, 0.8], [0.3, -0.1], [0.9, 0.6]])
    mirrored = 2 * t.mean(0) - t  # same mean and variance, covariance -var: CCC = -1
    assert ccc_loss(mirrored[:, :1], t[:, :1]).item() == pytest.approx(2.0, abs=1e-5)
    assert ccc_loss(mirrored, t).item() == pytest.approx(4.0, abs=1e-5)  # summed over the two attributes


def test_ccc_loss_shifted_mean_lowers_ccc_by_the_known_amount():
    t = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    var = 1.25  # population variance of 1..4
    for shift in (0.5, 1.0, 3.0):
        expected_ccc = 2 * var / (2 * var + shift**2)  # Pearson is still 1
        assert ccc_loss(t + shift, t).item() == pytest.approx(1 - expected_ccc, rel=1e-5)
    assert ccc_loss(t + 0.5, t) < ccc_loss(t + 1.0, t) < ccc_loss(t + 3.0, t)
    # a scaled prediction (perfectly correlated) is not perfect either
    assert ccc_loss(2 * t, t).item() > 0.1


def test_ccc_loss_matches_metrics_ccc_with_population_variances():
    g = torch.Generator().manual_seed(0)
    outputs, target = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    expected = sum(1 - ccc(outputs[:, k].numpy(), target[:, k].numpy()) for k in range(3))
    assert ccc_loss(outputs, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("n", [1, 2, 9])
def test_ccc_loss_gradient_is_finite(n):
    g = torch.Generator().manual_seed(n)
    outputs = torch.randn(n, 3, generator=g, requires_grad=True)
    loss = ccc_loss(outputs, torch.randn(n, 3, generator=g))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(outputs.grad).all()
    constant = torch.zeros(n, 3, requires_grad=True)  # zero variance on both sides: CCC 0, loss 1 per attribute
    loss = ccc_loss(constant, torch.zeros(n, 3))
    loss.backward()
    assert loss.item() == pytest.approx(3.0) and torch.isfinite(constant.grad).all()


def test_ccc_loss_gradient_step_improves_the_loss():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(16, 3, generator=g)
    outputs = torch.randn(16, 3, generator=g, requires_grad=True)
    loss = ccc_loss(outputs, target)
    loss.backward()
    with torch.no_grad():
        assert ccc_loss(outputs - 0.1 * outputs.grad, target) < loss


# ================================================================================================ Task


def test_task_properties():
    assert TASKS == ("classification", "regression")
    assert CLASSIFICATION.n_outputs == 6 and REGRESSION.n_outputs == 3
    assert CLASSIFICATION.metrics == CLASSIFICATION_METRICS == ("wa", "ua", "f1_macro", "f1_micro")
    assert REGRESSION.metrics == ("ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean")
    assert Task("regression", ("valence",)).metrics == ("ccc_valence", "ccc_mean")
    assert Task("regression", ("sentiment", "fear")).metrics == ("ccc_sentiment", "ccc_fear", "ccc_mean")
    assert (CLASSIFICATION.headline, CLASSIFICATION.selection_metric) == (("wa", "ua"), "ua")
    assert (REGRESSION.headline, REGRESSION.selection_metric) == (("ccc_mean",), "ccc_mean")
    with pytest.raises(ValueError, match="task must be one of"):
        Task("ranking", ("a",))


@pytest.mark.parametrize("targets", [("valence", "valence"), ("sentiment", "mean")])
def test_regression_attributes_must_be_distinct_and_not_mean(targets):
    with pytest.raises(ValueError, match="distinct and none named 'mean'"):
        Task("regression", targets)


def test_metric_columns_keep_the_reporting_order():
    assert metric_columns(["method", "condition", "n", "loss", "f1_micro", "ua", "wa", "f1_macro"]) == [
        "wa",
        "ua",
        "f1_macro",
        "f1_micro",
    ]
    assert metric_columns(["fold", "ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean", "seed"]) == [
        "ccc_arousal",
        "ccc_valence",
        "ccc_dominance",
        "ccc_mean",
    ]
    assert metric_columns(["ccc_mean", "ccc_sentiment", "ccc_fear", "loss"]) == [
        "ccc_sentiment",
        "ccc_fear",
        "ccc_mean",
    ]
    assert metric_columns(pd.Index(["condition", "n", "loss"])) == []


def test_task_loss_and_clip_losses():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 6, generator=g), torch.tensor([0, 3, 5, 1, 1])
    torch.testing.assert_close(CLASSIFICATION.loss(logits, labels), F.cross_entropy(logits, labels))
    torch.testing.assert_close(
        CLASSIFICATION.clip_losses(logits, labels), F.cross_entropy(logits, labels, reduction="none")
    )
    values, attributes = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    torch.testing.assert_close(REGRESSION.loss(values, attributes), ccc_loss(values, attributes))
    torch.testing.assert_close(REGRESSION.clip_losses(values, attributes), ((values - attributes) ** 2).sum(1))


def test_task_columns_classification_and_regression():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(4, 6, generator=g), np.array([0, 2, 5, 5])
    columns, extras = CLASSIFICATION.columns(labels, logits)
    assert list(columns) == ["label", "pred"] and list(extras) == [f"p{k}" for k in range(6)]
    probs = np.stack([extras[f"p{k}"] for k in range(6)], 1)
    np.testing.assert_allclose(probs, logits.softmax(-1).numpy(), rtol=1e-6)
    assert (columns["pred"] == probs.argmax(1)).all() and (columns["label"] == labels).all()
    # log-probabilities (late fusion, VAVL) give the same probabilities
    np.testing.assert_allclose(CLASSIFICATION.columns(labels, logits.log_softmax(-1))[1]["p3"], extras["p3"], rtol=1e-5)

    values, attributes = torch.randn(4, 3, generator=g), np.random.default_rng(0).normal(size=(4, 3))
    columns, extras = REGRESSION.columns(attributes, values)
    assert extras == {}
    assert list(columns) == [
        "label_arousal",
        "label_valence",
        "label_dominance",
        "pred_arousal",
        "pred_valence",
        "pred_dominance",
    ]
    for k, a in enumerate(ATTRIBUTES):
        np.testing.assert_array_equal(columns[f"label_{a}"], attributes[:, k])
        np.testing.assert_array_equal(columns[f"pred_{a}"], values[:, k].numpy())


def test_task_score_regression_is_metrics_ccc_per_attribute():
    rng = np.random.default_rng(2)
    label = rng.normal(size=(30, 3))
    pred = label * 0.7 + rng.normal(0, 0.5, size=(30, 3)) + np.array([0.0, 0.3, -1.0])
    table = pd.DataFrame(
        {
            **{f"label_{a}": label[:, k] for k, a in enumerate(ATTRIBUTES)},
            **{f"pred_{a}": pred[:, k] for k, a in enumerate(ATTRIBUTES)},
        }
    )
    scores = REGRESSION.score(table)
    assert list(scores) == list(REGRESSION.metrics)
    for k, a in enumerate(ATTRIBUTES):
        assert scores[f"ccc_{a}"] == pytest.approx(ccc(label[:, k], pred[:, k]))
    assert scores["ccc_mean"] == pytest.approx(np.mean([scores[f"ccc_{a}"] for a in ATTRIBUTES]))
    assert scores["ccc_dominance"] < scores["ccc_arousal"]  # the mean shift costs CCC
    # 1 - the loss on the same values is the CCC (population variances on both sides)
    loss = ccc_loss(torch.tensor(pred), torch.tensor(label)).item()
    assert loss == pytest.approx(3 * (1 - scores["ccc_mean"]), rel=1e-6)


def test_task_score_classification_is_classification_metrics():
    table = pd.DataFrame({"label": [0, 0, 1, 2, 2, 2], "pred": [0, 1, 1, 2, 2, 0]})
    assert CLASSIFICATION.score(table) == classification_metrics(table["label"], table["pred"], 6)


# ================================================================================================ study_task


def test_study_task_classification_and_regression():
    manifest = {"corpus": "builtin", "classes": ["anger", "sad"], "attributes": ["arousal", "valence", "dominance"]}
    assert study_task("classification", manifest) == Task("classification", ("anger", "sad"))
    assert study_task("regression", manifest) == Task("regression", ATTRIBUTES)
    partial = study_task("regression", {**manifest, "attributes": ["valence", "arousal"]})
    assert partial.targets == ("valence", "arousal") and partial.n_outputs == 2  # the manifest's order


def test_study_task_regression_on_a_corpus_s_own_targets():
    manifest = {
        "corpus": "cmu_mosei",
        "classes": ["negative", "non-negative"],
        "attributes": ["sentiment", "happiness", "sadness", "anger", "surprise", "disgust", "fear"],
    }
    task = study_task("regression", manifest)
    assert task.targets == tuple(manifest["attributes"]) and task.n_outputs == 7
    assert task.metrics == (
        "ccc_sentiment",
        "ccc_happiness",
        "ccc_sadness",
        "ccc_anger",
        "ccc_surprise",
        "ccc_disgust",
        "ccc_fear",
        "ccc_mean",
    )


@pytest.mark.parametrize("attributes", [None, []])
def test_study_task_regression_without_attributes_names_the_corpus(attributes):
    manifest = {"corpus": "iemocap_mmin", "classes": ["ang", "hap", "neu", "sad"]}
    if attributes is not None:
        manifest["attributes"] = attributes
    with pytest.raises(ValueError) as info:
        study_task("regression", manifest)
    message = str(info.value)
    assert "'iemocap_mmin'" in message and "task: classification" in message and "arousal" in message


def test_regression_on_the_tiny_store_without_attributes_fails_naming_it(tiny_store):
    with pytest.raises(ValueError, match="'builtin'"):
        study_task("regression", tiny_store.manifest)


# ================================================================================================ store targets


def test_regression_targets_come_from_the_meta_columns(tiny_attribute_store):
    store = tiny_attribute_store
    task = study_task("regression", store.manifest)
    assert task.targets == ATTRIBUTES
    rows = np.array([5, 0, 17, 3])
    y = targets(store, rows, task)
    assert y.dtype == torch.float32 and y.shape == (4, 3)
    expected = store.meta.loc[rows, list(ATTRIBUTES)].to_numpy(np.float32)
    np.testing.assert_array_equal(y.numpy(), expected)
    labels = targets(store, rows, study_task("classification", store.manifest))
    assert labels.dtype == torch.long
    assert [store.classes[k] for k in labels] == store.meta["label"].to_numpy()[rows].tolist()


def test_load_fold_carries_the_task(tiny_attribute_store):
    store = tiny_attribute_store
    task = study_task("regression", store.manifest)
    splits = load_fold(store, 0, task)
    default = load_fold(store, 0)
    for role, split in splits.items():
        assert split.task == task and split.y.shape == (len(split), 3) and split.y.dtype == torch.float32
        np.testing.assert_allclose(split.y.numpy(), store.meta[list(ATTRIBUTES)].to_numpy(np.float32)[split.rows])
        # the default task is classification of the store's classes; the frames do not depend on the task
        assert default[role].task == Task("classification", tuple(store.classes)) and default[role].y.ndim == 1
        for m in store.modalities:
            assert torch.equal(split.x[m], default[role].x[m])
    batch = next(splits["train"].batches(8, torch.Generator().manual_seed(0)))
    assert batch.y.shape == (len(batch.rows), 3)
    np.testing.assert_allclose(batch.y.numpy(), store.meta[list(ATTRIBUTES)].to_numpy(np.float32)[batch.rows.numpy()])
    single = make_split(store, np.array([2, 1]), splits["train"].norm, task)
    assert single.y.shape == (2, 3)


# ================================================================================================ evaluation


def regression_table() -> pd.DataFrame:
    """Predictions of 10 clips under three conditions; `v` is biased (a mean shift) and `a` noisy."""
    rng = np.random.default_rng(0)
    label = rng.uniform(-1, 1, size=(10, 3))
    preds = {
        "a": label + rng.normal(0, 0.6, size=(10, 3)),
        "v": label * 0.5 + 0.8,
        "av": label + rng.normal(0, 0.1, size=(10, 3)),
    }
    parts = []
    for condition, pred in preds.items():
        parts.append(
            pd.DataFrame(
                {
                    "condition": condition,
                    "row": np.arange(10),
                    **{f"label_{a}": label[:, k] for k, a in enumerate(ATTRIBUTES)},
                    **{f"pred_{a}": pred[:, k] for k, a in enumerate(ATTRIBUTES)},
                    "loss": ((pred - label) ** 2).sum(1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_grid_metrics_regression_gives_ccc_columns_pooled_is_not_the_mean():
    table = regression_table()
    grid = grid_metrics(table, REGRESSION)
    assert list(grid.columns) == ["condition", "n", "loss", *REGRESSION.metrics]
    assert grid["condition"].tolist() == ["a", "v", "av", "pooled", "mean"]
    by = grid.set_index("condition")
    for condition in ("a", "v", "av"):
        part = table[table["condition"] == condition]
        for a in ATTRIBUTES:
            assert by.loc[condition, f"ccc_{a}"] == pytest.approx(ccc(part[f"label_{a}"], part[f"pred_{a}"]))
        per_attribute = by.loc[condition, [f"ccc_{a}" for a in ATTRIBUTES]]
        assert by.loc[condition, "ccc_mean"] == pytest.approx(per_attribute.mean())
    for a in ATTRIBUTES:
        assert by.loc["pooled", f"ccc_{a}"] == pytest.approx(ccc(table[f"label_{a}"], table[f"pred_{a}"]))
    for metric in REGRESSION.metrics:
        assert by.loc["mean", metric] == pytest.approx(by.loc[["a", "v", "av"], metric].mean())
    assert by.loc["pooled", "ccc_mean"] != pytest.approx(by.loc["mean", "ccc_mean"], abs=1e-3)
    assert by.loc["av", "ccc_mean"] > by.loc["a", "ccc_mean"] > by.loc["v", "ccc_mean"]
    assert by.loc["pooled", "loss"] == pytest.approx(table["loss"].mean())
    assert not set(CLASSIFICATION_METRICS) & set(grid.columns)
    assert selection_score(table, REGRESSION) == pytest.approx(by.loc["pooled", "ccc_mean"])


def late_fusion(ctx: ModelContext) -> LateFusion:
    torch.manual_seed(0)
    entry = {
        "optim": OPTIM,
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.0,
        "encoder_pooling": "valid",
        "text_windows": "valid",
        "unpaired": {},
    }
    return method_spec("late_fusion").stages[0].build(entry, ctx, None)


def test_predict_regression_columns_and_losses(tiny_attribute_store):
    store = tiny_attribute_store
    task = study_task("regression", store.manifest)
    split = load_fold(store, 0, task)["test"]
    model = late_fusion(ModelContext.from_manifest(store.manifest, task))
    table = predict(model, split, batch_size=5, device=CPU)
    labels, preds = [f"label_{a}" for a in ATTRIBUTES], [f"pred_{a}" for a in ATTRIBUTES]
    assert list(table.columns) == ["condition", "row", *labels, *preds, "loss"]
    assert len(table) == 3 * len(split)
    for _, part in table.groupby("condition"):
        assert part["row"].tolist() == list(split.rows)
        np.testing.assert_allclose(part[labels].to_numpy(), split.y.numpy())
    np.testing.assert_allclose(
        table["loss"], ((table[preds].to_numpy() - table[labels].to_numpy()) ** 2).sum(1), rtol=1e-5
    )
    again = predict(model, split, batch_size=64, device=CPU)
    np.testing.assert_allclose(again[preds].to_numpy(), table[preds].to_numpy(), atol=1e-6)


def test_late_fusion_regression_forward_is_the_mean_of_present_branches():
    model = late_fusion(REG_CTX).eval()
    batch = make_batch(REG_CTX, n=6)  # clip 1 has no visual stream
    both = apply_condition(batch, ("audio", "visual"))
    branches = model.branch_outputs(both)  # (B, M, 3) values
    assert branches.shape == (6, 2, 3)
    out = model(both)
    assert out.shape == (6, 3)
    with_visual = both.present[:, 1]
    torch.testing.assert_close(out[with_visual], branches[with_visual].mean(1))
    torch.testing.assert_close(out[~with_visual], branches[~with_visual, 0])  # audio alone
    audio = apply_condition(batch, ("audio",))
    torch.testing.assert_close(model(audio), model.branches["audio"](audio))
    visual = apply_condition(batch, ("visual",))
    torch.testing.assert_close(model(visual)[with_visual], model.branches["visual"](visual)[with_visual])
    # the loss: each branch's CCC loss on the clips that have its modality, averaged over the branches
    loss, outputs = model.loss(both, batch)
    torch.testing.assert_close(outputs, out)
    expected = (ccc_loss(branches[:, 0], both.y) + ccc_loss(branches[with_visual, 1], both.y[with_visual])) / 2
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("name", ["audio_only", "early_fusion", "utt_fusion"])
def test_task_models_regression_loss_is_the_ccc_loss_of_forward(name):
    torch.manual_seed(0)
    entry = {
        "method": name,
        "optim": OPTIM,
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.0,
        "encoder_pooling": "valid",
        "text_windows": "valid",
    }
    model = method_spec(name).stages[0].build(entry, REG_CTX, None).eval()
    batch = make_batch(REG_CTX, n=6)
    loss, outputs = model.loss(batch, batch)
    assert outputs.shape == (6, 3)
    torch.testing.assert_close(outputs, model(batch))
    torch.testing.assert_close(loss, ccc_loss(outputs, batch.y))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ================================================================================================ end to end


def test_run_method_regression_writes_ccc_results(tiny_attribute_store, tiny_params, tmp_path):
    params = tiny_params(tiny_attribute_store, epochs=2, task="regression")
    out = tmp_path / "late_fusion"
    summary = run_method("late_fusion", params, out, tmp_path / "ckpt")
    assert summary["task"] == "regression" and summary["targets"] == list(ATTRIBUTES)
    assert json.loads((out / "summary.json").read_text()) == summary
    metrics = json.loads((out / "metrics.json").read_text())  # the headline: the mean CCC per condition
    assert set(metrics) == {"run", "status", "ccc_mean"} and list(metrics["ccc_mean"]) == ["a", "v", "av", "missing"]
    assert metrics["ccc_mean"]["av"] == pytest.approx(summary["conditions"]["av"]["ccc_mean_mean"], abs=1e-5)
    assert list(summary["conditions"]) == ["a", "v", "av", "pooled", "mean"]
    assert set(summary["conditions"]["av"]) == {f"{m}_{s}" for m in REGRESSION.metrics for s in ("mean", "std")}
    assert all(-1 <= v <= 1 for c in summary["conditions"].values() for k, v in c.items() if k.endswith("_mean"))
    assert all(set(setting) == {"ccc_mean_mean", "ccc_mean_std"} for setting in summary["robustness"].values())
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns)[-1] == "val_ccc_mean" and "val_ua" not in history
    assert np.isfinite(history[["train_loss", "val_loss", "val_ccc_mean"]].to_numpy()).all()
    predictions = pd.read_csv(out / "predictions.csv")
    assert {f"label_{a}" for a in ATTRIBUTES} | {f"pred_{a}" for a in ATTRIBUTES} <= set(predictions.columns)
    assert "label" not in predictions and not any(c.startswith("p_") for c in predictions)
    meta = tiny_attribute_store.meta.set_index("clip_id")
    np.testing.assert_allclose(
        predictions["label_valence"], meta.loc[predictions["clip_id"], "valence"], atol=5e-5
    )  # written with 4 decimals
    per_condition = pd.read_csv(out / "per_condition.csv")
    assert set(REGRESSION.metrics) <= set(per_condition.columns)
    checkpoint = torch.load(tmp_path / "ckpt" / "fold0-seed0.pt")
    assert "val_ccc_mean" in checkpoint and checkpoint["context"]["task"]["name"] == "regression"
