"""mer_core: the tested library behind the mer-companion study.

Layers, losses, data adapters, feature extraction, methods, training and evaluation for multimodal emotion
recognition under missing and noisy modalities (VAVL, MMIN / IF-MMIN, NMER and their baselines).
"""

__version__ = "0.1.0"
