"""Execute a pipeline notebook with papermill so that the same inputs give the same bytes, and nothing half-written.

papermill and nbclient record wall-clock times in an executed notebook (each cell's start, end and duration, and the
whole run's), and give the cells of a notebook saved without ids random ids. Two runs of one stage on the same data
then differ in bytes, so `make repro` on a fresh clone changed every executed notebook, its HTML page and `dvc.lock`
although no number had moved. This runner executes into a hidden file beside the output, drops the times, numbers
the cells (`cell-0`, `cell-1`, ...), and only then renames the result onto the output: an interrupted or failed run
never leaves a notebook at the output path (a failed run's notebook, with its error, stays at the hidden path, named
in the error). Used by every notebook stage of dvc.yaml and extended/dvc.yaml:

    python -m mer_core.notebook_run notebooks/02_train.ipynb reports/notebooks/02_train-mmin.ipynb -p run mmin

Parameters (`-p NAME VALUE`) reach the notebook as strings, unlike papermill's command line, which reads a value
that looks like a number as one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mer_core.runtime import write_atomic

TIMES = ("start_time", "end_time", "duration")


def partial_path(out: str | Path) -> Path:
    """Where a run writes before it has finished (hidden, and not `*.ipynb`, so no export picks it up; .gitignore
    and .dvcignore leave it out of git and of DVC's folder hashes)."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial.json")


def without_run_times(notebook: dict, output_path: str) -> dict:
    """The executed notebook less what varies between identical runs: papermill's and nbclient's times, the cells'
    random ids (numbered instead), and the temporary output path papermill saw."""
    papermill = notebook.get("metadata", {}).get("papermill", {})
    for key in TIMES:
        papermill.pop(key, None)
    if "output_path" in papermill:
        papermill["output_path"] = output_path
    for index, cell in enumerate(notebook["cells"]):
        cell["id"] = f"cell-{index}"
        metadata = cell.get("metadata", {})
        metadata.pop("execution", None)
        for key in TIMES:
            metadata.get("papermill", {}).pop(key, None)
    return notebook


def run_notebook(
    source: str | Path, out: str | Path, parameters: dict[str, str] | None = None, kernel: str = "python3"
) -> Path:
    """Execute `source` into `out` with `parameters` injected (see the module docstring); raises papermill's error,
    naming the failed notebook."""
    import papermill

    out = Path(out)
    partial = partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=parameters or {}, kernel_name=kernel, progress_bar=False
        )
    except Exception as error:
        raise RuntimeError(f"{source} failed; the executed notebook, with the error, is {partial}") from error
    notebook = without_run_times(json.loads(partial.read_text(encoding="utf-8")), str(out))
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    write_atomic(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    partial.unlink()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mer_core.notebook_run", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the notebook to execute (notebooks/...)")
    parser.add_argument("out", help="the executed notebook (reports/...)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-k", "--kernel", default="python3")
    args = parser.parse_args(argv)
    run_notebook(args.source, args.out, dict(args.parameter), args.kernel)


if __name__ == "__main__":
    main()
