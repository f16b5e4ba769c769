"""Browsing without Jupyter (docs/design.md, "Browsing and provenance"): the executed notebooks as HTML, one index.

- `export_notebook`: one executed notebook -> one self-contained HTML page (nbconvert's `lab` template with
  every script that would load from a CDN dropped: require.js, MathJax, Mermaid, the widget renderer), so the
  page works offline. Images are embedded in the notebook already; TeX in markdown shows as source; widget
  and JavaScript outputs show their text/plain form. Plumbing is hidden as the notebook's cell tags ask: a cell
  tagged `hide-input` shows its outputs only, one tagged `remove-cell` is left out (`HIDDEN_TAGS`).
- `index_page`: the index, linking every notebook page, showing every table (its .md rendered, with links to
  the .md/.csv/.tex files) and every figure (inline <img> of the .svg, else the .png), and extra links.
- `export_site`: both, for one study: `<out>/notebooks/<name>.html` and `<out>/index.html` (written last). The
  template's CSS (about 260 KB, the same for every page) is written once, as `<out>/notebooks/notebook.css`, and
  each page links it instead of inlining it.

Output is a function of the inputs only (sorted listings, no timestamps, relative links), so the DVC stage
that runs `python -m mer_core.html_export` reproduces its committed outputs byte for byte.
"""

from __future__ import annotations

import argparse
import html
import os
import re
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import TagRemovePreprocessor

from mer_core.runtime import write_atomic

# nbconvert's lab template less the blocks that load scripts from a CDN; widget views (papermill saves no
# widget state, e.g. tqdm's bars) and JavaScript outputs show their text/plain form, since the template gives
# them a random uuid4 id that would change the page on every export.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_widget_view scoped -%}{{ self.data_text() }}{%- endblock data_widget_view -%}
{%- block data_javascript scoped -%}{{ self.data_text() }}{%- endblock data_javascript -%}
"""
HIDDEN_TAGS = {"input": {"hide-input", "parameters", "injected-parameters"}, "cell": {"remove-cell"}}
STYLESHEET = "notebook.css"  # beside the pages: the CSS that the template inlines in every page
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", flags=re.S)
TABLE_FORMATS = ("md", "csv", "tex")
FIGURE_FORMATS = ("svg", "png")  # the first present is shown inline

INDEX_STYLE = """body { font-family: sans-serif; max-width: 72em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
section.artefact { margin-bottom: 2em; }
.formats a { margin-right: 0.5em; }"""


def offline_exporter() -> HTMLExporter:
    """nbconvert's HTMLExporter on `OFFLINE_TEMPLATE` (no script from the network), hiding what `HIDDEN_TAGS` says."""
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})], template_file="offline.html.j2"
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_input_tags=HIDDEN_TAGS["input"], remove_cell_tags=HIDDEN_TAGS["cell"], enabled=True
        ),
        enabled=True,
    )
    return exporter


def head_styles(page: str) -> tuple[str, str]:
    """(the run of `<style>` blocks in the `<head>` of `page`, the CSS they hold joined); ("", "") when the head has
    none or something other than whitespace sits between them."""
    head = page[: page.find("</head>")]
    start, end = head.find("<style"), head.rfind("</style>")
    if start < 0 or end < 0:
        return "", ""
    run = head[start : end + len("</style>")]
    if STYLE.sub("", run).strip():
        return "", ""
    return run, "\n".join(STYLE.findall(run))


def template_stylesheet(exporter: HTMLExporter) -> str:
    """The CSS that `exporter`'s template inlines in the head of every page (rendered on an empty notebook)."""
    page, _ = exporter.from_notebook_node(nbformat.v4.new_notebook(), resources={"metadata": {"name": "empty"}})
    return head_styles(page)[1]


def export_notebook(
    notebook: str | Path, out_path: str | Path, exporter: HTMLExporter | None = None, stylesheet: str | None = None
) -> Path:
    """Write `notebook` (.ipynb) as one HTML page at `out_path`: self-contained, or, when its head's CSS equals
    `stylesheet`, linking `STYLESHEET` (in the page's folder) instead."""
    notebook = Path(notebook)
    body, _ = (exporter or offline_exporter()).from_notebook_node(
        nbformat.read(notebook, as_version=4), resources={"metadata": {"name": notebook.stem}}
    )
    run, css = head_styles(body)
    if stylesheet and css == stylesheet:
        body = body.replace(run, f'<link rel="stylesheet" href="{STYLESHEET}">', 1)
    return write_atomic(out_path, lambda tmp: tmp.write_text(body, encoding="utf-8"))


