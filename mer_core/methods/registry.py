"""The method registry: each method is registered once with its params schema, its training stages and its
official ("paper") settings.

`params.yaml: methods.<run>` holds one entry per run of the study (one DVC stage `train@<run>` each). Its
`method` key names the registered method; the other keys must match that method's schema exactly (every key
present, no unknown key). Ablations are further entries of the same method with other values (e.g.
`mmin_no_cycle: {method: mmin, cycle_weight: 0, ...}`), so `dvc exp run -S methods.<run>.<key>=...` reruns
only that run's stage. One more key is open to every run: `unpaired: {<modality>: share}` trains it on partly
unpaired data, a share of the training clips keeping only that modality (`mer_core.data.batches.unpair`).

A method trains in one or more **stages** (`StageSpec`): the same training loop (`mer_core.train`) runs
each, with the stage's own optimiser block (`optim`) and training conditions; a stage's builder receives the
previous stage's trained model (e.g. MMIN's stage 2 starts from, and is taught by, its stage-1 encoder
network).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] settings of the study. Official: e.g. MMIN 30 + 30 epochs, lr 2e-4, batch 128, width 128. Here: the
  official epoch counts as maxima (`train.stopping`), lr 1e-3, batch 64, width 64 (`params.yaml`). Why: the study's
  CPU budget. Restore: `train.preset: paper`.
  Test: tests/test_methods.py::test_paper_preset_merges_the_official_settings.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from torch import nn

from mer_core.config import ConfigError, Field, MapOf, Section, validate
from mer_core.data.store import MODALITIES
from mer_core.tasks import Task

if TYPE_CHECKING:
    from mer_core.noise.scheduler import NoiseScheduler

TRAIN_CONDITIONS = ("full", "random", "missing")
SELECTION = ("pooled", "full", "missing")
RUN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
UNPAIRED_SCHEMA = MapOf(Field(float, low=0.0, high=1.0), keys=MODALITIES)

OPTIM_SCHEMA = Section(
    {
        "epochs": Field(int, low=1, high=1000),  # epochs at the constant learning rate
        "epochs_decay": Field(int, low=0, high=1000),  # then epochs of linear decay to ~0 (MMIN's niter_decay)
        "lr": Field(float, low=1e-6, high=1.0),
        "beta1": Field(float, low=0.0, high=0.999),  # Adam beta1 (beta2 = 0.999)
        "grad_clip": Field(float, low=0.0),  # max gradient norm per sub-network (0 = off)
        "batch_size": Field(int, low=1, high=65536),
    }
)


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
        return cls(modalities, {m: manifest["dims"][m] for m in modalities},
                   {m: manifest["frame_rates"].get(m) for m in modalities}, task)


@dataclass(frozen=True)
class StageSpec:
    """One training stage of a method.

    build(params, context, previous) -> nn.Module, where `params` is the run's whole entry and `previous` the
    model trained by the stage before (None for the first). The module's `forward(batch)` returns its outputs
    (logits, or attribute values for regression) and `loss(batch, full)` returns (loss, outputs); `full` is the
    batch before the training condition was applied. A module that updates its parts in several optimiser
    steps per batch (VAVL) defines `steps(batch, full)` instead, a generator of one loss per step, each
    computed after the previous step's update.
    key: None when the stage's keys (its `optim` block) sit at the top of the entry, else the name of the
    nested block that holds them (e.g. `pretrain`).
    train_conditions: `full` (every modality the clip has), `random` (one non-empty condition per clip, MMIN's
    augmentation), `missing` (one condition with at least one modality absent, MMIN's stage-2 protocol).
    select_on: the validation criterion for the epoch kept: UA pooled over every condition, over the conditions
    with a modality missing (MMIN's stage 2, methods.md §1.2), or UA with full modalities (a full-modality
    stage-1 network).
    noise: None, or noise(params) -> the `NoiseScheduler` that fills the removed modalities with noised frames
    instead of zeros, in training and in validation (NMER, methods.md §4.1).
    """

    name: str
    build: Callable[[dict, ModelContext, nn.Module | None], nn.Module]
    train_conditions: str = "full"
    select_on: str = "pooled"
    key: str | None = None
    noise: Callable[[dict], "NoiseScheduler"] | None = None

    def __post_init__(self):
        if self.train_conditions not in TRAIN_CONDITIONS:
            raise ValueError(f"stage {self.name}: train_conditions must be one of {TRAIN_CONDITIONS}")
        if self.select_on not in SELECTION:
            raise ValueError(f"stage {self.name}: select_on must be one of {SELECTION}")

    def params(self, entry: dict) -> dict:
        """The block of `entry` that holds this stage's keys."""
        return entry if self.key is None else entry[self.key]

    def training_noise(self, entry: dict) -> "NoiseScheduler | None":
        """The scheduler replacing removed modalities during this stage, or None (zero-filled)."""
        return None if self.noise is None else self.noise(entry)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its params schema (without the `method` key), its stages in training order, a
    one-line summary, and `paper`: the official effective settings (a partial entry merged over the run's
    entry when `train.preset` is `paper`; loss weights and ablation switches are never part of it).
    `needs`: the modalities it reads by name; `min_modalities`: how many the corpus must offer (a fusion or
    missing-modality method needs two). `joint`: what the last stage's model returns from `joint(batch)`, the
    (B, D) joint representation its classifier reads (`mer_core.embedding` projects it), in a few words; None
    when the model has none (late fusion averages unimodal decisions)."""

    name: str
    schema: Section
    stages: tuple[StageSpec, ...]
    summary: str
    paper: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    min_modalities: int = 1
    joint: str | None = None

    def check_corpus(self, run: str, corpus: str, modalities: tuple[str, ...]) -> None:
        """ConfigError naming the run when the corpus lacks a modality the method needs (e.g. an audio-only corpus
        and a fusion method), with how to leave the run out."""
        lacking = [m for m in self.needs if m not in modalities]
        if lacking or len(modalities) < self.min_modalities:
            need = f"the modalities {', '.join(self.needs)}" if lacking else f"{self.min_modalities} modalities"
            raise ConfigError(f"methods.{run}: method {self.name} needs {need}; corpus {corpus} has "
                              f"{', '.join(modalities)} only. Leave the run out: delete it from params.yaml: methods "
                              f"(or `dvc exp run -S '~methods.{run}'`)")


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"method {spec.name!r} registered twice")
    if not spec.stages:
        raise ValueError(f"method {spec.name!r} has no training stage")
    REGISTRY[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    """The registered method `name`; ConfigError lists the registered names otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"method {name!r} is not registered; registered methods: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def run_spec(entry: dict, key: str) -> MethodSpec:
    """The method a `methods.<run>` entry runs (its `method` key), with errors naming `key`."""
    if not isinstance(entry, dict) or "method" not in entry:
        raise ConfigError(f"{key}.method: missing key; name a registered method: {', '.join(REGISTRY)}")
    if entry["method"] not in REGISTRY:
        raise ConfigError(f"{key}.method: got {entry['method']!r}; registered methods: {', '.join(REGISTRY)}")
    return REGISTRY[entry["method"]]


def validate_run(run: str, entry: dict, key: str | None = None) -> MethodSpec:
    """Check the name and the entry of run `run` against its method's schema; return the method."""
    key = key or f"methods.{run}"
    if not RUN_NAME.match(run):
        raise ConfigError(f"{key}: run names must match {RUN_NAME.pattern} (they name DVC stages and folders)")
    return validate_entry(entry, key)


def validate_entry(entry: dict, key: str) -> MethodSpec:
    """Check a run entry (under `key`, for errors) against its method's schema; return the method."""
    spec = run_spec(entry, key)
    validate({k: v for k, v in entry.items() if k not in ("method", "unpaired")}, spec.schema, key)
    if "unpaired" in entry:
        validate(entry["unpaired"], UNPAIRED_SCHEMA, f"{key}.unpaired")
        if sum(entry["unpaired"].values()) >= 1 - 1e-9:
            raise ConfigError(f"{key}.unpaired: the shares sum to {sum(entry['unpaired'].values()):g}, leaving no "
                              "paired training clip; keep their sum below 1")
    return spec


def effective_entry(entry: dict, preset: str) -> dict:
    """The entry a run trains with: as written (`study`), or with its method's official settings merged over
    it (`paper`)."""
    if preset == "study":
        return copy.deepcopy(entry)
    return _merge(entry, REGISTRY[entry["method"]].paper)


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) else copy.deepcopy(value)
    return merged
