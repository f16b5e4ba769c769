"""mer_core.schema: the params toolkit (strict models, errors naming the dotted key, dotted overrides, deep merges)."""

from __future__ import annotations

import copy
import math
from typing import Literal

import pytest
from pydantic import Field, model_validator

from mer_core.schema import ConfigError, Params, apply_overrides, check, deep_merge, dotted, expand_dotted


class Sub(Params):
    flag: bool = True
    """A switch."""


class Toy(Params):
    name: Literal["alpha", "beta"] = "alpha"
    n: int = Field(3, ge=1, le=10)
    rate: float = Field(0.5, ge=0.0, le=1.0)
    sizes: list[int] = Field(default_factory=lambda: [4, 2], min_length=1, max_length=3)
    folds: Literal["all"] | list[int] = "all"
    maybe: int | None = None
    sub: Sub = Field(default_factory=Sub)
    table: dict[Literal["x", "y"], int] = Field(default_factory=dict)
    needed: int
    """No default: must be given."""

    @model_validator(mode="after")
    def _sizes_fit(self):
        if sum(self.sizes) > 100:
            raise ValueError(f"sizes: the sizes sum to {sum(self.sizes)}; keep them at most 100")
        return self


class Whole(Params):
    toy: Toy


def toy(**changes) -> dict:
    return {"needed": 1, **changes}


def error(value, model=Toy, prefix="toy") -> str:
    with pytest.raises(ConfigError) as info:
        check(model, value, prefix)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- check


def test_check_fills_defaults_and_accepts_an_int_for_a_float():
    value = check(Toy, toy(rate=1), "toy").model_dump()
    assert value == {
        "name": "alpha",
        "n": 3,
        "rate": 1.0,
        "sizes": [4, 2],
        "folds": "all",
        "maybe": None,
        "sub": {"flag": True},
        "table": {},
        "needed": 1,
    }
    assert check(Toy, toy(folds=[0, 2], maybe=4, table={"x": 1})).folds == [0, 2]


def test_unknown_key_names_the_dotted_key_and_the_allowed_keys():
    assert error(toy(bogus=1)) == (
        "toy.bogus: unknown key; allowed keys here: name, n, rate, sizes, folds, maybe, sub, table, needed"
    )
    assert error(toy(sub={"flag": True, "colour": "red"})) == "toy.sub.colour: unknown key; allowed keys here: flag"
    assert error({"toy": toy(sub={"colour": 1})}, Whole, "") == "toy.sub.colour: unknown key; allowed keys here: flag"


def test_missing_key_names_the_dotted_key():
    assert error({}) == "toy.needed: missing key"
    assert error({"toy": {}}, Whole, "") == "toy.needed: missing key"


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"n": "3"}, "toy.n: got '3'; Input should be a valid integer"),  # strict: no conversion from a string
        ({"n": 3.0}, "toy.n: got 3.0; Input should be a valid integer"),
        ({"n": True}, "toy.n: got True; Input should be a valid integer"),  # a bool is not an int here
        ({"rate": "fast"}, "toy.rate: got 'fast'; Input should be a valid number"),
        ({"sub": {"flag": "yes"}}, "toy.sub.flag: got 'yes'; Input should be a valid boolean"),
        ({"sub": [True]}, "toy.sub: got [True]; Input should be a valid dictionary or instance of Sub"),
        ({"sizes": (4, 2)}, "toy.sizes: got (4, 2); Input should be a valid list"),
    ],
)
def test_wrong_type_names_the_key_and_what_is_expected(changes, expected):
    assert error(toy(**changes)) == expected


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"n": 0}, "toy.n: got 0; Input should be greater than or equal to 1"),
        ({"n": 11}, "toy.n: got 11; Input should be less than or equal to 10"),
        ({"rate": -0.1}, "toy.rate: got -0.1; Input should be greater than or equal to 0"),
        ({"sizes": []}, "toy.sizes: got []; List should have at least 1 item after validation, not 0"),
        (
            {"sizes": [1, 1, 1, 1]},
            "toy.sizes: got [1, 1, 1, 1]; List should have at most 3 items after validation, not 4",
        ),
        ({"sizes": [2, "x"]}, "toy.sizes[1]: got 'x'; Input should be a valid integer"),
        ({"name": "gamma"}, "toy.name: got 'gamma'; Input should be 'alpha' or 'beta'"),
        ({"table": {"z": 1}}, "toy.table.z: not an allowed key; Input should be 'x' or 'y'"),
        ({"table": {"x": "1"}}, "toy.table.x: got '1'; Input should be a valid integer"),
    ],
)
def test_bad_value_names_the_key_and_what_is_allowed(changes, expected):
    assert error(toy(**changes)) == expected


