"""End-to-end: both DVC + papermill pipelines on a tiny configuration, in a throw-away copy of the project.

Checks that `dvc repro` runs every stage and writes every result, that a second `dvc repro` of either pipeline is a
no-op, that `dvc exp run -S <one run's key>` reruns only that run's training stage and what reads it, that editing one
method's module reruns only the stages of its runs, that a subset of runs is one override (`train.runs`), and that the
real corpus adapters run end to end with `dvc exp run` and no other edit: an EmoDB-layout corpus (audio only: the
fusion methods are skipped with their reason, the analysis, explorer and HTML list only what trained), a
CREMA-D-layout corpus (face crops detected in its videos) and one with its audio alone; and that the real-speech
recipe (`make speech-dev`, docs/real-speech.md) runs on the real EmoDB recordings of `$MER_SHARED/data/emodb-dev`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from media import speech_like, write_video, write_wav

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COPIED = [
    "mer_core",
    "notebooks",
    "dvc.yaml",
    "extended/dvc.yaml",
    "params.yaml",
    "reference_results.yaml",
    ".dvcignore",
    ".gitignore",
    ".gitattributes",
    "Makefile",
    "pyproject.toml",
]
SHARED = Path(os.environ.get("MER_SHARED", ROOT.parent / "shared"))
EMODB_DEV = SHARED / "data" / "emodb-dev"

pytestmark = pytest.mark.slow


def tiny(params: dict) -> dict:
    """4 actors x 2 sentences, 2 folds, one seed, 2 epochs at tiny widths, one process: the smallest study that
    exercises every stage (each extended kind once)."""
    params.setdefault("data", {})["synthetic"] = {"n_actors": 4, "sentences": ["IEO", "DFA"]}
    params["features"]["corruptions"].update(audio_snr_db=[10.0], visual_dropout=[0.5])
    params["folds"].update(n_folds=2, n_val_speakers=1)
    params["train"].update(seeds=[0])
    params["train"]["stopping"] = {"rule": "plateau", "patience": 1, "min_epochs": 1}
    params["robustness"]["intensities"] = [20, 100]
    for entry in params["methods"].values():
        optim = {"epochs": 2, "epochs_decay": 0, "batch_size": 16}
        if entry["method"] == "vavl":
            entry.update(projection=8, d_model=8, heads=2, kernel=3, branch_blocks=1, shared_blocks=1, optim=optim)
            continue
        entry.update(hidden=16, classifier=[16], optim=optim)
        if entry["method"] in ("mmin", "ifmmin", "nmer"):
            entry["optim"] = {**optim, "epochs_decay": 1}  # exercise the linear decay
            entry["pretrain"] = {"optim": {"epochs": 1, "epochs_decay": 0, "batch_size": 16}, "classifier": [16]}
        if entry["method"] == "nmer":
            entry.update(latent=4, vae_layers=1, vae_heads=2, vae_ffn=8, decoder_hidden=8)
            entry["pretrain"]["denoise_hidden"] = 8
    params["extended"]["runs"] = {"vavl_no_rec": {"base": "vavl", "set": {"rec_weight": 0.0}}}
    params["extended"]["other_task"]["methods"] = ["vavl"]
    params["extended"]["unpaired"].update(methods=["vavl"], paired=[0.5])
    params["machine"]["jobs"] = 1
    return params


def run(cmd: list[str], cwd: Path, check: bool = True, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd` with the project's venv first on PATH; its output captured, or written to `log` (for a
    command that leaves detached processes behind, such as `dvc queue start`: they would hold a pipe open)."""
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(cwd),
        JUPYTER_PREFER_ENV_PATH="1",
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    if log is None:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    else:
        with open(log, "w") as out:
            result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=900)
        result.stdout, result.stderr = log.read_text(), ""
    if check:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", message], project)


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
    run(["dvc", "repro", "dvc.yaml", "extended/dvc.yaml"], project)
    commit(project, "tiny study")
    return project


