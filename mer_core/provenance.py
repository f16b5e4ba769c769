"""Provenance of every table and figure: a sidecar `<name>.provenance.json` beside the artefact (issue 7).

What it records, and only what is stable for the same inputs (no timestamps, no absolute paths we add), so that
the analysis stage's committed outputs stay reproducible:
- `stages`: the DVC stages the artefact derives from (the `train@<method>` runs, or the extended study's
  stages, and through their deps every stage upstream: `prepare`, `corpus`), each with the sha256 of its
  `dvc.lock` entry (`stage_record`: the md5 of each dep and out and a hash of its params), so the entry can be
  checked against the dvc.lock of the recorded git revision without repeating it in every sidecar. Stages of a
  second pipeline are named as DVC names them, `extended/dvc.yaml:<stage>`. dvc.lock is read as YAML (DVC is not called) and is not a declared dep of
  the analysis stage: DVC rewrites it after every stage, the analysis's own entry included, so as a dep it would
  be stale forever. The upstream entries it is read for are final when the analysis runs (DVC writes a stage's
  lock entry as soon as the stage ends), and the analysis reruns whenever their outputs (`results/`) change.
- `feature_store`: the path and the md5 dvc.lock records for the feature store (`data.features_dir`, its
  manifest.json included). The manifest itself lives in the DVC cache and may be absent from a checkout, so
  hashing the file would make the sidecar depend on what was pulled.
- `params`: the params sections the analysis declares (dotted keys), with `params_sha256` over them.
- `git_parent_revision`: `git rev-parse HEAD` when the analysis ran, i.e. the commit the run started from: the
  outputs themselves land in a later commit. `git_dirty`: whether the analysis's inputs (`SOURCE_PATHS`) had
  uncommitted changes then. Both null without git (e.g. a tarball).
- `files`: the sha256 of each file of the artefact (.md/.tex/.csv or .png/.svg).
One sidecar per artefact (not one index) because the notebook writes its artefacts from independent cells:
each sidecar is written atomically with its artefact and nothing has to be accumulated or merged.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import yaml

from mer_core.runtime import write_atomic

SOURCE_PATHS = ("mer_core", "notebooks", "params.yaml", "dvc.yaml", "reference_results.yaml")
SUFFIX = ".provenance.json"


def canonical_sha256(value) -> str:
    """sha256 of `value` as sorted, compact JSON (the same value gives the same hash on every machine)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_lock(path: str | Path) -> dict[str, dict]:
    """The `stages` of a dvc.lock file; {} when the file does not exist (a pipeline never run)."""
    path = Path(path)
    if not path.is_file():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    stages = document.get("stages")
    if not isinstance(stages, dict):
        raise ValueError(f"{path}: not a dvc.lock file (no `stages` mapping)")
    return stages


def stage_record(entry: dict) -> dict:
    """One dvc.lock stage entry reduced to {deps: {path: md5}, outs: {path: md5}, params_sha256}."""
    hashes = lambda items: {item["path"]: item.get("md5") for item in items or []}
    return {"deps": hashes(entry.get("deps")), "outs": hashes(entry.get("outs")),
            "params_sha256": canonical_sha256(entry.get("params") or {})}


def _feeds(out: str, dep: str) -> bool:
    return dep == out or dep.startswith(out.rstrip("/") + "/") or out.startswith(dep.rstrip("/") + "/")


def upstream_stages(lock: dict[str, dict], roots: list[str]) -> dict[str, str | None]:
    """`roots` and every stage whose outs feed their deps, transitively, as {name: sha256 of its stage_record}
    sorted by name; a root missing from dvc.lock maps to None (not run yet)."""
    found: dict[str, dict | None] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        entry = lock.get(name)
        found[name] = None if entry is None else stage_record(entry)
        if entry is None:
            continue
        for other, other_entry in lock.items():
            outs = [item["path"] for item in other_entry.get("outs") or []]
            if other not in found and any(_feeds(o, d) for o in outs for d in found[name]["deps"]):
                todo.append(other)
    return {name: None if record is None else canonical_sha256(record) for name, record in sorted(found.items())}


def read_locks(paths: list[str | Path]) -> dict[str, dict]:
    """The stages of several dvc.lock files in one mapping: the first file's under their own names, a later
    one's as `<folder>/dvc.yaml:<stage>` (DVC's address of a stage of another pipeline)."""
    stages: dict[str, dict] = {}
    for k, path in enumerate(paths):
        prefix = "" if k == 0 else f"{Path(path).parent.as_posix()}/dvc.yaml:"
        stages.update({prefix + name: entry for name, entry in read_lock(path).items()})
    return stages


