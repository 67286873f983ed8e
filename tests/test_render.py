"""``python -m tlcourse render``: executed notebooks as self-contained HTML, the committed files untouched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tlcourse import render
from tlcourse.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """A notebook of (cell type, source) pairs, without outputs, in the committed format."""
    nb = {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
            | ({"execution_count": None, "outputs": []} if kind == "code" else {})
            for kind, src in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i}"
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


def test_unknown_notebook_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["render", str(tmp_path / "out"), "--notebooks", "00", "99"]) == 2
    err = capsys.readouterr().err
    assert "unknown notebook(s) 99" in err and "00_quickstart" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'fast' (choose from ...)"
        main(["render", str(tmp_path / "out"), "--profile", "fast"])


@pytest.mark.slow
def test_a_failing_cell_still_writes_html_and_exits_naming_notebook_and_cell(tmp_path, capsys):
    folder = tmp_path / "nbs"
    folder.mkdir()
    source = write_notebook(
        folder / "00_tiny.ipynb",
        [
            ("markdown", "# 00 · Tiny"),
            ("code", "import os\nprint(os.environ['TLCOURSE_PROFILE'], os.getcwd())"),
            ("markdown", "## 2 · Breaks"),
            ("code", "1 / 0"),
            ("code", "print('never runs')"),
        ],
    )
    before = source.read_bytes()
    out = tmp_path / "html"
    assert main(["render", str(out), "--profile", "smoke", "--notebook-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "00_tiny failed at cell 3" in err and "'2 · Breaks'" in err and "ZeroDivisionError" in err
    page = (out / "00_tiny.html").read_text()
    assert "ZeroDivisionError" in page and f"smoke {folder}" in page  # the kernel's profile and cwd
    assert "never runs" in page and page.count("never runs") == 1  # the source shows; the cell never ran
    assert "00_tiny.html" in (out / "index.html").read_text()
    assert source.read_bytes() == before


@pytest.mark.slow
def test_render_one_notebook_in_smoke(cfg, tmp_path):
    """Notebook 00 (among the fastest, with figures) executes cleanly; figures are embedded; the file is unchanged."""
    committed = ROOT / "notebooks" / "00_quickstart.ipynb"
    before = committed.read_bytes()
    results = render.render_notebooks(tmp_path, "smoke", ["00"], report=lambda _: None)
    assert [r.notebook for r in results] == ["00_quickstart"] and results[0].error is None, results[0].error
    page = (tmp_path / "00_quickstart.html").read_text()
    assert re.search(r'<img [^>]*src="data:image/png;base64,', page), "no figure embedded as a data: URI"
    assert "Traceback" not in page and "ename" not in page
    assert 'href="00_quickstart.html"' in (tmp_path / "index.html").read_text()
    assert committed.read_bytes() == before
