"""Decoding media files: audio of any container as 16 kHz mono, video frames sampled at a fixed rate.

Audio (`read_audio` dispatches on the file name's suffix):
- WAV / FLAC are read with soundfile (`read_wav`);
- the audio track of a video (FLV, MP4, AVI, MOV, MKV, ...) or an MP3 is decoded with PyAV (FFmpeg's libraries;
  `read_container_audio`). OpenCV's FFmpeg backend was measured here first: the opencv-python-headless wheels
  (4.x and 5.0) reject the `CAP_PROP_AUDIO_STREAM` open parameter ("unsupported parameters"; only the MSMF and
  GStreamer backends capture audio), and OpenCV's VideoWriter writes no audio track either, so the tests mux their
  videos with PyAV as well.
Either way the channels are averaged and the signal is resampled to 16 kHz with torchaudio, so a WAV and the
same samples muxed into a video give the same wave up to codec loss and the encoder's delay (an MP3 in FLV carries
no gapless info, so its ~1105 priming samples stay at the start).

Video (`sample_video`): decoded with OpenCV; frames are sampled at `fps` by timestamp, not by frame index: the
sample at time k / fps is the frame on screen then (the last one whose presentation time, relative to the first
frame's, is not later), which holds for variable-frame-rate files and for `fps` above or below the native rate.
The clip lasts from the first frame to the last frame's time plus one frame duration (the median frame interval),
so it gives round(duration x fps) samples. Frames are converted to grey and, when their longer side exceeds
`max_side`, downscaled (detection speed and memory on HD corpora).
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 16000
SOUNDFILE_SUFFIXES = (".wav", ".flac")
VIDEO_SUFFIXES = (".flv", ".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
CONTAINER_AUDIO_SUFFIXES = (*VIDEO_SUFFIXES, ".mp3", ".m4a")


class AudioError(ValueError):
    """An audio file or a video's audio track is unreadable, empty or holds non-finite samples; the message names
    the file."""


class VideoError(ValueError):
    """A video file is unreadable, has no frame, or is shorter than one sample at the frame rate; the message names
    the file."""


def _mono(samples: np.ndarray, rate: int, sample_rate: int, path: Path) -> np.ndarray:
    """Checked float32 (N, channels) samples at `rate` -> mono float32 at `sample_rate`."""
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: non-finite samples")
    wave = samples.mean(axis=1)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, sample_rate).numpy()
    return wave


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of a WAV / FLAC file `path` at `sample_rate` (soundfile)."""
    path = Path(path)
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err
    return _mono(wave, rate, sample_rate, path)


def read_container_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of the first audio track of a media container `path` at `sample_rate` (PyAV)."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: the file has no audio track")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # planar float32, the track's own layout and rate
            chunks, rate = [], None
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                chunks += [out.to_ndarray() for out in to_float.resample(frame)]
            chunks += [out.to_ndarray() for out in to_float.resample(None)]
    except (av.FFmpegError, OSError) as err:
        raise AudioError(f"{path}: not a readable media file ({type(err).__name__}: {err})") from err
    if not chunks:
        raise AudioError(f"{path}: no samples in the audio track")
    return _mono(np.concatenate(chunks, axis=1).T, rate, sample_rate, path)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of an audio file or of a video's audio track, at `sample_rate` (by suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix in SOUNDFILE_SUFFIXES:
        return read_wav(path, sample_rate)
    if suffix in CONTAINER_AUDIO_SUFFIXES:
        return read_container_audio(path, sample_rate)
    raise AudioError(f"{path}: unknown audio file type {suffix!r}; allowed: "
                     f"{', '.join(SOUNDFILE_SUFFIXES + CONTAINER_AUDIO_SUFFIXES)}")


def _grey(frame: np.ndarray, max_side: int) -> np.ndarray:
    """A BGR frame as grey uint8, downscaled (area interpolation) so that its longer side is at most `max_side`."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    scale = max_side / max(grey.shape)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def sample_video(path: str | Path, fps: float, max_side: int) -> list[np.ndarray]:
    """Grey uint8 frames of the video `path` sampled at `fps` by timestamp (see module docstring); round(duration
    x fps) of them. A sample repeats a frame (the same array) when `fps` exceeds the video's rate."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: not a readable video (OpenCV's FFmpeg backend cannot open it)")
    samples: list[np.ndarray] = []
    times: list[float] = []
    shown = None  # the frame on screen until the next frame's time
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            while shown is not None and len(samples) / fps < times[-1] - times[0] - 1e-6:
                samples.append(shown)
            shown = _grey(frame, max_side)
        native_fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    if shown is None:
        raise VideoError(f"{path}: no decodable video frame")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / (native_fps if native_fps > 0 else fps)
    duration = times[-1] - times[0] + step
    n = round(duration * fps)
    if n == 0:
        raise VideoError(f"{path}: {duration * 1000:.1f} ms is shorter than one frame at {fps:g} fps "
                         "(features.visual.fps)")
    samples += [shown] * (n - len(samples))
    return samples[:n]
