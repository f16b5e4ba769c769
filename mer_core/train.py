"""Training and model selection for every run of the study, over folds x seeds.

One run = (fold, seed) of a `methods.<run>` entry: for each of its method's stages in order, build the
stage's model (from the previous stage's), train it with Adam (the stage's `optim` block: constant learning
rate, then linear decay, MMIN's schedule, for as long as `train.stopping` says, `mer_core.stopping`; gradient
norms clipped per sub-network as the MMIN code does; one optimiser step per batch, or one per step of a model's
`steps`, VAVL), evaluate the task's selection metric on the validation speakers after each epoch (UA, or mean CCC
for regression; the test fold is never looked at), keep the best epoch's weights (earliest on ties) and save that
checkpoint. The study's `task` sets the targets and the loss; a run's `unpaired` shares remove modalities
from some training clips (`mer_core.data.batches.unpair`, drawn per fold and seed, the same for every method).
The last stage's model predicts the test clips under every condition, clean, and under every setting of the
robustness grid (`mer_core.robustness`). When the visual features are face crops, every stage's model reads
them through a learnt CNN frame encoder trained with it (`mer_core.frame_encoder`, `train.frame_encoder`);
`load_model` rebuilds a checkpoint's model. Runs are independent and seeded from (seed, fold), and each uses
`train.threads_per_run` threads, so metrics are identical whatever `train.n_jobs` is. `train.preset: paper`
trains every run with its method's official settings (`mer_core.methods.effective_entry`) and fixed schedules.

Outputs of `run_method` (each written atomically; `metrics.json` last): in `out_dir` (committed to git)
`history.csv`, `predictions.csv`, `per_condition.csv`, `robustness.csv`, `metrics.json` (its `convergence` list:
how each stage of each fold x seed ended, `mer_core.stopping`); in `checkpoint_dir` (DVC cache)
`fold{f}-seed{s}.pt` (last stage) and `fold{f}-seed{s}-{stage}.pt` (earlier stages). Checkpoints live apart
from `results/` so that a clone without the DVC cache still holds every dependency of the analysis stage.

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] seeds. Official: none set anywhere. Here: python, numpy and torch seeded per (seed, fold). Why: the same
  params give the same metrics.
- [all] model selection. Official: the validation UAR of the replicated set (MMIN family: the missing-modality
  conditions). Here: the same for the stage 2 of MMIN, IF-MMIN and NMER; a stage-1 network: full-modality
  validation UA; the baselines: UA pooled over every condition, the full one included. Why: every method is
  selected on the conditions it is tested on.
- [all] length of training. Official: fixed schedules (e.g. MMIN 30 + 30 epochs; the epoch with the best
  validation UAR kept). Here: `train.stopping.rule: plateau` trains a stage until its selection criterion has not
  improved for `patience` epochs (at least `min_epochs`), the official counts being maxima; MMIN's linear decay
  begins when the constant learning rate plateaus and stops early on a plateau too (`mer_core.stopping`). Why: a
  verdict must rest on converged stages; a fixed count cuts some while they improve and trains others long after
  they stopped. Restore: `train.stopping.rule: fixed`.
  Test: tests/test_stopping.py::test_plateau_ends_the_constant_phase_then_the_decay.
"""
from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mer_core.conditions import all_conditions, random_presence
from mer_core.config import ConfigError, Field, Section
from mer_core.data.batches import Batch, Split, load_fold
from mer_core.data.prepare import store_path
from mer_core.data.store import read_store
from mer_core.evaluate import grid_metrics, predict, selection_score, summarise
from mer_core.frame_encoder import FRAME_ENCODER_SCHEMA, FrameEncoded, FrameEncoderSpec, build_stage
from mer_core.methods import ModelContext, StageSpec, effective_entry, method_spec
from mer_core.noise.scheduler import NoiseScheduler
from mer_core.robustness import robustness_grid, summarise_robustness
from mer_core.runtime import seed_everything, select_device, write_atomic
from mer_core.stopping import STOPPING_SCHEMA, StageSchedule
from mer_core.tasks import Task, study_task

PRESETS = ("study", "paper")
TRAIN_SCHEMA = Section(
    {
        "seeds": Field(list, low=1, item=Field(int, low=0)),
        "folds": Field((str, list), choices=("all",), low=1, item=Field(int, low=0)),
        "preset": Field(str, choices=PRESETS),
        "weight_decay": Field(float, low=0.0, high=1.0),
        "device": Field(str, choices=("auto", "cpu", "cuda")),
        "n_jobs": Field(int, low=1, high=64),
        "threads_per_run": Field(int, low=1, high=64),
        "frame_encoder": FRAME_ENCODER_SCHEMA,  # face-crop features only (mer_core.frame_encoder)
        "stopping": STOPPING_SCHEMA,  # when a stage stops (mer_core.stopping)
    }
)


