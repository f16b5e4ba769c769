"""The analysis notebooks' sections (03_analysis, 05_extended): each one's tables, figures and generated text.

The notebooks are thin: markdown, then one call per section. Everything is read from the runs' results (`results/`,
`extended/results/`), never from notebooks, and from the analysis' resolved params (`data/params/analysis.json`,
`mer_core.config`), which say which runs exist and what each one is (method, base, variant, task); which runs fill
which table follows from that (`mer_core.study`). `Study.load` keeps the runs that were trained (a run skipped for
its corpus, or not selected, is listed with its reason, `Study.skipped`). `Artefacts` writes every table (.md, .tex,
.csv) and figure (.png, .svg), shows it, and records its provenance (`mer_core.provenance`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from mer_core.convergence import convergence_summary, convergence_table, unconverged_runs
from mer_core.findings import evaluate_claims, findings_markdown, holm, noise_runs, verdict
from mer_core.provenance import Provenance
from mer_core.references import load_references, reference_table
from mer_core.report import (
    calibration_check,
    corpus_human_reference,
    corruption_curves,
    embedding_figure,
    embedding_summary,
    paired_comparison,
    paired_fraction_curve,
    robustness_comparison,
    robustness_curves,
    robustness_runs,
    robustness_table,
    save_figure,
    training_curves,
    with_missing_average,
    write_table,
)
from mer_core.robustness import setting_label
from mer_core.runtime import write_atomic
from mer_core.study import NOISE_RIVALS, VAVL_RIVALS, base_run, confusion_runs, family, rivals, table_rows
from mer_core.tables import confusion_grid, grid_table, mean_table, modality_table

RESULT_TABLES = ("per_condition", "history", "predictions", "robustness")
RESULTS = {"default": Path("results"), "extended": Path("extended/results")}


@dataclass
class Study:
    """The trained runs of a study and their results. `params`: the analysis' resolved params; `runs`: the summaries
    of the runs with results, in params order; `skipped`: {run: why it has none}; `results`: every result table of
    the runs (column `method` = the run)."""

    params: dict
    runs: dict[str, dict]
    skipped: dict[str, str]
    results: dict[str, pd.DataFrame]
    first: dict = field(repr=False)

    @classmethod
    def load(
        cls, params_path: str | Path = "data/params/analysis.json", studies: tuple[str, ...] = ("default",)
    ) -> "Study":
        params = json.loads(Path(params_path).read_text())
        runs, skipped, frames = {}, {}, {name: [] for name in RESULT_TABLES}
        for name, run in params["runs"].items():
            if run["study"] not in studies:
                continue
            folder = RESULTS[run["study"]] / name
            status = (
                json.loads((folder / "metrics.json").read_text())
                if (folder / "metrics.json").is_file()
                else {"status": "missing", "reason": f"no {folder / 'metrics.json'}: run `dvc repro`"}
            )
            if run["status"] != "train" or status["status"] != "trained":
                skipped[name] = run["reason"] or status.get("reason", status["status"])
                continue
            runs[name] = run
            for table in RESULT_TABLES:
                frames[table].append(pd.read_csv(folder / f"{table}.csv").assign(method=name))
        if not runs:
            raise FileNotFoundError(f"no trained run among {', '.join(params['runs'])} (skipped: {skipped})")
        first = json.loads(
            (RESULTS[next(iter(runs.values()))["study"]] / next(iter(runs)) / "summary.json").read_text()
        )
        results = {table: pd.concat(frames[table], ignore_index=True) for table in RESULT_TABLES}
        return cls(params, runs, skipped, results, first)

    @property
    def task(self) -> str:
        return self.params["task"]

    @property
    def classify(self) -> bool:
        return self.task == "classification"

    @property
    def precision(self) -> int:
        return self.params["analysis"]["precision"]

    @property
    def conditions(self) -> list[str]:
        """The test conditions, smallest first, the full one last."""
        return [c for c in dict.fromkeys(self.results["per_condition"]["condition"]) if c not in ("pooled", "mean")]

    @property
    def missing(self) -> list[str]:
        """The conditions with a modality missing (MMIN's Average is over these)."""
        return self.conditions[:-1]

    @property
    def classes(self) -> list[str]:
        return self.first["classes"]

    def sources(self, runs) -> list[str]:
        """The DVC stages whose outputs hold `runs`' results."""
        return [f"train@{r}" if self.runs[r]["study"] == "default" else f"extended/dvc.yaml:run@{r}" for r in runs]

    def part(self, table: str, runs: list[str]) -> pd.DataFrame:
        """The rows of a result table of `runs`, in that order."""
        frame = self.results[table]
        frame = frame[frame["method"].isin(runs)]
        return (
            frame.assign(method=pd.Categorical(frame["method"], runs, ordered=True))
            .sort_values("method", kind="stable")
            .assign(method=lambda f: f["method"].astype(str))
        )

    def missing_classes_note(self) -> str:
        """The caption's words on folds whose test speakers lack a class (a speaker who never recorded it: their UA is
        the mean recall over the classes they have), from the first run's summary; "" when every fold has every
        class."""
        missing = self.first.get("test_missing_classes", {})
        if not missing:
            return ""
        return (
            " UA averages the recall of the classes a fold's test speakers have: "
            + "; ".join(f"fold {fold}'s lack {', '.join(classes)}" for fold, classes in missing.items())
            + "."
        )

    def skipped_note(self) -> str | None:
        if not self.skipped:
            return None
        return "Not in the tables (no results): " + "; ".join(f"`{r}` ({why})" for r, why in self.skipped.items()) + "."


class Artefacts:
    """Writes, shows and records the provenance of a notebook's tables and figures under `out` (tables/, figures/,
    provenance.json)."""

    def __init__(self, out: str | Path, stage: str, lock: str, precision: int):
        self.out, self.precision = Path(out), precision
        self.provenance = Provenance(stage, lock)

    def table(self, table: pd.DataFrame, name: str, caption: str, sources: list[str], show: bool = True) -> None:
        write_table(table, name, self.out / "tables", caption)
        line = self.provenance.record(f"tables/{name}", sources)
        if show:
            display(Markdown(f"**{caption}**"), table, Markdown(line))

    def figure(self, figure: plt.Figure, name: str, sources: list[str]) -> None:
        save_figure(figure, name, self.out / "figures")
        line = self.provenance.record(f"figures/{name}", sources)
        plt.show()
        display(Markdown(line))

    def text(self, name: str, markdown: str, sources: list[str]) -> None:
        write_atomic(self.out / name, lambda p: p.write_text(markdown + "\n"))
        self.provenance.record(name, sources)
        display(Markdown(markdown))

    def close(self) -> None:
        self.provenance.write(self.out / "provenance.json")


def note(text: str) -> None:
    display(Markdown(text))


# ==================================================================================================== 03_analysis


def condition_tables(study: Study, art: Artefacts) -> None:
    """Table 1: UA, WA and macro-F1 per test condition (classification), or CCC per attribute (regression), every run
    of the default study; with the human reference row of CREMA-D where the corpus has one."""
    rows = table_rows(study.runs, "main")
    part = study.part("per_condition", rows)
    columns = study.conditions + ["pooled", "mean"]
    metrics = (
        (("ua", "UA (unweighted average recall)"), ("wa", "WA (accuracy)"), ("f1_macro", "macro-F1"))
        if study.classify
        else tuple((f"ccc_{a}", f"CCC of {a}") for a in study.first["targets"]) + (("ccc_mean", "mean CCC"),)
    )
    for metric, title in metrics:
        table = grid_table(part, metric, columns, study.precision)
        reference = corpus_human_reference(study.params["data"], study.precision) if metric == "ua" else None
        if reference is not None:
            table = pd.concat([table, reference.reindex(columns=columns, fill_value="")])
        art.table(
            table,
            f"conditions_{metric}",
            f"{title} per test condition, mean ± std over folds x seeds (test "
            "speakers); pooled: the replicated test set of every condition, mean: the mean of the columns."
            + (study.missing_classes_note() if metric == "ua" else ""),
            study.sources(rows),
        )
    if study.skipped_note():
        note(study.skipped_note())


def calibration(study: Study, art: Artefacts) -> None:
    """The built-in corpus's difficulty targets against the best UA per condition (the built-in corpus only)."""
    if study.params["data"]["corpus"] != "builtin" or not study.classify:
        note("*The calibration targets are the built-in corpus's (classification); not checked here.*")
        return
    rows = table_rows(study.runs, "main")
    ua = mean_table(study.part("per_condition", rows), "ua", study.conditions)
    check = calibration_check(ua, study.params["analysis"]["calibration"])
    art.table(
        check.round(study.precision),
        "calibration",
        "Calibration of the built-in corpus (UA, test speakers).",
        study.sources(rows),
    )
    if not check["met"].all():
        note("**Warning: a calibration target is not met** (the rows with `met = False`).")


def imagination_tables(study: Study, art: Artefacts) -> pd.DataFrame | None:
    """Table 2: MMIN's and IF-MMIN's table (the full-modality networks, MMIN, IF-MMIN and their variants): WA and UA
    per condition, `missing` (MMIN's Average) and `pooled`; then the paired comparisons it implies. Returns them."""
    rows = table_rows(study.runs, "imagination")
    if not rows:
        note("*None of the runs of MMIN's table is in this study.*")
        return None
    part = with_missing_average(study.part("per_condition", rows), study.missing)
    for metric, title in (("wa", "WA"), ("ua", "UA")):
        table = grid_table(part, metric, study.conditions + ["missing", "pooled"], study.precision).reindex(rows)
        art.table(
            table,
            f"imagination_{metric}",
            f"{title} of the missing-modality methods per test condition; "
            "`missing` = the conditions with a modality missing (MMIN's Average), `pooled` = every condition "
            "(the full one included). Mean ± std over folds x seeds.",
            study.sources(rows),
        )
    pairs = [
        (a, b)
        for a, b in (("ifmmin", "mmin"), ("mmin", "utt_fusion"), ("utt_dataaug", "utt_fusion"), ("mmin", "utt_dataaug"))
        if base_run(study.runs, a) and base_run(study.runs, b)
    ]
    named = [(base_run(study.runs, a), base_run(study.runs, b)) for a, b in pairs]
    named += [
        (runs[0], variant) for runs in (family(study.runs, m) for m in ("mmin", "ifmmin")) for variant in runs[1:]
    ]
    comparisons = pd.DataFrame([paired_comparison(part, a, b, "missing", "ua") for a, b in named])
    if len(comparisons):
        comparisons = comparisons[["a", "b", "difference", "wins", "pairs", "p_value"]].round(4)
        art.table(
            comparisons,
            "imagination_comparisons",
            "Paired comparisons on the missing-modality UA (a minus b, "
            "paired by fold x seed; unadjusted p: the claims' adjusted tests are in the Findings).",
            study.sources(rows),
        )
    return comparisons


def protocol_tables(study: Study, art: Artefacts) -> None:
    """Each method in its own protocol, every method under both: UA per condition with the missing modalities
    zero-filled (MMIN's and IF-MMIN's protocol) and noised as NMER trains (NMER's protocol: its training noise
    replaces them, the grid's cell of that noise type and T), side by side."""
    nmer = base_run(study.runs, "nmer")
    grid = study.params["robustness"]
    noise = study.runs[nmer]["noise"] if nmer else {"type": "gaussian", "steps": 100}  # NMER's official noise
    label = setting_label(noise["type"], float(noise["steps"]), "T")
    if noise["type"] not in grid["noise_types"] or noise["steps"] not in grid["intensities"]:
        note(f"*The robustness grid has no `{label}` cell (NMER's training noise): no protocol table.*")
        return
    rows = table_rows(study.runs, "main")
    clean = with_missing_average(study.part("per_condition", rows), study.missing)
    robust = study.part("robustness", rows)
    noised = robust[(robust["noise"] == noise["type"]) & (robust["level"] == float(noise["steps"]))]
    noised = noised.assign(condition=noised["condition"].replace({"pooled": "missing"}))
    columns = study.missing + ["missing"]
    both = pd.concat([clean.assign(protocol="zero-filled"), noised.assign(protocol=f"noised ({label})")])
    tables = {
        p: grid_table(both[both["protocol"] == p], "ua", columns, study.precision)
        for p in dict.fromkeys(both["protocol"])
    }
    table = pd.concat(tables, axis=1).reindex(rows)
    art.table(
        table,
        "protocols_ua",
        "UA with the missing modalities zero-filled (MMIN, IF-MMIN) or noised as NMER "
        f"trains ({label}, NMER's protocol); `missing` = the conditions with a modality missing. Mean ± std over "
        "folds x seeds.",
        study.sources(rows),
    )


def robustness_section(study: Study, art: Artefacts) -> pd.DataFrame:
    """Table 3 and NMER's figure: WA and UA under feature noise on the missing modalities, by noise type and T; the
    curves with the NMER paper's points as a labelled reference; NMER against each rival per setting. Returns the
    per-unit robustness rows (for the Findings)."""
    rows = table_rows(study.runs, "main")
    robust = robustness_runs(study.part("robustness", rows), study.part("per_condition", rows), study.missing)
    feature = robust[robust["unit"].isin(["", "T"])]
    if not (feature["unit"] == "T").any():
        note(
            "*No feature-noise cell: no test condition lacks a modality of this corpus (it has one), or "
            "`robustness.noise_types` is empty.*"
        )
        return robust
    for metric, title in (("wa", "WA"), ("ua", "UA")):
        art.table(
            robustness_table(feature, metric, study.precision),
            f"robustness_{metric}",
            f"{title} under feature noise on the missing modalities (pooled over the conditions with a modality "
            "missing), by noise type and intensity T. Mean ± std over folds x seeds.",
            study.sources(rows),
        )
    references = load_references()
    art.figure(
        robustness_curves(
            feature, "wa", rows, study.params["robustness"]["noise_types"], reference=references["nmer_wa_vs_noise"]
        ),
        "robustness_wa",
        study.sources(rows),
    )
    nmer = base_run(study.runs, "nmer")
    lines = []
    for rival in rivals(study.runs, NOISE_RIVALS) if nmer else []:
        comparison = robustness_comparison(feature, nmer, rival, "wa")
        art.table(
            comparison.round(4),
            f"robustness_nmer_vs_{rival}",
            f"{nmer} minus {rival}: WA per noise setting, paired by fold x seed (unadjusted p).",
            study.sources([nmer, rival]),
        )
        noisy = comparison.drop(index="clean (zero-filled)")
        better = noisy[(noisy["difference"] > 0) & (noisy["p_value"] < 0.05)].index.tolist()
        worse = noisy[(noisy["difference"] < 0) & (noisy["p_value"] < 0.05)].index.tolist()
        clean = comparison.loc["clean (zero-filled)"]
        lines.append(
            f"- **{nmer} vs {rival}**: higher mean WA in {(noisy['difference'] > 0).sum()} of {len(noisy)} "
            f"noise settings (mean difference {noisy['difference'].mean():+.3f}); significantly higher "
            f"(p < 0.05, unadjusted) in {', '.join(better) or 'none'}; significantly lower in "
            f"{', '.join(worse) or 'none'}. With zero-filled missing modalities: {clean['difference']:+.3f} "
            f"(p = {clean['p_value']:.3f})."
        )
    if lines:
        note("\n".join(lines))
    return robust


def corruption_section(study: Study, art: Artefacts) -> None:
    """Table 4: every run with both modalities present, one corrupted at the signal level; the curves; whether the
    ranking under feature noise predicts the ranking under real corruptions."""
    from scipy.stats import spearmanr

    rows = table_rows(study.runs, "main")
    full = study.conditions[-1]
    robust = study.part("robustness", rows)
    signal = robust[(robust["unit"] != "T") & (robust["condition"] == full)]
    if signal.empty:
        note(
            "*This feature store holds no signal-level corruption (a feature package, or `robustness.signal: false`).*"
        )
        return
    per_condition = study.part("per_condition", rows)
    clean_full = per_condition[per_condition["condition"] == full]
    labelled = pd.concat(
        [
            clean_full.assign(condition="clean"),
            signal.assign(
                condition=[
                    setting_label(n, lv, u) for n, lv, u in zip(signal["noise"], signal["level"], signal["unit"])
                ]
            ),
        ]
    )
    for metric, title in (("ua", "UA"), ("wa", "WA")):
        table = grid_table(labelled, metric, list(dict.fromkeys(labelled["condition"])), study.precision)
        art.table(
            table,
            f"corruptions_{metric}",
            f"{title} with every modality present (`{full}`), one of them "
            "corrupted at the signal level. Mean ± std over folds x seeds.",
            study.sources(rows),
        )
    art.figure(corruption_curves(robust, per_condition, "ua", rows, full), "corruptions_ua", study.sources(rows))
    feature = robust[(robust["unit"] == "T") & (robust["condition"] == "pooled")]
    transfer = pd.DataFrame(
        {
            "feature-noise WA": feature.groupby("method")["wa"].mean(),
            "corrupted UA": signal.groupby("method")["ua"].mean(),
            "UA lost to corruption": clean_full.groupby("method")["ua"].mean() - signal.groupby("method")["ua"].mean(),
        }
    ).reindex(rows)
    art.table(
        transfer.round(4),
        "robustness_transfer",
        "Feature-noise robustness against signal-corruption robustness, per run (means over settings).",
        study.sources(rows),
    )
    if len(transfer.dropna()) >= 3:
        level = spearmanr(transfer["feature-noise WA"], transfer["corrupted UA"], nan_policy="omit")
        loss = spearmanr(transfer["feature-noise WA"], -transfer["UA lost to corruption"], nan_policy="omit")
        lost = transfer["UA lost to corruption"]
        note(
            f"- Ranking by feature-noise WA vs by corrupted UA: Spearman ρ = {level.statistic:.2f} "
            f"(p = {level.pvalue:.3f}).\n- Ranking by feature-noise WA vs by the UA kept under corruption: ρ = "
            f"{loss.statistic:.2f} (p = {loss.pvalue:.3f}).\n- Most UA lost to corruption: {lost.idxmax()} "
            f"({lost.max():.3f}); least: {lost.idxmin()} ({lost.min():.3f})."
        )


def vavl_section(study: Study, art: Artefacts) -> None:
    """Table 5: VAVL's layout (macro- and micro-F1, or CCC per attribute, with audio only, face only and both), VAVL
    first, then every method's base run; VAVL against each rival, paired by unit."""
    rows = table_rows(study.runs, "vavl")
    vavl = base_run(study.runs, "vavl")
    if vavl is None:
        note("*No VAVL run in this study.*")
        return
    metrics = ["f1_macro", "f1_micro"] if study.classify else [f"ccc_{a}" for a in study.first["targets"]]
    headline = metrics[0] if study.classify else "ccc_mean"
    part = study.part("per_condition", rows)
    art.table(
        modality_table(part, metrics, study.conditions, study.precision),
        "vavl_table",
        f"{', '.join(metrics)} per test condition (mean ± std over folds x seeds).",
        study.sources(rows),
    )
    tests = pd.DataFrame(
        [
            paired_comparison(part, vavl, rival, condition, headline)
            for rival in rivals(study.runs, VAVL_RIVALS)
            for condition in study.conditions
        ]
    )
    if len(tests):
        tests = tests[["a", "b", "condition", "metric", "difference", "wins", "pairs", "p_value"]].round(4)
        art.table(
            tests,
            "vavl_tests",
            f"{vavl} minus each rival ({headline}), paired by fold x seed (unadjusted p).",
            study.sources(rows),
        )


def embedding_section(
    study: Study, art: Artefacts, embeddings_dir: str | Path = "results/embeddings"
) -> pd.DataFrame | None:
    """The joint representations in 2-D (the embedding stage's maps) and how far a missing modality moves a clip.
    Returns the movement table (for the Findings)."""
    files = sorted(Path(embeddings_dir).glob("*.csv"))
    runs = [f.stem for f in files if f.stem in study.runs]
    if not runs:
        note("*No embedding of a trained run (no method with a joint representation, or none trained).*")
        return None
    embeddings = pd.concat(
        [pd.read_csv(Path(embeddings_dir) / f"{run}.csv", dtype={"clip_id": str}) for run in runs], ignore_index=True
    )
    cfg = study.params["analysis"]["embedding"]
    sources = ["embedding"]
    art.figure(embedding_figure(embeddings, study.classes), "embedding", sources)
    movement = embedding_summary(embeddings, study.precision)
    art.table(
        movement,
        "embedding",
        f"Joint representations per run and condition (fold {cfg['fold']}, seed "
        f"{cfg['seed']}): accuracy, cosine to and normalised distance from the clip's all-modality vector.",
        sources,
    )
    return movement


def confusion_section(study: Study, art: Artefacts) -> None:
    """Row-normalised confusion matrices of the single-modality baselines and MMIN's full-modality network."""
    for run in confusion_runs(study.runs):
        art.figure(
            confusion_grid(study.results["predictions"], run, study.conditions, study.classes),
            f"confusion_{run}",
            study.sources([run]),
        )


def curves_section(study: Study, art: Artefacts) -> None:
    rows = table_rows(study.runs, "main")
    art.figure(training_curves(study.part("history", rows)), "training_curves", study.sources(rows))


def convergence_section(study: Study, art: Artefacts, runs: list[str] | None = None) -> pd.DataFrame:
    """The convergence table (every stage of every unit) and its summary per run and stage; returns the table."""
    runs = runs or list(study.runs)
    history = study.part("history", runs)
    max_epochs = {name: study.runs[name]["max_epochs"] for name in runs}
    table = convergence_table(history, max_epochs, study.params["stopping"])
    art.table(
        table.round(5),
        "convergence",
        "Every training stage of every unit: epochs trained, why it stopped "
        "(plateau of the validation criterion, or its maximum epochs), the epoch kept, the criterion's gain over "
        "the last `train.stopping.patience` epochs, and whether it converged (not stopped at its maximum while "
        "still improving).",
        study.sources(runs),
        show=False,
    )
    summary = convergence_summary(table)
    art.table(
        summary,
        "convergence_summary",
        "Convergence per run and stage (from reports/tables/convergence.csv).",
        study.sources(runs),
    )
    return table


def findings_section(
    study: Study,
    art: Artefacts,
    robust: pd.DataFrame,
    convergence: pd.DataFrame,
    movement: pd.DataFrame | None,
    name: str = "findings.md",
) -> pd.DataFrame:
    """The papers' claims tested on the study (`mer_core.findings`): the claims table and the Findings text."""
    rows = list(study.runs)
    tested = pd.concat(
        [with_missing_average(study.part("per_condition", rows), study.missing), noise_runs(robust)], ignore_index=True
    )
    alpha = study.params["analysis"]["alpha"]
    claims = evaluate_claims(tested, study.runs, alpha=alpha, unconverged=unconverged_runs(convergence))
    art.table(
        claims.round(4),
        "claims",
        "The papers' claims tested on this study (better minus worse, paired by fold "
        "x seed; p-values Holm-adjusted over the claims; `resolvable`: the difference detectable with 80% power "
        "at Holm's strictest threshold).",
        study.sources(rows),
        show=False,
    )
    ua = mean_table(study.part("per_condition", table_rows(study.runs, "main")), "ua", study.conditions)
    art.text(
        name,
        findings_markdown(claims, ua, study.conditions, study.params["data"]["corpus"], movement, alpha),
        study.sources(rows),
    )
    return claims


def references_section(art: Artefacts) -> None:
    art.table(
        reference_table(load_references(), art.precision),
        "references",
        "Published reference numbers (reference_results.yaml), by corpus.",
        ["reference_results.yaml"],
    )


# ==================================================================================================== 05_extended


def ablation_section(study: Study, art: Artefacts) -> None:
    """The extended study's variants (ablations and official switches) beside their base runs: the metric of each
    method's table on `missing` and every condition, and each variant minus its base, paired by unit."""
    variants = [
        n
        for n, r in study.runs.items()
        if r["study"] == "extended"
        and r["base"] in study.runs
        and r["task"] == study.task
        and not any(k.startswith("unpaired") for k in r["changes"])
    ]
    if not variants:
        note("*No ablation or switch run in the extended study.*")
        return
    bases = list(dict.fromkeys(study.runs[v]["base"] for v in variants))
    rows = [n for b in bases for n in [b, *[v for v in variants if study.runs[v]["base"] == b]]]
    metric = "ua" if study.classify else "ccc_mean"
    part = with_missing_average(study.part("per_condition", rows), study.missing)
    art.table(
        grid_table(part, metric, study.conditions + ["missing"], study.precision).reindex(rows),
        "variants",
        f"{metric.upper()} of each base run and its variants (ablations, official switches) per test condition "
        "and `missing`. Mean ± std over folds x seeds.",
        study.sources(rows),
    )
    tests = pd.DataFrame(
        [
            {
                **paired_comparison(part, v, study.runs[v]["base"], c, metric),
                "changes": ", ".join(f"{k}={val}" for k, val in study.runs[v]["changes"].items()),
            }
            for v in variants
            for c in [*study.conditions, "missing"]
        ]
    )
    art.table(
        tests[["a", "b", "changes", "condition", "difference", "wins", "pairs", "p_value"]].round(4),
        "variant_tests",
        "Each variant minus its base run, paired by fold x seed (unadjusted p).",
        study.sources(rows),
    )


def other_task_section(study: Study, art: Artefacts) -> None:
    """The runs retrained for the other task, in VAVL's layout; VAVL against each, paired."""
    rows = [n for n, r in study.runs.items() if r["task"] != study.task and r["study"] == "extended"]
    if not rows:
        note("*No run of the extended study trains for the other task.*")
        return
    task = study.runs[rows[0]]["task"]
    first = json.loads((RESULTS["extended"] / rows[0] / "summary.json").read_text())
    metrics = ["f1_macro", "f1_micro"] if task == "classification" else [f"ccc_{a}" for a in first["targets"]]
    headline = metrics[0] if task == "classification" else "ccc_mean"
    part = study.part("per_condition", rows)
    art.table(
        modality_table(part, metrics, study.conditions, study.precision),
        f"other_task_{task}",
        f"{task.capitalize()}: {', '.join(metrics)} per test condition (mean ± std over folds x seeds).",
        study.sources(rows),
    )
    vavl = next((n for n in rows if study.runs[n]["method"] == "vavl"), None)
    others = [other for other in rows if other != vavl]
    if vavl and others:
        tests = pd.DataFrame(
            [paired_comparison(part, vavl, other, c, headline) for other in others for c in study.conditions]
        )
        art.table(
            tests[["a", "b", "condition", "metric", "difference", "wins", "pairs", "p_value"]].round(4),
            f"other_task_{task}_tests",
            f"{vavl} minus each run ({headline}), paired by unit (unadjusted p).",
            study.sources(rows),
        )


def unpaired_section(study: Study, art: Artefacts) -> None:
    """The paired-fraction curve: audio-visual macro-F1 (or mean CCC) as the share of paired training clips falls,
    per method (1.0 = the default study's run), and each fraction against fully paired data, paired by unit."""
    unpaired = {n: r for n, r in study.runs.items() if any(k.startswith("unpaired") for k in r["changes"])}
    if not unpaired:
        note("*No partly unpaired run in the extended study.*")
        return
    metric = "f1_macro" if study.classify else "ccc_mean"
    full = study.conditions[-1]
    points = []
    for root in dict.fromkeys(r["base"] for r in unpaired.values()):
        points.append(study.part("per_condition", [root]).assign(paired=1.0, method=root))
        for name, run in unpaired.items():
            if run["base"] == root:
                shares = sum(v for k, v in run["changes"].items() if k.startswith("unpaired"))
                points.append(study.part("per_condition", [name]).assign(paired=round(1.0 - shares, 6), method=root))
    points = pd.concat(points, ignore_index=True)
    av = points[points["condition"] == full]
    methods = list(dict.fromkeys(av["method"]))
    art.figure(paired_fraction_curve(av, metric, methods), "unpaired_curve", study.sources(list(unpaired)))
    rows = []
    for method in methods:
        mine = points[points["method"] == method]
        for paired in sorted(set(mine["paired"]) - {1.0}, reverse=True):
            pair = pd.concat(
                [
                    mine[mine["paired"] == 1.0].assign(method="paired 1.0"),
                    mine[mine["paired"] == paired].assign(method=f"paired {paired}"),
                ]
            )
            for condition in study.conditions:
                c = paired_comparison(pair, f"paired {paired}", "paired 1.0", condition, metric)
                rows.append({**c, "a": f"{method} paired {paired}", "b": f"{method} paired 1.0"})
    tests = pd.DataFrame(rows)
    art.table(
        tests[["a", "b", "condition", "metric", "difference", "wins", "pairs", "p_value"]].round(4),
        "unpaired_tests",
        "Partly unpaired training against fully paired, paired by unit (unadjusted p).",
        study.sources(list(unpaired)),
    )


def extended_findings(study: Study, art: Artefacts, convergence: pd.DataFrame) -> pd.DataFrame:
    """The papers' claims that compare an extended-study run (the ablations), tested as `findings_section` tests the
    others (Holm over the claims tested here): the claims table and `findings.md` of the extended study."""
    rows = list(study.runs)
    tested = with_missing_average(study.part("per_condition", rows), study.missing)
    claims = evaluate_claims(
        tested, study.runs, alpha=study.params["analysis"]["alpha"], unconverged=unconverged_runs(convergence)
    )
    extended = {n for n, r in study.runs.items() if r["study"] == "extended"}
    claims = claims[claims["better"].isin(extended) | claims["worse"].isin(extended)].reset_index(drop=True)
    if not len(claims):
        note("*No claim compares an extended-study run here.*")
        return claims
    claims["p_holm"] = holm(claims["p_value"].tolist())
    unconverged = unconverged_runs(convergence)
    claims["verdict"] = [
        verdict(r.difference, r.p_holm, study.params["analysis"]["alpha"], not ({r.better, r.worse} & unconverged))
        for r in claims.itertuples()
    ]
    art.table(
        claims.round(4),
        "claims",
        "The papers' ablation claims tested on the extended study (better minus "
        "worse, paired by fold x seed; p-values Holm-adjusted over these claims).",
        study.sources(rows),
    )
    lines = [
        f"- {r.claim} ({r.paper}): `{r.better}` − `{r.worse}` = {r.difference:+.3f} on `{r.condition}`, 95% CI "
        f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}], Holm-adjusted p = {r.p_holm:.3f}: **{r.verdict}**."
        for r in claims.itertuples()
    ]
    art.text("findings.md", "\n".join(lines), study.sources(rows))
    return claims


