"""Fold data as padded tensors, normalised with training-fold statistics, and its mini-batches.

Each role (train / val / test) of a fold is held as one padded tensor per modality (N x T_max x D): for
corpora of a few thousand clips this is faster on a CPU than a DataLoader, and batches are cut to their
own longest clip. Normalisation statistics (per-dimension mean and std) are computed over the valid frames
of the training clips only (docs/design.md), for the modalities `train.normalise_modalities` names (all of them by
default; the others are read as the store holds them); invalid frames (tracking failures) and padding are zero
after normalisation, i.e. at the training mean. Targets follow the study's task (`mer_core.tasks`): class indices
(N,), or attribute values (N, A) for regression. Training batches (`train.batches`) are bucketed by length (ours)
or drawn at random (official); a split remembers which, and the evaluation (`mer_core.evaluate.predict`) follows it.

Partly unpaired training data (VAVL, docs/methods.md §5.1): `unpair` removes modalities from a deterministic share
of the training clips, so that those clips keep only one modality (`has` False and zero frames for the others),
exactly as a corpus with unpaired recordings would arrive.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] batches. Official: a shuffled data loader: a fresh random order of the training clips every epoch, the
  last batch partial; validation and test sets replicated per condition and evaluated in shuffled batches that mix
  conditions. Here: random groups of 8 batches, each sorted by length, the batches shuffled; evaluation per
  condition in order of length. Why: about 35% less padding in the LSTMs; since length differs a little by emotion,
  a batch holds fewer classes (label entropy 1.57 vs 1.76 nats on fold 0); with padded pooling (official) the
  batches change the embeddings, so training and evaluation must be batched alike. Restore: `train.batches:
  random`. Test: tests/test_faithful.py::test_random_batches_are_a_fresh_permutation_every_epoch.
- [all] feature normalisation (IEMOCAP package). Official: audio only, with the package's per-fold training
  mean/std; faces and text as the package holds them. Here: every modality, with the statistics of the fold's
  training clips (the audio statistics are the same numbers). Why: one rule for every corpus, most of whose
  features are not scaled. Restore: `train.normalise_modalities: [audio]`.
  Test: tests/test_faithful.py::test_only_the_named_modalities_are_normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from mer_core.data.store import FeatureStore, Sequences
from mer_core.tasks import Task, study_task

BUCKET_BATCHES = 8  # training batches are formed within random groups of this many batches, sorted by length
BATCHINGS = ("bucketed", "random")  # `train.batches`: ours | the official data loaders'


@dataclass(frozen=True)
class Batch:
    """A mini-batch. x[m]: (B, T, D); lengths[m]: (B,); present: (B, M) bool in `modalities` order."""

    modalities: tuple[str, ...]
    x: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    present: torch.Tensor
    y: torch.Tensor
    rows: torch.Tensor  # row indices into the store's meta.csv

    def replace(self, **changes) -> "Batch":
        return replace(self, **changes)

    def to(self, device: torch.device, pin_memory: bool = False) -> "Batch":
        """The batch on `device`; with `pin_memory` (CUDA only), copied from pinned host memory without blocking."""
        pinned = device.type == "cuda" and pin_memory

        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.pin_memory().to(device, non_blocking=True) if pinned else tensor.to(device)

        return self.replace(
            x={m: move(v) for m, v in self.x.items()},
            lengths={m: move(v) for m, v in self.lengths.items()},
            present=move(self.present),
            y=move(self.y),
        )


def subset(batch: Batch, keep: torch.Tensor) -> Batch:
    """The clips of `batch` where `keep` (B,) is True."""
    return batch.replace(
        x={m: v[keep] for m, v in batch.x.items()},
        lengths={m: v[keep] for m, v in batch.lengths.items()},
        present=batch.present[keep],
        y=batch.y[keep],
        rows=batch.rows[keep.cpu()],
    )


@dataclass(frozen=True)
class Normaliser:
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, store: FeatureStore, rows: np.ndarray, modalities: str | list[str] = "all") -> "Normaliser":
        """Per-dimension mean and std of the valid frames of the clips at `rows` for `modalities` (`all`, or a
        list); the other modalities get mean 0 and std 1, i.e. are read as the store holds them."""
        mean, std = {}, {}
        for m, seq in store.sequences.items():
            if modalities != "all" and m not in modalities:
                mean[m], std[m] = np.zeros(seq.dim, np.float32), np.ones(seq.dim, np.float32)
                continue
            frames = np.concatenate([_valid_frames(seq, i) for i in rows] or [np.zeros((0, seq.dim))])
            if len(frames) == 0:
                raise ValueError(f"no valid {m} frame in the training clips: cannot compute normalisation statistics")
            mean[m] = frames.mean(0)
            std[m] = np.maximum(frames.std(0), 1e-6)
        return cls(mean, std)


def _valid_frames(seq: Sequences, i: int) -> np.ndarray:
    frames, valid = seq.clip(i)
    return frames[valid]


@dataclass(frozen=True)
class Split:
    """One role of one fold: padded, normalised inputs and labels."""

    modalities: tuple[str, ...]
    x: dict[str, torch.Tensor]
    lengths: dict[str, torch.Tensor]
    has: torch.Tensor  # (N, M) bool: the clip has the modality at all
    y: torch.Tensor  # (N,) class indices or (N, A) attribute values
    rows: np.ndarray
    norm: Normaliser  # the fold's training statistics it was normalised with
    task: Task  # what `y` holds
    batching: str = "bucketed"  # `train.batches`: how `batches` trains and `evaluate.predict` evaluates
    _evaluation: dict[int, list[Batch]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Training mini-batches (with `generator`), or every clip once in order of length (evaluation).

        `bucketed` training: batches of clips of similar length, so that little time is spent on padding: the clips
        are shuffled, cut into groups of `BUCKET_BATCHES` batches, each group is sorted by length and cut into
        batches, and the batches are shuffled. Since clip length differs a little by emotion, batches hold fewer
        classes than random ones (on the built-in corpus, fold 0: mean label entropy per batch 1.57 against 1.76
        nats for random batches of 64). `random` training: the clips in a fresh random order cut into consecutive
        batches, the last one partial (the official shuffled data loader). Evaluation (no generator): every clip
        once, batches in order of length, cut once per batch size and reused (every epoch's validation, every
        condition and setting of the grid reads the same batches).
        """
        if generator is None:
            if batch_size not in self._evaluation:
                self._evaluation[batch_size] = list(self._cut(batch_size, None))
            return iter(self._evaluation[batch_size])
        return self._cut(batch_size, generator)

    def _cut(self, batch_size: int, generator: torch.Generator | None) -> Iterator[Batch]:
        longest = torch.stack([self.lengths[m] for m in self.modalities]).amax(0)
        if generator is None:
            groups = [torch.argsort(longest, stable=True)]
        elif self.batching == "random":
            groups = [torch.randperm(len(self), generator=generator)]
        else:
            order = torch.randperm(len(self), generator=generator)
            groups = [g[torch.argsort(longest[g], stable=True)] for g in order.split(batch_size * BUCKET_BATCHES)]
        chunks = [c for g in groups for c in _split_no_singleton(g, batch_size, generator is not None)]
        if generator is not None and self.batching == "bucketed":
            chunks = [chunks[k] for k in torch.randperm(len(chunks), generator=generator)]
        for idx in chunks:
            yield self.batch(idx)

    def batch(self, idx: torch.Tensor) -> Batch:
        """The clips at positions `idx` (repeats allowed) as a batch, cut to its longest clip per modality."""
        lengths = {m: self.lengths[m][idx] for m in self.modalities}
        x = {m: self.x[m][:, : max(int(lengths[m].max()), 1)][idx] for m in self.modalities}  # copies T frames only
        return Batch(self.modalities, x, lengths, self.has[idx], self.y[idx], torch.as_tensor(self.rows[idx.numpy()]))


