"""Paper-style tables and figures from `results/` (never from notebooks).

- `load_results`: every method's per-run metrics, predictions and training history.
- `grid_table`: MMIN-style table, one row per method, one column per condition plus pooled and mean,
  cells "mean ± std" over folds x seeds.
- `human_reference`: CREMA-D's human per-modality recognition (crowd majority vote, datasets.md), a
  reference row measured on the real corpus, never mixed with our numbers.
- `calibration_check`: the built-in corpus's difficulty targets (issue "Foundation") against the measured UA.
- `with_missing_average`: MMIN's "Average" over the missing-modality conditions, per run.
- `paired_comparison`: method A minus method B paired by run (fold, seed), with a paired t-test.
- `write_table`, `save_figure`: every artefact as .md/.tex/.csv or .png/.svg, written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from mer_core.config import Field, Section
from mer_core.data.synthetic.perception import AUDIOVISUAL_CONFUSION, FACE_CONFUSION, VOICE_CONFUSION
from mer_core.evaluate import METRICS
from mer_core.metrics import confusion
from mer_core.runtime import write_atomic

ANALYSIS_SCHEMA = Section(
    {
        "primary_metric": Field(str, choices=METRICS),
        "precision": Field(int, low=1, high=6),
        "confusion_methods": Field(list, item=Field(str)),
        "imagination_table": Field(list, low=1, item=Field(str)),  # rows of the MMIN / IF-MMIN table
        "calibration": Section(
            {
                "audio_ua": Field(list, low=2, high=2, item=Field(float, low=0, high=1)),
                "visual_ua": Field(list, low=2, high=2, item=Field(float, low=0, high=1)),
                "fusion_margin": Field(float, low=0, high=1),
                "fusion_max": Field(float, low=0, high=1),
            }
        ),
    }
)

# CREMA-D human perception (datasets.md, computed from processedResults/summaryTable.csv over 7,442 clips):
# share of clips whose crowd majority label from one modality equals the intended emotion (strict match).
HUMAN_STRICT_ACCURACY = {"a": 0.416, "v": 0.663, "av": 0.722}
HUMAN_CONFUSION = {"a": VOICE_CONFUSION, "v": FACE_CONFUSION, "av": AUDIOVISUAL_CONFUSION}


def load_results(results_dir: str | Path, methods: list[str]) -> dict[str, pd.DataFrame]:
    """Concatenate per_condition.csv, history.csv and predictions.csv of `methods` with a `method` column."""
    results_dir = Path(results_dir)
    tables = {"per_condition": [], "history": [], "predictions": []}
    for method in methods:
        for name, frames in tables.items():
            path = results_dir / method / f"{name}.csv"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run `dvc repro train@{method}`")
            frames.append(pd.read_csv(path).assign(method=method))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}


def grid_table(per_condition: pd.DataFrame, metric: str, columns: list[str], precision: int = 3) -> pd.DataFrame:
    """Rows = methods (in order of appearance), columns = conditions; cells 'mean ± std' over runs."""
    methods = list(dict.fromkeys(per_condition["method"]))
    stats = per_condition.groupby(["method", "condition"])[metric].agg(["mean", "std"])
    cell = lambda m, c: (f"{stats.loc[(m, c), 'mean']:.{precision}f} ± {np.nan_to_num(stats.loc[(m, c), 'std']):.{precision}f}"
                         if (m, c) in stats.index else "–")
    return pd.DataFrame([[cell(m, c) for c in columns] for m in methods], index=methods, columns=columns)


def mean_table(per_condition: pd.DataFrame, metric: str, columns: list[str]) -> pd.DataFrame:
    """Numeric version of `grid_table` (means only)."""
    table = per_condition.groupby(["method", "condition"])[metric].mean().unstack("condition")
    return table.reindex(index=list(dict.fromkeys(per_condition["method"])), columns=columns)


def human_reference(precision: int = 3) -> pd.DataFrame:
    """CREMA-D human perception per modality: strict-match accuracy (WA) and mean per-class recall (UA)."""
    rows = {}
    for condition, matrix in HUMAN_CONFUSION.items():
        rows[condition] = f"WA {HUMAN_STRICT_ACCURACY[condition]:.{precision}f} / UA {np.mean(np.diag(matrix)):.{precision}f}"
    return pd.DataFrame([rows], index=["human perception, real CREMA-D (reference)"])


def calibration_check(ua: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Compare the best audio-only, visual-only and audio-visual UA (means over runs) with the targets."""
    best_a, best_v, best_av = ua["a"].max(), ua["v"].max(), ua["av"].max()
    best_single = max(best_a, best_v)
    rows = [
        ("best audio-only UA", best_a, f"in [{cfg['audio_ua'][0]}, {cfg['audio_ua'][1]}]",
         cfg["audio_ua"][0] <= best_a <= cfg["audio_ua"][1], ua["a"].idxmax()),
        ("best visual-only UA", best_v, f"in [{cfg['visual_ua'][0]}, {cfg['visual_ua'][1]}]",
         cfg["visual_ua"][0] <= best_v <= cfg["visual_ua"][1], ua["v"].idxmax()),
        ("best audio-visual UA", best_av,
         f">= best single ({best_single:.3f}) + {cfg['fusion_margin']} and < {cfg['fusion_max']}",
         best_single + cfg["fusion_margin"] <= best_av < cfg["fusion_max"], ua["av"].idxmax()),
    ]
    return pd.DataFrame(rows, columns=["quantity", "measured", "target", "met", "method"]).set_index("quantity")


