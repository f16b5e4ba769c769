"""Reliability: bad params. The whole of params.yaml is validated before any stage does work (the `params` stage,
`python -m mer_core.config`, first in dvc.yaml; `make repro` runs `python -m mer_core.config --check` before DVC
reads dvc.yaml): an unknown key, a wrong type, a non-finite number, a duplicate, a run that does not exist stops it
with a `ConfigError` naming the dotted key and what is allowed there, and nothing is written or removed.

No params value reaches a shell line unvalidated: every `${...}` that dvc.yaml and extended/dvc.yaml interpolate
into a `cmd:` comes from a key whose values are checked against a safe set (run names: `RUN_NAME`; method names: the
catalogue; the other task: classification | regression; paired shares: numbers), and every stage that interpolates
one depends on the `params` stage's output, so DVC runs the check first.
`test_a_malicious_run_name_stops_dvc_repro_before_any_command_carries_it` runs DVC itself to show it."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mer_core.config import ConfigError, load_params, read_params, validate_params
from mer_core.params.data import Data
from mer_core.params.methods import CATALOG, MMIN
from mer_core.params.study import Study
from mer_core.plan import parse_sets

PROJECT = Path(__file__).resolve().parents[2]

PARAMS = PROJECT / "params.yaml"
RUN_NAME_RULE = (
    "run names must match ^[a-z][a-z0-9_]*$: a lower-case letter, then lower-case letters, digits and _ "
    "(they name DVC stages, folders, and papermill's `-p run` argument on a shell command line)"
)
METHODS = ", ".join(CATALOG)
# what a shell would act on, were it given the value unquoted
METACHARACTERS = [
    "x; rm -rf /",
    "$(touch pwned)",
    "`touch pwned`",
    "a b",
    "a/b",
    "..",
    "x|y",
    "x&&y",
    "x>y",
    "x\ny",
    "'x'",
]


def error(overrides: dict | None = None, raw: dict | None = None) -> str:
    """The ConfigError message of the project's params.yaml with dotted `overrides` (or of the mapping `raw`)."""
    with pytest.raises(ConfigError) as info:
        load_params(PARAMS, overrides) if raw is None else validate_params(raw)
    return str(info.value)


def project_runs() -> str:
    return ", ".join(read_params(PARAMS)["methods"])


# ================================================================================================ run names


@pytest.mark.parametrize(
    "name", METACHARACTERS[:6], ids=["semicolon", "substitution", "backticks", "space", "slash", "dotdot"]
)
@pytest.mark.parametrize("section", ["methods", "extended.runs"])
def test_a_run_name_with_shell_metacharacters_is_rejected(section, name):
    raw = read_params(PARAMS)
    runs = raw["methods"] if section == "methods" else raw["extended"]["runs"]
    runs[name] = {"method": "utt_fusion"} if section == "methods" else {"base": "mmin"}
    assert error(raw=raw) == f"{section}.{name}: {RUN_NAME_RULE}"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nan", "methods.nan: 'nan' reads as a number on papermill's command line (`-p run nan`); rename the run"),
        ("inf", "methods.inf: 'inf' reads as a number on papermill's command line (`-p run inf`); rename the run"),
        (
            "infinity",
            "methods.infinity: 'infinity' reads as a number on papermill's command line (`-p run infinity`); "
            "rename the run",
        ),
        ("1e3", f"methods.1e3: {RUN_NAME_RULE}"),
    ],
    ids=["nan", "inf", "infinity", "1e3"],
)
def test_a_run_name_papermill_reads_as_a_number_is_rejected(name, expected):
    assert error({f"methods.{name}": {"method": "utt_fusion"}}) == expected  # `-p run nan` would pass float('nan')


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{.nan: {method: utt_fusion}}", "methods.nan: not an allowed key; Input should be a valid string"),
        ("{5: {method: utt_fusion}}", "methods.5: not an allowed key; Input should be a valid string"),
    ],
    ids=["yaml-nan", "yaml-integer"],
)
def test_a_run_name_yaml_reads_as_a_number_is_rejected(text, expected):
    raw = read_params(PARAMS)
    raw["methods"].update(yaml.safe_load(text))
    assert error(raw=raw) == expected


