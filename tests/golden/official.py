"""Shared helpers of the golden tests: load a fixture of `tests/golden/data`, rename the official parameters into
one of our modules through an explicit name map, and compare with the fixtures' tolerance (README.md here).

The tests read nothing but `tests/golden/data`, so they run in a clone without the reference material.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mer_core.conditions import with_presence
from mer_core.data.batches import Batch
from mer_core.methods.registry import ModelContext
from mer_core.tasks import Task

DATA = Path(__file__).resolve().parent / "data"
TOLERANCE = 1e-5  # |got - expected| <= TOLERANCE * max(1, max|expected|), the fixtures' rule


@dataclass(frozen=True)
class Fixture:
    """One .npz fixture split by prefix: `inputs` (in.*), `params` (param.*, under the official state_dict keys),
    `outputs` (out.*) and `aux` (aux.*), each a dict of tensors keyed by the rest of the name."""

    name: str
    inputs: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    aux: dict[str, torch.Tensor]


def load_fixture(name: str) -> Fixture:
    """`tests/golden/data/<name>.npz` as a `Fixture`."""
    path = DATA / f"{name}.npz"
    assert path.is_file(), f"{path}: golden fixture missing (tests/golden/README.md says where it comes from)"
    parts: dict[str, dict[str, torch.Tensor]] = {"in": {}, "param": {}, "out": {}, "aux": {}}
    with np.load(path) as arrays:
        for key in arrays.files:
            prefix, rest = key.split(".", 1)
            parts[prefix][rest] = torch.from_numpy(np.array(arrays[key]))
    return Fixture(name, parts["in"], parts["param"], parts["out"], parts["aux"])


def scale(expected: torch.Tensor) -> float:
    """The tolerance's scale: max(1, max|expected|)."""
    return max(1.0, float(expected.abs().max())) if expected.numel() else 1.0


