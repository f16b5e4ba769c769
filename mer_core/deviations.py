"""The deviations table: every place our implementation differs from the official code, read from the docstrings.

A module that deviates says so in its own docstring, in a section that starts with the line
`Deviations from the official code` and holds one bullet per deviation:

    - [nmer] VAE decoder. Official: missing at HEAD (NameError). Here: the decoder of commit cd20f9a.
      Why: the released code does not run. Restore: bug fixed.
      Test: tests/test_nmer.py::test_conditional_vae_decoder_reads_z_and_c.

`[...]` names the methods concerned (registered method names, comma-separated, or `all`); then where the
difference lies, ending with a full stop, and five labelled parts. `Restore:` says how to get the official
behaviour back: one or more params settings in backticks (``Restore: `methods.<run>.ae_version: head`.``, where
`<run>` stands for any run of the bullet's methods), or one of the phrases in `RESTORE_WORDS`. `Test:` is the
pytest node id (`<file>::<test function>`) of the test that pins the behaviour. Continuation lines are indented.
The section ends at the first line that is neither a bullet nor a continuation. The modules are read with `ast`,
never imported, so collecting the table has no side effects. `deviations_table` gathers every module's bullets
(one row each) for the analysis notebook, so the table cannot drift from the code it describes; a bullet that
does not follow the pattern, or lacks its `Restore:` or `Test:` part, raises an error naming its module.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

HEADER = "Deviations from the official code"
PACKAGE = Path(__file__).resolve().parent
BULLET = re.compile(
    r"\[(?P<methods>[^\]]+)\]\s+(?P<where>.+?)\.\s+Official:\s+(?P<official>.+?)\s+Here:\s+"
    r"(?P<here>.+?)\s+Why:\s+(?P<why>.+?)\s+Restore:\s+(?P<restore>.+?)\s+Test:\s+(?P<test>\S+?)\.?",
    re.DOTALL,
)
# what `Restore:` may say when no params setting restores the official behaviour
RESTORE_WORDS = {
    "bug fixed": "the official code fails or cannot run there; we run",
    "unavailable offline": "the official ingredient (a checkpoint, a package) cannot be obtained offline",
    "equivalent": "our computation gives the same results as the official one",
    "no official counterpart": "the official code has nothing to compare with (a baseline or a setting it lacks)",
    "not switchable": "a deliberate difference in the results that no params key reverts yet",
}
SETTING = re.compile(r"`(?P<key>[\w.<>]+):\s*(?P<value>[^`]+)`")
NODE_ID = re.compile(r"(?P<file>tests/[\w/]+\.py)::(?P<function>\w+)")
COLUMNS = ["method", "where", "official code", "here", "why", "restores official", "pinned by", "module"]


@dataclass(frozen=True)
class Deviation:
    """One bullet of a module's deviations section."""

    methods: tuple[str, ...]
    where: str
    official: str
    here: str
    why: str
    restore: str
    test: str
    module: str

    def settings(self) -> list[tuple[str, str]]:
        """The (dotted key, value) params settings of `restore` ([] when it is one of `RESTORE_WORDS`)."""
        return [(m["key"], m["value"].strip()) for m in SETTING.finditer(self.restore)]


def section_bullets(docstring: str) -> list[str]:
    """The bullets of the docstring's deviations section (each joined into one line); [] without a section."""
    lines = docstring.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(HEADER)), None)
    if start is None:
        return []
    bullets: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("- "):
            bullets.append(line[2:].strip())
        elif bullets and line.startswith("  ") and line.strip():
            bullets[-1] += " " + line.strip()
        else:
            break
    return bullets


def field_text(text: str) -> str:
    """A field of a deviation bullet, stripped of surrounding space and its final full stop."""
    return text.strip().rstrip(".")


