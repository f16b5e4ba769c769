"""`python -m mer_core.data.synthetic --params params.yaml`: write the built-in corpus to `data.root`."""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_core.config import load_params
from mer_core.data.synthetic.corpus import generate_corpus


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mer_core.data.synthetic", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file holding data.root and data.synthetic")
    args = parser.parse_args(argv)
    data = load_params(args.params)["data"]
    summary = generate_corpus(Path(data["root"]), data["synthetic"])
    print(f"wrote {summary['n_clips']} clips of {summary['n_actors']} actors to {summary['path']} "
          f"in {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
