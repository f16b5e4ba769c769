"""What the corpus adapters share: the error they raise and the form a feature package is read into.

A *media* corpus lists clips whose files `mer_core.data.prepare` extracts features from; a *feature package*
(e.g. IEMOCAP in the MMIN authors' package, methods.md §1.1) already holds features and its own folds, and
its adapter returns them as a `FeaturePackage` in the feature store's schema (`mer_core.data.store`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mer_core.data.store import Sequences


class CorpusError(FileNotFoundError):
    """The corpus folder or one of its required files is missing or malformed; the message names the path."""


@dataclass(frozen=True)
class FeaturePackage:
    """A feature package read into the store's schema.

    meta: clip_id, speaker, label, has_<modality> and extra columns; splits: clip-level folds (fold, clip_id,
    role); sequences: per modality, in meta's clip order; frame_rates: frames/s, None where unknown;
    features: what each modality's features are (for the manifest); folds: where the folds come from.
    """

    meta: pd.DataFrame
    splits: pd.DataFrame
    sequences: dict[str, Sequences]
    frame_rates: dict[str, float | None]
    features: dict[str, dict]
    folds: dict
