"""The deviations table is read from the modules' docstrings (mer_core.deviations)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from mer_core.config import validate_params
from mer_core.deviations import (
    COLUMNS,
    RESTORE_WORDS,
    collect_deviations,
    deviations_table,
    module_deviations,
    section_bullets,
)
from mer_core.params.methods import CATALOG
from mer_core.schema import ConfigError, apply_overrides, check, expand_dotted

REGISTRY = CATALOG  # the registered methods, in registration order

ROOT = Path(__file__).resolve().parents[1]
DOC = '''"""A module.

Deviations from the official code (collected):
- [nmer] VAE decoder. Official: missing at HEAD (NameError). Here: the decoder of commit cd20f9a,
  sigmoid output. Why: the released code does not run. Restore: bug fixed.
  Test: tests/test_nmer.py::test_conditional_vae_shapes_and_output_ranges.
- [mmin, ifmmin] AE sizes. Official: 384 -> 256. Here: modalities x width. Why: any number of modalities.
  Restore: `train.preset: paper`. Test: tests/test_mmin.py::test_paper_settings_are_the_effective_official_ones.

More text after the section: - [mmin] not a bullet. Official: x. Here: y. Why: z. Restore: bug fixed. Test: t.
"""
'''


def write_module(root, name: str, text: str):
    path = root / "pkg" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_section_bullets_join_continuation_lines_and_stop_at_the_section_end():
    bullets = section_bullets(DOC.strip('"\n'))
    assert bullets == [
        "[nmer] VAE decoder. Official: missing at HEAD (NameError). Here: the decoder of commit "
        "cd20f9a, sigmoid output. Why: the released code does not run. Restore: bug fixed. "
        "Test: tests/test_nmer.py::test_conditional_vae_shapes_and_output_ranges.",
        "[mmin, ifmmin] AE sizes. Official: 384 -> 256. Here: modalities x width. Why: any number of "
        "modalities. Restore: `train.preset: paper`. "
        "Test: tests/test_mmin.py::test_paper_settings_are_the_effective_official_ones.",
    ]
    assert section_bullets("No section here.\n- [mmin] a. Official: b. Here: c. Why: d.") == []


def test_module_deviations_parse_every_field(tmp_path):
    decoder, sizes = module_deviations(write_module(tmp_path, "mod.py", DOC), tmp_path / "pkg", set(REGISTRY))
    assert decoder.methods == ("nmer",) and decoder.where == "VAE decoder" and decoder.module == "pkg.mod"
    assert decoder.official == "missing at HEAD (NameError)"
    assert decoder.here == "the decoder of commit cd20f9a, sigmoid output"
    assert decoder.why == "the released code does not run"
    assert decoder.restore == "bug fixed" and decoder.settings() == []
    assert decoder.test == "tests/test_nmer.py::test_conditional_vae_shapes_and_output_ranges"
    assert sizes.methods == ("mmin", "ifmmin") and sizes.official == "384 -> 256"
    assert sizes.restore == "`train.preset: paper`" and sizes.settings() == [("train.preset", "paper")]
    assert sizes.why == "any number of modalities"


def test_a_malformed_bullet_names_its_module(tmp_path):
    bad = (
        '"""Doc.\n\nDeviations from the official code:\n- [nmer] decoder. Official: x. Why: no Here part. '
        'Restore: bug fixed. Test: tests/test_nmer.py::test_x.\n"""\n'
    )
    with pytest.raises(ValueError, match=r"pkg\.bad: deviation bullet does not read"):
        module_deviations(write_module(tmp_path, "bad.py", bad), tmp_path / "pkg")


@pytest.mark.parametrize(
    "part, replacement, message",
    [
        ("Restore: bug fixed.", "", r"pkg\.mod: deviation bullet has no `Restore:` part"),
        (
            "Test: tests/test_nmer.py::test_conditional_vae_shapes_and_output_ranges.",
            "",
            r"pkg\.mod: deviation bullet has no `Test:` part",
        ),
        ("Restore: bug fixed.", "Restore: see the README.", r"pkg\.mod: `Restore: see the README` is neither params"),
        ("Restore: bug fixed.", "Restore: methods.nmer.decoder_output: linear.", r"pkg\.mod: `Restore: methods"),
        (
            "Test: tests/test_nmer.py::test_conditional_vae_shapes_and_output_ranges.",
            "Test: the VAE tests.",
            r"pkg\.mod: deviation bullet does not read|is not a pytest node id",
        ),
    ],
)
def test_a_bullet_without_a_restore_or_test_part_names_its_module(tmp_path, part, replacement, message):
    assert part in DOC
    text = DOC.replace(part, replacement)
    with pytest.raises(ValueError, match=message):
        module_deviations(write_module(tmp_path, "mod.py", text), tmp_path / "pkg", set(REGISTRY))


def test_an_unregistered_method_is_rejected(tmp_path):
    text = DOC.replace("[nmer]", "[nmerr]")
    with pytest.raises(ValueError, match=r"unregistered method\(s\) \['nmerr'\]"):
        module_deviations(write_module(tmp_path, "mod.py", text), tmp_path / "pkg", set(REGISTRY))


