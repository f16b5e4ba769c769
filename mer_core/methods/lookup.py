"""A registered method by name (`method_spec`): its catalogue entry (`mer_core.params.methods.CATALOG`) and its stages
with their builders (`mer_core.methods.registry`). For code that starts from a method's name rather than a resolved
run (tests, notebooks); the training stages use the stages their run carries."""

from __future__ import annotations

from dataclasses import dataclass

from mer_core.methods.registry import StageSpec, stage_specs
from mer_core.params.methods import CATALOG, MethodInfo
from mer_core.schema import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its catalogue entry (`info`) and its stages with their builders, in training order."""

    info: MethodInfo
    stages: tuple[StageSpec, ...]

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def summary(self) -> str:
        return self.info.summary

    @property
    def needs(self) -> tuple[str, ...]:
        return self.info.needs

    @property
    def min_modalities(self) -> int:
        return self.info.min_modalities

    @property
    def joint(self) -> str | None:
        """What the last stage's model returns from `joint(batch)`: the (B, D) joint representation its classifier
        reads (`mer_core.embedding` projects it), in a few words; None when it has none (late fusion)."""
        return self.info.joint

    def lacks(self, modalities: tuple[str, ...]) -> str | None:
        """Why a corpus with `modalities` cannot feed the method (e.g. an audio-only corpus and a fusion method), or
        None when it can."""
        lacking = [m for m in self.needs if m not in modalities]
        if lacking or len(modalities) < self.min_modalities:
            need = f"the modalities {', '.join(self.needs)}" if lacking else f"{self.min_modalities} modalities"
            return f"method {self.name} needs {need}; the feature store has {', '.join(modalities)} only"
        return None


def method_spec(name: str) -> MethodSpec:
    """The registered method `name`, its module imported; ConfigError lists the registered names otherwise. A stage
    whose training conditions depend on the entry keeps them as a callable (`StageSpec.conditions`)."""
    if name not in CATALOG:
        raise ConfigError(f"method {name!r} is not registered; registered methods: {', '.join(CATALOG)}")
    info = CATALOG[name]
    stages = [
        {
            "name": s.name,
            "key": s.key,
            "train_conditions": s.train_conditions,
            "select_on": s.select_on,
            "noise_key": s.noise_key,
            "grid": s.grid,
        }
        for s in info.stages
    ]
    return MethodSpec(info, stage_specs(name, info.module, stages))
