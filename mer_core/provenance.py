"""Provenance of the analysis' tables and figures: what dvc.lock does not already say, written once.

dvc.lock records, for every stage, the hash of each dependency (code, resolved params, the feature store, each run's
results) and of each output (the tables and figures folders). What it does not say is which runs a given table or
figure is made from: the analysis depends on every run. `Provenance` records that, one entry per artefact
({artefact: the stages whose outputs it reads}), and writes it once per analysis as `provenance.json` beside the
tables and figures folders (`reports/provenance.json`, `reports/extended/provenance.json`): with the dvc.lock of the
same commit, every number traces back to the runs, params and data that made it. Nothing in it changes when the same
inputs are analysed again (no timestamp, no revision), so a rerun rewrites the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from mer_core.runtime import write_atomic


class Provenance:
    """The artefacts of one analysis stage (`stage`, recorded in `lock`) and the stages each one reads."""

    def __init__(self, stage: str, lock: str = "dvc.lock"):
        self.stage, self.lock = stage, lock
        self.artefacts: dict[str, list[str]] = {}

    def record(self, artefact: str, sources: list[str]) -> str:
        """Record that `artefact` (e.g. `tables/conditions_ua`) reads the outputs of the stages `sources` (e.g.
        `train@mmin`); returns the line shown under it."""
        self.artefacts[artefact] = sorted(set(sources))
        shown = ", ".join(f"`{s}`" for s in self.artefacts[artefact]) or "no stage"
        return (
            f"<small>Provenance: written by `{self.stage}` from the outputs of {shown}; their hashes are in "
            f"`{self.lock}`.</small>"
        )

    def write(self, path: str | Path) -> Path:
        """Write `provenance.json` (sorted keys, stable bytes)."""
        record = {"stage": self.stage, "lock": self.lock, "artefacts": dict(sorted(self.artefacts.items()))}
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        return write_atomic(path, lambda p: p.write_text(text))
