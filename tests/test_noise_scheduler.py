"""mer_core.noise.scheduler: NMER's DDPM-style feature noise (docs/methods.md §4.1)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from fakes import make_batch

from mer_core.conditions import apply_condition
from mer_core.config import ConfigError
from mer_core.data.batches import Batch
from mer_core.noise import NoiseScheduler, betas
from mer_core.params.methods import NoiseParams
from mer_core.schema import check

BLOCK = {
    "type": "impulse",
    "steps": 40,
    "schedule": "cosine",
    "beta_start": 0.02,
    "beta_end": 0.4,
    "impulse_density": 0.25,
    "per_sample": True,
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ================================================================================================ betas


def test_scaled_linear_betas_run_from_start_to_end_and_are_linear_in_sqrt():
    b = betas("scaled_linear", 100, 0.01, 0.5)
    assert b.dtype == torch.float64 and b.shape == (100,)
    assert b[0].item() == pytest.approx(0.01) and b[-1].item() == pytest.approx(0.5)
    steps = b.sqrt().diff()
    torch.testing.assert_close(steps, torch.full_like(steps, (0.5**0.5 - 0.1) / 99))
    assert (b.diff() > 0).all()  # increasing, and convex (the squares of a linear ramp)
    assert (b.diff().diff() > 0).all()
    assert betas("scaled_linear", 1, 0.01, 0.5).tolist() == pytest.approx([0.01])  # T = 1: beta_start only


def test_linear_betas_are_equally_spaced():
    b = betas("linear", 11, 0.1, 0.6)
    torch.testing.assert_close(b, torch.linspace(0.1, 0.6, 11, dtype=torch.float64))
    torch.testing.assert_close(b.diff(), torch.full((10,), 0.05, dtype=torch.float64))


@pytest.mark.parametrize("steps", [1, 10, 100, 1000])
def test_cosine_betas_are_capped_and_give_a_decreasing_alpha_bar(steps):
    b = betas("cosine", steps)
    assert b.shape == (steps,) and (b > 0).all() and (b <= 0.999).all()
    abar = torch.cumprod(1 - b, 0)
    assert (abar.diff() < 0).all() and 0 < abar[-1] <= abar[0] < 1
    # ignores beta_start / beta_end
    torch.testing.assert_close(betas("cosine", steps, 0.3, 0.4), b)
    if steps >= 100:
        assert b[-1].item() == pytest.approx(0.999)  # the cap bites at the end of a long schedule
        # the cosine schedule's alpha_bar follows cos^2((t/T + s)/(1 + s) * pi/2) / cos^2(s/(1+s) * pi/2)
        t = steps // 2
        expected = math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
        assert abar[t - 1].item() == pytest.approx(expected, rel=1e-9)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown schedule 'sigmoid'"):
        betas("sigmoid", 10)
    with pytest.raises(ValueError, match="scaled_linear"):
        NoiseScheduler(schedule="quadratic")


# ================================================================================================ known values


@pytest.mark.parametrize("steps, fraction", [(20, 0.61), (40, 0.48), (60, 0.41), (80, 0.36), (100, 0.32)])
def test_signal_fraction_matches_the_spec(steps, fraction):
    """docs/methods.md §4.1: mean sqrt(alpha_bar_t) over uniform t for scaled_linear 0.01 -> 0.5."""
    assert NoiseScheduler(steps=steps).signal_fraction() == pytest.approx(fraction, abs=0.01)


def test_signal_fraction_is_monotone_in_t_and_in_T():
    sched = NoiseScheduler(steps=100)
    abar = sched.alphas_cumprod
    assert abar.shape == (100,) and abar.dtype == torch.float64
    assert abar[0].item() == pytest.approx(0.99) and (abar.diff() < 0).all()
    torch.testing.assert_close(abar, torch.cumprod(1 - betas("scaled_linear", 100, 0.01, 0.5), 0))
    fractions = [NoiseScheduler(steps=T).signal_fraction() for T in (1, 2, 5, 10, 20, 40, 60, 80, 100, 200)]
    assert all(a > b for a, b in zip(fractions, fractions[1:]))
    assert fractions[0] == pytest.approx(0.99**0.5)  # T = 1: t = 0 only
    # the noise share sqrt(1 - alpha_bar) rises correspondingly (0.66 -> 0.84 in the spec)
    noise = [float((1 - NoiseScheduler(steps=T).alphas_cumprod).sqrt().mean()) for T in (20, 100)]
    assert noise == pytest.approx([0.66, 0.84], abs=0.01)


def test_alpha_bar_depends_on_the_schedule_parameters():
    weak = NoiseScheduler(steps=50, beta_start=0.001, beta_end=0.02)
    strong = NoiseScheduler(steps=50, beta_start=0.01, beta_end=0.5)
    assert (weak.alphas_cumprod > strong.alphas_cumprod).all()
    assert weak.signal_fraction() > 0.7 > strong.signal_fraction()


# ================================================================================================ add_noise


T_ROWS = torch.tensor([0, 10, 50, 99])


def residual(
    sched: NoiseScheduler, x: torch.Tensor, t: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_tilde - sqrt(alpha_bar_t) x, alpha_bar_t) per row, in float32 as add_noise computes it."""
    noisy = sched.add_noise(x, t, gen(seed))
    abar = sched.alphas_cumprod[t].float()
    return noisy - abar.sqrt()[:, None] * x, abar


