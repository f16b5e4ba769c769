"""The typed model of the whole `params.yaml` (`Study`): one pydantic model per section, every key with a documented
default.

Sections: `task`, `data`, `features`, `folds` (`mer_core.params.data`), `train` (`mer_core.params.training`),
`methods` (runs; each method's own params in `mer_core.params.methods`), `robustness`, `analysis`, `explore`,
`extended` (`mer_core.params.evaluation`) and `machine` (`mer_core.machine`, never a dependency of a result).
`mer_core.config` validates a params file with it, resolves the runs and writes each stage's resolved params.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mer_core.machine import Machine
from mer_core.params.data import Data, Features, Folds
from mer_core.params.evaluation import TASKS, Analysis, Explore, Extended, Robustness, RunEntry
from mer_core.params.training import Train
from mer_core.schema import Params


class Study(Params):
    """The whole of params.yaml."""

    task: Literal[TASKS] = "classification"
    """The study's task: classification (the corpus's emotion classes; cross-entropy; WA, UA, F1) | regression
    (arousal, valence, dominance, or the corpus's own targets; loss sum of 1 - CCC; CCC per attribute)."""
    data: Data = Field(default_factory=Data)
    features: Features = Field(default_factory=Features)
    folds: Folds = Field(default_factory=Folds)
    train: Train = Field(default_factory=Train)
    methods: dict[str, RunEntry] = Field(default_factory=dict)
    """The runs of the study, one stage train@<run> each (docs/params.md "Runs")."""
    robustness: Robustness = Field(default_factory=Robustness)
    analysis: Analysis = Field(default_factory=Analysis)
    explore: Explore = Field(default_factory=Explore)
    extended: Extended = Field(default_factory=Extended)
    machine: Machine = Field(default_factory=Machine)
