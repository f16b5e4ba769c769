"""Loading and validating `params.yaml`.

Every knob of the study lives in `params.yaml`. It is validated up front against small declarative schemas
(`Field`, `Section`, `MapOf`) so that a bad value fails before any work starts, with an error that names the
dotted key and what is allowed there (`ConfigError`).

Each part of the library owns the schema of its own section (the synthetic corpus, features, folds, each
method); `study_schema` assembles them.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range. The message names the key."""


@dataclass(frozen=True)
class Field:
    """One leaf parameter.

    kind: the allowed Python type(s); an int is accepted where a float is expected.
    choices: allowed values when the value is a string (so `Field((str, list), choices=("all",))` admits
    "all" or a list). low/high: inclusive bounds (for numbers, or list lengths when
    `kind` is list). item: the schema of each list element.
    """

    kind: type | tuple[type, ...]
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    item: "Field | Section | None" = None
    optional: bool = False

    def check(self, value: Any, key: str) -> None:
        if value is None:
            if self.optional:
                return
            raise ConfigError(f"{key}: a value is required ({self.describe()})")
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{key}: got {value!r} ({type(value).__name__}); expected {self.describe()}")
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{key}: got NaN; expected {self.describe()}")
        if self.choices is not None and isinstance(value, str) and value not in self.choices:
            raise ConfigError(f"{key}: got {value!r}; allowed values: {', '.join(map(str, self.choices))}")
        size = len(value) if isinstance(value, (list, tuple)) else value
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            if self.low is not None and size < self.low:
                raise ConfigError(f"{key}: got {value!r}; expected {self.describe()}")
            if self.high is not None and size > self.high:
                raise ConfigError(f"{key}: got {value!r}; expected {self.describe()}")
        if self.item is not None and isinstance(value, (list, tuple)):
            for i, element in enumerate(value):
                _check(element, self.item, f"{key}[{i}]")

    def describe(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        text = " or ".join(k.__name__ for k in kinds)
        if self.choices is not None:
            text += " in {" + ", ".join(map(str, self.choices)) + "}"
        what = "length" if list in kinds else "value"
        if self.low is not None and self.high is not None:
            text += f" with {what} in [{self.low}, {self.high}]"
        elif self.low is not None:
            text += f" with {what} >= {self.low}"
        elif self.high is not None:
            text += f" with {what} <= {self.high}"
        return text


@dataclass(frozen=True)
class Section:
    """A mapping with a fixed set of keys; every key is required and no other key is allowed."""

    fields: Mapping[str, "Field | Section | MapOf"]


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys are free (or drawn from `keys`) and whose values all follow `value`."""

    value: "Field | Section | MapOf"
    keys: tuple[str, ...] | None = None
    required_keys: tuple[str, ...] = field(default=())


def _check(value: Any, spec: "Field | Section | MapOf", key: str) -> None:
    if isinstance(spec, Field):
        spec.check(value, key)
        return
    where = key or "params"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    if isinstance(spec, Section):
        unknown = sorted(set(value) - set(spec.fields))
        if unknown:
            raise ConfigError(
                f"{_join(key, unknown[0])}: unknown key; allowed keys under {where}: {', '.join(spec.fields)}"
            )
        for name, sub in spec.fields.items():
            if name not in value:
                raise ConfigError(f"{_join(key, name)}: missing key; expected {describe(sub)}")
            _check(value[name], sub, _join(key, name))
        return
    if spec.keys is not None:
        unknown = sorted(set(value) - set(spec.keys))
        if unknown:
            raise ConfigError(f"{_join(key, unknown[0])}: unknown key; allowed: {', '.join(spec.keys)}")
    for name in spec.required_keys:
        if name not in value:
            raise ConfigError(f"{_join(key, name)}: missing key (required: {', '.join(spec.required_keys)})")
    for name, sub_value in value.items():
        _check(sub_value, spec.value, _join(key, str(name)))


def describe(spec: "Field | Section | MapOf") -> str:
    """What a key must hold, for error messages."""
    if isinstance(spec, Field):
        return spec.describe()
    if isinstance(spec, Section):
        return "a mapping with keys " + ", ".join(spec.fields)
    return "a mapping" + (" with keys among " + ", ".join(spec.keys) if spec.keys else "")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def validate(value: Any, spec: "Field | Section | MapOf", key: str = "") -> None:
    """Raise `ConfigError` naming the first offending dotted key, or return None when `value` fits `spec`."""
    _check(value, spec, key)


def study_schema() -> Section:
    """The schema of the whole `params.yaml`, assembled from the sections each module owns."""
    from mer_core.data.features import FEATURES_SCHEMA
    from mer_core.data.folds import FOLDS_SCHEMA
    from mer_core.data.prepare import DATA_SCHEMA
    from mer_core.embedding import EMBEDDING_SCHEMA
    from mer_core.explore import EXPLORE_SCHEMA
    from mer_core.extended import EXTENDED_SCHEMA
    from mer_core.methods import METHODS_SCHEMA
    from mer_core.report import ANALYSIS_SCHEMA
    from mer_core.robustness import ROBUSTNESS_SCHEMA
    from mer_core.tasks import TASKS
    from mer_core.train import TRAIN_SCHEMA

    return Section(
        {
            "seed": Field(int, low=0),
            "task": Field(str, choices=TASKS),
            "data": DATA_SCHEMA,
            "features": FEATURES_SCHEMA,
            "folds": FOLDS_SCHEMA,
            "train": TRAIN_SCHEMA,
            "methods": METHODS_SCHEMA,
            "robustness": ROBUSTNESS_SCHEMA,
            "analysis": Section({**ANALYSIS_SCHEMA.fields, "embedding": EMBEDDING_SCHEMA}),  # mer_core.embedding
            "extended": EXTENDED_SCHEMA,
            "explore": EXPLORE_SCHEMA,
        }
    )


def load_params(path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None) -> dict:
    """Read `params.yaml`, apply dotted-key `overrides` (e.g. {"train.batch_size": 32}), validate, return a dict.

    A missing or unparsable file raises `ConfigError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root or pass its path)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    params = apply_overrides(params, overrides or {})
    validate(params, study_schema())
    from mer_core.methods import validate_run

    for run, entry in params["methods"].items():
        validate_run(run, entry)
    from mer_core.extended import check_extended

    check_extended(params)
    from mer_core.explore import check_explore

    check_explore(params)
    for key in ("confusion_methods", "imagination_table"):
        unknown = [run for run in params["analysis"][key] if run not in params["methods"]]
        if unknown:
            raise ConfigError(f"analysis.{key}: {unknown[0]!r} is not a run of `methods` "
                              f"(runs: {', '.join(params['methods'])})")
    from mer_core.embedding import check_embedding
    from mer_core.train import check_train

    check_train(params)  # before check_embedding, which refers to train.folds
    check_embedding(params)
    return params


def apply_overrides(params: dict, overrides: Mapping[str, Any]) -> dict:
    """Return a deep copy of `params` with each dotted key in `overrides` set, e.g. {"train.batch_size": 32}.

    The key must already exist; an unknown one raises `ConfigError` naming it.
    """
    params = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = params
        parts = dotted.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{'.'.join(parts[: depth + 1])}: unknown key in override {dotted!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"{dotted}: unknown key in override")
        node[parts[-1]] = value
    return params
