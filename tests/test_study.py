"""mer_core.study: which runs fill each table, figure, claim, embedding and the explorer's first view, derived from
the runs' summaries (method, base, variant, task, status), on hand-made summaries."""

from __future__ import annotations

import pytest

from mer_core.study import (
    NOISE_RIVALS,
    VAVL_RIVALS,
    RunRef,
    base_run,
    confusion_runs,
    embedded_runs,
    explore_run,
    family,
    resolve_ref,
    rivals,
    table_rows,
    trained,
    variant_run,
)


def summary(
    method: str,
    study: str = "default",
    base: str | None = None,
    root: str | None = None,
    variant: str | None = None,
    changes: dict | None = None,
    task: str = "classification",
    status: str = "train",
    needs=(),
    joint: bool = True,
) -> dict:
    return {
        "study": study,
        "method": method,
        "base": base,
        "root": root,
        "variant": variant,
        "changes": changes or {},
        "task": task,
        "status": status,
        "reason": None if status == "train" else "not selected by train.runs",
        "needs": list(needs),
        "joint": joint,
    }


RUNS = {
    "audio": summary("audio_only", root="audio", needs=("audio",)),
    "face": summary("visual_only", root="face", needs=("visual",)),
    "late": summary("late_fusion", root="late", joint=False),
    "men": summary("utt_fusion", root="men"),
    "men_aug": summary("utt_dataaug", root="men_aug"),
    "ours": summary("mmin", root="ours"),
    "ours_no_cycle": summary("mmin", base="ours", root="ours", variant="no_cycle", changes={"cycle_weight": 0.0}),
    "ours_wide": summary("mmin", base="ours", root="ours", changes={"hidden": 256}),
    "inv": summary("ifmmin", root="inv"),
    "inv_no_cmd": summary(
        "ifmmin", "extended", base="inv", root="inv", variant="no_cmd", changes={"pretrain.cmd_weight": 0.0}
    ),
    "denoised": summary("nmer", root="denoised"),
    "vavl": summary("vavl", root="vavl", needs=("audio", "visual")),
    "vavl_no_rec": summary("vavl", "extended", base="vavl", root="vavl", variant="no_rec", changes={"rec_weight": 0}),
    "vavl_regression": summary("vavl", "extended", base="vavl", root="vavl", task="regression"),
    "vavl_paired0.5": summary(
        "vavl", "extended", base="vavl", root="vavl", changes={"unpaired.audio": 0.25, "unpaired.visual": 0.25}
    ),
    "spare": summary("utt_fusion", root="spare", status="skip"),
}


def test_trained_keeps_the_runs_that_train_and_have_results():
    assert "spare" not in trained(RUNS) and list(trained(RUNS))[:3] == ["audio", "face", "late"]
    assert list(trained(RUNS, present=["men", "spare", "ours"])) == ["men", "ours"]


def test_base_run_is_the_first_run_of_the_method_without_a_base():
    assert base_run(RUNS, "mmin") == "ours" and base_run(RUNS, "utt_fusion") == "men"
    assert base_run(RUNS, "vavl") == "vavl" and base_run({}, "mmin") is None
    assert base_run({"x": summary("mmin", base="y")}, "mmin") is None  # a variant is not a base run
    assert base_run(trained(RUNS), "utt_fusion") == "men"


def test_variant_run_is_the_run_of_a_named_variant_of_the_base_run():
    assert variant_run(RUNS, "mmin", "no_cycle") == "ours_no_cycle"
    assert variant_run(RUNS, "ifmmin", "no_cmd") == "inv_no_cmd"
    assert variant_run(RUNS, "ifmmin", "no_inject") is None and variant_run(RUNS, "nmer", "denoiser") is None
    assert variant_run({k: v for k, v in RUNS.items() if k != "ours"}, "mmin", "no_cycle") is None  # no base run


