"""The DVC wiring: every stage of dvc.yaml and extended/dvc.yaml depends on exactly the code it runs (the import
closure of its entry points, `mer_core.codedeps`), and no params value reaches a command or a path unless the
`params` stage has checked it; and `mer_core.codedeps` itself, on a small package written here."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mer_core import codedeps
from mer_core.codedeps import code_hashes, module_closure, notebook_imports, stage_closure
from mer_core.config import hashed_code

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
EXTENDED = yaml.safe_load((ROOT / "extended" / "dvc.yaml").read_text())["stages"]
# each stage that runs mer_core code -> the codedeps stage whose closure it depends on
DEFAULT_STAGES = {
    "corpus": "corpus",
    "prepare": "prepare",
    "train": "train",
    "embedding": "embedding",
    "analysis": "analysis",
    "explore": "explore",
    "html": "html",
}
EXTENDED_STAGES = {
    "run": "train",
    "task": "train",
    "unpaired": "train",
    "analysis": "extended_analysis",
    "html": "html",
}
# the only interpolations a command or a path may hold: run names and values the params stage has checked
ALLOWED = {
    "${key}",
    "${item}",
    "${item.method}",
    "${item.paired}",
    "${extended.other_task.task}",
    "${data.root}",
    "${data.features_dir}",
}


def template(stage: dict) -> dict:
    """A stage's definition (the `do` template of a foreach stage)."""
    return stage.get("do", stage)


def code_deps(stage: dict) -> list[str]:
    return [d for d in template(stage)["deps"] if d.startswith(("mer_core/", "notebooks/"))]


def assert_exact(stage_name: str, declared: list[str], closure: list[str]) -> None:
    assert len(declared) == len(set(declared)), f"{stage_name}: a dependency is listed twice"
    missing, extra = sorted(set(closure) - set(declared)), sorted(set(declared) - set(closure))
    assert not missing and not extra, f"{stage_name}: missing {missing}, not imported {extra}"


@pytest.mark.parametrize("name", list(DEFAULT_STAGES))
def test_each_default_stage_depends_on_exactly_the_code_it_runs(name):
    assert_exact(name, code_deps(DEFAULT[name]), stage_closure(DEFAULT_STAGES[name]))


@pytest.mark.parametrize("name", list(EXTENDED_STAGES))
def test_each_extended_stage_depends_on_exactly_the_code_it_runs(name):
    assert_exact(f"extended/dvc.yaml:{name}", code_deps(EXTENDED[name]), stage_closure(EXTENDED_STAGES[name]))


def test_the_params_stage_depends_on_its_code_and_on_the_method_code_it_hashes():
    hashed = hashed_code()
    assert "mer_core/methods/vavl.py" in hashed and "mer_core/methods/mmin.py" in hashed
    assert not set(hashed) & set(stage_closure("train"))  # hashed only where the training stages do not depend on it
    assert_exact("params", code_deps(DEFAULT["params"]), stage_closure("params") + hashed)


def test_every_stage_that_runs_mer_core_code_is_checked():
    runs_code = {
        name
        for name, stage in DEFAULT.items()
        if "mer_core" in template(stage)["cmd"]
        or any(d.startswith("notebooks/") for d in template(stage).get("deps", []))
    }
    assert runs_code == set(DEFAULT_STAGES) | {"params", "deviations"}
    extended = {
        name
        for name, stage in EXTENDED.items()
        if "mer_core" in template(stage)["cmd"]
        or any(d.startswith("notebooks/") for d in template(stage).get("deps", []))
    }
    assert extended == set(EXTENDED_STAGES)


def test_the_training_stages_depend_on_their_runs_resolved_params():
    assert "data/params/runs/${key}.json" in template(DEFAULT["train"])["deps"]
    assert "data/params/extended/${key}.json" in template(EXTENDED["run"])["deps"]
    assert "data/params/extended/${item}_${extended.other_task.task}.json" in template(EXTENDED["task"])["deps"]
    assert "data/params/extended/${item.method}_paired${item.paired}.json" in EXTENDED["unpaired"]["deps"]
    for name, stage in {**DEFAULT, **{f"extended:{k}": v for k, v in EXTENDED.items()}}.items():
        assert "params" not in template(stage) or name == "params", f"{name} reads params.yaml directly"


