"""Importer for OpenFace 2.0 `FeatureExtraction` CSV files (Baltrusaitis et al., FG 2018).

The same code reads the built-in corpus's face stream and a user's real OpenFace output. OpenFace writes a
space after each comma of the header (`frame, face_id, ...`), so column names are stripped. Frames with
`success == 0` are tracking failures: they are kept in the sequence (timing is preserved) but flagged
invalid, and their features are not used for normalisation statistics and are zeroed after normalisation.

Every value that is used is checked against the range OpenFace 2.0 can write for its column (`BOUNDS`), so that
a damaged file (an `inf`, a `1e30`, a flag of 0.5) stops the run with an error naming the file, the column and the
row instead of reaching the feature store: `success` must be 0 or 1 in every row, `confidence` (where present)
in [0, 1], and the selected feature columns of every frame marked `success = 1` finite and within bounds (a
failed frame's values are never used). The bounds follow OpenFace 2.0's documented output format (the project
wiki's "Output Format" page): AU intensities `AU*_r` on a 0 (absent) to 5 (maximum) scale, AU presence `AU*_c`
0 or 1, head position `pose_T*` in millimetres from the camera, head rotation `pose_R*` in radians, per-eye gaze
directions `gaze_0_*` / `gaze_1_*` as unit vectors, averaged gaze angles `gaze_angle_*` in radians. Where a
quantity has no hard limit the bound is generous: it only rejects what no face in front of a camera gives
(a head 10 m away, a rotation beyond a full turn, a gaze component far off a unit vector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

AU_INTENSITY = [
    "AU01_r",
    "AU02_r",
    "AU04_r",
    "AU05_r",
    "AU06_r",
    "AU07_r",
    "AU09_r",
    "AU10_r",
    "AU12_r",
    "AU14_r",
    "AU15_r",
    "AU17_r",
    "AU20_r",
    "AU23_r",
    "AU25_r",
    "AU26_r",
    "AU45_r",
]
AU_PRESENCE = [
    "AU01_c",
    "AU02_c",
    "AU04_c",
    "AU05_c",
    "AU06_c",
    "AU07_c",
    "AU09_c",
    "AU10_c",
    "AU12_c",
    "AU14_c",
    "AU15_c",
    "AU17_c",
    "AU20_c",
    "AU23_c",
    "AU25_c",
    "AU26_c",
    "AU28_c",
    "AU45_c",
]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
COLUMN_GROUPS = {"au_r": AU_INTENSITY, "au_c": AU_PRESENCE, "pose": POSE, "gaze": GAZE}


@dataclass(frozen=True)
class Bounds:
    """The values one OpenFace 2.0 column can hold: [low, high], or only the integers in it (`flag`)."""

    low: float
    high: float
    meaning: str
    flag: bool = False

    def describe(self) -> str:
        allowed = f"{self.low:g} or {self.high:g}" if self.flag else f"[{self.low:g}, {self.high:g}]"
        return f"{self.meaning}: {allowed}"


BOUNDS = {
    "success": Bounds(0, 1, "tracking success flag", flag=True),
    "confidence": Bounds(0, 1, "tracking confidence"),
    **{c: Bounds(0, 5, "AU intensity, 0 (absent) to 5 (maximum)") for c in AU_INTENSITY},
    **{c: Bounds(0, 1, "AU presence", flag=True) for c in AU_PRESENCE},
    **{c: Bounds(-10_000, 10_000, "head position in mm from the camera") for c in POSE[:3]},
    **{c: Bounds(-2 * math.pi, 2 * math.pi, "head rotation in radians") for c in POSE[3:]},
    **{c: Bounds(-1.5, 1.5, "component of an eye's unit gaze vector") for c in GAZE[:6]},
    **{c: Bounds(-math.pi, math.pi, "gaze angle in radians") for c in GAZE[6:]},
}


class OpenFaceError(ValueError):
    """An OpenFace CSV is unreadable, lacks columns, has no frames, or holds a value that is not numeric, not finite
    or outside its column's range (`BOUNDS`); the message names the file (and the column and row)."""


def openface_columns(groups: list[str]) -> list[str]:
    """The feature columns selected by `groups` (keys of COLUMN_GROUPS), in a fixed order."""
    return [column for group in groups for column in COLUMN_GROUPS[group]]


def _numeric(table: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """`table[columns]` as float64 (T, len(columns)); OpenFaceError naming the first non-numeric cell."""
    try:
        return table[columns].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        values = table[columns].apply(pd.to_numeric, errors="coerce")
        row, k = np.argwhere(values.isna().to_numpy() & table[columns].notna().to_numpy())[0]
        raise OpenFaceError(
            f"{path}: column {columns[k]!r}, row {row} (line {row + 2}): "
            f"{table[columns[k]].iloc[row]!r} is not a number"
        ) from None


def check_bounds(values: np.ndarray, columns: list[str], rows: np.ndarray, path: Path, where: str) -> None:
    """OpenFaceError naming the file, column and row of the first value of `values` (T, len(columns)) in the rows
    `rows` (bool mask) that is NaN, infinite or outside its column's `BOUNDS`; `where` says which rows these are."""
    low = np.array([BOUNDS[c].low for c in columns])
    high = np.array([BOUNDS[c].high for c in columns])
    flag = np.array([BOUNDS[c].flag for c in columns])
    with np.errstate(invalid="ignore"):
        outside = ~((values >= low) & (values <= high)) | (flag & (values != np.round(values)))  # NaN: outside
    outside &= rows[:, None]
    if outside.any():
        row, k = np.argwhere(outside)[0]
        value, bounds = values[row, k], BOUNDS[columns[k]]
        what = "NaN" if np.isnan(value) else f"{value:g}" + ("" if np.isfinite(value) else " (not finite)")
        raise OpenFaceError(
            f"{path}: column {columns[k]!r}, row {row} (line {row + 2}{where}): {what} is outside "
            f"the range of an OpenFace 2.0 {bounds.describe()}"
        )


def read_openface_csv(path: str | Path, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return features (T, D) float32 of the columns in `groups` and the valid-frame mask (T,) bool; every value
    used is checked (see module docstring)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise OpenFaceError(f"{path}: not a readable OpenFace CSV ({type(err).__name__}: {err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    wanted = openface_columns(groups)
    missing = [c for c in ["success", *wanted] if c not in table.columns]
    if missing:
        raise OpenFaceError(f"{path}: missing OpenFace columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if len(table) == 0:
        raise OpenFaceError(f"{path}: no frames")
    every = np.ones(len(table), dtype=bool)
    tracking = ["success"] + (["confidence"] if "confidence" in table.columns else [])
    check_bounds(_numeric(table, tracking, path), tracking, every, path, "")
    valid = table["success"].to_numpy(dtype=np.float64) == 1
    if not valid.any():
        raise OpenFaceError(f"{path}: no frame with success = 1 (the face was never tracked)")
    features = _numeric(table, wanted, path)
    check_bounds(features, wanted, valid, path, ", a frame marked success = 1")
    features[~valid] = 0.0
    return features.astype(np.float32), valid
