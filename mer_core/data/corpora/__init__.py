"""Corpus adapters: each reads a corpus into the common form that `mer_core.data.prepare` consumes.

A corpus is one of two kinds (`Corpus.kind`):
- `media`: `list_clips(root) -> pandas.DataFrame` with one row per clip and the columns `clip_id, speaker,
  label` plus, per modality it offers, `<modality>_path` (None when that clip lacks it), and any extra
  metadata (gender, sentence, level, continuous attributes); `prepare` extracts the features (params
  `features`) and draws speaker-independent folds (params `folds`).
- `package`: `read_package(root, **options) -> FeaturePackage` (`mer_core.data.corpora.base`) with the features
  and the corpus's own folds already in the store's schema, `options` being the params section
  `data.<corpus name>` where there is one; `prepare` uses neither `features` nor `folds` params.
`modalities` names what a corpus offers, `classes` its label names (empty when an option chooses them: the
package then gives them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from mer_core.data.corpora import cmu_mosei, crema_d, iemocap_mmin
from mer_core.data.corpora.base import FeaturePackage


@dataclass(frozen=True)
class Corpus:
    """A registered corpus; exactly one of `list_clips` (media) and `read_package` (feature package) is set."""

    name: str
    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    description: str
    list_clips: Callable[[str], pd.DataFrame] | None = None
    read_package: Callable[..., FeaturePackage] | None = None

    def __post_init__(self):
        if (self.list_clips is None) == (self.read_package is None):
            raise ValueError(f"corpus {self.name!r}: set exactly one of list_clips (media) and read_package (package)")

    @property
    def kind(self) -> str:
        return "media" if self.list_clips is not None else "package"


CORPORA = {
    "builtin": Corpus(
        "builtin", ("audio", "visual"), crema_d.CLASSES,
        "the built-in synthetic corpus (mer_core.data.synthetic) in CREMA-D's layout, faces as OpenFace CSVs",
        list_clips=crema_d.list_clips,
    ),
    "iemocap_mmin": Corpus(
        "iemocap_mmin", tuple(iemocap_mmin.FEATURES), iemocap_mmin.CLASSES,
        "IEMOCAP in the MMIN authors' feature package: ComParE audio, Denseface faces, BERT-large text and the "
        "package's own folds (10)",
        read_package=iemocap_mmin.read_package,
    ),
    "cmu_mosei": Corpus(
        "cmu_mosei", ("audio", "visual", "text"), (),
        "CMU-MOSEI as CMU Multimodal SDK computational sequences: COVAREP audio, FACET 4.2 or OpenFace 2.0 faces, "
        "GloVe words, per-segment sentiment and six emotion intensities, the SDK's standard folds",
        read_package=cmu_mosei.read_package,
    ),
}
