"""Our MMIN and IF-MMIN against the official code's runs on the same feature package: per-condition UA, official
switches on, and one switch at a time set back to ours (docs/faithfulness.md).

A benchmark, not a test: it trains, writes a table and asserts nothing. Run from the project root with the unpacked
package (`tar -xJf package.tar.xz` outside the project gives a folder `pkg/`) and the official runs' numbers:

    python benchmarks/official_package.py --package /tmp/mmin-pkg/pkg \\
        --reference ../shared/data/mmin-package-builtin/reference_runs.json --out /tmp/official_package

The package is read by the `iemocap_mmin` adapter into a feature store under `--out` (its `target/N` is our fold
N - 1). The reference file holds, per official run (`official/<method>/cv<N>/run<k>`), the UA of each test condition
and of the six missing-modality conditions pooled (`pooled6`: the UA on the replicated set, MMIN's "Average");
only the folds it has runs for are trained. Every configuration is `train.preset: paper` (the official schedules,
sizes and fixed epoch counts) with the IF-IM autoencoder at HEAD (`ae_version: head`, the IF-MMIN commit the
reference ran) and four switches, each official or ours:

- `selection`: the epoch kept by its test score, as the released scripts do (`train.selection: test`), or by its
  validation score;
- `batches`: random batches in training and evaluation (`train.batches: random`), or bucketed by length;
- `normalisation`: audio alone standardised (`train.normalise_modalities: [audio]`), or every modality;
- `pooling`: max-pools over the padded batch (`encoder_pooling`, `text_windows: padded`), or over the valid frames.

The paper preset implies the official batches, normalisation and pooling; the test selection is set explicitly.
A configuration is `official` (every switch official), `ours` (every switch ours), or `<switch>[,<switch>...]=ours`
(official but for those); `--ablation` adds `<switch>=ours` for each switch.

One unit (method, configuration, fold, seed) is one process with one torch thread (`--jobs` at a time); each
finished unit is appended to `<out>/units.jsonl`, so a rerun skips what is done (delete the file to start afresh).
The table (`<out>/table.md`, also printed) gives, per method, fold (`target` N, and `all`: the mean of the fold means,
with the std over every unit or run) and configuration, the mean UA (%) of each condition ± the sample std over
seeds, the official code's mean ± std over its runs in the row above, and the difference of the means.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

CONDITIONS = ["a", "v", "l", "av", "al", "vl", "pooled6"]
MISSING = CONDITIONS[:-1]
SWITCHES = {  # each switch set back to ours; the official values come from `train.preset: paper` and OFFICIAL
    "selection": {"train.selection": "validation"},
    "batches": {"train.batches": "bucketed"},
    "normalisation": {"train.normalise_modalities": "all"},
    "pooling": {"methods.{method}.encoder_pooling": "valid", "methods.{method}.text_windows": "valid"},
}
OFFICIAL = {"train.selection": "test"}  # the one official switch the paper preset does not imply
COMMON = {"train.preset": "paper", "methods.ifmmin.ae_version": "head", "robustness.signal": False}


def configuration(name: str) -> dict:
    """The overrides of a configuration: `official` (every switch official), `ours` (every switch ours), or
    `<switch>[,<switch>...]=ours` (official but for those switches, set back to ours)."""
    if name == "official":
        back = []
    elif name == "ours":
        back = list(SWITCHES)
    elif name.endswith("=ours") and all(s in SWITCHES for s in name[:-5].split(",")):
        back = name[:-5].split(",")
    else:
        raise ValueError(f"configuration {name!r}: official, ours or <switch>[,<switch>...]=ours with switches "
                         f"{', '.join(SWITCHES)}")
    changes = dict(OFFICIAL)
    for switch in back:
        changes.update(SWITCHES[switch])
    return changes


def configurations(ablation: bool) -> list[str]:
    """official and ours; with `ablation`, official with each switch set back to ours, one at a time."""
    return ["official", "ours", *([f"{switch}=ours" for switch in SWITCHES] if ablation else [])]


def study_params(package: Path, out: Path, method: str, changes: dict) -> dict:
    """Validated params of one configuration: the package as the corpus, the store under `out`."""
    from mer_core.config import load_params

    overrides = {"data.corpus": "iemocap_mmin", "data.root": str(package), "data.features_dir": str(out / "features"),
                 **COMMON, **{key.format(method=method): value for key, value in changes.items()}}
    return load_params(Path(__file__).resolve().parents[1] / "params.yaml", overrides)


def reference_runs(path: Path) -> pd.DataFrame:
    """One row per official run and condition: method, fold (ours: cvN -> N - 1), run, condition, ua (%)."""
    rows = []
    for key, conditions in json.loads(path.read_text())["official"].items():
        match = re.fullmatch(r"official/(\w+)/cv(\d+)/(run\d+)", key)
        if match is None:
            raise ValueError(f"{path}: run key {key!r} is not official/<method>/cv<N>/run<k>")
        method, cv, run = match.groups()
        for condition in CONDITIONS:
            rows.append({"method": method, "fold": int(cv) - 1, "run": run, "condition": condition,
                         "ua": conditions[condition]["ua"]})
    return pd.DataFrame(rows)


def train_unit(package: str, out: str, method: str, config: str, changes: dict, fold: int, seed: int) -> dict:
    """Train one unit in this process (one thread) and return its per-condition UA (%)."""
    import torch

    from mer_core.config import resolve_runs, stage_params
    from mer_core.data.store import read_store
    from mer_core.tasks import study_task
    from mer_core.train import fit_unit

    torch.set_num_threads(1)
    params = study_params(Path(package), Path(out), method, changes)
    run = json.loads(json.dumps(stage_params(params, resolve_runs(params))[f"runs/{method}.json"]))
    run["robustness"] = None
    start = time.perf_counter()
    output = fit_unit(run, fold, seed)
    task = study_task("classification", read_store(run["store"], verify=False).manifest)
    predictions = output.predictions
    ua = {c: 100 * task.score(predictions[predictions["condition"] == c])["ua"] for c in MISSING}
    ua["pooled6"] = 100 * task.score(predictions[predictions["condition"].isin(MISSING)])["ua"]
    return {"method": method, "config": config, "fold": fold, "seed": seed, "ua": ua,
            "best_epochs": output.best_epochs, "seconds": round(time.perf_counter() - start, 1),
            "switches": {"selection": run["train"]["selection"], "batches": run["train"]["batches"],
                         "normalise": run["train"]["normalise_modalities"], "pooling": run["entry"]["encoder_pooling"],
                         "windows": run["entry"]["text_windows"]}}


def config_order(name: str) -> tuple:
    """official, ours, then the others by how many switches they set back to ours, then by name."""
    return (name != "official", name != "ours", name.count(",") + 1, name)


def fold_summary(values: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, sample std and count of `ua` per `keys`, fold and condition, and over folds: the mean of the fold means
    (each fold weighs the same, whatever its number of runs), the std over every unit or run (fold = `all`)."""
    per_fold = values.groupby([*keys, "fold", "condition"])["ua"].agg(["mean", "std", "count"]).reset_index()
    overall = per_fold.groupby([*keys, "condition"])["mean"].mean().rename("mean").to_frame()
    overall["std"] = values.groupby([*keys, "condition"])["ua"].std()
    overall["count"] = values.groupby([*keys, "condition"])["ua"].count()
    per_fold["fold"] = (per_fold["fold"] + 1).astype(str)  # the package's target/N
    return pd.concat([overall.reset_index().assign(fold="all"), per_fold], ignore_index=True)


