"""The torch side of the method catalogue: each registered method's training stages with their model builders.

What a method is (its params and their defaults, stages, the modalities it needs, its variants) is stated without
torch in `mer_core.params.methods` (`CATALOG`); a resolved run carries its method's stages. The method's module
(e.g. `mer_core.methods.mmin`) defines `BUILDERS`: {method: {stage name: build(entry, context, previous) ->
nn.Module}}, and, for a stage that is fitted rather than trained by gradient descent (the classical baseline's SVM),
`FITTERS`: {method: {stage name: fit(model, data, block) -> StageResult}}. `stage_specs` joins a run's stages with their
builders, importing only that method's module, so a training stage imports (and depends on) the code of its own method
alone; `mer_core.methods.lookup.method_spec` looks a method up by name in the catalogue.

A method trains in one or more **stages** (`StageSpec`): the same training loop (`mer_core.train`) runs each,
with the stage's own optimiser block (`optim`) and training conditions; a stage's builder receives the previous
stage's trained model (e.g. MMIN's stage 2 starts from, and is taught by, its stage-1 encoder network). A fitted stage
(`StageSpec.fit`) fits its built model on the training split, one model per point of its hyper-parameter grid, and
keeps the best on the validation split; everything after (checkpoint, test predictions, robustness grid) is the same
as for a trained stage.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] schedule of the study. Official: fixed schedules (e.g. MMIN 30 + 30 epochs). Here: each stage trains until its
  validation criterion stops improving, at most the official epochs (`train.stopping`). Why: every run converges
  before a claim is tested, in the study's CPU budget. Restore: `train.preset: paper`.
  Test: tests/test_config.py::test_paper_preset_resets_schedules_and_sizes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import pandas as pd
from torch import nn

from mer_core.tasks import Task

if TYPE_CHECKING:
    from mer_core.data.batches import Split
    from mer_core.noise.scheduler import NoiseScheduler

TRAIN_CONDITIONS = ("full", "random", "missing")
SELECTION = ("pooled", "full", "missing")


@dataclass
class StageResult:
    """What training (or fitting) a stage gives: the kept epoch (a fitted stage: the position of the kept grid point,
    from 1), its validation selection metric, and the history, one row per epoch or grid point (stage, epoch,
    train_loss, val_loss, val_<metric>; a trained stage also `phase`, `lr` and `stopped`, how it ended: plateau | max;
    a fitted one `stopped` = grid and its own columns)."""

    best_epoch: int
    best_score: float
    history: pd.DataFrame


@dataclass(frozen=True)
class ModelContext:
    """What a builder needs to size a model: the corpus's modalities, feature dims, frame rates, and the task
    (its loss and `n_outputs`: classes, or attributes for regression)."""

    modalities: tuple[str, ...]
    dims: dict[str, int]
    frame_rates: dict[str, float | None]
    task: Task

    @property
    def n_outputs(self) -> int:
        return self.task.n_outputs

    @classmethod
    def from_dict(cls, values: dict) -> "ModelContext":
        """The context a checkpoint stores (`dataclasses.asdict` of it)."""
        return cls(**{**values, "task": Task(values["task"]["name"], tuple(values["task"]["targets"]))})

    @classmethod
    def from_manifest(cls, manifest: dict, task: Task) -> "ModelContext":
        modalities = tuple(manifest["modalities"])
        return cls(
            modalities,
            {m: manifest["dims"][m] for m in modalities},
            {m: manifest["frame_rates"].get(m) for m in modalities},
            task,
        )


@dataclass(frozen=True)
class StageSpec:
    """One training stage of a method (`mer_core.params.methods.StageInfo` with its builder).

    build(entry, context, previous) -> nn.Module, where `entry` is the run's whole entry and `previous` the model
    trained by the stage before (None for the first). The module's `forward(batch)` returns its outputs (logits, or
    attribute values for regression) and `loss(batch, full)` returns (loss, outputs); `full` is the batch before the
    training condition was applied. A module that updates its parts in several optimiser steps per batch (VAVL)
    defines `steps(batch, full)` instead, a generator of one loss per step, each computed after the previous step's
    update. key: None when the stage's keys (its `optim` block) sit at the top of the entry, else the nested block
    that holds them (`pretrain`). train_conditions: `full` (every modality the clip has), `random` (one non-empty
    condition per clip, MMIN's augmentation), `missing` (one condition with a modality absent, MMIN's stage 2), or a
    callable of the entry giving one of them. select_on: the validation conditions of the epoch kept: every condition
    pooled, those with a modality missing (MMIN's stage 2, docs/methods.md §1.2), or the full one (a stage-1
    network). noise_key: the entry's block of the `NoiseScheduler` that fills the removed modalities with noised
    frames instead of zeros, in training and validation (NMER, docs/methods.md §4.1), or None. grid, fit: None for a
    stage trained by gradient descent; for a fitted stage, the entry key of its hyper-parameter grid and fit(model,
    data, block) -> `StageResult`, which fits the built model in place on `data["train"]`, selecting its grid point on
    `data["val"]` (never on the test split); its model stays an `nn.Module` whose state_dict holds what it learnt.
    """

    name: str
    build: Callable[[dict, "ModelContext", nn.Module | None], nn.Module]
    train_conditions: str | Callable[[dict], str] = "full"
    select_on: str = "pooled"
    key: str | None = None
    noise_key: str | None = None
    grid: str | None = None
    fit: Callable[[nn.Module, dict[str, "Split"], dict], StageResult] | None = None

    def __post_init__(self):
        if isinstance(self.train_conditions, str) and self.train_conditions not in TRAIN_CONDITIONS:
            raise ValueError(f"stage {self.name}: train_conditions must be one of {TRAIN_CONDITIONS}")
        if self.select_on not in SELECTION:
            raise ValueError(f"stage {self.name}: select_on must be one of {SELECTION}")

    def params(self, entry: dict) -> dict:
        """The block of `entry` that holds this stage's keys."""
        return entry if self.key is None else entry[self.key]

    def conditions(self, entry: dict) -> str:
        """What each training clip shows in this stage, for the run's `entry`."""
        return self.train_conditions(entry) if callable(self.train_conditions) else self.train_conditions

    def batch_size(self, entry: dict, default: int = 256) -> int:
        """The clips per evaluation batch of this stage's model: its `optim` block's batch size (`default` for a
        fitted stage, which has none)."""
        block = self.params(entry)
        return block["optim"]["batch_size"] if "optim" in block else default

    def training_noise(self, entry: dict) -> "NoiseScheduler | None":
        """The scheduler replacing removed modalities during this stage, or None (zero-filled)."""
        if self.noise_key is None:
            return None
        from mer_core.noise.scheduler import NoiseScheduler

        return NoiseScheduler.from_params(entry[self.noise_key])


def stage_specs(method: str, module: str, stages: list[dict]) -> tuple[StageSpec, ...]:
    """The stages of `method` as a resolved run (or a checkpoint) lists them (name, key, train_conditions, select_on,
    noise_key, grid), with their builders (and fitters) from `module` (its `BUILDERS`, `FITTERS`), imported here."""
    loaded = importlib.import_module(module)
    builders, fitters = loaded.BUILDERS[method], getattr(loaded, "FITTERS", {}).get(method, {})
    return tuple(
        StageSpec(
            s["name"],
            builders[s["name"]],
            s["train_conditions"],
            s["select_on"],
            s["key"],
            s["noise_key"],
            s.get("grid"),
            fitters.get(s["name"]) if s.get("grid") else None,
        )
        for s in stages
    )