def _split_no_singleton(order: torch.Tensor, batch_size: int, training: bool) -> list[torch.Tensor]:
    """`order` cut into batches of `batch_size`; in training, a last batch of one clip joins the one before
    (BatchNorm cannot train on a single clip)."""
    chunks = list(order.split(batch_size))
    if training and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _padded(seq: Sequences, rows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T_max, D) normalised frames of the clips at `rows` (invalid frames and padding zero) and lengths (N,)."""
    lens = seq.lengths[rows]
    padded = np.zeros((len(rows), max(int(lens.max(initial=0)), 1), seq.dim), dtype=np.float32)
    for j, i in enumerate(rows):
        frames, valid = seq.clip(i)
        padded[j, : len(frames)] = np.where(valid[:, None], (frames - mean) / std, 0.0)
    return torch.from_numpy(padded), torch.from_numpy(lens.astype(np.int64))


def targets(store: FeatureStore, rows: np.ndarray, task: Task) -> torch.Tensor:
    """The task's targets of the clips at `rows`: class indices (N,) or attribute values (N, A)."""
    if task.name == "regression":
        return torch.from_numpy(store.meta[list(task.targets)].to_numpy(np.float32)[rows])
    class_index = {c: k for k, c in enumerate(task.targets)}
    return torch.tensor([class_index[c] for c in store.meta["label"].to_numpy()[rows]], dtype=torch.long)