def test_the_deviations_stage_depends_on_the_whole_library():
    assert DEFAULT["deviations"]["deps"] == ["mer_core"]
    assert DEFAULT["deviations"]["cmd"].startswith("python -m mer_core.deviations")


def interpolations(stage: dict) -> set[str]:
    """The ${...} of a stage's command and paths (not of its foreach / matrix source)."""
    text = json.dumps(
        {k: v for k, v in template(stage).items() if k in ("cmd", "deps", "outs", "metrics", "plots", "wdir")}
    )
    return set(re.findall(r"\$\{[^}]*\}", text))


@pytest.mark.parametrize(
    "where, stage",
    [
        *((f"dvc.yaml:{n}", s) for n, s in DEFAULT.items()),
        *((f"extended/dvc.yaml:{n}", s) for n, s in EXTENDED.items()),
    ],
)
def test_only_checked_values_are_interpolated_into_commands_and_paths(where, stage):
    assert interpolations(stage) <= ALLOWED, f"{where}: {sorted(interpolations(stage) - ALLOWED)}"


def test_the_interpolation_check_sees_a_params_value():
    stage = {"cmd": "python -m x --lr ${methods.mmin.optim.lr}", "deps": ["${data.root}"]}
    assert interpolations(stage) - ALLOWED == {"${methods.mmin.optim.lr}"}
    assert interpolations({"foreach": "${methods}", "do": {"cmd": "run ${key}"}}) == {"${key}"}


def test_the_foreach_sources_are_the_resolved_run_lists():
    assert DEFAULT["train"]["foreach"] == "${methods}" and EXTENDED["run"]["foreach"] == "${extended.runs}"
    assert EXTENDED["task"]["foreach"] == "${extended.other_task.methods}"
    assert EXTENDED["unpaired"]["matrix"] == {
        "method": "${extended.unpaired.methods}",
        "paired": "${extended.unpaired.paired}",
    }


