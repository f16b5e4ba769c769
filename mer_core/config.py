"""Loading `params.yaml`, resolving its runs, and writing each pipeline stage's resolved params (the `params` stage).

The top of the params stack (`mer_core.schema` at the bottom, the section models of `mer_core.params` between):

- `load_params`: read the file, apply dotted overrides, validate the whole of it (`mer_core.params.Study`: unknown or
  misspelt keys anywhere are errors naming the dotted key), resolve every run and cross-check the sections against
  each other. Returns the validated params with every default filled in, as plain mappings.
- `resolve_runs`: each run of `methods` (and of the extended study) as its method trains it (docs/params.md "Runs"):
  a run names a `method` and the keys it changes from the method's defaults (the official settings), or a `base`
  run and the dotted keys it `set`s; the chain is followed to the method and the entry validated against the method's
  model. With `train.preset: paper` every run's schedule and size keys are reset to the method's defaults. A run the
  corpus cannot feed (a modality its method needs, or functionals of a feature package's absent recordings), one whose
  method is not trained for its task, or one `train.runs` does not select, is resolved with status `skip` and its
  reason.
- `write_stage_params` (`python -m mer_core.config`, the first stage of dvc.yaml): one JSON file per stage (and per
  run) under `data/params/`, holding exactly what that stage reads. Stages depend on their file, so a change reruns
  only the stages it reaches; a run's file also holds the hashes of its method's source files (`mer_core.codedeps`).
  `prepare.json` also lists the openSMILE functionals sets the runs to train read (`needed_functionals`), so that adding
  such a run is the one change that has prepare extract them.
  Nothing is interpolated into a stage's command line but run names and values checked here first, and this stage
  runs before every other, so a bad name stops the pipeline before any command that would carry it.
  `python -m mer_core.config --check` validates only: the Makefile runs it before `dvc repro`, because DVC reads
  dvc.yaml's templated paths (`${data.root}`) before any stage runs, and an empty one fails there unexplained.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from mer_core.codedeps import code_hashes, module_closure, stage_closure
from mer_core.params.methods import CATALOG, MethodInfo, stage_epochs
from mer_core.params.study import Study
from mer_core.schema import ConfigError, apply_overrides, check, deep_merge, expand_dotted
from mer_core.study import embedded_runs
from mer_core.study import trained as trained_runs

RUN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
GENERATED_NAME = re.compile(r"^[a-z][a-z0-9_]*(_paired[0-9.]+)?$")
STAGE_PARAMS = "data/params"


# ============================================================================================== loading


def read_params(path: str | Path) -> dict:
    """The raw mapping of a params file; ConfigError naming the file when it is missing or not YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root or pass its path)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(raw).__name__}")
    return raw


def load_params(path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None) -> dict:
    """Validated params (every default filled in) of the file at `path` with dotted `overrides` applied; the runs are
    resolved once to check them (`resolve_runs`). ConfigError names the first bad key."""
    return validate_params(apply_overrides(read_params(path), overrides or {}))


def validate_params(raw: Mapping) -> dict:
    """`raw` (a params mapping) validated, with defaults, cross-checked; ConfigError names the key. A `methods`
    section that is given but empty is an error (a mapping without one has no runs: the defaults)."""
    params = check(Study, dict(raw)).model_dump(mode="json", exclude_none=False)
    if "methods" in raw and not params["methods"]:
        raise ConfigError(
            f"methods: no run is defined; give at least one (<run>: {{method: <method>}}; registered "
            f"methods: {', '.join(CATALOG)})"
        )
    for section in ("methods",):
        params[section] = {name: _entry(raw.get(section, {})[name]) for name in params[section]}
    params["extended"]["runs"] = {
        name: _entry(raw.get("extended", {}).get("runs", {})[name]) for name in params["extended"]["runs"]
    }
    derive_defaults(params)
    runs = resolve_runs(params)
    cross_check(params, runs)
    return params


