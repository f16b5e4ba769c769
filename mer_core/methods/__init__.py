"""Registered methods. Importing this package registers every method family's methods."""
from mer_core.config import Field, MapOf
from mer_core.methods import baselines, mmin, nmer, vavl  # noqa: F401  (each module registers its methods)
from mer_core.methods.registry import (REGISTRY, MethodSpec, ModelContext, StageSpec, effective_entry, method_spec,
                                       validate_entry, validate_run)

METHODS_SCHEMA = MapOf(Field(dict))  # each entry is checked by `validate_run` against its method's schema

__all__ = ["METHODS_SCHEMA", "REGISTRY", "MethodSpec", "ModelContext", "StageSpec", "effective_entry",
           "method_spec", "validate_entry", "validate_run"]
