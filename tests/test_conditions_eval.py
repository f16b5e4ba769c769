"""mer_core.conditions (missing-modality conditions) and mer_core.evaluate (the evaluation grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mer_core.conditions import (
    all_conditions,
    apply_condition,
    condition_name,
    parse_condition,
    random_presence,
    with_presence,
)
from mer_core.data.batches import Batch, load_fold
from mer_core.evaluate import condition_order, grid_metrics, predict, selection_score, summarise
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.metrics import classification_metrics
from mer_core.tasks import CLASSIFICATION_METRICS, Task, study_task

AV = ("audio", "visual")
AVL = ("audio", "visual", "text")
THREE_CLASSES = Task("classification", ("c0", "c1", "c2"))


def make_batch(n: int = 5, modalities=AV, has=None, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, 6, 3, generator=g) + 1.0 for m in modalities}
    lengths = {m: torch.randint(1, 7, (n,), generator=g) for m in modalities}
    has = torch.ones(n, len(modalities), dtype=torch.bool) if has is None else has
    x = {m: x[m] * has[:, i, None, None] for i, m in enumerate(modalities)}
    return Batch(tuple(modalities), x, lengths, has, torch.arange(n) % 6, torch.arange(n))


# ================================================================================================ conditions


def test_all_conditions_two_and_three_modalities():
    assert all_conditions(AV) == [("audio",), ("visual",), ("audio", "visual")]
    assert [condition_name(c) for c in all_conditions(AV)] == ["a", "v", "av"]
    three = all_conditions(AVL)
    assert [condition_name(c) for c in three] == ["a", "v", "l", "av", "al", "vl", "avl"]
    assert len(set(three)) == 2**3 - 1 and all(len(c) > 0 for c in three)
    assert all_conditions(("visual",)) == [("visual",)]


@pytest.mark.parametrize("modalities", [AV, AVL])
def test_parse_condition_round_trip(modalities):
    for condition in all_conditions(modalities):
        assert parse_condition(condition_name(condition), modalities) == condition


def test_parse_condition_lists_allowed_names():
    with pytest.raises(ValueError) as info:
        parse_condition("l", AV)
    assert str(info.value) == "unknown condition 'l'; allowed: a, v, av"
    with pytest.raises(ValueError, match="allowed: a, v, l, av, al, vl, avl"):
        parse_condition("va", AVL)


def test_apply_condition_zero_fills_and_sets_present():
    has = torch.tensor([[True, True], [True, False], [True, True]])
    batch = make_batch(3, has=has)
    original = {m: v.clone() for m, v in batch.x.items()}
    audio = apply_condition(batch, ("audio",))
    assert torch.equal(audio.x["audio"], batch.x["audio"]) and (audio.x["visual"] == 0).all()
    assert audio.present.tolist() == [[True, False]] * 3
    visual = apply_condition(batch, ("visual",))
    assert (visual.x["audio"] == 0).all() and torch.equal(visual.x["visual"], batch.x["visual"])
    assert visual.present.tolist() == [[False, True], [False, False], [False, True]]  # clip 1 lacks visual
    both = apply_condition(batch, AV)
    assert torch.equal(both.present, has) and (both.x["visual"][1] == 0).all()
    for out in (audio, visual, both):  # only x and present change
        assert out.lengths is batch.lengths and torch.equal(out.y, batch.y) and torch.equal(out.rows, batch.rows)
    for m in AV:  # the input batch is untouched
        assert torch.equal(batch.x[m], original[m])
    assert torch.equal(batch.present, has)


def test_with_presence_per_clip():
    batch = make_batch(2)
    out = with_presence(batch, torch.tensor([[True, False], [False, True]]))
    assert (out.x["visual"][0] == 0).all() and (out.x["audio"][1] == 0).all()
    assert torch.equal(out.x["audio"][0], batch.x["audio"][0]) and torch.equal(out.x["visual"][1], batch.x["visual"][1])


@pytest.mark.parametrize("modalities", [AV, AVL])
def test_random_presence_non_empty_and_uniform(modalities):
    n = 7000
    batch = make_batch(n, modalities)
    out = random_presence(batch, torch.Generator().manual_seed(0))
    assert out.present.any(1).all()  # never an empty condition
    for i, m in enumerate(modalities):  # zero-fill matches `present`
        assert (out.x[m][~out.present[:, i]] == 0).all()
        assert torch.equal(out.x[m][out.present[:, i]], batch.x[m][out.present[:, i]])
    conditions = all_conditions(modalities)
    codes = [tuple(row) for row in out.present.tolist()]
    counts = np.array([codes.count(tuple(m in c for m in modalities)) for c in conditions])
    assert counts.sum() == n
    np.testing.assert_allclose(counts / n, 1 / len(conditions), atol=0.025)
    again = random_presence(batch, torch.Generator().manual_seed(0))
    assert torch.equal(again.present, out.present)


def test_random_presence_keeps_a_missing_modality_absent():
    has = torch.ones(400, 2, dtype=torch.bool)
    has[::2, 1] = False  # every other clip has no visual stream
    batch = make_batch(400, has=has)
    out = random_presence(batch, torch.Generator().manual_seed(1))
    assert not out.present[::2, 1].any()
    assert (out.x["visual"][::2] == 0).all()
    assert out.present[1::2].any(1).all()


def test_random_presence_never_blanks_a_clip_that_lacks_a_modality():
    has = torch.ones(400, 2, dtype=torch.bool)
    has[::2, 1] = False
    out = random_presence(make_batch(400, has=has), torch.Generator().manual_seed(1))
    assert out.present.any(1).all()


# ================================================================================================ evaluate


def prediction_table() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    preds = {"a": [0, 0, 1, 1, 1, 0, 2, 2], "v": [0, 0, 0, 0, 0, 0, 0, 0], "av": [0, 0, 0, 1, 1, 2, 2, 1]}
    for condition, pred in preds.items():
        for row, (label, p) in enumerate(zip(labels, pred)):
            rows.append({"condition": condition, "row": row, "label": label, "pred": p, "loss": rng.uniform()})
    return pd.DataFrame(rows)


def test_grid_metrics_pooled_is_not_the_mean():
    table = prediction_table()
    grid = grid_metrics(table, THREE_CLASSES)
    assert grid["condition"].tolist() == ["a", "v", "av", "pooled", "mean"]
    assert grid.set_index("condition")["n"].to_dict() == {"a": 8, "v": 8, "av": 8, "pooled": 24, "mean": 24}
    by = grid.set_index("condition")
    # hand-computed per-condition UA: recall per class averaged over the 3 classes
    assert by.loc["a", "ua"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert by.loc["v", "ua"] == pytest.approx((1 + 0 + 0) / 3)
    assert by.loc["av", "ua"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    # pooled: over all 24 replicated rows (class 0: 8/9, class 1: 4/6, class 2: 4/9)
    assert by.loc["pooled", "ua"] == pytest.approx((8 / 9 + 4 / 6 + 4 / 9) / 3)
    assert by.loc["pooled", "wa"] == pytest.approx((6 + 3 + 7) / 24)
    expected = classification_metrics(table["label"], table["pred"], 3)
    assert list(grid.columns) == ["condition", "n", "loss", *CLASSIFICATION_METRICS]
    for metric in CLASSIFICATION_METRICS:
        assert by.loc["pooled", metric] == pytest.approx(expected[metric])
        assert by.loc["mean", metric] == pytest.approx(by.loc[["a", "v", "av"], metric].mean())
    assert by.loc["pooled", "f1_macro"] != pytest.approx(by.loc["mean", "f1_macro"])
    assert by.loc["pooled", "loss"] == pytest.approx(table["loss"].mean())
    assert by.loc["mean", "loss"] == pytest.approx(table.groupby("condition")["loss"].mean().mean())
    assert selection_score(table, THREE_CLASSES) == pytest.approx(by.loc["pooled", "ua"])


def test_condition_order_and_summarise():
    assert condition_order(AV) == ["a", "v", "av", "pooled", "mean"]
    assert condition_order(AVL)[-3:] == ["avl", "pooled", "mean"]
    perfect = prediction_table().assign(pred=lambda t: t["label"])
    per_run = pd.concat(
        [
            grid_metrics(prediction_table(), THREE_CLASSES).assign(fold=0),
            grid_metrics(perfect, THREE_CLASSES).assign(fold=1),
        ]
    )
    summary = summarise(per_run, CLASSIFICATION_METRICS)
    assert list(summary) == ["a", "v", "av", "pooled", "mean"]
    assert summary["v"]["wa_mean"] == pytest.approx((3 / 8 + 1) / 2)
    assert summary["v"]["wa_std"] == pytest.approx((1 - 3 / 8) / np.sqrt(2))  # sample std (ddof 1) of two values
    assert summary["av"]["ua_std"] == pytest.approx(abs(1 - (1 + 1 + 2 / 3) / 3) / np.sqrt(2))
    assert set(summary["a"]) == {f"{m}_{s}" for m in CLASSIFICATION_METRICS for s in ("mean", "std")}
    only = summarise(per_run, ("ua",))  # only the metrics asked for
    assert set(only["a"]) == {"ua_mean", "ua_std"} and only["a"]["ua_mean"] == summary["a"]["ua_mean"]
    single = summarise(per_run[per_run["fold"] == 0], ("ua",))  # one unit: no spread to report
    assert single["a"]["ua_std"] is None and single["a"]["ua_mean"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)


def test_predict_one_row_per_clip_per_condition(tiny_store):
    torch.manual_seed(0)
    split = load_fold(tiny_store, 0)["test"]
    assert split.task == study_task("classification", tiny_store.manifest)
    context = ModelContext.from_manifest(tiny_store.manifest, split.task)
    entry = {"hidden": 8, "classifier": [8], "dropout": 0.5, "encoder_pooling": "valid", "text_windows": "valid"}
    model = method_spec("late_fusion").stages[0].build(entry, context, None)
    table = predict(model, split, batch_size=5, device=torch.device("cpu"))
    assert not model.training
    assert list(table.columns) == ["condition", "row", "label", "pred", "loss", *[f"p{k}" for k in range(6)]]
    assert len(table) == 3 * len(split)
    assert table["condition"].unique().tolist() == ["a", "v", "av"]
    for _, part in table.groupby("condition"):
        assert part["row"].tolist() == list(split.rows)  # every clip once, in split order
        assert part["label"].tolist() == split.y.tolist()
    probs = table[[f"p{k}" for k in range(6)]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (table["pred"].to_numpy() == probs.argmax(1)).all()
    np.testing.assert_allclose(table["loss"], -np.log(probs[np.arange(len(table)), table["label"]]), rtol=1e-4)
    # conditions do matter, and results do not depend on the batch size
    assert not np.allclose(probs[table.condition == "a"], probs[table.condition == "v"])
    again = predict(model, split, batch_size=64, device=torch.device("cpu"))
    np.testing.assert_allclose(again[[f"p{k}" for k in range(6)]].to_numpy(), probs, atol=1e-6)
