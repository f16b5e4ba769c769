"""mer_core.robustness: the feature-noise grid (NMER protocol) and the signal-level corruptions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import resolved_run
from torch import nn

from mer_core.config import ConfigError
from mer_core.data.batches import Batch, load_fold
from mer_core.data.store import Sequences, read_store, write_store
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.params.evaluation import Robustness
from mer_core.robustness import (
    COLUMNS,
    cell_seed,
    corrupted_split,
    feature_noise_settings,
    robustness_grid,
    summarise_robustness,
)
from mer_core.schema import check
from mer_core.tasks import study_task

CPU = torch.device("cpu")
METRIC_COLUMNS = ["n", "loss", "wa", "ua", "f1_macro", "f1_micro"]


class Recorder(nn.Module):
    """Records every batch it is given and returns constant logits (or, with `rng`, logits drawn from the
    global RNG, so a noise that wrongly drew from the global RNG would change with the model)."""

    def __init__(self, n_classes: int, rng: bool = False):
        super().__init__()
        self.n_classes, self.rng = n_classes, rng
        self.seen: list[Batch] = []
        self.weight = nn.Parameter(torch.zeros(1))  # a parameter, as a model has

    def forward(self, batch: Batch) -> torch.Tensor:
        self.seen.append(batch)
        logits = torch.zeros(len(batch.y), self.n_classes)
        return logits + torch.randn_like(logits) if self.rng else logits


def cfg(**changes) -> dict:
    block = {
        "noise_types": ["gaussian", "impulse"],
        "intensities": [20, 100],
        "schedule": "scaled_linear",
        "beta_start": 0.01,
        "beta_end": 0.5,
        "impulse_density": 0.3,
        "per_sample": True,
        "batch_size": 8,
        "seed": 0,
        "signal": True,
        **changes,
    }
    return check(Robustness, block, "robustness").model_dump()


def recorded(model: Recorder) -> list[tuple]:
    """Every input the model saw, per batch: (rows, present, frames of each modality)."""
    return [(b.rows.tolist(), b.present.tolist(), *(b.x[m] for m in b.modalities)) for b in model.seen]


def same_inputs(a: Recorder, b: Recorder) -> bool:
    ra, rb = recorded(a), recorded(b)
    return len(ra) == len(rb) and all(
        x[:2] == y[:2] and all(torch.equal(u, v) for u, v in zip(x[2:], y[2:])) for x, y in zip(ra, rb)
    )


@pytest.fixture
def fold0(tiny_store):
    return load_fold(tiny_store, 0)


def utt_fusion(store, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    entry = {
        "optim": {},
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.1,
        "encoder_pooling": "valid",
        "text_windows": "valid",
    }
    context = ModelContext.from_manifest(store.manifest, study_task("classification", store.manifest))
    return method_spec("utt_fusion").stages[0].build(entry, context, None).eval()


# ================================================================================================ settings and seeds


def test_feature_noise_settings_are_types_times_intensities_in_order():
    settings = feature_noise_settings(cfg(intensities=[20, 40, 100]))
    assert [(s["noise"], s["level"]) for s, _ in settings] == [
        ("gaussian", 20.0),
        ("gaussian", 40.0),
        ("gaussian", 100.0),
        ("impulse", 20.0),
        ("impulse", 40.0),
        ("impulse", 100.0),
    ]
    assert all(s["modality"] == "missing" and s["unit"] == "T" and set(s) == set(COLUMNS) for s, _ in settings)
    for setting, scheduler in settings:
        assert (scheduler.type, float(scheduler.steps)) == (setting["noise"], setting["level"])
        assert (
            scheduler.schedule,
            scheduler.beta_start,
            scheduler.beta_end,
            scheduler.impulse_density,
            scheduler.per_sample,
        ) == ("scaled_linear", 0.01, 0.5, 0.3, True)
    assert isinstance(settings[0][1].steps, int) and isinstance(settings[0][0]["level"], float)
    assert feature_noise_settings(cfg(noise_types=[])) == [] and feature_noise_settings(cfg(intensities=[])) == []
    other = feature_noise_settings(cfg(schedule="cosine", per_sample=False, impulse_density=0.1))
    assert (other[-1][1].schedule, other[-1][1].per_sample, other[-1][1].impulse_density) == ("cosine", False, 0.1)


def test_robustness_schema_rejects_bad_values():
    for key, value in (
        ("noise_types", ["salt"]),
        ("intensities", [0]),
        ("batch_size", 0),
        ("seed", -1),
        ("signal", "yes"),
        ("schedule", "sigmoid"),
    ):
        with pytest.raises(ConfigError, match=rf"^robustness\.{key}(\[0\])?: got "):
            cfg(**{key: value})
    assert cfg() == {**Robustness().model_dump(), "intensities": [20, 100], "batch_size": 8}


def test_cell_seed_depends_on_fold_and_setting_only():
    seeds = {(f, i): cell_seed(0, f, i) for f in range(4) for i in range(10)}
    assert len(set(seeds.values())) == len(seeds)  # distinct per fold and setting
    assert cell_seed(0, 1, 2) == cell_seed(0, 1, 2)  # deterministic (no run or method enters)
    assert cell_seed(0, 1, 2) != cell_seed(1, 1, 2)  # the base seed matters
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds.values())
    assert cell_seed(0, 0, 1) != cell_seed(0, 1, 0)  # (fold, index) is not symmetric


# ================================================================================================ feature noise


def test_grid_rows_are_the_missing_conditions_pooled_and_mean(tiny_store, fold0):
    test = fold0["test"]
    table = robustness_grid(utt_fusion(tiny_store), tiny_store, test, cfg(), 0, CPU)
    assert list(table.columns[:4]) == COLUMNS and "condition" in table and set(METRIC_COLUMNS) <= set(table)
    assert len(table) == 4 * 4  # 2 types x 2 intensities, each: a, v (the full condition is not noised) + 2
    for (noise, level), part in table.groupby(["noise", "level"], sort=False):
        assert part["condition"].tolist() == ["a", "v", "pooled", "mean"]
        assert part["n"].tolist() == [len(test), len(test), 2 * len(test), 2 * len(test)]
        assert (part["modality"] == "missing").all() and (part["unit"] == "T").all()
        assert part.iloc[3]["ua"] == pytest.approx(part.iloc[:2]["ua"].mean())
    assert table[["noise", "level"]].drop_duplicates().values.tolist() == [
        ["gaussian", 20.0],
        ["gaussian", 100.0],
        ["impulse", 20.0],
        ["impulse", 100.0],
    ]
    assert table[["wa", "ua", "f1_macro", "f1_micro"]].apply(lambda c: c.between(0, 1)).all().all()


def test_grid_of_a_regression_model_holds_the_ccc_metrics(tiny_attribute_store):
    store = tiny_attribute_store
    task = study_task("regression", store.manifest)
    test = load_fold(store, 0, task)["test"]
    torch.manual_seed(0)
    entry = {
        "optim": {},
        "hidden": 8,
        "classifier": [8],
        "dropout": 0.1,
        "encoder_pooling": "valid",
        "text_windows": "valid",
    }
    model = method_spec("late_fusion").stages[0].build(entry, ModelContext.from_manifest(store.manifest, task), None)
    table = robustness_grid(model.eval(), store, test, cfg(), 0, CPU)  # the task comes from the split
    metrics = ["ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"]
    assert set(metrics) <= set(table) and not {"wa", "ua"} & set(table)
    assert len(table) == 4 * 4 and table[metrics].apply(lambda c: c.between(-1, 1)).all().all()
    for _, part in table.groupby(["noise", "level"], sort=False):
        assert part.iloc[3]["ccc_mean"] == pytest.approx(part.iloc[:2]["ccc_mean"].mean())
    summary = summarise_robustness(table, task.headline)
    assert list(summary) == ["gaussian T=20", "gaussian T=100", "impulse T=20", "impulse T=100"]
    assert all(set(v) == {"ccc_mean_mean", "ccc_mean_std"} for v in summary.values())
    assert np.isfinite(table["loss"]).all()


def test_grid_is_deterministic(tiny_store, fold0):
    model = utt_fusion(tiny_store)
    first = robustness_grid(model, tiny_store, fold0["test"], cfg(), 0, CPU)
    torch.manual_seed(123)  # the global RNG does not enter the noise
    second = robustness_grid(model, tiny_store, fold0["test"], cfg(), 0, CPU)
    pd.testing.assert_frame_equal(first, second)


def test_noisy_inputs_do_not_depend_on_the_model(tiny_store, fold0):
    n_classes = len(tiny_store.classes)
    quiet, noisy = Recorder(n_classes), Recorder(n_classes, rng=True)
    robustness_grid(quiet, tiny_store, fold0["test"], cfg(), 0, CPU)
    torch.manual_seed(7)
    robustness_grid(noisy, tiny_store, fold0["test"], cfg(), 0, CPU)
    assert len(quiet.seen) > 8 and same_inputs(quiet, noisy)
    # settings see different noise: the first gaussian (T=20) and the first impulse (T=20) differ
    n_batches = len(quiet.seen) // 4
    assert not torch.equal(quiet.seen[0].x["visual"], quiet.seen[2 * n_batches].x["visual"])
    # another fold seed gives other noise on the same clips
    other = Recorder(n_classes)
    robustness_grid(other, tiny_store, fold0["test"], cfg(), 1, CPU)
    assert not same_inputs(quiet, other)


def test_noise_replaces_the_removed_modality_and_leaves_the_kept_one_clean(tiny_store, fold0):
    test = fold0["test"]
    model = Recorder(len(tiny_store.classes))
    robustness_grid(model, tiny_store, test, cfg(noise_types=["gaussian"], intensities=[20], per_sample=False), 0, CPU)
    position = {int(r): k for k, r in enumerate(test.rows)}
    conditions = [("audio",), ("visual",)]
    per_condition = len(model.seen) // 2
    assert per_condition * 2 == len(model.seen)
    seen_rows = []
    for b, batch in enumerate(model.seen):
        kept = conditions[b // per_condition]
        seen_rows += batch.rows.tolist()
        for j, row in enumerate(batch.rows.tolist()):
            k = position[row]
            has = test.has[k]
            assert batch.present[j].tolist() == has.tolist()  # noised modalities count as present
            for i, m in enumerate(test.modalities):
                length = int(test.lengths[m][k])
                clean = test.x[m][k, :length]
                frames = batch.x[m][j]
                assert frames[length:].abs().sum() == 0  # padding stays zero
                if m in kept or not has[i]:
                    assert torch.equal(frames[:length], clean)  # kept (or never there: zeros)
                else:
                    assert not torch.equal(frames[:length], clean) and frames[:length].abs().sum() > 0
    assert sorted(seen_rows) == sorted(test.rows.tolist() * 2)  # every clip once per condition


def test_no_settings_give_an_empty_frame(tiny_store, fold0):
    model = Recorder(len(tiny_store.classes))
    table = robustness_grid(model, tiny_store, fold0["test"], cfg(noise_types=[], signal=False), 0, CPU)
    assert table.empty and list(table.columns) == [*COLUMNS, "condition"]
    assert model.seen == []
    # signal on but no corruption variant in the store: still empty
    assert tiny_store.corruptions == []
    assert robustness_grid(model, tiny_store, fold0["test"], cfg(noise_types=[]), 0, CPU).empty


# ================================================================================================ signal corruptions


NAMES = {"audio": "audio_white_10", "visual": "visual_dropout_0.5"}


def corrupt(seq: Sequences, shift: float, scale: float) -> Sequences:
    return Sequences(seq.data * scale + shift, seq.offsets.copy(), seq.valid.copy(), seq.clip_ids.copy())


@pytest.fixture
def corrupted_store(tiny_store, tmp_path):
    """The tiny store rewritten with two corruption variants: audio (x 2 + 5) and visual (x -1 - 3)."""
    store = tiny_store
    manifest = {k: v for k, v in store.manifest.items() if k != "files"}
    manifest["corruptions"] = [
        {"name": "audio_white_10", "modality": "audio", "kind": "white", "level": 10.0, "unit": "dB", "settings": {}},
        {
            "name": "visual_dropout_0.5",
            "modality": "visual",
            "kind": "dropout",
            "level": 0.5,
            "unit": "fraction",
            "settings": {},
        },
    ]
    variants = {
        "audio_white_10": corrupt(store.sequences["audio"], 5.0, 2.0),
        "visual_dropout_0.5": corrupt(store.sequences["visual"], -3.0, -1.0),
    }
    root = write_store(
        tmp_path / "features" / "corrupted", store.meta, store.splits, store.sequences, manifest, corruptions=variants
    )
    return read_store(root), variants


def test_signal_corruptions_are_evaluated_on_the_conditions_holding_the_modality(corrupted_store):
    store, _ = corrupted_store
    assert [c["name"] for c in store.corruptions] == ["audio_white_10", "visual_dropout_0.5"]
    test = load_fold(store, 0)["test"]
    table = robustness_grid(utt_fusion(store), store, test, cfg(noise_types=[]), 0, CPU)
    audio, visual = table[table["modality"] == "audio"], table[table["modality"] == "visual"]
    assert audio["condition"].tolist() == ["a", "av", "pooled", "mean"]
    assert visual["condition"].tolist() == ["v", "av", "pooled", "mean"]
    assert (audio["noise"] == "white").all() and (audio["level"] == 10.0).all() and (audio["unit"] == "dB").all()
    assert (visual["noise"] == "dropout").all() and (visual["level"] == 0.5).all()
    assert len(table) == 8 and list(table.columns[:4]) == COLUMNS
    both = robustness_grid(utt_fusion(store), store, test, cfg(), 0, CPU)
    assert len(both) == 16 + 8  # the feature-noise settings first, then the corruptions
    assert both["modality"].tolist()[:16] == ["missing"] * 16
    pd.testing.assert_frame_equal(both.iloc[16:].reset_index(drop=True), table.reset_index(drop=True))
    assert robustness_grid(utt_fusion(store), store, test, cfg(signal=False), 0, CPU).shape[0] == 16


def test_corrupted_frames_are_normalised_with_the_folds_clean_training_statistics(corrupted_store):
    store, variants = corrupted_store
    fold = load_fold(store, 0)
    test, norm = fold["test"], fold["test"].norm
    assert norm is fold["train"].norm  # the clean training statistics
    model = Recorder(len(store.classes))
    robustness_grid(model, store, test, cfg(noise_types=[]), 0, CPU)
    position = {int(r): k for k, r in enumerate(test.rows)}
    checked = 0
    n_audio_conditions = 2 * (-(-len(test) // 8))  # conditions a and av, batches of 8
    for b, batch in enumerate(model.seen):
        corrupted_modality = "audio" if b < n_audio_conditions else "visual"
        for j, row in enumerate(batch.rows.tolist()):
            k = position[row]
            for i, m in enumerate(batch.modalities):
                length = int(test.lengths[m][k])
                frames = batch.x[m][j, :length].numpy()
                if not batch.present[j, i]:
                    assert not np.any(frames)  # absent under the condition
                elif m == corrupted_modality:
                    raw, valid = variants[NAMES[m]].clip(row)
                    expected = np.where(valid[:, None], (raw - norm.mean[m]) / norm.std[m], 0.0)
                    np.testing.assert_allclose(frames, expected, rtol=1e-5, atol=1e-5)
                    assert not np.allclose(frames, test.x[m][k, :length].numpy())  # the clean frames are replaced
                    checked += 1
                else:
                    assert np.array_equal(frames, test.x[m][k, :length].numpy())  # the other modality is clean
    assert checked == 2 * len(test) + 2 * int(test.has[:, 1].sum())
    modality, split = corrupted_split(store, test, "audio_white_10")
    assert modality == "audio" and split.norm is norm and np.array_equal(split.rows, test.rows)
    assert torch.equal(split.x["visual"], test.x["visual"]) and torch.equal(split.y, test.y)
    # the shift/scale survives normalisation: z' = 2 z + (5 + mean (2 - 1)) / std on valid frames
    k = 0
    length = int(test.lengths["audio"][k])
    shift = torch.as_tensor((5.0 + norm.mean["audio"]) / norm.std["audio"], dtype=torch.float32)
    expected = 2 * test.x["audio"][k, :length] + shift
    torch.testing.assert_close(split.x["audio"][k, :length], expected, rtol=1e-4, atol=1e-4)


def test_summary_of_the_grid_for_summary_json_is_mean_and_sample_std_of_pooled_rows():
    from mer_core.robustness import setting_label, summarise_robustness

    rows = []
    for fold, wa in ((0, 0.5), (1, 0.7)):
        for condition, shift in (("a", 0.0), ("pooled", 0.1)):
            rows.append(
                {
                    "fold": fold,
                    "noise": "gaussian",
                    "modality": "missing",
                    "level": 20.0,
                    "unit": "T",
                    "condition": condition,
                    "wa": wa + shift,
                    "ua": wa,
                }
            )
    rows.append(
        {
            "fold": 0,
            "noise": "babble",
            "modality": "audio",
            "level": 10.0,
            "unit": "dB",
            "condition": "pooled",
            "wa": 0.4,
            "ua": 0.3,
        }
    )
    summary = summarise_robustness(pd.DataFrame(rows))
    assert list(summary) == ["gaussian T=20", "babble 10 dB"]
    spread = 0.2 / np.sqrt(2)  # the sample std (ddof 1) of two values 0.2 apart
    assert summary["gaussian T=20"] == pytest.approx(
        {"wa_mean": 0.7, "wa_std": spread, "ua_mean": 0.6, "ua_std": spread}
    )
    assert summary["babble 10 dB"] == {"wa_mean": 0.4, "wa_std": None, "ua_mean": 0.3, "ua_std": None}  # one unit
    only_ua = summarise_robustness(pd.DataFrame(rows), ("ua",))  # the task's headline metrics only
    assert only_ua["gaussian T=20"] == pytest.approx({"ua_mean": 0.6, "ua_std": spread})
    assert setting_label("tracking_dropout", 0.5, "fraction") == "tracking_dropout 50%"


# ================================================================================================ reused encodings


@pytest.mark.parametrize("run", ["utt_fusion", "vavl"])
def test_the_grid_encodes_each_clean_modality_once_per_batch_with_unchanged_results(
    tiny_store, fold0, tiny_params, monkeypatch, run
):
    """`reuse_encodings`: the frame encoders skip inputs they have encoded (the same tensors), and the grid's results
    are exactly those of encoding every input anew."""
    from mer_core.conformer import Conformer
    from mer_core.layers import LSTMEncoder
    from mer_core.methods.vavl import Branch

    entry = resolved_run(run, tiny_params(tiny_store))["entry"]
    task = study_task("classification", tiny_store.manifest)
    torch.manual_seed(0)
    model = method_spec(run).stages[0].build(entry, ModelContext.from_manifest(tiny_store.manifest, task), None)
    calls = []
    for cls in (LSTMEncoder, Branch):  # count the encodings computed (a reused one never reaches the class's forward)
        monkeypatch.setattr(
            cls, "forward", lambda m, x, lengths, forward=cls.forward: calls.append(m) or forward(m, x, lengths)
        )
    reused = robustness_grid(model, tiny_store, fold0["test"], cfg(), 0, CPU)
    n_reused = len(calls)
    calls.clear()
    for cls in (LSTMEncoder, Conformer, Branch):
        monkeypatch.setattr(cls, "pure_in_eval", False)
    anew = robustness_grid(model, tiny_store, fold0["test"], cfg(), 0, CPU)
    pd.testing.assert_frame_equal(reused, anew, check_exact=True)
    # 4 settings x 2 conditions, each with one clean modality: encoded for the first setting only
    n_batches = len(list(fold0["test"].batches(8)))
    assert len(calls) == 4 * 2 * 2 * n_batches and n_reused == len(calls) - 3 * 2 * n_batches
    assert all(not m.training for m in model.modules()) and not any("forward" in vars(m) for m in model.modules())
