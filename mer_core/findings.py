"""The "Findings" section of the analysis: each paper's claims tested on our runs, written from the numbers.

A `Claim` says that run `better` beats run `worse` on `metric` under `condition`. The runs are named by method and
variant (`mer_core.study.RunRef`: "the study's MMIN run", "MMIN without its cycle AE"), resolved among the runs the
study trained, so the claims follow whatever runs a study has. The condition is a test condition of
`per_condition.csv` (`a`, `v`, `av`, ...), `missing` (MMIN's Average over the conditions with a modality missing,
`report.with_missing_average`) or `noise` (NMER's protocol: the mean over every feature-noise setting, each pooled
over the missing-modality conditions, `report.robustness_runs`). Each is tested paired by unit (fold x seed,
`report.paired_comparison`): the mean difference with its 95% confidence interval (paired t), the paired t-test's
p-value, and that p-value adjusted for the number of claims tested (Holm's step-down method, which controls the
family-wise error rate at `alpha`). The verdict:

- `not converged`: a stage of either run stopped at its maximum epoch count while its validation criterion was still
  improving (`mer_core.convergence`), so the comparison says more about the budget than about the methods;
- `holds`: `better` is higher and the Holm-adjusted p < `alpha`;
- `reversed`: `better` is lower, adjusted p < `alpha`;
- `not resolved`: adjusted p >= `alpha` (the difference is within the spread over units), or fewer than 2 pairs.

`PAPER_CLAIMS` are the papers' claims as far as docs/methods.md knows them (§6: the result tables are not
transcribed, so sources are the abstracts, the baselines and ablations in the released code, and NMER's figure).
A claim whose runs are not in the study is skipped. `findings_markdown` writes the section: what holds, what does
not, what is not resolved or not converged, each with its effect size and interval, and the effect the study can
resolve (`resolvable_effect`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from mer_core.report import paired_comparison
from mer_core.study import RunRef, resolve_ref

ALPHA = 0.05
POWER = 0.8
NOISE = "noise"
METRIC_LABELS = {"ua": "UA", "wa": "WA", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}
VERDICTS = ("holds", "reversed", "not resolved", "not converged")


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    better: RunRef
    worse: RunRef
    condition: str
    metric: str


MMIN, IFMMIN, NMER, VAVL = (
    "MMIN (ACL 2021)",
    "IF-MMIN (ICASSP 2023)",
    "NMER (arXiv 2311.16114)",
    "VAVL (arXiv 2305.07216)",
)
PAPER_CLAIMS = (
    Claim(
        MMIN,
        "MMIN beats the full-modality network (MEN) under missing modalities",
        RunRef("mmin"),
        RunRef("utt_fusion"),
        "missing",
        "ua",
    ),
    Claim(
        MMIN,
        "imagination beats training with random missing modalities alone (MEN + aug)",
        RunRef("mmin"),
        RunRef("utt_dataaug"),
        "missing",
        "ua",
    ),
    Claim(
        MMIN,
        "the cycle autoencoder helps (MMIN-AE ablation)",
        RunRef("mmin"),
        RunRef("mmin", "no_cycle"),
        "missing",
        "ua",
    ),
    Claim(IFMMIN, "IF-MMIN beats MMIN under missing modalities", RunRef("ifmmin"), RunRef("mmin"), "missing", "ua"),
    Claim(IFMMIN, "CMD in stage 1 helps", RunRef("ifmmin"), RunRef("ifmmin", "no_cmd"), "missing", "ua"),
    Claim(
        IFMMIN,
        "injecting the invariant features into every block helps",
        RunRef("ifmmin"),
        RunRef("ifmmin", "no_inject"),
        "missing",
        "ua",
    ),
    Claim(IFMMIN, "the invariant-feature loss helps", RunRef("ifmmin"), RunRef("ifmmin", "no_inv"), "missing", "ua"),
    Claim(NMER, "NMER beats MMIN with noisy modalities", RunRef("nmer"), RunRef("mmin"), NOISE, "wa"),
    Claim(NMER, "NMER beats IF-MMIN with noisy modalities", RunRef("nmer"), RunRef("ifmmin"), NOISE, "wa"),
    Claim(NMER, "NMER beats MEN with noisy modalities", RunRef("nmer"), RunRef("utt_fusion"), NOISE, "wa"),
    Claim(
        VAVL,
        "one VAVL model beats the full-modality network when a modality is missing",
        RunRef("vavl"),
        RunRef("utt_fusion"),
        "missing",
        "f1_macro",
    ),
    Claim(VAVL, "VAVL beats a strong baseline with audio only", RunRef("vavl"), RunRef("utt_dataaug"), "a", "f1_macro"),
    Claim(VAVL, "VAVL beats a strong baseline with video only", RunRef("vavl"), RunRef("utt_dataaug"), "v", "f1_macro"),
    Claim(
        VAVL,
        "VAVL beats a strong baseline with audio and video",
        RunRef("vavl"),
        RunRef("utt_dataaug"),
        "av",
        "f1_macro",
    ),
    Claim(VAVL, "VAVL's shared layers help", RunRef("vavl"), RunRef("vavl", "no_shared"), "av", "f1_macro"),
    Claim(VAVL, "VAVL's residual connection helps", RunRef("vavl"), RunRef("vavl", "no_residual"), "av", "f1_macro"),
    Claim(VAVL, "VAVL's reconstruction loss helps", RunRef("vavl"), RunRef("vavl", "no_rec"), "av", "f1_macro"),
)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of `p_values` (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def confidence_interval(differences: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The paired t confidence interval of the mean of `differences` (NaN with fewer than 2)."""
    n = len(differences)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(differences, ddof=1) / np.sqrt(n)
    mean = float(np.mean(differences))
    return mean - half, mean + half


