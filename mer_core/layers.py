"""Layers of the MMIN code family (docs/methods.md §1.3), sized from their inputs, never hard-wired to A/V/L.

- `LSTMEncoder`: one-layer unidirectional LSTM, utterance embedding = max over the hidden outputs of the
  valid frames (`pooling="valid"`), or of every frame of the padded batch, zero padding included, as the
  official encoder, which never sees the clip lengths (`pooling="padded"`). Options beyond the official encoder (a
  run's `encoder.<modality>` block, `mer_core.params.methods.LSTMOptions`; the defaults are the official encoder):
  the summary over time (`summary`: `max`; `attention`, additive attention over the frames, weights
  softmax_t(v^T tanh(W h_t)), Bahdanau et al. 2015, as in attentive-pooling speech emotion models, `AttentionPooling`;
  `mean`; `stats`, their mean and standard deviation projected back to the width, the statistics pooling of Snyder
  et al. 2018), stacked `layers`, `bidirectional` (hidden / 2 units per direction, each clip read backwards from its
  own last frame), and `conv`, a 1-D convolution of that kernel width (ReLU, `hidden` channels) over the frames
  before the LSTM, frames beyond a clip's length zeroed first.
- `TextCNN`: Conv2d branches of kernel heights 3/4/5 spanning the embedding width, ReLU, max over time,
  concatenation, dropout, Linear + ReLU. The max runs over the windows inside the clip (`windows="valid"`), or
  over every window of the padded batch, as the official module (`windows="padded"`).
- `MLPClassifier` (MMIN's FcClassifier): hidden Linear -> ReLU -> (BatchNorm) -> Dropout layers and a linear
  output; returns the logits and the penultimate features.
- `SharedEncoder` (IF-MMIN / NMER, docs/methods.md §1.3): the default branch, Linear -> LeakyReLU -> Linear ->
  LeakyReLU at the encoder width. (The official code switches to other depths by substrings of `--run_idx`;
  only the default branch exists here.)
- `ResidualAE`: MMIN's imagination network (docs/methods.md §2.2, step 2) and the two versions of IF-MMIN's
  IF-IM (§3.2, step 3), which inject the invariant features at every block.
- `ConditionalDenoiser` (NMER stage 1's auxiliary branch, a small stand-in for its diffusion UNet, §4.2) and
  `ConditionalVAE` (NMER stage 2's ConditionVAE, §4.3), with `timestep_embedding`.
- `kaiming_init_`: the MMIN family's initialisation (Kaiming-normal fan-in weights, zero biases on Linear and
  Conv layers; LSTMs untouched).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [audio_only, visual_only, early_fusion, late_fusion, utt_fusion, utt_dataaug, mmin, ifmmin, nmer] LSTM encoder
  pooling. Official: max over all frames of the padded batch, zero padding included. Here: max over the valid
  frames only. Why: a clip's embedding must not depend on the other clips in its batch. Restore:
  `methods.<run>.encoder_pooling: padded`.
  Test: tests/golden/test_mmin.py::test_lstm_encoder_padded_pooling_matches_official.
- [audio_only, visual_only, early_fusion, late_fusion, utt_fusion, utt_dataaug, mmin, ifmmin, nmer] TextCNN
  windows. Official: the max-pool runs over every convolution window of the padded batch, windows over padding
  included. Here: over the windows inside the clip only (a clip shorter than a kernel keeps its first window).
  Why: a clip's embedding must not depend on the other clips in its batch. Restore:
  `methods.<run>.text_windows: padded`. Test: tests/golden/test_mmin.py::test_textcnn_padded_windows_match_official.
- [ifmmin, nmer] shared encoder. Official: the architecture is switched by substrings of `--run_idx`. Here: the
  default branch only (Linear, LeakyReLU, Linear, LeakyReLU). Why: no hidden switch. Restore: not switchable.
  Test: tests/golden/test_ifmmin.py::test_shared_encoder_matches_official.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

POOLING = ("valid", "padded")  # LSTMEncoder `pooling`, TextCNN `windows`: ours | the official code's
SUMMARIES = ("max", "attention", "mean", "stats")  # LSTMEncoder `summary` (params: encoder.<modality>.pooling)
AE_VARIANTS = ("mmin", "ifim_published", "ifim_head")
VAE_OUTPUTS = ("sigmoid", "linear")
VAE_ATTENTION = ("per_clip", "across_batch")
VAE_EVAL_LATENT = ("sample", "mean")
EVAL_NOISE_SEED = 0  # the generator of the latent noise a ConditionalVAE draws in evaluation (`eval_latent: sample`)


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else ValueError naming `what` and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return value


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool: True at frames t < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max over time (dim 1) of the frames t < length; a clip of length 0 gets a zero vector."""
    mask = valid_mask(lengths, x.shape[1])
    exclude = torch.where(mask, 0.0, float("-inf")).to(x.dtype)  # added, not masked_fill: 2x faster on an LSTM's output
    pooled = (x + exclude[..., None]).amax(dim=1)
    return torch.where((lengths > 0)[:, None], pooled, torch.zeros_like(pooled))


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over time (dim 1) of the frames t < length; a clip of length 0 gets a zero vector."""
    mask = valid_mask(lengths, x.shape[1])[..., None].to(x.dtype)
    return (x * mask).sum(1) / lengths.clamp(min=1)[:, None].to(x.dtype)


class AttentionPooling(nn.Module):
    """Additive attention over the valid frames (Bahdanau et al. 2015): weights softmax_t(v^T tanh(W h_t)) over
    t < length, embedding sum_t weight_t h_t. Padding gets no weight, so a clip's embedding does not depend on its
    batch; a clip of length 0 gets a zero vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))

    def weights(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) attention weights, zero on padding (and for a clip of length 0)."""
        scores = self.score(x)[..., 0].float().masked_fill(~valid_mask(lengths, x.shape[1]), float("-inf"))
        return torch.nan_to_num(torch.softmax(scores, dim=1), nan=0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (self.weights(x, lengths).to(x.dtype)[..., None] * x).sum(1)


def blank_rows(x: torch.Tensor) -> torch.Tensor:
    """(B,) True for the clips of (B, T, D) `x` whose frames are all zero (max and min 0: two reductions without a
    temporary, several times faster on a CPU than `any()` or `abs().amax()`)."""
    return (x.amax((1, 2)) == 0) & (x.amin((1, 2)) == 0)


def in_order(parts: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
    """Row blocks `parts` of a batch, block k holding the batch rows `rows[k]`, put back in batch order."""
    return torch.cat(parts)[torch.argsort(torch.cat(rows))]


class LSTMEncoder(nn.Module):
    """(B, T, in_dim) frames -> (B, hidden) utterance embedding (docs/methods.md §1.3, `embd_method=maxpool`): the max
    of the LSTM outputs over the valid frames (`pooling="valid"`) or over all T frames (`"padded"`, official); the
    options `summary`, `layers`, `bidirectional` and `conv` are described in the module docstring (their defaults:
    the official encoder).

    Clips whose frames are all zero (a modality a condition removed, zero-filled) are not run with the batch: the
    LSTM's outputs on zero input are the same for every clip, so they are computed once, on one zero sequence as
    long as the longest such clip, and each such clip takes their summary at its own length, the value (and
    gradient) it would get in the batch; about half the LSTM's work when a condition removes one of two modalities.
    (Not for a bidirectional LSTM, whose backward outputs depend on each clip's length.)
    """

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        pooling: str = "valid",
        summary: str = "max",
        layers: int = 1,
        bidirectional: bool = False,
        conv: int = 0,
    ):
        super().__init__()
        self.pooling = check_choice("LSTMEncoder pooling", pooling, POOLING)
        self.summary = check_choice("LSTMEncoder summary", summary, SUMMARIES)
        if bidirectional and hidden % 2:
            raise ValueError(
                f"a bidirectional LSTMEncoder splits hidden ({hidden}) between its two directions: use an even width"
            )
        self.conv = nn.Conv1d(in_dim, hidden, conv, padding="same") if conv else None
        self.lstm = nn.LSTM(
            hidden if conv else in_dim,
            hidden // 2 if bidirectional else hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.attention = AttentionPooling(hidden) if summary == "attention" else None
        self.stats = nn.Linear(2 * hidden, hidden) if summary == "stats" else None
        self.out_dim = hidden

    def outputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) outputs of the convolution (if any) and the LSTM."""
        if self.conv is not None:
            x = x * valid_mask(lengths, x.shape[1])[..., None].to(x.dtype)
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        if self.lstm.bidirectional:  # the backward direction starts at each clip's last frame, not at its padding
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            return nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        return self.lstm(x)[0]

    def pool(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The (B, hidden) summary of the outputs over the frames t < length (zero for a clip of length 0)."""
        if self.summary == "max":
            return masked_max(outputs, lengths)
        if self.summary == "attention":
            return self.attention(outputs, lengths)
        mean = masked_mean(outputs, lengths)
        if self.summary == "mean":
            return mean
        spread = masked_mean((outputs - mean[:, None]) ** 2, lengths).clamp(min=1e-8).sqrt()
        pooled = self.stats(torch.cat([mean, spread], dim=1))
        return torch.where((lengths > 0)[:, None], pooled, torch.zeros_like(pooled))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "padded":  # official: the max over every frame of the padded batch, padding included
            lengths = torch.full_like(lengths, x.shape[1])
        blank = blank_rows(x)
        if self.lstm.bidirectional or not bool(blank.any()):
            return self.pool(self.outputs(x, lengths), lengths)
        live, dead = (~blank).nonzero()[:, 0], blank.nonzero()[:, 0]
        longest = max(int(lengths[dead].max()), 1)
        zeros = x.new_zeros(1, longest, x.shape[2])
        shared = self.pool(
            self.outputs(zeros, lengths.new_full((1,), longest)).expand(len(dead), -1, -1), lengths[dead]
        )
        if len(live) == 0:
            return shared
        frames = x[live, : max(int(lengths[live].max()), 1)]
        return in_order([self.pool(self.outputs(frames, lengths[live]), lengths[live]), shared], [live, dead])


class TextCNN(nn.Module):
    """(B, T, emb_dim) token features -> (B, out_dim) (docs/methods.md §1.3; Kim 2014). Each branch's max runs over
    the windows inside the clip (`windows="valid"`) or over every window of the padded batch (`"padded"`,
    official); a batch shorter than the widest kernel is zero-padded up to it in both cases. A zero-filled clip
    (text removed by a condition) is not convolved: each of its windows gives relu(bias), which is then its max."""

    pure_in_eval = True  # forward(x, lengths) depends on them alone in eval mode (`mer_core.evaluate.reuse_encodings`)

    def __init__(
        self,
        in_dim: int,
        channels: int = 128,
        kernels: tuple[int, ...] = (3, 4, 5),
        dropout: float = 0.5,
        out_dim: int = 128,
        windows: str = "valid",
    ):
        super().__init__()
        self.kernels = kernels
        self.windows = check_choice("TextCNN windows", windows, POOLING)
        self.convs = nn.ModuleList(nn.Conv2d(1, channels, (k, in_dim)) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Sequential(nn.Linear(channels * len(kernels), out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = max(self.kernels) - x.shape[1]
        if pad > 0:  # shorter than the widest kernel: zero-pad (with `valid` windows the padding is masked out)
            x = nn.functional.pad(x, (0, 0, 0, pad))
        if self.windows == "padded":  # official: every window of the padded batch, whatever each clip's length
            lengths = torch.full_like(lengths, x.shape[1])
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
    """(B, width) -> (B, width): the modality-shared encoder S of IF-MMIN (default branch, docs/methods.md §3.1)."""

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

    `variant="mmin"` (MMIN, docs/methods.md §2): block k's input is block k-1's input plus its output (block 1
    takes x); the transition reads the last block's input plus output.
    `variant="ifim_published"` (IF-MMIN's IF-IM as released with the paper, `autoencoder_2.py` at a4b6ef4,
    §3.2): the invariant features `condition` are added to a running input, so block k reads x + k x condition;
    the decoder outputs of blocks 1..n-1 are not used; the transition reads the last block's input plus output.
    `variant="ifim_head"` (the same file as rewritten in 2024, HEAD f4d65fc): block k's input is block k-1's
    decoder output plus `condition` (block 1: x + condition); the transition reads the last decoder output.

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
            raise ValueError(f"ResidualAE({self.variant!r}): the IF-IM variants need `condition`, MMIN's takes none")
        latents = []
        block_in, block_out = x, torch.zeros_like(x)
        for k, (encoder, decoder) in enumerate(zip(self.encoders, self.decoders)):
            if self.variant == "mmin":
                block_in = block_in + block_out
            elif self.variant == "ifim_published":
                block_in = block_in + condition
            else:
                block_in = (x if k == 0 else block_out) + condition
            latents.append(encoder(block_in))
            block_out = decoder(latents[-1])
        last = block_out if self.variant == "ifim_head" else block_in + block_out
        return self.transition(last), torch.cat(latents, dim=1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) of integer steps t (B,) (Vaswani et al. 2017; DDPM's time embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    embedding = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(embedding, (0, dim - 2 * half))


class ConditionalDenoiser(nn.Module):
    """A small conditional network for vectors: a correction of x_t from [x_t, condition, emb(t)] (MLP, SiLU);
    forward returns x_t + correction, the denoised estimate of x_0.

    Stands in for NMER's stage-1 diffusers UNet (docs/methods.md §4.2), which reads the batch reshaped into one
    1 x 4 x 64 x 96 "image" (batch size hard-wired to 64), conditioned on the invariant features: the same
    inputs and conditioning, per clip, any batch size. What its output is trained towards is the loss's choice
    (`mer_core.losses.denoise_term`).
    """

    def __init__(self, dim: int, condition_dim: int, hidden: int, time_dim: int = 32):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(
            nn.Linear(dim + condition_dim + time_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def correction(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The network's output (B, dim) on the noised x_t at steps t (B,): the stand-in for the UNet's output."""
        return self.net(torch.cat([x_t, condition, timestep_embedding(t, self.time_dim)], dim=1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return x_t + self.correction(x_t, t, condition)


class ConditionalVAE(nn.Module):
    """NMER's ConditionVAE (docs/methods.md §4.3): a transformer encoder over [x, c] (post-norm, `layers` x
    (`heads` heads, FFN `ffn`, dropout 0.1)), linear heads mu and log sigma^2 (-> `latent`), z = mu + sigma
    eps, decoder [z, c] -> `decoder_hidden` (LeakyReLU) -> x_dim, then a sigmoid (`output="sigmoid"`, official)
    or nothing (`"linear"`).

    `attention="per_clip"`: each clip is its own sequence of one token [x, c] (input (B, 1, D)); attention then
    reduces to its value and output projections. `"across_batch"`: the (B, D) matrix goes in as the official code
    passes it, a 2-D tensor that PyTorch reads as *one unbatched sequence of B tokens*, so self-attention mixes the
    clips of a batch (a bug; predictions then depend on the batch).
    In evaluation, `eval_latent="sample"` draws z = mu + sigma eps as in training (official), with eps from a
    generator seeded afresh at every call (`EVAL_NOISE_SEED`), so predictions stay deterministic; `"mean"` takes
    z = mu. In training eps comes from torch's global generator.

    forward(x, c) -> (reconstruction (B, x_dim), mu (B, latent), logvar (B, latent)).
    """

    def __init__(
        self,
        x_dim: int,
        c_dim: int,
        latent: int,
        layers: int = 5,
        heads: int = 8,
        ffn: int = 128,
        decoder_hidden: int = 128,
        output: str = "sigmoid",
        attention: str = "per_clip",
        eval_latent: str = "sample",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.output = check_choice("ConditionalVAE output", output, VAE_OUTPUTS)
        self.attention = check_choice("ConditionalVAE attention", attention, VAE_ATTENTION)
        self.eval_latent = check_choice("ConditionalVAE eval_latent", eval_latent, VAE_EVAL_LATENT)
        width = x_dim + c_dim
        if width % heads:
            raise ValueError(f"ConditionalVAE: heads ({heads}) must divide the token width x_dim + c_dim ({width})")
        block = nn.TransformerEncoderLayer(width, heads, ffn, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.mu = nn.Linear(width, latent)
        self.logvar = nn.Linear(width, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent + c_dim, decoder_hidden), nn.LeakyReLU(), nn.Linear(decoder_hidden, x_dim)
        )

    def noise(self, mu: torch.Tensor) -> torch.Tensor:
        """eps ~ N(0, I) of mu's shape: from the global generator in training, from a freshly seeded one in eval."""
        if self.training:
            return torch.randn_like(mu)
        generator = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        return torch.randn(mu.shape, generator=generator).to(mu)

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The transformer's output (B, x_dim + c_dim) on the tokens [x, c]."""
        tokens = torch.cat([x, c], dim=1)
        return self.encoder(tokens) if self.attention == "across_batch" else self.encoder(tokens[:, None, :])[:, 0]

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encode(x, c)
        mu, logvar = self.mu(h), self.logvar(h)
        sample = self.training or self.eval_latent == "sample"
        z = mu + self.noise(mu) * (0.5 * logvar).exp() if sample else mu
        recon = self.decoder(torch.cat([z, c], dim=1))
        return (recon.sigmoid() if self.output == "sigmoid" else recon), mu, logvar


def frozen(module: nn.Module) -> nn.Module:
    """A frozen deep copy of `module` (no gradient, kept in eval mode by its owner)."""
    twin = copy.deepcopy(module).eval()
    twin.requires_grad_(False)
    return twin


def kaiming_init_(module: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in) weights and zero biases on every Linear and Conv layer of `module`, in place
    (MMIN family `init_type=kaiming`, docs/methods.md §1.3); LSTM and normalisation layers keep their defaults."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
