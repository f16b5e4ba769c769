"""Provenance sidecars (mer_core/provenance.py): the right keys, read from a tiny fake dvc.lock, byte-stable
across identical runs, and tolerant of a missing git."""
import json
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from mer_core import provenance as prov
from mer_core.report import save_figure, write_table

LOCK = {"schema": "2.0", "stages": {
    "corpus": {"cmd": "c", "deps": [{"path": "mer_core/data/synthetic", "md5": "s1.dir"}],
               "params": {"params.yaml": {"data.synthetic": {"seed": 1}}},
               "outs": [{"path": "data/raw/builtin", "md5": "raw.dir"}]},
    "prepare": {"cmd": "p", "deps": [{"path": "data/raw/builtin", "md5": "raw.dir"}],
                "outs": [{"path": "data/features", "md5": "feat.dir"}]},
    "train@a": {"cmd": "t", "deps": [{"path": "data/features", "md5": "feat.dir"}],
                "outs": [{"path": "results/a/per_condition.csv", "md5": "ra"}]},
    "train@b": {"cmd": "t", "deps": [{"path": "data/features", "md5": "feat.dir"}],
                "outs": [{"path": "results/b/per_condition.csv", "md5": "rb"}]},
    "unrelated": {"cmd": "u", "deps": [{"path": "other", "md5": "o"}], "outs": [{"path": "elsewhere", "md5": "e"}]},
    "analysis": {"cmd": "a", "deps": [{"path": "results", "md5": "r.dir"}],
                 "outs": [{"path": "reports/tables", "md5": "t.dir"}]},
}}
PARAMS = {"task": "classification", "methods": {"a": {"method": "x"}, "b": {"method": "y"}},
          "data": {"corpus": "builtin", "root": "data/raw/builtin", "features_dir": "data/features"},
          "analysis": {"precision": 3}}
KEYS = ["task", "methods", "data.corpus", "analysis"]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    return tmp_path


def test_upstream_stages_follow_the_lock_from_the_train_stages(project):
    stages = prov.upstream_stages(prov.read_lock(project / "dvc.lock"), ["train@a", "train@missing"])
    assert list(stages) == ["corpus", "prepare", "train@a", "train@missing"]
    assert stages["train@missing"] is None
    record = prov.stage_record(LOCK["stages"]["prepare"])
    assert record["deps"] == {"data/raw/builtin": "raw.dir"} and record["outs"] == {"data/features": "feat.dir"}
    assert stages["prepare"] == prov.canonical_sha256(record)
    corpus = prov.stage_record(LOCK["stages"]["corpus"])
    assert corpus["params_sha256"] == prov.canonical_sha256({"params.yaml": {"data.synthetic": {"seed": 1}}})
    assert stages["corpus"] == prov.canonical_sha256(corpus)


def test_a_second_pipeline_s_stages_are_named_by_its_dvc_yaml(project, monkeypatch):
    extended = {"schema": "2.0", "stages": {
        "ablation@x": {"cmd": "t", "deps": [{"path": "data/features", "md5": "feat.dir"}],
                       "outs": [{"path": "extended/results/x/per_condition.csv", "md5": "rx"}]},
        "analysis": {"cmd": "a", "deps": [{"path": "extended/results", "md5": "e.dir"}], "outs": []}}}
    (project / "extended").mkdir()
    (project / "extended" / "dvc.lock").write_text(yaml.safe_dump(extended))
    monkeypatch.chdir(project)
    record = prov.collect_provenance(PARAMS, KEYS, ["dvc.lock", "extended/dvc.lock"], root=project,
                                     roots=["train@a", "extended/dvc.yaml:ablation@x"])
    assert list(record["stages"]) == ["corpus", "extended/dvc.yaml:ablation@x", "prepare", "train@a"]
    assert record["stages"]["prepare"] == prov.canonical_sha256(prov.stage_record(LOCK["stages"]["prepare"]))


def test_collect_provenance_keys_and_values(project):
    record = prov.collect_provenance(PARAMS, KEYS, project / "dvc.lock", root=project)
    assert set(record) == {"stages", "feature_store", "params", "params_sha256", "git_parent_revision", "git_dirty"}
    assert list(record["stages"]) == ["corpus", "prepare", "train@a", "train@b"]  # not `analysis`, not `unrelated`
    assert record["feature_store"] == {"path": "data/features", "md5": "feat.dir"}
    assert record["params"] == {"task": "classification", "methods": PARAMS["methods"], "data.corpus": "builtin",
                                "analysis": {"precision": 3}}
    assert record["params_sha256"] == prov.canonical_sha256(record["params"])
    assert record["git_parent_revision"] is None and record["git_dirty"] is None  # tmp_path is not a repository


