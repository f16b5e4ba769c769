"""The extended study (`extended/dvc.yaml`, `make repro-extended`): runs of `methods` retrained with one thing
changed, beside the default study and reading its feature store (`params.yaml: extended`).

- `ablations`: a run with some of its keys set otherwise (VAVL's no shared layers / no residual / no
  reconstruction, methods.md §5.4), stage `ablation@<name>`.
- `other_task`: runs trained and evaluated for the other task (regression of arousal, valence and dominance
  when the study classifies), stage `task@<run>`.
- `unpaired`: the paired-fraction curve: runs retrained with only a fraction `paired` of the training clips
  holding every modality, the rest split evenly into clips holding one modality (VAVL's partly unpaired
  training, §5.1), stage `unpaired@<run>-<paired>`; paired = 1 is the default study's run itself.

The variants skip the robustness grid (the default study tests every run under noise): `variant_params` turns
it off. Each variant writes `results/extended/<name>/` as a default run writes `results/<run>/`.
"""
from __future__ import annotations

import copy

from mer_core.config import ConfigError, Field, MapOf, Section
from mer_core.methods import validate_entry
from mer_core.methods.registry import RUN_NAME
from mer_core.tasks import TASKS

EXTENDED_SCHEMA = Section({
    "ablations": MapOf(Section({"run": Field(str), "set": MapOf(Field((bool, int, float, str, list)))})),
    "other_task": Section({"task": Field(str, choices=TASKS), "runs": Field(list, item=Field(str))}),
    "unpaired": Section({"runs": Field(list, item=Field(str)),
                         "paired": Field(list, item=Field(float, low=0.01, high=0.99))}),
})


def unpaired_shares(paired: float, modalities: tuple[str, ...]) -> dict[str, float]:
    """The `unpaired` run key for a paired fraction: the rest split evenly over the modalities."""
    return {m: (1.0 - paired) / len(modalities) for m in modalities}


def variant_name(kind: str, run: str, value: str | float | None = None) -> str:
    """The folder name of a variant, as extended/dvc.yaml spells it: the ablation's name, `<run>_<task>`,
    `<run>_paired<fraction>` (e.g. vavl_paired0.5)."""
    if kind == "ablation":
        return run
    if kind == "task":
        return f"{run}_{value}"
    return f"{run}_paired{float(value)}"


def variant_params(params: dict, kind: str, run: str, value: str | float | None, modalities: tuple[str, ...]) -> tuple[str, dict]:
    """(variant name, params whose `methods` holds the variant's entry under that name) for an `ablation`
    (`run` = its name in `extended.ablations`), a `task` (`value` = the task) or an `unpaired` run (`value` = the
    paired fraction); the robustness grid is turned off."""
    params = copy.deepcopy(params)
    if kind == "ablation":
        spec = params["extended"]["ablations"][run]
        entry = {**copy.deepcopy(params["methods"][spec["run"]]), **spec["set"]}
    else:
        entry = copy.deepcopy(params["methods"][run])
        if kind == "task":
            params["task"] = value
        elif kind == "unpaired":
            entry["unpaired"] = unpaired_shares(float(value), modalities)
        else:
            raise ValueError(f"variant kind must be ablation, task or unpaired, got {kind!r}")
    name = variant_name(kind, run, value)
    validate_entry(entry, f"extended variant {name}")
    params["methods"][name] = entry
    params["robustness"].update(noise_types=[], intensities=[], signal=False)
    return name, params


def check_extended(params: dict) -> None:
    """Cross-checks `extended` against `methods` and `task`; ConfigError names the key."""
    cfg, runs = params["extended"], params["methods"]
    for name, spec in cfg["ablations"].items():
        if spec["run"] not in runs:
            raise ConfigError(f"extended.ablations.{name}.run: {spec['run']!r} is not a run of `methods`")
        if name in runs:
            raise ConfigError(f"extended.ablations.{name}: the name is already a run of `methods`")
        validate_entry({**runs[spec["run"]], **spec["set"]}, f"extended.ablations.{name}")
        if not RUN_NAME.match(name):
            raise ConfigError(f"extended.ablations.{name}: names must match {RUN_NAME.pattern} (stages and folders)")
    if cfg["other_task"]["task"] == params["task"]:
        raise ConfigError(f"extended.other_task.task: {params['task']!r} is the study's task; name the other one")
    for key in ("other_task", "unpaired"):
        unknown = [r for r in cfg[key]["runs"] if r not in runs]
        if unknown:
            raise ConfigError(f"extended.{key}.runs: {unknown[0]!r} is not a run of `methods`")
