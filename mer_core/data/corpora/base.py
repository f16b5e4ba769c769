"""What the corpus adapters share: the error they raise and the form a feature package is read into.

A *media* corpus lists clips whose files `mer_core.data.prepare` extracts features from; a *feature package*
(e.g. IEMOCAP in the MMIN authors' package, docs/methods.md §1.1) already holds features and its own folds, and
its adapter returns them as a `FeaturePackage` in the feature store's schema (`mer_core.data.store`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pandas as pd

from mer_core.data.store import Sequences

ATTRIBUTES = ("arousal", "valence", "dominance")  # the dimensional attributes a media corpus's meta may hold


class CorpusError(FileNotFoundError):
    """The corpus folder or one of its required files is missing or malformed; the message names the path."""


@contextmanager
def open_hdf5(path: Path, hint: str):
    """The HDF5 file at `path`, open for reading; CorpusError naming it when it is missing (with `hint`: where
    it comes from) or not HDF5."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing; {hint}")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CorpusError(f"{path}: not a readable HDF5 file ({err})") from err
    with handle:
        yield handle


@dataclass(frozen=True)
class FeaturePackage:
    """A feature package read into the store's schema.

    meta: clip_id, speaker, label, has_<modality> and extra columns; splits: clip-level folds (fold, clip_id,
    role); sequences: per modality, in meta's clip order; frame_rates: frames/s, None where unknown;
    features: what each modality's features are (for the manifest); folds: where the folds come from;
    classes: the label names when the package chooses them (None: the registered corpus's); attributes: the
    regression targets, meta columns in order (the manifest's `attributes`); labels: how the labels were
    derived and what was dropped (the manifest's `labels`; empty: nothing to say).
    """

    meta: pd.DataFrame
    splits: pd.DataFrame
    sequences: dict[str, Sequences]
    frame_rates: dict[str, float | None]
    features: dict[str, dict]
    folds: dict
    classes: tuple[str, ...] | None = None
    attributes: tuple[str, ...] = ()
    labels: dict = field(default_factory=dict)

    def __post_init__(self):
        absent = [a for a in self.attributes if a not in self.meta.columns]
        if absent:
            raise ValueError(f"attributes {absent} are not columns of meta ({list(self.meta.columns)})")
        if self.classes is not None:
            unknown = sorted(set(self.meta["label"]) - set(self.classes))
            if unknown:
                raise ValueError(f"labels {unknown} are not among the classes {list(self.classes)}")
