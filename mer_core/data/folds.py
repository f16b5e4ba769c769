"""Speaker-independent folds with held-out validation speakers (scikit-learn group splits), or a corpus's own.

`folds.protocol` chooses how:
- `kfold` (`make_splits`): test speakers of each fold come from `StratifiedGroupKFold` (groups = speakers,
  stratified by gender where the corpus records it, so each fold holds both genders); validation speakers are
  drawn from the remaining speakers with `GroupShuffleSplit`.
- `standard` (`standard_splits`): the protocol the corpus's registry entry names (`mer_core.data.corpora.registry`):
  `SpeakerPartitions` (CREMA-D: VAVL's 5 partitions of 63/14/14 actors, docs/methods.md §5.4) or `LeaveOneGroupOut`
  (EmoDB: leave-one-speaker-out; IEMOCAP: leave-one-session-out; MSP-IMPROV: session-disjoint), drawn from
  `folds.seed`.
Epochs and hyper-parameters are selected on validation speakers only. Every protocol writes `splits.csv` by
speaker (fold, speaker, role) and checks that every class is in every training partition (`check_classes`), which
also checks the clip-level folds that a feature package brings (`splits.csv` by clip_id). A validation or test
partition may lack a class (a speaker who never recorded it: EmoDB's speaker 08 has no disgust clip, so no seed can
give leave-one-speaker-out a test partition with every class): its UA is then the mean recall over the classes it
holds (`mer_core.metrics`), and the store's manifest records which it lacks (`missing_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from mer_core.data.store import split_key


class FoldError(ValueError):
    """A fold cannot be built (too few speakers) or a partition lacks a class; the message says which."""


def make_splits(meta: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Return `splits.csv` rows (fold, speaker, role) for `meta` (columns speaker, label, optional gender)."""
    speakers = meta["speaker"].astype(str).to_numpy()
    n_speakers = len(np.unique(speakers))
    n_folds, n_val = cfg["n_folds"], cfg["n_val_speakers"]
    if n_speakers < n_folds:
        raise FoldError(f"folds.n_folds: {n_folds} folds need at least {n_folds} speakers; the corpus has {n_speakers}")
    if n_speakers - -(-n_speakers // n_folds) - n_val < 1:  # the largest test fold leaves a training speaker
        raise FoldError(
            f"folds.n_val_speakers: {n_val} leaves no training speaker ({n_speakers} speakers, {n_folds} folds)"
        )
    strata = meta["gender"].astype(str).to_numpy() if "gender" in meta else np.zeros(len(meta), dtype=int)
    outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=cfg["seed"])
    rows = []
    for fold, (rest, test) in enumerate(outer.split(speakers, strata, groups=speakers)):
        inner = GroupShuffleSplit(n_splits=1, test_size=n_val, random_state=cfg["seed"] + fold)
        train, val = next(inner.split(rest, groups=speakers[rest]))
        for role, index in (("train", rest[train]), ("val", rest[val]), ("test", test)):
            rows += [(fold, s, role) for s in sorted(set(speakers[index]))]
    splits = pd.DataFrame(rows, columns=["fold", "speaker", "role"])
    check_classes(meta, splits)
    return splits


@dataclass(frozen=True)
class SpeakerPartitions:
    """`n_partitions` partitions of the corpus's speakers into exactly `sizes` = (train, val, test) speakers.

    The speakers are put in one seeded, gender-balanced order (`balanced_order`) and partition k tests the k-th
    block of `test` speakers of it, so the test sets are disjoint; the validation speakers are then drawn, again
    gender-balanced, from the other speakers (seeded by the seed and k), and the rest train. `source` cites it.
    """

    sizes: tuple[int, int, int]
    n_partitions: int
    source: str

    def __post_init__(self):
        if self.n_partitions * self.sizes[2] > sum(self.sizes):
            raise ValueError(
                f"{self.n_partitions} disjoint test sets of {self.sizes[2]} need more than {sum(self.sizes)} speakers"
            )


