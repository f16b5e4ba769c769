"""mer_core.html_export: offline, deterministic notebook pages and the index (no browser; see test_html_browser)."""

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mer_core import html_export

# A 1x1 red PNG, base64 (what a notebook stores for an image output).
PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="#36c"/></svg>'
TABLE_MD = "UA per condition.\n\n| | a | av |\n|:--|:--|:--|\n| mmin | 0.452 ± 0.025 | 0.727 ± 0.021 |\n"


def write_notebook(path, heading="# Training: mmin", widget=True):
    """An executed-looking notebook: a heading, a stream, an image, and a tqdm-like widget view."""
    outputs = [
        new_output("stream", name="stdout", text="epoch 1 val_ua 0.5\n"),
        new_output("display_data", data={"image/png": PIXEL_PNG, "text/plain": "<Figure>"}),
    ]
    if widget:
        outputs.append(
            new_output(
                "display_data",
                data={
                    "application/vnd.jupyter.widget-view+json": {
                        "model_id": "abc",
                        "version_major": 2,
                        "version_minor": 0,
                    },
                    "text/plain": "fit: 100%|##########| 3/3",
                },
            )
        )
    cells = ([new_markdown_cell(f"{heading}\n\nSome text with $x^2$.")] if heading else []) + [
        new_code_cell("train()", outputs=outputs, execution_count=1)
    ]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def make_study(root, notebooks=("01_prepare_data", "02_train-mmin")):
    """reports-like folders: notebooks/, tables/ (md, csv, tex), figures/ (svg+png, png only)."""
    (root / "notebooks").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "figures").mkdir()
    for name in notebooks:
        write_notebook(root / "notebooks" / f"{name}.ipynb", heading=f"# Notebook {name}")
    (root / "tables" / "conditions_ua.md").write_text(TABLE_MD, encoding="utf-8")
    (root / "tables" / "conditions_ua.csv").write_text(",a,av\nmmin,0.452 ± 0.025,0.727 ± 0.021\n", encoding="utf-8")
    (root / "tables" / "conditions_ua.tex").write_text("\\begin{tabular}{l}\\end{tabular}\n", encoding="utf-8")
    (root / "figures" / "robustness_wa.svg").write_text(SVG, encoding="utf-8")
    (root / "figures" / "robustness_wa.png").write_bytes(__import__("base64").b64decode(PIXEL_PNG))
    (root / "figures" / "training_curves.png").write_bytes(__import__("base64").b64decode(PIXEL_PNG))
    return root


def test_export_notebook_is_offline_and_shows_outputs(tmp_path):
    page = html_export.export_notebook(write_notebook(tmp_path / "nb.ipynb"), tmp_path / "out" / "nb.html")
    text = page.read_text(encoding="utf-8")
    assert page == tmp_path / "out" / "nb.html"
    assert re.findall(r"<script[^>]*\bsrc=", text) == []  # require.js, MathJax, Mermaid, widget renderer dropped
    assert "cdnjs" not in text and "unpkg" not in text and "mathjax" not in text.lower()
    assert "<title>nb</title>" in text
    assert "Training: mmin" in text and "epoch 1 val_ua 0.5" in text
    assert f"data:image/png;base64,{PIXEL_PNG}" in text
    assert "fit: 100%|##########| 3/3" in text  # the widget view's text/plain form
    assert "jupyter-widgets jp-OutputArea-output" not in text


def test_cell_tags_hide_the_plumbing(tmp_path):
    """`hide-input` (and papermill's parameters cells) show their outputs only; `remove-cell` is left out."""
    cells = [
        new_markdown_cell("# Analysis"),
        new_code_cell("params_path = 'PARAMS_SOURCE'", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "study = load('HIDDEN_SOURCE')",
            execution_count=1,
            metadata={"tags": ["hide-input"]},
            outputs=[new_output("stream", name="stdout", text="SHOWN_OUTPUT\n")],
        ),
        new_code_cell(
            "import REMOVED_SOURCE",
            execution_count=2,
            metadata={"tags": ["remove-cell"]},
            outputs=[new_output("stream", name="stdout", text="REMOVED_OUTPUT\n")],
        ),
        new_code_cell(
            "table('VISIBLE_SOURCE')",
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="VISIBLE_OUTPUT\n")],
        ),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=cells), path)
    text = html_export.export_notebook(path, tmp_path / "nb.html").read_text(encoding="utf-8")
    assert "SHOWN_OUTPUT" in text and "VISIBLE_SOURCE" in text and "VISIBLE_OUTPUT" in text
    for hidden in ("PARAMS_SOURCE", "HIDDEN_SOURCE", "REMOVED_SOURCE", "REMOVED_OUTPUT"):
        assert hidden not in text, hidden