def test_run_refs_name_runs_by_method_and_variant():
    assert resolve_ref(RUNS, RunRef("mmin")) == "ours"
    assert resolve_ref(RUNS, RunRef("mmin", "no_cycle")) == "ours_no_cycle"
    assert resolve_ref(RUNS, RunRef("vavl", "no_shared")) is None and resolve_ref(RUNS, RunRef("nope")) is None
    assert str(RunRef("mmin")) == "mmin" and str(RunRef("mmin", "no_cycle")) == "mmin (no_cycle)"
    assert RunRef("mmin", "no_cycle") == RunRef("mmin", "no_cycle") and len({RunRef("a"), RunRef("a")}) == 1


def test_family_is_the_base_run_then_its_variants_of_the_same_task_fully_paired():
    assert family(RUNS, "mmin") == ["ours", "ours_no_cycle", "ours_wide"]
    assert family(RUNS, "vavl") == ["vavl", "vavl_no_rec"]  # not the regression run, not the unpaired one
    assert family(RUNS, "nmer") == ["denoised"] and family(RUNS, "vavl_x") == []


def test_table_rows():
    assert table_rows(RUNS, "main") == [
        "audio",
        "face",
        "late",
        "men",
        "men_aug",
        "ours",
        "ours_no_cycle",
        "ours_wide",
        "inv",
        "denoised",
        "vavl",
        "spare",
    ]  # the default study's runs
    assert table_rows(RUNS, "imagination") == [
        "men",
        "men_aug",
        "ours",
        "ours_no_cycle",
        "ours_wide",
        "inv",
        "inv_no_cmd",
    ]
    assert table_rows(RUNS, "vavl") == [
        "vavl",
        "vavl_no_rec",
        "audio",
        "face",
        "late",
        "men",
        "men_aug",
        "ours",
        "inv",
        "denoised",
        "spare",
    ]
    only = {k: RUNS[k] for k in ("audio", "vavl")}
    assert table_rows(only, "imagination") == [] and table_rows(only, "vavl") == ["vavl", "audio"]
    with pytest.raises(ValueError, match="unknown table 'nope'; allowed: main, imagination, vavl"):
        table_rows(RUNS, "nope")


def test_confusion_runs_are_the_single_modality_baselines_then_the_full_modality_network():
    assert confusion_runs(RUNS) == ["audio", "face", "men"]
    assert confusion_runs({k: RUNS[k] for k in ("audio", "ours")}) == ["audio"]  # no utt_fusion run
    assert confusion_runs({k: RUNS[k] for k in ("vavl", "men")}) == ["men"]


def test_embedded_runs_are_the_default_base_runs_with_a_joint_representation():
    assert embedded_runs(RUNS) == ["audio", "face", "men", "men_aug", "ours", "inv", "denoised", "vavl", "spare"]
    assert embedded_runs(trained(RUNS)) == ["audio", "face", "men", "men_aug", "ours", "inv", "denoised", "vavl"]


def test_explore_run_prefers_nmer_then_the_imagination_methods_then_the_first_available():
    everything = list(RUNS)
    assert explore_run(RUNS, everything) == "denoised"
    assert explore_run(RUNS, ["audio", "ours", "inv"]) == "inv"
    assert explore_run(RUNS, ["audio", "ours_no_cycle", "ours"]) == "ours"
    assert explore_run(RUNS, ["face", "audio"]) == "face" and explore_run(RUNS, []) is None
    assert explore_run(RUNS, ["ours_no_cycle"]) == "ours_no_cycle"  # no base run available: the first one


def test_rivals_are_the_base_runs_of_the_methods_present_in_order():
    assert rivals(RUNS, NOISE_RIVALS) == ["ours", "inv", "men_aug", "men"]
    assert rivals(RUNS, VAVL_RIVALS) == ["men", "men_aug", "late", "ours"]
    assert rivals({k: RUNS[k] for k in ("men", "ours")}, NOISE_RIVALS) == ["ours", "men"]
