"""The joint representation of every method (`joint(batch)`) and mer_core.embedding (2-D maps of it per run)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from fakes import CTX, make_batch

from mer_core.conditions import all_conditions, apply_condition
from mer_core.config import ConfigError, load_params, resolve_runs, stage_params
from mer_core.embedding import (
    CACHE,
    COLUMNS,
    cached_embedding,
    displacement,
    main,
    project,
    read_embedding,
    run_embedding,
    write_embedding,
)
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.params.evaluation import Embedding
from mer_core.params.methods import CATALOG
from mer_core.report import embedding_figure, embedding_summary
from mer_core.study import embedded_runs
from mer_core.tasks import study_task
from mer_core.train import checkpoint_path, save_checkpoint

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ("utt_fusion", "mmin", "ifmmin", "nmer", "vavl")
# joint width on the fakes' two modalities with tiny_params' sizes (hidden 8; AE widths 16, 8, 4 x 2 blocks; VAVL d 8)
WIDTH = {
    "audio_only": 8,
    "visual_only": 8,
    "early_fusion": 8,
    "utt_fusion": 16,
    "utt_dataaug": 16,
    "mmin": 8,
    "ifmmin": 8,
    "nmer": 16,
    "vavl": 16,
}
STAGE1_WIDTH = {"mmin": 16, "ifmmin": 32, "nmer": 32}  # UttFusion h; IF-MMIN and NMER: [embeddings, S(.)...]


def build_stages(run: dict, ctx: ModelContext = CTX) -> list[torch.nn.Module]:
    """Every stage's model of a resolved run, built as the training loop builds them (eval mode)."""
    torch.manual_seed(0)
    models, model, entry = [], None, run["entry"]
    for stage in method_spec(run["method"]).stages:
        model = stage.build(entry, ctx, model)
        models.append(model)
    return [m.eval() for m in models]


def classify(model, batch):
    """What forward should return, recomputed from joint(batch): the classifier (VAVL: heads and fusion) on it."""
    joint = model.joint(batch)
    if hasattr(model, "fusion"):  # VAVL: the unimodal heads read the joint vector's slices
        reps = joint.chunk(len(model.modalities), 1)
        unimodal = torch.stack([model.heads[m](r.contiguous()) for m, r in zip(model.modalities, reps)], 1)
        return model.combine(unimodal, model.fusion(joint), batch.present.float())
    return model.classifier(joint)[0]


@pytest.fixture
def runs(tiny_store, tiny_params) -> dict[str, dict]:
    """The tiny study's resolved runs (one per method, run name = method name)."""
    return resolve_runs(tiny_params(tiny_store))


def embedding_cfg(**changes) -> dict:
    """`analysis.embedding` (validated, defaults filled) with `changes`."""
    return {**Embedding().model_dump(), "fold": 0, "seed": 0, **changes}  # fold, seed: as `derive_defaults` fills them


