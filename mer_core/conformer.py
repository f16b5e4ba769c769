"""A Conformer encoder (Gulati et al., Interspeech 2020) that respects padding, as VAVL uses it (docs/methods.md §5.2).

Block (paper Fig. 1, Eq. 1): x + ½ FFN(x) -> + MHSA with relative positional encoding -> + convolution module
-> + ½ FFN -> LayerNorm. The convolution module is LayerNorm -> pointwise conv (2d) -> GLU -> depthwise conv
(kernel 31, no bias, as VAVL's) -> BatchNorm -> Swish -> pointwise conv -> dropout; each FFN is LayerNorm -> Linear
(4d) -> Swish -> dropout -> Linear -> dropout. `Conformer` puts the sooftware-style input projection (Linear +
dropout) in front of a stack of blocks, as the VAVL code does (its unused Conv2d subsampling is left out).

Every clip is computed on its own valid frames: attention never looks at padded keys, the depthwise convolution
sees zeros beyond a clip's end (padded frames are zeroed before it), batch normalisation takes its statistics
over valid frames only (`MaskedBatchNorm1d`), and padded output frames are zero. In eval mode a clip's output
is therefore the same whatever padding follows it and whatever clips share its batch. (The released VAVL code
feeds (T, B, D) tensors to a Conformer that expects (B, T, D), so its attention and convolution run across the
clips of a batch: `mer_core.methods.vavl` reproduces that with `axes: official`.)

Relative positions follow Transformer-XL (Dai et al., ACL 2019, Sec. 3.3): score(i, j) = (q_i + u)·k_j +
(q_i + v)·W_r r_{i-j} with sinusoidal r; the term for distance i - j is gathered from the embeddings of every
distance -(T-1)..T-1 (`positions="relative"`), so it does not depend on the padded length. `"absolute_shift"` is
what VAVL's vendored attention computes: sinusoids of the *absolute* positions 0..T-1, projected, then
Transformer-XL's relative-shift trick (`relative_shift`), which expects embeddings of the distances T-1..0: the
term of (i, j) then uses position T-1-(i-j) for j <= i and an entry of the next query row for j > i, so it
depends on the padded length T. The scores are divided by sqrt(d_model) (`scale="d_model"`, VAVL's) or by
sqrt(d_model / heads) (`"d_head"`, the usual scaled dot product).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [vavl] attention. Official: scores divided by sqrt(d_model); the positional term from absolute sinusoids of
  positions 0..T-1 through the relative-shift trick, so it depends on the padded length and, for j > i, reads the
  next query row. Here: scores divided by sqrt(d_model) as well (`attention_scale: d_head` divides by sqrt(d_head),
  the usual scaled dot product); the positional term from the embedding of the exact distance i - j. Why:
  Transformer-XL's relative positions as the Conformer paper means them; a clip's output does not depend on its
  padding. Restore: `methods.<run>.positions: absolute_shift`.
  Test: tests/golden/test_vavl.py::test_attention_matches_official_with_official_switches.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mer_core.layers import valid_mask


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(P, dim) sinusoidal embeddings of (possibly negative) positions (Vaswani et al. 2017, Sec. 3.5)."""
    freqs = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(1e4) / dim))
    angles = positions.float()[:, None] * freqs[None, :]
    embedding = torch.zeros(len(positions), dim, device=positions.device)
    embedding[:, 0::2] = angles.sin()
    embedding[:, 1::2] = angles.cos()[:, : dim // 2]
    return embedding


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over the channels of (B, C, T) whose training statistics come from the valid frames only
    (mask (B, T)), so padding never shifts them; eval mode uses the running statistics as nn.BatchNorm1d does."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.float()  # statistics in float32 under bf16 autocast too, as torch's own batch norm keeps them
        if self.training:
            weights = mask[:, None, :].to(x.dtype)
            count = weights.sum().clamp(min=1)
            mean = (x * weights).sum((0, 2)) / count
            var = (((x - mean[None, :, None]) ** 2) * weights).sum((0, 2)) / count
            if count >= 2:  # fewer than two valid frames carry no variance: leave the running statistics alone
                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_var.lerp_(var * count / (count - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean[None, :, None]) * scale[None, :, None] + self.bias[None, :, None]


class FeedForward(nn.Module):
    """LayerNorm -> Linear (expansion x d) -> Swish -> dropout -> Linear -> dropout."""

    def __init__(self, d_model: int, expansion: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, expansion * d_model),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ATTENTION_SCALES = ("d_model", "d_head")  # the scores' divisor: sqrt(d_model) (VAVL's) | sqrt(d_model / heads)
POSITIONS = ("relative", "absolute_shift")  # exact relative distances | VAVL's absolute sinusoids + relative shift


def relative_shift(scores: torch.Tensor) -> torch.Tensor:
    """Transformer-XL's shift of (B, H, T, P) position scores (as the sooftware Conformer VAVL vendors codes it):
    prepend a zero column, read the (T, P + 1) block as (P + 1, T), drop its first row, read it back as (T, P)."""
    batch, heads, rows, cols = scores.shape
    padded = torch.cat([scores.new_zeros(batch, heads, rows, 1), scores], dim=-1)
    return padded.view(batch, heads, cols + 1, rows)[:, :, 1:].reshape(batch, heads, rows, cols)


class RelativeMultiHeadAttention(nn.Module):
    """LayerNorm -> multi-head self-attention with relative positions (`positions`, see the module docstring)
    and scores divided by sqrt(d_model) or sqrt(d_head) (`scale`) -> dropout; padded keys (mask False) get no
    weight."""

    def __init__(self, d_model: int, heads: int, dropout: float, scale: str = "d_model", positions: str = "relative"):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"Conformer: heads ({heads}) must divide d_model ({d_model})")
        if scale not in ATTENTION_SCALES:
            raise ValueError(f"Conformer attention scale must be one of {ATTENTION_SCALES}, got {scale!r}")
        if positions not in POSITIONS:
            raise ValueError(f"Conformer positions must be one of {POSITIONS}, got {positions!r}")
        self.heads, self.head_dim = heads, d_model // heads
        self.scale, self.positions = scale, positions
        self.divisor = math.sqrt(d_model if scale == "d_model" else self.head_dim)
        self.norm = nn.LayerNorm(d_model)
        self.query, self.key, self.value = (nn.Linear(d_model, d_model) for _ in range(3))
        self.position = nn.Linear(d_model, d_model, bias=False)
        self.content_bias = nn.Parameter(torch.zeros(heads, self.head_dim))  # u
        self.position_bias = nn.Parameter(torch.zeros(heads, self.head_dim))  # v
        self.output = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.content_bias)
        nn.init.xavier_uniform_(self.position_bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.heads, self.head_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        h = self.norm(x)
        q, k, v = self._split(self.query(h)), self._split(self.key(h)), self._split(self.value(h))  # (B, T, H, dh)
        content = torch.einsum("bihd,bjhd->bhij", q + self.content_bias, k)
        scores = (content + self._positional(q, length)) / self.divisor
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)  # exp() underflows to 0
        attention = self.dropout(torch.softmax(scores, dim=-1))
        out = torch.einsum("bhij,bjhd->bihd", attention, v).reshape(batch, length, d_model)
        return self.dropout(self.output(out))

    def _positional(self, q: torch.Tensor, length: int) -> torch.Tensor:
        """The position term (q_i + v)·W_r r of every (query i, key j), (B, H, T, T)."""
        d_model = self.heads * self.head_dim
        if self.positions == "absolute_shift":
            r = self._split(self.position(sinusoid(torch.arange(length, device=q.device), d_model)))  # (T, H, dh)
            return relative_shift(torch.einsum("bihd,phd->bhip", q + self.position_bias, r))
        distances = torch.arange(length - 1, -length, -1, device=q.device)  # T-1 .. -(T-1)
        r = self._split(self.position(sinusoid(distances, d_model)))  # (2T-1, H, dh)
        by_distance = torch.einsum("bihd,rhd->bhir", q + self.position_bias, r)  # (B, H, T, 2T-1)
        index = torch.arange(length, device=q.device)
        index = (length - 1) - (index[:, None] - index[None, :])  # column of distance i - j
        return by_distance.gather(3, index.expand(q.shape[0], self.heads, length, length))


