"""The "Findings" section of the analysis: each paper's claims tested on our runs, written from the numbers.

A `Claim` says that run `better` beats run `worse` on `metric` under `condition`. The condition is a test
condition of `per_condition.csv` (`a`, `v`, `av`, ...), `missing` (MMIN's Average over the conditions with a
modality missing, `report.with_missing_average`) or `noise` (NMER's protocol: the mean over every feature-noise
setting, each pooled over the missing-modality conditions, `report.robustness_runs`). Each is tested paired by
run (fold x seed, `report.paired_comparison`), and its verdict is:

- `holds`: `better` is higher and the paired t-test gives p < `ALPHA`;
- `reversed`: `better` is lower, p < `ALPHA`;
- `not resolved`: p >= `ALPHA` (the difference is within the spread over runs), or fewer than 2 pairs.

`PAPER_CLAIMS` are the papers' claims as far as docs/methods.md knows them (§6: the result tables are not
transcribed, so sources are the abstracts, the baselines and ablations in the released code, and NMER's
figure). A claim whose runs are not in the study is skipped. `findings_markdown` writes the section: what
holds, what does not, what is not resolved, each with its effect size, and the study-wide facts around them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from mer_core.report import paired_comparison

ALPHA = 0.05
NOISE = "noise"
METRIC_LABELS = {"ua": "UA", "wa": "WA", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}
VERDICTS = ("holds", "reversed", "not resolved")


@dataclass(frozen=True)
class Claim:
    paper: str
    claim: str
    better: str
    worse: str
    condition: str
    metric: str


PAPER_CLAIMS = (
    Claim("MMIN (ACL 2021)", "MMIN beats the full-modality network (MEN) under missing modalities",
          "mmin", "utt_fusion", "missing", "ua"),
    Claim("MMIN (ACL 2021)", "imagination beats training with random missing modalities alone (MEN + aug)",
          "mmin", "utt_dataaug", "missing", "ua"),
    Claim("MMIN (ACL 2021)", "the cycle autoencoder helps (MMIN-AE ablation)", "mmin", "mmin_no_cycle", "missing",
          "ua"),
    Claim("IF-MMIN (ICASSP 2023)", "IF-MMIN beats MMIN under missing modalities", "ifmmin", "mmin", "missing", "ua"),
    Claim("IF-MMIN (ICASSP 2023)", "CMD in stage 1 helps", "ifmmin", "ifmmin_no_cmd", "missing", "ua"),
    Claim("IF-MMIN (ICASSP 2023)", "injecting the invariant features into every block helps", "ifmmin",
          "ifmmin_no_inject", "missing", "ua"),
    Claim("IF-MMIN (ICASSP 2023)", "the invariant-feature loss helps", "ifmmin", "ifmmin_no_inv", "missing", "ua"),
    Claim("NMER (arXiv 2311.16114)", "NMER beats MMIN with noisy modalities", "nmer", "mmin", NOISE, "wa"),
    Claim("NMER (arXiv 2311.16114)", "NMER beats IF-MMIN with noisy modalities", "nmer", "ifmmin", NOISE, "wa"),
    Claim("NMER (arXiv 2311.16114)", "NMER beats MEN with noisy modalities", "nmer", "utt_fusion", NOISE, "wa"),
    Claim("VAVL (arXiv 2305.07216)", "one VAVL model beats the full-modality network when a modality is missing",
          "vavl", "utt_fusion", "missing", "f1_macro"),
    Claim("VAVL (arXiv 2305.07216)", "VAVL beats a strong baseline with audio only", "vavl", "utt_dataaug", "a",
          "f1_macro"),
    Claim("VAVL (arXiv 2305.07216)", "VAVL beats a strong baseline with video only", "vavl", "utt_dataaug", "v",
          "f1_macro"),
    Claim("VAVL (arXiv 2305.07216)", "VAVL beats a strong baseline with audio and video", "vavl", "utt_dataaug", "av",
          "f1_macro"),
)


def verdict(difference: float, p_value: float, alpha: float = ALPHA) -> str:
    """`holds`, `reversed` or `not resolved` (p NaN, e.g. one pair, counts as not resolved)."""
    if not p_value < alpha:
        return "not resolved"
    return "holds" if difference > 0 else "reversed"


def noise_runs(robustness_runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (method, fold, seed), the mean of each metric over the feature-noise settings (unit T), as rows of
    condition `noise` (NMER's protocol; `robustness_runs` from `report.robustness_runs`)."""
    noisy = robustness_runs[(robustness_runs["noise"] != "clean") & (robustness_runs["unit"] == "T")]
    metrics = [c for c in noisy.columns if c not in ("method", "fold", "seed", "noise", "modality", "level", "unit")]
    return noisy.groupby(["method", "fold", "seed"], sort=False)[metrics].mean().reset_index().assign(condition=NOISE)