def parse_bullet(bullet: str, module: str, known_methods: set[str] | None = None) -> Deviation:
    """A bullet as a `Deviation`; ValueError naming the module when it does not follow the pattern (see the
    module docstring), lacks its `Restore:` or `Test:` part, restores with something else than params settings
    or a phrase of `RESTORE_WORDS`, or names a method that is not registered."""
    for part in ("Restore:", "Test:"):
        if part not in bullet:
            raise ValueError(
                f"{module}: deviation bullet has no `{part}` part (how the official behaviour is "
                f"restored / the test that pins it): {bullet[:80]!r}"
            )
    match = BULLET.fullmatch(bullet)
    if match is None:
        raise ValueError(
            f"{module}: deviation bullet does not read '[methods] where. Official: ... Here: ... "
            f"Why: ... Restore: ... Test: <node id>.': {bullet[:80]!r}"
        )
    methods = tuple(m.strip() for m in match["methods"].split(","))
    unknown = [m for m in methods if m != "all" and known_methods is not None and m not in known_methods]
    if unknown:
        raise ValueError(
            f"{module}: deviation names unregistered method(s) {unknown}; registered: "
            f"{', '.join(sorted(known_methods or ()))} (or `all`)"
        )
    where, official, here, why, restore, test = (
        field_text(match[key]) for key in ("where", "official", "here", "why", "restore", "test")
    )
    if restore not in RESTORE_WORDS and not all(SETTING.fullmatch(part) for part in restore.split(", ")):
        raise ValueError(
            f"{module}: `Restore: {restore}` is neither params settings in backticks "
            f"(`key: value`) nor one of: {', '.join(RESTORE_WORDS)}"
        )
    if NODE_ID.fullmatch(test) is None:
        raise ValueError(f"{module}: `Test: {test}` is not a pytest node id tests/<file>.py::<test function>")
    return Deviation(methods, where, official, here, why, restore, test, module)


def module_deviations(path: Path, root: Path = PACKAGE, known_methods: set[str] | None = None) -> list[Deviation]:
    """The deviations a source file's module docstring lists."""
    docstring = ast.get_docstring(ast.parse(path.read_text(), filename=str(path))) or ""
    module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    return [parse_bullet(b, module, known_methods) for b in section_bullets(docstring)]


def collect_deviations(root: Path = PACKAGE, known_methods: set[str] | None = None) -> list[Deviation]:
    """Every deviation of every module under `root`, in path order."""
    return [d for path in sorted(root.rglob("*.py")) for d in module_deviations(path, root, known_methods)]


def deviations_table(method_order: list[str], root: Path = PACKAGE) -> pd.DataFrame:
    """The analysis notebook's table: one row per deviation, those of `all` methods first, then by the first
    method's position in `method_order` (the registry's order), then by module."""
    rows = collect_deviations(root, set(method_order))

    def rank(d: Deviation) -> tuple[int, str]:
        return min((-1 if m == "all" else method_order.index(m)) for m in d.methods), d.module

    rows = sorted(rows, key=rank)
    return pd.DataFrame(
        [
            [", ".join(d.methods), d.where, d.official, d.here, d.why, d.restore, f"`{d.test}`", f"`{d.module}`"]
            for d in rows
        ],
        columns=COLUMNS,
    )


def main(argv: list[str] | None = None) -> None:
    """The `deviations` stage: write the table as `<out>.md` and `<out>.csv` (the analysis shows it)."""
    import argparse

    from mer_core.params.methods import CATALOG

    parser = argparse.ArgumentParser(description="The deviations table, read from the modules' docstrings.")
    parser.add_argument("--out", default="reports/deviations", help="path of the table, without suffix")
    args = parser.parse_args(argv)
    table = deviations_table(list(CATALOG))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    caption = (
        "Deviations from the official code, per method: where, what the official code does, what this project "
        "does, why, the setting that restores the official behaviour, and the test that pins it."
    )
    out.with_suffix(".md").write_text(f"**{caption}**\n\n{table.to_markdown(index=False)}\n")
    table.to_csv(out.with_suffix(".csv"), index=False)
    print(f"{len(table)} deviations -> {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
