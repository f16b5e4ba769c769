"""mer_core.methods (registered baselines, align_frames) and mer_core.train.run_method on the tiny store."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from fakes import CTX, OPTIM, make_batch, task_context
from helpers import run_method

from mer_core.conditions import all_conditions, apply_condition
from mer_core.config import ConfigError, resolve_runs, validate_params
from mer_core.data.batches import Batch, load_fold
from mer_core.data.store import read_store
from mer_core.evaluate import predict
from mer_core.layers import LSTMEncoder, TextCNN
from mer_core.methods.baselines import EarlyFusion, LateFusion, UttFusion, align_frames
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.params.methods import CATALOG
from mer_core.schema import check
from mer_core.tasks import study_task
from mer_core.train import CURVE_COLUMNS

PARAMS = {
    "optim": OPTIM,
    "hidden": 8,
    "classifier": [8, 8],
    "dropout": 0.0,
    "encoder_pooling": "valid",
    "text_windows": "valid",
}
EXTRA = {"utt_dataaug": {"conditions": "missing"}}  # keys of one baseline's schema only

BASELINES = ("audio_only", "visual_only", "early_fusion", "late_fusion", "utt_fusion", "utt_dataaug")


def baseline_entry(name: str, **changes) -> dict:
    """A complete entry of baseline `name`: PARAMS with `changes`, validated by the method's params model."""
    return check(
        CATALOG[name].params, dict(PARAMS, **{**EXTRA.get(name, {}), **changes}), f"methods.{name}"
    ).model_dump(mode="json")


def build(name: str, ctx: ModelContext = CTX, **changes):
    torch.manual_seed(0)
    return method_spec(name).stages[0].build(baseline_entry(name, **changes), ctx, None)


def test_registry_holds_the_baselines():
    assert set(BASELINES) <= set(CATALOG)
    assert all(len(CATALOG[name].stages) == 1 == len(method_spec(name).stages) for name in BASELINES)
    entries = {name: baseline_entry(name) for name in BASELINES}
    assert {name: method_spec(name).stages[0].conditions(entries[name]) for name in BASELINES} == {
        "audio_only": "full",
        "visual_only": "full",
        "early_fusion": "full",
        "late_fusion": "full",
        "utt_fusion": "full",
        "utt_dataaug": "missing",
    }


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_builds_and_trains(name):
    model = build(name).train()
    batch = make_batch()
    logits = model(batch)
    assert logits.shape == (5, 6) and torch.isfinite(logits).all()
    loss, loss_logits = model.loss(batch, batch)
    assert loss.shape == () and torch.isfinite(loss) and loss.item() > 0
    assert loss_logits.shape == (5, 6)
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0
    for condition in all_conditions(CTX.modalities):
        assert torch.isfinite(model.eval()(apply_condition(batch, condition))).all()


def test_cross_entropy_models_loss_is_cross_entropy_of_forward():
    batch = make_batch()
    for name in ("utt_fusion", "early_fusion", "audio_only"):
        model = build(name).eval()
        loss, logits = model.loss(batch, batch)
        torch.testing.assert_close(logits, model(batch))
        torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, batch.y))


@pytest.mark.parametrize("name, own, other", [("audio_only", "audio", "visual"), ("visual_only", "visual", "audio")])
def test_unimodal_models_ignore_the_other_modality(name, own, other):
    model = build(name).eval()
    assert list(model.encoders) == [own]
    batch = make_batch()
    reference = model(batch)
    g = torch.Generator().manual_seed(5)
    noisy = batch.replace(
        x={**batch.x, other: torch.randn(batch.x[other].shape, generator=g) * 10},
        lengths={**batch.lengths, other: torch.full((5,), batch.x[other].shape[1])},
    )
    torch.testing.assert_close(model(noisy), reference)
    changed = batch.replace(x={**batch.x, own: batch.x[own] + 1.0})
    assert not torch.allclose(model(changed), reference)


def test_late_fusion_probabilities():
    model = build("late_fusion").eval()
    assert isinstance(model, LateFusion)
    batch = make_batch()
    audio_only = apply_condition(batch, ("audio",))
    torch.testing.assert_close(model(audio_only).softmax(-1), model.branches["audio"](audio_only).softmax(-1))
    both = apply_condition(batch, ("audio", "visual"))
    branch = model.branch_outputs(both).softmax(-1)  # (B, M, C)
    fused = model(both).softmax(-1)
    with_visual = both.present[:, 1]
    torch.testing.assert_close(fused[with_visual], branch[with_visual].mean(1))
    torch.testing.assert_close(fused[~with_visual], branch[~with_visual, 0])  # clip without visual: audio alone
    # the training loss averages the present branches' cross-entropies
    loss, _ = model.loss(both, batch)
    per_branch = torch.nn.functional.cross_entropy(
        model.branch_outputs(both).flatten(0, 1), both.y.repeat_interleave(2), reduction="none"
    ).view(5, 2)
    torch.testing.assert_close(loss, per_branch[both.present].mean())


