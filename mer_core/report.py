"""Paper-style tables and figures from `results/` (never from notebooks).

- `load_results`: every method's per-run metrics, predictions and training history.
- the per-condition tables and confusion figure are `mer_core.tables`'s.
- `human_reference`: CREMA-D's human per-modality recognition (crowd majority vote, docs/datasets.md), a
  reference row measured on the real corpus (constants, or read from its summaryTable.csv), never mixed with
  our numbers.
- `calibration_check`: the built-in corpus's difficulty targets (docs/design.md, "The built-in corpus") against the
  measured UA.
- `with_missing_average`: MMIN's "Average" over the missing-modality conditions, per run.
- `paired_comparison`: method A minus method B paired by run (fold, seed), with a paired t-test.
- `robustness_table`, `robustness_curves`, `corruption_curves`, `robustness_comparison`: the noise grid
  (`results/<run>/robustness.csv`): a table per setting, NMER's "WA vs noise intensity" figure with the
  official figure's points beside it (`reference_results.yaml`, a labelled reference, never mixed with ours),
  the signal corruptions, and paired comparisons of two runs per setting.
- `write_table`, `save_figure`: every artefact as .md/.tex/.csv or .png/.svg, written atomically and byte-stable.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from mer_core.data.corpora.crema_d import human_recognition, metadata_file
from mer_core.data.synthetic.perception import AUDIOVISUAL_CONFUSION, FACE_CONFUSION, VOICE_CONFUSION
from mer_core.references import Reference, load_references
from mer_core.robustness import setting_label
from mer_core.runtime import write_atomic
from mer_core.tables import grid_table
from mer_core.tasks import metric_columns

# CREMA-D's per-modality human confusions (docs/datasets.md): the human reference's UA (mean of the diagonal); its WA
# (strict match) is the `crema_d_human_strict` entry of reference_results.yaml.
HUMAN_CONFUSION = {"a": VOICE_CONFUSION, "v": FACE_CONFUSION, "av": AUDIOVISUAL_CONFUSION}
HUMAN_STRICT_REFERENCE = "crema_d_human_strict"
FEATURE_NOISE_UNIT = "T"
CLEAN_LABEL = "clean (zero-filled)"


def load_results(results_dir: str | Path, methods: list[str]) -> dict[str, pd.DataFrame]:
    """Concatenate per_condition.csv, history.csv, predictions.csv and robustness.csv of `methods` with a
    `method` column."""
    results_dir = Path(results_dir)
    tables = {"per_condition": [], "history": [], "predictions": [], "robustness": []}
    for method in methods:
        for name, frames in tables.items():
            path = results_dir / method / f"{name}.csv"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run `dvc repro train@{method}`")
            frames.append(pd.read_csv(path).assign(method=method))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}


def human_reference(
    precision: int = 3, summary_table: str | Path | None = None, reference: Reference | None = None
) -> pd.DataFrame:
    """CREMA-D human perception per modality: strict-match accuracy (WA) and mean per-class recall (UA).

    Without `summary_table`: WA from `reference` (default: reference_results.yaml's `crema_d_human_strict`; a
    condition whose value is null is left out) and UA from the confusion tables above (a tie counts as a fraction
    for each label in it). With the path of CREMA-D's summaryTable.csv: both measured from it, strict match
    (`mer_core.data.corpora.crema_d.human_recognition`)."""
    if summary_table is not None:
        rates = human_recognition(summary_table)
        rows = {c: f"WA {rates.at[c, 'wa']:.{precision}f} / UA {rates.at[c, 'ua']:.{precision}f}" for c in rates.index}
        return pd.DataFrame([rows], index=[f"human perception, CREMA-D {Path(summary_table).name} (reference)"])
    strict = (reference or load_references()[HUMAN_STRICT_REFERENCE]).series()
    rows = {}
    for condition, matrix in HUMAN_CONFUSION.items():
        if condition in strict:
            rows[condition] = f"WA {strict[condition]:.{precision}f} / UA {np.mean(np.diag(matrix)):.{precision}f}"
    return pd.DataFrame([rows], index=["human perception, real CREMA-D (reference)"])


def corpus_human_reference(data_cfg: dict, precision: int = 3) -> pd.DataFrame | None:
    """The human reference row for the study's corpus (params `data`): for `crema_d`, measured from its
    summaryTable.csv when `data.root` holds it; for `crema_d` without it and for the built-in corpus (CREMA-D's
    layout and perception figures), the real CREMA-D constants; None for any other corpus, which has no such
    figures."""
    if data_cfg["corpus"] == "crema_d":
        table = metadata_file(Path(data_cfg["root"]), "summaryTable.csv")
        if table is not None:
            return human_reference(precision, summary_table=table)
    return human_reference(precision) if data_cfg["corpus"] in ("builtin", "crema_d") else None


def calibration_check(ua: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Compare the best audio-only, visual-only and audio-visual UA (means over runs) with the targets of the
    built-in corpus (an audio-visual corpus: the columns a, v and av)."""
    missing = [c for c in ("a", "v", "av") if c not in ua.columns]
    if missing:
        raise ValueError(
            f"calibration_check: the built-in corpus's targets need the conditions a, v and av; "
            f"this study has {', '.join(ua.columns)}"
        )
    best_a, best_v, best_av = ua["a"].max(), ua["v"].max(), ua["av"].max()
    best_single = max(best_a, best_v)
    rows = [
        (
            "best audio-only UA",
            best_a,
            f"in [{cfg['audio_ua'][0]}, {cfg['audio_ua'][1]}]",
            cfg["audio_ua"][0] <= best_a <= cfg["audio_ua"][1],
            ua["a"].idxmax(),
        ),
        (
            "best visual-only UA",
            best_v,
            f"in [{cfg['visual_ua'][0]}, {cfg['visual_ua'][1]}]",
            cfg["visual_ua"][0] <= best_v <= cfg["visual_ua"][1],
            ua["v"].idxmax(),
        ),
        (
            "best audio-visual UA",
            best_av,
            f">= best single ({best_single:.3f}) + {cfg['fusion_margin']} and < {cfg['fusion_max']}",
            best_single + cfg["fusion_margin"] <= best_av < cfg["fusion_max"],
            ua["av"].idxmax(),
        ),
    ]
    return pd.DataFrame(rows, columns=["quantity", "measured", "target", "met", "method"]).set_index("quantity")


