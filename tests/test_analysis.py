"""mer_core.analysis: the analysis notebooks' sections on a tiny study trained here (helpers.run_method on the tiny
store, results written where the training stages write them): `Study.load` keeps the trained runs and lists the
others with their reason, `Artefacts` writes every table and figure with one provenance record, and each section of
03_analysis and 05_extended runs on it and writes what it says."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from helpers import run_method
from tiny import build_tiny_store, make_tiny_params

from mer_core import analysis as sections
from mer_core.config import resolve_runs, stage_params
from mer_core.findings import COLUMNS as CLAIM_COLUMNS
from mer_core.findings import evaluate_claims

DEFAULT_TRAINED = ["audio_only", "utt_fusion", "utt_dataaug", "mmin", "nmer"]
EXTENDED_TRAINED = ["mmin_no_cycle", "mmin_wide", "audio_only_regression", "utt_fusion_paired0.5"]
NOT_TRAINED = "visual_only"  # selected, but its stage has not run: no results


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder holding the analyses' resolved params and the results of a tiny study: 2 units (folds 0 and
    1) of five default runs and four extended ones (an ablation, a setting changed, a run of the other task, a partly
    unpaired run);
    the runs not selected by train.runs wrote their skip records; `visual_only` was selected but never trained."""
    root = tmp_path_factory.mktemp("project")
    store = build_tiny_store(root / "data" / "features" / "builtin", attributes=True)
    params = make_tiny_params(
        store,
        epochs=2,
        folds=[0, 1],
        runs=[*DEFAULT_TRAINED, NOT_TRAINED],
        sections={
            "extended": {
                "runs": {
                    "mmin_no_cycle": {"base": "mmin", "set": {"cycle_weight": 0.0}},
                    "mmin_wide": {"base": "mmin", "set": {"hidden": 12}},
                },
                "other_task": {"methods": ["audio_only"]},
                "unpaired": {"methods": ["utt_fusion"], "paired": [0.5]},
            }
        },
    )
    runs = resolve_runs(params)
    files = stage_params(params, runs)
    for name in ("analysis.json", "extended_analysis.json"):
        (root / "data" / "params").mkdir(parents=True, exist_ok=True)
        (root / "data" / "params" / name).write_text(json.dumps(files[name]))
    for name, run in runs.items():
        if name == NOT_TRAINED:
            continue
        results = root / ("results" if run["study"] == "default" else "extended/results") / name
        run_method(name, params, results, root / "data" / "checkpoints" / name)
    return root


@pytest.fixture
def study(project, monkeypatch) -> sections.Study:
    monkeypatch.chdir(project)
    return sections.Study.load("data/params/analysis.json")


def test_study_load_keeps_the_trained_runs_and_lists_the_others_with_their_reason(study):
    assert list(study.runs) == DEFAULT_TRAINED
    assert study.skipped == {
        **{name: "not selected by train.runs" for name in ("early_fusion", "late_fusion", "ifmmin", "vavl")},
        NOT_TRAINED: f"no {Path('results') / NOT_TRAINED / 'metrics.json'}: run `dvc repro`",
    }
    assert list(study.skipped)[:2] == [NOT_TRAINED, "early_fusion"]  # params order
    assert study.task == "classification" and study.classify and study.precision == 3
    assert study.conditions == ["a", "v", "av"] and study.missing == ["a", "v"]
    assert study.classes == ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    for table in sections.RESULT_TABLES:
        assert list(dict.fromkeys(study.results[table]["method"])) == DEFAULT_TRAINED, table
    assert study.results["per_condition"].groupby("method")["fold"].nunique().eq(2).all()
    assert study.sources(["mmin"]) == ["train@mmin"]
    part = study.part("per_condition", ["mmin", "audio_only"])
    assert list(dict.fromkeys(part["method"])) == ["mmin", "audio_only"]
    note = study.skipped_note()
    assert note.startswith("Not in the tables (no results): ") and "`vavl` (not selected by train.runs)" in note


