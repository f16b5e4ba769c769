"""Training and model selection for every run of the study, over folds x seeds.

A run (`mer_core.config.resolve_runs`: its method, its complete params `entry`, its task, the study's `train`
settings, the robustness grid and the feature store) trains one *unit* per (fold, seed): for each of its method's
stages in order, build the stage's model (from the previous stage's), train it with Adam (the stage's `optim`
block: constant learning rate for `epochs`, then linear decay over `epochs_decay`, MMIN's schedule; gradient norms
clipped per sub-network as the MMIN code does; one optimiser step per batch, or one per step of a model's `steps`,
VAVL), evaluate the task's selection metric on the validation speakers after each epoch (UA, or mean CCC for
regression; the test fold is never looked at), keep the best epoch's weights (earliest on ties) and save that
checkpoint. A run's `unpaired` shares remove modalities from some training clips (`mer_core.data.batches.unpair`,
drawn per fold and seed, the same for every method). The last stage's model predicts the test clips under every
condition, clean, and under every setting of the robustness grid (`mer_core.robustness`). When the visual features
are face crops, every stage's model reads them through a learnt CNN frame encoder trained with it
(`mer_core.frame_encoder`); `load_model` rebuilds a checkpoint's model. Units are independent and seeded from (seed,
fold), and each uses a fixed number of threads, so results are identical whatever the number of processes.

A unit reads the feature store through the run's view (`FeatureStore.view`): the openSMILE functionals its method
reads as audio, if any (the classical baseline, or a run's `audio_input`), and `train.normalisation` (`fold`: every
feature standardised with the fold's training statistics; `speaker`: each speaker's clips first standardised with
that speaker's own statistics, test speakers included, without their labels). A run's `augment` block augments its
training batches (`mer_core.augment`). A stage with a `fit` (the classical baseline's SVM) is fitted instead of
trained, choosing its hyper-parameter on the validation speakers; the rest is the same. A run whose stages are all
fitted draws nothing from its seed, so only the units of its first seed are computed, and copied for the other seeds
(`for_seed`: the very outputs those units would give), so that every run has a unit per (fold, seed) to pair with.

Outputs of `train_run` (each written atomically; `metrics.json` last): in `out_dir` (committed to git)
`metrics.json` (the headline numbers: what `dvc metrics show` compares), `summary.json` (every metric's mean and
sample std over units, best epochs, and `test_missing_classes`: the classes a fold's test speakers lack, over which
that fold's UA does not average), `history.csv` (per epoch and unit), `curve.csv` (the validation criterion per
epoch, mean over units: `dvc plots`), `predictions.csv`, `per_condition.csv`, `robustness.csv`; in
`checkpoint_dir` (DVC cache) `fold{f}-seed{s}.pt` (last stage) and `fold{f}-seed{s}-{stage}.pt` (earlier stages). A
run resolved as skipped (`skip_run`) writes the same files holding its status and reason.
Checkpoints live apart from `results/` so that a clone without the DVC cache still holds every dependency of the
analysis stage; a checkpoint's bytes depend only on its contents, not on the number of processes (`checkpoint_bytes`).

A run never ends with numbers computed from NaN: a training loss or a gradient norm (computed where gradients are
clipped) that is NaN or infinite, or a model output that is (validation or test: `evaluate.predict`), stops it at
once with a `NonFiniteError` naming the run, fold, seed, stage and epoch. The tables of `out_dir` are written only
once every (fold, seed) has succeeded, and so are the checkpoints (`train_run` first removes the tables and
checkpoints of an earlier run), so a failed run leaves nothing that looks like its result; the units that finished wait
in `.resume/` beside the checkpoint folder for the run to be started again (`mer_core.executors`).

Deviations from the official code (`mer_core.deviations` collects them into the analysis notebook's table):
- [all] seeds. Official: none set anywhere. Here: python, numpy and torch seeded per (seed, fold). Why: the same
  params give the same metrics. Restore: not switchable. Test: tests/test_methods.py::test_run_method_is_deterministic.
- [all] model selection. Official: the validation UAR of the replicated set (MMIN family: the missing-modality
  conditions). Here: the same for the stage 2 of MMIN, IF-MMIN and NMER; a stage-1 network: full-modality
  validation UA; the baselines: UA pooled over every condition, the full one included. Why: every method is
  selected on the conditions it is tested on. Restore: not switchable.
  Test: tests/test_mmin.py::test_the_loop_decays_the_lr_clips_per_subnetwork_and_selects_on_each_stages_conditions.
- [utt_fusion, utt_dataaug, mmin, ifmmin, nmer] the split that selects the epoch. Official: the released scripts
  pass `--verbose --has_test`, and `train_baseline.py` / `train_miss.py` then score the test set after the
  validation set into the same variable, so every stage keeps the epoch with the best test UAR (stage 1:
  full-modality test; stage 2: the replicated test set), and the reported test score is that maximum. Here: the
  validation score. Why: choosing on the test set overstates the test score and narrows its spread; on the MMIN
  package it is most of the gap to the official runs (docs/faithfulness.md). Restore: `train.selection: test`.
  Test: tests/test_faithful.py::test_test_selection_keeps_the_epoch_with_the_best_test_score.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mer_core.augment import augment_batch
from mer_core.codedeps import code_hashes, module_closure
from mer_core.conditions import all_conditions, condition_name, random_presence
from mer_core.console import progress
from mer_core.data.batches import Batch, Split, load_fold
from mer_core.data.store import FeatureStore, read_store
from mer_core.evaluate import NonFiniteError, grid_metrics, predict, selection_score, summarise
from mer_core.executors import remove_resumed, run_units
from mer_core.frame_encoder import FrameEncoded, FrameEncoderSpec, build_stage
from mer_core.machine import Machine
from mer_core.methods.registry import ModelContext, StageResult, StageSpec, stage_specs
from mer_core.noise.scheduler import NoiseScheduler
from mer_core.robustness import robustness_grid, summarise_robustness
from mer_core.runtime import autocast, configure_device, seed_everything, select_device, write_atomic
from mer_core.schema import ConfigError, check
from mer_core.stopping import StageSchedule
from mer_core.tasks import Task, study_task

SELECTIONS = ("validation", "test")  # `train.selection`: ours | the released MMIN-family scripts'


@dataclass
class RunOutput:
    fold: int
    seed: int
    best_epochs: dict[str, int]
    history: pd.DataFrame
    predictions: pd.DataFrame
    robustness: pd.DataFrame
    seconds: float
    checkpoints: dict[str, bytes]  # file name -> bytes (`checkpoint_name`, `checkpoint_bytes`)


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
        members = (
            child.values()
            if isinstance(child, nn.ModuleDict)
            else child
            if isinstance(child, nn.ModuleList)
            else [child]
        )
        for member in members:
            params = [p for p in member.parameters() if p.requires_grad]
            if params:
                groups.append(params)
    own = [p for p in model.parameters(recurse=False) if p.requires_grad]
    return groups + ([own] if own else [])


def training_view(
    batch: Batch, conditions: str, generator: torch.Generator, noise: NoiseScheduler | None = None
) -> Batch:
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


def train_stage(
    model: nn.Module,
    stage: StageSpec,
    conditions: str,
    optim: dict,
    weight_decay: float,
    data: dict[str, Split],
    generator: torch.Generator,
    device: torch.device,
    desc: str,
    show_progress: bool,
    noise: NoiseScheduler | None = None,
    noise_seed: int = 0,
    schedule: StageSchedule | None = None,
    precision: str = "fp32",
    pin_memory: bool = False,
    augment: dict | None = None,
    selection: str = "validation",
) -> StageResult:
    """Train `model` for one stage on clips showing `conditions` (`StageSpec.conditions`); load the weights of its
    best validation epoch into it. `schedule` (`mer_core.stopping.StageSchedule`; default: `optim`'s fixed
    schedule) decides each epoch's learning rate and when the stage ends. With `noise`, the removed modalities are
    noised in training and validation (the same seeded validation noise every epoch). `augment` (a run's `augment`
    block, `mer_core.augment`) augments each training batch before its training condition is drawn. The history's
    `val_<metric>` column holds the selection metric (`val_ua` for classification). With `selection="test"`
    (`train.selection`, the released MMIN-family scripts) the test clips are scored after every epoch too, under the
    same conditions, and that score (`test_<metric>`) picks the epoch kept and drives the schedule instead. A
    non-finite loss, gradient norm, validation output or score raises NonFiniteError naming `desc` (run, fold, seed,
    stage) and the epoch."""
    if selection not in SELECTIONS:
        raise ValueError(f"train.selection must be one of {SELECTIONS}, got {selection!r}")
    schedule = schedule or StageSchedule(optim["epochs"], optim["epochs_decay"])
    optimiser = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=optim["lr"],
        betas=(optim["beta1"], 0.999),
        weight_decay=weight_decay,
        fused=True,
    )
    groups = subnetworks(model)
    conditions = conditions or stage.train_conditions
    task = data["val"].task
    every = all_conditions(data["val"].modalities)  # the full set is the last
    val_conditions = {"pooled": None, "full": every[-1:], "missing": every[:-1]}[stage.select_on]
    best = (-float("inf"), 0, None)
    rows = []
    epochs = progress(total=optim["epochs"] + optim["epochs_decay"], desc=desc, disable=not show_progress, leave=False)
    more, epoch = True, 0
    while more:
        epoch += 1
        model.train()
        lr = optim["lr"] * schedule.factor()
        for group in optimiser.param_groups:
            group["lr"] = lr
        total, count = 0.0, 0
        for batch in data["train"].batches(optim["batch_size"], generator):
            batch = batch.to(device, pin_memory)
            batch = augment_batch(batch, augment, generator) if augment else batch
            with autocast(device, precision):  # the forward passes in `precision` (backward follows)
                for loss in update_steps(model, training_view(batch, conditions, generator, noise), batch):
                    value = loss.item()
                    if not math.isfinite(value):
                        raise NonFiniteError(
                            f"{desc}, epoch {epoch}: the training loss is {value} (lower "
                            "optim.lr, or check the feature store's values)"
                        )
                    optimiser.zero_grad(set_to_none=True)  # a parameter a step does not reach: no gradient, no update
                    loss.backward()
                    if optim["grad_clip"] > 0:
                        norms = [torch.nn.utils.clip_grad_norm_(params, optim["grad_clip"]) for params in groups]
                        if not torch.isfinite(sum(norms)):  # one check (a group without gradients gives a CPU 0.0)
                            raise NonFiniteError(
                                f"{desc}, epoch {epoch}: a gradient norm is not finite "
                                f"({[float(norm) for norm in norms]}; lower optim.lr)"
                            )
                    optimiser.step()
                    total += value * len(batch.y)
            count += len(batch.y)
        try:
            with autocast(device, precision):
                val = predict(model, data["val"], optim["batch_size"], device, val_conditions, noise, noise_seed)
        except NonFiniteError as err:
            raise NonFiniteError(f"{desc}, epoch {epoch}: validation {err}") from None
        score = selection_score(val, task)
        if not math.isfinite(score):
            raise NonFiniteError(f"{desc}, epoch {epoch}: the validation {task.selection_metric} is {score}")
        row = {
            "stage": stage.name,
            "epoch": epoch,
            "phase": schedule.phase,
            "lr": lr,
            "train_loss": total / count,
            "val_loss": val["loss"].mean(),
            f"val_{task.selection_metric}": score,
        }
        if selection == "test":
            with autocast(device, precision):
                test = predict(model, data["test"], optim["batch_size"], device, val_conditions, noise, noise_seed)
            score = row[f"test_{task.selection_metric}"] = selection_score(test, task)
        rows.append(row)
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        more = schedule.update(score)
        epochs.update()
        epochs.set_postfix({f"val_{task.selection_metric}": f"{score:.3f}"})
    epochs.close()
    model.load_state_dict(best[2])
    history = pd.DataFrame(rows)
    history.insert(3, "stopped", schedule.stopped)  # after `phase`: how the stage ended, on each of its rows
    return StageResult(best[1], best[0], history)


def checkpoint_name(fold: int, seed: int, stage: str | None) -> str:
    """The file name of a unit's checkpoint: the last stage's, or an earlier `stage`'s."""
    return f"fold{fold}-seed{seed}{'' if stage is None else '-' + stage}.pt"