def write_table(table: pd.DataFrame, name: str, out_dir: str | Path, caption: str) -> list[Path]:
    """Write `table` as <name>.md (with caption), <name>.tex and <name>.csv under `out_dir`; a plain row number index
    is left out."""
    out_dir = Path(out_dir)
    index = not isinstance(table.index, pd.RangeIndex)
    return [
        write_atomic(
            out_dir / f"{name}.md", lambda p: p.write_text(f"{caption}\n\n{table.to_markdown(index=index)}\n")
        ),
        write_atomic(
            out_dir / f"{name}.tex",
            lambda p: p.write_text(
                table.to_latex(caption=caption, label=f"tab:{name}", index=index).replace("±", r"$\pm$")
            ),
        ),
        write_atomic(out_dir / f"{name}.csv", lambda p: table.to_csv(p, index=index)),
    ]


def save_figure(figure: plt.Figure, name: str, out_dir: str | Path) -> list[Path]:
    """Save `figure` as <name>.png and <name>.svg (no timestamp, fixed ids: reruns are byte-stable)."""
    out_dir = Path(out_dir)
    return [
        write_atomic(
            out_dir / f"{name}.png",
            lambda p: figure.savefig(p, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None}),
        ),
        write_atomic(out_dir / f"{name}.svg", lambda p: _save_svg(figure, p, name)),
    ]


def _save_svg(figure: plt.Figure, path: Path, salt: str) -> None:
    """SVG without a date and with element ids hashed from `salt` (matplotlib draws random ones otherwise)."""
    with plt.rc_context({"svg.hashsalt": salt}):
        figure.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})


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
        (line,) = left.plot(curve.index, curve["train_loss"], label=method)
        right.plot(curve.index, curve["val_ua"], label=method, color=line.get_color())
    left.set(
        xlabel="epoch (stages in order)",
        ylabel="training loss (log scale)",
        yscale="log",
        title="training loss (mean over runs)",
    )
    right.set(xlabel="epoch (stages in order)", ylabel="validation UA", title="validation UA (model selection)")
    right.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def with_missing_average(per_condition: pd.DataFrame, missing: list[str]) -> pd.DataFrame:
    """`per_condition` plus, for every run, the condition `missing`: each metric averaged over the `missing`
    conditions (those with a modality absent). For WA and UA this is MMIN's "Average" column (the metric on
    the pooled replicated set, docs/methods.md §1.2), since every condition holds the same clips."""
    metrics = metric_columns(per_condition.columns)
    part = per_condition[per_condition["condition"].isin(missing)]
    average = part.groupby(["method", "fold", "seed"], sort=False)[metrics].mean().reset_index()
    return pd.concat([per_condition, average.assign(condition="missing")], ignore_index=True)