def write_checkpoint(run: dict, store, directory: Path, fold: int = 0, seed: int = 0) -> Path:
    """An untrained (seeded) final-stage checkpoint of the resolved `run`, as `fit_run` saves one."""
    context = ModelContext.from_manifest(store.manifest, study_task(run["task"], store.manifest))
    model = build_stages(run, context)[-1]
    path = checkpoint_path(directory, fold, seed, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        {
            "run": run["name"],
            "method": run["method"],
            "module": run["module"],
            "stages": run["stages"],
            "stage": run["stages"][-1]["name"],
            "params": run["entry"],
            "fold": fold,
            "seed": seed,
            "epoch": 1,
            "context": dataclasses.asdict(context),
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def test_the_catalogue_names_a_joint_exactly_for_the_models_that_have_one(tiny_store, tiny_params):
    runs = resolve_runs(tiny_params(tiny_store, methods={"functionals_svm": {"method": "functionals_svm"}}))
    assert set(CATALOG) == {run["method"] for run in runs.values() if run["study"] == "default"}
    for name, run in runs.items():
        if run["study"] == "default":
            final = build_stages(run)[-1]
            assert hasattr(final, "joint") == (CATALOG[run["method"]].joint is not None) == run["joint"], name
    summaries = {name: {**run, "status": "train"} for name, run in runs.items()}
    assert embedded_runs(summaries) == [m for m in CATALOG if m not in ("late_fusion", "functionals_svm")]


@pytest.mark.parametrize("run", list(WIDTH))
def test_joint_shape_and_forward_is_the_classifier_on_joint(tiny_store, tiny_params, run):
    models = build_stages(resolve_runs(tiny_params(tiny_store))[run])
    batch = make_batch(n=6)
    for condition in all_conditions(CTX.modalities):
        seen = apply_condition(batch, condition)
        with torch.no_grad():
            joint = models[-1].joint(seen)
            assert joint.shape == (6, WIDTH[run]) and torch.isfinite(joint).all()
            assert torch.equal(models[-1](seen), classify(models[-1], seen))  # bit-identical
            if len(models) == 2:  # the stage-1 nets read theirs too
                assert models[0].joint(seen).shape == (6, STAGE1_WIDTH[run])
                assert torch.equal(models[0](seen), models[0].classifier(models[0].joint(seen))[0])


def test_joint_is_what_each_method_documents(runs):
    methods = runs
    batch = make_batch(n=4)
    with torch.no_grad():
        utt = build_stages(methods["utt_fusion"])[0]
        torch.testing.assert_close(
            utt.joint(batch),
            torch.cat([utt.encoders[m](batch.x[m], batch.lengths[m]) for m in CTX.modalities], 1),
            rtol=0,
            atol=0,
        )
        mmin = build_stages(methods["mmin"])[-1]
        torch.testing.assert_close(mmin.joint(batch), mmin.imagine(batch)[2], rtol=0, atol=0)
        nmer = build_stages(methods["nmer"])[-1]
        torch.testing.assert_close(nmer.joint(batch), nmer.vae(*nmer.encode(batch))[0], rtol=0, atol=0)
        vavl = build_stages(methods["vavl"])[-1]
        torch.testing.assert_close(
            vavl.joint(batch), torch.cat([vavl.represent(batch, m) for m in CTX.modalities], 1), rtol=0, atol=0
        )


def test_projection_is_deterministic_and_pca_is_the_first_two_components():
    vectors = np.random.default_rng(0).normal(size=(60, 10)) * np.arange(1, 11)
    for projection in ("pca", "tsne"):
        first, second = project(vectors, projection, 10.0), project(vectors, projection, 10.0)
        assert first.shape == (60, 2) and np.isfinite(first).all()
        np.testing.assert_array_equal(first, second)
    z = (vectors - vectors.mean(0)) / vectors.std(0)
    pcs = np.linalg.svd(z - z.mean(0), full_matrices=False)[2][:2]
    np.testing.assert_allclose(np.abs(project(vectors, "pca")), np.abs(z @ pcs.T), atol=1e-8)
    with pytest.raises(ValueError, match="too few"):
        project(vectors[:3], "pca")


def test_embedding_csv_holds_every_clip_under_every_condition(runs, tiny_store, tmp_path):
    cfg = embedding_cfg()
    names = ("utt_fusion", "vavl")
    for run in names:
        write_checkpoint(runs[run], tiny_store, tmp_path / "ckpt" / run)
    n_test = len(tiny_store.fold_indices(0)["test"])
    tables = []
    for run in names:
        table = run_embedding(cfg, run, tiny_store, tmp_path / "ckpt" / run)
        assert list(table) == COLUMNS and len(table) == n_test * 3
        assert table.groupby("condition").size().to_dict() == {"a": n_test, "v": n_test, "av": n_test}
        assert table.groupby("clip_id").size().eq(3).all() and (table["run"] == run).all()
        assert (table[["fold", "seed"]] == 0).all().all() and (table["projection"] == "tsne").all()
        meta = tiny_store.meta.set_index("clip_id")
        assert (table["label"].to_numpy() == meta.loc[table["clip_id"], "label"].to_numpy()).all()
        assert set(table["pred"]) <= set(tiny_store.manifest["classes"])
        full = table[table["condition"] == "av"]
        assert (full["cos_to_full"] == 1.0).all() and (full["dist_to_full"] == 0.0).all()
        missing = table[table["condition"] != "av"]
        assert missing["cos_to_full"].between(-1, 1).all() and (missing["dist_to_full"] > 0).all()
        assert np.isfinite(table[["x", "y"]].to_numpy()).all()
        pd.testing.assert_frame_equal(table, run_embedding(cfg, run, tiny_store, tmp_path / "ckpt" / run))
        out = write_embedding(table, tmp_path / "results" / run / "embedding.csv")
        back = pd.read_csv(out)
        assert list(back) == COLUMNS and len(back) == len(table)
        assert not list(out.parent.glob(".*.tmp"))
        tables.append(back)
    both = pd.concat(tables, ignore_index=True)
    figure = embedding_figure(both, list(tiny_store.manifest["classes"]), links=3)
    assert len(figure.axes) == 2 and figure.axes[0].get_title().startswith("utt_fusion (t-SNE)")
    summary = embedding_summary(both)
    assert summary.shape == (6, 4) and (summary.xs("av", level="condition")["cos_to_full"] == 1.0).all()


def test_max_clips_keeps_the_same_seeded_subset_and_pca_works(runs, tiny_store, tmp_path):
    cfg = embedding_cfg(max_clips=10, projection="pca")
    for run in ("mmin", "nmer"):
        write_checkpoint(runs[run], tiny_store, tmp_path / run)
    a, b = (run_embedding(cfg, run, tiny_store, tmp_path / run) for run in ("mmin", "nmer"))
    assert len(a) == 30 and a["clip_id"].nunique() == 10
    assert sorted(a["clip_id"].unique()) == sorted(b["clip_id"].unique())
    assert (a["projection"] == "pca").all()


def test_regression_runs_embed_without_predictions(tiny_attribute_store, tiny_params, tmp_path):
    run = resolve_runs(tiny_params(tiny_attribute_store, task="regression"))["utt_fusion"]
    write_checkpoint(run, tiny_attribute_store, tmp_path)
    table = run_embedding(embedding_cfg(projection="pca"), "utt_fusion", tiny_attribute_store, tmp_path)
    assert table["pred"].eq("").all() and set(table["label"]) <= set(tiny_attribute_store.manifest["classes"])


def test_a_run_without_joint_or_checkpoint_or_fold_fails_naming_it(runs, tiny_store, tmp_path):
    write_checkpoint(runs["late_fusion"], tiny_store, tmp_path)
    with pytest.raises(ConfigError, match="'late_fusion'.*no joint representation"):
        run_embedding(embedding_cfg(), "late_fusion", tiny_store, tmp_path)
    with pytest.raises(FileNotFoundError, match="train@utt_fusion"):
        run_embedding(embedding_cfg(), "utt_fusion", tiny_store, tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"analysis\.embedding\.fold: fold 9 does not exist"):
        run_embedding(embedding_cfg(fold=9), "utt_fusion", tiny_store, tmp_path)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            {"analysis.embedding.runs": ["utt_fusion"]},
            r"^analysis\.embedding\.runs: unknown key; allowed keys here: "
            r"fold, seed, projection, perplexity, max_clips$",
        ),
        ({"analysis.embedding.fold": 4}, r"analysis\.embedding\.fold: fold 4 does not exist; folds\.n_folds is 4"),
        ({"analysis.embedding.seed": 5}, r"analysis\.embedding\.seed: 5 is not one of train\.seeds \[0, 1, 2\]"),
        (
            {"analysis.embedding.projection": "umap"},
            r"analysis\.embedding\.projection: got 'umap'; Input should be 'tsne' or 'pca'",
        ),
        ({"analysis.embedding.perplexity": 0.5}, r"analysis\.embedding\.perplexity: got 0\.5"),
        ({"analysis.embedding.max_clips": 2}, r"analysis\.embedding\.max_clips: got 2"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_params(ROOT / "params.yaml", overrides)


def test_the_embedded_runs_are_the_base_runs_whose_method_has_a_joint_representation():
    params = load_params(ROOT / "params.yaml")
    cfg = stage_params(params, resolve_runs(params))["embedding.json"]
    assert cfg["runs"] == [name for name, entry in params["methods"].items() if CATALOG[entry["method"]].joint]
    assert set(EMBEDDED) <= set(cfg["runs"]) and "late_fusion" not in cfg["runs"]
    assert {k: cfg[k] for k in ("fold", "seed", "projection")} == {"fold": 0, "seed": 0, "projection": "tsne"}
    assert cfg["store"] == "data/features/builtin"


def test_cli_writes_one_csv_per_run_with_a_checkpoint_and_caches_them(runs, tiny_store, tmp_path, monkeypatch, capsys):
    """The stage's command on its resolved params: a table per run with a checkpoint of the fold and seed, a line for
    a run without one; the out folder is rewritten; a rerun reuses the cached tables of unchanged checkpoints."""
    monkeypatch.chdir(tmp_path)
    cfg = {**embedding_cfg(projection="pca"), "runs": ["ifmmin", "utt_fusion"], "store": str(tiny_store.root)}
    Path("embedding.json").write_text(json.dumps(cfg))
    write_checkpoint(runs["ifmmin"], tiny_store, Path("data/checkpoints/ifmmin"))
    Path("results/embeddings").mkdir(parents=True)
    Path("results/embeddings/stale.csv").write_text("x\n")
    assert main(["--params", "embedding.json", "--out", "results/embeddings"]) == 0
    assert sorted(p.name for p in Path("results/embeddings").iterdir()) == ["ifmmin.csv"]
    assert "utt_fusion: no checkpoint for fold 0, seed 0" in capsys.readouterr().out
    table = pd.read_csv("results/embeddings/ifmmin.csv")
    assert list(table) == COLUMNS and len(table) == 3 * len(tiny_store.fold_indices(0)["test"])
    cached = list(CACHE.glob("ifmmin-*.csv"))
    assert len(cached) == 1
    assert main(["--params", "embedding.json", "--out", "results/embeddings"]) == 0
    assert list(CACHE.glob("ifmmin-*.csv")) == cached
    assert Path("results/embeddings/ifmmin.csv").read_bytes() == cached[0].read_bytes()


def test_cached_embedding_recomputes_for_another_checkpoint_or_setting(runs, tiny_store, tmp_path):
    cfg, checkpoints = embedding_cfg(projection="pca"), tmp_path / "ckpt"
    write_checkpoint(runs["utt_fusion"], tiny_store, checkpoints)
    first = cached_embedding(cfg, "utt_fusion", tiny_store, checkpoints, tmp_path / "cache")
    pd.testing.assert_frame_equal(
        first, cached_embedding(cfg, "utt_fusion", tiny_store, checkpoints, tmp_path / "cache")
    )
    assert len(list((tmp_path / "cache").iterdir())) == 1
    cached_embedding(
        embedding_cfg(projection="pca", max_clips=8), "utt_fusion", tiny_store, checkpoints, tmp_path / "cache"
    )
    other = dict(runs["utt_fusion"], entry={**runs["utt_fusion"]["entry"], "hidden": 6})
    write_checkpoint(other, tiny_store, checkpoints)
    again = cached_embedding(cfg, "utt_fusion", tiny_store, checkpoints, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 3
    assert not np.allclose(again[["x", "y"]].to_numpy(), first[["x", "y"]].to_numpy())


def test_a_collapsed_representation_gives_nan_distances_that_read_back_as_floats(tmp_path):
    """Identical full-condition vectors (a model that has collapsed) have no spread: `dist_to_full` is NaN, not inf,
    and the table written and read back keeps it a float column (an empty CSV cell is not the text '')."""
    table = pd.DataFrame({"condition": ["av", "av", "a", "a"], "row": [0, 1, 0, 1]})
    vectors = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 2.0], [1.0, 0.0]])
    moved = displacement(table, vectors, "av")
    assert moved["dist_to_full"].isna().all() and moved["cos_to_full"].tolist()[:2] == [1.0, 1.0]
    path = tmp_path / "t.csv"
    pd.concat([table, moved], axis=1).assign(clip_id=["NA", "b", "NA", "b"], pred="NA").to_csv(path, index=False)
    back = read_embedding(path)
    assert back["dist_to_full"].dtype == float and back["dist_to_full"].isna().all()
    assert back["clip_id"].tolist() == ["NA", "b", "NA", "b"] and (back["pred"] == "NA").all()
    assert back.groupby("condition")[["cos_to_full", "dist_to_full"]].mean().shape == (2, 2)
