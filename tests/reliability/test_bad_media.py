"""Reliability: damaged audio and video files. Each case ends in an error naming the file (and saying what is wrong
with it), or, with `data.on_error: skip` / `skip_clip`, in a row of skipped.csv; never in a shorter or silent clip
stored as if it were whole."""

from __future__ import annotations

import numpy as np
import pytest
from corpus_damage import CLIP, csv_of, prepare_fails, skipped_rows, truncate, wav_of, write_samples
from media import speech_like, write_video

from mer_core.data import features as features_module
from mer_core.data.features import extract_audio
from mer_core.data.media import AudioError, VideoError, read_audio, sample_video
from mer_core.data.prepare import prepare

LOGMEL = {"extractor": "logmel", "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0, "rate_reduction": 1}


# ================================================================================================ unreadable


def test_corrupt_wav_raises_naming_the_file(damaged):
    root, params = damaged
    wav_of(root).write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbage")
    prepare_fails(params, AudioError, f"{wav_of(root)}: not a readable audio file")


def test_empty_wav_file_raises_naming_the_file(damaged):
    root, params = damaged
    wav_of(root).write_bytes(b"")
    prepare_fails(params, AudioError, f"{wav_of(root)}: not a readable audio file")


def test_wav_with_a_header_and_no_samples_raises(damaged):
    root, params = damaged
    write_samples(wav_of(root), np.zeros(0, np.float32))
    prepare_fails(params, AudioError, f"{wav_of(root)}: no samples")


def test_wav_shorter_than_one_frame_raises(damaged):
    root, params = damaged
    write_samples(wav_of(root), speech_like(0.005, 16000))  # 80 samples, one logmel frame needs 400
    prepare_fails(params, AudioError, f"{wav_of(root)}: 5.0 ms is shorter than one 25.0 ms frame")


# ================================================================================================ silent


def test_silent_wav_raises_naming_itself_not_a_babble_mix(damaged):
    root, params = damaged
    write_samples(wav_of(root), np.zeros(16000, np.float32))
    info = prepare_fails(params, AudioError, f"^{wav_of(root)}: silent \\(all 16000 samples are 0\\)$")
    assert "babble" not in str(info.value)


def test_silent_wav_with_skip_is_recorded_and_never_a_babble_talker(damaged, capfd):
    root, params = damaged
    write_samples(wav_of(root), np.zeros(16000, np.float32))
    params["data"]["on_error"] = "skip"
    store = prepare(params)  # babble of 2 talkers for every clip: a silent talker would stop the run
    assert skipped_rows(store.root) == [
        [CLIP, "audio", str(wav_of(root)), "silent (all 16000 samples are 0)", "modality dropped"]
    ]
    row = list(store.meta["clip_id"]).index(CLIP)
    assert not store.meta["has_audio"][row] and store.meta["has_visual"][row]
    assert store.corruption("audio_babble_10db")[1].lengths[row] == 0
    assert (store.corruption("audio_babble_10db")[1].lengths > 0).sum() == len(store.meta) - 1
    err = capfd.readouterr().err  # the summary, on the process's stderr
    assert (
        f"prepare: 1 problems with the corpus's files, listed in {store.root / 'skipped.csv'}: 0 clips dropped, "
        f"1 clips kept without audio" in err
    )
    assert f"  {CLIP} audio: modality dropped (silent (all 16000 samples are 0))" in err


# ================================================================================================ truncated


def test_truncated_wav_raises_naming_the_file(damaged):
    root, params = damaged
    truncate(wav_of(root), 0.37)
    prepare_fails(
        params,
        AudioError,
        f"{wav_of(root)}: truncated: the header declares \\d+ frames \\(.* s\\), the file holds \\d+",
    )


def test_truncated_wav_with_skip_drops_the_audio_only(damaged):
    root, params = damaged
    truncate(wav_of(root), 0.37)
    params["data"]["on_error"] = "skip"
    store = prepare(params)
    [[clip, modality, path, reason, action]] = skipped_rows(store.root)
    assert (clip, modality, path, action) == (CLIP, "audio", str(wav_of(root)), "modality dropped")
    assert reason.startswith("truncated: the header declares")
    assert store.manifest["counts"]["skipped"] == 0
    assert store.manifest["counts"]["modalities_dropped"] == {"audio": 1, "visual": 0}
    row = list(store.meta["clip_id"]).index(CLIP)
    assert store.sequences["audio"].lengths[row] == 0 and store.sequences["visual"].lengths[row] > 0


def test_truncated_wav_with_skip_clip_drops_the_clip(damaged):
    root, params = damaged
    truncate(wav_of(root), 0.37)
    params["data"]["on_error"] = "skip_clip"
    store = prepare(params)
    [[clip, modality, path, reason, action]] = skipped_rows(store.root)
    assert (clip, modality, action) == (CLIP, "audio", "clip dropped")
    assert CLIP not in set(store.meta["clip_id"]) and len(store.meta) == 87
    assert store.manifest["counts"]["skipped"] == 1


def test_truncated_container_audio_raises_naming_the_file(tmp_path):
    video = write_video(tmp_path / "clip.flv", seconds=2.0, audio=speech_like(2.0, 22050), audio_rate=22050)
    truncate(video, 0.5)  # FLV's onMetaData still declares 2.05 s
    with pytest.raises(
        AudioError, match=f"{video}: truncated: the container declares 2.050 s, its audio track decodes to 0.9\\d\\d s"
    ):
        read_audio(video)


def test_truncated_video_frames_raise_naming_the_file(tmp_path):
    video = write_video(tmp_path / "clip.flv", seconds=2.0, fps=25.0)
    truncate(video, 0.5)
    with pytest.raises(VideoError, match=f"{video}: truncated: the container declares 5[01] frames, \\d+ decode"):
        sample_video(video, 25.0, 640)


@pytest.mark.parametrize("suffix", [".flv", ".mp4", ".avi"])
def test_whole_containers_are_not_taken_for_truncated(tmp_path, suffix):
    video = write_video(
        tmp_path / f"clip{suffix}", seconds=1.0, fps=25.0, audio=speech_like(1.0, 22050), audio_rate=22050
    )
    assert abs(len(read_audio(video)) / 16000 - 1.0) < 0.1  # codec priming and padding only
    assert len(sample_video(video, 25.0, 640)) == 25


# ================================================================================================ values


def test_float_wav_beyond_full_scale_raises(damaged):
    root, params = damaged
    write_samples(wav_of(root), 4.0 * speech_like(1.0, 16000), subtype="FLOAT")
    prepare_fails(
        params,
        AudioError,
        f"{wav_of(root)}: samples beyond full scale \\(\\|x\\| = \\d.\\d+ at sample "
        "\\d+, .* s; at most 1 is accepted\\)",
    )


def test_float_wav_with_an_infinite_sample_raises(damaged):
    root, params = damaged
    wave = speech_like(1.0, 16000)
    wave[1234] = np.inf
    write_samples(wav_of(root), wave, subtype="FLOAT")
    prepare_fails(params, AudioError, f"{wav_of(root)}: non-finite samples \\(the first at sample 1234, 0.077 s\\)")


def test_non_finite_audio_features_raise_naming_the_file(damaged, monkeypatch):
    root, params = damaged
    real = features_module.audio_features

    def faulty(wave, cfg):  # an extractor that overflows (fault injection)
        frames = real(wave, cfg)
        frames[3, 2] = np.inf
        return frames

    monkeypatch.setattr(features_module, "audio_features", faulty)
    first = sorted((root / "AudioWAV").glob("*.wav"))[0]
    prepare_fails(params, AudioError, f"{first}: features contain NaN or inf")


def test_wav_at_another_rate_is_resampled_to_the_same_frames(damaged, tmp_path):
    root, params = damaged
    wave = speech_like(1.3, 8000)
    write_samples(wav_of(root), wave, rate=8000)
    write_samples(tmp_path / "at16k.wav", speech_like(1.3, 16000))
    store = prepare(params)  # accepted: read at 8 kHz, resampled to 16 kHz
    row = list(store.meta["clip_id"]).index(CLIP)
    assert store.meta["has_audio"][row] and not (store.root / "skipped.csv").exists()
    assert store.sequences["audio"].lengths[row] == -(-len(extract_audio(tmp_path / "at16k.wav", LOGMEL)[0]) // 6)
    assert len(read_audio(wav_of(root))) == 2 * len(wave)
    assert csv_of(root).is_file()