@dataclass(frozen=True)
class LeaveOneGroupOut:
    """One fold per value of the meta column `group` (`speaker` or `session`), in sorted order, whose speakers
    are the test set. `validation`: `speakers`, `folds.n_val_speakers` speakers drawn from the other groups'
    (seeded by the seed and the fold), or `group`, the whole group that follows the test group in a seeded
    cyclic order of the groups (each group validates once). The other speakers train. `source` cites it."""

    group: str
    validation: str
    source: str

    def __post_init__(self):
        if self.validation not in ("speakers", "group"):
            raise ValueError(f"validation must be 'speakers' or 'group', got {self.validation!r}")


def draw_folds(
    meta: pd.DataFrame, cfg: dict, corpus: str, protocol: SpeakerPartitions | LeaveOneGroupOut | None
) -> pd.DataFrame:
    """`splits.csv` rows under `folds.protocol`: `make_splits` (kfold) or the corpus's own `protocol` (standard;
    None when `corpus` has none, which raises)."""
    if cfg["protocol"] == "kfold":
        return make_splits(meta, cfg)
    if protocol is None:
        raise FoldError(
            f"folds.protocol: standard: corpus {corpus!r} has no protocol of its own; allowed values "
            f"for it: kfold (speaker-independent folds)"
        )
    if isinstance(protocol, SpeakerPartitions):
        splits = speaker_partitions(meta, protocol, cfg["seed"], corpus)
    else:
        splits = leave_one_group_out(meta, protocol, cfg, corpus)
    check_classes(meta, splits, hint="change folds.seed, or use folds.protocol: kfold")
    return splits


def balanced_order(speakers: list[str], gender_of: dict[str, str], rng: np.random.Generator) -> list[str]:
    """`speakers` in a random order that spreads each gender evenly: the k-th of the n speakers of one gender
    (shuffled) sits at about (k + 0.5) / n of the way, so any run of consecutive speakers is gender-balanced.
    Speakers missing from `gender_of` form one more group."""
    groups: dict[str, list[str]] = {}
    for speaker in speakers:
        groups.setdefault(gender_of.get(speaker, ""), []).append(speaker)
    keyed = []
    for gender in sorted(groups):
        members = [groups[gender][i] for i in rng.permutation(len(groups[gender]))]
        keyed += [((k + 0.5) / len(members), rng.random(), s) for k, s in enumerate(members)]
    return [speaker for *_, speaker in sorted(keyed)]


def _genders(meta: pd.DataFrame) -> dict[str, str]:
    if "gender" not in meta:
        return {}
    return dict(zip(meta["speaker"].astype(str), meta["gender"].astype(str)))


def _rows(fold: int, roles: dict[str, list[str]]) -> list[tuple[int, str, str]]:
    return [(fold, s, role) for role in ("train", "val", "test") for s in sorted(roles[role])]


def speaker_partitions(meta: pd.DataFrame, protocol: SpeakerPartitions, seed: int, corpus: str) -> pd.DataFrame:
    """`splits.csv` rows of `protocol` (see `SpeakerPartitions`) drawn from `seed`."""
    speakers = sorted(meta["speaker"].astype(str).unique())
    n_train, n_val, n_test = protocol.sizes
    if len(speakers) != sum(protocol.sizes):
        raise FoldError(
            f"folds.protocol: standard for {corpus} draws {protocol.n_partitions} partitions of "
            f"{n_train}/{n_val}/{n_test} train/val/test speakers ({protocol.source}) and needs "
            f"{sum(protocol.sizes)} speakers; the corpus has {len(speakers)}; use folds.protocol: kfold"
        )
    gender_of = _genders(meta)
    order = balanced_order(speakers, gender_of, np.random.default_rng(seed))
    rows = []
    for fold in range(protocol.n_partitions):
        test = order[fold * n_test : (fold + 1) * n_test]
        rest = sorted(set(speakers) - set(test))
        val = balanced_order(rest, gender_of, np.random.default_rng([seed, fold]))[:n_val]
        rows += _rows(fold, {"train": sorted(set(rest) - set(val)), "val": val, "test": test})
    return pd.DataFrame(rows, columns=["fold", "speaker", "role"])


