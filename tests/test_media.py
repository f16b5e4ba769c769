"""Real media decoding (mer_core.data.media) and face crops (mer_core.data.faces): audio tracks of FLV / MP4 / AVI
files, video sampling by timestamp, the Haar face detector on a drawn face, box smoothing, crops, the
`features.visual` dispatch and its params, and the prepare step's extraction on videos."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torchaudio
from media import draw_frame, face_box, speech_like, write_video, write_wav

from mer_core.config import ConfigError, load_params
from mer_core.data.faces import crop_face, detect_face, face_crops, smooth_boxes
from mer_core.data.features import extract_audio, extract_visual, read_visual, visual_dim
from mer_core.data.media import AudioError, VideoError, read_audio, read_container_audio, read_wav, sample_video
from mer_core.data.prepare import INPUT_ERRORS, corruption_specs, extract_all
from mer_core.params.data import Features
from mer_core.schema import check

ROOT = Path(__file__).resolve().parents[1]
CROPS = {"size": 32, "min_neighbors": 5, "min_face": 0.15, "smooth_frames": 5, "margin": 1.2, "max_side": 640}
VISUAL = {"extractor": "face_crops", "groups": ["pose"], "fps": 25.0, "rate_reduction": 1, "face_crops": CROPS}
LOGMEL = {"extractor": "logmel", "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0, "rate_reduction": 1}


def resampled(wave: np.ndarray, rate: int) -> np.ndarray:
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000).numpy()


def best_lag_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[float, int]:
    """The highest Pearson correlation of `decoded[lag:]` with `reference` over lags 0..max_lag, and its lag."""
    n = len(reference) - max_lag
    scores = [np.corrcoef(decoded[lag : lag + n], reference[:n])[0, 1] for lag in range(max_lag + 1)]
    return float(max(scores)), int(np.argmax(scores))


# ================================================================================================ audio


@pytest.mark.parametrize(
    "suffix, rate, max_delay_s",
    [
        (".flv", 22050, 0.08),  # MP3 in FLV: no gapless info, the encoder's ~1105 priming samples stay
        (".mp4", 16000, 0.0),  # AAC in MP4: the edit list removes the priming
        (".avi", 44100, 0.0),  # PCM
    ],
)
def test_audio_track_matches_the_muxed_wave(tmp_path, suffix, rate, max_delay_s):
    wave = speech_like(1.5, rate)
    path = write_video(tmp_path / f"clip{suffix}", seconds=1.5, audio=wave, audio_rate=rate)
    decoded = read_audio(path)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) / 16000 - 1.5) < 0.1  # 16 kHz, the clip's duration up to codec padding
    score, lag = best_lag_correlation(decoded, resampled(wave, rate), max_lag=1600)
    assert score > 0.98, f"{suffix}: correlation {score:.3f}"
    assert lag / 16000 <= max_delay_s + 0.005


def test_wav_path_is_unchanged_and_dispatch_is_by_suffix(tmp_path):
    wave = write_wav(tmp_path / "clip.wav", 0.5, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(tmp_path / "clip.wav"), wave)
    np.testing.assert_array_equal(read_audio(tmp_path / "clip.wav"), read_wav(tmp_path / "clip.wav"))
    write_wav(tmp_path / "CLIP.FLAC", 0.5, 22050, channels=2)  # suffix case does not matter
    assert len(read_audio(tmp_path / "CLIP.FLAC")) == 8000
    with pytest.raises(AudioError) as info:
        read_audio(tmp_path / "clip.ogv")
    assert "clip.ogv" in str(info.value) and "'.ogv'" in str(info.value) and ".flv" in str(info.value)


def test_video_audio_gives_the_same_features_as_its_wav(tmp_path):
    wave = speech_like(1.2, 16000)
    write_wav(tmp_path / "clip.wav", wave=wave, rate=16000, subtype="FLOAT")
    path = write_video(tmp_path / "clip.avi", seconds=1.2, audio=wave, audio_rate=16000)  # PCM: lossless
    from_wav, _ = extract_audio(tmp_path / "clip.wav", LOGMEL)
    from_video, valid = extract_audio(path, LOGMEL)
    assert from_video.shape == from_wav.shape == (1 + (19200 - 400) // 160, 40) and valid.all()
    np.testing.assert_allclose(from_video, from_wav, atol=0.02)  # 16-bit PCM rounding only


@pytest.mark.parametrize("content", [b"", b"FLV\x01\x05 truncated header", b"\x00\x00\x00\x18ftypmp42 not a movie"])
def test_unreadable_container_raises_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert str(path) in str(info.value)


def test_missing_or_silent_video_raises_audio_error(tmp_path):
    with pytest.raises(AudioError, match="gone.flv"):
        read_container_audio(tmp_path / "gone.flv")
    silent = write_video(tmp_path / "silent.mp4", seconds=0.4)
    with pytest.raises(AudioError, match=f"{silent}: the file has no audio track"):
        read_audio(silent)
    assert isinstance(AudioError("x"), INPUT_ERRORS)


# ================================================================================================ video sampling


def index_frames(n: int) -> list[np.ndarray]:
    """Frames whose brightness encodes their index (10 x k)."""
    return [np.full((120, 160, 3), 10 * k, np.uint8) for k in range(n)]


def indices(samples: list[np.ndarray]) -> list[int]:
    return [int(round(float(s.mean()) / 10)) for s in samples]


@pytest.mark.parametrize("suffix", [".flv", ".mp4"])
def test_sampling_by_timestamp_at_lower_and_higher_rates(tmp_path, suffix):
    path = write_video(tmp_path / f"count{suffix}", fps=25.0, frames=index_frames(25))  # 1 s
    at_10 = sample_video(path, 10.0, 640)
    assert len(at_10) == 10 and at_10[0].dtype == np.uint8 and at_10[0].shape == (120, 160)
    assert indices(at_10) == [int(k * 2.5) for k in range(10)]  # the frame on screen at k / 10 s
    at_30 = sample_video(path, 30.0, 640)
    assert len(at_30) == 30 and indices(at_30) == [int(k * 25 / 30 + 1e-9) for k in range(30)]
    assert at_30[1] is at_30[0]  # a repeated frame, not a copy
    assert len(sample_video(path, 7.0, 640)) == 7 == round(1.0 * 7.0)


def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path):
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54]  # a stall after frame 2 and after frame 4
    path = write_video(tmp_path / "vfr.mp4", frames=index_frames(7), times=times)
    samples = sample_video(path, 10.0, 640)
    assert len(samples) == round((0.54 + 0.04) * 10)  # the median interval closes the last frame: 0.58 s
    assert indices(samples) == [0, 2, 3, 4, 4, 5]  # on screen at 0, .1, .2, .3, .4, .5 s; frame-index sampling
    # would have given [0, 2, 5, ...]


def test_large_frames_are_downscaled_to_max_side(tmp_path):
    path = write_video(tmp_path / "big.mp4", seconds=0.2, size=(320, 240))
    assert sample_video(path, 25.0, 160)[0].shape == (120, 160)
    assert sample_video(path, 25.0, 640)[0].shape == (240, 320)


@pytest.mark.parametrize("content", [b"", b"FLV\x01\x05 truncated header", b"garbage" * 50])
def test_unreadable_video_raises_video_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.flv"
    path.write_bytes(content)
    with pytest.raises(VideoError) as info:
        sample_video(path, 25.0, 640)
    assert str(path) in str(info.value)
    with pytest.raises(VideoError, match="gone.mp4: no such video file"):
        sample_video(tmp_path / "gone.mp4", 25.0, 640)


# ================================================================================================ faces


@pytest.mark.parametrize("t", [0.0, 0.3, 0.9])
def test_the_drawn_face_is_detected_where_it_is_drawn(t):
    grey = cv2.cvtColor(draw_frame(t), cv2.COLOR_BGR2GRAY)
    box = detect_face(grey, min_neighbors=5, min_face=0.15)
    cx, cy, height = face_box(t)
    assert box is not None and box.shape == (3,)
    assert abs(box[0] - cx) < 3 and abs(box[1] - cy) < 3
    assert 0.9 * height < box[2] < 1.3 * height
    assert detect_face(cv2.cvtColor(draw_frame(t, face=False), cv2.COLOR_BGR2GRAY), 5, 0.15) is None
    assert detect_face(grey, 5, min_face=0.9) is None  # no face that large


@pytest.mark.parametrize("suffix", [".flv", ".mp4"])
def test_face_crops_of_a_drawn_face_are_found_and_centred(tmp_path, suffix):
    path = write_video(tmp_path / f"face{suffix}", seconds=1.0, fps=25.0)
    crops, valid = face_crops(path, 25.0, CROPS)
    assert crops.shape == (25, 32 * 32) and crops.dtype == np.float32 and valid.dtype == bool
    assert valid.mean() >= 0.9
    assert (crops[~valid] == 0).all() and 0.0 <= crops.min() and crops.max() <= 1.0
    mean = crops[valid].mean(axis=0).reshape(32, 32)
    assert np.corrcoef(mean.ravel(), mean[:, ::-1].ravel())[0, 1] > 0.9  # left-right symmetric: centred in x
    eyes, cheeks, edge = mean[12:15, 6:12].mean(), mean[18:21, 6:12].mean(), mean[15:18, 0:2].mean()
    assert eyes < cheeks - 0.15  # the dark eyes sit above the bright cheeks: centred in y at the right scale
    assert edge < cheeks - 0.1  # the background shows at the sides: the whole face is in the crop
    spread = crops[valid].std(axis=0).mean()
    assert spread < 0.05  # the smoothed box follows the drifting face: crops barely change


def test_no_face_video_gives_all_invalid_zero_frames_and_read_visual_names_it(tmp_path):
    path = write_video(tmp_path / "empty.flv", seconds=0.6, fps=25.0, face=False)
    crops, valid = face_crops(path, 25.0, CROPS)
    assert crops.shape == (15, 1024) and not valid.any() and (crops == 0).all()
    with pytest.raises(VideoError) as info:
        read_visual(path, VISUAL)
    assert str(path) in str(info.value) and "no face found in any of its 15 frames" in str(info.value)
    assert "features.visual.face_crops" in str(info.value)


def test_face_crops_sampled_at_fps_give_round_duration_times_fps_rows(tmp_path):
    path = write_video(tmp_path / "face.mp4", seconds=1.2, fps=25.0)
    for fps in (10.0, 7.0, 30.0):
        crops, valid = face_crops(path, fps, CROPS)
        assert len(crops) == len(valid) == round(1.2 * fps)


def test_smooth_boxes_known_values_and_gaps():
    nan = np.nan
    boxes = np.array([[10, 20, 30], [nan, nan, nan], [12, 21, 31], [40, 22, 29], [11, 23, 32], [13, 24, 30.0]])
    out = smooth_boxes(boxes, 3)
    assert np.isnan(out[1]).all() and not np.isnan(np.delete(out, 1, axis=0)).any()
    # found rows 0, 2, 3, 4, 5; a centred window of 3 found boxes (2 at the ends), column-wise medians
    np.testing.assert_allclose(out[0], np.median(boxes[[0, 2]], axis=0))
    np.testing.assert_allclose(out[2], [12, 21, 30])  # rows 0, 2, 3
    np.testing.assert_allclose(out[3], [12, 22, 31])  # rows 2, 3, 4: the outlier x = 40 is gone
    np.testing.assert_allclose(out[5], np.median(boxes[[4, 5]], axis=0))
    np.testing.assert_array_equal(smooth_boxes(boxes, 1), boxes)
    assert np.isnan(smooth_boxes(np.full((3, 3), nan), 5)).all()


def test_smoothing_reduces_the_jitter_of_a_jittered_box():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 25.0
    truth = np.stack([80 + 5 * np.sin(t), 60 + 3 * np.cos(t), 70 + 0 * t], axis=1)
    jittered = truth + rng.normal(0, 2.0, truth.shape)
    jittered[rng.choice(200, 40, replace=False)] = np.nan  # missed detections
    smoothed = smooth_boxes(jittered, 5)
    found = ~np.isnan(jittered).any(axis=1)
    raw_error = np.abs(jittered[found] - truth[found]).mean()
    assert np.abs(smoothed[found] - truth[found]).mean() < 0.7 * raw_error
    assert np.abs(np.diff(smoothed[found], axis=0)).mean() < 0.5 * np.abs(np.diff(jittered[found], axis=0)).mean()


def test_crop_face_known_values():
    grey = np.zeros((100, 100), np.uint8)
    grey[40:60, 30:50] = 255  # a bright 20 x 20 square centred at (39.5, 49.5): pixel centres are integers
    crop = crop_face(grey, np.array([39.5, 49.5, 20.0]), size=10, margin=1.0).reshape(10, 10)
    assert crop.dtype == np.float32 and crop.shape == (10, 10)
    np.testing.assert_allclose(crop, 1.0)
    wide = crop_face(grey, np.array([39.5, 49.5, 20.0]), size=8, margin=2.0).reshape(8, 8)
    np.testing.assert_allclose(wide[2:6, 2:6], 1.0)
    assert (wide[[0, 7]] == 0).all() and (wide[:, [0, 7]] == 0).all()
    edge = np.tile(np.arange(100, dtype=np.uint8), (100, 1))  # brightness = column index
    outside = crop_face(edge, np.array([-0.5, 49.5, 20.0]), size=20, margin=1.0).reshape(20, 20)
    assert (outside[:, :10] == 0).all()  # left of the frame: the border column replicated
    assert outside[0, 19] == pytest.approx(9 / 255, abs=1e-6)
    assert crop_face(grey, np.array([39.5, 49.5, 4.0]), size=16, margin=1.0).shape == (256,)  # upsampled


# ================================================================================================ dispatch, params


def test_read_visual_dispatch_errors_name_the_key_and_file(tmp_path):
    csv = tmp_path / "clip.csv"
    csv.write_text("frame, success\n1, 1\n")
    with pytest.raises(ConfigError) as info:
        read_visual(csv, VISUAL)
    assert "features.visual.extractor" in str(info.value) and str(csv) in str(info.value)
    assert "openface, face_crops" in str(info.value)
    video = write_video(tmp_path / "clip.flv", seconds=0.2)
    with pytest.raises(ConfigError) as info:
        read_visual(video, dict(VISUAL, extractor="openface"))
    assert "features.visual.extractor" in str(info.value) and str(video) in str(info.value)
    assert "face_crops" in str(info.value)
    with pytest.raises(VideoError, match=r"clip.txt: unknown visual file type '.txt'; allowed: .csv"):
        read_visual(tmp_path / "clip.txt", VISUAL)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoError, match=str(bad)):
        extract_visual(bad, VISUAL)


def test_extract_visual_reduces_the_rate_of_crops(tmp_path):
    path = write_video(tmp_path / "face.mp4", seconds=0.6, fps=25.0)
    frames, valid = extract_visual(path, VISUAL)
    assert frames.shape == (15, 1024) and valid.all() and visual_dim(VISUAL) == 1024
    halved, ok = extract_visual(path, dict(VISUAL, rate_reduction=2))
    assert halved.shape == (8, 1024) and ok.all()
    np.testing.assert_allclose(halved[0], (frames[0] + frames[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(halved[7], frames[14], atol=1e-6)  # the ragged tail


def test_visual_params_schema():
    params = load_params(ROOT / "params.yaml")
    visual = params["features"]["visual"]
    assert visual["extractor"] == "openface" and visual["face_crops"]["size"] == 64
    assert visual_dim(visual) == 17 + 6 + 8
    assert visual_dim(dict(visual, extractor="face_crops")) == 64 * 64
    for key, value, message in [
        ("extractor", "dlib", "features.visual.extractor: got 'dlib'; Input should be 'openface' or 'face_crops'"),
        ("face_crops.size", 4, "features.visual.face_crops.size"),
        ("face_crops.smooth_frames", 0, "features.visual.face_crops.smooth_frames"),
        ("face_crops.min_face", 1.5, "features.visual.face_crops.min_face"),
        ("face_crops.max_side", 2.0, "features.visual.face_crops.max_side"),
    ]:
        broken = copy.deepcopy(params["features"])
        section, leaf = (
            (broken["visual"], key) if "." not in key else (broken["visual"]["face_crops"], key.split(".")[1])
        )
        section[leaf] = value
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            check(Features, broken, "features")
    missing = copy.deepcopy(params["features"])
    del missing["visual"]["face_crops"]  # a section left out takes its defaults
    assert check(Features, missing, "features").visual.face_crops.size == 64
    with pytest.raises(
        ConfigError,
        match=r"features\.visual\.face_crops\.sise: unknown key; allowed keys here: "
        r"size, ",
    ):
        check(Features, {"visual": {"face_crops": {"sise": 32}}}, "features")


# ================================================================================================ prepare


@pytest.fixture
def video_clips(tmp_path):
    """Three clips with audio-visual MP4s (one of them corrupt) in the columns an adapter lists."""
    rows = []
    for k in range(3):
        path = tmp_path / f"clip{k}.mp4"
        if k == 1:
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
        else:
            write_video(path, seconds=0.8, fps=25.0, audio=speech_like(0.8, 16000, seed=k), audio_rate=16000)
        rows.append(
            {
                "clip_id": f"clip{k}",
                "speaker": f"s{k}",
                "label": "neutral",
                "audio_path": str(path),
                "visual_path": str(path),
            }
        )
    return pd.DataFrame(rows)


def feature_params(**visual) -> dict:
    cfg = copy.deepcopy(load_params(ROOT / "params.yaml")["features"])
    cfg["visual"].update(extractor="face_crops", fps=10.0, rate_reduction=1, **visual)
    cfg["visual"]["face_crops"]["size"] = 16
    return cfg


def test_extract_all_on_videos_skips_and_lists_the_bad_file(video_clips):
    cfg = feature_params()
    specs = corruption_specs(
        dict(cfg, corruptions=dict(cfg["corruptions"], visual_dropout=[0.5], dropout_burst_s=0.2)), ("visual",)
    )
    out, errors, variants = extract_all(video_clips, ("audio", "visual"), cfg, "skip", specs)
    assert sorted(out) == [(0, "audio"), (0, "visual"), (2, "audio"), (2, "visual")]
    assert {(index, modality) for index, modality, _, _ in errors} == {(1, "audio"), (1, "visual")}
    assert all(path == video_clips.at[1, "visual_path"] and path in message for _, _, path, message in errors)
    frames, valid = out[(0, "visual")]
    assert frames.shape == (8, 256) and valid.all()
    assert out[(0, "audio")][0].shape[1] == 40
    dropped_frames, dropped = variants[("visual_dropout_50", 0)]
    assert dropped_frames.shape == (8, 256) and dropped.sum() == 4  # half the crops turned into failures
    assert (dropped_frames[~dropped] == 0).all()
    np.testing.assert_array_equal(dropped_frames[dropped], frames[dropped])
    with pytest.raises(VideoError, match="clip1.mp4"):
        extract_all(video_clips.loc[[1]], ("visual",), cfg, "raise")