def outputs_of(notebook: Path, kind: str) -> list[dict]:
    cells = json.loads(notebook.read_text())["cells"]
    return [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == kind or o.get("name") == kind]


def test_repro_writes_every_result(project: Path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    corruptions = json.loads((project / "data" / "features" / "builtin" / "manifest.json").read_text())["corruptions"]
    assert {c["kind"] for c in corruptions} == {"babble", "white", "tracking_dropout"}
    for name, entry in params["methods"].items():
        folder = project / "results" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["run"] == name and metrics["status"] == "trained"
        assert set(metrics["ua"]) == {"a", "v", "av", "missing"} and 0 <= metrics["ua"]["av"] <= 1
        assert set(metrics) <= {"run", "status", "ua", "wa", "noise_wa", "corrupted_ua"}  # headline numbers only
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["units"] == 2 and set(summary["conditions"]) == {"a", "v", "av", "pooled", "mean"}
        assert len(pd.read_csv(folder / "per_condition.csv")) == 2 * 5
        robustness = pd.read_csv(folder / "robustness.csv")
        assert len(robustness.drop_duplicates(["fold", "noise", "level"])) == 2 * (2 * 2 + len(corruptions))
        curve = pd.read_csv(folder / "curve.csv")
        assert list(curve.columns) == ["step", "stage", "epoch", "metric", "criterion", "units"]
        stages = 2 if entry["method"] in ("mmin", "ifmmin", "nmer") else 1
        assert len(list((project / "data" / "checkpoints" / name).glob("*.pt"))) == 2 * stages
        notebook = project / "reports" / "notebooks" / f"02_train-{name}.ipynb"
        assert not outputs_of(notebook, "error")
        assert not outputs_of(notebook, "stderr")  # progress goes to the console, never into the notebook
    joint = {"audio_only", "visual_only", "early_fusion", "utt_fusion", "utt_dataaug", "mmin", "ifmmin", "nmer", "vavl"}
    assert {p.stem for p in (project / "results" / "embeddings").glob("*.csv")} == joint  # late fusion has none
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:
        assert not outputs_of(project / "reports" / "notebooks" / f"{name}.ipynb", "error")
    explore = json.loads((project / "reports" / "notebooks" / "04_explore.ipynb").read_text())
    shown = [o for c in explore["cells"] for o in c.get("outputs", [])]
    assert any("<audio" in "".join(o.get("data", {}).get("text/html", [])) for o in shown)  # the clip's player
    for table in [
        "conditions_ua",
        "conditions_wa",
        "calibration",
        "imagination_ua",
        "imagination_wa",
        "protocols_ua",
        "robustness_wa",
        "robustness_ua",
        "corruptions_ua",
        "vavl_table",
        "vavl_tests",
        "convergence",
        "convergence_summary",
        "claims",
        "references",
    ]:
        for suffix in ["md", "tex", "csv"]:
            assert (project / "reports" / "tables" / f"{table}.{suffix}").stat().st_size > 0, table
    claims = pd.read_csv(project / "reports" / "tables" / "claims.csv")
    assert {"ci_low", "ci_high", "p_holm", "resolvable"} <= set(claims.columns)
    convergence = pd.read_csv(project / "reports" / "tables" / "convergence.csv")
    assert set(convergence["stopped"]) <= {"plateau", "max"} and len(convergence) == 2 * (
        10 + 3
    )  # 10 runs, 3 of 2 stages
    for figure in ["training_curves", "robustness_wa", "corruptions_ua", "embedding"]:
        assert (project / "reports" / "figures" / f"{figure}.png").stat().st_size > 0
    provenance = json.loads((project / "reports" / "provenance.json").read_text())
    assert "train@vavl" in provenance["artefacts"]["tables/conditions_ua"]
    assert not list((project / "reports" / "tables").glob("*.provenance.json"))  # written once, not per table
    deviations = (project / "reports" / "deviations.md").read_text()
    assert "restores official" in deviations and "pinned by" in deviations
    findings = (project / "reports" / "findings.md").read_text()
    assert "**The study.**" in findings and "Holm" in findings
    index = (project / "reports" / "html" / "index.html").read_text()
    assert "03_analysis.html" in index and (project / "reports" / "html" / "notebooks" / "03_analysis.html").is_file()
    summary = json.loads((project / "reports" / "data_summary.json").read_text())
    assert summary["clips"] == 4 * 22 and summary["speakers"] == 4


def test_extended_study_writes_every_result(project: Path):
    for name, task in [
        ("vavl_no_rec", "classification"),
        ("vavl_regression", "regression"),
        ("vavl_paired0.5", "classification"),
    ]:
        summary = json.loads((project / "extended" / "results" / name / "summary.json").read_text())
        assert summary["run"] == name and summary["task"] == task and summary["robustness"] == {}
        assert set(summary["conditions"]) == {"a", "v", "av", "pooled", "mean"}
        assert list((project / "data" / "extended" / "checkpoints" / name).glob("*.pt"))
    regression = pd.read_csv(project / "extended" / "results" / "vavl_regression" / "per_condition.csv")
    assert {"ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"} <= set(regression)
    notebook = project / "reports" / "extended" / "notebooks" / "05_extended.ipynb"
    assert not outputs_of(notebook, "error")
    for table in ["variants", "variant_tests", "other_task_regression", "unpaired_tests", "claims", "convergence"]:
        assert (project / "reports" / "extended" / "tables" / f"{table}.md").stat().st_size > 0, table
    assert (project / "reports" / "extended" / "figures" / "unpaired_curve.png").stat().st_size > 0
    assert "vavl_no_rec" in (project / "reports" / "extended" / "findings.md").read_text()
    assert (project / "reports" / "html" / "extended" / "index.html").is_file()


def test_second_repro_is_a_no_op(project: Path):
    output = run(["dvc", "repro", "--dry", "dvc.yaml", "extended/dvc.yaml"], project).stdout
    assert "Running stage" not in output


def test_exp_run_reruns_only_the_changed_run(project: Path):
    output = run(["dvc", "exp", "run", "-S", "methods.late_fusion.optim.epochs=3"], project).stdout
    assert ran_stages(output) == {"params", "train@late_fusion", "embedding", "analysis", "explore", "html"}
    commit(project, "late fusion: 3 epochs")


def test_editing_a_method_module_reruns_only_its_runs(project: Path):
    """The params stage hashes each run's method code into its resolved params: after it reruns, only the stages of
    VAVL's runs (and what reads their results) are stale."""
    module = project / "mer_core" / "methods" / "vavl.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    output = run(["dvc", "repro", "dvc.yaml", "extended/dvc.yaml"], project).stdout
    trained = {s for s in ran_stages(output) if s.startswith(("train@", "extended/dvc.yaml:"))} - {
        "extended/dvc.yaml:analysis",
        "extended/dvc.yaml:html",
    }
    assert trained == {
        "train@vavl",
        "extended/dvc.yaml:run@vavl_no_rec",
        "extended/dvc.yaml:task@vavl",
        "extended/dvc.yaml:unpaired@vavl-0.5",
    }
    assert "params" in ran_stages(output) and "prepare" not in ran_stages(output)
    commit(project, "vavl.py edited")


def test_a_subset_of_runs_is_one_override(project: Path):
    output = run(["dvc", "exp", "run", "-S", "train.runs=[utt_fusion,mmin]"], project).stdout
    assert {"train@utt_fusion", "train@mmin"}.isdisjoint(ran_stages(output))  # unchanged: not retrained
    skipped = json.loads((project / "results" / "vavl" / "metrics.json").read_text())
    assert skipped["status"] == "skipped" and "train.runs" in skipped["reason"]
    table = (project / "reports" / "tables" / "conditions_ua.md").read_text()
    assert "utt_fusion" in table and "mmin" in table and "vavl" not in table
    run(["git", "checkout", "-q", "--", "."], project)
    run(["dvc", "checkout", "-q"], project, check=False)


def test_a_queue_of_two_experiments_reuses_the_feature_store(project: Path):
    """`dvc exp run --queue` twice, `dvc queue start -j 2`: both experiments run side by side in their own
    workspaces, the corpus and feature store come out of the DVC cache instead of being recomputed, and `dvc exp
    show` lists both."""
    names = {"late-8": 8, "late-24": 24}
    for name, hidden in names.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"methods.late_fusion.hidden={hidden}"], project)
    run(["dvc", "queue", "start", "-j", "2"], project, log=project.parent / "queue-start.log")
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(5)
    run(["dvc", "queue", "stop"], project, check=False)
    assert all(
        f"{name}" in line and "Success" in line for name in names for line in status.splitlines() if name in line
    ), status
    for name in names:
        stages = ran_stages(run(["dvc", "queue", "logs", name], project).stdout)
        assert "train@late_fusion" in stages and {"corpus", "prepare", "train@mmin"}.isdisjoint(stages), stages
    shown = run(["dvc", "exp", "show", "--csv"], project).stdout
    assert all(name in shown for name in names), shown


