"""`python -m mer_core.data.synthetic [--params data/params/corpus.json] [--out data/raw/builtin]`: the `corpus` stage.

It reads its resolved params (written by the `params` stage, `mer_core.config`): when the study's corpus is the
built-in one it writes the corpus to `--out` (the stage's fixed output, never `data.root`, which may point at a corpus
the user holds); for any other corpus it writes only a note saying so, and generates nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mer_core.data.synthetic.corpus import generate_corpus
from mer_core.machine import machine_settings

OUT = "data/raw/builtin"
NOTE = "NOT_GENERATED.txt"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m mer_core.data.synthetic", description=__doc__)
    parser.add_argument("--params", default="data/params/corpus.json", help="the corpus stage's resolved params")
    parser.add_argument("--out", default=OUT, help=f"folder to write the corpus to (default {OUT})")
    args = parser.parse_args(argv)
    cfg = json.loads(Path(args.params).read_text())
    out = Path(args.out)
    if not cfg["generate"]:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out / NOTE).write_text("The study's data.corpus is not builtin: the built-in corpus was not generated.\n")
        print(f"data.corpus is not builtin: nothing generated ({out / NOTE})")
        return None
    summary = generate_corpus(out, cfg["synthetic"], machine_settings()["jobs"])
    print(f"wrote {summary['n_clips']} clips of {summary['n_actors']} actors to {summary['path']}")
    return summary


if __name__ == "__main__":
    main()
