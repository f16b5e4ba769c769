"""What a study will train before it runs, and what it will cost: its runs, (fold, seed) units, epochs per unit and,
from epochs timed on this machine, an estimate of its wall time (`make plan-paper`, docs/scale.md).

The estimate times each run on the device the study would use (`machine.device`): one unit trained with every stage
cut to 1 epoch, then to 3; half the difference is the cost of one epoch of every stage, the rest (reading the store,
testing, the robustness grid) the unit's fixed cost. A unit's estimate is that fixed cost plus its epochs at the
mean epoch cost of its stages; with plateau stopping it is an upper bound (every stage runs to its maximum). The
study's wall time divides the units by the units that run at once (`machine.jobs`, or Ray's CPUs per unit).

    python -m mer_core.plan -S train.preset=paper -S 'train.seeds=[0,1,2,3,4]' --measure
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from mer_core.config import load_params, resolve_runs, stage_params
from mer_core.data.store import StoreError, read_store
from mer_core.machine import machine_settings
from mer_core.methods.registry import stage_specs
from mer_core.params.methods import stage_epochs
from mer_core.runtime import select_device
from mer_core.schema import ConfigError

PAPER = {"train.preset": "paper", "train.seeds": [0, 1, 2, 3, 4]}  # `make repro-paper`: official schedules, 5 seeds


def unit_epochs(run: dict) -> dict[str, int]:
    """{stage: most epochs it trains} of one unit of `run` (constant phase + linear decay; a fitted stage: its grid
    points)."""
    return {stage["name"]: stage_epochs(stage, run["entry"]) for stage in run["stages"]}


def plan_table(params: dict, folds: list[int] | None) -> pd.DataFrame:
    """One row per run the study trains: its method, units, epochs per unit (per stage), stopping rule; `folds`: the
    feature store's folds (None before the prepare stage: then `folds.n_folds`)."""
    runs = stage_params(params, resolve_runs(params))
    rows = []
    for name, run in sorted(runs.items()):
        if not name.startswith("runs/") or run["status"] == "skip":
            continue
        chosen = run["train"]["folds"]
        n_folds = len(chosen) if chosen != "all" else len(folds) if folds else params["folds"]["n_folds"]
        epochs = unit_epochs(run)
        rows.append(
            {
                "run": run["name"],
                "method": run["method"],
                "units": n_folds * len(run["train"]["seeds"]),
                "stages": ", ".join(f"{s} {e}" for s, e in epochs.items()),
                "epochs": sum(epochs.values()),
                "stopping": run["train"]["stopping"]["rule"],
            }
        )
    return pd.DataFrame(rows)


def one_epoch_run(run: dict, epochs: int) -> dict:
    """`run` with every stage cut to `epochs` epochs and no decay phase."""
    run = copy.deepcopy(run)
    for stage in stage_specs(run["method"], run["module"], run["stages"]):
        block = run["entry"] if stage.key is None else run["entry"][stage.key]
        if "optim" in block:  # a fitted stage keeps its grid
            block["optim"].update(epochs=epochs, epochs_decay=0)
    run["train"]["stopping"]["rule"] = "fixed"
    return run


def time_unit(run: dict, fold: int, device: str, threads: int) -> tuple[float, float]:
    """(fixed seconds, seconds per epoch) of one unit of `run`, from two timed units of 1 and 3 epochs per stage."""
    from mer_core.train import fit_unit  # torch training code: imported only when something is timed

    seconds = []
    for epochs in (1, 3):
        start = time.perf_counter()
        fit_unit(one_epoch_run(run, epochs), fold, run["train"]["seeds"][0], False, threads, device)
        seconds.append(time.perf_counter() - start)
    n_stages = len(run["stages"])
    per_epoch = max(seconds[1] - seconds[0], 0.0) / (2 * n_stages)
    return max(seconds[0] - n_stages * per_epoch, 0.0), per_epoch


def device_name(device: str) -> str:
    chosen = select_device(device)
    if chosen.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(chosen)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def estimate(params: dict, table: pd.DataFrame, machine: dict) -> pd.DataFrame:
    """`table` with each run's measured fixed and per-epoch seconds and its estimated unit and total hours."""
    runs = {
        run["name"]: run for key, run in stage_params(params, resolve_runs(params)).items() if key.startswith("runs/")
    }
    measured = []
    for name in table["run"]:
        fixed, per_epoch = time_unit(
            runs[name],
            0 if runs[name]["train"]["folds"] == "all" else runs[name]["train"]["folds"][0],
            machine["device"],
            machine["threads_per_job"],
        )
        measured.append({"fixed_s": fixed, "epoch_s": per_epoch})
    table = pd.concat([table, pd.DataFrame(measured)], axis=1)
    table["unit_h"] = (table["fixed_s"] + table["epochs"] * table["epoch_s"]) / 3600
    table["total_h"] = table["unit_h"] * table["units"]
    return table


def parallel_units(machine: dict) -> int:
    """How many units run at once: `jobs` locally; on Ray, `jobs` x CPUs per unit CPUs shared out."""
    if machine["executor"] == "ray":
        return max(1, math.floor(machine["jobs"] / machine["ray"]["cpus_per_unit"]))
    return machine["jobs"]


def parse_sets(sets: list[str]) -> dict:
    """`-S key=value` pairs (DVC's syntax; values read as YAML) -> {key: value}."""
    overrides = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"-S {item!r}: expected key=value, e.g. -S train.preset=paper")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mer_core.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param (as `dvc exp run -S`); repeatable",
    )
    parser.add_argument(
        "--paper", action="store_true", help="the paper-scale study: " + ", ".join(f"{k}={v}" for k, v in PAPER.items())
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="time each run on this machine's device (needs the prepare stage's feature store)",
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, {**(PAPER if args.paper else {}), **parse_sets(args.set)})
    except ConfigError as err:
        sys.exit(f"{args.params}: {err}")
    machine = machine_settings(args.params)
    store_dir = Path(params["data"]["features_dir"]) / params["data"]["corpus"]
    try:
        folds = read_store(store_dir, verify=False).folds
    except StoreError:
        folds = None
    table = plan_table(params, folds)
    print(
        f"Study on {params['data']['corpus']}: {len(table)} runs, {table['units'].sum()} units "
        f"(folds x seeds), {int((table['units'] * table['epochs']).sum())} unit-epochs at most."
    )
    if args.measure and folds is None:
        print(table.to_markdown(index=False))
        print(f"Not timed: no feature store at {store_dir} yet (the prepare stage, with the same settings, writes it).")
    elif args.measure:
        table = estimate(params, table, machine)
        parallel = parallel_units(machine)
        print(f"Timed on {device_name(machine['device'])}; {parallel} units at once ({machine['executor']}).")
        print(table.to_markdown(index=False, floatfmt=".3g"))
        print(
            f"Estimated: {table['total_h'].sum():.2f} unit-hours, about {table['total_h'].sum() / parallel:.2f} h "
            f"of wall time on this machine."
        )
    else:
        print(table.to_markdown(index=False))
        print("Add --measure to time each run on this machine's device (after `dvc repro prepare`).")


if __name__ == "__main__":
    main()
