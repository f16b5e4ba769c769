"""How long a stage trains: the fixed official schedules and the plateau rule (mer_core.stopping), in the loop."""

import pandas as pd
import pytest
from helpers import run_method

from mer_core.config import resolve_runs
from mer_core.params.training import Stopping
from mer_core.schema import ConfigError, check
from mer_core.stopping import StageSchedule, lr_factor


def drive(schedule: StageSchedule, scores: list[float]) -> list[float]:
    """Feed `scores` epoch by epoch until the schedule stops; the learning-rate factor of each epoch trained."""
    factors = []
    for score in scores:
        factors.append(schedule.factor())
        if not schedule.update(score):
            return factors
    raise AssertionError(f"the schedule had not stopped after {len(scores)} epochs")


def test_fixed_runs_the_official_schedule_whatever_the_scores():
    schedule = StageSchedule(3, 2, "fixed", patience=1)
    factors = drive(schedule, [0.5, 0.4, 0.3, 0.2, 0.1, 0.9])
    assert factors == [lr_factor(e, 3, 2) for e in range(5)] == pytest.approx([1, 1, 1, 2 / 3, 1 / 3])
    record = schedule.record()
    assert record == {"epochs": 5, "stopped": "max", "best_epoch": 1, "decay_start": 3, "gain": 0.0}


def test_plateau_ends_the_constant_phase_then_the_decay():
    # constant phase: best at epoch 2, then 2 epochs without improvement (patience 2) -> decay from epoch 5
    # decay phase (max 4 epochs): an improvement at its first epoch, then 2 without -> plateau at epoch 7
    scores = [0.3, 0.5, 0.4, 0.5, 0.6, 0.55, 0.6, 0.9]
    schedule = StageSchedule(10, 4, "plateau", patience=2, min_epochs=1)
    factors = drive(schedule, scores)
    assert factors == pytest.approx([1, 1, 1, 1, 1 - 1 / 5, 1 - 2 / 5, 1 - 3 / 5])
    assert schedule.record() == {
        "epochs": 7,
        "stopped": "plateau",
        "best_epoch": 5,
        "decay_start": 4,
        "gain": pytest.approx(0.0),
    }


def test_plateau_without_decay_stops_on_plateau_or_at_the_maximum():
    flat = StageSchedule(20, 0, "plateau", patience=3, min_epochs=1)
    assert len(drive(flat, [0.5, 0.6, 0.6, 0.59, 0.6, 0.9])) == 5  # 0.6 again is no improvement
    assert flat.record() == {"epochs": 5, "stopped": "plateau", "best_epoch": 2, "decay_start": None, "gain": 0.0}
    rising = StageSchedule(4, 0, "plateau", patience=2, min_epochs=1)
    assert drive(rising, [0.1, 0.2, 0.3, 0.4]) == [1, 1, 1, 1]
    record = rising.record()
    assert record["stopped"] == "max" and record["best_epoch"] == 4 and record["gain"] == pytest.approx(0.2)