def paired_comparison(per_condition: pd.DataFrame, a: str, b: str, condition: str, metric: str) -> dict:
    """`a` minus `b` on `metric` under `condition`, paired by run (fold, seed): mean difference, the number of
    pairs, how many `a` wins, and the two-sided paired t-test p-value (NaN with fewer than 2 pairs)."""
    part = per_condition[per_condition["condition"] == condition]
    table = part.pivot_table(index=["fold", "seed"], columns="method", values=metric)[[a, b]].dropna()
    difference = table[a] - table[b]
    p_value = (
        float(stats.ttest_rel(table[a], table[b]).pvalue) if len(table) >= 2 and difference.std() > 0 else float("nan")
    )
    return {
        "a": a,
        "b": b,
        "condition": condition,
        "metric": metric,
        "difference": float(difference.mean()),
        "pairs": len(table),
        "wins": int((difference > 0).sum()),
        "p_value": p_value,
    }


def paired_fraction_curve(points: pd.DataFrame, metric: str, methods: list[str]) -> plt.Figure:
    """`metric` (mean ± std over runs) against the paired fraction of the training data, one line per method;
    `points` has columns method, paired, fold, seed and `metric`."""
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    for method in methods:
        stats_ = points[points["method"] == method].groupby("paired")[metric].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(stats_.index, stats_["mean"], yerr=stats_["std"], marker="o", capsize=3, label=method)
    ax.set(xlabel="paired fraction of the training clips", ylabel=metric.replace("_", " "))
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    _legend_below(figure, ax)
    return figure


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def robustness_runs(robustness: pd.DataFrame, per_condition: pd.DataFrame, missing: list[str]) -> pd.DataFrame:
    """One row per (method, fold, seed, setting) on the condition each setting is summarised by: `pooled` (the
    conditions a feature noise fills, or those containing the corrupted modality), plus the clean `missing`
    average (zero-filled, MMIN's Average) as setting `clean` (level 0) so that every curve starts from it."""
    metrics = metric_columns(robustness.columns)
    part = robustness[robustness["condition"] == "pooled"]
    clean = with_missing_average(per_condition, missing)
    clean = clean[clean["condition"] == "missing"].assign(noise="clean", modality="missing", level=0.0, unit="")
    columns = ["method", "fold", "seed", "noise", "modality", "level", "unit", *metrics]
    return pd.concat([clean[columns], part[columns]], ignore_index=True)


def robustness_table(runs: pd.DataFrame, metric: str, precision: int = 3) -> pd.DataFrame:
    """Rows = methods, columns = settings (clean first, then in grid order); cells 'mean ± std' over runs."""
    settings = [
        setting_label(n, lv, u) if n != "clean" else CLEAN_LABEL
        for n, lv, u in zip(runs["noise"], runs["level"], runs["unit"])
    ]
    return grid_table(runs.assign(condition=settings), metric, list(dict.fromkeys(settings)), precision)


def _mean_std(part: pd.DataFrame, metric: str) -> pd.DataFrame:
    return part.groupby("level")[metric].agg(["mean", "std"]).fillna(0.0)


