"""Per-frame facial behaviour written as an OpenFace 2.0 `FeatureExtraction` CSV (landmark columns omitted).

Action-unit intensities follow the EMFACS prototype of the emotion the face displays (Ekman & Friesen; the
prototypes listed in docs/datasets.md) with onset–apex–offset dynamics, on top of the speaker's resting face;
the mouth (AU25 lips part, AU26 jaw drop) opens with the audio's syllable envelope; blinks (AU45), head pose
and gaze drift slowly; tracking failures are short bursts of frames with `success = 0`, low confidence and
zeros in every feature column, as OpenFace writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

AU_INTENSITY = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
    "AU45",
)
AU_PRESENCE = AU_INTENSITY[:-1] + ("AU28", "AU45")
GAZE_COLUMNS = (
    "gaze_0_x",
    "gaze_0_y",
    "gaze_0_z",
    "gaze_1_x",
    "gaze_1_y",
    "gaze_1_z",
    "gaze_angle_x",
    "gaze_angle_y",
)
POSE_COLUMNS = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
OPENFACE_COLUMNS = (
    ("frame", "face_id", "timestamp", "confidence", "success")
    + GAZE_COLUMNS
    + POSE_COLUMNS
    + tuple(f"{au}_r" for au in AU_INTENSITY)
    + tuple(f"{au}_c" for au in AU_PRESENCE)
)
FIRST_FEATURE = OPENFACE_COLUMNS.index("gaze_0_x")

# Apex intensities (OpenFace's 0–5 scale; about FACS "B–C", moderate) of the EMFACS prototypes of docs/datasets.md:
# happiness 6+12; sadness 1+4+15; fear 1+2+4+5+7+20+26; anger 4+5+7+23; disgust 9+15 with the frequent 10 and 17.
EMFACS_PROTOTYPES = {
    "ANG": {"AU04": 2.6, "AU05": 1.4, "AU07": 2.0, "AU23": 1.8},
    "DIS": {"AU09": 2.4, "AU10": 1.6, "AU15": 1.2, "AU17": 1.0},
    "FEA": {"AU01": 2.0, "AU02": 1.6, "AU04": 1.4, "AU05": 2.0, "AU07": 1.2, "AU20": 1.8, "AU26": 1.2},
    "HAP": {"AU06": 2.5, "AU12": 3.2},
    "NEU": {},
    "SAD": {"AU01": 2.0, "AU04": 1.6, "AU15": 1.8},
}

# Scale of the slow head-pose drift per column (Tx, Ty, Tz in mm; Rx, Ry, Rz in rad) at head_motion = 1.
POSE_DRIFT = np.array([6.0, 5.0, 10.0, 0.05, 0.07, 0.03])
GAZE_DRIFT = 0.05  # rad
EYE_VERGENCE = 0.03  # rad: the left and right eye look slightly inwards
BLINK_KERNEL = np.array([0.8, 2.2, 2.8, 1.8, 0.7])  # AU45 over ~170 ms at 30 fps


@dataclass(frozen=True)
class Face:
    """A speaker's resting face: per-AU bias (17 intensities), expressivity gain, habitual head pose (6) and
    gaze angles (2), mouth-opening gain while speaking, blink-rate factor."""

    au_bias: np.ndarray
    expressivity: float
    head_pose: np.ndarray
    gaze: np.ndarray
    mouth_gain: float
    blink_factor: float


def synthesize_openface(
    n_frames: int,
    fps: float,
    displayed: str,
    strength: float,
    arousal: float,
    face: Face,
    envelope: np.ndarray,
    envelope_rate: float,
    rng: np.random.Generator,
    *,
    au_noise: float,
    head_motion: float,
    blink_rate: float,
    failure_rate: float,
    trace: tuple[str, float] = ("NEU", 0.0),
) -> np.ndarray:
    """OpenFace table (n_frames x len(OPENFACE_COLUMNS)) of a face displaying `displayed`.

    strength: how far the display departs from neutral (level gain x display strength); arousal: the
    displayed emotion's arousal, which adds head movement and blinks; envelope: the audio's syllable energy
    (0–1) sampled at `envelope_rate` Hz; au_noise: s.d. of the per-frame AU measurement noise (a clip-level
    offset of half that s.d. is added too); head_motion: factor on the pose/gaze drift; blink_rate: blinks per
    second; failure_rate: expected fraction of frames lost by the tracker; trace: (emotion, weight), a share of
    another emotion's prototype mixed into the display (the intended emotion's subtle trace, see corpus.py).
    """
    times = np.arange(n_frames) / fps
    motion = head_motion * (1.0 + 0.6 * max(arousal, 0.0))
    mouth = np.interp(times, np.arange(len(envelope)) / envelope_rate, envelope)

    apex = np.zeros(len(AU_INTENSITY))
    traced, weight = trace
    for emotion, share in ((displayed, 1.0 - weight), (traced, weight)):
        for au, value in EMFACS_PROTOTYPES[emotion].items():
            apex[AU_INTENSITY.index(au)] += share * value
    apex *= strength * face.expressivity * rng.lognormal(0.0, 0.15, len(AU_INTENSITY))
    intensity = (
        face.au_bias
        + _apex_dynamics(times, rng)[:, None] * apex
        + rng.normal(0.0, au_noise / 2.0, len(AU_INTENSITY))
        + _drift(rng, (n_frames, len(AU_INTENSITY)), 0.7) * au_noise
    )
    intensity[:, AU_INTENSITY.index("AU25")] += face.mouth_gain * 2.0 * np.sqrt(mouth)
    intensity[:, AU_INTENSITY.index("AU26")] += face.mouth_gain * 1.5 * mouth
    intensity[:, AU_INTENSITY.index("AU45")] += _blinks(n_frames, fps, blink_rate * face.blink_factor * motion, rng)
    intensity = np.clip(intensity, 0.0, 5.0)

    presence = np.zeros((n_frames, len(AU_PRESENCE)))
    presence[:, :-2] = intensity[:, :-1] + rng.normal(0.0, 0.3, (n_frames, len(AU_INTENSITY) - 1)) > 1.0
    presence[:, -2] = _drift(rng, (n_frames,), 0.8) > 2.0  # AU28 (lip suck): occasional, no intensity output
    presence[:, -1] = intensity[:, -1] > 1.0

    pose = face.head_pose + _drift(rng, (n_frames, 6), 0.97) * POSE_DRIFT * motion
    gaze_angles = face.gaze + _drift(rng, (n_frames, 2), 0.9) * GAZE_DRIFT * motion

    table = np.zeros((n_frames, len(OPENFACE_COLUMNS)))
    table[:, 0] = np.arange(1, n_frames + 1)
    table[:, 2] = times
    table[:, 3] = np.clip(0.98 - np.abs(rng.normal(0.0, 0.02, n_frames)), 0.8, 0.98)
    table[:, 4] = 1.0
    table[:, FIRST_FEATURE : FIRST_FEATURE + 8] = _gaze_columns(gaze_angles)
    table[:, FIRST_FEATURE + 8 : FIRST_FEATURE + 14] = pose
    table[:, FIRST_FEATURE + 14 : FIRST_FEATURE + 31] = intensity
    table[:, FIRST_FEATURE + 31 :] = presence

    lost = _tracking_failures(n_frames, failure_rate, rng)
    table[lost, 3] = rng.uniform(0.0, 0.3, int(lost.sum()))
    table[lost, 4] = 0.0
    table[lost, FIRST_FEATURE:] = 0.0
    return table


def write_openface_csv(path: str | Path, table: np.ndarray) -> None:
    """Write `table` as OpenFace 2.0 does: header with ', ' separators, values rounded (3 decimals)."""
    integer = {"frame", "face_id", "success"} | {f"{au}_c" for au in AU_PRESENCE}
    formats = ["%d" if name in integer else "%.2f" if name == "confidence" else "%.3f" for name in OPENFACE_COLUMNS]
    rounded = np.round(table, 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    np.savetxt(path, rounded, fmt=formats, delimiter=", ", header=", ".join(OPENFACE_COLUMNS), comments="")


def _apex_dynamics(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Onset–apex–offset envelope (0–1): rise of 0.2–0.5 s from a clip-specific onset, hold, then a 0.3–0.8 s
    decay that may outlast the clip."""
    duration = times[-1] if len(times) > 1 else 1.0
    onset = rng.uniform(0.0, 0.25) * duration
    offset = rng.uniform(0.65, 0.95) * duration
    rise, decay = rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.8)
    return _smoothstep((times - onset) / rise) * (1.0 - _smoothstep((times - offset) / decay))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _drift(rng: np.random.Generator, shape: tuple, pole: float) -> np.ndarray:
    """Slow unit-variance AR(1) noise along axis 0 (pole close to 1: a random walk pulled back to 0)."""
    innovations = rng.standard_normal(shape) * np.sqrt(1.0 - pole**2)
    innovations[0] = rng.standard_normal(shape[1:])  # start in the stationary distribution
    return lfilter([1.0], [1.0, -pole], innovations, axis=0)


