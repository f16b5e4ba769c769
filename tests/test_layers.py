"""mer_core.layers: LSTMEncoder, masked_max, TextCNN, MLPClassifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mer_core.layers import (
    LSTMEncoder,
    MLPClassifier,
    ResidualAE,
    SharedEncoder,
    TextCNN,
    kaiming_init_,
    masked_max,
    valid_mask,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pad(x: torch.Tensor, total: int, fill: str = "zeros") -> torch.Tensor:
    """(B, T, D) -> (B, total, D) with zero (or random garbage) frames appended."""
    extra = total - x.shape[1]
    tail = (
        torch.zeros(x.shape[0], extra, x.shape[2])
        if fill == "zeros"
        else 50 * torch.randn(x.shape[0], extra, x.shape[2])
    )
    return torch.cat([x, tail], dim=1)


def test_valid_mask_and_masked_max_known_values():
    assert valid_mask(torch.tensor([0, 2, 3]), 3).tolist() == [
        [False, False, False],
        [True, True, False],
        [True, True, True],
    ]
    x = torch.tensor(
        [
            [[1.0, 5.0], [3.0, 2.0], [9.0, 9.0]],
            [[-1.0, -2.0], [-3.0, 0.0], [7.0, 7.0]],
            [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]],
        ]
    )
    out = masked_max(x, torch.tensor([2, 1, 0]))
    assert out.tolist() == [[3.0, 5.0], [-1.0, -2.0], [0.0, 0.0]]  # negatives kept; padding never wins
    assert masked_max(x, torch.tensor([3, 3, 3])).tolist() == [[9.0, 9.0], [7.0, 7.0], [4.0, 4.0]]


def test_masked_max_gradient_goes_to_the_max_frame_only():
    x = torch.tensor([[[1.0], [3.0], [9.0]], [[2.0], [0.0], [5.0]]], requires_grad=True)
    masked_max(x, torch.tensor([2, 0])).sum().backward()
    assert x.grad[..., 0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_lstm_encoder_shape():
    encoder = LSTMEncoder(5, hidden=7)
    out = encoder(torch.randn(3, 11, 5), torch.tensor([11, 4, 1]))
    assert out.shape == (3, 7) and encoder.out_dim == 7 and torch.isfinite(out).all()


@pytest.mark.parametrize("fill", ["zeros", "garbage"])
def test_lstm_encoder_padding_invariance(fill):
    encoder = LSTMEncoder(5, hidden=6).eval()
    clip = torch.randn(1, 7, 5)
    alone = encoder(clip, torch.tensor([7]))
    torch.testing.assert_close(encoder(pad(clip, 12, fill), torch.tensor([7])), alone, atol=1e-6, rtol=1e-5)
    others = [torch.randn(1, 15, 5), pad(torch.randn(1, 3, 5), 15, fill)]
    batch = torch.cat([others[0], pad(clip, 15, fill), others[1]])
    together = encoder(batch, torch.tensor([15, 7, 3]))
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(together[2:3], encoder(others[1][:, :3], torch.tensor([3])), atol=1e-6, rtol=1e-5)


def test_lstm_encoder_zero_length_gives_zeros():
    encoder = LSTMEncoder(4, hidden=5)
    out = encoder(torch.randn(2, 6, 4), torch.tensor([0, 6]))
    assert out[0].tolist() == [0.0] * 5 and out[1].abs().sum() > 0


@pytest.mark.parametrize("length", [9, 5, 3, 1])
def test_textcnn_shapes_including_short_sequences(length):
    cnn = TextCNN(6, channels=4, kernels=(3, 4, 5), dropout=0.5, out_dim=10).eval()
    out = cnn(torch.randn(2, length, 6), torch.tensor([length, max(length - 1, 1)]))
    assert out.shape == (2, 10) and cnn.out_dim == 10 and torch.isfinite(out).all()


def test_textcnn_padding_invariance():
    cnn = TextCNN(6, channels=4, out_dim=8).eval()
    long_clip, short_clip = torch.randn(1, 8, 6), torch.randn(1, 2, 6)  # 2 < widest kernel (5)
    alone_long = cnn(long_clip, torch.tensor([8]))
    alone_short = cnn(short_clip, torch.tensor([2]))
    torch.testing.assert_close(cnn(pad(long_clip, 13, "garbage"), torch.tensor([8])), alone_long)
    batch = torch.cat([pad(long_clip, 15), torch.randn(1, 15, 6), pad(short_clip, 15)])
    together = cnn(batch, torch.tensor([8, 15, 2]))
    torch.testing.assert_close(together[0:1], alone_long)
    torch.testing.assert_close(together[2:3], alone_short)


def test_textcnn_zero_length_pools_to_zero():
    cnn = TextCNN(3, channels=4, out_dim=5).eval()
    out = cnn(torch.randn(2, 6, 3), torch.tensor([0, 6]))
    torch.testing.assert_close(out[0], cnn.project(torch.zeros(12)))  # pooled features are all zero


def test_mlp_classifier_shapes_and_features():
    mlp = MLPClassifier(10, [16, 8], 6, dropout=0.3)
    logits, features = mlp(torch.randn(4, 10))
    assert logits.shape == (4, 6) and features.shape == (4, 8)
    assert (features >= 0).all()  # features follow a ReLU (dropout keeps the sign)
    direct = MLPClassifier(10, [], 3)
    x = torch.randn(4, 10)
    logits, features = direct(x)
    assert logits.shape == (4, 3) and torch.equal(features, x)
    assert [type(layer) for layer in mlp.hidden] == [nn.Linear, nn.ReLU, nn.Dropout] * 2


def test_mlp_classifier_batchnorm_option():
    mlp = MLPClassifier(10, [16, 8], 6, dropout=0.0, batchnorm=True)
    assert [type(layer) for layer in mlp.hidden] == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 2
    _, features = mlp.train()(3 + 2 * torch.randn(64, 10))
    torch.testing.assert_close(features.mean(0), torch.zeros(8), atol=1e-5, rtol=0)  # normalised in training


def test_mlp_dropout_only_in_training():
    mlp = MLPClassifier(10, [256], 3, dropout=0.5)
    x = torch.randn(8, 10)
    mlp.eval()
    first, second = mlp(x)[0], mlp(x)[0]
    assert torch.equal(first, second)
    linear, output = mlp.hidden[0], mlp.output
    torch.testing.assert_close(first, output(torch.relu(linear(x))))  # eval: no dropout at all
    mlp.train()
    assert not torch.equal(mlp(x)[0], mlp(x)[0])


def _check_gradients(module: nn.Module, output: torch.Tensor, x: torch.Tensor) -> None:
    (output * torch.randn_like(output)).sum().backward()  # random weights: BatchNorm's scale gets a gradient
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_gradients_flow_through_every_layer():
    x = torch.randn(3, 9, 5, requires_grad=True)
    lstm = LSTMEncoder(5, 6)
    _check_gradients(lstm, lstm(x, torch.tensor([9, 4, 0])), x)
    x = torch.randn(3, 9, 5, requires_grad=True)
    cnn = TextCNN(5, channels=8, dropout=0.0, out_dim=6)
    _check_gradients(cnn, cnn(x, torch.tensor([9, 2, 6])), x)
    x = torch.randn(16, 5, requires_grad=True)
    mlp = MLPClassifier(5, [12, 7], 4, dropout=0.2, batchnorm=True)
    _check_gradients(mlp, mlp(x)[0], x)


# --- MMIN / IF-MMIN layers ------------------------------------------------------------------------------------


def test_shared_encoder_shape_and_default_branch():
    encoder = SharedEncoder(6)
    assert encoder(torch.randn(4, 6)).shape == (4, 6)
    kinds = [type(layer) for layer in encoder.net]
    assert kinds == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU]


@pytest.mark.parametrize("variant", ["mmin", "ifim_published", "ifim_head"])
def test_residual_ae_sizes_follow_the_spec(variant):
    """384 -> 256 -> 128 -> 64 with 5 blocks (MMIN, 3 modalities x 128) gives (B, 384) and (B, 320)."""
    ae = ResidualAE(384, [256, 128, 64], n_blocks=5, variant=variant)
    condition = None if variant == "mmin" else torch.randn(2, 384)
    out, latents = ae(torch.randn(2, 384), condition)
    assert out.shape == (2, 384) and latents.shape == (2, 320) and ae.latent_dim == 320
    encoder = ae.encoders[0]
    assert [m.out_features for m in encoder if isinstance(m, nn.Linear)] == [256, 128, 64]
    assert [type(m) for m in encoder] == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Linear]
    decoder = ae.decoders[0]
    assert [m.out_features for m in decoder if isinstance(m, nn.Linear)] == [128, 256, 384]
    assert [type(m) for m in decoder] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    small = ResidualAE(2 * 8, [16, 8, 4], n_blocks=2, variant=variant)  # two modalities of width 8
    assert small(torch.randn(3, 16), None if variant == "mmin" else torch.randn(3, 16))[1].shape == (3, 8)


def _block_io(ae: ResidualAE, x, condition=None):
    """The input of every block's encoder and the output of every block's decoder, via hooks."""
    inputs, outputs = [], []
    hooks = [e.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach())) for e in ae.encoders]
    hooks += [d.register_forward_hook(lambda m, i, o: outputs.append(o.detach())) for d in ae.decoders]
    result = ae(x, condition)
    for hook in hooks:
        hook.remove()
    return inputs, outputs, result


def test_mmin_residual_ae_accumulates_block_inputs_and_outputs():
    ae = ResidualAE(6, [4, 2], n_blocks=3, variant="mmin")
    x = torch.randn(5, 6)
    inputs, outputs, (out, latents) = _block_io(ae, x)
    torch.testing.assert_close(inputs[0], x)
    for k in (1, 2):
        torch.testing.assert_close(inputs[k], inputs[k - 1] + outputs[k - 1])
    torch.testing.assert_close(out, ae.transition(inputs[2] + outputs[2]))
    torch.testing.assert_close(latents[:, 2:4], ae.encoders[1](inputs[1]))
    with pytest.raises(ValueError, match="takes none"):
        ae(x, torch.zeros(5, 6))


def test_ifim_head_residual_ae_reinjects_the_condition_at_every_block():
    ae = ResidualAE(6, [4, 2], n_blocks=3, variant="ifim_head")
    x, h = torch.randn(5, 6), torch.randn(5, 6)
    inputs, outputs, (out, _) = _block_io(ae, x, h)
    torch.testing.assert_close(inputs[0], x + h)
    for k in (1, 2):
        torch.testing.assert_close(inputs[k], outputs[k - 1] + h)  # previous decoder output + H', no accumulation
    torch.testing.assert_close(out, ae.transition(outputs[2]))
    # the output depends on H', and H' receives a gradient
    assert not torch.allclose(ae(x, h)[0], ae(x, torch.zeros_like(h))[0])
    h = h.clone().requires_grad_(True)
    ae(x, h)[0].sum().backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="need `condition`"):
        ae(x)


def test_ifim_published_residual_ae_adds_the_condition_to_a_running_input():
    """a4b6ef4: block k reads x + k H' (the decoder outputs of the earlier blocks are not used), the transition
    reads the last block's input plus output."""
    ae = ResidualAE(6, [4, 2], n_blocks=3, variant="ifim_published")
    x, h = torch.randn(5, 6), torch.randn(5, 6)
    inputs, outputs, (out, latents) = _block_io(ae, x, h)
    for k in range(3):
        torch.testing.assert_close(inputs[k], x + (k + 1) * h)
    torch.testing.assert_close(out, ae.transition(inputs[2] + outputs[2]))
    torch.testing.assert_close(latents[:, 4:6], ae.encoders[2](x + 3 * h))
    with torch.no_grad():  # an earlier decoder does not reach the output
        ae.decoders[0][-1].bias.add_(10.0)
    torch.testing.assert_close(ae(x, h)[0], out)
    with pytest.raises(ValueError, match="need `condition`"):
        ae(x)


