"""mer_core.explore: the explorer's clip table, one-clip predictions under a condition and a noise setting, the noise
sweep, the clip's media, its face heat-map, the `explore` params and the widget panel (on the tiny store)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import resolved_run
from media import write_wav
from torch import nn

from mer_core.conditions import all_conditions
from mer_core.config import ConfigError, load_params, resolve_runs, stage_params
from mer_core.data.batches import Batch, load_fold
from mer_core.data.openface import AU_INTENSITY, POSE
from mer_core.data.store import FeatureStore, Sequences, read_store, write_store
from mer_core.evaluate import predict
from mer_core.explore import (
    Explorer,
    affected,
    available_runs,
    clip_table,
    clip_wave,
    default_emotion,
    face_matrix,
    kind_levels,
    load_run,
    media_files,
    noise_settings,
    noise_sweep,
    numbered_widget_ids,
    panel,
    predict_clip,
    resolve_setting,
    select_clip,
    spectrogram,
)
from mer_core.robustness import corrupted_split
from mer_core.train import fit_run

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
CPU = torch.device("cpu")
AUDIO_ONLY, FULL = ("audio",), ("audio", "visual")


class Recorder(nn.Module):
    """Records the batches it is given; returns logits from the mean of each modality's frames over the clip's length
    (a function of what it sees, not of the padding, so that zero-filled and noised inputs give different
    probabilities)."""

    def __init__(self, n_classes: int = 6):
        super().__init__()
        self.n_classes = n_classes
        self.seen: list[Batch] = []

    def forward(self, batch: Batch) -> torch.Tensor:
        self.seen.append(batch)
        means = torch.cat([batch.x[m].sum(1) / batch.lengths[m].clamp(min=1)[:, None] for m in batch.modalities], 1)
        return means[:, : self.n_classes].repeat(1, self.n_classes)[:, : self.n_classes]


def explore_cfg(**changes) -> dict:
    return {
        "run": "utt_fusion",
        "fold": 0,
        "seed": 0,
        "emotion": "anger",
        "speaker": None,
        "clip": None,
        "condition": "a",
        "noise": "gaussian",
        "level": 20,
        "draws": 4,
        **changes,
    }


def explore_params(params: dict, **changes) -> dict:
    """The explore stage's resolved params (data/params/explore.json) of validated `params` with `explore` set."""
    params = copy.deepcopy(params)
    params["explore"].update(explore_cfg(**changes))
    return stage_params(params, resolve_runs(params))["explore.json"]


@pytest.fixture
def study(tiny_store, tiny_params, tmp_path):
    """The tiny store, the explore stage's params, and a trained utt_fusion checkpoint of fold 0, seed 0 under
    <tmp_path>/checkpoints (the explorer's `checkpoints`)."""
    params = tiny_params(tiny_store, epochs=1)
    checkpoints = tmp_path / "checkpoints"
    fit_run(resolved_run("utt_fusion", params), 0, 0, checkpoints / "utt_fusion", show_progress=False)
    return tiny_store, explore_params(params), checkpoints


# ================================================================================================ params


