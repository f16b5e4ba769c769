"""mer_core.conformer: a padding-aware Conformer (sinusoid, MaskedBatchNorm1d, relative MHSA, convolution module,
ConformerBlock, Conformer, masked_mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mer_core.conformer import (
    Conformer,
    ConformerBlock,
    ConvolutionModule,
    MaskedBatchNorm1d,
    RelativeMultiHeadAttention,
    depthwise,
    masked_mean,
    pointwise,
    sinusoid,
)
from mer_core.layers import valid_mask

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pad(x: torch.Tensor, total: int, fill: str = "garbage") -> torch.Tensor:
    """(B, T, D) -> (B, total, D) with zero (or large random garbage) frames appended."""
    extra = total - x.shape[1]
    shape = (x.shape[0], extra, x.shape[2])
    tail = torch.zeros(shape) if fill == "zeros" else 50 * torch.randn(shape)
    return torch.cat([x, tail], dim=1)


def small_conformer(
    in_dim: int = 5, d_model: int = 16, blocks: int = 2, heads: int = 4, kernel: int = 5, dropout: float = 0.0
) -> Conformer:
    return Conformer(in_dim, d_model, blocks, heads, ffn_expansion=2, kernel=kernel, dropout=dropout)


def randomise_batch_norm_stats(model: nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode batch norm is not the identity."""
    for module in model.modules():
        if isinstance(module, MaskedBatchNorm1d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)


def vavl_axis_quirk(model: Conformer, x: torch.Tensor) -> torch.Tensor:
    """What the released VAVL code does: a (T, B, D) tensor fed to a Conformer expecting (B, T, D), so time is
    the batch axis and the clips of the batch are the 'frames' (every 'frame' is valid). Returns (B, T, d)."""
    time_major = x.transpose(0, 1)  # (T, B, D)
    lengths = torch.full((time_major.shape[0],), time_major.shape[1], dtype=torch.long)
    return model(time_major, lengths).transpose(0, 1)


# --------------------------------------------------------------------------------------------- sinusoid


