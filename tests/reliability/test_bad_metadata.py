"""Reliability: missing or inconsistent metadata and listings. A metadata file that does not cover the corpus stops
the run when the clips are listed (before any extraction) with an error naming the file and the actor or clip; a
clip the corpus lists without a file for one modality is recorded in skipped.csv, never silently left out."""

from __future__ import annotations

import pytest
from corpus_damage import CLIP, csv_of, prepare_fails, skipped_rows, wav_of

from mer_core.data import prepare as prepare_module
from mer_core.data.corpora.base import CorpusError
from mer_core.data.prepare import cache_path, prepare


@pytest.fixture
def no_extraction(monkeypatch):
    """Fail the test if any feature is extracted (the error must come from the listing)."""

    def extract_all(*args, **kwargs):
        raise AssertionError("features were extracted before the metadata error")

    monkeypatch.setattr(prepare_module, "extract_all", extract_all)


def edit_lines(path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


# ================================================================================================ demographics


def test_actor_missing_from_demographics_names_file_and_actor(damaged, no_extraction):
    root, params = damaged
    demographics = root / "VideoDemographics.csv"
    edit_lines(demographics, lambda lines: [line for line in lines if not line.startswith("1003,")])
    prepare_fails(
        params,
        CorpusError,
        f"{demographics}: no row for actor 1003, whose clips the corpus lists \\(1 "
        "such actors: 1003\\); add its row \\(ActorID, Sex, ...\\), or remove the file",
    )
    assert not cache_path(params).exists()


def test_actor_without_sex_names_file_and_actor(damaged, no_extraction):
    root, params = damaged
    demographics = root / "VideoDemographics.csv"
    edit_lines(
        demographics,
        lambda lines: [line.replace('"Female"', "") if line.startswith("1002,") else line for line in lines],
    )
    prepare_fails(params, CorpusError, f"{demographics}: actor 1002 has no Sex value; fill it in, or remove the file")


def test_actor_listed_twice_in_demographics_names_file_and_actor(damaged, no_extraction):
    root, params = damaged
    demographics = root / "VideoDemographics.csv"
    edit_lines(demographics, lambda lines: lines + [lines[1]])
    prepare_fails(params, CorpusError, f"{demographics}: actor 1001 has 2 rows; each ActorID must appear once")


# ================================================================================================ attributes


def test_clip_missing_from_attributes_names_file_and_clip(damaged, no_extraction):
    root, params = damaged
    attributes = root / "attributes.csv"
    edit_lines(attributes, lambda lines: [line for line in lines if not line.startswith(CLIP)])
    prepare_fails(params, CorpusError, f"{attributes}: no row for clip {CLIP}")


def test_attribute_out_of_range_names_file_column_and_row(damaged, no_extraction):
    root, params = damaged
    attributes = root / "attributes.csv"

    def valence_7_5_in_row_2(lines):
        cells = lines[3].split(",")  # FileName, arousal, valence, dominance
        return lines[:3] + [",".join([*cells[:2], "7.5", cells[3]])] + lines[4:]

    edit_lines(attributes, valence_7_5_in_row_2)
    prepare_fails(
        params, CorpusError, f"{attributes}: column 'valence', row 2 \\(line 4\\): 7.5 is not a number in \\[-1, 1\\]"
    )


# ================================================================================================ listings


def test_malformed_clip_name_names_the_file(damaged, no_extraction):
    root, params = damaged
    odd = root / "AudioWAV" / "1001_XYZ_ANG_XX.wav"
    odd.write_bytes(wav_of(root).read_bytes())
    prepare_fails(params, CorpusError, f"{odd}: '1001_XYZ_ANG_XX' is not a CREMA-D clip name")


def test_face_csv_without_wav_is_recorded_and_keeps_the_face(damaged, capfd):
    root, params = damaged
    wav_of(root).unlink()
    store = prepare(params)  # on_error: raise; a missing file is not an unreadable one
    assert skipped_rows(store.root) == [[CLIP, "audio", "", "no audio file", "modality dropped"]]
    clip = store.meta.set_index("clip_id").loc[CLIP]
    assert not clip["has_audio"] and clip["has_visual"] and len(store.meta) == 88
    assert store.manifest["counts"]["modalities_dropped"] == {"audio": 1, "visual": 0}
    assert f"{CLIP} audio: modality dropped (no audio file)" in capfd.readouterr().err


def test_wav_without_face_csv_is_recorded_and_keeps_the_voice(damaged):
    root, params = damaged
    csv_of(root).unlink()
    store = prepare(params)
    assert skipped_rows(store.root) == [[CLIP, "visual", "", "no visual file", "modality dropped"]]
    clip = store.meta.set_index("clip_id").loc[CLIP]
    assert clip["has_audio"] and not clip["has_visual"]


def test_missing_file_with_skip_clip_drops_the_clip(damaged):
    root, params = damaged
    csv_of(root).unlink()
    params["data"]["on_error"] = "skip_clip"
    store = prepare(params)
    assert skipped_rows(store.root) == [[CLIP, "visual", "", "no visual file", "clip dropped"]]
    assert CLIP not in set(store.meta["clip_id"]) and store.manifest["counts"]["skipped"] == 1


def test_unreadable_voice_of_a_faceless_clip_drops_the_clip(damaged):
    root, params = damaged
    csv_of(root).unlink()
    wav_of(root).write_bytes(b"garbage")
    params["data"]["on_error"] = "skip"
    store = prepare(params)  # nothing is left of the clip: both rows say so
    rows = skipped_rows(store.root)
    assert [row[:2] + row[4:] for row in rows] == [[CLIP, "audio", "clip dropped"], [CLIP, "visual", "clip dropped"]]
    assert rows[0][3].startswith("not a readable audio file") and rows[1][3] == "no visual file"
    assert CLIP not in set(store.meta["clip_id"])