def test_min_epochs_and_min_delta_delay_the_plateau():
    early = [0.3, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    assert len(drive(StageSchedule(20, 0, "plateau", patience=1, min_epochs=1), early)) == 3
    assert len(drive(StageSchedule(20, 0, "plateau", patience=1, min_epochs=5), early)) == 5
    creeping = [0.5, 0.52, 0.524, 0.528, 0.529, 0.6]  # after 0.52, each below the best + min_delta 0.01
    schedule = StageSchedule(20, 0, "plateau", patience=3, min_epochs=1, min_delta=0.01)
    assert len(drive(schedule, creeping)) == 5 and schedule.record()["best_epoch"] == 5


def test_a_stage_still_at_its_starting_level_has_not_converged():
    """NMER's stage 2 sits at chance for its first epochs while its loss falls: a patience counted from the first
    epoch would stop it there. No plateau before the criterion has beaten its first finite score by min_delta."""
    at_chance = [float("nan"), 0.20, 0.18, 0.16, 0.18, 0.19, 0.2, 0.201, 0.35, 0.5, 0.52, 0.51, 0.5, 0.5, 0.9]
    schedule = StageSchedule(40, 0, "plateau", patience=3, min_epochs=3, min_delta=0.005)
    assert len(drive(schedule, at_chance)) == 14  # learning from epoch 9; best 0.52 at 11; plateau after 14
    assert schedule.record()["stopped"] == "plateau" and schedule.record()["best_epoch"] == 11
    never = StageSchedule(6, 2, "plateau", patience=1, min_epochs=1)
    assert len(drive(never, [0.5, 0.4, 0.5, 0.45, 0.3, 0.5, 0.2, 0.1])) == 8  # never above 0.5: to its maximum
    assert never.record()["stopped"] == "max" and never.decay_start == 6


def test_a_stage_no_longer_than_its_patience_has_no_gain_and_nan_epochs_never_count():
    schedule = StageSchedule(2, 0, "plateau", patience=5)
    drive(schedule, [float("nan"), 0.3])
    assert schedule.record() == {"epochs": 2, "stopped": "max", "best_epoch": 2, "decay_start": None, "gain": None}


def test_stopping_params_are_validated_and_build_the_schedule():
    good = {"rule": "plateau", "patience": 5, "min_epochs": 5, "min_delta": 0.0}
    check(Stopping, good, "train.stopping")
    with pytest.raises(ConfigError, match="train.stopping.rule: got 'early'"):
        check(Stopping, {**good, "rule": "early"}, "train.stopping")
    with pytest.raises(ConfigError, match="train.stopping.patience"):
        check(Stopping, {**good, "patience": 0}, "train.stopping")
    schedule = StageSchedule.from_params({"epochs": 4, "epochs_decay": 2}, good)
    assert (schedule.epochs, schedule.epochs_decay, schedule.rule, schedule.patience) == (4, 2, "plateau", 5)
    assert schedule.phase == "constant"


def test_run_method_stops_each_stage_on_its_plateau_and_records_why(tiny_store, tiny_params, tmp_path):
    params = tiny_params(
        tiny_store, epochs=1, folds=[0], stopping={"rule": "plateau", "patience": 1, "min_epochs": 1, "min_delta": 0.0}
    )
    params["methods"]["mmin"]["optim"].update(epochs=30, epochs_decay=30)
    params["methods"]["mmin"]["pretrain"]["optim"].update(epochs=3, epochs_decay=0)
    summary = run_method("mmin", params, tmp_path / "out", tmp_path / "ckpt")
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert summary["stopping"]["rule"] == "plateau"
    for stage, part in history.groupby("stage"):
        assert part["stopped"].nunique() == 1  # one reason per stage, on each of its rows
        assert int(part["epoch"][part["val_ua"] == part["val_ua"].max()].min()) == summary["best_epochs"][stage][0]
    stage2 = history[history["stage"] == "train"]
    # patience 1: the constant phase ends at its first epoch without improvement, the decay at its first too
    assert stage2["stopped"].iloc[0] == "plateau" and len(stage2) < 60
    decay = int((stage2["phase"] == "constant").sum())
    assert stage2["phase"].tolist() == ["constant"] * decay + ["decay"] * (len(stage2) - decay)
    expected = [0.01 * (1.0 if e < decay else lr_factor(e, decay, 30)) for e in range(len(stage2))]
    assert stage2["lr"].tolist() == pytest.approx(expected, abs=1e-5)
    ua = stage2["val_ua"].tolist()
    assert ua[decay - 1] <= max(ua[: decay - 1])  # the epoch that ended the constant phase did not improve
    assert ua[-1] <= max(ua[:-1])


def test_the_paper_preset_keeps_the_official_fixed_schedule(tiny_store, tiny_params, tmp_path):
    params = tiny_params(
        tiny_store,
        epochs=2,
        folds=[0],
        preset="paper",
        stopping={"rule": "plateau", "patience": 1, "min_epochs": 1, "min_delta": 0.0},
    )
    run = resolve_runs(params)["audio_only"]
    official = run["entry"]["optim"]  # the preset resets the schedule to the method's official one
    summary = run_method("audio_only", params, tmp_path / "out", tmp_path / "ckpt")
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert summary["stopping"]["rule"] == "fixed"
    assert len(history) == official["epochs"] + official["epochs_decay"] and set(history["stopped"]) == {"max"}
    assert (history["phase"] == "constant").sum() == official["epochs"]
