"""IEMOCAP in the MMIN authors' feature package ("IEMOCAP_features_2021"; docs/methods.md §1.1, docs/datasets.md).

Layout under `root` (as used by MMIN, IF-MMIN and NMER):

```
A/comparE.h5                           per utterance (T_a, 130): ComParE_2016 LLDs + deltas, downsampled x10
V/denseface.h5                         per utterance (T_v, 342): Denseface; a frame without a face is all zeros
L/bert_large.h5                        per utterance (T_l, 1024): BERT-large token states
target/<k>/{trn,val,tst}_label.npy     (N, C) one-hot labels, k = 1..K (K = 10 and C = 4 in the package)
target/<k>/{trn,val,tst}_int2name.npy  (N,) or (N, 1) utterance names (bytes or str), in the labels' order
```

The widths above are the authors' package's; any widths are read, each file's from its arrays (every utterance of
a file must have the same width), and any number C >= 2 of classes (the same in every label file). The labels
are indices; their names are `data.iemocap_mmin.classes` (null: happy, angry, sad, neutral for C = 4, the index
order of the authors' plotting code, draw.py; class_0 .. class_<C-1> otherwise).

The package is taken as it is: its features (nothing is extracted, so the `features` params are unused)
and its own folds, `target/k` -> fold k-1 (the `folds` params are unused). Any number K >= 1 of fold
folders numbered 1..K without a gap is accepted, so a subset of the package works too. A fold lists
utterances, so `splits.csv` is clip-level; only utterances that some fold lists enter the store.
`A/comparE_mean_std.h5` (the authors' per-fold training mean/std) is not read: `batches.load_fold`
computes the same statistics from each fold's training clips. The MMIN loader normalises only the acoustic
features; `load_fold` normalises every modality unless `train.normalise_modalities` names fewer (`[audio]`, the
official behaviour, is what `train.preset: paper` implies on this corpus).

Speaker: `Ses03M_impro03_M001` -> `Ses03_M`, session 3, the gender letter of the last field (the speaking
actor), not of the dialogue's. An all-zero Denseface frame is stored with valid = False (no face). Frame
rates: audio 10 frames/s (10 ms ComParE hop x 10); visual and text are unknown (text is per token): None.
The fold lists are validated before any feature is read; a `CorpusError` names the file and what is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mer_core.console import progress
from mer_core.data.corpora.base import CorpusError, FeaturePackage, open_hdf5
from mer_core.data.store import Sequences

# Index -> name of 4-class one-hot labels, from the authors' plotting code (draw.py); UNVERIFIED against the
# package itself (docs/methods.md §1.1). "happy" holds happy + excited.
CLASSES = ("happy", "angry", "sad", "neutral")
FEATURES = {  # modality -> file, frame rate (frames/s, None = unknown), what it holds
    "audio": ("A/comparE.h5", 10.0, "openSMILE ComParE_2016 LLDs + deltas, downsampled x10 (polyphase)"),
    "visual": ("V/denseface.h5", None, "Denseface (DenseNet-BC on FER+) per video frame; zeros = no face"),
    "text": ("L/bert_large.h5", None, "BERT-large token states"),
}
ROLES = {"trn": "train", "val": "val", "tst": "test"}
NAME = re.compile(r"^Ses(?P<session>\d{2})[FM]_.+_(?P<gender>[FM])[^_]*$")
GENDERS = {"F": "Female", "M": "Male"}
HINT = "point data.root at the folder holding A/, V/, L/ and target/ of the MMIN feature package"


def parse_name(name: str) -> dict:
    """Session, speaker and gender of an IEMOCAP utterance name; ValueError when malformed."""
    match = NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an IEMOCAP utterance name like Ses03M_impro03_M001")
    session, letter = match["session"], match["gender"]
    return {"session": int(session), "speaker": f"Ses{session}_{letter}", "gender": GENDERS[letter]}


def fold_folders(root: Path) -> list[Path]:
    """`target/1` .. `target/K`, in order; CorpusError when there is none or one is missing."""
    target = root / "target"
    if not target.is_dir():
        raise CorpusError(f"{target}: folder not found (data.root = {root}); {HINT}")
    numbers = sorted(int(p.name) for p in target.iterdir() if p.is_dir() and p.name.isdigit())
    if not numbers:
        raise CorpusError(f"{target}: no fold folder (1, 2, ...); {HINT}")
    gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise CorpusError(f"{target / str(gaps[0])}: fold folder missing (found {numbers}; expected 1..K)")
    return [target / str(k) for k in numbers]


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CorpusError(f"{path}: missing; each fold folder holds {{trn,val,tst}}_label.npy and _int2name.npy")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise CorpusError(f"{path}: not a readable .npy array ({err})") from err


def class_names(n_classes: int, names: list[str] | None, source: Path) -> tuple[str, ...]:
    """The names of `n_classes` label indices: `names` (params `data.iemocap_mmin.classes`) when given, else the
    draw.py names for 4 classes, else class_0 ..; CorpusError naming `source` (a label file) on a count mismatch."""
    if names is None:
        return CLASSES if n_classes == len(CLASSES) else tuple(f"class_{k}" for k in range(n_classes))
    if len(names) != n_classes:
        raise CorpusError(
            f"{source}: {n_classes} classes (one-hot columns) but data.iemocap_mmin.classes names "
            f"{len(names)}: {list(names)}"
        )
    return tuple(names)


def read_list(folder: Path, prefix: str) -> tuple[list[str], np.ndarray, int]:
    """Utterance names, class indices and the number of classes (one-hot columns) of
    `<folder>/<prefix>_{int2name,label}.npy`, validated."""
    label_path, name_path = folder / f"{prefix}_label.npy", folder / f"{prefix}_int2name.npy"
    labels, names = _load_npy(label_path), _load_npy(name_path)
    if labels.ndim != 2 or labels.shape[1] < 2 or not np.issubdtype(labels.dtype, np.number):
        raise CorpusError(
            f"{label_path}: {labels.dtype} array of shape {labels.shape}; expected one-hot labels "
            f"of shape (N, classes), at least 2 classes"
        )
    not_one_hot = np.flatnonzero(~(np.isin(labels, (0, 1)).all(1) & (labels.sum(1) == 1)))
    if len(not_one_hot):
        row = not_one_hot[0]
        raise CorpusError(f"{label_path}: row {row} is {labels[row].tolist()}, not one-hot")
    if names.ndim == 2 and names.shape[1] == 1:
        names = names[:, 0]
    if names.ndim != 1:
        raise CorpusError(f"{name_path}: shape {names.shape}; expected utterance names of shape (N,) or (N, 1)")
    if len(names) != len(labels):
        raise CorpusError(
            f"{name_path}: {len(names)} names but {label_path.name} has {len(labels)} rows; "
            f"both must list the same utterances in the same order"
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names], labels.argmax(1), labels.shape[1]


def read_folds(
    folders: list[Path], class_list: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Path], tuple[str, ...]]:
    """meta (clip_id, speaker, label, gender, session; sorted by clip_id), clip-level splits (fold i from
    `folders[i]`), for each utterance the first list file that names it, and the class names (`class_names`;
    every label file must have the same number of classes)."""
    split_rows, label_of, source = [], {}, {}
    classes, first_labels = None, None
    for fold, folder in enumerate(folders):
        for prefix, role in ROLES.items():
            names, labels, n_classes = read_list(folder, prefix)
            label_path = folder / f"{prefix}_label.npy"
            if classes is None:
                classes, first_labels = class_names(n_classes, class_list, label_path), label_path
            elif n_classes != len(classes):
                raise CorpusError(
                    f"{label_path}: {n_classes} classes (one-hot columns) but {first_labels} has "
                    f"{len(classes)}; every label file of a package has the same classes"
                )
            path = folder / f"{prefix}_int2name.npy"
            for name, k in zip(names, labels):
                if name in label_of and label_of[name] != k:
                    raise CorpusError(
                        f"{path}: {name!r} is labelled {classes[k]!r} here (in {prefix}_label.npy) "
                        f"but {classes[label_of[name]]!r} in {source[name]}"
                    )
                label_of.setdefault(name, k)
                source.setdefault(name, path)
                split_rows.append((fold, name, role, path))
    splits = pd.DataFrame(split_rows, columns=["fold", "clip_id", "role", "path"])
    twice = splits.duplicated(["fold", "clip_id"])
    if twice.any():
        fold, name, _, path = splits[twice].iloc[0]
        first = splits.loc[(splits["fold"] == fold) & (splits["clip_id"] == name), "path"].iloc[0]
        raise CorpusError(f"{path}: {name!r} is listed twice in {path.parent} (also in {first.name})")
    rows = []
    for name in sorted(label_of):
        try:
            parts = parse_name(name)
        except ValueError as err:
            raise CorpusError(f"{source[name]}: {err}") from err
        rows.append(
            {
                "clip_id": name,
                "speaker": parts["speaker"],
                "label": classes[label_of[name]],
                "gender": parts["gender"],
                "session": parts["session"],
            }
        )
    return pd.DataFrame(rows), splits.drop(columns="path"), source, classes


def feature_width(path: Path, names: list[str], source: dict[str, Path]) -> int:
    """The width D of the (T, D) arrays the HDF5 file `path` holds for every listed utterance (`names`, in order):
    the first one's; CorpusError naming the file and the utterance when one is missing, not 2-D, or of another
    width."""
    width, first = None, None
    with open_hdf5(path, HINT) as handle:
        for name in names:
            entry = handle.get(name)
            if not isinstance(entry, h5py.Dataset):
                raise CorpusError(
                    f"{path}: no array for utterance {name!r}, which {source[name]} lists; the "
                    f"features and target/ must come from the same package"
                )
            if entry.ndim != 2 or entry.shape[1] < 1:
                raise CorpusError(f"{path}: {name!r} has shape {entry.shape}; expected (frames, width)")
            if width is None:
                width, first = entry.shape[1], name
            elif entry.shape[1] != width:
                raise CorpusError(
                    f"{path}: {name!r} has shape {entry.shape}, width {entry.shape[1]}, but {first!r} "
                    f"has width {width}; every utterance of a feature file has the same width"
                )
    return width


def read_features(path: Path, names: list[str], width: int, zero_is_invalid: bool) -> Sequences:
    """The arrays of `names` from `path` as Sequences (all-zero frames invalid with `zero_is_invalid`)."""
    frames, valid = [], []
    with h5py.File(path, "r") as handle:
        for name in progress(names, desc=path.name, unit="clip", mininterval=2):
            x = np.asarray(handle[name][()], dtype=np.float32)
            if not np.isfinite(x).all():
                raise CorpusError(f"{path}: {name!r} holds NaN or inf")
            frames.append(x)
            valid.append(x.any(axis=1) if zero_is_invalid else np.ones(len(x), dtype=bool))
    return Sequences.from_list(names, frames, valid, width)


def read_package(root: str | Path, *, classes: list[str] | None = None) -> FeaturePackage:
    """Read and validate the package at `root` (see module docstring); `classes`: the names of the label indices
    (params `data.iemocap_mmin.classes`; None: `class_names`'s default)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found (data.root); {HINT}")
    folders = fold_folders(root)
    meta, splits, source, class_list = read_folds(folders, classes)
    names = list(meta["clip_id"])
    widths = {m: feature_width(root / file, names, source) for m, (file, _, _) in FEATURES.items()}
    sequences = {
        m: read_features(root / file, names, widths[m], zero_is_invalid=m == "visual")
        for m, (file, _, _) in FEATURES.items()
    }
    for m, seq in sequences.items():
        meta[f"has_{m}"] = seq.lengths > 0
    return FeaturePackage(
        meta=meta,
        splits=splits,
        sequences=sequences,
        frame_rates={m: rate for m, (_, rate, _) in FEATURES.items()},
        features={
            m: {"file": file, "description": what, "width": widths[m]} for m, (file, _, what) in FEATURES.items()
        },
        folds={
            "source": "the package's own fold lists (clip-level); params folds.* are not used",
            "folders": {str(k): str(folder.relative_to(root)) for k, folder in enumerate(folders)},
        },
        classes=class_list,
        labels={"classes": list(class_list), "source": "one-hot columns of target/<k>/*_label.npy"},
    )