def test_residual_ae_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        ResidualAE(4, [2], 1, variant="vae")


def test_kaiming_init_sets_fan_in_normal_weights_and_zero_biases():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Conv1d(50, 20, 3))
    lstm = LSTMEncoder(5, 4)
    before = [p.clone() for p in lstm.parameters()]
    kaiming_init_(net)
    kaiming_init_(lstm)
    assert net[0].weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.03)
    assert net[2].weight.std().item() == pytest.approx((2 / 150) ** 0.5, rel=0.05)
    assert net[0].bias.abs().sum() == 0 and net[2].bias.abs().sum() == 0
    assert all(torch.equal(a, b) for a, b in zip(before, lstm.parameters()))  # the LSTM keeps its init


def test_encoder_pooling_switches_are_checked_and_padded_reads_every_frame():
    with pytest.raises(ValueError, match="LSTMEncoder pooling must be one of"):
        LSTMEncoder(3, 4, pooling="mean")
    with pytest.raises(ValueError, match="TextCNN windows must be one of"):
        TextCNN(3, channels=2, out_dim=4, windows="all")
    torch.manual_seed(0)
    lstm = LSTMEncoder(3, 4, pooling="padded").eval()
    x, lengths = torch.randn(2, 6, 3), torch.tensor([6, 2])
    x[1, 2:] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(lstm(x, lengths), lstm.lstm(x)[0].amax(1))
        valid = masked_max(lstm.lstm(x)[0], lengths)
    torch.testing.assert_close(lstm(x, lengths)[0], valid[0])  # a clip of full length: the same either way
    assert (lstm(x, lengths)[1] - valid[1]).abs().max() > 1e-3  # a padded clip: the zero frames count