def test_gaussian_residual_has_variance_one_minus_alpha_bar():
    sched = NoiseScheduler("gaussian", steps=100)
    x = torch.randn(4, 60000, generator=gen(1)) * 3 + 2
    r, abar = residual(sched, x, T_ROWS)
    assert r.shape == x.shape and r.dtype == torch.float32
    torch.testing.assert_close(r.var(1), 1 - abar, rtol=0.03, atol=0)
    assert r.mean(1).abs().max() < 0.02
    # the signal coefficient multiplies x: the noisy rows correlate with x less and less as t grows
    noisy = sched.add_noise(x, T_ROWS, gen(2))
    corr = [torch.corrcoef(torch.stack([x[k], noisy[k]]))[0, 1] for k in range(4)]
    assert all(a > b for a, b in zip(corr, corr[1:])) and corr[0] > 0.99


def test_add_noise_broadcasts_over_frames_and_dims():
    sched = NoiseScheduler("gaussian", steps=10)
    x = torch.randn(3, 7, 5, generator=gen(0))
    t = torch.tensor([0, 4, 9])
    noisy = sched.add_noise(x, t, gen(0))
    eps = sched.sample_noise((3, 7, 5), gen(0))
    abar = sched.alphas_cumprod[t].float()[:, None, None]
    torch.testing.assert_close(noisy, abar.sqrt() * x + (1 - abar).sqrt() * eps)
    assert noisy.shape == x.shape


def test_impulse_residual_is_sparse_plus_minus_the_noise_coefficient():
    sched = NoiseScheduler("impulse", steps=100, impulse_density=0.3)
    x = torch.randn(4, 60000, generator=gen(1))
    r, abar = residual(sched, x, T_ROWS)
    nonzero = r.abs() > 1e-4
    density = nonzero.float().mean(1)
    assert ((density - 0.3).abs() < 0.01).all()
    coefficient = (1 - abar).sqrt()
    for k in range(4):
        values = r[k][nonzero[k]]
        torch.testing.assert_close(values.abs(), coefficient[k].expand_as(values), rtol=1e-4, atol=1e-5)
        assert abs((values > 0).float().mean().item() - 0.5) < 0.02  # the sign is symmetric
        assert r[k][~nonzero[k]].abs().max() < 1e-5  # elsewhere x_tilde is exactly the scaled signal
    assert r.mean(1).abs().max() < 0.01