def test_export_notebook_is_deterministic(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb")
    first = html_export.export_notebook(nb, tmp_path / "a.html").read_bytes()
    second = html_export.export_notebook(nb, tmp_path / "b.html").read_bytes()
    assert first == second


def test_notebook_title_is_first_heading_else_file_name(tmp_path):
    assert (
        html_export.notebook_title(write_notebook(tmp_path / "a.ipynb", heading="## Data: CREMA-D")) == "Data: CREMA-D"
    )
    assert html_export.notebook_title(write_notebook(tmp_path / "b.ipynb", heading=None)) == "b"


def test_index_page_links_notebooks_and_shows_tables_and_figures(tmp_path):
    study = make_study(tmp_path / "reports")
    out = tmp_path / "reports" / "html"
    pages = [("Notebook A", out / "notebooks" / "a.html")]
    page = html_export.index_page(
        "The study", pages, study / "tables", study / "figures", out, links=[("Extended", "extended/index.html")]
    )
    assert "<title>The study</title>" in page
    assert '<a href="notebooks/a.html">Notebook A</a> <code>a</code>' in page
    assert '<a href="extended/index.html">Extended</a>' in page
    # the table's markdown is rendered, caption and cells, with every format linked relative to the page
    assert "<table>" in page and "0.452 ± 0.025" in page and "UA per condition." in page
    for fmt in ("md", "csv", "tex"):
        assert f'<a href="../tables/conditions_ua.{fmt}">{fmt}</a>' in page
    # svg shown when present, png otherwise; both formats linked
    assert '<img src="../figures/robustness_wa.svg" alt="robustness_wa">' in page
    assert '<img src="../figures/training_curves.png" alt="training_curves">' in page
    assert '<a href="../figures/robustness_wa.png">png</a>' in page
    assert page.index("conditions_ua") < page.index("robustness_wa") < page.index("training_curves")


def test_index_page_escapes_html(tmp_path):
    study = make_study(tmp_path / "r")
    page = html_export.index_page(
        "A <b> & C", [("x<y", tmp_path / "x.html")], study / "tables", study / "figures", tmp_path
    )
    assert "<title>A &lt;b&gt; &amp; C</title>" in page and ">x&lt;y</a>" in page
    assert "See also" not in page  # no extra links, no empty section


def test_export_site_writes_pages_then_index(tmp_path):
    study = make_study(tmp_path / "reports")
    index = html_export.export_site(
        study / "notebooks",
        study / "tables",
        study / "figures",
        study / "html",
        "The study",
        [("Extended", "extended/index.html")],
    )
    assert index == study / "html" / "index.html"
    assert sorted(p.name for p in (study / "html" / "notebooks").iterdir()) == [
        "01_prepare_data.html",
        "02_train-mmin.html",
        "notebook.css",
    ]
    css = (study / "html" / "notebooks" / "notebook.css").read_text(encoding="utf-8")
    assert len(css) > 100_000 and ".jp-Cell" in css  # JupyterLab's stylesheet, written once
    page = (study / "html" / "notebooks" / "02_train-mmin.html").read_text(encoding="utf-8")
    head = page[: page.index("</head>")]
    assert '<link rel="stylesheet" href="notebook.css">' in head and "<style" not in head
    assert len(page) < len(css)  # the page no longer carries the template's CSS
    text = index.read_text(encoding="utf-8")
    assert text.index("Notebook 01_prepare_data") < text.index("Notebook 02_train-mmin")
    assert '<a href="notebooks/02_train-mmin.html">' in text
    again = html_export.export_site(
        study / "notebooks",
        study / "tables",
        study / "figures",
        study / "html2",
        "The study",
        [("Extended", "extended/index.html")],
    )
    assert again.read_bytes() == index.read_bytes()


def test_export_site_errors_name_the_folder(tmp_path):
    study = make_study(tmp_path / "reports", notebooks=())
    with pytest.raises(FileNotFoundError, match=r"no executed notebook \(\*\.ipynb\) in .*notebooks"):
        html_export.export_site(study / "notebooks", study / "tables", study / "figures", tmp_path / "o", "t")
    with pytest.raises(FileNotFoundError, match=r"figures folder .*missing does not exist"):
        html_export.export_site(study / "notebooks", study / "tables", tmp_path / "missing", tmp_path / "o", "t")
    assert not (tmp_path / "o" / "index.html").exists()


def test_main_parses_links(tmp_path, capsys):
    study = make_study(tmp_path / "reports", notebooks=("03_analysis",))
    html_export.main(
        [
            "--notebooks",
            str(study / "notebooks"),
            "--tables",
            str(study / "tables"),
            "--figures",
            str(study / "figures"),
            "--out",
            str(tmp_path / "html"),
            "--title",
            "T",
            "--link",
            "Back=../index.html",
        ]
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "html" / "index.html")
    assert '<a href="../index.html">Back</a>' in (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        html_export.main(
            [
                "--notebooks",
                "n",
                "--tables",
                "t",
                "--figures",
                "f",
                "--out",
                "o",
                "--title",
                "T",
                "--link",
                "no-equals-sign",
            ]
        )
    assert "--link takes LABEL=HREF, got 'no-equals-sign'" in capsys.readouterr().err


def test_head_styles_takes_only_a_run_of_style_blocks():
    page = (
        '<html><head><title>t</title><style>a {}</style>\n<style type="text/css">b {}</style></head>'
        "<body><style>c {}</style>"
    )
    run, css = html_export.head_styles(page)
    assert run == '<style>a {}</style>\n<style type="text/css">b {}</style>' and css == "a {}\nb {}"
    assert html_export.head_styles("<head><style>a {}</style><meta x><style>b {}</style></head>") == ("", "")
    assert html_export.head_styles("<head><title>t</title></head>") == ("", "")
