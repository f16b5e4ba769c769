"""The robustness grid: every run's test folds under noise (docs/design.md, "Modalities and conditions").

Two kinds of degradation, each evaluated per condition with `evaluate.grid_metrics` (per condition, pooled,
mean):

- **Feature noise** (NMER protocol, docs/methods.md §4.1): for each noise type and intensity T, the modalities a
  condition removes are replaced by their noised frames (`NoiseScheduler`) instead of zeros. Evaluated on the
  conditions with a modality missing (under the full condition nothing is noised, so it equals the clean
  grid); their pooled metric is MMIN's "Average" under noise, the quantity of NMER's "WA vs noise intensity"
  figure. A store with one modality (EmoDB) has no such condition, hence no feature-noise cell.
- **Signal corruptions** (beyond the paper): the corrupted features that `prepare` extracts from degraded
  media (`features.corruptions`: babble / white noise added to the waveform at an SNR, OpenFace tracking
  dropout), normalised with the fold's clean training statistics, on the conditions that contain the
  corrupted modality. A feature package without media has none.

The noise of a cell is drawn from a generator seeded by (`robustness.seed`, fold, setting), not by the run, and
the evaluation batches are the same for every run (`robustness.batch_size`): every method sees exactly the same
noisy inputs, and the same params give the same numbers every time.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [nmer] evaluation noise. Official: random, unseeded; one t per batch. Here: seeded per fold and setting, the
  same noisy inputs for every method; one t per clip (`robustness.per_sample`). Why: the same params give the
  same metrics; with ~4 test batches per condition and fold, a per-batch t makes the curve hang on ~4 draws.
  Restore: `robustness.per_sample: false`. Test: tests/test_robustness.py::test_grid_is_deterministic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from mer_core.conditions import all_conditions
from mer_core.data.batches import Split, with_sequences
from mer_core.data.store import FeatureStore
from mer_core.evaluate import grid_metrics, predict, reuse_encodings, sample_std
from mer_core.noise.scheduler import NoiseScheduler

SCHEDULER_KEYS = ("schedule", "beta_start", "beta_end", "impulse_density", "per_sample")  # shared by every setting
COLUMNS = ["noise", "modality", "level", "unit"]  # what identifies a setting in robustness.csv


def setting_label(noise: str, level: float, unit: str) -> str:
    """A setting's name in tables and metrics.json: `gaussian T=20`, `babble 10 dB`, `tracking_dropout 50%`."""
    if unit == "dB":
        return f"{noise} {level:g} dB"
    if unit == "fraction":
        return f"{noise} {100 * level:.0f}%"
    return f"{noise} {unit}={level:g}"


def summarise_robustness(table: pd.DataFrame, metrics: tuple[str, ...] = ("wa", "ua")) -> dict:
    """`metrics` pooled per setting, mean and sample std over units (folds x seeds): {setting: {wa_mean, ...}}, the
    `robustness` block of a run's summary.json."""
    pooled = table[table["condition"] == "pooled"]
    summary = {}
    for (noise, level, unit), part in pooled.groupby(["noise", "level", "unit"], sort=False):
        summary[setting_label(noise, level, unit)] = {
            **{f"{metric}_mean": float(part[metric].mean()) for metric in metrics},
            **{f"{metric}_std": sample_std(part[metric]) for metric in metrics},
        }
    return summary


def feature_noise_settings(cfg: dict) -> list[tuple[dict, NoiseScheduler]]:
    """(setting, scheduler) for every noise type x intensity of `robustness` params `cfg`."""
    block = {k: cfg[k] for k in SCHEDULER_KEYS}
    return [
        (
            {"noise": kind, "modality": "missing", "level": float(steps), "unit": "T"},
            NoiseScheduler(type=kind, steps=steps, **block),
        )
        for kind in cfg["noise_types"]
        for steps in cfg["intensities"]
    ]


def cell_seed(base: int, fold: int, index: int) -> int:
    """The noise seed of setting `index` on `fold`: independent of the method and the training seed."""
    return int(np.random.SeedSequence([base, fold, index]).generate_state(1)[0])


def corrupted_split(store: FeatureStore, split: Split, name: str) -> tuple[str, Split]:
    """(modality, `split` rebuilt with the frames of corruption `name`), normalised as `split` was."""
    modality, sequences = store.corruption(name)
    return modality, with_sequences(split, modality, sequences)


@torch.no_grad()
def robustness_grid(
    model: nn.Module, store: FeatureStore, test: Split, cfg: dict, fold: int, device: torch.device
) -> pd.DataFrame:
    """The task's metrics of `model` on `test` under every setting of the grid: one row per (setting,
    condition), the conditions followed by `pooled` and `mean`; columns noise, modality, level, unit, condition,
    n, loss and the metrics (wa, ua, f1_macro, f1_micro for classification)."""
    with reuse_encodings(model):  # the clean modality of a condition is encoded once for every setting
        return _robustness_grid(model, store, test, cfg, fold, device)


def _robustness_grid(
    model: nn.Module, store: FeatureStore, test: Split, cfg: dict, fold: int, device: torch.device
) -> pd.DataFrame:
    task, conditions = test.task, all_conditions(test.modalities)
    tables = []
    noise_settings = feature_noise_settings(cfg) if len(conditions) > 1 else []  # one modality: none goes missing
    for index, (setting, scheduler) in enumerate(noise_settings):
        predictions = predict(
            model, test, cfg["batch_size"], device, conditions[:-1], scheduler, cell_seed(cfg["seed"], fold, index)
        )
        tables.append(grid_metrics(predictions, task).assign(**setting))
    for corruption in store.corruptions if cfg["signal"] else []:
        modality, split = corrupted_split(store, test, corruption["name"])
        predictions = predict(model, split, cfg["batch_size"], device, [c for c in conditions if modality in c])
        tables.append(
            grid_metrics(predictions, task).assign(
                noise=corruption["kind"], modality=modality, level=float(corruption["level"]), unit=corruption["unit"]
            )
        )
    if not tables:
        return pd.DataFrame(columns=[*COLUMNS, "condition"])
    table = pd.concat(tables, ignore_index=True)
    return table[COLUMNS + [c for c in table if c not in COLUMNS]]
