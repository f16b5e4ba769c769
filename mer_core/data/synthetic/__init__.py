"""The built-in synthetic audio-visual emotion corpus (CREMA-D layout, OpenFace 2.0 visual stream).

`generate_corpus(root, cfg)` writes it; `SYNTHETIC_SCHEMA` validates the `data.synthetic` block of params.yaml.
"""
from mer_core.data.synthetic.corpus import SYNTHETIC_SCHEMA, generate_corpus

__all__ = ["SYNTHETIC_SCHEMA", "generate_corpus"]
