"""mer_core.config: params.yaml validated as a whole (pydantic models, errors naming the dotted key), runs resolved
(method defaults, bases and dotted `set`s, variants, the paper preset, `train.runs`, corpus feeding, generated
extended runs), cross-checks between sections, and the `params` stage's resolved per-stage files."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mer_core import codedeps
from mer_core.config import (
    ConfigError,
    flatten,
    get_dotted,
    load_params,
    remove_stale_outputs,
    resolve_runs,
    stage_params,
    validate_params,
    write_stage_params,
)
from mer_core.machine import Machine
from mer_core.methods.lookup import method_spec
from mer_core.params.data import CmuMosei, CremaD, Data, Features, Folds, IemocapAudio, MspImprov, Ravdess, Wav2Vec2
from mer_core.params.evaluation import Analysis, Embedding, Explore, Extended, Robustness, RunEntry, Unpaired
from mer_core.params.methods import (
    CATALOG,
    IFMMIN,
    MMIN,
    NMER,
    VAVL,
    Baseline,
    EarlyFusion,
    FunctionalsSVM,
    NoiseParams,
    UttDataaug,
)
from mer_core.params.study import Study
from mer_core.params.synthetic import Synthetic, SyntheticAudio
from mer_core.params.training import Optim, Stopping, Train
from mer_core.schema import check, deep_merge, expand_dotted

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params.yaml"
METHOD_NAMES = ", ".join(CATALOG)


def defaults(method: str) -> dict:
    return CATALOG[method].params().model_dump(mode="json")


def small(**sections) -> dict:
    """A small params mapping: a few runs, no generated extended run unless asked."""
    raw = {
        "methods": {
            "audio_only": {"method": "audio_only"},
            "utt_fusion": {"method": "utt_fusion"},
            "mmin": {"method": "mmin"},
            "ifmmin": {"method": "ifmmin"},
            "vavl": {"method": "vavl"},
        },
        "extended": {"other_task": {"methods": []}, "unpaired": {"methods": []}},
    }
    return deep_merge(raw, sections)


def runs_of(raw: dict) -> dict[str, dict]:
    return resolve_runs(validate_params(raw))


def error(raw: dict | None = None, overrides: dict | None = None) -> str:
    """The ConfigError message of `raw` (validated), or of params.yaml with `overrides`."""
    with pytest.raises(ConfigError) as info:
        if raw is None:
            load_params(PARAMS_FILE, overrides or {})
        else:
            validate_params(raw)
    return str(info.value)


# ============================================================================================== every section


SECTIONS = {
    "data": Data,
    "features": Features,
    "folds": Folds,
    "train": Train,
    "robustness": Robustness,
    "analysis": Analysis,
    "explore": Explore,
    "extended": Extended,
    "machine": Machine,
}


def test_every_section_of_the_project_params_validates_with_its_model():
    params = load_params(PARAMS_FILE)
    assert set(params) == set(Study.model_fields)
    for section, model in SECTIONS.items():
        validated = check(model, params[section], section).model_dump(mode="json", exclude={"runs"})
        assert validated == {k: v for k, v in params[section].items() if k != "runs"}, section
    for name, entry in params["extended"]["runs"].items():
        assert check(RunEntry, entry, f"extended.runs.{name}").base in params["methods"]
    nested = {
        ("data", "synthetic"): Synthetic,
        ("data", "crema_d"): CremaD,
        ("data", "ravdess"): Ravdess,
        ("data", "iemocap_audio"): IemocapAudio,
        ("data", "msp_improv"): MspImprov,
        ("data", "cmu_mosei"): CmuMosei,
        ("train", "stopping"): Stopping,
    }
    for (section, key), model in nested.items():
        assert check(model, params[section][key]).model_dump(mode="json") == params[section][key], key
    for name, entry in params["methods"].items():
        assert check(RunEntry, entry, f"methods.{name}").method in CATALOG


def test_every_run_entry_validates_with_its_methods_model():
    models = {
        "audio_only": Baseline,
        "visual_only": Baseline,
        "early_fusion": EarlyFusion,
        "late_fusion": Baseline,
        "utt_fusion": Baseline,
        "utt_dataaug": UttDataaug,
        "mmin": MMIN,
        "ifmmin": IFMMIN,
        "nmer": NMER,
        "vavl": VAVL,
        "functionals_svm": FunctionalsSVM,
    }
    assert {name: info.params for name, info in CATALOG.items()} == models
    for name, run in resolve_runs(load_params(PARAMS_FILE)).items():
        if run["entry"] is None:
            continue
        model = models[run["method"]]
        assert check(model, run["entry"], name).model_dump(mode="json") == run["entry"], name
        for stage in run["stages"]:
            block = run["entry"] if stage["key"] is None else run["entry"][stage["key"]]
            check(Optim, block["optim"], f"{name}.{stage['name']}.optim")
        if run["method"] == "nmer":
            check(NoiseParams, run["entry"]["noise"], f"{name}.noise")


def test_defaults_fill_every_key_of_an_empty_file():
    params = validate_params({})
    assert params["task"] == "classification" and params["methods"] == {}
    derived = {
        "train": {"batches": "bucketed", "normalise_modalities": "all"},
        "explore": {"fold": 0, "seed": 0},
        "analysis": {"embedding": {"fold": 0, "seed": 0}},
    }  # null: derived (`derive_defaults`)
    for section, model in SECTIONS.items():
        if section != "extended":
            assert params[section] == deep_merge(model().model_dump(mode="json"), derived.get(section, {})), section
    assert params["train"]["stopping"] == {"rule": "plateau", "patience": 5, "min_epochs": 5, "min_delta": 0.0}


# ============================================================================================== errors


@pytest.mark.parametrize(
    "key, value, model",
    [
        ("foo", 1, Study),
        ("data.on_eror", "skip", Data),
        ("methods.mmin.optim.lrr", 1e-3, Optim),
        ("methods.mmin.pretrain.optim.lrr", 1e-3, Optim),
        ("methods.mmin.cycle_wieght", 1.0, MMIN),
        ("train.stopping.patiense", 3, Stopping),
        ("features.audio.wav2vec2.layr", 3, Wav2Vec2),
        ("analysis.embedding.perplexty", 5.0, Embedding),
        ("extended.unpaired.pairs", [0.5], Unpaired),
        ("machine.jbos", 1, Machine),
        ("data.synthetic.audio.snr", [1.0, 2.0], SyntheticAudio),
    ],
)
def test_unknown_keys_anywhere_name_the_dotted_key_and_the_allowed_keys(key, value, model):
    assert error(overrides={key: value}) == f"{key}: unknown key; allowed keys here: {', '.join(model.model_fields)}"


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("task", "ordinal", "task: got 'ordinal'; Input should be 'classification' or 'regression'"),
        ("train.preset", "iemocap", "train.preset: got 'iemocap'; Input should be 'study' or 'paper'"),
        ("folds.n_folds", 1, "folds.n_folds: got 1; Input should be greater than or equal to 2"),
        ("folds.n_folds", True, "folds.n_folds: got True; Input should be a valid integer"),
        (
            "methods.utt_fusion.optim.batch_size",
            "64",
            "methods.utt_fusion.optim.batch_size: got '64'; Input should be a valid integer",
        ),
        (
            "methods.utt_fusion.dropout",
            0.99,
            "methods.utt_fusion.dropout: got 0.99; Input should be less than or equal to 0.95",
        ),
        (
            "methods.mmin.pretrain.optim.lr",
            0.0,
            "methods.mmin.pretrain.optim.lr: got 0.0; Input should be greater than or equal to 0.000001",
        ),
        ("machine.device", "gpu", "machine.device: got 'gpu'; Input should be 'auto', 'cpu' or 'cuda'"),
        (
            "features.audio.extractor",
            "mfcc",
            "features.audio.extractor: got 'mfcc'; Input should be 'logmel', 'compare' or 'wav2vec2'",
        ),
        (
            "features.visual.groups",
            ["au_r", "landmarks"],
            "features.visual.groups[1]: got 'landmarks'; Input should be 'au_r', 'au_c', 'pose' or 'gaze'",
        ),
        ("methods.ifmmin.inject", "no", "methods.ifmmin.inject: got 'no'; Input should be a valid boolean"),
        (
            "methods.ifmmin.ae_version",
            "latest",
            "methods.ifmmin.ae_version: got 'latest'; Input should be 'published' or 'head'",
        ),
        (
            "methods.vavl.unpaired",
            {"video": 0.2},
            "methods.vavl.unpaired.video: not an allowed key; Input should be 'audio', 'visual' or 'text'",
        ),
        (
            "methods.utt_fusion.unpaired",
            {"audio": 0.5, "visual": 0.5},
            "methods.utt_fusion.unpaired: the shares sum to 1, leaving no paired training clip; keep their sum below 1",
        ),
        ("methods.vavl.kernel", 4, "methods.vavl.kernel: the depthwise kernel must be odd (same padding), got 4"),
        ("train.seeds", [0, 0], "train.seeds: each entry may appear once, got [0, 0]"),
        (
            "data.corpus",
            "iemocap",
            "data.corpus: got 'iemocap'; not a registered corpus; allowed values: builtin, "
            "crema_d, ravdess, emodb, iemocap_audio, msp_improv, iemocap_mmin, cmu_mosei",
        ),
        (
            "methods.mmin_v2",
            {"method": "mmin_v2"},
            f"methods.mmin_v2.method: got 'mmin_v2'; registered methods: {METHOD_NAMES}",
        ),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(key, value, expected):
    assert error(overrides={key: value}) == expected


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train.folds", "some", "train.folds: got 'some'; Input should be 'all' or Input should be a valid list"),
        ("train.folds", [0, "x"], "train.folds[1]: got 'x'; Input should be a valid integer"),
        (
            "methods.vavl.rec_weight",
            "double",
            "methods.vavl.rec_weight: got 'double'; Input should be 'auto' or Input should be a valid number",
        ),
        (
            "methods.vavl.rec_weight",
            -1.0,
            "methods.vavl.rec_weight: got -1.0; Input should be 'auto' or Input should be greater than or equal to 0",
        ),
    ],
)
def test_a_bad_value_of_a_union_names_the_key_and_what_each_member_allows(key, value, expected):
    assert error(overrides={key: value}) == expected


@pytest.mark.parametrize(
    "key, value",
    [
        ("methods.mmin.optim.lr", math.nan),
        ("methods.mmin.cycle_weight", math.inf),
        ("methods.nmer.noise.beta_end", math.nan),
        ("robustness.beta_end", math.inf),
        ("analysis.embedding.perplexity", -math.inf),
        ("train.weight_decay", math.nan),
        ("data.synthetic.display_strength", math.nan),
    ],
)
def test_nan_and_infinity_are_rejected(key, value):
    message = error(overrides={key: value})
    assert message.startswith(f"{key}: got {value}") and "finite number" in message


def test_nan_in_a_set_of_a_run_with_a_base_is_rejected():
    message = error(small(methods={"x": {"base": "mmin", "set": {"cycle_weight": math.nan}}}))
    assert message.startswith("methods.x.cycle_weight: got nan") and "finite number" in message


def test_load_params_missing_file_bad_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [0\n  data: {\n")
    with pytest.raises(ConfigError) as info:
        load_params(bad)
    assert str(bad) in str(info.value) and "not valid YAML" in str(info.value)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping of sections at the top, got list"):
        load_params(bad)
    bad.write_text("")
    assert load_params(bad) == validate_params({})  # an empty file: every default


def test_unknown_method_name_lists_registered_methods():
    with pytest.raises(ConfigError) as info:
        method_spec("mmin_v2")
    assert str(info.value) == f"method 'mmin_v2' is not registered; registered methods: {METHOD_NAMES}"


# ============================================================================================== runs


def test_a_run_states_only_what_differs_from_its_methods_defaults():
    runs = runs_of(small(methods={"mmin": {"method": "mmin", "hidden": 64, "optim": {"epochs": 5}}}))
    run = runs["mmin"]
    expected = deep_merge(defaults("mmin"), {"hidden": 64, "optim": {"epochs": 5}})
    assert run["entry"] == expected
    assert run["entry"]["optim"]["epochs_decay"] == defaults("mmin")["optim"]["epochs_decay"]
    assert run["changes"] == {"hidden": 64, "optim.epochs": 5}
    assert (run["method"], run["base"], run["root"], run["variant"], run["study"]) == (
        "mmin",
        None,
        "mmin",
        None,
        "default",
    )
    assert run["module"] == "mer_core.methods.mmin" and [s["name"] for s in run["stages"]] == ["pretrain", "train"]
    assert runs["vavl"]["entry"] == defaults("vavl") and runs["vavl"]["changes"] == {}


def test_a_run_with_a_base_sets_deep_dotted_keys():
    runs = runs_of(
        small(
            methods={
                "mmin_no_cycle": {"base": "mmin", "set": {"cycle_weight": 0}},
                "mmin_slow": {"base": "mmin", "set": {"pretrain.optim.lr": 1e-4}},
            }
        )
    )
    base = runs["mmin"]["entry"]
    assert runs["mmin_no_cycle"]["entry"] == {**base, "cycle_weight": 0.0}
    assert runs["mmin_no_cycle"]["changes"] == {"cycle_weight": 0}
    assert runs["mmin_slow"]["entry"] == deep_merge(base, {"pretrain": {"optim": {"lr": 1e-4}}})
    assert runs["mmin_slow"]["changes"] == {"pretrain.optim.lr": 1e-4}
    for name in ("mmin_no_cycle", "mmin_slow"):
        assert (runs[name]["base"], runs[name]["root"], runs[name]["method"]) == ("mmin", "mmin", "mmin")


def test_chains_of_bases_accumulate_their_sets_and_inherit_the_task():
    runs = runs_of(
        small(
            methods={
                "c": {"base": "b", "set": {"optim.lr": 1e-3}},  # defined before its base: order does not matter
                "b": {"base": "a", "set": {"hidden": 32}, "task": "regression"},
                "a": {"base": "mmin", "set": {"cycle_weight": 0.5}},
            }
        )
    )
    expected = deep_merge(defaults("mmin"), {"cycle_weight": 0.5, "hidden": 32, "optim": {"lr": 1e-3}})
    assert runs["c"]["entry"] == expected
    assert [runs[n]["base"] for n in "abc"] == ["mmin", "a", "b"] and {runs[n]["root"] for n in "abc"} == {"mmin"}
    assert [runs[n]["task"] for n in "abc"] == ["classification", "regression", "regression"]
    assert runs["c"]["changes"] == {"optim.lr": 1e-3}  # what it changes from its own base
    assert list(runs)[:8] == ["audio_only", "utt_fusion", "mmin", "ifmmin", "vavl", "c", "b", "a"]  # params order


@pytest.mark.parametrize(
    "methods, expected",
    [
        ({"a": {"base": "b"}, "b": {"base": "a"}}, "methods.b.base: the bases loop: a -> b -> a"),
        ({"a": {"base": "a"}}, "methods.a.base: the bases loop: a -> a"),
        (
            {"a": {"base": "nope"}},
            "methods.a.base: 'nope' is not a run (runs: audio_only, utt_fusion, mmin, ifmmin, vavl, a)",
        ),
        (
            {"a": {"base": "mmin", "set": {"foo": 1}}},
            f"methods.a.set.foo: 'foo' is not a key of method mmin (keys: {', '.join(MMIN.model_fields)})",
        ),
        (
            {"a": {"base": "mmin", "set": {"optim.lrr": 1}}},
            f"methods.a.optim.lrr: unknown key; allowed keys here: {', '.join(Optim.model_fields)}",
        ),
        (
            {"a": {"method": "mmin", "set": {"cycle_weight": 0}}},
            "methods.a.set: only a run with a `base` sets keys; write them beside `method`",
        ),
        (
            {"a": {"base": "mmin", "cycle_weight": 0}},
            "methods.a: unknown key 'cycle_weight' beside `base`: a run with a base changes keys through `set` "
            "(e.g. set: {cycle_weight: ...})",
        ),
        (
            {"a": {"base": "mmin", "method": "mmin"}},
            "methods.a: give exactly one of `method` (a registered method) and `base` (another run)",
        ),
        ({"a": {}}, "methods.a: give exactly one of `method` (a registered method) and `base` (another run)"),
        ({"a": {"method": "mmin", "hidden": "wide"}}, "methods.a.hidden: got 'wide'; Input should be a valid integer"),
        (
            {"a": {"base": "mmin", "set": {"hidden": 0}}},
            "methods.a.hidden: got 0; Input should be greater than or equal to 1",
        ),
    ],
)
def test_run_inheritance_errors_name_the_run_and_the_key(methods, expected):
    assert error(small(methods=methods)) == expected


def test_an_extended_run_may_base_itself_on_a_default_run():
    runs = runs_of(small(extended={"runs": {"vavl_no_rec": {"base": "vavl", "set": {"rec_weight": 0.0}}}}))
    assert runs["vavl_no_rec"]["study"] == "extended" and runs["vavl_no_rec"]["base"] == "vavl"
    assert runs["vavl_no_rec"]["entry"]["rec_weight"] == 0.0
    assert error(small(extended={"runs": {"mmin": {"method": "mmin"}}})) == (
        "extended.runs.mmin: the name is already a run of `methods`"
    )
    assert error(small(extended={"runs": {"x": {"base": "mmin", "set": {"nope": 1}}}})).startswith(
        "extended.runs.x.set.nope: 'nope' is not a key of method mmin"
    )


# ============================================================================================== variants


def test_variants_are_detected_from_a_runs_difference_to_its_base():
    runs = runs_of(
        small(
            methods={
                "mmin_no_cycle": {"base": "mmin", "set": {"cycle_weight": 0}},  # an int where the variant says 0.0
                "mmin_two": {"base": "mmin", "set": {"cycle_weight": 0.0, "hidden": 64}},  # more than the variant
                "mmin_direct": {"method": "mmin", "cycle_weight": 0.0},  # the variant's change, but no base
                "mmin_no_cycle_again": {"base": "mmin_no_cycle", "set": {}},  # no difference to its base
                "ifmmin_no_cmd": {"base": "ifmmin", "set": {"pretrain.cmd_weight": 0.0}},
                "ifmmin_inv1": {"base": "ifmmin", "set": {"invariant_weight": 1}},
                "vavl_no_shared": {"base": "vavl", "set": {"shared": False}},
            }
        )
    )
    assert runs["mmin_no_cycle"]["variant"] == "no_cycle"
    assert runs["mmin_two"]["variant"] is None and runs["mmin_direct"]["variant"] is None
    assert runs["mmin_no_cycle_again"]["variant"] is None
    assert runs["ifmmin_no_cmd"]["variant"] == "no_cmd" and runs["ifmmin_inv1"]["variant"] == "released_inv_weight"
    assert runs["vavl_no_shared"]["variant"] == "no_shared"


def test_every_extended_run_of_the_project_is_the_variant_its_name_says():
    runs = resolve_runs(load_params(PARAMS_FILE))
    expected = {
        "mmin_no_cycle": "no_cycle",
        "ifmmin_no_cmd": "no_cmd",
        "ifmmin_no_inject": "no_inject",
        "ifmmin_no_inv": "no_inv",
        "ifmmin_head_ae": "head_ae",
        "ifmmin_released_inv": "released_inv_weight",
        "nmer_denoiser": "denoiser",
        "vavl_no_shared": "no_shared",
        "vavl_no_residual": "no_residual",
        "vavl_no_rec": "no_rec",
    }
    assert {name: runs[name]["variant"] for name in expected} == expected
    assert all(runs[name]["variant"] is None for name in ("mmin", "vavl", "utt_fusion"))


def test_every_catalogue_variant_names_keys_of_its_method():
    for name, info in CATALOG.items():
        model = info.params
        for variant, changes in info.variants.items():
            entry = check(model, expand_dotted(changes), f"{name}.{variant}").model_dump(mode="json")
            assert {key: get_dotted(entry, key) for key in changes} == changes, (name, variant)
            assert any(get_dotted(defaults(name), k) != v for k, v in changes.items()), (name, variant)


# ============================================================================================== presets


def test_paper_preset_resets_schedules_and_sizes():
    """`train.preset: paper`: every paper key (schedule and sizes) of every run is its method's default (the official
    setting), whatever the run or its base wrote; every other key keeps the run's value; and the resolved `train`
    settings of every stage say `stopping.rule: fixed` (the official schedules run to their end)."""
    methods = {
        "vavl": {
            "method": "vavl",
            "d_model": 64,
            "subsample": 2,
            "optim": {"epochs": 3},
            "positions": "absolute_shift",
        },
        "mmin": {
            "method": "mmin",
            "hidden": 32,
            "optim": {"epochs": 2},
            "mse_weight": 2.0,
            "pretrain": {"optim": {"epochs": 1}, "classifier": [16]},
        },
        "mmin_no_cycle": {"base": "mmin", "set": {"cycle_weight": 0.0, "ae_blocks": 2}},
        "nmer": {"method": "nmer", "latent": 8, "vae_layers": 1, "noise": {"steps": 50}},
        "utt_fusion": {
            "method": "utt_fusion",
            "hidden": 16,
            "classifier": [8],
            "dropout": 0.1,
            "encoder_pooling": "padded",
        },
    }
    raw = small(
        methods=methods,
        train={"stopping": {"rule": "plateau"}},
        extended={
            "runs": {"vavl_no_rec": {"base": "vavl", "set": {"rec_weight": 0.0, "heads": 4}}},
            "unpaired": {"methods": ["vavl"], "paired": [0.5]},
        },
    )
    study = validate_params(raw)
    paper = validate_params(deep_merge(raw, {"train": {"preset": "paper"}}))
    study_runs, paper_runs = resolve_runs(study), resolve_runs(paper)
    for name, run in paper_runs.items():
        info, official = CATALOG[run["method"]], defaults(run["method"])
        for key in info.paper_keys:
            assert get_dotted(run["entry"], key) == get_dotted(official, key), (name, key)
        kept = {
            k: v
            for k, v in flatten(study_runs[name]["entry"]).items()
            if not any(k == p or k.startswith(p + ".") for p in info.paper_keys) and k not in info.paper_switches
        }
        assert {k: flatten(run["entry"])[k] for k in kept} == kept, name
        for key, value in info.paper_switches.items():  # none written here: the official behaviour is implied
            assert get_dotted(run["entry"], key) == value, (name, key)
    assert study_runs["vavl"]["entry"]["d_model"] == 64 and paper_runs["vavl"]["entry"]["d_model"] == 512
    assert paper_runs["vavl"]["entry"]["positions"] == "absolute_shift"  # a switch, not a size: kept
    assert paper_runs["mmin"]["entry"]["mse_weight"] == 2.0
    assert paper_runs["mmin_no_cycle"]["entry"]["cycle_weight"] == 0
    assert paper_runs["nmer"]["entry"]["noise"]["steps"] == 50 and paper_runs["vavl_no_rec"]["entry"]["heads"] == 8
    assert paper_runs["utt_fusion"]["entry"]["encoder_pooling"] == "padded"
    assert study_runs["mmin_no_cycle"]["variant"] is None  # ae_blocks changed too
    assert paper_runs["mmin_no_cycle"]["variant"] == "no_cycle"  # the paper preset resets ae_blocks
    assert paper_runs["vavl_paired0.5"]["entry"]["unpaired"] == {"audio": 0.25, "visual": 0.25}
    files = {"study": stage_params(study, study_runs), "paper": stage_params(paper, paper_runs)}
    for preset, rule in (("study", "plateau"), ("paper", "fixed")):
        trains = [
            content["train"] for name, content in files[preset].items() if name.startswith(("runs/", "extended/"))
        ]
        assert trains and all(t["stopping"]["rule"] == rule and t["preset"] == preset for t in trains), preset
        for name in ("analysis.json", "extended_analysis.json"):
            assert files[preset][name]["stopping"]["rule"] == rule
    assert files["paper"]["runs/vavl.json"]["entry"]["d_model"] == 512


def test_every_paper_key_is_a_key_of_its_method():
    for name, info in CATALOG.items():
        fitted = [stage.grid for stage in info.stages if stage.grid]  # a fitted stage's grid is its schedule
        assert info.paper_keys and ("optim" in info.paper_keys or fitted and set(fitted) <= set(info.paper_keys)), name
        for key in info.paper_keys:
            get_dotted(defaults(name), key)  # KeyError when the key does not exist


# ============================================================================================== selection, corpora


def test_train_runs_selects_runs_and_skips_the_others_with_a_reason():
    params = load_params(PARAMS_FILE, {"train.runs": ["mmin", "utt_fusion"]})
    runs = resolve_runs(params)
    default = {name: run for name, run in runs.items() if run["study"] == "default"}
    assert [n for n, r in default.items() if r["status"] == "train"] == ["utt_fusion", "mmin"]
    for name, run in default.items():
        if name not in ("mmin", "utt_fusion"):
            assert (run["status"], run["reason"]) == ("skip", "not selected by train.runs"), name
    assert runs["mmin_no_cycle"]["status"] == "train" and runs["utt_fusion_regression"]["status"] == "train"
    assert runs["ifmmin_no_cmd"]["status"] == "skip"
    assert runs["ifmmin_no_cmd"]["reason"] == "its base run ifmmin is skipped (not selected by train.runs)"
    files = stage_params(params, runs)
    assert list(files["explore.json"]["runs"]) == ["utt_fusion", "mmin"]
    assert files["embedding.json"]["runs"] == ["utt_fusion", "mmin"]
    assert files["runs/vavl.json"]["status"] == "skip"
    assert error(overrides={"train.runs": ["mmin", "nope"]}) == (
        "train.runs: 'nope' is not a run of `methods` (runs: audio_only, visual_only, early_fusion, late_fusion, "
        "utt_fusion, utt_dataaug, mmin, ifmmin, nmer, vavl)"
    )


def test_an_audio_only_corpus_skips_the_methods_it_cannot_feed_with_one_reason_each():
    params = load_params(PARAMS_FILE, {"data.corpus": "emodb", "data.root": "/abs/emodb"})
    runs = resolve_runs(params)
    trained = [name for name, run in runs.items() if run["status"] == "train"]
    assert trained == ["audio_only", "audio_only_regression"]
    for name in ("early_fusion", "late_fusion", "utt_fusion", "utt_dataaug", "mmin", "ifmmin", "nmer"):
        assert runs[name]["reason"] == f"method {name} needs 2 modalities; corpus emodb has audio", name
    assert runs["visual_only"]["reason"] == "method visual_only needs the modalities visual; corpus emodb has audio"
    assert runs["vavl"]["reason"] == "method vavl needs the modalities audio, visual; corpus emodb has audio"
    for name, run in runs.items():
        if run["base"] is not None:
            base = runs[run["base"]]
            assert run["status"] == base["status"], name
            if base["status"] == "skip":
                assert run["reason"] == f"its base run {base['name']} is skipped ({base['reason']})", name
    files = stage_params(params, runs)
    assert files["corpus.json"]["generate"] is False and files["prepare.json"]["data"]["corpus"] == "emodb"
    assert files["embedding.json"]["runs"] == ["audio_only"] and list(files["explore.json"]["runs"]) == ["audio_only"]


# ============================================================================================== generated runs


def test_the_extended_study_generates_other_task_and_partly_unpaired_runs():
    params = load_params(PARAMS_FILE)
    runs = resolve_runs(params)
    extended = params["extended"]
    for method in extended["other_task"]["methods"]:
        run = runs[f"{method}_regression"]
        assert (run["study"], run["task"], run["base"], run["method"]) == ("extended", "regression", method, method)
        assert run["entry"] == runs[method]["entry"] and run["changes"] == {}
    for method in extended["unpaired"]["methods"]:
        for paired in extended["unpaired"]["paired"]:
            run = runs[f"{method}_paired{paired}"]
            share = (1 - paired) / 2
            assert run["entry"]["unpaired"] == pytest.approx({"audio": share, "visual": share}), run["name"]
            assert run["changes"] == pytest.approx({"unpaired.audio": share, "unpaired.visual": share})
            assert (run["base"], run["task"], run["study"]) == (method, "classification", "extended")
            assert {k: v for k, v in run["entry"].items() if k != "unpaired"} == {
                k: v for k, v in runs[method]["entry"].items() if k != "unpaired"
            }
    assert "vavl_paired0.5" in runs and "ifmmin_paired0.25" in runs


def test_unpaired_shares_split_the_rest_over_the_corpus_modalities():
    raw = small(data={"corpus": "cmu_mosei"}, extended={"unpaired": {"methods": ["utt_fusion"], "paired": [0.4]}})
    run = runs_of(raw)["utt_fusion_paired0.4"]
    assert run["entry"]["unpaired"] == pytest.approx({"audio": 0.2, "visual": 0.2, "text": 0.2})


def test_a_generated_run_without_a_base_run_is_skipped_and_a_name_clash_is_an_error():
    runs = runs_of(small(extended={"other_task": {"methods": ["nmer"]}}))
    assert runs["nmer_regression"]["status"] == "skip"
    assert runs["nmer_regression"]["reason"] == "`methods` has no run of method nmer to base it on"
    message = error(
        small(methods={"vavl_regression": {"method": "vavl"}}, extended={"other_task": {"methods": ["vavl"]}})
    )
    assert message == (
        "extended: the generated run 'vavl_regression' (extended.other_task / extended.unpaired) has "
        "the name of a run you defined; rename yours"
    )
    clash = error(
        small(
            extended={"runs": {"mmin_paired0.5": {"base": "mmin"}}, "unpaired": {"methods": ["mmin"], "paired": [0.5]}}
        )
    )
    assert clash.startswith("extended: the generated run 'mmin_paired0.5'")
    assert error(small(extended={"other_task": {"methods": ["foo"]}})).startswith(
        f"extended.other_task.methods[0]: got 'foo'; registered methods: {METHOD_NAMES}"
    )


# ============================================================================================== cross-checks


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"explore.run": "nope"},
            "explore.run: 'nope' is not a run of `methods` (runs: audio_only, visual_only, "
            "early_fusion, late_fusion, utt_fusion, utt_dataaug, mmin, ifmmin, nmer, vavl; null "
            "picks one)",
        ),
        ({"explore.seed": 5}, "explore.seed: 5 is not one of train.seeds [0, 1, 2] (no checkpoint is trained with it)"),
        (
            {"analysis.embedding.seed": 5},
            "analysis.embedding.seed: 5 is not one of train.seeds [0, 1, 2] (no checkpoint is trained with it)",
        ),
        ({"train.folds": [0, 4]}, "train.folds: fold 4 does not exist; folds.n_folds is 4 (folds 0..3)"),
        ({"explore.fold": 7}, "explore.fold: fold 7 does not exist; folds.n_folds is 4 (folds 0..3)"),
        (
            {"analysis.embedding.fold": 4},
            "analysis.embedding.fold: fold 4 does not exist; folds.n_folds is 4 (folds 0..3)",
        ),
        (
            {"folds.n_folds": 2, "explore.fold": 2},
            "explore.fold: fold 2 does not exist; folds.n_folds is 2 (folds 0..1)",
        ),
        ({"train.folds": [1], "explore.fold": 0}, "explore.fold: fold 0 is not trained (train.folds: [1])"),
        (
            {"extended.other_task.task": "classification"},
            "extended.other_task.task: 'classification' is the study's own task; name the other one",
        ),
    ],
)
def test_cross_checks_name_the_key_and_what_exists(overrides, expected):
    assert error(overrides=overrides) == expected


def test_cross_checks_pass_when_the_sections_agree():
    params = load_params(
        PARAMS_FILE,
        {
            "explore.run": "mmin",
            "explore.seed": 2,
            "train.folds": [1, 3],
            "explore.fold": 3,
            "analysis.embedding.fold": 1,
        },
    )
    assert params["explore"]["run"] == "mmin" and params["train"]["folds"] == [1, 3]


@pytest.mark.parametrize("name", ["x;touch PWNED;echo", "nan", "inf", "Upper", "1run", "run-1", "a b", "_x"])
@pytest.mark.parametrize("section", ["methods", "extended"])
def test_run_names_that_are_not_plain_identifiers_are_errors(tmp_path, monkeypatch, name, section):
    monkeypatch.chdir(tmp_path)
    entry = {"method": "mmin"}
    raw = small(methods={name: entry}) if section == "methods" else small(extended={"runs": {name: entry}})
    key = "methods" if section == "methods" else "extended.runs"
    message = error(raw)
    assert message.startswith(f"{key}.{name}: "), message
    assert "run names must match ^[a-z][a-z0-9_]*$" in message or "reads as a number" in message
    assert not (tmp_path / "PWNED").exists()


# ============================================================================================== stage params


def test_stage_params_hold_what_each_stage_reads():
    params = load_params(PARAMS_FILE)
    runs = resolve_runs(params)
    files = stage_params(params, runs)
    expected = {
        "corpus.json",
        "prepare.json",
        "embedding.json",
        "analysis.json",
        "extended_analysis.json",
        "explore.json",
    } | {f"{'runs' if r['study'] == 'default' else 'extended'}/{n}.json" for n, r in runs.items()}
    assert set(files) == expected
    assert files["corpus.json"] == {"generate": True, "synthetic": params["data"]["synthetic"]}
    assert set(files["prepare.json"]) == {"data", "features", "folds", "corruptions", "functionals"}
    assert files["prepare.json"]["functionals"] == []  # no run of the default study reads functionals
    assert "synthetic" not in files["prepare.json"]["data"] and files["prepare.json"]["corruptions"] is True
    run = files["runs/mmin.json"]
    assert run["entry"] == runs["mmin"]["entry"] and run["store"] == "data/features/builtin"
    assert set(run["code"]) == {"mer_core/losses.py", "mer_core/methods/baselines.py", "mer_core/methods/mmin.py"}
    assert files["runs/vavl.json"]["code"].keys() == {"mer_core/conformer.py", "mer_core/methods/vavl.py"}
    assert files["extended/vavl_no_rec.json"]["robustness"] is None and run["robustness"] == params["robustness"]
    assert "machine" not in json.dumps(files)  # machine settings never reach a stage's params
    assert set(files["analysis.json"]["runs"]) == set(params["methods"])
    assert set(files["extended_analysis.json"]["runs"]) == set(runs)
    summary = files["analysis.json"]["runs"]["mmin"]
    assert summary["max_epochs"] == {"pretrain": 20, "train": 60} and summary["variant"] is None
    assert files["analysis.json"]["runs"]["nmer"]["noise"] == runs["nmer"]["entry"]["noise"]


def test_machine_settings_change_no_stage_params():
    params = load_params(PARAMS_FILE)
    other = load_params(PARAMS_FILE, {"machine.jobs": 7, "machine.device": "cpu", "machine.threads_per_job": 3})
    assert stage_params(params, resolve_runs(params)) == stage_params(other, resolve_runs(other))


def make_outputs(root: Path) -> None:
    for path in (
        "results/old_run/metrics.json",
        "results/audio_only/metrics.json",
        "results/embeddings/audio_only.csv",
        "results/no_metrics/history.csv",
        "reports/notebooks/02_train-old_run.ipynb",
        "reports/notebooks/02_train-audio_only.ipynb",
        "reports/notebooks/03_analysis.ipynb",
        "extended/results/old_ext/metrics.json",
        "extended/results/audio_only_regression/metrics.json",
        "reports/extended/notebooks/02_train-old_ext.ipynb",
        "reports/extended/notebooks/02_train-audio_only_regression.ipynb",
        "reports/extended/notebooks/05_extended.ipynb",
        "data/params/stale.json",
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("{}")


def test_remove_stale_outputs_removes_only_the_outputs_of_runs_that_no_longer_exist(tmp_path):
    make_outputs(tmp_path)
    runs = resolve_runs(load_params(PARAMS_FILE))
    removed = remove_stale_outputs(runs, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "extended/results/old_ext",
        "reports/extended/notebooks/02_train-old_ext.ipynb",
        "reports/notebooks/02_train-old_run.ipynb",
        "results/old_run",
    ]
    for kept in (
        "results/audio_only/metrics.json",
        "results/embeddings/audio_only.csv",
        "results/no_metrics/history.csv",
        "reports/notebooks/02_train-audio_only.ipynb",
        "reports/notebooks/03_analysis.ipynb",
        "extended/results/audio_only_regression/metrics.json",
        "reports/extended/notebooks/05_extended.ipynb",
        "reports/extended/notebooks/02_train-audio_only_regression.ipynb",
    ):
        assert (tmp_path / kept).is_file(), kept
    assert remove_stale_outputs(runs, tmp_path) == []


def test_write_stage_params_writes_every_file_cleans_up_and_names_every_skipped_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_outputs(tmp_path)
    params = load_params(PARAMS_FILE, {"data.corpus": "emodb", "data.root": "/abs/emodb"})
    files = write_stage_params(params, "data/params")
    out = tmp_path / "data" / "params"
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    for name, content in files.items():
        assert json.loads((out / name).read_text()) == json.loads(json.dumps(content)), name
    assert not (tmp_path / "results" / "old_run").exists() and (tmp_path / "results" / "audio_only").is_dir()
    assert not (tmp_path / "reports/notebooks/02_train-old_run.ipynb").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped runs: ")
    named = re.findall(r"(?:^skipped runs: |; )([a-z][a-z0-9_.]*) \(", lines[0])
    runs = resolve_runs(params)
    assert named == [name for name, run in runs.items() if run["status"] == "skip"]
    assert len(named) == len(runs) - 2  # all but audio_only and audio_only_regression
    before = (out / "runs" / "audio_only.json").read_bytes()
    write_stage_params(params, "data/params")
    assert (out / "runs" / "audio_only.json").read_bytes() == before  # the same params give the same bytes


def test_the_resolved_params_of_a_run_change_with_its_methods_code_only(tmp_path, monkeypatch):
    """A run's resolved params hold the hashes of its method's own source files: editing `methods/vavl.py` changes
    the files of the runs of VAVL (and the embedding and explorer stages, which load VAVL's checkpoints) and no
    other; editing code every training stage runs changes none (those stages depend on it directly)."""
    copy_root = tmp_path / "project"
    shutil.copytree(ROOT / "mer_core", copy_root / "mer_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", copy_root / "notebooks")
    monkeypatch.setattr(codedeps, "ROOT", copy_root)
    params = load_params(PARAMS_FILE)
    runs = resolve_runs(params)

    def edited(relative: str) -> set[str]:
        before = stage_params(params, runs)
        with open(copy_root / relative, "a") as handle:
            handle.write("\n# edited\n")
        after = stage_params(params, runs)
        assert before.keys() == after.keys()
        return {name for name in before if before[name] != after[name]}

    vavl_runs = {
        f"{'runs' if r['study'] == 'default' else 'extended'}/{n}.json"
        for n, r in runs.items()
        if r["method"] == "vavl"
    }
    assert {
        "runs/vavl.json",
        "extended/vavl_no_rec.json",
        "extended/vavl_regression.json",
        "extended/vavl_paired0.5.json",
    } <= vavl_runs
    assert edited("mer_core/methods/vavl.py") == vavl_runs | {"embedding.json", "explore.json"}
    mmin_changed = edited("mer_core/methods/mmin.py")
    assert {"runs/mmin.json", "runs/ifmmin.json", "runs/nmer.json", "extended/mmin_no_cycle.json"} <= mmin_changed
    assert not mmin_changed & (vavl_runs | {"runs/audio_only.json", "runs/utt_fusion.json", "runs/late_fusion.json"})
    assert edited("mer_core/train.py") == set()


def test_the_params_stage_exits_non_zero_naming_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  on_eror: skip\n")
    command = [sys.executable, "-m", "mer_core.config", "--params", str(bad), "--out", str(tmp_path / "out")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert f"{bad}: data.on_eror: unknown key; allowed keys here: corpus, root" in result.stderr
    assert not (tmp_path / "out").exists()
    bad.write_text(
        yaml.safe_dump(
            {
                "methods": {"mmin": {"method": "mmin"}},
                "train": {"runs": ["mmin"]},
                "extended": {"other_task": {"methods": []}, "unpaired": {"methods": []}},
            }
        )
    )
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "runs" / "mmin.json").is_file() and (tmp_path / "out" / "explore.json").is_file()


# ============================================================================================== the project's file


def test_the_project_params_validate_resolve_and_stay_small():
    assert PARAMS_FILE.stat().st_size < 12 * 1024
    params = load_params(PARAMS_FILE)
    runs = resolve_runs(params)
    assert params["methods"] and all(run["status"] == "train" for run in runs.values())
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    for section, value in raw.items():  # what the file states is kept, the rest filled with defaults
        stated = flatten(value) if isinstance(value, dict) else {section: value}
        kept = flatten(params[section]) if isinstance(value, dict) else {section: params[section]}
        assert stated.items() <= kept.items(), section
    assert params["methods"] == raw["methods"] and params["extended"]["runs"] == raw["extended"]["runs"]


def test_no_run_entry_of_the_project_repeats_a_value_of_its_base():
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    runs = resolve_runs(load_params(PARAMS_FILE))
    entries = {**raw["methods"], **raw["extended"]["runs"]}
    for name, entry in entries.items():
        if "base" in entry:
            written, base = entry.get("set", {}), runs[entry["base"]]["entry"]
        else:
            written = flatten({k: v for k, v in entry.items() if k not in ("method", "task")})
            base = defaults(entry["method"])
        assert written or "base" in entry or entry.keys() == {"method"}, name
        for key, value in written.items():
            assert get_dotted(base, key) != value, f"{name}: {key}: {value!r} repeats its base's value"


def test_the_override_examples_of_the_params_header_work():
    header = [line for line in PARAMS_FILE.read_text().splitlines() if line.startswith("#")]
    examples = re.findall(r"-S \+?([\w.]+)=(\S+?)`", "\n".join(header))
    assert {key for key, _ in examples} == {"train.seeds", "methods.vavl.d_model"}
    for key, text in examples:
        value = yaml.safe_load(text)
        params = load_params(PARAMS_FILE, {key: value})
        if key.startswith("methods."):
            _, run, leaf = key.split(".", 2)
            assert get_dotted(resolve_runs(params)[run]["entry"], leaf) == value
        else:
            assert get_dotted(params, key) == value


def test_load_params_applies_overrides_to_runs_and_sections():
    changed = load_params(
        PARAMS_FILE,
        {
            "methods.late_fusion.optim.epochs": 3,
            "machine.jobs": 1,
            "methods.mmin.pretrain.optim.lr": 1e-3,
            "train.stopping.patience": 2,
        },
    )
    runs = resolve_runs(changed)
    assert runs["late_fusion"]["entry"]["optim"]["epochs"] == 3
    assert runs["late_fusion"]["entry"]["optim"]["lr"] == defaults("late_fusion")["optim"]["lr"]
    assert (
        runs["mmin"]["entry"]["pretrain"]["optim"]["lr"] == 1e-3
        and runs["mmin_no_cycle"]["entry"]["pretrain"]["optim"]["lr"] == 1e-3
    )  # a run with a base inherits it
    assert changed["machine"]["jobs"] == 1 and changed["train"]["stopping"]["patience"] == 2
    with pytest.raises(ConfigError, match=r"^methods\.late_fusion\.optim\.epochs: got 0"):
        load_params(PARAMS_FILE, {"methods.late_fusion.optim.epochs": 0})


# the switches restoring the official code's behaviour: the study's value per method (the method's default)
SWITCH_DEFAULTS = {
    "encoder_pooling": (
        "valid",
        {
            "audio_only",
            "visual_only",
            "early_fusion",
            "late_fusion",
            "utt_fusion",
            "utt_dataaug",
            "mmin",
            "ifmmin",
            "nmer",
        },
    ),
    "text_windows": (
        "valid",
        {
            "audio_only",
            "visual_only",
            "early_fusion",
            "late_fusion",
            "utt_fusion",
            "utt_dataaug",
            "mmin",
            "ifmmin",
            "nmer",
        },
    ),
    "conditions": ("missing", {"utt_dataaug"}),  # official
    "ae_version": ("published", {"ifmmin"}),  # the version current when the paper appeared
    "vae_attention": ("per_clip", {"nmer"}),
    "eval_latent": ("sample", {"nmer"}),  # official
    "attention_scale": ("d_model", {"vavl"}),  # official
    "positions": ("relative", {"vavl"}),
    "pooling": ("valid", {"vavl"}),
    "axes": ("per_clip", {"vavl"}),
}


def test_the_default_study_runs_every_switch_at_its_documented_default():
    """Every run of the default study runs each switch of its method at the documented default (only the extended
    study's runs change one, on purpose)."""
    runs = {n: r for n, r in resolve_runs(load_params(PARAMS_FILE)).items() if r["study"] == "default"}
    for key, (default, methods) in SWITCH_DEFAULTS.items():
        assert {m for m in CATALOG if key in CATALOG[m].params.model_fields} == methods, key
        chosen = {name: run["entry"][key] for name, run in runs.items() if run["method"] in methods}
        assert chosen and set(chosen.values()) == {default}, key
    nmer = [r for r in runs.values() if r["method"] == "nmer"]
    assert nmer and all(r["entry"]["pretrain"]["denoise_term"] == "official" for r in nmer)
    others = {run["method"] for run in runs.values()} - SWITCH_DEFAULTS["encoder_pooling"][1]
    assert others == {"vavl"}  # every other method encodes with the MMIN family's LSTM / TextCNN


def test_machine_settings_are_read_apart_from_the_science(tmp_path):
    from mer_core.machine import machine_settings

    assert machine_settings(tmp_path / "absent.yaml") == Machine().model_dump()  # defaults without a file
    path = tmp_path / "params.yaml"
    path.write_text("machine: {jobs: 4, device: cpu}\ntrain: {seeds: [0]}\n")
    settings = machine_settings(path)
    assert (settings["jobs"], settings["device"], settings["threads_per_job"]) == (4, "cpu", 1)
    assert settings["ray"] == Machine().model_dump()["ray"]
    path.write_text("machine: {jobs: 0}\n")
    with pytest.raises(ConfigError, match=r"^machine\.jobs: got 0; Input should be greater than or equal to 1"):
        machine_settings(path)
    path.write_text("machine: {gpus: 1}\n")
    with pytest.raises(ConfigError, match=r"^machine\.gpus: unknown key; allowed keys here: jobs, threads_per_job"):
        machine_settings(path)
    path.write_text("machine: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        machine_settings(path)
    assert machine_settings(PARAMS_FILE)["jobs"] == load_params(PARAMS_FILE)["machine"]["jobs"]
