"""Which source files a pipeline stage runs: the static import closure of its entry points within `mer_core`.

`module_closure` follows every `import` and `from ... import` (at any depth of the file, so imports inside functions
count) from the given modules and returns the files of the `mer_core` modules reached, package `__init__`s included.
A notebook's entry points are the imports of its code cells (`notebook_imports`). dvc.yaml lists the closure of each
stage's fixed entry points as its code dependencies (a test keeps them equal); the part that depends on a run (its
method's module, imported by name) is hashed into the run's resolved params instead (`code_hashes`,
`mer_core.config`), so that editing one method's module reruns only the stages of its runs.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent


def module_file(module: str) -> Path | None:
    """The source file of a `mer_core` module (`mer_core.x.y` -> mer_core/x/y.py or mer_core/x/y/__init__.py)."""
    parts = module.split(".")
    if parts[0] != "mer_core":
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports_of_source(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """The absolute module names a source imports (relative imports resolved against `module`), with the candidate
    submodules of `from package import name`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@lru_cache(maxsize=None)
def _direct(path: Path) -> frozenset[str]:
    module = _module_name(path)
    return frozenset(imports_of_source(path.read_text(), module, path.name == "__init__.py"))


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


def module_closure(modules: list[str] | tuple[str, ...]) -> list[str]:
    """The files (relative to the project root, sorted) of the `mer_core` modules `modules` import, directly or not,
    the modules themselves and every package `__init__` on the way included."""
    seen: set[Path] = set()
    todo = [name for module in modules for name in _with_parents(module)]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in _direct(path):
            todo.extend(_with_parents(name))
    return sorted(str(path.relative_to(ROOT)) for path in seen)


def notebook_imports(path: str | Path) -> list[str]:
    """The modules the code cells of a notebook import."""
    cells = json.loads(Path(path).read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return sorted(imports_of_source("\n".join(lines)))


STAGES = {  # each stage's fixed entry points: modules it runs, notebooks it executes (dvc.yaml, extended/dvc.yaml)
    "params": ("mer_core.config",),
    "corpus": ("mer_core.data.synthetic.__main__",),
    "prepare": ("notebooks/01_prepare_data.ipynb", "mer_core.notebook_run"),
    "train": ("notebooks/02_train.ipynb", "mer_core.notebook_run"),
    "embedding": ("mer_core.embedding",),
    "analysis": ("notebooks/03_analysis.ipynb", "mer_core.notebook_run"),
    "explore": ("notebooks/04_explore.ipynb", "mer_core.notebook_run"),
    "html": ("mer_core.html_export",),
    "extended_analysis": ("notebooks/05_extended.ipynb", "mer_core.notebook_run"),
}


def stage_closure(stage: str) -> list[str]:
    """The code a stage of `STAGES` runs: its notebooks and the closure of their imports and of its modules."""
    modules, notebooks = [], []
    for entry in STAGES[stage]:
        if entry.endswith(".ipynb"):
            notebooks.append(entry)
            modules += [m for m in notebook_imports(ROOT / entry) if m.split(".")[0] == "mer_core"]
        else:
            modules.append(entry)
    return sorted(notebooks) + module_closure(modules)


def code_hashes(files: list[str]) -> dict[str, str]:
    """{file: sha256 of its bytes} of project files (relative to the project root)."""
    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in sorted(files)}