def write_emodb(root: Path, speakers=("03", "08", "09", "10")) -> Path:
    """A tiny corpus in EmoDB's layout (wav/<speaker><text><emotion><version>.wav), every emotion but speaker 08's
    disgust, as in the real corpus; four speakers, so that leave-one-speaker-out with one validation speaker trains
    every fold on two (with three, a fold whose one training speaker is 08 could not learn disgust: refused)."""
    for s, speaker in enumerate(speakers):
        for e, emotion in enumerate("WLEAFTN"):
            if speaker == "08" and emotion == "E":
                continue
            for version in "ab":
                write_wav(
                    root / "wav" / f"{speaker}a0{e % 7 + 1}{emotion}{version}.wav",
                    wave=speech_like(0.5 + 0.05 * e, 16000, seed=31 * s + 7 * e + ord(version)),
                )
    return root


def test_exp_run_on_an_emodb_layout_corpus(project: Path, tmp_path_factory):
    """`dvc exp run -S data.corpus=emodb -S data.root=<path>`, nothing else: the corpus stage generates nothing,
    leave-one-speaker-out (standard protocol) works with a speaker lacking a class, the audio methods train, every
    run needing the face is skipped with its reason, and the analysis, explorer and HTML index list only what
    trained; `dvc exp show` lists the experiment."""
    corpus = write_emodb(tmp_path_factory.mktemp("emodb"))
    output = run(
        [
            "dvc",
            "exp",
            "run",
            "-n",
            "emodb",
            "-S",
            "data.corpus=emodb",
            "-S",
            f"data.root={corpus}",
            "-S",
            "folds.protocol=standard",
            "-S",
            "folds.n_val_speakers=1",
        ],
        project,
    ).stdout
    assert "corpus" in ran_stages(output)  # it runs, and writes only a note
    assert (project / "data" / "raw" / "builtin" / "NOT_GENERATED.txt").is_file()
    audio = json.loads((project / "results" / "audio_only" / "metrics.json").read_text())
    assert audio["status"] == "trained"
    fusion = json.loads((project / "results" / "utt_fusion" / "metrics.json").read_text())
    assert fusion["status"] == "skipped" and "emodb" in fusion["reason"]
    table = (project / "reports" / "tables" / "conditions_ua.md").read_text()
    assert "audio_only" in table and "utt_fusion" not in table
    index = (project / "reports" / "html" / "index.html").read_text()
    assert "03_analysis.html" in index
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:
        assert not outputs_of(project / "reports" / "notebooks" / f"{name}.ipynb", "error")
    shown = run(["dvc", "exp", "show", "--csv"], project).stdout
    assert "emodb" in shown
    run(["git", "checkout", "-q", "--", "."], project)
    run(["dvc", "checkout", "-q"], project, check=False)


