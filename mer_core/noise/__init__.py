"""Noise: feature-space noise scheduler (NMER) and signal-level corruptions."""

from mer_core.noise.scheduler import NOISE_TYPES, SCHEDULES, NoiseScheduler, betas

__all__ = ["NOISE_TYPES", "SCHEDULES", "NoiseScheduler", "betas"]