def test_a_malicious_run_name_stops_dvc_repro_before_any_command_carries_it(tmp_path):
    project = tmp_path / "project"
    (project / "extended").mkdir(parents=True)
    for name in ("dvc.yaml", "extended/dvc.yaml"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "mer_core", project / "mer_core", ignore=shutil.ignore_patterns("__pycache__"))
    raw = read_params(PARAMS)
    raw["methods"]["x;touch pwned;echo"] = {"method": "utt_fusion"}  # train@...: `mkdir -p results/x;touch pwned;...`
    raw["extended"]["runs"]["$(touch pwned2)"] = {"base": "mmin"}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = dict(
        os.environ,
        PYTHONPATH=str(project),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        DVC_NO_ANALYTICS="1",
    )
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=project, env=env, check=True, timeout=120)
    done = subprocess.run(
        [*dvc, "repro", "dvc.yaml", "extended/dvc.yaml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Running stage 'params'" in output
    assert f"params.yaml: methods.x;touch pwned;echo: {RUN_NAME_RULE}" in output
    assert not (project / "pwned").exists() and not (project / "pwned2").exists()
    assert not any((project / name).exists() for name in ("results", "data/params", "data/raw", "extended/results"))


# ================================================================================================ dvc.yaml


def loop_sources(stage: dict) -> dict[str, tuple[str, str]]:
    """{loop variable: (kind, dotted params key)} of a templated stage: `key` of `foreach` over a mapping (its keys),
    `item` of `foreach` over a list, `item.<name>` of a `matrix`."""
    sources = {}
    if "foreach" in stage:
        source = re.fullmatch(r"\$\{(.+)\}", stage["foreach"]).group(1)
        sources["key"] = ("keys", source)
        sources["item"] = ("items", source)
    for name, value in stage.get("matrix", {}).items():
        sources[f"item.{name}"] = ("items", re.fullmatch(r"\$\{(.+)\}", value).group(1))
    return sources


def shell_interpolations() -> list[tuple[str, str, str, str]]:
    """(file, stage, kind, dotted key) of every `${...}` in a `cmd:` of dvc.yaml and extended/dvc.yaml: kind `keys`
    (the value is a key of the mapping at that key), `items` (an item of the list there) or `value`."""
    found = []
    for file in ("dvc.yaml", "extended/dvc.yaml"):
        for name, stage in yaml.safe_load((PROJECT / file).read_text())["stages"].items():
            body = stage.get("do", stage)
            sources = loop_sources(stage)
            for expression in re.findall(r"\$\{([^}]*)\}", body["cmd"]):
                found.append((file, name, *sources.get(expression, ("value", expression))))
    return sorted(set(found))


def poisoned(kind: str, dotted: str, bad: str) -> tuple[dict, str]:
    """The project's raw params with `bad` where the interpolation of (kind, dotted) reads it, and the key the error
    must name."""
    raw = copy.deepcopy(read_params(PARAMS))
    parent, leaf = raw, dotted.split(".")
    for part in leaf[:-1]:
        parent = parent[part]
    if kind == "keys":  # a new entry under a shell-hostile name, a copy of an existing one
        parent[leaf[-1]][bad] = copy.deepcopy(next(iter(parent[leaf[-1]].values())))
        return raw, f"{dotted}.{bad}: "
    if kind == "items":
        parent[leaf[-1]] = [*parent[leaf[-1]], bad]
        return raw, f"{dotted}[{len(parent[leaf[-1]]) - 1}]: "
    parent[leaf[-1]] = bad
    return raw, f"{dotted}: "


def test_every_value_dvc_interpolates_into_a_shell_line_is_validated_against_metacharacters():
    found = shell_interpolations()
    assert {(kind, key) for _, _, kind, key in found} == {
        ("keys", "methods"),
        ("keys", "extended.runs"),
        ("items", "extended.other_task.methods"),
        ("value", "extended.other_task.task"),
        ("items", "extended.unpaired.methods"),
        ("items", "extended.unpaired.paired"),
    }
    for file, stage, kind, key in found:
        for bad in METACHARACTERS:
            raw, named = poisoned(kind, key, bad)
            message = error(raw=raw)
            assert message.startswith(named), (file, stage, key, bad, message)


def test_every_stage_that_interpolates_into_a_shell_line_runs_after_the_params_stage():
    default = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    assert default["params"]["cmd"] == "python -m mer_core.config --params params.yaml --out data/params"
    outs = [out if isinstance(out, str) else next(iter(out)) for out in default["params"]["outs"]]
    assert outs == ["data/params"] and default["params"]["params"] == [{"params.yaml": None}]
    for file, stage, _, _ in shell_interpolations():
        body = yaml.safe_load((PROJECT / file).read_text())["stages"][stage]
        deps = body.get("do", body)["deps"]
        assert any(str(dep).startswith("data/params/") for dep in deps), (file, stage)  # the params stage's output


# ================================================================================================ values


def test_an_empty_data_root_is_rejected_before_dvc_reads_it(tmp_path):
    expected = "data.root: got ''; an empty path; give a folder (relative to the project root, or absolute)"
    assert error({"data.root": ""}) == expected
    raw = read_params(PARAMS)
    raw["data"]["root"] = ""
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "mer_core.config", "--params", str(bad), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT)),
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.strip() == f"{bad}: {expected}"
    assert list(tmp_path.iterdir()) == [bad]  # --check writes nothing
    makefile = (PROJECT / "Makefile").read_text()  # DVC itself fails on `${data.root}` with "unexpected error"
    for target in ("repro", "repro-extended"):
        recipe = re.search(rf"^{target}: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1).splitlines()
        assert recipe[0] == "\tpython -m mer_core.config --check" and recipe[1].startswith("\tdvc repro"), target


def test_an_empty_methods_section_is_rejected_and_no_output_is_removed(tmp_path):
    expected = (
        f"methods: no run is defined; give at least one (<run>: {{method: <method>}}; registered methods: {METHODS})"
    )
    raw = read_params(PARAMS)
    raw["methods"] = {}
    assert error(raw=raw) == expected  # not an error of the extended runs based on them
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    kept = [tmp_path / "results" / "mmin" / "metrics.json", tmp_path / "reports" / "notebooks" / "02_train-mmin.ipynb"]
    for path in kept:
        path.parent.mkdir(parents=True)
        path.write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "mer_core.config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT)),
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.strip() == f"params.yaml: {expected}"
    assert all(path.is_file() for path in kept) and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"foo": 1}, f"foo: unknown key; allowed keys here: {', '.join(Study.model_fields)}"),
        ({"data.on_eror": "skip"}, f"data.on_eror: unknown key; allowed keys here: {', '.join(Data.model_fields)}"),
        (
            {"methods.mmin.optim.lrr": 1e-3},
            "methods.mmin.optim.lrr: unknown key; allowed keys here: "
            "epochs, epochs_decay, lr, beta1, grad_clip, batch_size",
        ),
        (
            {"extended.runs.mmin_no_cycle.set": {"cycle_weigth": 0.0}},
            "extended.runs.mmin_no_cycle.set.cycle_weigth: 'cycle_weigth' is not a key of method mmin (keys: "
            f"{', '.join(MMIN.model_fields)})",
        ),
    ],
    ids=["top-level", "data", "deep-in-a-run", "set-of-a-based-run"],
)
def test_an_unknown_key_names_the_key_and_the_allowed_keys(overrides, expected):
    assert error(overrides) == expected


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"train.seeds": "0,1"}, "train.seeds: got '0,1'; Input should be a valid list"),
        ({"methods.mmin.hidden": 64.5}, "methods.mmin.hidden: got 64.5; Input should be a valid integer"),
        ({"methods.mmin.optim.lr": 1e30}, "methods.mmin.optim.lr: got 1e+30; Input should be less than or equal to 1"),
    ],
    ids=["seeds-as-a-string", "width-as-a-float", "lr-1e30"],
)
def test_a_wrong_type_or_range_names_the_key_and_what_is_allowed(overrides, expected):
    assert error(overrides) == expected


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("methods.mmin.optim.lr", ".nan", "methods.mmin.optim.lr: got nan; Input should be a finite number"),
        ("methods.mmin.optim.lr", ".inf", "methods.mmin.optim.lr: got inf; Input should be a finite number"),
        ("robustness.beta_end", "-.inf", "robustness.beta_end: got -inf; Input should be a finite number"),
        (
            "extended.runs.mmin_no_cycle.set",
            "{optim.lr: .nan}",
            "extended.runs.mmin_no_cycle.optim.lr: got nan; Input should be a finite number",
        ),
    ],
    ids=["lr-nan", "lr-inf", "beta-minus-inf", "nan-in-a-set"],
)
def test_nan_and_infinity_are_rejected(key, text, expected):
    assert error({key: yaml.safe_load(text)}) == expected  # the YAML spellings of NaN and infinity


