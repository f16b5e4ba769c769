"""Speaker-independent folds with held-out validation speakers (scikit-learn group splits).

Test speakers of each fold come from `StratifiedGroupKFold` (groups = speakers, stratified by gender where
the corpus records it, so each fold holds both genders); validation speakers are drawn from the remaining
speakers with `GroupShuffleSplit`. Epochs and hyper-parameters are selected on validation speakers only.
`check_classes` also checks the clip-level folds that a feature package brings (`splits.csv` by clip_id).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from mer_core.config import Field, Section
from mer_core.data.store import split_key

FOLDS_SCHEMA = Section(
    {
        "n_folds": Field(int, low=2, high=100),
        "n_val_speakers": Field(int, low=1, high=100),
        "seed": Field(int, low=0),
    }
)


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
        raise FoldError(f"folds.n_val_speakers: {n_val} leaves no training speaker ({n_speakers} speakers, "
                        f"{n_folds} folds)")
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


def check_classes(meta: pd.DataFrame, splits: pd.DataFrame) -> None:
    """Raise `FoldError` naming the fold, role and class when a partition lacks one of the corpus's classes.

    `splits` assigns roles by speaker or by clip_id (`mer_core.data.store.split_key`)."""
    classes = sorted(meta["label"].unique())
    key = split_key(splits)
    for (fold, role), part in splits.groupby(["fold", "role"]):
        members = meta[meta[key].astype(str).isin(part[key].astype(str))]
        missing = [c for c in classes if c not in set(members["label"])]
        if not missing:
            continue
        if key == "speaker":
            raise FoldError(f"fold {fold}: class {missing[0]!r} missing from the {role} speakers "
                            f"{sorted(part['speaker'])}; change folds.n_folds / folds.n_val_speakers / folds.seed")
        raise FoldError(f"fold {fold}: class {missing[0]!r} missing from the {role} clips ({len(members)} clips of "
                        f"speakers {sorted(members['speaker'].astype(str).unique())}); these folds come with the "
                        f"corpus: check its fold lists")