def test_study_load_of_both_studies_and_of_no_trained_run(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    both = sections.Study.load("data/params/extended_analysis.json", studies=("default", "extended"))
    assert list(both.runs) == [*DEFAULT_TRAINED, *EXTENDED_TRAINED]
    assert both.sources(["mmin_no_cycle", "mmin"]) == ["extended/dvc.yaml:run@mmin_no_cycle", "train@mmin"]
    assert both.runs["audio_only_regression"]["task"] == "regression"
    params = json.loads(Path("data/params/analysis.json").read_text())
    params["runs"] = {name: run for name, run in params["runs"].items() if name in ("vavl", NOT_TRAINED)}
    (tmp_path / "analysis.json").write_text(json.dumps(params))
    with pytest.raises(FileNotFoundError, match=r"no trained run among visual_only, vavl \(skipped: "):
        sections.Study.load(tmp_path / "analysis.json")


def test_artefacts_write_tables_figures_and_text_with_one_provenance_record(tmp_path):
    art = sections.Artefacts(tmp_path / "reports", "analysis", "dvc.lock", 3)
    art.table(pd.DataFrame({"ua": ["0.5 ± 0.1"]}, index=["mmin"]), "conditions_ua", "UA.", ["train@mmin"], show=False)
    figure, ax = plt.subplots()
    ax.plot([0, 1])
    art.figure(figure, "curve", ["train@mmin", "train@audio_only"])
    art.text("findings.md", "**The study.**", ["train@mmin"])
    art.close()
    files = sorted(
        p.relative_to(tmp_path / "reports").as_posix() for p in (tmp_path / "reports").rglob("*") if p.is_file()
    )
    assert files == [
        "figures/curve.png",
        "figures/curve.svg",
        "findings.md",
        "provenance.json",
        "tables/conditions_ua.csv",
        "tables/conditions_ua.md",
        "tables/conditions_ua.tex",
    ]
    assert (tmp_path / "reports" / "findings.md").read_text() == "**The study.**\n"
    record = json.loads((tmp_path / "reports" / "provenance.json").read_text())
    assert record == {
        "stage": "analysis",
        "lock": "dvc.lock",
        "artefacts": {
            "figures/curve": ["train@audio_only", "train@mmin"],
            "findings.md": ["train@mmin"],
            "tables/conditions_ua": ["train@mmin"],
        },
    }


def table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv", index_col=0)


def test_the_sections_of_the_analysis_notebook_write_their_tables_and_figures(study, project):
    out = project / "reports"
    art = sections.Artefacts(out, "analysis", "dvc.lock", study.precision)
    sections.condition_tables(study, art)
    ua = table(out, "conditions_ua")
    assert list(ua.index) == [*DEFAULT_TRAINED, "human perception, real CREMA-D (reference)"]  # the built-in corpus
    assert list(ua.columns) == ["a", "v", "av", "pooled", "mean"]
    assert all(" ± " in cell for cell in ua["av"][:-1])  # two units: mean ± std
    assert list(table(out, "conditions_wa").index) == DEFAULT_TRAINED  # the human reference is UA only
    sections.calibration(study, art)
    assert list(table(out, "calibration").index) == [
        "best audio-only UA",
        "best visual-only UA",
        "best audio-visual UA",
    ]
    comparisons = sections.imagination_tables(study, art)
    assert list(table(out, "imagination_ua").index) == ["utt_fusion", "utt_dataaug", "mmin"]
    assert list(table(out, "imagination_ua").columns) == ["a", "v", "av", "missing", "pooled"]
    assert list(zip(comparisons["a"], comparisons["b"])) == [
        ("mmin", "utt_fusion"),
        ("utt_dataaug", "utt_fusion"),
        ("mmin", "utt_dataaug"),
    ]
    sections.protocol_tables(study, art)
    protocols = pd.read_csv(out / "tables" / "protocols_ua.csv", header=[0, 1], index_col=0)
    assert list(protocols.index) == DEFAULT_TRAINED
    assert {top for top, _ in protocols.columns} == {"zero-filled", "noised (gaussian T=100)"}
    robust = sections.robustness_section(study, art)
    assert set(robust["method"]) == set(DEFAULT_TRAINED)
    assert (out / "figures" / "robustness_wa.png").is_file()
    assert {f"robustness_nmer_vs_{r}" for r in ("mmin", "utt_dataaug", "utt_fusion")} <= {
        p.stem for p in (out / "tables").glob("robustness_nmer_vs_*.csv")
    }
    sections.corruption_section(study, art)  # the tiny store holds no signal corruption: a note, no table
    assert not (out / "tables" / "corruptions_ua.csv").exists()
    sections.vavl_section(study, art)  # no VAVL run: a note
    assert not (out / "tables" / "vavl_table.csv").exists()
    assert sections.embedding_section(study, art, project / "results" / "embeddings") is None
    sections.confusion_section(study, art)
    assert {p.name for p in (out / "figures").glob("confusion_*.png")} == {
        "confusion_audio_only.png",
        "confusion_utt_fusion.png",
    }
    sections.curves_section(study, art)
    convergence = sections.convergence_section(study, art)
    assert len(convergence) == 2 * (1 + 1 + 1 + 2 + 2)  # units x stages of each run
    assert set(convergence["stopped"]) == {"max"}  # train.stopping.rule fixed: every stage runs its epochs
    claims = sections.findings_section(study, art, robust, convergence, None)
    assert list(claims.columns) == [*CLAIM_COLUMNS, "resolvable"]
    assert set(zip(claims["better"], claims["worse"])) >= {
        ("mmin", "utt_fusion"),
        ("mmin", "utt_dataaug"),
        ("nmer", "mmin"),
        ("nmer", "utt_fusion"),
    }
    assert (claims["pairs"] == 2).all()
    findings = (out / "findings.md").read_text()
    assert "**The study.**" in findings and "study's corpus, `builtin`" in findings
    sections.references_section(art)
    art.close()
    record = json.loads((out / "provenance.json").read_text())["artefacts"]
    assert record["tables/conditions_ua"] == sorted(f"train@{r}" for r in DEFAULT_TRAINED)
    assert record["figures/confusion_audio_only"] == ["train@audio_only"]
    assert record["tables/references"] == ["reference_results.yaml"]
    files = [p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != "provenance.json"]
    written = {(f.with_suffix("") if f.parts[0] in ("tables", "figures") else f).as_posix() for f in files}
    assert written == set(record), written ^ set(record)  # every artefact recorded, nothing recorded unwritten


def test_the_sections_of_the_extended_notebook(project, monkeypatch):
    monkeypatch.chdir(project)
    study = sections.Study.load("data/params/extended_analysis.json", studies=("default", "extended"))
    out = project / "reports" / "extended"
    art = sections.Artefacts(out, "extended/dvc.yaml:analysis", "extended/dvc.lock", study.precision)
    sections.ablation_section(study, art)
    assert list(table(out, "variants").index) == ["mmin", "mmin_no_cycle", "mmin_wide"]
    tests = table(out, "variant_tests").reset_index()
    assert set(tests["a"]) == {"mmin_no_cycle", "mmin_wide"} and set(tests["b"]) == {"mmin"}
    assert set(tests["changes"]) == {"cycle_weight=0.0", "hidden=12"}
    sections.other_task_section(study, art)
    other = table(out, "other_task_regression")
    assert list(other.index) == ["audio_only_regression"]
    assert list(other.columns) == [
        f"{c} ccc_{a}" for c in ("a", "v", "av") for a in ("arousal", "valence", "dominance")
    ]
    sections.unpaired_section(study, art)
    unpaired = table(out, "unpaired_tests").reset_index()
    assert set(unpaired["a"]) == {"utt_fusion paired 0.5"} and set(unpaired["b"]) == {"utt_fusion paired 1.0"}
    assert (out / "figures" / "unpaired_curve.png").is_file()
    convergence = sections.convergence_section(study, art, runs=list(study.runs))
    assert set(convergence["run"]) == set(study.runs)
    claims = sections.extended_findings(study, art, convergence)
    assert list(zip(claims["better"], claims["worse"])) == [("mmin", "mmin_no_cycle")]
    assert "the cycle autoencoder helps" in (out / "findings.md").read_text()
    sensitivity = sections.sensitivity_section(study, art, convergence)
    # the claims on mmin (the noise claims aside: extended runs skip the grid) at the study's width and at 12
    assert set(sensitivity["run"]) == {"mmin", "mmin_wide"} and set(sensitivity["base"]) == {"mmin"}
    assert sorted(sensitivity["claim"].unique()) == [
        "MMIN beats the full-modality network (MEN) under missing modalities",
        "imagination beats training with random missing modalities alone (MEN + aug)",
    ]
    assert set(sensitivity["setting"]) == {"(the study's)", "hidden=12"}
    default = {n: r for n, r in study.runs.items() if r["study"] == "default"}
    own = evaluate_claims(
        sections.with_missing_average(study.part("per_condition", list(default)), study.missing), default
    ).set_index("claim")["difference"]  # the study's own claims, at its setting
    here = sensitivity[sensitivity["run"] == "mmin"].set_index("claim")["difference"]
    assert (here - own[here.index]).abs().max() < 1e-4
    wide = sensitivity[sensitivity["run"] == "mmin_wide"].set_index("claim")["difference"]
    assert not wide.equals(here)  # another setting, other numbers
    assert (out / "tables" / "sensitivity.md").is_file()
    art.close()
    record = json.loads((out / "provenance.json").read_text())
    assert record["stage"] == "extended/dvc.yaml:analysis" and record["lock"] == "extended/dvc.lock"
    assert record["artefacts"]["tables/variants"] == [
        "extended/dvc.yaml:run@mmin_no_cycle",
        "extended/dvc.yaml:run@mmin_wide",
        "train@mmin",
    ]


@pytest.fixture(scope="module")
def audio_project(tmp_path_factory) -> Path:
    """An audio-only study (an EmoDB-like store: the tiny store's audio alone): only the runs the corpus can feed
    train, the rest are skipped by the params stage."""
    from mer_core.data.store import read_store, write_store

    root = tmp_path_factory.mktemp("audio_project")
    both = build_tiny_store(root / "both")
    manifest = {k: v for k, v in both.manifest.items() if k != "files"}
    manifest.update(
        corpus="emodb",
        modalities=["audio"],
        dims={"audio": manifest["dims"]["audio"]},
        frame_rates={"audio": manifest["frame_rates"]["audio"]},
    )
    meta = both.meta.drop(columns="has_visual")
    store = read_store(
        write_store(
            root / "data" / "features" / "emodb", meta, both.splits, {"audio": both.sequences["audio"]}, manifest
        )
    )
    params = make_tiny_params(
        store,
        epochs=2,
        folds=[0, 1],
        sections={"extended": {"other_task": {"methods": []}, "unpaired": {"methods": []}}},
    )
    runs = resolve_runs(params)
    assert [name for name, run in runs.items() if run["status"] == "train"] == ["audio_only"]
    (root / "data" / "params").mkdir(parents=True)
    (root / "data" / "params" / "analysis.json").write_text(json.dumps(stage_params(params, runs)["analysis.json"]))
    for name in runs:
        run_method(name, params, root / "results" / name, root / "data" / "checkpoints" / name)
    return root


def test_the_analysis_runs_on_an_audio_only_corpus(audio_project, monkeypatch):
    monkeypatch.chdir(audio_project)
    study = sections.Study.load("data/params/analysis.json")
    assert list(study.runs) == ["audio_only"] and study.conditions == ["a"] and study.missing == []
    assert study.skipped["mmin"] == "method mmin needs 2 modalities; corpus emodb has audio"
    out = audio_project / "reports"
    art = sections.Artefacts(out, "analysis", "dvc.lock", study.precision)
    sections.condition_tables(study, art)
    assert list(table(out, "conditions_ua").columns) == ["a", "pooled", "mean"]
    sections.calibration(study, art)  # the built-in corpus's targets: not checked here
    assert not (out / "tables" / "calibration.csv").exists()
    assert sections.imagination_tables(study, art) is None
    sections.protocol_tables(study, art)
    robust = sections.robustness_section(study, art)
    sections.corruption_section(study, art)
    sections.vavl_section(study, art)
    sections.confusion_section(study, art)
    assert (out / "figures" / "confusion_audio_only.png").is_file()
    sections.curves_section(study, art)
    convergence = sections.convergence_section(study, art)
    claims = sections.findings_section(study, art, robust, convergence, None)
    assert len(claims) == 0
    assert "**The study.** Best mean UA per test condition: `a`" in (out / "findings.md").read_text()
    art.close()
