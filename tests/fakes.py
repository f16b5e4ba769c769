"""Hand-made model inputs shared by the method tests: a two-modality context and a random batch."""

from __future__ import annotations

import torch

from mer_core.data.batches import Batch
from mer_core.methods.registry import ModelContext
from mer_core.tasks import ATTRIBUTES, Task

OPTIM = {"epochs": 1, "epochs_decay": 0, "lr": 0.001, "beta1": 0.9, "grad_clip": 0.5, "batch_size": 16}
CLASSES = ("anger", "disgust", "fear", "happy", "neutral", "sad")
CLASSIFICATION = Task("classification", CLASSES)
REGRESSION = Task("regression", ATTRIBUTES)
DIMS = {"audio": 5, "visual": 4}
RATES = {"audio": 100 / 3, "visual": 30.0}
CTX = ModelContext(("audio", "visual"), DIMS, RATES, CLASSIFICATION)
REG_CTX = ModelContext(("audio", "visual"), DIMS, RATES, REGRESSION)


def task_context(
    modalities: tuple[str, ...], dims: dict[str, int], n_classes: int, frame_rates: dict | None = None
) -> ModelContext:
    """A classification context with `n_classes` classes."""
    task = Task("classification", tuple(f"c{k}" for k in range(n_classes)))
    return ModelContext(modalities, dims, frame_rates or {}, task)


def make_targets(task: Task, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Class indices 0, 1, ... (cycling) or random attribute values in [-1, 1]."""
    if task.name == "classification":
        return torch.arange(n) % task.n_outputs
    return torch.rand(n, task.n_outputs, generator=generator) * 2 - 1


def make_batch(ctx: ModelContext = CTX, n: int = 5, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = {m: torch.randint(2, 12, (n,), generator=g) for m in ctx.modalities}
    lengths["visual"][1] = 0  # clip 1 has no visual stream
    has = torch.stack([lengths[m] > 0 for m in ctx.modalities], 1)
    x = {}
    for m in ctx.modalities:
        t = int(lengths[m].max())
        frames = torch.randn(n, t, ctx.dims[m], generator=g)
        x[m] = frames * (torch.arange(t)[None, :] < lengths[m][:, None])[..., None]
    return Batch(ctx.modalities, x, lengths, has, make_targets(ctx.task, n, g), torch.arange(n))


def masked_slot_mse(prediction: torch.Tensor, target: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Reference for `mer_core.losses.slot_mse`, written out slot by slot: the mean squared error over the
    (clip, modality slot) cells of (B, M x width) vectors whose clip has the modality."""
    width = prediction.shape[1] // has.shape[1]
    total, count = prediction.new_zeros(()), 0
    for i in range(has.shape[0]):
        for k in range(has.shape[1]):
            if has[i, k]:
                cell = slice(k * width, (k + 1) * width)
                total = total + ((prediction[i, cell] - target[i, cell]) ** 2).sum()
                count += width
    return total / max(count, 1)
