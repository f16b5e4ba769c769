"""Each optimised piece of the training loop timed beside the implementation it replaced, on the shapes the study
(or the IEMOCAP benchmark) gives it; one torch thread, process CPU time, median of `--repeats` (issue 16, item 4).
A benchmark, not a test (the tests check that the two give the same values and gradients):

    PYTHONPATH=$PWD python benchmarks/kernels.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from mer_core.conformer import depthwise, pointwise
from mer_core.layers import LSTMEncoder, ResidualAE, TextCNN, blank_rows, masked_max, valid_mask


def cpu_ms(function, repeats: int) -> float:
    """Median process CPU milliseconds of `function()` over `repeats` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def backward(function):
    """`function`'s output summed and back-propagated (fresh gradients each call)."""
    def run():
        out = function()
        (out[0] if isinstance(out, tuple) else out).sum().backward()
    return run


def cases() -> list[tuple[str, str, callable, callable]]:
    """(piece, shapes, previous implementation, current one)."""
    torch.manual_seed(0)
    rows = []
    # Adam: single-tensor loop (torch's CPU default) vs the fused kernel, on an MMIN stage-2 sized AE + cycle AE
    net = nn.ModuleList([ResidualAE(128, [128, 64, 32], 5), ResidualAE(128, [128, 64, 32], 5)])
    x = torch.randn(64, 128)
    optimisers = {}
    for name, options in (("single", {"foreach": False}), ("fused", {"fused": True})):
        model = copy.deepcopy(net)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, **options)
        sum(m(x)[0].pow(2).mean() for m in model).backward()
        optimisers[name] = optimiser
    rows.append(("Adam step", "2 residual AEs (168k parameters)", optimisers["single"].step, optimisers["fused"].step))
    # masked max over an LSTM's (strided) output
    lstm = nn.LSTM(40, 64, batch_first=True)
    out = lstm(torch.randn(64, 50, 40))[0].detach()
    lengths = torch.randint(30, 51, (64,))
    mask = valid_mask(lengths, 50)
    rows.append(("masked max (masked_fill -> added -inf)", "LSTM output 64 x 50 x 64",
                 lambda: out.masked_fill(~mask[..., None], float("-inf")).amax(1), lambda: masked_max(out, lengths)))
    # LSTM encoder, half the clips zero-filled (a condition removed their modality), forward + backward
    encoder = LSTMEncoder(40, 64)
    frames = torch.randn(64, 50, 40)
    frames[::2] = 0.0
    rows.append(("LSTM encoder, half the clips blank", "64 x 50 x 40 -> 64, fwd + bwd",
                 backward(lambda: masked_max(encoder.lstm(frames)[0], lengths)),
                 backward(lambda: encoder(frames, lengths))))
    # blank test
    text = torch.randn(128, 22, 1024)
    text[::2] = 0.0
    rows.append(("blank-clip test (any() -> amax and amin)", "128 x 22 x 1024", lambda: ~text.flatten(1).any(1),
                 lambda: blank_rows(text)))
    # TextCNN: the (k, D) kernels as Conv2d (previous) vs Conv1d over time, full text, fwd + bwd
    cnn = TextCNN(1024, 128, out_dim=128)
    full = torch.randn(128, 22, 1024)
    tokens = torch.full((128,), 22)

    def textcnn_conv2d():
        pooled = [masked_max(torch.relu(conv(full[:, None])).squeeze(3).transpose(1, 2), tokens - k + 1)
                  for k, conv in zip(cnn.kernels, cnn.convs)]
        return cnn.project(cnn.dropout(torch.cat(pooled, 1)))
    rows.append(("TextCNN (Conv2d -> Conv1d)", "IEMOCAP text 128 x 22 x 1024, fwd + bwd", backward(textcnn_conv2d),
                 backward(lambda: cnn(full, tokens))))
    # Conformer: depthwise convolution (kernel 31) and 1x1 convolutions, VAVL's study width, fwd + bwd
    depth = nn.Conv1d(32, 32, 31, padding=15, groups=32)
    point = nn.Conv1d(32, 64, 1)
    h = torch.randn(64, 32, 25, requires_grad=True)
    rows.append(("depthwise conv (conv -> banded product)", "64 x 32 x 25, kernel 31, fwd + bwd",
                 backward(lambda: depth(h)), backward(lambda: depthwise(depth, h))))
    ht = torch.randn(64, 25, 32, requires_grad=True)
    rows.append(("1x1 conv (conv -> linear)", "64 x 25 x 32 -> 64, fwd + bwd",
                 backward(lambda: point(ht.transpose(1, 2)).transpose(1, 2)), backward(lambda: pointwise(point, ht))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| piece | shapes | previous ms | now ms | speed-up |\n|---|---|---|---|---|")
    for piece, shapes, previous, now in cases():
        before, after = cpu_ms(previous, args.repeats), cpu_ms(now, args.repeats)
        print(f"| {piece} | {shapes} | {before:.2f} | {after:.2f} | {before / after:.1f}x |")


if __name__ == "__main__":
    main()