def test_the_package_documents_each_paper_method_and_every_row_is_complete():
    deviations = collect_deviations(known_methods=set(REGISTRY))
    covered = {m for d in deviations for m in d.methods}
    assert {"all", "mmin", "ifmmin", "nmer", "vavl"} <= covered
    for d in deviations:
        assert all([d.where, d.official, d.here, d.why, d.restore, d.test]), d
        assert not d.official.startswith("Here:") and "Why:" not in d.here and "Restore:" not in d.why, d
    # the bug fixes documented in docs/methods.md and the rows of the line-level audit (docs/methods.md §7) are all
    # in the table
    wheres = {(d.methods, d.where) for d in deviations}
    assert (("vavl",), "Conformer axes") in wheres and (("nmer",), "VAE decoder") in wheres
    assert (("ifmmin",), "`invariant_weight`") in wheres
    for row in [
        (("ifmmin",), "IF-IM autoencoder version"),
        (("nmer",), "stage-1 auxiliary term"),
        (("nmer",), "evaluation latent"),
        (("nmer",), "test protocol"),
        (("vavl",), "attention"),
        (("vavl",), "pooling and reconstruction target"),
        (("utt_dataaug",), "training conditions"),
    ]:
        assert row in wheres, row
    family = (
        "audio_only",
        "visual_only",
        "early_fusion",
        "late_fusion",
        "utt_fusion",
        "utt_dataaug",
        "mmin",
        "ifmmin",
        "nmer",
    )
    assert (family, "TextCNN windows") in wheres and (family, "LSTM encoder pooling") in wheres
    restores = {d.where: d.restore for d in deviations}
    assert restores["`invariant_weight`"] == "`methods.<run>.invariant_weight: 1`"  # what the released code runs
    assert restores["IF-IM autoencoder version"] == "`methods.<run>.ae_version: head`"


def test_every_test_named_by_a_deviation_exists():
    """Each `Test:` node id names a test function of an existing test file (found by parsing it with ast)."""
    for d in collect_deviations(known_methods=set(REGISTRY)):
        file, function = d.test.split("::")
        path = ROOT / file
        assert path.is_file(), f"{d.module}: {d.where}: no test file {file}"
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert function in names and function.startswith("test_"), f"{d.module}: {d.where}: no test {d.test}"


def _leaf(mapping: dict, dotted: str):
    node = mapping
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_restore_setting_is_a_valid_params_setting_of_the_bullets_methods():
    """`methods.<run>.<key>: <value>` must be a leaf key of every named method's params with a value it accepts
    (the run's entry then holds that value); any other setting a leaf key of the study's params with such a value;
    a phrase one of RESTORE_WORDS."""
    for d in collect_deviations(known_methods=set(REGISTRY)):
        settings = d.settings()
        assert settings or d.restore in RESTORE_WORDS, d
        for key, raw in settings:
            value = yaml.safe_load(raw)
            where = f"{d.module}: {d.where}: `{key}`"
            if key.startswith("methods.<run>."):
                path = key[len("methods.<run>.") :]
                for method in REGISTRY if d.methods == ("all",) else d.methods:
                    model = REGISTRY[method].params
                    entry = check(model, expand_dotted({path: value}), f"methods.<{method} run>").model_dump()
                    assert _leaf(entry, path) == value, where
                    assert not isinstance(_leaf(model().model_dump(), path), dict), f"{where} is not a leaf key"
            else:
                params = validate_params(apply_overrides({}, {key: value}))
                assert _leaf(params, key) == value, where
                assert not isinstance(_leaf(validate_params({}), key), dict), f"{where} is not a leaf key"


def test_the_restore_check_rejects_an_unknown_key_or_a_bad_value():
    """What the test above relies on: a misspelt key or a value the key does not accept is an error."""
    with pytest.raises(ConfigError, match=r"ae_versoin: unknown key"):
        check(REGISTRY["ifmmin"].params, expand_dotted({"ae_versoin": "head"}))
    with pytest.raises(ConfigError, match=r"ae_version: got 'latest'"):
        check(REGISTRY["ifmmin"].params, expand_dotted({"ae_version": "latest"}))
    with pytest.raises(ConfigError, match=r"train\.presett: unknown key"):
        validate_params(apply_overrides({}, {"train.presett": "paper"}))


def test_the_table_puts_shared_deviations_first_then_follows_the_registry(tmp_path):
    table = deviations_table(list(REGISTRY))
    assert list(table.columns) == COLUMNS and len(table) == len(collect_deviations())
    assert {"restores official", "pinned by"} <= set(table.columns)
    assert table["restores official"].str.len().gt(0).all() and table["pinned by"].str.startswith("`tests/").all()
    first = [row.split(", ")[0] for row in table["method"]]
    ranks = [-1 if m == "all" else list(REGISTRY).index(m) for m in first]
    assert ranks == sorted(ranks) and ranks[0] == -1


def test_the_deviations_stage_writes_the_table_as_markdown_and_csv(tmp_path, capsys):
    import pandas as pd

    from mer_core.deviations import main

    main(["--out", str(tmp_path / "reports" / "deviations")])
    table = pd.read_csv(tmp_path / "reports" / "deviations.csv")
    assert list(table.columns) == COLUMNS and len(table) == len(collect_deviations())
    pd.testing.assert_frame_equal(table, deviations_table(list(REGISTRY)).astype(table.dtypes.to_dict()))
    markdown = (tmp_path / "reports" / "deviations.md").read_text()
    assert markdown.startswith("**Deviations from the official code, per method:")
    assert markdown.count("\n| ") == len(table) + 1  # the header and one line per deviation
    assert f"{len(table)} deviations -> " in capsys.readouterr().out