@pytest.mark.parametrize("density", [0.0, 1.0])
def test_impulse_density_extremes(density):
    eps = NoiseScheduler("impulse", impulse_density=density).sample_noise((1000,), gen(0))
    assert set(eps.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (eps != 0).float().mean().item() == density


def test_noise_is_deterministic_per_generator_seed():
    for kind in ("gaussian", "impulse"):
        sched = NoiseScheduler(kind, steps=50)
        x = torch.randn(6, 8, 3, generator=gen(9))
        t = sched.sample_t(6, gen(3))
        a, b, c = (sched.add_noise(x, t, gen(s)) for s in (5, 5, 6))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        assert torch.equal(sched.sample_t(6, gen(3)), t)


def test_noise_does_not_touch_the_global_rng():
    sched = NoiseScheduler("impulse", steps=50, per_sample=True)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sched.add_noise(torch.zeros(4, 5), sched.sample_t(4, gen(0)), gen(0))
    assert torch.equal(torch.rand(3), expected)


def test_add_noise_keeps_dtype():
    sched = NoiseScheduler("gaussian", steps=20)
    x = torch.randn(3, 4, dtype=torch.float64)
    out = sched.add_noise(x, torch.tensor([0, 1, 19]), gen(0))
    assert out.dtype == torch.float64 and out.shape == (3, 4)


# ================================================================================================ sample_t


def test_sample_t_per_batch_draws_one_shared_step():
    sched = NoiseScheduler(steps=10)
    draws = [sched.sample_t(7, gen(s)) for s in range(40)]
    assert all(t.shape == (7,) and t.dtype == torch.long and (t == t[0]).all() for t in draws)
    firsts = torch.stack([t[0] for t in draws])
    assert firsts.min() >= 0 and firsts.max() <= 9 and len(firsts.unique()) > 3  # the shared step varies by call


def test_sample_t_per_sample_draws_one_step_per_clip_over_the_whole_range():
    sched = NoiseScheduler(steps=10, per_sample=True)
    t = sched.sample_t(5000, gen(0))
    assert t.shape == (5000,) and t.min() == 0 and t.max() == 9
    counts = torch.bincount(t, minlength=10).float() / 5000
    assert ((counts - 0.1).abs() < 0.02).all()  # uniform
    assert NoiseScheduler(steps=1, per_sample=True).sample_t(20, gen(0)).eq(0).all()


def test_sample_t_consumes_the_generator():
    sched = NoiseScheduler(steps=1000)
    g = gen(0)
    assert not all(torch.equal(sched.sample_t(3, g), sched.sample_t(3, g)) for _ in range(5))


# ================================================================================================ replace_missing


def full_batch(n: int = 6, seed: int = 0) -> Batch:
    """`fakes.make_batch`: random frames, zero padding, clip 1 has no visual stream."""
    batch = make_batch(n=n, seed=seed)
    assert not batch.present[1, 1] and batch.present[:, 0].all()
    return batch


def frame_mask(batch: Batch, m: str) -> torch.Tensor:
    return torch.arange(batch.x[m].shape[1])[None, :] < batch.lengths[m][:, None]


@pytest.mark.parametrize("kind", ["gaussian", "impulse"])
def test_replace_missing_noises_only_the_removed_modality(kind):
    full = full_batch()
    seen = apply_condition(full, ("audio",))
    assert not seen.present[:, 1].any() and seen.x["visual"].abs().sum() == 0
    out = NoiseScheduler(kind, steps=100).replace_missing(seen, full, gen(0))
    assert out.modalities == full.modalities and torch.equal(out.y, full.y) and torch.equal(out.rows, full.rows)
    assert all(torch.equal(out.lengths[m], full.lengths[m]) for m in full.modalities)
    assert torch.equal(out.x["audio"], full.x["audio"])  # present modality: bit for bit
    assert out.x["visual"].shape == full.x["visual"].shape
    has = full.present[:, 1]
    assert torch.equal(out.present[:, 1], has) and out.present[:, 0].all()  # noised clips count as present
    inside = frame_mask(full, "visual")
    for j in range(len(has)):
        if has[j]:
            assert (out.x["visual"][j][inside[j]] != 0).any()  # noised, not zero-filled
            assert not torch.equal(out.x["visual"][j], full.x["visual"][j])  # and not clean either
        else:
            assert out.x["visual"][j].abs().sum() == 0  # no stream at all: stays zero and absent
    assert out.x["visual"][~inside].abs().sum() == 0  # padding frames stay exactly zero
    # the input batch is not modified in place
    assert seen.x["visual"].abs().sum() == 0 and not seen.present[:, 1].any()


def test_replace_missing_at_small_T_stays_close_to_the_clean_frames():
    """T = 1: t = 0 and alpha_bar = 0.99, so x_tilde = 0.995 x + 0.1 eps."""
    full = full_batch(n=8)
    out = NoiseScheduler("gaussian", steps=1).replace_missing(apply_condition(full, ("audio",)), full, gen(0))
    inside = frame_mask(full, "visual") & full.present[:, 1, None]
    clean, noisy = full.x["visual"][inside].flatten(), out.x["visual"][inside].flatten()
    assert torch.corrcoef(torch.stack([clean, noisy]))[0, 1] > 0.99
    r = (noisy - 0.99**0.5 * clean) / 0.01**0.5  # the standardised noise
    assert abs(r.std().item() - 1) < 0.15 and abs(r.mean().item()) < 0.2


def test_replace_missing_impulse_on_cpu_gives_the_exact_impulse_values():
    """The official scheduler needs CUDA for impulse noise; here it runs on the CPU."""
    full = full_batch(n=8)
    out = NoiseScheduler("impulse", steps=1, impulse_density=0.5).replace_missing(
        apply_condition(full, ("audio",)), full, gen(0)
    )
    assert out.x["visual"].device.type == "cpu"
    inside = frame_mask(full, "visual") & full.present[:, 1, None]
    r = (out.x["visual"][inside] - 0.99**0.5 * full.x["visual"][inside]).flatten()
    hits = r.abs() > 1e-4
    torch.testing.assert_close(r[hits].abs(), torch.full_like(r[hits], 0.1), rtol=1e-4, atol=1e-5)
    assert 0.3 < hits.float().mean().item() < 0.7


def test_replace_missing_leaves_a_batch_without_removed_modalities_unchanged():
    full = full_batch()
    sched = NoiseScheduler("gaussian", steps=100)
    out = sched.replace_missing(apply_condition(full, ("audio", "visual")), full, gen(0))
    assert all(torch.equal(out.x[m], full.x[m]) for m in full.modalities)
    assert torch.equal(out.present, full.present)


def test_replace_missing_both_directions_and_per_clip_conditions():
    """Clips missing different modalities (MMIN's `missing` training view) are each noised where removed."""
    full = full_batch(n=6)
    keep = torch.tensor([[True, False], [False, True], [False, True], [True, False], [True, False], [False, True]])
    kept = full.present & keep
    seen = full.replace(present=kept, x={m: full.x[m] * kept[:, i, None, None] for i, m in enumerate(full.modalities)})
    out = NoiseScheduler("gaussian", steps=50, per_sample=True).replace_missing(seen, full, gen(4))
    assert torch.equal(out.present, full.present)
    for i, m in enumerate(full.modalities):
        for j in range(6):
            if kept[j, i]:
                assert torch.equal(out.x[m][j], full.x[m][j])  # kept: clean
            elif full.present[j, i]:
                assert not torch.equal(out.x[m][j], full.x[m][j]) and out.x[m][j].abs().sum() > 0  # removed: noised
            else:
                assert out.x[m][j].abs().sum() == 0  # never had it


def constant_clips(n: int = 12, frames: int = 30) -> Batch:
    """One modality of zeros with every frame valid: x_tilde = sqrt(1 - alpha_bar_t) eps exposes t per clip."""
    x = {"audio": torch.zeros(n, frames, 2), "visual": torch.zeros(n, frames, 64)}
    lengths = {m: torch.full((n,), frames) for m in x}
    return Batch(
        ("audio", "visual"),
        x,
        lengths,
        torch.ones(n, 2, dtype=torch.bool),
        torch.zeros(n, dtype=torch.long),
        torch.arange(n),
    )


@pytest.mark.parametrize("per_sample", [False, True])
def test_replace_missing_draws_one_t_per_batch_or_per_clip(per_sample):
    full = constant_clips()
    sched = NoiseScheduler("impulse", steps=100, per_sample=per_sample)
    out = sched.replace_missing(apply_condition(full, ("audio",)), full, gen(7))
    visual = out.x["visual"].reshape(len(full.y), -1)
    scale = torch.stack([row[row != 0].abs().max() for row in visual])  # sqrt(1 - alpha_bar_t) of each clip
    lo = torch.stack([row[row != 0].abs().min() for row in visual])
    torch.testing.assert_close(scale, lo)  # one t within a clip
    coefficients = (1 - sched.alphas_cumprod).sqrt().float()
    assert all(torch.isclose(coefficients, s, rtol=1e-5).any() for s in scale)  # a valid step of the schedule
    if per_sample:
        assert len(scale.unique()) > 3
    else:
        assert torch.allclose(scale, scale[0].expand_as(scale))  # NMER: one t shared by the batch


def test_replace_missing_is_deterministic_per_seed():
    full = full_batch(n=6)
    seen = apply_condition(full, ("visual",))
    sched = NoiseScheduler("gaussian", steps=100, per_sample=True)
    a, b, c = (sched.replace_missing(seen, full, gen(s)).x["audio"] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ================================================================================================ construction


def test_invalid_type_and_steps_are_errors():
    with pytest.raises(ValueError, match="unknown noise type 'salt'"):
        NoiseScheduler(type="salt")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        NoiseScheduler(steps=0)
    with pytest.raises(ValueError, match="steps"):
        NoiseScheduler(steps=-5)


def test_from_params_round_trip():
    assert check(NoiseParams, BLOCK, "noise").model_dump() == BLOCK
    sched = NoiseScheduler.from_params(BLOCK)
    assert dataclasses.asdict(sched) == BLOCK
    assert NoiseScheduler.from_params(dataclasses.asdict(sched)) == sched
    stronger = NoiseScheduler.from_params(BLOCK, steps=80, type="gaussian")
    assert (stronger.steps, stronger.type, stronger.schedule) == (80, "gaussian", "cosine")
    assert BLOCK["steps"] == 40  # the block is not modified
    assert sched.label() == "impulse T=40" and stronger.label() == "gaussian T=80"
    with pytest.raises(TypeError):
        NoiseScheduler.from_params({**BLOCK, "unknown": 1})


def test_noise_schema_rejects_bad_blocks():
    for key, value in (
        ("type", "salt"),
        ("steps", 0),
        ("schedule", "sigmoid"),
        ("impulse_density", 1.5),
        ("per_sample", "yes"),
    ):
        with pytest.raises(ConfigError, match=rf"^noise\.{key}: got {value!r}"):
            check(NoiseParams, {**BLOCK, key: value}, "noise")
    with pytest.raises(ConfigError, match=r"^noise\.unknown: unknown key; allowed keys here: type, steps, schedule"):
        check(NoiseParams, {**BLOCK, "unknown": 1}, "noise")


def test_the_params_defaults_are_the_schedulers_and_the_official_ones():
    assert dataclasses.asdict(NoiseScheduler()) == NoiseParams().model_dump()
    assert NoiseScheduler.from_params(NoiseParams().model_dump()) == NoiseScheduler()


def test_scheduler_is_frozen_and_hashable():
    sched = NoiseScheduler()
    with pytest.raises(dataclasses.FrozenInstanceError):
        sched.steps = 3
    assert sched.alphas_cumprod is sched.alphas_cumprod  # cached
    assert sched == NoiseScheduler() and hash(sched) == hash(NoiseScheduler())
    assert (sched.type, sched.steps, sched.schedule, sched.per_sample) == ("gaussian", 100, "scaled_linear", False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["gaussian", "impulse"])
def test_replace_missing_gives_the_same_noise_on_cpu_and_gpu(kind):
    full = full_batch(n=6)
    sched = NoiseScheduler(kind, steps=60, per_sample=True)
    cpu = sched.replace_missing(apply_condition(full, ("audio",)), full, gen(3))
    gpu_full = full.to(torch.device("cuda"))
    gpu = sched.replace_missing(apply_condition(gpu_full, ("audio",)), gpu_full, gen(3))
    assert gpu.x["visual"].device.type == "cuda" and torch.equal(gpu.present.cpu(), cpu.present)
    torch.testing.assert_close(gpu.x["visual"].cpu(), cpu.x["visual"], rtol=1e-6, atol=1e-6)
