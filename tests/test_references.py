"""reference_results.yaml and its loader (mer_core/references.py): schema errors name the entry and key; null
values stay None and are never plotted; the default study's reference numbers are unchanged."""

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest
import yaml

from mer_core.config import ConfigError
from mer_core.references import REFERENCES_FILE, load_references, reference_table
from mer_core.report import human_reference, robustness_curves

ENTRY = {
    "id": "curve",
    "paper": "P",
    "location": "Figure 3",
    "version": "arXiv 1",
    "corpus": "IEMOCAP",
    "metric": "wa",
    "condition": "noise",
    "x_label": "T",
    "x": [20, 40],
    "values": {"A": [0.5, 0.6], "B": None},
    "note": "B: Table 2, not transcribed",
}


def write(tmp_path, *entries):
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"references": list(entries)}))
    return path


def test_project_file_holds_the_documented_numbers():
    refs = load_references()
    nmer = refs["nmer_wa_vs_noise"]
    assert nmer.x == [20, 40, 60, 80, 100] and nmer.corpus == "IEMOCAP"
    assert nmer.values["NMER"] == [0.7060, 0.6831, 0.6773, 0.6706, 0.6673]  # docs/methods.md §6
    assert nmer.values["MEN"][-1] == 0.5325
    assert refs["crema_d_human_strict"].values == {"a": 0.416, "v": 0.663, "av": 0.722}  # docs/datasets.md
    for name in ("mmin_main_table", "ifmmin_main_table", "nmer_main_tables", "vavl_main_tables"):
        assert refs[name].values is None and "docs/methods.md §6" in refs[name].note


def test_human_reference_row_is_unchanged():
    assert human_reference().iloc[0].tolist() == ["WA 0.416 / UA 0.459", "WA 0.663 / UA 0.691", "WA 0.722 / UA 0.749"]


def test_null_stays_none_and_is_left_out(tmp_path):
    ref = load_references(write(tmp_path, ENTRY))["curve"]
    assert ref.values["B"] is None
    assert ref.series() == {"A": [0.5, 0.6]}
    human = {**ENTRY, "id": "human", "x_label": None, "x": None, "values": {"a": 0.4, "v": None, "av": 0.7}}
    row = human_reference(reference=load_references(write(tmp_path, human))["human"]).iloc[0]
    assert row.to_dict() == {"a": "WA 0.400 / UA 0.459", "av": "WA 0.700 / UA 0.749"}


def test_null_is_never_plotted(tmp_path):
    ref = load_references(write(tmp_path, ENTRY))["curve"]
    runs = pd.DataFrame({"method": ["m"] * 2, "noise": ["clean", "gaussian"], "level": [0.0, 20.0], "wa": [0.5, 0.6]})
    figure = robustness_curves(runs, "wa", ["m"], ["gaussian"], reference=ref)
    lines = figure.axes[-1].get_lines()
    assert [line.get_label() for line in lines] == ["A"]
    assert lines[0].get_xdata().tolist() == [20, 40] and lines[0].get_ydata().tolist() == [0.5, 0.6]
    assert figure.axes[-1].get_ylabel() == "WA" and figure.axes[-1].get_xlabel() == "T"
    assert len(robustness_curves(runs, "wa", ["m"], ["gaussian"]).axes) == 1  # no reference panel without one


def test_whole_table_null_needs_a_note(tmp_path):
    load_references(write(tmp_path, {**ENTRY, "values": None}))
    with pytest.raises(ConfigError, match=r"refs.yaml: references\[curve\].note: required where a value is null"):
        load_references(write(tmp_path, {**ENTRY, "values": None, "note": None}))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"corpus": 3}, r"references\[curve\].corpus: got 3"),
        (
            {"values": {"A": "high"}},
            r"references\[curve\]\.values\.A: got 'high'; Input should be a valid number or Input "
            r"should be a valid list",
        ),
        ({"values": {"A": [0.5]}}, r"references\[curve\].values.A: 1 values for 2 points of `x`"),
        ({"x": None}, r"references\[curve\].values.A: a list needs `x`"),
        ({"version": None}, r"references\[curve\].version: got None; Input should be a valid string"),
        ({"table": 2}, r"references\[curve\].table: unknown key"),
    ],
)
def test_errors_name_the_entry_and_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_references(write(tmp_path, {**ENTRY, **change}))


def test_missing_keys_duplicates_and_bad_files(tmp_path):
    entry = {k: v for k, v in ENTRY.items() if k != "paper"}
    with pytest.raises(ConfigError, match=r"references\[curve\].paper: missing key"):
        load_references(write(tmp_path, entry))
    with pytest.raises(ConfigError, match=r"references\[#0\].id: missing key"):
        load_references(write(tmp_path, {k: v for k, v in ENTRY.items() if k != "id"}))
    with pytest.raises(ConfigError, match=r"references\[curve\].id: duplicate id"):
        load_references(write(tmp_path, ENTRY, ENTRY))
    path = tmp_path / "empty.yaml"
    path.write_text("refs: []\n")
    with pytest.raises(ConfigError, match="empty.yaml: expected a mapping with a list under `references`"):
        load_references(path)


def test_reference_table_labels_corpus_and_marks_untranscribed():
    table = reference_table(load_references(REFERENCES_FILE))
    assert table.loc["crema_d_human_strict", "corpus"] == "CREMA-D"
    assert table.loc["crema_d_human_strict", "values"] == "a: 0.416; v: 0.663; av: 0.722"
    assert table.loc["nmer_wa_vs_noise", "values"].startswith("MMIN: 20: 0.703, 40: 0.679")
    assert table.loc["vavl_main_tables", "values"] == "not transcribed"
    assert list(table.columns) == ["corpus", "metric", "condition", "values", "source", "note"]