def sensitivity_section(study: Study, art: Artefacts, convergence: pd.DataFrame) -> pd.DataFrame:
    """The default study's claims again with a base run replaced by each of its extended variants that is not an
    ablation (a setting changed, e.g. VAVL at another width): does a verdict depend on that setting? One row per
    (claim, run in the base's place), the base's own row first; p-values Holm-adjusted within each setting. The
    claims on the noise grid are left out: extended runs skip it."""
    variants = [
        n
        for n, r in study.runs.items()
        if r["study"] == "extended"
        and r["variant"] is None
        and r["base"] in study.runs
        and study.runs[r["base"]]["study"] == "default"
        and r["task"] == study.task
        and not any(k.startswith("unpaired") for k in r["changes"])
    ]
    if not variants:
        note("*No extended run changes a setting of a run the claims use.*")
        return pd.DataFrame()
    alpha = study.params["analysis"]["alpha"]
    unconverged = unconverged_runs(convergence)
    default = [n for n, r in study.runs.items() if r["study"] == "default"]
    tested = with_missing_average(study.part("per_condition", default + variants), study.missing)
    tables = []
    for base in dict.fromkeys(study.runs[v]["base"] for v in variants):
        for run in [base, *[v for v in variants if study.runs[v]["base"] == base]]:
            swapped = tested[tested["method"] != base].replace({"method": {run: base}}) if run != base else tested
            claims = evaluate_claims(swapped, {n: study.runs[n] for n in default}, alpha=alpha)
            claims = claims[(claims["better"] == base) | (claims["worse"] == base)].reset_index(drop=True)
            if not len(claims):
                continue
            claims["p_holm"] = holm(claims["p_value"].tolist())
            converged = (
                not ({run} | set(claims["better"]) | set(claims["worse"])) - {base} & unconverged
                and run not in unconverged
            )
            claims["verdict"] = [verdict(r.difference, r.p_holm, alpha, converged) for r in claims.itertuples()]
            changes = ", ".join(f"{k}={v}" for k, v in study.runs[run]["changes"].items()) if run != base else ""
            tables.append(claims.assign(base=base, run=run, setting=changes or "(the study's)"))
    table = pd.concat(tables, ignore_index=True)
    table = table[
        [
            "claim",
            "base",
            "run",
            "setting",
            "condition",
            "metric",
            "difference",
            "ci_low",
            "ci_high",
            "p_holm",
            "verdict",
        ]
    ].sort_values(["claim", "base"], kind="stable")
    art.table(
        table.round(4),
        "sensitivity",
        "The papers' claims with a base run replaced by a variant that changes "
        "one of its settings (better minus worse, paired by fold x seed; 95% CI; p Holm-adjusted within each "
        "setting): a verdict that changes with the setting depends on it.",
        study.sources(default + variants),
    )
    return table


def show_deviations(path: str | Path = "reports/deviations.md") -> None:
    """Show the deviations table the `deviations` stage wrote (`mer_core.deviations`)."""
    display(Markdown(Path(path).read_text()))
