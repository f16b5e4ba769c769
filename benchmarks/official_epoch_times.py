"""Seconds per training epoch of MMIN and IF-MMIN, stage 1 and stage 2, on an IEMOCAP-sized random feature package
with the official settings, against the official IF-MMIN code on the same machine kind (docs/performance.md).

A benchmark, not a test: it prints a table and asserts nothing. Run from the project root:

    python benchmarks/official_epoch_times.py            # about 10 minutes on one core

The package is built in memory as a feature store (`mer_core.data.store.FeatureStore`) with the shapes of the MMIN
authors' IEMOCAP package (`mer_core.data.corpora.iemocap_mmin`): 10 speakers of 550 utterances (fold 0: 4,400
training, 550 validation and 550 test clips), 4 classes; audio 130-d and visual 342-d frames, 20-80 per clip
(uniform, drawn independently), text 1024-d, 22 tokens; standard normal values. Nothing is written to disk.
The runs are `params.yaml: methods.mmin` and `methods.ifmmin` under `train.preset: paper` (the official batch sizes
128 / 64, encoder width 128, AE 256-128-64 x 5 blocks, lr 2e-4), trained by the project's loop (`train_stage`,
fixed schedule) with one torch thread. An epoch is the training pass over the 4,400 clips plus the validation pass
that selects the epoch (the official loop also evaluates on the validation and test sets every epoch). Each stage
trains `--warmup` epochs, then `--epochs` timed ones; the table gives their median process CPU time (on a machine
that other processes share, wall time measures them too; alone, the two agree), the wall time, and the ratio of the
CPU time to the official time per epoch (IF-MMIN official code on this machine kind, measured by the issue's author:
18 s per stage-1 epoch, 28 s per stage-2 epoch; none is given for MMIN).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer_core import train
from mer_core.config import load_params, resolve_runs
from mer_core.data.batches import load_fold
from mer_core.data.store import FeatureStore, Sequences
from mer_core.frame_encoder import build_stage
from mer_core.methods.registry import ModelContext, stage_specs
from mer_core.runtime import seed_everything
from mer_core.stopping import StageSchedule
from mer_core.tasks import study_task

OFFICIAL_SECONDS = {("ifmmin", "pretrain"): 18.0, ("ifmmin", "train"): 28.0}  # IF-MMIN official code, 1 thread
DIMS = {"audio": 130, "visual": 342, "text": 1024}
SPEAKERS = [f"Ses{s:02d}_{g}" for s in range(1, 6) for g in "FM"]


def random_package(clips_per_speaker: int, seed: int) -> FeatureStore:
    """An in-memory feature store shaped like the MMIN IEMOCAP package; fold 0: test speaker 0, validation
    speaker 1, training the other 8."""
    rng = np.random.default_rng(seed)
    n = clips_per_speaker * len(SPEAKERS)
    clip_ids = np.array([f"{speaker}_{k:04d}" for speaker in SPEAKERS for k in range(clips_per_speaker)])
    sequences = {}
    for modality, dim in DIMS.items():
        lengths = np.full(n, 22) if modality == "text" else rng.integers(20, 81, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = rng.standard_normal((offsets[-1], dim), dtype=np.float32)
        sequences[modality] = Sequences(data, offsets, np.ones(offsets[-1], bool), clip_ids)
    classes = ["happy", "angry", "sad", "neutral"]
    meta = pd.DataFrame({"clip_id": clip_ids, "speaker": np.repeat(SPEAKERS, clips_per_speaker),
                         "label": rng.choice(classes, n), **{f"has_{m}": True for m in DIMS}})
    roles = ["test", "val"] + ["train"] * (len(SPEAKERS) - 2)
    splits = pd.DataFrame({"fold": 0, "speaker": SPEAKERS, "role": roles})
    manifest = {"corpus": "iemocap_random", "modalities": list(DIMS), "dims": DIMS, "classes": classes,
                "frame_rates": {"audio": 10.0, "visual": None, "text": None}, "files": {}}
    return FeatureStore(Path("in-memory"), meta, splits, sequences, manifest)


def clocks() -> tuple[float, float]:
    """(process CPU seconds, wall seconds): on a machine other processes share, the CPU time is the fair measure."""
    return time.process_time(), time.perf_counter()


class TimedSchedule(StageSchedule):
    """A fixed schedule that notes when each epoch starts (`factor`) and ends (`update`, after validation)."""

    def __post_init__(self):
        super().__post_init__()
        self.starts, self.ends = [], []

    def factor(self) -> float:
        self.starts.append(clocks())
        return super().factor()

    def update(self, score: float) -> bool:
        self.ends.append(clocks())
        return super().update(score)

    def seconds(self) -> list[tuple[float, float]]:
        """(CPU, wall) seconds of each epoch."""
        return [(end[0] - start[0], end[1] - start[1]) for start, end in zip(self.starts, self.ends)]


def time_stages(
    run: dict, data: dict, context: ModelContext, warmup: int, epochs: int, precision: str = "fp32"
) -> list[dict]:
    """Train every stage of `run` (a resolved run of the paper preset) for warmup + epochs epochs, the forward
    passes in `precision` (`train.precision`); the timed epochs' seconds."""
    entry = run["entry"]
    validation = []
    predict = train.predict

    def timed_predict(*args, **kwargs):
        start = time.process_time()
        try:
            return predict(*args, **kwargs)
        finally:
            validation.append(time.process_time() - start)

    train.predict = timed_predict
    rows, model, generator = [], None, seed_everything(0)
    try:
        for stage in stage_specs(run["method"], run["module"], run["stages"]):
            model = build_stage(stage, entry, context, model, None)
            optim = stage.params(entry)["optim"]
            schedule = TimedSchedule(warmup + epochs, 0)
            validation.clear()
            train.train_stage(model, stage, stage.conditions(entry), optim, 0.0, data, generator,
                              torch.device("cpu"), f"{run['name']} {stage.name}", False, stage.training_noise(entry),
                              0, schedule, precision)
            seconds, val = schedule.seconds()[warmup:], validation[warmup:]
            rows.append({"run": run["name"], "stage": stage.name, "batch": optim["batch_size"],
                         "cpu_s": statistics.median(cpu for cpu, _ in seconds),
                         "wall_s": statistics.median(wall for _, wall in seconds),
                         "validation_s": statistics.median(val), "epochs_cpu_s": [cpu for cpu, _ in seconds]})
    finally:
        train.predict = predict
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="the study's params (methods.mmin, methods.ifmmin)")
    parser.add_argument("--clips-per-speaker", type=int, default=550, help="10 speakers; 550: 4,400 training clips")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (the median is reported)")
    parser.add_argument("--runs", nargs="+", default=["mmin", "ifmmin"])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="the forward passes' precision; the official code runs fp32 (the ratio's basis)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = resolve_runs(load_params(args.params, {"train.preset": "paper"}))
    store = random_package(args.clips_per_speaker, seed=0)
    task = study_task("classification", store.manifest)
    data = load_fold(store, 0, task)
    context = ModelContext.from_manifest(store.manifest, task)
    print(f"package: {', '.join(f'{role} {len(split)}' for role, split in data.items())} clips; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread, {args.precision}; "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = [row for run in args.runs
            for row in time_stages(runs[run], data, context, args.warmup, args.epochs, args.precision)]
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n\n"
          f"| run | stage | batch | CPU s / epoch (median of {args.epochs}: each) | of which validation "
          "| wall s / epoch | official s / epoch | ratio (CPU) |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        official = OFFICIAL_SECONDS.get((row["run"], row["stage"]))
        ratio = f"{row['cpu_s'] / official:.2f}" if official else "-"
        print(f"| {row['run']} | {row['stage']} | {row['batch']} | {row['cpu_s']:.1f} "
              f"({', '.join(f'{s:.1f}' for s in row['epochs_cpu_s'])}) | {row['validation_s']:.1f} | "
              f"{row['wall_s']:.1f} | {official if official else '-'} | {ratio} |")


if __name__ == "__main__":
    main()
