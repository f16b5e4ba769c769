"""Hand-made model inputs shared by the method tests: a two-modality context and a random batch."""
from __future__ import annotations

import torch

from mer_core.data.batches import Batch
from mer_core.methods import ModelContext

OPTIM = {"epochs": 1, "epochs_decay": 0, "lr": 0.001, "beta1": 0.9, "grad_clip": 0.5, "batch_size": 16}
CTX = ModelContext(("audio", "visual"), {"audio": 5, "visual": 4}, {"audio": 100 / 3, "visual": 30.0}, 6)


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
    return Batch(ctx.modalities, x, lengths, has, torch.arange(n) % ctx.n_classes, torch.arange(n))