@dataclass
class StageResult:
    best_epoch: int
    best_score: float  # the validation selection metric of the kept epoch
    history: pd.DataFrame
    convergence: dict  # stage, then `StageSchedule.record()`: epochs, stopped, best_epoch, decay_start, gain


@dataclass
class RunOutput:
    fold: int
    seed: int
    best_epochs: dict[str, int]
    convergence: list[dict]  # per stage: how it ended (`StageResult.convergence`)
    history: pd.DataFrame
    predictions: pd.DataFrame
    robustness: pd.DataFrame
    seconds: float


def run_seed(seed: int, fold: int) -> int:
    """The seed of run (seed, fold): distinct per fold, identical across methods."""
    return seed * 1000 + fold


def subnetworks(model: nn.Module) -> list[list[nn.Parameter]]:
    """Trainable parameters grouped by sub-network: each child module, and each member of a child
    ModuleDict/ModuleList (one per modality encoder), as the MMIN code clips each `net*` separately; a
    `FrameEncoded` model: its inner model's groups, then its frame encoder."""
    if isinstance(model, FrameEncoded):
        return subnetworks(model.model) + [[p for p in model.encoder.parameters() if p.requires_grad]]
    groups = []
    for child in model.children():
        members = child.values() if isinstance(child, nn.ModuleDict) else \
            child if isinstance(child, nn.ModuleList) else [child]
        for member in members:
            params = [p for p in member.parameters() if p.requires_grad]
            if params:
                groups.append(params)
    own = [p for p in model.parameters(recurse=False) if p.requires_grad]
    return groups + ([own] if own else [])


def training_view(batch: Batch, conditions: str, generator: torch.Generator,
                  noise: NoiseScheduler | None = None) -> Batch:
    """The batch as a stage trains on it: unchanged (`full`), or one drawn condition per clip, its removed
    modalities zero-filled or, with `noise`, noised (NMER)."""
    if conditions == "full":
        return batch
    view = random_presence(batch, generator, include_full=conditions == "random")
    return view if noise is None else noise.replace_missing(view, batch, generator)


def update_steps(model: nn.Module, batch: Batch, full: Batch):
    """The losses of one batch's optimiser steps: the model's `steps` (several, each computed after the previous
    update) or its single `loss`."""
    if hasattr(model, "steps"):
        yield from model.steps(batch, full)
    else:
        yield model.loss(batch, full)[0]


def train_stage(model: nn.Module, stage: StageSpec, optim: dict, weight_decay: float, data: dict[str, Split],
                generator: torch.Generator, device: torch.device, desc: str,
                show_progress: bool, noise: NoiseScheduler | None = None, noise_seed: int = 0,
                schedule: StageSchedule | None = None) -> StageResult:
    """Train `model` for one stage; load the weights of its best validation epoch into it. `schedule` decides the
    learning rate of each epoch and when the stage stops (default: `optim`'s fixed schedule). With `noise`, the
    removed modalities are noised in training and validation (the same seeded validation noise every epoch).
    The history's `val_<metric>` column holds the selection metric (`val_ua` for classification)."""
    schedule = schedule or StageSchedule(optim["epochs"], optim["epochs_decay"])
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=optim["lr"],
                                 betas=(optim["beta1"], 0.999), weight_decay=weight_decay, fused=True)
    groups = subnetworks(model)
    task = data["val"].task
    conditions = all_conditions(data["val"].modalities)  # the full set is the last
    val_conditions = {"pooled": None, "full": conditions[-1:], "missing": conditions[:-1]}[stage.select_on]
    best = (-float("inf"), 0, None)
    rows = []
    epochs = tqdm(total=optim["epochs"] + optim["epochs_decay"], desc=desc, disable=not show_progress, leave=False)
    more, epoch = True, 0
    while more:
        epoch += 1
        model.train()
        lr = optim["lr"] * schedule.factor()
        for group in optimiser.param_groups:
            group["lr"] = lr
        total, count = 0.0, 0
        for batch in data["train"].batches(optim["batch_size"], generator):
            batch = batch.to(device)
            for loss in update_steps(model, training_view(batch, stage.train_conditions, generator, noise), batch):
                optimiser.zero_grad(set_to_none=True)  # parameters a step does not reach keep no gradient: not updated
                loss.backward()
                if optim["grad_clip"] > 0:
                    for params in groups:
                        torch.nn.utils.clip_grad_norm_(params, optim["grad_clip"])
                optimiser.step()
                total += loss.item() * len(batch.y)
            count += len(batch.y)
        val = predict(model, data["val"], optim["batch_size"], device, val_conditions, noise, noise_seed)
        score = selection_score(val, task)
        rows.append({"stage": stage.name, "epoch": epoch, "lr": lr, "train_loss": total / count,
                     "val_loss": val["loss"].mean(), f"val_{task.selection_metric}": score})
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        more = schedule.update(score)
        epochs.update()
        epochs.set_postfix({f"val_{task.selection_metric}": f"{score:.3f}"})
    epochs.close()
    if best[2] is None:
        raise RuntimeError(f"{desc}: the validation {task.selection_metric} was NaN in every epoch (diverged?); "
                           "lower optim.lr")
    model.load_state_dict(best[2])
    return StageResult(best[1], best[0], pd.DataFrame(rows), {"stage": stage.name, **schedule.record()})