def _blinks(n_frames: int, fps: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """AU45 trace: blink onsets from a Poisson process at `rate` per second, each a ~170 ms closure."""
    onsets = np.zeros(n_frames)
    count = rng.poisson(rate * n_frames / fps)
    np.add.at(onsets, rng.integers(0, n_frames, count), rng.uniform(0.7, 1.2, count))
    kernel = np.interp(
        np.arange(int(round(len(BLINK_KERNEL) * fps / 30.0))) * 30.0 / fps, np.arange(len(BLINK_KERNEL)), BLINK_KERNEL
    )
    return np.convolve(onsets, kernel)[:n_frames]


def _gaze_columns(angles: np.ndarray) -> np.ndarray:
    """gaze_0 (left eye) and gaze_1 (right eye) unit vectors in camera space, then gaze_angle_x/y
    (OpenFace: angle_x = atan2(x, -z), angle_y = atan2(y, -z); looking at the camera is (0, 0, -1))."""
    columns = []
    for vergence in (EYE_VERGENCE, -EYE_VERGENCE):
        direction = np.stack([np.tan(angles[:, 0] + vergence), np.tan(angles[:, 1]), -np.ones(len(angles))], axis=1)
        columns.append(direction / np.linalg.norm(direction, axis=1, keepdims=True))
    return np.concatenate(columns + [angles], axis=1)


def _tracking_failures(n_frames: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Mask of lost frames: bursts with geometric lengths (mean 8 frames) so that about `rate` of frames fail."""
    mean_length = 8.0
    count = rng.poisson(rate * n_frames / mean_length)
    starts = rng.integers(0, n_frames, count)
    lengths = rng.geometric(1.0 / mean_length, count)
    frames = np.arange(n_frames)[None, :]
    return np.any((frames >= starts[:, None]) & (frames < (starts + lengths)[:, None]), axis=0)