# ============================================================================================== codedeps


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """A small `mer_core` package under tmp_path (codedeps.ROOT pointed at it)."""
    files = {
        "mer_core/__init__.py": "",
        "mer_core/a.py": "from . import b\nfrom .sub import c\nimport os\n",
        "mer_core/b.py": "def f():\n    import mer_core.d  # imported inside a function\n    return mer_core.d\n",
        "mer_core/d.py": "import numpy\n",
        "mer_core/sub/__init__.py": "from .e import thing\n",
        "mer_core/sub/c.py": "from ..b import f\n",
        "mer_core/sub/e.py": "thing = 1\n",
        "mer_core/f.py": "from mer_core.pkg import mod\nfrom mer_core import sub\n",
        "mer_core/pkg/__init__.py": "",
        "mer_core/pkg/mod.py": "x = 1\n",
        "mer_core/pkg/other.py": "import mer_core.a\n",
        "mer_core/unused.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["import mer_core.unused\n"]},
            {
                "cell_type": "code",
                "source": ["%matplotlib inline\n", "!ls\n", "import mer_core.b\n", "import pandas as pd"],
            },
            {
                "cell_type": "code",
                "source": ["def show():\n", "    from mer_core.pkg import mod\n", "    return mod\n"],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "toy.ipynb").write_text(json.dumps(notebook))
    monkeypatch.setattr(codedeps, "ROOT", tmp_path)
    monkeypatch.setitem(codedeps.STAGES, "toy", ("notebooks/toy.ipynb", "mer_core.sub.c"))
    return tmp_path


def test_module_closure_follows_relative_imports_and_imports_inside_functions(package):
    assert module_closure(["mer_core.a"]) == [
        "mer_core/__init__.py",
        "mer_core/a.py",
        "mer_core/b.py",
        "mer_core/d.py",
        "mer_core/sub/__init__.py",
        "mer_core/sub/c.py",
        "mer_core/sub/e.py",
    ]


def test_module_closure_of_from_package_import_submodule(package):
    assert module_closure(["mer_core.f"]) == [
        "mer_core/__init__.py",
        "mer_core/f.py",
        "mer_core/pkg/__init__.py",
        "mer_core/pkg/mod.py",
        "mer_core/sub/__init__.py",
        "mer_core/sub/e.py",
    ]
    assert module_closure(["mer_core.pkg"]) == ["mer_core/__init__.py", "mer_core/pkg/__init__.py"]
    assert "mer_core/pkg/other.py" in module_closure(["mer_core.pkg.other"])  # and what it imports
    assert module_closure(["numpy", "mer_core.nothing"]) == ["mer_core/__init__.py"]


def test_notebook_imports_are_the_imports_of_its_code_cells(package):
    assert notebook_imports(package / "notebooks" / "toy.ipynb") == [
        "mer_core.b",
        "mer_core.pkg",
        "mer_core.pkg.mod",
        "pandas",
    ]


def test_stage_closure_is_the_notebooks_then_the_closure_of_every_entry_point(package):
    assert stage_closure("toy") == [
        "notebooks/toy.ipynb",
        "mer_core/__init__.py",
        "mer_core/b.py",
        "mer_core/d.py",
        "mer_core/pkg/__init__.py",
        "mer_core/pkg/mod.py",
        "mer_core/sub/__init__.py",
        "mer_core/sub/c.py",
        "mer_core/sub/e.py",
    ]


def test_code_hashes_are_the_sha256_of_the_files(package):
    hashes = code_hashes(["mer_core/pkg/mod.py", "mer_core/a.py"])
    assert list(hashes) == ["mer_core/a.py", "mer_core/pkg/mod.py"]
    assert hashes["mer_core/pkg/mod.py"] == hashlib.sha256(b"x = 1\n").hexdigest()


def test_the_real_stages_never_import_a_methods_module_directly():
    """A training stage imports its method's module by name (`stage_specs`): no method module is in the closure of
    a stage that trains or loads any run, so editing one method reruns only the stages of its runs."""
    methods = {
        "mer_core/methods/baselines.py",
        "mer_core/methods/mmin.py",
        "mer_core/methods/nmer.py",
        "mer_core/methods/vavl.py",
    }
    for stage in ("train", "embedding", "explore", "analysis", "extended_analysis", "corpus", "prepare"):
        assert not methods & set(stage_closure(stage)), stage
    for module in ("mer_core/train.py", "mer_core/layers.py"):
        assert module not in stage_closure("params") and module not in stage_closure("corpus")


def test_loading_params_and_the_corpus_stage_import_no_torch():
    code = (
        "import sys, mer_core.config, mer_core.data.synthetic.__main__; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_params_stage_is_never_restored_from_the_run_cache():
    """The params stage removes the outputs of runs params.yaml no longer defines as a side effect of its command;
    DVC restores a stage with cached outputs from its run cache without running the command when params.yaml
    returns to an earlier state, so the stage's output is `cache: false` (DVC keeps no run cache for it) and
    git-ignored (data/)."""
    assert DEFAULT["params"]["outs"] == [{"data/params": {"cache": False}}]
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/params"], cwd=ROOT)
    assert ignored.returncode == 0, "data/params must be git-ignored: it is not in the DVC cache"


@pytest.mark.parametrize("cached", [True, False])
def test_dvc_runs_a_stage_with_uncached_outputs_again_when_its_params_return(tmp_path, cached):
    """What the params stage relies on: with `cache: false` its command runs on every change of params.yaml,
    a return to an earlier value included; with a cached output DVC restores that output instead."""
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "write.py").write_text(
        "import pathlib, yaml\n"
        "p = yaml.safe_load(open('params.yaml'))['p']\n"
        "pathlib.Path('out').write_text(str(p))\n"
        "open('runs.log', 'a').write(f'{p}\\n')\n"
    )
    out = "out" if cached else {"out": {"cache": False}}
    stage = {"cmd": f'"{sys.executable}" write.py', "deps": ["write.py"], "params": ["p"], "outs": [out]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"write": stage}}))
    for value in (1, 2, 1):
        (tmp_path / "params.yaml").write_text(f"p: {value}\n")
        subprocess.run([*dvc, "repro", "-q"], cwd=tmp_path, check=True, capture_output=True)
        assert (tmp_path / "out").read_text() == str(value)
    ran = (tmp_path / "runs.log").read_text().split()
    assert ran == (["1", "2"] if cached else ["1", "2", "1"])