def write_table(table: pd.DataFrame, name: str, out_dir: str | Path, caption: str) -> list[Path]:
    """Write `table` as <name>.md (with caption), <name>.tex and <name>.csv under `out_dir`."""
    out_dir = Path(out_dir)
    return [
        write_atomic(out_dir / f"{name}.md", lambda p: p.write_text(f"{caption}\n\n{table.to_markdown()}\n")),
        write_atomic(out_dir / f"{name}.tex", lambda p: p.write_text(
            table.to_latex(caption=caption, label=f"tab:{name}").replace("±", r"$\pm$"))),
        write_atomic(out_dir / f"{name}.csv", lambda p: table.to_csv(p)),
    ]


def save_figure(figure: plt.Figure, name: str, out_dir: str | Path) -> list[Path]:
    """Save `figure` as <name>.png and <name>.svg (no timestamps in the SVG, so reruns are byte-stable)."""
    out_dir = Path(out_dir)
    return [
        write_atomic(out_dir / f"{name}.png", lambda p: figure.savefig(p, format="png", dpi=120,
                                                                      bbox_inches="tight", metadata={"Software": None})),
        write_atomic(out_dir / f"{name}.svg", lambda p: figure.savefig(p, format="svg", bbox_inches="tight",
                                                                      metadata={"Date": None})),
    ]


def confusion_grid(predictions: pd.DataFrame, method: str, conditions: list[str], classes: list[str]) -> plt.Figure:
    """Row-normalised confusion matrices of `method`, one panel per condition, pooled over runs."""
    part = predictions[predictions["method"] == method]
    index = {c: k for k, c in enumerate(classes)}
    figure, axes = plt.subplots(1, len(conditions), figsize=(3.4 * len(conditions), 3.4), squeeze=False)
    for ax, condition in zip(axes[0], conditions):
        rows = part[part["condition"] == condition]
        matrix = confusion(rows["label"].map(index), rows["pred"].map(index), len(classes), normalize="true")
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "black")
        ax.set_xticks(range(len(classes)), [c[:3] for c in classes], fontsize=8)
        ax.set_yticks(range(len(classes)), [c[:3] for c in classes], fontsize=8)
        ax.set_title(f"{method}: {condition}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    figure.tight_layout()
    return figure


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Mean train loss and validation UA per epoch for every run (mean over folds x seeds); a method's stages
    follow each other on the epoch axis (stage 1's validation UA is on full modalities, stage 2's pooled)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method, part in history.groupby("method", sort=False):
        curves, offset = [], 0
        for _, stage in part.groupby("stage", sort=False):
            curve = stage.groupby("epoch")[["train_loss", "val_ua"]].mean()
            curves.append(curve.set_axis(curve.index + offset))
            offset += int(curve.index.max())
        curve = pd.concat(curves)
        line, = left.plot(curve.index, curve["train_loss"], label=method)
        right.plot(curve.index, curve["val_ua"], label=method, color=line.get_color())
    left.set(xlabel="epoch (stages in order)", ylabel="training loss", title="training loss (mean over runs)")
    right.set(xlabel="epoch (stages in order)", ylabel="validation UA", title="validation UA (model selection)")
    right.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def with_missing_average(per_condition: pd.DataFrame, missing: list[str]) -> pd.DataFrame:
    """`per_condition` plus, for every run, the condition `missing`: each metric averaged over the `missing`
    conditions (those with a modality absent). For WA and UA this is MMIN's "Average" column (the metric on
    the pooled replicated set, methods.md §1.2), since every condition holds the same clips."""
    metrics = [m for m in METRICS if m in per_condition]
    part = per_condition[per_condition["condition"].isin(missing)]
    average = part.groupby(["method", "fold", "seed"], sort=False)[metrics].mean().reset_index()
    return pd.concat([per_condition, average.assign(condition="missing")], ignore_index=True)


def paired_comparison(per_condition: pd.DataFrame, a: str, b: str, condition: str, metric: str) -> dict:
    """`a` minus `b` on `metric` under `condition`, paired by run (fold, seed): mean difference, the number of
    pairs, how many `a` wins, and the two-sided paired t-test p-value (NaN with fewer than 2 pairs)."""
    part = per_condition[per_condition["condition"] == condition]
    table = part.pivot_table(index=["fold", "seed"], columns="method", values=metric)[[a, b]].dropna()
    difference = table[a] - table[b]
    p_value = float(stats.ttest_rel(table[a], table[b]).pvalue) if len(table) >= 2 and difference.std() > 0 \
        else float("nan")
    return {"a": a, "b": b, "condition": condition, "metric": metric, "difference": float(difference.mean()),
            "pairs": len(table), "wins": int((difference > 0).sum()), "p_value": p_value}


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