def derive_defaults(params: dict) -> None:
    """Fill in, in place, the keys whose null means "derived": the fold and seed of the explorer and of the embedding
    maps are the first trained fold (of `train.folds`; 0 with all) and the first of `train.seeds`, so that a study of
    a fold or seed subset needs no companion setting; `train.batches` and `train.normalise_modalities` are ours
    (bucketed, all) or, under `train.preset: paper`, the official data loaders' (random; audio alone on the
    iemocap_mmin package, whose faces and text the official loader reads as they are)."""
    train = params["train"]
    paper = train["preset"] == "paper"
    if train["batches"] is None:
        train["batches"] = "random" if paper else "bucketed"
    if train["normalise_modalities"] is None:
        train["normalise_modalities"] = ["audio"] if paper and params["data"]["corpus"] == "iemocap_mmin" else "all"
    for block in (params["explore"], params["analysis"]["embedding"]):
        if block["fold"] is None:
            block["fold"] = 0 if train["folds"] == "all" else train["folds"][0]
        if block["seed"] is None:
            block["seed"] = train["seeds"][0]


def _entry(raw: Mapping) -> dict:
    """A run entry as written (method or base, set, task, direct keys), without the defaults of RunEntry."""
    return {k: v for k, v in dict(raw).items()}


# ============================================================================================== runs


def method_info(name: str, key: str) -> MethodInfo:
    """The catalogue entry of method `name`; ConfigError naming `key` (the dotted key that holds the name) and the
    registered methods."""
    if name not in CATALOG:
        raise ConfigError(f"{key}: got {name!r}; registered methods: {', '.join(CATALOG)}")
    return CATALOG[name]


def method_defaults(method: str) -> dict:
    """The method's defaults: its official settings (`mer_core.params.methods`)."""
    return CATALOG[method].params().model_dump(mode="json")


