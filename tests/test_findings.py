"""mer_core.findings: the papers' claims tested paired by run, their verdicts, and the generated section."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from mer_core.findings import NOISE, Claim, evaluate_claims, findings_markdown, movement_sentence, noise_runs, verdict

CLAIMS = (Claim("P1", "mmin beats utt_fusion", "mmin", "utt_fusion", "missing", "ua"),
          Claim("P2", "nmer beats mmin under noise", "nmer", "mmin", NOISE, "wa"),
          Claim("P3", "vavl beats mmin", "vavl", "mmin", "av", "ua"))  # vavl is not in the study: skipped


def per_condition(gap: dict[str, float], noise: float = 0.0) -> pd.DataFrame:
    """4 runs; each method's UA/WA = base + its gap + a per-fold wobble (so paired tests have spread)."""
    rows = []
    for method in ("utt_fusion", "mmin", "nmer"):
        for fold in range(4):
            wobble = (0.002, -0.001, 0.003, 0.0)[fold] * (method == "mmin")
            value = 0.5 + gap.get(method, 0.0) + 0.01 * fold + wobble
            for condition in ("missing", "av"):
                rows.append({"method": method, "fold": fold, "seed": 0, "condition": condition, "ua": value,
                             "wa": value})
            rows.append({"method": method, "fold": fold, "seed": 0, "condition": NOISE, "ua": value,
                         "wa": value + (noise if method == "nmer" else 0.0)})
    return pd.DataFrame(rows)


def test_verdict_needs_significance_and_reads_the_sign():
    assert verdict(0.05, 0.01) == "holds" and verdict(-0.05, 0.01) == "reversed"
    assert verdict(0.05, 0.2) == "not resolved" and verdict(0.05, float("nan")) == "not resolved"
    assert verdict(0.05, 0.04, alpha=0.01) == "not resolved"


def test_evaluate_claims_pairs_runs_and_skips_absent_runs():
    claims = evaluate_claims(per_condition({"mmin": 0.05, "nmer": 0.05}, noise=-0.1), CLAIMS)
    assert list(claims["claim"]) == ["mmin beats utt_fusion", "nmer beats mmin under noise"]
    first, second = claims.iloc[0], claims.iloc[1]
    assert first["difference"] == pytest.approx(0.05 + 0.001) and first["wins"] == 4 and first["pairs"] == 4
    assert first["p_value"] < 0.05 and first["verdict"] == "holds"
    assert second["difference"] == pytest.approx(-0.1 - 0.001) and second["wins"] == 0
    assert second["verdict"] == "reversed"


def test_a_difference_within_the_spread_is_not_resolved():
    claims = evaluate_claims(per_condition({"mmin": 0.0}), CLAIMS[:1])
    assert claims.iloc[0]["wins"] == 2 and claims.iloc[0]["p_value"] > 0.05
    assert claims.iloc[0]["verdict"] == "not resolved"


def test_noise_runs_average_the_feature_noise_settings_per_run():
    runs = pd.DataFrame([
        {"method": "nmer", "fold": 0, "seed": 0, "noise": "clean", "modality": "missing", "level": 0.0, "unit": "",
         "wa": 0.9},
        {"method": "nmer", "fold": 0, "seed": 0, "noise": "gaussian", "modality": "missing", "level": 20.0,
         "unit": "T", "wa": 0.6},
        {"method": "nmer", "fold": 0, "seed": 0, "noise": "impulse", "modality": "missing", "level": 100.0,
         "unit": "T", "wa": 0.4},
        {"method": "nmer", "fold": 0, "seed": 0, "noise": "babble", "modality": "audio", "level": 0.0, "unit": "dB",
         "wa": 0.1}])  # a signal corruption: not feature noise
    table = noise_runs(runs)
    assert len(table) == 1 and table.iloc[0]["condition"] == NOISE
    assert table.iloc[0]["wa"] == pytest.approx(0.5)


def test_findings_markdown_groups_the_claims_by_verdict_with_their_effects():
    claims = evaluate_claims(per_condition({"mmin": 0.05, "nmer": 0.05}), CLAIMS)  # nmer level with mmin
    ua = pd.DataFrame({"a": [0.4, 0.5], "v": [0.6, 0.55], "av": [0.7, 0.72]}, index=["mmin", "utt_fusion"])
    text = findings_markdown(claims, ua, ["a", "v", "av"], corpus="builtin")
    assert "`a` 0.500 (utt_fusion); `v` 0.600 (mmin); `av` 0.720 (utt_fusion)" in text
    assert "Fusion adds +0.120 UA" in text
    assert "**What holds here** (1 of 2)" in text and "**Not resolved here" in text and "reversed here" not in text
    assert "`mmin` − `utt_fusion` = +0.051 UA on `missing` (4 of 4 runs, p = " in text
    assert "corpus, `builtin`" in text and "4 pairs" in text
    assert not math.isnan(claims["p_value"].iloc[0])


def test_the_movement_sentence_ranks_runs_by_distance_per_missing_condition():
    movement = pd.DataFrame({"run": ["mmin", "mmin", "mmin", "utt_fusion", "utt_fusion", "utt_fusion"],
                             "condition": ["a", "v", "av"] * 2, "dist_to_full": [0.7, 0.3, 0.0, 0.8, 0.9, 0.0]}
                            ).set_index(["run", "condition"])
    text = movement_sentence(movement)
    assert "from its `av` position" in text
    assert "with `a` only, mmin 0.70, utt_fusion 0.80; with `v` only, mmin 0.30, utt_fusion 0.90." in text
    claims = evaluate_claims(per_condition({"mmin": 0.05, "nmer": 0.05}), CLAIMS)
    ua = pd.DataFrame({"a": [0.4], "v": [0.6], "av": [0.7]}, index=["mmin"])
    assert text in findings_markdown(claims, ua, ["a", "v", "av"], "builtin", movement)
    assert "moves a clip" not in findings_markdown(claims, ua, ["a", "v", "av"], "builtin")
