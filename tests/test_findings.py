"""mer_core.findings: the papers' claims tested paired by unit (runs named by method and variant), Holm's adjustment,
the confidence intervals, the resolvable effect, the verdicts, and the generated section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mer_core.findings import (
    COLUMNS,
    NOISE,
    PAPER_CLAIMS,
    Claim,
    confidence_interval,
    evaluate_claims,
    findings_markdown,
    holm,
    movement_sentence,
    noise_runs,
    resolvable_effect,
    verdict,
)
from mer_core.study import RunRef

# the study's runs, named freely: the claims find them by method and variant
RUNS = {
    "men": {"method": "utt_fusion", "base": None, "variant": None},
    "ours": {"method": "mmin", "base": None, "variant": None},
    "ours_no_cycle": {"method": "mmin", "base": "ours", "variant": "no_cycle"},
    "denoised": {"method": "nmer", "base": None, "variant": None},
}
CLAIMS = (
    Claim("P1", "mmin beats utt_fusion", RunRef("mmin"), RunRef("utt_fusion"), "missing", "ua"),
    Claim("P2", "nmer beats mmin under noise", RunRef("nmer"), RunRef("mmin"), NOISE, "wa"),
    Claim("P3", "vavl beats mmin", RunRef("vavl"), RunRef("mmin"), "av", "ua"),  # no vavl run: skipped
    Claim("P4", "the cycle helps", RunRef("mmin"), RunRef("mmin", "no_cycle"), "missing", "ua"),
    Claim("P5", "mmin without inject", RunRef("ifmmin", "no_inject"), RunRef("mmin"), "av", "ua"),
)  # skipped


def per_condition(gap: dict[str, float], noise: float = 0.0) -> pd.DataFrame:
    """4 units; each run's UA/WA = base + its gap + a per-fold wobble (so paired tests have spread)."""
    rows = []
    for run in RUNS:
        for fold in range(4):
            wobble = (0.002, -0.001, 0.003, 0.0)[fold] * (run == "ours")
            value = 0.5 + gap.get(run, 0.0) + 0.01 * fold + wobble
            for condition in ("missing", "av"):
                rows.append({"method": run, "fold": fold, "seed": 0, "condition": condition, "ua": value, "wa": value})
            rows.append(
                {
                    "method": run,
                    "fold": fold,
                    "seed": 0,
                    "condition": NOISE,
                    "ua": value,
                    "wa": value + (noise if run == "denoised" else 0.0),
                }
            )
    return pd.DataFrame(rows)


# ============================================================================================== statistics


def test_holm_on_a_worked_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (kept monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    adjusted = holm([0.01, float("nan"), 0.04])  # NaN is neither adjusted nor counted
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert holm([]) == [] and holm([0.2]) == [0.2]


def test_holm_controls_the_family_wise_error_more_strictly_than_unadjusted_and_less_than_bonferroni():
    p = list(np.random.default_rng(0).uniform(0, 0.2, 12))
    adjusted = np.array(holm(p))
    assert (adjusted >= np.array(p) - 1e-15).all() and (adjusted <= np.minimum(1, np.array(p) * len(p)) + 1e-15).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()  # the step-down keeps the order of the p-values


def test_confidence_interval_is_the_paired_t_interval():
    differences = np.array([0.1, 0.2, 0.05, 0.15, -0.02])
    expected = stats.t.interval(0.95, len(differences) - 1, loc=differences.mean(), scale=stats.sem(differences))
    assert confidence_interval(differences) == pytest.approx(expected)
    narrower = stats.t.interval(0.8, len(differences) - 1, loc=differences.mean(), scale=stats.sem(differences))
    assert confidence_interval(differences, 0.8) == pytest.approx(narrower)
    assert all(math.isnan(v) for v in confidence_interval(np.array([0.1])))


def paired_t_power(effect: float, sd: float, pairs: int, alpha: float) -> float:
    """The exact power of the two-sided paired t-test (noncentral t)."""
    dof, critical = pairs - 1, stats.t.ppf(1 - alpha / 2, pairs - 1)
    shift = effect * math.sqrt(pairs) / sd
    return float(1 - stats.nct.cdf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift))