def test_lstm_encoder_runs_blank_clips_once_with_the_values_and_gradients_of_the_batch():
    """Zero-filled clips (a removed modality) take the masked max of one shared zero sequence: the same embeddings
    and the same parameter gradients as running every clip through the LSTM."""
    encoder = LSTMEncoder(5, hidden=6)
    x = torch.randn(6, 10, 5)
    x[[1, 2, 4]] = 0.0
    lengths = torch.tensor([10, 7, 10, 4, 3, 0])
    x[5] = 0.0  # a clip without the modality at all: length 0, a zero vector
    weights = torch.randn(6, 6)

    def reference(module):  # the plain batched computation
        return masked_max(module.lstm(x)[0], lengths)

    out = encoder(x, lengths)
    torch.testing.assert_close(out, reference(encoder), rtol=1e-6, atol=1e-7)
    assert out[5].tolist() == [0.0] * 6 and not torch.equal(out[1], out[2])  # length 7 vs 10
    grads = []
    for forward in (encoder, lambda x, lengths: reference(encoder)):
        encoder.zero_grad()
        (forward(x, lengths) * weights).sum().backward()
        grads.append([p.grad.clone() for p in encoder.parameters()])
    for fast, slow in zip(*grads):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    all_blank = torch.zeros(3, 8, 5)
    torch.testing.assert_close(
        encoder(all_blank, torch.tensor([8, 2, 5])),
        masked_max(encoder.lstm(all_blank)[0], torch.tensor([8, 2, 5])),
        rtol=1e-6,
        atol=1e-7,
    )


def test_textcnn_equals_its_conv2d_definition_with_blank_clips_in_values_and_gradients():
    cnn = TextCNN(6, channels=4, kernels=(3, 4, 5), dropout=0.0, out_dim=5)
    x = torch.randn(5, 9, 6)
    x[[1, 3]] = 0.0  # text removed by a condition
    lengths = torch.tensor([9, 4, 2, 0, 7])
    x[3, :] = 0.0

    def reference():  # Kim's TextCNN as the Conv2d it is defined by, every clip convolved
        pooled = []
        for k, conv in zip(cnn.kernels, cnn.convs):
            maps = torch.relu(conv(x[:, None])).squeeze(3).transpose(1, 2)
            pooled.append(masked_max(maps, (lengths - k + 1).clamp(min=1) * (lengths > 0)))
        return cnn.project(torch.cat(pooled, dim=1))

    results = []
    for forward in (lambda: cnn(x, lengths), reference):
        cnn.zero_grad()
        out = forward()
        (out * torch.arange(5.0)).sum().backward()
        results.append([out] + [p.grad.clone() for p in cnn.parameters()])
    for fast, slow in zip(*results):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
