"""`python -m mer_core.data.synthetic --params params.yaml`: write the built-in corpus to `data.root`."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mer_core.config import ConfigError
from mer_core.data.synthetic.corpus import generate_corpus


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mer_core.data.synthetic", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file holding data.root and data.synthetic")
    args = parser.parse_args(argv)
    path = Path(args.params)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root or pass --params)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    data = params.get("data") if isinstance(params, dict) else None
    for key in ("root", "synthetic"):
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(f"data.{key}: missing key in {path}")
    summary = generate_corpus(Path(data["root"]), data["synthetic"])
    print(f"wrote {summary['n_clips']} clips of {summary['n_actors']} actors to {summary['path']} "
          f"in {summary['seconds']:.1f} s")
    return summary


if __name__ == "__main__":
    main()
