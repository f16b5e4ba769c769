"""Layers of the MMIN code family (methods.md §1.3), sized from their inputs, never hard-wired to A/V/L.

- `LSTMEncoder`: one-layer unidirectional LSTM, utterance embedding = max over the hidden outputs of the
  valid frames. (The official code max-pools over zero padding too; we mask it, so a clip's embedding does
  not depend on the other clips in its batch.)
- `TextCNN`: Conv2d branches of kernel heights 3/4/5 spanning the embedding width, ReLU, max over time,
  concatenation, dropout, Linear + ReLU.
- `MLPClassifier` (MMIN's FcClassifier): hidden Linear -> ReLU -> (BatchNorm) -> Dropout layers and a linear
  output; returns the logits and the penultimate features.
"""
from __future__ import annotations

import torch
from torch import nn


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool: True at frames t < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max over time (dim 1) of the frames t < length; a clip of length 0 gets a zero vector."""
    mask = valid_mask(lengths, x.shape[1])
    pooled = x.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    return torch.where((lengths > 0)[:, None], pooled, torch.zeros_like(pooled))


class LSTMEncoder(nn.Module):
    """(B, T, in_dim) frames -> (B, hidden) utterance embedding (methods.md §1.3, `embd_method=maxpool`)."""

    def __init__(self, in_dim: int, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(x)
        return masked_max(outputs, lengths)


class TextCNN(nn.Module):
    """(B, T, emb_dim) token features -> (B, out_dim) (methods.md §1.3; Kim 2014)."""

    def __init__(self, in_dim: int, channels: int = 128, kernels: tuple[int, ...] = (3, 4, 5),
                 dropout: float = 0.5, out_dim: int = 128):
        super().__init__()
        self.kernels = kernels
        self.convs = nn.ModuleList(nn.Conv2d(1, channels, (k, in_dim)) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Sequential(nn.Linear(channels * len(kernels), out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = max(self.kernels) - x.shape[1]
        if pad > 0:  # shorter than the widest kernel: zero-pad (the padding is masked out below)
            x = nn.functional.pad(x, (0, 0, 0, pad))
        pooled = []
        for k, conv in zip(self.kernels, self.convs):
            maps = torch.relu(conv(x[:, None])).squeeze(3).transpose(1, 2)  # (B, T-k+1, C)
            # a window is valid when it lies inside the clip; clips shorter than k keep their first window
            pooled.append(masked_max(maps, (lengths - k + 1).clamp(min=1) * (lengths > 0)))
        return self.project(self.dropout(torch.cat(pooled, dim=1)))


class MLPClassifier(nn.Module):
    """Hidden layers Linear -> ReLU -> (BatchNorm) -> Dropout, then a linear output layer."""

    def __init__(self, in_dim: int, hidden: list[int], n_out: int, dropout: float = 0.3, batchnorm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.Dropout(dropout))
            in_dim = width
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(in_dim, n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.hidden(x)
        return self.output(features), features
