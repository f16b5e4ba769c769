"""Layers of the MMIN code family (methods.md §1.3), sized from their inputs, never hard-wired to A/V/L.

- `LSTMEncoder`: one-layer unidirectional LSTM, utterance embedding = max over the hidden outputs of the
  valid frames. (The official code max-pools over zero padding too; we mask it, so a clip's embedding does
  not depend on the other clips in its batch.)
- `TextCNN`: Conv2d branches of kernel heights 3/4/5 spanning the embedding width, ReLU, max over time,
  concatenation, dropout, Linear + ReLU.
- `MLPClassifier` (MMIN's FcClassifier): hidden Linear -> ReLU -> (BatchNorm) -> Dropout layers and a linear
  output; returns the logits and the penultimate features.
- `SharedEncoder` (IF-MMIN / NMER, methods.md §1.3): the default branch, Linear -> LeakyReLU -> Linear ->
  LeakyReLU at the encoder width. (The official code switches to other depths by substrings of `--run_idx`;
  only the default branch exists here.)
- `ResidualAE`: MMIN's imagination network (methods.md §2, stage 2, step 2) and IF-MMIN's IF-IM variant
  (§3.2, step 3), which re-injects the invariant features at every block.
- `kaiming_init_`: the MMIN family's initialisation (Kaiming-normal fan-in weights, zero biases on Linear and
  Conv layers; LSTMs untouched).
"""
from __future__ import annotations

import torch
from torch import nn

AE_VARIANTS = ("mmin", "ifim")


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


class SharedEncoder(nn.Module):
    """(B, width) -> (B, width): the modality-shared encoder S of IF-MMIN (default branch, methods.md §3.1)."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(), nn.Linear(width, width), nn.LeakyReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mlp(widths: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers through `widths` with `activation` between them and none after the last."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ResidualAE(nn.Module):
    """A chain of `n_blocks` autoencoders (encoder in_dim -> layers, LeakyReLU between; decoder back to in_dim,
    ReLU between, linear last), then a transition MLP (in_dim -> in_dim, ReLU, -> in_dim).

    `variant="mmin"` (MMIN, methods.md §2): block k's input is block k-1's input plus its output (block 1
    takes x); the transition reads the last block's input plus output.
    `variant="ifim"` (IF-MMIN's IF-IM, §3.2): block k's input is block k-1's decoder output plus the
    invariant features `condition` (block 1: x + condition); the transition reads the last decoder output.

    forward(x, condition=None) -> (reconstruction (B, in_dim), concatenated block latents (B, n_blocks x
    layers[-1])).
    """

    def __init__(self, in_dim: int, layers: list[int], n_blocks: int, variant: str = "mmin"):
        super().__init__()
        if variant not in AE_VARIANTS:
            raise ValueError(f"ResidualAE variant must be one of {AE_VARIANTS}, got {variant!r}")
        if n_blocks < 1 or not layers:
            raise ValueError("ResidualAE needs at least one block and one layer")
        self.variant = variant
        self.encoders = nn.ModuleList(_mlp([in_dim, *layers], nn.LeakyReLU) for _ in range(n_blocks))
        self.decoders = nn.ModuleList(_mlp([*reversed(layers), in_dim], nn.ReLU) for _ in range(n_blocks))
        self.transition = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, in_dim))
        self.latent_dim = n_blocks * layers[-1]

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if (condition is None) != (self.variant == "mmin"):
            raise ValueError(f"ResidualAE({self.variant!r}): the IF-IM variant needs `condition`, MMIN's takes none")
        latents = []
        block_in, block_out = x, torch.zeros_like(x)
        for k, (encoder, decoder) in enumerate(zip(self.encoders, self.decoders)):
            if self.variant == "mmin":
                block_in = block_in + block_out
            else:
                block_in = (x if k == 0 else block_out) + condition
            latents.append(encoder(block_in))
            block_out = decoder(latents[-1])
        last = block_in + block_out if self.variant == "mmin" else block_out
        return self.transition(last), torch.cat(latents, dim=1)


def kaiming_init_(module: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in) weights and zero biases on every Linear and Conv layer of `module`, in place
    (MMIN family `init_type=kaiming`, methods.md §1.3); LSTM and normalisation layers keep their defaults."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
