"""mer_core.config: Field / Section / MapOf validation, apply_overrides, load_params on the real params.yaml."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from mer_core.config import ConfigError, Field, MapOf, Section, apply_overrides, load_params, study_schema, validate
from mer_core.data.features import FEATURES_SCHEMA
from mer_core.data.folds import FOLDS_SCHEMA
from mer_core.methods import METHODS_SCHEMA, REGISTRY, method_spec, validate_run
from mer_core.train import TRAIN_SCHEMA

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"

TOY = Section({
    "name": Field(str, choices=("alpha", "beta")),
    "n": Field(int, low=1, high=10),
    "rate": Field(float, low=0.0, high=1.0),
    "sizes": Field(list, low=1, high=3, item=Field(int, low=1)),
    "folds": Field((str, list), choices=("all",), low=1, item=Field(int, low=0)),
    "maybe": Field(int, optional=True),
    "sub": Section({"flag": Field(bool)}),
    "table": MapOf(Field(int, low=0), keys=("x", "y", "z"), required_keys=("x",)),
    "free": MapOf(Field(str)),
})


def toy() -> dict:
    return {"name": "alpha", "n": 3, "rate": 0.5, "sizes": [4, 2], "folds": "all", "maybe": None,
            "sub": {"flag": True}, "table": {"x": 1, "z": 0}, "free": {"anything": "goes"}}


def toy_error(**changes) -> str:
    value = toy()
    for key, new in changes.items():
        value[key] = new
    with pytest.raises(ConfigError) as info:
        validate(value, TOY, "toy")
    return str(info.value)


# ---------------------------------------------------------------------------------------------- schemas


def test_valid_value_passes_and_ints_are_floats():
    assert validate(toy(), TOY, "toy") is None
    assert validate(dict(toy(), rate=1), TOY, "toy") is None  # an int where a float is expected
    assert validate(dict(toy(), folds=[0, 2]), TOY, "toy") is None  # (str, list) admits a list
    assert validate(dict(toy(), maybe=4), TOY, "toy") is None


@pytest.mark.parametrize("key, value, expected", [
    ("n", "3", ["toy.n: got '3' (str)", "expected int with value in [1, 10]"]),
    ("n", 3.0, ["toy.n: got 3.0 (float)", "expected int"]),
    ("n", True, ["toy.n: got True (bool)", "expected int"]),  # a bool is not an int here
    ("rate", "fast", ["toy.rate", "expected float with value in [0.0, 1.0]"]),
    ("sizes", (4, 2), ["toy.sizes", "expected list with length in [1, 3]"]),
])
def test_wrong_type_names_key_and_expected_type(key, value, expected):
    message = toy_error(**{key: value})
    for text in expected:
        assert text in message


@pytest.mark.parametrize("key, value, expected", [
    ("n", 0, ["toy.n: got 0", "[1, 10]"]),
    ("n", 11, ["toy.n: got 11", "[1, 10]"]),
    ("rate", -0.1, ["toy.rate: got -0.1", "[0.0, 1.0]"]),
    ("rate", 1.5, ["toy.rate: got 1.5", "[0.0, 1.0]"]),
    ("sizes", [], ["toy.sizes: got []", "length in [1, 3]"]),
    ("sizes", [1, 1, 1, 1], ["toy.sizes", "length in [1, 3]"]),
    ("sizes", [2, 0], ["toy.sizes[1]: got 0", ">= 1"]),
    ("folds", [], ["toy.folds", "length >= 1"]),
    ("folds", [0, -1], ["toy.folds[1]: got -1", ">= 0"]),
])
def test_out_of_range_names_key_and_bounds(key, value, expected):
    message = toy_error(**{key: value})
    for text in expected:
        assert text in message


@pytest.mark.parametrize("key, value, allowed", [
    ("name", "gamma", "allowed values: alpha, beta"),
    ("folds", "some", "allowed values: all"),
])
def test_bad_choice_names_key_and_choices(key, value, allowed):
    message = toy_error(**{key: value})
    assert message.startswith(f"toy.{key}: got {value!r}")
    assert allowed in message


def test_required_value_none_is_rejected_optional_is_not():
    assert "toy.n: a value is required (int with value in [1, 10])" in toy_error(n=None)


def test_unknown_key_names_dotted_key_and_allowed_keys():
    value = toy()
    value["sub"]["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        validate(value, TOY, "toy")
    assert str(info.value) == "toy.sub.colour: unknown key; allowed keys under toy.sub: flag"
    with pytest.raises(ConfigError, match=r"^bogus: unknown key; allowed keys under params: name, n, rate"):
        validate(dict(toy(), bogus=1), TOY)  # top level: no prefix, "params" as the place


def test_missing_key_names_dotted_key():
    value = toy()
    del value["sub"]["flag"]
    with pytest.raises(ConfigError, match=r"^toy\.sub\.flag: missing key"):
        validate(value, TOY, "toy")


def test_missing_key_names_allowed_values():
    value = toy()
    del value["n"]
    with pytest.raises(ConfigError) as info:
        validate(value, TOY, "toy")
    assert "toy.n" in str(info.value) and "int with value in [1, 10]" in str(info.value)


def test_not_a_mapping():
    assert toy_error(sub=[True]) == "toy.sub: expected a mapping, got [True]"
    with pytest.raises(ConfigError, match=r"^params: expected a mapping, got None"):
        validate(None, TOY)


def test_mapof_keys_required_keys_and_values():
    message = toy_error(table={"x": 1, "w": 2})
    assert message == "toy.table.w: unknown key; allowed: x, y, z"
    message = toy_error(table={"y": 1})
    assert message == "toy.table.x: missing key (required: x)"
    message = toy_error(table={"x": -1})
    assert message.startswith("toy.table.x: got -1") and ">= 0" in message
    assert toy_error(free={3: 4}).startswith("toy.free.3: got 4 (int); expected str")


def test_nan_is_out_of_range():
    with pytest.raises(ConfigError, match="toy.rate"):
        validate(dict(toy(), rate=math.nan), TOY, "toy")


# ---------------------------------------------------------------------------------------------- overrides


def test_apply_overrides_sets_dotted_keys_on_a_copy():
    params = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": 2}
    original = copy.deepcopy(params)
    out = apply_overrides(params, {"a.b.c": 5, "e": 3, "a.d": [7]})
    assert out == {"a": {"b": {"c": 5}, "d": [7]}, "e": 3}
    assert params == original  # input untouched
    out["a"]["b"]["c"] = 99
    assert params["a"]["b"]["c"] == 1  # deep copy
    assert apply_overrides(params, {}) == params


@pytest.mark.parametrize("dotted, named", [
    ("a.b.x", "a.b.x: unknown key in override"),
    ("a.x.c", "a.x: unknown key in override 'a.x.c'"),
    ("e.f", "e.f: unknown key in override"),  # e is a leaf, not a mapping
    ("zzz", "zzz: unknown key in override"),
])
def test_apply_overrides_unknown_key(dotted, named):
    with pytest.raises(ConfigError) as info:
        apply_overrides({"a": {"b": {"c": 1}}, "e": 2}, {dotted: 0})
    assert str(info.value).startswith(named)


# ---------------------------------------------------------------------------------------------- params.yaml


def test_load_params_missing_file_and_bad_yaml(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: params file not found"):
        load_params(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [0\n  data: {\n")
    with pytest.raises(ConfigError) as info:
        load_params(bad)
    assert str(bad) in str(info.value) and "not valid YAML" in str(info.value)


def _raw_params() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


def _synthetic_placeholder(raw: dict) -> bool:
    return not isinstance(raw["data"]["synthetic"], dict)


@pytest.fixture
def real_params() -> dict:
    """The real params.yaml; a placeholder data.synthetic is replaced by the synthetic module's defaults."""
    raw = _raw_params()
    if _synthetic_placeholder(raw):
        try:
            from mer_core.data.synthetic import SYNTHETIC_SCHEMA
            from mer_core.data.synthetic.corpus import default_config

            raw["data"]["synthetic"] = default_config()
            validate(raw["data"]["synthetic"], SYNTHETIC_SCHEMA, "data.synthetic")
        except Exception as err:  # owned by another module, in flux
            raw["data"]["synthetic"] = {"unavailable": repr(err)}
    return raw