def notebook_title(notebook: str | Path) -> str:
    """The first markdown heading of `notebook`, else its file name."""
    for cell in nbformat.read(Path(notebook), as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return Path(notebook).stem


def _files_by_stem(folder: Path, formats: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    """{stem: {format: path}} for the files of `folder` whose suffix is one of `formats`, sorted by stem."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix[1:] in formats:
            found.setdefault(path.stem, {})[path.suffix[1:]] = path
    return found


def _href(target: Path, page_dir: Path) -> str:
    """`target` relative to the folder of the page that links it, with forward slashes."""
    return Path(os.path.relpath(target, page_dir)).as_posix()


def _table_section(stem: str, files: dict[str, Path], page_dir: Path) -> str:
    body = markdown2html(files["md"].read_text(encoding="utf-8")) if "md" in files else ""
    links = " ".join(f'<a href="{html.escape(_href(files[f], page_dir))}">{f}</a>' for f in TABLE_FORMATS if f in files)
    return (
        f'<section class="artefact" id="table-{html.escape(stem)}">\n<h3>{html.escape(stem)}</h3>\n'
        f'{body}\n<p class="formats">{links}</p>\n</section>'
    )


def _figure_section(stem: str, files: dict[str, Path], page_dir: Path) -> str:
    shown = next(files[f] for f in FIGURE_FORMATS if f in files)
    links = " ".join(
        f'<a href="{html.escape(_href(files[f], page_dir))}">{f}</a>' for f in FIGURE_FORMATS if f in files
    )
    return (
        f'<figure id="figure-{html.escape(stem)}">\n'
        f'<img src="{html.escape(_href(shown, page_dir))}" alt="{html.escape(stem)}">\n'
        f'<figcaption>{html.escape(stem)} <span class="formats">{links}</span></figcaption>\n</figure>'
    )


def index_page(
    title: str,
    notebook_pages: list[tuple[str, Path]],
    tables_dir: Path,
    figures_dir: Path,
    page_dir: Path,
    links: list[tuple[str, str]] = (),
) -> str:
    """The index HTML: `notebook_pages` ((title, page path) in order, shown with the page's file name), every
    table and figure, and `links` ((label, href) pairs)."""
    notebooks = "\n".join(
        f'<li><a href="{html.escape(_href(page, page_dir))}">{html.escape(name)}</a> '
        f"<code>{html.escape(page.stem)}</code></li>"
        for name, page in notebook_pages
    )
    extra = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>' for label, href in links)
    tables = "\n".join(
        _table_section(stem, files, page_dir) for stem, files in _files_by_stem(tables_dir, TABLE_FORMATS).items()
    )
    figures = "\n".join(
        _figure_section(stem, files, page_dir) for stem, files in _files_by_stem(figures_dir, FIGURE_FORMATS).items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
{INDEX_STYLE}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>The executed notebooks, tables and figures of this study, for any browser (no Jupyter needed).
Written by <code>python -m mer_core.html_export</code> in the pipeline's <code>html</code> stage.</p>
<h2 id="notebooks">Notebooks</h2>
<ol>
{notebooks}
</ol>
{f'<h2 id="links">See also</h2>{chr(10)}<ul>{chr(10)}{extra}{chr(10)}</ul>' if links else ""}
<h2 id="tables">Tables</h2>
{tables}
<h2 id="figures">Figures</h2>
{figures}
</body>
</html>
"""


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist: run the stage that writes it first")
    return path


def export_site(
    notebooks_dir: str | Path,
    tables_dir: str | Path,
    figures_dir: str | Path,
    out_dir: str | Path,
    title: str,
    links: list[tuple[str, str]] = (),
) -> Path:
    """Export every notebook of `notebooks_dir` to `<out_dir>/notebooks/`, then write `<out_dir>/index.html`."""
    notebooks_dir = _existing_dir(notebooks_dir, "notebooks")
    tables_dir, figures_dir = _existing_dir(tables_dir, "tables"), _existing_dir(figures_dir, "figures")
    notebooks = sorted(notebooks_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebook (*.ipynb) in {notebooks_dir}")
    out_dir = Path(out_dir)
    exporter = offline_exporter()
    stylesheet = template_stylesheet(exporter)
    write_atomic(out_dir / "notebooks" / STYLESHEET, lambda tmp: tmp.write_text(stylesheet, encoding="utf-8"))
    pages = [
        (notebook_title(nb), export_notebook(nb, out_dir / "notebooks" / f"{nb.stem}.html", exporter, stylesheet))
        for nb in notebooks
    ]
    page = index_page(title, pages, tables_dir, figures_dir, out_dir, links)
    return write_atomic(out_dir / "index.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _link(text: str) -> tuple[str, str]:
    label, sep, href = text.partition("=")
    if not sep or not label or not href:
        raise argparse.ArgumentTypeError(f"--link takes LABEL=HREF, got {text!r}")
    return label, href


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", required=True, help="folder of executed notebooks (.ipynb)")
    parser.add_argument("--tables", required=True, help="folder of tables (.md/.csv/.tex)")
    parser.add_argument("--figures", required=True, help="folder of figures (.svg/.png)")
    parser.add_argument("--out", required=True, help="output folder: index.html and notebooks/")
    parser.add_argument("--title", required=True)
    parser.add_argument(
        "--link",
        type=_link,
        action="append",
        default=[],
        metavar="LABEL=HREF",
        help="an extra link on the index (repeatable)",
    )
    args = parser.parse_args(argv)
    print(export_site(args.notebooks, args.tables, args.figures, args.out, args.title, args.link))


if __name__ == "__main__":
    main()
