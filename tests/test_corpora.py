"""The media corpus adapters, each on a tiny corpus written in the real layout (file names, CSV headers, label-file
lines, short WAVs; videos are placeholders since listing never opens them), and on CREMA-D's real metadata when
it is present (../shared/data/crema-d, beside the worktree; skipped otherwise)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_core.config import ConfigError, load_params
from mer_core.data.corpora import crema_d, emodb, iemocap_audio, msp_improv, ravdess
from mer_core.data.corpora.base import CorpusError
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.prepare import prepare
from mer_core.params.data import Data
from mer_core.report import corpus_human_reference, human_reference

ROOT = Path(__file__).resolve().parents[1]
REAL_CREMA_D = Path(__file__).resolve().parents[2] / "shared/data/crema-d"
real_crema_d = pytest.mark.skipif(
    not (REAL_CREMA_D / "summaryTable.csv").is_file(), reason="CREMA-D's real metadata (shared/data/crema-d) is absent"
)


def write_wav(path: Path, seconds: float = 0.2, rate: int = 16000, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def write_video(path: Path) -> Path:
    """A named placeholder: listing checks names, it never opens a video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00placeholder")
    return path


# ================================================================================================ CREMA-D

DEMOGRAPHICS = (
    '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n'
    '1002,21,"Female","Caucasian","Not Hispanic"\n'
)
VOTES_HEADER = (
    '"","A","D","F","H","N","S","fileName","numResponses","agreement","emoVote","meanEmoResp",'
    '"meanAngerResp","meanDisgustResp","meanFearResp","meanHappyResp","meanNeutralResp","meanSadResp",'
    '"medianEmoResp","meanEmoRespNorm","meanAngerRespNorm","meanDisgustRespNorm","meanFearRespNorm",'
    '"meanHappyRespNorm","meanNeutralRespNorm","meanSadRespNorm","medianEmoRespNorm"'
)
STEMS = ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1002_DFA_NEU_XX")


def votes_row(index: int, counts: list[int], name: str) -> str:
    """One tabulatedVotes.csv row in the real format (the trailing means are not read: placeholders)."""
    n = sum(counts)
    letters = [letter for letter, c in zip("ADFHNS", counts) if c == max(counts)]
    return f'"{index}",{",".join(map(str, counts))},"{name}",{n},{max(counts) / n},"{":".join(letters)}",' + ",".join(
        ["50"] + ["-1"] * 6 + ["50", "50"] + ["-1"] * 6 + ["50"]
    )