def test_explore_params_are_validated_with_errors_naming_the_key():
    params = load_params(PARAMS_FILE)
    assert params["explore"]["run"] is None or params["explore"]["run"] in params["methods"]
    for overrides, message in [
        ({"explore.run": "nope"}, "explore.run: 'nope' is not a run of `methods`"),
        (
            {"explore.noise": "pink"},
            "explore.noise: got 'pink'; Input should be 'none', 'gaussian', 'impulse', 'babble'",
        ),
        ({"explore.seed": 7}, "explore.seed: 7 is not one of train.seeds"),
        ({"explore.level": 2.5}, "explore.level: feature noise 'gaussian' takes T, an integer >= 1, got 2.5"),
        ({"explore.draws": 0}, "explore.draws: got 0"),
        ({"explore.fold": -1}, "explore.fold: got -1"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_params(PARAMS_FILE, overrides)


def test_the_explore_stage_params_hold_the_trained_runs_and_what_the_explorer_reads(tiny_store, tiny_params):
    params = tiny_params(tiny_store, runs=["utt_fusion", "mmin"])
    cfg = explore_params(params, run=None, condition=None)
    assert list(cfg["runs"]) == ["utt_fusion", "mmin"]  # the runs trained, with their summaries
    assert cfg["runs"]["mmin"]["method"] == "mmin" and cfg["store"] == str(tiny_store.root)
    assert cfg["run"] is None and cfg["condition"] is None and cfg["task"] == "classification"
    assert cfg["robustness"] == params["robustness"] and "synthetic" not in cfg["data"]
    assert set(cfg["code"]) == {"mer_core/losses.py", "mer_core/methods/baselines.py", "mer_core/methods/mmin.py"}


def test_store_dependent_choices_fail_with_the_key_and_the_allowed_values(study):
    store, params, checkpoints = study
    for key, value, message in [("fold", 9, r"explore.fold: got 9; the feature store's folds: \[0, 1, 2, 3\]")]:
        with pytest.raises(ConfigError, match=message):
            Explorer.open({**params, key: value}, checkpoints=checkpoints)
    explorer = Explorer.open(params, checkpoints=checkpoints)
    for key, value, message in [
        ("condition", "x", "explore.condition: unknown condition 'x'; allowed: a, v, av"),
        ("noise", "babble", "explore.noise: the feature store holds no 'babble' corruption"),
        ("emotion", "bored", "explore.emotion: got 'bored'; allowed values: anger"),
    ]:
        explorer.params = {**params, key: value}
        with pytest.raises(ConfigError, match=message):
            explorer.selection()
    explorer.params = {**params, "run": None}
    assert explorer.selection()["run"] == "utt_fusion"  # the only trained run with a checkpoint
    explorer.params = {**params, "condition": None}
    assert explorer.selection()["condition"] == "a"  # the first single-modality condition
    empty = Explorer.open({**params, "run": None}, seed=1, checkpoints=checkpoints)
    with pytest.raises(ConfigError, match="explore.run: no trained run has a checkpoint for fold 0, seed 1"):
        empty.selection()


# ============================================================================================ runs and clips


def test_available_runs_are_those_with_a_checkpoint(study):
    store, params, root = study
    assert available_runs(["mmin", "utt_fusion", "vavl"], root, 0, 0) == ["utt_fusion"]
    assert available_runs(["mmin", "utt_fusion"], root, 1, 0) == []
    assert isinstance(load_run(root, "utt_fusion", 0, 0), nn.Module)
    with pytest.raises(FileNotFoundError, match=r"fold1-seed0.pt: no checkpoint of run 'utt_fusion'"):
        load_run(root, "utt_fusion", 1, 0)


def test_clip_table_holds_the_folds_test_clips_and_filters(tiny_store):
    clips = clip_table(tiny_store, 0)
    test_rows = tiny_store.fold_indices(0)["test"]
    assert list(clips["row"]) == list(test_rows)
    assert list(clips.columns) == ["row", "clip_id", "speaker", "label", "gender", "has_audio", "has_visual"]
    assert (clips["clip_id"] == tiny_store.meta["clip_id"].to_numpy()[test_rows]).all()
    speaker = clips["speaker"].iloc[-1]
    sad = select_clip(clips, emotion="sad")
    assert sad["label"] == "sad" and sad["row"] == clips[clips["label"] == "sad"]["row"].min()  # the first one
    both = select_clip(clips, emotion="fear", speaker=int(speaker))  # a speaker id read as a number from YAML
    assert (both["label"], both["speaker"]) == ("fear", speaker)
    assert select_clip(clips, clip=clips["clip_id"].iloc[3])["row"] == clips["row"].iloc[3]
    assert select_clip(clips)["row"] == clips["row"].iloc[0]
    assert select_clip(clips, emotion="any")["row"] == clips["row"].iloc[0]
    with pytest.raises(ConfigError, match="explore.clip: 'nope' is not a test clip of this fold"):
        select_clip(clips, clip="nope")
    with pytest.raises(ConfigError, match="explore.speaker: got '9999'; the fold's test speakers"):
        select_clip(clips, speaker="9999")


def test_default_emotion_is_the_first_class_with_a_test_clip(tiny_store):
    clips = clip_table(tiny_store, 0)
    present = [c for c in tiny_store.classes if (clips["label"] == c).any()]
    assert default_emotion(clips, tiny_store.classes) == present[0]
    assert default_emotion(clips, ["absent", *present[::-1]]) == present[-1]
    speaker = clips["speaker"].iloc[-1]
    own = [c for c in tiny_store.classes if ((clips["label"] == c) & (clips["speaker"] == speaker)).any()]
    assert default_emotion(clips, tiny_store.classes, speaker) == own[0]
    assert default_emotion(clips, ["absent"]) is None


# ============================================================================================ predictions


def test_one_clip_matches_the_evaluation_of_the_whole_test_fold(study):
    store, params, checkpoints = study
    explorer = Explorer.open(params, checkpoints=checkpoints)
    model, none = explorer.model("utt_fusion"), resolve_setting(explorer.settings, "none", 0.0)
    for condition in all_conditions(store.modalities):
        full = predict(model, explorer.test, 32, CPU, [condition])
        for row in explorer.clips["row"].iloc[:5]:
            scores = predict_clip(model, store, explorer.test, row, condition, none, params["robustness"], 0)
            assert scores.shape == (1, 6) and list(scores.columns) == list(store.classes)
            assert scores.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-6)
            expected = full[full["row"] == row][[f"p{k}" for k in range(6)]].to_numpy()
            np.testing.assert_allclose(scores.to_numpy(), expected, atol=1e-5)


def test_feature_noise_draws_are_seeded_distinct_and_sum_to_one(study):
    store, params, checkpoints = study
    explorer = Explorer.open(params, checkpoints=checkpoints)
    model, row = explorer.model("utt_fusion"), int(explorer.clips["row"].iloc[0])
    setting = resolve_setting(explorer.settings, "gaussian", 100)
    scores = predict_clip(model, store, explorer.test, row, AUDIO_ONLY, setting, params["robustness"], 0, draws=8)
    assert scores.shape == (8, 6)
    assert scores.sum(axis=1).to_numpy() == pytest.approx(np.ones(8), abs=1e-6)
    assert len(scores.round(6).drop_duplicates()) > 1  # each draw its own t and noise
    again = predict_clip(model, store, explorer.test, row, AUDIO_ONLY, setting, params["robustness"], 0, draws=8)
    pd.testing.assert_frame_equal(scores, again)  # seeded: a rerun gives the same numbers
    other_fold = predict_clip(model, store, explorer.test, row, AUDIO_ONLY, setting, params["robustness"], 1, draws=8)
    assert not np.allclose(scores.to_numpy(), other_fold.to_numpy())


def test_sweep_starts_zero_filled_and_its_lowest_noise_is_almost_the_real_frames(tiny_store):
    cfg = copy.deepcopy(
        {
            "noise_types": ["gaussian", "impulse"],
            "intensities": [20, 100],
            "schedule": "scaled_linear",
            "beta_start": 0.01,
            "beta_end": 0.5,
            "impulse_density": 0.3,
            "per_sample": False,
            "batch_size": 8,
            "seed": 0,
            "signal": True,
        }
    )
    test = load_fold(tiny_store, 0)["test"]
    settings = noise_settings(tiny_store, cfg)
    row = int(test.rows[np.flatnonzero(test.has.all(1).numpy())[0]])
    model = Recorder()
    sweep = noise_sweep(model, tiny_store, test, row, AUDIO_ONLY, settings, "gaussian", cfg, 0, draws=3)
    assert list(sweep.index) == ["none", "gaussian T=20", "gaussian T=100"]
    assert list(sweep["level"]) == [0.0, 20.0, 100.0]
    assert sweep.drop(columns="level").sum(axis=1).to_numpy() == pytest.approx(np.ones(3), abs=1e-6)
    zero_filled, *noised = model.seen
    assert zero_filled.x["visual"].abs().sum() == 0 and not zero_filled.present[:, 1].any()
    real = test.x["visual"][list(test.rows).index(row), : int(test.lengths["visual"][list(test.rows).index(row)])]
    assert all(batch.present.all() for batch in noised)  # the noised modality counts as present
    # the lowest setting T = 1 (t = 0, sqrt(alpha_bar) = sqrt(0.99)): almost the clip's real face, far from zeros
    model.seen.clear()
    lowest = noise_sweep(model, tiny_store, test, row, AUDIO_ONLY, settings, "gaussian", cfg, 0, draws=3, levels=[1])
    frames = model.seen[-1].x["visual"]
    assert frames.shape == (3, *real.shape)
    np.testing.assert_allclose(frames, real.expand(3, -1, -1) * 0.99**0.5, atol=0.5)
    assert (frames - real).abs().mean() < 0.2 * real.abs().mean()
    assert not np.allclose(lowest.iloc[1, 1:], lowest.iloc[0, 1:])  # noised != zero-filled
    assert lowest.iloc[0].equals(sweep.iloc[0])  # the zero-filled reference does not depend on the levels


@pytest.fixture
def corrupted_store(tiny_store, tmp_path):
    """The tiny store with a white-noise audio variant (frames x 2 + 5) at 10 and 0 dB."""
    manifest = {k: v for k, v in tiny_store.manifest.items() if k != "files"}
    manifest["corruptions"] = [
        {
            "name": f"audio_white_{db}db",
            "modality": "audio",
            "kind": "white",
            "level": float(db),
            "unit": "dB",
            "settings": {},
        }
        for db in (10, 0)
    ]
    seq = tiny_store.sequences["audio"]
    variants = {
        f"audio_white_{db}db": Sequences(seq.data * (2 + db) + 5, seq.offsets, seq.valid, seq.clip_ids)
        for db in (10, 0)
    }
    return read_store(
        write_store(
            tmp_path / "features" / "corrupted",
            tiny_store.meta,
            tiny_store.splits,
            tiny_store.sequences,
            manifest,
            corruptions=variants,
        )
    )


def test_signal_corruption_settings_and_predictions(corrupted_store):
    store = corrupted_store
    cfg = {
        "noise_types": ["gaussian"],
        "intensities": [20],
        "schedule": "scaled_linear",
        "beta_start": 0.01,
        "beta_end": 0.5,
        "impulse_density": 0.3,
        "per_sample": True,
        "batch_size": 8,
        "seed": 0,
        "signal": True,
    }
    settings = noise_settings(store, cfg)
    assert list(settings["label"]) == ["none", "gaussian T=20", "white 10 dB", "white 0 dB"]
    assert kind_levels(settings, "white") == [10.0, 0.0]  # mildest first: the SNR falls
    assert kind_levels(settings, "gaussian") == [20.0]
    with pytest.raises(ConfigError, match=r"explore.level: white has no level 5 in the feature store; allowed: 10, 0"):
        resolve_setting(settings, "white", 5)
    assert resolve_setting(settings, "gaussian", 37)["label"] == "gaussian T=37"  # any T
    test = load_fold(store, 0)["test"]
    row = int(test.rows[2])
    torch.manual_seed(0)
    model = Recorder()
    setting = resolve_setting(settings, "white", 0)
    scores = predict_clip(model, store, test, row, FULL, setting, cfg, 0, draws=5)
    assert scores.shape == (1, 6)  # a prepared corruption is not random: one row
    expected = predict(model, corrupted_split(store, test, "audio_white_0db")[1], 64, CPU, [FULL])
    np.testing.assert_allclose(
        scores.to_numpy(), expected[expected["row"] == row][[f"p{k}" for k in range(6)]], atol=1e-5
    )
    assert affected(setting, FULL, store.modalities) is None
    assert "removes" in affected(setting, ("visual",), store.modalities)
    assert "changes nothing" in affected(resolve_setting(settings, "gaussian", 20), FULL, store.modalities)
    assert affected(resolve_setting(settings, "none", 0), AUDIO_ONLY, store.modalities) is None


# ================================================================================================ media


def test_media_from_a_crema_d_layout_and_the_notes_without_it(tmp_path):
    root = tmp_path / "corpus"
    for k, emotion in enumerate(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]):
        write_wav(root / "AudioWAV" / f"1001_DFA_{emotion}_XX.wav", seconds=0.5 + 0.1 * k)
    data = {"corpus": "crema_d", "root": str(root), "crema_d": {"labels": "intended", "consensus_votes": "audiovisual"}}
    media = media_files(data)
    assert len(media) == 6 and media.loc["1001_DFA_FEA_XX", "audio_path"].endswith("1001_DFA_FEA_XX.wav")
    wave, note = clip_wave(media, "1001_DFA_FEA_XX")
    assert note is None and wave.dtype == np.float32 and len(wave) == 0.7 * 16000
    spec, rate = spectrogram(wave)
    assert rate == 100.0 and spec.shape == (64, 68)  # 64 mel bands x frames of 25 ms every 10 ms in 0.7 s
    assert np.isfinite(spec).all()
    assert clip_wave(media, "1002_DFA_ANG_XX") == (None, "the corpus lists no audio file for clip 1002_DFA_ANG_XX")
    (root / "AudioWAV" / "1001_DFA_SAD_XX.wav").unlink()
    wave, note = clip_wave(media, "1001_DFA_SAD_XX")
    assert wave is None and note.endswith("missing (the corpus listed it; was data.root moved?)")
    package = media_files({"corpus": "iemocap_mmin", "root": str(tmp_path)})
    assert clip_wave(package, "Ses01F_impro01_F000") == (
        None,
        "iemocap_mmin is a feature package: it holds features, no audio or video files",
    )
    absent = media_files({**data, "root": str(tmp_path / "nowhere")})
    assert clip_wave(absent, "1001_DFA_ANG_XX")[1].startswith("the corpus at data.root cannot be listed")


