"""Published reference numbers (`reference_results.yaml` at the project root), loaded with a schema check.

Each entry is one published figure or table with its source (docs/methods.md §6, docs/datasets.md "CREMA-D"):
`id`, `paper`, `location` (table / figure / file), `version`, `corpus`, `metric`, `condition`, `x_label` and `x`
(the x axis of a curve, or null), `values` ({row label: number, list over `x`, or null}, or null for a table not
yet transcribed) and `note` (required wherever a value is null: where the numbers are). A null stays None and is
never plotted. The analysis shows these beside our numbers, labelled by corpus, never mixed into our rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import Field

from mer_core.schema import ConfigError, Params, check

REFERENCES_FILE = Path(__file__).resolve().parent.parent / "reference_results.yaml"


class Reference(Params):
    """One published figure: `values` maps a row label to a number, a list over `x`, or None (not transcribed);
    `values` is None when the whole table is not transcribed."""

    id: str
    paper: str
    location: str
    version: str
    corpus: str
    metric: str
    condition: str
    x_label: str | None = None
    x: list[float] | None = Field(None, min_length=1)
    values: dict[str, float | list[float] | None] | None
    note: str | None = None

    def series(self) -> dict[str, float | list[float]]:
        """The values that were transcribed (None entries left out): what a plot or table may show."""
        return {label: value for label, value in (self.values or {}).items() if value is not None}


def load_references(path: str | Path = REFERENCES_FILE) -> dict[str, Reference]:
    """Read and check `path`; return {id: Reference} in file order. A `ConfigError` names the file, the entry's
    id (or its index when the id is missing) and the key."""
    path = Path(path)
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("references"), list):
        raise ConfigError(f"{path.name}: expected a mapping with a list under `references`")
    references: dict[str, Reference] = {}
    for index, entry in enumerate(document["references"]):
        name = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{index}"
        where = f"{path.name}: references[{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
        if "values" not in entry:
            raise ConfigError(f"{where}.values: missing key; expected a mapping of row label to value, or null")
        reference = check(Reference, entry, where)
        _check_consistency(reference, where)
        if reference.id in references:
            raise ConfigError(f"{where}.id: duplicate id; ids must be unique")
        references[reference.id] = reference
    return references


def _check_consistency(reference: Reference, where: str) -> None:
    """Curves need an x axis of the same length; a null value needs a note saying where the numbers are."""
    values = reference.values
    if values is None or any(value is None for value in values.values()):
        if not reference.note:
            raise ConfigError(f"{where}.note: required where a value is null (say where the numbers are)")
    for label, value in (values or {}).items():
        if isinstance(value, list):
            if reference.x is None:
                raise ConfigError(f"{where}.values.{label}: a list needs `x` (the curve's x axis)")
            if len(value) != len(reference.x):  # also rejects an empty list
                raise ConfigError(f"{where}.values.{label}: {len(value)} values for {len(reference.x)} points of `x`")


def reference_table(references: dict[str, Reference], precision: int = 3) -> pd.DataFrame:
    """Every reference as one row: source, corpus, metric, condition and its values ("not transcribed: <note>"
    for a null), for showing beside our tables (never merged into them)."""
    rows = []
    for ref in references.values():
        if ref.values is None:
            shown = "not transcribed"
        else:
            shown = "; ".join(f"{label}: {_format(value, ref, precision)}" for label, value in ref.values.items())
        rows.append(
            {
                "id": ref.id,
                "corpus": ref.corpus,
                "metric": ref.metric,
                "condition": ref.condition,
                "values": shown,
                "source": f"{ref.paper}, {ref.location} ({ref.version})",
                "note": ref.note or "",
            }
        )
    return pd.DataFrame(rows).set_index("id")


def _format(value: float | list[float] | None, ref: Reference, precision: int) -> str:
    if value is None:
        return "not transcribed"
    if isinstance(value, list):
        return ", ".join(f"{x:g}: {v:.{precision}f}" for x, v in zip(ref.x, value))
    return f"{value:.{precision}f}"