def max_gap(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max|got - expected| / max(1, max|expected|) (shapes must agree)."""
    got = torch.as_tensor(got).detach().to(torch.float64)
    expected = torch.as_tensor(expected).to(torch.float64)
    assert got.shape == expected.shape, f"shape {tuple(got.shape)} != official {tuple(expected.shape)}"
    return float((got - expected).abs().max()) / scale(expected) if expected.numel() else 0.0


def assert_matches(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Within the fixtures' tolerance of the official output."""
    gap = max_gap(got, expected)
    assert gap <= TOLERANCE, f"{what}: differs from the official output by {gap:.3g} x max(1, max|expected|)"


def assert_differs(got: torch.Tensor, expected: torch.Tensor, what: str, at_least: float = 1e-3) -> float:
    """Outside the tolerance by a clear margin (`at_least` relative to the scale); returns the gap."""
    gap = max_gap(got, expected)
    assert gap >= at_least, f"{what}: expected to differ from the official output, gap only {gap:.3g}"
    return gap


def rename(params: dict[str, torch.Tensor], rules: list[tuple[str, str | None]]) -> dict[str, torch.Tensor]:
    """The official `params` under our names. `rules` is an ordered list of (official prefix, our prefix); the
    first rule whose prefix starts a key renames it, and a rule with our prefix None drops the key (an official
    parameter with no counterpart, e.g. a module built but never called). A key no rule covers is an error, so
    the map is complete by construction."""
    renamed = {}
    for key, value in params.items():
        rule = next(((old, new) for old, new in rules if key.startswith(old)), None)
        assert rule is not None, f"official parameter {key!r} is not covered by the name map"
        if rule[1] is not None:
            renamed[rule[1] + key[len(rule[0]) :]] = value
    return renamed


def load_official(module: nn.Module, params: dict[str, torch.Tensor], rules: list[tuple[str, str | None]]) -> nn.Module:
    """Load the renamed official parameters into `module` strictly (every one of ours filled, none left over)
    and switch it to eval mode."""
    state = rename(params, rules)
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not missing and not unexpected, f"name map mismatch: ours without official {missing}, unused {unexpected}"
    return module.eval()


def subtree(params: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The parameters under `prefix` (e.g. `netAE.`), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def block_rules(official: str, ours: str) -> list[tuple[str, str | None]]:
    """Name map of one sooftware `ConformerBlock` (official `sequential.<i>...`) onto our `ConformerBlock`."""
    return [
        (f"{official}sequential.0.module.sequential.0.", f"{ours}ffn_in.net.0."),  # FFN: LayerNorm, Linear (wrapped),
        (f"{official}sequential.0.module.sequential.1.linear.", f"{ours}ffn_in.net.1."),  # Swish, dropout, Linear,
        (f"{official}sequential.0.module.sequential.4.linear.", f"{ours}ffn_in.net.4."),  # dropout: same indices
        (f"{official}sequential.1.module.layer_norm.", f"{ours}attention.norm."),
        (f"{official}sequential.1.module.attention.u_bias", f"{ours}attention.content_bias"),
        (f"{official}sequential.1.module.attention.v_bias", f"{ours}attention.position_bias"),
        (f"{official}sequential.1.module.attention.query_proj.linear.", f"{ours}attention.query."),
        (f"{official}sequential.1.module.attention.key_proj.linear.", f"{ours}attention.key."),
        (f"{official}sequential.1.module.attention.value_proj.linear.", f"{ours}attention.value."),
        (f"{official}sequential.1.module.attention.pos_proj.linear.", f"{ours}attention.position."),
        (f"{official}sequential.1.module.attention.out_proj.linear.", f"{ours}attention.output."),
        (f"{official}sequential.2.module.sequential.0.", f"{ours}convolution.norm."),
        (f"{official}sequential.2.module.sequential.2.conv.", f"{ours}convolution.pointwise_in."),
        (f"{official}sequential.2.module.sequential.4.conv.", f"{ours}convolution.depthwise."),
        (f"{official}sequential.2.module.sequential.5.num_batches_tracked", None),  # our masked BN keeps no count
        (f"{official}sequential.2.module.sequential.5.", f"{ours}convolution.batch_norm."),
        (f"{official}sequential.2.module.sequential.7.conv.", f"{ours}convolution.pointwise_out."),
        (f"{official}sequential.3.module.sequential.0.", f"{ours}ffn_out.net.0."),
        (f"{official}sequential.3.module.sequential.1.linear.", f"{ours}ffn_out.net.1."),
        (f"{official}sequential.3.module.sequential.4.linear.", f"{ours}ffn_out.net.4."),
        (f"{official}sequential.4.", f"{ours}norm."),
    ]


# ---------------------------------------------------------------------------------------------- MMIN family

# The MMIN family's joint vectors are [A, L, V] officially and [audio, visual, text] here (the corpus's order):
# our slot k holds the official slot OFFICIAL_SLOT[k].
OFFICIAL_SLOT = (0, 2, 1)
MODALITIES = ("audio", "visual", "text")


def joint_order(width: int) -> torch.Tensor:
    """Indices that reorder an official [A, L, V] joint vector of `width` per slot into ours [A, V, L]."""
    return torch.cat([torch.arange(k * width, (k + 1) * width) for k in OFFICIAL_SLOT])


def encoder_rules(official: str, ours: str) -> list[tuple[str, str | None]]:
    """Official net{A,V,L} (LSTMEncoder `rnn`, TextCNN conv1..3 and `embd`) onto our `encoders.<modality>`."""
    rules = []
    for letter, modality in (("A", "audio"), ("V", "visual")):
        rules.append((f"{official}net{letter}.rnn.", f"{ours}{modality}.lstm."))
    rules += [(f"{official}netL.conv{k + 1}.", f"{ours}text.convs.{k}.") for k in range(3)]
    rules.append((f"{official}netL.embd.0.", f"{ours}text.project.0."))
    return rules


def classifier_rules(official: str, ours: str) -> list[tuple[str, str | None]]:
    """FcClassifier (`module.<i>` hidden layers, `fc_out`) onto our MLPClassifier (`hidden.<i>`, `output`); the
    hidden Sequential has the same order (Linear, ReLU, [BatchNorm], Dropout), hence the same indices."""
    return [(f"{official}module.", f"{ours}hidden."), (f"{official}fc_out.", f"{ours}output.")]


def residual_ae_rules(official: str, ours: str) -> list[tuple[str, str | None]]:
    """ResidualAE `encoder_<b>` / `decoder_<b>` / `transition` onto our `encoders.<b>` / `decoders.<b>` /
    `transition` (same Sequential indices: Linear layers at 0, 2, 4)."""
    return [
        (f"{official}encoder_", f"{ours}encoders."),
        (f"{official}decoder_", f"{ours}decoders."),
        (f"{official}transition.", f"{ours}transition."),
    ]


def reorder_residual_ae(module: nn.Module, width: int) -> None:
    """Permute a ResidualAE loaded from an official [A, L, V] one so that it reads and writes [A, V, L] joint
    vectors: the input columns of every block's first Linear and of the transition's first, the output rows
    (and biases) of every decoder's last Linear and of the transition's last."""
    order = joint_order(width)
    with torch.no_grad():
        for encoder in module.encoders:
            encoder[0].weight.copy_(encoder[0].weight[:, order])
        for decoder in module.decoders:
            decoder[-1].weight.copy_(decoder[-1].weight[order])
            decoder[-1].bias.copy_(decoder[-1].bias[order])
        module.transition[0].weight.copy_(module.transition[0].weight[:, order])
        module.transition[2].weight.copy_(module.transition[2].weight[order])
        module.transition[2].bias.copy_(module.transition[2].bias[order])


# the MMIN / IF-MMIN step-0 fixtures: three modalities of widths 10 / 9 / 12, 4 classes, encoders of width 16
CONTEXT = ModelContext(
    MODALITIES, {"audio": 10, "visual": 9, "text": 12}, {}, Task("classification", ("c0", "c1", "c2", "c3"))
)
STAGE2 = {
    "hidden": 16,
    "classifier": [16, 16],
    "dropout": 0.5,
    "ae_widths": [2.0, 1.0, 0.5],
    "ae_blocks": 5,
    "encoder_pooling": "valid",
    "text_windows": "valid",
}


def step0_batches(fixture) -> tuple[Batch, Batch]:
    """The full input and the masked one (`in.missing_index`, columns a, v, l = our modality order); every clip
    has its full length, so pooling over valid frames is the official pooling here."""
    x = {"audio": fixture.inputs["A_feat"], "visual": fixture.inputs["V_feat"], "text": fixture.inputs["L_feat"]}
    n = len(fixture.inputs["label"])
    lengths = {m: torch.full((n,), v.shape[1]) for m, v in x.items()}
    full = Batch(MODALITIES, x, lengths, torch.ones(n, 3, dtype=torch.bool), fixture.inputs["label"], torch.arange(n))
    return full, with_presence(full, fixture.inputs["missing_index"].bool())
