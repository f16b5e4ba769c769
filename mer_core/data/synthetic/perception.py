"""CREMA-D's label space and what people perceive from each of its modalities.

The built-in corpus borrows CREMA-D's ambiguity structure: for every clip, the emotion that the voice displays
and the emotion that the face displays are drawn independently from the human confusion row of the intended
emotion for that modality (`VOICE_CONFUSION`, `FACE_CONFUSION`). Source of the figures: CREMA-D
`processedResults/summaryTable.csv` (Cao et al. 2014), the crowd's majority vote per modality with ties split
as fractions, as tabulated in `docs/datasets.md` ("what people recognise from each modality").
"""

from __future__ import annotations

import numpy as np

from mer_core.data.corpora.crema_d import EMOTIONS as CREMA_D_EMOTIONS

EMOTION_NAMES = CREMA_D_EMOTIONS  # code -> class name, in CREMA-D's file-name codes
EMOTIONS = tuple(EMOTION_NAMES)  # row / column order of the confusion matrices
LEVELLED_SENTENCE = "IEO"  # the only CREMA-D sentence recorded at LO/MD/HI (docs/datasets.md)
FILE_EMOTION_ORDER = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")  # order of clips in CREMA-D's SentenceFilenames.csv


def _rows_to_one(table: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(table, dtype=float)
    return matrix / matrix.sum(axis=1, keepdims=True)


# Rows: intended emotion; columns: the crowd's majority label; both in EMOTIONS order. Source: CREMA-D
# processedResults/summaryTable.csv, VoiceVote (audio alone), per docs/datasets.md; rows renormalised to 1.
VOICE_CONFUSION = _rows_to_one(
    [
        [0.635, 0.136, 0.031, 0.007, 0.189, 0.002],
        [0.092, 0.304, 0.061, 0.009, 0.482, 0.051],
        [0.046, 0.019, 0.350, 0.010, 0.483, 0.091],
        [0.050, 0.028, 0.061, 0.296, 0.556, 0.009],
        [0.009, 0.007, 0.009, 0.000, 0.966, 0.009],
        [0.005, 0.021, 0.070, 0.000, 0.703, 0.200],
    ]
)

# Same source, FaceVote (video alone), per docs/datasets.md; rows renormalised to 1.
FACE_CONFUSION = _rows_to_one(
    [
        [0.685, 0.128, 0.021, 0.018, 0.139, 0.009],
        [0.044, 0.661, 0.060, 0.005, 0.038, 0.192],
        [0.068, 0.058, 0.546, 0.006, 0.219, 0.102],
        [0.003, 0.002, 0.003, 0.961, 0.030, 0.001],
        [0.006, 0.018, 0.004, 0.016, 0.933, 0.023],
        [0.012, 0.050, 0.075, 0.005, 0.499, 0.360],
    ]
)

# Same source, MultiModalVote (audio and video together), per docs/datasets.md; rows renormalised to 1.
# Not used to draw displays (each modality is drawn from its own matrix); kept as the human reference row.
AUDIOVISUAL_CONFUSION = _rows_to_one(
    [
        [0.772, 0.128, 0.016, 0.003, 0.079, 0.002],
        [0.033, 0.767, 0.076, 0.004, 0.054, 0.066],
        [0.028, 0.019, 0.679, 0.002, 0.173, 0.099],
        [0.001, 0.002, 0.005, 0.953, 0.039, 0.000],
        [0.007, 0.006, 0.007, 0.006, 0.967, 0.007],
        [0.003, 0.038, 0.138, 0.001, 0.466, 0.355],
    ]
)


def bayes_limit(*matrices: np.ndarray) -> float:
    """Best achievable unweighted accuracy (UA) when each modality's displayed emotion is read perfectly.

    Each matrix gives P(displayed | intended) for one modality; the displays are independent given the
    intended emotion and the prior is uniform. The Bayes decision for a tuple of displays is the intended
    emotion with the highest likelihood, so UA = (1/K) * sum over display tuples of the largest likelihood.
    With CREMA-D's matrices this is about 0.46 (voice), 0.69 (face) and 0.75 (voice and face jointly).
    """
    n_classes = matrices[0].shape[0]
    joint = np.ones((n_classes, 1))
    for matrix in matrices:
        joint = (joint[:, :, None] * matrix[:, None, :]).reshape(n_classes, -1)
    return float(joint.max(axis=0).sum() / n_classes)


def human_bayes_limits() -> dict[str, float]:
    """Bayes limits of the voice, the face and both together (see `bayes_limit`)."""
    return {
        "voice": bayes_limit(VOICE_CONFUSION),
        "face": bayes_limit(FACE_CONFUSION),
        "both": bayes_limit(VOICE_CONFUSION, FACE_CONFUSION),
    }


def draw_display(intended: str, confusion: np.ndarray, rng: np.random.Generator) -> str:
    """The emotion a modality displays for a clip whose intended emotion is `intended`."""
    return EMOTIONS[rng.choice(len(EMOTIONS), p=confusion[EMOTIONS.index(intended)])]


def clip_levels(sentence: str) -> dict[str, tuple[str, ...]]:
    """Levels recorded per emotion for a sentence, following CREMA-D: IEO at LO/MD/HI (neutral XX), others XX."""
    return {
        emotion: ("XX",) if sentence != LEVELLED_SENTENCE or emotion == "NEU" else ("LO", "MD", "HI")
        for emotion in FILE_EMOTION_ORDER
    }


def clip_name(actor: int, sentence: str, emotion: str, level: str) -> str:
    """CREMA-D clip name, e.g. 1001_DFA_ANG_XX."""
    return f"{actor}_{sentence}_{emotion}_{level}"
