"""Which runs fill each table, figure and claim: derived from the runs' methods and variants, never hard-wired.

The params stage (`mer_core.config`) writes every run's summary (method, base, root, variant, task, status) to the
analysis' resolved params; the consumers pass those summaries, with the runs actually trained (a run skipped at
training time, e.g. because the feature store lacks a modality, drops out here), to the functions below:

- `base_run`: the study's run of a method (its root run: the first that names the method, with no base);
- `variant_run`: the run that is a named variant of another (an ablation or a switch, `MethodInfo.variants`);
- `table_rows`: the rows of the main tables (every run of the default study, in params order), of MMIN's table (the
  full-modality networks, the imagination methods and their variants), of VAVL's table (VAVL and the base runs);
- `confusion_runs`, `embedded_runs`, `explore_run`: the runs drawn in the confusion figures, the 2-D maps and the
  explorer's first view;
- `RunRef` / `resolve_ref`: how the papers' claims (`mer_core.findings`) name the runs they compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mer_core.params.methods import CATALOG

IMAGINATION_TABLE = ("utt_fusion", "utt_dataaug", "mmin", "ifmmin")  # MMIN's and IF-MMIN's main-table methods
NOISE_RIVALS = ("mmin", "ifmmin", "utt_dataaug", "utt_fusion")  # what NMER's figure compares it with
VAVL_RIVALS = ("utt_fusion", "utt_dataaug", "late_fusion", "mmin")


def trained(runs: Mapping[str, dict], present: list[str] | None = None) -> dict[str, dict]:
    """The runs whose status is `train` (and, given `present`, whose results exist), in order."""
    return {
        name: run for name, run in runs.items() if run["status"] == "train" and (present is None or name in present)
    }


def base_run(runs: Mapping[str, dict], method: str) -> str | None:
    """The base run of `method` among `runs`: the first whose method it is and that has no base."""
    return next((name for name, run in runs.items() if run["method"] == method and run["base"] is None), None)


def variant_run(runs: Mapping[str, dict], method: str, variant: str) -> str | None:
    """The run that is variant `variant` of the base run of `method`, if the study has one."""
    base = base_run(runs, method)
    return next((name for name, run in runs.items() if run["base"] == base and run["variant"] == variant), None)


@dataclass(frozen=True)
class RunRef:
    """A run named by its method and, for an ablation or a switch, the method's variant."""

    method: str
    variant: str | None = None

    def __str__(self) -> str:
        return self.method if self.variant is None else f"{self.method} ({self.variant})"


def resolve_ref(runs: Mapping[str, dict], ref: RunRef) -> str | None:
    """The run `ref` names among `runs`, or None."""
    return base_run(runs, ref.method) if ref.variant is None else variant_run(runs, ref.method, ref.variant)


def family(runs: Mapping[str, dict], method: str) -> list[str]:
    """The base run of `method` followed by the runs derived from it with the same task (its variants)."""
    base = base_run(runs, method)
    if base is None:
        return []
    task = runs[base]["task"]
    return [base] + [
        n
        for n, r in runs.items()
        if r["root"] == base and n != base and r["task"] == task and "unpaired" not in " ".join(r["changes"])
    ]


def table_rows(runs: Mapping[str, dict], table: str) -> list[str]:
    """The rows of a table among `runs` (already filtered to those trained): `main` (the default study's runs),
    `imagination` (MMIN's and IF-MMIN's table: the full-modality networks, MMIN, IF-MMIN and their variants), `vavl`
    (VAVL's runs, then the base run of every other method)."""
    if table == "main":
        return [n for n, r in runs.items() if r["study"] == "default"]
    if table == "imagination":
        return [n for method in IMAGINATION_TABLE for n in family(runs, method)]
    if table == "vavl":
        vavl = family(runs, "vavl")
        return vavl + [
            n for n, r in runs.items() if r["base"] is None and r["method"] != "vavl" and r["study"] == "default"
        ]
    raise ValueError(f"unknown table {table!r}; allowed: main, imagination, vavl")


def confusion_runs(runs: Mapping[str, dict]) -> list[str]:
    """The runs whose confusion matrices the analysis draws: each single-modality baseline, then MMIN's
    full-modality network (what the human per-modality confusions compare with)."""
    singles = [
        n
        for n, r in runs.items()
        if r["base"] is None
        and len(r["needs"]) == 1
        and CATALOG[r["method"]].min_modalities == 1
        and r["method"] != "vavl"
    ]
    fusion = base_run(runs, "utt_fusion")
    return singles + ([fusion] if fusion else [])


def embedded_runs(runs: Mapping[str, dict]) -> list[str]:
    """The base runs whose method has a joint representation (the embedding stage maps them)."""
    return [n for n, r in runs.items() if r["joint"] and r["base"] is None and r["study"] == "default"]


def explore_run(runs: Mapping[str, dict], available: list[str]) -> str | None:
    """The explorer's default run among those with a checkpoint: NMER's (the noise-robust method), else the first
    imagination method's, else the first."""
    for method in ("nmer", "ifmmin", "mmin"):
        name = base_run({n: runs[n] for n in available if n in runs}, method)
        if name is not None:
            return name
    return available[0] if available else None


def rivals(runs: Mapping[str, dict], methods: tuple[str, ...]) -> list[str]:
    """The base runs of `methods` present among `runs`, in that order."""
    return [name for method in methods if (name := base_run(runs, method)) is not None]