def stopping_rule(cfg: dict) -> str:
    """The stopping rule of every stage: `train.stopping.rule`, or `fixed` (the official schedules) under
    `train.preset: paper`."""
    return "fixed" if cfg["preset"] == "paper" else cfg["stopping"]["rule"]


def checkpoint_path(checkpoint_dir: Path, fold: int, seed: int, stage: str | None) -> Path:
    """`fold{f}-seed{s}.pt` for a run's final model, `fold{f}-seed{s}-{stage}.pt` for an earlier stage's."""
    return Path(checkpoint_dir) / (f"fold{fold}-seed{seed}" + (f"-{stage}" if stage else "") + ".pt")


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """torch.save through a file handle: the archive's inner folder is then named `archive`, not after the
    (temporary) file, so the same weights give the same bytes and DVC sees an unchanged output."""
    with open(path, "wb") as handle:
        torch.save(checkpoint, handle)


def load_model(checkpoint: dict) -> nn.Module:
    """The model a checkpoint of `fit_run` holds, in evaluation mode: its method's stages rebuilt in order up to
    the checkpoint's (a stage is built from the one before, as in training), then its weights loaded."""
    context = ModelContext.from_dict(checkpoint["context"])
    frames = FrameEncoderSpec(**checkpoint["frame_encoder"]) if "frame_encoder" in checkpoint else None
    model = None
    for stage in method_spec(checkpoint["method"]).stages:
        model = build_stage(stage, checkpoint["params"], context, model, frames)
        if stage.name == checkpoint["stage"]:
            break
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def fit_run(run: str, params: dict, fold: int, seed: int, checkpoint_dir: Path, show_progress: bool) -> RunOutput:
    """Train every stage of run `run` on `fold` with `seed`; save each stage's selected checkpoint; predict the
    test fold with the last stage's model."""
    start = time.perf_counter()
    cfg = params["train"]
    entry = effective_entry(params["methods"][run], cfg["preset"])
    spec = method_spec(entry["method"])
    torch.set_num_threads(cfg["threads_per_run"])
    generator = seed_everything(run_seed(seed, fold))
    device = select_device(cfg["device"])
    store = read_store(store_path(params), verify=False)
    task = study_task(params["task"], store.manifest)
    data = load_fold(store, fold, task, entry.get("unpaired"), run_seed(seed, fold))
    frames = FrameEncoderSpec.for_store(store.manifest, cfg["frame_encoder"])
    context = ModelContext.from_manifest(store.manifest, task)
    context = frames.context(context) if frames else context
    model, histories, best_epochs, convergence = None, [], {}, []
    for k, stage in enumerate(spec.stages):
        model = build_stage(stage, entry, context, model, frames).to(device)
        optim = stage.params(entry)["optim"]
        result = train_stage(model, stage, optim, cfg["weight_decay"], data, generator, device,
                             f"{run} fold {fold} seed {seed} {stage.name}", show_progress,
                             stage.training_noise(entry), run_seed(seed, fold),
                             StageSchedule.from_params(optim, cfg["stopping"], stopping_rule(cfg)))
        histories.append(result.history)
        best_epochs[stage.name] = result.best_epoch
        convergence.append(result.convergence)
        last = k == len(spec.stages) - 1
        write_atomic(checkpoint_path(checkpoint_dir, fold, seed, None if last else stage.name),
                     lambda tmp: save_checkpoint(
                         {"run": run, "method": spec.name, "stage": stage.name, "params": entry, "fold": fold,
                          "seed": seed, "epoch": result.best_epoch, f"val_{task.selection_metric}": result.best_score,
                          "context": asdict(context), **({"frame_encoder": asdict(frames)} if frames else {}),
                          "state_dict": model.state_dict()}, tmp))
    test = predict(model, data["test"], optim["batch_size"], device)
    robustness = robustness_grid(model, store, data["test"], params["robustness"], fold, device)
    history = pd.concat(histories, ignore_index=True).assign(fold=fold, seed=seed)
    return RunOutput(fold, seed, best_epochs, convergence, history, test.assign(fold=fold, seed=seed),
                     robustness.assign(fold=fold, seed=seed), time.perf_counter() - start)


