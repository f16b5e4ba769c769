"""Noise: feature-space noise scheduler (NMER) and signal-level corruptions."""
from mer_core.noise.scheduler import NOISE_SCHEMA, NOISE_TYPES, SCHEDULES, NoiseScheduler, betas

__all__ = ["NOISE_SCHEMA", "NOISE_TYPES", "SCHEDULES", "NoiseScheduler", "betas"]