def markdown(units: pd.DataFrame, reference: pd.DataFrame) -> str:
    """One row per method, fold (the package's target/N, or `all`) and configuration, with the official code's row
    first; a cell is `mean ± sd`, and for ours `(difference from the official mean)`."""
    ours = fold_summary(units, ["method", "config"]).set_index(["method", "fold", "config", "condition"]).sort_index()
    official = fold_summary(reference, ["method"]).set_index(["method", "fold", "condition"]).sort_index()
    header = ["method", "target", "configuration", "units", *CONDITIONS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(mean, std, difference=None):
        text = f"{mean:.1f}" + ("" if pd.isna(std) else f" ± {std:.1f}")
        return text + ("" if difference is None else f" ({difference:+.1f})")

    for method in units["method"].unique():
        folds = sorted(official.loc[method].index.get_level_values("fold").unique().drop("all"))
        covered = units[units["method"] == method].groupby("config")["fold"].nunique() == len(folds)
        for fold in ["all", *folds]:
            reference_rows = official.loc[(method, fold)]
            lines.append("| " + " | ".join([method, fold, "**official code**", str(reference_rows["count"].iloc[0]),
                                            *(cell(*reference_rows.loc[c, ["mean", "std"]]) for c in CONDITIONS)])
                         + " |")
            for config in sorted(units.loc[units["method"] == method, "config"].unique(), key=config_order):
                if (method, fold, config) not in ours.droplevel("condition").index or (fold == "all"
                                                                                     and not covered[config]):
                    continue  # `all` only for a configuration trained on every fold the reference has
                rows = ours.loc[(method, fold, config)]
                cells = [cell(rows.loc[c, "mean"], rows.loc[c, "std"],
                              rows.loc[c, "mean"] - reference_rows.loc[c, "mean"]) for c in CONDITIONS]
                lines.append("| " + " | ".join([method, fold, config, str(rows["count"].iloc[0]), *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, required=True, help="the unpacked package folder (A/, V/, L/, target/)")
    parser.add_argument("--reference", type=Path, required=True, help="reference_runs.json")
    parser.add_argument("--out", type=Path, required=True, help="working folder (store, units.jsonl, table.md)")
    parser.add_argument("--methods", nargs="+", default=["ifmmin", "mmin"], choices=["ifmmin", "mmin"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=None, help="configurations to train: official, ours, "
                        "<switch>[,<switch>...]=ours (default: official, ours and, with --ablation, one per switch)")
    parser.add_argument("--ablation", action="store_true", help="also train `official` with each switch set back")
    parser.add_argument("--ablation-folds", nargs="+", type=int, default=None,
                        help="train every configuration but `official` on these folds only (ours, 0-based; default: "
                        "every fold the reference has)")
    parser.add_argument("--jobs", type=int, default=2, help="units trained at once (one thread each)")
    args = parser.parse_args(argv)

    from mer_core.data.prepare import prepare

    args.out.mkdir(parents=True, exist_ok=True)
    reference = reference_runs(args.reference)
    reference = reference[reference["method"].isin(args.methods)]
    store = prepare(study_params(args.package, args.out, "ifmmin", {}))
    for fold in sorted(reference["fold"].unique()):
        if fold not in store.folds:
            raise SystemExit(f"{args.reference}: runs of target/{fold + 1} but the package has folds "
                             f"{[f + 1 for f in store.folds]}")
    try:
        configs = {name: configuration(name) for name in (args.configs or configurations(args.ablation))}
    except ValueError as err:
        raise SystemExit(f"--configs: {err}") from None
    done_path = args.out / "units.jsonl"
    done = [json.loads(line) for line in done_path.read_text().splitlines()] if done_path.is_file() else []
    finished = {(u["method"], u["config"], u["fold"], u["seed"]) for u in done}
    todo = []
    for method in args.methods:
        for config, changes in configs.items():
            folds = sorted(reference.loc[reference["method"] == method, "fold"].unique())
            if config != "official" and args.ablation_folds is not None:
                folds = [f for f in folds if f in args.ablation_folds]
            todo += [(method, config, changes, int(fold), seed) for fold in folds for seed in args.seeds
                     if (method, config, int(fold), seed) not in finished]
    print(f"{len(todo)} units to train ({len(finished)} done), {args.jobs} at a time")
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_unit, str(args.package), str(args.out), *unit) for unit in todo]
        for future in as_completed(futures):
            result = future.result()
            with done_path.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            done.append(result)
            print(f"{result['method']} {result['config']} fold {result['fold']} seed {result['seed']}: pooled6 "
                  f"{result['ua']['pooled6']:.1f} ({result['seconds']:.0f} s)", flush=True)
    units = pd.DataFrame([{**{k: u[k] for k in ("method", "config", "fold", "seed")}, "condition": c, "ua": v}
                          for u in done for c, v in u["ua"].items() if u["method"] in args.methods])
    text = [markdown(units, reference), ""]
    (args.out / "table.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
