"""Importer for OpenFace 2.0 `FeatureExtraction` CSV files (Baltrusaitis et al., FG 2018).

The same code reads the built-in corpus's face stream and a user's real OpenFace output. OpenFace writes a
space after each comma of the header (`frame, face_id, ...`), so column names are stripped. Frames with
`success == 0` are tracking failures: they are kept in the sequence (timing is preserved) but flagged
invalid, and their features are not used for normalisation statistics and are zeroed after normalisation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AU_INTENSITY = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r", "AU12_r",
                "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r", "AU45_r"]
AU_PRESENCE = ["AU01_c", "AU02_c", "AU04_c", "AU05_c", "AU06_c", "AU07_c", "AU09_c", "AU10_c", "AU12_c",
               "AU14_c", "AU15_c", "AU17_c", "AU20_c", "AU23_c", "AU25_c", "AU26_c", "AU28_c", "AU45_c"]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
COLUMN_GROUPS = {"au_r": AU_INTENSITY, "au_c": AU_PRESENCE, "pose": POSE, "gaze": GAZE}


class OpenFaceError(ValueError):
    """An OpenFace CSV is unreadable, lacks columns, has no frames or holds NaNs; the message names the file."""


def openface_columns(groups: list[str]) -> list[str]:
    """The feature columns selected by `groups` (keys of COLUMN_GROUPS), in a fixed order."""
    return [column for group in groups for column in COLUMN_GROUPS[group]]


def read_openface_csv(path: str | Path, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return features (T, D) float32 of the columns in `groups` and the valid-frame mask (T,) bool."""
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
    try:
        features = table[wanted].to_numpy(dtype=np.float32)
        success = table["success"].to_numpy(dtype=np.float32)
    except ValueError as err:
        raise OpenFaceError(f"{path}: non-numeric values ({err})") from err
    valid = success > 0.5
    if np.isnan(features[valid]).any():
        row = int(np.argwhere(np.isnan(features) & valid[:, None])[0, 0])
        raise OpenFaceError(f"{path}: NaN features in frame row {row} marked success = 1")
    if not valid.any():
        raise OpenFaceError(f"{path}: no frame with success = 1 (the face was never tracked)")
    features[~valid] = 0.0
    return features, valid
