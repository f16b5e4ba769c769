"""The learnt frame encoder: every method trains end-to-end on face crops through a small per-frame CNN.

When the store's visual features are face crops (`features.visual.extractor: face_crops`: each frame a grey
`size` x `size` crop flattened row-major, invalid frames all zero), the methods do not read the pixels: a
`FrameEncoder` turns each frame into a `train.frame_encoder.dim`-d vector, and the method's model is built for
those vectors (`ctx.dims["visual"] = dim`) and wrapped in `FrameEncoded`, which encodes the visual frames of
every batch before the model sees them. The encoder is trained with the model, by the method's own losses.

Design (ours): the per-frame CNN followed by the method's temporal model is the pattern of e.g. Ebrahimi Kahou
et al., "Recurrent neural networks for emotion recognition in video" (ICMI 2015), made small for low-resolution
grey crops: per entry of `channels`, 3x3 convolution - GroupNorm (Wu & He, ECCV 2018) - ReLU - 2x2 max-pool;
global average pool; linear to `dim`. GroupNorm normalises each frame on its own, so no statistic is shared
across frames or clips, and only the valid frames are encoded: padding, invalid frames (tracking failures, all
zero after normalisation: `mer_core.data.batches`) and removed modalities (zero-filled by a condition) encode to
zero vectors, exactly as they are zero in any other feature space, and never influence the other frames.

Stages: a later stage of a method receives the inner model of the stage before (`previous`) and keeps its
trained encoder (a copy that trains on); the frozen stage-1 encoder goes with the frozen teacher: the batch
before the training condition (`full`, which the methods read only for their frozen teacher's targets) is
encoded by it. Checkpoints hold the encoder's weights (in the state dict) and its settings (`frame_encoder`).
With any other visual features, nothing is wrapped: the models are exactly those of the methods.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from mer_core.data.batches import Batch
from mer_core.layers import frozen, kaiming_init_, valid_mask
from mer_core.methods.registry import ModelContext, StageSpec
from mer_core.schema import ConfigError

CROPS = "face_crops"  # the extractor name of face-crop visual features in the store's manifest


class FrameEncoder(nn.Module):
    """(B, T, size * size) crops -> (B, T, dim) encodings: conv3x3 - GroupNorm - ReLU - maxpool2 blocks, global
    average pool, linear; frames t >= length and all-zero frames give zero vectors (see the module docstring)."""

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(self, size: int, dim: int, channels: tuple[int, ...], groups: int):
        super().__init__()
        self.size, self.dim = size, dim
        blocks, width = [], 1
        for out in channels:
            blocks += [nn.Conv2d(width, out, 3, padding=1), nn.GroupNorm(groups, out), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.convs = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.project = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        clip, frame = (valid_mask(lengths, x.shape[1]) & (x != 0).any(-1)).nonzero(as_tuple=True)
        encoded = x.new_zeros(*x.shape[:2], self.dim)
        if len(clip) == 0:
            return encoded
        crops = x[clip, frame].view(-1, 1, self.size, self.size)
        return encoded.index_put((clip, frame), self.project(self.convs(crops)))


@dataclass(frozen=True)
class FrameEncoderSpec:
    """The frame encoder of a run: the crop side `size` (from the store) and the `train.frame_encoder` settings."""

    size: int
    dim: int
    channels: tuple[int, ...]
    groups: int
    modality: str = "visual"

    @classmethod
    def for_store(cls, manifest: dict, cfg: dict, key: str = "train.frame_encoder") -> "FrameEncoderSpec | None":
        """The spec for a store whose visual features are face crops (settings `cfg`, checked against the crop
        size; errors name `key`), or None for any other features."""
        visual = manifest.get("features", {}).get("visual", {})
        if visual.get("extractor") != CROPS:
            return None
        size = int(visual[CROPS]["size"])
        if manifest["dims"]["visual"] != size * size:
            raise ValueError(
                f"manifest.json: visual dim {manifest['dims']['visual']} is not {size} x {size}, the "
                "face-crop size it records; prepare the store again"
            )
        if 2 ** len(cfg["channels"]) > size:
            raise ConfigError(
                f"{key}.channels: {len(cfg['channels'])} blocks halve the crop side "
                f"{len(cfg['channels'])} times, more than the {size} x {size} crops allow; use at most "
                f"{size.bit_length() - 1} entries"
            )
        return cls(size, cfg["dim"], tuple(cfg["channels"]), cfg["groups"])

    def context(self, ctx: ModelContext) -> ModelContext:
        """`ctx` as the methods see it: the visual frames are `dim`-d encodings."""
        return replace(ctx, dims={**ctx.dims, self.modality: self.dim})

    def encoder(self) -> FrameEncoder:
        return kaiming_init_(FrameEncoder(self.size, self.dim, self.channels, self.groups))


class FrameEncoded(nn.Module):
    """A method's `model` reading the `modality` frames through `encoder`: `forward`, `loss` and `steps` encode
    the batch's frames, then call the model's. `teacher`: the frozen encoder of the stage before, which encodes
    `full` (the methods' teacher targets); without it, `full` is encoded by `encoder` (without gradient unless
    it is the training batch itself)."""

    def __init__(self, model: nn.Module, encoder: FrameEncoder, modality: str, teacher: FrameEncoder | None = None):
        super().__init__()
        self.model, self.encoder, self.teacher = model, encoder, teacher
        self.modality = modality

    def train(self, mode: bool = True) -> "FrameEncoded":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def encode(self, batch: Batch, encoder: FrameEncoder) -> Batch:
        m = self.modality
        return batch.replace(x={**batch.x, m: encoder(batch.x[m], batch.lengths[m])})

    def encode_full(self, batch: Batch, full: Batch, encoded: Batch) -> Batch:
        if self.teacher is None and full is batch:
            return encoded
        with torch.no_grad():
            return self.encode(full, self.encoder if self.teacher is None else self.teacher)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(self.encode(batch, self.encoder))

    def loss(self, batch: Batch, full: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encode(batch, self.encoder)
        return self.model.loss(encoded, self.encode_full(batch, full, encoded))

    def steps(self, batch: Batch, full: Batch):
        """The model's optimiser steps (or its single loss). After each update the frames are encoded again, in
        place in the batch the model's `steps` holds, so that every loss sees the encoder as it is then."""
        if not hasattr(self.model, "steps"):
            yield self.loss(batch, full)[0]
            return
        encoded = self.encode(batch, self.encoder)
        for loss in self.model.steps(encoded, self.encode_full(batch, full, encoded)):
            yield loss
            encoded.x[self.modality] = self.encoder(batch.x[self.modality], batch.lengths[self.modality])


def build_stage(
    stage: StageSpec, entry: dict, ctx: ModelContext, previous: nn.Module | None, frames: FrameEncoderSpec | None
) -> nn.Module:
    """The model of `stage` (`StageSpec.build` on `ctx`, the context the methods see), wrapped in `FrameEncoded`
    when `frames` is set and the model reads its modality (its `modalities`, else the context's): a new encoder
    in the first stage, the previous stage's trained one (and a frozen copy as teacher) in a later stage. Without
    `frames` this is `stage.build(entry, ctx, previous)`."""
    inner = previous.model if isinstance(previous, FrameEncoded) else previous
    model = stage.build(entry, ctx, inner)
    if frames is None or frames.modality not in getattr(model, "modalities", ctx.modalities):
        return model
    if isinstance(previous, FrameEncoded):
        return FrameEncoded(model, copy.deepcopy(previous.encoder), frames.modality, frozen(previous.encoder))
    return FrameEncoded(model, frames.encoder(), frames.modality)