def test_sinusoid_known_values():
    emb = sinusoid(torch.tensor([0, 1, -1]), 4)
    assert emb.shape == (3, 4)
    assert emb[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # frequencies 1 and 1e4 ** (-2/4) = 0.01
    expected = torch.tensor([math.sin(1.0), math.cos(1.0), math.sin(0.01), math.cos(0.01)])
    torch.testing.assert_close(emb[1], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(emb[2], expected * torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-6, rtol=0)


def test_sinusoid_odd_dim():
    emb = sinusoid(torch.arange(-3, 4), 5)
    assert emb.shape == (7, 5)
    assert emb[3].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]  # position 0
    freqs = [1e4 ** (-i / 5) for i in (0, 2, 4)]
    p = 2.0
    expected = [
        math.sin(p * freqs[0]),
        math.cos(p * freqs[0]),
        math.sin(p * freqs[1]),
        math.cos(p * freqs[1]),
        math.sin(p * freqs[2]),
    ]
    torch.testing.assert_close(emb[5], torch.tensor(expected), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------- shapes and masked_mean


def test_conformer_shape_and_zero_padded_frames():
    model = small_conformer(in_dim=5, d_model=16)
    lengths = torch.tensor([9, 4, 1, 0])
    out = model(pad(torch.randn(4, 6, 5), 9), lengths)
    assert out.shape == (4, 9, 16) and model.out_dim == 16
    assert torch.isfinite(out).all()
    mask = valid_mask(lengths, 9)
    assert (out[~mask] == 0).all()
    assert (out[mask].abs().sum(-1) > 0).all()  # valid frames are not zeroed


def test_masked_mean_known_values():
    x = torch.tensor(
        [
            [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
            [[5.0, -6.0], [-50.0, 70.0], [9.0, 9.0]],
            [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]],
        ]
    )
    out = masked_mean(x, torch.tensor([2, 1, 0]))
    assert out.tolist() == [[2.0, 3.0], [5.0, -6.0], [0.0, 0.0]]


def test_masked_mean_matches_mean_of_valid_frames():
    x = torch.randn(3, 7, 4)
    lengths = torch.tensor([7, 3, 0])
    out = masked_mean(x, lengths)
    torch.testing.assert_close(out[0], x[0].mean(0))
    torch.testing.assert_close(out[1], x[1, :3].mean(0))
    assert out[2].tolist() == [0.0] * 4


# ------------------------------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("fill", ["zeros", "garbage"])
def test_eval_output_invariant_to_appended_padding(fill):
    model = small_conformer().eval()
    randomise_batch_norm_stats(model)
    clip = torch.randn(1, 6, 5)
    alone = model(clip, torch.tensor([6]))
    padded = model(pad(clip, 13, fill), torch.tensor([6]))
    torch.testing.assert_close(padded[:, :6], alone, atol=ATOL, rtol=0)
    assert (padded[:, 6:] == 0).all()


def test_eval_output_invariant_to_batch_neighbours_and_order():
    model = small_conformer().eval()
    randomise_batch_norm_stats(model)
    lengths = [6, 11, 2, 8]
    clips = [torch.randn(1, n, 5) for n in lengths]
    alone = [model(c, torch.tensor([c.shape[1]])) for c in clips]
    batch = torch.cat([pad(c, 11) for c in clips])
    together = model(batch, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        torch.testing.assert_close(together[i : i + 1, :n], alone[i], atol=ATOL, rtol=0)
    order = torch.tensor([3, 0, 2, 1])
    permuted = model(batch[order], torch.tensor(lengths)[order])
    torch.testing.assert_close(permuted, together[order], atol=ATOL, rtol=0)


def test_train_mode_output_invariant_to_appended_garbage():
    """MaskedBatchNorm1d takes its training statistics over valid frames only (dropout 0: deterministic)."""
    batch = torch.randn(2, 7, 5)
    lengths = torch.tensor([7, 4])
    model_a = small_conformer(dropout=0.0).train()
    model_b = small_conformer(dropout=0.0).train()
    model_b.load_state_dict(model_a.state_dict())
    short = model_a(batch, lengths)
    long = model_b(pad(batch, 15), lengths)
    torch.testing.assert_close(long[:, :7], short, atol=ATOL, rtol=0)
    assert (long[:, 7:] == 0).all()
    for a, b in zip(model_a.modules(), model_b.modules()):
        if isinstance(a, MaskedBatchNorm1d):
            torch.testing.assert_close(b.running_mean, a.running_mean, atol=ATOL, rtol=0)
            torch.testing.assert_close(b.running_var, a.running_var, atol=ATOL, rtol=0)
            assert not torch.equal(a.running_mean, torch.zeros_like(a.running_mean))  # they were updated


class _UnmaskedBatchNorm(nn.BatchNorm1d):
    """A plain nn.BatchNorm1d (statistics over every frame, padding included) with MaskedBatchNorm1d's call."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - mask ignored
        return super().forward(x)


def test_unmasked_batch_norm_would_break_train_mode_padding_invariance():
    conv = ConvolutionModule(8, kernel=5, dropout=0.0).train()
    x = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 3])
    mask_short, mask_long = valid_mask(lengths, 6), valid_mask(lengths, 12)
    x_long = pad(x, 12)

    # the statistics: over all frames (padding included) they differ from those over the valid frames
    seen = {}
    conv.batch_norm.register_forward_hook(lambda m, args, out: seen.setdefault("h", args[0].detach().clone()))
    conv(x_long, mask_long)
    h = seen["h"]  # (B, C, T): the depthwise output, which is non-zero at padded frames (bias, kernel spill-over)
    weights = mask_long[:, None, :].float()
    masked_stat = (h * weights).sum((0, 2)) / weights.sum()
    plain_stat = h.mean((0, 2))
    assert (masked_stat - plain_stat).abs().max() > 1e-2

    # the masked module is padding-invariant in train mode; the same weights with nn.BatchNorm1d are not
    masked = ConvolutionModule(8, kernel=5, dropout=0.0).train()
    torch.testing.assert_close(
        masked(x_long, mask_long)[:, :6] * mask_short[..., None],
        masked(x, mask_short) * mask_short[..., None],
        atol=ATOL,
        rtol=0,
    )
    unmasked = ConvolutionModule(8, kernel=5, dropout=0.0).train()
    unmasked.load_state_dict(masked.state_dict())
    unmasked.batch_norm = _UnmaskedBatchNorm(8)
    short_out = unmasked(x, mask_short) * mask_short[..., None]
    long_out = unmasked(x_long, mask_long)[:, :6] * mask_short[..., None]
    assert (long_out - short_out).abs().max() > 1e-2


def test_vavl_axis_quirk_mixes_clips_but_ours_does_not():
    model = small_conformer().eval()
    randomise_batch_norm_stats(model)
    batch = torch.randn(3, 6, 5)
    changed = batch.clone()
    changed[1] = torch.randn(6, 5)  # only clip 1 changes
    lengths = torch.tensor([6, 6, 6])

    ours, ours_changed = model(batch, lengths), model(changed, lengths)
    torch.testing.assert_close(ours_changed[0], ours[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(ours_changed[2], ours[2], atol=ATOL, rtol=0)

    quirk, quirk_changed = vavl_axis_quirk(model, batch), vavl_axis_quirk(model, changed)
    assert quirk.shape == ours.shape
    assert (quirk_changed[0] - quirk[0]).abs().max() > 1e-3  # clip 0's output depends on clip 1
    assert (quirk_changed[2] - quirk[2]).abs().max() > 1e-3
    # and the time axis is not mixed: frames of one clip are independent 'batch items' there
    alone = vavl_axis_quirk(model, batch[:, :1])
    torch.testing.assert_close(quirk[:, :1], alone, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------ MaskedBatchNorm1d


def test_masked_batch_norm_training_statistics_match_valid_frames():
    bn = MaskedBatchNorm1d(3, momentum=0.1).train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(2, 3, 6)
    x[0, :, 4:] = 100.0  # padding of clip 0
    x[1, :, 2:] = -77.0  # padding of clip 1
    mask = valid_mask(torch.tensor([4, 2]), 6)
    out = bn(x, mask)

    valid = np.concatenate([x[0, :, :4].numpy(), x[1, :, :2].numpy()], axis=1)  # (C, 6 valid frames)
    mean, var = valid.mean(1), valid.var(1)
    expected = (x.numpy() - mean[None, :, None]) / np.sqrt(var[None, :, None] + 1e-5)
    expected = expected * bn.weight.detach().numpy()[None, :, None] + bn.bias.detach().numpy()[None, :, None]
    m = mask.numpy()
    np.testing.assert_allclose(
        out.detach().numpy().transpose(0, 2, 1)[m], expected.transpose(0, 2, 1)[m], atol=1e-5, rtol=1e-5
    )
    # running stats: momentum 0.1 towards the batch mean and the UNBIASED variance
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * valid.var(1, ddof=1), atol=1e-6, rtol=1e-5)


def test_masked_batch_norm_matches_nn_batchnorm_on_valid_frames_with_gradients():
    """Reference: nn.BatchNorm1d on the valid frames alone; outputs, running stats and gradients agree."""
    masked = MaskedBatchNorm1d(4, momentum=0.3).train()
    reference = nn.BatchNorm1d(4, momentum=0.3).train()
    with torch.no_grad():
        for bn in (masked, reference):
            bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
            bn.bias.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    lengths = torch.tensor([5, 1, 3])
    mask = valid_mask(lengths, 5)
    x = torch.randn(3, 4, 5) * 3 + 1
    x = torch.where(mask[:, None, :], x, torch.full_like(x, 1e3))  # garbage at padded frames
    x_masked, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(3, 4, 5)

    out = masked(x_masked, mask)
    (out * upstream * mask[:, None, :]).sum().backward()
    valid = x_ref.transpose(1, 2)[mask]  # (N valid, C)
    ref_out = reference(valid)
    (ref_out * upstream.transpose(1, 2)[mask]).sum().backward()

    torch.testing.assert_close(out.transpose(1, 2)[mask], ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_mean, reference.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_var, reference.running_var, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.weight.grad, reference.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(masked.bias.grad, reference.bias.grad, atol=1e-4, rtol=1e-4)
    assert masked.weight.grad.abs().min() > 0 and masked.bias.grad.abs().min() > 0
    torch.testing.assert_close(x_masked.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    assert (x_masked.grad[~mask[:, None, :].expand_as(x)] == 0).all()  # padding gets no gradient


def test_masked_batch_norm_eval_uses_running_stats():
    bn = MaskedBatchNorm1d(2)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    bn.eval()
    x = torch.randn(2, 2, 3)
    mask = valid_mask(torch.tensor([3, 1]), 3)
    out = bn(x, mask)
    std = torch.sqrt(torch.tensor([4.0, 0.25]) + 1e-5)
    expected = (x - torch.tensor([1.0, -2.0])[None, :, None]) / std[None, :, None]
    expected = expected * torch.tensor([2.0, 1.0])[None, :, None] + torch.tensor([0.5, 0.0])[None, :, None]
    torch.testing.assert_close(out, expected)
    assert bn.running_mean.tolist() == [1.0, -2.0] and bn.running_var.tolist() == [4.0, 0.25]  # not updated
    # per-frame in eval: a frame's output depends on nothing else in the batch
    torch.testing.assert_close(bn(x[:1, :, :1], mask[:1, :1]), out[:1, :, :1])


def test_masked_batch_norm_under_bf16_autocast_keeps_float32_statistics():
    """Under `train.precision: bf16` the convolution module hands bfloat16 frames to the batch norm: its statistics
    and output are computed in float32 from them (as torch's own batch norm does under autocast), and the running
    statistics stay float32."""
    torch.manual_seed(0)
    x, mask = torch.randn(3, 4, 6).bfloat16(), valid_mask(torch.tensor([6, 4, 2]), 6)
    half, full = MaskedBatchNorm1d(4).train(), MaskedBatchNorm1d(4).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = half(x, mask)
    expected = full(x.float(), mask)
    assert out.dtype == torch.float32 and half.running_mean.dtype == half.running_var.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(half.running_mean, full.running_mean)
    torch.testing.assert_close(half.running_var, full.running_var)


# ------------------------------------------------------------------------------ RelativeMultiHeadAttention


def capture_attention(module: RelativeMultiHeadAttention) -> list[torch.Tensor]:
    """The attention weights (B, H, T, T): the first call of module.dropout in a forward pass (eval: identity)."""
    captured: list[torch.Tensor] = []

    def hook(m, args, out):
        if out.dim() == 4:  # the second call (on the projected output) is (B, T, d)
            captured.append(out.detach().clone())

    module.dropout.register_forward_hook(hook)
    return captured


def test_attention_gives_no_weight_to_padded_keys():
    attention = RelativeMultiHeadAttention(16, 4, dropout=0.0).eval()
    captured = capture_attention(attention)
    lengths = torch.tensor([7, 3])
    mask = valid_mask(lengths, 7)
    x = torch.randn(2, 7, 16)
    out = attention(x, mask)
    weights = captured[0]
    assert weights.shape == (2, 4, 7, 7)
    assert (weights[1, :, :, 3:] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))

    garbage = x.clone()
    garbage[1, 3:] = 1e3 * torch.randn(4, 16)
    out_garbage = attention(garbage, mask)
    torch.testing.assert_close(out_garbage[1, :3], out[1, :3], atol=ATOL, rtol=0)
    torch.testing.assert_close(out_garbage[0], out[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(attention(x[1:, :3], mask[1:, :3]), out[1:, :3], atol=ATOL, rtol=0)


def reference_attention(module: RelativeMultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Attention weights (H, T, T) of one unpadded clip x (T, d) from the Transformer-XL formula with explicit
    loops: score(i, j) = ((q_i + u)·k_j + (q_i + v)·W_r r_{i-j}) / sqrt(d_model or d_h, the `scale`), r = sinusoid."""
    length, d_model = x.shape
    heads, dh = module.heads, module.head_dim
    h = module.norm(x)
    q = module.query(h).view(length, heads, dh)
    k = module.key(h).view(length, heads, dh)
    scores = torch.empty(heads, length, length)
    for i in range(length):
        for j in range(length):
            r = module.position(sinusoid(torch.tensor([i - j]), d_model)[0]).view(heads, dh)
            content = ((q[i] + module.content_bias) * k[j]).sum(-1)
            positional = ((q[i] + module.position_bias) * r).sum(-1)
            scores[:, i, j] = (content + positional) / math.sqrt(d_model if module.scale == "d_model" else dh)
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("scale", ["d_model", "d_head"])
def test_attention_weights_match_transformer_xl_formula(scale):
    attention = RelativeMultiHeadAttention(8, 2, dropout=0.0, scale=scale).eval()
    captured = capture_attention(attention)
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        attention(x, torch.ones(1, 5, dtype=torch.bool))
        expected = reference_attention(attention, x[0])
    torch.testing.assert_close(captured[0][0], expected, atol=1e-5, rtol=1e-4)


def test_absolute_shift_positions_follow_the_shift_of_absolute_sinusoids():
    """`positions="absolute_shift"` (VAVL's vendored attention): with s(i, p) = (q_i + v)·W_r r_p for the absolute
    positions p = 0..T-1, the shifted term of (i, j) is s(i, T-1-(i-j)) for j <= i, 0 for j = i + 1 and
    s(i+1, j-i-2) beyond (an entry of the next query row), written out here with loops."""
    attention = RelativeMultiHeadAttention(8, 2, dropout=0.0, positions="absolute_shift").eval()
    captured = capture_attention(attention)
    length, x = 5, torch.randn(1, 5, 8)
    with torch.no_grad():
        attention(x, torch.ones(1, length, dtype=torch.bool))
        h = attention.norm(x[0])
        q, k = attention.query(h).view(length, 2, 4), attention.key(h).view(length, 2, 4)
        r = attention.position(sinusoid(torch.arange(length), 8)).view(length, 2, 4)
        s = torch.einsum("ihd,phd->hip", q + attention.position_bias, r)
        scores = torch.empty(2, length, length)
        for i in range(length):
            for j in range(length):
                content = ((q[i] + attention.content_bias) * k[j]).sum(-1)
                if j <= i:
                    positional = s[:, i, length - 1 - (i - j)]
                elif j == i + 1:
                    positional = torch.zeros(2)
                else:
                    positional = s[:, i + 1, j - i - 2]
                scores[:, i, j] = (content + positional) / math.sqrt(8)
    torch.testing.assert_close(captured[0][0], torch.softmax(scores, -1), atol=1e-5, rtol=1e-4)


def test_positional_term_depends_only_on_relative_distance():
    """With the same content in every frame the content term is constant over keys, so log-attention minus its
    diagonal is the positional term g(i - j) - g(0): a Toeplitz matrix, and the same for T = 5 and T = 8."""
    attention = RelativeMultiHeadAttention(16, 2, dropout=0.0).eval()
    captured = capture_attention(attention)
    frame = torch.randn(1, 1, 16)
    with torch.no_grad():
        for length in (5, 8):
            attention(frame.expand(1, length, 16).contiguous(), torch.ones(1, length, dtype=torch.bool))
    logs = [torch.log(w[0]) for w in captured]  # (H, T, T)
    relative = [lw - torch.diagonal(lw, dim1=-2, dim2=-1)[..., None] for lw in logs]  # minus log A[i, i]
    short, long = relative
    torch.testing.assert_close(long[:, :5, :5], short, atol=1e-4, rtol=0)
    for i in range(1, 8):
        for j in range(1, 8):
            torch.testing.assert_close(long[:, i, j], long[:, i - 1, j - 1], atol=1e-4, rtol=0)
    assert (long[:, 0, 1:] - long[:, 1:, 0]).abs().max() > 1e-3  # i - j and j - i are not the same distance


# ------------------------------------------------------------------------------------------ ConvolutionModule


def test_convolution_module_even_kernel_raises():
    with pytest.raises(ValueError, match="odd"):
        ConvolutionModule(8, kernel=4, dropout=0.0)
    with pytest.raises(ValueError):
        Conformer(5, 16, 1, 4, kernel=6)


def test_convolution_module_receptive_field():
    kernel = 5
    conv = ConvolutionModule(8, kernel=kernel, dropout=0.0).eval()
    randomise_batch_norm_stats(conv)
    x = torch.randn(1, 20, 8)
    mask = torch.ones(1, 20, dtype=torch.bool)
    base = conv(x, mask)
    t = 10
    moved = x.clone()
    moved[0, t] += 3 * torch.randn(8)
    changed = (conv(moved, mask) - base).abs().amax(-1)[0]  # (T,)
    inside = torch.arange(20)
    inside = (inside - t).abs() <= kernel // 2
    assert (changed[~inside] == 0).all()
    assert (changed[inside] > 1e-6).all()


def test_convolution_module_sees_zeros_beyond_clip_end():
    conv = ConvolutionModule(8, kernel=5, dropout=0.0).eval()
    randomise_batch_norm_stats(conv)
    x = torch.randn(1, 6, 8)
    alone = conv(x, torch.ones(1, 6, dtype=torch.bool))
    padded = conv(pad(x, 10), valid_mask(torch.tensor([6]), 10))
    torch.testing.assert_close(padded[:, :6], alone, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("lengths", [[6, 1, 4], [6, 0, 3], [1], [0, 2], [0, 0]])
def test_gradients_finite_for_short_and_empty_clips(lengths):
    model = small_conformer(dropout=0.1).train()
    lengths = torch.tensor(lengths)
    x = pad(torch.randn(len(lengths), 6, 5), 6)
    x = torch.where(valid_mask(lengths, 6)[..., None], x, 1e3 * torch.randn_like(x))
    out = model(x, lengths)
    assert torch.isfinite(out).all()
    pooled = masked_mean(out, lengths)
    assert torch.isfinite(pooled).all()
    assert (pooled[lengths == 0] == 0).all()
    loss = (pooled**2).sum() + out.sum()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    for m in model.modules():
        if isinstance(m, MaskedBatchNorm1d):
            assert torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all()


def test_gradients_do_not_reach_padded_input_frames():
    model = small_conformer(dropout=0.0).train()
    lengths = torch.tensor([6, 2, 0])
    x = torch.randn(3, 6, 5, requires_grad=True)
    (model(x, lengths) * torch.randn(3, 6, 16)).sum().backward()  # (a plain sum is constant after LayerNorm)
    mask = valid_mask(lengths, 6)
    assert (x.grad[~mask] == 0).all()
    assert (x.grad[mask].abs().sum(-1) > 0).all()


def test_masked_batch_norm_batch_without_valid_frames_leaves_running_stats_alone():
    bn = MaskedBatchNorm1d(3).train()
    with torch.no_grad():
        bn.running_mean.fill_(2.0)
        bn.running_var.fill_(3.0)
    out = bn(torch.randn(2, 3, 4), valid_mask(torch.tensor([0, 0]), 4))
    assert torch.isfinite(out).all()
    assert bn.running_mean.tolist() == [2.0] * 3 and bn.running_var.tolist() == [3.0] * 3


# ------------------------------------------------------------------------------------------- construction


def test_conformer_block_follows_gulati_eq_1():
    """x + ½FFN -> + MHSA -> + Conv -> + ½FFN -> LayerNorm, padded frames zeroed (composed from the submodules)."""
    block = ConformerBlock(16, 4, ffn_expansion=2, kernel=3, dropout=0.0).eval()
    randomise_batch_norm_stats(block)
    x = torch.randn(2, 6, 16)
    mask = valid_mask(torch.tensor([6, 4]), 6)
    h = x + 0.5 * block.ffn_in(x)
    h = h + block.attention(h, mask)
    h = h + block.convolution(h, mask)
    h = h + 0.5 * block.ffn_out(h)
    expected = block.norm(h) * mask[..., None]
    torch.testing.assert_close(block(x, mask), expected)
    ffn = block.ffn_in.net
    assert isinstance(ffn[0], nn.LayerNorm) and ffn[1].out_features == 32 and isinstance(ffn[2], nn.SiLU)


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="heads"):
        ConformerBlock(16, 3)
    with pytest.raises(ValueError, match="heads"):
        Conformer(5, 10, 1, 4)
    ConformerBlock(16, 2)  # fine


# ------------------------------------------------------------------------------ fast convolutions


@pytest.mark.parametrize("length", [3, 31, 124, 125])  # 125 > 4 x 31: the convolution itself
def test_depthwise_and_pointwise_equal_the_convolutions_in_values_and_gradients(length):
    torch.manual_seed(0)
    depth, point = nn.Conv1d(6, 6, 31, padding=15, groups=6), nn.Conv1d(6, 4, 1)
    x = torch.randn(3, 6, length, requires_grad=True)
    weights = torch.randn(3, 6, length)
    results = []
    for fast in (True, False):
        x.grad = None
        depth.zero_grad()
        point.zero_grad()
        out = depthwise(depth, x) if fast else depth(x)
        projected = pointwise(point, out.transpose(1, 2)) if fast else point(out).transpose(1, 2)
        ((out * weights).sum() + projected.pow(2).sum()).backward()
        results.append([out, projected, x.grad, depth.weight.grad, depth.bias.grad, point.weight.grad])
    for fast, slow in zip(*results):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