def test_align_frames_known_values():
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1).expand(2, 6, 1).clone()
    x[1] *= 10
    down = align_frames(x, torch.tensor([6, 6]), torch.tensor([3, 3]), 3)  # 6 frames onto 3 steps
    assert down[..., 0].tolist() == [[0, 2, 4], [0, 20, 40]]
    up = align_frames(down, torch.tensor([3, 3]), torch.tensor([6, 6]), 6)  # 3 frames stretched onto 6
    assert up[..., 0].tolist() == [[0, 0, 2, 2, 4, 4], [0, 0, 20, 20, 40, 40]]
    # grid steps beyond a clip's own grid length and clips of length 0 give zeros
    short = align_frames(x, torch.tensor([2, 0]), torch.tensor([4, 4]), 5)
    assert short[..., 0].tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    wide = torch.randn(1, 4, 3)
    torch.testing.assert_close(align_frames(wide, torch.tensor([4]), torch.tensor([4]), 4), wide)
    torch.testing.assert_close(align_frames(wide, torch.tensor([4]), torch.tensor([2]), 2), wide[:, [0, 2]])


def _early_fusion_inputs(lengths: dict[str, list[int]]):
    model = build("early_fusion").eval()
    assert isinstance(model, EarlyFusion)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda module, args: seen.update(frames=args[0], lengths=args[1]))
    n = len(lengths["audio"])
    x = {m: torch.randn(n, max(max(lengths[m]), 1), CTX.dims[m]) for m in CTX.modalities}
    lens = {m: torch.tensor(v) for m, v in lengths.items()}
    batch = Batch(
        CTX.modalities,
        x,
        lens,
        torch.stack([lens[m] > 0 for m in CTX.modalities], 1),
        torch.zeros(n, dtype=torch.long),
        torch.arange(n),
    )
    model(batch)
    assert seen["frames"].shape == (n, max(seen["lengths"].max().item(), 1), 9)
    return batch, seen


def test_early_fusion_grid_is_the_longest_stream_and_aligns_by_position():
    batch, seen = _early_fusion_inputs({"audio": [10, 3, 0], "visual": [5, 6, 7]})
    assert seen["lengths"].tolist() == [10, 6, 7]
    frames = seen["frames"]
    torch.testing.assert_close(frames[0, :, :5], batch.x["audio"][0])  # the grid stream is copied
    torch.testing.assert_close(frames[0, :, 5:], batch.x["visual"][0, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]])
    torch.testing.assert_close(frames[1, :6, :5], batch.x["audio"][1, [0, 0, 1, 1, 2, 2]])
    assert frames[2, :, :5].abs().sum() == 0  # no audio: zeros


def test_utt_fusion_with_text():
    ctx = task_context(
        ("audio", "visual", "text"),
        {"audio": 5, "visual": 4, "text": 6},
        4,
        {"audio": 100 / 3, "visual": 30.0, "text": 1.0},
    )
    model = build("utt_fusion", ctx)
    assert isinstance(model, UttFusion)
    assert isinstance(model.encoders["text"], TextCNN) and isinstance(model.encoders["audio"], LSTMEncoder)
    batch = make_batch(ctx, n=4)
    batch = batch.replace(lengths={**batch.lengths, "text": torch.tensor([2, 5, 3, 1])})  # shorter than kernels
    model.train()
    loss, logits = model.loss(batch, batch)
    assert logits.shape == (4, 4) and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.encoders["text"].convs[0].weight.grad.abs().sum() > 0
    model.eval()
    outputs = {c: model(apply_condition(batch, c)) for c in all_conditions(ctx.modalities)}
    assert len(outputs) == 7 and all(o.shape == (4, 4) and torch.isfinite(o).all() for o in outputs.values())
    assert not torch.allclose(outputs[("text",)], outputs[("audio", "visual", "text")])


