"""Where the seconds of one training unit go: `mer_core.train.fit_run` of a run on one fold and seed, one torch
thread, its process CPU time split by part (docs/performance.md). A profiling tool, not a test.

    PYTHONPATH=$PWD python benchmarks/profile_run.py utt_fusion --params params.yaml [--json out.json] \
        [--set train.precision=bf16 ...]

The run is resolved as the `params` stage resolves it (its method's defaults, its base, the study's training
settings), from `--params` with the dotted `--set` overrides applied, and trained on the feature store the params
name (run `make repro` once first, or at least its `prepare` stage).

Each part's time is exclusive (a part called inside another is counted in the inner one only): the functions of the
loop are wrapped with timers for the run (nothing is changed in `mer_core`), so the script also profiles an older
checkout that has the same functions (PYTHONPATH pointing at it; docs/performance.md's "before" column). Parts:
`load` (read the store, pad and normalise the fold), `train:` batching, the condition or noise applied to a batch,
forward + loss, frozen teacher targets, backward, optimiser step and gradient clipping, the copy of the best epoch's
weights, the rest of the loop (`other`); `val:` (validation after each epoch), `test:` (the clean grid) and
`robust:` (the robustness grid): their forward passes, batching, conditions, noise, tables and metrics. CPU time,
not wall time, so that other processes on the machine weigh less; the wrappers add about 1 to 3 %.
"""
from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections import defaultdict

import torch

import mer_core.data.batches as batches
import mer_core.evaluate as evaluate
import mer_core.methods.mmin as mmin
import mer_core.noise.scheduler as scheduler
import mer_core.robustness as robustness
import mer_core.tasks as tasks
import mer_core.train as train
from mer_core.config import load_params, resolve_runs, stage_params
from mer_core.plan import parse_sets

TOTALS: dict[str, float] = defaultdict(float)
STACK: list[list] = []  # [part, start of its current exclusive slice]


def enter(part: str) -> None:
    now = time.process_time()
    if STACK:
        TOTALS[STACK[-1][0]] += now - STACK[-1][1]
    STACK.append([part, now])


def leave() -> None:
    now = time.process_time()
    part, start = STACK.pop()
    TOTALS[part] += now - start
    if STACK:
        STACK[-1][1] = now


def phase() -> str:
    """`train`, `val`, `test` or `robust`: the phase the innermost running part belongs to."""
    return STACK[-1][0].split(":")[0] if STACK else "test"


def timed(part, function):
    """`function` with its time charged to `part` (a name, or a callable giving it at call time)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        enter(part() if callable(part) else part)
        try:
            return function(*args, **kwargs)
        finally:
            leave()
    return wrapper


def timed_generator(part, function):
    """A generator function whose every step is charged to `part`."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        steps, name = function(*args, **kwargs), part() if callable(part) else part
        while True:
            enter(name)
            try:
                value = next(steps)
            except StopIteration:
                return
            finally:
                leave()
            yield value
    return wrapper


