"""The explorer (notebooks/04_explore.ipynb, `make lab`): one test clip, one trained run, one condition and one noise
setting at a time.

What it holds, each built on the study's own code so that what it shows is what the evaluation computes:

- the runs whose checkpoint of (fold, seed) exists (`available_runs`) and their models (`load_run`, `train.load_model`);
- the test clips of a fold with emotion and speaker (`clip_table`) and the choice of one (`select_clip`);
- the noise settings on offer (`noise_settings`): none (removed modalities zero-filled, MMIN protocol), the feature
  noise of `params.yaml: robustness` replacing the removed modalities (NMER protocol, `NoiseScheduler`, any T), and
  the signal-level corruptions the feature store holds (babble / white noise in the audio at an SNR, face-tracking
  dropout; `robustness.corrupted_split`);
- the class probabilities of one clip under a condition and a setting (`predict_clip`, through `evaluate.predict`),
  and their course as the level of one noise kind rises (`noise_sweep`). NMER's scheduler draws a step
  t ~ U{0, ..., T - 1} and ε per call, so one clip's prediction under feature noise is itself random: the clip is
  replicated `draws` times, each copy with its own t and ε (from a generator seeded by `robustness.seed`, the fold
  and the clip, the same for every level: common random numbers, so the curve moves with the level and not with
  new draws), and the mean is shown;
- the clip's media (`media_files`, `clip_wave`) from the raw corpus (`data.root`, through the corpus adapter), its
  log-mel spectrogram (`spectrogram`, the study's Kaldi fbank) and its face stream (`face_matrix`: the store's
  OpenFace action units x frames, with their column names, else the clip's OpenFace CSV, else the visual features);
- plots of these (`plot_clip`), and the ipywidgets panel that re-renders a view on every change (`panel`).

The explore stage's resolved params (`data/params/explore.json`, `mer_core.config`: `params.yaml: explore` with the
study's task, robustness grid, corpus and runs) set the view the notebook renders first, the one that `dvc repro`
commits (a run or condition left null is picked: `mer_core.study.explore_run`, the first single-modality condition);
what needs the feature store (fold, class, speaker, clip, condition, level) is checked by `Explorer.selection` when
the store is open. Everything runs on the CPU, nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mer_core.conditions import all_conditions, condition_name, parse_condition
from mer_core.data.batches import Split, load_fold, make_split
from mer_core.data.corpora.base import CorpusError
from mer_core.data.corpora.registry import CORPORA
from mer_core.data.features import audio_features
from mer_core.data.media import AudioError, read_audio
from mer_core.data.openface import openface_columns, read_openface_csv
from mer_core.data.prepare import STREAMS
from mer_core.data.store import FeatureStore, read_store
from mer_core.evaluate import predict
from mer_core.noise.scheduler import NOISE_TYPES
from mer_core.robustness import cell_seed, corrupted_split, feature_noise_settings, setting_label
from mer_core.schema import ConfigError
from mer_core.study import explore_run
from mer_core.tasks import study_task
from mer_core.train import checkpoint_path, fold_options, load_model, run_view

CPU = torch.device("cpu")
NONE = "none"
SIGNAL_KINDS = tuple(STREAMS)  # babble, white (audio), tracking_dropout (visual): the store's corruption kinds
CHECKPOINTS = Path("data/checkpoints")  # <checkpoints>/<run>/fold<f>-seed<s>.pt, as the training stages write
SPECTROGRAM = {"extractor": "logmel", "n_mels": 64, "win_ms": 25.0, "hop_ms": 10.0, "rate_reduction": 1}


# ============================================================================================ runs, clips, settings


def available_runs(runs: list[str], root: str | Path, fold: int, seed: int) -> list[str]:
    """The runs among `runs`, in order, whose final checkpoint for (fold, seed) exists under `root`."""
    return [run for run in runs if checkpoint_path(Path(root) / run, fold, seed, None).is_file()]


def run_checkpoint(root: str | Path, run: str, fold: int, seed: int) -> dict:
    """The final checkpoint of `run` for (fold, seed), on the CPU."""
    path = checkpoint_path(Path(root) / run, fold, seed, None)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint of run {run!r} for fold {fold}, seed {seed}; train it "
            f"(`dvc repro train@{run}`) or pick a run that has one"
        )
    return torch.load(path, map_location="cpu")


def load_run(root: str | Path, run: str, fold: int, seed: int) -> nn.Module:
    """The trained model of `run` for (fold, seed), on the CPU in evaluation mode (`train.load_model`)."""
    return load_model(run_checkpoint(root, run, fold, seed))


def clip_table(store: FeatureStore, fold: int) -> pd.DataFrame:
    """The test clips of `fold` in meta.csv order: row (into meta.csv), clip_id, speaker, label and the descriptive
    columns the corpus has (sentence, level, gender), has_<modality>."""
    rows = store.fold_indices(fold)["test"]
    extra = [c for c in ("sentence", "level", "gender") if c in store.meta]
    has = [f"has_{m}" for m in store.modalities]
    table = store.meta.iloc[rows][["clip_id", "speaker", "label", *extra, *has]]
    return table.assign(speaker=table["speaker"].astype(str)).rename_axis("row").reset_index()


def filter_clips(clips: pd.DataFrame, emotion: str | None = None, speaker: str | int | None = None) -> pd.DataFrame:
    """The clips of class `emotion` and speaker `speaker` (None: any)."""
    keep = np.ones(len(clips), dtype=bool)
    if emotion is not None:
        keep &= (clips["label"] == emotion).to_numpy()
    if speaker is not None:
        keep &= (clips["speaker"] == str(speaker)).to_numpy()
    return clips[keep]


def default_emotion(clips: pd.DataFrame, classes: list[str], speaker: str | int | None = None) -> str | None:
    """`explore.emotion: null`: the first of `classes` (the corpus's order) with a test clip in `clips` (of
    `speaker` when given); None when there is none."""
    for emotion in classes:
        if not filter_clips(clips, emotion, speaker).empty:
            return emotion
    return None


def select_clip(
    clips: pd.DataFrame, emotion: str | None = None, speaker: str | int | None = None, clip: str | None = None
) -> pd.Series:
    """The test clip `clip`, or the first test clip of class `emotion` and speaker `speaker` (None or `any`: any).
    A ConfigError names the `explore` key and what is allowed."""
    emotion = None if emotion == "any" else emotion
    if clip is not None:
        match = clips[clips["clip_id"] == clip]
        if match.empty:
            raise ConfigError(
                f"explore.clip: {clip!r} is not a test clip of this fold (e.g. {', '.join(clips['clip_id'].head(3))})"
            )
        return match.iloc[0]
    if emotion is not None and emotion not in set(clips["label"]):
        raise ConfigError(
            f"explore.emotion: got {emotion!r}; allowed values: {', '.join(sorted(set(clips['label'])))}, any (or null)"
        )
    speakers = sorted(set(clips["speaker"]))
    if speaker is not None and str(speaker) not in speakers:
        raise ConfigError(
            f"explore.speaker: got {speaker!r}; the fold's test speakers: {', '.join(speakers)} (or null)"
        )
    match = filter_clips(clips, emotion, speaker)
    if match.empty:
        raise ConfigError(f"explore.emotion / explore.speaker: speaker {speaker} has no {emotion} clip in this fold")
    return match.iloc[0]


def noise_settings(store: FeatureStore, cfg: dict) -> pd.DataFrame:
    """The settings on offer, one row each: noise (none | a feature noise type | a corruption kind), modality
    (`missing` for feature noise: the modalities the condition removes), level, unit (T | dB | fraction), name (the
    store's corruption variant) and label. Feature noise: the types x `robustness.intensities` of `cfg`; the store's
    corruptions: all of them (also when `robustness.signal` is off)."""
    rows = [{"noise": NONE, "modality": "missing", "level": 0.0, "unit": "", "name": "", "label": NONE}]
    rows += [
        {**setting, "name": "", "label": setting_label(setting["noise"], setting["level"], setting["unit"])}
        for setting, _ in feature_noise_settings(cfg)
    ]
    rows += [
        {
            "noise": c["kind"],
            "modality": c["modality"],
            "level": float(c["level"]),
            "unit": c["unit"],
            "name": c["name"],
            "label": setting_label(c["kind"], float(c["level"]), c["unit"]),
        }
        for c in store.corruptions
    ]
    return pd.DataFrame(rows)


def kind_levels(settings: pd.DataFrame, noise: str) -> list[float]:
    """The levels of one noise kind, mildest first (T and fractions rising, SNRs falling); [0.0] for none."""
    part = settings[settings["noise"] == noise]
    return sorted(part["level"], reverse=bool((part["unit"] == "dB").any()))


def resolve_setting(settings: pd.DataFrame, noise: str, level: float) -> dict:
    """The setting (a row of `noise_settings`) of kind `noise` at `level`. Feature noise takes any T >= 1; a signal
    corruption only the levels the store holds. A ConfigError names the key and what is allowed."""
    if noise == NONE:
        return settings.iloc[0].to_dict()
    part = settings[settings["noise"] == noise]
    kinds = list(dict.fromkeys(settings["noise"]))
    if noise in NOISE_TYPES:
        template = (
            part.iloc[0].to_dict() if len(part) else {"noise": noise, "modality": "missing", "unit": "T", "name": ""}
        )
        return {**template, "level": float(level), "label": setting_label(noise, float(level), "T")}
    if part.empty:
        raise ConfigError(
            f"explore.noise: the feature store holds no {noise!r} corruption; allowed here: {', '.join(kinds)}"
        )
    match = part[np.isclose(part["level"], level)]
    if match.empty:
        raise ConfigError(
            f"explore.level: {noise} has no level {level:g} in the feature store; allowed: "
            f"{', '.join(f'{v:g}' for v in part['level'])} ({part['unit'].iloc[0]})"
        )
    return match.iloc[0].to_dict()


# ================================================================================================= predictions


def class_scores(table: pd.DataFrame, targets: tuple[str, ...], task: str) -> pd.DataFrame:
    """A prediction table of `evaluate.predict` as one column per target: the class probabilities (p0.. renamed to
    the class names) for classification, the predicted attribute values for regression."""
    columns = [f"p{k}" for k in range(len(targets))] if task == "classification" else [f"pred_{a}" for a in targets]
    return table[columns].set_axis(list(targets), axis=1).reset_index(drop=True)


@torch.no_grad()
def predict_clip(
    model: nn.Module,
    store: FeatureStore,
    test: Split,
    row: int,
    condition: tuple[str, ...],
    setting: dict,
    cfg: dict,
    fold: int,
    draws: int = 1,
) -> pd.DataFrame:
    """The model's scores (`class_scores`) for the clip at meta row `row`, seen under `condition`, with `setting`
    (a row of `noise_settings` / `resolve_setting`): one row per noise draw (`draws` under feature noise, else one).

    Feature noise replaces the modalities `condition` removes (NMER protocol: `NoiseScheduler.replace_missing` via
    `evaluate.predict`), from a generator seeded by (`cfg["seed"]`, fold, row), one t per draw; a signal corruption
    swaps the corrupted modality's frames for the store's corrupted ones, normalised with the fold's training
    statistics (`robustness.corrupted_split`); none zero-fills. `cfg` is `params.yaml: robustness`."""
    scheduler = None
    n = 1
    if setting["noise"] in NOISE_TYPES:
        block = {**cfg, "noise_types": [setting["noise"]], "intensities": [int(setting["level"])]}
        scheduler = dataclasses.replace(feature_noise_settings(block)[0][1], per_sample=True)  # one t per draw
        n = draws
    clip = make_split(store, np.full(n, row), test.norm, test.task)
    if setting["name"]:
        clip = corrupted_split(store, clip, setting["name"])[1]
    table = predict(model, clip, n, CPU, [condition], scheduler, cell_seed(cfg["seed"], fold, row))
    return class_scores(table, test.task.targets, test.task.name)


def noise_sweep(
    model: nn.Module,
    store: FeatureStore,
    test: Split,
    row: int,
    condition: tuple[str, ...],
    settings: pd.DataFrame,
    noise: str,
    cfg: dict,
    fold: int,
    draws: int = 1,
    levels: list[float] | None = None,
) -> pd.DataFrame:
    """The mean scores of the clip at every level of noise kind `noise` (default: `kind_levels`), mildest first,
    after the noise-free reference (level 0, label `none`: zero-filled). Index: the setting labels; columns: level
    and one per target."""
    rows = [
        predict_clip(model, store, test, row, condition, resolve_setting(settings, NONE, 0.0), cfg, fold)
        .mean()
        .to_frame(NONE)
        .T.assign(level=0.0)
    ]
    for level in (levels if levels is not None else kind_levels(settings, noise)) if noise != NONE else []:
        setting = resolve_setting(settings, noise, level)
        mean = predict_clip(model, store, test, row, condition, setting, cfg, fold, draws).mean()
        rows.append(mean.to_frame(setting["label"]).T.assign(level=float(level)))
    table = pd.concat(rows)
    return table[["level", *test.task.targets]]


def affected(setting: dict, condition: tuple[str, ...], modalities: tuple[str, ...]) -> str | None:
    """None when `setting` changes what the model sees under `condition`; else a sentence saying why it does not."""
    if setting["noise"] == NONE:
        return None
    if setting["modality"] == "missing" and len(condition) == len(modalities):
        return (
            f"Under `{condition_name(condition)}` no modality is removed, so feature noise (which replaces the "
            f"removed ones) changes nothing: pick a condition with a modality missing."
        )
    if setting["modality"] != "missing" and setting["modality"] not in condition:
        return (
            f"`{setting['label']}` corrupts the {setting['modality']} stream, which `{condition_name(condition)}` "
            f"removes: it changes nothing here; pick a condition with {setting['modality']}."
        )
    return None


# ========================================================================================================= media


def media_files(data: dict) -> pd.DataFrame:
    """The corpus's media per clip (index clip_id, columns `<modality>_path`), listed by its adapter at `data.root`
    (`data`: the params section); empty, with a note in `attrs["note"]`, for a feature package or a corpus folder that
    cannot be listed."""
    corpus = CORPORA[data["corpus"]]
    if corpus.kind == "package":
        return _noted(pd.DataFrame(), f"{corpus.name} is a feature package: it holds features, no audio or video files")
    try:
        clips = corpus.clips(data)
    except (CorpusError, OSError) as err:
        return _noted(pd.DataFrame(), f"the corpus at data.root cannot be listed ({err})")
    return clips.set_index("clip_id")[[f"{m}_path" for m in corpus.modalities]]


def _noted(table: pd.DataFrame, note: str) -> pd.DataFrame:
    table.attrs["note"] = note
    return table


def media_path(media: pd.DataFrame, clip_id: str, modality: str) -> tuple[Path | None, str | None]:
    """(the file of `modality` of clip `clip_id`, None) or (None, a note saying why there is none)."""
    column = f"{modality}_path"
    if column not in media or clip_id not in media.index:
        return None, media.attrs.get("note") or f"the corpus lists no {modality} file for clip {clip_id}"
    path = media.at[clip_id, column]
    if not isinstance(path, str) or not path:
        return None, f"clip {clip_id} has no {modality} file in the corpus"
    if not Path(path).is_file():
        return None, f"{path}: missing (the corpus listed it; was data.root moved?)"
    return Path(path), None


def clip_wave(media: pd.DataFrame, clip_id: str) -> tuple[np.ndarray | None, str | None]:
    """(mono 16 kHz samples of the clip's audio, None), or (None, a note) when there is no readable audio file."""
    path, note = media_path(media, clip_id, "audio")
    if path is None:
        return None, note
    try:
        return read_audio(path), None
    except AudioError as err:
        return None, str(err)


def spectrogram(wave: np.ndarray) -> tuple[np.ndarray, float]:
    """(log mel energies (64 x frames), frames per second) of 16 kHz samples: the study's Kaldi fbank
    (`features.audio_features`), 25 ms windows every 10 ms, without rate reduction."""
    return audio_features(np.asarray(wave, dtype=np.float32), SPECTROGRAM).T, 1000.0 / SPECTROGRAM["hop_ms"]


@dataclass
class FaceMatrix:
    """A face stream as a heat-map: values (features x frames; NaN where the face was not tracked), the feature
    names, frames per second and where it comes from."""

    values: np.ndarray
    names: list[str]
    fps: float
    source: str
    notes: list[str] = field(default_factory=list)


def face_matrix(store: FeatureStore, row: int, media: pd.DataFrame | None = None) -> FaceMatrix | None:
    """The clip's face stream: the store's visual frames restricted to the OpenFace action units (`AU.._r`, else
    `AU.._c`) with their column names (features.visual.extractor: openface); else the AU intensities of the clip's
    raw OpenFace CSV, when the corpus has one; else every visual feature (`dim k`). None without a visual stream."""
    if "visual" not in store.sequences:
        return None
    frames, valid = store.sequences["visual"].clip(row)
    visual = store.manifest.get("features", {}).get("visual", {})
    rate = float(store.manifest.get("frame_rates", {}).get("visual") or 1.0)
    if visual.get("extractor") == "openface" and len(frames):
        names = openface_columns(visual["groups"])
        aus = [k for k, n in enumerate(names) if n.startswith("AU") and n.endswith("_r")] or [
            k for k, n in enumerate(names) if n.startswith("AU")
        ]
        if aus:
            values = np.where(valid[:, None], frames[:, aus], np.nan).T
            return FaceMatrix(values, [names[k] for k in aus], rate, "feature store (OpenFace action units)")
    clip_id = store.meta.at[row, "clip_id"]
    path, _ = media_path(media if media is not None else pd.DataFrame(), clip_id, "visual")
    if path is not None and path.suffix.lower() == ".csv":
        au, ok = read_openface_csv(path, ["au_r"])
        fps = float(visual.get("fps") or rate)
        return FaceMatrix(
            np.where(ok[:, None], au, np.nan).T, openface_columns(["au_r"]), fps, f"OpenFace CSV {path.name}"
        )
    if not len(frames):
        return None
    return FaceMatrix(
        np.where(valid[:, None], frames, np.nan).T,
        [f"dim {k}" for k in range(frames.shape[1])],
        rate,
        "feature store (visual features; no action-unit names)",
    )


# ====================================================================================================== explorer


def study_inputs(params: dict) -> dict:
    """How a run with the study's settings reads the store (`train.run_inputs`): frames, fold normalisation of the
    modalities `train.normalise_modalities` names, bucketed batches."""
    return {
        "audio_input": None,
        "normalisation": "fold",
        "normalise": params.get("normalise_modalities") or "all",
        "batching": "bucketed",
    }


@dataclass
class Explorer:
    """The open study for one (fold, seed): the feature store, the fold's test split, its test clips, the noise
    settings, the corpus's media listing, and the models loaded so far (by run). `params`: the explore stage's
    resolved params."""

    params: dict
    fold: int
    seed: int
    checkpoints: Path
    store: FeatureStore
    test: Split
    clips: pd.DataFrame
    settings: pd.DataFrame
    media: pd.DataFrame
    models: dict[str, nn.Module] = field(default_factory=dict)
    inputs: dict[str, dict] = field(default_factory=dict)  # how each loaded run reads the store (`train.run_inputs`)
    fed: dict[tuple, tuple[FeatureStore, Split]] = field(default_factory=dict)  # (store view, test split) by inputs
    views: dict[tuple, dict] = field(default_factory=dict)  # computed views, by selection

    @classmethod
    def open(
        cls, params: dict, fold: int | None = None, seed: int | None = None, checkpoints: str | Path = CHECKPOINTS
    ) -> "Explorer":
        """Open the store of `params` (the explore stage's resolved params) at `fold` / `seed` (default:
        `explore.fold` / `explore.seed`)."""
        fold = params["fold"] if fold is None else fold
        seed = params["seed"] if seed is None else seed
        store = read_store(params["store"], verify=False)
        if fold not in store.folds:
            raise ConfigError(f"explore.fold: got {fold}; the feature store's folds: {store.folds}")
        test = load_fold(store, fold, study_task(params["task"], store.manifest), **fold_options(study_inputs(params)))
        test = test["test"]
        return cls(
            params,
            fold,
            seed,
            Path(checkpoints),
            store,
            test,
            clip_table(store, fold),
            noise_settings(store, params["robustness"]),
            media_files(params["data"]),
        )

    @property
    def runs(self) -> list[str]:
        """The runs with a checkpoint for this fold and seed."""
        return available_runs(list(self.params["runs"]), self.checkpoints, self.fold, self.seed)

    def model(self, run: str) -> nn.Module:
        if run not in self.models:
            checkpoint = run_checkpoint(self.checkpoints, run, self.fold, self.seed)
            self.models[run] = load_model(checkpoint)
            self.inputs[run] = checkpoint.get("inputs", {})
        return self.models[run]

    def run_data(self, run: str) -> tuple[FeatureStore, Split]:
        """(the store as `run` reads it, its test split): the functionals its audio is, its normalisation and batching
        (`train.run_inputs`, from its checkpoint); the opened store and test split for a run that reads the store as
        the study's settings do."""
        self.model(run)
        inputs = {**study_inputs(self.params), **self.inputs[run]}
        if inputs == study_inputs(self.params):
            return self.store, self.test
        key = tuple(sorted((k, str(v)) for k, v in inputs.items()))
        if key not in self.fed:
            view = run_view(self.store, inputs)
            self.fed[key] = view, load_fold(view, self.fold, self.test.task, **fold_options(inputs))["test"]
        return self.fed[key]

    def condition(self, name: str) -> tuple[str, ...]:
        try:
            return parse_condition(name, self.store.modalities)
        except ValueError as err:
            raise ConfigError(f"explore.condition: {err}") from err

    @property
    def conditions(self) -> list[str]:
        return [condition_name(c) for c in all_conditions(self.store.modalities)]

    def selection(self) -> dict:
        """The default view of `params.yaml: explore`, checked against the store: run, clip_id, condition, noise,
        level; a run or condition left null is picked (`explore_run`, the first single-modality condition)."""
        cfg = self.params
        run = cfg["run"] or explore_run(cfg["runs"], self.runs)
        if run is None:
            raise ConfigError(
                f"explore.run: no trained run has a checkpoint for fold {self.fold}, seed {self.seed} "
                f"under {self.checkpoints}"
            )
        condition = cfg["condition"] or self.conditions[0]
        emotion = (
            cfg["emotion"]
            if cfg["emotion"] is not None
            else default_emotion(self.clips, self.store.classes, cfg["speaker"])
        )
        clip = select_clip(self.clips, emotion, cfg["speaker"], cfg["clip"])
        self.condition(condition)
        resolve_setting(self.settings, cfg["noise"], cfg["level"])
        return {
            "run": run,
            "clip_id": clip["clip_id"],
            "condition": condition,
            "noise": cfg["noise"],
            "level": float(cfg["level"]),
        }

    def clip(self, clip_id: str) -> pd.Series:
        return select_clip(self.clips, clip=clip_id)

    def view(self, selection: dict) -> dict:
        """Everything one view shows: the clip, the setting, the per-draw scores, the sweep of its noise kind,
        the waveform (or a note), the spectrogram and the face stream."""
        key = tuple(sorted(selection.items()))
        if key not in self.views:
            self.views[key] = self._view(selection)
        return self.views[key]

    def _view(self, selection: dict) -> dict:
        cfg = self.params
        clip = self.clip(selection["clip_id"])
        condition = self.condition(selection["condition"])
        setting = resolve_setting(self.settings, selection["noise"], selection["level"])
        model = self.model(selection["run"])
        store, test = self.run_data(selection["run"])
        args = (model, store, test, int(clip["row"]), condition)
        scores = predict_clip(*args, setting, self.params["robustness"], self.fold, cfg["draws"])
        levels = kind_levels(self.settings, selection["noise"])
        if selection["noise"] in NOISE_TYPES and setting["level"] not in levels:
            levels = sorted([*levels, setting["level"]])
        sweep = noise_sweep(
            *args, self.settings, selection["noise"], self.params["robustness"], self.fold, cfg["draws"], levels
        )
        wave, note = clip_wave(self.media, clip["clip_id"])
        return {
            "clip": clip,
            "setting": setting,
            "condition": condition,
            "scores": scores,
            "sweep": sweep,
            "wave": wave,
            "audio_note": note,
            "spectrogram": spectrogram(wave) if wave is not None else None,
            "face": face_matrix(self.store, int(clip["row"]), self.media),
            "unaffected": affected(setting, condition, self.store.modalities),
            "task": self.test.task.name,
            "fold": self.fold,
            "seed": self.seed,
        }


# ========================================================================================================= plots


def plot_clip(view: dict, selection: dict):
    """One figure for a view: spectrogram and face heat-map (top), the class probabilities (mean over the noise
    draws, min-max as error bars; the true class marked) and the sweep of the noise kind (bottom)."""
    import matplotlib.pyplot as plt

    clip, scores, sweep = view["clip"], view["scores"], view["sweep"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (spec_ax, face_ax), (bar_ax, sweep_ax) = axes
    if view["spectrogram"] is not None:
        spec, rate = view["spectrogram"]
        spec_ax.imshow(
            spec, origin="lower", aspect="auto", cmap="magma", extent=(0, spec.shape[1] / rate, 0, spec.shape[0])
        )
        spec_ax.set(xlabel="time (s)", ylabel="mel band", title="audio: log-mel spectrogram")
    else:
        spec_ax.text(0.5, 0.5, "no audio file", ha="center", va="center")
        spec_ax.set_axis_off()
    face = view["face"]
    if face is not None:
        image = face_ax.imshow(
            face.values,
            aspect="auto",
            cmap="viridis",
            interpolation="nearest",
            extent=(0, face.values.shape[1] / face.fps, len(face.names) - 0.5, -0.5),
        )
        if len(face.names) <= 40:
            face_ax.set_yticks(range(len(face.names)), face.names, fontsize=7)
        units = face.names[0].startswith("AU")
        face_ax.set(xlabel="time (s)", ylabel="" if units else "feature", title=f"face: {face.source}")
        fig.colorbar(image, ax=face_ax, fraction=0.04, pad=0.01, label="intensity" if units else "value")
    else:
        face_ax.text(0.5, 0.5, "no face stream", ha="center", va="center")
        face_ax.set_axis_off()
    mean = scores.mean()
    classification = view["task"] == "classification"
    colours = ["tab:green" if name == clip["label"] else "tab:blue" for name in mean.index]
    low, high = (mean - scores.min()).to_numpy(), (scores.max() - mean).to_numpy()
    bar_ax.bar(mean.index, mean, color=colours, yerr=[low, high] if len(scores) > 1 else None, capsize=3)
    bar_ax.set_xticks(range(len(mean)), mean.index, rotation=30, ha="right")
    bar_ax.set(
        ylabel="probability" if classification else "predicted value",
        title=f"{selection['run']}, condition {selection['condition']}, {view['setting']['label']}"
        + (f"\nmean of {len(scores)} draws, bars: their range" if len(scores) > 1 else ""),
    )
    if classification:
        bar_ax.set_ylim(0, 1)
    x = np.arange(len(sweep))
    for name in sweep.columns.drop("level"):
        sweep_ax.plot(x, sweep[name], marker="o", lw=2.5 if name == clip["label"] else 1.2, label=name)
    chosen = [k for k, label in enumerate(sweep.index) if label == view["setting"]["label"]]
    for k in chosen:
        sweep_ax.axvline(k, color="grey", ls="--", lw=1)
    sweep_ax.set_xticks(x, sweep.index, rotation=30, ha="right", fontsize=8)
    sweep_ax.set(ylabel=bar_ax.get_ylabel(), title=f"as the {selection['noise']} level rises (dashed: this view)")
    if classification:
        sweep_ax.set_ylim(0, 1)
    sweep_ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{clip['clip_id']}: speaker {clip['speaker']}, {clip['label']}")
    fig.tight_layout()
    return fig


def describe(view: dict, selection: dict) -> str:
    """A markdown paragraph for a view: the clip, what the model sees, its prediction."""
    clip, mean = view["clip"], view["scores"].mean()
    extra = ", ".join(f"{k} {clip[k]}" for k in ("sentence", "level", "gender") if k in clip)
    lines = [
        f"**{clip['clip_id']}**: speaker {clip['speaker']}, emotion **{clip['label']}**"
        + (f" ({extra})" if extra else "")
        + ".",
        f"Run `{selection['run']}` (fold {view['fold']}, seed {view['seed']}), "
        f"condition `{selection['condition']}`, noise `{view['setting']['label']}`"
        + (" (the removed modalities zero-filled)." if view["setting"]["noise"] == NONE else "."),
    ]
    if view["task"] == "classification":
        pred = mean.idxmax()
        verdict = "correct" if pred == clip["label"] else f"wrong (true: {clip['label']})"
        lines.append(f"Prediction: **{pred}** (p = {mean[pred]:.2f}), {verdict}.")
    else:
        lines.append("Predicted: " + ", ".join(f"{k} {v:+.2f}" for k, v in mean.items()) + ".")
    if view["unaffected"]:
        lines.append(f"*{view['unaffected']}*")
    return " ".join(lines)


# ========================================================================================================== panel


WIDGET_IDS = itertools.count()  # this process's numbered widget ids (`numbered_widget_ids`)


@contextmanager
def numbered_widget_ids():
    """Inside the block, a widget opened without an id gets the next number of this process as its model id
    (`e` + 31 hex digits: never a uuid4, whose 13th digit is 4) instead of a random uuid4. The executed notebook
    stores every widget's state under its model id (and the HTML export embeds it), so with random ids an identical
    rerun of the explore stage wrote other bytes; in a fresh kernel the widgets are made in the same order, so the
    numbers repeat. Numbers never repeat within a process, so two panels in one kernel do not clash."""
    import comm

    create = comm.create_comm

    def numbered(*args, **kwargs):
        if kwargs.get("target_name") == "jupyter.widget" and not kwargs.get("comm_id"):
            kwargs["comm_id"] = f"e{next(WIDGET_IDS):031x}"
        return create(*args, **kwargs)

    comm.create_comm = numbered
    try:
        yield
    finally:
        comm.create_comm = create


def panel(explorer: Explorer, selection: dict, show):
    """The ipywidgets panel: run, emotion and speaker filters, clip, condition, noise kind and a level slider; every
    change calls `show(selection)` (through `ipywidgets.interactive_output`). Returns (the panel box, its widgets).
    Its widgets' model ids are numbered (`numbered_widget_ids`), so the executed notebook is the same on a rerun."""
    with numbered_widget_ids():
        return _panel(explorer, selection, show)


def _panel(explorer: Explorer, selection: dict, show):
    import ipywidgets as w

    clips = explorer.clips
    current = explorer.clip(selection["clip_id"])
    runs = explorer.runs or [selection["run"]]
    widgets = {
        "run": w.Dropdown(
            options=runs, value=selection["run"] if selection["run"] in runs else runs[0], description="run"
        ),
        "emotion": w.Dropdown(
            options=["any", *sorted(set(clips["label"]))], value=current["label"], description="emotion"
        ),
        "speaker": w.Dropdown(options=["any", *sorted(set(clips["speaker"]))], value="any", description="speaker"),
        "clip_id": w.Dropdown(options=[], description="clip"),
        "condition": w.ToggleButtons(
            options=explorer.conditions, value=selection["condition"], description="condition"
        ),
        "noise": w.Dropdown(
            options=list(dict.fromkeys(explorer.settings["noise"])), value=selection["noise"], description="noise"
        ),
        "level": w.SelectionSlider(options=[0.0], value=0.0, description="level"),
    }

    def update_clips(change=None):
        emotion, speaker = (None if v == "any" else v for v in (widgets["emotion"].value, widgets["speaker"].value))
        options = list(filter_clips(clips, emotion, speaker)["clip_id"])
        keep = widgets["clip_id"].value if widgets["clip_id"].value in options else (options[0] if options else None)
        widgets["clip_id"].options = options
        widgets["clip_id"].value = keep

    def set_levels(change=None, level=None):
        levels = kind_levels(explorer.settings, widgets["noise"].value)
        if level is not None and widgets["noise"].value in NOISE_TYPES and level not in levels:
            levels = sorted([*levels, level])
        widgets["level"].options = [(f"{v:g}", v) for v in levels]
        widgets["level"].value = level if level in levels else levels[0]

    update_clips()
    widgets["clip_id"].value = selection["clip_id"]
    set_levels(level=float(selection["level"]))
    widgets["emotion"].observe(update_clips, "value")
    widgets["speaker"].observe(update_clips, "value")
    widgets["noise"].observe(set_levels, "value")
    shown = {k: widgets[k] for k in ("run", "clip_id", "condition", "noise", "level")}
    rendered: list[bool] = []

    first = {k: widgets[k].value for k in shown}

    def render(**values):
        if values == first and not rendered:  # the view the notebook has just shown: not drawn twice
            rendered.append(True)
            print("The view above is this selection: change a control to re-render it here.")
            return
        rendered.append(True)
        if values["clip_id"] is None:
            print("No test clip matches these filters.")
            return
        try:
            show(values)
        except ConfigError as err:  # e.g. a level the new noise kind does not have, while the slider catches up
            print(err)

    output = w.interactive_output(render, shown)
    box = w.VBox(
        [
            w.HBox([widgets["run"], widgets["emotion"], widgets["speaker"], widgets["clip_id"]]),
            w.HBox([widgets["condition"]]),
            w.HBox([widgets["noise"], widgets["level"]]),
            output,
        ]
    )
    return box, widgets