def test_unknown_method_raises_config_error():
    with pytest.raises(ConfigError) as info:
        method_spec("mmin_v2")
    assert "'mmin_v2' is not registered" in str(info.value) and all(name in str(info.value) for name in CATALOG)

    def run_error(name: str, entry: dict) -> str:
        with pytest.raises(ConfigError) as error:
            validate_params(
                {"methods": {name: entry}, "extended": {"other_task": {"methods": []}, "unpaired": {"methods": []}}}
            )
        return str(error.value)

    assert run_error("ablation", dict(PARAMS, method="mmin_v2")).startswith(
        "methods.ablation.method: got 'mmin_v2'; registered methods: audio_only"
    )
    assert run_error("ablation", dict(PARAMS)).startswith("methods.ablation: give exactly one of `method`")
    assert run_error("utt_fusion", dict(PARAMS, method="utt_fusion", hidden=0)).startswith(
        "methods.utt_fusion.hidden: got 0"
    )
    assert run_error("Bad-Name", dict(PARAMS, method="utt_fusion")).startswith("methods.Bad-Name: run names must match")


def test_a_partial_block_takes_the_rest_from_the_methods_defaults():
    params = validate_params({"methods": {"utt_fusion": {"method": "utt_fusion", "optim": {"epochs": 1}}}})
    assert resolve_runs(params)["utt_fusion"]["entry"]["optim"] == {
        "epochs": 1,
        "epochs_decay": 10,
        "lr": 2e-4,
        "beta1": 0.9,
        "grad_clip": 5.0,
        "batch_size": 128,
    }


def test_paper_preset_merges_the_official_settings():
    raw = {"methods": {"utt_fusion": dict(PARAMS, method="utt_fusion")}}
    study = resolve_runs(validate_params(raw))["utt_fusion"]["entry"]
    assert study == baseline_entry("utt_fusion")
    paper = resolve_runs(validate_params({**raw, "train": {"preset": "paper"}}))["utt_fusion"]["entry"]
    assert paper["optim"] == {
        "epochs": 10,
        "epochs_decay": 10,
        "lr": 2e-4,
        "beta1": 0.9,
        "grad_clip": 5.0,
        "batch_size": 128,
    }  # docs/methods.md §2.1 (IEMOCAP script)
    assert paper["hidden"] == 128 and paper["classifier"] == [128, 128] and paper["dropout"] == 0.3
    assert raw["methods"]["utt_fusion"]["optim"] == OPTIM  # the params are not modified


# ================================================================================================ run_method