def test_a_value_of_a_union_names_the_key_and_every_member():
    assert error(toy(folds="some")) == "toy.folds: got 'some'; Input should be 'all' or Input should be a valid list"
    assert error(toy(folds=[0, "x"])) == "toy.folds[1]: got 'x'; Input should be a valid integer"  # the deepest error
    assert error(toy(maybe="x")) == "toy.maybe: got 'x'; Input should be a valid integer"


def test_a_check_of_the_whole_section_names_the_key_its_message_starts_with():
    assert error(toy(sizes=[60, 50])) == "toy.sizes: the sizes sum to 110; keep them at most 100"
    assert error({"toy": toy(sizes=[60, 50])}, Whole, "") == "toy.sizes: the sizes sum to 110; keep them at most 100"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(value):
    message = error(toy(rate=value))
    assert message.startswith("toy.rate: got ") and "finite number" in message


def test_prefix_and_list_indices_in_dotted_keys():
    assert dotted(("methods", "mmin", "optim", "lr")) == "methods.mmin.optim.lr"
    assert dotted(("groups", 1), "features.visual") == "features.visual.groups[1]"
    assert dotted((), "toy") == "toy"


# ---------------------------------------------------------------------------------------------- dotted keys


def test_expand_dotted_nests_and_merges():
    assert expand_dotted({"optim.lr": 1e-3, "hidden": 64, "optim.epochs": 3}) == {
        "optim": {"lr": 1e-3, "epochs": 3},
        "hidden": 64,
    }
    assert expand_dotted({"pretrain": {"optim": {"lr": 1}}, "pretrain.optim.epochs": 2}) == {
        "pretrain": {"optim": {"lr": 1, "epochs": 2}}
    }
    assert expand_dotted({"a.b": {"c": 1}, "a": {"b": {"d": 2}}}) == {"a": {"b": {"c": 1, "d": 2}}}
    assert expand_dotted({}) == {}


def test_expand_dotted_errors():
    with pytest.raises(ConfigError, match=r"'a\.\.b': not a dotted key \(empty part\)"):
        expand_dotted({"a..b": 1})
    with pytest.raises(ConfigError, match=r"'a\.b': 'a' is set both as a value and as a mapping"):
        expand_dotted({"a": 1, "a.b": 2})


def test_expand_dotted_copies_its_values():
    value = {"x": [1]}
    nested = expand_dotted({"a": value})
    nested["a"]["x"].append(2)
    assert value == {"x": [1]}


def test_deep_merge_merges_mappings_replaces_the_rest_and_copies():
    base = {"optim": {"lr": 1, "epochs": 2}, "sizes": [1, 2], "name": "a"}
    original = copy.deepcopy(base)
    merged = deep_merge(base, {"optim": {"lr": 5}, "sizes": [3], "extra": {"k": 1}})
    assert merged == {"optim": {"lr": 5, "epochs": 2}, "sizes": [3], "name": "a", "extra": {"k": 1}}
    assert base == original
    merged["optim"]["epochs"] = 99
    assert base["optim"]["epochs"] == 2
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}  # a mapping replaces a leaf
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


def test_apply_overrides_sets_dotted_keys_on_a_copy():
    params = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": 2}
    original = copy.deepcopy(params)
    out = apply_overrides(params, {"a.b.c": 5, "e": 3, "a.d": [7]})
    assert out == {"a": {"b": {"c": 5}, "d": [7]}, "e": 3}
    assert params == original  # input untouched
    out["a"]["b"]["c"] = 99
    assert params["a"]["b"]["c"] == 1  # deep copy
    assert apply_overrides(params, {}) == params


def test_apply_overrides_creates_missing_mappings():
    """A key left at its default (absent from the file) can be overridden: the mappings on its way are created."""
    assert apply_overrides({"train": {"seeds": [0]}}, {"train.stopping.patience": 3, "methods.vavl.d_model": 64}) == {
        "train": {"seeds": [0], "stopping": {"patience": 3}},
        "methods": {"vavl": {"d_model": 64}},
    }


def test_apply_overrides_under_a_leaf_is_an_error():
    with pytest.raises(ConfigError, match=r"^e: not a mapping, cannot set 'e\.f' under it"):
        apply_overrides({"a": {"b": 1}, "e": 2}, {"e.f": 0})
    with pytest.raises(ConfigError, match=r"^a\.b: not a mapping, cannot set 'a\.b\.c\.d' under it"):
        apply_overrides({"a": {"b": 1}}, {"a.b.c.d": 0})


def test_params_models_are_strict_closed_and_finite():
    config = Params.model_config
    assert config["extra"] == "forbid" and config["strict"] is True and config["allow_inf_nan"] is False
