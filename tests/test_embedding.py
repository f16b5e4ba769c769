"""The joint representation of every method (`joint(batch)`) and mer_core.embedding (2-D maps of it per run)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from mer_core.conditions import all_conditions, apply_condition
from mer_core.config import ConfigError, load_params, validate
from mer_core.embedding import COLUMNS, EMBEDDING_SCHEMA, joint_methods, main, project, run_embedding, \
    write_embedding
from mer_core.methods import REGISTRY, ModelContext, method_spec
from mer_core.tasks import study_task
from mer_core.train import checkpoint_path, save_checkpoint
from mer_core.report import embedding_figure, embedding_summary
from fakes import CTX, make_batch

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ("utt_fusion", "mmin", "ifmmin", "nmer", "vavl")
# joint width on the fakes' two modalities with tiny_params' sizes (hidden 8; AE widths 16, 8, 4 x 2 blocks; VAVL d 8)
WIDTH = {"audio_only": 8, "visual_only": 8, "early_fusion": 8, "utt_fusion": 16, "utt_dataaug": 16, "mmin": 8,
         "ifmmin": 8, "nmer": 16, "vavl": 16}
STAGE1_WIDTH = {"mmin": 16, "ifmmin": 32, "nmer": 32}  # UttFusion h; IF-MMIN and NMER: [embeddings, S(.)...]


def build_stages(entry: dict, ctx: ModelContext = CTX) -> list[torch.nn.Module]:
    """Every stage's model of a run entry, built as the training loop builds them (eval mode)."""
    torch.manual_seed(0)
    models, model = [], None
    for stage in method_spec(entry["method"]).stages:
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
def params(tiny_store, tiny_params):
    p = tiny_params(tiny_store)
    p["analysis"] = {"embedding": {"runs": list(EMBEDDED), "fold": 0, "seed": 0, "projection": "tsne",
                                   "perplexity": 30.0, "max_clips": None}}
    p["folds"] = {"protocol": "kfold", "n_folds": 4, "n_val_speakers": 1, "seed": 0}
    return p


def write_checkpoint(params: dict, store, run: str, directory: Path, fold: int = 0, seed: int = 0) -> Path:
    """An untrained (seeded) final-stage checkpoint of `run`, as `fit_run` saves one."""
    entry = params["methods"][run]
    context = ModelContext.from_manifest(store.manifest, study_task(params["task"], store.manifest))
    spec = method_spec(entry["method"])
    model = build_stages(entry, context)[-1]
    path = checkpoint_path(directory, fold, seed, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"run": run, "method": spec.name, "stage": spec.stages[-1].name, "params": entry, "fold": fold,
                     "seed": seed, "epoch": 1, "context": dataclasses.asdict(context),
                     "state_dict": model.state_dict()}, path)
    return path


def test_registry_names_a_joint_exactly_for_the_models_that_have_one(tiny_store, tiny_params):
    methods = tiny_params(tiny_store)["methods"]
    assert set(REGISTRY) == {e["method"] for e in methods.values()}
    for run, entry in methods.items():
        final = build_stages(entry)[-1]
        assert hasattr(final, "joint") == (REGISTRY[entry["method"]].joint is not None), run
    assert set(joint_methods()) == set(REGISTRY) - {"late_fusion"}


@pytest.mark.parametrize("run", list(WIDTH))
def test_joint_shape_and_forward_is_the_classifier_on_joint(tiny_store, tiny_params, run):
    models = build_stages(tiny_params(tiny_store)["methods"][run])
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


def test_joint_is_what_each_method_documents(tiny_store, tiny_params):
    methods = tiny_params(tiny_store)["methods"]
    batch = make_batch(n=4)
    with torch.no_grad():
        utt = build_stages(methods["utt_fusion"])[0]
        torch.testing.assert_close(utt.joint(batch), torch.cat(
            [utt.encoders[m](batch.x[m], batch.lengths[m]) for m in CTX.modalities], 1), rtol=0, atol=0)
        mmin = build_stages(methods["mmin"])[-1]
        torch.testing.assert_close(mmin.joint(batch), mmin.imagine(batch)[2], rtol=0, atol=0)
        nmer = build_stages(methods["nmer"])[-1]
        torch.testing.assert_close(nmer.joint(batch), nmer.vae(*nmer.encode(batch))[0], rtol=0, atol=0)
        vavl = build_stages(methods["vavl"])[-1]
        torch.testing.assert_close(vavl.joint(batch), torch.cat(
            [vavl.represent(batch, m) for m in CTX.modalities], 1), rtol=0, atol=0)


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


