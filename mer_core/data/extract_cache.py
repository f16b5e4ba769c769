"""Resumable feature extraction: the finished work of an interrupted prepare step, kept until the store is written.

DVC deletes the prepare stage's output (`data.features_dir`) before it reruns the stage, so the finished items
live outside it, in `<data.cache_dir>/extract/<corpus>/` (`mer_core.data.prepare.cache_path`): one `<key>.npz`
per item of work (a clip's features of one modality with their visual corruption variants, or a clip's noisy
audio variants), written atomically (a temporary file renamed into place) as each chunk of work comes back.

An item's key hashes everything its result depends on, so that nothing stale is ever reused:
- the input files: path, size and modification time of each (the clip's file, and its babble talkers' files);
- what the item is: the pass, the clip's index in the corpus listing (the corruption draws are seeded by it),
  the modality, the clean frame count a noisy version must match;
- the settings: the corpus name and the whole `features` section (coarser than the settings each item reads, so
  that no setting can be missed; the number of workers, `machine.jobs`, is not in it: the results do not depend on
  it), the source of the extraction code (`mer_core.data`, `mer_core.noise`) and the versions of the libraries it calls.

Results depend neither on the order nor on the worker that computed them (`mer_core.data.prepare`), and an
`.npz` round trip keeps arrays exactly, so a resumed run writes the same store as an uninterrupted one. An entry
that cannot be read (e.g. truncated) is extracted again with a `CacheWarning`; a file that failed is not cached
(a rerun tries it again, and `data.on_error` decides again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

CODE_PACKAGES = ("data", "noise")  # sub-packages of mer_core whose source the extraction runs
LIBRARIES = ("numpy", "torch", "torchaudio", "soundfile", "opensmile", "opencv-python-headless")
PARTS = ("frames", "valid")  # the arrays stored for each name of an item
UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)

Pairs = dict[str, tuple[np.ndarray, np.ndarray]]  # modality (clean features) or variant -> (frames, valid)


class CacheWarning(UserWarning):
    """A cache entry could not be read; its item is extracted again."""


def code_fingerprint() -> str:
    """sha256 of the source files of the extraction code (`CODE_PACKAGES`), in sorted path order."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for package in CODE_PACKAGES for p in (root / package).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Installed version of each of `LIBRARIES` (None when absent)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def settings_digest(corpus: str, feat_cfg: dict) -> str:
    """sha256 of what every item's result depends on beyond its own inputs (see module docstring)."""
    settings = {
        "corpus": corpus,
        "features": dict(feat_cfg),
        "code": code_fingerprint(),
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class ExtractionCache:
    """The finished items of one corpus's extraction under `folder`, valid for the settings of `digest`."""

    def __init__(self, folder: str | Path, digest: str):
        self.folder = Path(folder)
        self.digest = digest

    def key(self, item: tuple, paths: list[str]) -> str | None:
        """The key of work `item` (JSON-able: pass, index, ...) on the input files `paths`; None when a file
        cannot be examined (the extraction then reports it, and its result is not cached)."""
        try:
            stats = [(str(p), os.stat(p)) for p in paths]
        except OSError:
            return None
        files = [(p, stat.st_size, stat.st_mtime_ns) for p, stat in stats]
        text = json.dumps([self.digest, list(item), files])
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str | None, names: list[str]) -> Pairs | None:
        """The cached {name: (frames, valid)} of `key` with exactly `names`, or None when there is none (or it is
        unreadable or incomplete: then it is deleted, with a `CacheWarning`)."""
        path = self.path(key) if key else None
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as npz:
                if sorted(npz.files) != sorted(f"{name}.{part}" for name in names for part in PARTS):
                    raise KeyError(f"holds {sorted(npz.files)}, expected the frames and valid of {names}")
                pairs = {name: (npz[f"{name}.frames"], npz[f"{name}.valid"]) for name in names}
        except UNREADABLE as err:
            warnings.warn(
                f"{path}: unreadable cache entry ({type(err).__name__}: {err}); extracting it again",
                CacheWarning,
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            return None
        return pairs

    def save(self, key: str | None, pairs: Pairs) -> None:
        """Write `pairs` under `key` atomically (temporary file, then rename); nothing for a None key."""
        if key is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"{name}.{part}": array for name, pair in pairs.items() for part, array in zip(PARTS, pair)}
        temporary = self.folder / f"{key}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(temporary, self.path(key))
        finally:
            temporary.unlink(missing_ok=True)


def remove_cache(folder: str | Path) -> None:
    """Remove a corpus's cache `folder` (`<cache_dir>/extract/<corpus>`), then `extract/` and `cache_dir` when
    they are left empty."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents[:2]:
        try:
            parent.rmdir()
        except OSError:  # not empty (or absent)
            break