def resolvable_effect(sd: float, pairs: int, alpha: float, power: float = POWER) -> float:
    """The smallest mean difference a two-sided paired t-test at level `alpha` detects with probability `power`,
    for `pairs` pairs whose differences have standard deviation `sd` (the usual approximation
    (t_{1-alpha/2} + t_{power}) sd / sqrt(n), n - 1 degrees of freedom)."""
    if pairs < 2:
        return float("nan")
    dof = pairs - 1
    return float((stats.t.ppf(1 - alpha / 2, dof) + stats.t.ppf(power, dof)) * sd / np.sqrt(pairs))


def verdict(difference: float, p_value: float, alpha: float = ALPHA, converged: bool = True) -> str:
    """`not converged`, `holds`, `reversed` or `not resolved` (p NaN, e.g. one pair, counts as not resolved)."""
    if not converged:
        return "not converged"
    if not p_value < alpha:
        return "not resolved"
    return "holds" if difference > 0 else "reversed"


def noise_runs(robustness_runs: pd.DataFrame) -> pd.DataFrame:
    """Per unit (method, fold, seed), the mean of each metric over the feature-noise settings (unit T), as rows of
    condition `noise` (NMER's protocol; `robustness_runs` from `report.robustness_runs`)."""
    noisy = robustness_runs[(robustness_runs["noise"] != "clean") & (robustness_runs["unit"] == "T")]
    metrics = [c for c in noisy.columns if c not in ("method", "fold", "seed", "noise", "modality", "level", "unit")]
    return noisy.groupby(["method", "fold", "seed"], sort=False)[metrics].mean().reset_index().assign(condition=NOISE)


COLUMNS = [
    "paper",
    "claim",
    "better",
    "worse",
    "condition",
    "metric",
    "difference",
    "ci_low",
    "ci_high",
    "wins",
    "pairs",
    "p_value",
    "p_holm",
    "verdict",
]  # and `resolvable`


