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
- `ConditionalDenoiser` (NMER stage 1's auxiliary denoiser, a small stand-in for its diffusion UNet, §4.2) and
  `ConditionalVAE` (NMER stage 2's ConditionVAE, §4.3), with `timestep_embedding`.
- `kaiming_init_`: the MMIN family's initialisation (Kaiming-normal fan-in weights, zero biases on Linear and
  Conv layers; LSTMs untouched).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] LSTM encoder pooling. Official: max over all frames, zero padding included. Here: max over the valid
  frames only. Why: a clip's embedding must not depend on the other clips in its batch.
- [ifmmin, nmer] shared encoder. Official: the architecture is switched by substrings of `--run_idx`. Here: the
  default branch only (Linear, LeakyReLU, Linear, LeakyReLU). Why: no hidden switch.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

AE_VARIANTS = ("mmin", "ifim")
VAE_OUTPUTS = ("sigmoid", "linear")


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool: True at frames t < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max over time (dim 1) of the frames t < length; a clip of length 0 gets a zero vector."""
    mask = valid_mask(lengths, x.shape[1])
    exclude = torch.where(mask, 0.0, float("-inf")).to(x.dtype)  # added, not masked_fill: 2x faster on an LSTM's output
    pooled = (x + exclude[..., None]).amax(dim=1)
    return torch.where((lengths > 0)[:, None], pooled, torch.zeros_like(pooled))


def blank_rows(x: torch.Tensor) -> torch.Tensor:
    """(B,) True for the clips of (B, T, D) `x` whose frames are all zero (max and min 0: two reductions without a
    temporary, several times faster on a CPU than `any()` or `abs().amax()`)."""
    return (x.amax((1, 2)) == 0) & (x.amin((1, 2)) == 0)


def in_order(parts: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
    """Row blocks `parts` of a batch, block k holding the batch rows `rows[k]`, put back in batch order."""
    return torch.cat(parts)[torch.argsort(torch.cat(rows))]


class LSTMEncoder(nn.Module):
    """(B, T, in_dim) frames -> (B, hidden) utterance embedding (methods.md §1.3, `embd_method=maxpool`).

    Clips whose frames are all zero (a modality a condition removed, zero-filled) are not run with the batch: the
    LSTM's outputs on zero input are the same for every clip, so they are computed once, on one zero sequence as
    long as the longest such clip, and each such clip takes their masked max at its own length, the value (and
    gradient) it would get in the batch; about half the LSTM's work when a condition removes one of two modalities.
    """

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(self, in_dim: int, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        blank = blank_rows(x)
        if not bool(blank.any()):
            return masked_max(self.lstm(x)[0], lengths)
        live, dead = (~blank).nonzero()[:, 0], blank.nonzero()[:, 0]
        zeros = x.new_zeros(1, max(int(lengths[dead].max()), 1), x.shape[2])
        shared = masked_max(self.lstm(zeros)[0].expand(len(dead), -1, -1), lengths[dead])
        if len(live) == 0:
            return shared
        frames = x[live, : max(int(lengths[live].max()), 1)]
        return in_order([masked_max(self.lstm(frames)[0], lengths[live]), shared], [live, dead])


class TextCNN(nn.Module):
    """(B, T, emb_dim) token features -> (B, out_dim) (methods.md §1.3; Kim 2014). A zero-filled clip (text removed
    by a condition) is not convolved: each of its windows gives relu(bias), which is then its max."""

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

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
        blank = blank_rows(x)  # zero-filled clips: every window of every kernel gives relu(bias)
        live, dead = (~blank).nonzero()[:, 0], blank.nonzero()[:, 0]
        frames = x.transpose(1, 2)  # (B, D, T), made contiguous once (one copy), not by every kernel
        frames = frames.contiguous() if len(dead) == 0 else frames[live]
        pooled = []
        for k, conv in zip(self.kernels, self.convs):
            # the (k, D) kernel as a Conv1d over time: the same sums as the Conv2d, ~3x faster on a CPU
            maps = torch.relu(F.conv1d(frames, conv.weight[:, 0].transpose(1, 2), conv.bias)).transpose(1, 2)
            # a window is valid when it lies inside the clip; clips shorter than k keep their first window
            windows = (lengths - k + 1).clamp(min=1) * (lengths > 0)
            if len(dead) == 0:
                pooled.append(masked_max(maps, windows))
                continue
            constant = torch.relu(conv.bias).expand(len(dead), -1) * (lengths[dead] > 0)[:, None]
            pooled.append(in_order([masked_max(maps, windows[live]), constant], [live, dead]))
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


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) of integer steps t (B,) (Vaswani et al. 2017; DDPM's time embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    embedding = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(embedding, (0, dim - 2 * half))


class ConditionalDenoiser(nn.Module):
    """A small conditional denoiser for vectors: predicts a correction of x_t from [x_t, condition, emb(t)]
    (MLP, SiLU); forward returns the denoised x̂_0 = x_t + correction.

    Stands in for NMER's stage-1 diffusers UNet (methods.md §4.2), which denoises the batch reshaped into one
    1 x 4 x 64 x 96 "image" (batch size hard-wired to 64) conditioned on the invariant features and adds its
    output back to the input: the same residual form and conditioning, per clip, any batch size.
    """

    def __init__(self, dim: int, condition_dim: int, hidden: int, time_dim: int = 32):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(nn.Linear(dim + condition_dim + time_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return x_t + self.net(torch.cat([x_t, condition, timestep_embedding(t, self.time_dim)], dim=1))


class ConditionalVAE(nn.Module):
    """NMER's ConditionVAE (methods.md §4.3): a transformer encoder over [x, c] (post-norm, `layers` x
    (`heads` heads, FFN `ffn`, dropout 0.1)), linear heads mu and log sigma^2 (-> `latent`), z = mu + sigma
    eps, decoder [z, c] -> `decoder_hidden` (LeakyReLU) -> x_dim, then a sigmoid (`output="sigmoid"`, official)
    or nothing (`"linear"`).

    Each clip is its own sequence of one token [x, c] (input (B, 1, D)). With `faithful=True` the (B, D) matrix
    goes in as the official code passes it, a 2-D tensor that PyTorch reads as *one unbatched sequence of B
    tokens*, so self-attention mixes the clips of a batch (a bug; predictions then depend on the batch). With one
    token per clip attention reduces to its value and output projections. In eval mode z = mu.

    forward(x, c) -> (reconstruction (B, x_dim), mu (B, latent), logvar (B, latent)).
    """

    def __init__(self, x_dim: int, c_dim: int, latent: int, layers: int = 5, heads: int = 8, ffn: int = 128,
                 decoder_hidden: int = 128, output: str = "sigmoid", faithful: bool = False, dropout: float = 0.1):
        super().__init__()
        if output not in VAE_OUTPUTS:
            raise ValueError(f"ConditionalVAE output must be one of {VAE_OUTPUTS}, got {output!r}")
        width = x_dim + c_dim
        if width % heads:
            raise ValueError(f"ConditionalVAE: heads ({heads}) must divide the token width x_dim + c_dim ({width})")
        block = nn.TransformerEncoderLayer(width, heads, ffn, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.mu = nn.Linear(width, latent)
        self.logvar = nn.Linear(width, latent)
        self.decoder = nn.Sequential(nn.Linear(latent + c_dim, decoder_hidden), nn.LeakyReLU(),
                                     nn.Linear(decoder_hidden, x_dim))
        self.output, self.faithful = output, faithful

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = torch.cat([x, c], dim=1)
        h = self.encoder(tokens) if self.faithful else self.encoder(tokens[:, None, :])[:, 0]
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        recon = self.decoder(torch.cat([z, c], dim=1))
        return (recon.sigmoid() if self.output == "sigmoid" else recon), mu, logvar


def kaiming_init_(module: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in) weights and zero biases on every Linear and Conv layer of `module`, in place
    (MMIN family `init_type=kaiming`, methods.md §1.3); LSTM and normalisation layers keep their defaults."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
