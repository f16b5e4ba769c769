"""`mer_core.notebook_run`: an executed notebook is the same bytes on every run of the same inputs, its parameters
arrive as strings, and a failed run leaves no notebook at the output path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest

from mer_core.notebook_run import main, partial_path, run_notebook, without_run_times


def write_notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    cells = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in notebook.cells:  # saved without ids, as nbformat 4.4 notebooks are: papermill then draws random ones
        cell.pop("id", None)
    notebook.nbformat_minor = 4
    path.write_text(json.dumps(notebook))
    return path


EXECUTED = {
    "metadata": {
        "papermill": {
            "start_time": "2026-12-07T00:20:35",
            "end_time": "2026-12-07T00:23:09",
            "duration": 154.2,
            "output_path": "reports/.x.ipynb.partial",
            "parameters": {"run": "mmin"},
        },
        "kernelspec": {"name": "python3"},
    },
    "cells": [
        {
            "id": "59e1417f",
            "cell_type": "code",
            "metadata": {
                "execution": {"iopub.execute_input": "2026-12-07T00:20:35.406888Z"},
                "papermill": {"duration": 0.01, "start_time": "a", "end_time": "b", "status": "completed"},
                "tags": ["parameters"],
            },
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "UA 0.5\n"}],
        },
        {"id": "f82da299", "cell_type": "markdown", "metadata": {}, "source": "# x"},
    ],
}


def test_without_run_times_drops_the_times_numbers_the_cells_and_keeps_the_rest():
    clean = without_run_times(copy.deepcopy(EXECUTED), "reports/x.ipynb")
    assert clean["metadata"]["papermill"] == {"output_path": "reports/x.ipynb", "parameters": {"run": "mmin"}}
    assert [cell["id"] for cell in clean["cells"]] == ["cell-0", "cell-1"]
    first = clean["cells"][0]
    assert first["metadata"] == {"papermill": {"status": "completed"}, "tags": ["parameters"]}
    assert first["outputs"] == EXECUTED["cells"][0]["outputs"]
    assert clean["metadata"]["kernelspec"] == {"name": "python3"}


def test_two_runs_of_the_same_notebook_give_the_same_bytes_and_parameters_arrive_as_strings(tmp_path):
    source = write_notebook(
        tmp_path / "source.ipynb",
        "import time\ntime.sleep(0.05)\nprint(repr(run), type(run).__name__)",
        parameters="run = 'default'",
    )
    first = run_notebook(source, tmp_path / "out" / "first.ipynb", {"run": "1e3"})
    main([str(source), str(tmp_path / "out" / "second.ipynb"), "-p", "run", "1e3"])
    second = tmp_path / "out" / "second.ipynb"
    executed = json.loads(first.read_text())
    printed = "".join(executed["cells"][-1]["outputs"][0]["text"])
    assert printed == "'1e3' str\n"  # papermill's command line would have passed the float 1000.0
    # the only difference papermill leaves between the two is the output path it was given
    assert first.read_text().replace("first.ipynb", "second.ipynb") == second.read_text()
    assert not partial_path(first).exists() and not partial_path(second).exists()
    assert "start_time" not in first.read_text() and "iopub" not in first.read_text()


def test_a_failed_run_leaves_no_notebook_at_the_output_and_names_the_executed_one(tmp_path):
    source = write_notebook(tmp_path / "source.ipynb", "raise ValueError('bad feature file')")
    out = tmp_path / "out.ipynb"
    with pytest.raises(RuntimeError, match="source.ipynb failed") as error:
        run_notebook(source, out)
    assert not out.exists()
    assert str(partial_path(out)) in str(error.value)
    assert "bad feature file" in partial_path(out).read_text()