def _fit_run_worker(args) -> RunOutput:
    return fit_run(*args, show_progress=False)


def selected_folds(params: dict, available: list[int]) -> list[int]:
    folds = params["train"]["folds"]
    if folds == "all":
        return available
    unknown = [f for f in folds if f not in available]
    if unknown:
        raise ConfigError(f"train.folds: fold {unknown[0]} does not exist; available folds: {available}")
    return list(folds)


def run_method(name: str, params: dict, out_dir: str | Path, checkpoint_dir: str | Path) -> dict:
    """Train and evaluate run `name` (an entry of `params["methods"]`) on every selected fold x seed; write its
    results to `out_dir` and the selected checkpoints to `checkpoint_dir`.

    Returns the summary written to metrics.json (mean and std over runs per condition).
    """
    out_dir = Path(out_dir)
    store = read_store(store_path(params))  # verifies the hashes once, up front
    method_spec(params["methods"][name]["method"]).check_corpus(name, store.manifest["corpus"], store.modalities)
    FrameEncoderSpec.for_store(store.manifest, params["train"]["frame_encoder"])  # bad settings fail before any run
    folds = selected_folds(params, store.folds)
    runs = [(name, params, fold, seed, Path(checkpoint_dir))
            for seed in params["train"]["seeds"] for fold in folds]
    n_jobs = min(params["train"]["n_jobs"], len(runs))
    progress = tqdm(total=len(runs), desc=f"{name}: runs", unit="run")
    outputs = []
    if n_jobs == 1:
        for run in runs:
            outputs.append(fit_run(*run, show_progress=True))
            progress.update()
    else:
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
            for output in pool.map(_fit_run_worker, runs):
                outputs.append(output)
                progress.update()
    progress.close()
    return write_results(name, params, store, outputs, out_dir)


def write_results(name: str, params: dict, store, outputs: list[RunOutput], out_dir: Path) -> dict:
    classes = store.classes
    task = study_task(params["task"], store.manifest)
    robustness = pd.concat([o.robustness for o in outputs], ignore_index=True)
    meta = store.meta
    per_run = pd.concat([grid_metrics(o.predictions, task).assign(fold=o.fold, seed=o.seed)
                         for o in outputs], ignore_index=True)
    predictions = pd.concat([o.predictions for o in outputs], ignore_index=True)
    predictions.insert(0, "clip_id", meta["clip_id"].to_numpy()[predictions["row"]])
    predictions.insert(1, "speaker", meta["speaker"].to_numpy()[predictions["row"]])
    if task.name == "classification":
        predictions["label"] = [classes[k] for k in predictions["label"]]
        predictions["pred"] = [classes[k] for k in predictions["pred"]]
    predictions = predictions.drop(columns="row").rename(columns={f"p{k}": f"p_{c}" for k, c in enumerate(classes)})
    history = pd.concat([o.history for o in outputs], ignore_index=True)
    entry = effective_entry(params["methods"][name], params["train"]["preset"])
    summary = {
        "run": name,
        "method": entry["method"],
        "preset": params["train"]["preset"],
        "params": entry,
        "task": task.name,
        "classes": classes,
        "targets": list(task.targets),
        "modalities": list(store.modalities),
        "n_runs": len(outputs),
        "folds": sorted({o.fold for o in outputs}),
        "seeds": sorted({o.seed for o in outputs}),
        "best_epochs": {stage: [o.best_epochs[stage] for o in outputs] for stage in outputs[0].best_epochs},
        "stopping": {**params["train"]["stopping"], "rule": stopping_rule(params["train"])},
        "convergence": [{"fold": o.fold, "seed": o.seed, **record} for o in outputs for record in o.convergence],
        "train_seconds_total": round(sum(o.seconds for o in outputs), 1),
        "conditions": summarise(per_run, task.metrics),
        "robustness": summarise_robustness(robustness, task.headline),
    }
    lead = ["fold", "seed"]
    write_atomic(out_dir / "history.csv", lambda p: history[lead + [c for c in history if c not in lead]]
                 .to_csv(p, index=False, float_format="%.5f"))
    write_atomic(out_dir / "predictions.csv", lambda p: predictions[
        ["fold", "seed", "condition"] + [c for c in predictions if c not in ("fold", "seed", "condition")]]
        .to_csv(p, index=False, float_format="%.4f"))
    write_atomic(out_dir / "per_condition.csv", lambda p: per_run[lead + [c for c in per_run if c not in lead]]
                 .to_csv(p, index=False, float_format="%.5f"))
    write_atomic(out_dir / "robustness.csv", lambda p: robustness[lead + [c for c in robustness if c not in lead]]
                 .to_csv(p, index=False, float_format="%.5f"))
    write_atomic(out_dir / "metrics.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