def evaluate_claims(per_condition: pd.DataFrame, claims=PAPER_CLAIMS, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per claim whose runs, condition and metric the study has: the claim, the paired comparison
    (`difference` = better - worse, `wins` of `pairs`, `p_value`) and its `verdict`. `per_condition` holds the
    conditions the claims name (add `missing` and `noise` rows first, see the module docstring)."""
    rows = []
    for claim in claims:
        part = per_condition[per_condition["condition"] == claim.condition]
        if claim.metric not in part.columns or not {claim.better, claim.worse} <= set(part["method"]):
            continue
        result = paired_comparison(part, claim.better, claim.worse, claim.condition, claim.metric)
        rows.append({**asdict(claim), **{k: result[k] for k in ("difference", "wins", "pairs", "p_value")},
                     "verdict": verdict(result["difference"], result["p_value"], alpha)})
    columns = [*Claim.__dataclass_fields__, "difference", "wins", "pairs", "p_value", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _effect(row) -> str:
    p = "no test" if row.p_value != row.p_value else f"p = {row.p_value:.3f}"
    return (f"`{row.better}` − `{row.worse}` = {row.difference:+.3f} {METRIC_LABELS.get(row.metric, row.metric)} "
            f"on `{row.condition}` ({row.wins} of {row.pairs} runs, {p})")


def movement_sentence(movement: pd.DataFrame) -> str:
    """How far a missing modality moves a clip's joint representation, per run (`report.embedding_summary`:
    `dist_to_full` by (run, condition); 0 = not moved, 1 = as far as another clip), least moved first."""
    full = max(movement.index.get_level_values("condition"), key=len)
    parts = []
    for condition, part in movement["dist_to_full"].groupby(level="condition", sort=False):
        if condition != full:
            ranked = part.droplevel("condition").sort_values()
            parts.append(f"with `{condition}` only, " + ", ".join(f"{run} {d:.2f}" for run, d in ranked.items()))
    return ("A missing modality moves a clip's joint representation away from its `" + full + "` position by (in "
            "units of the distance between two clips; 0 = not moved): " + "; ".join(parts) + ".")


def findings_markdown(claims: pd.DataFrame, ua: pd.DataFrame, conditions: list[str], corpus: str,
                      movement: pd.DataFrame | None = None, alpha: float = ALPHA) -> str:
    """The Findings section: the study-wide facts from the mean UA table `ua` (methods x conditions) and, given
    `movement` (`report.embedding_summary`), how far a missing modality moves each run's joint representation;
    then the claims grouped by verdict, each with its effect size and paired test."""
    lines = []
    best = ua[conditions].idxmax()
    lines.append("**The study.** Best mean UA per test condition: "
                 + "; ".join(f"`{c}` {ua.loc[best[c], c]:.3f} ({best[c]})" for c in conditions) + ".")
    singles = [c for c in conditions if len(c) == 1]
    full = conditions[-1]
    if singles and len(full) > 1:
        gain = ua[full].max() - ua[singles].max().max()
        drop = ua[full] - ua[singles].min(axis=1)
        lines.append(f"Fusion adds {gain:+.3f} UA over the best single-modality result. A model's drop from `{full}` "
                     f"to its worst single-modality condition ranges from {drop.min():.3f} ({drop.idxmin()}) to "
                     f"{drop.max():.3f} ({drop.idxmax()}).")
    if movement is not None and len(movement):
        lines.append(movement_sentence(movement))
    pairs = sorted(set(claims["pairs"])) if len(claims) else []
    lines.append(f"\nEach claim below is tested paired by run ({' or '.join(map(str, pairs)) or 'no'} pairs of "
                 f"fold x seed; paired t-test, two-sided, α = {alpha}). The papers measured on their own corpora "
                 f"(IEMOCAP, MSP-IMPROV, CREMA-D, CMU-MOSEI); what follows is what carries over to this study's "
                 f"corpus, `{corpus}`.")
    titles = {"holds": "What holds here", "reversed": "What is reversed here",
              "not resolved": "Not resolved here (within the spread over runs)"}
    for name in VERDICTS:
        part = claims[claims["verdict"] == name]
        if len(part):
            lines.append(f"\n**{titles[name]}** ({len(part)} of {len(claims)}):\n")
            lines += [f"- {row.claim} ({row.paper}): {_effect(row)}." for row in part.itertuples()]
    if len(claims):
        largest = claims.loc[claims["difference"].abs().idxmax()]
        lines.append(f"\nThe largest difference: {_effect(largest)}, on the claim that {largest['claim']} "
                     f"({largest['verdict']}).")
    return "\n".join(lines)
