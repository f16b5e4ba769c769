"""Reliability: damaged OpenFace CSVs. A value OpenFace 2.0 cannot write (`mer_core.data.openface.BOUNDS`) in a frame
that is used stops the prepare step with an error naming the file, the column and the row, or, with
`data.on_error: skip`, drops that clip's face (recorded in skipped.csv); it never reaches the feature store.

`test_inf_in_a_tracked_frame_names_file_column_and_row` fails on the reader as it was before the reliability work (it
rejected NaN only: the `inf` reached the store, and training went on with NaN)."""

from __future__ import annotations

import numpy as np
import pytest
from corpus_damage import CLIP, csv_of, prepare_fails, set_cell, skipped_rows, tracked_row

from mer_core.data.openface import OpenFaceError
from mer_core.data.prepare import prepare


def test_inf_in_a_tracked_frame_names_file_column_and_row(damaged):
    root, params = damaged
    row = tracked_row(csv_of(root))
    set_cell(csv_of(root), "AU12_r", row, "inf")
    prepare_fails(
        params,
        OpenFaceError,
        f"{csv_of(root)}: column 'AU12_r', row {row} \\(line {row + 2}, a frame "
        "marked success = 1\\): inf \\(not finite\\) is outside the range of an "
        "OpenFace 2.0 AU intensity, 0 \\(absent\\) to 5 \\(maximum\\): \\[0, 5\\]",
    )


@pytest.mark.parametrize(
    "column, text, value, allowed",
    [
        ("AU12_r", "1e30", "1e\\+30", "AU intensity, 0 \\(absent\\) to 5 \\(maximum\\): \\[0, 5\\]"),
        ("AU04_r", "-0.5", "-0.5", "AU intensity, 0 \\(absent\\) to 5 \\(maximum\\): \\[0, 5\\]"),
        ("pose_Tz", "100000", "100000", "head position in mm from the camera: \\[-10000, 10000\\]"),
        ("pose_Ty", "-inf", "-inf \\(not finite\\)", "head position in mm from the camera: \\[-10000, 10000\\]"),
        ("pose_Rx", "7.0", "7", "head rotation in radians: \\[-6.28319, 6.28319\\]"),
        ("gaze_0_x", "3.0", "3", "component of an eye's unit gaze vector: \\[-1.5, 1.5\\]"),
        ("gaze_angle_y", "4.0", "4", "gaze angle in radians: \\[-3.14159, 3.14159\\]"),
        ("AU25_r", "nan", "NaN", "AU intensity"),
    ],
    ids=[
        "au-1e30",
        "au-negative",
        "pose-10-m-away",
        "pose-minus-inf",
        "rotation-beyond-a-turn",
        "gaze-vector-3",
        "gaze-angle-4-rad",
        "au-nan",
    ],
)
def test_absurd_value_in_a_tracked_frame_names_file_column_and_row(damaged, column, text, value, allowed):
    root, params = damaged
    row = tracked_row(csv_of(root))
    set_cell(csv_of(root), column, row, text)
    prepare_fails(
        params,
        OpenFaceError,
        f"{csv_of(root)}: column '{column}', row {row} \\(line {row + 2}, a frame "
        f"marked success = 1\\): {value} is outside the range of an OpenFace 2.0 "
        f"{allowed}",
    )


def test_au_presence_other_than_0_or_1_is_rejected_when_read(damaged):
    root, params = damaged
    params["features"]["visual"]["groups"] = ["au_r", "au_c", "pose", "gaze"]
    row = tracked_row(csv_of(root))
    set_cell(csv_of(root), "AU12_c", row, "0.5")
    prepare_fails(
        params,
        OpenFaceError,
        f"column 'AU12_c', row {row} \\(line {row + 2}, a frame marked success = "
        "1\\): 0.5 is outside the range of an OpenFace 2.0 AU presence: 0 or 1",
    )


@pytest.mark.parametrize(
    "column, text, allowed",
    [
        ("success", "2", "tracking success flag: 0 or 1"),
        ("success", "", "tracking success flag: 0 or 1"),
        ("confidence", "1.7", "tracking confidence: \\[0, 1\\]"),
    ],
    ids=["success-2", "success-empty", "confidence-1.7"],
)
def test_bad_tracking_columns_are_rejected_in_any_row(damaged, column, text, allowed):
    root, params = damaged
    row = 4
    set_cell(csv_of(root), "success", row, "0")  # even in a failed frame: these say which frames are used
    set_cell(csv_of(root), column, row, text)
    prepare_fails(
        params,
        OpenFaceError,
        f"{csv_of(root)}: column '{column}', row {row} \\(line {row + 2}\\): "
        f".* is outside the range of an OpenFace 2.0 {allowed}",
    )


def test_non_numeric_cell_names_file_column_and_row(damaged):
    root, params = damaged
    set_cell(csv_of(root), "gaze_1_y", 3, "abc")
    prepare_fails(
        params, OpenFaceError, f"{csv_of(root)}: column 'gaze_1_y', row 3 \\(line 5\\): 'abc' is not a number"
    )


def test_never_tracked_face_names_the_file(damaged):
    root, params = damaged
    lines = csv_of(root).read_text().splitlines()
    for row in range(len(lines) - 1):
        set_cell(csv_of(root), "success", row, "0")
    prepare_fails(params, OpenFaceError, f"{csv_of(root)}: no frame with success = 1")


def test_inf_in_a_failed_frame_is_never_used(damaged):
    root, params = damaged
    set_cell(csv_of(root), "success", 4, "0")  # the tracker lost the face in frame 4
    set_cell(csv_of(root), "AU12_r", 4, "inf")
    store = prepare(params)  # a tracking failure's values are zeroed, never read
    assert not (store.root / "skipped.csv").exists()
    assert np.isfinite(store.sequences["visual"].data).all()


def test_inf_with_skip_drops_the_face_and_keeps_the_voice(damaged):
    root, params = damaged
    row = tracked_row(csv_of(root))
    set_cell(csv_of(root), "AU12_r", row, "inf")
    params["data"]["on_error"] = "skip"
    store = prepare(params)
    assert skipped_rows(store.root) == [
        [
            CLIP,
            "visual",
            str(csv_of(root)),
            f"column 'AU12_r', row {row} (line {row + 2}, a frame marked success = 1): inf (not finite) is outside the "
            "range of an OpenFace 2.0 AU intensity, 0 (absent) to 5 (maximum): [0, 5]",
            "modality dropped",
        ]
    ]
    clip = store.meta.set_index("clip_id").loc[CLIP]
    assert clip["has_audio"] and not clip["has_visual"]
    assert np.isfinite(store.sequences["visual"].data).all()
    assert store.corruption("visual_dropout_50")[1].lengths[list(store.meta["clip_id"]).index(CLIP)] == 0