def test_embedding_csv_holds_every_clip_under_every_condition(params, tiny_store, tmp_path):
    runs = ("utt_fusion", "vavl")
    for run in runs:
        write_checkpoint(params, tiny_store, run, tmp_path / "ckpt" / run)
    n_test = len(tiny_store.fold_indices(0)["test"])
    tables = []
    for run in runs:
        table = run_embedding(params, run, tmp_path / "ckpt" / run)
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
        pd.testing.assert_frame_equal(table, run_embedding(params, run, tmp_path / "ckpt" / run))  # deterministic
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


def test_max_clips_keeps_the_same_seeded_subset_and_pca_works(params, tiny_store, tmp_path):
    params["analysis"]["embedding"].update(max_clips=10, projection="pca")
    for run in ("mmin", "nmer"):
        write_checkpoint(params, tiny_store, run, tmp_path / run)
    a, b = (run_embedding(params, run, tmp_path / run) for run in ("mmin", "nmer"))
    assert len(a) == 30 and a["clip_id"].nunique() == 10
    assert sorted(a["clip_id"].unique()) == sorted(b["clip_id"].unique())
    assert (a["projection"] == "pca").all()


def test_regression_runs_embed_without_predictions(tiny_attribute_store, tiny_params, tmp_path):
    params = tiny_params(tiny_attribute_store, task="regression")
    params["analysis"] = {"embedding": {"runs": ["utt_fusion"], "fold": 0, "seed": 0, "projection": "pca",
                                        "perplexity": 30.0, "max_clips": None}}
    write_checkpoint(params, tiny_attribute_store, "utt_fusion", tmp_path)
    table = run_embedding(params, "utt_fusion", tmp_path)
    assert table["pred"].eq("").all() and set(table["label"]) <= set(tiny_attribute_store.manifest["classes"])


def test_a_run_without_joint_or_checkpoint_or_fold_fails_naming_it(params, tiny_store, tmp_path):
    write_checkpoint(params, tiny_store, "late_fusion", tmp_path)
    with pytest.raises(ConfigError, match="'late_fusion'.*no joint representation"):
        run_embedding(params, "late_fusion", tmp_path)
    with pytest.raises(FileNotFoundError, match="train@utt_fusion"):
        run_embedding(params, "utt_fusion", tmp_path / "nowhere")
    params["analysis"]["embedding"]["fold"] = 9
    with pytest.raises(ConfigError, match=r"analysis\.embedding\.fold: fold 9 does not exist"):
        run_embedding(params, "utt_fusion", tmp_path)


@pytest.mark.parametrize("overrides, match", [
    ({"analysis.embedding.runs": ["utt_fusion", "late_fusion"]},
     r"analysis\.embedding\.runs: run 'late_fusion' \(method late_fusion\) has no joint representation"),
    ({"analysis.embedding.runs": ["utt_fusion", "nope"]}, r"analysis\.embedding\.runs: 'nope' is not a run"),
    ({"analysis.embedding.runs": ["mmin", "mmin"]}, r"analysis\.embedding\.runs: 'mmin' is listed twice"),
    ({"analysis.embedding.runs": []}, r"analysis\.embedding\.runs: got \[\]"),
    ({"analysis.embedding.fold": 4}, r"analysis\.embedding\.fold: fold 4 does not exist; folds\.n_folds is 4"),
    ({"analysis.embedding.seed": 5}, r"analysis\.embedding\.seed: 5 is not a trained seed"),
    ({"analysis.embedding.projection": "umap"}, r"analysis\.embedding\.projection: got 'umap'; allowed values: pca, tsne"),
    ({"analysis.embedding.perplexity": 0.5}, r"analysis\.embedding\.perplexity"),
    ({"analysis.embedding.max_clips": 2}, r"analysis\.embedding\.max_clips"),
])
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_params(ROOT / "params.yaml", overrides)


def test_params_yaml_embeds_the_five_runs():
    cfg = load_params(ROOT / "params.yaml")["analysis"]["embedding"]
    validate(cfg, EMBEDDING_SCHEMA, "analysis.embedding")
    assert cfg["runs"] == list(EMBEDDED)


def test_cli_writes_the_csv(params, tiny_store, tmp_path, monkeypatch):
    """The stage's command on params.yaml pointed at the tiny store (the checkpoint holds its own run entry)."""
    import yaml

    study = yaml.safe_load((ROOT / "params.yaml").read_text())
    study["data"]["features_dir"] = str(tiny_store.root.parent)
    study["analysis"]["embedding"].update(runs=["ifmmin"], projection="pca")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(study))
    write_checkpoint(params, tiny_store, "ifmmin", tmp_path / "data" / "checkpoints" / "ifmmin")
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "params.yaml", "--run", "ifmmin", "--out", "results/ifmmin/embedding.csv"]) == 0
    table = pd.read_csv(tmp_path / "results" / "ifmmin" / "embedding.csv")
    assert list(table) == COLUMNS and len(table) == 3 * len(tiny_store.fold_indices(0)["test"])
