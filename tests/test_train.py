"""mer_core.train's outputs: the headline numbers of metrics.json, the validation curve DVC plots, what a skipped run
writes, and when a feature store cannot feed a run's method."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import CLASSIFICATION, REGRESSION
from helpers import resolved_run

from mer_core.train import CURVE_COLUMNS, SKIPPED_FILES, headline, skip_run, train_run, unfed, validation_curve


def per_run(metric_values: dict[str, list[float]], metrics=("wa", "ua")) -> pd.DataFrame:
    """per_condition rows of two units: {condition: [unit 0 value, unit 1 value]} for every metric (wa = ua + 0.1)."""
    rows = []
    for condition, values in metric_values.items():
        for fold, value in enumerate(values):
            rows.append(
                {
                    "fold": fold,
                    "seed": 0,
                    "condition": condition,
                    **{m: value + (0.1 if m == "wa" else 0.0) for m in metrics},
                }
            )
    return pd.DataFrame(rows)


# ============================================================================================== headline


def test_headline_is_the_mean_over_units_per_condition_and_the_missing_average():
    table = per_run({"a": [0.4, 0.6], "v": [0.2, 0.3], "av": [0.7, 0.8], "pooled": [0.5, 0.5], "mean": [0.5, 0.5]})
    metrics = headline(table, pd.DataFrame(), CLASSIFICATION, ["a", "v"])
    assert list(metrics) == ["wa", "ua"]
    assert metrics["ua"] == pytest.approx({"a": 0.5, "v": 0.25, "av": 0.75, "missing": 0.375})
    assert metrics["wa"] == pytest.approx({"a": 0.6, "v": 0.35, "av": 0.85, "missing": 0.475})
    assert "pooled" not in metrics["ua"] and "noise_wa" not in metrics and "corrupted_ua" not in metrics
    assert json.loads(json.dumps(metrics)) == metrics  # plain numbers: DVC reads them


def test_headline_adds_feature_noise_wa_and_corrupted_ua_from_the_pooled_robustness_rows():
    table = per_run({"a": [0.4, 0.6], "v": [0.2, 0.3], "av": [0.7, 0.8]})
    robustness = pd.DataFrame(
        [
            {"noise": "gaussian", "level": 20.0, "unit": "T", "condition": "pooled", "wa": 0.5, "ua": 0.4},
            {"noise": "gaussian", "level": 20.0, "unit": "T", "condition": "a", "wa": 0.9, "ua": 0.9},  # not pooled
            {"noise": "impulse", "level": 100.0, "unit": "T", "condition": "pooled", "wa": 0.3, "ua": 0.2},
            {"noise": "babble", "level": 10.0, "unit": "dB", "condition": "pooled", "wa": 0.6, "ua": 0.7},
            {
                "noise": "tracking_dropout",
                "level": 0.5,
                "unit": "fraction",
                "condition": "pooled",
                "wa": 0.5,
                "ua": 0.5,
            },
        ]
    )
    metrics = headline(table, robustness, CLASSIFICATION, ["a", "v"])
    assert metrics["noise_wa"] == pytest.approx(0.4) and metrics["corrupted_ua"] == pytest.approx(0.6)
    signal_only = headline(table, robustness[robustness["unit"] != "T"], CLASSIFICATION, ["a", "v"])
    assert "noise_wa" not in signal_only and signal_only["corrupted_ua"] == pytest.approx(0.6)


def test_headline_of_regression_is_the_mean_ccc_and_of_one_modality_has_no_missing_average():
    table = per_run({"a": [0.4, 0.6], "v": [0.2, 0.4], "av": [0.5, 0.7]}, metrics=("ccc_mean",))
    robustness = pd.DataFrame(
        [{"noise": "gaussian", "level": 20.0, "unit": "T", "condition": "pooled", "ccc_mean": 0.1}]
    )
    metrics = headline(table, robustness, REGRESSION, ["a", "v"])
    assert metrics == {"ccc_mean": pytest.approx({"a": 0.5, "v": 0.3, "av": 0.6, "missing": 0.4})}
    audio = headline(per_run({"a": [0.4, 0.6]}), pd.DataFrame(), CLASSIFICATION, [])
    assert audio["ua"]["a"] == pytest.approx(0.5) and np.isnan(audio["ua"]["missing"])


def test_the_missing_average_is_the_mean_of_each_units_average():
    table = per_run({"a": [0.4, 0.6], "v": [0.2]})  # unit 1 has no `v` row: its average is over `a` alone
    metrics = headline(table, pd.DataFrame(), CLASSIFICATION, ["a", "v"])
    assert metrics["ua"]["missing"] == pytest.approx(((0.4 + 0.2) / 2 + 0.6) / 2)


# ============================================================================================== curve


def test_validation_curve_is_the_mean_over_units_per_epoch_stages_one_after_the_other():
    rows = []
    for fold, scores in enumerate(([0.2, 0.4], [0.4, 0.6])):
        rows += [
            {"fold": fold, "seed": 0, "stage": "pretrain", "epoch": e + 1, "val_ua": s} for e, s in enumerate(scores)
        ]
    rows += [
        {"fold": 0, "seed": 0, "stage": "train", "epoch": e + 1, "val_ua": s} for e, s in enumerate([0.5, 0.6, 0.7])
    ]
    rows += [{"fold": 1, "seed": 0, "stage": "train", "epoch": 1, "val_ua": 0.3}]  # fold 1 stopped after 1 epoch
    curve = validation_curve(pd.DataFrame(rows), "ua")
    assert list(curve.columns) == CURVE_COLUMNS
    assert curve["step"].tolist() == [1, 2, 3, 4, 5] and curve["epoch"].tolist() == [1, 2, 1, 2, 3]
    assert curve["stage"].tolist() == ["pretrain"] * 2 + ["train"] * 3 and set(curve["metric"]) == {"ua"}
    assert curve["criterion"].tolist() == pytest.approx([0.3, 0.5, 0.4, 0.6, 0.7])
    assert curve["units"].tolist() == [2, 2, 2, 1, 1]
    regression = validation_curve(
        pd.DataFrame({"stage": "train", "epoch": [1, 2], "val_ccc_mean": [0.1, 0.2]}), "ccc_mean"
    )
    assert regression["criterion"].tolist() == pytest.approx([0.1, 0.2]) and set(regression["metric"]) == {"ccc_mean"}


# ============================================================================================== skipped runs


def test_unfed_names_the_modalities_a_method_needs():
    vavl = {"method": "vavl", "needs": ["audio", "visual"], "min_modalities": 1}
    mmin = {"method": "mmin", "needs": [], "min_modalities": 2}
    audio = {"method": "audio_only", "needs": ["audio"], "min_modalities": 1}
    assert unfed(vavl, ("audio", "visual")) is None and unfed(mmin, ("audio", "text")) is None
    assert unfed(audio, ("audio",)) is None
    assert unfed(vavl, ("audio",)) == (
        "method vavl needs the modalities audio, visual; the feature store has audio only"
    )
    assert unfed(mmin, ("audio",)) == "method mmin needs 2 modalities; the feature store has audio only"
    assert unfed(audio, ("visual", "text")) == (
        "method audio_only needs the modalities audio; the feature store has visual, text only"
    )


def test_skip_run_writes_its_status_and_reason_in_every_output(tmp_path):
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "fold0-seed0.pt").write_bytes(b"a stale checkpoint")
    record = skip_run({"name": "mmin"}, tmp_path / "out", checkpoints, "not selected by train.runs")
    assert record == {"run": "mmin", "status": "skipped", "reason": "not selected by train.runs"}
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([*SKIPPED_FILES, "summary.json", "metrics.json"])
    for name in ("summary.json", "metrics.json"):
        assert json.loads((out / name).read_text()) == record
    for name in SKIPPED_FILES:
        table = pd.read_csv(out / name)
        if name == "curve.csv":
            assert list(table.columns) == CURVE_COLUMNS and table.empty  # no epoch to plot
        else:
            assert table.to_dict("records") == [record], name
    assert checkpoints.is_dir() and not list(checkpoints.iterdir())  # an empty output, no stale checkpoint


def test_train_run_skips_a_run_resolved_as_skipped_or_unfed_by_the_store(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, runs=["mmin"])
    summary = train_run(resolved_run("utt_fusion", params), tmp_path / "utt", tmp_path / "ckpt_utt")
    assert summary == {"run": "utt_fusion", "status": "skipped", "reason": "not selected by train.runs"}
    assert not list((tmp_path / "ckpt_utt").iterdir())
    run = resolved_run("mmin", params)
    run["needs"] = ["audio", "text"]  # as if the method needed a modality the store lacks
    summary = train_run(run, tmp_path / "mmin", tmp_path / "ckpt_mmin")
    assert summary["status"] == "skipped"
    assert summary["reason"] == (
        "method mmin needs the modalities audio, text; the feature store has audio, visual only"
    )
    assert json.loads((tmp_path / "mmin" / "metrics.json").read_text())["reason"] == summary["reason"]


def test_the_seed_of_a_unit_differs_per_fold_and_seed_and_not_per_method():
    from mer_core.train import run_seed

    seeds = {(s, f): run_seed(s, f) for s in range(3) for f in range(10)}
    assert len(set(seeds.values())) == len(seeds)
    assert run_seed(1, 2) == 1002 and run_seed(0, 0) == 0