def install() -> None:
    """Wrap the loop's functions with timers."""
    train.read_store = timed("load: read the store", train.read_store)
    train.load_fold = timed("load: pad and normalise the fold", train.load_fold)
    train.train_stage = timed("train: other (loop, loss.item, history)", train.train_stage)
    batches.Split.batches = timed_generator(lambda: f"{phase()}: batching", batches.Split.batches)
    batches.Batch.to = timed(lambda: f"{phase()}: batching", batches.Batch.to)
    train.training_view = timed("train: condition / noise of a batch", train.training_view)
    train.update_steps = timed_generator("train: forward + loss", train.update_steps)
    torch.Tensor.backward = timed("train: backward", torch.Tensor.backward)
    torch.nn.utils.clip_grad_norm_ = timed("train: optimiser step, clipping", torch.nn.utils.clip_grad_norm_)
    torch.optim.Adam.step = timed("train: optimiser step, clipping", torch.optim.Adam.step)
    torch.optim.Adam.zero_grad = timed("train: optimiser step, clipping", torch.optim.Adam.zero_grad)
    train.copy.deepcopy = timed(lambda: "train: best epoch's weights" if phase() == "train" else STACK[-1][0],
                                train.copy.deepcopy)
    mmin.RowCache.__call__ = timed("train: teacher targets", mmin.RowCache.__call__)
    mmin.Imagination.imagination_target = timed("train: teacher targets", mmin.Imagination.imagination_target)
    evaluate.predict = timed(lambda: {"train": "val", "robust": "robust"}.get(phase(), "test") + ": other",
                             evaluate.predict)
    train.predict = robustness.predict = evaluate.predict
    train.selection_score = timed("val: metrics", train.selection_score)
    robustness.grid_metrics = timed("robust: metrics", robustness.grid_metrics)
    train.robustness_grid = timed("robust: other", train.robustness_grid)
    robustness.corrupted_split = timed("robust: pad the corrupted frames", robustness.corrupted_split)
    scheduler.NoiseScheduler.replace_missing = timed(lambda: f"{phase()}: noise",
                                                     scheduler.NoiseScheduler.replace_missing)
    evaluate.apply_condition = timed(lambda: f"{phase()}: condition", evaluate.apply_condition)
    tasks.Task.columns = timed(lambda: f"{phase()}: tables", tasks.Task.columns)
    tasks.Task.clip_losses = timed(lambda: f"{phase()}: tables", tasks.Task.clip_losses)
    train.save_checkpoint = timed("save a checkpoint", train.save_checkpoint)
    build = train.build_stage

    def build_timed(*args, **kwargs):
        model = build(*args, **kwargs)
        model.forward = timed(lambda: f"{phase()}: model forward", model.forward)
        return model
    train.build_stage = timed("build a model", build_timed)


def resolved_run(params: dict, name: str) -> dict:
    """The run `name` as its training stage reads it (data/params/runs/<name>.json, or extended/<name>.json)."""
    files = stage_params(params, resolve_runs(params))
    found = [content for path, content in files.items() if path in (f"runs/{name}.json", f"extended/{name}.json")]
    if not found:
        runs = sorted(p.split("/")[1][:-5] for p in files if p.startswith(("runs/", "extended/")))
        raise SystemExit(f"no run {name!r} in the params; the runs: {', '.join(runs)}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run of params.yaml: methods")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the parts, total and history here")
    parser.add_argument("--no-split", action="store_true", help="time the unit alone, without the part timers")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted override of the params file, as `dvc exp run -S` takes it (repeatable)")
    args = parser.parse_args()
    params = load_params(args.params, parse_sets(args.set))
    run = resolved_run(params, args.run)
    torch.set_num_threads(1)
    if not args.no_split:
        install()
    with tempfile.TemporaryDirectory() as checkpoints:
        start = time.process_time()
        enter("fit_run: other")
        output = train.fit_run(run, args.fold, args.seed, checkpoints, False)
        leave()
        total = time.process_time() - start
    print(f"{args.run} fold {args.fold} seed {args.seed}: {total:.2f} CPU s, best epochs {output.best_epochs}")
    for record in getattr(output, "convergence", []):  # (absent before train.stopping)
        print(f"  stage {record['stage']}: {record['epochs']} epochs, stopped on {record['stopped']}, best epoch "
              f"{record['best_epoch']}, decay from epoch {record['decay_start']}, gain over the last epochs "
              f"{record['gain']}")
    if args.no_split:
        return
    for part, seconds in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
        print(f"  {part:45s} {seconds:7.2f} s {100 * seconds / total:5.1f} %")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"run": args.run, "total": total, "best_epochs": output.best_epochs, "parts": dict(TOTALS),
                       "history": output.history.to_dict("list")}, handle)


if __name__ == "__main__":
    main()