def test_face_matrix_names_the_action_units(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 5, (7, len(AU_INTENSITY) + len(POSE))).astype(np.float32)
    valid = np.array([True, True, False, True, True, True, True])
    meta = pd.DataFrame({"clip_id": ["c1"], "speaker": ["1"], "label": ["anger"]})
    sequences = {"visual": Sequences(frames, np.array([0, 7]), valid, np.array(["c1"]))}
    manifest = {
        "features": {"visual": {"extractor": "openface", "groups": ["pose", "au_r"], "fps": 30.0}},
        "frame_rates": {"visual": 15.0},
    }
    store = FeatureStore(tmp_path, meta, pd.DataFrame(), sequences, manifest)
    face = face_matrix(store, 0)
    assert face.names == AU_INTENSITY and face.values.shape == (17, 7) and face.fps == 15.0
    np.testing.assert_array_equal(face.values[:, 0], frames[0, len(POSE) :])  # the AU columns follow the pose ones
    assert np.isnan(face.values[:, 2]).all() and not np.isnan(face.values[:, valid]).any()
    # no OpenFace features in the store: the clip's raw OpenFace CSV, else the plain feature dimensions
    csv = tmp_path / "c1.csv"
    table = pd.DataFrame(rng.uniform(0, 5, (9, 17)), columns=AU_INTENSITY).assign(success=[1] * 8 + [0])
    table.to_csv(csv, index=False)
    bare = FeatureStore(tmp_path, meta, pd.DataFrame(), sequences, {"frame_rates": {"visual": 15.0}})
    media = pd.DataFrame({"visual_path": [str(csv)]}, index=pd.Index(["c1"], name="clip_id"))
    from_csv = face_matrix(bare, 0, media)
    assert from_csv.names == AU_INTENSITY and from_csv.values.shape == (17, 9) and from_csv.source.endswith("c1.csv")
    assert np.isnan(from_csv.values[:, 8]).all()
    plain = face_matrix(bare, 0)
    assert plain.names[:2] == ["dim 0", "dim 1"] and plain.values.shape == (23, 7)
    assert face_matrix(FeatureStore(tmp_path, meta, pd.DataFrame(), {}, {}), 0) is None