def flatten(mapping: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (lists and scalars are leaves)."""
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def get_dotted(mapping: Mapping, dotted: str) -> Any:
    node: Any = mapping
    for part in dotted.split("."):
        node = node[part]
    return node


def set_dotted(mapping: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = mapping
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def study_entries(params: Mapping) -> dict[str, tuple[str, dict]]:
    """Every run the params define: {name: (study, entry)}, the default study's `methods`, the extended study's
    `runs`, and the runs it generates for each method it names: `<method>_<task>` (the other task) and
    `<method>_paired<p>` (partly unpaired data), based on the method's base run (the first run of `methods` that
    names the method, with no base; without one the generated run is skipped)."""
    entries = {name: ("default", entry) for name, entry in params["methods"].items()}
    for name, entry in params["extended"]["runs"].items():
        if name in entries:
            raise ConfigError(f"extended.runs.{name}: the name is already a run of `methods`")
        entries[name] = ("extended", entry)
    extended = params["extended"]
    roots = root_runs(params["methods"])
    from mer_core.data.corpora.registry import CORPORA

    modalities = CORPORA[params["data"]["corpus"]].modalities
    task = extended["other_task"]["task"]
    generated = [
        *(f"{m}_{task}" for m in extended["other_task"]["methods"]),
        *(unpaired_name(m, p) for m in extended["unpaired"]["methods"] for p in extended["unpaired"]["paired"]),
    ]
    clash = next((name for name in generated if name in entries), None)
    if clash:
        raise ConfigError(
            f"extended: the generated run {clash!r} (extended.other_task / extended.unpaired) has the name "
            "of a run you defined; rename yours"
        )
    for k, method in enumerate(extended["other_task"]["methods"]):
        method_info(method, f"extended.other_task.methods[{k}]")
        entries[f"{method}_{task}"] = (
            "extended",
            {"base": roots.get(method), "of_method": method, "task": task, "set": {}},
        )
    for k, method in enumerate(extended["unpaired"]["methods"]):
        method_info(method, f"extended.unpaired.methods[{k}]")
        for paired in extended["unpaired"]["paired"]:
            shares = {m: (1.0 - paired) / len(modalities) for m in modalities}
            entries[unpaired_name(method, paired)] = (
                "extended",
                {"base": roots.get(method), "of_method": method, "set": {"unpaired": shares}},
            )
    return entries


def root_runs(methods: Mapping) -> dict[str, str]:
    """{method: its base run}: the first run of `methods` that names the method itself (no `base`)."""
    roots: dict[str, str] = {}
    for name, entry in methods.items():
        if entry.get("method") is not None:
            roots.setdefault(entry["method"], name)
    return roots


def unpaired_name(method: str, paired: float) -> str:
    """The name of a method's base run retrained with a paired fraction `paired` of its training clips
    (vavl_paired0.5, as extended/dvc.yaml spells it)."""
    return f"{method}_paired{float(paired)}"


def resolve_runs(params: Mapping) -> dict[str, dict]:
    """Every run, resolved (see the module docstring), in definition order: {name: run}. A run holds: name, study
    (default | extended), method, module, base, root, variant (the method's named variant its changes from its base
    make, or None), changes (dotted keys it changes from its base), task, entry (its method's complete params), stages,
    needs, joint, status (train | skip) and reason."""
    entries = study_entries(params)
    resolved: dict[str, dict] = {}
    explicit: dict[str, set[str]] = {}  # per run, the dotted keys its entry (or a base's) writes
    corpus = params["data"]["corpus"]
    from mer_core.data.corpora.registry import CORPORA

    corpus_modalities = CORPORA[corpus].modalities

    def resolve(name: str, trail: tuple[str, ...]) -> dict:
        if name in resolved:
            return resolved[name]
        study, raw = entries[name]
        key = f"{'methods' if study == 'default' else 'extended.runs'}.{name}"
        if "of_method" in raw and raw["base"] is None:  # generated for a method the study has no base run of
            resolved[name] = unbased(name, raw["of_method"], raw.get("task") or params["task"])
            return resolved[name]
        if not (RUN_NAME if name in params["methods"] or name in params["extended"]["runs"] else GENERATED_NAME).match(
            name
        ):
            raise ConfigError(
                f"{key}: run names must match {RUN_NAME.pattern}: a lower-case letter, then lower-case "
                "letters, digits and _ (they name DVC stages, folders, and papermill's `-p run` argument "
                "on a shell command line)"
            )
        if reads_as_number(name):
            raise ConfigError(
                f"{key}: {name!r} reads as a number on papermill's command line (`-p run {name}`); rename the run"
            )
        if raw.get("base") is not None:
            base_name = raw["base"]
            if base_name not in entries:
                raise ConfigError(f"{key}.base: {base_name!r} is not a run (runs: {', '.join(entries)})")
            if base_name in (*trail, name):
                raise ConfigError(f"{key}.base: the bases loop: {' -> '.join((*trail, name, base_name))}")
            base = resolve(base_name, (*trail, name))
            info = CATALOG[base["method"]]
            changes = _set_values(raw.get("set", {}), base, key)
            merged = deep_merge(base["written"], expand_dotted(changes))
            task = raw.get("task") or base["task"]
            root = base["root"]
            explicit[name] = explicit[base_name] | set(flatten(expand_dotted(changes)))
        else:
            info = method_info(raw["method"], f"{key}.method")
            changes = flatten({k: v for k, v in raw.items() if k not in ("method", "base", "set", "task")})
            if raw.get("set"):
                raise ConfigError(f"{key}.set: only a run with a `base` sets keys; write them beside `method`")
            merged = deep_merge(method_defaults(info.name), expand_dotted(changes))
            base, task, root = None, raw.get("task") or params["task"], name
            explicit[name] = set(flatten(expand_dotted(changes)))
        entry = check(info.params, merged, key).model_dump(mode="json")
        if params["train"]["preset"] == "paper":
            defaults = method_defaults(info.name)
            for paper_key in info.paper_keys:
                set_dotted(entry, paper_key, get_dotted(defaults, paper_key))
            for switch, official in info.paper_switches.items():
                if not any(key == switch or key.startswith(f"{switch}.") for key in explicit[name]):
                    set_dotted(entry, switch, official)
        run = {
            "name": name,
            "study": study,
            "method": info.name,
            "module": info.module,
            "base": raw.get("base"),
            "root": root,
            "changes": flatten(changes) if base else changes,
            "variant": _variant(info, entry, base),
            "task": task,
            "entry": entry,
            "written": merged,
            "stages": [
                {
                    "name": s.name,
                    "key": s.key,
                    "train_conditions": s.conditions(entry),
                    "select_on": s.select_on,
                    "noise_key": s.noise_key,
                    "grid": s.grid,
                }
                for s in info.stages
            ],
            "needs": list(info.needs),
            "min_modalities": info.min_modalities,
            "joint": info.joint is not None,
            "functionals": info.functionals(entry),
        }
        run["status"], run["reason"] = _status(
            params, run, resolved.get(run["base"]) if base else None, corpus, corpus_modalities
        )
        resolved[name] = run
        return run

    for name in entries:
        resolve(name, ())
    return {name: resolved[name] for name in entries}


def reads_as_number(name: str) -> bool:
    """Whether `float(name)` parses it (nan, inf, infinity): papermill passes such a `-p` value as a float."""
    try:
        float(name)
    except ValueError:
        return False
    return True


def unbased(name: str, method: str, task: str) -> dict:
    """A generated run of the extended study for a method the default study has no base run of: skipped."""
    info = CATALOG[method]
    return {
        "name": name,
        "study": "extended",
        "method": method,
        "module": info.module,
        "base": None,
        "root": None,
        "changes": {},
        "variant": None,
        "task": task,
        "entry": None,
        "written": {},
        "stages": [],
        "needs": list(info.needs),
        "min_modalities": info.min_modalities,
        "joint": info.joint is not None,
        "functionals": None,
        "status": "skip",
        "reason": f"`methods` has no run of method {method} to base it on",
    }


def _set_values(values: Mapping, base: dict, key: str) -> dict:
    """The dotted keys a run sets, each checked to name a key of its method."""
    changes = dict(values)
    for dotted in changes:
        head = dotted.split(".")[0]
        if head not in base["entry"]:
            allowed = ", ".join(base["entry"])
            raise ConfigError(f"{key}.set.{dotted}: {head!r} is not a key of method {base['method']} (keys: {allowed})")
    return changes


def _variant(info: MethodInfo, entry: dict, base: dict | None) -> str | None:
    """The named variant of the method that `entry` is of its base's entry (their differences, exactly), or None."""
    if base is None:
        return None
    mine, theirs = flatten(entry), flatten(base["entry"])
    differences = {k: v for k, v in mine.items() if theirs.get(k) != v}
    for name, changes in info.variants.items():
        if differences == {k: v for k, v in changes.items()}:
            return name
    return None


def _status(
    params: Mapping, run: dict, base: dict | None, corpus: str, modalities: tuple[str, ...]
) -> tuple[str, str | None]:
    """(train | skip, why): skipped when its base is skipped, `train.runs` leaves it out, its method is not trained for
    its task, or the corpus cannot feed its method."""
    if base is not None and base["status"] == "skip":
        return "skip", f"its base run {base['name']} is skipped ({base['reason']})"
    selected = params["train"]["runs"]
    if run["study"] == "default" and selected != "all" and run["name"] not in selected:
        return "skip", "not selected by train.runs"
    tasks = CATALOG[run["method"]].tasks
    if run["task"] not in tasks:
        return "skip", f"method {run['method']} is trained for {' or '.join(tasks)} only, not {run['task']}"
    lacking = [m for m in run["needs"] if m not in modalities]
    if lacking or len(modalities) < run["min_modalities"]:
        need = f"the modalities {', '.join(run['needs'])}" if lacking else f"{run['min_modalities']} modalities"
        return "skip", f"method {run['method']} needs {need}; corpus {corpus} has {', '.join(modalities)}"
    from mer_core.data.corpora.registry import CORPORA

    if run["functionals"] and CORPORA[corpus].kind == "package":
        return "skip", (
            f"it reads the {run['functionals']} functionals of the recordings, and corpus {corpus} is a "
            "feature package, without recordings to extract them from"
        )
    return "train", None


def cross_check(params: Mapping, runs: Mapping[str, dict]) -> None:
    """Checks between sections; ConfigError names the key."""
    train = params["train"]
    if train["runs"] != "all":
        unknown = [r for r in train["runs"] if r not in params["methods"]]
        if unknown:
            raise ConfigError(
                f"train.runs: {unknown[0]!r} is not a run of `methods` (runs: {', '.join(params['methods'])})"
            )
    explore = params["explore"]
    normalised = train["normalise_modalities"]
    if normalised != "all":
        from mer_core.data.corpora.registry import CORPORA

        offered = CORPORA[params["data"]["corpus"]].modalities
        absent = [m for m in normalised if m not in offered]
        if absent:
            raise ConfigError(
                f"train.normalise_modalities: {absent[0]!r} is not a modality of corpus "
                f"{params['data']['corpus']} ({', '.join(offered)}); give all or a list of those"
            )
    folds = params["folds"]
    if folds["protocol"] == "kfold" and params["data"]["corpus"] not in ("iemocap_mmin", "cmu_mosei"):
        last = folds["n_folds"] - 1
        for key, values in (
            ("train.folds", train["folds"] if train["folds"] != "all" else []),
            ("explore.fold", [explore["fold"]]),
            ("analysis.embedding.fold", [params["analysis"]["embedding"]["fold"]]),
        ):
            for fold in values:
                if fold > last:
                    raise ConfigError(
                        f"{key}: fold {fold} does not exist; folds.n_folds is {folds['n_folds']} (folds 0..{last})"
                    )
    if explore["run"] is not None and explore["run"] not in params["methods"]:
        raise ConfigError(
            f"explore.run: {explore['run']!r} is not a run of `methods` "
            f"(runs: {', '.join(params['methods'])}; null picks one)"
        )
    for key, block in (("explore", explore), ("analysis.embedding", params["analysis"]["embedding"])):
        if block["seed"] not in train["seeds"]:
            raise ConfigError(
                f"{key}.seed: {block['seed']} is not one of train.seeds {train['seeds']} (no checkpoint "
                f"is trained with it)"
            )
        if train["folds"] != "all" and block["fold"] not in train["folds"]:
            raise ConfigError(f"{key}.fold: fold {block['fold']} is not trained (train.folds: {train['folds']})")
    if params["extended"]["other_task"]["task"] == params["task"]:
        raise ConfigError(f"extended.other_task.task: {params['task']!r} is the study's own task; name the other one")


# ============================================================================================== stage params


def hashed_code() -> list[str]:
    """The method-specific source files the resolved params hash (every registered method's module and what it
    imports beyond the training and embedding stages' own code): the `params` stage depends on them, so that editing
    a method's module reruns it and, through the hashes it writes, only the stages of that method's runs."""
    methods = module_closure(sorted({info.module for info in CATALOG.values()}))
    return sorted(set(methods) - set(stage_closure("train")))


def stage_params(params: Mapping, runs: Mapping[str, dict]) -> dict[str, dict]:
    """{relative file under data/params: its content}: what each stage reads (see the module docstring)."""
    data = params["data"]
    store = f"{data['features_dir']}/{data['corpus']}"
    train_science = {
        k: params["train"][k]
        for k in (
            "seeds",
            "folds",
            "preset",
            "precision",
            "normalisation",
            "weight_decay",
            "stopping",
            "frame_encoder",
            "batches",
            "normalise_modalities",
            "selection",
        )
    }
    if params["train"]["preset"] == "paper":
        train_science["stopping"] = {**train_science["stopping"], "rule": "fixed"}
    shared = set(stage_closure("train"))
    files: dict[str, dict] = {
        "corpus.json": {"generate": data["corpus"] == "builtin", "synthetic": data["synthetic"]},
        "prepare.json": {
            "data": {k: v for k, v in data.items() if k != "synthetic"},
            "features": params["features"],
            "folds": params["folds"],
            "corruptions": params["robustness"]["signal"],
            "functionals": needed_functionals(runs),
        },
    }
    for name, run in runs.items():
        folder = "runs" if run["study"] == "default" else "extended"
        robustness = params["robustness"] if run["study"] == "default" else None
        files[f"{folder}/{name}.json"] = {
            **{k: v for k, v in run.items() if k != "written"},
            "train": train_science,
            "robustness": robustness,
            "store": store,
            "code": code_hashes(sorted(set(module_closure([run["module"]])) - shared)),
        }
    summary = {name: run_summary(run) for name, run in runs.items()}
    trained = [name for name, run in runs.items() if run["study"] == "default" and run["status"] == "train"]
    embedded = embedded_runs(trained_runs(summary))
    files["embedding.json"] = {
        **params["analysis"]["embedding"],
        "runs": embedded,
        "store": store,
        "code": code_hashes(
            sorted(set(module_closure([runs[n]["module"] for n in embedded])) - set(stage_closure("embedding")))
        ),
    }
    analysis = {
        "task": params["task"],
        "analysis": params["analysis"],
        "stopping": train_science["stopping"],
        "robustness": params["robustness"],
        "data": {k: data[k] for k in ("corpus", "root")},
        "store": store,
    }
    files["analysis.json"] = {**analysis, "runs": {n: r for n, r in summary.items() if r["study"] == "default"}}
    files["extended_analysis.json"] = {**analysis, "runs": summary}
    files["explore.json"] = {
        **params["explore"],
        "task": params["task"],
        "robustness": params["robustness"],
        "normalise_modalities": params["train"]["normalise_modalities"],
        "data": {k: v for k, v in data.items() if k != "synthetic"},
        "store": store,
        "runs": {name: summary[name] for name in trained},
        "code": code_hashes(
            sorted(set(module_closure([runs[n]["module"] for n in trained])) - set(stage_closure("explore")))
        ),
    }
    return files


def needed_functionals(runs: Mapping[str, dict]) -> list[str]:
    """The openSMILE functionals sets that the runs to train (of both studies: they share the feature store) read, in
    a fixed order: what the prepare stage extracts beside the frames (`mer_core.data.prepare`). Adding a run that
    reads a set is thus the only change needed to have it extracted."""
    return sorted({run["functionals"] for run in runs.values() if run["status"] == "train" and run["functionals"]})


def run_summary(run: dict) -> dict:
    """What the analysis knows of a run: what it is (method, base, variant, changes, task), whether it trains, and what
    its tables need (the modalities its method needs, whether it has a joint representation, each stage's maximum
    epochs, its training noise)."""
    entry = run["entry"] or {}
    return {
        **{
            k: run[k]
            for k in (
                "study",
                "method",
                "base",
                "root",
                "variant",
                "changes",
                "task",
                "status",
                "reason",
                "needs",
                "joint",
            )
        },
        "max_epochs": {s["name"]: stage_epochs(s, entry) for s in run["stages"]},
        "noise": entry.get("noise") if entry else None,
    }


def write_stage_params(params: Mapping, out_dir: str | Path = STAGE_PARAMS) -> dict[str, dict]:
    """Write `stage_params` under `out_dir` (replacing it), print the runs that will be skipped in one line, and
    remove the committed outputs of runs that no longer exist (`remove_stale_outputs`)."""
    runs = resolve_runs(params)
    files = stage_params(params, runs)
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    for name, content in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
    skipped = [f"{name} ({run['reason']})" for name, run in runs.items() if run["status"] == "skip"]
    if skipped:
        print(f"skipped runs: {'; '.join(skipped)}", file=sys.stderr)
    remove_stale_outputs(runs)
    return files


def remove_stale_outputs(runs: Mapping[str, dict], root: str | Path = ".") -> list[Path]:
    """Delete the committed outputs (results folder, executed training notebook) of runs that are no longer defined,
    so that tables and the HTML export never show a removed run. Returns what was removed."""
    root = Path(root)
    removed = []
    places = {
        "default": (root / "results", root / "reports" / "notebooks"),
        "extended": (root / "extended" / "results", root / "reports" / "extended" / "notebooks"),
    }
    for study, (results, notebooks) in places.items():
        keep = {name for name, run in runs.items() if run["study"] == study}
        if results.is_dir():
            for folder in results.iterdir():
                if folder.is_dir() and (folder / "metrics.json").is_file() and folder.name not in keep:
                    shutil.rmtree(folder)
                    removed.append(folder)
        if notebooks.is_dir():
            for notebook in notebooks.glob("02_train-*.ipynb"):
                if notebook.stem.removeprefix("02_train-") not in keep:
                    notebook.unlink()
                    removed.append(notebook)
    return removed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mer_core.config", description="Validate params.yaml and write each stage's resolved params."
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=STAGE_PARAMS)
    parser.add_argument("--check", action="store_true", help="only validate the params file (write nothing)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        if not args.check:
            write_stage_params(params, args.out)
    except ConfigError as err:
        sys.exit(f"{args.params}: {err}")


if __name__ == "__main__":
    main()