def test_resolvable_effect_falls_with_pairs_grows_with_the_spread_and_has_the_power_it_says():
    by_pairs = [resolvable_effect(0.02, n, 0.05) for n in (3, 4, 6, 12, 24, 48)]
    assert all(a > b for a, b in zip(by_pairs, by_pairs[1:]))
    assert resolvable_effect(0.04, 12, 0.05) == pytest.approx(2 * resolvable_effect(0.02, 12, 0.05))
    assert resolvable_effect(0.02, 12, 0.01) > resolvable_effect(0.02, 12, 0.05)  # a stricter threshold needs more
    for pairs in (6, 12, 24):
        effect = resolvable_effect(0.02, pairs, 0.05)
        assert paired_t_power(effect, 0.02, pairs, 0.05) == pytest.approx(0.8, abs=0.03)
    assert math.isnan(resolvable_effect(0.02, 1, 0.05))


def test_verdict_needs_significance_reads_the_sign_and_convergence():
    assert verdict(0.05, 0.01) == "holds" and verdict(-0.05, 0.01) == "reversed"
    assert verdict(0.05, 0.2) == "not resolved" and verdict(0.05, float("nan")) == "not resolved"
    assert verdict(0.05, 0.04, alpha=0.01) == "not resolved"
    assert verdict(0.05, 0.001, converged=False) == "not converged"
    assert verdict(-0.05, 0.5, converged=False) == "not converged"


# ============================================================================================== claims


def test_evaluate_claims_resolve_runs_by_method_and_variant_and_skip_absent_ones():
    claims = evaluate_claims(
        per_condition({"ours": 0.05, "denoised": 0.05, "ours_no_cycle": 0.02}, noise=-0.1), RUNS, CLAIMS
    )
    assert list(claims.columns) == [*COLUMNS, "resolvable"]
    assert list(claims["claim"]) == ["mmin beats utt_fusion", "nmer beats mmin under noise", "the cycle helps"]
    assert list(zip(claims["better"], claims["worse"])) == [
        ("ours", "men"),
        ("denoised", "ours"),
        ("ours", "ours_no_cycle"),
    ]
    first, second, third = claims.iloc[0], claims.iloc[1], claims.iloc[2]
    assert first["difference"] == pytest.approx(0.05 + 0.001) and first["wins"] == 4 and first["pairs"] == 4
    assert first["p_value"] < 0.05 and first["verdict"] == "holds"
    assert first["ci_low"] < first["difference"] < first["ci_high"] and first["ci_low"] > 0
    assert second["difference"] == pytest.approx(-0.1 - 0.001) and second["wins"] == 0
    assert second["verdict"] == "reversed" and second["ci_high"] < 0
    assert third["difference"] == pytest.approx(0.03 + 0.001) and third["verdict"] == "holds"
    assert claims["p_holm"].tolist() == pytest.approx(holm(claims["p_value"].tolist()))
    assert (claims["p_holm"] >= claims["p_value"]).all()
    assert (claims["resolvable"] > 0).all()


def test_a_claim_is_skipped_when_its_run_has_no_results_or_is_not_in_the_study():
    table = per_condition({"ours": 0.05})
    without = table[table["method"] != "ours_no_cycle"]
    assert "the cycle helps" not in set(evaluate_claims(without, RUNS, CLAIMS)["claim"])
    runs = {k: v for k, v in RUNS.items() if k != "men"}
    assert list(evaluate_claims(table, runs, CLAIMS)["claim"]) == ["nmer beats mmin under noise", "the cycle helps"]
    assert len(evaluate_claims(table, {}, CLAIMS)) == 0
    metric = (Claim("P", "by F1", RunRef("mmin"), RunRef("utt_fusion"), "missing", "f1_macro"),)
    assert len(evaluate_claims(table, RUNS, metric)) == 0  # the metric is not a column


def test_a_run_that_did_not_converge_gets_no_verdict_but_its_test():
    table = per_condition({"ours": 0.05, "denoised": 0.05, "ours_no_cycle": 0.02}, noise=-0.1)
    claims = evaluate_claims(table, RUNS, CLAIMS, unconverged={"ours_no_cycle"})
    assert list(claims["verdict"]) == ["holds", "reversed", "not converged"]
    assert claims.iloc[2]["p_value"] < 0.05 and claims.iloc[2]["difference"] > 0
    everything = evaluate_claims(table, RUNS, CLAIMS, unconverged={"ours"})
    assert set(everything["verdict"]) == {"not converged"}


def test_a_difference_within_the_spread_is_not_resolved():
    claims = evaluate_claims(per_condition({"ours": 0.0}), RUNS, CLAIMS[:1])
    assert claims.iloc[0]["wins"] == 2 and claims.iloc[0]["p_value"] > 0.05
    assert claims.iloc[0]["verdict"] == "not resolved" and claims.iloc[0]["ci_low"] < 0 < claims.iloc[0]["ci_high"]