# ================================================================================================ views and panel


def test_view_of_the_default_selection(study):
    store, params, checkpoints = study
    explorer = Explorer.open(params, checkpoints=checkpoints)
    selection = explorer.selection()
    first_anger = explorer.clips[explorer.clips["label"] == "anger"].iloc[0]["clip_id"]
    assert selection == {
        "run": "utt_fusion",
        "clip_id": first_anger,
        "condition": "a",
        "noise": "gaussian",
        "level": 20.0,
    }
    view = explorer.view(selection)
    assert view["scores"].shape == (4, 6)  # explore.draws
    assert list(view["sweep"].index) == ["none", "gaussian T=20", "gaussian T=100"]
    assert view["wave"] is None and "cannot be listed" in view["audio_note"]  # the tiny store has no media
    assert view["face"].names == [f"dim {k}" for k in range(4)]
    assert explorer.view(selection) is view  # cached
    off_grid = explorer.view({**selection, "level": 50.0})
    assert list(off_grid["sweep"]["level"]) == [0.0, 20.0, 50.0, 100.0]


def widget_tree(widget) -> list:
    """`widget`, its layout and style, and the same for every child, depth first."""
    found = [widget, *(x for x in (getattr(widget, "layout", None), getattr(widget, "style", None)) if x is not None)]
    for child in getattr(widget, "children", ()):
        found += widget_tree(child)
    return found