def test_a_duplicate_seed_is_rejected():
    assert error({"train.seeds": [0, 1, 0]}) == "train.seeds: each entry may appear once, got [0, 1, 0]"


def test_train_runs_naming_a_run_that_does_not_exist_lists_the_runs():
    assert (
        error({"train.runs": ["mmin", "nosuch"]})
        == f"train.runs: 'nosuch' is not a run of `methods` (runs: {project_runs()})"
    )


def test_train_folds_that_do_not_exist_name_the_folds_there_are():
    assert error({"train.folds": [7]}) == "train.folds: fold 7 does not exist; folds.n_folds is 4 (folds 0..3)"


def test_an_extended_base_naming_a_missing_run_or_a_loop_is_rejected():
    missing = error({"extended.runs.x": {"base": "missing"}})
    assert missing.startswith(f"extended.runs.x.base: 'missing' is not a run (runs: {project_runs()}, ")
    loop = error({"extended.runs.x": {"base": "y"}, "extended.runs.y": {"base": "x"}})
    assert loop == "extended.runs.y.base: the bases loop: x -> y -> x"


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["methods.mmin.optim.lr=abc"], "methods.mmin.optim.lr: got 'abc'; Input should be a valid number"),
        (["train.seeds=[0,0]"], "train.seeds: each entry may appear once, got [0, 0]"),
        (
            ["methods.mmin.optim.lrr=0.1"],
            "methods.mmin.optim.lrr: unknown key; allowed keys here: "
            "epochs, epochs_decay, lr, beta1, grad_clip, batch_size",
        ),
        (["methods.x;touch pwned.method=mmin"], f"methods.x;touch pwned: {RUN_NAME_RULE}"),
        (
            ["extended.other_task.methods=[vavl,$(touch pwned)]"],
            f"extended.other_task.methods[1]: got '$(touch pwned)'; registered methods: {METHODS}",
        ),
    ],
    ids=["lr-abc", "duplicate-seed", "misspelt-key", "malicious-run-name", "malicious-method-name"],
)
def test_a_bad_dvc_exp_run_override_names_the_key(sets, expected):
    assert error(parse_sets(sets)) == expected  # `dvc exp run -S key=value` reads the value as YAML, as parse_sets