def robustness_curves(
    runs: pd.DataFrame, metric: str, methods: list[str], noise_types: list[str], reference: Reference | None = None
) -> plt.Figure:
    """NMER's figure: `metric` on the missing-modality conditions vs the noise intensity T, one line per method
    (mean ± std over runs; the point at T = 0 is the clean, zero-filled grid), one panel per noise type, and with
    `reference` (reference_results.yaml's `nmer_wa_vs_noise`) a last panel with the official figure's points as a
    labelled reference on its own corpus (null values are not plotted)."""
    panels = len(noise_types) + int(reference is not None)
    figure, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.8), squeeze=False)
    colours = plt.get_cmap("tab20")
    for ax, noise in zip(axes[0], noise_types):
        for k, method in enumerate(methods):
            part = runs[(runs["method"] == method) & runs["noise"].isin(["clean", noise])]
            stats_ = _mean_std(part, metric)
            ax.plot(stats_.index, stats_["mean"], marker="o", ms=3, color=colours(k % 20), label=method)
            ax.fill_between(
                stats_.index,
                stats_["mean"] - stats_["std"],
                stats_["mean"] + stats_["std"],
                color=colours(k % 20),
                alpha=0.08,
            )
        ax.set(
            xlabel="noise intensity T (0 = zero-filled)",
            ylabel=f"{metric.upper()}, missing conditions",
            title=f"ours: {noise} noise on the missing modalities",
        )
    if reference is not None:
        ax = axes[0][-1]
        for name, values in reference.series().items():
            ax.plot(reference.x, values, marker="s", ms=3, ls=":" if name == "MEN" else "-", label=name)
        ax.set(
            xlabel=reference.x_label,
            ylabel=reference.metric.upper(),
            title=f"reference: NMER paper figure ({reference.corpus} A/V/L)\nauthors' plot arrays, not our data",
        )
        ax.legend(fontsize=7)
    _legend_below(figure, axes[0][0])
    return figure


def corruption_curves(
    robustness: pd.DataFrame, per_condition: pd.DataFrame, metric: str, methods: list[str], condition: str
) -> plt.Figure:
    """`metric` under `condition` (e.g. `av`: both modalities present, one corrupted) against each signal
    corruption's level, one panel per (modality, kind), the clean value as the first point."""
    signal = robustness[(robustness["unit"] != FEATURE_NOISE_UNIT) & (robustness["condition"] == condition)]
    kinds = list(dict.fromkeys(zip(signal["modality"], signal["noise"], signal["unit"])))
    figure, axes = plt.subplots(1, max(len(kinds), 1), figsize=(4.2 * max(len(kinds), 1), 3.6), squeeze=False)
    clean = per_condition[per_condition["condition"] == condition]
    colours = plt.get_cmap("tab20")
    for ax, (modality, noise, unit) in zip(axes[0], kinds):
        for k, method in enumerate(methods):
            part = signal[(signal["method"] == method) & (signal["noise"] == noise)]
            stats_ = _mean_std(part, metric)
            base = clean.loc[clean["method"] == method, metric]
            x_clean = (stats_.index.max() + 10) if unit == "dB" else 0.0  # "clean" = highest SNR / no dropout
            curve = pd.concat([pd.Series({x_clean: base.mean()}), stats_["mean"]]).sort_index()
            ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3, color=colours(k % 20), label=method)
        if unit == "dB":
            ax.invert_xaxis()
            ax.set_xlabel("SNR (dB); leftmost point = clean")
        else:
            ax.set_xlabel("fraction of frames dropped")
        ax.set(ylabel=f"{metric.upper()} ({condition})", title=f"{modality}: {noise}")
    _legend_below(figure, axes[0][0])
    return figure


def _legend_below(figure: plt.Figure, ax: plt.Axes) -> None:
    """One legend for every panel, in a row under the figure (the method lines are many)."""
    handles, labels = ax.get_legend_handles_labels()
    figure.tight_layout()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=7, fontsize=7, frameon=False)