def test_missing_lock_and_bad_params(tmp_path):
    record = prov.collect_provenance(PARAMS, KEYS, tmp_path / "dvc.lock", root=tmp_path)
    assert record["stages"] == {"train@a": None, "train@b": None}
    assert record["feature_store"] == {"path": "data/features", "md5": None}
    with pytest.raises(KeyError, match="no key 'data.nope'"):
        prov.select_params(PARAMS, ["data.nope"])
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    with pytest.raises(ValueError, match="not a dvc.lock file"):
        prov.read_lock(tmp_path / "dvc.lock")


def test_missing_git_is_tolerated(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git executable at all
    assert prov.git_state(tmp_path) == {"git_parent_revision": None, "git_dirty": None}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_reads_head_and_dirty_inputs(tmp_path):
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "results.csv").write_text("an output, not an input\n")
    assert prov.git_state(tmp_path) == {"git_parent_revision": head, "git_dirty": False}
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert prov.git_state(tmp_path) == {"git_parent_revision": head, "git_dirty": True}


def test_sidecars_are_written_beside_tables_and_figures_and_stable(project):
    record = prov.collect_provenance(PARAMS, KEYS, project / "dvc.lock", root=project)
    table = pd.DataFrame({"ua": ["0.500 ± 0.010"]}, index=["a"])

    def run(out):
        tables = write_table(table, "conditions_ua", out / "tables", "UA.", provenance=record)
        figure, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        figures = save_figure(figure, "curve", out / "figures", provenance=record)
        plt.close(figure)
        return tables, figures

    tables, figures = run(project / "one")
    assert [p.name for p in tables] == ["conditions_ua.md", "conditions_ua.tex", "conditions_ua.csv",
                                        "conditions_ua.provenance.json"]
    assert figures[-1].name == "curve.provenance.json" and figures[-1].parent.name == "figures"
    sidecar = json.loads(tables[-1].read_text())
    assert sidecar["artefact"] == "conditions_ua"
    assert sidecar["files"]["conditions_ua.csv"] == prov.file_sha256(tables[2])
    assert set(sidecar) == {"artefact", "files", "stages", "feature_store", "params", "params_sha256",
                            "git_parent_revision", "git_dirty"}
    assert str(project) not in tables[-1].read_text()  # no absolute path
    again_tables, again_figures = run(project / "two")
    for first, second in zip(tables + figures, again_tables + again_figures):
        assert first.read_bytes() == second.read_bytes(), first.name
    assert write_table(table, "plain", project / "three", "UA.")[-1].name == "plain.csv"  # no provenance, no sidecar


def test_provenance_block_summarises_a_sidecar(project):
    record = prov.collect_provenance(PARAMS, KEYS, project / "dvc.lock", root=project)
    record = {**record, "git_parent_revision": "0123456789abcdef", "git_dirty": True}
    files = write_table(pd.DataFrame({"x": [1]}), "t", project, "c", provenance=record)
    block = prov.provenance_block(files[-1])
    short = record["stages"]["prepare"][:8]
    assert f"`prepare` {short}" in block and "`t.provenance.json`" in block
    assert "feature store `data/features` md5 `feat.dir`" in block
    assert "`data.corpus`" in block and record["params_sha256"][:12] in block
    assert "git commit `0123456789` with uncommitted changes" in block
    record = {**record, "git_parent_revision": None, "git_dirty": None}
    files = write_table(pd.DataFrame({"x": [1]}), "u", project, "c", provenance=record)
    assert "no git revision" in prov.provenance_block(files[-1])


def test_declared_params_read_the_stage_of_dvc_yaml(tmp_path):
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump({"stages": {"analysis": {"cmd": "a", "params": ["task", "data.corpus"]},
                                               "other": {"cmd": "o"}}}))
    assert prov.declared_params(path, "analysis") == ["task", "data.corpus"]
    assert prov.declared_params(path, "other") == []
    with pytest.raises(KeyError, match="no stage 'nope'"):
        prov.declared_params(path, "nope")