def evaluate_claims(
    per_condition: pd.DataFrame,
    runs: Mapping[str, dict],
    claims=PAPER_CLAIMS,
    alpha: float = ALPHA,
    unconverged: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """One row per claim whose runs, condition and metric the study has (`runs`: the summaries of the runs trained;
    `per_condition` holds the conditions the claims name: add `missing` and `noise` rows first, see the module
    docstring): the claim, the runs compared, the paired comparison (`difference` = better - worse with its 95% CI,
    `wins` of `pairs`, `p_value`, `p_holm` adjusted over the claims tested) and its `verdict`; `unconverged`: the runs
    with a stage that stopped at its maximum while still improving."""
    rows = []
    for claim in claims:
        better, worse = resolve_ref(runs, claim.better), resolve_ref(runs, claim.worse)
        part = per_condition[per_condition["condition"] == claim.condition]
        if (
            better is None
            or worse is None
            or claim.metric not in part.columns
            or not {better, worse} <= set(part["method"])
        ):
            continue
        result = paired_comparison(part, better, worse, claim.condition, claim.metric)
        table = part.pivot_table(index=["fold", "seed"], columns="method", values=claim.metric)[
            [better, worse]
        ].dropna()
        differences = (table[better] - table[worse]).to_numpy()
        low, high = confidence_interval(differences)
        rows.append(
            {
                "sd": float(np.std(differences, ddof=1)) if len(differences) > 1 else float("nan"),
                "paper": claim.paper,
                "claim": claim.claim,
                "better": better,
                "worse": worse,
                "condition": claim.condition,
                "metric": claim.metric,
                "difference": result["difference"],
                "ci_low": low,
                "ci_high": high,
                "wins": result["wins"],
                "pairs": result["pairs"],
                "p_value": result["p_value"],
                "converged": not ({better, worse} & set(unconverged)),
            }
        )
    table = pd.DataFrame(rows, columns=[*COLUMNS[:-2], "converged", "sd"])
    table["p_holm"] = holm(table["p_value"].tolist()) if len(table) else []
    table["verdict"] = [verdict(r.difference, r.p_holm, alpha, r.converged) for r in table.itertuples()]
    # the difference each comparison resolves with 80% power at Holm's strictest threshold (alpha / claims)
    table["resolvable"] = [resolvable_effect(r.sd, r.pairs, alpha / max(len(table), 1)) for r in table.itertuples()]
    return table[COLUMNS + ["resolvable"]]


def _effect(row) -> str:
    p = "no test" if row.p_value != row.p_value else f"p = {row.p_value:.3f}, Holm-adjusted {row.p_holm:.3f}"
    interval = "" if row.ci_low != row.ci_low else f", 95% CI [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
    return (
        f"`{row.better}` − `{row.worse}` = {row.difference:+.3f} {METRIC_LABELS.get(row.metric, row.metric)} "
        f"on `{row.condition}`{interval} ({row.wins} of {row.pairs} units won, {p})"
    )


def movement_sentence(movement: pd.DataFrame) -> str:
    """How far a missing modality moves a clip's joint representation, per run (`report.embedding_summary`:
    `dist_to_full` by (run, condition); 0 = not moved, 1 = as far as another clip), least moved first."""
    full = max(movement.index.get_level_values("condition"), key=len)
    parts = []
    for condition, part in movement["dist_to_full"].groupby(level="condition", sort=False):
        if condition != full:
            ranked = part.droplevel("condition").sort_values()
            parts.append(f"with `{condition}` only, " + ", ".join(f"{run} {d:.2f}" for run, d in ranked.items()))
    return (
        "A missing modality moves a clip's joint representation away from its `" + full + "` position by (in "
        "units of the distance between two clips; 0 = not moved): " + "; ".join(parts) + "."
    )


def findings_markdown(
    claims: pd.DataFrame,
    ua: pd.DataFrame,
    conditions: list[str],
    corpus: str,
    movement: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> str:
    """The Findings section: the study-wide facts from the mean UA table `ua` (methods x conditions) and, given
    `movement` (`report.embedding_summary`), how far a missing modality moves each run's joint representation;
    then the claims grouped by verdict, each with its effect size and paired test."""
    lines = []
    best = ua[conditions].idxmax()
    lines.append(
        "**The study.** Best mean UA per test condition: "
        + "; ".join(f"`{c}` {ua.loc[best[c], c]:.3f} ({best[c]})" for c in conditions)
        + "."
    )
    singles = [c for c in conditions if len(c) == 1]
    full = conditions[-1]
    if singles and len(full) > 1:
        gain = ua[full].max() - ua[singles].max().max()
        drop = ua[full] - ua[singles].min(axis=1)
        lines.append(
            f"Fusion adds {gain:+.3f} UA over the best single-modality result. A model's drop from `{full}` "
            f"to its worst single-modality condition ranges from {drop.min():.3f} ({drop.idxmin()}) to "
            f"{drop.max():.3f} ({drop.idxmax()})."
        )
    if movement is not None and len(movement) and len(set(movement.index.get_level_values("condition"))) > 1:
        lines.append(movement_sentence(movement))  # (one modality: no condition moves a clip)
    pairs = sorted(set(claims["pairs"])) if len(claims) else []
    lines.append(
        f"\nEach claim below is tested paired by unit ({' or '.join(map(str, pairs)) or 'no'} pairs of "
        f"fold x seed; paired t-test, two-sided; the {len(claims)} p-values Holm-adjusted, family-wise "
        f"α = {alpha}; 95% confidence intervals of the mean difference). The papers measured on their own "
        f"corpora (IEMOCAP, MSP-IMPROV, CREMA-D, CMU-MOSEI); what follows is what carries over to this "
        f"study's corpus, `{corpus}`."
    )
    if len(claims) and claims["resolvable"].notna().any():
        lines.append(
            f"With these pairs the study resolves (80% power, at Holm's strictest threshold) a difference of "
            f"about {claims['resolvable'].median():.3f} on the median claim (from "
            f"{claims['resolvable'].min():.3f} to {claims['resolvable'].max():.3f}, as the spread of the "
            f"paired differences varies); a smaller true effect can go unresolved."
        )
    titles = {
        "holds": "What holds here",
        "reversed": "What is reversed here",
        "not resolved": "Not resolved here (within the spread over units)",
        "not converged": "No verdict: a run did not converge (a stage stopped at its maximum epochs while still "
        "improving)",
    }
    for name in VERDICTS:
        part = claims[claims["verdict"] == name]
        if len(part):
            lines.append(f"\n**{titles[name]}** ({len(part)} of {len(claims)}):\n")
            lines += [f"- {row.claim} ({row.paper}): {_effect(row)}." for row in part.itertuples()]
    if len(claims):
        largest = claims.loc[claims["difference"].abs().idxmax()]
        lines.append(
            f"\nThe largest difference: {_effect(largest)}, on the claim that {largest['claim']} "
            f"({largest['verdict']})."
        )
    return "\n".join(lines)
