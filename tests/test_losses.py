"""mer_core.losses: CMD (IF-MMIN's variant and the original scaled one) and its pairwise mean."""

from __future__ import annotations

import pytest
import torch

from mer_core.losses import cmd_loss, pairwise_cmd


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference_cmd(x, y, moments, span=1.0):
    """CMD written out term by term in float64, as docs/methods.md §3.1 defines it."""
    x, y = x.double(), y.double()
    total = ((x.mean(0) - y.mean(0)) ** 2).sum().sqrt() / span
    for k in range(2, moments + 1):
        cx = ((x - x.mean(0)) ** k).mean(0)
        cy = ((y - y.mean(0)) ** k).mean(0)
        total += ((cx - cy) ** 2).sum().sqrt() / span**k
    return float(total)


def test_cmd_zero_for_identical_batches_and_symmetric():
    x, y = torch.randn(32, 6), torch.randn(40, 6) * 2 + 1
    assert cmd_loss(x, x.clone()).item() == 0.0
    assert cmd_loss(x, y).item() == pytest.approx(cmd_loss(y, x).item(), rel=1e-6)
    # the same distribution in another row order: the moments do not depend on it
    assert cmd_loss(x, x[torch.randperm(32)]).item() == pytest.approx(0.0, abs=1e-5)


def test_cmd_known_value_on_a_tiny_example():
    x = torch.tensor([[0.0], [2.0]])  # mean 1, central moments: 1 (k=2), 0 (k=3), 1 (k=4), 0 (k=5)
    y = torch.tensor([[1.0], [1.0]])  # mean 1, all central moments 0
    assert cmd_loss(x, y, moments=5).item() == pytest.approx(2.0)  # |0| + |1| + |0| + |1| + |0|
    assert cmd_loss(x, y, moments=2).item() == pytest.approx(1.0)
    assert cmd_loss(x, y, moments=1).item() == pytest.approx(0.0)  # the means agree
    assert cmd_loss(x, y, moments=5, span=2.0).item() == pytest.approx(1 / 4 + 1 / 16)  # 1/span^k scaling


@pytest.mark.parametrize("moments", [1, 3, 5])
def test_cmd_matches_the_term_by_term_definition(moments):
    x, y = torch.randn(20, 5), torch.rand(30, 5) * 3
    assert cmd_loss(x, y, moments).item() == pytest.approx(reference_cmd(x, y, moments), rel=1e-5)
    assert cmd_loss(x, y, moments, span=3.0).item() == pytest.approx(reference_cmd(x, y, moments, 3.0), rel=1e-5)


def test_cmd_sees_the_higher_moments():
    """Same mean and variance, different skew and kurtosis: a CMD with only the first two moments is blind."""
    n = 4000
    gauss = torch.randn(n, 1)
    skewed = torch.distributions.Exponential(1.0).sample((n, 1)) - 1.0  # mean 0, variance 1, skew 2
    assert cmd_loss(gauss, skewed, moments=2).item() < 0.1
    assert cmd_loss(gauss, skewed, moments=5).item() > 1.0


def test_cmd_grows_with_a_shift_of_mean_or_of_variance():
    x = torch.randn(256, 4)
    shifts = [cmd_loss(x, x + d).item() for d in (0.0, 0.5, 1.0, 2.0)]
    scales = [cmd_loss(x, x * s).item() for s in (1.0, 1.5, 2.0, 3.0)]
    assert shifts[0] == 0.0 and all(a < b for a, b in zip(shifts, shifts[1:]))
    assert scales[0] == 0.0 and all(a < b for a, b in zip(scales, scales[1:]))
    assert shifts[1] == pytest.approx(0.5 * 2, rel=1e-5)  # a pure shift moves only the mean term: ||0.5 * 1_4||


def test_cmd_gradients_are_finite_even_at_zero():
    x = torch.randn(16, 3, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    cmd_loss(x, y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    z = (torch.randn(16, 3) + 1).requires_grad_(True)
    cmd_loss(x, z).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_cmd_rejects_zero_moments():
    with pytest.raises(ValueError, match="moments"):
        cmd_loss(torch.zeros(2, 1), torch.zeros(2, 1), moments=0)


def test_pairwise_cmd_is_the_mean_over_pairs_on_clips_with_both_modalities():
    a, v, t = torch.randn(10, 4), torch.randn(10, 4) + 1, torch.randn(10, 4) * 2
    present = torch.ones(10, 3, dtype=torch.bool)
    expected = (cmd_loss(a, v) + cmd_loss(a, t) + cmd_loss(v, t)) / 3
    assert pairwise_cmd([a, v, t], present).item() == pytest.approx(expected.item(), rel=1e-6)
    present[:4, 1] = False  # clips 0-3 lack the second modality: pairs with it use clips 4-9 only
    expected = (cmd_loss(a[4:], v[4:]) + cmd_loss(a, t) + cmd_loss(v[4:], t[4:])) / 3
    assert pairwise_cmd([a, v, t], present).item() == pytest.approx(expected.item(), rel=1e-6)
    assert pairwise_cmd([a], present[:, :1]).item() == 0.0  # one modality: no pair
