"""The method registry: each method is registered once with its params schema and model builder.

`params.yaml: methods.<name>` holds one entry per method to run; `<name>` must be registered here, and its
entry must match the method's schema exactly (every key present, no unknown key). Keys common to every
method (`epochs`, `lr`) live in each entry so that `dvc exp run -S methods.<name>.<key>=...` reruns only
that method's stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from mer_core.config import ConfigError, Field, Section, validate

TRAIN_CONDITIONS = ("full", "random")


@dataclass(frozen=True)
class ModelContext:
    """What a builder needs to size a model: the corpus's modalities, feature dims, frame rates, classes."""

    modalities: tuple[str, ...]
    dims: dict[str, int]
    frame_rates: dict[str, float]
    n_classes: int

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ModelContext":
        modalities = tuple(manifest["modalities"])
        return cls(modalities, {m: manifest["dims"][m] for m in modalities},
                   {m: manifest["frame_rates"][m] for m in modalities}, len(manifest["classes"]))


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    build(params, context) -> nn.Module whose `forward(batch)` returns logits and `loss(batch)` returns
    (loss, logits). train_conditions: `full` trains on every available modality; `random` draws one
    non-empty condition per training clip (MMIN's missing-modality augmentation).
    """

    name: str
    build: Callable[[dict, ModelContext], nn.Module]
    schema: Section
    train_conditions: str
    summary: str


REGISTRY: dict[str, MethodSpec] = {}

COMMON_KEYS = {
    "epochs": Field(int, low=1, high=1000),
    "lr": Field(float, low=1e-6, high=1.0),
}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"method {spec.name!r} registered twice")
    if spec.train_conditions not in TRAIN_CONDITIONS:
        raise ValueError(f"{spec.name}: train_conditions must be one of {TRAIN_CONDITIONS}")
    REGISTRY[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    """The registered method `name`; ConfigError lists the registered names otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"methods.{name}: unknown method; registered methods: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def validate_method_params(name: str, params: dict, key: str) -> None:
    validate(params, method_spec(name).schema, key)
