"""docs/params.md, generated from the params models: every key of params.yaml with its default and meaning.

`python -m mer_core.params.reference` rewrites the file; a test fails when the committed file differs from what the
models say, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mer_core.params.methods import CATALOG
from mer_core.params.study import Study

OUT = Path(__file__).resolve().parents[2] / "docs" / "params.md"
HEADER = """# params.yaml: every key, its default and its meaning

Generated from the params models (`mer_core/params/`) by `python -m mer_core.params.reference`; do not edit by hand.
`params.yaml` states the sections' main keys and what the study changes; every other key takes the default below.
Set a key that params.yaml does not write with a `+` (`dvc exp run -S +features.visual.fps=10`), or `++` to set it
whether it is written or not. Machine settings (`machine`) never change a result and never rerun a stage.

A run (`methods.<run>`, `extended.runs.<run>`) names a `method` and the keys it changes from that method's defaults,
the official settings below, or a `base` run and the dotted keys it `set`s (docs/pipeline.md, "Runs"). With
`train.preset: paper`, each method's *paper keys* (its schedule and sizes) are reset to these defaults, and the
official behaviour the papers' numbers were produced with is implied wherever the params do not write the key:
random batches (`train.batches`), the MMIN package's audio-only normalisation (`train.normalise_modalities`) and
the MMIN code's max-pools over padding (`encoder_pooling`, `text_windows`: padded); docs/faithfulness.md.
"""


def _value(value: Any) -> str:
    text = json.dumps(value, default=str).replace("|", "\\|")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _describe(field) -> str:
    return " ".join((field.description or "").split()).replace("|", "\\|") or "—"


def model_rows(model: type[BaseModel], prefix: str, rows: list[str], instance: BaseModel | None = None) -> None:
    """Table rows `| key | default | meaning |` for every leaf of `model` (nested models flattened under `prefix`)."""
    instance = instance or model()
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            if field.description:
                rows.append(f"| `{key}` | | {_describe(field)} |")
            model_rows(type(value), key, rows, value)
        else:
            default = (
                value.model_dump(mode="json")
                if isinstance(value, BaseModel)
                else (
                    {k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v) for k, v in value.items()}
                    if isinstance(value, dict)
                    else value
                )
            )
            rows.append(f"| `{key}` | {_value(default)} | {_describe(field)} |")


def section(title: str, model: type[BaseModel], prefix: str) -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    model_rows(model, prefix, rows)
    doc = " ".join((model.__doc__ or "").split())
    return f"## {title}\n\n" + (f"{doc}\n\n" if doc else "") + "\n".join(rows) + "\n"


def params_reference() -> str:
    parts = [HEADER]
    for name, field in Study.model_fields.items():
        if name == "methods":
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parts.append(section(f"`{name}`", annotation, name))
        else:
            parts.append(f"## `{name}`\n\nDefault {_value(field.default)}. {_describe(field)}\n")
    parts.append(
        "## Methods\n\nThe keys of a run of each method, with the method's defaults (its official settings "
        "and switches).\n"
    )
    for info in CATALOG.values():
        rows = ["| key | default | meaning |", "|---|---|---|"]
        model_rows(info.params, "", rows)
        stages = ", ".join(f"`{s.name}`" for s in info.stages)
        paper = ", ".join(f"`{k}`" for k in info.paper_keys)
        variants = (
            "; ".join(
                f"`{v}`: " + ", ".join(f"`{k} = {json.dumps(x)}`" for k, x in c.items())
                for v, c in info.variants.items()
            )
            or "none"
        )
        parts.append(
            f"### `{info.name}`\n\n{info.summary}. Stages: {stages}; needs: "
            f"{', '.join(info.needs) or f'any {info.min_modalities} modalities'}; paper keys: {paper}; "
            f"named variants: {variants}.\n\n" + "\n".join(rows) + "\n"
        )
    return "\n".join(parts)


def main() -> None:
    OUT.write_text(params_reference())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
