"""The feature store: one schema for every corpus (docs/design.md, "Feature store").

```
<store>/meta.csv        clip_id, speaker, label, has_<modality>, extra columns (gender, sentence, level, attributes)
<store>/splits.csv      fold, speaker, role (train | val | test): folds by speaker (drawn by mer_core.data.folds),
                        or fold, clip_id, role: folds by clip (a feature package's own lists)
<store>/<modality>.npz  data (sum T_i x D, float32), offsets (n+1), valid (sum T_i, bool), clip_ids
<store>/corruptions/<variant>.npz
                        the same for one signal-level corruption of one modality of every clip (test-time only;
                        media corpora only): audio_<babble|white>_<snr>db, visual_dropout_<percent>
<store>/functionals/<set>.npz, functionals/<variant>/<set>.npz
                        openSMILE functionals of each clip's audio (one frame per clip, none without audio), of the
                        clean audio and of each audio corruption variant: the sets the study's runs read
<store>/manifest.json   corpus, extractor settings, dims, frame rates, counts, classes, sha256 of each file,
                        corruptions: [{name, modality, kind, level, unit, settings}] (empty for a feature package),
                        functionals: {set: dim}, missing_classes: {fold: {role: [class, ...]}} (the validation and
                        test partitions that lack a class, e.g. of a speaker who never recorded it)
<store>/skipped.csv     clip_id, modality, path, reason, action: what a media corpus's prepare step did not store
                        (`mer_core.data.prepare`); absent when nothing was skipped
```

A clip that lacks a modality has zero frames for it and `has_<modality> = False`: nothing is zero-filled on
disk. `valid` marks usable frames (False for OpenFace tracking failures). A corruption variant has the clean
modality's clip order, dimension and frame counts; it is read on request (`FeatureStore.corruption`). A clip
that `splits.csv` does not list for a fold (by its speaker or its clip_id) takes no role in that fold. Every
frame written is finite (a `StoreError` naming the file and clip otherwise: the readers check their inputs, this
is the last guard). The store is written into a sibling `.partial` folder and renamed when complete, so an
interrupted run never leaves a store that looks valid.

A run reads the store through `FeatureStore.view`: its audio can be the clips' functionals vectors instead of frames
(the classical baseline, or a run's `audio_input`), and every modality can be standardised per speaker
(`train.normalisation: speaker`, `standardise_by_speaker`); the corruption variants are read through the same view.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

MODALITIES = ("audio", "visual", "text")
ROLES = ("train", "val", "test")


class StoreError(RuntimeError):
    """The feature store is missing, incomplete or corrupt; the message names the file."""


def split_key(splits: pd.DataFrame) -> str:
    """The meta column that `splits` assigns roles by: `clip_id` when it has that column, else `speaker`."""
    return "clip_id" if "clip_id" in splits.columns else "speaker"


@dataclass
class Sequences:
    """Variable-length frame sequences of one modality, stored flat with offsets."""

    data: np.ndarray  # (sum T_i, D) float32
    offsets: np.ndarray  # (n + 1,) int64
    valid: np.ndarray  # (sum T_i,) bool
    clip_ids: np.ndarray  # (n,) str

    @classmethod
    def from_list(cls, clip_ids: list[str], frames: list[np.ndarray], valid: list[np.ndarray], dim: int):
        lengths = np.array([len(f) for f in frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = np.concatenate([f.reshape(-1, dim) for f in frames] or [np.zeros((0, dim))]).astype(np.float32)
        flags = np.concatenate([v.astype(bool) for v in valid] or [np.zeros(0, bool)])
        return cls(data, offsets, flags, np.asarray(clip_ids, dtype=str))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, D) and the valid-frame mask (T,) of clip `i`."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.data[a:b], self.valid[a:b]


def standardise_by_speaker(seq: Sequences, speakers: np.ndarray) -> Sequences:
    """`seq` with each clip's frames standardised (per dimension) by the mean and standard deviation of the valid
    frames of every clip of its speaker (`speakers[i]`: clip i's speaker). It uses no label and no other speaker's
    clips, so it is as legal for a test speaker as for a training one. Invalid frames keep their values (they are
    zeroed when batched); a speaker without a valid frame is left as it is; a dimension constant over a speaker's
    frames becomes 0."""
    speakers = np.asarray(speakers).astype(str)
    speaker_of_frame = np.repeat(speakers, seq.lengths)
    data = seq.data.astype(np.float32, copy=True)
    for speaker in np.unique(speakers):
        rows = (speaker_of_frame == speaker) & seq.valid
        frames = seq.data[rows].astype(np.float64)
        if len(frames) == 0:
            continue
        mean, std = frames.mean(0), frames.std(0)
        data[rows] = ((frames - mean) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)
    return Sequences(data, seq.offsets, seq.valid, seq.clip_ids)


@dataclass
class FeatureStore:
    root: Path
    meta: pd.DataFrame
    splits: pd.DataFrame
    sequences: dict[str, Sequences]
    manifest: dict
    _corrupted: dict[str, Sequences] = field(default_factory=dict, repr=False, compare=False)
    audio_input: str | None = None  # the view (`view`): the audio is this functionals set ...
    by_speaker: bool = False  # ... and every modality is standardised per speaker

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.sequences)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def fold_indices(self, fold: int) -> dict[str, np.ndarray]:
        """Row indices of meta for each role of `fold` (by clip_id or speaker, see `split_key`)."""
        part = self.splits[self.splits["fold"] == fold]
        if part.empty:
            raise StoreError(f"{self.root / 'splits.csv'}: no fold {fold} (folds: {sorted(self.splits.fold.unique())})")
        key = split_key(self.splits)
        role_of = dict(zip(part[key].astype(str), part["role"]))
        roles = self.meta[key].astype(str).map(role_of)
        return {role: np.flatnonzero(roles.to_numpy() == role) for role in ROLES}

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.splits["fold"].unique())

    @property
    def corruptions(self) -> list[dict]:
        """The manifest's corruption variants ({name, modality, kind, level, unit, settings}); [] if it has none."""
        return list(self.manifest.get("corruptions", []))

    @property
    def missing_classes(self) -> dict[int, dict[str, list[str]]]:
        """{fold: {role: [class, ...]}} of the validation and test partitions that lack a class (a speaker who never
        recorded it); {} when every partition holds every class."""
        return {int(fold): roles for fold, roles in self.manifest.get("missing_classes", {}).items()}

    def corruption(self, name: str) -> tuple[str, Sequences]:
        """(modality, sequences) of the corruption variant `name` as this view reads it (`view`), read from disk on
        first request.

        The file was checked against the manifest's hash when the store was opened (`read_store(verify=True)`).
        """
        entries = {entry["name"]: entry for entry in self.corruptions}
        if name not in entries:
            raise StoreError(
                f"{self.root / corruption_file(name)}: no corruption variant {name!r} in this store; "
                f"available: {', '.join(entries) or 'none (rerun prepare with robustness.signal: true)'}"
            )
        modality = entries[name]["modality"]
        if name not in self._corrupted:
            if self.audio_input and modality == "audio":
                seq = self._read(functionals_file(self.audio_input, name))
            else:
                seq = self._read(corruption_file(name))
            self._corrupted[name] = standardise_by_speaker(seq, self.meta["speaker"]) if self.by_speaker else seq
        return modality, self._corrupted[name]

    def functionals(self, name: str, variant: str | None = None) -> Sequences:
        """The functionals set `name` of every clip's audio (one frame per clip with audio, none without), of the
        clean audio or of the corruption variant `variant`; StoreError when the store lacks it."""
        sets = self.manifest.get("functionals", {})
        if name not in sets:
            raise StoreError(
                f"{self.root / functionals_file(name)}: this store has no {name} functionals (it has: "
                f"{', '.join(sets) or 'none'}); the params stage asks prepare for the sets its runs read: "
                "rerun it and prepare (`dvc repro`)"
            )
        return self._read(functionals_file(name, variant))

    def _read(self, relative: str) -> Sequences:
        """Sequences of the store file `relative`, checked to be hashed in the manifest and in meta's clip order."""
        path = self.root / relative
        if relative not in self.manifest.get("files", {}):
            raise StoreError(f"{path}: not hashed in manifest.json (edited manifest?); rerun the prepare stage")
        if not path.is_file():
            raise StoreError(f"{path}: missing from the feature store; rerun the prepare stage")
        seq = _load_sequences(path)
        if list(seq.clip_ids) != list(self.meta["clip_id"]):
            raise StoreError(f"{path}: clip order differs from meta.csv; rerun the prepare stage")
        return seq

    def view(self, audio_input: str | None = None, normalisation: str = "fold") -> "FeatureStore":
        """The store as a run reads it (the store itself is unchanged). `audio_input`: the audio modality's frames are
        that functionals set, one frame per clip (its dimension in `manifest["dims"]`, no frame rate), and so are its
        corruption variants'. `normalisation: speaker`: every modality standardised per speaker
        (`standardise_by_speaker`), the corruption variants too, each from its own frames; `fold`: as stored (each
        fold then standardises with its training clips' statistics, `mer_core.data.batches`)."""
        if normalisation not in ("fold", "speaker"):
            raise ValueError(f"normalisation must be 'fold' or 'speaker', got {normalisation!r}")
        sequences, manifest = dict(self.sequences), dict(self.manifest)
        if audio_input:
            if "audio" not in sequences:
                raise StoreError(
                    f"{self.root}: the {audio_input} functionals replace the audio modality, which this "
                    f"store lacks (modalities: {', '.join(self.modalities)})"
                )
            sequences["audio"] = self.functionals(audio_input)
            manifest["dims"] = {**manifest["dims"], "audio": sequences["audio"].dim}
            manifest["frame_rates"] = {**manifest["frame_rates"], "audio": None}
            manifest["features"] = {**manifest.get("features", {}), "audio": {"functionals": audio_input}}
        if normalisation == "speaker":
            sequences = {m: standardise_by_speaker(seq, self.meta["speaker"]) for m, seq in sequences.items()}
        return replace(
            self,
            sequences=sequences,
            manifest=manifest,
            _corrupted={},
            audio_input=audio_input or None,
            by_speaker=normalisation == "speaker",
        )


def corruption_file(name: str) -> str:
    """Path of a corruption variant's file, relative to the store root."""
    return f"corruptions/{name}.npz"


def functionals_file(name: str, variant: str | None = None) -> str:
    """Path of the functionals set `name` of the clean audio (or of corruption `variant`), relative to the root."""
    return f"functionals/{name}.npz" if variant is None else f"functionals/{variant}/{name}.npz"


def _save_sequences(path: Path, seq: Sequences) -> None:
    np.savez(path, data=seq.data, offsets=seq.offsets, valid=seq.valid, clip_ids=seq.clip_ids)


def _load_sequences(path: Path) -> Sequences:
    with np.load(path) as npz:
        return Sequences(npz["data"], npz["offsets"], npz["valid"], npz["clip_ids"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_store(
    root: Path,
    meta: pd.DataFrame,
    splits: pd.DataFrame,
    sequences: dict[str, Sequences],
    manifest: dict,
    skipped: pd.DataFrame | None = None,
    corruptions: dict[str, Sequences] | None = None,
    functionals: dict[str, Sequences] | None = None,
) -> Path:
    """Write a complete store atomically (`<root>.partial` then rename) and return its path.

    `skipped` (what prepare did not store, with the file and the reason) becomes `skipped.csv`.
    `corruptions` (variant name -> sequences, one per entry of `manifest["corruptions"]`, same names) become
    `corruptions/<name>.npz`. `functionals` ({`functionals_file(set[, variant])`: sequences}, in meta's clip order:
    every set of `manifest["functionals"]`, of the clean audio and of each audio variant) are written there.
    """
    root = Path(root)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_files(partial, meta, splits, sequences, manifest, skipped, corruptions or {}, functionals or {})
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root


def _check_finite(name: str, seq: Sequences) -> None:
    """StoreError naming the file and the first clip of `seq` with a NaN or infinite frame value."""
    finite = np.isfinite(seq.data).all(axis=1)
    if not finite.all():
        frame = int(np.flatnonzero(~finite)[0])
        clip = int(np.searchsorted(seq.offsets, frame, side="right")) - 1
        raise StoreError(
            f"{name}: clip {str(seq.clip_ids[clip])!r}, frame {frame - seq.offsets[clip]}: non-finite "
            "feature values; nothing was written"
        )


def _write_files(
    partial: Path,
    meta: pd.DataFrame,
    splits: pd.DataFrame,
    sequences: dict[str, Sequences],
    manifest: dict,
    skipped: pd.DataFrame | None,
    corruptions: dict[str, Sequences],
    functionals: dict[str, Sequences],
) -> None:
    for modality, seq in sequences.items():
        if list(seq.clip_ids) != list(meta["clip_id"]):
            raise StoreError(f"{modality}: clip order differs from meta.csv")
        _check_finite(f"{modality}.npz", seq)
        _save_sequences(partial / f"{modality}.npz", seq)
    _check_corruptions(sequences, manifest, corruptions)
    if corruptions:
        (partial / "corruptions").mkdir()
    for name, seq in corruptions.items():
        _check_finite(corruption_file(name), seq)
        _save_sequences(partial / corruption_file(name), seq)
    _check_functionals(meta, manifest, functionals)
    for relative, seq in functionals.items():
        _check_finite(relative, seq)
        (partial / relative).parent.mkdir(parents=True, exist_ok=True)
        _save_sequences(partial / relative, seq)
    meta.to_csv(partial / "meta.csv", index=False)
    splits.to_csv(partial / "splits.csv", index=False)
    files = (
        ["meta.csv", "splits.csv"]
        + [f"{m}.npz" for m in sequences]
        + [corruption_file(n) for n in corruptions]
        + list(functionals)
    )
    if skipped is not None and len(skipped):
        skipped.to_csv(partial / "skipped.csv", index=False)
        files.append("skipped.csv")
    manifest = dict(manifest, files={name: _sha256(partial / name) for name in files})
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _check_corruptions(sequences: dict[str, Sequences], manifest: dict, corruptions: dict[str, Sequences]) -> None:
    """Each variant is listed in the manifest (and each listed one given), with its clean modality's clips,
    dimension and frame counts."""
    listed = [entry["name"] for entry in manifest.get("corruptions", [])]
    if sorted(listed) != sorted(corruptions):
        raise StoreError(f"corruptions: the manifest lists {listed} but {sorted(corruptions)} were given")
    for entry in manifest.get("corruptions", []):
        name, modality = entry["name"], entry["modality"]
        seq, clean = corruptions[name], sequences.get(modality)
        if clean is None:
            raise StoreError(f"{corruption_file(name)}: corrupts {modality!r}, a modality the store lacks")
        if (
            list(seq.clip_ids) != list(clean.clip_ids)
            or seq.dim != clean.dim
            or not np.array_equal(seq.offsets, clean.offsets)
        ):
            raise StoreError(f"{corruption_file(name)}: clips, dimension or frame counts differ from {modality}.npz")


def _check_functionals(meta: pd.DataFrame, manifest: dict, functionals: dict[str, Sequences]) -> None:
    """Exactly the files of every set of `manifest["functionals"]` (clean and per audio variant), each in meta's clip
    order, of the listed dimension, at most one frame per clip."""
    sets = manifest.get("functionals", {})
    variants = [None] + [e["name"] for e in manifest.get("corruptions", []) if e["modality"] == "audio"]
    expected = sorted(functionals_file(name, variant) for name in sets for variant in variants)
    if sorted(functionals) != expected:
        raise StoreError(
            f"functionals: the manifest lists {sorted(sets)} (files {expected}) but {sorted(functionals)} were given"
        )
    for relative, seq in functionals.items():
        dim = sets[Path(relative).stem]
        if list(seq.clip_ids) != list(meta["clip_id"]) or seq.dim != dim or seq.lengths.max(initial=0) > 1:
            raise StoreError(f"{relative}: clips differ from meta.csv, or not one {dim}-d vector per clip")


def read_store(root: str | Path, verify: bool = True) -> FeatureStore:
    """Read a store written by `write_store`; with `verify`, check every file against the manifest's hash
    (corruption variants included: they are hashed now and loaded later, on request)."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise StoreError(f"{manifest_path}: missing; run the prepare stage (`dvc repro prepare`) first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise StoreError(f"{manifest_path}: corrupt JSON ({err})") from err
    for name, digest in manifest["files"].items():
        path = root / name
        if not path.is_file():
            raise StoreError(f"{path}: missing from the feature store; rerun the prepare stage")
        if verify and _sha256(path) != digest:
            raise StoreError(f"{path}: content does not match manifest.json (corrupt or edited); rerun prepare")
    meta = pd.read_csv(root / "meta.csv", dtype={"clip_id": str, "speaker": str, "label": str})
    splits = pd.read_csv(root / "splits.csv", dtype={"speaker": str, "clip_id": str, "role": str})
    sequences = {}
    for modality in manifest["modalities"]:
        sequences[modality] = _load_sequences(root / f"{modality}.npz")
    return FeatureStore(root, meta, splits, sequences, manifest)