def leave_one_group_out(meta: pd.DataFrame, protocol: LeaveOneGroupOut, cfg: dict, corpus: str) -> pd.DataFrame:
    """`splits.csv` rows of `protocol` (see `LeaveOneGroupOut`); `cfg` is `folds` (seed, n_val_speakers)."""
    column = protocol.group
    if column not in meta:
        raise FoldError(
            f"folds.protocol: standard for {corpus} leaves one {column} out, but the corpus listing has "
            f"no {column!r} column"
        )
    pairs = pd.DataFrame({"speaker": meta["speaker"].astype(str), "group": meta[column]}).drop_duplicates()
    twice = pairs["speaker"].duplicated()
    if twice.any():
        speaker = pairs["speaker"][twice].iloc[0]
        raise FoldError(
            f"folds.protocol: standard for {corpus}: speaker {speaker!r} is in more than one {column} "
            f"({sorted(pairs.loc[pairs.speaker == speaker, 'group'].tolist())})"
        )
    groups = sorted(pairs["group"].unique())
    least = 3 if protocol.validation == "group" else 2
    if len(groups) < least:
        raise FoldError(
            f"folds.protocol: standard for {corpus} leaves one {column} out ({protocol.source}) and "
            f"needs at least {least} {column}s; the corpus has {len(groups)}; use folds.protocol: kfold"
        )
    members = {g: sorted(pairs.loc[pairs["group"] == g, "speaker"]) for g in groups}
    cycle = [groups[i] for i in np.random.default_rng(cfg["seed"]).permutation(len(groups))]
    next_in_cycle = {g: cycle[(i + 1) % len(cycle)] for i, g in enumerate(cycle)}
    rows = []
    for fold, group in enumerate(groups):
        rest = sorted(s for g in groups if g != group for s in members[g])
        if protocol.validation == "group":
            val = members[next_in_cycle[group]]
        else:
            n_val = cfg["n_val_speakers"]
            if len(rest) - n_val < 1:
                raise FoldError(
                    f"folds.n_val_speakers: {n_val} leaves no training speaker when {column} {group} is "
                    f"the test set ({len(rest)} other speakers)"
                )
            picked = np.random.default_rng([cfg["seed"], fold]).choice(len(rest), n_val, replace=False)
            val = [rest[i] for i in picked]
        rows += _rows(fold, {"train": sorted(set(rest) - set(val)), "val": val, "test": members[group]})
    return pd.DataFrame(rows, columns=["fold", "speaker", "role"])


def check_classes(
    meta: pd.DataFrame, splits: pd.DataFrame, hint: str = "change folds.n_folds / folds.n_val_speakers / folds.seed"
) -> dict[int, dict[str, list]]:
    """The classes each validation and test partition lacks, {fold: {role: [class, ...]}} (only the partitions that
    lack one); raise `FoldError` naming the fold, role and class when a *training* partition lacks one of the corpus's
    classes (a model must see every class it is tested on).

    `splits` assigns roles by speaker or by clip_id (`mer_core.data.store.split_key`); `hint` (speaker folds) says
    which params to change."""
    classes = sorted(meta["label"].unique())
    key = split_key(splits)
    lacking: dict[int, dict[str, list]] = {}
    for (fold, role), part in splits.groupby(["fold", "role"]):
        members = meta[meta[key].astype(str).isin(part[key].astype(str))]
        missing = [c for c in classes if c not in set(members["label"])]
        if not missing:
            continue
        if role != "train":
            lacking.setdefault(int(fold), {})[role] = missing
            continue
        if key == "speaker":
            raise FoldError(
                f"fold {fold}: class {missing[0]!r} missing from the {role} speakers {sorted(part['speaker'])}; {hint}"
            )
        raise FoldError(
            f"fold {fold}: class {missing[0]!r} missing from the {role} clips ({len(members)} clips of "
            f"speakers {sorted(members['speaker'].astype(str).unique())}); these folds come with the "
            f"corpus: check its fold lists"
        )
    return lacking
