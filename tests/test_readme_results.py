"""mer_core.readme_results: the README's Results section is generated from reports/ and kept in step with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mer_core.readme_results import BEGIN, END, ReadmeError, main, replace_section, results_section

ROOT = Path(__file__).resolve().parents[1]


def reports(tmp_path: Path, figures=("robustness_wa",)) -> Path:
    root = tmp_path / "reports"
    (root / "tables").mkdir(parents=True)
    (root / "figures").mkdir()
    (root / "tables" / "conditions_ua.md").write_text("UA caption.\n\n| | a |\n|:--|:--|\n| mmin | 0.5 |\n")
    (root / "tables" / "claims.md").write_text("Claims.\n")
    (root / "tables" / "claims.csv").write_text(
        "paper,claim,better,worse,condition,metric,difference,ci_low,ci_high,p_holm,verdict\n"
        "MMIN (ACL 2021),MMIN beats MEN,mmin,utt_fusion,missing,ua,0.0412,0.01,0.0724,0.0213,holds\n"
        "NMER,NMER beats MMIN,nmer,mmin,noise,wa,-0.02,,,1.0,not converged\n"
    )
    (root / "findings.md").write_text("**What holds here** (1 of 1):\n\n- a claim.\n")
    for name in figures:
        (root / "figures" / f"{name}.png").write_bytes(b"png")
    return root


def test_the_section_holds_the_headline_table_figures_findings_and_links(tmp_path):
    section = results_section(reports(tmp_path))
    assert section.startswith("UA caption.\n\n| | a |")
    assert f"]({tmp_path.as_posix()}/reports/figures/robustness_wa.png)" in section
    assert "embedding.png" not in section  # a figure the analysis did not write is left out
    assert (
        "- **holds**: MMIN beats MEN (MMIN (ACL 2021)): `mmin` − `utt_fusion` = +0.041 [+0.010, +0.072] UA on "
        "`missing`, p (Holm) = 0.021."
    ) in section
    assert "- **not converged**: NMER beats MMIN (NMER): `nmer` − `mmin` = -0.020 WA on `noise`" in section  # no CI
    assert f"({tmp_path.as_posix()}/reports/findings.md)" in section
    assert (
        f"[`claims`]({tmp_path.as_posix()}/reports/tables/claims.md)" in section and "`conditions_ua`](" not in section
    )
    assert "html/index.html" in section


def test_a_missing_report_names_the_file(tmp_path):
    root = reports(tmp_path)
    (root / "tables" / "claims.csv").unlink()
    with pytest.raises(ReadmeError, match=r"claims\.csv: missing; run `make repro`"):
        results_section(root)


def test_replace_section_keeps_the_text_around_the_markers():
    readme = f"# Title\n\n{BEGIN}\nold\n{END}\n\n## Next\n"
    assert replace_section(readme, "new") == f"# Title\n\n{BEGIN}\nnew\n{END}\n\n## Next\n"
    with pytest.raises(ReadmeError, match="exactly one pair of markers"):
        replace_section("# no markers\n", "new")
    with pytest.raises(ReadmeError, match="exactly one pair of markers"):
        replace_section(f"{END}\n{BEGIN}\n", "new")


def test_main_writes_then_checks(tmp_path, capsys):
    root = reports(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n{BEGIN}\nstale\n{END}\n")
    args = ["--readme", str(readme), "--reports", str(root)]
    assert main([*args, "--check"]) == 1 and "stale" in capsys.readouterr().err
    assert main(args) == 0 and "UA caption." in readme.read_text()
    assert main([*args, "--check"]) == 0


def test_the_committed_readme_matches_the_committed_reports(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["--check"]) == 0, "README.md's Results section is stale: run `python -m mer_core.readme_results`"
