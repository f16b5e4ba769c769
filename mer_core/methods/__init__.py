"""Registered methods. Importing this package registers every method family's methods."""
from mer_core.config import Field, MapOf
from mer_core.methods import baselines  # noqa: F401  (registers the baselines)
from mer_core.methods.registry import REGISTRY, ModelContext, MethodSpec, method_spec, validate_method_params

METHODS_SCHEMA = MapOf(Field(dict), keys=tuple(REGISTRY))

__all__ = ["METHODS_SCHEMA", "REGISTRY", "ModelContext", "MethodSpec", "method_spec", "validate_method_params"]