def test_load_params_real_file():
    raw = _raw_params()
    if _synthetic_placeholder(raw):
        pytest.skip(f"params.yaml: data.synthetic is still a placeholder ({raw['data']['synthetic']!r}); "
                    "the other sections are validated in test_real_params_sections")
    try:
        params = load_params(PARAMS_FILE)
        changed = load_params(PARAMS_FILE, {"methods.late_fusion.optim.epochs": 3, "train.device": "cpu"})
    except ImportError as err:
        pytest.skip(f"mer_core.config.study_schema() cannot be assembled yet: {err}")
    assert params == raw
    assert {entry["method"] for entry in params["methods"].values()} <= set(REGISTRY)
    assert changed["methods"]["late_fusion"]["optim"]["epochs"] == 3 and changed["train"]["device"] == "cpu"
    with pytest.raises(ConfigError, match=r"^methods\.late_fusion\.optim\.epochs: got 0"):
        load_params(PARAMS_FILE, {"methods.late_fusion.optim.epochs": 0})
    with pytest.raises(ConfigError, match=r"^analysis\.imagination_table: 'nope' is not a run of `methods`"):
        load_params(PARAMS_FILE, {"analysis.imagination_table": ["mmin", "nope"]})
    with pytest.raises(ConfigError, match=r"^train\.nope: unknown key in override"):
        load_params(PARAMS_FILE, {"train.nope": 1})


