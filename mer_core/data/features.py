"""Frame-level feature extraction for every corpus.

Audio: a WAV / FLAC file (soundfile; torchaudio.load needs torchcodec) or a video's audio track (PyAV), mixed to
mono, resampled to 16 kHz (`mer_core.data.media.read_audio`), then
- `logmel`: log mel filterbank energies (torchaudio's Kaldi-compatible `fbank`), the default;
- `compare`: openSMILE ComParE_2016 low-level descriptors + deltas (65 + 65 = 130-d), the features the
  MMIN / IF-MMIN / NMER code trains on (docs/methods.md §1.1);
- `wav2vec2`: hidden states (50 frames/s) of a frozen self-supervised speech model, the first `layer` transformer
  layers of a torchaudio.pipelines bundle, as VAVL's audio front-end (docs/methods.md §5.1; see `wav2vec2_features`).
An optional frame-rate reduction averages non-overlapping groups of `rate_reduction` frames (the MMIN
preprocessing downsamples ComParE x10 with a polyphase filter; averaging is our simpler stand-in).

Visual (`features.visual.extractor`), with the same optional rate reduction:
- `openface`: OpenFace 2.0 CSV columns (`mer_core.data.openface`), the default; the clips' visual files are CSVs;
- `face_crops`: `size` x `size` grey face crops of the video itself, sampled at `fps` (`mer_core.data.faces`).

Functionals (for the classical baseline `functionals_svm`, or any run's `audio_input`): one vector per clip of
openSMILE's statistics over the whole utterance, `ComParE_2016` (6373-d) or `eGeMAPSv02` (88-d), from the same 16 kHz
signal (`wave_functionals`); the prepare step extracts the sets the study's runs read (`mer_core.config`).

`features.corruptions` sets the signal-level corruptions (noisy audio, face-tracking dropout) that the prepare
step extracts beside the clean features for testing (`mer_core.noise.signal`, `mer_core.data.prepare`).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] frame-rate reduction. Official: polyphase resampling x10 (ComParE). Here: the mean of groups of frames
  (`rate_reduction`). Why: simpler; a param. Restore: not switchable.
  Test: tests/test_data.py::test_extract_visual_rate_reduction_and_valid_mask.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio

from mer_core.data.faces import face_crops
from mer_core.data.media import SAMPLE_RATE, VIDEO_SUFFIXES, AudioError, VideoError, read_audio
from mer_core.data.openface import openface_columns, read_openface_csv
from mer_core.params.data import FUNCTIONAL_SETS
from mer_core.schema import ConfigError

RANDOM_WEIGHTS_SEED = 0  # `weights: random` initialises the architecture from this seed


def reduce_rate(frames: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping groups of `factor` frames (the last, shorter group included)."""
    if factor == 1 or len(frames) == 0:
        return frames
    starts = np.arange(0, len(frames), factor)
    sums = np.add.reduceat(frames.astype(np.float64), starts, axis=0)  # in frame order, as np.add.at did
    counts = np.diff(np.append(starts, len(frames)))
    return (sums / counts[:, None]).astype(np.float32)


@lru_cache(maxsize=None)
def _compare_extractor():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    ), opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=opensmile.FeatureLevel.LowLevelDescriptors_Deltas
    )


@lru_cache(maxsize=None)
def _functionals_extractor(name: str):
    import opensmile

    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, name), feature_level=opensmile.FeatureLevel.Functionals
    )


def wave_functionals(wave: np.ndarray, name: str, source: str | Path) -> np.ndarray:
    """The openSMILE functionals `name` (a key of FUNCTIONAL_SETS) of a 16 kHz mono signal: (D,) float32; an
    `AudioError` names `source` when they have another shape or a non-finite value."""
    if name not in FUNCTIONAL_SETS:
        raise ConfigError(f"functionals: got {name!r}; allowed values: {', '.join(FUNCTIONAL_SETS)}")
    values = _functionals_extractor(name).process_signal(wave, SAMPLE_RATE).to_numpy()
    if values.shape != (1, FUNCTIONAL_SETS[name]):
        raise AudioError(f"{source}: {name} functionals of shape {values.shape}, expected (1, {FUNCTIONAL_SETS[name]})")
    if not np.isfinite(values).all():
        raise AudioError(f"{source}: {name} functionals contain NaN or inf")
    return values[0].astype(np.float32)


def wav2vec2_bundle(name: str, layer: int):
    """The torchaudio.pipelines bundle `name`; raises ConfigError when it has fewer than `layer` transformer layers."""
    bundle = getattr(torchaudio.pipelines, name)
    depth = bundle._params["encoder_num_layers"]
    if layer > depth:
        raise ConfigError(
            f"features.audio.wav2vec2.layer: got {layer}; {name} has {depth} transformer layers (allowed: 1 to {depth})"
        )
    return bundle


