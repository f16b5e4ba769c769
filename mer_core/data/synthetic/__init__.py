"""The built-in corpus: a synthetic audio-visual emotion corpus written in CREMA-D's layout (`mer_core.data.synthetic`).

`generate_corpus(root, cfg, jobs)` writes it; `mer_core.params.data.Synthetic` validates the `data.synthetic` block.
"""

from mer_core.data.synthetic.corpus import generate_corpus

__all__ = ["generate_corpus"]