def checkpoint_path(checkpoint_dir: Path, fold: int, seed: int, stage: str | None) -> Path:
    """Where a unit's checkpoint lies in a run's checkpoint folder."""
    return Path(checkpoint_dir) / checkpoint_name(fold, seed, stage)


def canonical(value):
    """A copy of a checkpoint's plain data (dicts, lists, tuples, strings, numbers) that pickles to the same bytes
    whatever objects it was built from: fresh containers (no shared ones), interned strings, Python numbers for
    numpy scalars. Pickle refers back to an object it has written by identity, so equal data built in another
    process (a `train.n_jobs` worker unpickles its params) gave other bytes."""
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(canonical(v) for v in value)
    if isinstance(value, str):
        return sys.intern(str(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def checkpoint_bytes(checkpoint: dict) -> bytes:
    """torch.save into memory: the archive's inner folder is then named `archive`, not after a (temporary) file;
    with every entry but the state dict made `canonical`, the same weights and settings give the same bytes, so
    DVC sees an unchanged output."""
    buffer = io.BytesIO()
    torch.save({key: value if key == "state_dict" else canonical(value) for key, value in checkpoint.items()}, buffer)
    return buffer.getvalue()


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write `checkpoint_bytes(checkpoint)` to `path`."""
    Path(path).write_bytes(checkpoint_bytes(checkpoint))


def load_model(checkpoint: dict) -> nn.Module:
    """The model a checkpoint of `fit_run` holds, in evaluation mode: its method's stages rebuilt in order up to
    the checkpoint's (a stage is built from the one before, as in training), then its weights loaded."""
    context = ModelContext.from_dict(checkpoint["context"])
    frames = FrameEncoderSpec(**checkpoint["frame_encoder"]) if "frame_encoder" in checkpoint else None
    model = None
    for stage in stage_specs(checkpoint["method"], checkpoint["module"], checkpoint["stages"]):
        model = build_stage(stage, checkpoint["params"], context, model, frames)
        if stage.name == checkpoint["stage"]:
            break
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def run_inputs(run: dict) -> dict:
    """How `run` reads the feature store, saved in its checkpoints so that a model is always fed as it was trained:
    the functionals set its audio is, if any, and `train.normalisation` (`FeatureStore.view`'s arguments, see
    `run_view`); the modalities normalised per fold and how clips are batched (`train.normalise_modalities`,
    `train.batches`: `load_fold`'s arguments, see `fold_options`)."""
    train = run["train"]
    return {
        "audio_input": run.get("functionals"),
        "normalisation": train.get("normalisation", "fold"),
        "normalise": train.get("normalise_modalities") or "all",
        "batching": train.get("batches") or "bucketed",
    }


def run_view(store: FeatureStore, inputs: dict) -> FeatureStore:
    """`store` as a run with `inputs` (`run_inputs`, or a checkpoint's `inputs`) reads it."""
    return store.view(inputs.get("audio_input"), inputs.get("normalisation", "fold"))


def fold_options(inputs: dict) -> dict:
    """`load_fold`'s keyword arguments for a run with `inputs` (a checkpoint written before a key existed: ours)."""
    return {"normalise": inputs.get("normalise", "all"), "batching": inputs.get("batching", "bucketed")}


def fit_unit(
    run: dict,
    fold: int,
    seed: int,
    show_progress: bool = False,
    threads: int = 1,
    device: str = "cpu",
    deterministic: bool = True,
    pin_memory: bool = True,
) -> RunOutput:
    """Train every stage of `run` (a resolved run) on `fold` with `seed`; predict the test fold with the last stage's
    model (and the robustness grid when the run has one). Writes nothing: the output carries each stage's selected
    checkpoint as bytes (`checkpoint_name` -> `checkpoint_bytes`), so that a unit can run on another machine.
    `threads`, `device`, `deterministic`, `pin_memory`: the machine's settings (`mer_core.machine`)."""
    start = time.perf_counter()
    cfg, entry = run["train"], run["entry"]
    stages = stage_specs(run["method"], run["module"], run["stages"])
    torch.set_num_threads(threads)
    generator = seed_everything(run_seed(seed, fold))
    device = select_device(device)
    configure_device(device, deterministic)
    inputs = run_inputs(run)
    store = run_view(read_store(run["store"], verify=False), inputs)
    task = study_task(run["task"], store.manifest)
    data = load_fold(store, fold, task, entry.get("unpaired"), run_seed(seed, fold), **fold_options(inputs))
    frames = FrameEncoderSpec.for_store(store.manifest, cfg["frame_encoder"])
    context = ModelContext.from_manifest(store.manifest, task)
    context = frames.context(context) if frames else context
    model, histories, best_epochs, checkpoints = None, [], {}, {}
    where = f"run {run['name']}, fold {fold}, seed {seed}"
    for k, stage in enumerate(stages):
        model = build_stage(stage, entry, context, model, frames).to(device)
        if stage.fit is not None:
            result = stage.fit(model, data, stage.params(entry))
        else:
            optim = stage.params(entry)["optim"]
            result = train_stage(
                model,
                stage,
                stage.conditions(entry),
                optim,
                cfg["weight_decay"],
                data,
                generator,
                device,
                f"{where}, stage {stage.name}",
                show_progress,
                stage.training_noise(entry),
                run_seed(seed, fold),
                StageSchedule.from_params(optim, cfg["stopping"]),
                cfg["precision"],
                pin_memory,
                entry.get("augment"),
                cfg.get("selection") or "validation",
            )
        histories.append(result.history)
        best_epochs[stage.name] = result.best_epoch
        last = k == len(stages) - 1
        checkpoints[checkpoint_name(fold, seed, None if last else stage.name)] = checkpoint_bytes(
            {
                "run": run["name"],
                "method": run["method"],
                "module": run["module"],
                "stages": run["stages"],
                "stage": stage.name,
                "params": entry,
                "fold": fold,
                "seed": seed,
                "epoch": result.best_epoch,
                f"val_{task.selection_metric}": result.best_score,
                "context": asdict(context),
                "inputs": inputs,
                **({"frame_encoder": asdict(frames)} if frames else {}),
                "state_dict": model.state_dict(),
            }
        )
    try:
        with autocast(device, cfg["precision"]):
            test = predict(model, data["test"], stages[-1].batch_size(entry), device)
            robustness = (
                robustness_grid(model, store, data["test"], run["robustness"], fold, device)
                if run["robustness"]
                else pd.DataFrame(columns=["noise", "modality", "level", "unit", "condition"])
            )
    except NonFiniteError as err:
        raise NonFiniteError(f"{where}, stage {stages[-1].name}, test: {err}") from None
    history = pd.concat(histories, ignore_index=True).assign(fold=fold, seed=seed)
    return RunOutput(
        fold,
        seed,
        best_epochs,
        history,
        test.assign(fold=fold, seed=seed),
        robustness.assign(fold=fold, seed=seed),
        time.perf_counter() - start,
        checkpoints,
    )


def fit_run(
    run: dict, fold: int, seed: int, checkpoint_dir: Path, show_progress: bool, threads: int = 1, device: str = "cpu"
) -> RunOutput:
    """`fit_unit`, then save its checkpoints in `checkpoint_dir` (nothing when a stage or the test fails)."""
    output = fit_unit(run, fold, seed, show_progress, threads, device)
    save_checkpoints(output, Path(checkpoint_dir))
    return output


def save_checkpoints(output: RunOutput, checkpoint_dir: Path) -> None:
    for name, content in output.checkpoints.items():
        write_atomic(checkpoint_dir / name, functools.partial(Path.write_bytes, data=content))


def for_seed(output: RunOutput, seed: int) -> RunOutput:
    """A fitted unit's output as the unit of `seed` gives it (a fitted stage draws nothing from the seed): the same
    numbers, the seed columns and the checkpoints' seed and names changed."""
    checkpoints = {}
    for name, content in output.checkpoints.items():
        checkpoint = torch.load(io.BytesIO(content), map_location="cpu", weights_only=False)
        checkpoint["seed"] = seed
        prefix = checkpoint_name(output.fold, output.seed, None)[:-3]
        checkpoints[checkpoint_name(output.fold, seed, None)[:-3] + name[len(prefix) :]] = checkpoint_bytes(checkpoint)
    return replace(
        output,
        seed=seed,
        history=output.history.assign(seed=seed),
        predictions=output.predictions.assign(seed=seed),
        robustness=output.robustness.assign(seed=seed),
        checkpoints=checkpoints,
    )


def selected_folds(run: dict, available: list[int]) -> list[int]:
    """The folds `run` trains on: `train.folds` (all, or a list checked against the store's folds)."""
    folds = run["train"]["folds"]
    if folds == "all":
        return available
    unknown = [f for f in folds if f not in available]
    if unknown:
        raise ConfigError(
            f"train.folds: fold {unknown[0]} does not exist in the feature store; available folds: "
            f"{', '.join(map(str, available))}"
        )
    return list(folds)


def unit_inputs_digest(run: dict, store) -> str:
    """A digest of everything a unit of `run` computes from: the resolved run, the feature store's files and the
    training code; finished units are resumed only under the same digest."""
    code = code_hashes(module_closure(["mer_core.train", run["module"]]))
    inputs = json.dumps([run, store.manifest["files"], code], sort_keys=True, default=str)
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def train_run(run: dict, out_dir: str | Path, checkpoint_dir: str | Path, machine: dict | None = None) -> dict:
    """Train and evaluate `run` (a resolved run, `mer_core.config.resolve_runs`) on every selected fold x seed, the
    units run by `machine`'s executor (`mer_core.executors`; default: one local process); write its results to
    `out_dir` and the selected checkpoints to `checkpoint_dir`. A skipped run, or one the feature store cannot feed,
    writes its status instead (`skip_run`). The units that finished are kept in `checkpoint_dir`'s sibling
    `.resume/` until the run completes, so that a run stopped part way resumes. Returns the summary (summary.json)."""
    machine = check(Machine, machine or {}, "machine").model_dump()
    out_dir, checkpoint_dir = Path(out_dir), Path(checkpoint_dir)
    for name in RESULT_FILES:  # an earlier run's results and checkpoints are not this one's
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if run["status"] == "skip":
        return skip_run(run, out_dir, checkpoint_dir, run["reason"])
    store = read_store(run["store"])  # verifies the hashes once, up front
    lacking = unfed(run, store.modalities)
    if lacking:
        return skip_run(run, out_dir, checkpoint_dir, lacking)
    wanted, held = run.get("functionals"), store.manifest.get("functionals", {})
    if wanted and wanted not in held:
        raise ConfigError(
            f"run {run['name']}: reads the {wanted} functionals, which the feature store {store.root} "
            f"lacks (it has: {', '.join(held) or 'none'}); the params stage lists the sets the runs "
            "read in data/params/prepare.json: rerun the params and prepare stages (`dvc repro`)"
        )
    FrameEncoderSpec.for_store(store.manifest, run["train"]["frame_encoder"])  # bad settings fail before any unit
    folds = selected_folds(run, store.folds)
    fitted = all(stage.get("grid") for stage in run["stages"])  # nothing drawn from the seed: one seed computed
    seeds = run["train"]["seeds"][:1] if fitted else run["train"]["seeds"]
    pairs = [(fold, seed) for seed in seeds for fold in folds]
    units = [
        (
            run,
            fold,
            seed,
            False,
            machine["threads_per_job"],
            machine["device"],
            machine["deterministic"],
            machine["pin_memory"],
        )
        for fold, seed in pairs
    ]
    resume_root = checkpoint_dir.parent / ".resume"
    resume_dir = resume_root / f"{run['name']}-{unit_inputs_digest(run, store)}"
    for stale in resume_root.glob(f"{run['name']}-*"):
        if stale != resume_dir:
            shutil.rmtree(stale, ignore_errors=True)
    outputs = run_units(
        fit_unit,
        units,
        [checkpoint_name(fold, seed, None)[:-3] for fold, seed in pairs],
        machine,
        resume_dir,
        desc=f"{run['name']}: units",
    )
    if fitted:
        outputs = [
            output if seed == output.seed else for_seed(output, seed)
            for seed in run["train"]["seeds"]
            for output in outputs
        ]
    for output in outputs:
        save_checkpoints(output, checkpoint_dir)
    summary = write_results(run, store, outputs, out_dir)
    remove_resumed(resume_dir)
    return summary


def unfed(run: dict, modalities: tuple[str, ...]) -> str | None:
    """Why a feature store with `modalities` cannot feed `run`'s method (a modality it needs by name, or too few for a
    fusion), or None when it can."""
    lacking = [m for m in run["needs"] if m not in modalities]
    if lacking or len(modalities) < run["min_modalities"]:
        need = f"the modalities {', '.join(run['needs'])}" if lacking else f"{run['min_modalities']} modalities"
        return f"method {run['method']} needs {need}; the feature store has {', '.join(modalities)} only"
    return None


SKIPPED_FILES = ("history.csv", "curve.csv", "predictions.csv", "per_condition.csv", "robustness.csv")
RESULT_FILES = (*SKIPPED_FILES, "summary.json", "metrics.json")  # in out_dir


def skip_run(run: dict, out_dir: Path, checkpoint_dir: Path, reason: str) -> dict:
    """The outputs of a run that is not trained (not selected, or its method needs a modality the corpus lacks):
    every result file holds the run's name, `skipped` and the reason (curve.csv: no epoch); the checkpoint folder is
    empty."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True)
    record = {"run": run["name"], "status": "skipped", "reason": reason}
    for name in SKIPPED_FILES:
        table = pd.DataFrame(columns=CURVE_COLUMNS) if name == "curve.csv" else pd.DataFrame([record])
        write_atomic(out_dir / name, lambda p: table.to_csv(p, index=False))
    write_atomic(out_dir / "summary.json", lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
    write_atomic(out_dir / "metrics.json", lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
    return record


def headline(per_run: pd.DataFrame, robustness: pd.DataFrame, task: Task, missing: list[str]) -> dict:
    """metrics.json: the run's headline numbers, means over units: the task's headline metrics (WA and UA, or the
    mean CCC) per test condition and `missing` (MMIN's Average: the conditions with a modality missing); for
    classification also WA under feature noise (NMER's protocol, mean over the grid's noise settings) and UA under
    the signal corruptions (with the corrupted modality present)."""
    metrics = {}
    for metric in task.headline:
        values = per_run.groupby("condition", sort=False)[metric].mean()
        values = values.drop(index=["pooled", "mean"], errors="ignore")
        values["missing"] = (
            float(per_run[per_run["condition"].isin(missing)].groupby(["fold", "seed"])[metric].mean().mean())
            if missing
            else float("nan")
        )
        metrics[metric] = {k: round(float(v), 5) for k, v in values.items()}
    if task.name == "classification" and len(robustness):
        pooled = robustness[robustness["condition"] == "pooled"]
        feature = pooled[pooled["unit"] == "T"]
        signal = pooled[pooled["unit"] != "T"]
        if len(feature):
            metrics["noise_wa"] = round(float(feature["wa"].mean()), 5)
        if len(signal):
            metrics["corrupted_ua"] = round(float(signal["ua"].mean()), 5)
    return metrics


def write_results(run: dict, store, outputs: list[RunOutput], out_dir: Path) -> dict:
    """Write every result file of a trained run (see the module docstring); returns the summary."""
    classes = store.classes
    task = study_task(run["task"], store.manifest)
    robustness = pd.concat([o.robustness for o in outputs], ignore_index=True)
    meta = store.meta
    per_run = pd.concat(
        [grid_metrics(o.predictions, task).assign(fold=o.fold, seed=o.seed) for o in outputs], ignore_index=True
    )
    predictions = pd.concat([o.predictions for o in outputs], ignore_index=True)
    predictions.insert(0, "clip_id", meta["clip_id"].to_numpy()[predictions["row"]])
    predictions.insert(1, "speaker", meta["speaker"].to_numpy()[predictions["row"]])
    if task.name == "classification":
        predictions["label"] = [classes[k] for k in predictions["label"]]
        predictions["pred"] = [classes[k] for k in predictions["pred"]]
    predictions = predictions.drop(columns="row").rename(columns={f"p{k}": f"p_{c}" for k, c in enumerate(classes)})
    history = pd.concat([o.history for o in outputs], ignore_index=True)
    missing = [condition_name(c) for c in all_conditions(store.modalities)[:-1]]
    summary = {
        "run": run["name"],
        "status": "trained",
        "method": run["method"],
        "task": task.name,
        "classes": classes,
        "targets": list(task.targets),
        "modalities": list(store.modalities),
        "units": len(outputs),
        "folds": sorted({o.fold for o in outputs}),
        "seeds": sorted({o.seed for o in outputs}),
        "best_epochs": {stage: [o.best_epochs[stage] for o in outputs] for stage in outputs[0].best_epochs},
        "stopping": run["train"]["stopping"],  # how each stage ended: history.csv's `stopped` column
        "test_missing_classes": {
            str(fold): roles["test"]
            for fold, roles in store.missing_classes.items()
            if "test" in roles and fold in {o.fold for o in outputs}
        },
        "conditions": summarise(per_run, task.metrics),
        "robustness": summarise_robustness(robustness, task.headline),
    }
    metrics = {"run": run["name"], "status": "trained", **headline(per_run, robustness, task, missing)}
    lead = ["fold", "seed"]
    write_atomic(
        out_dir / "history.csv",
        lambda p: history[lead + [c for c in history if c not in lead]].to_csv(p, index=False, float_format="%.5f"),
    )
    write_atomic(
        out_dir / "curve.csv",
        lambda p: validation_curve(history, task.selection_metric).to_csv(p, index=False, float_format="%.5f"),
    )
    write_atomic(
        out_dir / "predictions.csv",
        lambda p: predictions[
            ["fold", "seed", "condition"] + [c for c in predictions if c not in ("fold", "seed", "condition")]
        ].to_csv(p, index=False, float_format="%.4f"),
    )
    write_atomic(
        out_dir / "per_condition.csv",
        lambda p: per_run[lead + [c for c in per_run if c not in lead]].to_csv(p, index=False, float_format="%.5f"),
    )
    write_atomic(
        out_dir / "robustness.csv",
        lambda p: robustness[lead + [c for c in robustness if c not in lead]].to_csv(
            p, index=False, float_format="%.5f"
        ),
    )
    write_atomic(out_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    write_atomic(out_dir / "metrics.json", lambda p: p.write_text(json.dumps(metrics, indent=2) + "\n"))
    return summary


CURVE_COLUMNS = ["step", "stage", "epoch", "metric", "criterion", "units"]


def validation_curve(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The validation criterion (`metric`: ua, or ccc_mean) per epoch, mean over the units that trained that epoch,
    stages one after the other (`step` counts epochs across stages): what `dvc plots show` draws for a run."""
    rows, offset = [], 0
    for stage, part in history.groupby("stage", sort=False):
        curve = part.groupby("epoch")[f"val_{metric}"].agg(["mean", "count"]).reset_index()
        rows.append(
            pd.DataFrame(
                {
                    "step": curve["epoch"] + offset,
                    "stage": stage,
                    "epoch": curve["epoch"],
                    "metric": metric,
                    "criterion": curve["mean"],
                    "units": curve["count"],
                }
            )
        )
        offset += int(curve["epoch"].max())
    return pd.concat(rows, ignore_index=True)[CURVE_COLUMNS]
