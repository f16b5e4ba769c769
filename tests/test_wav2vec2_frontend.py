"""The optional frozen wav2vec2 audio front-end (`features.audio.extractor: wav2vec2`, docs/methods.md §5.1): random
weights for speed, and `pretrained` weights only from a local torch hub cache that the tests write themselves."""

from __future__ import annotations

import copy
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from mer_core.config import ConfigError, load_params
from mer_core.data import features
from mer_core.data.features import extract_audio, wav2vec2_features
from mer_core.data.media import read_wav
from mer_core.data.prepare import _corrupt_audio, corruption_specs
from mer_core.params.data import WAV2VEC2_BUNDLES, Features
from mer_core.schema import check

ROOT = Path(__file__).resolve().parents[1]
RANDOM = {"bundle": "WAV2VEC2_BASE", "layer": 2, "weights": "random"}


@pytest.fixture
def feat_cfg() -> dict:
    """`features` of params.yaml with the wav2vec2 extractor on random weights (2 layers)."""
    cfg = load_params(
        ROOT / "params.yaml",
        {
            "features.audio.extractor": "wav2vec2",
            "features.audio.rate_reduction": 1,
            "features.audio.wav2vec2": dict(RANDOM),
        },
    )["features"]
    assert check(Features, cfg, "features").model_dump() == cfg
    return cfg


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub dir under tmp_path, no model cached in this process; any download attempt fails the test."""

    def no_download(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for module, name in [
        (torch.hub, "load_state_dict_from_url"),
        (torch.hub, "download_url_to_file"),
        (torchaudio._internal, "load_state_dict_from_url"),
        (torchaudio.pipelines._wav2vec2.utils, "load_state_dict_from_url"),
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
    ]:
        monkeypatch.setattr(module, name, no_download)
    features.wav2vec2_model.cache_clear()
    yield tmp_path / "torch" / "hub" / "checkpoints"
    features.wav2vec2_model.cache_clear()  # nothing loaded from this hub outlives the test


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (
        0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=len(t))
    ).astype(np.float32)


def test_bundle_choices_are_pretrained_wav2vec2_bundles():
    for name in WAV2VEC2_BUNDLES:
        bundle = getattr(torchaudio.pipelines, name)
        assert type(bundle) is torchaudio.pipelines.Wav2Vec2Bundle, name  # not an ASR / alignment bundle
        assert bundle.sample_rate == features.SAMPLE_RATE and bundle._model_type in ("Wav2Vec2", "WavLM")


def test_random_weights_shape_determinism_and_frozen():
    wave = speech_like(1.5)
    frames = wav2vec2_features(wave, RANDOM)
    assert frames.dtype == np.float32 and frames.shape[1] == 768 and np.isfinite(frames).all()
    assert abs(len(frames) - 1.5 * 50) <= 2
    model = features.wav2vec2_model("WAV2VEC2_BASE", 2, "random")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert len(model.encoder.transformer.layers) == 2
    features.wav2vec2_model.cache_clear()  # a second load gives the same weights and features
    assert features.wav2vec2_model("WAV2VEC2_BASE", 2, "random") is not model
    np.testing.assert_array_equal(wav2vec2_features(wave, RANDOM), frames)


def test_layer_truncation():
    wave = speech_like(1.0)
    two, twelve = (wav2vec2_features(wave, dict(RANDOM, layer=k)) for k in (2, 12))
    assert two.shape == twelve.shape and not np.allclose(two, twelve)
    full = features.wav2vec2_model("WAV2VEC2_BASE", 12, "random")  # same seed: the same first two layers
    with torch.inference_mode():
        hidden, _ = full.extract_features(torch.from_numpy(wave)[None], num_layers=2)
    np.testing.assert_allclose(two, hidden[-1][0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"features\.audio\.wav2vec2\.layer: got 13; WAV2VEC2_BASE has 12"):
        wav2vec2_features(wave, dict(RANDOM, layer=13))
    with pytest.raises(ConfigError, match=r"features\.audio\.wav2vec2\.layer: got 25; WAVLM_LARGE has 24"):
        features.audio_dim({"extractor": "wav2vec2", "wav2vec2": dict(RANDOM, bundle="WAVLM_LARGE", layer=25)})


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "bundle",
            "WAV2VEC2_ASR_BASE_960H",
            r"features\.audio\.wav2vec2\.bundle: got 'WAV2VEC2_ASR_BASE_960H'; "
            r"Input should be 'WAV2VEC2_BASE', 'WAV2VEC2_LARGE', .*'WAVLM_LARGE'",
        ),
        (
            "weights",
            "finetuned",
            r"features\.audio\.wav2vec2\.weights: got 'finetuned'; "
            r"Input should be 'pretrained' or 'random'",
        ),
        ("layer", 0, r"features\.audio\.wav2vec2\.layer: got 0; Input should be greater than or equal to 1"),
    ],
)
def test_params_validation(feat_cfg, key, value, message):
    bad = copy.deepcopy(feat_cfg)
    bad["audio"]["wav2vec2"][key] = value
    with pytest.raises(ConfigError, match=message):
        check(Features, bad, "features")
    del bad["audio"]["wav2vec2"]  # left out: the defaults (the base model at 12 layers, pretrained weights)
    assert check(Features, bad, "features").audio.wav2vec2.model_dump() == {
        "bundle": "WAV2VEC2_BASE",
        "layer": 12,
        "weights": "pretrained",
    }


def test_pretrained_missing_weights_name_the_file_and_never_download(offline_hub):
    expected = offline_hub / "wav2vec2_fairseq_base_ls960.pth"
    assert features.wav2vec2_weights_path(torchaudio.pipelines.WAV2VEC2_BASE) == expected
    with pytest.raises(FileNotFoundError, match=r"features\.audio\.wav2vec2\.weights") as info:
        wav2vec2_features(speech_like(0.5), dict(RANDOM, weights="pretrained"))
    assert str(expected) in str(info.value) and "weights: random" in str(info.value)
    assert not expected.exists()


def test_pretrained_loads_from_the_hub_cache(offline_hub):
    wave = speech_like(1.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # other weights than `random`'s
        source = torchaudio.models.wav2vec2_model(**torchaudio.pipelines.WAV2VEC2_BASE._params).eval()
    offline_hub.mkdir(parents=True)
    torch.save(source.state_dict(), offline_hub / "wav2vec2_fairseq_base_ls960.pth")
    loaded = wav2vec2_features(wave, dict(RANDOM, layer=12, weights="pretrained"))
    with torch.inference_mode():
        np.testing.assert_array_equal(loaded, source(torch.from_numpy(wave)[None])[0][0].numpy())


def test_extraction_entry_point_and_corruptions(tmp_path, feat_cfg):
    path = tmp_path / "clip.wav"
    sf.write(path, speech_like(1.3, rate=22050), 22050)  # read_wav resamples to 16 kHz: 20800 samples
    cfg = dict(feat_cfg["audio"], rate_reduction=3)
    frames, valid = extract_audio(path, cfg)
    n = (20800 - 400) // 320 + 1  # 64 frames of the CNN encoder (400-sample receptive field, 320 stride)
    assert frames.shape == (-(-n // 3), 768) == (22, features.audio_dim(cfg)) and valid.all()
    full = wav2vec2_features(read_wav(path), cfg["wav2vec2"])
    assert len(full) == n
    np.testing.assert_allclose(frames, features.reduce_rate(full, 3), rtol=1e-6)
    assert features.audio_frame_rate(cfg) == pytest.approx(50 / 3)
    with pytest.raises(features.AudioError, match="shorter than one 25.0 ms frame"):
        features.wave_features(np.zeros(399, np.float32), cfg, "short.wav")
    feat_cfg["corruptions"].update(audio_noises=["white"], audio_snr_db=[0.0])
    specs = corruption_specs(feat_cfg, ("audio",))
    noisy = _corrupt_audio(0, str(path), [], dict(feat_cfg, audio=cfg), specs, {})["audio_white_0db"]
    assert noisy.shape == frames.shape and not np.allclose(noisy, frames)
