"""Reliability: what was skipped is said where it is seen. The prepare stage runs inside a papermill-executed notebook
under `dvc repro`; its skip summary must reach that console (the kernel process's real stderr) and the executed
notebook alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

PROJECT = Path(__file__).resolve().parents[2]

CELL = """
from pathlib import Path
import pandas as pd
from mer_core.data.prepare import SKIPPED_COLUMNS, report_skipped

row = ["1002_DFA_HAP_XX", "audio", "raw/1002_DFA_HAP_XX.wav", "silent (all 16000 samples are 0)", "modality dropped"]
report_skipped(pd.DataFrame([row], columns=SKIPPED_COLUMNS), Path("store/skipped.csv"))
"""
SUMMARY = (
    "prepare: 1 problems with the corpus's files, listed in store/skipped.csv: 0 clips dropped, 1 clips kept "
    "without audio"
)
ROW = "  1002_DFA_HAP_XX audio: modality dropped (silent (all 16000 samples are 0))"


def test_the_skip_summary_reaches_the_dvc_console_and_the_notebook(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "in.ipynb")
    env = dict(os.environ, PYTHONPATH=str(PROJECT), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mer_core.notebook_run",  # what every notebook stage runs
            str(tmp_path / "in.ipynb"),
            str(tmp_path / "out.ipynb"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(SUMMARY) == 1 and ROW in done.stderr  # what `dvc repro` shows
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    shown = "".join(output.get("text", "") for output in outputs if output.get("name") == "stderr")
    assert shown.count(SUMMARY) == 1 and ROW in shown  # what the executed notebook shows, once
