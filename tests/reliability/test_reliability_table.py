"""The reliability suite and its table in docs/reliability.md stay in step: every case collected under
tests/reliability (this file aside) has a row by its test id, parameters included; every row names a collected
case; there are at least 30 cases; and the folder's conftest gives its tests the `reliability` marker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


ROW = re.compile(r"^\| `([^`]+::[^`]+)` \|", re.MULTILINE)


def collected() -> list[str]:
    """The test ids (relative to tests/reliability) that pytest collects there, but this file's."""
    folder = HERE.relative_to(PROJECT).as_posix()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "reliability", folder],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line.removeprefix(f"{folder}/") for line in done.stdout.splitlines() if line.startswith(f"{folder}/")]
    return [case for case in ids if not case.startswith(f"{Path(__file__).name}::")]


def test_every_case_is_in_the_docs_table_and_every_row_is_a_case(request):
    assert request.node.get_closest_marker("reliability") is not None
    cases = collected()  # with -m reliability: a case without the marker would be missing, and so reported
    rows = ROW.findall((PROJECT / "docs" / "reliability.md").read_text())
    assert len(cases) >= 30
    assert sorted(set(cases) - set(rows)) == [], "cases without a row in docs/reliability.md (or the marker)"
    assert sorted(set(rows) - set(cases)) == [], "rows of docs/reliability.md that name no case"
    assert len(rows) == len(set(rows)), "a case with two rows"