NUMBERED_ID = re.compile(r"e[0-9a-f]{31}")


def test_numbered_widget_ids_are_consecutive_inside_the_block_only():
    import comm
    import ipywidgets as w

    create = comm.create_comm
    with numbered_widget_ids():
        box = w.VBox([w.Dropdown(options=["a", "b"]), w.IntSlider()])
    ids = [x.model_id for x in widget_tree(box)]
    assert all(NUMBERED_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    numbers = sorted(int(i[1:], 16) for i in ids)
    assert numbers == list(range(numbers[0], numbers[0] + len(ids)))  # one process-wide sequence, no gap
    assert comm.create_comm is create  # restored
    outside = w.IntSlider().model_id
    assert not NUMBERED_ID.fullmatch(outside) and outside[12] == "4"  # ipywidgets' own uuid4
    with numbered_widget_ids():
        again = w.IntSlider().model_id
    assert int(again[1:], 16) > numbers[-1]  # never reused within a process: two panels cannot clash


def test_numbered_widget_ids_repeat_in_a_fresh_process():
    """What makes the executed explore notebook the same bytes on a rerun: a fresh kernel numbers its widgets the
    same way."""
    script = (
        "import ipywidgets as w\n"
        "from mer_core.explore import numbered_widget_ids\n"
        "with numbered_widget_ids():\n"
        "    box = w.HBox([w.Dropdown(options=['x']), w.ToggleButtons(options=['a', 'v'])])\n"
        "print(box.model_id, box.children[0].model_id, box.children[1].layout.model_id)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and all(NUMBERED_ID.fullmatch(i) for i in runs[0].split())


def test_panel_filters_clips_and_rerenders_on_change(study):
    store, params, checkpoints = study
    explorer = Explorer.open(params, checkpoints=checkpoints)
    selection = explorer.selection()
    calls = []
    box, controls = panel(explorer, selection, calls.append)
    assert all(NUMBERED_ID.fullmatch(x.model_id) for x in widget_tree(box))
    assert calls == []  # the notebook has just shown the default view: not drawn twice
    assert controls["clip_id"].value == selection["clip_id"]
    assert set(explorer.clips.set_index("clip_id").loc[list(controls["clip_id"].options), "label"]) == {"anger"}
    assert controls["level"].value == 20.0 and [v for _, v in controls["level"].options] == [20.0, 100.0]
    controls["condition"].value = "v"
    assert calls[-1] == {**selection, "condition": "v"}
    controls["emotion"].value = "sad"
    assert calls[-1]["clip_id"] == explorer.clips[explorer.clips["label"] == "sad"].iloc[0]["clip_id"]
    controls["noise"].value = "none"
    assert [v for _, v in controls["level"].options] == [0.0] and calls[-1]["noise"] == "none"
