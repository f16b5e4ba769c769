"""The registry of corpora (`CORPORA`): each adapter reads a corpus into the form `mer_core.data.prepare` consumes.

A corpus is one of two kinds (`Corpus.kind`):
- `media`: `list_clips(root[, options]) -> pandas.DataFrame` with one row per clip and the columns `clip_id,
  speaker, label` plus, per modality it offers, `<modality>_path` (None when that clip lacks it; a WAV or a video
  container for audio, an OpenFace CSV or a video for visual), and any extra metadata (gender, sentence, level,
  session, continuous attributes); `attrs["notes"]` (optional) says what the adapter chose or dropped,
  `attrs["sources"]` (optional, {modality: where}) where it looked for each modality's files. `prepare` extracts the
  features of the modalities some clip has (params `features`) and draws the folds (params `folds`).
- `package`: `read_package(root[, **options]) -> FeaturePackage` (`mer_core.data.corpora.base`) with the features
  and the corpus's own folds already in the store's schema; `prepare` uses neither `features` nor `folds` params.
`modalities` names what a corpus offers, `classes` its label names (`class_names(options)` where they depend on
the options). A corpus with `options` takes its params section `data.<name>` (`mer_core.params.data`) as `list_clips`'s
second argument (a package: as `read_package`'s keyword arguments); `protocol` is its own fold protocol
(`folds.protocol: standard`, `mer_core.data.folds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from mer_core.data.corpora import cmu_mosei, crema_d, emodb, iemocap_audio, iemocap_mmin, msp_improv, ravdess
from mer_core.data.corpora.base import CorpusError, FeaturePackage
from mer_core.data.folds import LeaveOneGroupOut, SpeakerPartitions


@dataclass(frozen=True)
class Corpus:
    """A registered corpus; exactly one of `list_clips` (media) and `read_package` (feature package) is set."""

    name: str
    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    description: str
    list_clips: Callable[..., pd.DataFrame] | None = None
    read_package: Callable[..., FeaturePackage] | None = None
    options: bool = False
    classes_for: Callable[[Mapping], tuple[str, ...]] | None = None
    protocol: SpeakerPartitions | LeaveOneGroupOut | None = None

    def __post_init__(self):
        if (self.list_clips is None) == (self.read_package is None):
            raise ValueError(f"corpus {self.name!r}: set exactly one of list_clips (media) and read_package (package)")

    @property
    def kind(self) -> str:
        return "media" if self.list_clips is not None else "package"

    def class_names(self, data_cfg: Mapping) -> tuple[str, ...]:
        """The label names under the params `data` (its section `data.<name>` when the classes depend on it)."""
        return self.classes_for(data_cfg[self.name]) if self.classes_for is not None else self.classes

    def clips(self, data_cfg: Mapping) -> pd.DataFrame:
        """`list_clips` of `data.root` with the options `data.<name>` (when the corpus has any), its labels
        checked against `class_names`: CorpusError when a clip has another label or a class has no clip."""
        root = data_cfg["root"]
        clips = self.list_clips(root, data_cfg[self.name]) if self.options else self.list_clips(root)
        classes = self.class_names(data_cfg)
        where = f"data.corpus {self.name} at {root}" + (
            f" with data.{self.name} = {dict(data_cfg[self.name])}" if self.options else ""
        )
        other = sorted(set(clips["label"]) - set(classes))
        if other:
            raise CorpusError(f"{where}: label {other[0]!r} is not one of the classes {', '.join(classes)}")
        empty = [c for c in classes if c not in set(clips["label"])]
        if empty:
            raise CorpusError(
                f"{where}: no clip of class {empty[0]!r}; every class of {', '.join(classes)} needs clips"
            )
        return clips


CORPORA = {
    "builtin": Corpus(
        "builtin",
        ("audio", "visual"),
        crema_d.CLASSES,
        "the built-in synthetic corpus (mer_core.data.synthetic) in CREMA-D's layout, faces as OpenFace CSVs",
        list_clips=crema_d.list_clips,
    ),
    "crema_d": Corpus(
        "crema_d",
        ("audio", "visual"),
        crema_d.CLASSES,
        "CREMA-D (91 actors, 6 emotions): AudioWAV/*.wav and VideoFlash/*.flv (or OpenFace/*.csv); intended or "
        "crowd-consensus labels",
        list_clips=crema_d.list_clips,
        options=True,
        protocol=SpeakerPartitions((63, 14, 14), 5, "VAVL's CREMA-D partitions, docs/methods.md §5.4"),
    ),
    "ravdess": Corpus(
        "ravdess",
        ("audio", "visual"),
        tuple(ravdess.EMOTIONS.values()),
        "RAVDESS (24 actors, speech or song): full-AV .mp4, or audio-only .wav + video-only .mp4",
        list_clips=ravdess.list_clips,
        options=True,
        classes_for=ravdess.classes,
    ),
    "emodb": Corpus(
        "emodb",
        ("audio",),
        emodb.CLASSES,
        "EmoDB, the Berlin Database of Emotional Speech (10 speakers, 7 emotions, German), audio only",
        list_clips=emodb.list_clips,
        protocol=LeaveOneGroupOut("speaker", "speakers", "leave-one-speaker-out, docs/datasets.md"),
    ),
    "iemocap_audio": Corpus(
        "iemocap_audio",
        ("audio",),
        iemocap_audio.CLASSES,
        "IEMOCAP's raw audio (5 sessions x 2 speakers) listed by torchaudio.datasets.IEMOCAP",
        list_clips=iemocap_audio.list_clips,
        options=True,
        classes_for=iemocap_audio.classes,
        protocol=LeaveOneGroupOut("session", "speakers", "leave-one-session-out"),
    ),
    "msp_improv": Corpus(
        "msp_improv",
        ("audio", "visual"),
        msp_improv.CLASSES,
        "MSP-IMPROV (6 sessions x 2 actors): audio + video, a consensus category and arousal/valence/dominance",
        list_clips=msp_improv.list_clips,
        options=True,
        classes_for=msp_improv.classes,
        protocol=LeaveOneGroupOut("session", "group", "VAVL's session-disjoint 4/1/1 partitions, docs/methods.md §5.4"),
    ),
    "iemocap_mmin": Corpus(
        "iemocap_mmin",
        tuple(iemocap_mmin.FEATURES),
        iemocap_mmin.CLASSES,
        "IEMOCAP in the MMIN authors' feature package: ComParE audio, Denseface faces, BERT-large text and the "
        "package's own folds (10)",
        read_package=iemocap_mmin.read_package,
        options=True,
    ),
    "cmu_mosei": Corpus(
        "cmu_mosei",
        ("audio", "visual", "text"),
        (),
        "CMU-MOSEI as CMU Multimodal SDK computational sequences: COVAREP audio, FACET 4.2 or OpenFace 2.0 faces, "
        "GloVe words, per-segment sentiment and six emotion intensities, the SDK's standard folds",
        read_package=cmu_mosei.read_package,
        options=True,
    ),
}