def make_split(
    store: FeatureStore, rows: np.ndarray, norm: Normaliser, task: Task | None = None, batching: str = "bucketed"
) -> Split:
    """Pad and normalise the clips at `rows` of the store; targets of `task` (default: its classes); batched as
    `batching` says (`BATCHINGS`)."""
    if batching not in BATCHINGS:
        raise ValueError(f"train.batches must be one of {BATCHINGS}, got {batching!r}")
    task = task or study_task("classification", store.manifest)
    padded = {m: _padded(store.sequences[m], rows, norm.mean[m], norm.std[m]) for m in store.modalities}
    has = torch.from_numpy(np.stack([store.meta[f"has_{m}"].to_numpy(bool)[rows] for m in store.modalities], 1))
    y = targets(store, rows, task)
    return Split(
        store.modalities,
        {m: x for m, (x, _) in padded.items()},
        {m: n for m, (_, n) in padded.items()},
        has,
        y,
        np.asarray(rows),
        norm,
        task,
        batching,
    )


def with_sequences(split: Split, modality: str, seq: Sequences) -> Split:
    """`split` with the frames of `modality` taken from `seq` (the same clips, e.g. a signal-level corruption of
    the test media), normalised with the split's statistics; the other modalities are shared, not copied."""
    x, lengths = _padded(seq, split.rows, split.norm.mean[modality], split.norm.std[modality])
    return replace(split, x={**split.x, modality: x}, lengths={**split.lengths, modality: lengths})


def unpair(split: Split, only: dict[str, float], seed: int) -> Split:
    """`split` with a share `only[m]` of its clips keeping modality m alone (the others removed: `has` False,
    zero frames, length 0). The clips are drawn per class (each class loses the same share of pairs) from a
    generator seeded by `seed`, among the clips that hold every modality; the rest stay as they are."""
    if sum(only.values()) > 1:
        raise ValueError(f"unpaired shares sum to {sum(only.values()):g} > 1: {only}")
    unknown = [m for m in only if m not in split.modalities]
    if unknown:
        raise ValueError(f"unpaired: {unknown[0]!r} is not a modality of this corpus ({', '.join(split.modalities)})")
    rng = np.random.default_rng(seed)
    has, x, lengths = split.has.clone(), dict(split.x), dict(split.lengths)
    labels = split.y.numpy() if split.y.ndim == 1 else np.zeros(len(split), dtype=np.int64)
    for label in np.unique(labels):
        clips = rng.permutation(np.flatnonzero((labels == label) & split.has.all(1).numpy()))
        start = 0
        for m, share in only.items():
            chosen = clips[start : start + int(round(share * len(clips)))]
            start += len(chosen)
            keep = torch.tensor([k == split.modalities.index(m) for k in range(len(split.modalities))])
            has[chosen] = keep
    for k, m in enumerate(split.modalities):
        removed = ~has[:, k] & split.has[:, k]
        x[m] = x[m].masked_fill(removed[:, None, None], 0.0)
        lengths[m] = lengths[m].masked_fill(removed, 0)
    return replace(split, x=x, lengths=lengths, has=has)


def load_fold(
    store: FeatureStore,
    fold: int,
    task: Task | None = None,
    unpaired: dict[str, float] | None = None,
    seed: int = 0,
    normalise: str | list[str] = "all",
    batching: str = "bucketed",
) -> dict[str, Split]:
    """Train / val / test splits of `fold`, the modalities `normalise` names (`train.normalise_modalities`)
    normalised with statistics of its training clips (all of them, before `unpaired` removes modalities from some:
    see `unpair`; validation and test clips stay paired), batched as `batching` says (`train.batches`)."""
    index = store.fold_indices(fold)
    norm = Normaliser.fit(store, index["train"], normalise)
    splits = {role: make_split(store, rows, norm, task, batching) for role, rows in index.items()}
    if unpaired and any(unpaired.values()):
        splits["train"] = unpair(splits["train"], unpaired, seed)
    return splits
