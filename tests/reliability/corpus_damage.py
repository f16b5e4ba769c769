"""Helpers of the reliability suite (a module, not a test file): damaging a tiny corpus's files, checking that a
failed prepare step left nothing behind, and a slowed extraction chunk for the kill cases."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_core.data import prepare as prepare_module
from mer_core.data.prepare import prepare, store_path

CLIP = "1002_DFA_HAP_XX"  # the clip the tests damage (a DFA clip: the IEO clips come in three levels)


def wav_of(root: Path, clip: str = CLIP) -> Path:
    return root / "AudioWAV" / f"{clip}.wav"


def csv_of(root: Path, clip: str = CLIP) -> Path:
    return root / "OpenFace" / f"{clip}.csv"


def tracked_row(csv: Path) -> int:
    """The first data row (0-based) of an OpenFace CSV whose `success` is 1."""
    success = pd.read_csv(csv, skipinitialspace=True)["success"].to_numpy()
    return int(np.flatnonzero(success == 1)[0])


def set_cell(csv: Path, column: str, row: int, text: str) -> None:
    """Replace one cell of an OpenFace CSV (', ' separated, as OpenFace writes it) by `text`, leaving the rest
    byte for byte."""
    lines = csv.read_text().splitlines()
    k = [name.strip() for name in lines[0].split(",")].index(column)
    cells = lines[row + 1].split(", ")
    cells[k] = text
    lines[row + 1] = ", ".join(cells)
    csv.write_text("\n".join(lines) + "\n")


def write_samples(path: Path, wave: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> None:
    sf.write(path, wave, rate, subtype=subtype)


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def prepare_fails(params: dict, error: type[Exception], pattern: str) -> pytest.ExceptionInfo:
    """Run prepare, expect `error` matching `pattern`, and check that no store (nor its `.partial`) was left."""
    with pytest.raises(error, match=pattern) as info:
        prepare(params)
    store = store_path(params)
    assert not store.exists() and not store.with_name(store.name + ".partial").exists()
    return info


def skipped_rows(store_root: Path) -> list[list]:
    """skipped.csv's rows as [clip_id, modality, path ('' when none), reason, action]."""
    table = pd.read_csv(store_root / "skipped.csv", keep_default_na=False)
    assert list(table.columns) == ["clip_id", "modality", "path", "reason", "action"]
    return table.values.tolist()


# ---------------------------------------------------------------------------------------------------- workers


def slow_chunk(jobs, *args):
    """The real extraction chunk, which then leaves a mark in $MER_TEST_PIDS and sleeps a little (so that a kill
    lands between chunks, with finished work in the cache)."""
    out = REAL_EXTRACT_CHUNK(jobs, *args)
    folder = Path(os.environ["MER_TEST_PIDS"])
    (folder / f"chunk-{len(list(folder.iterdir()))}").touch()
    time.sleep(0.5)
    return out


REAL_EXTRACT_CHUNK = prepare_module._extract_chunk