def write_crema_d(root: Path, actors=("1001", "1002", "1003", "1004"), video: bool = True) -> Path:
    """A tiny corpus in CREMA-D's real layout: AudioWAV/*.wav (16 kHz), VideoFlash/*.flv (a drawn face, no OpenFace
    folder, so the faces are detected in the videos; none without `video`) and VideoDemographics.csv; one sentence,
    every emotion."""
    for a, actor in enumerate(actors):
        for e, emotion in enumerate(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]):
            stem = f"{actor}_DFA_{emotion}_XX"
            write_wav(root / "AudioWAV" / f"{stem}.wav", wave=speech_like(0.6 + 0.05 * e, 16000, seed=7 * a + e))
            if video:
                write_video(root / "VideoFlash" / f"{stem}.flv", seconds=0.6, fps=10)
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n"
        + "".join(
            f"{actor},30,{'Male' if k % 2 else 'Female'},Caucasian,Not Hispanic\n" for k, actor in enumerate(actors)
        )
    )
    return root


def test_exp_run_on_a_crema_d_layout_corpus(project: Path, tmp_path_factory):
    """`dvc exp run -S data.corpus=crema_d -S data.root=<path>`: the real adapter, audio from WAVs, face crops
    detected in FLV videos, the CNN frame encoder, every method and the analysis, end to end."""
    corpus = write_crema_d(tmp_path_factory.mktemp("crema_d"))
    overrides = {
        "data.corpus": "crema_d",
        "data.root": str(corpus),
        "features.visual.extractor": "face_crops",
        "++features.visual.fps": "10",
        "features.visual.rate_reduction": "1",
        "++features.visual.face_crops.size": "16",
        "++train.frame_encoder.dim": "8",
        "++train.frame_encoder.channels": "[4,4]",
        "++train.frame_encoder.groups": "2",
    }
    run(["dvc", "exp", "run"] + [a for k, v in overrides.items() for a in ("-S", f"{k}={v}")], project)
    manifest = json.loads((project / "data" / "features" / "crema_d" / "manifest.json").read_text())
    assert manifest["corpus"] == "crema_d" and manifest["counts"]["clips"] == 24 and manifest["dims"]["visual"] == 256
    meta = pd.read_csv(project / "data" / "features" / "crema_d" / "meta.csv", dtype={"speaker": str})
    assert meta["has_visual"].all() and meta["has_audio"].all() and set(meta["gender"]) == {"Male", "Female"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    for name in params["methods"]:
        summary = json.loads((project / "results" / name / "summary.json").read_text())
        assert summary["units"] == 2 and set(summary["conditions"]) == {"a", "v", "av", "pooled", "mean"}
    for table in (project / "results" / "embeddings").glob("*.csv"):  # joint() through the face-crop encoder
        embedding = pd.read_csv(table)
        assert embedding["clip_id"].str.match(r"^\d{4}_DFA_").all()
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:
        assert not outputs_of(project / "reports" / "notebooks" / f"{name}.ipynb", "error")
    run(["git", "checkout", "-q", "--", "."], project)
    run(["dvc", "checkout", "-q"], project, check=False)


def test_exp_run_on_a_crema_d_corpus_with_its_audio_alone(project: Path, tmp_path_factory):
    """CREMA-D with `AudioWAV/` only (no `VideoFlash/`, no `OpenFace/`): `dvc exp run` exits 0, the prepare stage says
    in one line that the video was not found and where it looked, the store is audio-only, the audio runs train and
    the runs that need the face are skipped with their reason."""
    corpus = write_crema_d(tmp_path_factory.mktemp("crema_d_audio"), video=False)
    result = run(
        ["dvc", "exp", "run", "-n", "cremad-audio", "-S", "data.corpus=crema_d", "-S", f"data.root={corpus}"], project
    )
    line = (
        f"crema_d: visual: not found for any of the 24 clips (looked for {corpus}/OpenFace/<clip>.csv or "
        f"{corpus}/VideoFlash/<clip>.flv); the store holds audio only, and the runs that need visual are skipped"
    )
    assert line in result.stdout + result.stderr  # on the console of `dvc exp run`
    notebook = project / "reports" / "notebooks" / "01_prepare_data.ipynb"
    assert any(line in "".join(o["text"]) for o in outputs_of(notebook, "stderr"))  # and in the executed notebook
    manifest = json.loads((project / "data" / "features" / "crema_d" / "manifest.json").read_text())
    assert manifest["modalities"] == ["audio"] and set(manifest["frame_rates"]) == {"audio"}
    assert manifest["notes"][-1] == line
    audio = json.loads((project / "results" / "audio_only" / "summary.json").read_text())
    assert audio["status"] == "trained" and audio["modalities"] == ["audio"]
    for name in ("visual_only", "utt_fusion", "mmin"):
        skipped = json.loads((project / "results" / name / "metrics.json").read_text())
        assert skipped["status"] == "skipped" and "the feature store has audio only" in skipped["reason"], name
    run(["git", "checkout", "-q", "--", "."], project)
    run(["dvc", "checkout", "-q"], project, check=False)


@pytest.mark.skipif(
    not (EMODB_DEV / "wav").is_dir(),
    reason=f"the real EmoDB development recordings are absent ({EMODB_DEV}; set MER_SHARED to the "
    "folder that holds data/emodb-dev)",
)
def test_the_real_speech_recipe_on_emodb_dev(project: Path):
    """`make speech-dev SPEECH_ROOT=<emodb-dev>` (docs/real-speech.md) on the real recordings: the experiment runs
    prepare, the classical baseline and the neural audio run on leave-one-speaker-out folds of the 6 speakers, the
    analysis and the HTML; `dvc exp apply` brings its results into the workspace."""
    (project / ".venv").mkdir(exist_ok=True)
    (project / ".venv" / ".installed").touch()  # the Makefile's setup stamp: the test's own environment runs it
    run(["make", "speech-dev", f"SPEECH_ROOT={EMODB_DEV}"], project)
    run(["dvc", "exp", "apply", "emodb-dev"], project)
    manifest = json.loads((project / "data" / "features" / "emodb" / "manifest.json").read_text())
    assert manifest["modalities"] == ["audio"] and manifest["functionals"] == {"ComParE_2016": 6373}
    assert manifest["counts"]["clips"] == 312 and manifest["corruptions"] == []
    splits = pd.read_csv(project / "data" / "features" / "emodb" / "splits.csv", dtype={"speaker": str})
    tests = splits[splits.role == "test"]
    assert sorted(tests["speaker"]) == ["03", "08", "09", "10", "11", "14"] and len(tests) == 6  # one speaker each
    fold_08 = str(int(tests.loc[tests.speaker == "08", "fold"].iloc[0]))
    assert manifest["missing_classes"][fold_08]["test"] == ["disgust"]
    for name in ("functionals_svm", "functionals_net"):
        summary = json.loads((project / "results" / name / "summary.json").read_text())
        assert summary["status"] == "trained" and summary["folds"] == list(range(6)), name
        assert summary["test_missing_classes"] == {fold_08: ["disgust"]}
        assert summary["conditions"]["a"]["ua_mean"] > 2 / 7, name  # twice chance (7 classes)
    skipped = json.loads((project / "results" / "audio_only" / "metrics.json").read_text())
    assert skipped["status"] == "skipped" and "train.runs" in skipped["reason"]
    table = (project / "reports" / "tables" / "conditions_ua.md").read_text()
    assert "functionals_svm" in table and "functionals_net" in table and "lack disgust" in table
    for name in ["01_prepare_data", "03_analysis", "04_explore"]:
        assert not outputs_of(project / "reports" / "notebooks" / f"{name}.ipynb", "error")
    assert (project / "reports" / "html" / "index.html").is_file()
    run(["git", "checkout", "-q", "--", "."], project)
    run(["dvc", "checkout", "-q"], project, check=False)
