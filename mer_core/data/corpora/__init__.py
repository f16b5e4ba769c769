"""Corpus adapters: each lists a corpus's clips in the common form that `mer_core.data.prepare` consumes.

An adapter is a function `list_clips(root) -> pandas.DataFrame` with one row per clip and the columns
`clip_id, speaker, label` plus, per modality it offers, `<modality>_path` (None when that clip lacks it),
and any extra metadata (gender, sentence, level, continuous attributes). `modalities` names what it offers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from mer_core.data.corpora import crema_d


@dataclass(frozen=True)
class Corpus:
    name: str
    list_clips: Callable[[str], pd.DataFrame]
    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    description: str


CORPORA = {
    "builtin": Corpus(
        "builtin", crema_d.list_clips, ("audio", "visual"), crema_d.CLASSES,
        "the built-in synthetic corpus (mer_core.data.synthetic) in CREMA-D's layout, faces as OpenFace CSVs",
    ),
}
