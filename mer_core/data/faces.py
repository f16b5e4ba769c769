"""Face crops from video: the frame stream of `features.visual.extractor: face_crops`.

Frames are sampled at `features.visual.fps` by timestamp (`mer_core.data.media.sample_video`). In each sample the
faces are found with OpenCV's Viola-Jones detector (Viola & Jones, CVPR 2001) and the frontal-face Haar cascade
that ships in the opencv-python wheel (`haarcascade_frontalface_default.xml`), on the histogram-equalised grey
frame; the largest face is kept. Its box (centre and side) is smoothed over time by a centred running median over
the samples where a face was found (`smooth_frames` of them; a median rather than a mean, so that a single false
detection does not drag the box), then a square of `margin` x the smoothed side around the smoothed centre is cut
out (the image border replicated where the square leaves the frame), resized to `size` x `size` (area
interpolation), scaled to [0, 1] float32 and flattened row-major to `size * size` features. A sample without a
face is all zeros and invalid, as OpenFace's `success = 0` rows are (`mer_core.data.openface`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mer_core.data.media import sample_video

CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1  # detectMultiScale's step between scales (OpenCV's default)
MIN_FACE_PX = 24  # the cascade's window: no smaller face can be found


@lru_cache(maxsize=None)
def face_cascade() -> cv2.CascadeClassifier:
    """The frontal-face Haar cascade of the installed OpenCV wheel (loaded once per process)."""
    path = Path(cv2.data.haarcascades) / CASCADE
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(
            f"{path}: OpenCV's Haar cascade is missing or unreadable; reinstall opencv-python-headless "
            "(the version pinned in pyproject.toml ships it)"
        )
    return cascade


def detect_face(grey: np.ndarray, min_neighbors: int, min_face: float) -> np.ndarray | None:
    """(centre x, centre y, side) in pixels of the largest face in a grey uint8 frame, or None.

    `min_neighbors`: detectMultiScale's overlapping detections needed to accept a face (higher: fewer false
    faces); `min_face`: the smallest face side as a fraction of the frame's shorter side."""
    smallest = max(MIN_FACE_PX, round(min_face * min(grey.shape)))
    faces = face_cascade().detectMultiScale(
        cv2.equalizeHist(grey), scaleFactor=SCALE_FACTOR, minNeighbors=min_neighbors, minSize=(smallest, smallest)
    )
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda face: face[2] * face[3])
    return np.array([x + (w - 1) / 2.0, y + (h - 1) / 2.0, (w + h) / 2.0])  # pixel centres at integer coordinates


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Boxes (T, 3) with NaN rows where no face was found -> each found box replaced by the median of the `window`
    found boxes centred on it (fewer at the ends), column by column; NaN rows stay NaN. `window` 1 changes nothing."""
    boxes = np.asarray(boxes, dtype=np.float64)
    found = np.flatnonzero(~np.isnan(boxes).any(axis=1))
    out = np.full_like(boxes, np.nan)
    before, after = (window - 1) // 2, window // 2
    for k, row in enumerate(found):
        neighbours = found[max(0, k - before) : k + after + 1]
        out[row] = np.median(boxes[neighbours], axis=0)
    return out


def crop_face(grey: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """The square of side `margin` x box side around the box centre, as `size` x `size` grey in [0, 1], flattened
    row-major to (size * size,) float32."""
    side = max(1, round(margin * box[2]))
    patch = cv2.getRectSubPix(grey, (side, side), (float(box[0]), float(box[1])))  # border replicated outside
    patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR)
    return (patch.astype(np.float32) / 255.0).reshape(-1)


def face_crops(path: str | Path, fps: float, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Face crops (T, size * size) float32 of the video `path` sampled at `fps`, and the valid mask (T,) bool
    (False where no face was found; those rows are zero), under `features.visual.face_crops` settings `cfg`."""
    frames = sample_video(path, fps, cfg["max_side"])
    boxes = np.full((len(frames), 3), np.nan)
    for t, grey in enumerate(frames):
        if t > 0 and grey is frames[t - 1]:  # a repeated frame (fps above the video's rate): same detection
            boxes[t] = boxes[t - 1]
            continue
        box = detect_face(grey, cfg["min_neighbors"], cfg["min_face"])
        if box is not None:
            boxes[t] = box
    boxes = smooth_boxes(boxes, cfg["smooth_frames"])
    valid = ~np.isnan(boxes).any(axis=1)
    crops = np.zeros((len(frames), cfg["size"] ** 2), dtype=np.float32)
    for t in np.flatnonzero(valid):
        crops[t] = crop_face(frames[t], boxes[t], cfg["size"], cfg["margin"])
    return crops, valid