def robustness_comparison(runs: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """`paired_comparison` of runs `a` and `b` in every setting of `robustness_runs`."""
    rows = []
    for (noise, level, unit), part in runs.groupby(["noise", "level", "unit"], sort=False):
        result = paired_comparison(part.assign(condition="x"), a, b, "x", metric)
        label = CLEAN_LABEL if noise == "clean" else setting_label(noise, level, unit)
        rows.append({"setting": label, **{k: result[k] for k in ("a", "b", "difference", "wins", "pairs", "p_value")}})
    return pd.DataFrame(rows).set_index("setting")


EMBEDDING_MARKERS = {"a": "^", "v": "s", "l": "D"}  # single-modality conditions; the full condition is "o"
OTHER_MARKERS = ("v", "P", "X", "*", "h")  # any other partial condition (three-modality corpora)


def embedding_figure(embeddings: pd.DataFrame, classes: list[str], links: int = 12) -> plt.Figure:
    """One panel per run (`mer_core.embedding`'s `results/<run>/embedding.csv` rows, concatenated): each test clip
    under each condition, coloured by emotion, marker by condition (o = all modalities; ^ audio only, s visual
    only); for `links` clips (a fixed seeded choice, the same in every panel) thin grey lines join the clip's
    full-condition point to its points under the other conditions: how a missing modality moves it. The panel
    title gives the mean `dist_to_full` per missing condition (0: not moved; 1: as far as another clip). One
    shared legend below."""
    runs = list(dict.fromkeys(embeddings["run"]))
    conditions = list(dict.fromkeys(embeddings["condition"]))
    full = max(conditions, key=len)
    others = [c for c in conditions if c != full]
    spare = iter(OTHER_MARKERS)
    markers = {c: "o" if c == full else EMBEDDING_MARKERS.get(c) or next(spare) for c in conditions}
    colours = {c: plt.get_cmap("tab10")(k % 10) for k, c in enumerate(classes)}
    clips = sorted(embeddings["clip_id"].unique())
    linked = set(np.random.default_rng(0).choice(clips, min(links, len(clips)), replace=False))
    figure, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3.9), squeeze=False)
    for ax, run in zip(axes[0], runs):
        part = embeddings[embeddings["run"] == run]
        for condition in [*others, full]:  # the full condition drawn last, on top
            rows = part[part["condition"] == condition]
            ax.scatter(
                rows["x"],
                rows["y"],
                s=9 if condition == full else 7,
                marker=markers[condition],
                c=[colours.get(label, "black") for label in rows["label"]],
                alpha=0.6,
                linewidths=0,
            )
        ends = part[part["clip_id"].isin(linked)]
        for condition in conditions:  # the linked clips' points, outlined
            rows = ends[ends["condition"] == condition]
            ax.scatter(
                rows["x"],
                rows["y"],
                s=18,
                marker=markers[condition],
                zorder=4,
                linewidths=0.7,
                c=[colours.get(label, "black") for label in rows["label"]],
                edgecolors="black",
            )
        anchor = part[part["condition"] == full].set_index("clip_id")[["x", "y"]]
        for condition in others:
            moved = part[(part["condition"] == condition) & part["clip_id"].isin(linked)].set_index("clip_id")
            for clip, (x, y) in moved[["x", "y"]].iterrows():
                if clip in anchor.index:
                    ax.plot([anchor.at[clip, "x"], x], [anchor.at[clip, "y"], y], color="0.35", lw=0.6, zorder=3)
        moved = part[part["condition"] != full].groupby("condition")["dist_to_full"].mean()
        projection = {"tsne": "t-SNE", "pca": "PCA"}.get(str(part["projection"].iloc[0]), part["projection"].iloc[0])
        ax.set_title(
            f"{run} ({projection})\nmoved from {full}: "
            + ", ".join(f"{c} {moved[c]:.2f}" for c in others if c in moved),
            fontsize=8,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours[c], label=c) for c in classes]
    handles += [
        plt.Line2D([], [], ls="", marker=markers[c], color="0.4", mfc="none", label=f"condition {c}")
        for c in conditions
    ]
    handles.append(plt.Line2D([], [], color="0.35", lw=0.6, label=f"a clip's {full} point to its others"))
    figure.tight_layout()
    figure.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.02),
        ncol=min(len(handles), 6),
        fontsize=7,
        frameon=False,
    )
    return figure


def embedding_summary(embeddings: pd.DataFrame, precision: int = 3) -> pd.DataFrame:
    """Per run and condition of `embedding_figure`'s rows: clips, accuracy (pred = label; NaN without
    predictions), and the mean `cos_to_full` and `dist_to_full` (measured in the joint representation itself, not
    in the projection; see `mer_core.embedding`)."""
    rows = []
    for (run, condition), part in embeddings.groupby(["run", "condition"], sort=False):
        has_pred = part["pred"].notna() & (part["pred"].astype(str) != "")
        rows.append(
            {
                "run": run,
                "condition": condition,
                "clips": len(part),
                "accuracy": float((part["pred"] == part["label"]).mean()) if has_pred.all() else np.nan,
                "cos_to_full": part["cos_to_full"].mean(),
                "dist_to_full": part["dist_to_full"].mean(),
            }
        )
    return pd.DataFrame(rows).set_index(["run", "condition"]).round(precision)
