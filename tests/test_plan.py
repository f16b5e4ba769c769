"""The plan of a study and its timed cost estimate (`mer_core.plan`, `make plan-paper`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import resolved_run

from mer_core.config import load_params
from mer_core.machine import Machine
from mer_core.plan import PAPER, main, one_epoch_run, parallel_units, parse_sets, plan_table, time_unit, unit_epochs
from mer_core.schema import ConfigError, check

ROOT = Path(__file__).resolve().parents[1]


def test_sets_are_read_as_yaml_values_and_a_bad_one_is_named():
    assert parse_sets(["train.seeds=[0,1]", "data.corpus=emodb", "train.preset=paper"]) == {
        "train.seeds": [0, 1],
        "data.corpus": "emodb",
        "train.preset": "paper",
    }
    with pytest.raises(ConfigError, match="'train.seeds'"):
        parse_sets(["train.seeds"])


def test_the_paper_plan_trains_every_method_at_its_official_schedule_with_five_seeds():
    params = load_params(ROOT / "params.yaml", PAPER)
    table = plan_table(params, folds=None).set_index("run")
    assert set(table.index) == set(params["methods"])
    assert (table["units"] == params["folds"]["n_folds"] * 5).all()
    assert (table["stopping"] == "fixed").all()
    mmin = params["methods"]["mmin"]
    assert table.loc["mmin", "stages"] == "pretrain 20, train 60"  # MMIN's official 20 + (20 + 40 decay) epochs
    assert table.loc["mmin", "epochs"] == 80 and mmin["method"] == "mmin"


def test_a_run_cut_to_one_epoch_keeps_everything_else(tiny_store, tiny_params):
    run = resolved_run("mmin", tiny_params(tiny_store, epochs=5))
    cut = one_epoch_run(run, 1)
    assert unit_epochs(cut) == {"pretrain": 1, "train": 1} and unit_epochs(run) == {"pretrain": 1, "train": 5}
    assert cut["entry"]["hidden"] == run["entry"]["hidden"] and cut["train"]["stopping"]["rule"] == "fixed"


def test_a_unit_is_timed_into_a_fixed_cost_and_a_cost_per_epoch(tiny_store, tiny_params, monkeypatch):
    run = resolved_run("late_fusion", tiny_params(tiny_store, epochs=2))
    fixed, per_epoch = time_unit(run, 0, "cpu", 1)
    assert fixed >= 0 and per_epoch >= 0 and fixed + per_epoch > 0


def test_units_at_once_follow_the_executor():
    assert parallel_units(check(Machine, {"jobs": 4}).model_dump()) == 4
    assert parallel_units(check(Machine, {"jobs": 8, "executor": "ray", "ray": {"cpus_per_unit": 2}}).model_dump()) == 4


def test_the_makefiles_paper_settings_are_the_plans(capsys):
    makefile = (ROOT / "Makefile").read_text()
    line = re.search(r"^PAPER := (.*)$", makefile, re.M).group(1)
    sets = parse_sets([s.strip("'") for s in re.findall(r"-S ('[^']*'|\S+)", line)])
    assert sets == PAPER


def test_the_plan_without_a_store_says_it_cannot_time(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["features_dir"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(["--params", str(tmp_path / "params.yaml"), "--paper", "--measure"])
    out = capsys.readouterr().out
    assert "Not timed: no feature store" in out and "| mmin" in out


def test_a_bad_override_stops_the_plan_naming_the_key():
    with pytest.raises(SystemExit, match="train.preset"):
        main(["--params", str(ROOT / "params.yaml"), "-S", "train.preset=fastest"])
