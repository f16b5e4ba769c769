"""The deviations table is read from the modules' docstrings (mer_core.deviations)."""
from __future__ import annotations

import pytest

from mer_core.deviations import COLUMNS, collect_deviations, deviations_table, module_deviations, section_bullets
from mer_core.methods import REGISTRY

DOC = '''"""A module.

Deviations from the official code (collected):
- [nmer] VAE decoder. Official: missing at HEAD (NameError). Here: the decoder of commit cd20f9a,
  sigmoid output. Why: the released code does not run.
- [mmin, ifmmin] AE sizes. Official: 384 -> 256. Here: modalities x width. Why: any number of modalities.

More text after the section: - [mmin] not a bullet. Official: x. Here: y. Why: z.
"""
'''


def write_module(root, name: str, text: str):
    path = root / "pkg" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_section_bullets_join_continuation_lines_and_stop_at_the_section_end():
    bullets = section_bullets(DOC.strip('"\n'))
    assert bullets == ["[nmer] VAE decoder. Official: missing at HEAD (NameError). Here: the decoder of commit "
                       "cd20f9a, sigmoid output. Why: the released code does not run.",
                       "[mmin, ifmmin] AE sizes. Official: 384 -> 256. Here: modalities x width. Why: any number of "
                       "modalities."]
    assert section_bullets("No section here.\n- [mmin] a. Official: b. Here: c. Why: d.") == []


def test_module_deviations_parse_every_field(tmp_path):
    decoder, sizes = module_deviations(write_module(tmp_path, "mod.py", DOC), tmp_path / "pkg", set(REGISTRY))
    assert decoder.methods == ("nmer",) and decoder.where == "VAE decoder" and decoder.module == "pkg.mod"
    assert decoder.official == "missing at HEAD (NameError)"
    assert decoder.here == "the decoder of commit cd20f9a, sigmoid output"
    assert decoder.why == "the released code does not run"
    assert sizes.methods == ("mmin", "ifmmin") and sizes.official == "384 -> 256"


def test_a_malformed_bullet_names_its_module(tmp_path):
    bad = '"""Doc.\n\nDeviations from the official code:\n- [nmer] decoder. Official: x. Why: no Here part.\n"""\n'
    with pytest.raises(ValueError, match=r"pkg\.bad: deviation bullet does not read"):
        module_deviations(write_module(tmp_path, "bad.py", bad), tmp_path / "pkg")


def test_an_unregistered_method_is_rejected(tmp_path):
    text = DOC.replace("[nmer]", "[nmerr]")
    with pytest.raises(ValueError, match=r"unregistered method\(s\) \['nmerr'\]"):
        module_deviations(write_module(tmp_path, "mod.py", text), tmp_path / "pkg", set(REGISTRY))


def test_the_package_documents_each_paper_method_and_every_row_is_complete():
    deviations = collect_deviations(known_methods=set(REGISTRY))
    covered = {m for d in deviations for m in d.methods}
    assert {"all", "mmin", "ifmmin", "nmer", "vavl"} <= covered
    for d in deviations:
        assert all([d.where, d.official, d.here, d.why]), d
        assert not d.official.startswith("Here:") and "Why:" not in d.here, d
    # the bug fixes documented in methods.md are all in the table
    wheres = {(d.methods, d.where) for d in deviations}
    assert (("vavl",), "Conformer axes") in wheres and (("nmer",), "VAE decoder") in wheres
    assert (("ifmmin",), "`invariant_weight`") in wheres


def test_the_table_puts_shared_deviations_first_then_follows_the_registry(tmp_path):
    table = deviations_table(list(REGISTRY))
    assert list(table.columns) == COLUMNS and len(table) == len(collect_deviations())
    first = [row.split(", ")[0] for row in table["method"]]
    ranks = [-1 if m == "all" else list(REGISTRY).index(m) for m in first]
    assert ranks == sorted(ranks) and ranks[0] == -1
