"""End-to-end: the whole DVC + papermill pipeline on a tiny configuration, in a throw-away copy of the project.

Checks that `dvc repro` runs every stage and writes every result (embedding maps included), that the extended study
(`dvc repro extended/dvc.yaml`) runs on top of it, that a second `dvc repro` of either is a no-op, and that
`dvc exp run -S methods.<run>.<key>=...` reruns only that run's training stage (and the analysis).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from media import speech_like, write_video, write_wav

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPIED = ["mer_core", "notebooks", "dvc.yaml", "extended/dvc.yaml", "params.yaml", "reference_results.yaml",
          ".dvcignore", ".gitignore", ".gitattributes"]

pytestmark = pytest.mark.slow
TRIMMED = ("early_fusion", "mmin_no_cycle", "ifmmin_no_cmd", "ifmmin_no_inject", "ifmmin_no_inv")


def tiny(params: dict) -> dict:
    """4 actors x 2 sentences, 2 folds, 2 epochs, one process: the smallest study that exercises everything."""
    params["data"]["synthetic"].update(n_actors=4, sentences=["IEO", "DFA"], n_jobs=1)
    params["features"]["n_jobs"] = 1
    params["features"]["corruptions"].update(audio_snr_db=[10.0], visual_dropout=[0.5])  # each noise, one level
    params["folds"].update(n_folds=2, n_val_speakers=1)
    params["train"].update(n_jobs=1, seeds=[0])
    params["robustness"]["intensities"] = [20, 100]
    for run in TRIMMED:  # ablations run the same code as their method, early fusion as the LSTM baselines: keep it short
        del params["methods"][run]
    params["analysis"]["imagination_table"] = [r for r in params["analysis"]["imagination_table"] if r not in TRIMMED]
    for entry in params["methods"].values():
        if entry["method"] == "vavl":
            entry.update(projection=8, d_model=8, heads=2, kernel=3)
        else:
            entry.update(hidden=16, classifier=[16])
        entry["optim"].update(epochs=2, epochs_decay=0, batch_size=16)
        if "pretrain" in entry:
            entry["pretrain"]["optim"].update(epochs=1, epochs_decay=0, batch_size=16)
            entry["optim"]["epochs_decay"] = 1  # exercise the linear decay
    extended = params["extended"]  # one variant of each kind
    extended["ablations"] = {"vavl_no_rec": extended["ablations"]["vavl_no_rec"]}
    extended["other_task"]["runs"] = ["vavl"]
    extended["unpaired"].update(runs=["vavl"], paired=[0.5])
    return params


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(cwd),
               JUPYTER_PREFER_ENV_PATH="1", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("study")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, project / name)
    params = tiny(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    run(["dvc", "repro"], project)
    run(["dvc", "repro", "extended/dvc.yaml"], project)
    return project


def test_repro_writes_every_result(project: Path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    corruptions = json.loads((project / "data" / "features" / "builtin" / "manifest.json").read_text())["corruptions"]
    assert {c["kind"] for c in corruptions} == {"babble", "white", "tracking_dropout"}
    for method, entry in params["methods"].items():
        metrics = json.loads((project / "results" / method / "metrics.json").read_text())
        assert metrics["run"] == method and metrics["method"] == entry["method"]
        assert metrics["n_runs"] == 2  # 2 folds x 1 seed
        stages = 2 if "pretrain" in entry else 1
        assert set(metrics["conditions"]) == {"a", "v", "av", "pooled", "mean"}
        for values in metrics["conditions"].values():
            assert 0.0 <= values["ua_mean"] <= 1.0
        per_condition = pd.read_csv(project / "results" / method / "per_condition.csv")
        assert len(per_condition) == 2 * 5
        robustness = pd.read_csv(project / "results" / method / "robustness.csv")
        settings = robustness.drop_duplicates(["fold", "noise", "level"])
        assert len(settings) == 2 * (2 * 2 + len(corruptions))  # folds x (noise types x T + signal corruptions)
        assert len(list((project / "data" / "checkpoints" / method).glob("*.pt"))) == 2 * stages
        assert (project / "reports" / "notebooks" / f"02_train-{method}.ipynb").is_file()
    embedded = params["analysis"]["embedding"]["runs"]
    assert embedded == ["utt_fusion", "mmin", "ifmmin", "nmer", "vavl"]  # tiny() keeps them
    for name in embedded:
        embedding = pd.read_csv(project / "results" / name / "embedding.csv")
        assert set(embedding["condition"]) == {"a", "v", "av"} and (embedding["run"] == name).all()
        assert len(embedding) == 3 * embedding["clip_id"].nunique() and embedding[["x", "y"]].notna().all().all()
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:
        notebook = json.loads((project / "reports" / "notebooks" / f"{name}.ipynb").read_text())
        errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors
    explore = json.loads((project / "reports" / "notebooks" / "04_explore.ipynb").read_text())
    outputs = [o for c in explore["cells"] for o in c.get("outputs", [])]
    assert any("<audio" in "".join(o.get("data", {}).get("text/html", [])) for o in outputs)  # the clip's player
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1  # spectrogram, faces, probabilities, sweep
    assert (project / "reports" / "html" / "notebooks" / "04_explore.html").is_file()  # html runs after explore
    for table in ["conditions_ua", "conditions_wa", "calibration", "imagination_ua", "imagination_wa",
                  "imagination_claims", "robustness_wa", "robustness_ua", "robustness_nmer_vs_mmin",
                  "robustness_nmer_vs_ifmmin", "corruptions_ua", "corruptions_wa", "vavl_table", "vavl_tests", "claims",
                  "deviations"]:
        for suffix in ["md", "tex", "csv"]:
            assert (project / "reports" / "tables" / f"{table}.{suffix}").stat().st_size > 0
    for figure in ["training_curves", "robustness_wa", "corruptions_ua"]:
        assert (project / "reports" / "figures" / f"{figure}.png").stat().st_size > 0
    findings = (project / "reports" / "findings.md").read_text()
    assert "**The study.**" in findings and "2 pairs of fold x seed" in findings  # generated from the tiny runs
    sidecar = json.loads((project / "reports" / "tables" / "conditions_ua.provenance.json").read_text())
    assert "train@vavl" in json.dumps(sidecar)  # the upstream stages and their dvc.lock hashes
    index = (project / "reports" / "html" / "index.html").read_text()
    assert "03_analysis.html" in index and (project / "reports" / "html" / "notebooks" / "03_analysis.html").is_file()
    assert (project / "reports" / "html" / "extended" / "index.html").is_file()
    summary = json.loads((project / "reports" / "data_summary.json").read_text())
    assert summary["clips"] == 4 * 22 and summary["speakers"] == 4


def test_extended_study_writes_every_result(project: Path):
    for name, task in [("vavl_no_rec", "classification"), ("vavl_regression", "regression"),
                       ("vavl_paired0.5", "classification")]:
        metrics = json.loads((project / "extended" / "results" / name / "metrics.json").read_text())
        assert metrics["run"] == name and metrics["task"] == task and metrics["robustness"] == {}
        assert set(metrics["conditions"]) == {"a", "v", "av", "pooled", "mean"}
    assert json.loads((project / "extended" / "results" / "vavl_paired0.5" / "metrics.json").read_text())[
        "params"]["unpaired"] == {"audio": 0.25, "visual": 0.25}
    regression = pd.read_csv(project / "extended" / "results" / "vavl_regression" / "per_condition.csv")
    assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"} <= set(regression)
    notebook = json.loads((project / "reports" / "extended" / "notebooks" / "05_extended.ipynb").read_text())
    assert not [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    for table in ["vavl_ablations", "vavl_ablation_tests", "vavl_regression", "unpaired_curve", "unpaired_tests"]:
        assert (project / "reports" / "extended" / "tables" / f"{table}.md").stat().st_size > 0
    assert (project / "reports" / "extended" / "figures" / "unpaired_curve.png").stat().st_size > 0
    sidecar = json.loads((project / "reports" / "extended" / "tables" / "vavl_ablations.provenance.json").read_text())
    assert {"train@vavl", "extended/dvc.yaml:ablation@vavl_no_rec", "prepare"} <= set(sidecar["stages"])


def test_second_repro_is_a_no_op(project: Path):
    output = run(["dvc", "repro", "--dry", "dvc.yaml", "extended/dvc.yaml"], project).stdout
    assert "Running stage" not in output


def test_exp_run_reruns_only_the_changed_method(project: Path):
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "tiny study"], project)
    output = run(["dvc", "exp", "run", "-S", "methods.late_fusion.optim.epochs=3"], project).stdout
    ran = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@late_fusion", "analysis", "html"}


def write_crema_d(root: Path, actors=("1001", "1002", "1003", "1004")) -> Path:
    """A tiny corpus in CREMA-D's real layout: AudioWAV/*.wav (16 kHz), VideoFlash/*.flv (a drawn face, no OpenFace
    folder, so the faces are detected in the videos) and VideoDemographics.csv; one sentence, every emotion."""
    for a, actor in enumerate(actors):
        for e, emotion in enumerate(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]):
            stem = f"{actor}_DFA_{emotion}_XX"
            write_wav(root / "AudioWAV" / f"{stem}.wav", wave=speech_like(0.6 + 0.05 * e, 16000, seed=7 * a + e))
            write_video(root / "VideoFlash" / f"{stem}.flv", seconds=0.6, fps=10)
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n" + "".join(f"{actor},30,{'Male' if k % 2 else 'Female'},Caucasian,Not Hispanic\n"
                                                       for k, actor in enumerate(actors)))
    return root


def test_exp_run_on_a_crema_d_layout_corpus(project: Path, tmp_path_factory):
    """`dvc exp run -S data.corpus=crema_d -S data.root=<path>`: the real adapter, audio from WAVs, face crops
    detected in FLV videos, the CNN frame encoder, every method and the analysis, end to end."""
    corpus = write_crema_d(tmp_path_factory.mktemp("crema_d"))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "before the CREMA-D run"], project)
    overrides = {"data.corpus": "crema_d", "data.root": str(corpus), "features.visual.extractor": "face_crops",
                 "features.visual.fps": "10", "features.visual.rate_reduction": "1",
                 "features.visual.face_crops.size": "16", "train.frame_encoder.dim": "8",
                 "train.frame_encoder.channels": "[4,4]", "train.frame_encoder.groups": "2"}
    output = run(["dvc", "exp", "run"] + [a for k, v in overrides.items() for a in ("-S", f"{k}={v}")], project).stdout
    ran = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    params = yaml.safe_load((project / "params.yaml").read_text())
    embedded = {f"embedding@{r}" for r in params["analysis"]["embedding"]["runs"]}
    trained = {f"train@{m}" for m in params["methods"]}
    assert ran == {"prepare", "analysis", "explore", "html"} | trained | embedded  # not the corpus
    manifest = json.loads((project / "data" / "features" / "crema_d" / "manifest.json").read_text())
    assert manifest["corpus"] == "crema_d" and manifest["counts"]["clips"] == 24 and manifest["dims"]["visual"] == 256
    assert manifest["features"]["visual"]["extractor"] == "face_crops"
    meta = pd.read_csv(project / "data" / "features" / "crema_d" / "meta.csv", dtype={"speaker": str})
    assert meta["has_visual"].all() and meta["has_audio"].all()
    assert set(meta["gender"]) == {"Male", "Female"}
    for method in params["methods"]:
        metrics = json.loads((project / "results" / method / "metrics.json").read_text())
        assert metrics["n_runs"] == 2 and set(metrics["conditions"]) == {"a", "v", "av", "pooled", "mean"}
    for name in params["analysis"]["embedding"]["runs"]:  # joint() through the face-crop frame encoder
        embedding = pd.read_csv(project / "results" / name / "embedding.csv")
        assert len(embedding) == 3 * embedding["clip_id"].nunique() and embedding["clip_id"].str.match(r"^\d{4}_DFA_").all()
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:  # the explorer: WAVs, and face crops (no AUs)
        notebook = json.loads((project / "reports" / "notebooks" / f"{name}.ipynb").read_text())
        assert not [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
