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

Every decoded signal is checked before use (`AudioError`, naming the file): it has samples, they are finite, not all
zero (a silent file), and within full scale: |x| <= 1 for WAV / FLAC (integer PCM cannot exceed it; a float WAV
beyond it is clipped or corrupt), |x| <= `LOSSY_PEAK` for a container's track (MP3 and AAC decoders overshoot full
scale a little on loud clips). A truncated file is an error too, not a shorter clip: a WAV's `data` chunk declares
its frame count (`wav_declared_frames`; libsndfile silently reads what is there), a FLAC's STREAMINFO its sample
count; a container declares a duration (the audio stream's, else the container's: FLV's onMetaData, MP4's moov)
that the decoded samples must reach within `TRUNCATION_TOLERANCE` (lossy codecs add or trim tens of ms of priming
and padding, and some containers only estimate their duration).

Video (`sample_video`): decoded with OpenCV; frames are sampled at `fps` by timestamp, not by frame index: the
sample at time k / fps is the frame on screen then (the last one whose presentation time, relative to the first
frame's, is not later), which holds for variable-frame-rate files and for `fps` above or below the native rate.
The clip lasts from the first frame to the last frame's time plus one frame duration (the median frame interval),
so it gives round(duration x fps) samples. Frames are converted to grey and, when their longer side exceeds
`max_side`, downscaled (detection speed and memory on HD corpora). A video that decodes to fewer frames than its
container declares (OpenCV's frame count), by more than `TRUNCATION_TOLERANCE`, is truncated: a `VideoError`.
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
FULL_SCALE = 1.0  # the largest |sample| of a WAV / FLAC decoded to float
LOSSY_PEAK = 2.0  # the largest |sample| accepted from a container's (lossy) track: codec overshoot, not corruption
TRUNCATION_TOLERANCE = 0.1  # a container's stream may fall short of its declared duration by this fraction


class AudioError(ValueError):
    """An audio file or a video's audio track is unreadable, empty, truncated, silent, or holds non-finite samples or
    samples beyond full scale; the message names the file."""


class VideoError(ValueError):
    """A video file is unreadable, truncated, has no frame, or is shorter than one sample at the frame rate; the
    message names the file."""


def _mono(samples: np.ndarray, rate: int, sample_rate: int, path: Path, peak: float) -> np.ndarray:
    """Checked float32 (N, channels) samples at `rate` (see module docstring; `peak`: the largest |sample|
    accepted) -> mono float32 at `sample_rate`."""
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    finite = np.isfinite(samples)
    if not finite.all():
        frame = int(np.argwhere(~finite)[0, 0])
        raise AudioError(f"{path}: non-finite samples (the first at sample {frame}, {frame / rate:.3f} s)")
    if not samples.any():
        raise AudioError(f"{path}: silent (all {samples.shape[0]} samples are 0)")
    loudest = float(np.abs(samples).max())
    if loudest > peak:
        frame = int(np.argwhere(np.abs(samples) == loudest)[0, 0])
        raise AudioError(
            f"{path}: samples beyond full scale (|x| = {loudest:g} at sample {frame}, {frame / rate:.3f} "
            f"s; at most {peak:g} is accepted): a corrupt or unnormalised float file"
        )
    wave = samples.mean(axis=1)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, sample_rate).numpy()
    return wave


def wav_declared_frames(path: str | Path) -> int | None:
    """The frame count a RIFF WAVE file's header declares (`data` chunk size / the `fmt ` chunk's block align), or
    None when it declares none (not RIFF WAVE, e.g. RF64; a streamed file's size 0 or 0xFFFFFFFF; no such chunk)."""
    block_align = None
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
            body = handle.read(size + size % 2)  # chunks are padded to an even size
            if name == b"fmt " and len(body) >= 14:
                block_align = int.from_bytes(body[12:14], "little")
    return None


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of a WAV / FLAC file `path` at `sample_rate` (soundfile); AudioError when the file
    holds fewer frames than its header declares (truncated)."""
    path = Path(path)
    try:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        declared = wav_declared_frames(path) if path.suffix.lower() == ".wav" else sf.info(path).frames
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: not a readable audio file ({err})") from err
    if declared and len(wave) < declared:
        raise AudioError(
            f"{path}: truncated: the header declares {declared} frames ({declared / rate:.3f} s), the "
            f"file holds {len(wave)} ({len(wave) / rate:.3f} s)"
        )
    return _mono(wave, rate, sample_rate, path, FULL_SCALE)


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
            declared = (
                float(stream.duration * stream.time_base)
                if stream.duration
                else container.duration / av.time_base
                if container.duration
                else None
            )
    except (av.FFmpegError, OSError) as err:
        raise AudioError(f"{path}: not a readable media file ({type(err).__name__}: {err})") from err
    if not chunks:
        raise AudioError(f"{path}: no samples in the audio track")
    samples = np.concatenate(chunks, axis=1).T
    if declared and len(samples) / rate < (1.0 - TRUNCATION_TOLERANCE) * declared:
        raise AudioError(
            f"{path}: truncated: the container declares {declared:.3f} s, its audio track decodes to "
            f"{len(samples) / rate:.3f} s"
        )
    return _mono(samples, rate, sample_rate, path, LOSSY_PEAK)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of an audio file or of a video's audio track, at `sample_rate` (by suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix in SOUNDFILE_SUFFIXES:
        return read_wav(path, sample_rate)
    if suffix in CONTAINER_AUDIO_SUFFIXES:
        return read_container_audio(path, sample_rate)
    raise AudioError(
        f"{path}: unknown audio file type {suffix!r}; allowed: "
        f"{', '.join(SOUNDFILE_SUFFIXES + CONTAINER_AUDIO_SUFFIXES)}"
    )


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
    declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
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
    if declared > 0 and len(times) < (1.0 - TRUNCATION_TOLERANCE) * declared:
        raise VideoError(f"{path}: truncated: the container declares {declared:g} frames, {len(times)} decode")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / (native_fps if native_fps > 0 else fps)
    duration = times[-1] - times[0] + step
    n = round(duration * fps)
    if n == 0:
        raise VideoError(
            f"{path}: {duration * 1000:.1f} ms is shorter than one frame at {fps:g} fps (features.visual.fps)"
        )
    samples += [shown] * (n - len(samples))
    return samples[:n]