def test_the_paper_claims_name_registered_methods_and_variants():
    from mer_core.params.methods import CATALOG

    for claim in PAPER_CLAIMS:
        for ref in (claim.better, claim.worse):
            assert ref.method in CATALOG, claim
            assert ref.variant is None or ref.variant in CATALOG[ref.method].variants, claim
        assert claim.condition in ("missing", NOISE, "a", "v", "av") and claim.better != claim.worse


def test_noise_runs_average_the_feature_noise_settings_per_run():
    runs = pd.DataFrame(
        [
            {
                "method": "nmer",
                "fold": 0,
                "seed": 0,
                "noise": "clean",
                "modality": "missing",
                "level": 0.0,
                "unit": "",
                "wa": 0.9,
            },
            {
                "method": "nmer",
                "fold": 0,
                "seed": 0,
                "noise": "gaussian",
                "modality": "missing",
                "level": 20.0,
                "unit": "T",
                "wa": 0.6,
            },
            {
                "method": "nmer",
                "fold": 0,
                "seed": 0,
                "noise": "impulse",
                "modality": "missing",
                "level": 100.0,
                "unit": "T",
                "wa": 0.4,
            },
            {
                "method": "nmer",
                "fold": 0,
                "seed": 0,
                "noise": "babble",
                "modality": "audio",
                "level": 0.0,
                "unit": "dB",
                "wa": 0.1,
            },
        ]
    )  # a signal corruption: not feature noise
    table = noise_runs(runs)
    assert len(table) == 1 and table.iloc[0]["condition"] == NOISE
    assert table.iloc[0]["wa"] == pytest.approx(0.5)


# ============================================================================================== the section


def test_findings_markdown_groups_the_claims_by_verdict_with_their_effects():
    claims = evaluate_claims(per_condition({"ours": 0.05, "denoised": 0.05}), RUNS, CLAIMS[:2])  # nmer level with mmin
    ua = pd.DataFrame({"a": [0.4, 0.5], "v": [0.6, 0.55], "av": [0.7, 0.72]}, index=["ours", "men"])
    text = findings_markdown(claims, ua, ["a", "v", "av"], corpus="builtin")
    assert "`a` 0.500 (men); `v` 0.600 (ours); `av` 0.720 (men)" in text
    assert "Fusion adds +0.120 UA" in text
    assert "**What holds here** (1 of 2)" in text and "**Not resolved here" in text and "reversed here" not in text
    assert "`ours` − `men` = +0.051 UA on `missing`, 95% CI [" in text and "(4 of 4 units won, p = " in text
    assert "corpus, `builtin`" in text and "4 pairs" in text and "the 2 p-values Holm-adjusted" in text
    assert "the study resolves (80% power" in text
    assert not math.isnan(claims["p_value"].iloc[0])


def test_findings_markdown_lists_the_unconverged_claims_apart():
    claims = evaluate_claims(
        per_condition({"ours": 0.05, "ours_no_cycle": 0.02}), RUNS, CLAIMS, unconverged={"ours_no_cycle"}
    )
    ua = pd.DataFrame({"a": [0.4], "v": [0.6], "av": [0.7]}, index=["ours"])
    text = findings_markdown(claims, ua, ["a", "v", "av"], "builtin")
    assert "**No verdict: a run did not converge" in text and "- the cycle helps (P4)" in text


def test_the_movement_sentence_ranks_runs_by_distance_per_missing_condition():
    movement = pd.DataFrame(
        {
            "run": ["mmin", "mmin", "mmin", "utt_fusion", "utt_fusion", "utt_fusion"],
            "condition": ["a", "v", "av"] * 2,
            "dist_to_full": [0.7, 0.3, 0.0, 0.8, 0.9, 0.0],
        }
    ).set_index(["run", "condition"])
    text = movement_sentence(movement)
    assert "from its `av` position" in text
    assert "with `a` only, mmin 0.70, utt_fusion 0.80; with `v` only, mmin 0.30, utt_fusion 0.90." in text
    claims = evaluate_claims(per_condition({"ours": 0.05, "denoised": 0.05}), RUNS, CLAIMS)
    ua = pd.DataFrame({"a": [0.4], "v": [0.6], "av": [0.7]}, index=["ours"])
    assert text in findings_markdown(claims, ua, ["a", "v", "av"], "builtin", movement)
    assert "moves a clip" not in findings_markdown(claims, ua, ["a", "v", "av"], "builtin")
