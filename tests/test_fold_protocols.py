"""The corpora's own fold protocols (`folds.protocol: standard`): CREMA-D's 63/14/14 partitions (on the real 7,442
file names and 91 actors when CREMA-D's metadata is present), leave-one-speaker-out, leave-one-session-out and
session-disjoint partitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer_core.data.corpora import crema_d
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.folds import FoldError, LeaveOneGroupOut, SpeakerPartitions, balanced_order, draw_folds, make_splits

REAL_CREMA_D = Path(__file__).resolve().parents[2] / "shared/data/crema-d"
CFG = {"protocol": "standard", "n_folds": 4, "n_val_speakers": 2, "seed": 0}
CLASSES = ("anger", "happy", "sad")


def roles_of(splits: pd.DataFrame) -> dict[int, dict[str, set[str]]]:
    return {
        fold: {role: set(part.loc[part.role == role, "speaker"]) for role in ("train", "val", "test")}
        for fold, part in splits.groupby("fold")
    }


def assert_disjoint_and_complete(splits: pd.DataFrame, speakers: set[str]) -> None:
    for roles in roles_of(splits).values():
        assert roles["train"] | roles["val"] | roles["test"] == speakers
        assert sum(map(len, roles.values())) == len(speakers)  # each speaker has one role per fold


def speaker_meta(n_speakers: int, classes=CLASSES, **columns) -> pd.DataFrame:
    rows = [
        {
            "speaker": f"{s:02d}",
            "label": label,
            "gender": "Male" if s % 2 else "Female",
            **{k: v(s) for k, v in columns.items()},
        }
        for s in range(1, n_speakers + 1)
        for label in classes
    ]
    return pd.DataFrame(rows)


# ================================================================================================ draw_folds


def test_kfold_protocol_is_make_splits():
    meta = speaker_meta(12)
    cfg = dict(CFG, protocol="kfold")
    pd.testing.assert_frame_equal(draw_folds(meta, cfg, "crema_d", CORPORA["crema_d"].protocol), make_splits(meta, cfg))


def test_standard_without_a_protocol_names_the_key_and_allowed_values():
    with pytest.raises(
        FoldError,
        match=r"^folds\.protocol: standard: corpus 'ravdess' has no protocol of its own; "
        r"allowed values for it: kfold",
    ):
        draw_folds(speaker_meta(12), CFG, "ravdess", CORPORA["ravdess"].protocol)


def test_registry_protocols():
    assert CORPORA["crema_d"].protocol.sizes == (63, 14, 14) and CORPORA["crema_d"].protocol.n_partitions == 5
    assert (CORPORA["emodb"].protocol.group, CORPORA["emodb"].protocol.validation) == ("speaker", "speakers")
    assert (CORPORA["iemocap_audio"].protocol.group, CORPORA["iemocap_audio"].protocol.validation) == (
        "session",
        "speakers",
    )
    assert (CORPORA["msp_improv"].protocol.group, CORPORA["msp_improv"].protocol.validation) == ("session", "group")


# ================================================================================================ partitions

SMALL = SpeakerPartitions((6, 2, 2), 3, "a small test protocol")


def test_balanced_order_spreads_each_gender():
    speakers = [f"{s:02d}" for s in range(20)]
    gender_of = {s: "Male" if int(s) < 10 else "Female" for s in speakers}
    order = balanced_order(speakers, gender_of, np.random.default_rng(0))
    assert sorted(order) == speakers
    for k in range(0, 20, 2):  # each aligned pair holds one of each
        assert {gender_of[s] for s in order[k : k + 2]} == {"Male", "Female"}
    assert order != balanced_order(speakers, gender_of, np.random.default_rng(1))
    assert order == balanced_order(speakers, gender_of, np.random.default_rng(0))
    assert sorted(balanced_order(speakers, {}, np.random.default_rng(0))) == speakers


def test_speaker_partitions_sizes_disjoint_tests_and_seed():
    meta = speaker_meta(10)
    splits = draw_folds(meta, CFG, "tiny", SMALL)
    assert list(splits.columns) == ["fold", "speaker", "role"]
    assert_disjoint_and_complete(splits, set(meta["speaker"]))
    roles = roles_of(splits)
    assert sorted(roles) == [0, 1, 2]
    assert all((len(r["train"]), len(r["val"]), len(r["test"])) == (6, 2, 2) for r in roles.values())
    tests = [r["test"] for r in roles.values()]
    assert len(set().union(*tests)) == 6  # the three test sets are disjoint
    pd.testing.assert_frame_equal(splits, draw_folds(meta.sample(frac=1, random_state=3), CFG, "tiny", SMALL))
    assert not splits.equals(draw_folds(meta, dict(CFG, seed=1), "tiny", SMALL))


def test_speaker_partitions_need_the_exact_speaker_count():
    with pytest.raises(FoldError) as info:
        draw_folds(speaker_meta(12), CFG, "crema_d", CORPORA["crema_d"].protocol)
    assert str(info.value) == (
        "folds.protocol: standard for crema_d draws 5 partitions of 63/14/14 train/val/test "
        "speakers (VAVL's CREMA-D partitions, docs/methods.md §5.4) and needs 91 speakers; the "
        "corpus has 12; use folds.protocol: kfold"
    )
    with pytest.raises(ValueError, match="4 disjoint test sets of 3 need more than 10 speakers"):
        SpeakerPartitions((5, 2, 3), 4, "impossible")


def test_speaker_partitions_check_every_class_in_every_split():
    meta = speaker_meta(10)
    meta = meta[(meta.label != "sad") | (meta.speaker == "01")]  # one speaker alone has 'sad'
    with pytest.raises(
        FoldError,
        match=r"fold \d: class 'sad' missing from the (train|val|test) speakers .*; "
        r"change folds\.seed, or use folds\.protocol: kfold",
    ):
        draw_folds(meta, CFG, "tiny", SMALL)


def real_crema_d_meta() -> pd.DataFrame:
    names = pd.read_csv(REAL_CREMA_D / "SentenceFilenames.csv")["Filename"]
    demo = pd.read_csv(REAL_CREMA_D / "VideoDemographics.csv", dtype={"ActorID": str})
    parts = pd.DataFrame([crema_d.parse_name(n) for n in names])
    gender = dict(zip(demo["ActorID"], demo["Sex"]))
    return pd.DataFrame(
        {
            "clip_id": names,
            "speaker": parts["actor"],
            "label": parts["emotion"].map(crema_d.EMOTIONS),
            "gender": parts["actor"].map(gender),
        }
    )


@pytest.mark.skipif(
    not (REAL_CREMA_D / "SentenceFilenames.csv").is_file(),
    reason="CREMA-D's real metadata (shared/data/crema-d) is absent",
)
def test_crema_d_standard_partitions_on_the_real_file_names():
    meta = real_crema_d_meta()
    assert len(meta) == 7442 and meta["speaker"].nunique() == 91 and meta["gender"].notna().all()
    protocol = CORPORA["crema_d"].protocol
    splits = draw_folds(meta, CFG, "crema_d", protocol)  # checks every class in every split
    assert_disjoint_and_complete(splits, set(meta["speaker"]))
    roles = roles_of(splits)
    assert sorted(roles) == [0, 1, 2, 3, 4]
    assert all((len(r["train"]), len(r["val"]), len(r["test"])) == (63, 14, 14) for r in roles.values())
    assert len(set().union(*(r["test"] for r in roles.values()))) == 70  # disjoint test sets
    gender = dict(zip(meta["speaker"], meta["gender"]))
    for r in roles.values():  # 48 male / 43 female actors: each test and validation set is balanced
        for role in ("val", "test"):
            assert 6 <= sum(gender[s] == "Female" for s in r[role]) <= 8
    for fold, part in splits.groupby("fold"):
        for role in ("train", "val", "test"):
            labels = meta.loc[meta.speaker.isin(part.loc[part.role == role, "speaker"]), "label"]
            assert set(labels) == set(crema_d.CLASSES)
    pd.testing.assert_frame_equal(splits, draw_folds(meta, CFG, "crema_d", protocol))
    assert not splits.equals(draw_folds(meta, dict(CFG, seed=1), "crema_d", protocol))
    consensus = crema_d.consensus_labels(REAL_CREMA_D / "tabulatedVotes.csv", "audiovisual")
    relabelled = meta.assign(label=meta["clip_id"].map(consensus)).dropna(subset=["label"])
    draw_folds(relabelled, CFG, "crema_d", protocol)  # every consensus class in every split too


# ================================================================================================ leave one out


def test_leave_one_speaker_out_with_validation_speakers():
    meta = speaker_meta(10)
    protocol = CORPORA["emodb"].protocol
    splits = draw_folds(meta, CFG, "emodb", protocol)
    assert_disjoint_and_complete(splits, set(meta["speaker"]))
    roles = roles_of(splits)
    assert [sorted(roles[f]["test"]) for f in range(10)] == [[f"{s:02d}"] for s in range(1, 11)]
    assert all(len(r["val"]) == 2 and len(r["train"]) == 7 for r in roles.values())
    assert len({frozenset(r["val"]) for r in roles.values()}) > 1  # drawn per fold
    pd.testing.assert_frame_equal(splits, draw_folds(meta, CFG, "emodb", protocol))
    assert not splits.equals(draw_folds(meta, dict(CFG, seed=5), "emodb", protocol))
    with pytest.raises(
        FoldError,
        match=r"^folds\.n_val_speakers: 9 leaves no training speaker when speaker 01 is the "
        r"test set \(9 other speakers\)",
    ):
        draw_folds(meta, dict(CFG, n_val_speakers=9), "emodb", protocol)


def session_meta(n_sessions: int) -> pd.DataFrame:
    """Two speakers per session (`Ses01F`, `Ses01M`, ...), every class for each."""
    rows = [
        {"speaker": f"Ses{s:02d}{g}", "session": s, "gender": g, "label": label}
        for s in range(1, n_sessions + 1)
        for g in "FM"
        for label in CLASSES
    ]
    return pd.DataFrame(rows)


def test_leave_one_session_out_with_validation_speakers_from_training_sessions():
    meta = session_meta(5)
    splits = draw_folds(meta, dict(CFG, n_val_speakers=1), "iemocap_audio", CORPORA["iemocap_audio"].protocol)
    assert_disjoint_and_complete(splits, set(meta["speaker"]))
    for fold, roles in roles_of(splits).items():
        assert roles["test"] == {f"Ses{fold + 1:02d}F", f"Ses{fold + 1:02d}M"}
        assert len(roles["val"]) == 1 and len(roles["train"]) == 7
        assert not {s[:5] for s in roles["val"]} & {s[:5] for s in roles["test"]}  # validation from training sessions


def test_session_disjoint_partitions_validate_on_a_whole_session():
    meta = session_meta(6)
    protocol = CORPORA["msp_improv"].protocol
    splits = draw_folds(meta, CFG, "msp_improv", protocol)
    assert_disjoint_and_complete(splits, set(meta["speaker"]))
    session = dict(zip(meta["speaker"], meta["session"]))
    roles = roles_of(splits)
    tests = [{session[s] for s in r["test"]} for r in roles.values()]
    vals = [{session[s] for s in r["val"]} for r in roles.values()]
    assert tests == [{k} for k in range(1, 7)]  # fold k tests session k + 1
    assert all(len(v) == 1 and v != t for v, t in zip(vals, tests))
    assert sorted(next(iter(v)) for v in vals) == [1, 2, 3, 4, 5, 6]  # each session validates once
    assert all(len(r["train"]) == 8 for r in roles.values())  # 4 / 1 / 1 sessions
    pd.testing.assert_frame_equal(splits, draw_folds(meta, CFG, "msp_improv", protocol))
    assert any(not splits.equals(draw_folds(meta, dict(CFG, seed=seed), "msp_improv", protocol)) for seed in (1, 2))


def test_leave_one_group_out_errors():
    protocol = CORPORA["msp_improv"].protocol
    with pytest.raises(FoldError, match=r"needs at least 3 sessions; the corpus has 2; use folds\.protocol: kfold"):
        draw_folds(session_meta(2), CFG, "msp_improv", protocol)
    with pytest.raises(FoldError, match="leaves one session out, but the corpus listing has no 'session' column"):
        draw_folds(speaker_meta(6), CFG, "msp_improv", protocol)
    meta = session_meta(3)
    meta.loc[0, "session"] = 2  # Ses01F in sessions 1 and 2
    with pytest.raises(FoldError, match=r"speaker 'Ses01F' is in more than one session \(\[1, 2\]\)"):
        draw_folds(meta, CFG, "msp_improv", protocol)
    with pytest.raises(ValueError, match="validation must be 'speakers' or 'group'"):
        LeaveOneGroupOut("session", "sessions", "typo")