def test_run_method_writes_every_output(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=2, folds=[0])
    out = tmp_path / "results" / "utt_fusion"
    checkpoints = tmp_path / "checkpoints" / "utt_fusion"
    summary = run_method("utt_fusion", params, out, checkpoints)
    assert sorted(p.name for p in out.iterdir()) == [
        "curve.csv",
        "history.csv",
        "metrics.json",
        "per_condition.csv",
        "predictions.csv",
        "robustness.csv",
        "summary.json",
    ]
    assert [p.name for p in checkpoints.iterdir()] == ["fold0-seed0.pt"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["run"] == summary["method"] == "utt_fusion" and summary["units"] == 1
    assert summary["status"] == "trained" and summary["task"] == "classification"
    assert summary["classes"] == list(tiny_store.classes) and summary["modalities"] == ["audio", "visual"]
    assert summary["folds"] == [0] and summary["seeds"] == [0] and summary["best_epochs"]["train"][0] in (1, 2)
    assert list(summary["conditions"]) == ["a", "v", "av", "pooled", "mean"]
    assert all(0 <= v <= 1 for c in summary["conditions"].values() for k, v in c.items() if k.endswith("_mean"))
    assert all(v is None for c in summary["conditions"].values() for k, v in c.items() if k.endswith("_std"))

    test_rows = tiny_store.fold_indices(0)["test"]
    per_condition = pd.read_csv(out / "per_condition.csv")
    assert per_condition["condition"].tolist() == ["a", "v", "av", "pooled", "mean"]
    assert list(per_condition.columns[:4]) == ["fold", "seed", "condition", "n"]
    assert per_condition["n"].tolist() == [len(test_rows)] * 3 + [3 * len(test_rows)] * 2
    mean = per_condition.set_index("condition").loc[["a", "v", "av"], ["wa", "ua", "f1_macro"]].mean()
    np.testing.assert_allclose(
        per_condition.set_index("condition").loc["mean", ["wa", "ua", "f1_macro"]], mean, atol=2e-5
    )

    robustness = pd.read_csv(out / "robustness.csv")
    assert list(robustness.columns[:7]) == ["fold", "seed", "noise", "modality", "level", "unit", "condition"]
    feature = robustness[robustness["unit"] == "T"]  # 2 types x 2 intensities x (a, v, pooled, mean)
    assert feature.groupby(["noise", "level"]).size().to_dict() == {
        (n, t): 4 for n in ("gaussian", "impulse") for t in (20.0, 100.0)
    }
    assert set(feature["condition"]) == {"a", "v", "pooled", "mean"}
    assert (feature.loc[feature["condition"] == "pooled", "n"] == 2 * len(test_rows)).all()

    history = pd.read_csv(out / "history.csv")
    assert history[["fold", "seed", "stage", "epoch"]].values.tolist() == [[0, 0, "train", 1], [0, 0, "train", 2]]
    assert list(history.columns) == [
        "fold",
        "seed",
        "stage",
        "epoch",
        "phase",
        "stopped",
        "lr",
        "train_loss",
        "val_loss",
        "val_ua",
    ]
    assert np.isfinite(history[["train_loss", "val_loss", "val_ua"]].to_numpy()).all()
    curve = pd.read_csv(out / "curve.csv")
    assert list(curve.columns) == CURVE_COLUMNS and curve["step"].tolist() == [1, 2]
    np.testing.assert_allclose(curve["criterion"], history["val_ua"], atol=1e-5)
    assert (curve["metric"] == "ua").all() and (curve["units"] == 1).all()

    metrics = json.loads((out / "metrics.json").read_text())  # the headline numbers only
    assert set(metrics) == {"run", "status", "ua", "wa", "noise_wa"} and metrics["status"] == "trained"
    by = per_condition.set_index("condition")
    for metric in ("ua", "wa"):
        assert list(metrics[metric]) == ["a", "v", "av", "missing"]
        for condition in ("a", "v", "av"):
            assert metrics[metric][condition] == pytest.approx(by.loc[condition, metric], abs=1e-5)
        assert metrics[metric]["missing"] == pytest.approx(by.loc[["a", "v"], metric].mean(), abs=1e-5)
    pooled = robustness[(robustness["condition"] == "pooled") & (robustness["unit"] == "T")]
    assert metrics["noise_wa"] == pytest.approx(pooled["wa"].mean(), abs=1e-5)

    predictions = pd.read_csv(out / "predictions.csv", dtype={"speaker": str})
    assert len(predictions) == 3 * len(test_rows)
    test_speakers = set(tiny_store.splits.query("fold == 0 and role == 'test'")["speaker"])
    assert set(predictions["speaker"]) == test_speakers  # only held-out speakers are predicted
    assert set(predictions["clip_id"]) == set(tiny_store.meta["clip_id"].to_numpy()[test_rows])
    assert set(predictions["label"]) <= set(tiny_store.classes) and set(predictions["pred"]) <= set(tiny_store.classes)
    prob_columns = [f"p_{c}" for c in tiny_store.classes]
    np.testing.assert_allclose(predictions[prob_columns].sum(axis=1), 1.0, atol=5e-4)

    checkpoint = torch.load(checkpoints / "fold0-seed0.pt")
    assert checkpoint["method"] == "utt_fusion" and checkpoint["fold"] == 0 and checkpoint["seed"] == 0
    assert checkpoint["epoch"] == summary["best_epochs"]["train"][0]
    context = checkpoint["context"]  # asdict(ModelContext): the task is stored as a dict
    assert context["task"] == {"name": "classification", "targets": tuple(tiny_store.classes)}
    context = ModelContext.from_dict(context)
    assert context == ModelContext.from_manifest(tiny_store.manifest, study_task("classification", tiny_store.manifest))
    model = method_spec("utt_fusion").stages[0].build(checkpoint["params"], context, None)
    model.load_state_dict(checkpoint["state_dict"])
    reloaded = predict(model, load_fold(read_store(tiny_store.root), 0)["test"], 16, torch.device("cpu"))
    np.testing.assert_allclose(
        reloaded[[f"p{k}" for k in range(6)]].to_numpy(), predictions[prob_columns].to_numpy(), atol=1e-4
    )  # the checkpoint is the model that made the test predictions
    assert not list(out.rglob("*.tmp"))


def test_run_method_learns_the_class_offsets(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=12, folds=[0])
    summary = run_method("late_fusion", params, tmp_path / "late_fusion", tmp_path / "late_fusion" / "ckpt")
    assert summary["conditions"]["av"]["ua_mean"] > 0.5  # chance is 1/6


def test_run_method_is_deterministic(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=2, folds=[0, 1])
    for name in ("first", "second"):
        run_method(
            "utt_dataaug", params, tmp_path / name, tmp_path / name / "ckpt"
        )  # random conditions and shuffling: all seeded
    for table in ("per_condition.csv", "predictions.csv", "history.csv"):
        assert (tmp_path / "first" / table).read_text() == (tmp_path / "second" / table).read_text(), table


def test_run_method_does_not_depend_on_n_jobs(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=2, folds=[0, 1])
    run_method("utt_dataaug", params, tmp_path / "serial", tmp_path / "serial" / "ckpt")
    run_method("utt_dataaug", params, tmp_path / "parallel", tmp_path / "parallel" / "ckpt", jobs=2)  # ~12 s
    for table in ("per_condition.csv", "predictions.csv", "metrics.json", "summary.json"):
        assert (tmp_path / "serial" / table).read_text() == (tmp_path / "parallel" / table).read_text(), table


def test_training_batches_never_hold_a_single_clip_and_cover_every_clip_once(tiny_store):
    split = load_fold(tiny_store, 0)["train"]
    assert len(split) == 60
    for batch_size in (59, 29, 16, 1):
        generator = torch.Generator().manual_seed(0)
        sizes = [len(b.y) for b in split.batches(batch_size, generator)]
        rows = sorted(r for b in split.batches(batch_size, torch.Generator().manual_seed(0)) for r in b.rows.tolist())
        assert rows == sorted(split.rows.tolist())
        assert batch_size == 1 or min(sizes) > 1
    assert [len(b.y) for b in split.batches(59)] == [59, 1]  # evaluation keeps every batch as cut


def test_checkpoints_are_byte_identical_whatever_the_file_name(tmp_path):
    from mer_core.train import save_checkpoint

    checkpoint = {"state_dict": torch.nn.Linear(3, 2).state_dict(), "epoch": 1}
    save_checkpoint(checkpoint, tmp_path / ".fold0-seed0.pt.123.tmp")  # write_atomic's temporary names hold a pid
    save_checkpoint(checkpoint, tmp_path / ".fold0-seed0.pt.456.tmp")
    first, second = (
        (tmp_path / ".fold0-seed0.pt.123.tmp").read_bytes(),
        (tmp_path / ".fold0-seed0.pt.456.tmp").read_bytes(),
    )
    assert first == second
    torch.save(checkpoint, tmp_path / "plain.pt")  # torch.save on a path names the archive's folder after the file
    assert (tmp_path / "plain.pt").read_bytes() != first
    assert torch.load(tmp_path / ".fold0-seed0.pt.123.tmp", weights_only=False)["epoch"] == 1


@pytest.mark.parametrize(
    "method, modalities, fits",
    [
        ("audio_only", ("audio",), True),
        ("visual_only", ("audio",), False),
        ("late_fusion", ("audio",), False),
        ("mmin", ("audio",), False),
        ("nmer", ("audio",), False),
        ("vavl", ("audio", "text"), False),
        ("vavl", ("audio", "visual", "text"), True),
        ("ifmmin", ("audio", "text"), True),
    ],
)
def test_a_method_states_the_modalities_it_needs(method, modalities, fits):
    reason = method_spec(method).lacks(modalities)
    if fits:
        assert reason is None
    else:
        assert re.fullmatch(rf"method {method} needs .*; the feature store has {', '.join(modalities)} only", reason)


def test_utt_dataaug_trains_on_the_conditions_its_entry_names(tiny_store, tiny_params, tmp_path, monkeypatch):
    """`conditions: missing` (official) draws one condition with a modality missing per clip, `any` any non-empty
    one; the training loop takes the stage's conditions from the run's entry."""
    import mer_core.train as train

    stage = method_spec("utt_dataaug").stages[0]
    assert stage.conditions({"conditions": "missing"}) == "missing"
    assert stage.conditions({"conditions": "any"}) == "random"
    with pytest.raises(
        ConfigError, match="methods.utt_dataaug.conditions: got 'all'; Input should be 'missing' or 'any'"
    ):
        validate_params({"methods": {"utt_dataaug": dict(PARAMS, method="utt_dataaug", conditions="all")}})
    seen = []
    view = train.training_view

    def spy(batch, conditions, *rest):
        drawn = view(batch, conditions, *rest)
        seen.append((conditions, bool(drawn.present.all(1).any())))  # did a clip keep every modality?
        return drawn

    monkeypatch.setattr(train, "training_view", spy)
    for conditions, drawn, full_drawn in (("missing", "missing", False), ("any", "random", True)):
        seen.clear()
        params = tiny_params(tiny_store, epochs=1, folds=[0])
        params["methods"]["utt_dataaug"]["conditions"] = conditions
        run_method("utt_dataaug", params, tmp_path / conditions, tmp_path / "ckpt" / conditions)
        assert {c for c, _ in seen} == {drawn}
        assert any(full for _, full in seen) == full_drawn