class ConvolutionModule(nn.Module):
    """LayerNorm -> pointwise conv (2d) -> GLU -> depthwise conv (`kernel`, same padding) -> masked BatchNorm ->
    Swish -> pointwise conv -> dropout, on (B, T, d); padded frames are zeroed before the depthwise conv."""

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"Conformer: the depthwise kernel must be odd (same padding), got {kernel}")
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model, bias=False)
        self.batch_norm = MaskedBatchNorm1d(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.glu(pointwise(self.pointwise_in, self.norm(x)), dim=-1)  # (B, T, d)
        h = depthwise(self.depthwise, (h * mask[..., None]).transpose(1, 2))  # (B, d, T)
        h = F.silu(self.batch_norm(h, mask))
        return self.dropout(pointwise(self.pointwise_out, h.transpose(1, 2)))


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 `conv` applied to (B, T, C_in) frames -> (B, T, C_out): the same product as the convolution on
    (B, C_in, T), computed as a linear layer (faster on a CPU; no transposes)."""
    return F.linear(x, conv.weight[:, :, 0], conv.bias)


def depthwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A depthwise `conv` (one odd kernel per channel, same padding) on (B, C, T). Up to 4 kernel lengths of frames
    it is computed as one batched product of each channel's banded (T, T) kernel matrix with its frames: the same
    sums, about 10x faster on a CPU than PyTorch's depthwise convolution at the study's widths; longer inputs go
    through the convolution itself (the matrices would grow as T^2)."""
    length, kernel = x.shape[2], conv.kernel_size[0]
    if length > 4 * kernel:
        return conv(x)
    steps = torch.arange(length, device=x.device)
    tap = steps[None, :] - steps[:, None] + kernel // 2  # [t, s]: the kernel tap that weighs input s in output t
    matrix = conv.weight[:, 0][:, tap.clamp(0, kernel - 1)] * ((tap >= 0) & (tap < kernel))  # (C, T, T)
    out = torch.matmul(matrix, x.permute(1, 2, 0)).permute(2, 0, 1)  # (C, T, T) @ (C, T, B) -> (B, C, T)
    return out if conv.bias is None else out + conv.bias[None, :, None]


class ConformerBlock(nn.Module):
    """½ FFN, relative MHSA, convolution module, ½ FFN, each residual, then LayerNorm (Gulati et al., Eq. 1);
    `scale` and `positions` go to the attention."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        ffn_expansion: int = 4,
        kernel: int = 31,
        dropout: float = 0.1,
        scale: str = "d_model",
        positions: str = "relative",
    ):
        super().__init__()
        self.ffn_in = FeedForward(d_model, ffn_expansion, dropout)
        self.attention = RelativeMultiHeadAttention(d_model, heads, dropout, scale, positions)
        self.convolution = ConvolutionModule(d_model, kernel, dropout)
        self.ffn_out = FeedForward(d_model, ffn_expansion, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn_in(x)
        x = x + self.attention(x, mask)
        x = x + self.convolution(x, mask)
        x = x + 0.5 * self.ffn_out(x)
        return self.norm(x) * mask[..., None]


class Conformer(nn.Module):
    """(B, T, in_dim) frames and lengths (B,) -> (B, T, d_model), padded frames zero: input projection
    (Linear + dropout, as the sooftware encoder VAVL copies) and `blocks` Conformer blocks (attention `scale` and
    `positions` as `RelativeMultiHeadAttention`'s)."""

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(
        self,
        in_dim: int,
        d_model: int,
        blocks: int,
        heads: int,
        ffn_expansion: int = 4,
        kernel: int = 31,
        dropout: float = 0.1,
        scale: str = "d_model",
        positions: str = "relative",
    ):
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(in_dim, d_model), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, heads, ffn_expansion, kernel, dropout, scale, positions) for _ in range(blocks)
        )
        self.out_dim = d_model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = valid_mask(lengths, x.shape[1])
        x = self.projection(x) * mask[..., None]
        for block in self.blocks:
            x = block(x, mask)
        return x


def subsample(x: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average non-overlapping groups of `factor` valid frames: (B, T, D) -> (B, ceil(T / factor), D) and the
    new lengths ceil(length / factor); a clip's last group averages only its valid frames, padding stays zero."""
    if factor == 1:
        return x, lengths
    batch, length, dim = x.shape
    groups = -(-length // factor)
    mask = valid_mask(lengths, length)[..., None].to(x.dtype)
    pad = groups * factor - length
    sums = F.pad(x * mask, (0, 0, 0, pad)).view(batch, groups, factor, dim).sum(2)
    counts = F.pad(mask, (0, 0, 0, pad)).view(batch, groups, factor, 1).sum(2)
    return sums / counts.clamp(min=1), -(-lengths // factor)


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over time (dim 1) of the frames t < length; a clip of length 0 gets a zero vector."""
    mask = valid_mask(lengths, x.shape[1])[..., None].to(x.dtype)
    return (x * mask).sum(1) / lengths.clamp(min=1)[:, None].to(x.dtype)
