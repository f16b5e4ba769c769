"""Missing-modality conditions (MMIN protocol, docs/methods.md §1.2).

A condition is the set of modalities present at test time: every non-empty subset of the corpus's
modalities (`a, v, av` for audio-visual corpora; MMIN's six, plus the full set, for A/V/L). Absent
modalities are zero-filled at the input and marked absent in `Batch.present`.
"""

from __future__ import annotations

from itertools import combinations

import torch

from mer_core.data.batches import Batch

LETTERS = {"audio": "a", "visual": "v", "text": "l"}  # MMIN's letters (l = lexical)


def all_conditions(modalities: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset of `modalities`, smallest first, in the given modality order."""
    return [c for k in range(1, len(modalities) + 1) for c in combinations(modalities, k)]


def condition_name(condition: tuple[str, ...]) -> str:
    """Short name of a condition, e.g. ('audio', 'visual') -> 'av'."""
    return "".join(LETTERS[m] for m in condition)


def parse_condition(name: str, modalities: tuple[str, ...]) -> tuple[str, ...]:
    """Inverse of `condition_name` for the given corpus modalities; ValueError names the allowed names."""
    for condition in all_conditions(modalities):
        if condition_name(condition) == name:
            return condition
    allowed = ", ".join(condition_name(c) for c in all_conditions(modalities))
    raise ValueError(f"unknown condition {name!r}; allowed: {allowed}")


def with_presence(batch: Batch, keep: torch.Tensor) -> Batch:
    """Zero-fill every modality where `keep` (B, M) is False; `present` becomes `has & keep`. A modality every clip
    keeps is passed on as the same tensor, not copied."""
    present = batch.present & keep
    x = {
        m: batch.x[m] if bool(present[:, i].all()) else batch.x[m] * present[:, i, None, None]
        for i, m in enumerate(batch.modalities)
    }
    return batch.replace(x=x, present=present)


def apply_condition(batch: Batch, condition: tuple[str, ...]) -> Batch:
    """The batch as seen under `condition`: modalities outside it are zero-filled and marked absent."""
    keep = torch.tensor([m in condition for m in batch.modalities], device=batch.y.device)
    return with_presence(batch, keep.expand(len(batch.y), -1))


def random_presence(batch: Batch, generator: torch.Generator, include_full: bool = True) -> Batch:
    """Draw one condition per clip, uniformly, and apply it: any non-empty condition (MMIN's data
    augmentation) or, with `include_full=False`, one with at least one modality missing (MMIN's stage-2
    training protocol, docs/methods.md §1.2).

    Only conditions that keep at least one modality the clip has are drawn, so no clip is blanked out.
    """
    conditions = all_conditions(batch.modalities)
    if not include_full:
        conditions = conditions[:-1]  # the full set is the last condition
        if not conditions:
            raise ValueError("training on missing-modality conditions needs a corpus with two or more modalities")
    table = torch.tensor([[m in c for m in batch.modalities] for c in conditions])
    has = batch.present.cpu()
    allowed = (table[None, :, :] & has[:, None, :]).any(-1).float()  # (B, n_conditions)
    draw = torch.multinomial(allowed, 1, generator=generator)[:, 0]
    return with_presence(batch, table[draw].to(batch.y.device))