def wav2vec2_weights_path(bundle) -> Path:
    """Where `bundle.get_model()` caches its weights: torchaudio fetches https://download.pytorch.org/torchaudio/
    models/<bundle._path> with torch.hub.load_state_dict_from_url, which keeps the URL's file name under
    `<torch.hub.get_dir()>/checkpoints` (the hub dir is $TORCH_HOME/hub, by default ~/.cache/torch/hub)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(bundle._path).name


def _cached_state_dict(name: str, bundle) -> dict:
    """The bundle's weights from the local torch hub cache; never downloads (FileNotFoundError when absent)."""
    path = wav2vec2_weights_path(bundle)
    if not path.is_file():
        raise FileNotFoundError(
            f"features.audio.wav2vec2.weights: pretrained: the weights of {name} are not in the local torch hub "
            f"cache; expected {path}. Nothing is downloaded here: on a machine with internet run "
            f"`torchaudio.pipelines.{name}.get_model()` (or fetch https://download.pytorch.org/torchaudio/models/"
            f"{bundle._path}) and copy the file to {path} (the directory follows $TORCH_HOME), or set "
            "weights: random for a smoke run"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


@lru_cache(maxsize=None)
def wav2vec2_model(name: str, layer: int, weights: str) -> torch.nn.Module:
    """The frozen front-end (once per process, on CPU): bundle `name`'s architecture (`bundle._params`) with its
    pretrained weights from the hub cache, or randomly initialised from RANDOM_WEIGHTS_SEED (`random`: for tests and
    smoke runs only; its features are meaningless), cut to its first `layer` transformer layers as VAVL keeps 12 of
    wav2vec2-large-robust's 24 (docs/methods.md §5.1). In eval mode, no parameter requires grad."""
    bundle = wav2vec2_bundle(name, layer)
    factory = torchaudio.models.wavlm_model if bundle._model_type == "WavLM" else torchaudio.models.wav2vec2_model
    if weights == "pretrained":
        state = _cached_state_dict(name, bundle)
        model = factory(**bundle._params)
        model.load_state_dict(state)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = factory(**bundle._params)
    del model.encoder.transformer.layers[layer:]  # the encoder's final LayerNorm (pre-LN models) still applies
    return model.eval().requires_grad_(False)


def wav2vec2_features(wave: np.ndarray, cfg: dict) -> np.ndarray:
    """Hidden states (T, D) at 50 frames/s of the front-end set by `features.audio.wav2vec2` `cfg`.

    VAVL's audio front-end (docs/methods.md §5.1) is a frozen wav2vec2-large-robust, top 12 of 24 layers removed, with
    the authors' fine-tuned checkpoint `final_wav2vec.pt`, which we cannot obtain; neither is that model a
    torchaudio bundle. We use a torchaudio bundle instead (a deviation), the first `layer` layers, frozen. Since
    nothing trains it, extracting once in the prepare step gives exactly what running it in every forward pass
    would. The input is 16 kHz mono, layer-normalised over the clip where the bundle's model expects it (the large
    ones) as `bundle.get_model()` does; VAVL instead z-normalised with one training-set mean and s.d.
    """
    model = wav2vec2_model(cfg["bundle"], cfg["layer"], cfg["weights"])
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    if wav2vec2_bundle(cfg["bundle"], cfg["layer"])._normalize_waveform:
        x = torch.nn.functional.layer_norm(x, x.shape)
    with torch.inference_mode():
        return model(x)[0][0].numpy()


def audio_features(wave: np.ndarray, cfg: dict) -> np.ndarray:
    """Frame features (T, D) of a 16 kHz mono signal under `features.audio` settings `cfg`."""
    if cfg["extractor"] == "logmel":
        frames = torchaudio.compliance.kaldi.fbank(
            torch.from_numpy(np.ascontiguousarray(wave))[None] * 32768.0,  # Kaldi's int16 scale
            num_mel_bins=cfg["n_mels"],
            frame_length=cfg["win_ms"],
            frame_shift=cfg["hop_ms"],
            sample_frequency=SAMPLE_RATE,
            dither=0.0,
            energy_floor=1.0,
        ).numpy()
    elif cfg["extractor"] == "compare":
        lld, deltas = _compare_extractor()
        a = lld.process_signal(wave, SAMPLE_RATE).to_numpy()
        d = deltas.process_signal(wave, SAMPLE_RATE).to_numpy()
        n = min(len(a), len(d))
        frames = np.concatenate([a[:n], d[:n]], axis=1)
    else:
        frames = wav2vec2_features(wave, cfg["wav2vec2"])
    return reduce_rate(frames.astype(np.float32), cfg["rate_reduction"])


def audio_dim(cfg: dict) -> int:
    if cfg["extractor"] == "wav2vec2":
        return wav2vec2_bundle(cfg["wav2vec2"]["bundle"], cfg["wav2vec2"]["layer"])._params["encoder_embed_dim"]
    return cfg["n_mels"] if cfg["extractor"] == "logmel" else 130


def frame_ms(cfg: dict) -> tuple[float, float]:
    """(window, hop) of one frame of the configured extractor, in ms."""
    return {
        "logmel": (cfg["win_ms"], cfg["hop_ms"]),
        "compare": (60.0, 10.0),  # ComParE_2016's longest LLD window, and its 10 ms hop
        "wav2vec2": (25.0, 20.0),  # the CNN feature encoder's receptive field (400 samples) and stride (320)
    }[cfg["extractor"]]


def audio_frame_rate(cfg: dict) -> float:
    return 1000.0 / frame_ms(cfg)[1] / cfg["rate_reduction"]


def wave_features(wave: np.ndarray, cfg: dict, source: str | Path) -> np.ndarray:
    """Checked frame features (T, D) of a 16 kHz mono signal; `source` names the file in an `AudioError`."""
    window_ms = frame_ms(cfg)[0]
    if len(wave) < window_ms * SAMPLE_RATE / 1000:
        raise AudioError(f"{source}: {len(wave) / SAMPLE_RATE * 1000:.1f} ms is shorter than one {window_ms} ms frame")
    frames = audio_features(wave, cfg)
    if len(frames) == 0:
        raise AudioError(f"{source}: no feature frame")
    if not np.isfinite(frames).all():
        raise AudioError(f"{source}: features contain NaN or inf")
    return frames


def extract_audio(path: str | Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, D) of one audio file or video's audio track and its valid-frame mask (all True)."""
    frames = wave_features(read_audio(path), cfg, path)
    return frames, np.ones(len(frames), dtype=bool)


def reduce_visual(frames: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Rate reduction of face frames (T, D) with their valid mask: a reduced frame is the mean of its group's
    valid frames, and valid if any of them was (zero otherwise)."""
    if factor == 1:
        return frames, valid
    reduced = reduce_rate(frames * valid[:, None], factor)
    counts = reduce_rate(valid[:, None].astype(np.float32), factor)[:, 0]
    ok = counts > 0
    reduced[ok] /= counts[ok, None]
    return reduced, ok


def read_visual(path: str | Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Raw per-frame features (T, D) and valid mask (T,) of one visual file under `features.visual` settings `cfg`,
    before rate reduction: an OpenFace CSV (extractor `openface`) or a video (extractor `face_crops`). A video in
    which no face is ever found raises VideoError, as a CSV with no tracked frame raises OpenFaceError."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        if cfg["extractor"] != "openface":
            raise ConfigError(
                f"features.visual.extractor: {cfg['extractor']!r} reads videos, but {path} is an "
                "OpenFace CSV; set extractor: openface (allowed values: openface, face_crops)"
            )
        return read_openface_csv(path, cfg["groups"])
    if suffix in VIDEO_SUFFIXES:
        if cfg["extractor"] != "face_crops":
            raise ConfigError(
                f"features.visual.extractor: {cfg['extractor']!r} reads OpenFace CSVs, but {path} is a "
                "video; set extractor: face_crops (allowed values: openface, face_crops)"
            )
        frames, valid = face_crops(path, cfg["fps"], cfg["face_crops"])
        if not valid.any():
            raise VideoError(
                f"{path}: no face found in any of its {len(valid)} frames sampled at {cfg['fps']:g} fps "
                "(features.visual.face_crops: lower min_neighbors or min_face to find more)"
            )
        return frames, valid
    raise VideoError(
        f"{path}: unknown visual file type {suffix!r}; allowed: .csv (OpenFace), {', '.join(VIDEO_SUFFIXES)} (video)"
    )


def extract_visual(path: str | Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, D) of one OpenFace CSV or video and its valid-frame mask (a reduced frame is valid if any was)."""
    return reduce_visual(*read_visual(path, cfg), cfg["rate_reduction"])


def visual_dim(cfg: dict) -> int:
    if cfg["extractor"] == "face_crops":
        return cfg["face_crops"]["size"] ** 2
    return len(openface_columns(cfg["groups"]))
