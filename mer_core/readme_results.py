"""The README's "Results" section, generated from `reports/` (never copied by hand).

`results_section` assembles it from what the analysis stage wrote: the headline table
(`reports/tables/conditions_ua.md`, caption included), the headline figure (NMER's robustness figure), one line per
paper claim with its verdict, difference and confidence interval (`reports/tables/claims.csv`; the full text is
`reports/findings.md`), links to every other table and to the HTML index. `python -m mer_core.readme_results` writes it
into README.md between the `BEGIN` and `END` markers (`make repro` runs it after `dvc repro`); `--check` exits 1, naming
the command to run, when the README's section differs from what `reports/` gives (the test suite checks this, so a stale
README fails CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = "<!-- BEGIN results: generated from reports/ by `python -m mer_core.readme_results` (run by `make repro`) -->"
END = "<!-- END results -->"
HEADLINE_TABLE = "conditions_ua"
FIGURES = (
    (
        "robustness_wa",
        "WA under feature noise on the missing modalities (NMER's protocol), with the NMER "
        "paper's points as a labelled reference on its own corpus",
    ),
)
METRICS = {"ua": "UA", "wa": "WA", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}


class ReadmeError(RuntimeError):
    """The README or the reports it is generated from are missing or lack the markers; the message names the file."""


def _read(path: Path) -> str:
    if not path.is_file():
        raise ReadmeError(f"{path}: missing; run `make repro` (the analysis stage writes it)")
    return path.read_text().strip()


def results_section(reports: Path = Path("reports")) -> str:
    """The section's markdown (between the markers), from the files under `reports`."""
    tables = reports / "tables"
    lines = [_read(tables / f"{HEADLINE_TABLE}.md"), ""]
    for name, caption in FIGURES:
        if (reports / "figures" / f"{name}.png").is_file():
            lines += [f"![{caption}]({reports.as_posix()}/figures/{name}.png)", "", f"*Figure: {caption}.*", ""]
    lines += [
        "### The papers' claims here",
        "",
        claims_summary(tables / "claims.csv"),
        "",
        f"The full text, with the study-wide facts and what the study can resolve: "
        f"[`{reports.as_posix()}/findings.md`]({reports.as_posix()}/findings.md).",
        "",
    ]
    others = sorted(p.stem for p in tables.glob("*.md") if p.stem != HEADLINE_TABLE)
    lines.append(
        "Every table (`.md`, `.tex`, `.csv`; where each comes from: `reports/provenance.json`): "
        + ", ".join(f"[`{name}`]({tables.as_posix()}/{name}.md)" for name in others)
        + f". All of it, with the executed notebooks, in one page: [`{reports.as_posix()}/html/index.html`]"
        f"({reports.as_posix()}/html/index.html)."
    )
    return "\n".join(lines)


def claims_summary(path: Path) -> str:
    """One line per claim: its verdict, the runs compared, the difference with its 95% CI and the Holm-adjusted p."""
    import pandas as pd

    if not path.is_file():
        raise ReadmeError(f"{path}: missing; run `make repro` (the analysis stage writes it)")
    claims = pd.read_csv(path)
    lines = []
    for row in claims.itertuples():
        interval = "" if row.ci_low != row.ci_low else f" [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
        lines.append(
            f"- **{row.verdict}**: {row.claim} ({row.paper}): `{row.better}` − `{row.worse}` = "
            f"{row.difference:+.3f}{interval} {METRICS.get(row.metric, row.metric)} on `{row.condition}`, "
            f"p (Holm) = {row.p_holm:.3f}."
        )
    return "\n".join(lines)


def replace_section(readme: str, section: str) -> str:
    """`readme` with the text between the markers replaced by `section`."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ReadmeError(f"README: needs exactly one pair of markers, {BEGIN!r} then {END!r}")
    head, rest = readme.split(BEGIN)
    return f"{head}{BEGIN}\n{section}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's section is stale")
    args = parser.parse_args(argv)
    readme = _read(args.readme) + "\n"
    updated = replace_section(readme, results_section(args.reports))
    if args.check:
        if updated != readme:
            print(
                f"{args.readme}: the Results section is stale; run `python -m mer_core.readme_results`", file=sys.stderr
            )
            return 1
        return 0
    if updated != readme:
        args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
