"""The params toolkit: strict typed models, errors that name the dotted key, dotted overrides and deep merges.

Every section of `params.yaml` is a pydantic v2 model deriving from `Params` (`mer_core.params`): strict types (an int
is accepted where a float is expected, nothing else is converted), no NaN or infinity, no unknown key, and a
documented default for every key (the attribute docstring under each field, which `docs/params.md` is generated
from). `check` validates a mapping against a model and turns pydantic's first error into a `ConfigError` that names
the dotted key, what it got and what is allowed there (for an unknown key: the allowed keys).

This module is the bottom of the params stack: it imports neither torch nor any other part of `mer_core`.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range. The message names the key."""


class Params(BaseModel):
    """Base of every params section: strict, closed (unknown keys are errors), finite numbers, documented fields."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, use_attribute_docstrings=True, validate_default=True
    )


def dotted(location: tuple, prefix: str = "") -> str:
    """('methods', 'mmin', 'optim', 'lr') -> 'methods.mmin.optim.lr' (list indices as [k])."""
    text = prefix
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def _field_model(model: type[BaseModel], location: tuple) -> type[BaseModel] | None:
    """The model class that holds the last key of `location` (for listing its allowed keys), if it is one."""
    current: Any = model
    for part in location[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def input_path(location: tuple, value: Any) -> tuple:
    """The parts of a pydantic error location that are keys or indices of the validated input `value`: the tags
    pydantic adds for the members of a union and for validators (`float`, `list[int]`, `literal['all']`,
    `function-after[...]`) are left out."""
    path, node = [], value
    for part in location:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def _where(error: dict, value: Any) -> tuple:
    location = error["loc"]
    if error["type"] == "missing":  # the missing key is not in the input
        return (*input_path(location[:-1], value), location[-1])
    if location and location[-1] == "[key]":  # a mapping key outside its allowed set: the key itself, as a name
        return (*input_path(location[:-2], value), str(location[-2]))  # (pydantic gives a key 5 or true as an int)
    return input_path(location, value)


def describe_error(error: ValidationError, model: type[BaseModel], prefix: str = "", value: Any = None) -> ConfigError:
    """The first error of a pydantic validation of `value` as a `ConfigError` naming the dotted key. A value that
    fits no member of a union fails once per member: the errors that reach deepest into the value are reported
    (a bad list item rather than "not 'all'"), their messages joined."""
    errors = error.errors(include_url=False)
    base = _where(errors[0], value)
    related = [(_where(e, value), e) for e in errors]
    related = [(path, e) for path, e in related if path[: len(base)] == base]
    depth = max(len(path) for path, _ in related)
    location, first = next((path, e) for path, e in related if len(path) == depth)
    messages = [e["msg"].removeprefix("Value error, ") for path, e in related if path == location]
    key = dotted(location, prefix)
    if first["type"] == "extra_forbidden":
        owner = _field_model(model, location)
        allowed = ", ".join(owner.model_fields) if owner is not None else "see docs/params.md"
        return ConfigError(f"{key}: unknown key; allowed keys here: {allowed}")
    if first["type"] == "missing":
        return ConfigError(f"{key}: missing key")
    got = first.get("input")
    message = " or ".join(dict.fromkeys(messages))
    if first["loc"] and first["loc"][-1] == "[key]":  # a mapping key outside its allowed set (e.g. unpaired.video)
        return ConfigError(f"{key}: not an allowed key; {message}")
    if first["type"] == "value_error" and isinstance(got, Mapping):
        # a check of a whole section: name the key its message starts with, if any
        head, colon, rest = message.partition(": ")
        if colon and head in got:
            return ConfigError(f"{dotted((*location, head), prefix)}: {rest}")
        return ConfigError(f"{key or 'params'}: {message}")
    return ConfigError(f"{key}: got {got!r}; {message}")


def check(model: type[M], value: Any, prefix: str = "") -> M:
    """`value` validated as `model`; `ConfigError` naming the first offending dotted key (under `prefix`)."""
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise describe_error(err, model, prefix, value) from None


def deep_merge(base: Mapping, update: Mapping) -> dict:
    """A deep copy of `base` with `update` merged in: mappings are merged key by key, anything else replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def expand_dotted(flat: Mapping[str, Any]) -> dict:
    """{"optim.lr": 1e-3, "hidden": 64} -> {"optim": {"lr": 1e-3}, "hidden": 64} (nested mappings merged)."""
    nested: dict = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        if not all(parts):
            raise ConfigError(f"{key!r}: not a dotted key (empty part)")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key!r}: {part!r} is set both as a value and as a mapping")
        leaf = parts[-1]
        node[leaf] = (
            deep_merge(node[leaf], value)
            if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping)
            else copy.deepcopy(value)
        )
    return nested


def apply_overrides(params: Mapping, overrides: Mapping[str, Any]) -> dict:
    """A deep copy of `params` with each dotted key of `overrides` set (e.g. {"train.seeds": [0, 1]}); missing
    intermediate mappings are created, so a key left at its default in params.yaml can be overridden too."""
    params = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        parts = key.split(".")
        node = params
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: depth + 1])}: not a mapping, cannot set {key!r} under it")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return params