SECTION_SCHEMAS = {"features": FEATURES_SCHEMA, "folds": FOLDS_SCHEMA, "train": TRAIN_SCHEMA,
                   "methods": METHODS_SCHEMA}


def test_real_params_sections(real_params):
    """Every section of the real file that does not depend on the synthetic corpus validates."""
    for section, schema in SECTION_SCHEMAS.items():
        validate(real_params[section], schema, section)
    for name, entry in real_params["methods"].items():
        validate_run(name, entry)
    assert real_params["methods"], "params.yaml runs no method"


def _set(params: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = params
    for part in path:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()
METHOD_NAMES = ", ".join(REGISTRY)

# (what to change, new value, texts the message must hold: the dotted key and what is allowed)
ERROR_CASES = {
    "unknown key": ("train.epochs", 3, ["train.epochs: unknown key",
                                         "allowed keys under train: seeds, folds, preset, weight_decay"]),
    "unknown key in a method": ("methods.audio_only.layers", 2, [
        "methods.audio_only.layers: unknown key",
        "allowed keys under methods.audio_only: optim, hidden, classifier, dropout"]),
    "missing key": ("methods.mmin.pretrain.optim.lr", DELETE, ["methods.mmin.pretrain.optim.lr: missing key"]),
    "wrong type": ("methods.utt_fusion.optim.batch_size", "64", [
        "methods.utt_fusion.optim.batch_size: got '64' (str)", "expected int with value in [1, 65536]"]),
    "bad preset": ("train.preset", "iemocap", ["train.preset: got 'iemocap'", "allowed values: study, paper"]),
    "bad ablation switch": ("methods.ifmmin_no_inject.inject", "no", ["methods.ifmmin_no_inject.inject: got 'no'"]),
    "wrong type (bool)": ("folds.n_folds", True, ["folds.n_folds: got True (bool)", "expected int"]),
    "out of range": ("folds.n_folds", 1, ["folds.n_folds: got 1", "[2, 100]"]),
    "out of range in a method": ("methods.utt_fusion.dropout", 0.99, ["methods.utt_fusion.dropout: got 0.99",
                                                                       "[0.0, 0.95]"]),
    "bad choice": ("train.device", "gpu", ["train.device: got 'gpu'", "allowed values: auto, cpu, cuda"]),
    "bad choice (extractor)": ("features.audio.extractor", "mfcc", ["features.audio.extractor: got 'mfcc'",
                                                                   "allowed values: logmel, compare"]),
    "bad choice in a list": ("features.visual.groups", ["au_r", "landmarks"], [
        "features.visual.groups[1]: got 'landmarks'", "allowed values: au_r, au_c, pose, gaze"]),
    "bad choice (str or list)": ("train.folds", "some", ["train.folds: got 'some'", "allowed values: all"]),
    "unknown method": ("methods.mmin_v2", {"method": "mmin_v2"}, ["methods.mmin_v2.method: got 'mmin_v2'",
                                                                  f"registered methods: {METHOD_NAMES}"]),
    "bad vavl ablation": ("methods.vavl.rec_weight", "double", ["methods.vavl.rec_weight: got 'double'"]),
    "unpaired: unknown modality": ("methods.vavl.unpaired", {"video": 0.2}, [
        "methods.vavl.unpaired.video: unknown key", "allowed: audio, visual, text"]),
    "unpaired: no paired clip left": ("methods.utt_fusion.unpaired", {"audio": 0.5, "visual": 0.5}, [
        "methods.utt_fusion.unpaired: the shares sum to 1", "keep their sum below 1"]),
}


def _validate_sections(params: dict) -> None:
    for section, schema in SECTION_SCHEMAS.items():
        validate(params[section], schema, section)
    for name, entry in params["methods"].items():
        validate_run(name, entry)


def _validate_study(params: dict) -> None:
    try:
        schema = study_schema()
    except ImportError as err:
        pytest.skip(f"mer_core.config.study_schema() cannot be assembled yet: {err}")
    if isinstance(params["data"]["synthetic"], dict) and "unavailable" in params["data"]["synthetic"]:
        pytest.skip(f"params.yaml: data.synthetic is a placeholder and no default is available "
                    f"({params['data']['synthetic']['unavailable']})")
    validate(params, schema)
    for name, entry in params["methods"].items():
        validate_run(name, entry)


@pytest.mark.parametrize("level", ["section", "study"])
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_real_params_errors_name_key_and_allowed(real_params, case, level):
    dotted, value, expected = ERROR_CASES[case]
    params = copy.deepcopy(real_params)
    _set(params, dotted, value)
    check = _validate_sections if level == "section" else _validate_study
    with pytest.raises(ConfigError) as info:
        check(params)
    for text in expected:
        assert text in str(info.value), f"{text!r} not in {str(info.value)!r}"


def test_real_params_validate_as_a_whole(real_params):
    _validate_study(real_params)  # no error


def test_real_params_task_key(real_params):
    assert real_params["task"] in ("classification", "regression")
    params = copy.deepcopy(real_params)
    params["task"] = "ordinal"
    with pytest.raises(ConfigError) as info:
        _validate_study(params)
    assert "task: got 'ordinal'" in str(info.value) and "allowed values: classification, regression" in str(info.value)
    del params["task"]
    with pytest.raises(ConfigError, match="task: missing key"):
        _validate_study(params)
    params["task"] = "regression"
    _validate_study(params)


def test_unknown_method_name_lists_registered_methods():
    with pytest.raises(ConfigError) as info:
        method_spec("mmin_v2")
    assert str(info.value) == f"method 'mmin_v2' is not registered; registered methods: {METHOD_NAMES}"
    with pytest.raises(ConfigError, match="registered methods: "):
        validate_run("mmin_v2", {"method": "mmin_v2"})


# the switches restoring the official code's behaviour: their value in params.yaml (the study's default) per method
SWITCH_DEFAULTS = {
    "encoder_pooling": ("valid", {"audio_only", "visual_only", "early_fusion", "late_fusion", "utt_fusion",
                                  "utt_dataaug", "mmin", "ifmmin", "nmer"}),
    "text_windows": ("valid", {"audio_only", "visual_only", "early_fusion", "late_fusion", "utt_fusion",
                               "utt_dataaug", "mmin", "ifmmin", "nmer"}),
    "conditions": ("missing", {"utt_dataaug"}),  # official
    "ae_version": ("published", {"ifmmin"}),  # the version current when the paper appeared
    "vae_attention": ("per_clip", {"nmer"}),
    "eval_latent": ("sample", {"nmer"}),  # official
    "attention_scale": ("d_model", {"vavl"}),  # official
    "positions": ("relative", {"vavl"}),
    "pooling": ("valid", {"vavl"}),
    "axes": ("per_clip", {"vavl"}),
}


def test_params_yaml_sets_every_switch_to_its_documented_default(real_params):
    """Every run of a method that has a switch sets it, to the documented default (an ablation entry may set
    another value only on purpose: none does in the default study)."""
    for key, (default, methods) in SWITCH_DEFAULTS.items():
        runs = {run: entry for run, entry in real_params["methods"].items() if entry["method"] in methods}
        assert runs, key
        assert {run: entry[key] for run, entry in runs.items()} == {run: default for run in runs}, key
    nmer = [e for e in real_params["methods"].values() if e["method"] == "nmer"]
    assert all(e["pretrain"]["denoise_term"] == "official" for e in nmer)
    others = {entry["method"] for entry in real_params["methods"].values()} - SWITCH_DEFAULTS["encoder_pooling"][1]
    assert others == {"vavl"}  # every other method encodes with the MMIN family's LSTM / TextCNN