def feature_store(lock: dict[str, dict], features_dir: str) -> dict:
    """{path, md5} of the feature store as the stage that writes it recorded it (md5 None when not in dvc.lock)."""
    for entry in lock.values():
        for item in entry.get("outs") or []:
            if item["path"].rstrip("/") == features_dir.rstrip("/"):
                return {"path": features_dir, "md5": item.get("md5")}
    return {"path": features_dir, "md5": None}


def select_params(params: dict, keys: list[str]) -> dict:
    """{dotted key: value} of `params` for each of `keys` (e.g. "task", "data.corpus")."""
    selected = {}
    for key in keys:
        value = params
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"params: no key {key!r} (needed for the provenance)")
            value = value[part]
        selected[key] = value
    return selected


def git_state(root: str | Path = ".", sources: tuple[str, ...] = SOURCE_PATHS) -> dict:
    """{git_parent_revision, git_dirty}: HEAD when this runs (the parent of the commit that will hold the outputs)
    and whether `sources` have uncommitted changes; both None where git or the repository is missing."""
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                           check=True).stdout
        revision = run("rev-parse", "HEAD").strip()
        present = [s for s in sources if (Path(root) / s).exists()]
        dirty = bool(run("status", "--porcelain", "--", *present).strip()) if present else False
    except (OSError, subprocess.CalledProcessError):
        return {"git_parent_revision": None, "git_dirty": None}
    return {"git_parent_revision": revision, "git_dirty": dirty}


def collect_provenance(params: dict, param_keys: list[str], lock_path: str | Path | list[str | Path],
                       root: str | Path = ".", roots: list[str] | None = None) -> dict:
    """The provenance shared by every artefact of one analysis run: the stages upstream of `roots` (default:
    `train@<run>` for every run in `params`) in the dvc.lock file(s) (`read_locks`), the feature store's hash,
    the `param_keys` sections and the git state."""
    lock = read_locks(lock_path if isinstance(lock_path, list) else [lock_path])
    selected = select_params(params, param_keys)
    return {
        "stages": upstream_stages(lock, roots or [f"train@{method}" for method in params["methods"]]),
        "feature_store": feature_store(lock, params["data"]["features_dir"]),
        "params": selected,
        "params_sha256": canonical_sha256(selected),
        **git_state(root),
    }


def write_provenance(provenance: dict, name: str, files: list[Path]) -> Path:
    """Write `<name>.provenance.json` beside `files` (the artefact's files): `provenance` plus the artefact's name
    and each file's sha256, as sorted JSON (byte-stable)."""
    record = {"artefact": name, "files": {Path(f).name: file_sha256(f) for f in files}, **provenance}
    path = Path(files[0]).with_name(f"{name}{SUFFIX}")
    text = json.dumps(record, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    return write_atomic(path, lambda p: p.write_text(text))


def provenance_block(sidecar: str | Path) -> str:
    """A short markdown summary of a sidecar, printed by the notebook under its table or figure."""
    record = json.loads(Path(sidecar).read_text())
    stages = ", ".join(f"`{name}` {('not in dvc.lock' if digest is None else digest[:8])}"
                       for name, digest in record["stages"].items())
    store = record["feature_store"]
    revision = record["git_parent_revision"]
    git = ("no git revision (not a git checkout)" if revision is None else
           f"run from git commit `{revision[:10]}`"
           + (" with uncommitted changes to its inputs" if record["git_dirty"] else ""))
    return (f"<small>**Provenance** (`{Path(sidecar).name}`): DVC stages (dvc.lock, short hash) {stages}; "
            f"feature store `{store['path']}` md5 `{store['md5']}`; params "
            f"{', '.join(f'`{k}`' for k in record['params'])} sha256 `{record['params_sha256'][:12]}`; {git}.</small>")


def declared_params(dvc_yaml: str | Path, stage: str) -> list[str]:
    """The params keys `stage` declares in `dvc_yaml` (what the provenance records, kept in step with DVC)."""
    stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages") or {}
    if stage not in stages:
        raise KeyError(f"{dvc_yaml}: no stage {stage!r}")
    return [key for key in stages[stage].get("params") or [] if isinstance(key, str)]