def crema_corpus(root: Path, stems=STEMS, flv=True, wav=True, votes: dict | None = None) -> Path:
    """CREMA-D's repository layout: AudioWAV, VideoFlash, VideoDemographics.csv at the root and the ratings in
    processedResults/. `votes`: {presentation digit: {stem: [A, D, F, H, N, S]}}."""
    for stem in stems:
        if wav:
            write_wav(root / "AudioWAV" / f"{stem}.wav", 0.1)
        if flv:
            write_video(root / "VideoFlash" / f"{stem}.flv")
    (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    if votes is not None:
        lines = [VOTES_HEADER]
        for digit, table in votes.items():
            lines += [votes_row(digit * 100000 + k + 1, counts, stem) for k, (stem, counts) in enumerate(table.items())]
        (root / "processedResults").mkdir(exist_ok=True)
        (root / "processedResults" / "tabulatedVotes.csv").write_text("\n".join(lines) + "\n")
    return root


def test_crema_d_lists_wavs_and_flvs_with_demographics(tmp_path):
    root = crema_corpus(tmp_path / "crema")
    clips = crema_d.list_clips(root, {"labels": "intended", "consensus_votes": "audiovisual"})
    assert clips["clip_id"].tolist() == sorted(STEMS)
    assert clips["label"].tolist() == ["anger", "happy", "neutral", "sad"]
    assert clips["speaker"].tolist() == ["1001", "1001", "1002", "1002"]
    assert clips["gender"].tolist() == ["Male", "Male", "Female", "Female"] and clips["age"].tolist() == [
        51,
        51,
        21,
        21,
    ]
    assert clips["audio_path"].tolist() == [str(root / "AudioWAV" / f"{c}.wav") for c in clips["clip_id"]]
    assert clips["visual_path"].tolist() == [str(root / "VideoFlash" / f"{c}.flv") for c in clips["clip_id"]]
    assert clips.attrs["notes"] == [] and "intended" not in clips


def test_crema_d_prefers_openface_csvs_and_says_so(tmp_path):
    root = crema_corpus(tmp_path / "crema")
    (root / "OpenFace").mkdir()
    (root / "OpenFace" / "1001_DFA_ANG_XX.csv").write_text("frame, face_id, timestamp, confidence, success\n")
    clips = crema_d.list_clips(root)
    assert clips["visual_path"].iloc[0] == str(root / "OpenFace" / "1001_DFA_ANG_XX.csv")
    assert clips["visual_path"].iloc[1:].isna().all()  # no CSV: no face, even though the FLV exists
    assert clips["audio_path"].notna().all()
    assert clips.attrs["notes"] == [
        f"visual: OpenFace CSVs from {root / 'OpenFace'} (preferred over {root / 'VideoFlash'}/*.flv)"
    ]


def test_crema_d_clip_with_video_only_has_no_audio(tmp_path):
    root = crema_corpus(tmp_path / "crema", stems=STEMS[:2])
    write_video(root / "VideoFlash" / "1002_TIE_SAD_LO.flv")
    clips = crema_d.list_clips(root).set_index("clip_id")
    assert pd.isna(clips.loc["1002_TIE_SAD_LO", "audio_path"])
    assert clips.loc["1002_TIE_SAD_LO", "visual_path"] == str(root / "VideoFlash" / "1002_TIE_SAD_LO.flv")
    only_video = crema_corpus(tmp_path / "video_only", wav=False)
    assert crema_d.list_clips(only_video)["audio_path"].isna().all()


VOTES = {
    3: {
        "1001_DFA_ANG_XX": [6, 1, 0, 0, 2, 0],  # 6 of 9: anger
        "1001_IEO_HAP_HI": [0, 0, 0, 4, 4, 0],  # tie: no consensus
        "1002_TIE_SAD_LO": [0, 0, 3, 0, 3, 4],  # plurality 4 of 10, not more than half: none
        "1002_DFA_NEU_XX": [0, 0, 0, 0, 2, 8],
    },  # 8 of 10: sad (not the intended neutral)
    1: {"1001_DFA_ANG_XX": [1, 0, 0, 0, 9, 0], "1001_IEO_HAP_HI": [0, 0, 0, 9, 1, 0]},
}


def test_crema_d_consensus_labels_drop_and_count(tmp_path):
    root = crema_corpus(tmp_path / "crema", votes=VOTES)
    clips = crema_d.list_clips(root, {"labels": "consensus", "consensus_votes": "audiovisual"})
    assert clips["clip_id"].tolist() == ["1001_DFA_ANG_XX", "1002_DFA_NEU_XX"]
    assert clips["label"].tolist() == ["anger", "sad"] and clips["intended"].tolist() == ["anger", "neutral"]
    assert clips["gender"].tolist() == ["Male", "Female"]
    path = root / "processedResults" / "tabulatedVotes.csv"
    assert clips.attrs["notes"] == [
        f"labels: consensus of the audiovisual ratings in {path}: dropped 2 clips without "
        f"a majority label and 0 without ratings; 2 kept"
    ]
    audio = crema_d.list_clips(root, {"labels": "consensus", "consensus_votes": "audio"})
    assert audio["label"].tolist() == ["neutral", "happy"]  # the voice-only rows (ids 1xxxxx)
    assert "2 without ratings" in audio.attrs["notes"][0]


def test_crema_d_consensus_labels_of_the_rows(tmp_path):
    path = crema_corpus(tmp_path / "crema", votes=VOTES) / "processedResults" / "tabulatedVotes.csv"
    labels = crema_d.consensus_labels(path, "audiovisual")
    assert labels.to_dict() == {
        "1001_DFA_ANG_XX": "anger",
        "1001_IEO_HAP_HI": None,
        "1002_TIE_SAD_LO": None,
        "1002_DFA_NEU_XX": "sad",
    }
    with pytest.raises(CorpusError, match=r"no visual ratings \(rows whose id is 2xxxxx\)"):
        crema_d.consensus_labels(path, "visual")


def test_crema_d_metadata_at_the_root_or_in_processed_results(tmp_path):
    root = crema_corpus(tmp_path / "crema", votes=VOTES)
    assert crema_d.metadata_file(root, "tabulatedVotes.csv") == root / "processedResults" / "tabulatedVotes.csv"
    assert crema_d.metadata_file(root, "VideoDemographics.csv") == root / "VideoDemographics.csv"
    assert crema_d.metadata_file(root, "summaryTable.csv") is None
    (root / "processedResults" / "tabulatedVotes.csv").rename(root / "tabulatedVotes.csv")
    clips = crema_d.list_clips(root, {"labels": "consensus", "consensus_votes": "audiovisual"})
    assert len(clips) == 2


def test_crema_d_consensus_errors_name_the_file_or_key(tmp_path):
    root = crema_corpus(tmp_path / "crema")
    consensus = {"labels": "consensus", "consensus_votes": "audiovisual"}
    with pytest.raises(CorpusError) as info:
        crema_d.list_clips(root, consensus)
    assert str(root / "processedResults" / "tabulatedVotes.csv") in str(info.value)
    assert "data.crema_d.labels: consensus needs it" in str(info.value)
    (root / "tabulatedVotes.csv").write_text('"","A","D","F","H","N","fileName"\n"300001",1,0,0,0,0,"x"\n')
    with pytest.raises(CorpusError, match=r"tabulatedVotes.csv: missing column 'S'"):
        crema_d.list_clips(root, consensus)
    (root / "tabulatedVotes.csv").write_text(
        VOTES_HEADER + "\n" + votes_row(300001, [1, 0, 0, 0, 0, 0], "nobody") + "\n"
    )
    with pytest.raises(CorpusError, match="no listed clip has a audiovisual consensus label"):
        crema_d.list_clips(root, consensus)
    rows = [votes_row(300001, [5, 0, 0, 0, 0, 0], STEMS[0]), votes_row(300002, [5, 0, 0, 0, 0, 0], STEMS[0])]
    (root / "tabulatedVotes.csv").write_text("\n".join([VOTES_HEADER, *rows]) + "\n")
    with pytest.raises(CorpusError, match="'1001_DFA_ANG_XX' has two rows of audiovisual ratings"):
        crema_d.list_clips(root, consensus)


def test_crema_d_vote_table_errors_name_the_file(tmp_path):
    path = tmp_path / "tabulatedVotes.csv"
    path.write_text(
        VOTES_HEADER + "\n" + votes_row(300001, [5, 0, 0, 0, 0, 0], STEMS[0]).replace('"300001"', '"x1"') + "\n"
    )
    with pytest.raises(CorpusError, match=r"tabulatedVotes.csv: row 1 has no numeric id in the first column"):
        crema_d.consensus_labels(path, "audiovisual")
    path.write_text(VOTES_HEADER + "\n" + votes_row(300001, [5, -1, 0, 0, 0, 0], STEMS[0]) + "\n")
    with pytest.raises(CorpusError, match="vote counts must be non-negative numbers"):
        crema_d.consensus_labels(path, "audiovisual")
    path.write_bytes(b'"A","B"\n1,2\n1,2,3,4\n')
    with pytest.raises(CorpusError, match="tabulatedVotes.csv: not a readable CSV"):
        crema_d.consensus_labels(path, "audiovisual")


def test_crema_d_bad_names_and_demographics_name_the_file(tmp_path):
    root = crema_corpus(tmp_path / "crema")
    bad = write_video(root / "VideoFlash" / "1001_DFA_ANGRY_XX.flv")
    with pytest.raises(CorpusError, match=str(bad)):
        crema_d.list_clips(root)
    bad.unlink()
    (root / "VideoDemographics.csv").write_text('"ActorID","Age"\n1001,51\n')
    with pytest.raises(CorpusError, match=r"VideoDemographics.csv: missing column 'Sex'"):
        crema_d.list_clips(root)
    with pytest.raises(CorpusError, match="nor VideoFlash/"):
        crema_d.list_clips(tmp_path / "nowhere")


SUMMARY_HEADER = '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"'


def test_human_recognition_strict_match(tmp_path):
    rows = [
        ("1001_DFA_ANG_XX", "A", "A", "A"),
        ("1001_IEO_ANG_HI", "N", "A:N", "A"),
        ("1002_DFA_SAD_XX", "S", "N", "N"),
        ("1002_TIE_HAP_XX", "N", "H", "H"),
    ]
    lines = [SUMMARY_HEADER] + [
        f'"{i}","{name}","{a}","60","{v}","70","{av}","65"' for i, (name, a, v, av) in enumerate(rows, 1)
    ]
    path = tmp_path / "summaryTable.csv"
    path.write_text("\n".join(lines) + "\n")
    rates = crema_d.human_recognition(path)
    assert rates.index.tolist() == ["a", "v", "av"]
    assert rates.loc["a", "wa"] == pytest.approx(2 / 4) and rates.loc["v", "wa"] == pytest.approx(2 / 4)
    assert rates.loc["av", "wa"] == pytest.approx(3 / 4)
    assert rates.loc["v", "recall_anger"] == 0.5  # the tie A:N is not a match
    assert rates.loc["a", "ua"] == pytest.approx(np.mean([0.5, 1.0, 0.0]))  # anger, sad, happy
    assert "recall_fear" not in rates  # no clip of the class
    assert (rates["clips"] == 4).all()
    table = human_reference(2, summary_table=path)
    assert table.iloc[0].tolist() == ["WA 0.50 / UA 0.50", "WA 0.50 / UA 0.50", "WA 0.75 / UA 0.67"]
    assert table.index[0] == "human perception, CREMA-D summaryTable.csv (reference)"
    path.write_text(SUMMARY_HEADER + '\n"1","1001_DFA_XXX_XX","A","1","A","1","A","1"\n')
    with pytest.raises(CorpusError, match="summaryTable.csv: '1001_DFA_XXX_XX' is not a CREMA-D clip name"):
        crema_d.human_recognition(path)
    with pytest.raises(CorpusError, match="absent.csv: CREMA-D summaryTable.csv not found"):
        crema_d.human_recognition(tmp_path / "absent.csv")


def test_human_reference_without_the_file_is_unchanged():
    assert human_reference().iloc[0].tolist() == ["WA 0.416 / UA 0.459", "WA 0.663 / UA 0.691", "WA 0.722 / UA 0.749"]


def test_the_analysis_reference_row_follows_the_corpus(tmp_path):
    constants = human_reference().iloc[0].tolist()
    assert corpus_human_reference({"corpus": "builtin", "root": str(tmp_path)}).iloc[0].tolist() == constants
    assert corpus_human_reference({"corpus": "crema_d", "root": str(tmp_path)}).iloc[0].tolist() == constants
    (tmp_path / "processedResults").mkdir()
    (tmp_path / "processedResults" / "summaryTable.csv").write_text(
        SUMMARY_HEADER + '\n"1","1001_DFA_ANG_XX","A","60","N","70","A","65"\n'
    )
    measured = corpus_human_reference({"corpus": "crema_d", "root": str(tmp_path)}, precision=2)
    assert measured.iloc[0].tolist() == ["WA 1.00 / UA 1.00", "WA 0.00 / UA 0.00", "WA 1.00 / UA 1.00"]
    assert corpus_human_reference({"corpus": "emodb", "root": str(tmp_path)}) is None


@real_crema_d
def test_human_recognition_on_the_real_summary_table():
    rates = crema_d.human_recognition(REAL_CREMA_D / "summaryTable.csv")
    assert rates["wa"].round(3).tolist() == [0.416, 0.663, 0.722]  # docs/datasets.md: 41.6 / 66.3 / 72.2 %
    assert (rates["clips"] == 7442).all()
    assert rates.loc["v", "recall_happy"] > 0.95 and rates.loc["a", "recall_happy"] < 0.3  # the face shows joy
    assert rates["ua"].tolist() == pytest.approx([0.4295, 0.6688, 0.7278], abs=1e-4)


@real_crema_d
def test_consensus_labels_on_the_real_votes():
    labels = crema_d.consensus_labels(REAL_CREMA_D / "tabulatedVotes.csv", "audiovisual")
    assert len(labels) == 7442
    assert labels.value_counts().to_dict() == {
        "neutral": 1651,
        "happy": 1192,
        "anger": 902,
        "disgust": 894,
        "fear": 874,
        "sad": 400,
    }


# ================================================================================================ RAVDESS

RAVDESS = {"source": "av", "channel": "speech", "merge_calm": False}


def ravdess_corpus(root: Path) -> Path:
    """Actor_01 and Actor_02 as the Zenodo zips unpack: full-AV and video-only mp4s, audio-only wavs (a second
    tree), speech and song."""
    names = ["01-01-01-01-01-01-01", "01-01-02-02-02-01-01", "01-01-08-01-01-02-02", "01-02-05-02-01-01-02"]
    for name in names:
        actor = name[-2:]
        write_video(root / "video" / f"Actor_{actor}" / f"{name}.mp4")
        write_video(root / "video" / f"Actor_{actor}" / f"02{name[2:]}.mp4")
    for name in names[:2] + ["01-01-07-02-01-01-02"]:  # the audio zip: one clip has no video, one no audio
        write_wav(root / "audio" / f"Actor_{name[-2:]}" / f"03{name[2:]}.wav", 0.1, 48000)
    return root


def test_ravdess_full_av(tmp_path):
    root = ravdess_corpus(tmp_path / "ravdess")
    clips = ravdess.list_clips(root, RAVDESS)
    assert clips["clip_id"].tolist() == ["01-01-01-01-01-01", "01-02-02-02-01-01", "01-08-01-01-02-02"]
    assert clips["label"].tolist() == ["neutral", "calm", "surprised"]
    assert clips["speaker"].tolist() == ["01", "01", "02"] and clips["gender"].tolist() == ["Male", "Male", "Female"]
    assert clips["intensity"].tolist() == ["normal", "strong", "normal"]
    assert clips["statement"].tolist() == ["01", "02", "01"] and clips["repetition"].tolist() == ["01", "01", "02"]
    mp4 = [str(root / "video" / f"Actor_{c[-2:]}" / f"01-{c}.mp4") for c in clips["clip_id"]]
    assert clips["audio_path"].tolist() == mp4 and clips["visual_path"].tolist() == mp4
    assert ravdess.classes(RAVDESS) == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_ravdess_separate_media_matched_on_six_fields(tmp_path):
    root = ravdess_corpus(tmp_path / "ravdess")
    clips = ravdess.list_clips(root, dict(RAVDESS, source="separate")).set_index("clip_id")
    assert clips.index.tolist() == ["01-01-01-01-01-01", "01-02-02-02-01-01", "01-07-02-01-01-02", "01-08-01-01-02-02"]
    row = clips.loc["01-01-01-01-01-01"]
    assert row["audio_path"] == str(root / "audio" / "Actor_01" / "03-01-01-01-01-01-01.wav")
    assert row["visual_path"] == str(root / "video" / "Actor_01" / "02-01-01-01-01-01-01.mp4")
    assert pd.isna(clips.loc["01-07-02-01-01-02", "visual_path"])  # audio only
    assert pd.isna(clips.loc["01-08-01-01-02-02", "audio_path"])  # video only
    assert clips.loc["01-07-02-01-01-02", "label"] == "disgust"
    assert (
        "4 clips, 1 without audio, 1 without video"
        in ravdess.list_clips(root, dict(RAVDESS, source="separate")).attrs["notes"][0]
    )


def test_ravdess_song_channel_and_merged_calm(tmp_path):
    root = ravdess_corpus(tmp_path / "ravdess")
    song = ravdess.list_clips(root, dict(RAVDESS, channel="song"))
    assert song["clip_id"].tolist() == ["02-05-02-01-01-02"] and song["label"].tolist() == ["angry"]
    merged = ravdess.list_clips(root, dict(RAVDESS, merge_calm=True))
    assert merged["label"].tolist() == ["neutral", "neutral", "surprised"]
    assert merged["emotion_code"].tolist() == ["01", "02", "08"]
    assert ravdess.classes(dict(RAVDESS, merge_calm=True)) == (
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    )
    assert ravdess.classes(dict(RAVDESS, channel="song", merge_calm=True)) == (
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
    )


@pytest.mark.parametrize(
    "stem, message",
    [
        ("01-01-01-01-01-01", "seven two-digit fields"),
        ("04-01-01-01-01-01-01", "modality '04' is not one of 01, 02, 03"),
        ("01-03-01-01-01-01-01", "vocal channel '03'"),
        ("01-01-09-01-01-01-01", "emotion '09'"),
        ("01-01-03-03-01-01-01", "intensity '03'"),
        ("01-01-03-01-03-01-01", "statement '03'"),
        ("01-01-03-01-01-03-01", "repetition '03'"),
        ("01-01-03-01-01-01-25", "actor '25'"),
        ("01-01-01-02-01-01-01", "neutral (emotion 01) has only normal intensity"),
        ("01-02-07-01-01-01-01", "song (channel 02) has no disgust"),
    ],
)
def test_ravdess_names_are_validated(stem, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ravdess.parse_name(stem)


def test_ravdess_file_errors_name_the_file(tmp_path):
    root = ravdess_corpus(tmp_path / "ravdess")
    bad = write_video(root / "video" / "Actor_01" / "01-01-09-01-01-01-01.mp4")
    with pytest.raises(CorpusError, match=f"{bad}: '01-01-09-01-01-01-01': emotion '09'"):
        ravdess.list_clips(root, RAVDESS)
    bad.unlink()
    wrong_ext = write_wav(root / "audio" / "Actor_01" / "01-01-03-01-01-01-01.wav", 0.05)
    with pytest.raises(CorpusError, match=r"modality 01 \(audio-visual\) files are .mp4, not .wav"):
        ravdess.list_clips(root, RAVDESS)
    wrong_ext.unlink()
    moved = write_video(root / "video" / "Actor_01" / "01-01-03-01-01-01-02.mp4")
    with pytest.raises(CorpusError, match="actor 02 in the name but the folder is Actor_01"):
        ravdess.list_clips(root, RAVDESS)
    moved.unlink()
    write_video(root / "copy" / "Actor_01" / "01-01-01-01-01-01-01.mp4")
    with pytest.raises(CorpusError, match="the same file name also at"):
        ravdess.list_clips(root, RAVDESS)
    speech_only = tmp_path / "speech_only"
    write_video(speech_only / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    with pytest.raises(CorpusError, match=r"no 01-02-\*.mp4 file under it \(data.ravdess.source: av, channel: song\)"):
        ravdess.list_clips(speech_only, dict(RAVDESS, channel="song"))
    with pytest.raises(CorpusError, match="folder not found"):
        ravdess.list_clips(tmp_path / "nowhere", RAVDESS)


# ================================================================================================ EmoDB


def emodb_corpus(root: Path, speakers=("03", "08"), emotions="WLEAFTN") -> Path:
    for speaker in speakers:
        for k, letter in enumerate(emotions):
            write_wav(root / "wav" / f"{speaker}{'a01' if k % 2 else 'b10'}{letter}{'ab'[k % 2]}.wav", 0.2)
    return root


def test_emodb_listing(tmp_path):
    root = emodb_corpus(tmp_path / "emodb")
    clips = emodb.list_clips(root)
    assert len(clips) == 14 and clips["clip_id"].iloc[0] == "03a01Ab"
    row = clips.set_index("clip_id").loc["08b10Wa"]
    assert (row["speaker"], row["label"], row["gender"], row["age"], row["text"], row["version"]) == (
        "08",
        "anger",
        "Female",
        34,
        "b10",
        "a",
    )
    assert sorted(clips["label"].unique()) == sorted(emodb.CLASSES)
    assert clips.groupby("speaker")["gender"].first().to_dict() == {"03": "Male", "08": "Female"}
    assert sum(g == "Male" for g, _ in emodb.SPEAKERS.values()) == 5  # 5 female, 5 male (docs/datasets.md)
    assert emodb.parse_name("16b03Tc") == {"speaker": "16", "text": "b03", "emotion": "T", "version": "c"}


@pytest.mark.parametrize("stem", ["03a01Xa", "04a01Fa", "03a08Fa", "03b11Fa", "03a01F", "03a01fa", "3a01Fa"])
def test_emodb_malformed_names(stem, tmp_path):
    with pytest.raises(ValueError, match="is not an EmoDB name"):
        emodb.parse_name(stem)
    bad = write_wav(tmp_path / "wav" / f"{stem}.wav", 0.05)
    with pytest.raises(CorpusError, match=str(bad)):
        emodb.list_clips(tmp_path)


def test_emodb_missing_or_empty_folder(tmp_path):
    with pytest.raises(CorpusError, match="wav: folder not found"):
        emodb.list_clips(tmp_path)
    (tmp_path / "wav").mkdir()
    with pytest.raises(CorpusError, match="wav: no .wav files"):
        emodb.list_clips(tmp_path)


# ================================================================================================ IEMOCAP

IEMOCAP = {"excited": "merge", "frustrated": "drop"}
EVALUATION_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def iemocap_corpus(root: Path, sessions=(1, 2), labels=("neu", "hap", "ang", "sad")) -> Path:
    """torchaudio's IEMOCAP layout: per session, one improvised dialogue whose two actors each say one utterance
    per label, the EmoEvaluation file in the release's format, and one extra utterance labelled xxx (no
    agreement, which torchaudio leaves out) and one fru and one exc."""
    for session in sessions:
        base = root / "IEMOCAP" / f"Session{session}"
        dialogue = f"Ses0{session}F_impro01"
        lines = [EVALUATION_HEADER]
        extra = [("F", "xxx"), ("M", "fru"), ("F", "exc")]
        items = [(g, label) for g in "FM" for label in labels] + extra
        for k, (gender, label) in enumerate(items):
            name = f"{dialogue}_{gender}{k:03d}"
            write_wav(base / "sentences" / "wav" / dialogue / f"{name}.wav", 0.2)
            lines.append(
                f"[{k:.4f} - {k + 0.9:.4f}]\t{name}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
                f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
            )
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (base / "dialog" / "EmoEvaluation" / f"{dialogue}.txt").write_text("".join(lines))
    return root


def test_iemocap_audio_listing(tmp_path):
    root = iemocap_corpus(tmp_path / "corpus")
    clips = iemocap_audio.list_clips(root, IEMOCAP)
    assert len(clips) == 2 * (8 + 1)  # per session: 8 utterances + the excited one merged; xxx and fru dropped
    row = clips.set_index("clip_id").loc["Ses01F_impro01_M006"]
    assert (row["speaker"], row["gender"], row["session"], row["label"], row["dialogue"]) == (
        "Ses01M",
        "Male",
        1,
        "angry",
        "improvised",
    )  # the speaking actor, not torchaudio's dialogue prefix
    assert row["audio_path"] == str(root / "IEMOCAP/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M006.wav")
    excited = clips.set_index("clip_id").loc["Ses02F_impro01_F010"]
    assert (excited["label"], excited["original_label"]) == ("happy", "excited")
    assert sorted(clips["speaker"].unique()) == ["Ses01F", "Ses01M", "Ses02F", "Ses02M"]
    assert clips.attrs["notes"] == ["sessions 1, 2: 18 utterances; dropped 2 frustrated"]


def test_iemocap_audio_class_options(tmp_path):
    root = iemocap_corpus(tmp_path / "corpus", sessions=(3,))
    kept = iemocap_audio.list_clips(root, {"excited": "keep", "frustrated": "keep"})
    assert sorted(kept["label"].value_counts().items()) == [
        ("angry", 2),
        ("excited", 1),
        ("frustrated", 1),
        ("happy", 2),
        ("neutral", 2),
        ("sad", 2),
    ]
    dropped = iemocap_audio.list_clips(root, {"excited": "drop", "frustrated": "drop"})
    assert len(dropped) == 8 and "dropped 1 excited; dropped 1 frustrated" in dropped.attrs["notes"][0]
    assert iemocap_audio.classes(IEMOCAP) == ("happy", "angry", "sad", "neutral")
    assert iemocap_audio.classes({"excited": "keep", "frustrated": "keep"})[-2:] == ("excited", "frustrated")
    assert iemocap_audio.parse_name("Ses05M_script02_2_F014") == {
        "session": 5,
        "speaker": "Ses05F",
        "gender": "Female",
        "dialogue": "scripted",
    }
    with pytest.raises(ValueError, match="not an IEMOCAP utterance name"):
        iemocap_audio.parse_name("Ses06F_impro01_F000")


def test_iemocap_audio_under_a_folder_named_session(tmp_path):
    root = iemocap_corpus(tmp_path / "Sessions" / "corpus", sessions=(1,))
    with pytest.raises(CorpusError, match="cuts paths at the first 'Session' in them"):
        iemocap_audio.list_clips(root, IEMOCAP)


def test_iemocap_audio_missing_corpus(tmp_path):
    with pytest.raises(CorpusError, match=r"IEMOCAP/Session1\.\.5: not found .*rename or link IEMOCAP_full_release"):
        iemocap_audio.list_clips(tmp_path, IEMOCAP)
    (tmp_path / "IEMOCAP" / "Session1" / "sentences" / "wav").mkdir(parents=True)
    (tmp_path / "IEMOCAP" / "Session1" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no utterance with a wav"):
        iemocap_audio.list_clips(tmp_path, IEMOCAP)


# ================================================================================================ MSP-IMPROV

MSP = {"no_consensus": "drop"}
TURNS = [  # (name, category, A, V, D, N)
    ("S01A-F01-S-FM01", "A", 4.0, 1.5, 3.5, 3.0),
    ("S01A-M01-P-FM02", "N", 2.0, 3.0, 3.0, 2.5),
    ("S02H-F02-R-MF01", "H", 2.5, 4.5, 3.0, 4.0),
    ("S02S-M02-T-MF03", "S", 3.0, 2.0, 2.0, 3.5),
    ("S03N-F02-P-MF04", "O", 3.0, 3.0, 3.0, 3.0),
    ("S03N-M01-P-FM05", "X", 3.5, 3.0, 3.0, 3.0),
]


def msp_corpus(root: Path, turns=TURNS, label_name: str = "Evalution.txt", video: bool = True) -> Path:
    """The release's layout: Audio/session<k>/<sentence>/<scenario>/MSP-IMPROV-*.wav, the same under Video/ with
    .avi, and the evaluation file with UTD- names, a summary line per turn, rater lines and blank lines."""
    lines = []
    for name, category, a, v, d, n in turns:
        parts = name.split("-")
        session, folder = int(parts[1][1:]), Path(parts[0], parts[2])
        write_wav(root / "Audio" / f"session{session}" / folder / f"MSP-IMPROV-{name}.wav", 0.2)
        if video:
            write_video(root / "Video" / f"session{session}" / folder / f"MSP-IMPROV-{name}.avi")
        lines += [
            f"UTD-IMPROV-{name}.avi; {category}; A:{a:.6f}; V:{v:.6f}; D:{d:.6f}; N:{n:.6f};",
            "p1; Angry; Frustrated; A:4; V:2; D:3; N:3;",
            "p2; Neutral; ; A:3; V:3; D:3; N:3;",
            "",
        ]
    (root / label_name).write_text("\n".join(lines) + "\n")
    return root


def test_msp_improv_listing(tmp_path):
    root = msp_corpus(tmp_path / "msp")
    clips = msp_improv.list_clips(root, MSP).set_index("clip_id")
    assert clips.index.tolist() == sorted(f"MSP-IMPROV-{t[0]}" for t in TURNS[:4])
    row = clips.loc["MSP-IMPROV-S01A-F01-S-FM01"]
    assert (row["label"], row["speaker"], row["gender"], row["session"], row["target"], row["scenario"]) == (
        "angry",
        "F01",
        "Female",
        1,
        "angry",
        "S",
    )
    assert (row["arousal"], row["valence"], row["dominance"], row["naturalness"]) == (2.0, 1.5, 3.5, 3.0)  # 6 - 4
    assert row["audio_path"] == str(root / "Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav")
    assert row["visual_path"] == str(root / "Video/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.avi")
    assert clips["label"].to_dict()["MSP-IMPROV-S02S-M02-T-MF03"] == "sad"
    assert clips.attrs["notes"] == [
        "Evalution.txt: 6 rated turns; 4 kept, 2 dropped without a category of the four "
        "(O, X), 0 dropped without media; 0 media turns unrated"
    ]
    other = msp_improv.list_clips(root, {"no_consensus": "other"})
    assert len(other) == 6 and other["label"].value_counts()["other"] == 2
    assert msp_improv.classes({"no_consensus": "other"}) == ("neutral", "happy", "angry", "sad", "other")


def test_msp_improv_audio_only_media_and_other_spelling(tmp_path):
    root = msp_corpus(tmp_path / "msp", label_name="Evaluation.txt", video=False)
    clips = msp_improv.list_clips(root, MSP)
    assert clips["visual_path"].isna().all() and clips["audio_path"].notna().all()
    (root / "Audio" / "session1" / "S01A" / "S" / "MSP-IMPROV-S01A-F01-S-FM01.wav").unlink()
    write_wav(root / "Audio" / "session9" / "MSP-IMPROV-S09A-F03-R-FM01.wav", 0.1)  # media without a rating
    clips = msp_improv.list_clips(root, MSP)
    assert len(clips) == 3 and "1 dropped without media; 1 media turns unrated" in clips.attrs["notes"][0]


def summary(name="S01A-F01-S-FM01", rest="A; A:4.0; V:1.5; D:3.5; N:3.0;") -> str:
    return f"UTD-IMPROV-{name}.avi; {rest}"


@pytest.mark.parametrize(
    "line, message",
    [
        (summary(rest="A; A:4.0; V:1.5;"), "expected '<turn>.avi; <category>; A:<x>"),
        (summary(name="S01A-F07-S-FM01"), "'UTD-IMPROV-S01A-F07-S-FM01' is not an MSP-IMPROV turn name"),
        (summary(rest="A; A:4.0; V:1.5; N:3.0; Q:1;"), r"unknown attribute 'Q:1' \(A, V, D, N\)"),
        (summary(rest="A; A:4.0; V:high; D:3.5;"), "'V:high' is not a <key>:<number> pair"),
        (summary(rest="A; A:4.0; V:1.5; N:3.0; N:2.0;"), r"attribute D missing"),
        (summary(rest="A; A:6.5; V:1.5; D:3.5;"), "A:6.5 is outside the rating scale 1-5"),
        (summary(rest="Z; A:4.0; V:1.5; D:3.5;"), "category 'Z' is not one of A, H, S, N, O, X"),
    ],
)
def test_msp_improv_malformed_summary_names_file_and_line(tmp_path, line, message):
    root = msp_corpus(tmp_path / "msp", turns=TURNS[:1])
    path = root / "Evalution.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(CorpusError, match=f"{path}:5: {message}"):
        msp_improv.list_clips(root, MSP)


def test_msp_improv_file_errors(tmp_path):
    with pytest.raises(CorpusError, match="Evalution.txt: missing \\(nor Evaluation.txt\\)"):
        msp_improv.list_clips(msp_corpus(tmp_path / "a", label_name="labels.txt"), MSP)
    root = msp_corpus(tmp_path / "b", turns=TURNS[:1])
    path = root / "Evalution.txt"
    path.write_text(path.read_text() + summary() + "\n")
    with pytest.raises(CorpusError, match=f"{path}:5: MSP-IMPROV-S01A-F01-S-FM01 already rated at line 1"):
        msp_improv.list_clips(root, MSP)
    path.write_text("p1; Angry; A:4;\n")
    with pytest.raises(CorpusError, match="no summary line"):
        msp_improv.list_clips(root, MSP)
    root = msp_corpus(tmp_path / "c", turns=TURNS[:1])
    bad = write_wav(root / "Audio" / "MSP-IMPROV-S01B-F01-S-FM01.wav", 0.05)
    with pytest.raises(CorpusError, match=f"{bad}: 'MSP-IMPROV-S01B-F01-S-FM01' is not an MSP-IMPROV turn name"):
        msp_improv.list_clips(root, MSP)
    bad.unlink()
    write_wav(root / "copy" / "MSP-IMPROV-S01A-F01-S-FM01.wav", 0.05)
    with pytest.raises(CorpusError, match="the same turn also at"):
        msp_improv.list_clips(root, MSP)
    with pytest.raises(CorpusError, match="none of its 1 rated turns has a MSP-IMPROV"):
        msp_improv.list_clips(msp_corpus(tmp_path / "d", turns=TURNS[4:5]), MSP)


# ================================================================================================ registry


def test_registry_entries_and_options_schemas():
    media = {name for name, corpus in CORPORA.items() if corpus.kind == "media"}
    assert media == {"builtin", "crema_d", "ravdess", "emodb", "iemocap_audio", "msp_improv"}
    assert CORPORA["emodb"].modalities == ("audio",) and CORPORA["iemocap_audio"].modalities == ("audio",)
    assert CORPORA["crema_d"].modalities == ("audio", "visual") and CORPORA["msp_improv"].modalities == (
        "audio",
        "visual",
    )
    with_options = {n for n, c in CORPORA.items() if c.options}
    assert with_options == {"crema_d", "ravdess", "iemocap_audio", "iemocap_mmin", "msp_improv", "cmu_mosei"}
    assert set(Data.model_fields) >= with_options  # each corpus with options has its params section data.<name>
    assert CORPORA["builtin"].options is False and CORPORA["builtin"].protocol is None
    assert CORPORA["ravdess"].protocol is None
    assert CORPORA["ravdess"].class_names({"ravdess": dict(RAVDESS, merge_calm=True)})[0] == "neutral"
    assert CORPORA["emodb"].class_names({}) == emodb.CLASSES


def test_params_file_options_validate_and_errors_name_the_key():
    params = load_params(ROOT / "params.yaml")
    assert params["data"]["crema_d"] == {"labels": "intended", "consensus_votes": "audiovisual"}
    assert params["data"]["ravdess"] == RAVDESS and params["data"]["iemocap_audio"] == IEMOCAP
    assert params["data"]["msp_improv"] == MSP and params["folds"]["protocol"] == "kfold"
    with pytest.raises(
        ConfigError,
        match=r"^data\.crema_d\.labels: got 'majority'; Input should be 'intended' or "
        r"'consensus'",
    ):
        load_params(ROOT / "params.yaml", {"data.crema_d.labels": "majority"})
    with pytest.raises(ConfigError, match=r"^data\.ravdess\.merge_calm: got 'yes'"):
        load_params(ROOT / "params.yaml", {"data.ravdess.merge_calm": "yes"})
    with pytest.raises(ConfigError, match=r"^folds\.protocol: got 'loso'; Input should be 'kfold' or 'standard'"):
        load_params(ROOT / "params.yaml", {"folds.protocol": "loso"})
    with pytest.raises(
        ConfigError,
        match=r"^data\.corpus: got 'iemocap'; not a registered corpus; allowed "
        r"values: builtin, crema_d",
    ):
        load_params(ROOT / "params.yaml", {"data.corpus": "iemocap"})


def test_clips_passes_options_and_checks_labels_against_classes(tmp_path):
    root = ravdess_corpus(tmp_path / "ravdess")
    data_cfg = {"root": str(root), "ravdess": dict(RAVDESS, source="separate")}
    with pytest.raises(CorpusError, match=r"data\.corpus ravdess at .* no clip of class 'happy'"):
        CORPORA["ravdess"].clips(data_cfg)
    builtin = crema_corpus(tmp_path / "crema", stems=[f"100{a}_DFA_{e}_XX" for a in (1, 2) for e in crema_d.EMOTIONS])
    clips = CORPORA["builtin"].clips({"root": str(builtin)})
    pd.testing.assert_frame_equal(clips, crema_d.list_clips(builtin))
    assert len(clips) == 12


# ================================================================================================ prepare


@pytest.fixture
def small_params(tmp_path) -> dict:
    params = load_params(ROOT / "params.yaml")
    params["features"]["corruptions"].update(audio_noises=[], visual_dropout=[])
    params["data"]["features_dir"] = str(tmp_path / "features")
    return params


def test_prepare_emodb_leave_one_speaker_out(tmp_path, small_params):
    root = emodb_corpus(tmp_path / "emodb", speakers=("03", "08", "09", "10"))
    params = copy.deepcopy(small_params)
    params["data"].update(corpus="emodb", root=str(root))
    params["folds"].update(protocol="standard", n_val_speakers=1)
    store = prepare(params)
    assert store.manifest["classes"] == list(emodb.CLASSES) and store.manifest["modalities"] == ["audio"]
    assert "notes" not in store.manifest and len(store.meta) == 28
    assert store.folds == [0, 1, 2, 3]
    tests = store.splits[store.splits.role == "test"].sort_values("fold")["speaker"].tolist()
    assert tests == ["03", "08", "09", "10"]  # fold k leaves the k-th speaker out
    assert store.splits.groupby("fold")["role"].value_counts().unstack().values.tolist() == [[1, 2, 1]] * 4
    assert set(store.meta["gender"]) == {"Male", "Female"}


def test_prepare_iemocap_audio_with_options_and_notes(tmp_path, small_params):
    root = iemocap_corpus(tmp_path / "corpus")
    params = copy.deepcopy(small_params)
    params["data"].update(corpus="iemocap_audio", root=str(root))
    params["data"]["iemocap_audio"].update(excited="drop")
    params["folds"].update(protocol="standard", n_val_speakers=1)
    store = prepare(params)
    assert store.manifest["classes"] == ["happy", "angry", "sad", "neutral"]
    assert store.manifest["notes"] == ["sessions 1, 2: 16 utterances; dropped 2 excited; dropped 2 frustrated"]
    assert len(store.meta) == 16 and store.sequences["audio"].dim == store.manifest["dims"]["audio"]
    fold0 = store.splits[store.splits.fold == 0].groupby("role")["speaker"].apply(sorted).to_dict()
    assert fold0["test"] == ["Ses01F", "Ses01M"] and len(fold0["val"]) == 1 and len(fold0["train"]) == 1
    assert set(store.meta["session"]) == {1, 2}
