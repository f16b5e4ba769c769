"""Provenance of the analysis' artefacts (mer_core.provenance): one record per analysis, naming the stages each table
and figure reads, written once with stable bytes; and the tables and figures themselves byte-stable across reruns."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from mer_core.provenance import Provenance
from mer_core.report import save_figure, write_table


def test_record_names_the_stage_its_sources_and_the_lock():
    provenance = Provenance("analysis")
    line = provenance.record("tables/conditions_ua", ["train@mmin", "train@audio_only", "train@mmin"])
    assert provenance.artefacts == {"tables/conditions_ua": ["train@audio_only", "train@mmin"]}  # sorted, once each
    assert line == (
        "<small>Provenance: written by `analysis` from the outputs of `train@audio_only`, `train@mmin`; "
        "their hashes are in `dvc.lock`.</small>"
    )
    extended = Provenance("extended/dvc.yaml:analysis", "extended/dvc.lock")
    assert extended.record("figures/curve", []) == (
        "<small>Provenance: written by `extended/dvc.yaml:analysis` from "
        "the outputs of no stage; their hashes are in "
        "`extended/dvc.lock`.</small>"
    )
    provenance.record("tables/conditions_ua", ["embedding"])  # recorded again: the last record holds
    assert provenance.artefacts["tables/conditions_ua"] == ["embedding"]


def test_write_holds_every_artefact_once_with_stable_bytes(tmp_path):
    first, second = Provenance("analysis"), Provenance("analysis")
    first.record("tables/b", ["train@y", "train@x"])
    first.record("figures/a", ["embedding"])
    second.record("figures/a", ["embedding"])  # the same records in another order
    second.record("tables/b", ["train@x", "train@y"])
    one, two = first.write(tmp_path / "one" / "provenance.json"), second.write(tmp_path / "two" / "provenance.json")
    assert one.read_bytes() == two.read_bytes()
    record = json.loads(one.read_text())
    assert record == {
        "stage": "analysis",
        "lock": "dvc.lock",
        "artefacts": {"figures/a": ["embedding"], "tables/b": ["train@x", "train@y"]},
    }
    assert list(record["artefacts"]) == ["figures/a", "tables/b"]
    first.write(one)  # a rerun rewrites the same bytes (no timestamp, no revision)
    assert one.read_bytes() == two.read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_tables_and_figures_are_written_without_sidecars_and_byte_stable(tmp_path):
    table = pd.DataFrame({"ua": ["0.500 ± 0.010"]}, index=["a"])

    def run(out):
        tables = write_table(table, "conditions_ua", out / "tables", "UA.")
        figure, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        figures = save_figure(figure, "curve", out / "figures")
        plt.close(figure)
        return tables, figures

    tables, figures = run(tmp_path / "one")
    assert [p.name for p in tables] == ["conditions_ua.md", "conditions_ua.tex", "conditions_ua.csv"]
    assert [p.name for p in figures] == ["curve.png", "curve.svg"]
    assert sorted(p.name for p in (tmp_path / "one").rglob("*") if p.is_file()) == sorted(
        p.name for p in tables + figures
    )
    assert tables[0].read_text().startswith("UA.\n\n") and r"$\pm$" in tables[1].read_text()
    assert pd.read_csv(tables[2], index_col=0).loc["a", "ua"] == "0.500 ± 0.010"
    again_tables, again_figures = run(tmp_path / "two")
    for first, second in zip(tables + figures, again_tables + again_figures):
        assert first.read_bytes() == second.read_bytes(), first.name
