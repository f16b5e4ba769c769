"""Writers of tiny real media files for tests (a helper module, not a test file): WAVs, and FLV / MP4 / AVI videos
with a drawn face that OpenCV's frontal-face Haar cascade finds (or none), optionally with an audio track.

Videos are written with PyAV, because OpenCV's VideoWriter cannot write an audio track; the codecs follow the
container: `.flv` FLV1 (Sorenson H.263, as CREMA-D's VideoFlash) + MP3, `.mp4` H.264 (libx264; MPEG-4 part 2 where
the FFmpeg build lacks it) + AAC, `.avi` MPEG-4 part 2 + 16-bit PCM. Everything is deterministic.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf

SKIN = (150, 180, 220)  # BGR
BACKGROUND = (90, 100, 110)
DARK = (40, 40, 50)
HAIR = (30, 35, 45)
VIDEO_CODECS = {".flv": ("flv", "libmp3lame"), ".mp4": ("libx264", "aac"), ".avi": ("mpeg4", "pcm_s16le")}


def speech_like(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic voiced-speech-like float32 wave in [-1, 1]: harmonics of a gliding 120-220 Hz pitch under a
    4 Hz syllable envelope, plus a little noise."""
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 170.0 + 50.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    noise = np.random.default_rng(seed).normal(0.0, 0.02, len(t))
    return (0.25 * envelope * voiced + noise).astype(np.float32)


def write_wav(
    path: str | Path,
    seconds: float = 1.0,
    rate: int = 16000,
    wave: np.ndarray | None = None,
    channels: int = 1,
    subtype: str = "PCM_16",
) -> np.ndarray:
    """Write a WAV at `path` (folders created) holding `wave` (default: `speech_like(seconds, rate)`), the same
    samples on each of `channels`; returns the mono wave written."""
    wave = speech_like(seconds, rate) if wave is None else np.asarray(wave, dtype=np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.repeat(wave[:, None], channels, axis=1), rate, subtype=subtype)
    return wave


def face_box(t: float, size: tuple[int, int] = (160, 120)) -> tuple[float, float, float]:
    """(centre x, centre y, face height) in pixels of the face drawn at time `t` s in a frame of `size` (w, h): the
    face drifts slowly around the frame centre (a few percent of the width)."""
    w, h = size
    return w / 2 + 0.04 * w * np.sin(2 * np.pi * 0.8 * t), h / 2 + 0.02 * h * np.cos(2 * np.pi * 0.8 * t), 0.57 * h


def draw_frame(t: float, size: tuple[int, int] = (160, 120), face: bool = True) -> np.ndarray:
    """A BGR uint8 frame of `size` (w, h) at time `t`: a plain background and either a frontal face (skin-tone
    ellipse under dark hair, dark brows and eyes, nose shadow, mouth; at `face_box(t)`) or, with `face=False`, a
    few non-face shapes of the same colours. The hair matters: without it the cascade missed ~15% of the frames."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    if not face:
        cv2.rectangle(img, (w // 8, h // 4), (w // 8 + w // 4, h // 4 + h // 2), SKIN, -1)
        cv2.circle(img, (3 * w // 4, h // 2), h // 6, DARK, -1)
        cv2.line(img, (w // 2, h // 8), (w // 2, 7 * h // 8), SKIN, max(1, h // 30))
        return img
    cx, cy, height = face_box(t, size)
    s = height / 68.0  # the drawing's unit: a face 68 units high

    def point(dx: float, dy: float) -> tuple[int, int]:
        return round(cx + dx * s), round(cy + dy * s)

    def axes(ax: float, ay: float) -> tuple[int, int]:
        return max(1, round(ax * s)), max(1, round(ay * s))

    cv2.ellipse(img, point(0, -6), axes(30, 34), 0, 180, 360, HAIR, -1, cv2.LINE_AA)  # upper half: hair
    cv2.ellipse(img, point(0, 0), axes(28, 34), 0, 0, 360, SKIN, -1, cv2.LINE_AA)
    for side in (-1, 1):
        cv2.ellipse(img, point(11 * side, -8), axes(6, 3), 0, 0, 360, DARK, -1, cv2.LINE_AA)  # eye
        cv2.line(img, point(5 * side, -15), point(17 * side, -16), (30, 40, 60), max(1, round(2 * s)), cv2.LINE_AA)
    cv2.ellipse(img, point(0, 6), axes(4, 7), 0, 0, 360, (110, 140, 180), -1, cv2.LINE_AA)  # nose shadow
    cv2.ellipse(img, point(0, 19), axes(10, 3), 0, 0, 360, (60, 60, 120), -1, cv2.LINE_AA)  # mouth
    return img


def _video_codec(suffix: str) -> tuple[str, str]:
    if suffix not in VIDEO_CODECS:
        raise ValueError(f"write_video: unsupported container {suffix!r}; use one of {', '.join(VIDEO_CODECS)}")
    video, audio = VIDEO_CODECS[suffix]
    if video == "libx264" and "libx264" not in av.codecs_available:
        video = "mpeg4"
    return video, audio


def write_video(
    path: str | Path,
    seconds: float = 1.0,
    fps: float = 25.0,
    face: bool = True,
    audio: np.ndarray | None = None,
    audio_rate: int = 22050,
    size: tuple[int, int] = (160, 120),
    frames: list[np.ndarray] | None = None,
    times: list[float] | None = None,
) -> Path:
    """Write a video of `seconds` at `fps` (constant rate) to `path` (.flv, .mp4 or .avi; folders created).

    Each frame is `draw_frame(k / fps, size, face)`, or `frames[k]` (BGR uint8 of `size`) when `frames` is given
    (then `seconds` is ignored). `times`: presentation times (s, increasing, on a 1 ms grid) of the frames, for a
    variable-frame-rate file; by default k / fps. `audio`: a mono wave at `audio_rate` muxed as the audio track
    (FLV's MP3 allows 11025, 22050 or 44100 Hz); None writes a video without audio. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_codec, audio_codec = _video_codec(path.suffix.lower())
    rate = Fraction(fps).limit_denominator(1001)
    images = frames if frames is not None else [draw_frame(k / fps, size, face) for k in range(round(seconds * fps))]
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=rate)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        if times is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            track = container.add_stream(audio_codec, rate=audio_rate)
            track.layout = "mono"
        for k, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if times is not None:
                frame.pts, frame.time_base = round(times[k] * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            context = track.codec_context
            resampler = av.AudioResampler(
                format=context.format.name, layout="mono", rate=audio_rate, frame_size=context.frame_size or 1024
            )
            wave = av.AudioFrame.from_ndarray(np.asarray(audio, dtype=np.float32)[None], format="flt", layout="mono")
            wave.sample_rate, wave.pts = audio_rate, 0
            for chunk in resampler.resample(wave) + resampler.resample(None):
                for packet in track.encode(chunk):
                    container.mux(packet)
            for packet in track.encode():
                container.mux(packet)
    return path
