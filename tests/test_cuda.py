"""The GPU path: deterministic kernels, pinned batches, bfloat16 autocast (`machine.deterministic`,
`machine.pin_memory`, `train.precision`). The tests marked `gpu` need CUDA and skip, saying so, without it
(`pytest -m gpu`); the others run the same code paths on a CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import resolved_run

from mer_core.data.batches import load_fold
from mer_core.runtime import autocast, configure_device
from mer_core.tasks import study_task
from mer_core.train import fit_unit

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (none visible)")


def probabilities(output) -> np.ndarray:
    table = output.predictions
    return table[[c for c in table if c[0] == "p" and c[1:].isdigit()]].to_numpy()  # p0..pK-1


def test_configure_device_leaves_a_cpu_alone():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    configure_device(torch.device("cpu"), deterministic=True)
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_autocast_is_off_for_fp32_and_bfloat16_for_bf16():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert layer(x).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16


def test_pinning_is_for_a_gpu_only(tiny_store):
    batch = next(load_fold(tiny_store, 0, study_task("classification", tiny_store.manifest))["train"].batches(8))
    moved = batch.to(torch.device("cpu"), pin_memory=True)
    for modality in batch.modalities:
        assert torch.equal(moved.x[modality], batch.x[modality]) and not moved.x[modality].is_pinned()


@pytest.mark.parametrize("method", ["mmin", "nmer", "vavl", "late_fusion"])
def test_a_bf16_unit_trains_and_predicts_finite_float32_probabilities_on_a_cpu(method, tiny_store, tiny_params):
    params = tiny_params(tiny_store, epochs=2, precision="bf16")
    fp32 = fit_unit(resolved_run(method, tiny_params(tiny_store, epochs=2)), 0, 0)
    bf16 = fit_unit(resolved_run(method, params), 0, 0)
    p = probabilities(bf16)
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert not np.array_equal(p, probabilities(fp32))  # a setting of the study: it changes the numbers


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["mmin", "vavl"])
def test_a_unit_on_cuda_is_deterministic_and_close_to_the_cpus(method, tiny_store, tiny_params):
    run = resolved_run(method, tiny_params(tiny_store, epochs=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = (fit_unit(run, 0, 0, device="cuda", deterministic=True) for _ in range(2))
    pd.testing.assert_frame_equal(first.predictions, second.predictions)
    assert first.checkpoints == second.checkpoints
    cpu = fit_unit(run, 0, 0, device="cpu")
    np.testing.assert_allclose(probabilities(first), probabilities(cpu), atol=5e-3)
    nondeterministic = sorted(
        {str(w.message).split(" does not have")[0] for w in caught if "deterministic" in str(w.message)}
    )
    print(f"{method}: ops without a deterministic CUDA implementation: {nondeterministic or 'none'}")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["utt_fusion", "nmer"])
def test_bf16_on_cuda_with_pinned_batches(method, tiny_store, tiny_params):
    run = resolved_run(method, tiny_params(tiny_store, epochs=2, precision="bf16"))
    output = fit_unit(run, 0, 0, device="cuda", pin_memory=True)
    p = probabilities(output)
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1.0, atol=1e-5)
