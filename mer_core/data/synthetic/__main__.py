"""`python -m mer_core.data.synthetic --params params.yaml [--out data/raw/builtin]`: write the built-in corpus.

The corpus always goes to `--out` (the `corpus` stage's fixed output), never to `data.root`: `data.root` is
what `prepare` reads, and may point at a corpus the user holds outside the project.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_core.config import load_params
from mer_core.data.synthetic.corpus import generate_corpus

OUT = "data/raw/builtin"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mer_core.data.synthetic", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file holding data.synthetic")
    parser.add_argument("--out", default=OUT, help=f"folder to write the corpus to (default {OUT})")
    args = parser.parse_args(argv)
    data = load_params(args.params)["data"]
    summary = generate_corpus(Path(args.out), data["synthetic"])
    print(f"wrote {summary['n_clips']} clips of {summary['n_actors']} actors to {summary['path']} "
          f"in {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
